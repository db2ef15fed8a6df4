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
    /// Parameter type OIDs as the client gave them (0: left to the server).
    pub types: Vec<u32>,
}

pub fn parse(frame: &Frame) -> Result<Parse, Malformed> {
    let mut r = Reader::new(frame.body(), "Parse");
    let name = lossy(r.cstr()?);
    let query = lossy(r.cstr()?);
    let n = r.count(4)?;
    let mut types = Vec::with_capacity(n);
    for _ in 0..n {
        types.push(r.i32()? as u32);
    }
    r.finish()?;
    Ok(Parse { name, query, types })
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

/// The format codes and values of a Bind or FunctionCall (they share this layout): each value
/// slices the original frame. `strict` refuses format codes other than 0 and 1.
fn values(
    frame: &Frame,
    r: &mut Reader<'_>,
    what: &'static str,
    strict: bool,
) -> Result<Vec<Param>, Malformed> {
    let body_offset = 5;
    let nformats = r.count(2)?;
    let mut formats = Vec::with_capacity(nformats);
    for _ in 0..nformats {
        let f = r.i16()?;
        if strict && f != 0 && f != 1 {
            return Err(Malformed(what));
        }
        formats.push(f);
    }
    let nvalues = r.count(4)?;
    if nformats > 1 && nformats != nvalues {
        return Err(Malformed(what));
    }
    let mut out = Vec::with_capacity(nvalues);
    for i in 0..nvalues {
        let len = r.i32()?;
        let binary = match formats.len() {
            0 => false,
            1 => formats[0] == 1,
            _ => formats[i] == 1,
        };
        let value = if len < 0 {
            if len != -1 {
                return Err(Malformed(what));
            }
            None
        } else {
            let start = body_offset + r.position();
            r.take(len as usize)?;
            Some(frame.bytes.slice(start..start + len as usize))
        };
        out.push(Param { binary, value });
    }
    Ok(out)
}

pub fn bind(frame: &Frame) -> Result<Bind, Malformed> {
    let mut r = Reader::new(frame.body(), "Bind");
    let portal = lossy(r.cstr()?);
    let statement = lossy(r.cstr()?);
    let params = values(frame, &mut r, "Bind", false)?;
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

/// A fast-path FunctionCall ('F'): the function's OID, its arguments as sent, and the format
/// asked of the result.
pub struct FunctionCall {
    pub oid: u32,
    pub args: Vec<Param>,
    /// 0 text, 1 binary.
    pub result_format: i16,
}

/// Decodes the whole message: every count is checked against what is left of it, every format
/// code is 0 or 1, and nothing may follow the result format (the server would refuse such a
/// message too, but only after proctor had judged something other than what it holds).
pub fn function_call(frame: &Frame) -> Result<FunctionCall, Malformed> {
    const WHAT: &str = "FunctionCall";
    let mut r = Reader::new(frame.body(), WHAT);
    let oid = r.i32()? as u32;
    let args = values(frame, &mut r, WHAT, true)?;
    let result_format = r.i16()?;
    if result_format != 0 && result_format != 1 {
        return Err(Malformed(WHAT));
    }
    r.finish()?;
    Ok(FunctionCall {
        oid,
        args,
        result_format,
    })
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

    fn function_call_frame(body: &[u8]) -> Frame {
        let mut b = vec![b'F'];
        b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        b.extend_from_slice(body);
        Frame {
            tag: b'F',
            bytes: Bytes::from(b),
        }
    }

    #[test]
    fn function_call_args_slice_the_frame() {
        // lowrite(fd 0, '\x0102'): OID 955, formats [1], 2 args, result text.
        let mut body = Vec::new();
        body.extend_from_slice(&955u32.to_be_bytes());
        body.extend_from_slice(&[0, 1, 0, 1, 0, 2]);
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&2i32.to_be_bytes());
        body.extend_from_slice(&[1, 2]);
        body.extend_from_slice(&[0, 0]);
        let f = function_call_frame(&body);
        let c = function_call(&f).unwrap();
        assert_eq!(c.oid, 955);
        assert_eq!(c.args.len(), 2);
        assert!(c.args.iter().all(|a| a.binary));
        assert_eq!(c.args[1].value.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(c.result_format, 0);
    }

    #[test]
    fn hostile_function_calls_fail_cleanly() {
        let oid = 955u32.to_be_bytes();
        let cases: Vec<Vec<u8>> = vec![
            // Nothing after the OID.
            oid.to_vec(),
            // 32767 format codes announced, none sent.
            [&oid[..], &[0x7f, 0xff]].concat(),
            // A negative argument count.
            [&oid[..], &[0, 0, 0xff, 0xff]].concat(),
            // 32767 arguments announced, none sent.
            [&oid[..], &[0, 0, 0x7f, 0xff]].concat(),
            // An argument longer than the message.
            [&oid[..], &[0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 0]].concat(),
            // A negative length other than -1.
            [&oid[..], &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0]].concat(),
            // Two format codes for one argument.
            [&oid[..], &[0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]].concat(),
            // A format code that is neither text nor binary.
            [&oid[..], &[0, 1, 0, 7, 0, 0, 0, 0]].concat(),
            // A result format of 2.
            [&oid[..], &[0, 0, 0, 0, 0, 2]].concat(),
            // Trailing bytes after the result format.
            [&oid[..], &[0, 0, 0, 0, 0, 0, 9]].concat(),
            // No result format.
            [&oid[..], &[0, 0, 0, 0]].concat(),
        ];
        for body in cases {
            assert!(
                function_call(&function_call_frame(&body)).is_err(),
                "accepted {body:02x?}"
            );
        }
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
