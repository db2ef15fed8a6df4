//! What a shell command line would run, for policy: every simple command (through pipes, lists,
//! subshells, `$(...)`, backticks, `bash -c '...'` and wrappers such as `sudo`, `env`, `nohup`,
//! each read with its own option grammar), program names without their directories, files
//! written, and whether data is piped into an interpreter (`base64 -d | sh`). It is a
//! conservative reading, not a shell: what it cannot follow is reported as `hidden`, with the
//! reason, so the policy can hold it.

mod arith;
pub mod brace;
mod cwd;
mod destinations;
mod embedded;
mod extract;
mod interpreters;
mod later;
mod outputs;
mod paths;
mod programs;
pub mod startup;
mod unpack;
mod variables;
mod words;
mod wrappers;
mod writes;

pub use paths::normalize_path;
use variables::{is_assignment, risky_assignment};
use words::{DYNAMIC, Tok, Word};
use wrappers::Inner;

/// Facts about one command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShellFacts {
    /// Each simple command, program basename first, arguments joined by single spaces (long
    /// options of known programs spelled out: `rm --recur` reads `rm --recursive`).
    pub commands: Vec<String>,
    /// Program basenames, in order of appearance (wrappers included).
    pub programs: Vec<String>,
    /// Targets of `>`, `>>`, `tee`, `dd of=`, `cp`/`mv`/`install`/`ln` and similar writes.
    pub write_paths: Vec<String>,
    /// Directories below which files named by a protocol land (`scp -t DIR`, `rsync --server
    /// … DIR`, and the destination of `scp`/`rsync` run on the target): any path inside counts.
    pub write_trees: Vec<String>,
    /// An interpreter reads commands from a pipe or from text made at run time.
    pub pipe_to_shell: bool,
    /// Quotes, substitutions or here-documents were left open.
    pub unbalanced: bool,
    /// A shell or interpreter reads its commands from the session (an interactive shell by
    /// another name: `ssh box bash`, `python3`): what a `shell = "deny"` grant refuses.
    pub interactive: bool,
    /// Why what runs cannot be read from the line (empty when it can): an interpreter
    /// reading its terminal or standard input, a script file, a word known only at run time
    /// where a program or option stands, a write to a path known only at run time...
    pub hidden: Vec<String>,
}

fn basename(word: &str) -> String {
    word.rsplit('/').next().unwrap_or(word).to_string()
}

/// Most nested shells (`bash -c "sh -c '...'"`) and substitutions read before the line counts
/// as hidden.
const MAX_DEPTH: usize = 8;

/// Most wrappers around one command (`sudo nice timeout env ...`) read before it counts as
/// hidden: it bounds the reader's recursion.
const MAX_WRAPPERS: usize = 32;

/// Most reasons kept for a hidden line.
const MAX_REASONS: usize = 8;

/// Where a simple command's standard input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stdin {
    /// The session's terminal or channel: what an agent types later.
    Session,
    Pipe,
    /// `< file`
    File,
    /// A here-string or here-document: its text when complete.
    Text(Option<Word>),
}

/// Reads a command line.
pub fn analyze(line: &str) -> ShellFacts {
    analyze_in(line, None)
}

/// Reads a command line of a shell last seen in `cwd`: a relative write is judged both under
/// any directory (as without it) and under `cwd`, so the directory can add a hold (`echo >
/// job` in `/etc/cron.d`) but never lift one.
pub fn analyze_in(line: &str, cwd: Option<&str>) -> ShellFacts {
    let mut r = Reader {
        cwd: cwd
            .filter(|c| c.starts_with('/'))
            .map(|c| normalize_path(&format!("{c}/"))),
        ..Reader::default()
    };
    r.line(line, 0);
    if later::defines_function(line) {
        r.hide("a function definition changes what a later command name runs".into());
    }
    if r.facts.unbalanced {
        r.hide("a quote, substitution or here-document is left open, so the shell reads on".into());
    }
    r.facts
}

#[derive(Default)]
struct Reader {
    facts: ShellFacts,
    /// The working directory after a literal `cd /abs` earlier on the line, so relative
    /// writes after it are judged where they land (`cd /etc && echo x > shadow`).
    cwd: Option<String>,
    /// Wrappers around the command being read.
    wrapped: usize,
    /// Where the last `write_target` call's paths begin in `facts.write_paths`.
    tree_mark: usize,
    /// A `cd` on this line went where proctor cannot know (`cd "$D"`, `cd -`, `popd`, `cd`
    /// after `HOME=`): relative writes after it are hidden.
    cwd_unknown: bool,
    /// The line assigns HOME, so `cd` and `~` may be anywhere.
    home_changed: bool,
    /// `cwd` is where the shell is (only absolute `cd`s since it was set), not a lexical guess
    /// through a relative `cd` that `CDPATH` or a link may send elsewhere.
    cwd_exact: bool,
}

impl Reader {
    /// Records why the line is hidden. The first [`MAX_REASONS`] distinct reasons are kept
    /// (the approver also sees the whole line); one is enough to hold it.
    fn hide(&mut self, why: String) {
        if self.facts.hidden.len() < MAX_REASONS && !self.facts.hidden.contains(&why) {
            self.facts.hidden.push(why);
        }
    }

    fn line(&mut self, text: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.facts.unbalanced = true;
            return;
        }
        let lexed = words::lex(text);
        self.facts.unbalanced |= lexed.unbalanced;
        for why in lexed.hidden {
            self.hide(why);
        }
        let mut current: Vec<Word> = Vec::new();
        let mut stdin = Stdin::Session;
        // What the next word is, after a redirection operator.
        let mut pending: Option<Tok> = None;
        for t in lexed.toks {
            match t {
                Tok::Word(w) => match pending.take() {
                    Some(Tok::Write) => self.write_target(&w),
                    Some(Tok::Read) => stdin = Stdin::File,
                    Some(Tok::HereString) => stdin = Stdin::Text(Some(w)),
                    // The delimiter of a here-document.
                    Some(_) => {}
                    None => current.push(w),
                },
                Tok::HereDoc { body, expands } => {
                    stdin = Stdin::Text(body.map(|text| Word {
                        text,
                        expands,
                        ..Word::default()
                    }));
                    pending = Some(Tok::Sep);
                }
                Tok::Write | Tok::Read | Tok::HereString => pending = Some(t),
                Tok::Pipe | Tok::Sep => {
                    let words = std::mem::take(&mut current);
                    if !words.is_empty() {
                        self.command(words, &stdin, depth, false);
                    }
                    stdin = if t == Tok::Pipe {
                        Stdin::Pipe
                    } else {
                        Stdin::Session
                    };
                    pending = None;
                }
            }
        }
        if !current.is_empty() {
            self.command(current, &stdin, depth, false);
        }
        for body in lexed.nested {
            self.line(&body, depth + 1);
        }
    }

    /// The paths the last `write_target` call added are directories anything below which may
    /// be written. (A brace expansion adds several.)
    fn last_write_is_tree(&mut self) {
        let from = self.tree_mark.min(self.facts.write_paths.len());
        let landed = self.facts.write_paths[from..].to_vec();
        for d in &landed {
            if let Some(why) = startup::tree_runs_later(d) {
                self.hide(why);
            }
        }
        self.facts.write_trees.extend(landed);
    }

    fn write_target(&mut self, w: &Word) {
        self.tree_mark = self.facts.write_paths.len();
        if !w.is_literal() {
            self.hide(format!(
                "writes to a path known only at run time ({})",
                shown(&w.text)
            ));
        }
        if w.brace && w.quoted_brace {
            self.hide(format!(
                "a brace expansion mixed with quoted braces or commas ({})",
                shown(&w.text)
            ));
        }
        let expanded = if w.brace {
            brace::brace_expand(&w.text)
        } else {
            Some(vec![w.text.clone()])
        };
        match expanded {
            Some(paths) => {
                for p in paths {
                    let relative = !p.starts_with('/') && !p.is_empty();
                    if relative && self.cwd_unknown {
                        self.hide(format!(
                            "writes a relative path ({}) after a cd to a directory known only at run time",
                            shown(&p)
                        ));
                    }
                    let mut landed = vec![normalize_path(&p)];
                    if let (Some(cwd), true) = (&self.cwd, relative) {
                        let guess = normalize_path(&format!("{cwd}/{p}"));
                        if self.cwd_exact {
                            landed = vec![guess];
                        } else {
                            landed.push(guess);
                        }
                    }
                    for p in landed {
                        if let Some(why) = startup::runs_later(&p) {
                            self.hide(why);
                        }
                        self.facts.write_paths.push(p);
                    }
                }
            }
            None => self.hide("a brace expansion too large to follow".into()),
        }
    }

    /// One simple command. `runtime_args`: more arguments are added at run time (`xargs`).
    fn command(&mut self, words: Vec<Word>, stdin: &Stdin, depth: usize, runtime_args: bool) {
        let words = self.expand_braces(words);
        let mut rest: &[Word] = &words;
        while let Some(first) = rest.first() {
            match first.text.as_str() {
                // Reserved words that open or continue a compound command: the command follows
                // (`do sudo id`, `if rm -r x; then`, `! sudo id`).
                "!" | "if" | "then" | "else" | "elif" | "while" | "until" | "do" | "done"
                | "fi" | "esac" | "{" | "}" | "function" | "coproc"
                    if first.is_literal() =>
                {
                    rest = &rest[1..]
                }
                // `for NAME in WORDS`, `select ...`, `case WORD in`: words, not a command (their
                // substitutions are read separately).
                "for" | "select" | "case" if first.is_literal() => {
                    if first.text != "case"
                        && let Some(h) = variables::loop_variable(rest)
                    {
                        self.hide(h);
                    }
                    return;
                }
                w if is_assignment(w) => {
                    self.home_changed |= w.starts_with("HOME=");
                    if let Some(h) = risky_assignment(std::slice::from_ref(first)) {
                        self.hide(h);
                    }
                    rest = &rest[1..];
                }
                _ => break,
            }
        }
        let Some((first, args)) = rest.split_first() else {
            return;
        };
        let init = programs::init_script(&first.text);
        let program = basename(&first.text);
        if !first.is_literal() {
            // A program named by a substitution, a variable or a glob hides the command that
            // runs.
            self.hide(format!(
                "the program is known only at run time ({})",
                shown(&first.text)
            ));
        } else if init.is_none() && programs::is_script_path(&first.text) {
            self.hide(format!(
                "runs a file proctor has not read ({})",
                shown(&first.text)
            ));
        }
        self.facts.programs.push(program.clone());
        let mut normalized = program.clone();
        for a in args {
            normalized.push(' ');
            if let Some(full) = programs::full_long_option(&program, &a.text) {
                normalized.push_str(&full);
            } else if a.text.starts_with('/') {
                normalized.push_str(&normalize_path(&a.text));
            } else {
                normalized.push_str(&a.text);
            }
        }
        if let Some(name) = init {
            let verb = normalized[program.len()..].to_string();
            self.facts.commands.push(format!("service {name}{verb}"));
        }
        self.facts.commands.push(normalized);

        if !programs::looks_only(&program) {
            if runtime_args {
                self.hide(format!("{program} gets arguments known only at run time"));
            }
            // Declarations take `NAME=$VALUE` as an assignment: not split, not an option.
            let declares = matches!(
                program.as_str(),
                "export" | "declare" | "typeset" | "local" | "readonly"
            );
            let mut options = args
                .iter()
                .take_while(|a| !(a.is_literal() && a.text == "--"))
                .filter(|a| !(declares && !a.opaque_start && is_assignment(&a.text)));
            if let Some(bad) = options.find(|a| !a.option_safe()) {
                self.hide(format!(
                    "an argument of {program} known only at run time may be an option ({})",
                    shown(&bad.text)
                ));
            }
        }
        if programs::runs_elsewhere(&program, args) {
            self.hide(format!(
                "{program} runs commands later or in a terminal that proctor does not judge"
            ));
        }
        let texts: Vec<&str> = args.iter().map(|a| a.text.as_str()).collect();
        if let Some(why) = arith::command(&program, &texts) {
            self.hide(why);
        }
        if let Some(why) = embedded::runs_commands(&program, args) {
            self.hide(why);
        }
        if let Some(why) = later::changes_later_lines(&program, args) {
            self.hide(why.to_string());
        }
        if later::interactive_program(&program) {
            self.hide(format!(
                "{program} reads keys or runs commands from inside, which proctor does not judge"
            ));
        }
        if programs::builtin_changes_later_commands(&program, args) {
            self.hide(format!(
                "{program} changes what later commands run in a way proctor does not follow"
            ));
        }
        self.directory_change(&program, args);
        if let Some(h) = variables::assigns_by_name(&program, args)
            .or_else(|| variables::removes_by_name(&program, args))
        {
            self.hide(h);
        }
        if matches!(
            program.as_str(),
            "export" | "declare" | "typeset" | "local" | "readonly"
        ) {
            self.home_changed |= args.iter().any(|a| a.text.starts_with("HOME="));
            if let Some(h) = risky_assignment(args) {
                self.hide(h);
            }
        }
        let trees = writes::as_trees(&program, args);
        for w in writes::targets(&program, args) {
            self.write_target(&w);
            if trees {
                self.last_write_is_tree();
            }
        }
        for w in writes::extra_trees(&program, args) {
            self.write_target(&w);
            self.last_write_is_tree();
        }
        self.extraction(&program, args);
        if let Some(why) = unpack::writes_unseen(&program, args)
            .or_else(|| outputs::server_named(&program, args))
            .or_else(|| destinations::runs_commands(&program, args))
        {
            self.hide(why);
        }
        self.chdir_option(&program, args);
        if programs::is_posix_shell(&program) {
            self.shell(&program, args, stdin, depth);
        } else if programs::is_other_shell(&program) || programs::is_interpreter(&program) {
            self.interpreter(&program, args, stdin);
        } else if programs::is_awk(&program) {
            self.awk(&program, args);
        } else if program == "source" || program == "." {
            if args.first().is_some_and(|a| a.text.contains(DYNAMIC)) || *stdin == Stdin::Pipe {
                self.facts.pipe_to_shell = true;
            }
            self.hide(format!("{program} runs a script file proctor has not read"));
        }
        let Some(u) = wrappers::unwrap(&program, args) else {
            return;
        };
        self.facts.programs.extend(u.also);
        if let Some(h) = u.hidden {
            self.hide(h);
        }
        for w in &u.writes {
            self.write_target(w);
        }
        for inner in u.runs {
            match inner {
                Inner::Argv {
                    words,
                    runtime_args: more,
                } => {
                    if self.wrapped >= MAX_WRAPPERS {
                        self.hide("more wrappers around one command than proctor reads".into());
                        continue;
                    }
                    self.wrapped += 1;
                    self.command(words, stdin, depth, runtime_args || more);
                    self.wrapped -= 1;
                }
                Inner::Code(code) => self.code(&program, &code, depth),
                Inner::Shell => self.hide(format!(
                    "{program} starts a shell that reads commands proctor does not judge"
                )),
            }
        }
    }

    /// `tar x` and `unzip`: a write to the tree below each destination. Members that land in
    /// the working directory are judged there only when this line set it (`cd /tmp/w && tar
    /// x`): the directory read from the target may be stale, so it can add a hold, not lift one.
    fn extraction(&mut self, program: &str, args: &[Word]) {
        let Some(landing) = extract::landing(program, args) else {
            return;
        };
        if self.facts.programs.iter().any(|p| p == "busybox") {
            // Busybox's extractor was not checked for what GNU tar and UnZip refuse.
            self.hide(format!(
                "busybox {program} may write outside its destination"
            ));
        }
        let landing = match landing {
            Ok(l) => l,
            Err(why) => return self.hide(why),
        };
        for d in &landing.dirs {
            self.write_target(d);
            self.last_write_is_tree();
        }
        // Where it lands is judged (a guard on the destination denies), but never lifts the
        // hold: a member may be a start-up file, a git hook or a unit, and such names count
        // wherever they land (`startup`), in any directory, which may be a login's home.
        let members = format!(
            "{program} writes files named inside the archive (a start-up file, hook or unit \
             among them runs commands later, wherever it lands), which proctor cannot judge \
             from the line"
        );
        if !landing.here {
            return self.hide(members);
        }
        self.extract_here(program);
        self.hide(members);
    }

    /// Members that land in the working directory: judged there when this line set it.
    fn extract_here(&mut self, program: &str) {
        match &self.cwd {
            Some(cwd) if self.cwd_exact && !self.cwd_unknown => {
                let here = Word {
                    text: cwd.clone(),
                    ..Word::default()
                };
                self.write_target(&here);
                self.last_write_is_tree();
            }
            known => {
                if let Some(cwd) = known.clone() {
                    self.facts.write_trees.push(cwd);
                }
                self.hide(format!(
                    "{program} extracts into the working directory, which this line does not set"
                ));
            }
        }
    }

    /// Shell code in a word (`bash -c`, `su -c`, `eval`, `watch`): read as a line.
    fn code(&mut self, program: &str, code: &Word, depth: usize) {
        if !code.is_literal() {
            if code.text.contains(DYNAMIC) {
                // `bash -c "$(curl ...)"`: the script is made at run time.
                self.facts.pipe_to_shell = true;
            }
            self.hide(format!(
                "{program} runs shell code known only at run time ({})",
                shown(&code.text)
            ));
        }
        self.line(&code.text, depth + 1);
    }

    /// Brace expansion of the words with unquoted braces (quoted text is not expanded).
    fn expand_braces(&mut self, words: Vec<Word>) -> Vec<Word> {
        if !words.iter().any(|w| w.brace) {
            return words;
        }
        let mut out = Vec::with_capacity(words.len());
        for w in &words {
            if !w.brace {
                out.push(w.clone());
                continue;
            }
            if w.quoted_brace {
                self.hide(format!(
                    "a brace expansion mixed with quoted braces or commas ({})",
                    shown(&w.text)
                ));
                out.push(w.clone());
                continue;
            }
            match brace::brace_expand(&w.text) {
                Some(texts) if out.len() + texts.len() <= brace::MAX_BRACE_WORDS => {
                    out.extend(texts.into_iter().map(|text| Word { text, ..w.clone() }))
                }
                _ => {
                    // Too many words to follow: what runs is not what can be read.
                    self.hide("a brace expansion too large to follow".into());
                    return words;
                }
            }
        }
        out
    }
}

/// A word as quoted in a reason: substitutions shown as `$(...)`.
fn shown(text: &str) -> String {
    text.replace(DYNAMIC, "$(...)")
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
