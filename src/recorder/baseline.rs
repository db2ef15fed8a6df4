//! The first-use baseline (which tables and programs each agent has used) rebuilt from the log,
//! so that the index stays derived data only: a rebuilt index (`proctor reindex`, or one found
//! missing or unreadable at start) knows every agent's baseline again instead of treating every
//! agent as new (which silenced first-use alerts until each agent's next first session).
//!
//! Items are named as the monitor names them (`table:NAME`, `program:NAME`, long names bounded
//! with the default `first_use_name_bytes`), from the statements, exec requests and command
//! lines the sessions recorded. Each agent gets at most `first_use_per_agent` (default) entries,
//! the bound the monitor keeps per run, so a rebuild never stores more than a run could.

use std::collections::HashMap;
use std::path::Path;

use proctor_gate::Event;

use super::codec::{self, Body, kind};
use super::index::{Index, IndexError, session_id_string};
use super::segment::{self, Scanned, Scanner};
use crate::monitor::{MonitorConfig, bounded_name};

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("reading the log: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The baseline items one recorded event uses.
pub fn items_of(event: &Event, max_name: usize) -> Vec<String> {
    match event {
        Event::Statement(s) => s
            .tables
            .iter()
            .map(|t| format!("table:{}", bounded_name(t, max_name)))
            .collect(),
        Event::Exec { command, .. } | Event::CommandLine { line: command, .. } => {
            crate::policy::shell::analyze(command)
                .programs
                .into_iter()
                .map(|p| format!("program:{}", bounded_name(&p, max_name)))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Scans every segment and adds each agent's items to the baseline (first session wins).
/// Returns the entries added.
pub fn rebuild(data: &Path, index: &Index) -> Result<u64, BaselineError> {
    let defaults = MonitorConfig::default();
    let (max_name, per_agent) = (defaults.first_use_name_bytes, defaults.first_use_per_agent);
    let mut agents: HashMap<[u8; 16], String> = HashMap::new();
    let mut added: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    for number in segment::list_segments(data)? {
        let buf = std::fs::read(segment::segment_path(data, number))?;
        for item in Scanner::new(&buf, segment::SEGMENT_HEADER_LEN as usize) {
            let Scanned::Frame { record, .. } = item else {
                continue;
            };
            let h = record.header;
            if !matches!(
                super::blobs::effective_kind(h.kind, record.body),
                kind::SESSION_START | kind::STATEMENT | kind::EXEC | kind::COMMAND_LINE
            ) {
                continue;
            }
            let body = codec::decode_body(h.kind, record.body);
            let Ok(Body::Event(event)) = super::blobs::resolve(data, &h.session, body) else {
                continue;
            };
            if let Event::SessionStart(info) = &event {
                agents.insert(h.session, info.agent.clone());
                continue;
            }
            let Some(agent) = agents.get(&h.session) else {
                continue;
            };
            let count = added.entry(agent.clone()).or_default();
            for it in items_of(&event, max_name) {
                if *count >= per_agent {
                    break;
                }
                if index.baseline_insert(agent, &it, &session_id_string(&h.session))? {
                    *count += 1;
                    total += 1;
                }
            }
        }
    }
    Ok(total)
}
