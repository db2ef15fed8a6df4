//! Reading an event's fields by its kind code; every value a record holds is checked, and
//! anything else is a `DecodeError`, never a panic.

use bytes::Bytes;
use proctor_gate::{
    AlertRecord, ApprovalOutcome, ApprovalRecord, ChannelKind, CredentialRecord, Direction, Event,
    Outcome, OutputStream, Param, Party, Privilege, Protocol, SessionInfo, SftpOp, SqlError,
    Statement, StatementClass, StatementResult, TransferSummary, VerdictKind, VerdictRecord,
};

use super::{bad, kind};
use crate::recorder::wire::{DecodeError, Reader};

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

pub(super) fn decode_event(kind_code: u8, r: &mut Reader<'_>) -> Result<Event, DecodeError> {
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
