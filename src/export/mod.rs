//! Getting evidence out: JSON lines for tools, asciicast for terminal players, and
//! self-verifying bundles for auditors who have only proctor's public key.

pub mod asciicast;
pub mod bundle;
pub mod bundle_external;
mod bundle_frames;
pub mod json;
pub mod jsonl;
pub mod store_signatures;
pub mod strict_json;

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;

use crate::recorder::index::SessionMeta;
use crate::recorder::reader::{self, StoredRecord};

/// Writes one JSON value per line.
pub fn write_line(out: &mut dyn Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Writes the line `f` makes of each record of the session (records it skips write nothing).
pub fn write_record_lines(
    data: &Path,
    meta: &SessionMeta,
    out: &mut dyn Write,
    mut f: impl FnMut(&StoredRecord<'_>) -> Option<serde_json::Value>,
) -> io::Result<()> {
    let mut err = None;
    reader::for_each_record(data, meta, |r| {
        if let Some(line) = f(&r)
            && let Err(e) = write_line(out, &line)
        {
            err = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    err.map_or(Ok(()), Err)
}
