//! The session index in sled: metadata for search and the byte spans where each session's
//! records live. It is derived entirely from the log and can be rebuilt (`proctor reindex`);
//! nothing here is evidence, so sled's weak flush only ever costs a rescan.
//!
//! Who touches it: the recorder's indexer thread applies what the writer made durable (the
//! writer itself only hands it over a channel, so it never waits on the index); readers
//! (search, export, `sessions list`, the API) read sled, which is concurrent, and copy what
//! they need of the in-memory state of open sessions under a lock held only for that copy.
//! No lock is held while a reader reads recordings, so a long search delays nobody.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::codec::{self, Body, kind};
use super::frame::{JOURNAL_SESSION, SessionKey};

mod derive;
pub mod text_filter;

pub use self::derive::{derive, wants_body};

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("index database: {0}")]
    Sled(#[from] sled::Error),
    #[error("index entry for {key} is unreadable: {detail}")]
    Corrupt { key: String, detail: String },
}

/// Where a session's records sit: a byte range of one segment. Other sessions' records may be
/// interleaved inside the range; readers filter by session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub segment: u64,
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialSummary {
    pub kind: String,
    pub name: String,
    pub valid_before_ns: i64,
    pub revoked: bool,
}

/// Everything the index knows about one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SessionMeta {
    pub id: String,
    pub agent: String,
    pub target: String,
    pub protocol: String,
    pub login: String,
    pub privilege: String,
    pub client_addr: String,
    pub grant: String,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    pub outcome: Option<String>,
    pub end_reason: String,
    pub credentials: Vec<CredentialSummary>,
    pub sealed: bool,
    pub last_seq: u64,
    pub last_hash: String,
    pub last_ts_ns: i64,
    pub events: u64,
    pub record_bytes: u64,
    pub statements: u64,
    pub commands: u64,
    pub holds: u64,
    pub denies: u64,
    pub alerts: u64,
    pub spans: Vec<Span>,
    pub ledger_index: Option<u64>,
    #[serde(default)]
    pub online_until_ns: Option<i64>,
    #[serde(default)]
    pub retain_until_ns: Option<i64>,
    /// Reason of a legal hold, which suspends expiry.
    #[serde(default)]
    pub legal_hold: Option<String>,
    /// Where the session was archived (its online frames are then gone).
    #[serde(default)]
    pub archived: Option<String>,
    #[serde(default)]
    pub purged: bool,
    /// An open session: the last seq (and its chain hash, hex) a store checkpoint signed, for
    /// the `recovered` record a restart after a crash writes. Dropped at the seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_signed: Option<(u64, String)>,
    /// The journal: chain hash (hex) of its last store checkpoint, which the next one names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_store_checkpoint: Option<String>,
}

impl SessionMeta {
    pub fn is_open(&self) -> bool {
        !self.sealed
    }
}

/// One record as the writer (or a rescan) hands it to the index.
#[derive(Debug, Clone)]
pub struct Indexed<'a> {
    pub session: SessionKey,
    pub kind: u8,
    pub seq: u64,
    pub ts_ns: i64,
    pub hash: [u8; 32],
    pub segment: u64,
    pub offset: u64,
    pub frame_len: u64,
    pub body: &'a [u8],
}

pub fn session_id_string(key: &SessionKey) -> String {
    uuid::Uuid::from_bytes(*key).to_string()
}

pub fn parse_session_id(s: &str) -> Option<SessionKey> {
    uuid::Uuid::parse_str(s.trim()).ok().map(|u| *u.as_bytes())
}

const META_PREFIX: &[u8] = b"s/";
const TIME_PREFIX: &[u8] = b"t/";
const UPTO_KEY: &[u8] = b"m/indexed_upto";

fn meta_key(session: &SessionKey) -> Vec<u8> {
    [META_PREFIX, session.as_slice()].concat()
}

fn time_key(started_ns: i64, session: &SessionKey) -> Vec<u8> {
    // Offset so that negative timestamps still sort before positive ones.
    let t = (started_ns as u64) ^ (1u64 << 63);
    [TIME_PREFIX, &t.to_be_bytes(), session.as_slice()].concat()
}

/// The index's in-memory part: open sessions and what is not yet in sled.
#[derive(Default)]
struct Live {
    /// Sessions changed since the last flush (open ones stay here until sealed and flushed).
    metas: HashMap<SessionKey, SessionMeta>,
    dirty: HashSet<SessionKey>,
    /// Segment and offset just after the last record applied.
    upto: (u64, u64),
    upto_dirty: bool,
}

pub struct Index {
    tree: sled::Db,
    /// The data directory whose log the index describes (the index lives in `DATA/index`).
    data: Option<std::path::PathBuf>,
    /// Held only to change or copy entries, never while reading recordings or scanning sled.
    state: Mutex<Live>,
}

impl Index {
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let tree = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(1000))
            .open()?;
        let upto = match tree.get(UPTO_KEY)? {
            Some(v) if v.len() == 16 => {
                let mut a = [0u8; 8];
                let mut b = [0u8; 8];
                a.copy_from_slice(&v[..8]);
                b.copy_from_slice(&v[8..]);
                (u64::from_be_bytes(a), u64::from_be_bytes(b))
            }
            _ => (0, 0),
        };
        let index = Index {
            tree,
            data: dir.parent().map(Path::to_path_buf),
            state: Mutex::new(Live {
                upto,
                ..Default::default()
            }),
        };
        // Open sessions are kept in memory: their metadata changes with every record.
        let open: Vec<SessionMeta> = index
            .scan_metas()?
            .into_iter()
            .filter(SessionMeta::is_open)
            .collect();
        {
            let mut st = index.state();
            for meta in open {
                if let Some(key) = parse_session_id(&meta.id) {
                    st.metas.insert(key, meta);
                }
            }
        }
        Ok(index)
    }

    fn state(&self) -> MutexGuard<'_, Live> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Where a rescan of the log must start to bring the index up to date.
    pub fn indexed_upto(&self) -> (u64, u64) {
        self.state().upto
    }

    fn load(&self, session: &SessionKey) -> Result<Option<SessionMeta>, IndexError> {
        match self.tree.get(meta_key(session))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| IndexError::Corrupt {
                    key: session_id_string(session),
                    detail: e.to_string(),
                }),
        }
    }

    fn scan_metas(&self) -> Result<Vec<SessionMeta>, IndexError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(META_PREFIX) {
            let (k, v) = item?;
            let meta: SessionMeta =
                serde_json::from_slice(&v).map_err(|e| IndexError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    detail: e.to_string(),
                })?;
            out.push(meta);
        }
        Ok(out)
    }

    /// Applies one record. Idempotent for a record already applied (a rescan after a crash may
    /// replay records the index had seen).
    pub fn apply(&self, rec: &Indexed<'_>) -> Result<(), IndexError> {
        let end = rec.offset + rec.frame_len;
        let mut st = self.state();
        if (rec.segment, end) > st.upto {
            st.upto = (rec.segment, end);
            st.upto_dirty = true;
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = st.metas.entry(rec.session) {
            slot.insert(match self.load(&rec.session)? {
                Some(m) => m,
                None => SessionMeta {
                    id: session_id_string(&rec.session),
                    started_ns: rec.ts_ns,
                    ..Default::default()
                },
            });
        }
        let Some(meta) = st.metas.get_mut(&rec.session) else {
            return Ok(());
        };
        if !derive(meta, rec) {
            return Ok(());
        }
        match meta.spans.last_mut() {
            Some(span) if span.segment == rec.segment => span.end = end,
            _ => meta.spans.push(Span {
                segment: rec.segment,
                start: rec.offset,
                end,
            }),
        }
        st.dirty.insert(rec.session);
        if rec.kind == kind::JOURNAL_NOTE
            && let Ok(Body::JournalNote { topic, text }) = codec::decode_body(rec.kind, rec.body)
        {
            Self::apply_journal(self, &mut st, &topic, &text)?;
        }
        if rec.kind == kind::STORE_CHECKPOINT
            && let Ok(Body::StoreCheckpoint(c)) = codec::decode_body(rec.kind, rec.body)
        {
            // Open sessions are in memory; a sealed one is signed by its seal.
            for p in &c.chains {
                if let Some(m) = st.metas.get_mut(&p.session)
                    && !m.sealed
                {
                    m.store_signed = Some((p.seq, hex::encode(p.hash)));
                    st.dirty.insert(p.session);
                }
            }
        }
        Ok(())
    }

    pub fn set_ledger_index(&self, session: &SessionKey, index: u64) -> Result<(), IndexError> {
        let mut st = self.state();
        self.update_in(&mut st, session, |m| m.ledger_index = Some(index))
    }

    /// Writes dirty metadata to sled in one atomic batch and drops sealed sessions from memory.
    pub fn flush(&self) -> Result<(), IndexError> {
        let mut st = self.state();
        if st.dirty.is_empty() && !st.upto_dirty {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let dirty: Vec<SessionKey> = st.dirty.drain().collect();
        for key in dirty {
            if let Some(meta) = st.metas.get(&key) {
                let json = serde_json::to_vec(meta).map_err(|e| IndexError::Corrupt {
                    key: meta.id.clone(),
                    detail: e.to_string(),
                })?;
                batch.insert(meta_key(&key), json);
                batch.insert(time_key(meta.started_ns, &key), &[][..]);
                if meta.sealed && meta.ledger_index.is_some() {
                    st.metas.remove(&key);
                }
            }
        }
        let mut upto = [0u8; 16];
        upto[..8].copy_from_slice(&st.upto.0.to_be_bytes());
        upto[8..].copy_from_slice(&st.upto.1.to_be_bytes());
        batch.insert(UPTO_KEY, &upto[..]);
        // Under the lock, so that a reader never sees a session neither in memory nor in sled.
        self.tree.apply_batch(batch)?;
        st.upto_dirty = false;
        Ok(())
    }

    /// Flushes and asks sled to write everything out (used at shutdown and after reindex).
    pub fn persist(&self) -> Result<(), IndexError> {
        self.flush()?;
        self.tree.flush()?;
        Ok(())
    }

    pub fn get(&self, session: &SessionKey) -> Result<Option<SessionMeta>, IndexError> {
        let live = self.state().metas.get(session).cloned();
        if let Some(m) = live {
            return Ok(Some(self.authenticated(m)));
        }
        Ok(self.load(session)?.map(|m| self.authenticated(m)))
    }

    /// The index is not evidence: what a session's start says (agent, target, protocol,
    /// login, privilege, client address, grant, start time) is read back from its seq-0
    /// record in the log, so an edited index cannot put forged values in front of a person.
    fn authenticated(&self, mut m: SessionMeta) -> SessionMeta {
        let Some(data) = &self.data else {
            return m;
        };
        match super::reader::signed_start(data, &m) {
            Ok(Some((ts, info))) => {
                let signed = (
                    info.agent.as_str(),
                    info.target.as_str(),
                    info.protocol.as_str(),
                    info.privilege.as_str(),
                    ts,
                );
                let indexed = (
                    m.agent.as_str(),
                    m.target.as_str(),
                    m.protocol.as_str(),
                    m.privilege.as_str(),
                    m.started_ns,
                );
                if signed != indexed
                    || info.login != m.login
                    || info.client_addr != m.client_addr
                    || info.grant != m.grant
                {
                    tracing::warn!(session = %m.id, "the index disagrees with the session_start record; showing the record (run `proctor reindex`)");
                }
                m.agent = info.agent;
                m.target = info.target;
                m.protocol = info.protocol.as_str().into();
                m.login = info.login;
                m.privilege = info.privilege.as_str().into();
                m.client_addr = info.client_addr;
                m.grant = info.grant;
                m.started_ns = ts;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(session = %m.id, error = %e, "cannot read the session_start record")
            }
        }
        m
    }

    /// Sessions still open (no seal), journal excluded.
    pub fn open_sessions(&self) -> Vec<SessionMeta> {
        self.state()
            .metas
            .iter()
            .filter(|(k, m)| **k != JOURNAL_SESSION && m.is_open())
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Sealed sessions the ledger does not list yet (a crash between seal and ledger append).
    pub fn unledgered_sessions(&self) -> Result<Vec<SessionMeta>, IndexError> {
        let mut out: Vec<SessionMeta> = self
            .state()
            .metas
            .values()
            .filter(|m| m.sealed && m.ledger_index.is_none())
            .cloned()
            .collect();
        for m in self.scan_metas()? {
            if m.sealed && m.ledger_index.is_none() && !out.iter().any(|o| o.id == m.id) {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Every session, newest first (journal excluded), with in-memory state overriding sled.
    pub fn all_sessions(&self) -> Result<Vec<SessionMeta>, IndexError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(TIME_PREFIX).rev() {
            let (k, _) = item?;
            if k.len() != TIME_PREFIX.len() + 8 + 16 {
                continue;
            }
            let mut key = [0u8; 16];
            key.copy_from_slice(&k[TIME_PREFIX.len() + 8..]);
            if key == JOURNAL_SESSION || !seen.insert(key) {
                continue;
            }
            if let Some(m) = self.get(&key)? {
                out.push(m);
            }
        }
        let live: Vec<(SessionKey, SessionMeta)> = self
            .state()
            .metas
            .iter()
            .map(|(k, m)| (*k, m.clone()))
            .collect();
        for (key, m) in live {
            if key != JOURNAL_SESSION && seen.insert(key) {
                out.push(self.authenticated(m));
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.started_ns));
        Ok(out)
    }

    /// Records that `agent` used `item` (a table or program); returns whether it was new.
    pub fn baseline_insert(
        &self,
        agent: &str,
        item: &str,
        session: &str,
    ) -> Result<bool, IndexError> {
        let tree = self.tree.open_tree("baseline")?;
        let key = [agent.as_bytes(), b"\0", item.as_bytes()].concat();
        let previous =
            tree.compare_and_swap(key, None as Option<&[u8]>, Some(session.as_bytes()))?;
        Ok(previous.is_ok())
    }

    /// Whether the agent has any baseline yet (an agent's first session teaches it).
    pub fn baseline_has_agent(&self, agent: &str) -> Result<bool, IndexError> {
        let tree = self.tree.open_tree("baseline")?;
        let prefix = [agent.as_bytes(), b"\0"].concat();
        Ok(tree.scan_prefix(prefix).next().is_some())
    }

    /// Store-level facts that change a session's metadata: legal holds and their release.
    /// The note's text starts with the session id.
    fn apply_journal(&self, st: &mut Live, topic: &str, text: &str) -> Result<(), IndexError> {
        if topic != "legal_hold" && topic != "legal_hold_release" {
            return Ok(());
        }
        let Some(key) = text.split_whitespace().next().and_then(parse_session_id) else {
            return Ok(());
        };
        let reason = text
            .split_once(' ')
            .map(|(_, r)| r.to_string())
            .unwrap_or_default();
        self.update_in(st, &key, |m| {
            m.legal_hold = if topic == "legal_hold" {
                Some(reason.clone())
            } else {
                None
            };
        })
    }

    /// Changes a session's metadata (loading it from sled if it is not in memory).
    pub fn update(
        &self,
        session: &SessionKey,
        f: impl FnOnce(&mut SessionMeta),
    ) -> Result<(), IndexError> {
        let mut st = self.state();
        self.update_in(&mut st, session, f)
    }

    fn update_in(
        &self,
        st: &mut Live,
        session: &SessionKey,
        f: impl FnOnce(&mut SessionMeta),
    ) -> Result<(), IndexError> {
        if !st.metas.contains_key(session) {
            match self.load(session)? {
                Some(m) => {
                    st.metas.insert(*session, m);
                }
                None => return Ok(()),
            }
        }
        if let Some(m) = st.metas.get_mut(session) {
            f(m);
            st.dirty.insert(*session);
        }
        Ok(())
    }

    /// Replaces the spans a session has in `segment` (after the segment was compacted).
    pub fn set_segment_span(
        &self,
        session: &SessionKey,
        segment: u64,
        span: Option<Span>,
    ) -> Result<(), IndexError> {
        self.update(session, |m| {
            m.spans.retain(|s| s.segment != segment);
            if let Some(s) = span {
                m.spans.push(s);
                m.spans.sort_by_key(|s| (s.segment, s.start));
            }
        })
    }
}
