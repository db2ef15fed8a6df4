//! Recovery of sessions a crash cut off (FORMAT.md, "Recovery"): each is sealed `interrupted`
//! after a `recovered` record that names the first record no signature made before the crash
//! covers, so the restart never turns unsigned records into signed evidence unmarked; and the
//! ledger is completed for sessions whose leaf the crash cut off.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use proctor_gate::Outcome;

use super::codec::{self, Body, kind};
use super::frame::{FRAME_HEADER_LEN, SessionKey};
use super::index::{SessionMeta, parse_session_id};
use super::ledger::{self, Entry, LEAF_SESSION_OPENED, LEAF_SESSION_SEALED, Leaf};
use super::verify::{ChainCheck, check_record};
use super::wire::Writer;
use super::{RecorderError, Store, Urgency};
use crate::clock::now_ns;

fn failed(e: impl std::fmt::Display) -> RecorderError {
    RecorderError::Failed(e.to_string())
}

/// Runs the chain check over one session's records as stored, with the last position a store
/// checkpoint signed (as the index learnt it from the journal; `verify` recomputes it from the
/// journal itself, so a wrong one makes the `recovered` record fail, never pass).
fn check_chain(data: &Path, meta: &SessionMeta, key: &VerifyingKey) -> std::io::Result<ChainCheck> {
    let key_id = super::signing::key_id(key);
    let mut store_signed = [0u8; 32];
    let store_signed = meta.store_signed.as_ref().and_then(|(seq, h)| {
        hex::decode_to_slice(h, &mut store_signed)
            .ok()
            .map(|()| (*seq, store_signed))
    });
    let mut c = ChainCheck::new();
    super::reader::for_each_record(data, meta, |r| {
        if let Some(record) = r
            .frame
            .get(FRAME_HEADER_LEN..)
            .and_then(|b| super::frame::parse_record(b).ok())
        {
            let _ = check_record(&mut c, &record, key, &key_id);
            if let Some((seq, hash)) = store_signed
                && record.header.seq == seq
            {
                let _ = c.signed_by_store(seq, &hash);
            }
        }
        ControlFlow::Continue(())
    })?;
    Ok(c)
}

/// The opened leaf of a session, from its verified session_start record.
fn opened_leaf(session: SessionKey, c: &ChainCheck) -> Option<Leaf> {
    Some(Leaf {
        kind: LEAF_SESSION_OPENED,
        session,
        final_seq: 0,
        final_hash: c.start_hash?,
        started_ns: c.started_ns?,
        ended_ns: 0,
        agent: c.agent().to_string(),
        target: c.target().to_string(),
        outcome: String::new(),
        logged_ns: 0,
        note: "appended at restart: the crash came between the first record and its ledger entry"
            .into(),
    })
}

/// Sessions with a sealed leaf, and sessions with an opened leaf.
fn ledger_sessions(
    data: &Path,
) -> Result<(HashSet<SessionKey>, HashSet<SessionKey>), RecorderError> {
    let scan = ledger::scan_ledger(&ledger::ledger_path(data)).map_err(failed)?;
    let mut sealed = HashSet::new();
    let mut opened = HashSet::new();
    for (_, e) in scan.entries {
        if let Entry::Leaf { data, .. } = e
            && let Ok(l) = Leaf::decode(&data)
        {
            match l.kind {
                LEAF_SESSION_SEALED => {
                    sealed.insert(l.session);
                }
                LEAF_SESSION_OPENED => {
                    opened.insert(l.session);
                }
                _ => {}
            }
        }
    }
    Ok((sealed, opened))
}

/// Seals every session a crash left open: its opened leaf if the crash cut it off, the
/// `recovered` record when records follow its last signature, retention, end and seal.
pub async fn seal_open_sessions(store: &mut Store) -> Result<(), RecorderError> {
    let open = store.index().open_sessions();
    if open.is_empty() {
        return Ok(());
    }
    let key = store.key.verifying_key();
    let format2 = store.ledger().is_format2();
    let (_, opened) = ledger_sessions(&store.data)?;
    for meta in open {
        let Some(session) = parse_session_id(&meta.id) else {
            continue;
        };
        let chain = check_chain(&store.data, &meta, &key).map_err(failed)?;
        if format2
            && !opened.contains(&session)
            && let Some(leaf) = opened_leaf(session, &chain)
        {
            store.recorder.ledger(vec![leaf]).await?;
            store.recovery.notes.push(format!(
                "session {}: opened leaf added at restart (the crash came between its first record and its ledger entry)",
                meta.id
            ));
        }
        let unsigned_from = chain.unsigned_from();
        if unsigned_from <= meta.last_seq {
            let note = format!(
                "proctor restarted after a crash: seq {unsigned_from} to {} were written after the last checkpoint (of the session or of the store); no signature made before the crash covers them",
                meta.last_seq
            );
            let mut w = Writer::default();
            codec::encode_body(
                &Body::Recovered {
                    unsigned_from,
                    note: note.clone(),
                },
                &mut w,
            );
            store
                .recorder
                .append_raw(session, now_ns(), kind::RECOVERED, w.buf, Urgency::Now)
                .await?
                .wait()
                .await?;
            store
                .recovery
                .notes
                .push(format!("session {}: {note}", meta.id));
        }
        let now = now_ns();
        let (online, total) = store.default_retention;
        store
            .recorder
            .record(
                session,
                now,
                &proctor_gate::Event::Retention {
                    online_until_ns: crate::clock::after(now, online),
                    retain_until_ns: crate::clock::after(now, total),
                    policy: "default (sealed at restart)".into(),
                },
            )
            .await?;
        let reason = "proctor stopped before this session ended (sealed at restart)";
        store
            .recorder
            .seal(session, now_ns(), Outcome::Interrupted, reason)
            .await?;
        tracing::warn!(session = %meta.id, "sealed an interrupted session");
        store.recovery.interrupted_sessions.push(meta.id.clone());
    }
    Ok(())
}

/// Completes the ledger: sealed sessions whose leaf a crash cut off, then, for a ledger of
/// format 1, the format leaf from which every session is listed when it opens.
pub async fn fill_ledger(store: &mut Store) -> Result<(), RecorderError> {
    let unledgered = store.index().unledgered_sessions().map_err(failed)?;
    let (sealed, opened) = ledger_sessions(&store.data)?;
    let format2 = store.ledger().is_format2();
    let key = store.key.verifying_key();
    let mut leaves = Vec::new();
    for meta in unledgered {
        let Some(session) = parse_session_id(&meta.id) else {
            continue;
        };
        if sealed.contains(&session) {
            continue;
        }
        let mut final_hash = [0u8; 32];
        if hex::decode_to_slice(&meta.last_hash, &mut final_hash).is_err() {
            continue;
        }
        if format2 && !opened.contains(&session) {
            let chain = check_chain(&store.data, &meta, &key).map_err(failed)?;
            leaves.extend(opened_leaf(session, &chain));
        }
        leaves.push(Leaf {
            kind: LEAF_SESSION_SEALED,
            session,
            final_seq: meta.last_seq,
            final_hash,
            started_ns: meta.started_ns,
            ended_ns: meta.last_ts_ns,
            agent: meta.agent.clone(),
            target: meta.target.clone(),
            outcome: meta.outcome.clone().unwrap_or_default(),
            logged_ns: 0,
            note: "appended at restart: the seal was durable but the ledger append was interrupted"
                .into(),
        });
        store.recovery.notes.push(format!(
            "session {}: ledger entry completed at restart",
            meta.id
        ));
    }
    if !leaves.is_empty() {
        store.recorder.ledger(leaves).await?;
    }
    if !store.ledger().is_format2() {
        store.recorder.ledger(vec![Leaf::format(now_ns())]).await?;
        store.recovery.notes.push(
            "ledger upgraded to format 2: from here on every session is listed when it opens"
                .into(),
        );
    }
    Ok(())
}
