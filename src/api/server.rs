//! The HTTP listener: one task per connection, with the limits axum's own `serve` lacks. A
//! request's headers must arrive within `HEADER_TIMEOUT` and its body within `BODY_TIMEOUT`
//! (slow senders are cut, not waited on), and one source address holds at most
//! `MAX_CONNECTIONS_PER_SOURCE` connections (event streams included), so a slow or greedy
//! client cannot use up what operators and approvers need.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use proctor_gate::preauth::PreAuthLimiter;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// From the first byte of a request (or an idle keep-alive connection) to its last header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// From the headers to the last byte of the body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 32;
pub const MAX_CONNECTIONS: usize = 1024;
/// How long open connections (event streams) get to finish once proctor stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Ends the request body with an error once `BODY_TIMEOUT` has passed, whatever reads it.
async fn body_deadline(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let deadline = tokio::time::Instant::now() + BODY_TIMEOUT;
    let stream = futures_util::stream::unfold(Some(body.into_data_stream()), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(Some(item)) => Some((item, Some(s))),
            Ok(None) => None,
            Err(_) => Some((
                Err(axum::Error::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request body not received in time",
                ))),
                None,
            )),
        }
    });
    next.run(Request::from_parts(parts, Body::from_stream(stream)))
        .await
}

/// Serves `app` until the shutdown watch flips.
pub async fn serve(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) {
    let app = app.layer(middleware::from_fn(body_deadline));
    let limiter = PreAuthLimiter::new(MAX_CONNECTIONS_PER_SOURCE, MAX_CONNECTIONS);
    let mut conns = JoinSet::new();
    let mut refused_logged = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = crate::shutdown::stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match limiter.try_acquire(peer.ip()) {
                        Ok(p) => p,
                        Err(why) => {
                            // Once per source, so the refusals cannot flood the log.
                            if refused_logged.len() >= 1024 {
                                refused_logged.clear();
                            }
                            if refused_logged.insert(peer.ip()) {
                                tracing::warn!(source = %peer.ip(), ?why, "HTTP API: too many connections; closed at accept");
                            }
                            drop(stream);
                            continue;
                        }
                    };
                    let svc = TowerToHyperService::new(app.clone());
                    let mut stop = shutdown.clone();
                    conns.spawn(async move {
                        let mut http = hyper::server::conn::http1::Builder::new();
                        http.timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT);
                        let conn = http.serve_connection(TokioIo::new(stream), svc);
                        tokio::pin!(conn);
                        tokio::select! {
                            r = conn.as_mut() => {
                                if let Err(e) = r {
                                    tracing::debug!(%peer, error = %e, "HTTP API connection ended");
                                }
                            }
                            _ = crate::shutdown::stopped(&mut stop) => {
                                conn.as_mut().graceful_shutdown();
                                let _ = tokio::time::timeout(DRAIN, conn).await;
                            }
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "HTTP API: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let all = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN + Duration::from_secs(1), all)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}
