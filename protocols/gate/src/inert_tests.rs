use super::*;

#[test]
fn terminal_escapes_are_shown_not_obeyed() {
    // The repaint from the issue: the line is erased and rewritten on screen.
    let sql = "DELETE FROM accounts --\x1b[G\x1b[2KDELETE FROM accounts_staging";
    assert_eq!(
        line(sql),
        "DELETE FROM accounts --\\x1b[G\\x1b[2KDELETE FROM accounts_staging"
    );
    // OSC 52 (clipboard) and OSC 2 (title), ended by BEL and by ST.
    assert_eq!(
        line("x\x1b]52;c;Y3VybA==\x07y\x1b]2;t\x1b\\"),
        "x\\x1b]52;c;Y3VybA==\\x07y\\x1b]2;t\\x1b\\"
    );
    // 8-bit CSI and DEL.
    assert_eq!(line("a\u{9b}2Kb\x7f"), "a<U+009B>2Kb\\x7f");
}

#[test]
fn newlines_are_layout_only_when_the_caller_keeps_them() {
    let s = "select 1;\n\tselect 2;\r\nselect 3";
    assert_eq!(line(s), "select 1;\\n\\tselect 2;\\r\\nselect 3");
    assert_eq!(text(s), "select 1;\n\tselect 2;\\r\nselect 3");
    // A forged log line stays on its own line.
    assert_eq!(
        Line("bob\n2026-12-07 INFO session opened privilege=\"break-glass\"").to_string(),
        "bob\\n2026-12-07 INFO session opened privilege=\"break-glass\""
    );
}

#[test]
fn bidi_and_invisible_characters_are_marked_with_their_code_point() {
    // Trojan Source: the override makes "WHERE id=42" appear in a statement without one.
    let s = "DELETE FROM accounts /*\u{202e} } 24=di EREHW \u{2066}*/";
    assert_eq!(
        line(s),
        "DELETE FROM accounts /*<U+202E> } 24=di EREHW <U+2066>*/"
    );
    for c in [
        '\u{200b}',
        '\u{200c}',
        '\u{200d}',
        '\u{200e}',
        '\u{200f}',
        '\u{061c}',
        '\u{2060}',
        '\u{2064}',
        '\u{feff}',
        '\u{00ad}',
        '\u{180e}',
        '\u{115f}',
        '\u{1160}',
        '\u{3164}',
        '\u{ffa0}',
        '\u{2028}',
        '\u{2029}',
        '\u{202a}',
        '\u{2069}',
        '\u{e0041}',
        '\u{e007f}',
    ] {
        let shown = line(&c.to_string()).into_owned();
        assert_eq!(shown, format!("<U+{:04X}>", c as u32), "{c:?}");
    }
}

#[test]
fn spaces_that_are_letters_to_the_target_are_shown() {
    // Round 3: PostgreSQL reads U+2002 as part of an identifier, so this DELETE has the alias
    // `x WHERE id IS NULL` and no WHERE; it read as deleting nothing and deleted every row.
    let s = "DELETE FROM accounts x\u{2002}WHERE\u{2002}id\u{2002}IS\u{2002}NULL";
    assert_eq!(
        line(s),
        "DELETE FROM accounts x<U+2002>WHERE<U+2002>id<U+2002>IS<U+2002>NULL"
    );
    for c in [
        '\u{a0}', '\u{1680}', '\u{2000}', '\u{200a}', '\u{202f}', '\u{205f}', '\u{3000}',
    ] {
        assert_eq!(line(&c.to_string()), format!("<U+{:04X}>", c as u32));
    }
}

#[test]
fn lookalike_letters_in_ascii_words_are_shown() {
    // Cyrillic а (U+0430) and Cyrillic ԝ (U+051D) inside ASCII words.
    assert_eq!(
        line("DELETE FROM \u{430}ccounts \u{51d}here RETURNING 1"),
        "DELETE FROM <U+0430>ccounts <U+051D>here RETURNING 1"
    );
    // Greek omicron in a function name, a quoted name, fullwidth and mathematical letters.
    assert_eq!(
        line("select pg_sle\u{3bf}p(1)"),
        "select pg_sle<U+03BF>p(1)"
    );
    assert_eq!(line("\"t\u{435}st\""), "\"t<U+0435>st\"");
    assert_eq!(line("\u{ff24}ROP"), "<U+FF24>ROP");
    assert_eq!(line("\u{1d41d}rop"), "<U+1D41D>rop");
    // Whole words of one script, and Latin letters with accents, are text, not disguise.
    for s in [
        "-- удалить старые строки, Ελληνικά",
        "SELECT 'Zoë', Müller, café, ǅ",
        "таблица_1 AND x",
    ] {
        assert!(matches!(line(s), Cow::Borrowed(_)), "{s}");
    }
}

#[test]
fn combining_marks_that_hide_or_change_text_are_shown() {
    // A strike-through DELETE, a not-equal that is `=`, and a stack that spills over lines.
    assert_eq!(line("D\u{336}E"), "D<U+0336>E");
    assert_eq!(line("id =\u{338} 42"), "id =<U+0338> 42");
    assert_eq!(
        line("z\u{300}\u{301}\u{302}\u{303}"),
        "z\u{300}\u{301}<U+0302><U+0303>"
    );
    // A mark at the start or on a token sits on nothing a person can see.
    assert_eq!(line("\u{301}a"), "<U+0301>a");
    assert_eq!(line("\x1b\u{301}"), "\\x1b<U+0301>");
    // Decomposed accents, Vietnamese (two marks) and Devanagari stay as they are.
    for s in ["Zoe\u{308}", "Vie\u{323}\u{302}t", "नमस्ते"] {
        assert!(matches!(line(s), Cow::Borrowed(_)), "{s}");
    }
}

#[test]
fn ordinary_text_is_borrowed_unchanged() {
    for s in [
        "SELECT * FROM \"Kunden\" WHERE name = 'Zoë' -- ünïcödé, 中文, emoji 🎉",
        "rm -rf /tmp/x && echo \\x1b <U+202E>",
        "",
    ] {
        assert!(matches!(line(s), Cow::Borrowed(_)), "{s}");
        assert!(matches!(text(s), Cow::Borrowed(_)), "{s}");
    }
}

#[test]
fn any_display_is_escaped() {
    let e = std::io::Error::other("bad user \"a\x1b]52;c;eA==\x07\nb\"");
    assert_eq!(
        LineOf(&e).to_string(),
        "bad user \"a\\x1b]52;c;eA==\\x07\\nb\""
    );
}

/// xorshift64*: a deterministic generator, so a failing case can be reproduced from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Random strings biased towards what matters here: controls, escapes, bidi and invisible
    /// characters, the token characters `\` and `<`, and any other scalar value.
    fn string(&mut self) -> String {
        const SPECIAL: &[char] = &[
            '\x1b',
            '\n',
            '\r',
            '\t',
            '\0',
            '\x07',
            '\x7f',
            '\u{85}',
            '\u{9b}',
            '\u{9d}',
            '\u{202e}',
            '\u{2066}',
            '\u{200b}',
            '\u{feff}',
            '\u{2028}',
            '\u{e0020}',
            '\u{2002}',
            '\u{a0}',
            '\u{430}',
            '\u{51d}',
            '\u{301}',
            '\u{336}',
            '\\',
            '<',
            'U',
            '+',
            '>',
            'x',
            '[',
            ']',
            ';',
        ];
        let len = self.below(40);
        (0..len)
            .map(|_| match self.below(4) {
                0 => SPECIAL[self.below(SPECIAL.len() as u64) as usize],
                1 => char::from(0x20 + self.below(0x5f) as u8),
                2 => char::from_u32(self.below(0x3000) as u32).unwrap_or('?'),
                _ => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('?'),
            })
            .collect()
    }
}

/// Reads the tokens back: only valid for inputs with no `\` or `<` of their own, where the
/// tokens are unambiguous.
fn decode(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix('\\') {
            let (c, used) = match r.as_bytes().first() {
                Some(b'n') => ('\n', 1),
                Some(b't') => ('\t', 1),
                Some(b'r') => ('\r', 1),
                Some(b'x') => (
                    char::from(u8::from_str_radix(&r[1..3], 16).expect("hex")),
                    3,
                ),
                other => panic!("unknown token \\{other:?} in {s:?}"),
            };
            out.push(c);
            rest = &r[used..];
        } else if let Some(r) = rest.strip_prefix("<U+") {
            let end = r.find('>').expect("closing >");
            let v = u32::from_str_radix(&r[..end], 16).expect("hex code point");
            out.push(char::from_u32(v).expect("scalar"));
            rest = &r[end + 1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[test]
fn property_random_strings_come_out_inert_complete_and_stable() {
    let seed = std::env::var("INERT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1e57_u64);
    let mut rng = Rng(seed | 1);
    for case in 0..20_000 {
        let s = rng.string();
        for keep in [Keep::Nothing, Keep::Lines] {
            let shown = inert(&s, keep);
            let ctx = || format!("seed {seed} case {case} {keep:?}: {s:?} -> {shown:?}");
            // Nothing a terminal obeys, nothing invisible, survives.
            assert!(!shown.chars().any(|c| needs_escape(c, keep)), "{}", ctx());
            if keep == Keep::Nothing {
                assert!(!shown.contains(['\n', '\r', '\x1b']), "{}", ctx());
            } else {
                assert_eq!(
                    shown.matches('\n').count(),
                    s.matches('\n').count(),
                    "{}",
                    ctx()
                );
            }
            // Never truncated; stable once escaped twice (a C0 token's `x1b` can make the
            // next word look mixed on the second pass, never on the third).
            assert!(shown.len() >= s.len(), "{}", ctx());
            let twice = inert(&shown, keep).into_owned();
            assert_eq!(inert(&twice, keep), twice, "{}", ctx());
            // The Display wrappers and the function agree.
            let displayed = match keep {
                Keep::Nothing => Line(&s).to_string(),
                Keep::Lines => Text(&s).to_string(),
            };
            assert_eq!(displayed, shown, "{}", ctx());
            // Nothing dropped, nothing reordered: the tokens read back to the input.
            let plain: String = s.chars().filter(|c| *c != '\\' && *c != '<').collect();
            assert_eq!(decode(&inert(&plain, keep)), plain, "{}", ctx());
        }
    }
}
