//! One agent connection from accept to end: negotiate, authenticate, admit, log in to the
//! target, relay, end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgwire::messages::Message;
use pgwire::messages::startup::{Authentication, NegotiateProtocolVersion};
use proctor_gate::{
    Authority, Credential, Event, Outcome, Party, Protocol, Refusal, RefusalKind, SessionRequest,
    TargetEndpoint,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::PgFrontendConfig;
use crate::cancel::{self, BackendCancel, CancelKey, CancelTarget};
use crate::relay::{Relay, TargetSide};
use crate::scram_server::{Binding, MECHANISM, MECHANISM_PLUS, ServerFirst, Verifier};
use crate::startup::{self, Hello, StartupError};
use crate::stream::Stream;
use crate::target::{self, TargetError};
use crate::wire::{Reader, Severity, lossy, put_backend_key, put_error, put_ready};

/// Serves one connection. Errors end up with the client (ErrorResponse) and in the record;
/// nothing is returned.
pub async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    config: Arc<PgFrontendConfig>,
    authority: Arc<dyn Authority>,
    shutdown: Option<watch::Receiver<bool>>,
    preauth: Option<proctor_gate::preauth::PreAuthPermit>,
) {
    let _ = tcp.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + config.handshake_timeout;
    let hello = tokio::time::timeout_at(deadline, startup::negotiate(tcp, &config)).await;
    let startup = match hello {
        Ok(Ok(Hello::Startup(s))) => s,
        Ok(Ok(Hello::Cancel { pid, secret })) => {
            cancel::cancel(pid, secret);
            return;
        }
        Ok(Err(StartupError::Closed)) => return,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %proctor_gate::inert::LineOf(&e), "postgres: startup failed");
            let request = anonymous_request(peer);
            authority
                .refuse(
                    request,
                    Refusal::new(RefusalKind::ProtocolViolation, e.to_string()),
                )
                .await;
            // The stream is gone with the error; a violation was answered where possible.
            return;
        }
        Err(_) => {
            let request = anonymous_request(peer);
            authority
                .refuse(
                    request,
                    Refusal::new(RefusalKind::ProtocolViolation, "startup timed out"),
                )
                .await;
            return;
        }
    };
    let mut s = startup;
    let agent = s.param("user").unwrap_or("").to_string();
    let target = s
        .param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&agent)
        .to_string();
    let request = SessionRequest {
        protocol: Protocol::Postgres,
        agent: agent.clone(),
        target: target.clone(),
        login: None,
        client_addr: peer,
        params: s.params.clone(),
    };
    let mut out = BytesMut::with_capacity(512);

    if agent.is_empty() {
        return refuse(
            &mut s.stream,
            &*authority,
            request,
            RefusalKind::ProtocolViolation,
            "28000",
            "no PostgreSQL user name specified in startup packet",
        )
        .await;
    }
    if s.param("replication").is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        )
    }) {
        return refuse(
            &mut s.stream,
            &*authority,
            request,
            RefusalKind::ProtocolViolation,
            "0A000",
            "replication connections are not supported through proctor",
        )
        .await;
    }
    if config.require_tls && !s.stream.is_tls() {
        return refuse(
            &mut s.stream,
            &*authority,
            request,
            RefusalKind::ProtocolViolation,
            "28000",
            "proctor requires TLS: connect with sslmode=require or stronger",
        )
        .await;
    }

    // Protocol 3.2 (PostgreSQL 18) and `_pq_.` extensions are declined: the target may be older
    // and proctor's cancel keys are 3.0 keys.
    let unsupported: Vec<String> = s
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if s.minor_version > 0 || !unsupported.is_empty() {
        // The newest version proctor supports, as a whole protocol version number (3.0 is
        // 196608), as PostgreSQL sends it: libpq 18 reads 0 as a downgrade below 3.0 and gives
        // up on `max_protocol_version=3.2`.
        let msg = NegotiateProtocolVersion::new(3 << 16, unsupported);
        if msg.encode(&mut out).is_err() {
            return;
        }
    }

    let auth = tokio::time::timeout_at(
        deadline,
        authenticate(&mut s, &agent, &*authority, &config, &mut out),
    )
    .await;
    match auth {
        Ok(Ok(Some(server_final))) => {
            let _ = Authentication::SASLFinal(server_final.into_bytes().into()).encode(&mut out);
        }
        Ok(Ok(None)) => {
            let kind = if authority.agent_scram_verifier(&agent).is_some() {
                RefusalKind::BadCredential
            } else {
                RefusalKind::UnknownAgent
            };
            let msg = format!("password authentication failed for user \"{agent}\"");
            return refuse(&mut s.stream, &*authority, request, kind, "28P01", &msg).await;
        }
        Ok(Err(StartupError::Violation { code, message })) => {
            return refuse(
                &mut s.stream,
                &*authority,
                request,
                RefusalKind::ProtocolViolation,
                code,
                &message,
            )
            .await;
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %proctor_gate::inert::LineOf(&e), "postgres: authentication aborted");
            authority
                .refuse(
                    request,
                    Refusal::new(RefusalKind::ProtocolViolation, e.to_string()),
                )
                .await;
            return;
        }
        Err(_) => {
            return refuse(
                &mut s.stream,
                &*authority,
                request,
                RefusalKind::ProtocolViolation,
                "08006",
                "authentication timed out",
            )
            .await;
        }
    }

    // Authenticated: the startup slot goes back for the next stranger.
    drop(preauth);
    // Admitted past authentication: ask the core.
    let open = match authority.open(request).await {
        Ok(o) => o,
        Err(refusal) => {
            let code = refusal_code(refusal.kind);
            put_error(&mut out, Severity::Fatal, code, &refusal.message);
            let _ = write_close(&mut s.stream, &out).await;
            return;
        }
    };
    let gate = open.gate.clone();
    let fail = |msg: String| async move {
        let _ = gate
            .record(Event::ProtocolError {
                party: Party::Proctor,
                message: msg.clone(),
            })
            .await;
        msg
    };
    let (pg, user, password, builtins_overloaded) = match (open.target, open.credential) {
        (
            TargetEndpoint::Postgres(pg),
            Credential::PostgresRole {
                user,
                password,
                builtins_overloaded,
            },
        ) => (pg, user, password, builtins_overloaded),
        _ => {
            let msg = fail("the core issued a non-PostgreSQL target or credential".into()).await;
            put_error(
                &mut out,
                Severity::Fatal,
                "08006",
                "proctor: target misconfigured",
            );
            let _ = write_close(&mut s.stream, &out).await;
            let _ = open.gate.end(Outcome::Interrupted, &msg).await;
            return;
        }
    };

    let copy_record_limit = pg.copy_record_limit;
    let (params, dropped) = target::forwardable_params(&s.params);
    if !dropped.is_empty() {
        tracing::info!(
            session = open.session_id,
            ?dropped,
            "postgres: startup parameters not passed to the target"
        );
        let _ = open
            .gate
            .enqueue(Event::ProtocolError {
                party: Party::Agent,
                message: format!(
                    "startup parameters not passed to the target: {}",
                    dropped.join(", ")
                ),
            })
            .await;
    }
    let tconn = match target::connect(&pg, &user, &password, &params).await {
        Ok(c) => c,
        Err(e) => {
            drop(password);
            let message = e.to_string();
            let _ = open
                .gate
                .record(Event::ProtocolError {
                    party: Party::Target,
                    message: message.clone(),
                })
                .await;
            let client_msg = match &e {
                TargetError::Refused(f) if f.code == "53300" => {
                    format!("proctor: target {target} has too many connections")
                }
                _ => format!("proctor: cannot connect to target {target}: {message}"),
            };
            put_error(&mut out, Severity::Fatal, "08006", &client_msg);
            let _ = write_close(&mut s.stream, &out).await;
            let _ = open.gate.end(Outcome::TargetLost, &message).await;
            return;
        }
    };
    drop(password);

    let (hold_cancel, _) = watch::channel(0u64);
    let hold_cancel = Arc::new(hold_cancel);
    let key = CancelKey::register(CancelTarget {
        notify: hold_cancel.clone(),
    });
    let backend_cancel = tconn.backend_key.map(|(pid, secret)| BackendCancel {
        host: pg.host.clone(),
        port: pg.port,
        connect_timeout: pg.connect_timeout,
        pid,
        secret,
    });
    let _ = Authentication::Ok.encode(&mut out);
    for f in &tconn.relay {
        out.extend_from_slice(&f.bytes);
    }
    put_backend_key(&mut out, key.pid, key.secret);
    put_ready(&mut out, tconn.status);

    // The grant's own limits apply to this session.
    let config = if config.copy_record_limit == copy_record_limit {
        config
    } else {
        Arc::new(PgFrontendConfig {
            copy_record_limit,
            ..(*config).clone()
        })
    };
    let startup_path = target::startup_setting(&params, "search_path");
    let mut relay = Relay::new(
        open.gate.clone(),
        config.clone(),
        Box::new(s.stream),
        s.buffered,
        TargetSide::from(tconn),
        out,
        shutdown,
        hold_cancel,
        backend_cancel,
    );
    if let Some(path) = startup_path {
        relay.startup_search_path(&path);
    }
    if builtins_overloaded {
        relay.builtins_overloaded();
    }
    tracing::info!(session = open.session_id, %peer, agent = %proctor_gate::inert::Line(&agent), target = %proctor_gate::inert::Line(&target), "postgres: session started");
    // Run in its own task so that even a panic (a bug) ends in `Gate::end` and not in a
    // session left open.
    let (outcome, reason) = match tokio::spawn(relay.run()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(session = open.session_id, error = %e, "postgres: session task failed");
            (Outcome::Interrupted, format!("proctor internal error: {e}"))
        }
    };
    drop(key);
    tracing::info!(
        session = open.session_id,
        outcome = outcome.as_str(),
        reason,
        "postgres: session ended"
    );
    if let Err(e) = open.gate.end(outcome, &reason).await {
        tracing::warn!(session = open.session_id, error = %e, "postgres: ending the session failed");
    }
}

fn anonymous_request(peer: SocketAddr) -> SessionRequest {
    SessionRequest {
        protocol: Protocol::Postgres,
        agent: String::new(),
        target: String::new(),
        login: None,
        client_addr: peer,
        params: Vec::new(),
    }
}

/// SQLSTATE for a refusal from the core.
pub fn refusal_code(kind: RefusalKind) -> &'static str {
    match kind {
        RefusalKind::UnknownAgent | RefusalKind::BadCredential => "28P01",
        RefusalKind::NotGranted => "28000",
        RefusalKind::UnknownTarget => "3D000",
        RefusalKind::Overloaded => "53300",
        RefusalKind::ProtocolViolation => "08P01",
        RefusalKind::CredentialFailed | RefusalKind::RecorderFailed => "08006",
    }
}

async fn refuse(
    stream: &mut Stream,
    authority: &dyn Authority,
    request: SessionRequest,
    kind: RefusalKind,
    code: &str,
    message: &str,
) {
    authority
        .refuse(request, Refusal::new(kind, message.to_string()))
        .await;
    let mut out = BytesMut::new();
    put_error(&mut out, Severity::Fatal, code, message);
    let _ = write_close(stream, &out).await;
}

/// Answers a connection proctor will not serve before its startup (no login slot): the
/// client reads an ErrorResponse in place of the answer to its SSLRequest or StartupMessage,
/// as PostgreSQL itself answers "too many clients". What the client sent is read and
/// discarded briefly, so closing does not reset the connection before the error is read.
pub async fn turn_away(mut tcp: TcpStream, why: &str) {
    use tokio::io::AsyncReadExt;
    let mut out = BytesMut::new();
    put_error(
        &mut out,
        Severity::Fatal,
        "53300",
        &format!("proctor: too many connections waiting to log in ({why}); try again"),
    );
    let answer = async {
        tcp.write_all(&out).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    // Short: a flood of turned-away connections must not pile up.
    let _ = tokio::time::timeout(Duration::from_millis(250), answer).await;
}

async fn write_close(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    let w = async {
        stream.write_all(bytes).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    tokio::time::timeout(Duration::from_secs(2), w)
        .await
        .unwrap_or(Ok(()))
}

/// SCRAM-SHA-256 (or -PLUS over TLS) with the agent. `Ok(Some(server_final))` on success,
/// `Ok(None)` when the password is wrong or the agent unknown (indistinguishable to the client).
async fn authenticate(
    s: &mut startup::Startup,
    agent: &str,
    authority: &dyn Authority,
    config: &PgFrontendConfig,
    out: &mut BytesMut,
) -> Result<Option<String>, StartupError> {
    let real = authority
        .agent_scram_verifier(agent)
        .and_then(|v| match Verifier::parse(&v) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(agent, error = %e, "postgres: agent verifier is unusable");
                None
            }
        });
    let known = real.is_some();
    let verifier = real.unwrap_or_else(|| Verifier::fake(agent));

    // PLUS first, as PostgreSQL lists it: libpq picks the first it supports.
    let binding_data = config
        .tls_server_end_point
        .as_deref()
        .filter(|_| s.stream.is_tls());
    let mechanisms = match binding_data {
        Some(_) => vec![MECHANISM_PLUS.to_string(), MECHANISM.to_string()],
        None => vec![MECHANISM.to_string()],
    };
    let _ = Authentication::SASL(mechanisms).encode(out);
    s.stream.write_all(out).await?;
    out.clear();

    let first = startup::read_auth_message(&mut s.stream, &mut s.buffered).await?;
    if first.tag != b'p' {
        return Err(violation("08P01", "expected a SASL initial response"));
    }
    let mut r = Reader::new(first.body(), "SASLInitialResponse");
    let mech = r
        .cstr()
        .map_err(|_| violation("08P01", "malformed SASL initial response"))?;
    let plus_selected = mech == MECHANISM_PLUS.as_bytes() && binding_data.is_some();
    if mech != MECHANISM.as_bytes() && !plus_selected {
        return Err(violation(
            "28000",
            &format!(
                "client selected an invalid SASL authentication mechanism {:?}",
                lossy(mech)
            ),
        ));
    }
    let len = r
        .i32()
        .map_err(|_| violation("08P01", "malformed SASL initial response"))?;
    if len < 0 || len as usize != r.remaining() {
        return Err(violation("08P01", "malformed SASL initial response"));
    }
    let data = r
        .take(len as usize)
        .map_err(|_| violation("08P01", "malformed SASL initial response"))?;
    let binding = Binding {
        offered: binding_data,
        plus_selected,
    };
    let (state, server_first) = ServerFirst::start(verifier, data, binding)
        .map_err(|e| violation("08P01", &e.to_string()))?;
    let _ = Authentication::SASLContinue(server_first.into_bytes().into()).encode(out);
    s.stream.write_all(out).await?;
    out.clear();

    let fin = startup::read_auth_message(&mut s.stream, &mut s.buffered).await?;
    if fin.tag != b'p' {
        return Err(violation("08P01", "expected a SASL response"));
    }
    let result = state
        .finish(fin.body())
        .map_err(|e| violation("08P01", &e.to_string()))?;
    Ok(if known { result } else { None })
}

fn violation(code: &'static str, message: &str) -> StartupError {
    StartupError::Violation {
        code,
        message: message.to_string(),
    }
}
