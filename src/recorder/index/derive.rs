//! What a record says about its session: the metadata the index keeps, derived from the
//! records alone (the bundle verifier derives a manifest's metadata with the same code).

use proctor_gate::{Event, VerdictKind};

use super::{CredentialSummary, Indexed, SessionMeta};
use crate::recorder::codec::{self, Body, kind};
use crate::recorder::frame::JOURNAL_SESSION;

/// Applies what one record says to a session's metadata (everything but where the record is
/// stored). Returns false for a record already applied. The bundle verifier uses the same
/// derivation, so a manifest's metadata is checked against exactly what the records say.
pub fn derive(meta: &mut SessionMeta, rec: &Indexed<'_>) -> bool {
    if meta.events > 0 && rec.seq <= meta.last_seq {
        return false;
    }
    meta.events += 1;
    meta.last_seq = rec.seq;
    meta.last_hash = hex::encode(rec.hash);
    meta.last_ts_ns = rec.ts_ns;
    meta.record_bytes += rec.frame_len;
    // A record stored out of line counts as the record it stands for (FORMAT.md, "External
    // bodies"); its kind is in the record itself, so no blob is read.
    match crate::recorder::blobs::effective_kind(rec.kind, rec.body) {
        kind::STATEMENT => meta.statements += 1,
        kind::EXEC | kind::COMMAND_LINE => meta.commands += 1,
        kind::ALERT => meta.alerts += 1,
        kind::SEAL => {
            meta.sealed = true;
            meta.store_signed = None;
        }
        kind::STORE_CHECKPOINT => meta.last_store_checkpoint = Some(hex::encode(rec.hash)),
        _ => {}
    }
    if wants_body(rec.kind)
        && let Ok(Body::Event(event)) = codec::decode_body(rec.kind, rec.body)
    {
        match event {
            Event::SessionStart(info) => {
                meta.agent = info.agent;
                meta.target = info.target;
                meta.protocol = info.protocol.as_str().into();
                meta.login = info.login;
                meta.privilege = info.privilege.as_str().into();
                meta.client_addr = info.client_addr;
                meta.grant = info.grant;
                meta.started_ns = rec.ts_ns;
            }
            Event::SessionEnd { outcome, reason } => {
                meta.outcome = Some(outcome.as_str().into());
                meta.end_reason = reason;
                meta.ended_ns = Some(rec.ts_ns);
            }
            Event::CredentialIssued(c) => meta.credentials.push(CredentialSummary {
                kind: c.kind,
                name: c.name,
                valid_before_ns: c.valid_before_ns,
                revoked: false,
            }),
            Event::CredentialRevoked { name, .. } => {
                for c in meta.credentials.iter_mut().filter(|c| c.name == name) {
                    c.revoked = true;
                }
            }
            Event::Verdict(v) => match v.verdict {
                VerdictKind::Hold => meta.holds += 1,
                VerdictKind::Deny => meta.denies += 1,
                VerdictKind::Allow => {}
            },
            Event::Retention {
                online_until_ns,
                retain_until_ns,
                ..
            } => {
                meta.online_until_ns = Some(online_until_ns);
                meta.retain_until_ns = Some(retain_until_ns);
            }
            _ => {}
        }
    }

    if rec.session == JOURNAL_SESSION {
        meta.agent = "proctor".into();
        meta.target = "store".into();
        meta.protocol = "journal".into();
    }
    true
}

/// Whether the index needs a record's body (only a few kinds carry searchable metadata).
pub fn wants_body(kind_code: u8) -> bool {
    matches!(
        kind_code,
        kind::SESSION_START
            | kind::SESSION_END
            | kind::CREDENTIAL_ISSUED
            | kind::CREDENTIAL_REVOKED
            | kind::VERDICT
            | kind::RETENTION
            | kind::JOURNAL_NOTE
            | kind::STORE_CHECKPOINT
            | kind::EXTERNAL
    )
}
