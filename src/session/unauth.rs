//! Connections refused before authentication cost nothing lasting: each is counted per source
//! (address and protocol) and kind, a source that fails too often is closed at accept for a
//! while, and the counts go to the store journal as one periodic summary record (topic
//! `unauthenticated`) instead of one sealed session per attempt. Memory is bounded: a fixed
//! number of sources per window, a few examples each, every example short and inert.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proctor_gate::inert::Line;
use proctor_gate::{Protocol, Refusal, SessionRequest};
use serde::Serialize;

/// Limits of the per-source accounting.
#[derive(Debug, Clone)]
pub struct UnauthLimits {
    /// Refusals a source may have in a burst before it is closed at accept.
    pub burst: u32,
    /// One more refusal allowed per this much time (the burst refills at this rate).
    pub refill: Duration,
    /// How often a summary is written (when there is anything to say).
    pub summary_every: Duration,
    /// Sources itemised per summary; the rest are counted together.
    pub max_sources: usize,
    /// Examples kept per source and summary.
    pub examples: usize,
    /// Characters kept of each example field (the cut is marked with how much is missing).
    pub example_chars: usize,
    /// Sources whose rate is tracked at once.
    pub max_tracked: usize,
}

impl Default for UnauthLimits {
    fn default() -> Self {
        UnauthLimits {
            burst: 20,
            refill: Duration::from_secs(3),
            summary_every: Duration::from_secs(60),
            max_sources: 1024,
            examples: 3,
            example_chars: 200,
            max_tracked: 65_536,
        }
    }
}

/// One refusal shown in full (within `example_chars`), inert.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Example {
    pub kind: String,
    pub agent: String,
    pub target: String,
    pub message: String,
}

/// What one source did in one window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SourceCounts {
    pub source: String,
    pub protocol: String,
    /// Refusals by kind (`unknown_agent`, `bad_credential`, `protocol_violation`...) and
    /// connections closed at accept (`dropped: ...`).
    pub counts: BTreeMap<String, u64>,
    pub examples: Vec<Example>,
}

/// The summary record's text (JSON) in the journal.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub from_ns: i64,
    pub until_ns: i64,
    /// Every refusal and early drop in the window, itemised or not.
    pub total: u64,
    pub sources: Vec<SourceCounts>,
    /// Sources past `max_sources`: how many, and their events together.
    pub other_sources: u64,
    pub other_events: u64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Window {
    from_ns: i64,
    total: u64,
    sources: HashMap<(IpAddr, Protocol), SourceCounts>,
    other: HashMap<(IpAddr, Protocol), ()>,
    other_events: u64,
}

impl Window {
    fn new() -> Self {
        Window {
            from_ns: crate::clock::now_ns(),
            total: 0,
            sources: HashMap::new(),
            other: HashMap::new(),
            other_events: 0,
        }
    }
}

/// What the caller should do about one counted refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Noted {
    /// First of its source in this window: worth a log line and a live event. The rest are
    /// only counted, so a flood cannot flood the log either.
    pub first_in_window: bool,
}

pub struct Unauthenticated {
    limits: UnauthLimits,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    window: Mutex<Window>,
    /// One summary write at a time: the final write at shutdown waits for a periodic one
    /// still in flight instead of finding the window already taken and the task that took
    /// it about to be aborted (which lost the summary).
    writing: tokio::sync::Mutex<()>,
}

fn clip(s: &str, max: usize) -> String {
    let inert = Line(s).to_string();
    let n = inert.chars().count();
    if n <= max {
        return inert;
    }
    let kept: String = inert.chars().take(max).collect();
    format!("{kept}…[{} more characters]", n - max)
}

impl Unauthenticated {
    pub fn new(limits: UnauthLimits) -> Self {
        Unauthenticated {
            limits,
            buckets: Mutex::new(HashMap::new()),
            window: Mutex::new(Window::new()),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    pub fn summary_every(&self) -> Duration {
        self.limits.summary_every
    }

    fn refilled(&self, b: &mut Bucket, now: Instant) {
        let per = self.limits.refill.as_secs_f64().max(1e-3);
        let add = now.saturating_duration_since(b.at).as_secs_f64() / per;
        b.tokens = (b.tokens + add).min(f64::from(self.limits.burst));
        b.at = now;
    }

    /// Whether `ip` may be served at all: false once it used up its refusals.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        let now = Instant::now();
        match buckets.get_mut(&ip) {
            Some(b) => {
                self.refilled(b, now);
                b.tokens >= 1.0
            }
            None => true,
        }
    }

    /// Spends one of `ip`'s refusals.
    fn spend(&self, ip: IpAddr) {
        let Ok(mut buckets) = self.buckets.lock() else {
            return;
        };
        let now = Instant::now();
        if !buckets.contains_key(&ip) && buckets.len() >= self.limits.max_tracked {
            // Forget sources whose allowance is whole again: they carry no information.
            let burst = f64::from(self.limits.burst);
            let per = self.limits.refill.as_secs_f64().max(1e-3);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() / per < burst
            });
            if buckets.len() >= self.limits.max_tracked {
                return;
            }
        }
        let b = buckets.entry(ip).or_insert(Bucket {
            tokens: f64::from(self.limits.burst),
            at: now,
        });
        self.refilled(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }

    fn count(
        &self,
        peer: SocketAddr,
        protocol: Protocol,
        kind: &str,
        example: Option<Example>,
    ) -> Noted {
        let Ok(mut w) = self.window.lock() else {
            return Noted {
                first_in_window: false,
            };
        };
        w.total += 1;
        let key = (peer.ip(), protocol);
        if !w.sources.contains_key(&key) && w.sources.len() >= self.limits.max_sources {
            // Remembered only up to `max_tracked`, so `other_sources` is then a lower bound.
            if w.other.len() < self.limits.max_tracked {
                w.other.insert(key, ());
            }
            w.other_events += 1;
            return Noted {
                first_in_window: false,
            };
        }
        let first = !w.sources.contains_key(&key);
        let entry = w.sources.entry(key).or_insert_with(|| SourceCounts {
            source: peer.ip().to_string(),
            protocol: protocol.as_str().to_string(),
            ..Default::default()
        });
        *entry.counts.entry(kind.to_string()).or_insert(0) += 1;
        if let Some(e) = example
            && entry.examples.len() < self.limits.examples
        {
            entry.examples.push(e);
        }
        Noted {
            first_in_window: first,
        }
    }

    /// Counts a refusal before authentication and spends one of the source's allowance.
    pub fn refused(&self, req: &SessionRequest, refusal: &Refusal) -> Noted {
        self.spend(req.client_addr.ip());
        let max = self.limits.example_chars;
        let example = Example {
            kind: refusal.kind.as_str().to_string(),
            agent: clip(&req.agent, max),
            target: clip(&req.target, max),
            message: clip(&refusal.message, max),
        };
        self.count(
            req.client_addr,
            req.protocol,
            refusal.kind.as_str(),
            Some(example),
        )
    }

    /// Counts a connection closed at accept.
    pub fn dropped(&self, peer: SocketAddr, protocol: Protocol, why: &str) -> Noted {
        self.count(peer, protocol, &format!("dropped: {why}"), None)
    }

    /// Takes the window's summary (and starts a new window), or `None` when nothing happened.
    pub fn take(&self) -> Option<Summary> {
        let mut w = self.window.lock().ok()?;
        if w.total == 0 {
            return None;
        }
        let old = std::mem::replace(&mut *w, Window::new());
        let mut sources: Vec<SourceCounts> = old.sources.into_values().collect();
        sources.sort_by(|a, b| (&a.source, &a.protocol).cmp(&(&b.source, &b.protocol)));
        Some(Summary {
            from_ns: old.from_ns,
            until_ns: crate::clock::now_ns(),
            total: old.total,
            sources,
            other_sources: old.other.len() as u64,
            other_events: old.other_events,
        })
    }

    /// Puts back a summary that could not be written, so its counts are not lost.
    pub fn restore(&self, s: Summary) {
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        w.from_ns = w.from_ns.min(s.from_ns);
        w.total += s.total;
        w.other_events += s.other_events;
        for src in s.sources {
            let (Ok(ip), Some(protocol)) =
                (src.source.parse::<IpAddr>(), Protocol::parse(&src.protocol))
            else {
                continue;
            };
            let e = w
                .sources
                .entry((ip, protocol))
                .or_insert_with(|| SourceCounts {
                    source: src.source.clone(),
                    protocol: src.protocol.clone(),
                    ..Default::default()
                });
            for (k, n) in src.counts {
                *e.counts.entry(k).or_insert(0) += n;
            }
            for ex in src.examples {
                if e.examples.len() < self.limits.examples {
                    e.examples.push(ex);
                }
            }
        }
    }
}

/// Writes a summary to the store journal every `summary_every`. The last one is written by
/// `Server::stop` before this task is aborted, so at shutdown this task only returns.
/// A summary that cannot be written is kept for the next attempt.
pub async fn run_summaries(
    core: std::sync::Arc<super::Core>,
    unauth: std::sync::Arc<Unauthenticated>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(unauth.summary_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::shutdown::stopped(&mut shutdown) => return,
        };
        write_summary(&core, &unauth).await;
    }
}

pub async fn write_summary(core: &super::Core, unauth: &Unauthenticated) {
    let _one_at_a_time = unauth.writing.lock().await;
    let Some(summary) = unauth.take() else {
        return;
    };
    let text = match serde_json::to_string(&summary) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "unauthenticated summary not serialisable");
            return;
        }
    };
    match core.recorder.journal(JOURNAL_TOPIC, &text).await {
        Ok(()) => tracing::info!(
            refusals = summary.total,
            sources = summary.sources.len() as u64 + summary.other_sources,
            "unauthenticated connections summarised in the store journal"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "unauthenticated summary not written; kept for the next attempt");
            unauth.restore(summary);
        }
    }
}

/// The journal topic of the summaries.
pub const JOURNAL_TOPIC: &str = "unauthenticated";

#[cfg(test)]
mod tests {
    use super::*;
    use proctor_gate::RefusalKind;

    fn req(addr: &str, agent: &str) -> SessionRequest {
        SessionRequest {
            protocol: Protocol::Ssh,
            agent: agent.into(),
            target: "web1".into(),
            login: None,
            client_addr: addr.parse().expect("addr"),
            params: vec![],
        }
    }

    #[test]
    fn a_source_past_its_burst_is_closed_and_everything_is_counted_once() {
        let u = Unauthenticated::new(UnauthLimits {
            burst: 3,
            refill: Duration::from_secs(3600),
            ..Default::default()
        });
        let r = Refusal::new(RefusalKind::UnknownAgent, "no\x1b]52;c;AAAA\x07");
        let ip: IpAddr = "127.0.0.9".parse().expect("ip");
        for i in 0..3 {
            assert!(u.admits(ip));
            let n = u.refused(&req("127.0.0.9:1000", "evil\nname"), &r);
            assert_eq!(n.first_in_window, i == 0);
        }
        assert!(!u.admits(ip), "the burst is spent");
        assert!(
            u.admits("127.0.0.10".parse().expect("ip")),
            "other sources unaffected"
        );
        u.dropped(
            "127.0.0.9:1001".parse().expect("addr"),
            Protocol::Ssh,
            "rate",
        );
        let s = u.take().expect("summary");
        assert_eq!(s.total, 4);
        assert_eq!(s.sources.len(), 1);
        assert_eq!(s.sources[0].counts.get("unknown_agent"), Some(&3));
        assert_eq!(s.sources[0].counts.get("dropped: rate"), Some(&1));
        assert_eq!(s.sources[0].examples.len(), 3);
        // Inert: no raw escape or newline survives into the record, each shown as a token.
        let ex = &s.sources[0].examples[0];
        assert_eq!(ex.agent, "evil\\nname");
        assert_eq!(ex.message, "no\\x1b]52;c;AAAA\\x07");
        assert!(u.take().is_none(), "a new window starts empty");
        u.restore(s);
        assert_eq!(u.take().map(|s| s.total), Some(4));
    }

    #[test]
    fn sources_past_the_itemised_limit_are_counted_together() {
        let u = Unauthenticated::new(UnauthLimits {
            max_sources: 2,
            ..Default::default()
        });
        let r = Refusal::new(RefusalKind::ProtocolViolation, "x");
        for i in 1..=5 {
            u.refused(&req(&format!("127.0.0.{i}:1"), ""), &r);
        }
        let s = u.take().expect("summary");
        assert_eq!((s.total, s.sources.len()), (5, 2));
        assert_eq!((s.other_sources, s.other_events), (3, 3));
    }

    #[test]
    fn long_examples_are_cut_visibly() {
        assert_eq!(clip("abcdef", 3), "abc…[3 more characters]");
        assert_eq!(clip("a\nb", 10), "a\\nb");
    }
}
