//! More programs that write a file named in their arguments: archivers creating an archive
//! (`tar cf FILE`, `zip FILE`), converters with an output operand or option (`xxd`, `uniq`,
//! `objcopy`, `iconv -o`, `gpg -o`, `strip -o`, `openssl -out`), `ssh-keygen -f`, and the
//! files `curl -O` and `wget` name after the URL (a URL ending in `/.bashrc` writes
//! `.bashrc`). Each path is judged like a redirection's. (`7z`, `rar`, `ar`, git's output
//! files and the `split` prefixes are in `destinations`.)

use super::words::Word;

fn operands<'a>(args: &'a [Word], with_value: &str) -> Vec<&'a Word> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut options = true;
    while i < args.len() {
        let t = args[i].text.as_str();
        if options && t == "--" {
            options = false;
        } else if options && t.len() > 1 && t.starts_with('-') {
            // `-o VALUE`: a short option that takes a value as the next word.
            let last = t.chars().last().unwrap_or(' ');
            if !t.starts_with("--") && t.len() == 2 && with_value.contains(last) {
                i += 1;
            }
        } else {
            out.push(&args[i]);
        }
        i += 1;
    }
    out
}

/// The value of a single-dash long option (`openssl … -out FILE`).
fn word_after<'a>(args: &'a [Word], names: &[&str]) -> Vec<&'a Word> {
    args.windows(2)
        .filter(|w| names.contains(&w[0].text.as_str()))
        .map(|w| &w[1])
        .collect()
}

/// `-o FILE`, `-oFILE`, `--output FILE`, `--output=FILE`.
fn output_option(args: &[Word], short: char, long: &str) -> Vec<Word> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let t = a.text.as_str();
        let long_eq = format!("--{long}=");
        if t == format!("-{short}") || t == format!("--{long}") {
            out.extend(args.get(i + 1).cloned());
        } else if let Some(v) = t.strip_prefix(&long_eq) {
            out.push(Word {
                text: v.to_string(),
                ..a.clone()
            });
        } else if let Some(v) = t.strip_prefix(&format!("-{short}"))
            && !t.starts_with("--")
            && !v.is_empty()
        {
            out.push(Word {
                text: v.to_string(),
                ..a.clone()
            });
        }
    }
    out
}

/// Paths `program args` writes, for programs `writes::targets` does not know.
pub fn targets(program: &str, args: &[Word]) -> Vec<Word> {
    let nth = |with_value: &str, n: usize| -> Vec<Word> {
        operands(args, with_value)
            .get(n)
            .map(|w| (*w).clone())
            .into_iter()
            .collect()
    };
    match program {
        "tar" | "gtar" | "bsdtar" => tar_archive(args),
        "zip" => nth("bntxiIDPZ", 0),
        "xxd" => nth("cglosn", 1),
        "uniq" => nth("fsw", 1),
        "objcopy" => nth("jRIOBK", 1),
        "iconv" => output_option(args, 'o', "output"),
        "gpg" | "gpg2" => output_option(args, 'o', "output"),
        "strip" => output_option(args, 'o', "output"),
        "shuf" => output_option(args, 'o', "output"),
        "msgfmt" => output_option(args, 'o', "output-file"),
        // A named pipe or device node is created at each path named.
        "mkfifo" => operands(args, "mZ").into_iter().cloned().collect(),
        "mknod" => nth("mZ", 0),
        "gunzip" | "unxz" | "unlzma" | "bunzip2" | "unzstd" | "lunzip" | "unlz4" => {
            decompressed(args)
        }
        "gzip" | "xz" | "lzma" | "bzip2" | "zstd" | "lzip" | "lz4" | "brotli"
            if args.iter().any(|a| {
                matches!(a.text.as_str(), "-d" | "--decompress" | "--uncompress")
                    || (a.text.starts_with('-')
                        && !a.text.starts_with("--")
                        && a.text.contains('d'))
            }) =>
        {
            let mut out = decompressed(args);
            out.extend(super::destinations::targets(program, args));
            out
        }
        "openssl" => word_after(args, &["-out", "-keyout"])
            .into_iter()
            .cloned()
            .collect(),
        "ssh-keygen"
            if !args.iter().any(|a| {
                matches!(
                    a.text.as_str(),
                    "-l" | "-y" | "-e" | "-B" | "-L" | "-F" | "-Q"
                )
            }) =>
        {
            let mut out = output_option(args, 'f', "file");
            let pubs: Vec<Word> = out
                .iter()
                .map(|w| Word {
                    text: format!("{}.pub", w.text),
                    ..w.clone()
                })
                .collect();
            out.extend(pubs);
            out
        }
        _ => super::destinations::targets(program, args),
    }
}

/// `tar` writes its archive file when it creates, appends or updates one.
/// A decompressor writes each operand's name without its suffix (`gunzip /etc/shadow.gz`
/// writes `/etc/shadow`), unless it writes to standard output or only tests or lists. A name
/// without a known suffix (`-S`, `.tgz`) is judged as the operand and as what it may become.
fn decompressed(args: &[Word]) -> Vec<Word> {
    let to_stdout = args.iter().any(|a| {
        matches!(
            a.text.as_str(),
            "--stdout" | "--to-stdout" | "--test" | "--list"
        ) || (a.text.starts_with('-')
            && !a.text.starts_with("--")
            && a.text[1..].contains(['c', 't', 'l']))
    });
    if to_stdout {
        return Vec::new();
    }
    let mut out = Vec::new();
    for w in operands(args, "S") {
        let stem = [
            ".gz", ".z", ".Z", ".xz", ".lzma", ".bz2", ".zst", ".lz", ".lz4", ".br", ".tgz",
            ".txz", ".tbz2",
        ]
        .iter()
        .find_map(|suffix| w.text.strip_suffix(suffix));
        match stem {
            Some(stem) => out.push(Word {
                text: stem.to_string(),
                ..w.clone()
            }),
            // Unknown suffix (`-S .x`): the name may become anything below its directory.
            None => out.push(Word {
                text: format!("{}*", w.text),
                glob: true,
                ..w.clone()
            }),
        }
    }
    out
}

fn tar_archive(args: &[Word]) -> Vec<Word> {
    let t: Vec<&str> = args.iter().map(|a| a.text.as_str()).collect();
    let bundled = t.first().is_some_and(|a| !a.starts_with('-'));
    let writes = t.iter().enumerate().any(|(i, a)| {
        let body = match a.strip_prefix('-') {
            Some(b) if !b.starts_with('-') => b,
            None if bundled && i == 0 => a,
            _ => {
                return ["--create", "--append", "--update", "--concatenate"]
                    .iter()
                    .any(|n| a.len() > 4 && n.starts_with(a));
            }
        };
        body.chars().any(|c| matches!(c, 'c' | 'r' | 'u' | 'A'))
    });
    if !writes {
        return Vec::new();
    }
    let mut out = output_option(args, 'f', "file");
    // `-cf FILE`, `-czvf FILE`, or the old `cf FILE` bundle: `f` takes the next word.
    for (i, a) in t.iter().enumerate() {
        let bundle =
            (a.starts_with('-') && !a.starts_with("--") && a.len() > 2) || (bundled && i == 0);
        if bundle && a.ends_with('f') {
            let at = if bundled && i == 0 { 1 } else { i + 1 };
            out.extend(args.get(at).cloned());
        }
    }
    out
}

/// Files `curl -O` and `wget` name after the URL's last part.
pub fn remote_names(program: &str, args: &[Word]) -> Vec<Word> {
    let names_by_url = match program {
        "curl" => args.iter().any(|a| {
            matches!(a.text.as_str(), "--remote-name" | "--remote-name-all")
                || (a.text.starts_with('-')
                    && !a.text.starts_with("--")
                    && a.text[1..].contains('O'))
        }),
        "wget" => !args
            .iter()
            .any(|a| a.text.starts_with("-O") || a.text.starts_with("--output-document")),
        _ => false,
    };
    if !names_by_url {
        return Vec::new();
    }
    // `curl --output-dir DIR`, `wget -P DIR`: where the named files land.
    let dir = args
        .windows(2)
        .find(|w| {
            matches!(
                w[0].text.as_str(),
                "--output-dir" | "-P" | "--directory-prefix"
            )
        })
        .map(|w| w[1].text.clone())
        .or_else(|| {
            args.iter().find_map(|a| {
                a.text
                    .strip_prefix("--output-dir=")
                    .or_else(|| a.text.strip_prefix("--directory-prefix="))
                    .map(str::to_string)
            })
        });
    args.iter()
        .filter(|a| a.text.contains("://"))
        .filter_map(|a| {
            let path = a.text.split("://").nth(1)?.split(['?', '#']).next()?;
            let name = path.split_once('/').map(|(_, p)| p)?.rsplit('/').next()?;
            (!name.is_empty()).then(|| Word {
                text: match &dir {
                    Some(d) => format!("{}/{name}", d.trim_end_matches('/')),
                    None => name.to_string(),
                },
                ..a.clone()
            })
        })
        .collect()
}

/// Why a download is named by the server (`curl -J`, `wget --content-disposition`): the name
/// may be `.bashrc`.
pub fn server_named(program: &str, args: &[Word]) -> Option<String> {
    let named = match program {
        "curl" => args.iter().any(|a| {
            a.text == "--remote-header-name"
                || (a.text.starts_with('-') && !a.text.starts_with("--") && a.text.contains('J'))
        }),
        "wget" => args.iter().any(|a| {
            matches!(
                a.text.as_str(),
                "--content-disposition" | "-r" | "--recursive" | "-m" | "--mirror"
            )
        }),
        _ => false,
    };
    named.then(|| format!("{program} writes files the server names, which proctor cannot judge"))
}

#[cfg(test)]
mod tests {
    use super::super::analyze;

    #[test]
    fn outputs_named_in_arguments_are_writes() {
        for (line, path) in [
            ("tar cf /etc/shadow /tmp/x", "/etc/shadow"),
            ("tar -czf /etc/shadow x", "/etc/shadow"),
            ("tar --create --file=/etc/shadow x", "/etc/shadow"),
            ("zip /etc/shadow /tmp/x", "/etc/shadow"),
            ("xxd -r /tmp/x /etc/shadow", "/etc/shadow"),
            ("uniq /tmp/x /etc/shadow", "/etc/shadow"),
            ("objcopy /tmp/x /etc/shadow", "/etc/shadow"),
            ("iconv -f a -t b -o /etc/shadow x", "/etc/shadow"),
            ("gpg -o /etc/shadow -d x", "/etc/shadow"),
            ("strip -o /etc/shadow x", "/etc/shadow"),
            ("openssl enc -in x -out /etc/shadow", "/etc/shadow"),
            ("ssh-keygen -f /etc/shadow -N ''", "/etc/shadow"),
            ("curl -O http://h/x/.bashrc", ".bashrc"),
            ("wget http://h/.profile", ".profile"),
            (
                "curl -O --output-dir /etc/cron.d http://h/job",
                "/etc/cron.d/job",
            ),
        ] {
            let f = analyze(line);
            assert!(f.write_paths.iter().any(|p| p == path), "{line}: {f:?}");
        }
        assert!(analyze("tar tf /etc/shadow").write_paths.is_empty());
        assert!(
            analyze("ssh-keygen -l -f /etc/ssh/k")
                .write_paths
                .is_empty()
        );
        assert!(!analyze("curl -OJ http://h/x").hidden.is_empty());
        assert!(analyze("curl -s http://h/x/.bashrc").write_paths.is_empty());
    }
}
