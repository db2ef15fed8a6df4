//! Webhooks: live events (holds, alerts...) POSTed as JSON to a chat bot or pager, signed with
//! HMAC-SHA256 and retried with exponential backoff. Best effort like the bus they come from
//! (the recording is the evidence), but never silent: a delivery that is given up on, or
//! dropped because the receiver is too slow, is logged and noted in the store's journal.
//!
//! Each webhook has a bounded queue and one sender, so a dead receiver costs at most `queue`
//! events of memory and never slows sessions or other webhooks. Holds have a queue of their own
//! that is sent first: a storm of alerts can never push a held action's notification out.
//!
//! Payloads are read by people in a chat, and much of their text is the agent's: every string
//! is made inert (controls, bidirectional and invisible characters shown as `<U+XXXX>` tokens)
//! and `&`, `<`, `>` are escaped (`&amp;` `&lt;` `&gt;`), so `<!channel>` or a forged
//! `<url|text>` link shows as text. A hold carries the held action in full (`hold`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, header};
use proctor_gate::inert::{Keep, inert};
use serde_json::{Value, json};
use sha2::Sha256;
use thiserror::Error;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, watch};

use crate::bus::LiveEvent;
use crate::config::Webhook;
use crate::http_client::{HttpClient, error_chain, http_client};
use crate::session::Core;

#[derive(Debug, Error)]
pub enum WebhookError {
    #[error("webhooks[{name}].secret_file: cannot read {path}: {source}")]
    Secret {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("webhooks[{name}].secret_file: {path} is empty")]
    EmptySecret { name: String, path: PathBuf },
    #[error("webhooks[{name}]: {message}")]
    Client { name: String, message: String },
}

/// The webhook (and SSE) name of a live event.
pub fn event_kind(e: &LiveEvent) -> &'static str {
    match e {
        LiveEvent::SessionStart { .. } => "session_start",
        LiveEvent::SessionEnd { .. } => "session_end",
        LiveEvent::Verdict { verdict, .. } if verdict == "hold" => "hold",
        LiveEvent::Verdict { .. } => "verdict",
        LiveEvent::Alert { .. } => "alert",
        LiveEvent::Approval { .. } => "approval",
        LiveEvent::Refused { .. } => "refused",
    }
}

/// `sha256=<hex>` of the body under `key`: what `X-Proctor-Signature` carries.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error arm cannot happen but must not panic.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// When to try again.
#[derive(Debug, Clone)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Per attempt, connection to last byte.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Retry {
    /// Delay after failed attempt `n` (1-based): 0.5 s, 1 s, 2 s... capped.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

struct Delivery {
    id: String,
    kind: &'static str,
    body: Bytes,
}

/// Two lanes of `capacity` each: holds, and everything else.
struct Queue {
    items: Mutex<Lanes>,
    notify: Notify,
    capacity: usize,
}

#[derive(Default)]
struct Lanes {
    holds: VecDeque<Delivery>,
    rest: VecDeque<Delivery>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Queue {
    fn new(capacity: usize) -> Self {
        Queue {
            items: Mutex::new(Lanes::default()),
            notify: Notify::new(),
            capacity,
        }
    }

    /// Appends to the delivery's lane; returns how many old deliveries of that lane were
    /// dropped to make room (a hold only ever makes room among holds).
    fn push(&self, d: Delivery) -> usize {
        let mut lanes = lock(&self.items);
        let q = if d.kind == "hold" {
            &mut lanes.holds
        } else {
            &mut lanes.rest
        };
        let mut dropped = 0;
        while q.len() >= self.capacity {
            q.pop_front();
            dropped += 1;
        }
        q.push_back(d);
        drop(lanes);
        self.notify.notify_one();
        dropped
    }

    /// Holds first: a person is waiting on them.
    fn pop(&self) -> Option<Delivery> {
        let mut lanes = lock(&self.items);
        lanes.holds.pop_front().or_else(|| lanes.rest.pop_front())
    }
}

struct Hook {
    name: String,
    url: hyper::Uri,
    key: Vec<u8>,
    events: Vec<String>,
    client: HttpClient,
    retry: Retry,
    queue: Queue,
}

/// Starts one intake and one sender task per webhook. Subscribes before returning, so no event
/// published after start-up is missed.
pub fn start(
    core: &Arc<Core>,
    hooks: &[Webhook],
    shutdown: watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), WebhookError> {
    start_with(core, hooks, Retry::default(), shutdown, tasks)
}

pub fn start_with(
    core: &Arc<Core>,
    hooks: &[Webhook],
    retry: Retry,
    shutdown: watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), WebhookError> {
    for w in hooks {
        let key = std::fs::read(&w.secret_file).map_err(|source| WebhookError::Secret {
            name: w.name.clone(),
            path: w.secret_file.clone(),
            source,
        })?;
        let key = key.trim_ascii_end().to_vec();
        if key.is_empty() {
            return Err(WebhookError::EmptySecret {
                name: w.name.clone(),
                path: w.secret_file.clone(),
            });
        }
        let url: hyper::Uri = w.url.parse().map_err(|e| WebhookError::Client {
            name: w.name.clone(),
            message: format!("url {:?}: {e}", w.url),
        })?;
        let client = http_client(w.ca_file.as_deref()).map_err(|e| WebhookError::Client {
            name: w.name.clone(),
            message: e.to_string(),
        })?;
        let hook = Arc::new(Hook {
            name: w.name.clone(),
            url,
            key,
            events: w.events.clone(),
            client,
            retry: retry.clone(),
            queue: Queue::new(w.queue.max(1)),
        });
        let rx = core.bus.subscribe();
        tasks.push(tokio::spawn(intake(
            core.clone(),
            hook.clone(),
            rx,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(sender(core.clone(), hook, shutdown.clone())));
        tracing::info!(webhook = %w.name, url = %w.url, events = ?w.events, "webhook started");
    }
    Ok(())
}

/// Journal notes about lost events are rate-limited so an outage does not flood the journal;
/// each note carries the count since the previous one.
struct LossNotes {
    pending: u64,
    last: Option<Instant>,
}

const LOSS_NOTE_EVERY: Duration = Duration::from_secs(10);

impl LossNotes {
    async fn add(&mut self, core: &Core, hook: &str, n: u64, why: &str) {
        self.pending += n;
        tracing::warn!(webhook = %hook, dropped = n, "webhook events dropped: {why}");
        if self.last.is_some_and(|t| t.elapsed() < LOSS_NOTE_EVERY) {
            return;
        }
        let text = format!(
            "webhook {hook}: dropped {} undelivered event(s): {why}",
            self.pending
        );
        if core.recorder.journal("webhook", &text).await.is_ok() {
            self.pending = 0;
            self.last = Some(Instant::now());
        }
    }
}

async fn intake(
    core: Arc<Core>,
    hook: Arc<Hook>,
    mut rx: tokio::sync::broadcast::Receiver<LiveEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut losses = LossNotes {
        pending: 0,
        last: None,
    };
    loop {
        let next = tokio::select! {
            r = rx.recv() => r,
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        let event = match next {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                losses
                    .add(
                        &core,
                        &hook.name,
                        n,
                        "the live event bus overran this webhook's intake",
                    )
                    .await;
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        let kind = event_kind(&event);
        if !hook.events.iter().any(|e| e == kind) {
            continue;
        }
        let id = uuid::Uuid::now_v7().to_string();
        let body = payload(&core, &hook.name, &id, kind, &event);
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let dropped = hook.queue.push(Delivery { id, kind, body });
        if dropped > 0 {
            losses
                .add(
                    &core,
                    &hook.name,
                    dropped as u64,
                    &format!(
                        "the receiver is not keeping up ({}queue of {} full; oldest dropped)",
                        if kind == "hold" { "hold " } else { "" },
                        hook.queue.capacity
                    ),
                )
                .await;
        }
    }
}

/// The JSON body of one delivery, its text safe for a chat (see the module doc).
fn payload(core: &Core, hook: &str, id: &str, kind: &str, event: &LiveEvent) -> Value {
    let mut data = serde_json::to_value(event).unwrap_or(Value::Null);
    // The held action itself, as the approvers see it (the bus event names only its rule).
    // Looked up at once: the hold was queued before it was announced.
    let hold = match event {
        LiveEvent::Verdict { approval_id, .. } if kind == "hold" => core
            .approvals
            .get(approval_id)
            .and_then(|v| serde_json::to_value(v).ok()),
        _ => None,
    };
    chat_escape(&mut data);
    let mut body = json!({
        "delivery": id,
        "webhook": hook,
        "event": kind,
        "sent_ns": crate::clock::now_ns(),
        "data": data,
    });
    if let Some(mut hold) = hold {
        chat_escape(&mut hold);
        body["hold"] = hold;
    }
    body
}

/// Text for a chat: inert, with the chat mark-up characters escaped.
pub fn chat_text(s: &str) -> String {
    let s = inert(s, Keep::Lines);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Applies [`chat_text`] to every string in a JSON value.
fn chat_escape(v: &mut Value) {
    match v {
        Value::String(s) => *s = chat_text(s),
        Value::Array(items) => items.iter_mut().for_each(chat_escape),
        Value::Object(fields) => fields.values_mut().for_each(chat_escape),
        _ => {}
    }
}

async fn sender(core: Arc<Core>, hook: Arc<Hook>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let Some(d) = hook.queue.pop() else {
            tokio::select! {
                _ = hook.queue.notify.notified() => continue,
                _ = crate::shutdown::stopped(&mut shutdown) => break,
            }
        };
        tokio::select! {
            r = deliver(&hook, &d) => if let Err(e) = r {
                tracing::warn!(webhook = %hook.name, delivery = %d.id, event = d.kind, error = %e, "webhook delivery failed");
                let text = format!("webhook {}: delivery {} ({}) failed: {e}", hook.name, d.id, d.kind);
                let _ = core.recorder.journal("webhook", &text).await;
            },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        }
    }
}

/// What one attempt ended with.
enum Attempt {
    Delivered,
    Retry(String),
    GiveUp(String),
}

async fn attempt(hook: &Hook, d: &Delivery, n: u32) -> Attempt {
    let req = Request::post(hook.url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("proctor/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Proctor-Event", d.kind)
        .header("X-Proctor-Delivery", d.id.as_str())
        .header("X-Proctor-Attempt", n.to_string())
        .header("X-Proctor-Signature", signature(&hook.key, &d.body))
        .body(Full::new(d.body.clone()));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Attempt::GiveUp(format!("cannot build the request: {e}")),
    };
    let exchange = async {
        let resp = hook.client.request(req).await?;
        let status = resp.status();
        // Read the (ignored) body so the connection can be reused.
        let _ = resp.into_body().collect().await;
        Ok::<StatusCode, hyper_util::client::legacy::Error>(status)
    };
    match tokio::time::timeout(hook.retry.timeout, exchange).await {
        Err(_) => Attempt::Retry(format!("no answer within {:?}", hook.retry.timeout)),
        Ok(Err(e)) => Attempt::Retry(error_chain(&e)),
        Ok(Ok(s)) if s.is_success() => Attempt::Delivered,
        Ok(Ok(s))
            if s.is_server_error()
                || s == StatusCode::TOO_MANY_REQUESTS
                || s == StatusCode::REQUEST_TIMEOUT =>
        {
            Attempt::Retry(format!("receiver answered {s}"))
        }
        // Other 4xx: the receiver refuses this request as such; repeating it cannot help.
        Ok(Ok(s)) => Attempt::GiveUp(format!("receiver answered {s}")),
    }
}

async fn deliver(hook: &Hook, d: &Delivery) -> Result<(), String> {
    let mut last = String::new();
    for n in 1..=hook.retry.attempts.max(1) {
        match attempt(hook, d, n).await {
            Attempt::Delivered => {
                tracing::debug!(webhook = %hook.name, delivery = %d.id, attempt = n, "webhook delivered");
                return Ok(());
            }
            Attempt::GiveUp(e) => return Err(format!("{e} (not retried)")),
            Attempt::Retry(e) => {
                tracing::debug!(webhook = %hook.name, delivery = %d.id, attempt = n, error = %e, "webhook attempt failed");
                last = e;
            }
        }
        if n < hook.retry.attempts {
            tokio::time::sleep(hook.retry.delay(n)).await;
        }
    }
    Err(format!(
        "gave up after {} attempts: {last}",
        hook.retry.attempts.max(1)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let r = Retry::default();
        let d: Vec<u64> = (1..=6).map(|n| r.delay(n).as_millis() as u64).collect();
        assert_eq!(d, vec![500, 1000, 2000, 4000, 8000, 8000]);
        assert_eq!(r.delay(60), r.max_delay);
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn delivery(id: &str, kind: &'static str) -> Delivery {
        Delivery {
            id: id.into(),
            kind,
            body: Bytes::new(),
        }
    }

    #[test]
    fn queue_drops_oldest() {
        let q = Queue::new(2);
        assert_eq!(q.push(delivery("a", "hold")), 0);
        assert_eq!(q.push(delivery("b", "hold")), 0);
        assert_eq!(q.push(delivery("c", "hold")), 1);
        assert_eq!(q.pop().map(|d| d.id), Some("b".into()));
        assert_eq!(q.pop().map(|d| d.id), Some("c".into()));
        assert!(q.pop().is_none());
    }

    #[test]
    fn alerts_never_push_a_hold_out_and_holds_go_first() {
        let q = Queue::new(2);
        assert_eq!(q.push(delivery("hold-1", "hold")), 0);
        let mut dropped = 0;
        for i in 0..1000 {
            dropped += q.push(delivery(&format!("alert-{i}"), "alert"));
        }
        assert_eq!(dropped, 998);
        let order: Vec<String> = std::iter::from_fn(|| q.pop()).map(|d| d.id).collect();
        assert_eq!(order, ["hold-1", "alert-998", "alert-999"]);
    }

    #[test]
    fn chat_text_is_inert_and_escapes_markup() {
        assert_eq!(
            chat_text(
                "DELETE FROM t -- <!channel> <https://evil|docs> a&b\x1b]52;c;eA==\x07 \u{202e}x"
            ),
            "DELETE FROM t -- &lt;!channel&gt; &lt;https://evil|docs&gt; a&amp;b\\x1b]52;c;eA==\\x07 &lt;U+202E&gt;x"
        );
        let mut v = json!({"a": ["<b>", {"c": "\u{200b}"}], "n": 1});
        chat_escape(&mut v);
        assert_eq!(
            v,
            json!({"a": ["&lt;b&gt;", {"c": "&lt;U+200B&gt;"}], "n": 1})
        );
    }
}
