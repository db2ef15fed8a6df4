//! A per-session filter of the text an auditor's search reads (statements, exec commands,
//! command lines), so a search skips the sealed sessions that cannot match instead of reading
//! their recordings (issue 15).
//!
//! It is a bitset of the byte trigrams of the lowercased texts: a session whose filter lacks a
//! trigram of the lowercased needle cannot contain the needle, because a substring's trigrams
//! are all trigrams of the text that contains it. It never says "matches": a session that may
//! match is still read, so the answer is exactly what reading every session would give.
//!
//! The search builds it as a by-product, on its own thread and priority, when it has read a
//! sealed session to the end; nothing is added to the write path. It is keyed to the session's
//! last chain hash, so a filter never describes other records than the session's sealed ones.
//! Like the rest of the index it is derived, not evidence: a lost or stale filter only costs a
//! read.

use std::collections::HashSet;

use super::{Index, IndexError, SessionMeta, parse_session_id};

const TREE: &str = "text_filter";
/// Bits per distinct trigram: with one hash, about one trigram in 16 that the session lacks
/// is taken for present, so a needle of n bytes is missed by roughly 16^-(n-2) of the sessions
/// that lack it.
const BITS_PER_TRIGRAM: usize = 16;
const MIN_BITS: usize = 1 << 12;
const MAX_BITS: usize = 1 << 23;

/// The trigrams of texts seen so far, while a search reads a session.
#[derive(Default)]
pub struct TrigramSet(HashSet<u32>);

impl TrigramSet {
    /// Adds the trigrams of one (already lowercased) text. Trigrams never span two texts.
    pub fn add(&mut self, lowered: &str) {
        self.0.extend(trigrams(lowered.as_bytes()));
    }
}

fn trigrams(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.windows(3)
        .map(|w| (u32::from(w[0]) << 16) | (u32::from(w[1]) << 8) | u32::from(w[2]))
}

/// Bit of `trigram` in a filter of `2^log2` bits (a fixed hash: filters outlive the process).
fn bit(trigram: u32, log2: u32) -> usize {
    (u64::from(trigram).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - log2)) as usize
}

/// A session's filter: `log2` of its size in bits, then the bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFilter {
    log2: u32,
    bits: Vec<u8>,
}

impl TextFilter {
    pub fn build(set: &TrigramSet) -> TextFilter {
        let want = (set.0.len() * BITS_PER_TRIGRAM).clamp(MIN_BITS, MAX_BITS);
        let log2 = want.next_power_of_two().trailing_zeros();
        let mut bits = vec![0u8; (1usize << log2) / 8];
        for &t in &set.0 {
            let i = bit(t, log2);
            bits[i / 8] |= 1 << (i % 8);
        }
        TextFilter { log2, bits }
    }

    /// False only when no text of the session can contain `lowered_needle`. Needles shorter
    /// than a trigram are never excluded.
    pub fn may_contain(&self, lowered_needle: &str) -> bool {
        trigrams(lowered_needle.as_bytes()).all(|t| {
            let i = bit(t, self.log2);
            self.bits[i / 8] & (1 << (i % 8)) != 0
        })
    }

    fn to_bytes(&self, last_hash: &str) -> Vec<u8> {
        let hash = last_hash.as_bytes();
        let mut out = Vec::with_capacity(2 + hash.len() + self.bits.len());
        out.push(hash.len() as u8);
        out.extend_from_slice(hash);
        out.push(self.log2 as u8);
        out.extend_from_slice(&self.bits);
        out
    }

    /// The filter stored for a session whose last chain hash is `last_hash`, if it is whole.
    fn from_bytes(v: &[u8], last_hash: &str) -> Option<TextFilter> {
        let (&n, rest) = v.split_first()?;
        let (hash, rest) = rest.split_at_checked(usize::from(n))?;
        let (&log2, bits) = rest.split_first()?;
        let log2 = u32::from(log2);
        let whole = (12..=23).contains(&log2) && bits.len() == (1usize << log2) / 8;
        (hash == last_hash.as_bytes() && whole).then(|| TextFilter {
            log2,
            bits: bits.to_vec(),
        })
    }
}

impl Index {
    /// The text filter of a sealed session, if one was built for exactly its records.
    pub fn text_filter(&self, meta: &SessionMeta) -> Result<Option<TextFilter>, IndexError> {
        let Some(key) = parse_session_id(&meta.id).filter(|_| meta.sealed) else {
            return Ok(None);
        };
        let tree = self.tree.open_tree(TREE)?;
        Ok(tree
            .get(key)?
            .and_then(|v| TextFilter::from_bytes(&v, &meta.last_hash)))
    }

    /// Keeps the filter of a sealed session that was read to its end.
    pub fn set_text_filter(&self, meta: &SessionMeta, f: &TextFilter) -> Result<(), IndexError> {
        let Some(key) = parse_session_id(&meta.id).filter(|_| meta.sealed) else {
            return Ok(());
        };
        let tree = self.tree.open_tree(TREE)?;
        tree.insert(key, f.to_bytes(&meta.last_hash))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(texts: &[&str]) -> TextFilter {
        let mut set = TrigramSet::default();
        for t in texts {
            set.add(&t.to_lowercase());
        }
        TextFilter::build(&set)
    }

    #[test]
    fn every_substring_of_every_text_may_match() {
        let texts = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 42",
            "tar czf /backup/Ünïcode.tgz /var/lib/app",
            "rm -rf /tmp/x",
        ];
        let f = filter(&texts);
        for t in texts {
            let t = t.to_lowercase();
            for (i, _) in t.char_indices() {
                for (j, _) in t[i..].char_indices().skip(1) {
                    assert!(f.may_contain(&t[i..i + j]), "{:?}", &t[i..i + j]);
                }
                assert!(f.may_contain(&t[i..]));
            }
        }
    }

    #[test]
    fn text_that_is_not_there_is_excluded_and_short_needles_never_are() {
        let f = filter(&["SELECT abalance FROM pgbench_accounts WHERE aid = 42"]);
        assert!(!f.may_contain("drop table"));
        assert!(!f.may_contain("never-recorded-text"));
        // Trigrams never span two texts.
        let two = filter(&["abc", "def"]);
        assert!(two.may_contain("abc") && two.may_contain("def"));
        assert!(!two.may_contain("bcd"));
        assert!(!two.may_contain("cde"));
        assert!(
            two.may_contain("zz"),
            "shorter than a trigram: read the session"
        );
        assert!(two.may_contain(""));
    }

    #[test]
    fn a_stored_filter_is_used_only_for_the_records_it_was_built_from() {
        let f = filter(&["SELECT 1", "SELECT 2"]);
        let v = f.to_bytes("aa11");
        assert_eq!(TextFilter::from_bytes(&v, "aa11"), Some(f.clone()));
        assert_eq!(TextFilter::from_bytes(&v, "bb22"), None, "other records");
        assert_eq!(
            TextFilter::from_bytes(&v[..v.len() - 1], "aa11"),
            None,
            "cut"
        );
        assert_eq!(TextFilter::from_bytes(&[], "aa11"), None);
    }

    #[test]
    fn the_filter_grows_with_the_text_and_is_bounded() {
        let mut set = TrigramSet::default();
        let big: String = (0..200_000u32).map(|i| format!("{i:x} ")).collect();
        set.add(&big);
        let f = TextFilter::build(&set);
        assert!(
            f.bits.len() * 8 >= set.0.len() * 8,
            "sized for its trigrams"
        );
        assert!(f.bits.len() * 8 <= MAX_BITS);
        assert!(!filter(&[]).may_contain("abc"));
    }
}
