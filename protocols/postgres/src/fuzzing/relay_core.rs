//! `pg_core`: the relay's I/O-free core ([`crate::relay::Core`]) driven directly, with no
//! adapter, no tokio and no sockets: pipelines of Parse/Bind/Describe/Execute/Close/Query/
//! Flush/Sync from the agent, some statements denied or held (the approvals resolving late),
//! overlapped verdicts whose durability acks arrive late, and a model of the server that
//! answers what reached it in order, with errors sprinkled in, keeping its own prepared
//! statements and portals. Every choice is read from the input (the property test feeds it a
//! seeded random stream, the fuzz target arbitrary bytes). Checked after every step:
//!
//! - rule 1: every statement the server ran (its text, as the server's own names say) was
//!   allowed by a verdict, in order;
//! - rule 3: no byte reaches the agent past the mark of a verdict whose records are not acked;
//! - the names model changes only on the server's word: once the server has answered
//!   everything, each name the core is sure of holds, on the server, what the core thinks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use proctor_gate::{Action, GateError, Resolution};

use crate::PgFrontendConfig;
use crate::relay::{Ask, Core, GateFailure, GateVerdict, HoldInfo, Out, Verdict};
use crate::wire::{Severity, error_bytes, put_ready, take_typed_frame};

/// Most steps of one run (an input longer than this is cut).
const MAX_STEPS: usize = 2_000;

/// Where the choices come from.
pub(crate) struct Choices<'a> {
    data: &'a [u8],
}

impl Choices<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(*b)
    }

    fn below(&mut self, n: u8) -> u8 {
        self.byte().unwrap_or(0) % n.max(1)
    }
}

fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

const STATEMENTS: &[&str] = &["", "s1", "s2"];
const PORTALS: &[&str] = &["", "p1"];

/// The number a statement text ends with: texts are made unique by it.
fn key(text: &str) -> Option<u64> {
    let digits: String = text
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.chars().rev().collect::<String>().parse().ok()
}

/// One agent message.
fn agent_message(c: &mut Choices<'_>, n: &mut u64) -> Vec<u8> {
    *n += 1;
    let text = match c.below(3) {
        0 => format!("SELECT {n}"),
        1 => format!("DELETE FROM t WHERE id = {n}"),
        _ => format!("UPDATE t SET v = 1 WHERE id = {n}"),
    };
    let stmt = STATEMENTS[usize::from(c.below(3))];
    let portal = PORTALS[usize::from(c.below(2))];
    let mut b = Vec::new();
    match c.below(16) {
        0..=2 => {
            cstr(&mut b, stmt);
            cstr(&mut b, &text);
            b.extend([0, 0]);
            typed(b'P', &b)
        }
        3..=5 => {
            cstr(&mut b, portal);
            cstr(&mut b, stmt);
            b.extend([0, 0, 0, 0, 0, 0]);
            typed(b'B', &b)
        }
        6..=8 => {
            cstr(&mut b, portal);
            b.extend([0, 0, 0, 0]);
            typed(b'E', &b)
        }
        9 => {
            let (kind, name) = if c.below(2) == 0 {
                (b'S', stmt)
            } else {
                (b'P', portal)
            };
            b.push(kind);
            cstr(&mut b, name);
            typed(b'D', &b)
        }
        10 => {
            let (kind, name) = if c.below(2) == 0 {
                (b'S', stmt)
            } else {
                (b'P', portal)
            };
            b.push(kind);
            cstr(&mut b, name);
            typed(b'C', &b)
        }
        11 | 12 => {
            cstr(&mut b, &text);
            typed(b'Q', &b)
        }
        13 => typed(b'H', &[]),
        _ => typed(b'S', &[]),
    }
}

/// The server: prepared statements and portals as PostgreSQL keeps them in autocommit (portals
/// end with the implicit transaction, at Sync or at the end of a Query), skipping to Sync after
/// an error in an extended-protocol block.
#[derive(Default)]
struct Server {
    statements: HashMap<String, String>,
    portals: HashMap<String, (String, bool)>,
    skipping: bool,
    /// Texts it ran, in order.
    ran: Vec<String>,
    /// Every message forwarded has been answered and the last one ended a block.
    settled: bool,
}

impl Server {
    /// Answers the messages in `input`, failing some by the choices.
    fn answer(&mut self, input: &mut BytesMut, c: &mut Choices<'_>) -> BytesMut {
        let mut out = BytesMut::new();
        while let Ok(Some(f)) = take_typed_frame(input, 1 << 20) {
            let body = f.body();
            let mut r = body.split(|b| *b == 0).map(String::from_utf8_lossy);
            let fail = c.below(8) == 0;
            if self.skipping && f.tag != b'S' {
                // Skipped up to the Sync, a Query too: nothing is answered.
                self.settled = false;
                continue;
            }
            self.settled = matches!(f.tag, b'S' | b'Q');
            let error = |out: &mut BytesMut| {
                out.extend_from_slice(&error_bytes(Severity::Error, "42601", "no"));
            };
            match f.tag {
                b'P' => {
                    let name = r.next().unwrap_or_default().to_string();
                    let text = r.next().unwrap_or_default().to_string();
                    if fail || (!name.is_empty() && self.statements.contains_key(&name)) {
                        error(&mut out);
                        self.skipping = true;
                    } else {
                        self.statements.insert(name, text);
                        out.extend_from_slice(b"1\0\0\0\x04");
                    }
                }
                b'B' => {
                    let portal = r.next().unwrap_or_default().to_string();
                    let stmt = r.next().unwrap_or_default().to_string();
                    let exists = !portal.is_empty() && self.portals.contains_key(&portal);
                    match self.statements.get(&stmt) {
                        Some(text) if !fail && !exists => {
                            self.portals.insert(portal, (text.clone(), false));
                            out.extend_from_slice(b"2\0\0\0\x04");
                        }
                        _ => {
                            error(&mut out);
                            self.skipping = true;
                        }
                    }
                }
                b'E' => {
                    let portal = r.next().unwrap_or_default().to_string();
                    match self.portals.get_mut(&portal) {
                        Some((text, done)) if !fail => {
                            if !*done {
                                *done = true;
                                self.ran.push(text.clone());
                            }
                            out.extend_from_slice(&typed(b'C', b"SELECT 0\0"));
                        }
                        _ => {
                            error(&mut out);
                            self.skipping = true;
                        }
                    }
                }
                b'D' => {
                    let (kind, name) = (body.first().copied(), r.next().unwrap_or_default());
                    let name = name.get(1..).unwrap_or_default().to_string();
                    let known = if kind == Some(b'S') {
                        self.statements.contains_key(&name)
                    } else {
                        self.portals.contains_key(&name)
                    };
                    if !known {
                        error(&mut out);
                        self.skipping = true;
                    } else {
                        if kind == Some(b'S') {
                            out.extend_from_slice(&typed(b't', &[0, 0]));
                        }
                        out.extend_from_slice(b"n\0\0\0\x04");
                    }
                }
                b'C' => {
                    let (kind, name) = (body.first().copied(), r.next().unwrap_or_default());
                    let name = name.get(1..).unwrap_or_default().to_string();
                    if kind == Some(b'S') {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                    out.extend_from_slice(b"3\0\0\0\x04");
                }
                b'S' => {
                    self.skipping = false;
                    self.portals.clear();
                    put_ready(&mut out, b'I');
                }
                b'Q' => {
                    let text = r.next().unwrap_or_default().to_string();
                    if fail {
                        error(&mut out);
                    } else {
                        self.ran.push(text);
                        out.extend_from_slice(&typed(b'C', b"SELECT 0\0"));
                    }
                    self.portals.clear();
                    put_ready(&mut out, b'I');
                }
                _ => {}
            }
        }
        out
    }
}

/// The gate and the agent's side of the harness.
#[derive(Default)]
struct World {
    /// Statement texts allowed, in the order of their verdicts.
    allowed: VecDeque<String>,
    /// Statements of the pending hold (allowed if it is approved).
    held: Option<(HoldInfo, String)>,
    /// Stream positions of the verdicts whose records are not yet acked.
    unacked: VecDeque<u64>,
    /// Bytes the agent has been sent.
    written: u64,
    ended: bool,
    /// The next record or judgement fails.
    fail_next: bool,
}

impl World {
    fn judge(
        &mut self,
        core: &Core,
        c: &mut Choices<'_>,
        ask: Ask,
        actions: Vec<Action>,
    ) -> GateVerdict {
        let mut decisions = Vec::new();
        for a in actions {
            let Action::Statement(s) = a else { break };
            let d = match c.below(8) {
                0 => Verdict::Deny {
                    rule: "r".into(),
                    reason: "denied".into(),
                },
                1 if self.held.is_none() => {
                    let info = HoldInfo {
                        approval_id: format!("a{}", s.id),
                        rule: "r".into(),
                        reason: "held".into(),
                    };
                    self.held = Some((info.clone(), s.text.clone()));
                    Verdict::Held(info)
                }
                _ => {
                    self.allowed.push_back(s.text.clone());
                    Verdict::Allow
                }
            };
            let stop = !matches!(d, Verdict::Allow);
            decisions.push(d);
            if stop || ask == Ask::One {
                break;
            }
        }
        let ticket = ask == Ask::Overlapped && c.below(2) == 0;
        if ticket {
            // The core holds back everything queued to the agent from here on.
            self.unacked
                .push_back(self.written + core.to_client().len() as u64);
        }
        GateVerdict { decisions, ticket }
    }
}

/// Runs the core over the choices and checks it (see the module's doc).
pub(crate) fn run(data: &[u8]) {
    let mut c = Choices { data };
    let cfg = Arc::new(PgFrontendConfig {
        max_message_bytes: 1 << 20,
        ..PgFrontendConfig::default()
    });
    let params = vec![("standard_conforming_strings".to_string(), "on".to_string())];
    let mut core = Core::new(
        cfg,
        "core".into(),
        &params,
        b'I',
        BytesMut::new(),
        BytesMut::new(),
        BytesMut::new(),
    );
    let mut world = World::default();
    let mut server = Server {
        settled: true,
        ..Server::default()
    };
    let mut n = 0u64;
    core.start();
    for _ in 0..MAX_STEPS {
        act(&mut core, &mut world, &mut c);
        check(&core, &world, &server);
        if world.ended {
            return;
        }
        let Some(choice) = c.byte() else {
            break;
        };
        match choice % 9 {
            0..=2 => {
                let m = agent_message(&mut c, &mut n);
                core.client_in().extend_from_slice(&m);
                core.client_data();
            }
            3 | 4 => {
                let mut forwarded = std::mem::take(core.to_target());
                let answers = server.answer(&mut forwarded, &mut c);
                core.target_in().extend_from_slice(&answers);
                core.target_data();
            }
            5 => {
                if !world.unacked.is_empty() {
                    world.unacked.pop_front();
                    core.durable(Ok(()));
                }
            }
            6 => {
                if let Some((info, text)) = world.held.take()
                    && core.held() == Some(info.approval_id.as_str())
                {
                    let res = if c.below(2) == 0 {
                        world.allowed.push_back(text);
                        Resolution::Allow
                    } else {
                        Resolution::Deny {
                            rule: "r".into(),
                            reason: "refused".into(),
                            cause: proctor_gate::DenyCause::Approver,
                        }
                    };
                    core.resolved(res, None);
                }
            }
            // Rare, so that most runs go on long enough to matter.
            7 => world.fail_next = c.below(16) == 0,
            _ => {
                let n = core.client_sendable();
                core.wrote_client(n);
                world.written += n as u64;
            }
        }
    }
    core.client_gone("the harness is done".into());
    act(&mut core, &mut world, &mut c);
    check(&core, &world, &server);
    assert!(world.ended, "the core did not end when the agent left");
}

/// Carries out the core's actions as an adapter would.
fn act(core: &mut Core, world: &mut World, c: &mut Choices<'_>) {
    while let Some(a) = core.poll_action() {
        assert!(!world.ended, "an action after the end: {a:?}");
        match a {
            Out::Record(_) if world.fail_next => fail(core, world, true),
            Out::Record(_) => {}
            Out::Judge { .. } if world.fail_next => fail(core, world, false),
            Out::Judge { ask, actions } => {
                assert!(core.waiting(), "a judgement the core does not wait for");
                let v = world.judge(core, c, ask, actions);
                core.verdict(Ok(v));
            }
            Out::Settle => core.settled(Ok(())),
            Out::Bound { pending } => {
                while world.unacked.len() > pending {
                    world.unacked.pop_front();
                    core.durable(Ok(()));
                }
            }
            Out::ParamTypes { .. } | Out::CancelBackend => {}
            Out::Withdraw(id) => {
                if world
                    .held
                    .as_ref()
                    .is_some_and(|(h, _)| h.approval_id == id)
                {
                    world.held = None;
                }
            }
            Out::End(_) => world.ended = true,
        }
    }
}

/// Recording or judging fails: the session ends at once, and nothing after the failure moves
/// (the next action is the end, and nothing more reaches the target).
fn fail(core: &mut Core, world: &mut World, record: bool) {
    let before = core.target_pending();
    let f = GateFailure {
        error: GateError::Recorder("the disk is gone".into()),
        killed: None,
    };
    if record {
        core.gate_failed(f);
    } else {
        core.verdict(Err(f));
    }
    match core.poll_action() {
        Some(Out::End(crate::relay::End::Recorder(_))) => world.ended = true,
        other => panic!("a recording failure was followed by {other:?}"),
    }
    assert!(core.poll_action().is_none(), "an action after the end");
    core.client_in()
        .extend_from_slice(&typed(b'Q', b"SELECT 99\0"));
    core.client_data();
    assert!(
        core.poll_action().is_none(),
        "the core went on after its end"
    );
    assert_eq!(
        core.target_pending(),
        before,
        "bytes for the target after a failure"
    );
}

fn check(core: &Core, world: &World, server: &Server) {
    // Rule 1: what the server ran was allowed, in order.
    let mut allowed = world.allowed.iter();
    for ran in &server.ran {
        let k = key(ran);
        assert!(
            allowed.any(|a| key(a) == k),
            "the server ran {ran:?}, which no verdict allowed (in order): allowed {:?}, ran {:?}",
            world.allowed,
            server.ran
        );
    }
    // Rule 3: nothing past the oldest unacked verdict's mark reached the agent.
    if let Some(mark) = world.unacked.front() {
        assert!(
            world.written + core.client_sendable() as u64 <= *mark,
            "answers released before their records were durable"
        );
    }
    // The names model, once the server has answered everything.
    if server.settled && core.target_pending() == 0 && !core.waiting() && !world.ended {
        for name in STATEMENTS {
            if let Some(text) = core.known_statement(name) {
                assert_eq!(
                    server.statements.get(*name).map(|t| key(t)),
                    Some(key(&text)),
                    "the core takes statement {name:?} to be {text:?}"
                );
            }
        }
        for name in PORTALS {
            if let Some(Some(text)) = core.known_portal(name) {
                assert_eq!(
                    server.portals.get(*name).map(|(t, _)| key(t)),
                    Some(key(&text)),
                    "the core takes portal {name:?} to run {text:?}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic per seed.
    fn stream(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    /// Random pipelines against the core, under the checks of [`run`];
    /// `PROCTOR_CORE_CASES` runs more (default 600).
    #[test]
    fn random_pipelines_keep_the_rules() {
        let cases: u64 = std::env::var("PROCTOR_CORE_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600);
        for seed in 0..cases {
            let data = stream(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 3_000);
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "seed {seed} failed");
        }
    }

    #[test]
    fn keys_are_the_trailing_number() {
        assert_eq!(key("SELECT 17"), Some(17));
        assert_eq!(key("DELETE FROM t WHERE id = 3"), Some(3));
        assert_eq!(key(""), None);
    }
}
