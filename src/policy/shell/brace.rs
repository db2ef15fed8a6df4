//! Bash brace expansion (`f{,.bak}`, `{1..3}`, nested braces), bounded so that a line cannot
//! make the reader do unbounded work: past the bounds the caller counts the line as hidden.

/// Most words one brace expansion may produce before the line counts as hidden.
pub const MAX_BRACE_WORDS: usize = 256;
/// Longest word with braces that is expanded rather than counted as hidden.
const MAX_BRACE_WORD_BYTES: usize = 2048;

/// Bash brace expansion of one word: `f{,.bak}` is `f f.bak`, `{-rf,/x}` is `-rf /x`,
/// `{1..3}` is `1 2 3`, nested and repeated braces included. `${...}` is a parameter, not a
/// brace. `None` when the expansion would exceed [`MAX_BRACE_WORDS`] words.
pub fn brace_expand(word: &str) -> Option<Vec<String>> {
    // Finding braces is quadratic in the worst case (`{{{{...`): a word that long is not read.
    if word.len() > MAX_BRACE_WORD_BYTES && word.contains('{') {
        return None;
    }
    let mut out = Vec::new();
    expand_into(word, &mut out)?;
    Some(out)
}

fn expand_into(word: &str, out: &mut Vec<String>) -> Option<()> {
    let Some((open, close, parts)) = first_brace(word) else {
        if out.len() >= MAX_BRACE_WORDS {
            return None;
        }
        out.push(word.to_string());
        return Some(());
    };
    if parts.len() > MAX_BRACE_WORDS {
        return None;
    }
    let (prefix, suffix) = (&word[..open], &word[close + 1..]);
    for part in parts {
        expand_into(&format!("{prefix}{part}{suffix}"), out)?;
    }
    Some(())
}

/// The first brace expression of `word` that expands: its byte range and its alternatives.
fn first_brace(word: &str) -> Option<(usize, usize, Vec<String>)> {
    let bytes = word.as_bytes();
    let mut search = 0;
    while let Some(rel) = word[search..].find('{') {
        let open = search + rel;
        search = open + 1;
        if open > 0 && bytes[open - 1] == b'$' {
            continue;
        }
        // The matching close and the top-level commas.
        let mut depth = 0usize;
        let mut commas = Vec::new();
        let mut close = None;
        for (i, &b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                b',' if depth == 1 => commas.push(i),
                _ => {}
            }
        }
        let close = close?;
        if !commas.is_empty() {
            let mut parts = Vec::with_capacity(commas.len() + 1);
            let mut start = open + 1;
            for c in commas.into_iter().chain([close]) {
                parts.push(word[start..c].to_string());
                start = c + 1;
            }
            return Some((open, close, parts));
        }
        if let Some(parts) = sequence(&word[open + 1..close]) {
            return Some((open, close, parts));
        }
    }
    None
}

/// `a..b[..step]` with integers, or `a..b` with single letters. Longer than
/// [`MAX_BRACE_WORDS`] comes back one word too long, which the caller refuses.
fn sequence(inner: &str) -> Option<Vec<String>> {
    let mut it = inner.split("..");
    let (a, b) = (it.next()?, it.next()?);
    let step = match it.next() {
        Some(s) => s.parse::<i64>().ok()?.unsigned_abs().max(1),
        None => 1,
    };
    if it.next().is_some() {
        return None;
    }
    if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        let count = (x.abs_diff(y) / step).saturating_add(1);
        if count > MAX_BRACE_WORDS as u64 {
            return Some(vec![String::new(); MAX_BRACE_WORDS + 1]);
        }
        let step = step as i64;
        let dir = if y >= x { step } else { -step };
        return Some(
            (0..count as i64)
                .map(|k| (x + k * dir).to_string())
                .collect(),
        );
    }
    let (mut ca, mut cb) = (a.chars(), b.chars());
    match (ca.next(), ca.next(), cb.next(), cb.next()) {
        (Some(x), None, Some(y), None) if x.is_ascii_alphabetic() && y.is_ascii_alphabetic() => {
            let (lo, hi) = (x.min(y) as u8, x.max(y) as u8);
            let mut v: Vec<String> = (lo..=hi).map(|c| (c as char).to_string()).collect();
            if x > y {
                v.reverse();
            }
            Some(v)
        }
        _ => None,
    }
}
