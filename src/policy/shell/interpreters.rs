//! Shells and interpreters named on a line: what a POSIX shell runs (`-c` code, here-strings,
//! complete here-documents), and when another language's interpreter, a shell reading the
//! session or a script file, or an awk program hides what runs.

use super::words::{DYNAMIC, Word};
use super::{Reader, Stdin, programs, shown, wrappers};

impl Reader {
    /// A POSIX shell: `-c CODE` is read as shell code, here-strings and complete
    /// here-documents too; commands from a terminal, a pipe or a script file are hidden.
    pub(super) fn shell(&mut self, program: &str, args: &[Word], stdin: &Stdin, depth: usize) {
        let mut i = 0;
        let mut code = false;
        let mut from_stdin = false;
        while i < args.len() {
            let a = &args[i];
            if !a.option_safe() {
                if code {
                    // The code operand, made at run time.
                    break;
                }
                if a.text.contains(DYNAMIC) {
                    // `bash <(curl ...)`: the script file is a process substitution.
                    self.facts.pipe_to_shell = true;
                }
                // Already hidden as a run-time word.
                return;
            }
            let t = a.text.as_str();
            if t == "-" || t == "--" {
                from_stdin |= t == "-";
                i += 1;
                break;
            }
            if let Some(long) = t.strip_prefix("--") {
                match long {
                    "version" | "help" => return,
                    "rcfile" | "init-file" => {
                        self.hide(format!(
                            "{program} reads a start-up file proctor has not read"
                        ));
                        i += 1;
                    }
                    _ => {}
                }
            } else if t.len() > 1 && (t.starts_with('-') || t.starts_with('+')) {
                for c in t[1..].chars() {
                    match c {
                        'c' => code = true,
                        's' => from_stdin = true,
                        'o' | 'O' => i += 1,
                        _ => {}
                    }
                }
            } else {
                break;
            }
            i += 1;
        }
        if code {
            if let Some(c) = args.get(i) {
                self.code(program, c, depth);
            }
            return;
        }
        if from_stdin || i >= args.len() {
            self.shell_stdin(program, stdin, depth);
            return;
        }
        if args[i].text.contains(DYNAMIC) {
            // `bash <(curl ...)`: the script file is a process substitution.
            self.facts.pipe_to_shell = true;
        }
        self.hide(format!(
            "{program} runs a script file proctor has not read ({})",
            shown(&args[i].text)
        ));
    }

    fn shell_stdin(&mut self, program: &str, stdin: &Stdin, depth: usize) {
        match stdin {
            Stdin::Text(Some(code)) => self.code(program, code, depth),
            Stdin::Text(None) => self.hide(format!(
                "{program} reads a here-document that does not end on this line"
            )),
            Stdin::Pipe => {
                self.facts.pipe_to_shell = true;
                self.hide(format!("{program} reads commands from a pipe"));
            }
            Stdin::File => self.hide(format!("{program} reads commands from a file")),
            Stdin::Session => {
                self.facts.interactive = true;
                self.hide(format!(
                    "{program} reads commands from the session that proctor does not judge one by one"
                ));
            }
        }
    }

    /// Interpreters of other languages (and shells with a syntax of their own): only
    /// `--version` and `--help` are read; anything else runs code proctor does not judge.
    pub(super) fn interpreter(&mut self, program: &str, args: &[Word], stdin: &Stdin) {
        if let [only] = args
            && matches!(
                only.text.as_str(),
                "--version" | "-V" | "--help" | "-h" | "-v"
            )
        {
            return;
        }
        if *stdin == Stdin::Pipe && args.iter().all(|a| a.text.starts_with('-')) {
            self.facts.pipe_to_shell = true;
        }
        let inline = args.iter().any(|a| {
            matches!(
                a.text.as_str(),
                "-c" | "-e" | "-E" | "-r" | "--eval" | "--command" | "-ex" | "--execute"
            )
        });
        if *stdin == Stdin::Session && !inline && args.iter().all(|a| a.text.starts_with('-')) {
            self.facts.interactive = true;
        }
        self.hide(if inline {
            format!("{program} runs code of another language")
        } else {
            format!("{program} reads code that proctor does not judge")
        });
    }

    pub(super) fn awk(&mut self, program: &str, args: &[Word]) {
        let p = wrappers::parse(
            args,
            &wrappers::Grammar {
                short_arg: "FvfeiEl",
                long_arg: &[
                    "field-separator",
                    "assign",
                    "file",
                    "source",
                    "include",
                    "exec",
                    "load",
                ],
                long_flag: &[],
                numeric: false,
            },
        );
        if p.has(&["f", "file", "i", "include", "E", "exec", "l", "load"]) {
            self.hide(format!(
                "{program} runs a program file proctor has not read"
            ));
            return;
        }
        let texts: Vec<Word> = match p.values(&["e", "source"]) {
            v if !v.is_empty() => v,
            _ => args.get(p.rest).cloned().into_iter().collect(),
        };
        for t in texts {
            if !t.is_literal() || programs::awk_program_escapes(&t.text) {
                self.hide(format!(
                    "an {program} program that can run commands or write files"
                ));
            }
        }
    }
}
