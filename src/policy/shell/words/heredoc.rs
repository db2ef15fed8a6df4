//! Here-document bodies: the lines after the one that opened them, up to the delimiter
//! (`<<-` strips leading tabs). An unquoted delimiter leaves the body subject to expansion, so
//! its substitutions run and are read as commands.

use super::{Lexer, Tok, push_substitution, take_parens};

impl Lexer<'_> {
    /// After a newline: the bodies of the here-documents opened on the line just ended.
    pub(super) fn here_doc_bodies(&mut self) {
        for (at, strip) in std::mem::take(&mut self.pending_docs) {
            let delim = match self.out.toks.get(at + 1) {
                Some(Tok::Word(w)) => w.clone(),
                _ => {
                    self.out.unbalanced = true;
                    continue;
                }
            };
            let mut body = String::new();
            let mut found = false;
            while self.i < self.chars.len() {
                let end = self.chars[self.i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(self.chars.len(), |p| self.i + p);
                let raw: String = self.chars[self.i..end].iter().collect();
                self.i = (end + 1).min(self.chars.len());
                let line = if strip {
                    raw.trim_start_matches('\t')
                } else {
                    &raw
                };
                if line == delim.text {
                    found = true;
                    break;
                }
                body.push_str(line);
                body.push('\n');
            }
            if !found {
                self.i = self.chars.len();
            }
            let expands = !delim.quoted && self.doc_expansions(&body);
            self.out.toks[at] = Tok::HereDoc {
                body: found.then_some(body),
                expands,
            };
        }
    }

    /// Substitutions in an unquoted here-document run: queue them; true when the body has any
    /// expansion.
    fn doc_expansions(&mut self, body: &str) -> bool {
        let sub = lex_doc(body);
        let any = sub.1;
        self.out.nested.extend(sub.0);
        self.out.unbalanced |= sub.2;
        self.out.hidden.extend(sub.3);
        any
    }
}

/// The substitutions of an unquoted here-document body, whether it expands anything, and
/// whether a substitution was left open, and why an expansion in it evaluates a value as code.
fn lex_doc(body: &str) -> (Vec<String>, bool, bool, Vec<String>) {
    let chars: Vec<char> = body.chars().collect();
    let mut nested = Vec::new();
    let mut hidden = Vec::new();
    let mut expands = false;
    let mut open = false;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '$' if chars.get(i + 1) == Some(&'(') => {
                let (b, next, o) = take_parens(&chars, i + 1);
                push_substitution(b, &mut nested, &mut hidden);
                expands = true;
                open |= o;
                i = next;
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                let end = chars[i..].iter().position(|&c| c == '}');
                let inner: String = chars
                    [(i + 2).min(chars.len())..end.map_or(chars.len(), |e| i + e)]
                    .iter()
                    .collect();
                hidden.extend(super::super::arith::parameter(&inner));
                expands = true;
                i += 1;
            }
            '$' if chars
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphanumeric() || "_{@*#?$!-".contains(*c)) =>
            {
                expands = true;
                i += 1;
            }
            '`' => match chars[i + 1..].iter().position(|&c| c == '`') {
                Some(end) => {
                    nested.push(chars[i + 1..i + 1 + end].iter().collect());
                    expands = true;
                    i += end + 2;
                }
                None => {
                    open = true;
                    i = chars.len();
                }
            },
            _ => i += 1,
        }
    }
    (nested, expands, open, hidden)
}
