//! One pass over a text deciding which built-in detectors may match it at all.
//!
//! Each detector's `may_match` is a vectorised search of its own, and a text with none of
//! their words was read once per detector, twice per action (the check that redaction hides
//! no code, then the redaction): for a 12 MB statement that was most of what redaction cost
//! (issue 18: a fifth of proctor's samples while four sessions sent such statements). Here
//! the detectors' words are looked for together with one Aho-Corasick automaton, ASCII
//! case-insensitive (a superset of each `may_match`: `PRIVATE KEY` and `AIza` are
//! case-sensitive there), and only the detectors a candidate leaves are run, each through its
//! own exact test and search, so the spans found are the same as without the prefilter.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use super::Builtin;

/// The words of the word-triggered detectors, and whom each word wakes.
const WORDS: &[(&str, &[Builtin])] = &[
    (
        "passw",
        &[Builtin::SqlPassword, Builtin::PasswordAssignment],
    ),
    (
        "mysql_pwd",
        &[Builtin::SqlPassword, Builtin::PasswordAssignment],
    ),
    ("://", &[Builtin::UriPassword]),
    ("authorization", &[Builtin::Authorization]),
    ("key", &[Builtin::ApiKeyHeader]),
    ("token", &[Builtin::ApiKeyHeader]),
    ("bearer", &[Builtin::BearerToken]),
    ("private key", &[Builtin::PrivateKey]),
    ("secret", &[Builtin::AwsSecretKey]),
    ("aiza", &[Builtin::GcpApiKey]),
    ("ya29.", &[Builtin::GcpAccessToken]),
];

/// Matches of words already seen before the pass gives up and each detector asks its own
/// test: a text made of one word over and over (`keykeykey...`) would otherwise cost a step
/// per occurrence, more than the per-detector searches it replaces.
const REPEATS: usize = 256;

static AUTOMATON: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(WORDS.iter().map(|(w, _)| w))
        .unwrap_or_else(|e| panic!("detector words: {e}"))
});

fn bit(b: Builtin) -> u32 {
    1 << (b as u32)
}

/// Detectors that may match a text; the others cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidates(u32);

impl Candidates {
    /// The detectors of `wanted` that may match `text`: one pass for the words, then the
    /// character tests (`@`, digits, `AK...`) of those wanted that have them.
    pub fn of(text: &str, wanted: &[Builtin]) -> Candidates {
        let b = text.as_bytes();
        let mut words = 0u32;
        let all_words = (1u32 << WORDS.len()) - 1;
        let mut repeats = 0usize;
        let mut gave_up = false;
        for m in AUTOMATON.find_overlapping_iter(b) {
            let w = 1u32 << m.pattern().as_u32();
            if words & w != 0 {
                repeats += 1;
                if repeats >= REPEATS {
                    gave_up = true;
                    break;
                }
            }
            words |= w;
            if words == all_words {
                break;
            }
        }
        let mut set = 0u32;
        for (i, (_, wakes)) in WORDS.iter().enumerate() {
            if words & (1 << i) != 0 {
                for w in *wakes {
                    set |= bit(*w);
                }
            }
        }
        let mut out = 0u32;
        for &d in wanted {
            let may = match d {
                // Words seen over and over: each detector asks its own test, as without
                // the prefilter.
                _ if gave_up => d.may_match(text),
                // Word and character: both must be there.
                Builtin::UriPassword => set & bit(d) != 0 && b.contains(&b'@'),
                Builtin::AwsAccessKey
                | Builtin::CardNumber
                | Builtin::UsSsn
                | Builtin::UkNino
                | Builtin::Email => d.may_match(text),
                _ => set & bit(d) != 0,
            };
            if may {
                out |= bit(d);
            }
        }
        Candidates(out)
    }

    pub fn has(self, b: Builtin) -> bool {
        self.0 & bit(b) != 0
    }
}
