//! Where archivers, git and the splitters write, read from their arguments: the archive
//! `7z a|u|d|rn`, `rar a|u|m|…` and `ar r|q|d|m|s` rewrite (7z and rar add `.7z`/`.rar` to a
//! name without an extension), the files `git diff|log|show --output=FILE`, `git archive -o`
//! and `git bundle create` write, the directory `git format-patch -o` fills, and the
//! directory `split PREFIX` / `csplit -f PREFIX` write into. A prefix is judged as a tree of
//! its directory: the names are the prefix and a generated suffix (`split -b1 x /etc/sha`
//! with `-a3` reaches `/etc/shadow` at the chunk `dow`), so any name there may be written.
//! Sources an archiver deletes (`7z a -sdel`, `rar m`) and the operands a compressor replaces
//! (`gzip /etc/shadow` leaves only `/etc/shadow.gz`; `zstd --rm`) are removed, judged as trees
//! like `rm -r` (`gzip -r DIR` takes a directory); `zstd|lzip|brotli -o FILE` and `lz4 SRC DST`
//! write their output file; `tar --remove-files` and `zip -m` remove what they archived.

use super::words::Word;
use super::wrappers::Grammar;
use super::writes::permuted;

fn with_text(w: &Word, text: String) -> Word {
    Word { text, ..w.clone() }
}

/// The directory a prefix's files land in: its text up to the last `/`, or the working
/// directory.
fn prefix_dir(w: &Word) -> Word {
    match w.text.rfind('/') {
        Some(0) => with_text(w, "/".into()),
        Some(i) => with_text(w, w.text[..i].to_string()),
        None => with_text(w, ".".into()),
    }
}

/// An archive name, and the name with `ext` added when it has no extension of its own.
fn archive_names(w: &Word, ext: &str) -> Vec<Word> {
    let base = w.text.rsplit('/').next().unwrap_or("");
    let mut out = vec![w.clone()];
    if !base.contains('.') {
        out.push(with_text(w, format!("{}{ext}", w.text)));
    }
    out
}

/// 7-Zip and RAR: the command is the first word that is not a switch (`7z -y a x.7z f`),
/// then the archive, then the files.
fn seven_rar(args: &[Word]) -> (Vec<&Word>, Vec<&str>) {
    let mut words = Vec::new();
    let mut switches = Vec::new();
    let mut options = true;
    for a in args {
        if options && a.text == "--" {
            options = false;
        } else if options && a.text.starts_with('-') && a.text.len() > 1 {
            switches.push(a.text.as_str());
        } else {
            words.push(a);
        }
    }
    (words, switches)
}

const SEVEN_WRITES: &[&str] = &["a", "u", "d", "rn"];
const RAR_WRITES: &[&str] = &[
    "a", "c", "ch", "d", "f", "k", "m", "r", "rc", "rn", "rr", "rv", "s", "u",
];

/// `ar`'s key (`rcs`, `-rcs`) and the words after it, with its long options left out.
fn ar_key(args: &[Word]) -> Option<(String, Vec<&Word>)> {
    let mut rest = Vec::new();
    let mut key = None;
    let mut i = 0;
    while i < args.len() {
        let t = args[i].text.as_str();
        if matches!(t, "--plugin" | "--target" | "--output") {
            i += 1;
        } else if t.starts_with("--") || t == "-X32_64" {
        } else if key.is_none() {
            key = Some(t.trim_start_matches('-').to_string());
        } else {
            rest.push(&args[i]);
        }
        i += 1;
    }
    key.map(|k| (k, rest))
}

/// git's global options before the subcommand, the `-C` directories among them, and the
/// subcommand's arguments.
fn git_parts(args: &[Word]) -> (Vec<&Word>, Option<&Word>, &[Word]) {
    let mut dirs = Vec::new();
    let mut i = 0;
    while i < args.len() && args[i].text.starts_with('-') {
        match args[i].text.as_str() {
            "-C" => {
                dirs.extend(args.get(i + 1));
                i += 1;
            }
            "--git-dir" | "--work-tree" | "--namespace" | "-c" | "--config-env" => i += 1,
            _ => {}
        }
        i += 1;
    }
    let rest = args.get(i + 1..).unwrap_or(&[]);
    (dirs, args.get(i), rest)
}

/// A relative path given to `git -C DIR ...` is relative to DIR (several `-C` nest).
fn under_dirs(dirs: &[&Word], w: Word) -> Word {
    if w.text.starts_with('/') {
        return w;
    }
    let mut text = w.text.clone();
    for d in dirs.iter().rev() {
        if text.starts_with('/') {
            break;
        }
        text = format!("{}/{text}", d.text.trim_end_matches('/'));
    }
    Word {
        expands: w.expands || dirs.iter().any(|d| d.expands),
        glob: w.glob || dirs.iter().any(|d| d.glob),
        text,
        ..w
    }
}

/// `--NAME=V`, `--NAME V`, and `-S V` / `-SV` when `short` is given.
fn option_value(args: &[Word], short: Option<&str>, long: &str) -> Vec<Word> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let t = a.text.as_str();
        if t == format!("--{long}") || short.is_some_and(|s| t == s) {
            out.extend(args.get(i + 1).cloned());
        } else if let Some(v) = t.strip_prefix(&format!("--{long}=")) {
            out.push(with_text(a, v.to_string()));
        } else if let Some(v) = short.and_then(|s| t.strip_prefix(s))
            && !v.is_empty()
            && !t.starts_with("--")
        {
            out.push(with_text(a, v.to_string()));
        }
    }
    out
}

fn git_files(args: &[Word]) -> Vec<Word> {
    let (dirs, sub, rest) = git_parts(args);
    let Some(sub) = sub else {
        return Vec::new();
    };
    let out = match sub.text.as_str() {
        // The diff family takes `--output=FILE` (the patch goes there, not to stdout).
        "diff" | "log" | "show" | "whatchanged" | "diff-tree" | "diff-files" | "diff-index"
        | "range-diff" | "format-patch" | "stash" => option_value(rest, None, "output"),
        "archive" => option_value(rest, Some("-o"), "output"),
        "bundle" if rest.first().is_some_and(|w| w.text == "create") => rest[1..]
            .iter()
            .find(|w| !w.text.starts_with('-'))
            .cloned()
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    out.into_iter().map(|w| under_dirs(&dirs, w)).collect()
}

/// Files `program args` writes, for programs `outputs::targets` does not know.
pub fn targets(program: &str, args: &[Word]) -> Vec<Word> {
    match program {
        "7z" | "7za" | "7zr" => {
            let (words, _) = seven_rar(args);
            match words.as_slice() {
                [cmd, archive, ..] if SEVEN_WRITES.contains(&cmd.text.as_str()) => {
                    archive_names(archive, ".7z")
                }
                _ => Vec::new(),
            }
        }
        "rar" => {
            let (words, _) = seven_rar(args);
            match words.as_slice() {
                // `rar cw ARCHIVE FILE` writes the archive's comment to FILE.
                [cmd, _, file, ..] if cmd.text == "cw" => vec![(*file).clone()],
                [cmd, archive, ..] if RAR_WRITES.contains(&cmd.text.as_str()) => {
                    archive_names(archive, ".rar")
                }
                _ => Vec::new(),
            }
        }
        "ar" => {
            let Some((key, rest)) = ar_key(args) else {
                return Vec::new();
            };
            if !key
                .chars()
                .any(|c| matches!(c, 'd' | 'm' | 'q' | 'r' | 's'))
            {
                return Vec::new();
            }
            // A position member (`a`, `b`, `i`) and a count (`N`) come before the archive.
            let at = usize::from(key.contains(['a', 'b', 'i'])) + usize::from(key.contains('N'));
            rest.get(at).map(|w| (*w).clone()).into_iter().collect()
        }
        "git" => git_files(args),
        "zstd" | "lzip" | "brotli" | "lz4" if !to_stdout(args) => {
            let (opts, operands) = permuted(args, &compressor(program));
            let mut out: Vec<Word> = opts
                .iter()
                .filter(|(n, _)| n == "o" || n == "output")
                .filter_map(|(_, v)| v.clone())
                .collect();
            // `lz4 SRC DST` (both ways) unless `-m` names several sources.
            let multiple = opts.iter().any(|(n, _)| n == "m" || n == "multiple");
            if program == "lz4" && !multiple {
                out.extend(operands.get(1).cloned());
            }
            out
        }
        _ => Vec::new(),
    }
}

/// A compressor writing to standard output, or only testing or listing, leaves files alone.
fn to_stdout(args: &[Word]) -> bool {
    args.iter().any(|a| {
        matches!(
            a.text.as_str(),
            "--stdout" | "--to-stdout" | "--test" | "--list"
        ) || (a.text.starts_with('-')
            && !a.text.starts_with("--")
            && a.text[1..].contains(['c', 't', 'l']))
    })
}

/// Short options that take a value, per compressor (the rest are flags).
fn compressor(program: &str) -> Grammar {
    Grammar {
        short_arg: match program {
            "gzip" => "S",
            "xz" | "lzma" => "SCFMT",
            "lzip" => "bmoS",
            "zstd" => "oDT",
            "brotli" => "oqwS",
            _ => "",
        },
        long_arg: &["suffix", "output", "format", "check", "threads", "memlimit"],
        long_flag: &["keep", "rm", "force", "recursive", "decompress", "stdout"],
        numeric: true,
    }
}

/// Operands a compressor removes once it has written their compressed (or decompressed) copy.
fn compressor_removes(program: &str, args: &[Word]) -> Vec<Word> {
    if to_stdout(args) {
        return Vec::new();
    }
    let (opts, operands) = permuted(args, &compressor(program));
    let flag = |short: &str, long: &str| {
        opts.iter()
            .any(|(n, _)| n == long || (!short.is_empty() && n == short))
    };
    let removes = match program {
        // These keep the source only when told to.
        "gzip" | "xz" | "lzma" | "bzip2" | "lzip" => !flag("k", "keep"),
        // These remove it only when told to.
        "brotli" => flag("j", "rm"),
        _ => flag("", "rm"),
    };
    if removes { operands } else { Vec::new() }
}

/// Directories below which `program args` may write (or remove) any name.
pub fn trees(program: &str, args: &[Word]) -> Vec<Word> {
    match program {
        "split" => {
            let (_, operands) = permuted(args, &SPLIT);
            operands.get(1).map(prefix_dir).into_iter().collect()
        }
        "csplit" => {
            let (opts, _) = permuted(args, &CSPLIT);
            opts.iter()
                .filter(|(n, _)| n == "f" || n == "prefix")
                .filter_map(|(_, v)| v.as_ref().map(prefix_dir))
                .collect()
        }
        "git" => {
            let (dirs, sub, rest) = git_parts(args);
            if sub.is_none_or(|s| s.text != "format-patch") {
                return Vec::new();
            }
            option_value(rest, Some("-o"), "output-directory")
                .into_iter()
                .map(|w| under_dirs(&dirs, w))
                .collect()
        }
        "7z" | "7za" | "7zr" | "rar" => {
            let (words, switches) = seven_rar(args);
            let deletes = if program == "rar" {
                words.first().is_some_and(|c| c.text == "m")
                    || switches.iter().any(|s| s.starts_with("-df"))
            } else {
                switches.contains(&"-sdel")
            };
            if !deletes {
                return Vec::new();
            }
            words.iter().skip(2).map(|w| (*w).clone()).collect()
        }
        "gzip" | "xz" | "lzma" | "bzip2" | "lzip" | "zstd" | "lz4" | "brotli" => {
            compressor_removes(program, args)
        }
        // `tar --remove-files` and `zip -m` delete what they archived. Every word that is not
        // an option counts (the archive too, which is written anyway, and a `-C` directory,
        // under which the relative names are): judged wider than it is, never narrower.
        "tar" | "gtar" | "bsdtar"
            if args
                .iter()
                .any(|a| a.text.len() > 4 && "--remove-files".starts_with(a.text.as_str())) =>
        {
            not_options(args)
        }
        "zip"
            if args.iter().any(|a| {
                a.text == "--move"
                    || (a.text.starts_with('-')
                        && !a.text.starts_with("--")
                        && a.text.contains('m'))
            }) =>
        {
            not_options(args)
        }
        _ => Vec::new(),
    }
}

fn not_options(args: &[Word]) -> Vec<Word> {
    args.iter()
        .filter(|a| !a.text.starts_with('-'))
        .cloned()
        .collect()
}

/// Why `program args` runs a command proctor does not judge.
pub fn runs_commands(program: &str, args: &[Word]) -> Option<String> {
    if matches!(program, "tar" | "gtar") {
        return remote_archive(args);
    }
    if program != "split" {
        return None;
    }
    let (opts, _) = permuted(args, &SPLIT);
    opts.iter()
        .any(|(n, _)| n == "filter")
        .then(|| "split --filter runs a shell command for each piece".to_string())
}

/// GNU tar takes an archive named `HOST:FILE` (no `/` before the colon) as a file on another
/// host, reached by running `rsh` (or `--rsh-command`) and `/etc/rmt` there: the host may be
/// this one, and the file is written or read where the line cannot say (round 6: `tar cf
/// localhost:/etc/shadow x` was not judged as a write). `--force-local` turns it off. Any word
/// of that shape counts, a member name with a colon included (held, not misread).
fn remote_archive(args: &[Word]) -> Option<String> {
    if args.iter().any(|a| a.text == "--force-local") {
        return None;
    }
    let remote = args.iter().find_map(|a| {
        let t = a.text.strip_prefix("--file=").unwrap_or(&a.text);
        let t = t.strip_prefix("-f").filter(|r| !r.is_empty()).unwrap_or(t);
        let (host, _) = t.split_once(':')?;
        (!host.is_empty() && !host.contains('/') && !host.starts_with('-')).then(|| t.to_string())
    })?;
    Some(format!(
        "tar runs a remote shell for an archive on another host ({remote}), which may be this one"
    ))
}

const SPLIT: Grammar = Grammar {
    short_arg: "abClnt",
    long_arg: &[
        "suffix-length",
        "additional-suffix",
        "bytes",
        "line-bytes",
        "lines",
        "number",
        "separator",
        "filter",
    ],
    long_flag: &[
        "numeric-suffixes",
        "hex-suffixes",
        "elide-empty-files",
        "unbuffered",
        "verbose",
    ],
    numeric: false,
};

const CSPLIT: Grammar = Grammar {
    short_arg: "fbn",
    long_arg: &["prefix", "suffix-format", "digits"],
    long_flag: &[
        "keep-files",
        "suppress-matched",
        "quiet",
        "silent",
        "elide-empty-files",
    ],
    numeric: false,
};

#[cfg(test)]
mod tests {
    use super::super::analyze;

    #[test]
    fn archivers_git_and_splitters_write_where_they_land() {
        for (line, path) in [
            ("7z a /etc/shadow /tmp/x", "/etc/shadow"),
            ("7za a /etc/shadow /tmp/x", "/etc/shadow.7z"),
            ("7z -y u /etc/shadow.7z x", "/etc/shadow.7z"),
            ("7zr d /etc/shadow x", "/etc/shadow"),
            ("rar a /etc/shadow x", "/etc/shadow.rar"),
            ("rar cw a.rar /etc/shadow", "/etc/shadow"),
            ("ar rcs /etc/shadow x.o", "/etc/shadow"),
            ("ar -q /etc/shadow x.o", "/etc/shadow"),
            ("ar rb m /etc/shadow x.o", "/etc/shadow"),
            ("git diff --output=/etc/shadow", "/etc/shadow"),
            ("git diff --output /etc/shadow HEAD~", "/etc/shadow"),
            ("git log -p --output=/etc/shadow", "/etc/shadow"),
            ("git -C /etc show --output=shadow", "/etc/shadow"),
            ("git archive -o /etc/shadow HEAD", "/etc/shadow"),
            ("git archive --output=/etc/shadow HEAD", "/etc/shadow"),
            ("git bundle create /etc/shadow HEAD", "/etc/shadow"),
            ("zstd /tmp/x -o /etc/shadow", "/etc/shadow"),
            ("zstd -d /tmp/x.zst -o /etc/shadow", "/etc/shadow"),
            ("lz4 /tmp/x /etc/shadow", "/etc/shadow"),
            ("lz4 -d /tmp/x.lz4 /etc/shadow", "/etc/shadow"),
            ("brotli -o /etc/shadow /tmp/x", "/etc/shadow"),
        ] {
            let f = analyze(line);
            assert!(f.write_paths.iter().any(|p| p == path), "{line}: {f:?}");
        }
        for (line, dir) in [
            ("split -b 1 x /etc/cron.d/j", "/etc/cron.d"),
            ("split --bytes 1 -a3 x /etc/sha", "/etc"),
            ("split x -l 1 /etc/sha", "/etc"),
            ("csplit -f /etc/sha x 1", "/etc"),
            ("csplit --prefix=/etc/cron.d/ x 1", "/etc/cron.d"),
            ("git format-patch -o /etc/cron.d HEAD~", "/etc/cron.d"),
            ("git format-patch --output-directory=/etc HEAD~", "/etc"),
            ("7z a -sdel /tmp/a.7z /etc/shadow", "/etc/shadow"),
            ("rar m /tmp/a.rar /etc/shadow", "/etc/shadow"),
            ("gzip /etc/shadow", "/etc/shadow"),
            ("xz -9 /etc/shadow", "/etc/shadow"),
            ("gzip -S .x /etc/shadow", "/etc/shadow"),
            ("bzip2 /etc/shadow", "/etc/shadow"),
            ("gzip -r /etc", "/etc"),
            ("zstd --rm /etc/shadow", "/etc/shadow"),
            ("lz4 --rm /etc/shadow", "/etc/shadow"),
            (
                "tar cf /tmp/a.tar --remove-files /etc/shadow",
                "/etc/shadow",
            ),
            ("tar -czf /tmp/a.tgz --remove /etc", "/etc"),
            ("zip -m /tmp/a.zip /etc/shadow", "/etc/shadow"),
        ] {
            let f = analyze(line);
            assert!(f.write_trees.iter().any(|p| p == dir), "{line}: {f:?}");
        }
        for line in [
            "7z -y x a.7z -o/",
            "7za e a.7z",
            "split --filter='sh -c id' x",
            "tar cf localhost:/etc/shadow /tmp/x",
            "tar -c --file=root@h:/etc/shadow /tmp/x",
            "tar -x -fh:/tmp/a.tar -C /tmp/w",
            // A prefix in an unknown working directory may be a home: `.b` + `a` + `shrc`.
            "split -a1 --additional-suffix=shrc x .b",
        ] {
            assert!(!analyze(line).hidden.is_empty(), "{line} should be hidden");
        }
        for line in [
            "7z l a.7z",
            "7z t a.7z",
            "rar l a.rar",
            "ar t a.a",
            "git diff HEAD~",
            "git log --oneline",
            "git bundle verify a.bundle",
            "split -b 1M big.log",
            "gzip -c /etc/shadow",
            "gzip -k /tmp/x",
            "zstd /tmp/x",
            "lz4 -m /tmp/a /tmp/b",
        ] {
            let f = analyze(line);
            assert!(
                f.write_paths.is_empty() && f.hidden.is_empty(),
                "{line}: {f:?}"
            );
        }
    }
}
