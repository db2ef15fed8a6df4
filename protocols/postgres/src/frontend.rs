//! Decoding of the client messages proctor has to look into. Values borrow from (or slice)
//! the original frame, which is what gets forwarded.

use proctor_gate::Param;

use crate::wire::{Frame, Malformed, Reader, lossy};

/// Simple Query: the text, decoded lossily for classification and the record.
pub fn query_text(frame: &Frame) -> Result<String, Malformed> {
    let mut r = Reader::new(frame.body(), "Query");
    let q = r.cstr()?;
    r.finish()?;
    Ok(lossy(q))
}

pub struct Parse {
    pub name: String,
    pub query: String,
}

pub fn parse(frame: &Frame) -> Result<Parse, Malformed> {
    let mut r = Reader::new(frame.body(), "Parse");
    let name = lossy(r.cstr()?);
    let query = lossy(r.cstr()?);
    let n = r.count(4)?;
    r.take(n * 4)?;
    r.finish()?;
    Ok(Parse { name, query })
}

pub struct Bind {
    pub portal: String,
    pub statement: String,
    pub params: Vec<Param>,
    /// Result column format codes as sent (empty: all text; one: applies to all).
    pub result_formats: Vec<i16>,
}

/// The statement a Bind names, without decoding its parameters (for deciding whether the
/// Bind must wait; `bind` still checks the whole message when it is processed).
pub fn bind_statement(frame: &Frame) -> Result<String, Malformed> {
    let mut r = Reader::new(frame.body(), "Bind");
    r.cstr()?;
    Ok(lossy(r.cstr()?))
}

pub fn bind(frame: &Frame) -> Result<Bind, Malformed> {
    let body_offset = 5;
    let mut r = Reader::new(frame.body(), "Bind");
    let portal = lossy(r.cstr()?);
    let statement = lossy(r.cstr()?);
    let nformats = r.count(2)?;
    let mut formats = Vec::with_capacity(nformats);
    for _ in 0..nformats {
        formats.push(r.i16()?);
    }
    let nparams = r.count(4)?;
    if nformats > 1 && nformats != nparams {
        return Err(Malformed("Bind"));
    }
    let mut params = Vec::with_capacity(nparams);
    for i in 0..nparams {
        let len = r.i32()?;
        let binary = match formats.len() {
            0 => false,
            1 => formats[0] == 1,
            _ => formats[i] == 1,
        };
        let value = if len < 0 {
            if len != -1 {
                return Err(Malformed("Bind"));
            }
            None
        } else {
            let start = body_offset + r.position();
            r.take(len as usize)?;
            Some(frame.bytes.slice(start..start + len as usize))
        };
        params.push(Param { binary, value });
    }
    let nres = r.count(2)?;
    let mut result_formats = Vec::with_capacity(nres);
    for _ in 0..nres {
        result_formats.push(r.i16()?);
    }
    r.finish()?;
    Ok(Bind {
        portal,
        statement,
        params,
        result_formats,
    })
}

pub struct Execute {
    pub portal: String,
    pub max_rows: i32,
}

pub fn execute(frame: &Frame) -> Result<Execute, Malformed> {
    let mut r = Reader::new(frame.body(), "Execute");
    let portal = lossy(r.cstr()?);
    let max_rows = r.i32()?;
    r.finish()?;
    Ok(Execute { portal, max_rows })
}

/// Describe or Close: `S` (statement) or `P` (portal) and a name.
pub fn target(frame: &Frame, what: &'static str) -> Result<(u8, String), Malformed> {
    let mut r = Reader::new(frame.body(), what);
    let kind = r.u8()?;
    if kind != b'S' && kind != b'P' {
        return Err(Malformed(what));
    }
    let name = lossy(r.cstr()?);
    r.finish()?;
    Ok((kind, name))
}

/// FunctionCall: the function OID, for the record.
pub fn function_oid(frame: &Frame) -> Result<u32, Malformed> {
    let mut r = Reader::new(frame.body(), "FunctionCall");
    Ok(r.i32()? as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use postgres_protocol::IsNull;
    use postgres_protocol::message::frontend;

    fn frame(b: BytesMut) -> Frame {
        let bytes = b.freeze();
        Frame {
            tag: bytes[0],
            bytes,
        }
    }

    #[test]
    fn bind_params_slice_the_frame() {
        let mut b = BytesMut::new();
        frontend::bind(
            "p1",
            "s1",
            [1i16, 0],
            [Some(&b"\x00\x01"[..]), None],
            |v: Option<&[u8]>, buf| match v {
                Some(v) => {
                    buf.extend_from_slice(v);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            [1i16],
            &mut b,
        )
        .map_err(|_| ())
        .unwrap();
        let f = frame(b);
        let bind = bind(&f).unwrap();
        assert_eq!(bind.portal, "p1");
        assert_eq!(bind.statement, "s1");
        assert_eq!(bind.params.len(), 2);
        assert!(bind.params[0].binary);
        assert_eq!(bind.params[0].value.as_deref(), Some(&b"\x00\x01"[..]));
        assert_eq!(bind.params[1].value, None);
        assert_eq!(bind.result_formats, vec![1]);
    }

    #[test]
    fn hostile_bind_counts_fail_cleanly() {
        // 'B' len portal\0 stmt\0 nformats=32767 and nothing else.
        let raw = b"B\0\0\0\x0bp\0s\0\x7f\xff";
        let f = Frame {
            tag: b'B',
            bytes: Bytes::from_static(raw),
        };
        assert!(bind(&f).is_err());
        let raw = b"B\0\0\0\x10\0\0\0\0\0\x01\x7f\xff\xff\xff";
        let f = Frame {
            tag: b'B',
            bytes: Bytes::from_static(raw),
        };
        assert!(bind(&f).is_err());
    }

    #[test]
    fn parse_and_execute() {
        let mut b = BytesMut::new();
        frontend::parse("n", "select $1", [23u32], &mut b).unwrap();
        let p = parse(&frame(b)).unwrap();
        assert_eq!((p.name.as_str(), p.query.as_str()), ("n", "select $1"));
        let mut b = BytesMut::new();
        frontend::execute("", 10, &mut b).unwrap();
        let e = execute(&frame(b)).unwrap();
        assert_eq!((e.portal.as_str(), e.max_rows), ("", 10));
    }
}
