//! One agent connection from accept to the end of its session: the pre-authentication
//! deadline, the refusal of a key no agent owns, and the socket proctor keeps to cut it.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One agent connection from accept to the end of its session.
pub(crate) async fn run_connection(
    fe: Arc<Frontend>,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: PreAuthPermit,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    // A duplicate of the socket lets proctor cut a connection russh would keep waiting on.
    let (socket, killer) = match split_killer(socket) {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "cannot duplicate an accepted socket");
            return;
        }
    };
    let (stop_tx, _) = watch::channel(None);
    let conn = Arc::new(Conn {
        peer,
        phase: Mutex::new(Phase::PreAuth),
        auth: watch::Sender::new(AuthState::Waiting),
        actors: Mutex::new(JoinSet::new()),
        unknown_key: Mutex::new(None),
        client_version: Mutex::new(String::new()),
        stop: stop_tx,
        pressure: Arc::new(Pressure::default()),
    });
    let handler = AgentHandler {
        fe: fe.clone(),
        conn: conn.clone(),
        permit: Some(permit),
    };
    let deadline = tokio::time::Instant::now() + fe.config.auth_timeout;
    let started = tokio::time::timeout_at(
        deadline,
        server::run_stream(fe.russh.clone(), socket, handler),
    )
    .await;
    let running = match started {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            let _ = killer.shutdown(Shutdown::Both);
            return;
        }
        Err(_) => {
            let _ = killer.shutdown(Shutdown::Both);
            fe.authority
                .dropped_early(peer, Protocol::Ssh, PRE_AUTH_TIMEOUT);
            return;
        }
    };
    let handle = running.handle();
    // Several waits below need "the agent connection is over"; a watch can be awaited again.
    let (gone_tx, mut gone) = watch::channel(false);
    tokio::spawn(async move {
        let _ = running.await;
        let _ = gone_tx.send(true);
    });
    let mut auth = conn.auth.subscribe();

    // Bounded pre-auth time.
    let authed = tokio::select! {
        _ = wait_true(&mut gone) => false,
        r = wait_until(&mut auth, |a| *a != AuthState::Waiting) => r,
        _ = tokio::time::sleep_until(deadline) => false,
        _ = wait_true(&mut shutdown) => false,
    };
    if !authed {
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            handle.disconnect(
                russh::Disconnect::ByApplication,
                "proctor: authentication did not complete".into(),
                "en".into(),
            ),
        )
        .await;
        let _ = killer.shutdown(Shutdown::Both);
        let _ = tokio::time::timeout(Duration::from_secs(1), wait_true(&mut gone)).await;
        if !record_unknown_key(&fe, &conn).await && tokio::time::Instant::now() >= deadline {
            fe.authority
                .dropped_early(conn.peer, Protocol::Ssh, PRE_AUTH_TIMEOUT);
        }
        return;
    }
    // The target connection is bounded by its own connect timeout.
    let decided = tokio::select! {
        _ = wait_true(&mut gone) => false,
        r = wait_until(&mut auth, |a| *a == AuthState::Decided) => r,
    };
    let phase_session = conn.session();
    let refused = conn.phase.lock().ok().and_then(|p| match &*p {
        Phase::Refused(m) => Some(m.clone()),
        _ => None,
    });
    let Some(sess) = phase_session.filter(|_| decided) else {
        // Refused: the agent sees why on its first channel; a client that opens none is
        // disconnected with the reason after a short while.
        let why = refused.unwrap_or_else(|| "proctor: session refused".into());
        tokio::select! {
            _ = wait_true(&mut gone) => {}
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
            _ = wait_true(&mut shutdown) => {}
        }
        conn.drain_actors(Duration::from_secs(1)).await;
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            handle.disconnect(russh::Disconnect::ByApplication, why, "en".into()),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), wait_true(&mut gone)).await;
        let _ = killer.shutdown(Shutdown::Both);
        return;
    };

    let gate = sess.gate.clone();
    let version = conn
        .client_version
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let _ = gate
        .record(Event::ClientParams {
            params: vec![("client_version".into(), version)],
        })
        .await;
    let mut kill = gate.kill_signal();
    let mut lost = sess.conn.lost.clone();
    let (outcome, reason, stop) = tokio::select! {
        _ = wait_true(&mut gone) => (Outcome::Completed, "agent disconnected".to_string(), None),
        k = wait_some(&mut kill) => {
            let reason = k.unwrap_or_default();
            (Outcome::Killed, reason.clone(), Some(Stop::Killed(reason)))
        }
        _ = wait_true(&mut lost) => (
            Outcome::TargetLost,
            "the connection to the target was lost".to_string(),
            Some(Stop::TargetLost),
        ),
        _ = wait_true(&mut shutdown) => (
            Outcome::Interrupted,
            "proctor shutting down".to_string(),
            Some(Stop::Shutdown),
        ),
    };
    if let Ok(mut p) = conn.phase.lock() {
        *p = Phase::Closing;
    }
    if let Some(stop) = stop {
        let notice = stop.notice();
        let _ = conn.stop.send(Some(stop));
        // Channels tell the agent why and close; then the connection goes.
        conn.drain_actors(Duration::from_secs(3)).await;
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            handle.disconnect(russh::Disconnect::ByApplication, notice, "en".into()),
        )
        .await;
        if tokio::time::timeout(Duration::from_secs(2), wait_true(&mut gone))
            .await
            .is_err()
        {
            let _ = killer.shutdown(Shutdown::Both);
        }
    } else {
        conn.drain_actors(Duration::from_secs(5)).await;
    }
    sess.conn.close("session ended").await;
    let _ = killer.shutdown(Shutdown::Both);
    if let Err(e) = gate.end(outcome, &reason).await {
        tracing::warn!(error = %e, "ending the session failed");
    }
}

/// Counted (not recorded) when a connection is cut for not authenticating in time.
const PRE_AUTH_TIMEOUT: &str = "authentication not completed in time";

/// Reports a key no agent owns as a refusal; whether there was one.
async fn record_unknown_key(fe: &Frontend, conn: &Conn) -> bool {
    let unknown = conn.unknown_key.lock().ok().and_then(|mut u| u.take());
    let found = unknown.is_some();
    if let Some((user, fingerprint)) = unknown {
        let (login, target) = parse_user(&user).unwrap_or((None, user.clone()));
        let request = SessionRequest {
            protocol: Protocol::Ssh,
            agent: String::new(),
            target,
            login,
            client_addr: conn.peer,
            params: vec![
                ("ssh_user".into(), user),
                ("key_fingerprint".into(), fingerprint.clone()),
            ],
        };
        fe.authority
            .refuse(
                request,
                Refusal::new(
                    RefusalKind::UnknownAgent,
                    format!("public key {fingerprint} belongs to no agent"),
                ),
            )
            .await;
    }
    found
}

fn split_killer(
    socket: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std_socket = socket.into_std()?;
    let killer = std_socket.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std_socket)?, killer))
}
