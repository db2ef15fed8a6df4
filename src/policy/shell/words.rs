//! Splitting a line into words and operators as a POSIX shell (bash) does: quotes, escapes,
//! `$'...'`, parameter and command substitutions, redirections and here-documents. Each word
//! says whether any of it is only known at run time, so the reader can tell a literal `rm` from
//! `$R` or `r$(echo m)`. Substitution bodies are collected for separate reading: they run too.

mod dollar;
mod heredoc;

/// Stands in a word for text produced at run time (`$(...)`, backticks, `<(...)`).
pub const DYNAMIC: char = '\u{0}';

/// One shell word after quote removal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Word {
    /// The text, quotes removed; substitutions stand as [`DYNAMIC`], `$NAME` stays as written.
    pub text: String,
    /// Some of the word is known only at run time (`$X`, `${X}`, `$(...)`, backticks).
    pub expands: bool,
    /// An unquoted expansion: its value is split into words and globbed, so it may become
    /// several words, options included.
    pub splits: bool,
    /// The first character comes from an expansion (`$X...`), so the word may start with `-`.
    pub opaque_start: bool,
    /// An unquoted `*`, `?` or `[...]`: the shell replaces the word by matching file names.
    pub glob: bool,
    /// Some part was quoted or escaped (a here-document delimiter then takes its body
    /// literally).
    pub quoted: bool,
    /// An unquoted `{`: the word may be a brace expansion.
    pub brace: bool,
    /// A quoted `{`, `}` or `,`: not part of a brace expansion, so the word cannot be
    /// expanded from its text alone.
    pub quoted_brace: bool,
}

impl Word {
    pub fn literal(text: &str) -> Word {
        Word {
            text: text.to_string(),
            ..Word::default()
        }
    }

    /// The word is exactly what was written: no expansion, no glob.
    pub fn is_literal(&self) -> bool {
        !self.expands && !self.glob
    }

    /// As an argument, the word cannot be or become an option the program did not see
    /// written: literal, or a quoted expansion after a literal first character that is not `-`.
    pub fn option_safe(&self) -> bool {
        !self.expands
            || (!self.splits && !self.opaque_start && !self.text.starts_with('-'))
            || only_numeric_specials(&self.text)
    }
}

/// `$$`, `$!`, `$?` and `$#` (and digits around them) expand to digits only: never an option,
/// never more than one word (`kill -TERM $$`).
fn only_numeric_specials(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let mut special = false;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'$', Some(b'$' | b'!' | b'?' | b'#')) => {
                special = true;
                i += 2;
            }
            (d, _) if d.is_ascii_digit() => i += 1,
            _ => return false,
        }
    }
    special
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Word(Word),
    /// `|` or `|&`
    Pipe,
    /// `;`, `&&`, `||`, `&`, newline, parentheses, `{`/`}` as words: command separators.
    Sep,
    /// `>`, `>>`, `>|`, `&>`, `&>>`, `<>`, `>& file`, with or without a descriptor number:
    /// the next word is written.
    Write,
    /// `<`: the next word is read.
    Read,
    /// `<<<`: the next word is the command's standard input.
    HereString,
    /// `<<` or `<<-`: the next word is a delimiter; `body` is the document when it ends
    /// within the text (`None` when the text ends first), `expands` when its delimiter was
    /// unquoted and the body has expansions.
    HereDoc {
        body: Option<String>,
        expands: bool,
    },
}

/// A line split into tokens.
#[derive(Debug, Default)]
pub struct Lexed {
    pub toks: Vec<Tok>,
    /// Bodies of `$(...)`, backticks and process substitutions, to be read as commands.
    pub nested: Vec<String>,
    /// A quote, substitution or here-document was left open.
    pub unbalanced: bool,
    /// Why an expansion evaluates a variable's value as code (see `arith`).
    pub hidden: Vec<String>,
}

struct Lexer<'a> {
    chars: &'a [char],
    i: usize,
    out: Lexed,
    word: Word,
    in_word: bool,
    /// An unquoted `[` in the current word, waiting for its `]` to make a glob.
    bracket: bool,
    /// Here-documents whose body starts at the next newline: (token index, strip tabs).
    pending_docs: Vec<(usize, bool)>,
}

/// Splits `line` into tokens.
pub fn lex(line: &str) -> Lexed {
    let chars: Vec<char> = line.chars().collect();
    let mut lx = Lexer {
        chars: &chars,
        i: 0,
        out: Lexed::default(),
        word: Word::default(),
        in_word: false,
        bracket: false,
        pending_docs: Vec::new(),
    };
    lx.run();
    lx.out
}

impl Lexer<'_> {
    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn flush(&mut self) {
        if self.in_word {
            let w = std::mem::take(&mut self.word);
            self.out.toks.push(Tok::Word(w));
            self.in_word = false;
            self.bracket = false;
        }
    }

    fn push_char(&mut self, c: char) {
        self.word.text.push(c);
        self.in_word = true;
    }

    /// Text that comes from an expansion: `quoted` when inside double quotes.
    fn push_expansion(&mut self, text: &str, quoted: bool) {
        if !self.in_word || self.word.text.is_empty() {
            self.word.opaque_start = true;
        }
        self.word.text.push_str(text);
        self.word.expands = true;
        self.word.splits |= !quoted;
        self.in_word = true;
    }

    fn run(&mut self) {
        while self.i < self.chars.len() {
            let c = self.chars[self.i];
            match c {
                '\\' => {
                    self.word.quoted = true;
                    match self.peek(1) {
                        Some('\n') => {}
                        Some(n) => {
                            self.word.quoted_brace |= matches!(n, '{' | '}' | ',');
                            self.push_char(n)
                        }
                        None => self.in_word = true,
                    }
                    self.i += 2;
                }
                '\'' => {
                    self.i += 1;
                    self.word.quoted = true;
                    self.in_word = true;
                    self.single_quoted();
                }
                '"' => {
                    self.i += 1;
                    self.word.quoted = true;
                    self.in_word = true;
                    self.double_quoted();
                }
                '$' => self.dollar(false),
                // `<(...)`/`>(...)`: the body runs, the word is a path known at run time.
                '<' | '>' if self.peek(1) == Some('(') => {
                    self.flush();
                    self.i += 1;
                    let body = self.take_parens();
                    self.out.nested.push(body);
                    self.push_expansion(&DYNAMIC.to_string(), true);
                }
                '`' => {
                    let body = self.take_backticks();
                    self.out.nested.push(body);
                    self.push_expansion(&DYNAMIC.to_string(), false);
                }
                ' ' | '\t' | '\r' => {
                    self.flush();
                    self.i += 1;
                }
                '\n' => {
                    self.flush();
                    self.out.toks.push(Tok::Sep);
                    self.i += 1;
                    self.here_doc_bodies();
                }
                // `((expr))` is arithmetic; it is also read as nested subshells below, so
                // whichever bash takes it for, what runs is read.
                '(' if !self.in_word && self.peek(1) == Some('(') => {
                    let (body, _, _) = take_parens(self.chars, self.i);
                    if body.len() >= 2 && body.starts_with('(') && body.ends_with(')') {
                        let inner = &body[1..body.len() - 1];
                        self.out.hidden.extend(super::arith::unknown_value(inner));
                    }
                    self.out.toks.push(Tok::Sep);
                    self.i += 1;
                }
                ';' | '(' | ')' => {
                    self.flush();
                    self.out.toks.push(Tok::Sep);
                    self.i += 1;
                }
                // `{` and `}` group commands only as words of their own: `{}` (find -exec)
                // and `{a,b}` are ordinary words.
                '{' | '}'
                    if !self.in_word
                        && self.peek(1).is_none_or(|n| {
                            matches!(n, ' ' | '\t' | '\n' | ';' | '&' | '|' | ')')
                        }) =>
                {
                    self.out.toks.push(Tok::Sep);
                    self.i += 1;
                }
                '&' => {
                    self.flush();
                    if self.peek(1) == Some('>') {
                        self.out.toks.push(Tok::Write);
                        self.i += if self.peek(2) == Some('>') { 3 } else { 2 };
                    } else {
                        self.out.toks.push(Tok::Sep);
                        self.i += if self.peek(1) == Some('&') { 2 } else { 1 };
                    }
                }
                '|' => {
                    self.flush();
                    if self.peek(1) == Some('|') {
                        self.out.toks.push(Tok::Sep);
                        self.i += 2;
                    } else {
                        self.out.toks.push(Tok::Pipe);
                        self.i += if self.peek(1) == Some('&') { 2 } else { 1 };
                    }
                }
                '>' => {
                    self.drop_descriptor_word();
                    self.flush();
                    self.greater();
                }
                '<' => {
                    self.drop_descriptor_word();
                    self.flush();
                    self.less();
                }
                '*' | '?' => {
                    self.word.glob = true;
                    self.push_char(c);
                    self.i += 1;
                }
                '{' => {
                    self.word.brace = true;
                    self.push_char(c);
                    self.i += 1;
                }
                '[' => {
                    self.bracket = true;
                    self.push_char(c);
                    self.i += 1;
                }
                ']' => {
                    self.word.glob |= self.bracket;
                    self.push_char(c);
                    self.i += 1;
                }
                other => {
                    self.push_char(other);
                    self.i += 1;
                }
            }
        }
        self.flush();
        if !self.pending_docs.is_empty() {
            self.here_doc_bodies();
        }
    }

    /// `2>`, `10<`, `{fd}>`: the digits or the name belong to the redirection, not to a word.
    fn drop_descriptor_word(&mut self) {
        let t = &self.word.text;
        let is_fd = !t.is_empty() && t.chars().all(|d| d.is_ascii_digit());
        let is_named = t.len() > 2
            && t.starts_with('{')
            && t.ends_with('}')
            && t[1..t.len() - 1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if self.in_word && !self.word.quoted && !self.word.expands && (is_fd || is_named) {
            self.word = Word::default();
            self.in_word = false;
            self.bracket = false;
        }
    }

    /// Skips the descriptor after `>&` or `<&`. Duplicating the standard input (`3<&0`,
    /// `1>&0`) gives a command a descriptor that `/dev/stdout` or `/dev/fd/3` reopens for
    /// writing: without a terminal, the shell's command stream.
    fn duplicated_descriptor(&mut self) {
        let start = self.i;
        while self.peek(0).is_some_and(|d| d.is_ascii_digit() || d == '-') {
            self.i += 1;
        }
        let fd: String = self.chars[start..self.i].iter().collect();
        if fd.trim_end_matches('-').trim_start_matches('0').is_empty() && fd.starts_with('0') {
            self.out.hidden.push(
                "duplicates the standard input (the shell's command stream without a terminal) onto another descriptor".into(),
            );
        }
    }

    fn greater(&mut self) {
        if self.peek(1) == Some('&') {
            self.i += 2;
            if self.peek(0).is_some_and(|d| d.is_ascii_digit() || d == '-') {
                // `>&2`, `2>&1`, `>&-`: a descriptor is duplicated or closed; no word follows.
                self.duplicated_descriptor();
            } else {
                // `>& file` writes the file (like `&>`).
                self.out.toks.push(Tok::Write);
            }
            return;
        }
        self.out.toks.push(Tok::Write);
        self.i += 1;
        if matches!(self.peek(0), Some('>') | Some('|')) {
            self.i += 1;
        }
    }

    fn less(&mut self) {
        match (self.peek(1), self.peek(2)) {
            (Some('<'), Some('<')) => {
                self.out.toks.push(Tok::HereString);
                self.i += 3;
            }
            (Some('<'), next) => {
                let strip = next == Some('-');
                self.i += if strip { 3 } else { 2 };
                self.pending_docs.push((self.out.toks.len(), strip));
                self.out.toks.push(Tok::HereDoc {
                    body: None,
                    expands: false,
                });
            }
            // `<>` opens the file for reading and writing.
            (Some('>'), _) => {
                self.out.toks.push(Tok::Write);
                self.i += 2;
            }
            // `<&0`, `<&-`: descriptor duplication.
            (Some('&'), _) => {
                self.i += 2;
                self.duplicated_descriptor();
            }
            _ => {
                self.out.toks.push(Tok::Read);
                self.i += 1;
            }
        }
    }

    /// Text from inside quotes.
    fn quoted_text(&mut self, text: &str) {
        self.word.quoted_brace |= text.contains(['{', '}', ',']);
        self.word.text.push_str(text);
    }

    fn single_quoted(&mut self) {
        match self.chars[self.i..].iter().position(|&x| x == '\'') {
            Some(end) => {
                let text: String = self.chars[self.i..self.i + end].iter().collect();
                self.quoted_text(&text);
                self.i += end + 1;
            }
            None => {
                self.out.unbalanced = true;
                let text: String = self.chars[self.i..].iter().collect();
                self.word.text.push_str(&text);
                self.i = self.chars.len();
            }
        }
    }

    fn double_quoted(&mut self) {
        while self.i < self.chars.len() {
            match self.chars[self.i] {
                '"' => {
                    self.i += 1;
                    return;
                }
                '\\' if self.i + 1 < self.chars.len() => {
                    let n = self.chars[self.i + 1];
                    // Inside double quotes a backslash escapes only these.
                    if !matches!(n, '$' | '`' | '"' | '\\' | '\n') {
                        self.word.text.push('\\');
                    }
                    if n != '\n' {
                        self.word.text.push(n);
                    }
                    self.i += 2;
                }
                '$' => self.dollar(true),
                '`' => {
                    let body = self.take_backticks();
                    self.out.nested.push(body);
                    self.push_expansion(&DYNAMIC.to_string(), true);
                }
                other => {
                    self.word.quoted_brace |= matches!(other, '{' | '}' | ',');
                    self.word.text.push(other);
                    self.i += 1;
                }
            }
        }
        self.out.unbalanced = true;
    }

    /// `chars[i]` is `(`: the text up to the matching `)`; moves past it.
    fn take_parens(&mut self) -> String {
        let (body, next, open) = take_parens(self.chars, self.i);
        self.out.unbalanced |= open;
        self.i = next;
        body
    }

    /// `chars[i]` is a backquote: the text up to the closing one; moves past it.
    fn take_backticks(&mut self) -> String {
        let open = self.i;
        match self.chars[open + 1..].iter().position(|&c| c == '`') {
            Some(end) => {
                self.i = open + end + 2;
                self.chars[open + 1..open + 1 + end].iter().collect()
            }
            None => {
                self.out.unbalanced = true;
                self.i = self.chars.len();
                self.chars[open + 1..].iter().collect()
            }
        }
    }
}

/// `chars[open]` is `(`: the body up to the matching `)`, the index after it, and whether it
/// was left open. Quotes inside are skipped so a `)` in a string does not close it.
fn take_parens(chars: &[char], open: usize) -> (String, usize, bool) {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return (chars[open + 1..i].iter().collect(), i + 1, false);
                }
            }
            '\\' => i += 1,
            '\'' => match chars[i + 1..].iter().position(|&c| c == '\'') {
                Some(p) => i += p + 1,
                None => i = chars.len(),
            },
            _ => {}
        }
        i += 1;
    }
    (
        chars[(open + 1).min(chars.len())..].iter().collect(),
        chars.len(),
        true,
    )
}

/// Queues the body of `$(...)` for reading as commands. `$((...))` is arithmetic, not a
/// command: only substitutions inside it run (`$(( $(cmd) + 1 ))`).
fn push_substitution(body: String, nested: &mut Vec<String>, hidden: &mut Vec<String>) {
    if body.len() >= 2 && body.starts_with('(') && body.ends_with(')') {
        let inner = &body[1..body.len() - 1];
        hidden.extend(super::arith::unknown_value(inner));
        if inner.contains("$(") || inner.contains('`') {
            nested.push(inner.to_string());
        }
        return;
    }
    nested.push(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        lex(line)
            .toks
            .into_iter()
            .filter_map(|t| match t {
                Tok::Word(w) => Some(w.text),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn quoting() {
        assert_eq!(
            words(r#"grep 'a b' "c d" e\ f"#),
            ["grep", "a b", "c d", "e f"]
        );
        assert_eq!(
            words(r"$'\x72\155' $'\u0073udo' $'a\'b'"),
            ["rm", "sudo", "a'b"]
        );
        assert_eq!(words(r#""a\b" "\$x""#), [r"a\b", "$x"]);
        assert_eq!(words("r''m \"\"-rf"), ["rm", "-rf"]);
    }

    #[test]
    fn expansion_flags() {
        let l = lex("rm $R \"$R\" x$R \"x$R\" '$R' -$(echo r)f *.log [ a ]");
        let w: Vec<Word> = l
            .toks
            .into_iter()
            .filter_map(|t| match t {
                Tok::Word(w) => Some(w),
                _ => None,
            })
            .collect();
        assert!(w[0].is_literal() && w[0].option_safe());
        assert!(!w[1].option_safe() && w[1].splits);
        assert!(!w[2].option_safe() && !w[2].splits);
        assert!(!w[3].option_safe());
        assert!(w[4].option_safe() && w[4].expands);
        assert!(w[5].is_literal());
        assert!(!w[6].option_safe());
        assert!(w[7].glob && !w[8].glob && !w[10].glob);
    }

    #[test]
    fn redirections_and_here_documents() {
        let l = lex("cat <<'EOF' >x 2>&1 <>y\nrm -rf /\nEOF\necho done");
        assert!(
            matches!(&l.toks[1], Tok::HereDoc { body: Some(b), expands: false } if b == "rm -rf /\n")
        );
        assert!(l.toks.contains(&Tok::Write));
        assert_eq!(
            words("cat <<'EOF' >x\nrm -rf /\nEOF\necho done"),
            ["cat", "EOF", "x", "echo", "done"]
        );
        let l = lex("cat <<E\n$(id)\nE");
        assert_eq!(l.nested, ["id"]);
        assert!(matches!(&l.toks[1], Tok::HereDoc { expands: true, .. }));
        let l = lex("bash <<E");
        assert!(matches!(&l.toks[1], Tok::HereDoc { body: None, .. }));
        assert_eq!(words("exec {fd}>/x 3>y"), ["exec", "/x", "y"]);
    }
}
