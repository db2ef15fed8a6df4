//! Retention (AG-305 4.4): legal holds, archiving sealed sessions into self-verifying bundles,
//! and purging what is past its retention. Nothing is ever deleted without a ledger entry
//! saying so, and there is no other delete path.

pub mod compact;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::clock::{format_ns, now_ns};
use crate::export::bundle;
use crate::recorder::Store;
use crate::recorder::frame::SessionKey;
use crate::recorder::index::{SessionMeta, parse_session_id};
use crate::recorder::ledger::{LEAF_SESSION_ARCHIVED, LEAF_SESSION_PURGED, Leaf};
use crate::recorder::signing;

#[derive(Debug, Error)]
pub enum RetentionError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl From<std::io::Error> for RetentionError {
    fn from(e: std::io::Error) -> Self {
        RetentionError::Failed(e.to_string())
    }
}

fn failed(e: impl std::fmt::Display) -> RetentionError {
    RetentionError::Failed(e.to_string())
}

/// One archived session, as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArchivedEntry {
    pub session: String,
    pub file: String,
    pub sha256: String,
    pub agent: String,
    pub target: String,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
    pub retain_until_ns: Option<i64>,
    pub ledger_leaf: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_ns: i64,
    pub public_key_pem: String,
    pub sessions: Vec<ArchivedEntry>,
}

#[derive(Debug, Default, Serialize)]
pub struct ArchiveReport {
    pub archived: Vec<String>,
    pub skipped: Vec<(String, String)>,
    pub manifest: Option<PathBuf>,
    pub compacted_bytes: u64,
}

/// When a session leaves the hot store, when it may be deleted.
fn online_until(m: &SessionMeta, default: Duration) -> i64 {
    m.online_until_ns
        .unwrap_or_else(|| crate::clock::after(m.ended_ns.unwrap_or(m.started_ns), default))
}

fn retain_until(m: &SessionMeta, default: Duration) -> i64 {
    m.retain_until_ns
        .unwrap_or_else(|| crate::clock::after(m.ended_ns.unwrap_or(m.started_ns), default))
}

fn final_hash(m: &SessionMeta) -> [u8; 32] {
    let mut h = [0u8; 32];
    let _ = hex::decode_to_slice(&m.last_hash, &mut h);
    h
}

fn leaf(kind: u8, m: &SessionMeta, key: SessionKey, note: String) -> Leaf {
    Leaf {
        kind,
        session: key,
        final_seq: m.last_seq,
        final_hash: final_hash(m),
        started_ns: m.started_ns,
        ended_ns: m.ended_ns.unwrap_or(m.last_ts_ns),
        agent: m.agent.clone(),
        target: m.target.clone(),
        outcome: m.outcome.clone().unwrap_or_default(),
        logged_ns: 0,
        note,
    }
}

/// Removes the frames of `sessions` from every closed segment and fixes the index's spans.
async fn drop_online(store: &Store, sessions: &HashSet<SessionKey>) -> Result<u64, RetentionError> {
    if sessions.is_empty() {
        return Ok(0);
    }
    // Every segment before the new active one is closed and can be rewritten.
    store.recorder.rotate().await.map_err(failed)?;
    let segments = crate::recorder::segment::list_segments(&store.data)?;
    let active = segments.last().copied();
    let mut touched: HashMap<u64, ()> = HashMap::new();
    {
        let index = store.index();
        for key in sessions {
            if let Some(m) = index.get(key).map_err(failed)? {
                for s in &m.spans {
                    touched.insert(s.segment, ());
                }
            }
        }
    }
    let mut removed = 0;
    for (&number, _) in touched.iter() {
        if Some(number) == active {
            continue;
        }
        let result = compact::compact_segment(&store.data, number, sessions)?;
        removed += result.removed_bytes;
        let index = store.index();
        for key in sessions {
            index.set_segment_span(key, number, None).map_err(failed)?;
        }
        for (key, span) in result.spans {
            index
                .set_segment_span(&key, number, Some(span))
                .map_err(failed)?;
        }
    }
    // Their records are gone from the segments: so are the bodies stored out of line
    // (FORMAT.md, "External bodies").
    for key in sessions {
        crate::recorder::blobs::remove_session(&store.data, key)?;
    }
    store.flush_index();
    Ok(removed)
}

/// Archives sealed sessions whose online period has passed (or older than `older_than`) into
/// `to`: one gzip-compressed bundle per session, verified after writing, and a manifest
/// written once. The ledger records each archive; then the online copy is dropped.
pub async fn archive(
    store: &Store,
    older_than: Option<Duration>,
    to: &Path,
    default_online: Duration,
) -> Result<ArchiveReport, RetentionError> {
    std::fs::create_dir_all(to)?;
    let now = now_ns();
    let candidates: Vec<SessionMeta> = {
        let index = store.index();
        index
            .all_sessions()
            .map_err(failed)?
            .into_iter()
            .filter(|m| m.sealed && m.archived.is_none() && !m.purged && m.ledger_index.is_some())
            .filter(|m| match older_than {
                Some(d) => m.ended_ns.unwrap_or(m.last_ts_ns) < crate::clock::before(now, d),
                None => online_until(m, default_online) < now,
            })
            .collect()
    };
    let mut report = ArchiveReport::default();
    let key = store.key.verifying_key();
    let mut entries = Vec::new();
    let mut leaves = Vec::new();
    let mut done = HashSet::new();
    for m in candidates {
        let Some(skey) = parse_session_id(&m.id) else {
            continue;
        };
        let file = format!("{}.bundle.gz", m.id);
        let path = to.join(&file);
        if path.exists() {
            report.skipped.push((
                m.id.clone(),
                format!(
                    "{} already exists; archives are written once",
                    path.display()
                ),
            ));
            continue;
        }
        let mut raw = Vec::new();
        bundle::write(&store.data, &m, &mut raw).map_err(failed)?;
        // The archive must verify before the online copy may go.
        let check = bundle::verify_bundle(&raw, Some(&key)).map_err(RetentionError::Failed)?;
        if !check.problems.is_empty() {
            report.skipped.push((
                m.id.clone(),
                format!("does not verify, kept online: {}", check.problems[0]),
            ));
            continue;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw)?;
        let compressed = gz.finish()?;
        let tmp = path.with_extension("partial");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&compressed)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let sha = hex::encode(Sha256::digest(&compressed));
        let note = format!("archived to {} (sha256 {sha})", path.display());
        leaves.push(leaf(LEAF_SESSION_ARCHIVED, &m, skey, note.clone()));
        entries.push(ArchivedEntry {
            session: m.id.clone(),
            file,
            sha256: sha,
            agent: m.agent.clone(),
            target: m.target.clone(),
            started_ns: m.started_ns,
            ended_ns: m.ended_ns,
            retain_until_ns: m.retain_until_ns,
            ledger_leaf: m.ledger_index.unwrap_or_default(),
        });
        done.insert(skey);
        report.archived.push(m.id.clone());
    }
    if entries.is_empty() {
        return Ok(report);
    }
    crate::recorder::segment::sync_dir(to)?;
    let indexes = store.recorder.ledger(leaves).await.map_err(failed)?;
    {
        let index = store.index();
        for (e, _) in entries.iter().zip(indexes) {
            if let Some(k) = parse_session_id(&e.session) {
                let place = to.join(&e.file).display().to_string();
                index
                    .update(&k, |m| m.archived = Some(place))
                    .map_err(failed)?;
            }
        }
    }
    let manifest = Manifest {
        format: "proctor-archive 1".into(),
        created_ns: now,
        public_key_pem: signing::public_key_pem(&key),
        sessions: entries,
    };
    let mpath = to.join(format!("MANIFEST-{now}.json"));
    {
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&mpath)?;
        f.write_all(
            serde_json::to_string_pretty(&manifest)
                .map_err(failed)?
                .as_bytes(),
        )?;
        f.sync_all()?;
    }
    crate::recorder::segment::sync_dir(to)?;
    report.manifest = Some(mpath.clone());
    report.compacted_bytes = drop_online(store, &done).await?;
    store
        .recorder
        .journal(
            "archive",
            &format!(
                "archived {} session(s) to {}; manifest {}",
                report.archived.len(),
                to.display(),
                mpath.display()
            ),
        )
        .await
        .map_err(failed)?;
    Ok(report)
}

#[derive(Debug, Default, Serialize)]
pub struct PurgeReport {
    pub purged: Vec<String>,
    pub refused: Vec<(String, String)>,
    pub compacted_bytes: u64,
}

/// Purges sessions past their retention and not under legal hold: all such sessions with
/// `session = None`, else the one named (refused, and recorded, if it is not yet expired).
pub async fn purge(
    store: &Store,
    session: Option<&str>,
    default_total: Duration,
    by: &str,
) -> Result<PurgeReport, RetentionError> {
    let now = now_ns();
    let mut report = PurgeReport::default();
    let metas: Vec<SessionMeta> = {
        let index = store.index();
        match session {
            Some(id) => vec![crate::ops::find_session(index, id).map_err(failed)?],
            None => index
                .all_sessions()
                .map_err(failed)?
                .into_iter()
                .filter(|m| m.sealed && !m.purged)
                .collect(),
        }
    };
    let mut leaves = Vec::new();
    let mut keys = HashSet::new();
    for m in metas {
        let until = retain_until(&m, default_total);
        let refusal = if !m.sealed {
            Some("the session is still open".to_string())
        } else if m.purged {
            Some("already purged".to_string())
        } else if let Some(h) = &m.legal_hold {
            Some(format!("under legal hold ({h})"))
        } else if until > now {
            Some(format!("retained until {}", format_ns(until)))
        } else {
            None
        };
        if let Some(why) = refusal {
            if session.is_some() {
                store
                    .recorder
                    .journal(
                        "purge_refused",
                        &format!("{} purge requested by {by} refused: {why}", m.id),
                    )
                    .await
                    .map_err(failed)?;
            }
            report.refused.push((m.id.clone(), why));
            continue;
        }
        let Some(key) = parse_session_id(&m.id) else {
            continue;
        };
        leaves.push(leaf(
            LEAF_SESSION_PURGED,
            &m,
            key,
            format!("purged by {by}: retention ended {}", format_ns(until)),
        ));
        keys.insert(key);
        report.purged.push(m.id.clone());
    }
    if leaves.is_empty() {
        return Ok(report);
    }
    store.recorder.ledger(leaves).await.map_err(failed)?;
    {
        let index = store.index();
        for k in &keys {
            index.update(k, |m| m.purged = true).map_err(failed)?;
        }
    }
    report.compacted_bytes = drop_online(store, &keys).await?;
    store
        .recorder
        .journal(
            "purge",
            &format!(
                "{by} purged {} expired session(s): {}",
                report.purged.len(),
                report.purged.join(", ")
            ),
        )
        .await
        .map_err(failed)?;
    Ok(report)
}

/// Places or releases a legal hold (recorded in the journal, which the index follows).
pub async fn legal_hold(
    store: &Store,
    session: &str,
    reason: &str,
    release: bool,
    by: &str,
) -> Result<String, RetentionError> {
    let meta = {
        let index = store.index();
        crate::ops::find_session(index, session).map_err(failed)?
    };
    if !release && reason.trim().is_empty() {
        return Err(RetentionError::Refused(
            "a legal hold needs a reason".into(),
        ));
    }
    let (topic, text) = if release {
        (
            "legal_hold_release",
            format!("{} released by {by}: {reason}", meta.id),
        )
    } else {
        (
            "legal_hold",
            format!("{} {reason} (placed by {by})", meta.id),
        )
    };
    store.recorder.journal(topic, &text).await.map_err(failed)?;
    // The index learns it from the journal record once the writer has indexed it.
    store.recorder.barrier().await.map_err(failed)?;
    store.flush_index();
    Ok(meta.id)
}

#[derive(Debug, Default, Serialize)]
pub struct ArchiveCheck {
    pub manifests: usize,
    pub sessions: usize,
    pub problems: Vec<String>,
}

/// Verifies an archive directory on its own: every manifest entry's file exists, has the
/// recorded SHA-256, and its bundle verifies with the pinned key (or the manifest's key).
pub fn verify_archive(
    dir: &Path,
    pinned: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<ArchiveCheck, RetentionError> {
    let mut check = ArchiveCheck::default();
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("MANIFEST-") && n.ends_with(".json"))
        })
        .collect();
    manifests.sort();
    if manifests.is_empty() {
        return Err(RetentionError::Failed(format!(
            "{}: no MANIFEST-*.json",
            dir.display()
        )));
    }
    for mp in manifests {
        check.manifests += 1;
        let m: Manifest = serde_json::from_slice(&std::fs::read(&mp)?)
            .map_err(|e| failed(format!("{}: {e}", mp.display())))?;
        let key = match pinned {
            Some(k) => *k,
            None => signing::parse_public_key(&m.public_key_pem).map_err(failed)?,
        };
        for e in &m.sessions {
            check.sessions += 1;
            let path = dir.join(&e.file);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(err) => {
                    check.problems.push(format!(
                        "session {}: {} unreadable: {err}",
                        e.session,
                        path.display()
                    ));
                    continue;
                }
            };
            if hex::encode(Sha256::digest(&bytes)) != e.sha256 {
                check.problems.push(format!(
                    "session {}: {} does not match the manifest's SHA-256",
                    e.session, e.file
                ));
                continue;
            }
            let mut raw = Vec::new();
            if let Err(err) = flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut raw) {
                check.problems.push(format!(
                    "session {}: {} is not valid gzip: {err}",
                    e.session, e.file
                ));
                continue;
            }
            match bundle::verify_bundle(&raw, Some(&key)) {
                Ok(r) if r.problems.is_empty() => {}
                Ok(r) => check
                    .problems
                    .push(format!("session {}: {}", e.session, r.problems[0])),
                Err(err) => check.problems.push(format!("session {}: {err}", e.session)),
            }
        }
    }
    Ok(check)
}
