//! Finds evidence not yet spooled or shipped and spools it: every ledger leaf and tree head
//! in ledger order, a bundle for each sealed leaf, and every attestation file. Reads the
//! store's files (and the index, for a session's metadata) only; the recorder is not touched,
//! so a store that is down never slows recording.

use std::path::Path;
use std::time::Duration;

use crate::export::bundle;
use crate::recorder::index::{Index, session_id_string};
use crate::recorder::ledger::{self, Entry, Leaf};
use crate::recorder::timestamp::attestations_dir;

use super::spool::Spool;

/// Object names in the bucket (FORMAT.md, "Object storage").
pub fn leaf_key(index: u64) -> String {
    format!("ledger/leaves/{index:016}")
}

pub fn head_key(h: &ledger::TreeHead) -> String {
    format!("ledger/heads/{:016}-{:020}", h.size, h.ts_ns)
}

pub fn bundle_key(session: &str) -> String {
    format!("sessions/{session}.bundle")
}

pub fn attestation_key(file: &str) -> String {
    format!("ledger/attestations/{file}")
}

/// Shortest lock proctor asks for: a retain-until in the past is refused by S3, and evidence
/// whose local retention already ran out still gets this much.
const MIN_LOCK: Duration = Duration::from_secs(24 * 3600);

/// Where the ledger scan stands in this process (restarts begin again at 0 and skip what the
/// spool knows).
#[derive(Default)]
pub struct Cursor {
    pub entries: usize,
}

pub struct Collector<'a> {
    pub data: &'a Path,
    pub index: &'a Index,
    pub spool: &'a Spool,
    /// The store's default total retention: the lock of ledger objects and of sessions
    /// without their own.
    pub retention_total: Duration,
}

fn lock_until(wanted: i64) -> i64 {
    wanted.max(crate::clock::after(crate::clock::now_ns(), MIN_LOCK))
}

impl Collector<'_> {
    /// Spools what is new; returns how many objects it spooled. Stops (to resume at the next
    /// call) at a sealed leaf whose bundle cannot be written yet.
    pub fn run(&self, cursor: &mut Cursor) -> Result<usize, String> {
        let mut spooled = 0;
        let scan = ledger::scan_ledger(&ledger::ledger_path(self.data))
            .map_err(|e| format!("reading the ledger: {e}"))?;
        let ledger_lock = lock_until(crate::clock::after(
            crate::clock::now_ns(),
            self.retention_total,
        ));
        for (_, entry) in scan.entries.iter().skip(cursor.entries) {
            match entry {
                Entry::Leaf { index, data } => {
                    if let Ok(leaf) = Leaf::decode(data)
                        && leaf.kind == 1
                    {
                        match self.bundle(&leaf)? {
                            Some(n) => spooled += n,
                            None => return Ok(spooled),
                        }
                    }
                    spooled += self.put(&leaf_key(*index), data, ledger_lock)?;
                }
                Entry::TreeHead(h) => {
                    spooled += self.put(&head_key(h), &h.encode(), ledger_lock)?
                }
            }
            cursor.entries += 1;
        }
        spooled += self.attestations(ledger_lock)?;
        Ok(spooled)
    }

    fn put(&self, key: &str, bytes: &[u8], until: i64) -> Result<usize, String> {
        if self.spool.known(key) {
            return Ok(0);
        }
        self.spool
            .put(key, bytes, until)
            .map_err(|e| format!("spooling {key}: {e}"))?;
        Ok(1)
    }

    /// The sealed session's bundle; `None` when it cannot be written yet (index behind).
    fn bundle(&self, leaf: &Leaf) -> Result<Option<usize>, String> {
        let id = session_id_string(&leaf.session);
        let key = bundle_key(&id);
        if self.spool.known(&key) {
            return Ok(Some(0));
        }
        let meta = match self.index.get(&leaf.session) {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("index: {e}")),
        };
        if meta.purged || meta.archived.is_some() {
            // Retention took the records before they were shipped: nothing left to send. The
            // leaf still ships, so the bucket says the session existed.
            tracing::warn!(session = %id, "sealed session gone from the store before shipping");
            return Ok(Some(0));
        }
        let until = lock_until(meta.retain_until_ns.unwrap_or_else(|| {
            crate::clock::after(
                meta.ended_ns.unwrap_or(meta.started_ns),
                self.retention_total,
            )
        }));
        let mut out = Vec::new();
        match bundle::write(self.data, &meta, &mut out) {
            Ok(()) => self.put(&key, &out, until).map(Some),
            Err(bundle::BundleError::NotSealed(_) | bundle::BundleError::NotLedgered(_)) => {
                Ok(None)
            }
            Err(e) => Err(format!("bundle of {id}: {e}")),
        }
    }

    fn attestations(&self, until: i64) -> Result<usize, String> {
        let dir = attestations_dir(self.data);
        let Ok(list) = std::fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut names: Vec<String> = list
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        let mut n = 0;
        for name in names {
            let key = attestation_key(&name);
            if self.spool.known(&key) {
                continue;
            }
            let bytes = std::fs::read(dir.join(&name)).map_err(|e| format!("{name}: {e}"))?;
            n += self.put(&key, &bytes, until)?;
        }
        Ok(n)
    }
}
