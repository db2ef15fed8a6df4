//! Whether shell text is a complete command, or bash would read on (an open quote, a trailing
//! backslash, an open `$(`, backquote or `${`, a here-document without its end, an open
//! compound command: `if` without `fi`, `for ... do` without `done`, `{` without `}`...).
//!
//! This only decides when proctor stops collecting lines; it never decides what runs. Text it
//! calls complete is judged whole by the core's shell reader, which holds anything left open
//! as `hidden`; text it calls incomplete is simply collected further (the agent can always
//! end it with Ctrl-C). So when unsure it says "incomplete" only for constructs it knows are
//! open.

/// What bash would do at the end of this text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Complete,
    /// Bash would show its continuation prompt and read on.
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ctx {
    /// Plain shell text: the top level, `$(...)`, `(...)` (closed by `)`).
    Code {
        closer: Option<char>,
    },
    /// A compound command waiting for its closing word (`fi`, `done`, `esac`, `}`).
    Compound(&'static str),
    Double,
    Backquote,
    /// `${...}`
    Param,
}

/// Reads `text` as bash would, far enough to know whether it is complete.
pub fn status(text: &str) -> Status {
    let chars: Vec<char> = text.chars().collect();
    let mut s = Scan {
        chars,
        i: 0,
        stack: vec![Ctx::Code { closer: None }],
        heredocs: Vec::new(),
        word: String::new(),
        word_plain: true,
        cmd_start: true,
        open: false,
    };
    s.run();
    if s.open || s.stack.len() > 1 || !s.heredocs.is_empty() {
        Status::Incomplete
    } else {
        Status::Complete
    }
}

struct Scan {
    chars: Vec<char>,
    i: usize,
    stack: Vec<Ctx>,
    /// Here-document delimiters waiting for the next line: (word, strip leading tabs).
    heredocs: Vec<(String, bool)>,
    /// The word being read in code, and whether it had no quotes or expansions.
    word: String,
    word_plain: bool,
    /// The next word is in command position (where `if`, `}`, `done`... are keywords).
    cmd_start: bool,
    /// Open at the very end: a trailing backslash or a quote that never closed.
    open: bool,
}

const OPENERS: &[(&str, &str)] = &[
    ("if", "fi"),
    ("case", "esac"),
    ("for", "done"),
    ("select", "done"),
    ("while", "done"),
    ("until", "done"),
    ("{", "}"),
];

/// Keywords after which the next word is again in command position.
const LEADS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "fi", "done", "}",
    "esac",
];

impl Scan {
    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn top(&self) -> &Ctx {
        self.stack.last().unwrap_or(&Ctx::Code { closer: None })
    }

    fn in_code(&self) -> bool {
        matches!(self.top(), Ctx::Code { .. } | Ctx::Compound(_))
    }

    fn run(&mut self) {
        while self.i < self.chars.len() {
            let c = self.chars[self.i];
            match self.top().clone() {
                Ctx::Double => self.double(c),
                Ctx::Backquote => self.backquote(c),
                Ctx::Param => self.param(c),
                Ctx::Code { .. } | Ctx::Compound(_) => self.code(c),
            }
        }
        self.end_word();
    }

    /// A backslash: the next character is literal; at the very end, bash reads on.
    fn escape(&mut self) {
        if self.i + 1 >= self.chars.len() {
            self.open = true;
        }
        self.i += 2;
    }

    /// `$(`, `${`, `$'`, `$"`, or a lone `$`.
    fn dollar(&mut self) -> bool {
        match self.peek(1) {
            Some('(') => {
                self.stack.push(Ctx::Code { closer: Some(')') });
                self.i += 2;
                self.cmd_start = true;
                true
            }
            Some('{') => {
                self.stack.push(Ctx::Param);
                self.i += 2;
                true
            }
            _ => false,
        }
    }

    fn double(&mut self, c: char) {
        match c {
            '\\' => self.escape(),
            '"' => {
                self.stack.pop();
                self.i += 1;
            }
            '`' => {
                self.stack.push(Ctx::Backquote);
                self.i += 1;
            }
            '$' if self.dollar() => {}
            _ => self.i += 1,
        }
    }

    fn backquote(&mut self, c: char) {
        match c {
            '\\' => self.escape(),
            '`' => {
                self.stack.pop();
                self.i += 1;
            }
            '\'' => self.single_quote(),
            '"' => {
                self.stack.push(Ctx::Double);
                self.i += 1;
            }
            '$' if self.dollar() => {}
            _ => self.i += 1,
        }
    }

    fn param(&mut self, c: char) {
        match c {
            '\\' => self.escape(),
            '}' => {
                self.stack.pop();
                self.i += 1;
            }
            '\'' => self.single_quote(),
            '"' => {
                self.stack.push(Ctx::Double);
                self.i += 1;
            }
            '`' => {
                self.stack.push(Ctx::Backquote);
                self.i += 1;
            }
            '$' if self.dollar() => {}
            _ => self.i += 1,
        }
    }

    /// Skips a single-quoted string (or `$'...'` with its backslash escapes).
    fn single_quote(&mut self) {
        let ansi = self.i > 0 && self.chars[self.i - 1] == '$';
        self.i += 1;
        while self.i < self.chars.len() {
            match self.chars[self.i] {
                '\\' if ansi => self.i += 2,
                '\'' => {
                    self.i += 1;
                    return;
                }
                _ => self.i += 1,
            }
        }
        self.open = true;
    }

    fn code(&mut self, c: char) {
        match c {
            '\\' => {
                self.word_plain = false;
                if self.peek(1) == Some('\n') {
                    // A line continuation joins the lines: no word ends here.
                    self.i += 2;
                } else {
                    self.escape();
                }
            }
            '\'' => {
                self.word_plain = false;
                self.single_quote();
            }
            '"' => {
                self.word_plain = false;
                self.stack.push(Ctx::Double);
                self.i += 1;
            }
            '`' => {
                self.word_plain = false;
                self.stack.push(Ctx::Backquote);
                self.i += 1;
            }
            '$' => {
                self.word_plain = false;
                if !self.dollar() {
                    self.word.push(c);
                    self.i += 1;
                }
            }
            '#' if self.word.is_empty() && self.word_plain => {
                // A comment, to the end of the line.
                while self.i < self.chars.len() && self.chars[self.i] != '\n' {
                    self.i += 1;
                }
            }
            '\n' => {
                self.end_word();
                self.i += 1;
                self.cmd_start = true;
                self.read_heredocs();
            }
            ' ' | '\t' => {
                self.end_word();
                self.i += 1;
            }
            ';' | '&' | '|' => {
                self.end_word();
                self.i += 1;
                self.cmd_start = true;
            }
            '(' => {
                self.end_word();
                self.stack.push(Ctx::Code { closer: Some(')') });
                self.i += 1;
                self.cmd_start = true;
            }
            ')' => {
                self.end_word();
                self.i += 1;
                // Otherwise a `case` pattern's closing parenthesis.
                if let Ctx::Code { closer: Some(')') } = self.top() {
                    self.stack.pop();
                }
                self.cmd_start = true;
            }
            '<' if self.peek(1) == Some('<') && self.peek(2) != Some('<') => {
                self.end_word();
                self.i += 2;
                self.heredoc_word();
            }
            '<' if self.peek(1) == Some('<') => {
                // A here-string `<<<`: no document follows.
                self.end_word();
                self.i += 3;
            }
            '<' | '>' => {
                self.end_word();
                self.i += 1;
            }
            _ => {
                self.word.push(c);
                self.i += 1;
            }
        }
    }

    /// Ends the word in code; a plain word in command position may open or close a
    /// compound command.
    fn end_word(&mut self) {
        if self.word.is_empty() && self.word_plain {
            return;
        }
        let word = std::mem::take(&mut self.word);
        let plain = std::mem::replace(&mut self.word_plain, true);
        if !self.in_code() {
            return;
        }
        if !(plain && self.cmd_start) {
            self.cmd_start = false;
            return;
        }
        if let Some((_, closer)) = OPENERS.iter().find(|(o, _)| *o == word) {
            self.stack.push(Ctx::Compound(closer));
        } else if let Ctx::Compound(closer) = self.top()
            && *closer == word
        {
            self.stack.pop();
        }
        self.cmd_start = LEADS.contains(&word.as_str());
        // `case WORD in`: the patterns after `in` may be `esac` itself.
        if word == "case" {
            self.cmd_start = false;
        }
    }

    /// `<<WORD`, `<<-WORD`, `<<'WORD'`, `<<"WORD"`: the delimiter for the next line.
    fn heredoc_word(&mut self) {
        let strip = self.peek(0) == Some('-');
        if strip {
            self.i += 1;
        }
        while matches!(self.peek(0), Some(' ' | '\t')) {
            self.i += 1;
        }
        let mut delim = String::new();
        while let Some(c) = self.peek(0) {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => break,
                '\'' | '"' => {
                    self.i += 1;
                    while let Some(q) = self.peek(0) {
                        self.i += 1;
                        if q == c {
                            break;
                        }
                        delim.push(q);
                    }
                }
                '\\' => {
                    if let Some(n) = self.peek(1) {
                        delim.push(n);
                    }
                    self.i += 2;
                }
                _ => {
                    delim.push(c);
                    self.i += 1;
                }
            }
        }
        if delim.is_empty() {
            // `<<` with no word is a syntax error; bash reads no document for it.
            return;
        }
        self.heredocs.push((delim, strip));
    }

    /// At a newline, the bodies of the here-documents opened on the line just ended.
    fn read_heredocs(&mut self) {
        let docs = std::mem::take(&mut self.heredocs);
        let mut pending = docs.into_iter();
        let Some(mut doc) = pending.next() else {
            return;
        };
        loop {
            let start = self.i;
            while self.i < self.chars.len() && self.chars[self.i] != '\n' {
                self.i += 1;
            }
            if self.i >= self.chars.len() && start == self.i {
                // Text ends before the document does.
                self.heredocs.push(doc);
                self.heredocs.extend(pending);
                return;
            }
            let line: String = self.chars[start..self.i].iter().collect();
            let at_end = self.i >= self.chars.len();
            self.i += 1;
            let line = if doc.1 {
                line.trim_start_matches('\t')
            } else {
                &line
            };
            if line == doc.0 {
                match pending.next() {
                    Some(d) => doc = d,
                    None => return,
                }
            } else if at_end {
                self.heredocs.push(doc);
                self.heredocs.extend(pending);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_commands() {
        for t in [
            "",
            "ls -l",
            "echo 'a b' \"c $(date) d\" `id`",
            "echo ${HOME} $((1+2)) $'a\\'b'",
            "if true; then echo y; fi",
            "for x in a b; do echo $x; done",
            "case $x in a) echo a;; esac",
            "case x in (a) echo a;; *) echo b;; esac",
            "{ echo a; }",
            "(cd /tmp && ls)",
            "echo done; echo fi",
            "echo if",
            "echo a # it's a comment with 'quote",
            "cat <<EOF\nline\nEOF",
            "cat <<-'EOF' > /tmp/x\n\tbody $(not run)\n\tEOF",
            "echo 'a\nb'",
            "echo a \\\nb",
            "cat <<< 'x'",
            "while read l; do\n  echo $l\ndone < /tmp/x",
        ] {
            assert_eq!(status(t), Status::Complete, "{t:?}");
        }
    }

    #[test]
    fn incomplete_commands() {
        for t in [
            "echo 'a",
            "echo \"a",
            "echo a \\",
            "echo $(date",
            "echo `date",
            "echo ${HOME",
            "if true; then",
            "for x in a b; do",
            "for x in a b; do echo; done; while true; do",
            "{ echo a;",
            "(cd /tmp",
            "cat <<EOF",
            "cat <<EOF\nline",
            "cat <<EOF\nline\nEOFX",
            "case $x in",
            "echo \"$(echo ')'\"",
            "echo $'a\\'",
        ] {
            assert_eq!(status(t), Status::Incomplete, "{t:?}");
        }
    }
}
