//! What follows a `$`: command substitution, `${...}` parameters (whose defaults may run
//! commands), `$'...'` ANSI-C quoting decoded as bash does, `$"..."`, `$NAME` and `$1`.

use super::{DYNAMIC, Lexer, push_substitution};

impl Lexer<'_> {
    /// At a `$`: a substitution, a parameter, ANSI-C or locale quoting, or a plain dollar.
    pub(super) fn dollar(&mut self, in_double: bool) {
        match self.peek(1) {
            Some('(') => {
                self.i += 1;
                let body = self.take_parens();
                push_substitution(body, &mut self.out.nested, &mut self.out.hidden);
                self.push_expansion(&DYNAMIC.to_string(), in_double);
            }
            Some('{') => {
                let start = self.i;
                let mut depth = 0usize;
                let mut end = None;
                for (k, &c) in self.chars.iter().enumerate().skip(self.i + 1) {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(k);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let end = end.unwrap_or_else(|| {
                    self.out.unbalanced = true;
                    self.chars.len().saturating_sub(1)
                });
                let text: String = self.chars[start..=end.min(self.chars.len() - 1)]
                    .iter()
                    .collect();
                // `${X:-$(cmd)}`: a default value may run a command.
                let inner: String = self.chars[(start + 2).min(end)..end].iter().collect();
                self.out
                    .hidden
                    .extend(super::super::arith::parameter(&inner));
                if inner.contains("$(") || inner.contains('`') {
                    self.out.nested.push(inner);
                }
                self.push_expansion(&text, in_double);
                self.i = end + 1;
            }
            // `$[expr]`: the old spelling of `$((expr))`.
            Some('[') => {
                let end = self.chars[self.i..].iter().position(|&c| c == ']');
                let end = end.map_or(self.chars.len(), |e| self.i + e);
                let inner: String = self.chars[(self.i + 2).min(end)..end].iter().collect();
                self.out
                    .hidden
                    .extend(super::super::arith::unknown_value(&inner));
                if inner.contains("$(") || inner.contains('`') {
                    self.out.nested.push(inner);
                }
                self.push_expansion(&DYNAMIC.to_string(), in_double);
                self.i = (end + 1).min(self.chars.len());
            }
            Some('\'') if !in_double => {
                self.i += 2;
                self.word.quoted = true;
                self.in_word = true;
                self.ansi_c_quoted();
            }
            Some('"') if !in_double => {
                self.i += 2;
                self.word.quoted = true;
                self.in_word = true;
                self.double_quoted();
            }
            Some(n) if n.is_ascii_alphabetic() || n == '_' => {
                let start = self.i;
                self.i += 1;
                while self
                    .peek(0)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.i += 1;
                }
                let text: String = self.chars[start..self.i].iter().collect();
                self.push_expansion(&text, in_double);
            }
            Some(n) if n.is_ascii_digit() || "@*#?$!-".contains(n) => {
                let text: String = self.chars[self.i..self.i + 2].iter().collect();
                self.i += 2;
                self.push_expansion(&text, in_double);
            }
            _ => {
                if in_double {
                    self.word.text.push('$');
                } else {
                    self.push_char('$');
                }
                self.i += 1;
            }
        }
    }

    /// `$'...'`: backslash escapes decoded as bash does.
    fn ansi_c_quoted(&mut self) {
        while self.i < self.chars.len() {
            let c = self.chars[self.i];
            self.i += 1;
            match c {
                '\'' => return,
                '\\' => {
                    let Some(e) = self.peek(0) else { break };
                    self.i += 1;
                    let decoded = match e {
                        'a' => Some('\u{7}'),
                        'b' => Some('\u{8}'),
                        'e' | 'E' => Some('\u{1b}'),
                        'f' => Some('\u{c}'),
                        'n' => Some('\n'),
                        'r' => Some('\r'),
                        't' => Some('\t'),
                        'v' => Some('\u{b}'),
                        '\\' | '\'' | '"' | '?' => Some(e),
                        'x' => self.hex_escape(2),
                        'u' => self.hex_escape(4),
                        'U' => self.hex_escape(8),
                        'c' => {
                            let ctl = self.peek(0).map(|x| ((x as u32) & 0x1f) as u8 as char);
                            self.i += 1;
                            ctl
                        }
                        '0'..='7' => {
                            let mut v = e.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                match self.peek(0).and_then(|d| d.to_digit(8)) {
                                    Some(d) => {
                                        v = v * 8 + d;
                                        self.i += 1;
                                    }
                                    None => break,
                                }
                            }
                            char::from_u32(v & 0xff)
                        }
                        other => {
                            self.word.text.push('\\');
                            Some(other)
                        }
                    };
                    if let Some(d) = decoded {
                        self.word.quoted_brace |= matches!(d, '{' | '}' | ',');
                        self.word.text.push(d);
                    }
                }
                other => {
                    self.word.quoted_brace |= matches!(other, '{' | '}' | ',');
                    self.word.text.push(other)
                }
            }
        }
        self.out.unbalanced = true;
    }

    fn hex_escape(&mut self, max: usize) -> Option<char> {
        let mut v = 0u32;
        let mut n = 0;
        while n < max {
            match self.peek(0).and_then(|d| d.to_digit(16)) {
                Some(d) => {
                    v = v * 16 + d;
                    self.i += 1;
                    n += 1;
                }
                None => break,
            }
        }
        if n == 0 {
            self.word.text.push('\\');
            return None;
        }
        char::from_u32(v)
    }
}
