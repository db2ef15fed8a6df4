//! Programs that run another command: what they run, read with each one's own option grammar
//! (which options take an argument, which positional arguments come before the command).
//! `sudo -u root rm -rf /x` runs `rm -rf /x`; `timeout -s KILL 5 rm ...` too; `watch 'rm ...'`
//! and `flock f -c 'rm ...'` run shell code; `unshare` with no command starts a shell.

use super::words::Word;

mod options;
mod special;

pub use options::{Grammar, parse};

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
        "su" | "runuser" => special::su(args, &mut u),
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
            // Removing a variable undoes a judged shell's quiet pagers and editors
            // (`LESSSECURE=1`, `PAGER=cat`): `env -u LESSSECURE git log` starts a `less` that
            // runs commands.
            if p.has(&["i", "ignore-environment"])
                || args.get(p.rest).is_some_and(|a| a.text == "-")
            {
                u.hidden = Some(
                    "env clears the environment, quiet pager and editor settings included".into(),
                );
            }
            if let Some(h) = p
                .values(&["u", "unset"])
                .iter()
                .find_map(super::variables::removed_by_env)
            {
                u.hidden = Some(h);
            }
            if let Some(inner) = command_after(&words, k, false) {
                u.runs.push(inner);
            }
        }
        "nohup" | "builtin" => simple(args, "", NONE, &["help", "version"], &mut u),
        "ssh" => special::ssh(args, &mut u),
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
        "exec" => {
            simple(args, "a", NONE, NONE, &mut u);
            // `exec -c` clears the environment, a judged shell's quiet pagers and editors
            // included (`exec -c git log` starts a `less` that runs commands).
            let cleared = args
                .iter()
                .take_while(|a| a.text.starts_with('-') && a.text != "--")
                .any(|a| a.text.contains('c'));
            if cleared {
                u.hidden = Some(
                    "exec -c clears the environment, quiet pager and editor settings included"
                        .into(),
                );
            }
        }
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
        "xargs" => special::xargs(args, &mut u),
        "parallel" => special::parallel(args, &mut u),
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
        "script" => special::script(args, &mut u),
        "strace" | "ltrace" => special::strace(args, &mut u),
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
        // `alias name='code'`: the code runs wherever the name is used later.
        "alias" => {
            for a in args {
                if let Some((_, code)) = a.text.split_once('=') {
                    u.runs.push(Inner::Code(Word {
                        text: code.to_string(),
                        ..a.clone()
                    }));
                }
            }
        }
        "trap" => {
            let rest: Vec<&Word> = args.iter().skip_while(|a| a.text == "--").collect();
            if rest.len() >= 2 && !matches!(rest[0].text.as_str(), "-" | "-p" | "-l" | "-P") {
                u.runs.push(Inner::Code(rest[0].clone()));
            }
        }
        "find" => special::find(args, &mut u),
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

#[cfg(test)]
mod tests;
