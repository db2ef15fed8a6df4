//! Redaction and field-level encryption (AG-305 clause 4.8): what the recorder writes never
//! holds a clear secret.
//!
//! The session gate lets policy judge the clear action first, then passes every event through
//! the [`Redactor`] before it is encoded, so the hash chain, the index, exports, the API and
//! approvers only ever see the recorded form:
//!
//! - a secret found by a detector is replaced by `[REDACTED:<kind>:<length in characters>]`;
//! - a value auditors may need (a configured sensitive column, a span of a detector set to
//!   `seal`) is sealed to the auditors' public key: `[SEALED:v1:<field>:<ciphertext>]`
//!   ([`seal`]). Without an auditor key, sealing falls back to redaction.
//!
//! Terminal input and output are scanned chunk by chunk: a secret split across two chunks, or
//! typed one keystroke at a time, is not found in the raw keystrokes (the rebuilt command line
//! is). Private key blocks are followed across output chunks.

pub mod columns;
pub mod detectors;
mod events;
pub mod reveal;
pub mod rules;
pub mod seal;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use regex::Regex;
use thiserror::Error;

use self::columns::{SensitiveColumn, StatementColumns};
use self::detectors::{Builtin, Candidates};
use self::rules::{Matcher, Mode, RedactRule};
use self::seal::Sealer;
use crate::config::RedactionSettings;

#[derive(Debug, Error)]
pub enum RedactError {
    #[error("redaction.sensitive_columns: {0}")]
    Column(String),
    #[error("redaction.detectors: {0:?}: expected one of {1}")]
    Detector(String, String),
    #[error("redaction.auditor_key: {0}")]
    Key(#[from] seal::SealError),
}

#[derive(Debug, Clone)]
struct Det {
    matcher: Matcher,
    kind: String,
    mode: Mode,
}

/// The compiled redaction configuration: detectors, sensitive columns, the auditors' key.
#[derive(Debug, Clone)]
pub struct Redactor {
    enabled: bool,
    dets: Vec<Det>,
    /// The built-in detectors among `dets`, for the prefilter.
    builtins: Vec<Builtin>,
    columns: Vec<SensitiveColumn>,
    sealer: Option<Sealer>,
    /// Said at start-up: what is on, and any fallback.
    pub notes: Vec<String>,
}

/// Per-session redaction state.
#[derive(Debug, Default)]
pub struct SessionRedaction {
    pub session_id: String,
    /// Statement id -> its sensitive result columns, until its result is recorded.
    results: HashMap<u64, Arc<StatementColumns>>,
    /// (channel, direction) streams inside a private key block.
    key_open: HashSet<(u32, u8)>,
}

impl SessionRedaction {
    pub fn new(session_id: &str) -> Self {
        SessionRedaction {
            session_id: session_id.to_string(),
            ..Default::default()
        }
    }
}

static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[(?:REDACTED:[A-Za-z0-9._\-]+:\d+|SEALED:v1:[A-Za-z0-9._\-]+:[A-Za-z0-9_\-]+)\]")
        .unwrap_or_else(|e| panic!("marker pattern: {e}"))
});
static KEY_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
        .unwrap_or_else(|e| panic!("key end pattern: {e}"))
});

/// A span to replace: byte range, what stood there, how.
#[derive(Debug, Clone)]
struct Hit<'a> {
    start: usize,
    end: usize,
    kind: &'a str,
    mode: Mode,
}

fn redacted_marker(kind: &str, clear: &str) -> String {
    format!(
        "[REDACTED:{}:{}]",
        seal::field_label(kind),
        clear.chars().count()
    )
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::build(&RedactionSettings::default(), &[]).unwrap_or_else(|_| Redactor::off())
    }
}

impl Redactor {
    /// Records everything in the clear (`[redaction] enabled = false`).
    pub fn off() -> Redactor {
        Redactor {
            enabled: false,
            dets: Vec::new(),
            builtins: Vec::new(),
            columns: Vec::new(),
            sealer: None,
            notes: vec!["redaction is OFF: recordings keep secrets in the clear".into()],
        }
    }

    /// Built-in detectors that are on by default, those `settings` turns on, then the policy's
    /// `[[redact]]` rules (which may turn a built-in on or switch it to sealing).
    pub fn build(
        settings: &RedactionSettings,
        rules: &[RedactRule],
    ) -> Result<Redactor, RedactError> {
        if !settings.enabled {
            return Ok(Redactor::off());
        }
        let mut dets: Vec<Det> = detectors::ALL
            .iter()
            .filter(|b| b.on_by_default())
            .map(|b| Det {
                matcher: Matcher::Builtin(*b),
                kind: b.kind().into(),
                mode: Mode::Redact,
            })
            .collect();
        let enable = |b: Builtin, mode: Option<Mode>, dets: &mut Vec<Det>| match dets
            .iter_mut()
            .find(|d| matches!(d.matcher, Matcher::Builtin(x) if x == b))
        {
            Some(d) => {
                if let Some(m) = mode {
                    d.mode = m;
                }
            }
            None => dets.push(Det {
                matcher: Matcher::Builtin(b),
                kind: b.kind().into(),
                mode: mode.unwrap_or(Mode::Redact),
            }),
        };
        for name in &settings.detectors {
            let b = Builtin::parse(name).ok_or_else(|| {
                RedactError::Detector(
                    name.clone(),
                    detectors::ALL
                        .iter()
                        .map(|b| b.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })?;
            enable(b, None, &mut dets);
        }
        for r in rules {
            match &r.matcher {
                Matcher::Builtin(b) => enable(*b, Some(r.mode), &mut dets),
                Matcher::Pattern(_) => dets.push(Det {
                    matcher: r.matcher.clone(),
                    kind: r.kind.clone(),
                    mode: r.mode,
                }),
            }
        }
        let columns = settings
            .sensitive_columns
            .iter()
            .map(|c| SensitiveColumn::parse(c).map_err(RedactError::Column))
            .collect::<Result<Vec<_>, _>>()?;
        let sealer = settings
            .auditor_key
            .as_deref()
            .map(Sealer::load)
            .transpose()?;
        let mut notes = vec![format!(
            "redaction: {} detectors ({}), {} sensitive columns",
            dets.len(),
            dets.iter()
                .map(|d| match &d.matcher {
                    Matcher::Builtin(b) => format!("{}/{}", b.name(), d.mode.as_str()),
                    Matcher::Pattern(_) => format!("{}/{}", d.kind, d.mode.as_str()),
                })
                .collect::<Vec<_>>()
                .join(", "),
            columns.len()
        )];
        let wants_seal = !columns.is_empty() || dets.iter().any(|d| d.mode == Mode::Seal);
        match &sealer {
            Some(s) => notes.push(format!("sealing to auditor key {}", s.public_hex())),
            None if wants_seal => notes.push(
                "no [redaction] auditor_key: sensitive columns and `seal` detectors are REDACTED instead of sealed (nobody can reveal them)"
                    .into(),
            ),
            None => {}
        }
        let builtins = dets
            .iter()
            .filter_map(|d| match d.matcher {
                Matcher::Builtin(b) => Some(b),
                Matcher::Pattern(_) => None,
            })
            .collect();
        Ok(Redactor {
            enabled: true,
            builtins,
            dets,
            columns,
            sealer,
            notes,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn sealing(&self) -> bool {
        self.sealer.is_some()
    }

    /// The marker for a clear value: sealed when asked and possible, else redacted. Never
    /// returns the clear value.
    fn marker(&self, session: &str, kind: &str, mode: Mode, clear: &str) -> String {
        if mode == Mode::Seal
            && let Some(s) = &self.sealer
        {
            match s.seal(session, kind, clear.as_bytes()) {
                Ok(m) => return m,
                Err(e) => {
                    tracing::error!(error = %e, "sealing failed; the value is redacted instead")
                }
            }
        }
        redacted_marker(kind, clear)
    }

    fn seal_bytes(&self, session: &str, field: &str, clear: &[u8]) -> String {
        if let Some(s) = &self.sealer {
            match s.seal(session, field, clear) {
                Ok(m) => return m,
                Err(e) => {
                    tracing::error!(error = %e, "sealing failed; the value is redacted instead")
                }
            }
        }
        format!(
            "[REDACTED:{}:{}]",
            seal::field_label(field),
            String::from_utf8_lossy(clear).chars().count()
        )
    }

    fn find<'a>(&'a self, text: &str, hits: &mut Vec<Hit<'a>>) {
        // One pass decides which built-in detectors may match at all (`Candidates`).
        let candidates = Candidates::of(text, &self.builtins);
        let mut spans = Vec::new();
        for d in &self.dets {
            spans.clear();
            match &d.matcher {
                Matcher::Builtin(b) if candidates.has(*b) => b.find_candidate(text, &mut spans),
                Matcher::Builtin(_) => {}
                Matcher::Pattern(re) => detectors::find_regex(re, text, &mut spans),
            }
            hits.extend(spans.iter().map(|&(start, end)| Hit {
                start,
                end,
                kind: &d.kind,
                mode: d.mode,
            }));
        }
    }

    /// [`Self::find`] without the shared prefilter: each detector asks its own test, as
    /// before it (kept to check that both find the same).
    #[cfg(test)]
    fn find_each<'a>(&'a self, text: &str, hits: &mut Vec<Hit<'a>>) {
        let mut spans = Vec::new();
        for d in &self.dets {
            spans.clear();
            match &d.matcher {
                Matcher::Builtin(b) => b.find(text, &mut spans),
                Matcher::Pattern(re) => detectors::find_regex(re, text, &mut spans),
            }
            hits.extend(spans.iter().map(|&(start, end)| Hit {
                start,
                end,
                kind: &d.kind,
                mode: d.mode,
            }));
        }
    }

    /// Replaces `hits` in `text`. Overlapping hits merge (redaction wins over sealing), and
    /// markers already in the text are left alone, so redacting twice changes nothing.
    fn apply(&self, session: &str, text: &str, mut hits: Vec<Hit<'_>>) -> Option<String> {
        if hits.is_empty() {
            return None;
        }
        if text.contains("[REDACTED:") || text.contains("[SEALED:v1:") {
            let markers: Vec<(usize, usize)> = MARKER
                .find_iter(text)
                .map(|m| (m.start(), m.end()))
                .collect();
            hits.retain(|h| !markers.iter().any(|&(s, e)| h.start < e && s < h.end));
            if hits.is_empty() {
                return None;
            }
        }
        hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
        let mut merged: Vec<Hit<'_>> = Vec::with_capacity(hits.len());
        for h in hits {
            match merged.last_mut() {
                Some(last) if h.start < last.end => {
                    last.end = last.end.max(h.end);
                    if h.mode == Mode::Redact {
                        last.mode = Mode::Redact;
                    }
                }
                _ => merged.push(h),
            }
        }
        let mut out = String::with_capacity(text.len() + 32 * merged.len());
        let mut at = 0;
        for h in merged {
            let (s, e) = (floor_char(text, h.start), ceil_char(text, h.end));
            if s < at {
                continue;
            }
            out.push_str(&text[at..s]);
            out.push_str(&self.marker(session, h.kind, h.mode, &text[s..e]));
            at = e;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    /// The kind of the first secret whose redaction would hide more than a value: a span that
    /// crosses a line, holds a statement or command separator or a comment delimiter, or
    /// runs to the end of the text with white space in it (a private key with no END line
    /// swallows everything after it). Whoever judges the action would not see that part, and
    /// the record would not hold it, so such an action is held whole instead.
    pub fn hides_code(&self, text: &str) -> Option<String> {
        if !self.enabled || text.is_empty() {
            return None;
        }
        let mut hits = Vec::new();
        self.find(text, &mut hits);
        hides_in(text, &hits)
    }

    /// `text` with every detected secret replaced; borrowed when nothing was found.
    pub fn text<'t>(&self, session: &str, text: &'t str) -> Cow<'t, str> {
        if !self.enabled || text.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut hits = Vec::new();
        self.find(text, &mut hits);
        match self.apply(session, text, hits) {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(text),
        }
    }

    fn text_opt(&self, session: &str, text: &str) -> Option<String> {
        match self.text(session, text) {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        }
    }

    /// [`Self::text_opt`] and [`Self::hides_code`] from one search of the text.
    fn text_checked(&self, session: &str, text: &str) -> (Option<String>, Option<String>) {
        if !self.enabled || text.is_empty() {
            return (None, None);
        }
        let mut hits = Vec::new();
        self.find(text, &mut hits);
        let hides = hides_in(text, &hits);
        (self.apply(session, text, hits), hides)
    }

    /// A terminal chunk. `key_open` says the stream is inside a private key block (and is
    /// updated), so the lines of a key printed over many chunks are all redacted.
    fn stream_text(&self, session: &str, text: &str, key_open: &mut bool) -> Option<String> {
        let mut prefix_end = 0;
        if *key_open {
            match KEY_END.find(text) {
                Some(m) => {
                    prefix_end = m.end();
                    *key_open = false;
                }
                None => return Some(redacted_marker("private-key", text)),
            }
        }
        let rest = &text[prefix_end..];
        let mut hits = Vec::new();
        self.find(rest, &mut hits);
        if hits.iter().any(|h| {
            h.kind == "private-key"
                && h.end == rest.len()
                && !KEY_END.is_match(&rest[h.start..h.end])
        }) {
            *key_open = true;
        }
        let body = self.apply(session, rest, hits);
        if prefix_end == 0 {
            return body;
        }
        let mut out = redacted_marker("private-key", &text[..prefix_end]);
        out.push_str(body.as_deref().unwrap_or(rest));
        Some(out)
    }

    fn stream_bytes(&self, session: &str, data: &Bytes, key_open: &mut bool) -> Option<Bytes> {
        if let Ok(text) = std::str::from_utf8(data) {
            return self.stream_text(session, text, key_open).map(Bytes::from);
        }
        // Binary or cut inside a character: scan the valid stretches, keep the rest as is.
        let mut out = Vec::with_capacity(data.len());
        let mut changed = false;
        for chunk in data.utf8_chunks() {
            match self.stream_text(session, chunk.valid(), key_open) {
                Some(s) => {
                    changed = true;
                    out.extend_from_slice(s.as_bytes());
                }
                None => out.extend_from_slice(chunk.valid().as_bytes()),
            }
            out.extend_from_slice(chunk.invalid());
        }
        changed.then(|| Bytes::from(out))
    }
}

/// The kind of the first of `hits` (detector spans in `text`) whose redaction would hide more
/// than a value (see [`Redactor::hides_code`]).
fn hides_in(text: &str, hits: &[Hit<'_>]) -> Option<String> {
    hits.iter().find_map(|h| {
        let (s, e) = (floor_char(text, h.start), ceil_char(text, h.end));
        let span = &text[s..e];
        let separators = ["\n", "\r", ";", "|", "&", "`", "$(", "--", "/*", "*/"];
        let risky = separators.iter().any(|c| span.contains(c))
            || (e == text.len() && span.chars().any(char::is_whitespace));
        risky.then(|| h.kind.to_string())
    })
}

fn floor_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The process's log filter with the libraries that echo SQL text (statements with their
/// literals, bound parameter values, the issued roles' passwords) held at `info`, whatever the
/// operator asked for: a debug log must not become a copy of the secrets redaction removes.
pub fn log_filter(base: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    [
        "sqlparser=info",
        "tokio_postgres=info",
        "postgres_protocol=info",
    ]
    .iter()
    .filter_map(|d| d.parse().ok())
    .fold(base, |f, d| f.add_directive(d))
}

#[cfg(test)]
mod prefilter_tests;
