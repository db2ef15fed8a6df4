//! Writing an event's fields, in the order FORMAT.md gives for its kind.

use proctor_gate::{ChannelKind, Event, OutputStream};

use crate::recorder::wire::Writer;

fn channel_kind_str(k: ChannelKind) -> &'static str {
    k.as_str()
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
