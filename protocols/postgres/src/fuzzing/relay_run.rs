//! `pg_relay`: the real relay ([`crate::relay::Relay`]) between an agent and a hostile target,
//! both in memory (`tokio::io::duplex`), judged by an in-memory gate whose decisions come from
//! the input. Checked afterwards against what the gate recorded, not only "no panic".
//!
//! Input: byte 0 seeds the policy (0: allow everything), byte 1 holds flags (bit 0: allowed
//! batches are forwarded before their records are durable; bit 1: durability acks arrive late).
//! Then chunks, each a header byte `h` and, for data, a big-endian u16 length:
//! `h % 8` in 0..=2 agent bytes, 3..=5 target bytes, 6 a pause of `h / 8` scheduler turns,
//! 7 a kill. When the input ends the agent closes its side; the session must then end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use proctor_gate::{
    Action, Decision, Durable, Event, Gate, GateError, Hold, Outcome, Resolution, Statement,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::PgFrontendConfig;
use crate::relay::{Relay, TargetSide};
use crate::wire::{Frame, take_typed_frame};

/// Most frame bytes the relay accepts here.
const MAX_FRAME: usize = 1 << 20;
/// Agent bytes fed at most, well under what the relay reads while it waits (1 MiB).
const MAX_AGENT_BYTES: usize = 512 << 10;
/// A session that has not ended this long after its agent left is a hang, not slowness.
const END_BOUND: Duration = Duration::from_secs(30);

/// Final verdict of one decided statement.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Verdict {
    Allow,
    Deny,
    /// Held, then approved or refused by a person.
    HeldThen(bool),
}

impl Verdict {
    fn allows(self) -> bool {
        matches!(self, Verdict::Allow | Verdict::HeldThen(true))
    }
}

/// A judged statement, its verdict, and whether it opened a batch (a `decide` call of its
/// own, or the first of a `decide_all`): a Query's statements are judged as one batch, or one
/// more after each approved hold.
pub(super) type Judgement = (Statement, Verdict, bool);

#[derive(Default)]
struct Log {
    decided: Vec<Judgement>,
    events: Vec<Event>,
}

/// A gate that decides from the input's policy seed and remembers everything it was asked.
struct MemGate {
    seed: u8,
    overlap: bool,
    late_acks: bool,
    kill: watch::Sender<Option<String>>,
    log: Mutex<Log>,
}

impl MemGate {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn verdict(&self, id: u64) -> Verdict {
        if self.seed == 0 {
            return Verdict::Allow;
        }
        let h = (u64::from(self.seed) ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_mul(0x2545_f491_4f6c_dd1d);
        match (h >> 29) % 8 {
            5 => Verdict::Deny,
            6 => Verdict::HeldThen(true),
            7 => Verdict::HeldThen(false),
            _ => Verdict::Allow,
        }
    }

    fn ack(&self) -> Durable {
        let turns = if self.late_acks { 3 } else { 0 };
        Durable(Box::pin(async move {
            for _ in 0..turns {
                tokio::task::yield_now().await;
            }
            Ok(())
        }))
    }
}

#[async_trait]
impl Gate for MemGate {
    fn session_id(&self) -> &str {
        "fuzz"
    }

    async fn record(&self, event: Event) -> Result<(), GateError> {
        self.log().events.push(event);
        Ok(())
    }

    async fn enqueue(&self, event: Event) -> Result<Durable, GateError> {
        self.log().events.push(event);
        Ok(self.ack())
    }

    async fn decide(&self, action: Action) -> Result<Decision, GateError> {
        Ok(self.decide_one(action, true))
    }

    async fn decide_all(&self, actions: Vec<Action>) -> Result<Vec<Decision>, GateError> {
        let mut out = Vec::with_capacity(actions.len());
        for (i, action) in actions.into_iter().enumerate() {
            let d = self.decide_one(action, i == 0);
            let stop = !matches!(d, Decision::Allow);
            out.push(d);
            if stop {
                break;
            }
        }
        Ok(out)
    }

    async fn decide_all_overlapped(
        &self,
        actions: Vec<Action>,
    ) -> Result<(Vec<Decision>, Option<Durable>), GateError> {
        let decisions = self.decide_all(actions).await?;
        let all_allowed = decisions.iter().all(|d| matches!(d, Decision::Allow));
        let ticket = (self.overlap && all_allowed).then(|| self.ack());
        Ok((decisions, ticket))
    }

    fn kill_signal(&self) -> watch::Receiver<Option<String>> {
        self.kill.subscribe()
    }

    async fn end(&self, _outcome: Outcome, _reason: &str) -> Result<(), GateError> {
        Ok(())
    }
}

impl MemGate {
    fn decide_one(&self, action: Action, first: bool) -> Decision {
        let Action::Statement(s) = action else {
            return Decision::Deny {
                rule: "fuzz".into(),
                reason: "not a statement".into(),
            };
        };
        let v = self.verdict(s.id);
        self.log().decided.push((s, v, first));
        match v {
            Verdict::Allow => Decision::Allow,
            Verdict::Deny => Decision::Deny {
                rule: "fuzz".into(),
                reason: "denied by the input".into(),
            },
            Verdict::HeldThen(approve) => Decision::Held(Hold {
                approval_id: "a1".into(),
                rule: "fuzz".into(),
                reason: "held by the input".into(),
                outcome: Box::pin(async move {
                    tokio::task::yield_now().await;
                    if approve {
                        Resolution::Allow
                    } else {
                        Resolution::Deny {
                            rule: "approval".into(),
                            reason: "refused".into(),
                            cause: proctor_gate::DenyCause::Approver,
                        }
                    }
                }),
            }),
        }
    }
}

/// One data step of an input: `header` (0 agent, 3 target) and the length-prefixed bytes.
#[cfg(test)]
pub(super) fn step_bytes(header: u8, bytes: &[u8]) -> Vec<u8> {
    let len = bytes.len().min(usize::from(u16::MAX));
    let mut v = vec![header];
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&bytes[..len]);
    v
}

enum Step<'a> {
    Agent(&'a [u8]),
    Target(&'a [u8]),
    Pause(u8),
    Kill,
}

fn steps(mut data: &[u8]) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    while let Some((&h, rest)) = data.split_first() {
        data = rest;
        match h % 8 {
            6 => out.push(Step::Pause(h / 8)),
            7 => out.push(Step::Kill),
            k => {
                let len = match data {
                    [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
                    _ => data.len(),
                };
                data = data.get(2..).unwrap_or_default();
                let (chunk, rest) = data.split_at(len.min(data.len()));
                data = rest;
                out.push(if k < 3 {
                    Step::Agent(chunk)
                } else {
                    Step::Target(chunk)
                });
            }
        }
    }
    out
}

/// Runs one input; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let _ = run_counted(data);
}

/// [`run`], saying how many statements were judged, how many messages reached the target, and
/// how many times the relay asked the target its prepared statements.
pub(super) fn run_counted(data: &[u8]) -> (usize, usize, usize) {
    let (seed, flags, rest) = match data {
        [s, f, rest @ ..] => (*s, *f, rest),
        _ => (0, 0, data),
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return (0, 0, 0);
    };
    let (kill, _) = watch::channel(None);
    let gate = Arc::new(MemGate {
        seed,
        overlap: flags & 1 != 0,
        late_acks: flags & 2 != 0,
        kill,
        log: Mutex::new(Log::default()),
    });
    let steps = steps(rest);
    let (agent_sent, forwarded) = rt.block_on(session(gate.clone(), &steps));
    let log = gate.log();
    check(&agent_sent, &forwarded, &log.decided);
    let asked = log
        .events
        .iter()
        .filter(|e| matches!(e, Event::TargetMessage { kind, .. } if kind == "names_learnt"))
        .count();
    (log.decided.len(), frames(&forwarded).len(), asked)
}

/// The session over in-memory pipes: returns every byte the agent sent and every byte the
/// relay wrote to the target.
async fn session(gate: Arc<MemGate>, steps: &[Step<'_>]) -> (Vec<u8>, Vec<u8>) {
    let (agent, relay_client) = tokio::io::duplex(64 << 10);
    let (target, relay_target) = tokio::io::duplex(64 << 10);
    let cfg = Arc::new(PgFrontendConfig {
        max_message_bytes: MAX_FRAME,
        ..PgFrontendConfig::default()
    });
    let (cancels, _) = watch::channel(0u64);
    let relay = Relay::new(
        gate.clone(),
        cfg,
        Box::new(relay_client),
        BytesMut::new(),
        TargetSide {
            io: Box::new(relay_target),
            params: vec![("standard_conforming_strings".into(), "on".into())],
            status: b'I',
            leftover: BytesMut::new(),
        },
        BytesMut::new(),
        None,
        Arc::new(cancels),
        None,
    );
    let relay = tokio::spawn(relay.run());
    let (mut agent_rx, mut agent_tx) = tokio::io::split(agent);
    let (mut target_rx, mut target_tx) = tokio::io::split(target);
    // What the agent is told is read and dropped, so the relay never blocks writing it.
    let agent_reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 << 10];
        while matches!(agent_rx.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let target_reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let _ = target_rx.read_to_end(&mut all).await;
        all
    });
    let mut agent_sent = Vec::new();
    let feed = async {
        for step in steps {
            match step {
                // Past this the relay may rightly stop reading an agent whose messages wait
                // for answers the target never gives.
                Step::Agent(b) if agent_sent.len() + b.len() > MAX_AGENT_BYTES => break,
                Step::Agent(b) => {
                    // Noted before it is written: the relay may read part of a write that
                    // then fails because the session ended.
                    agent_sent.extend_from_slice(b);
                    if agent_tx.write_all(b).await.is_err() {
                        break;
                    }
                }
                Step::Target(b) => {
                    if target_tx.write_all(b).await.is_err() {
                        break;
                    }
                }
                Step::Pause(n) => {
                    for _ in 0..*n {
                        tokio::task::yield_now().await;
                    }
                }
                Step::Kill => {
                    let _ = gate.kill.send(Some("killed by the input".into()));
                }
            }
            tokio::task::yield_now().await;
        }
    };
    assert!(
        tokio::time::timeout(END_BOUND, feed).await.is_ok(),
        "the relay stopped reading a live session"
    );
    let _ = agent_tx.shutdown().await;
    drop(agent_tx);
    let ended = tokio::time::timeout(END_BOUND, relay).await;
    assert!(
        ended.is_ok(),
        "the session did not end after the agent left"
    );
    drop(target_tx);
    agent_reader.abort();
    let forwarded = tokio::time::timeout(END_BOUND, target_reader)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    (agent_sent, forwarded)
}

fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Ok(Some(f)) = take_typed_frame(&mut buf, MAX_FRAME) {
        out.push(f);
    }
    out
}

/// The relay's invariants over one session:
/// 1. what reaches the target is the agent's own messages, byte for byte and in order (a
///    Terminate of proctor's own at the end aside);
/// 2. every message that runs SQL (Query, Execute, FunctionCall) was judged and allowed;
/// 3. after an Execute that was not forwarded (denied, or refused after a hold), nothing but
///    Flush reaches the target before the agent's next Sync.
fn check(agent_sent: &[u8], forwarded: &[u8], decided: &[Judgement]) {
    let sent = frames(agent_sent);
    let fwd = frames(forwarded);
    // 1: a greedy in-order match of forwarded frames to the agent's.
    let mut matched = Vec::with_capacity(fwd.len());
    let mut at = 0;
    let own = |f: &Frame| {
        f.tag == b'Q'
            && crate::frontend::query_text(f).is_ok_and(|t| t == crate::relay::INTROSPECT_QUERY)
    };
    let fwd: Vec<Frame> = fwd.into_iter().filter(|f| !own(f)).collect();
    for (k, f) in fwd.iter().enumerate() {
        match sent[at..].iter().position(|s| s.bytes == f.bytes) {
            Some(p) => {
                matched.push(at + p);
                at += p + 1;
            }
            None => assert!(
                f.tag == b'X' && k + 1 == fwd.len(),
                "forwarded a message the agent did not send in that order: tag {:?}",
                char::from(f.tag)
            ),
        }
    }
    // 3
    let forwarded_idx: HashSet<usize> = matched.iter().copied().collect();
    let last_forwarded = matched.last().copied();
    for (i, s) in sent.iter().enumerate() {
        if s.tag != b'E' || forwarded_idx.contains(&i) || last_forwarded.is_none_or(|l| l < i) {
            continue;
        }
        for (j, later) in sent.iter().enumerate().skip(i + 1) {
            if later.tag == b'S' {
                break;
            }
            assert!(
                later.tag == b'H' || later.tag == b'X' || !forwarded_idx.contains(&j),
                "message {:?} forwarded after an Execute that was not, before Sync",
                char::from(later.tag)
            );
        }
    }
    // 2: each kind of running message takes the next matching judgement, in order (a cursor
    // per kind: an Execute that fetches more rows of a portal takes no judgement of its own).
    let (mut q_cursor, mut e_cursor, mut f_cursor) = (0, 0, 0);
    for f in &fwd {
        match f.tag {
            b'Q' => {
                let text = crate::frontend::query_text(f).unwrap_or_default();
                q_cursor = query_judgements(&text, decided, q_cursor);
            }
            b'E' => {
                let Ok(e) = crate::frontend::execute(f) else {
                    panic!("forwarded an undecodable Execute");
                };
                // Judgements of Executes the relay refused are skipped over: the agent may send
                // the same Execute again after Sync, and it is then judged again.
                let next = decided[e_cursor..]
                    .iter()
                    .position(|(s, v, _)| s.extended && s.portal == e.portal && v.allows());
                match next {
                    Some(p) => e_cursor += p + 1,
                    // Fetching more rows of a portal whose Execute was allowed, as far as the
                    // target's answers say it still exists (a hostile target may never end the
                    // transaction that would drop it).
                    None => assert!(
                        decided[..e_cursor]
                            .iter()
                            .any(|(s, v, _)| s.extended && s.portal == e.portal && v.allows()),
                        "an Execute reached the target without an allowed judgement"
                    ),
                }
            }
            b'F' => {
                // As for Executes, refused calls' judgements are passed over: each forwarded
                // call takes the next allowed one, so forwarding a refused call runs out.
                let Some(p) = decided[f_cursor..]
                    .iter()
                    .position(|(s, v, _)| s.text.contains("fast-path FunctionCall") && v.allows())
                else {
                    panic!("a FunctionCall reached the target without an allowed judgement");
                };
                f_cursor += p + 1;
            }
            _ => {}
        }
    }
}

/// The judgements of one forwarded Query: a batch from `cursor` on whose first statement's text
/// is in the query, then the statements with the following ids found later in the query text,
/// each after a `;` (a query holds its statements in order, separated by `;`). Judgements of
/// Queries that were refused are passed over, so the first such group that is wholly allowed
/// is the Query's; none means it reached the target unjudged or refused. Returns the new
/// cursor.
/// A recorded statement's text without the line proctor adds to say what it runs by name.
fn bare(text: &str) -> &str {
    text.split("\n-- proctor: ").next().unwrap_or(text)
}

fn query_judgements(text: &str, decided: &[Judgement], cursor: usize) -> usize {
    let simple = |s: &Statement| !s.extended && !s.text.contains("fast-path FunctionCall");
    for start in cursor..decided.len() {
        let (s, v, first) = &decided[start];
        if !*first || !simple(s) || !text.contains(bare(&s.text)) {
            continue;
        }
        let mut allowed = v.allows();
        let mut off = text.find(bare(&s.text)).unwrap_or(0) + bare(&s.text).len();
        let mut prev = s;
        let mut k = start + 1;
        while let Some((s, v, _)) = decided.get(k) {
            if s.id != prev.id + 1 || !simple(s) {
                break;
            }
            let rest = text.get(off..).unwrap_or_default();
            let Some(pos) = rest.find(bare(&s.text)) else {
                break;
            };
            if !(rest[..pos].contains(';') || bare(&prev.text).ends_with(';')) {
                break;
            }
            allowed &= v.allows();
            off += pos + bare(&s.text).len();
            prev = s;
            k += 1;
        }
        if allowed {
            return k;
        }
    }
    let left: Vec<_> = decided[cursor..]
        .iter()
        .map(|(s, v, f)| (s.id, s.text.as_str(), s.extended, *v, *f))
        .collect();
    panic!(
        "a Query reached the target without an allowed judgement: {text:?}; judgements left: {left:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn stmt(id: u64, text: &str, extended: bool, portal: &str) -> Statement {
        Statement {
            id,
            text: text.into(),
            params: Vec::new(),
            statement_name: String::new(),
            portal: portal.into(),
            extended,
            class: proctor_gate::StatementClass::Read,
            command: String::new(),
            tables: Vec::new(),
            reasoning: None,
            runs: None,
        }
    }

    /// The relay really runs: a pipeline allowed by the policy reaches the target whole, and a
    /// denied one does not.
    #[test]
    fn allowed_and_denied_pipelines_reach_the_target_or_not() {
        let mut agent = typed(b'Q', b"select 1; select 2\0");
        agent.extend(typed(b'P', b"s1\0select $1\0\0\0"));
        agent.extend(typed(b'B', b"\0s1\0\0\0\0\0\0\0"));
        agent.extend(typed(b'E', b"\0\0\0\0\0"));
        agent.extend(typed(b'S', b""));
        let input = |seed: u8| {
            let mut v = vec![seed, 0, 0];
            v.extend_from_slice(&(agent.len() as u16).to_be_bytes());
            v.extend_from_slice(&agent);
            v
        };
        // Q, P, B, E, S and proctor's Terminate.
        assert_eq!(run_counted(&input(0)), (3, 6, 0));
        let gate_denies_first = (1..=255u8)
            .find(|&s| {
                let g = MemGate {
                    seed: s,
                    overlap: false,
                    late_acks: false,
                    kill: watch::channel(None).0,
                    log: Mutex::new(Log::default()),
                };
                g.verdict(1) == Verdict::Deny
            })
            .unwrap_or(0);
        assert_ne!(gate_denies_first, 0);
        let (judged, forwarded, _) = run_counted(&input(gate_denies_first));
        assert!(judged >= 1);
        // The Query is refused whole; P, B, S and the Terminate still go through, the Execute
        // only if its own judgement allowed it.
        assert!((4..=5).contains(&forwarded), "{forwarded}");
    }

    /// The checks fail on what a broken relay would do (they are not vacuous).
    #[test]
    fn checks_catch_broken_forwarding() {
        let q = typed(b'Q', b"select 1; delete from t\0");
        let decided = vec![
            (stmt(1, "select 1", false, ""), Verdict::Allow, true),
            (stmt(2, "delete from t", false, ""), Verdict::Deny, false),
        ];
        let r = std::panic::catch_unwind(|| check(&q, &q, &decided));
        assert!(r.is_err(), "a Query with a denied statement was accepted");
        check(&q, &[], &decided);

        let e = typed(b'E', b"\0\0\0\0\0");
        let b = typed(b'B', b"\0\0\0\0\0\0\0\0");
        let s = typed(b'S', b"");
        let sent = [e.clone(), b.clone(), s.clone()].concat();
        let denied = vec![(stmt(1, "", true, ""), Verdict::Deny, true)];
        let r =
            std::panic::catch_unwind(|| check(&sent, &[b.clone(), s.clone()].concat(), &denied));
        assert!(r.is_err(), "a Bind after a denied Execute was accepted");
        check(&sent, &s, &denied);
        let r = std::panic::catch_unwind(|| check(&sent, &[e, s.clone()].concat(), &denied));
        assert!(r.is_err(), "a denied Execute was accepted");
        let r = std::panic::catch_unwind(|| check(&s, &typed(b'Q', b"x\0"), &[]));
        assert!(r.is_err(), "a message the agent never sent was accepted");
    }
}
