//! Wrappers with a grammar of their own: `su`/`runuser` (options after the user name),
//! `find -exec ... ;`, GNU `parallel` (`:::` argument lists), `script`, `strace`, `xargs`, and
//! `ssh` to another host (or back to this one), whose command is shell code.

use super::{Inner, Unwrapped, Word, command_after, join, options::Grammar, options::parse};

/// `su`/`runuser` permute their arguments (options may follow the user name): `-c` code
/// anywhere, `runuser -u USER cmd...`, otherwise a login shell.
pub fn su(args: &[Word], u: &mut Unwrapped) {
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
pub fn find(args: &[Word], u: &mut Unwrapped) {
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
pub fn parallel(args: &[Word], u: &mut Unwrapped) {
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
            // Each argument after `:::` is appended to the command: read once with all of
            // them, so a long list costs one reading.
            let mut words = vec![code];
            words.extend(
                args[end..]
                    .iter()
                    .filter(|a| !a.text.starts_with(":::"))
                    .cloned(),
            );
            u.runs.push(Inner::Code(join(&words)));
        }
    } else if end < args.len() {
        // No command: each argument is itself a command line; read as one list.
        let lines: Vec<Word> = args[end..]
            .iter()
            .filter(|a| !a.text.starts_with(":::"))
            .cloned()
            .collect();
        let mut code = join(&lines);
        code.text = lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        u.runs.push(Inner::Code(code));
    } else {
        u.hidden = Some("parallel runs command lines read from standard input".into());
    }
}

/// `script [-c CODE] [FILE]`: without `-c` an interactive shell; logs written.
pub fn script(args: &[Word], u: &mut Unwrapped) {
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

/// `strace`/`ltrace`: the traced command; `-o FILE` written, `-o '|cmd'` runs shell code.
pub fn strace(args: &[Word], u: &mut Unwrapped) {
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

/// `xargs`: the command (default `echo`) gets arguments read at run time.
pub fn xargs(args: &[Word], u: &mut Unwrapped) {
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

/// `ssh [options] HOST [COMMAND...]`: the remote shell runs the command words joined, so
/// they are read as shell code; without a command (and without `-N`) a remote login shell.
pub fn ssh(args: &[Word], u: &mut Unwrapped) {
    let p = parse(
        args,
        &Grammar {
            short_arg: "BbcDEeFIiJLlmOoPpQRSWw",
            long_arg: &[],
            long_flag: &[],
            numeric: false,
        },
    );
    u.hidden = p.hidden.clone();
    if p.rest >= args.len() || p.has(&["V", "G", "Q", "O"]) {
        return;
    }
    let command = &args[p.rest + 1..];
    if !command.is_empty() {
        u.runs.push(Inner::Code(join(command)));
    } else if !p.has(&["N", "s", "W"]) {
        u.hidden =
            Some("ssh starts a login shell on a host whose commands proctor does not judge".into());
    }
}
