//! Programs that run another command: what they run, read with each one's own option grammar
//! (which options take an argument, which positional arguments come before the command).
//! `sudo -u root rm -rf /x` runs `rm -rf /x`; `timeout -s KILL 5 rm ...` too; `watch 'rm ...'`
//! and `flock f -c 'rm ...'` run shell code; `unshare` with no command starts a shell.

use super::words::Word;

/// What a wrapper runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inner {
    /// A command given as words: program and arguments.
    Argv {
        words: Vec<Word>,
        /// Arguments are appended at run time (`xargs`, `parallel` reading standard input).
        runtime_args: bool,
    },
    /// Shell code in one word (`su -c`, `watch`, `flock -c`, `script -c`, `eval`, `trap`).
    Code(Word),
    /// An interactive shell reading the terminal or standard input.
    Shell,
}

/// A wrapper read: what it runs, files it writes, and why it cannot be followed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unwrapped {
    pub runs: Vec<Inner>,
    pub writes: Vec<Word>,
    pub hidden: Option<String>,
    /// Other programs the wrapper amounts to (`sudo -e` is `sudoedit`).
    pub also: Vec<String>,
}

/// A wrapper's option grammar.
pub(super) struct Grammar {
    /// Short options that take an argument (attached `-uroot` or the next word).
    pub short_arg: &'static str,
    /// Long options that take an argument (`--user root` or `--user=root`).
    pub long_arg: &'static [&'static str],
    /// Long options without an argument (or with an optional `=` one): for prefixes.
    pub long_flag: &'static [&'static str],
    /// `-5` is an option (`nice -5`).
    pub numeric: bool,
}

/// Options read up to the first operand.
pub(super) struct Parsed {
    /// (option name without dashes, its argument).
    pub opts: Vec<(String, Option<Word>)>,
    /// Index of the first operand.
    pub rest: usize,
    pub hidden: Option<String>,
}

impl Parsed {
    pub fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|(n, _)| names.contains(&n.as_str()))
    }

    pub fn values(&self, names: &[&str]) -> Vec<Word> {
        self.opts
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
}

fn resolve_long(g: &Grammar, name: &str) -> (String, bool) {
    let all = g.long_arg.iter().chain(g.long_flag.iter());
    if let Some(exact) = all.clone().find(|o| **o == name) {
        return (exact.to_string(), g.long_arg.contains(exact));
    }
    let mut m = all.filter(|o| o.starts_with(name));
    match (m.next(), m.next()) {
        (Some(one), None) => (one.to_string(), g.long_arg.contains(one)),
        _ => (name.to_string(), false),
    }
}

/// getopt-style reading that stops at the first operand (as `+` in an optstring, which the
/// wrappers use so the wrapped command keeps its own options).
pub(super) fn parse(args: &[Word], g: &Grammar) -> Parsed {
    let mut p = Parsed {
        opts: Vec::new(),
        rest: args.len(),
        hidden: None,
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if !a.option_safe() {
            p.hidden = Some(format!(
                "an option word known only at run time ({})",
                a.text
            ));
            p.rest = i;
            return p;
        }
        let t = a.text.as_str();
        if t == "--" {
            p.rest = i + 1;
            return p;
        }
        if let Some(body) = t.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(Word::literal(v))),
                None => (body, None),
            };
            let (full, takes) = resolve_long(g, name);
            let value = if takes && inline.is_none() {
                i += 1;
                args.get(i).cloned()
            } else {
                inline
            };
            p.opts.push((full, value));
            i += 1;
            continue;
        }
        if t.len() > 1 && t.starts_with('-') {
            if g.numeric && t[1..].chars().all(|c| c.is_ascii_digit()) {
                p.opts.push(("n".into(), Some(Word::literal(&t[1..]))));
                i += 1;
                continue;
            }
            let cluster: Vec<char> = t[1..].chars().collect();
            let mut k = 0;
            while k < cluster.len() {
                let c = cluster[k];
                if g.short_arg.contains(c) {
                    let attached: String = cluster[k + 1..].iter().collect();
                    let value = if attached.is_empty() {
                        i += 1;
                        args.get(i).cloned()
                    } else {
                        Some(Word::literal(&attached))
                    };
                    p.opts.push((c.to_string(), value));
                    break;
                }
                p.opts.push((c.to_string(), None));
                k += 1;
            }
            i += 1;
            continue;
        }
        p.rest = i;
        return p;
    }
    p
}

const NONE: &[&str] = &[];

/// The command after `skip` operands, or what running nothing means for this wrapper.
fn command_after(args: &[Word], skip: usize, runtime_args: bool) -> Option<Inner> {
    let words: Vec<Word> = args.iter().skip(skip).cloned().collect();
    if words.is_empty() {
        None
    } else {
        Some(Inner::Argv {
            words,
            runtime_args,
        })
    }
}

fn join(words: &[Word]) -> Word {
    let mut w = Word::default();
    for (k, x) in words.iter().enumerate() {
        if k > 0 {
            w.text.push(' ');
        }
        w.text.push_str(&x.text);
        w.expands |= x.expands;
        w.splits |= x.splits;
        w.glob |= x.glob;
    }
    w
}

/// Reads `program args` when `program` runs another command; `None` when it does not.
pub fn unwrap(program: &str, args: &[Word]) -> Option<Unwrapped> {
    let mut u = Unwrapped::default();
    match program {
        "sudo" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "ugChpUrtDRT",
                    long_arg: &[
                        "user",
                        "group",
                        "close-from",
                        "host",
                        "prompt",
                        "other-user",
                        "role",
                        "type",
                        "chdir",
                        "chroot",
                        "command-timeout",
                    ],
                    long_flag: &[
                        "askpass",
                        "background",
                        "preserve-env",
                        "edit",
                        "set-home",
                        "login",
                        "remove-timestamp",
                        "reset-timestamp",
                        "list",
                        "non-interactive",
                        "preserve-groups",
                        "stdin",
                        "shell",
                        "version",
                        "validate",
                        "bell",
                        "help",
                    ],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            if p.has(&["e", "edit"]) {
                u.also.push("sudoedit".into());
                return Some(u);
            }
            if p.has(&[
                "l", "list", "v", "validate", "k", "K", "V", "version", "help",
            ]) {
                return Some(u);
            }
            let mut rest = p.rest;
            while args
                .get(rest)
                .is_some_and(|a| super::is_assignment(&a.text))
            {
                rest += 1;
            }
            match command_after(args, rest, false) {
                Some(inner) => u.runs.push(inner),
                None if p.has(&["i", "login", "s", "shell"]) => u.runs.push(Inner::Shell),
                None => {}
            }
            if let Some(h) = super::risky_assignment(&args[p.rest..rest]) {
                u.hidden = Some(h);
            }
        }
        "doas" | "pkexec" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "uC",
                    long_arg: &["user"],
                    long_flag: &["disable-internal-agent", "keep-cwd", "help", "version"],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            if p.has(&["C", "L", "help", "version"]) {
                return Some(u);
            }
            u.runs
                .push(command_after(args, p.rest, false).unwrap_or(Inner::Shell));
        }
        "su" | "runuser" => su(args, &mut u),
        "env" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "uCS",
                    long_arg: &["unset", "chdir", "split-string"],
                    long_flag: &[
                        "ignore-environment",
                        "null",
                        "default-signal",
                        "ignore-signal",
                        "block-signal",
                        "list-signal-handling",
                        "debug",
                        "help",
                        "version",
                    ],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            let mut words: Vec<Word> = Vec::new();
            for s in p.values(&["S", "split-string"]) {
                if !s.is_literal() {
                    u.hidden = Some(format!(
                        "env -S with a string known only at run time ({})",
                        s.text
                    ));
                }
                words.extend(
                    super::words::lex(&s.text)
                        .toks
                        .into_iter()
                        .filter_map(|t| match t {
                            super::words::Tok::Word(w) => Some(w),
                            _ => None,
                        }),
                );
            }
            words.extend(args[p.rest..].iter().cloned());
            let mut k = 0;
            while words.get(k).is_some_and(|a| super::is_assignment(&a.text)) {
                k += 1;
            }
            if let Some(h) = super::risky_assignment(&words[..k]) {
                u.hidden = Some(h);
            }
            if let Some(inner) = command_after(&words, k, false) {
                u.runs.push(inner);
            }
        }
        "nohup" | "builtin" => {
            if let Some(inner) = command_after(args, 0, false) {
                u.runs.push(inner);
            }
        }
        "time" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "of",
                    long_arg: &["output", "format"],
                    long_flag: &[
                        "append",
                        "portability",
                        "verbose",
                        "quiet",
                        "help",
                        "version",
                    ],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            u.writes.extend(p.values(&["o", "output"]));
            if let Some(inner) = command_after(args, p.rest, false) {
                u.runs.push(inner);
            }
        }
        "exec" => simple(args, "a", NONE, NONE, &mut u),
        "command" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "",
                    long_arg: NONE,
                    long_flag: NONE,
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            if !p.has(&["v", "V"])
                && let Some(inner) = command_after(args, p.rest, false)
            {
                u.runs.push(inner);
            }
        }
        "nice" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "n",
                    long_arg: &["adjustment"],
                    long_flag: &["help", "version"],
                    numeric: true,
                },
            );
            u.hidden = p.hidden.clone();
            if let Some(inner) = command_after(args, p.rest, false) {
                u.runs.push(inner);
            }
        }
        "ionice" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "cnpPu",
                    long_arg: &["class", "classdata", "pid", "pgid", "uid"],
                    long_flag: &["ignore", "help", "version"],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            if !p.has(&["p", "P", "u", "pid", "pgid", "uid"])
                && let Some(inner) = command_after(args, p.rest, false)
            {
                u.runs.push(inner);
            }
        }
        "timeout" => positional_then_command(
            args,
            &Grammar {
                short_arg: "sk",
                long_arg: &["signal", "kill-after"],
                long_flag: &[
                    "foreground",
                    "preserve-status",
                    "verbose",
                    "help",
                    "version",
                ],
                numeric: false,
            },
            1,
            &mut u,
        ),
        "stdbuf" => simple(args, "ioe", &["input", "output", "error"], NONE, &mut u),
        "setsid" => simple(args, "", NONE, &["ctty", "fork", "wait"], &mut u),
        "chrt" | "taskset" => {
            let g = Grammar {
                short_arg: "TPD",
                long_arg: &["sched-runtime", "sched-period", "sched-deadline"],
                long_flag: &[
                    "all-tasks",
                    "batch",
                    "deadline",
                    "ext",
                    "fifo",
                    "idle",
                    "other",
                    "rr",
                    "reset-on-fork",
                    "verbose",
                    "max",
                    "pid",
                    "cpu-list",
                    "help",
                    "version",
                ],
                numeric: false,
            };
            let p = parse(args, &g);
            if p.has(&["p", "pid", "m", "max"]) {
                u.hidden = p.hidden;
                return Some(u);
            }
            positional_then_command(args, &g, 1, &mut u);
        }
        "unshare" | "nsenter" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "RwSGltW",
                    long_arg: &[
                        "propagation",
                        "setgroups",
                        "root",
                        "wd",
                        "setuid",
                        "setgid",
                        "load-interp",
                        "monotonic",
                        "boottime",
                        "map-user",
                        "map-group",
                        "map-users",
                        "map-groups",
                        "target",
                        "wdns",
                    ],
                    long_flag: &[
                        "mount",
                        "uts",
                        "ipc",
                        "net",
                        "pid",
                        "user",
                        "cgroup",
                        "time",
                        "fork",
                        "kill-child",
                        "mount-proc",
                        "map-root-user",
                        "map-current-user",
                        "map-auto",
                        "keep-caps",
                        "all",
                        "preserve-credentials",
                        "env",
                        "no-fork",
                        "follow-context",
                        "join-cgroup",
                        "help",
                        "version",
                    ],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            u.runs
                .push(command_after(args, p.rest, false).unwrap_or(Inner::Shell));
        }
        "chroot" => {
            let g = Grammar {
                short_arg: "",
                long_arg: &["userspec", "groups"],
                long_flag: &["skip-chdir", "help", "version"],
                numeric: false,
            };
            let p = parse(args, &g);
            u.hidden = p.hidden.clone();
            if p.rest < args.len() {
                u.runs
                    .push(command_after(args, p.rest + 1, false).unwrap_or(Inner::Shell));
            }
        }
        "watch" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "nq",
                    long_arg: &["interval", "equexit"],
                    long_flag: &[
                        "beep",
                        "color",
                        "no-color",
                        "differences",
                        "errexit",
                        "chgexit",
                        "precise",
                        "no-rerun",
                        "no-title",
                        "no-wrap",
                        "exec",
                        "help",
                        "version",
                    ],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            if p.rest < args.len() {
                if p.has(&["x", "exec"]) {
                    u.runs.extend(command_after(args, p.rest, false));
                } else {
                    // watch joins its arguments and runs them with `sh -c`.
                    u.runs.push(Inner::Code(join(&args[p.rest..])));
                }
            }
        }
        "xargs" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "adEILnPs",
                    long_arg: &[
                        "arg-file",
                        "delimiter",
                        "max-args",
                        "max-procs",
                        "max-chars",
                        "process-slot-var",
                    ],
                    long_flag: &[
                        "null",
                        "open-tty",
                        "interactive",
                        "no-run-if-empty",
                        "verbose",
                        "exit",
                        "show-limits",
                        "eof",
                        "replace",
                        "max-lines",
                        "help",
                        "version",
                    ],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            let words: Vec<Word> = if p.rest < args.len() {
                args[p.rest..].to_vec()
            } else {
                vec![Word::literal("echo")]
            };
            u.runs.push(Inner::Argv {
                words,
                runtime_args: true,
            });
        }
        "parallel" => parallel(args, &mut u),
        "flock" => {
            let g = Grammar {
                short_arg: "wE",
                long_arg: &["timeout", "wait", "conflict-exit-code"],
                long_flag: &[
                    "shared",
                    "exclusive",
                    "unlock",
                    "nonblock",
                    "close",
                    "no-fork",
                    "verbose",
                    "help",
                    "version",
                ],
                numeric: false,
            };
            let p = parse(args, &g);
            u.hidden = p.hidden.clone();
            let after = p.rest + 1;
            match args.get(after).map(|w| w.text.as_str()) {
                Some("-c" | "--command") => {
                    if let Some(code) = args.get(after + 1) {
                        u.runs.push(Inner::Code(code.clone()));
                    }
                }
                Some(_) => u.runs.extend(command_after(args, after, false)),
                None => {}
            }
        }
        "script" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "cEIOBTmo",
                    long_arg: &[
                        "command",
                        "echo",
                        "log-in",
                        "log-out",
                        "log-io",
                        "log-timing",
                        "logging-format",
                        "output-limit",
                    ],
                    long_flag: &[
                        "append", "return", "flush", "force", "quiet", "timing", "help", "version",
                    ],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            u.writes.extend(p.values(&[
                "I",
                "O",
                "B",
                "T",
                "log-in",
                "log-out",
                "log-io",
                "log-timing",
            ]));
            u.writes.extend(args.get(p.rest).cloned());
            match p.values(&["c", "command"]).pop() {
                Some(code) => u.runs.push(Inner::Code(code)),
                None => u.runs.push(Inner::Shell),
            }
        }
        "strace" | "ltrace" => {
            let p = parse(
                args,
                &Grammar {
                    short_arg: "abeEIoOpPsSuXUn",
                    long_arg: &[
                        "output",
                        "attach",
                        "trace-path",
                        "string-limit",
                        "user",
                        "env",
                        "signal",
                        "trace",
                        "status",
                        "quiet",
                        "decode-fds",
                        "summary-columns",
                    ],
                    long_flag: &["follow-forks", "output-separately", "help", "version"],
                    numeric: false,
                },
            );
            u.hidden = p.hidden.clone();
            for out in p.values(&["o", "output"]) {
                // `-o '|cmd'` and `-o '!cmd'` pipe the trace into a shell command.
                if let Some(code) = out.text.strip_prefix('|').or(out.text.strip_prefix('!')) {
                    u.runs.push(Inner::Code(Word {
                        text: code.to_string(),
                        ..out.clone()
                    }));
                } else {
                    u.writes.push(out);
                }
            }
            u.runs.extend(command_after(args, p.rest, false));
        }
        "busybox" => {
            if let Some(first) = args.first()
                && !first.text.starts_with('-')
            {
                u.runs.extend(command_after(args, 0, false));
            }
        }
        "eval" => {
            if !args.is_empty() {
                u.runs.push(Inner::Code(join(args)));
            }
        }
        "trap" => {
            let rest: Vec<&Word> = args.iter().skip_while(|a| a.text == "--").collect();
            if rest.len() >= 2 && !matches!(rest[0].text.as_str(), "-" | "-p" | "-l" | "-P") {
                u.runs.push(Inner::Code(rest[0].clone()));
            }
        }
        "find" => find(args, &mut u),
        _ => return None,
    }
    Some(u)
}

/// Options with `short_arg` / `long_arg` values, then the command.
fn simple(
    args: &[Word],
    short_arg: &'static str,
    long_arg: &'static [&'static str],
    long_flag: &'static [&'static str],
    u: &mut Unwrapped,
) {
    positional_then_command(
        args,
        &Grammar {
            short_arg,
            long_arg,
            long_flag,
            numeric: false,
        },
        0,
        u,
    );
}

/// Options, `skip` operands that are not the command (`timeout DURATION`), the command.
fn positional_then_command(args: &[Word], g: &Grammar, skip: usize, u: &mut Unwrapped) {
    let p = parse(args, g);
    u.hidden = p.hidden.clone();
    u.runs.extend(command_after(args, p.rest + skip, false));
}

/// `su`/`runuser` permute their arguments (options may follow the user name): `-c` code
/// anywhere, `runuser -u USER cmd...`, otherwise a login shell.
fn su(args: &[Word], u: &mut Unwrapped) {
    let mut i = 0;
    let mut code = None;
    while i < args.len() {
        let a = &args[i];
        if !a.option_safe() {
            u.hidden = Some(format!(
                "an option word known only at run time ({})",
                a.text
            ));
            return;
        }
        let t = a.text.as_str();
        if let Some(v) = t
            .strip_prefix("--command=")
            .or(t.strip_prefix("--session-command="))
        {
            code = Some(Word::literal(v));
        } else if matches!(t, "-c" | "--command" | "--session-command") {
            code = args.get(i + 1).cloned();
            i += 1;
        } else if t.starts_with("-c") && t.len() > 2 && !t.starts_with("--") {
            code = Some(Word::literal(&t[2..]));
        } else if matches!(t, "-u" | "--user") {
            // runuser -u USER [--] COMMAND...
            let mut k = i + 2;
            if args.get(k).is_some_and(|w| w.text == "--") {
                k += 1;
            }
            match command_after(args, k, false) {
                Some(inner) => u.runs.push(inner),
                None => u.runs.push(Inner::Shell),
            }
            return;
        } else if matches!(
            t,
            "-s" | "-g" | "-G" | "-w" | "--shell" | "--group" | "--supp-group"
        ) {
            i += 1;
        }
        i += 1;
    }
    u.runs.push(match code {
        Some(c) => Inner::Code(c),
        None => Inner::Shell,
    });
}

/// `find ... -exec CMD ARGS {} ;` (and `-execdir`, `-ok`, `-okdir`) runs CMD for each file;
/// `-fprint FILE` writes FILE.
fn find(args: &[Word], u: &mut Unwrapped) {
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if matches!(t, "-exec" | "-execdir" | "-ok" | "-okdir") {
            let start = i + 1;
            let mut end = start;
            while end < args.len() && !matches!(args[end].text.as_str(), ";" | "+") {
                end += 1;
            }
            if end > start {
                u.runs.push(Inner::Argv {
                    words: args[start..end].to_vec(),
                    runtime_args: false,
                });
            }
            i = end + 1;
            continue;
        }
        if matches!(t, "-fprint" | "-fprint0" | "-fprintf" | "-fls") {
            u.writes.extend(args.get(i + 1).cloned());
        }
        i += 1;
    }
}

/// GNU parallel: the command (shell code) before `:::`/`::::`, arguments after them or from
/// standard input.
fn parallel(args: &[Word], u: &mut Unwrapped) {
    let p = parse(
        args,
        &Grammar {
            short_arg: "jaSIdEnNLsX",
            long_arg: &[
                "jobs",
                "arg-file",
                "sshlogin",
                "delimiter",
                "max-args",
                "max-lines",
                "max-chars",
                "results",
                "joblog",
                "tmpdir",
                "workdir",
                "timeout",
                "delay",
                "retries",
                "colsep",
                "tagstring",
                "basefile",
                "env",
            ],
            long_flag: &[
                "null",
                "keep-order",
                "tag",
                "dry-run",
                "verbose",
                "help",
                "version",
            ],
            numeric: false,
        },
    );
    u.hidden = p.hidden.clone();
    let end = args[p.rest..]
        .iter()
        .position(|a| a.text.starts_with(":::"))
        .map_or(args.len(), |k| p.rest + k);
    let from_input = end == args.len() || p.has(&["a", "arg-file"]);
    if end > p.rest {
        let code = join(&args[p.rest..end]);
        if from_input {
            // Each input line is appended to the command: arguments known only at run time.
            let mut c = code;
            c.text.push_str(" \"$PARALLEL_INPUT\"");
            c.expands = true;
            c.splits = true;
            u.runs.push(Inner::Code(c));
        } else {
            // Each argument after `:::` is appended to the command.
            for a in args[end..].iter().filter(|a| !a.text.starts_with(":::")) {
                let mut c = join(&[code.clone(), a.clone()]);
                c.expands |= a.expands;
                u.runs.push(Inner::Code(c));
            }
        }
    } else if end < args.len() {
        // No command: each argument is itself a command line.
        for a in args[end..].iter().filter(|a| !a.text.starts_with(":::")) {
            u.runs.push(Inner::Code(a.clone()));
        }
    } else {
        u.hidden = Some("parallel runs command lines read from standard input".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(line: &str) -> Vec<Word> {
        super::super::words::lex(line)
            .toks
            .into_iter()
            .filter_map(|t| match t {
                super::super::words::Tok::Word(w) => Some(w),
                _ => None,
            })
            .collect()
    }

    fn argv(program: &str, args: &str) -> Vec<String> {
        let u = unwrap(program, &w(args)).expect("a wrapper");
        match u.runs.first() {
            Some(Inner::Argv { words, .. }) => words.iter().map(|x| x.text.clone()).collect(),
            other => panic!("{program} {args}: {other:?}"),
        }
    }

    #[test]
    fn option_grammars() {
        assert_eq!(argv("sudo", "-u root -g wheel rm -r x"), ["rm", "-r", "x"]);
        assert_eq!(argv("sudo", "--user=root -- id"), ["id"]);
        assert_eq!(argv("sudo", "-uroot A=1 id"), ["id"]);
        assert_eq!(argv("ionice", "-c 3 -n7 rm -r x"), ["rm", "-r", "x"]);
        assert_eq!(argv("timeout", "-s KILL -k 5 10s rm x"), ["rm", "x"]);
        assert_eq!(argv("timeout", "--sig=KILL 10 rm x"), ["rm", "x"]);
        assert_eq!(argv("nice", "-5 rm x"), ["rm", "x"]);
        assert_eq!(argv("nice", "-n 5 rm x"), ["rm", "x"]);
        assert_eq!(argv("chrt", "-f 10 rm x"), ["rm", "x"]);
        assert_eq!(argv("taskset", "-c 0,1 rm x"), ["rm", "x"]);
        assert_eq!(argv("chroot", "--userspec=a:b /srv rm x"), ["rm", "x"]);
        assert_eq!(argv("stdbuf", "-oL -e 0 rm x"), ["rm", "x"]);
        assert_eq!(argv("exec", "-a name rm x"), ["rm", "x"]);
        assert_eq!(
            argv("strace", "-f -o /tmp/t -e trace=file rm x"),
            ["rm", "x"]
        );
        assert_eq!(argv("env", "-S 'rm -r' x"), ["rm", "-r", "x"]);
        assert_eq!(argv("env", "-u A -i B=1 rm x"), ["rm", "x"]);
        assert_eq!(argv("flock", "-w 5 /tmp/l rm x"), ["rm", "x"]);
        assert_eq!(
            argv("find", ". -name y -exec rm -r {} ;"),
            ["rm", "-r", "{}"]
        );
        assert_eq!(argv("runuser", "-u app -- rm x"), ["rm", "x"]);
        assert_eq!(argv("busybox", "rm -r x"), ["rm", "-r", "x"]);
        assert!(matches!(
            unwrap("xargs", &w("-a f -I{} rm {}")).map(|u| u.runs),
            Some(v) if matches!(&v[0], Inner::Argv { runtime_args: true, .. })
        ));
        let code = |p: &str, a: &str| match unwrap(p, &w(a)).map(|u| u.runs) {
            Some(v) => match v.first() {
                Some(Inner::Code(c)) => c.text.clone(),
                other => panic!("{p} {a}: {other:?}"),
            },
            None => panic!("{p}"),
        };
        assert_eq!(code("su", "- root -c 'rm x'"), "rm x");
        assert_eq!(code("flock", "/tmp/l -c 'rm x'"), "rm x");
        assert_eq!(code("script", "-q -c 'rm x' /dev/null"), "rm x");
        assert_eq!(code("watch", "-n 5 rm -r x"), "rm -r x");
        assert_eq!(code("trap", "'rm x' EXIT"), "rm x");
        assert_eq!(code("strace", "-o '|rm x' ls"), "rm x");
        for (p, a) in [
            ("su", ""),
            ("unshare", "-m"),
            ("nsenter", "-t 1 -a"),
            ("script", "-q"),
        ] {
            assert_eq!(
                unwrap(p, &w(a)).map(|u| u.runs),
                Some(vec![Inner::Shell]),
                "{p} {a}"
            );
        }
        assert!(
            unwrap("sudo", &w("-$(echo u) root id"))
                .and_then(|u| u.hidden)
                .is_some()
        );
        assert_eq!(
            unwrap("sudo", &w("-e /etc/x")).map(|u| u.also),
            Some(vec!["sudoedit".to_string()])
        );
        assert_eq!(
            unwrap("time", &w("-o /etc/x id")).map(|u| u.writes.len()),
            Some(1)
        );
    }
}
