//! Record bodies: `Body` <-> bytes, exactly as FORMAT.md lays them out.
//!
//! This file holds the record kinds and the body framing; events are written by
//! `codec/encode.rs` and read by `codec/decode.rs`.

mod decode;
mod encode;

use proctor_gate::Event;

use super::wire::{DecodeError, Reader, Writer};

use self::decode::decode_event;
pub use self::encode::encode_event_into;

/// A signature by the recorder key over a point of a chain (checkpoint or seal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Sequence number and hash of the record this signature covers (the one just before).
    pub covered_seq: u64,
    pub covered_hash: [u8; 32],
    /// SHA-256 of the 32-byte public key that made the signature.
    pub key_id: [u8; 32],
    pub signature: [u8; 64],
}

/// Everything a record can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Event(Event),
    Checkpoint(Signed),
    Seal(Signed),
    /// Written by proctor's restart into a chain a crash left open, before it seals it: the
    /// records from `unsigned_from` to the one before this are covered by no signature made
    /// before the crash.
    Recovered {
        unsigned_from: u64,
        note: String,
    },
    /// The store checkpoint: one signature over the latest position of every chain written
    /// since the previous one (store journal only; see `store_checkpoint`).
    StoreCheckpoint(super::store_checkpoint::StoreCheckpoint),
    /// A body stored out of line (FORMAT.md, "External bodies"): the record stands for a
    /// record of `kind` whose body is the blob of `size` bytes with this SHA-256.
    External(super::blobs::External),
    /// Store-level facts (recovery, auditor access...), only in the store journal chain.
    JournalNote {
        topic: String,
        text: String,
    },
}

pub mod kind {
    pub const SESSION_START: u8 = 1;
    pub const SESSION_END: u8 = 2;
    pub const CLIENT_PARAMS: u8 = 3;
    pub const CHANNEL_OPEN: u8 = 4;
    pub const CHANNEL_REQUEST: u8 = 5;
    pub const RESIZE: u8 = 6;
    pub const INPUT: u8 = 7;
    pub const OUTPUT: u8 = 8;
    pub const EXEC: u8 = 9;
    pub const COMMAND_LINE: u8 = 10;
    pub const EXIT_STATUS: u8 = 11;
    pub const EXIT_SIGNAL: u8 = 12;
    pub const CHANNEL_CLOSE: u8 = 13;
    pub const SFTP: u8 = 14;
    pub const STATEMENT: u8 = 15;
    pub const RESULT: u8 = 16;
    pub const COPY: u8 = 17;
    pub const TARGET_MESSAGE: u8 = 18;
    pub const VERDICT: u8 = 19;
    pub const APPROVAL: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const ANNOTATION: u8 = 22;
    pub const CREDENTIAL_ISSUED: u8 = 23;
    pub const CREDENTIAL_REVOKED: u8 = 24;
    pub const PROTOCOL_ERROR: u8 = 25;
    pub const RETENTION: u8 = 26;
    pub const CHECKPOINT: u8 = 64;
    pub const SEAL: u8 = 65;
    pub const RECOVERED: u8 = 66;
    pub const STORE_CHECKPOINT: u8 = 67;
    pub const EXTERNAL: u8 = 68;
    pub const JOURNAL_NOTE: u8 = 96;
}

pub fn kind_of(body: &Body) -> u8 {
    match body {
        Body::Checkpoint(_) => kind::CHECKPOINT,
        Body::Seal(_) => kind::SEAL,
        Body::JournalNote { .. } => kind::JOURNAL_NOTE,
        Body::Recovered { .. } => kind::RECOVERED,
        Body::StoreCheckpoint(_) => kind::STORE_CHECKPOINT,
        Body::External(_) => kind::EXTERNAL,
        Body::Event(e) => event_kind(e),
    }
}

pub fn event_kind(e: &Event) -> u8 {
    use kind::*;
    match e {
        Event::SessionStart(_) => SESSION_START,
        Event::SessionEnd { .. } => SESSION_END,
        Event::ClientParams { .. } => CLIENT_PARAMS,
        Event::ChannelOpen { .. } => CHANNEL_OPEN,
        Event::ChannelRequest { .. } => CHANNEL_REQUEST,
        Event::Resize { .. } => RESIZE,
        Event::Input { .. } => INPUT,
        Event::Output { .. } => OUTPUT,
        Event::Exec { .. } => EXEC,
        Event::CommandLine { .. } => COMMAND_LINE,
        Event::ExitStatus { .. } => EXIT_STATUS,
        Event::ExitSignal { .. } => EXIT_SIGNAL,
        Event::ChannelClose { .. } => CHANNEL_CLOSE,
        Event::Sftp(_) => SFTP,
        Event::Statement(_) => STATEMENT,
        Event::StatementResult(_) => RESULT,
        Event::Copy { .. } => COPY,
        Event::TargetMessage { .. } => TARGET_MESSAGE,
        Event::Verdict(_) => VERDICT,
        Event::Approval(_) => APPROVAL,
        Event::Alert(_) => ALERT,
        Event::Annotation { .. } => ANNOTATION,
        Event::CredentialIssued(_) => CREDENTIAL_ISSUED,
        Event::CredentialRevoked { .. } => CREDENTIAL_REVOKED,
        Event::ProtocolError { .. } => PROTOCOL_ERROR,
        Event::Retention { .. } => RETENTION,
    }
}

/// Short name of a kind code, for reports about records that could not be decoded.
pub fn kind_name(code: u8) -> &'static str {
    use kind::*;
    match code {
        SESSION_START => "session_start",
        SESSION_END => "session_end",
        CLIENT_PARAMS => "client_params",
        CHANNEL_OPEN => "channel_open",
        CHANNEL_REQUEST => "channel_request",
        RESIZE => "resize",
        INPUT => "input",
        OUTPUT => "output",
        EXEC => "exec",
        COMMAND_LINE => "command_line",
        EXIT_STATUS => "exit_status",
        EXIT_SIGNAL => "exit_signal",
        CHANNEL_CLOSE => "channel_close",
        SFTP => "sftp",
        STATEMENT => "statement",
        RESULT => "result",
        COPY => "copy",
        TARGET_MESSAGE => "target_message",
        VERDICT => "verdict",
        APPROVAL => "approval",
        ALERT => "alert",
        ANNOTATION => "annotation",
        CREDENTIAL_ISSUED => "credential_issued",
        CREDENTIAL_REVOKED => "credential_revoked",
        PROTOCOL_ERROR => "protocol_error",
        RETENTION => "retention",
        CHECKPOINT => "checkpoint",
        SEAL => "seal",
        RECOVERED => "recovered",
        STORE_CHECKPOINT => "store_checkpoint",
        EXTERNAL => "external",
        JOURNAL_NOTE => "journal_note",
        _ => "unknown",
    }
}

fn bad(field: &'static str, value: &str) -> DecodeError {
    DecodeError::BadValue {
        field,
        value: value.chars().take(64).collect(),
    }
}

pub fn encode_body(body: &Body, w: &mut Writer) {
    match body {
        Body::Checkpoint(s) | Body::Seal(s) => {
            w.u64(s.covered_seq);
            w.h32(&s.covered_hash);
            w.h32(&s.key_id);
            w.bytes(&s.signature);
        }
        Body::JournalNote { topic, text } => {
            w.str(topic);
            w.str(text);
        }
        Body::Recovered {
            unsigned_from,
            note,
        } => {
            w.u64(*unsigned_from);
            w.str(note);
        }
        Body::StoreCheckpoint(c) => c.encode(w),
        Body::External(e) => e.encode(w),
        Body::Event(e) => encode_event_into(e, w),
    }
}

pub fn decode_body(kind_code: u8, data: &[u8]) -> Result<Body, DecodeError> {
    use kind::*;
    let mut r = Reader::new(data);
    let body = match kind_code {
        CHECKPOINT | SEAL => {
            let covered_seq = r.u64()?;
            let covered_hash = r.h32()?;
            let key_id = r.h32()?;
            let sig = r.bytes()?;
            let signature: [u8; 64] = sig
                .try_into()
                .map_err(|_| bad("signature length", &sig.len().to_string()))?;
            let s = Signed {
                covered_seq,
                covered_hash,
                key_id,
                signature,
            };
            if kind_code == CHECKPOINT {
                Body::Checkpoint(s)
            } else {
                Body::Seal(s)
            }
        }
        JOURNAL_NOTE => Body::JournalNote {
            topic: r.str()?,
            text: r.str()?,
        },
        RECOVERED => Body::Recovered {
            unsigned_from: r.u64()?,
            note: r.str()?,
        },
        EXTERNAL => Body::External(super::blobs::External::decode(&mut r)?),
        STORE_CHECKPOINT => {
            Body::StoreCheckpoint(super::store_checkpoint::StoreCheckpoint::decode(&mut r)?)
        }
        other => Body::Event(decode_event(other, &mut r)?),
    };
    r.finish()?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proctor_gate::{
        CredentialRecord, Event, Outcome, OutputStream, Param, Privilege, Protocol, SessionInfo,
        SftpOp, SqlError, Statement, StatementClass, StatementResult,
    };

    fn roundtrip(e: Event) {
        let body = Body::Event(e);
        let mut w = Writer::default();
        encode_body(&body, &mut w);
        let back = decode_body(kind_of(&body), &w.buf).expect("decodes");
        assert_eq!(back, body);
    }

    #[test]
    fn every_event_kind_round_trips() {
        roundtrip(Event::SessionStart(SessionInfo {
            agent: "a".into(),
            target: "t".into(),
            protocol: Protocol::Postgres,
            login: "app_write".into(),
            privilege: Privilege::Elevated,
            client_addr: "127.0.0.1:5".into(),
            grant: "g".into(),
            proctor_version: "0.1".into(),
        }));
        roundtrip(Event::SessionEnd {
            outcome: Outcome::TargetLost,
            reason: "x".into(),
        });
        roundtrip(Event::ClientParams {
            params: vec![("application_name".into(), "psql".into())],
        });
        roundtrip(Event::Output {
            channel: 3,
            stream: OutputStream::Stderr,
            data: Bytes::from_static(b"\x00\xffhello"),
        });
        roundtrip(Event::Statement(Statement {
            id: 7,
            text: "select $1".into(),
            params: vec![
                Param {
                    binary: true,
                    value: Some(Bytes::from_static(&[0, 0, 0, 1])),
                },
                Param {
                    binary: false,
                    value: None,
                },
            ],
            statement_name: "s1".into(),
            portal: "".into(),
            extended: true,
            class: StatementClass::Read,
            command: "SELECT".into(),
            tables: vec!["public.t".into()],
            reasoning: Some("because".into()),
            runs: None,
        }));
        roundtrip(Event::StatementResult(StatementResult {
            statement_id: 7,
            tag: "SELECT 1".into(),
            rows: 1,
            error: Some(SqlError {
                severity: "ERROR".into(),
                code: "42501".into(),
                message: "no".into(),
            }),
            duration_ns: 5,
            columns: vec!["a".into()],
            sample_rows: vec![vec![Some("1".into()), None]],
            digest: [9; 32],
            suspended: true,
        }));
        roundtrip(Event::Sftp(SftpOp {
            channel: 1,
            op: "open".into(),
            path: "/x".into(),
            target_path: "".into(),
            detail: "write".into(),
            bytes_read: 1,
            bytes_written: 2,
            digest_read: None,
            digest_written: Some([1; 32]),
            status: "ok".into(),
        }));
        roundtrip(Event::CredentialIssued(CredentialRecord {
            kind: "ssh-certificate".into(),
            name: "k".into(),
            serial: 4,
            principals: vec!["root".into()],
            valid_after_ns: -1,
            valid_before_ns: 2,
            detail: "".into(),
        }));
    }

    #[test]
    fn hostile_bodies_fail_cleanly() {
        // A list count of 2^32-1 with no items must not allocate or panic.
        let data = [0xff, 0xff, 0xff, 0xff];
        assert!(decode_body(kind::CLIENT_PARAMS, &data).is_err());
        assert!(decode_body(kind::INPUT, &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_body(200, &[]).is_err());
        assert!(decode_body(kind::SEAL, &[0; 10]).is_err());
    }
}
