//! getopt as the wrappers use it: short option clusters (`-uroot`, `-n5`), long options with
//! `=` or a separate argument and unambiguous prefixes, `--`, and a stop at the first operand.
//! A word known only at run time where an option may stand stops the reading as hidden.

use super::Word;

/// A wrapper's option grammar.
pub struct Grammar {
    /// Short options that take an argument (attached `-uroot` or the next word).
    pub short_arg: &'static str,
    /// Long options that take an argument (`--user root` or `--user=root`).
    pub long_arg: &'static [&'static str],
    /// Long options without an argument (or with an optional `=` one): for prefixes.
    pub long_flag: &'static [&'static str],
    /// `-5` is an option (`nice -5`).
    pub numeric: bool,
}

/// Options read up to the first operand.
pub struct Parsed {
    /// (option name without dashes, its argument).
    pub opts: Vec<(String, Option<Word>)>,
    /// Index of the first operand.
    pub rest: usize,
    pub hidden: Option<String>,
}

impl Parsed {
    pub fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|(n, _)| names.contains(&n.as_str()))
    }

    pub fn values(&self, names: &[&str]) -> Vec<Word> {
        self.opts
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
}

fn resolve_long(g: &Grammar, name: &str) -> (String, bool) {
    let all = g.long_arg.iter().chain(g.long_flag.iter());
    if let Some(exact) = all.clone().find(|o| **o == name) {
        return (exact.to_string(), g.long_arg.contains(exact));
    }
    let mut m = all.filter(|o| o.starts_with(name));
    match (m.next(), m.next()) {
        (Some(one), None) => (one.to_string(), g.long_arg.contains(one)),
        _ => (name.to_string(), false),
    }
}

/// getopt-style reading that stops at the first operand (as `+` in an optstring, which the
/// wrappers use so the wrapped command keeps its own options).
pub fn parse(args: &[Word], g: &Grammar) -> Parsed {
    let mut p = Parsed {
        opts: Vec::new(),
        rest: args.len(),
        hidden: None,
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if !a.option_safe() {
            p.hidden = Some(format!(
                "an option word known only at run time ({})",
                a.text
            ));
            p.rest = i;
            return p;
        }
        let t = a.text.as_str();
        if t == "--" {
            p.rest = i + 1;
            return p;
        }
        if let Some(body) = t.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(Word::literal(v))),
                None => (body, None),
            };
            let (full, takes) = resolve_long(g, name);
            let value = if takes && inline.is_none() {
                i += 1;
                args.get(i).cloned()
            } else {
                inline
            };
            p.opts.push((full, value));
            i += 1;
            continue;
        }
        if t.len() > 1 && t.starts_with('-') {
            if g.numeric && t[1..].chars().all(|c| c.is_ascii_digit()) {
                p.opts.push(("n".into(), Some(Word::literal(&t[1..]))));
                i += 1;
                continue;
            }
            let cluster: Vec<char> = t[1..].chars().collect();
            let mut k = 0;
            while k < cluster.len() {
                let c = cluster[k];
                if g.short_arg.contains(c) {
                    let attached: String = cluster[k + 1..].iter().collect();
                    let value = if attached.is_empty() {
                        i += 1;
                        args.get(i).cloned()
                    } else {
                        Some(Word::literal(&attached))
                    };
                    p.opts.push((c.to_string(), value));
                    break;
                }
                p.opts.push((c.to_string(), None));
                k += 1;
            }
            i += 1;
            continue;
        }
        p.rest = i;
        return p;
    }
    p
}
