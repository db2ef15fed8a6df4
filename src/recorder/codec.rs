//! Record bodies: `Body` <-> bytes, exactly as FORMAT.md lays them out.

use bytes::Bytes;
use proctor_gate::{
    AlertRecord, ApprovalOutcome, ApprovalRecord, ChannelKind, CredentialRecord, Direction, Event,
    Outcome, OutputStream, Param, Party, Privilege, Protocol, SessionInfo, SftpOp, SqlError,
    Statement, StatementClass, StatementResult, TransferSummary, VerdictKind, VerdictRecord,
};

use super::wire::{DecodeError, Reader, Writer};

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

fn channel_kind_str(k: ChannelKind) -> &'static str {
    k.as_str()
}

fn parse_channel_kind(s: &str) -> Result<ChannelKind, DecodeError> {
    Ok(match s {
        "session" => ChannelKind::Session,
        "shell" => ChannelKind::Shell,
        "exec" => ChannelKind::Exec,
        "sftp" => ChannelKind::Sftp,
        "subsystem" => ChannelKind::Subsystem,
        "direct-tcpip" => ChannelKind::DirectTcpip,
        "forwarded-tcpip" => ChannelKind::ForwardedTcpip,
        other => return Err(bad("channel kind", other)),
    })
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

pub fn encode_event_into(e: &Event, w: &mut Writer) {
    match e {
        Event::SessionStart(s) => {
            w.str(&s.agent);
            w.str(&s.target);
            w.str(s.protocol.as_str());
            w.str(&s.login);
            w.str(s.privilege.as_str());
            w.str(&s.client_addr);
            w.str(&s.grant);
            w.str(&s.proctor_version);
        }
        Event::SessionEnd { outcome, reason } => {
            w.str(outcome.as_str());
            w.str(reason);
        }
        Event::ClientParams { params } => w.list(params.iter(), |w, (k, v)| {
            w.str(k);
            w.str(v);
        }),
        Event::ChannelOpen {
            channel,
            kind,
            detail,
        } => {
            w.u32(*channel);
            w.str(channel_kind_str(*kind));
            w.str(detail);
        }
        Event::ChannelRequest {
            channel,
            request,
            detail,
            accepted,
        } => {
            w.u32(*channel);
            w.str(request);
            w.str(detail);
            w.bool(*accepted);
        }
        Event::Resize {
            channel,
            cols,
            rows,
        } => {
            w.u32(*channel);
            w.u32(*cols);
            w.u32(*rows);
        }
        Event::Input { channel, data } => {
            w.u32(*channel);
            w.bytes(data);
        }
        Event::Output {
            channel,
            stream,
            data,
        } => {
            w.u32(*channel);
            w.u8(match stream {
                OutputStream::Stdout => 1,
                OutputStream::Stderr => 2,
            });
            w.bytes(data);
        }
        Event::Exec { channel, command } => {
            w.u32(*channel);
            w.str(command);
        }
        Event::CommandLine { channel, line } => {
            w.u32(*channel);
            w.str(line);
        }
        Event::ExitStatus { channel, status } => {
            w.u32(*channel);
            w.u32(*status);
        }
        Event::ExitSignal {
            channel,
            signal,
            message,
        } => {
            w.u32(*channel);
            w.str(signal);
            w.str(message);
        }
        Event::ChannelClose { channel, summary } => {
            w.u32(*channel);
            w.u64(summary.bytes_in);
            w.u64(summary.bytes_out);
            w.h32(&summary.digest_in);
            w.h32(&summary.digest_out);
        }
        Event::Sftp(op) => {
            w.u32(op.channel);
            w.str(&op.op);
            w.str(&op.path);
            w.str(&op.target_path);
            w.str(&op.detail);
            w.u64(op.bytes_read);
            w.u64(op.bytes_written);
            w.opt(op.digest_read.as_ref(), |w, d| w.h32(d));
            w.opt(op.digest_written.as_ref(), |w, d| w.h32(d));
            w.str(&op.status);
        }
        Event::Statement(s) => {
            w.u64(s.id);
            w.str(&s.text);
            w.list(s.params.iter(), |w, p| {
                w.bool(p.binary);
                w.opt(p.value.as_ref(), |w, v| w.bytes(v));
            });
            w.str(&s.statement_name);
            w.str(&s.portal);
            w.bool(s.extended);
            w.str(s.class.as_str());
            w.str(&s.command);
            w.list(s.tables.iter(), |w, t| w.str(t));
            w.opt(s.reasoning.as_deref(), |w, r| w.str(r));
        }
        Event::StatementResult(r) => {
            w.u64(r.statement_id);
            w.str(&r.tag);
            w.u64(r.rows);
            w.opt(r.error.as_ref(), |w, e| {
                w.str(&e.severity);
                w.str(&e.code);
                w.str(&e.message);
            });
            w.u64(r.duration_ns);
            w.list(r.columns.iter(), |w, c| w.str(c));
            w.list(r.sample_rows.iter(), |w, row| {
                w.list(row.iter(), |w, cell| {
                    w.opt(cell.as_deref(), |w, c| w.str(c))
                });
            });
            w.h32(&r.digest);
            w.bool(r.suspended);
        }
        Event::Copy {
            statement_id,
            direction,
            bytes,
            digest,
        } => {
            w.u64(*statement_id);
            w.str(direction.as_str());
            w.u64(*bytes);
            w.h32(digest);
        }
        Event::TargetMessage { kind, text } => {
            w.str(kind);
            w.str(text);
        }
        Event::Verdict(v) => {
            w.str(&v.subject);
            w.str(v.verdict.as_str());
            w.str(&v.rule);
            w.str(&v.reason);
            w.str(&v.approval_id);
        }
        Event::Approval(a) => {
            w.str(&a.approval_id);
            w.str(a.outcome.as_str());
            w.str(&a.approver);
            w.str(&a.reason);
        }
        Event::Alert(a) => {
            w.str(&a.rule);
            w.str(&a.severity);
            w.str(&a.message);
        }
        Event::Annotation { source, text } => {
            w.str(source);
            w.str(text);
        }
        Event::CredentialIssued(c) => {
            w.str(&c.kind);
            w.str(&c.name);
            w.u64(c.serial);
            w.list(c.principals.iter(), |w, p| w.str(p));
            w.i64(c.valid_after_ns);
            w.i64(c.valid_before_ns);
            w.str(&c.detail);
        }
        Event::CredentialRevoked { name, detail } => {
            w.str(name);
            w.str(detail);
        }
        Event::ProtocolError { party, message } => {
            w.str(party.as_str());
            w.str(message);
        }
        Event::Retention {
            online_until_ns,
            retain_until_ns,
            policy,
        } => {
            w.i64(*online_until_ns);
            w.i64(*retain_until_ns);
            w.str(policy);
        }
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

fn decode_event(kind_code: u8, r: &mut Reader<'_>) -> Result<Event, DecodeError> {
    use kind::*;
    Ok(match kind_code {
        SESSION_START => {
            let agent = r.str()?;
            let target = r.str()?;
            let protocol = r.str()?;
            let login = r.str()?;
            let privilege = r.str()?;
            Event::SessionStart(SessionInfo {
                agent,
                target,
                protocol: Protocol::parse(&protocol).ok_or_else(|| bad("protocol", &protocol))?,
                login,
                privilege: Privilege::parse(&privilege)
                    .ok_or_else(|| bad("privilege", &privilege))?,
                client_addr: r.str()?,
                grant: r.str()?,
                proctor_version: r.str()?,
            })
        }
        SESSION_END => {
            let outcome = r.str()?;
            Event::SessionEnd {
                outcome: Outcome::parse(&outcome).ok_or_else(|| bad("outcome", &outcome))?,
                reason: r.str()?,
            }
        }
        CLIENT_PARAMS => Event::ClientParams {
            params: r.list(|r| Ok((r.str()?, r.str()?)))?,
        },
        CHANNEL_OPEN => Event::ChannelOpen {
            channel: r.u32()?,
            kind: parse_channel_kind(&r.str()?)?,
            detail: r.str()?,
        },
        CHANNEL_REQUEST => Event::ChannelRequest {
            channel: r.u32()?,
            request: r.str()?,
            detail: r.str()?,
            accepted: r.bool()?,
        },
        RESIZE => Event::Resize {
            channel: r.u32()?,
            cols: r.u32()?,
            rows: r.u32()?,
        },
        INPUT => Event::Input {
            channel: r.u32()?,
            data: Bytes::copy_from_slice(r.bytes()?),
        },
        OUTPUT => {
            let channel = r.u32()?;
            let stream = match r.u8()? {
                1 => OutputStream::Stdout,
                2 => OutputStream::Stderr,
                other => return Err(bad("output stream", &other.to_string())),
            };
            Event::Output {
                channel,
                stream,
                data: Bytes::copy_from_slice(r.bytes()?),
            }
        }
        EXEC => Event::Exec {
            channel: r.u32()?,
            command: r.str()?,
        },
        COMMAND_LINE => Event::CommandLine {
            channel: r.u32()?,
            line: r.str()?,
        },
        EXIT_STATUS => Event::ExitStatus {
            channel: r.u32()?,
            status: r.u32()?,
        },
        EXIT_SIGNAL => Event::ExitSignal {
            channel: r.u32()?,
            signal: r.str()?,
            message: r.str()?,
        },
        CHANNEL_CLOSE => Event::ChannelClose {
            channel: r.u32()?,
            summary: TransferSummary {
                bytes_in: r.u64()?,
                bytes_out: r.u64()?,
                digest_in: r.h32()?,
                digest_out: r.h32()?,
            },
        },
        SFTP => Event::Sftp(SftpOp {
            channel: r.u32()?,
            op: r.str()?,
            path: r.str()?,
            target_path: r.str()?,
            detail: r.str()?,
            bytes_read: r.u64()?,
            bytes_written: r.u64()?,
            digest_read: r.opt(|r| r.h32())?,
            digest_written: r.opt(|r| r.h32())?,
            status: r.str()?,
        }),
        STATEMENT => {
            let id = r.u64()?;
            let text = r.str()?;
            let params = r.list(|r| {
                Ok(Param {
                    binary: r.bool()?,
                    value: r.opt(|r| Ok(Bytes::copy_from_slice(r.bytes()?)))?,
                })
            })?;
            let statement_name = r.str()?;
            let portal = r.str()?;
            let extended = r.bool()?;
            let class = r.str()?;
            Event::Statement(Statement {
                id,
                text,
                params,
                statement_name,
                portal,
                extended,
                class: StatementClass::parse(&class).ok_or_else(|| bad("class", &class))?,
                command: r.str()?,
                tables: r.list(|r| r.str())?,
                reasoning: r.opt(|r| r.str())?,
                runs: None,
            })
        }
        RESULT => Event::StatementResult(StatementResult {
            statement_id: r.u64()?,
            tag: r.str()?,
            rows: r.u64()?,
            error: r.opt(|r| {
                Ok(SqlError {
                    severity: r.str()?,
                    code: r.str()?,
                    message: r.str()?,
                })
            })?,
            duration_ns: r.u64()?,
            columns: r.list(|r| r.str())?,
            sample_rows: r.list(|r| r.list(|r| r.opt(|r| r.str())))?,
            digest: r.h32()?,
            suspended: r.bool()?,
        }),
        COPY => {
            let statement_id = r.u64()?;
            let direction = r.str()?;
            Event::Copy {
                statement_id,
                direction: match direction.as_str() {
                    "upload" => Direction::Upload,
                    "download" => Direction::Download,
                    other => return Err(bad("direction", other)),
                },
                bytes: r.u64()?,
                digest: r.h32()?,
            }
        }
        TARGET_MESSAGE => Event::TargetMessage {
            kind: r.str()?,
            text: r.str()?,
        },
        VERDICT => {
            let subject = r.str()?;
            let verdict = r.str()?;
            Event::Verdict(VerdictRecord {
                subject,
                verdict: match verdict.as_str() {
                    "allow" => VerdictKind::Allow,
                    "deny" => VerdictKind::Deny,
                    "hold" => VerdictKind::Hold,
                    other => return Err(bad("verdict", other)),
                },
                rule: r.str()?,
                reason: r.str()?,
                approval_id: r.str()?,
            })
        }
        APPROVAL => {
            let approval_id = r.str()?;
            let outcome = r.str()?;
            Event::Approval(ApprovalRecord {
                approval_id,
                outcome: match outcome.as_str() {
                    "approved" => ApprovalOutcome::Approved,
                    "denied" => ApprovalOutcome::Denied,
                    "timed_out" => ApprovalOutcome::TimedOut,
                    "cancelled" => ApprovalOutcome::Cancelled,
                    other => return Err(bad("approval outcome", other)),
                },
                approver: r.str()?,
                reason: r.str()?,
            })
        }
        ALERT => Event::Alert(AlertRecord {
            rule: r.str()?,
            severity: r.str()?,
            message: r.str()?,
        }),
        ANNOTATION => Event::Annotation {
            source: r.str()?,
            text: r.str()?,
        },
        CREDENTIAL_ISSUED => Event::CredentialIssued(CredentialRecord {
            kind: r.str()?,
            name: r.str()?,
            serial: r.u64()?,
            principals: r.list(|r| r.str())?,
            valid_after_ns: r.i64()?,
            valid_before_ns: r.i64()?,
            detail: r.str()?,
        }),
        CREDENTIAL_REVOKED => Event::CredentialRevoked {
            name: r.str()?,
            detail: r.str()?,
        },
        PROTOCOL_ERROR => {
            let party = r.str()?;
            Event::ProtocolError {
                party: match party.as_str() {
                    "agent" => Party::Agent,
                    "target" => Party::Target,
                    "proctor" => Party::Proctor,
                    other => return Err(bad("party", other)),
                },
                message: r.str()?,
            }
        }
        RETENTION => Event::Retention {
            online_until_ns: r.i64()?,
            retain_until_ns: r.i64()?,
            policy: r.str()?,
        },
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
