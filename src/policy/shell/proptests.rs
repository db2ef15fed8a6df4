//! Property tests: random compositions of quoting (single, double, `$'...'`, backslashes,
//! empty quotes inside words), brace expansion, expansions, wrappers with their options,
//! nested shells, here-strings, lists and pipes around a command the default policies hold
//! are still held (or denied) by the shipped policies; the same compositions around a
//! harmless command through harmless wrappers stay allowed. A fixed seed and a bounded number
//! of cases keep `cargo test` deterministic; a failure prints the line.

use proctor_gate::{Action, Privilege, Protocol};

use crate::policy::{Context, Policy, RuleAction};

/// splitmix64: a small deterministic generator (no dependency, same sequence everywhere).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// One word spelled in a random way the shell reads as the same word.
fn spell(rng: &mut Rng, word: &str) -> String {
    // Words with shell syntax of their own (`>`, `;`) stay as they are.
    if word.chars().any(|c| "<>;|&{}".contains(c)) || word.is_empty() {
        return word.to_string();
    }
    match rng.below(8) {
        0 => format!("'{word}'"),
        1 => format!("\"{word}\""),
        2 => word.chars().map(|c| format!("\\{c}")).collect(),
        3 => {
            let cut = 1 + rng.below(word.len().max(2) - 1).min(word.len() - 1);
            let quotes = rng.pick(&["''", "\"\""]);
            format!("{}{quotes}{}", &word[..cut], &word[cut..])
        }
        4 => {
            let hex: String = word.bytes().map(|b| format!("\\x{b:02x}")).collect();
            format!("$'{hex}'")
        }
        5 => {
            let cut = rng.below(word.len() + 1);
            format!("'{}'{}", &word[..cut], &word[cut..])
        }
        _ => word.to_string(),
    }
}

/// Wrappers that run their command with its arguments; each spelled with options that take
/// arguments, so a reader that gets the grammar wrong reads the wrong command.
const WRAPPERS: &[&str] = &[
    "nice -n 5",
    "nice -5",
    "timeout -s KILL 30",
    "timeout --kill-after=5 30s",
    "env -i A=1",
    "env -u HOME",
    "nohup",
    "ionice -c 3 -n 7",
    "ionice -c3",
    "stdbuf -oL -e 0",
    "setsid -f",
    "chrt -f 1",
    "taskset -c 0",
    "time -p",
    "command",
    "exec -a name",
    "strace -f -o /tmp/trace -e trace=file",
    "flock -w 5 /tmp/lock",
    "unshare -m",
    "nsenter -t 1 -m",
    "chroot /",
    "busybox",
    "sudo -u root",
    "doas -u root",
    "runuser -u app --",
];

/// Harmless wrappers only: a harmless command through them stays allowed.
const PLAIN_WRAPPERS: &[&str] = &[
    "nice -n 5",
    "timeout -s KILL 30",
    "env -u HOME",
    "nohup",
    "ionice -c 3 -n 7",
    "stdbuf -oL",
    "setsid -f",
    "time -p",
    "command",
    "chrt -f 1",
    "taskset -c 0",
];

fn single_quoted(line: &str) -> String {
    format!("'{}'", line.replace('\'', "'\\''"))
}

fn double_quoted(line: &str) -> String {
    let mut out = String::from("\"");
    for c in line.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Wraps a line in a random construct that still runs it.
fn around(rng: &mut Rng, line: &str, harmless_only: bool) -> String {
    let shells = if harmless_only { 12 } else { 16 };
    match rng.below(shells) {
        0 => format!("true; {line}"),
        1 => format!("{line} && true"),
        2 => format!("false || {line}"),
        3 => format!("echo a | {line}"),
        4 => format!("( {line} )"),
        5 => format!("{{ {line}; }}"),
        6 => format!("if true; then {line}; fi"),
        7 => format!("for i in 1; do {line}; done"),
        8 => format!("bash -c {}", single_quoted(line)),
        9 => format!("sh -c {}", double_quoted(line)),
        10 => format!("bash <<< {}", single_quoted(line)),
        11 => {
            let tag = rng.below(1_000_000);
            format!("bash <<'E{tag}'\n{line}\nE{tag}\n")
        }
        // Spaces inside: `$((` would start arithmetic, which runs nothing.
        12 => format!("echo $( {line} )"),
        13 => format!("eval {}", single_quoted(line)),
        14 => format!("su -c {} root", single_quoted(line)),
        _ => format!("trap {} EXIT", single_quoted(line)),
    }
}

/// A random composition around `core` (words of one command).
fn compose(rng: &mut Rng, core: &[&str], harmless_only: bool) -> String {
    let mut words: Vec<String> = core.iter().map(|w| spell(rng, w)).collect();
    // Two adjacent plain words as one brace expansion: `{rm,-rf}`.
    if !harmless_only && rng.below(4) == 0 && core.len() >= 2 {
        let k = rng.below(core.len() - 1);
        if core[k..k + 2]
            .iter()
            .all(|w| !w.chars().any(|c| "<>;|&{},".contains(c)))
        {
            words.splice(k..k + 2, [format!("{{{},{}}}", core[k], core[k + 1])]);
        }
    }
    let mut line = words.join(" ");
    for _ in 0..rng.below(4) {
        if rng.below(2) == 0 {
            let w = rng.pick(if harmless_only {
                PLAIN_WRAPPERS
            } else {
                WRAPPERS
            });
            line = format!("{w} {line}");
        } else {
            line = around(rng, &line, harmless_only);
        }
    }
    line
}

fn policy() -> Policy {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    Policy::load(&[dir]).expect("the shipped policies load")
}

fn judge(policy: &Policy, line: &str) -> RuleAction {
    let ctx = Context {
        agent: "prop-agent",
        target: "prop-box",
        login: "root",
        privilege: Privilege::Elevated,
        protocol: Protocol::Ssh,
        shell_cwd: None,
    };
    let action = Action::Exec {
        channel: 0,
        command: line.to_string(),
    };
    policy.judge(&ctx, &action).action
}

const CASES: usize = 1500;

#[test]
fn held_commands_stay_held_however_they_are_spelled() {
    let policy = policy();
    let mut rng = Rng(0x5eed_1301);
    let cores: &[&[&str]] = &[
        &["rm", "-rf", "/srv/data"],
        &["rm", "--recursive", "/srv/data"],
        &["sudo", "id"],
        &["systemctl", "stop", "nginx"],
        &["kill", "-9", "1"],
        &["iptables", "-F"],
        &["echo", "x", ">", "/etc/shadow"],
        &["dd", "if=/tmp/x", "of=/etc/shadow"],
        &["bash"],
        &["python3"],
    ];
    for n in 0..CASES {
        let core = cores[n % cores.len()];
        let line = compose(&mut rng, core, false);
        let verdict = judge(&policy, &line);
        assert!(
            matches!(verdict, RuleAction::Hold | RuleAction::Deny),
            "case {n}: {line:?} was {verdict:?}: {:?}",
            super::analyze(&line)
        );
    }
}

#[test]
fn run_time_words_around_a_held_command_are_held() {
    let policy = policy();
    let mut rng = Rng(0x5eed_1302);
    let runtime = [
        "$R",
        "\"$R\"",
        "$(echo {})",
        "`echo {}`",
        "${R:-{}}",
        "\"$(printf {})\"",
    ];
    for n in 0..CASES / 3 {
        let core = ["rm", "-rf", "/srv/data"];
        let k = rng.below(2);
        let mut words: Vec<String> = core.iter().map(|w| w.to_string()).collect();
        words[k] = runtime[rng.below(runtime.len())].replace("{}", core[k]);
        let line = {
            let mut r2 = Rng(rng.next());
            let inner = words.join(" ");
            if r2.below(2) == 0 {
                inner
            } else {
                format!("{} {inner}", r2.pick(WRAPPERS))
            }
        };
        let verdict = judge(&policy, &line);
        assert!(
            matches!(verdict, RuleAction::Hold | RuleAction::Deny),
            "case {n}: {line:?} was {verdict:?}: {:?}",
            super::analyze(&line)
        );
    }
}

#[test]
fn harmless_commands_stay_allowed_however_they_are_spelled() {
    let policy = policy();
    let mut rng = Rng(0x5eed_1303);
    let cores: &[&[&str]] = &[
        &["ls", "-l", "/tmp"],
        &["uname", "-a"],
        &["cat", "/etc/hostname"],
    ];
    for n in 0..CASES / 3 {
        let core = cores[n % cores.len()];
        let line = compose(&mut rng, core, true);
        let verdict = judge(&policy, &line);
        assert_eq!(
            verdict,
            RuleAction::Allow,
            "case {n}: {line:?}: {:?}",
            super::analyze(&line)
        );
    }
}
