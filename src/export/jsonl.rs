//! `--format jsonl`: the session's metadata line, then one JSON object per record.

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;

use serde_json::json;

use super::json::record_json;
use crate::recorder::index::SessionMeta;
use crate::recorder::reader;

pub fn write(data: &Path, meta: &SessionMeta, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &json!({ "session": meta }))?;
    out.write_all(b"\n")?;
    let mut err = None;
    reader::for_each_record(data, meta, |r| {
        let line = record_json(&r.header, &r.hash, &r.body);
        if let Err(e) = serde_json::to_writer(&mut *out, &line)
            .map_err(io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
        {
            err = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
