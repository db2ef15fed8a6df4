//! Property test of the real relay: well-formed sessions generated from a grammar of the risky
//! operations (reused and unnamed statement and portal names, pipelines with and without Sync,
//! PREPARE/EXECUTE, lexing settings, COPY, fast-path calls), answered by a target that says
//! anything a server could say in any order, under every policy seed and flag. Byte mutation
//! rarely builds such sessions; this does, with a fixed seed, and [`super::relay_run`] checks
//! each one. `PROCTOR_RELAY_CASES` runs more (default 400).

use super::relay_run::{run_counted, step_bytes};

/// xorshift64*: deterministic per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

const NAMES: &[&str] = &["", "s1", "q"];
const PORTALS: &[&str] = &["", "p1"];
const SQL: &[&str] = &[
    "SELECT 1",
    "DELETE FROM accounts",
    "SELECT 1; DELETE FROM accounts",
    "PREPARE q AS DELETE FROM accounts",
    "EXECUTE q",
    "DEALLOCATE q",
    "DISCARD ALL",
    "BEGIN",
    "SAVEPOINT a",
    "ROLLBACK TO SAVEPOINT a",
    "COMMIT",
    "SET standard_conforming_strings = off",
    "SELECT 'x\\'' ; DELETE FROM accounts; -- '",
    "COPY t FROM STDIN",
    "SELECT $1::int",
    // A user function (code proctor cannot see into): names are forgotten, and their next use
    // makes the relay ask the target (its own query, answered by whatever the target says).
    "SELECT swap()",
    "EXECUTE s1",
    "",
];

fn agent_message(r: &mut Rng) -> Vec<u8> {
    match r.below(12) {
        0 => typed(b'Q', &cstr(r.pick(SQL))),
        // Code, then a use of a name it may have changed: the relay asks the target first.
        1 => match r.below(3) {
            0 => typed(b'Q', &cstr("SELECT swap()")),
            1 => typed(b'Q', &cstr(r.pick(&["EXECUTE q", "EXECUTE s1"]))),
            _ => typed(b'Q', &cstr(r.pick(SQL))),
        },
        2 | 3 => {
            let mut b = cstr(r.pick(NAMES));
            b.extend(cstr(r.pick(SQL)));
            b.extend([0, 0]);
            typed(b'P', &b)
        }
        4 | 5 => {
            let mut b = cstr(r.pick(PORTALS));
            b.extend(cstr(r.pick(NAMES)));
            // No parameter formats, one text parameter, no result formats.
            b.extend([0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0]);
            typed(b'B', &b)
        }
        6 | 7 => {
            let mut b = cstr(r.pick(PORTALS));
            b.extend((r.below(3) as i32).to_be_bytes());
            typed(b'E', &b)
        }
        8 => {
            let kind = if r.below(2) == 0 { b'S' } else { b'P' };
            let mut b = vec![kind];
            b.extend(cstr(r.pick(if kind == b'S' { NAMES } else { PORTALS })));
            typed(if r.below(2) == 0 { b'D' } else { b'C' }, &b)
        }
        9 => typed(b'H', b""),
        10 => match r.below(4) {
            0 => typed(b'd', b"1\tone\n"),
            1 => typed(b'c', b""),
            // lo_open(0, 0): a fast-path call of a built-in.
            2 => typed(b'F', &[0, 0, 0x03, 0xbf, 0, 0, 0, 0, 0, 0]),
            _ => typed(b'f', &cstr("abort")),
        },
        _ => typed(b'S', b""),
    }
}

/// A row of the answer to the relay's own query of prepared statements: name, text, whether
/// SQL `PREPARE` held it, parameter type OIDs.
fn statement_row(r: &mut Rng) -> Vec<u8> {
    let cols: [&[u8]; 4] = [
        r.pick(NAMES).as_bytes(),
        r.pick(&[
            "DELETE FROM accounts",
            "PREPARE q AS DELETE FROM accounts",
            "SELECT 1; PREPARE s1 AS SELECT 2",
        ])
        .as_bytes(),
        r.pick(&["t", "f"]).as_bytes(),
        r.pick(&["{}", "{23}", "{x"]).as_bytes(),
    ];
    let mut b = vec![0, 4];
    for c in cols {
        b.extend((c.len() as i32).to_be_bytes());
        b.extend(c);
    }
    typed(b'D', &b)
}

fn target_message(r: &mut Rng) -> Vec<u8> {
    match r.below(12) {
        11 => statement_row(r),
        0 => typed(b'1', b""),
        1 => typed(b'2', b""),
        2 => typed(b'3', b""),
        3 => {
            let mut b = vec![0, 1];
            b.extend(cstr("n"));
            b.extend([
                0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0,
            ]);
            typed(b'T', &b)
        }
        4 => typed(b'D', &[0, 1, 0, 0, 0, 1, b'1']),
        5 => typed(
            b'C',
            &cstr(r.pick(&["SELECT 1", "DELETE 5", "PREPARE", "SET", "BEGIN", "COPY 1"])),
        ),
        6 => {
            let code = r.pick(&["42P05", "42P03", "25P02", "42601"]);
            let mut b = b"SERROR\0C".to_vec();
            b.extend(cstr(code));
            b.extend(b"Mrefused\0\0");
            typed(b'E', &b)
        }
        7 => typed(b'Z', &[*b"ITE".get(r.below(3)).unwrap_or(&b'I')]),
        8 => {
            let mut b = cstr("standard_conforming_strings");
            b.extend(cstr(r.pick(&["on", "off"])));
            typed(b'S', &b)
        }
        9 => typed(b'G', &[0, 0, 0]),
        _ => typed(b'n', b""),
    }
}

fn session(r: &mut Rng) -> Vec<u8> {
    let seed = if r.below(4) == 0 { 0 } else { r.next() as u8 };
    let mut input = vec![seed, r.below(4) as u8];
    for _ in 0..1 + r.below(12) {
        let agent: Vec<u8> = (0..1 + r.below(6)).flat_map(|_| agent_message(r)).collect();
        input.extend(step_bytes(0, &agent));
        if r.below(3) > 0 {
            let target: Vec<u8> = (0..r.below(8)).flat_map(|_| target_message(r)).collect();
            input.extend(step_bytes(3, &target));
        }
        if r.below(4) == 0 {
            input.push(6 + 8 * r.below(8) as u8);
        }
        if r.below(60) == 0 {
            input.push(7);
        }
    }
    input
}

#[test]
fn generated_sessions_keep_the_relay_invariants() {
    let cases = std::env::var("PROCTOR_RELAY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut r = Rng(0x5eed_0f2e_1a00_u64);
    let (mut judged, mut forwarded, mut asked) = (0, 0, 0);
    for _ in 0..cases {
        let (j, f, a) = run_counted(&session(&mut r));
        judged += j;
        forwarded += f;
        asked += a;
    }
    eprintln!(
        "{cases} generated sessions: {judged} statements judged, {forwarded} messages forwarded, \
         {asked} introspections of the target's prepared statements"
    );
    // Names forgotten after `SELECT swap()` are asked about (the relay's own query, checked by
    // `check` as the one message it may send that the agent did not).
    assert!(asked > 0, "no introspection in {cases} sessions");
    // The sessions get past the first messages: most of what they send is judged or forwarded.
    assert!(
        judged > cases,
        "{judged} statements judged in {cases} sessions"
    );
    assert!(
        forwarded > 2 * cases,
        "{forwarded} messages forwarded in {cases} sessions"
    );
}
