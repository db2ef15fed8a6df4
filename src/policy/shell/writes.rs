//! Where a command writes, read from its arguments: `dd of=`, the destination of `cp`, `mv`,
//! `install` and `ln` (`-t DIR` included, and `DIR/NAME` when the destination is a directory),
//! `tee`, `sponge`, `truncate`, `shred`, `sed -i`, `curl -o`, `wget -O`, `sort -o`, and the
//! destination of `scp` and `rsync` (also their server side, `scp -t DIR`, `rsync --server`).
//! A link is judged as writing both its ends: `ln -s /etc/shadow x` makes later writes to `x`
//! land in `/etc/shadow`.

use super::words::Word;
use super::wrappers::Grammar;

/// Options, read wherever they appear (GNU programs permute their arguments), and operands.
pub(super) fn permuted(args: &[Word], g: &Grammar) -> (Vec<(String, Option<Word>)>, Vec<Word>) {
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
        "curl" => {
            let mut out = option_values(args, "o", &["output"], "eEKuUxXHdFTwAbcCm");
            out.extend(super::outputs::remote_names(program, args));
            out
        }
        "wget" => {
            let mut out =
                option_values(args, "OP", &["output-document", "directory-prefix"], "aeio");
            out.extend(super::outputs::remote_names(program, args));
            out
        }
        "sort" => option_values(args, "o", &["output"], "kStT"),
        "scp" | "rsync" => {
            let (_, operands) = permuted(
                args,
                &Grammar {
                    short_arg: if program == "scp" {
                        "cFiJloPSX"
                    } else {
                        "eBMTf"
                    },
                    long_arg: RSYNC_ARGS,
                    long_flag: &[],
                    numeric: false,
                },
            );
            // The last operand is the destination (`scp -t DIR` and `rsync --server ... DIR`
            // on the receiving side too); what lands inside it is named by the protocol.
            operands.last().cloned().into_iter().collect()
        }
        "tee" | "sponge" => {
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
        // Removing a file changes it as surely as writing it (`rm /etc/shadow` locks every
        // login out); the caller treats each operand as a tree, since a removed directory
        // takes everything below it along.
        "rm" | "unlink" | "rmdir" => {
            let (_, operands) = permuted(
                args,
                &Grammar {
                    short_arg: "",
                    long_arg: &[],
                    long_flag: &[
                        "force",
                        "interactive",
                        "one-file-system",
                        "no-preserve-root",
                        "preserve-root",
                        "recursive",
                        "dir",
                        "verbose",
                        "ignore-fail-on-non-empty",
                        "parents",
                    ],
                    numeric: false,
                },
            );
            operands
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
        // A file's mode, owner, attributes or times change what it is (`chmod 666 /etc/shadow`
        // lets anyone rewrite it), as an SFTP setstat does: every operand counts, the mode
        // or owner word included (it names no guarded file).
        "chmod" | "chown" | "chgrp" | "chattr" | "setfacl" | "touch" => {
            let (_, operands) = permuted(
                args,
                &Grammar {
                    short_arg: if program == "setfacl" {
                        "mMxX"
                    } else if program == "touch" {
                        "drt"
                    } else {
                        "pv"
                    },
                    long_arg: &[
                        "reference",
                        "from",
                        "modify",
                        "modify-file",
                        "remove",
                        "remove-file",
                        "set",
                        "set-file",
                        "date",
                        "time",
                    ],
                    long_flag: &[],
                    numeric: false,
                },
            );
            operands
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
            let (opts, operands) = permuted(args, &copy_grammar(program));
            copy_targets(program, &opts, operands)
        }
        _ => super::outputs::targets(program, args),
    }
}

/// rsync's long options that take an argument (so the argument is not taken for a path).
const RSYNC_ARGS: &[&str] = &[
    "rsh",
    "rsync-path",
    "exclude",
    "include",
    "filter",
    "exclude-from",
    "include-from",
    "files-from",
    "temp-dir",
    "backup-dir",
    "suffix",
    "chmod",
    "chown",
    "block-size",
    "bwlimit",
    "log-file",
    "log-file-format",
    "partial-dir",
    "compare-dest",
    "copy-dest",
    "link-dest",
    "remote-option",
    "password-file",
    "port",
    "timeout",
    "contimeout",
    "max-size",
    "min-size",
    "max-delete",
    "out-format",
    "info",
    "debug",
    "usermap",
    "groupmap",
    "iconv",
    "sockopts",
    "outbuf",
    "modify-window",
    "checksum-choice",
    "compress-choice",
    "compress-level",
    "stop-after",
    "stop-at",
    "skip-compress",
    "write-batch",
    "only-write-batch",
    "read-batch",
    "protocol",
    "address",
    "checksum-seed",
    "max-alloc",
    "early-input",
];

/// Values of the options that name a written file (`curl -o F`, `sort -o F`); `other` lists
/// the program's other short options that take an argument, so their values are skipped.
fn option_values(
    args: &[Word],
    short: &'static str,
    long: &[&str],
    other: &'static str,
) -> Vec<Word> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if t == "--" {
            break;
        }
        if let Some(body) = t.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            if long.contains(&name) {
                match inline {
                    Some(v) => out.push(Word {
                        text: v.to_string(),
                        ..args[i].clone()
                    }),
                    None => {
                        out.extend(args.get(i + 1).cloned());
                        i += 1;
                    }
                }
            }
        } else if t.len() > 1 && t.starts_with('-') {
            for (k, c) in t[1..].char_indices() {
                if short.contains(c) || other.contains(c) {
                    let rest = &t[1 + k + c.len_utf8()..];
                    if short.contains(c) {
                        if rest.is_empty() {
                            out.extend(args.get(i + 1).cloned());
                        } else {
                            out.push(Word {
                                text: rest.to_string(),
                                ..args[i].clone()
                            });
                        }
                    }
                    if rest.is_empty() {
                        i += 1;
                    }
                    break;
                }
            }
        }
        i += 1;
    }
    out
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
    // A moved file is changed where it was. (A link's target is a tree: `extra_trees`.)
    if program == "mv" {
        out.extend(sources);
    }
    out
}

fn recursive(opts: &[(String, Option<Word>)], letters: &str, long: &[&str]) -> bool {
    opts.iter()
        .any(|(n, _)| long.contains(&n.as_str()) || (n.len() == 1 && letters.contains(n.as_str())))
}

fn copy_grammar(program: &str) -> Grammar {
    Grammar {
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
    }
}

/// Whether every path `targets` gives is a directory whose whole tree may be written: what
/// `scp`/`rsync` receive is named by the protocol, `rm -r` takes everything below, and `cp -r`
/// (`-a`, `--parents`) merges a tree into the destination (`cp -r /tmp/etc /` writes
/// `/etc/shadow` when `/tmp/etc/shadow` exists). A plain `rm`, `unlink` or `rmdir` removes one
/// file or an empty directory.
pub fn as_trees(program: &str, args: &[Word]) -> bool {
    match program {
        "scp" | "rsync" => true,
        "rm" => {
            let g = Grammar {
                short_arg: "",
                long_arg: &[],
                long_flag: &["recursive", "force", "dir", "interactive"],
                numeric: false,
            };
            let (opts, _) = permuted(args, &g);
            recursive(&opts, "rR", &["recursive"])
        }
        "cp" => {
            let (opts, _) = permuted(args, &copy_grammar(program));
            recursive(&opts, "rRa", &["recursive", "archive", "parents"])
        }
        _ => false,
    }
}

/// rsync's options that name a directory written besides the destination, or a file it writes
/// (taken as a tree, which includes the file itself): `--backup-dir` (replaced files move
/// there by name), `--link-dest` (files there are hard-linked into the destination, so a later
/// write through the link changes them), `--temp-dir` and `--partial-dir` (files are written
/// there, partial ones kept by name), `--log-file` and the batch files (the receiving side
/// writes them: `rsync -M--log-file=/etc/shadow` appended its log to the guarded file).
const RSYNC_WRITTEN_DIRS: &[&str] = &[
    "backup-dir",
    "link-dest",
    "temp-dir",
    "T",
    "partial-dir",
    "log-file",
    "write-batch",
    "only-write-batch",
];

/// Directories whose whole tree a command makes writable or writes besides `targets`: the
/// target of a link (`ln -s /etc /tmp/e` makes `/tmp/e/shadow` a write to `/etc/shadow`; so do
/// `cp -s` and `cp -l`), the directories and files of [`RSYNC_WRITTEN_DIRS`] and the sources of
/// `rsync --remove-source-files`.
pub fn extra_trees(program: &str, args: &[Word]) -> Vec<Word> {
    match program {
        "ln" | "cp" => {
            let (opts, operands) = permuted(args, &copy_grammar(program));
            let links = program == "ln" || recursive(&opts, "sl", &["symbolic-link", "link"]);
            if !links {
                return Vec::new();
            }
            let dirs = values(&opts, &["t", "target-directory"]);
            match operands.split_last() {
                _ if !dirs.is_empty() => operands,
                Some((_, srcs)) if !srcs.is_empty() => srcs.to_vec(),
                // `ln -s TARGET` links into the working directory.
                Some((only, _)) => vec![only.clone()],
                None => Vec::new(),
            }
        }
        "rsync" => {
            let (opts, operands) = permuted(
                args,
                &Grammar {
                    short_arg: "eBMTf",
                    long_arg: RSYNC_ARGS,
                    long_flag: &[],
                    numeric: false,
                },
            );
            let mut out = values(&opts, RSYNC_WRITTEN_DIRS);
            // `-M`/`--remote-option` hands an option to the other side, which may be this host.
            for v in values(&opts, &["M", "remote-option"]) {
                if let Some((name, dir)) = v.text.strip_prefix("--").and_then(|o| o.split_once('='))
                    && RSYNC_WRITTEN_DIRS.contains(&name)
                {
                    out.push(Word {
                        text: dir.to_string(),
                        ..v.clone()
                    });
                }
            }
            // A batch file is written with a shell script beside it (`FILE.sh`).
            for v in values(&opts, &["write-batch", "only-write-batch"]) {
                out.push(Word {
                    text: format!("{}.sh", v.text),
                    ..v.clone()
                });
            }
            if has(&opts, &["remove-source-files"])
                && let Some((_, srcs)) = operands.split_last()
            {
                out.extend(srcs.iter().cloned());
            }
            out
        }
        _ => super::destinations::trees(program, args),
    }
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
            ["/tmp/l", "/tmp/l/shadow"]
        );
        assert_eq!(t("tee", "-a /etc/shadow /tmp/y"), ["/etc/shadow", "/tmp/y"]);
        assert_eq!(t("sed", "-i s/a/b/ /etc/shadow"), ["/etc/shadow"]);
        assert_eq!(t("sed", "-e s/a/b/ -i.bak /etc/shadow"), ["/etc/shadow"]);
        assert!(t("sed", "s/a/b/ /etc/shadow").is_empty());
        assert!(t("chmod", "666 /etc/shadow").contains(&"/etc/shadow".to_string()));
        assert!(t("chmod", "-R --reference=/x /etc/shadow").contains(&"/etc/shadow".to_string()));
        assert!(t("setfacl", "-m u:x:rw /etc/shadow").contains(&"/etc/shadow".to_string()));
        assert!(t("touch", "-d now /etc/shadow").contains(&"/etc/shadow".to_string()));
        assert_eq!(t("truncate", "-s 0 /etc/shadow"), ["/etc/shadow"]);
        assert_eq!(t("rm", "-f -- /etc/shadow"), ["/etc/shadow"]);
        assert_eq!(
            t("rm", "-rf --one-file-system /etc /tmp/x"),
            ["/etc", "/tmp/x"]
        );
        assert_eq!(t("unlink", "/etc/gshadow"), ["/etc/gshadow"]);
        assert_eq!(t("curl", "-sSL -o /etc/shadow http://x"), ["/etc/shadow"]);
        assert_eq!(
            t("curl", "-H a:b --output=/etc/shadow http://x"),
            ["/etc/shadow"]
        );
        assert_eq!(t("wget", "-qO/etc/shadow http://x"), ["/etc/shadow"]);
        assert_eq!(t("sort", "-k 2 -o /etc/shadow f"), ["/etc/shadow"]);
        assert_eq!(t("rsync", "-a -e ssh /tmp/s /etc/shadow"), ["/etc/shadow"]);
        assert_eq!(
            t("rsync", "--server -logDtpre.iLsfxCIvu . /etc/"),
            ["/etc/"]
        );
        assert_eq!(t("scp", "-t /etc/shadow"), ["/etc/shadow"]);
        assert_eq!(t("sponge", "/etc/shadow"), ["/etc/shadow"]);
    }
}
