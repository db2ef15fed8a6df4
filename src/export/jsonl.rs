//! `--format jsonl`: the session's metadata line, then one JSON object per record.

use std::io::{self, Write};
use std::path::Path;

use serde_json::json;

use super::json::record_json;
use super::{write_line, write_record_lines};
use crate::recorder::index::SessionMeta;

pub fn write(data: &Path, meta: &SessionMeta, out: &mut dyn Write) -> io::Result<()> {
    write_line(out, &json!({ "session": meta }))?;
    write_record_lines(data, meta, out, |r| {
        Some(record_json(&r.header, &r.hash, &r.body))
    })
}
