//! `GET /api/events`: the live bus as Server-Sent Events. Each event's SSE name is its webhook
//! kind (`hold`, `alert`, `session_start`...), its data the JSON the bus carries. Operators,
//! approvers and auditors see everything; an agent token sees only its own agent's events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::ApiState;
use super::auth::{Principal, Role};
use crate::bus::LiveEvent;
use crate::webhooks::event_kind;

/// Proxies commonly cut idle connections after 30-60 s; a comment every 15 s keeps it open and
/// lets a client notice a dead server.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn visible(st: &ApiState, p: &Principal, e: &LiveEvent) -> bool {
    if p.role != Role::Agent {
        return true;
    }
    let Some(mine) = p.agent.as_deref() else {
        return false;
    };
    match e.agent() {
        Some(a) => a == mine,
        // Approval outcomes carry only the session; it is still live while its hold resolves.
        None => e
            .session_id()
            .and_then(|id| st.core.sessions.get(id))
            .is_some_and(|s| s.agent == mine),
    }
}

fn to_sse(e: &LiveEvent) -> Event {
    let data = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    Event::default().event(event_kind(e)).data(data)
}

pub async fn stream(
    State(st): State<ApiState>,
    p: Principal,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before answering, so nothing published after the response starts is missed.
    let rx = st.core.bus.subscribe();
    let hello = Event::default()
        .event("ready")
        .data(json!({ "token": p.name, "role": p.role.as_str(), "agent": p.agent }).to_string());
    let shutdown = st.shutdown.clone();
    let live = stream::unfold(
        (rx, st, p, shutdown),
        |(mut rx, st, p, mut shutdown)| async move {
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    _ = crate::shutdown::stopped(&mut shutdown) => return None,
                };
                match next {
                    Ok(e) if visible(&st, &p, &e) => {
                        return Some((Ok(to_sse(&e)), (rx, st, p, shutdown)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        // The client was too slow; say so rather than silently skipping events.
                        let ev = Event::default()
                            .event("lagged")
                            .data(json!({ "missed": n }).to_string());
                        return Some((Ok(ev), (rx, st, p, shutdown)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let all = stream::once(async move { Ok(hello) }).chain(live);
    Sse::new(all).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}
