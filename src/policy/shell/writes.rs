//! Where a command writes, read from its arguments: `dd of=`, the destination of `cp`, `mv`,
//! `install` and `ln` (`-t DIR` included, and `DIR/NAME` when the destination is a directory),
//! `tee`, `truncate`, `shred`, `sed -i`. A link is judged as writing both its ends: `ln -s
//! /etc/shadow x` makes later writes to `x` land in `/etc/shadow`.

use super::words::Word;
use super::wrappers::Grammar;

/// Options, read wherever they appear (GNU programs permute their arguments), and operands.
fn permuted(args: &[Word], g: &Grammar) -> (Vec<(String, Option<Word>)>, Vec<Word>) {
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let p = super::wrappers::parse(&args[i..], g);
        opts.extend(p.opts);
        let at = i + p.rest;
        if at > i && args.get(at - 1).is_some_and(|a| a.text == "--") {
            operands.extend(args[at..].iter().cloned());
            break;
        }
        match args.get(at) {
            Some(w) => operands.push(w.clone()),
            None => break,
        }
        i = at + 1;
    }
    (opts, operands)
}

fn values(opts: &[(String, Option<Word>)], names: &[&str]) -> Vec<Word> {
    opts.iter()
        .filter(|(n, _)| names.contains(&n.as_str()))
        .filter_map(|(_, v)| v.clone())
        .collect()
}

fn has(opts: &[(String, Option<Word>)], names: &[&str]) -> bool {
    opts.iter().any(|(n, _)| names.contains(&n.as_str()))
}

/// `dir/name-of-src`: where a source lands in a destination directory.
fn into_dir(dir: &Word, src: &Word) -> Word {
    let name = src
        .text
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    Word {
        text: format!("{}/{}", dir.text.trim_end_matches('/'), name),
        expands: dir.expands || src.expands,
        splits: dir.splits || src.splits,
        glob: dir.glob || src.glob,
        ..Word::default()
    }
}

/// Paths `program args` writes.
pub fn targets(program: &str, args: &[Word]) -> Vec<Word> {
    match program {
        "dd" => args
            .iter()
            .filter_map(|a| {
                a.text.strip_prefix("of=").map(|p| Word {
                    text: p.to_string(),
                    ..a.clone()
                })
            })
            .collect(),
        "tee" => {
            let (_, files) = permuted(
                args,
                &Grammar {
                    short_arg: "",
                    long_arg: &[],
                    long_flag: &["append", "ignore-interrupts", "output-error"],
                    numeric: false,
                },
            );
            files
        }
        "truncate" | "shred" => {
            let (_, files) = permuted(
                args,
                &Grammar {
                    short_arg: "srn",
                    long_arg: &["size", "reference", "iterations", "random-source"],
                    long_flag: &[
                        "no-create",
                        "io-blocks",
                        "force",
                        "remove",
                        "verbose",
                        "exact",
                        "zero",
                    ],
                    numeric: false,
                },
            );
            files
        }
        "sed" => {
            let (opts, operands) = permuted(
                args,
                &Grammar {
                    short_arg: "efl",
                    long_arg: &["expression", "file", "line-length"],
                    long_flag: &[
                        "in-place",
                        "quiet",
                        "silent",
                        "regexp-extended",
                        "separate",
                        "null-data",
                    ],
                    numeric: false,
                },
            );
            let in_place = has(&opts, &["i", "in-place"])
                || args
                    .iter()
                    .any(|a| a.text.starts_with("-i") || a.text.starts_with("--in-place"));
            if !in_place {
                return Vec::new();
            }
            let skip = usize::from(!has(&opts, &["e", "f", "expression", "file"]));
            operands.into_iter().skip(skip).collect()
        }
        "cp" | "mv" | "install" | "ln" => {
            let (opts, operands) = permuted(
                args,
                &Grammar {
                    short_arg: if program == "install" { "gmoSt" } else { "St" },
                    long_arg: &[
                        "suffix",
                        "target-directory",
                        "group",
                        "mode",
                        "owner",
                        "strip-program",
                    ],
                    long_flag: &[],
                    numeric: false,
                },
            );
            copy_targets(program, &opts, operands)
        }
        _ => Vec::new(),
    }
}

fn copy_targets(program: &str, opts: &[(String, Option<Word>)], operands: Vec<Word>) -> Vec<Word> {
    let mut out = Vec::new();
    if program == "install" && has(opts, &["d", "directory"]) {
        return operands;
    }
    let dirs = values(opts, &["t", "target-directory"]);
    let (sources, dests): (Vec<Word>, Vec<Word>) = if dirs.is_empty() {
        match operands.split_last() {
            Some((dest, srcs)) if !srcs.is_empty() => (srcs.to_vec(), vec![dest.clone()]),
            // `ln -s TARGET` links into the working directory.
            Some((only, _)) if program == "ln" => (vec![only.clone()], Vec::new()),
            _ => return out,
        }
    } else {
        (operands, dirs)
    };
    for d in &dests {
        out.push(d.clone());
        for s in &sources {
            out.push(into_dir(d, s));
        }
    }
    // A moved file is changed where it was; a link makes its target writable by another name.
    if matches!(program, "mv" | "ln") {
        out.extend(sources);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(program: &str, line: &str) -> Vec<String> {
        let words: Vec<Word> = super::super::words::lex(line)
            .toks
            .into_iter()
            .filter_map(|t| match t {
                super::super::words::Tok::Word(w) => Some(w),
                _ => None,
            })
            .collect();
        targets(program, &words)
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn destinations() {
        assert_eq!(t("dd", "if=/tmp/x of=/etc/shadow bs=1"), ["/etc/shadow"]);
        assert_eq!(t("cp", "-t /etc shadow"), ["/etc", "/etc/shadow"]);
        assert_eq!(
            t("cp", "shadow --target-directory=/etc"),
            ["/etc", "/etc/shadow"]
        );
        assert_eq!(t("cp", "-a /tmp/s /etc/"), ["/etc/", "/etc/s"]);
        assert_eq!(
            t("install", "-m 600 /tmp/s /etc/shadow"),
            ["/etc/shadow", "/etc/shadow/s"]
        );
        assert_eq!(
            t("mv", "/etc/shadow /tmp/x"),
            ["/tmp/x", "/tmp/x/shadow", "/etc/shadow"]
        );
        assert_eq!(
            t("ln", "-sf /etc/shadow /tmp/l"),
            ["/tmp/l", "/tmp/l/shadow", "/etc/shadow"]
        );
        assert_eq!(t("tee", "-a /etc/shadow /tmp/y"), ["/etc/shadow", "/tmp/y"]);
        assert_eq!(t("sed", "-i s/a/b/ /etc/shadow"), ["/etc/shadow"]);
        assert_eq!(t("sed", "-e s/a/b/ -i.bak /etc/shadow"), ["/etc/shadow"]);
        assert!(t("sed", "s/a/b/ /etc/shadow").is_empty());
        assert_eq!(t("truncate", "-s 0 /etc/shadow"), ["/etc/shadow"]);
    }
}
