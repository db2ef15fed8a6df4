//! The OpenAPI 3.1 description served at `/api/openapi.json`. Written by hand (it is the
//! contract, not a by-product), and kept true by a test that compares its paths, methods and
//! `x-roles` with `super::routes()`.

use axum::Json;
use serde_json::{Map, Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn id_param(what: &str) -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": what,
        "schema": { "type": "string" }
    })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema_ref(schema) } } })
}

/// One operation. `roles` empty means no token is needed.
fn op(
    id: &str,
    summary: &str,
    roles: &[&str],
    params: Vec<Value>,
    request: Option<Value>,
    ok: (&str, Value),
) -> Value {
    let mut responses = Map::new();
    responses.insert(ok.0.to_string(), ok.1);
    if !roles.is_empty() {
        responses.insert(
            "401".into(),
            error_response("missing or invalid bearer token"),
        );
        responses.insert(
            "403".into(),
            error_response("the token's role may not do this"),
        );
    }
    responses.insert("400".into(), error_response("invalid parameters or body"));
    let mut o = json!({
        "operationId": id,
        "summary": summary,
        "x-roles": roles,
        "parameters": params,
        "responses": responses,
    });
    if roles.is_empty() {
        o["security"] = json!([]);
    }
    if let Some(r) = request {
        o["requestBody"] = r;
    }
    o
}

fn with(mut o: Value, status: &str, description: &str) -> Value {
    o["responses"][status] = error_response(description);
    o
}

const AUDITOR: &[&str] = &["auditor"];
const OPERATOR: &[&str] = &["operator"];
const APPROVER: &[&str] = &["approver"];

pub fn document() -> Value {
    let string = json!({ "type": "string" });
    let nullable_string = json!({ "type": ["string", "null"] });
    let session_filters = vec![
        query("agent", "agent name", string.clone()),
        query("target", "target name", string.clone()),
        query(
            "since",
            "RFC 3339 time, a date, or a duration ago (`2h`)",
            string.clone(),
        ),
        query(
            "until",
            "RFC 3339 time, a date, or a duration ago",
            string.clone(),
        ),
        query(
            "privilege",
            "routine, elevated or break-glass",
            string.clone(),
        ),
        query(
            "protocol",
            "ssh or postgres",
            json!({ "type": "string", "enum": ["ssh", "postgres"] }),
        ),
        query(
            "outcome",
            "completed, killed, interrupted, target_lost, denied",
            string.clone(),
        ),
        query(
            "open",
            "only sessions still open",
            json!({ "type": "boolean" }),
        ),
        query(
            "limit",
            "at most this many (default 500, at most 10000)",
            json!({ "type": "integer", "minimum": 1, "maximum": 10000 }),
        ),
        query(
            "q",
            "text inside the sessions' SQL statements, exec commands and command lines (case-insensitive); \
             each result then carries `matches`. Bounded: at most 2000 sessions, 512 MiB of records and 10 s \
             are read, newest first; when a bound stops it, the header X-Proctor-Search-Incomplete gives the \
             number of candidate sessions left unread. The search is journaled",
            json!({ "type": "string", "maxLength": 256 }),
        ),
    ];
    let paths = json!({
        "/api/health": {
            "get": with(op("health", "Liveness and the recorder's failure state (no token)", &[], vec![], None,
                ("200", json_response("recorder healthy", schema_ref("Health")))),
                "503", "the recorder has failed; actions fail closed")
        },
        "/api/openapi.json": {
            "get": op("openapi", "This document", &[], vec![], None,
                ("200", json_response("OpenAPI 3.1 document", json!({ "type": "object" }))))
        },
        "/api/sessions": {
            "get": with(op("listSessions", "Search recorded sessions, newest first (the CLI's filters, and text with q)", AUDITOR, session_filters, None,
                ("200", json!({
                    "description": "matching sessions (with q: each with its first matches)",
                    "headers": { "X-Proctor-Search-Incomplete": { "description": "with q: candidate sessions left unread because a bound was reached", "schema": { "type": "integer" } } },
                    "content": { "application/json": { "schema": { "type": "array", "items": schema_ref("SessionMeta") } } }
                }))),
                "503", "with q: the search could not be journaled")
        },
        "/api/sessions/{id}": {
            "get": with(op("showSession", "One session's record; the read is journaled", AUDITOR,
                vec![id_param("full session id or a unique prefix")], None,
                ("200", json_response("the session", schema_ref("SessionMeta")))),
                "404", "no such session")
        },
        "/api/sessions/{id}/events": {
            "get": with(op("sessionEvents", "A page of a session's records, from a sequence number; the read is journaled", AUDITOR,
                vec![
                    id_param("full session id or a unique prefix"),
                    query("from", "first sequence number (default 0)", json!({ "type": "integer", "minimum": 0 })),
                    query("limit", "at most this many records (default 500, at most 5000)", json!({ "type": "integer", "minimum": 1, "maximum": 5000 })),
                ], None,
                ("200", json_response("records", schema_ref("EventsPage")))),
                "404", "no such session")
        },
        "/api/sessions/{id}/verify": {
            "get": with(op("verifySession", "Verify one session's chain, checkpoints, seal and ledger inclusion; the read is journaled", AUDITOR,
                vec![id_param("full session id or a unique prefix")], None,
                ("200", json_response("verification report (ok false when tampering was found)", schema_ref("Verification")))),
                "404", "no such session")
        },
        "/api/sessions/{id}/export": {
            "get": with(with(op("exportSession", "Export a session; the read is journaled", AUDITOR,
                vec![
                    id_param("full session id or a unique prefix"),
                    query("format", "jsonl (default), asciicast or bundle", json!({ "type": "string", "enum": ["jsonl", "asciicast", "bundle"] })),
                ], None,
                ("200", json!({
                    "description": "the export, streamed as an attachment",
                    "content": {
                        "application/x-ndjson": { "schema": string.clone() },
                        "application/x-asciicast": { "schema": string.clone() },
                        "application/octet-stream": { "schema": { "type": "string", "format": "binary" } }
                    }
                }))),
                "404", "no such session"),
                "409", "a bundle needs a sealed session")
        },
        "/api/sessions/{id}/annotations": {
            "post": with(with(with(op("annotateSession", "Record reasoning or tool-selection rationale in a live session (agent tokens, their own agent's sessions only)", &["agent"],
                vec![id_param("session id (full or unique prefix)")], Some(body("AnnotationRequest")),
                ("201", json_response("recorded", json!({ "type": "object", "properties": {
                    "session": string.clone(), "source": string.clone(), "recorded": { "type": "boolean" } } })))),
                "404", "no such session"),
                "409", "the session is not live"),
                "503", "the recorder cannot write")
        },
        "/api/sessions/{id}/kill": {
            "post": with(op("killSession", "End a live session now; it is sealed `killed` with the reason and the operator's name", OPERATOR,
                vec![id_param("live session id or a unique prefix (4+ characters)")], Some(body("KillRequest")),
                ("200", json_response("kill requested", json!({ "type": "object", "properties": {
                    "killed": string.clone(), "reason": string.clone(),
                    "node": { "type": "string", "description": "cluster mode: the node that ended it, when it is not the one asked" } } })))),
                "404", "no such live session")
        },
        "/api/live": {
            "get": op("liveSessions", "Sessions open right now", OPERATOR, vec![], None,
                ("200", json_response("live sessions", json!({ "type": "array", "items": schema_ref("LiveSession") }))))
        },
        "/api/approvals": {
            "get": op("listApprovals", "Held actions waiting for a person, with full context (the session settings that change a statement's meaning), grouped: look-alike holds of one agent share a group (id, normalised text, count), the most dangerous groups first, oldest first within a group", APPROVER, vec![], None,
                ("200", json_response("pending holds", json!({ "type": "array", "items": schema_ref("PendingApproval") }))))
        },
        "/api/approvals/{id}/approve": {
            "post": with(with(op("approve", "Approve a held action as the token's name; released once min_approvals distinct approvers agreed. Refused (403) for the session's own agent", APPROVER,
                vec![id_param("approval id")], Some(body("DecisionRequest")),
                ("200", json_response("recorded", json!({ "type": "object", "properties": {
                    "id": string.clone(), "approver": string.clone(), "released": { "type": "boolean" } } })))),
                "404", "no pending approval with that id"),
                "409", "this approver already approved it")
        },
        "/api/approvals/{id}/deny": {
            "post": with(op("deny", "Deny a held action as the token's name; the agent sees the reason (required)", APPROVER,
                vec![id_param("approval id")], Some(body("DecisionRequest")),
                ("200", json_response("denied", json!({ "type": "object", "properties": {
                    "id": string.clone(), "approver": string.clone(), "denied": { "type": "boolean" } } })))),
                "404", "no pending approval with that id")
        },
        "/api/approvals/{id}/reveal": {
            "post": with(op("revealApproval", "Record in the store journal (topic audit) that the token's holder opens the sealed values of a held action with the auditor key named in the body, then return the hold; the client opens the markers with that key's private half. Refused (503) when the note cannot be recorded", APPROVER,
                vec![id_param("approval id")], Some(body("RevealRequest")),
                ("200", json_response("the hold, recorded as revealed", schema_ref("PendingApproval")))),
                "404", "no pending approval with that id")
        },
        "/api/verify": {
            "get": op("verifyStore", "Verify the whole store: every chain, seal, the ledger and its signed tree heads; the read is journaled", AUDITOR, vec![], None,
                ("200", json_response("verification report", schema_ref("Verification"))))
        },
        "/metrics": {
            "get": op("metrics", "Prometheus text exposition (version 0.0.4): the timestamping lag and last success per TSA, ledger leaves and tree size, the unsigned window, the recorder's durable records and queue; no session content", &["operator", "auditor"], vec![], None,
                ("200", json!({ "description": "metrics", "content": { "text/plain": { "schema": { "type": "string" } } } })))
        },
        "/api/events": {
            "get": op("events", "Server-Sent Events of live activity within a second of it happening. SSE event names: ready, session_start, session_end, hold, verdict, alert, approval, refused, lagged; data is a LiveEvent as JSON; a keep-alive comment every 15 s. Agent tokens see only their own agent's events", &["operator", "approver", "auditor", "agent"], vec![], None,
                ("200", json!({ "description": "an endless event stream",
                    "content": { "text/event-stream": { "schema": { "type": "string" },
                        "x-event-data": schema_ref("LiveEvent") } } })))
        }
    });
    let mut schemas = json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": string.clone() } },
        "Health": { "type": "object", "properties": {
            "ok": { "type": "boolean" }, "recorder_failure": nullable_string.clone(), "version": string.clone() } },
        "KillRequest": { "type": "object", "required": ["reason"], "additionalProperties": false,
            "properties": { "reason": { "type": "string", "minLength": 1 } } },
        "DecisionRequest": { "type": "object", "additionalProperties": false,
            "properties": { "reason": { "type": "string", "description": "required to deny" } } },
        "AnnotationRequest": { "type": "object", "required": ["text"], "additionalProperties": false, "properties": {
            "source": { "type": "string", "maxLength": 128, "description": "recorded as TOKEN_NAME/source" },
            "text": { "type": "string", "minLength": 1, "maxLength": 16384 } } },
        "SessionMeta": { "type": "object", "properties": {
            "id": string.clone(), "agent": string.clone(), "target": string.clone(), "protocol": string.clone(),
            "login": string.clone(), "privilege": string.clone(), "client_addr": string.clone(), "grant": string.clone(),
            "started_ns": { "type": "integer" }, "ended_ns": { "type": ["integer", "null"] },
            "outcome": nullable_string.clone(), "end_reason": string.clone(),
            "credentials": { "type": "array", "items": { "type": "object" } },
            "sealed": { "type": "boolean" }, "last_seq": { "type": "integer" }, "last_hash": string.clone(),
            "last_ts_ns": { "type": "integer" }, "events": { "type": "integer" }, "record_bytes": { "type": "integer" },
            "statements": { "type": "integer" }, "commands": { "type": "integer" }, "holds": { "type": "integer" },
            "denies": { "type": "integer" }, "alerts": { "type": "integer" },
            "spans": { "type": "array", "items": { "type": "object" } },
            "ledger_index": { "type": ["integer", "null"] } } },
        "EventsPage": { "type": "object", "properties": {
            "session": string.clone(),
            "events": { "type": "array", "items": { "type": "object", "description": "one record: seq, ts, ts_ns, kind, hash and the event's fields", "properties": {
                "seq": { "type": "integer" }, "ts": string.clone(), "ts_ns": { "type": "integer" }, "kind": string.clone(), "hash": string.clone() } } },
            "next_from": { "type": ["integer", "null"], "description": "pass as `from` for the next page; null at the end" } } },
        "Verification": { "type": "object", "properties": {
            "ok": { "type": "boolean" }, "key": string.clone(),
            "report": { "type": "object", "properties": {
                "sessions": { "type": "integer" }, "sealed": { "type": "integer" }, "open": { "type": "integer" },
                "records": { "type": "integer" }, "bytes": { "type": "integer" }, "segments": { "type": "integer" },
                "ledger_leaves": { "type": "integer" }, "tree_heads": { "type": "integer" }, "seconds": { "type": "number" },
                "problems": { "type": "array", "items": { "type": "object" } },
                "notes": { "type": "array", "items": string.clone() } } } } },
        "LiveSession": { "type": "object", "properties": {
            "id": string.clone(), "agent": string.clone(), "target": string.clone(), "protocol": string.clone(),
            "privilege": string.clone(), "login": string.clone(), "client_addr": string.clone(),
            "started_ns": { "type": "integer" }, "pending_holds": { "type": "array", "items": string.clone() },
            "node": { "type": "string", "description": "cluster mode: the node that owns the session" },
            "node_advertise": string.clone(), "node_heartbeating": { "type": "boolean" } } },
        "PendingApproval": { "type": "object", "properties": {
            "id": string.clone(), "session_id": string.clone(), "agent": string.clone(), "target": string.clone(),
            "protocol": string.clone(), "privilege": string.clone(),
            "kind": { "type": "string", "description": "statement, exec, line, channel or sftp" },
            "detail": { "type": "string", "description": "the statement text or command line" },
            "class": string.clone(), "tables": { "type": "array", "items": string.clone() },
            "rule": string.clone(), "reason": string.clone(),
            "reasoning": { "type": "array", "items": string.clone(), "description": "the agent's reasoning captured so far" },
            "created_ns": { "type": "integer" }, "expires_ns": { "type": "integer" },
            "min_approvals": { "type": "integer" }, "approvals": { "type": "array", "items": string.clone() },
            "settings": { "type": "array", "description": "session settings that change what the action means (PostgreSQL: search_path, role): value and where it comes from",
                "items": { "type": "object", "properties": { "name": string.clone(), "value": string.clone(), "note": string.clone() } } },
            "severity": { "type": "string", "enum": ["low", "medium", "high", "critical"] },
            "group": { "type": "object", "description": "look-alike holds of one agent (literals, case and whitespace folded)",
                "properties": { "id": string.clone(), "normalised": string.clone(), "count": { "type": "integer" } } },
            "node": { "type": "string", "description": "cluster mode: the node that holds the action" },
            "node_advertise": string.clone(), "node_heartbeating": { "type": "boolean" } } },
        "RevealRequest": { "type": "object", "required": ["key"], "additionalProperties": false,
            "properties": { "key": { "type": "string", "description": "the auditor public key (hex) the client opens the sealed values with" } } },
        "LiveEvent": { "type": "object", "required": ["type"], "properties": {
            "type": { "type": "string", "enum": ["session_start", "session_end", "verdict", "alert", "approval", "refused"] },
            "session_id": string.clone(), "agent": string.clone(), "target": string.clone(), "protocol": string.clone(),
            "privilege": string.clone(), "outcome": string.clone(), "reason": string.clone(), "subject": string.clone(),
            "verdict": string.clone(), "rule": string.clone(), "approval_id": string.clone(), "severity": string.clone(),
            "message": string.clone(), "approver": string.clone(), "ts_ns": { "type": "integer" } } }
    });
    schemas["SessionMeta"]["properties"]["matches"] = json!({
        "type": "array", "description": "only with q: where the text was found",
        "items": { "type": "object", "properties": {
            "seq": { "type": "integer" },
            "kind": { "type": "string", "enum": ["statement", "exec", "command_line"] },
            "ts_ns": { "type": "integer" }, "text": string.clone() } }
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "proctor API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operators see and kill live sessions, approvers decide held actions, auditors search, read, verify and export recordings (each read is journaled in the store), agent tokens annotate their own live sessions. No route modifies or deletes a recording. Errors are {\"error\": \"...\"}; 401 without a valid token, 403 outside the token's role."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "a token whose SHA-256 is listed under [[api.tokens]] with its role" }
            },
            "schemas": schemas
        },
        "paths": paths
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}
