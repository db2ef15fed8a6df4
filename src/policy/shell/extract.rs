//! Where `tar x` and `unzip` write. GNU tar, bsdtar and Info-ZIP unzip keep every member inside
//! the destination directory unless told otherwise: they strip a leading `/`, refuse (tar) or
//! drop (unzip) `..` parts, and make a member that is a symbolic link with an absolute or `..`
//! target only after every other member is written, so no later member is written through it
//! (checked on GNU tar 1.34 and UnZip 6.0: `../x`, `/abs/x`, `d -> /outside` then `d/x`, a hard
//! link to `/abs`). So an extraction is judged as a write to the whole tree below its
//! destination (`-C DIR`, `-d DIR`, or the working directory), as `split` prefixes are; the
//! options that lift those protections (`-P`, `--absolute-names`, `--overwrite`, unzip's `-:`,
//! name rewriting, name lists that may hold `-C`) keep it `hidden`. A link that already exists
//! in the destination is followed, as it is by every write the reader judges by its path.

use super::words::Word;

/// Where an extraction lands.
#[derive(Debug, Default)]
pub struct Landing {
    /// Directories named on the line (`-C DIR`, `-d DIR`), in order; a relative `-C` after
    /// another is already joined to it, as tar does.
    pub dirs: Vec<Word>,
    /// Some members land in the working directory (no `-C` before them).
    pub here: bool,
}

/// Short options of tar that take a value (GNU and bsdtar).
const TAR_SHORT_VALUE: &str = "bCfFgHIKLNTVX";

/// `None` when `program args` extracts nothing; otherwise where it lands, or why it may land
/// anywhere.
pub fn landing(program: &str, args: &[Word]) -> Option<Result<Landing, String>> {
    match program {
        "tar" | "gtar" | "bsdtar" => tar(program, args),
        "unzip" => unzip(program, args),
        _ => None,
    }
}

fn escapes(program: &str, what: &str) -> Option<Result<Landing, String>> {
    Some(Err(format!(
        "{program} {what}: members may land outside the destination, which proctor cannot \
         judge from the line"
    )))
}

/// `--name` or an unambiguous prefix of it at least `min` letters long.
fn long_is(word: &str, name: &str, min: usize) -> bool {
    word.strip_prefix("--").is_some_and(|b| {
        let b = b.split('=').next().unwrap_or(b);
        b.len() >= min && name.starts_with(b)
    })
}

fn with_text(w: &Word, text: String) -> Word {
    Word { text, ..w.clone() }
}

fn tar(program: &str, args: &[Word]) -> Option<Result<Landing, String>> {
    let mut extract = false;
    let mut land = Landing::default();
    // Values owed by letters of a cluster, in order (`xfC a.tar /etc`).
    let mut owed: Vec<char> = Vec::new();
    let mut escape: Option<&str> = None;
    let add_dir = |land: &mut Landing, w: &Word| {
        let joined = match land.dirs.last() {
            Some(prev) if !w.text.starts_with('/') => {
                with_text(w, format!("{}/{}", prev.text.trim_end_matches('/'), w.text))
            }
            _ => w.clone(),
        };
        land.dirs.push(joined);
    };
    let mut options_end = false;
    for (i, a) in args.iter().enumerate() {
        let t = a.text.as_str();
        if let Some(letter) = (!owed.is_empty()).then(|| owed.remove(0)) {
            if letter == 'C' {
                add_dir(&mut land, a);
            }
            continue;
        }
        if options_end || !t.starts_with('-') || t == "-" {
            if i == 0 && !t.starts_with('-') {
                // The old style: a first word of bundled letters without a dash.
                for c in t.chars() {
                    extract |= c == 'x';
                    if matches!(c, 'P' | 's' | 'T') {
                        escape = Some("takes -P, -s or -T");
                    }
                    if TAR_SHORT_VALUE.contains(c) {
                        owed.push(c);
                    }
                }
                continue;
            }
            // A member name: it lands below the last `-C`, or here.
            land.here |= land.dirs.is_empty();
            continue;
        }
        if t == "--" {
            options_end = true;
            continue;
        }
        if t.starts_with("--") {
            let value = t.split_once('=').map(|(_, v)| v);
            if long_is(t, "extract", 4) || long_is(t, "get", 2) {
                extract = true;
            } else if long_is(t, "directory", 3) {
                match value {
                    Some(v) => add_dir(&mut land, &with_text(a, v.to_string())),
                    None => owed.push('C'),
                }
            } else if long_is(t, "absolute-names", 2)
                || long_is(t, "insecure", 3)
                || t == "--overwrite"
                || long_is(t, "keep-directory-symlink", 6)
                || long_is(t, "transform", 3)
                || long_is(t, "xform", 2)
                || long_is(t, "files-from", 5)
            {
                escape = Some(t);
            } else if value.is_none() && long_takes_value(t) {
                owed.push('-');
            }
            continue;
        }
        // A short cluster: a letter that takes a value takes the rest of the word, or the
        // next word.
        let body = &t[1..];
        for (j, c) in body.char_indices() {
            extract |= c == 'x';
            if matches!(c, 'P' | 's' | 'T') {
                escape = Some("takes -P, -s or -T");
            }
            if TAR_SHORT_VALUE.contains(c) {
                let rest = &body[j + c.len_utf8()..];
                if rest.is_empty() {
                    owed.push(c);
                } else if c == 'C' {
                    add_dir(&mut land, &with_text(a, rest.to_string()));
                }
                break;
            }
        }
    }
    if !extract {
        return None;
    }
    if let Some(what) = escape {
        return escapes(program, &format!("with {what}"));
    }
    if land.dirs.is_empty() {
        land.here = true;
    }
    Some(Ok(land))
}

/// GNU tar's long options that take a value in the next word (`--file a.tar`), so that word is
/// not taken for a member name. (A value missed here is only read as a member, which adds the
/// working directory to where the extraction lands.)
fn long_takes_value(t: &str) -> bool {
    [
        ("file", 3),
        ("exclude", 7),
        ("exclude-from", 9),
        ("blocking-factor", 2),
        ("record-size", 3),
        ("owner", 3),
        ("group", 3),
        ("mode", 3),
        ("mtime", 2),
        ("newer", 5),
        ("newer-mtime", 7),
        ("strip-components", 2),
        ("format", 4),
        ("label", 3),
        ("starting-file", 3),
        ("occurrence", 2),
        ("tape-length", 3),
        ("volno-file", 3),
        ("index-file", 3),
        ("quoting-style", 3),
        ("warning", 3),
    ]
    .iter()
    .any(|(name, min)| long_is(t, name, *min))
}

fn unzip(program: &str, args: &[Word]) -> Option<Result<Landing, String>> {
    let mut land = Landing::default();
    let mut i = 0;
    let mut listing = false;
    while i < args.len() {
        let t = args[i].text.as_str();
        if let Some(body) = t.strip_prefix('-').filter(|b| !b.is_empty()) {
            for (j, c) in body.char_indices() {
                if c == ':' {
                    return escapes(program, "with -: (keeps ../ in names)");
                }
                if c == 'd' {
                    // The rest of the cluster is the directory, or else the next word.
                    let rest = &body[j + 1..];
                    if rest.is_empty() {
                        if let Some(d) = args.get(i + 1) {
                            land.dirs.push(d.clone());
                        }
                        i += 1;
                    } else {
                        land.dirs.push(with_text(&args[i], rest.to_string()));
                    }
                    break;
                }
                // `-l`, `-v`, `-t`, `-z`, `-Z` list or test; `-p`, `-c` write to standard
                // output.
                listing |= "lvtzZpc".contains(c);
            }
        }
        i += 1;
    }
    if listing {
        return None;
    }
    land.here = land.dirs.is_empty();
    Some(Ok(land))
}

#[cfg(test)]
mod tests {
    use super::super::{analyze, analyze_in};

    #[test]
    fn extraction_lands_below_its_destination() {
        for (line, dir) in [
            ("tar xf /tmp/a.tar -C /etc", "/etc"),
            ("tar -xzf /tmp/a.tgz -C/etc", "/etc"),
            ("tar xfC /tmp/a.tar /etc", "/etc"),
            ("tar -xC /etc -f a.tar", "/etc"),
            ("tar --extract --file=a.tar --directory=/etc", "/etc"),
            ("tar --extract --file a.tar --dir /etc", "/etc"),
            ("tar -x -f a.tar -C /srv -C etc", "/srv/etc"),
            ("bsdtar -x -f a.tar -C /etc", "/etc"),
            ("unzip -o /tmp/a.zip -d /etc", "/etc"),
            ("unzip /tmp/a.zip -d/etc", "/etc"),
            ("cd /tmp && unzip -od /etc a.zip", "/etc"),
            ("cd /etc && tar xf /tmp/a.tar", "/etc"),
            ("cd /etc; unzip -o /tmp/a.zip", "/etc"),
            ("sudo tar xf a.tar -C /", "/"),
        ] {
            let f = analyze(line);
            // (A tree under a system directory is also hidden by `startup`: it may receive
            // files that run commands later.)
            assert!(
                // (`cd DIR` joins give the tree as `DIR/`: the same tree.)
                f.write_trees
                    .iter()
                    .any(|d| d.trim_end_matches('/') == dir.trim_end_matches('/')),
                "{line} should write the tree {dir}: {f:?}"
            );
        }
        // Without a working directory the line sets, where the members land is not known:
        // the one proctor read from the target may be stale, so it only adds.
        for line in [
            "tar xf a.tar",
            "tar -xf a.tar etc/shadow -C /tmp/x",
            "unzip a.zip",
            "cd \"$D\" && tar xf a.tar",
        ] {
            assert!(!analyze(line).hidden.is_empty(), "{line} should be hidden");
        }
        let f = analyze_in("tar xf a.tar", Some("/etc"));
        assert!(
            f.write_trees
                .iter()
                .any(|d| d.trim_end_matches('/') == "/etc")
                && !f.hidden.is_empty(),
            "{f:?}"
        );
        // Options that let members out of the destination.
        for line in [
            "tar -xPf a.tar -C /tmp/x",
            "tar xPf a.tar -C /tmp/x",
            "tar -x --absolute-names -f a.tar -C /tmp/x",
            "tar -x --abs -f a.tar -C /tmp/x",
            "tar -x --overwrite -f a.tar -C /tmp/x",
            "tar -x --keep-directory-symlink -f a.tar -C /tmp/x",
            "tar -x --transform=s,^,/etc/, -f a.tar -C /tmp/x",
            "tar -x --xform s,^,/, -f a.tar -C /tmp/x",
            "tar -x -T list -f a.tar -C /tmp/x",
            "tar -x --files-from=list -f a.tar -C /tmp/x",
            "bsdtar -x -s ,^,/etc/, -f a.tar -C /tmp/x",
            "bsdtar -x --insecure -f a.tar -C /tmp/x",
            "unzip -: a.zip -d /tmp/x",
            "unzip -o: a.zip -d /tmp/x",
            "busybox tar xf a.tar -C /tmp/x",
            "tar xf a.tar -C \"$D\"",
            "UNZIP=-: unzip a.zip -d /tmp/x",
        ] {
            assert!(!analyze(line).hidden.is_empty(), "{line} should be hidden");
        }
        for line in [
            "tar xf /tmp/a.tar -C /tmp/work",
            "cd /tmp/work && tar xzf /tmp/a.tgz",
            "unzip -o /tmp/a.zip -d /tmp/work",
            "tar -x -f a.tar --strip-components 1 -C /tmp/work",
        ] {
            // Judged where it lands (a guard there denies), and still hidden: a member may be
            // a start-up file, which counts wherever it lands.
            let f = analyze(line);
            assert!(
                f.hidden
                    .iter()
                    .any(|h| h.contains("named inside the archive"))
                    && f.write_trees.iter().any(|d| d.starts_with("/tmp/work")),
                "{line}: {f:?}"
            );
        }
    }
}
