//! `proctor export --reveal`: a JSON-lines writer that opens sealed markers on the way out.
//! Lines without a marker pass through untouched; a marker that does not open with the given
//! key stays as it is and is counted.

use std::io::{self, Write};

use serde_json::Value;

use super::seal::{MARKER_PREFIX, Opener};

pub struct RevealWriter<'a, W: Write> {
    out: W,
    opener: &'a Opener,
    session: String,
    line: Vec<u8>,
    pub opened: usize,
    pub failed: usize,
}

impl<'a, W: Write> RevealWriter<'a, W> {
    pub fn new(out: W, opener: &'a Opener, session: &str) -> Self {
        RevealWriter {
            out,
            opener,
            session: session.to_string(),
            line: Vec::new(),
            opened: 0,
            failed: 0,
        }
    }

    fn reveal(&mut self, v: &mut Value) {
        match v {
            Value::String(s) if s.contains(MARKER_PREFIX) => {
                let (clear, ok, bad) = self.opener.reveal_text(&self.session, s);
                self.opened += ok;
                self.failed += bad;
                *s = clear;
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.reveal(x)),
            Value::Object(map) => map.values_mut().for_each(|x| self.reveal(x)),
            _ => {}
        }
    }

    fn emit_line(&mut self) -> io::Result<()> {
        let line = std::mem::take(&mut self.line);
        let has_marker = line
            .windows(MARKER_PREFIX.len())
            .any(|w| w == MARKER_PREFIX.as_bytes());
        if has_marker && let Ok(mut v) = serde_json::from_slice::<Value>(&line) {
            self.reveal(&mut v);
            serde_json::to_writer(&mut self.out, &v)?;
            return self.out.write_all(b"\n");
        }
        self.out.write_all(&line)?;
        self.out.write_all(b"\n")
    }

    /// Writes what is left (a last line without a newline) and flushes.
    pub fn finish(mut self) -> io::Result<(usize, usize)> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.out.write_all(&line)?;
        }
        self.out.flush()?;
        Ok((self.opened, self.failed))
    }
}

impl<W: Write> Write for RevealWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while let Some(p) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..p]);
            self.emit_line()?;
            rest = &rest[p + 1..];
        }
        self.line.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_markers_in_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        super::super::seal::generate_key_files(&key).unwrap();
        let opener = Opener::load(&key).unwrap();
        let m = opener
            .sealer()
            .seal("s", "public.t.c", b"he said \"hi\"")
            .unwrap();
        let input = format!("{{\"a\":1}}\n{{\"rows\":[[\"{m}\",null]]}}\n");
        let mut out = Vec::new();
        let mut w = RevealWriter::new(&mut out, &opener, "s");
        for chunk in input.as_bytes().chunks(7) {
            w.write_all(chunk).unwrap();
        }
        assert_eq!(w.finish().unwrap(), (1, 0));
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"a\":1}\n{\"rows\":[[\"he said \\\"hi\\\"\",null]]}\n"
        );
    }
}
