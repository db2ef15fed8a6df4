//! One record as JSON: the common shape of exports, the API and replay.

use proctor_gate::{Event, Param};
use serde_json::{Value, json};

use crate::clock::format_ns;
use crate::recorder::codec::{self, Body};
use crate::recorder::frame::RecordHeader;
use crate::recorder::wire::DecodeError;

fn text_or_b64(data: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(data) {
        Ok(s) => ("data", Value::String(s.to_string())),
        Err(_) => {
            use base64::Engine;
            (
                "data_base64",
                Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
            )
        }
    }
}

/// Binary parameters as hex, text ones as text, NULL as null.
pub fn param_json(p: &Param) -> Value {
    match &p.value {
        None => Value::Null,
        Some(v) if p.binary => json!({ "binary_hex": hex::encode(v) }),
        Some(v) => Value::String(String::from_utf8_lossy(v).into_owned()),
    }
}

pub fn event_fields(e: &Event) -> Value {
    match e {
        Event::SessionStart(s) => json!({
            "agent": s.agent, "target": s.target, "protocol": s.protocol.as_str(), "login": s.login,
            "privilege": s.privilege.as_str(), "client_addr": s.client_addr, "grant": s.grant,
            "proctor_version": s.proctor_version,
        }),
        Event::SessionEnd { outcome, reason } => {
            json!({ "outcome": outcome.as_str(), "reason": reason })
        }
        Event::ClientParams { params } => {
            json!({ "params": params.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>() })
        }
        Event::ChannelOpen {
            channel,
            kind,
            detail,
        } => {
            json!({ "channel": channel, "channel_kind": kind.as_str(), "detail": detail })
        }
        Event::ChannelRequest {
            channel,
            request,
            detail,
            accepted,
        } => {
            json!({ "channel": channel, "request": request, "detail": detail, "accepted": accepted })
        }
        Event::Resize {
            channel,
            cols,
            rows,
        } => json!({ "channel": channel, "cols": cols, "rows": rows }),
        Event::Input { channel, data } => {
            let (k, v) = text_or_b64(data);
            let mut o = json!({ "channel": channel, "bytes": data.len() });
            o[k] = v;
            o
        }
        Event::Output {
            channel,
            stream,
            data,
        } => {
            let (k, v) = text_or_b64(data);
            let mut o = json!({
                "channel": channel,
                "stream": match stream { proctor_gate::OutputStream::Stdout => "stdout", proctor_gate::OutputStream::Stderr => "stderr" },
                "bytes": data.len(),
            });
            o[k] = v;
            o
        }
        Event::Exec { channel, command } => json!({ "channel": channel, "command": command }),
        Event::CommandLine { channel, line } => json!({ "channel": channel, "line": line }),
        Event::ExitStatus { channel, status } => json!({ "channel": channel, "status": status }),
        Event::ExitSignal {
            channel,
            signal,
            message,
        } => {
            json!({ "channel": channel, "signal": signal, "message": message })
        }
        Event::ChannelClose { channel, summary } => json!({
            "channel": channel, "bytes_in": summary.bytes_in, "bytes_out": summary.bytes_out,
            "sha256_in": hex::encode(summary.digest_in), "sha256_out": hex::encode(summary.digest_out),
        }),
        Event::Sftp(op) => json!({
            "channel": op.channel, "op": op.op, "path": op.path, "target_path": op.target_path,
            "detail": op.detail, "bytes_read": op.bytes_read, "bytes_written": op.bytes_written,
            "sha256_read": op.digest_read.map(hex::encode), "sha256_written": op.digest_written.map(hex::encode),
            "status": op.status,
        }),
        Event::Statement(s) => json!({
            "statement_id": s.id, "text": s.text, "params": s.params.iter().map(param_json).collect::<Vec<_>>(),
            "statement_name": s.statement_name, "portal": s.portal, "extended": s.extended,
            "class": s.class.as_str(), "command": s.command, "tables": s.tables, "reasoning": s.reasoning,
        }),
        Event::StatementResult(r) => json!({
            "statement_id": r.statement_id, "tag": r.tag, "rows": r.rows,
            "error": r.error.as_ref().map(|e| json!({ "severity": e.severity, "code": e.code, "message": e.message })),
            "duration_ns": r.duration_ns, "columns": r.columns, "sample_rows": r.sample_rows,
            "digest": hex::encode(r.digest), "suspended": r.suspended,
        }),
        Event::Copy {
            statement_id,
            direction,
            bytes,
            digest,
        } => json!({
            "statement_id": statement_id, "direction": direction.as_str(), "bytes": bytes, "sha256": hex::encode(digest),
        }),
        Event::TargetMessage { kind, text } => json!({ "message_kind": kind, "text": text }),
        Event::Verdict(v) => json!({
            "subject": v.subject, "verdict": v.verdict.as_str(), "rule": v.rule, "reason": v.reason,
            "approval_id": v.approval_id,
        }),
        Event::Approval(a) => json!({
            "approval_id": a.approval_id, "outcome": a.outcome.as_str(), "approver": a.approver, "reason": a.reason,
        }),
        Event::Alert(a) => json!({ "rule": a.rule, "severity": a.severity, "message": a.message }),
        Event::Annotation { source, text } => json!({ "source": source, "text": text }),
        Event::CredentialIssued(c) => json!({
            "credential_kind": c.kind, "name": c.name, "serial": c.serial, "principals": c.principals,
            "valid_after": format_ns(c.valid_after_ns), "valid_before": format_ns(c.valid_before_ns), "detail": c.detail,
        }),
        Event::CredentialRevoked { name, detail } => json!({ "name": name, "detail": detail }),
        Event::ProtocolError { party, message } => {
            json!({ "party": party.as_str(), "message": message })
        }
        Event::Retention {
            online_until_ns,
            retain_until_ns,
            policy,
        } => json!({
            "online_until": format_ns(*online_until_ns), "retain_until": format_ns(*retain_until_ns), "policy": policy,
        }),
    }
}

pub fn record_json(
    header: &RecordHeader,
    hash: &[u8; 32],
    body: &Result<Body, DecodeError>,
) -> Value {
    let mut o = json!({
        "seq": header.seq,
        "ts": format_ns(header.ts_ns),
        "ts_ns": header.ts_ns,
        "kind": codec::kind_name(header.kind),
        "hash": hex::encode(hash),
    });
    // A body stored out of line is read back from its blob: the record is shown as the one it
    // stands for, and says where its body was (FORMAT.md, "External bodies").
    if header.kind == codec::kind::EXTERNAL
        && let (Ok(b), Value::Object(dst)) = (body, &mut o)
    {
        dst.insert("kind".into(), json!(codec::kind_name(codec::kind_of(b))));
        dst.insert("stored".into(), json!("external"));
    }
    let fields = match body {
        Ok(Body::Event(e)) => event_fields(e),
        Ok(Body::Checkpoint(s)) | Ok(Body::Seal(s)) => json!({
            "covered_seq": s.covered_seq, "covered_hash": hex::encode(s.covered_hash),
            "key_id": hex::encode(s.key_id), "signature": hex::encode(s.signature),
        }),
        Ok(Body::JournalNote { topic, text }) => json!({ "topic": topic, "text": text }),
        Ok(Body::Recovered {
            unsigned_from,
            note,
        }) => json!({ "unsigned_from": unsigned_from, "note": note }),
        Ok(Body::StoreCheckpoint(c)) => json!({
            "covered_seq": c.signed.covered_seq, "covered_hash": hex::encode(c.signed.covered_hash),
            "previous": hex::encode(c.previous),
            "chains": c.chains.iter().map(|p| json!({
                "session": crate::recorder::index::session_id_string(&p.session),
                "seq": p.seq, "hash": hex::encode(p.hash),
            })).collect::<Vec<_>>(),
            "key_id": hex::encode(c.signed.key_id), "signature": hex::encode(c.signed.signature),
        }),
        Ok(Body::External(x)) => json!({
            "external_kind": codec::kind_name(x.kind), "size": x.size, "sha256": hex::encode(x.sha256),
        }),
        Err(e) => json!({ "decode_error": e.to_string() }),
    };
    if let (Value::Object(dst), Value::Object(src)) = (&mut o, fields) {
        for (k, v) in src {
            dst.insert(k, v);
        }
    }
    o
}
