//! Programs whose writes, or whose commands, are named in their input rather than on the
//! command line: archive extraction that keeps absolute or `..` names (`cpio -i`, `ar x`, `7z
//! x`, `pax -r`; `tar x` and `unzip` do not, and `extract` judges them by where they land),
//! patches (`patch`, `git apply`, `git am`), git commands that write the work tree from the
//! repository (`git checkout`, `restore`, `reset --hard`, `pull`...), and package and build
//! tools that run scripts from the files they read (`dpkg -i`, `npm install`, `pip install`,
//! `cargo build`). Where they write is decided by the archive, patch or repository, and a
//! member can be `etc/shadow`, an absolute `/etc/shadow` (`tar -P`) or a symbolic link that a
//! later member is written through; what a script runs is in a file proctor has not read. So
//! each is `hidden`: the line cannot be judged by where it lands (rule 2).

use super::words::Word;

fn texts(args: &[Word]) -> Vec<&str> {
    args.iter()
        .map(|a| a.text.as_str())
        .take_while(|a| *a != "--")
        .collect()
}

/// A short option cluster (`-xzf`) or, as `tar` and `ar` also take, a first word of bundled
/// letters without a dash (`xzf`), containing one of `letters`.
fn cluster_has(args: &[&str], letters: &str, bundled_first: bool) -> bool {
    args.iter().enumerate().any(|(i, a)| {
        let body = if let Some(b) = a.strip_prefix('-') {
            if b.starts_with('-') {
                return false;
            }
            b
        } else if bundled_first && i == 0 {
            a
        } else {
            return false;
        };
        body.chars().any(|c| letters.contains(c))
    })
}

/// `--name` or an unambiguous prefix of it at least `min` letters long (GNU getopt).
fn long_has(args: &[&str], name: &str, min: usize) -> bool {
    args.iter().any(|a| {
        a.strip_prefix("--").is_some_and(|b| {
            let b = b.split('=').next().unwrap_or(b);
            b.len() >= min && name.starts_with(b)
        })
    })
}

/// The first word that is not an option (a subcommand), skipping the values of the options
/// in `with_value`.
fn subcommand<'a>(args: &[&'a str], with_value: &[&str]) -> Option<&'a str> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if !a.starts_with('-') {
            return Some(a);
        }
        if with_value.contains(&a) {
            i += 1;
        }
        i += 1;
    }
    None
}

/// Why `program args` writes or runs what proctor cannot read from the line, if it does.
pub fn writes_unseen(program: &str, args: &[Word]) -> Option<String> {
    let a = texts(args);
    let only_info = a
        .iter()
        .all(|x| matches!(*x, "--version" | "--help" | "-h"));
    if !a.is_empty() && only_info {
        return None;
    }
    let archive = || {
        Some(format!(
            "{program} writes files named inside the archive (any path, or through links it \
             makes), which proctor cannot judge from the line"
        ))
    };
    let scripts = || {
        Some(format!(
            "{program} runs scripts from files proctor has not read (package or build scripts)"
        ))
    };
    match program {
        // `tar x` and `unzip` keep their members below a destination: `extract` judges them.
        "cpio" => (cluster_has(&a, "ip", false)
            || long_has(&a, "extract", 3)
            || long_has(&a, "pass-through", 3))
        .then(archive)
        .flatten(),
        "pax" => cluster_has(&a, "r", false).then(archive).flatten(),
        "ar" => cluster_has(&a, "x", true).then(archive).flatten(),
        // The command is the first word that is not a switch (`7z -y x a.7z`).
        "7z" | "7za" | "7zr" | "unrar" | "rar" => {
            matches!(a.iter().find(|x| !x.starts_with('-')), Some(&("x" | "e")))
                .then(archive)
                .flatten()
        }
        "patch" => (!long_has(&a, "dry-run", 3)).then(|| {
            format!(
                "{program} writes the files the patch names (any path), which proctor cannot \
                 judge from the line"
            )
        }),
        "git" => git(&a),
        "dpkg" => (cluster_has(&a, "ixXR", false)
            || ["install", "unpack", "extract", "vextract", "configure"]
                .iter()
                .any(|n| long_has(&a, n, n.len())))
        .then(scripts)
        .flatten(),
        "rpm" => (cluster_has(&a, "iUF", false)
            || ["install", "upgrade", "freshen", "reinstall"]
                .iter()
                .any(|n| long_has(&a, n, n.len())))
        .then(scripts)
        .flatten(),
        "npm" | "yarn" | "pnpm" => {
            let sub = subcommand(&a, &["--prefix", "-C", "--cwd", "--dir"]);
            // `yarn` alone installs.
            (matches!(
                sub,
                Some(
                    "install"
                        | "i"
                        | "ci"
                        | "add"
                        | "run"
                        | "run-script"
                        | "test"
                        | "t"
                        | "start"
                        | "stop"
                        | "restart"
                        | "exec"
                        | "x"
                        | "rebuild"
                        | "dlx"
                        | "create"
                        | "init"
                )
            ) || (program == "yarn" && sub.is_none()))
            .then(scripts)
            .flatten()
        }
        "npx" | "pnpx" => scripts(),
        // A unit file linked or enabled by path runs what it says when systemd starts it.
        "systemctl"
            if a.iter()
                .any(|x| matches!(*x, "link" | "enable" | "reenable" | "preset"))
                && a.iter().any(|x| x.contains('/')) =>
        {
            Some(format!(
                "{program} links a unit file proctor has not read into systemd"
            ))
        }
        "pip" | "pip3" | "pipx" => matches!(
            subcommand(&a, &["--prefix", "--target", "-t", "--root"]),
            Some("install" | "download" | "wheel" | "run")
        )
        .then(scripts)
        .flatten(),
        "cargo" => matches!(
            subcommand(&a, &["--manifest-path", "-Z", "--config", "-C"]),
            Some(
                "build"
                    | "b"
                    | "run"
                    | "r"
                    | "test"
                    | "t"
                    | "bench"
                    | "check"
                    | "c"
                    | "install"
                    | "clippy"
                    | "doc"
                    | "d"
                    | "rustc"
                    | "fix"
            )
        )
        .then(scripts)
        .flatten(),
        "go" => matches!(
            subcommand(&a, &["-C"]),
            Some("run" | "generate" | "test" | "build" | "install")
        )
        .then(scripts)
        .flatten(),
        _ => None,
    }
}

/// git commands that write the work tree from the repository, a patch or a remote.
fn git(a: &[&str]) -> Option<String> {
    let global_values = ["-C", "--git-dir", "--work-tree", "--namespace", "-c"];
    let mut i = 0;
    while i < a.len() && a[i].starts_with('-') {
        if global_values.contains(&a[i]) {
            i += 1;
        }
        i += 1;
    }
    let sub = *a.get(i)?;
    let rest = &a[i + 1..];
    let writes = match sub {
        "apply" => !rest
            .iter()
            .any(|x| matches!(*x, "--check" | "--stat" | "--numstat" | "--summary")),
        "reset" => rest
            .iter()
            .any(|x| matches!(*x, "--hard" | "--merge" | "--keep")),
        "stash" => matches!(rest.first(), Some(&("pop" | "apply" | "branch"))),
        "worktree" => matches!(rest.first(), Some(&"add")),
        "submodule" => matches!(rest.first(), Some(&"update")),
        "read-tree" => rest.iter().any(|x| *x == "-u" || x.starts_with("--reset")),
        "am" | "clone" | "checkout" | "restore" | "switch" | "merge" | "pull" | "rebase"
        | "cherry-pick" | "revert" | "checkout-index" | "bisect" => true,
        _ => false,
    };
    writes.then(|| {
        format!(
            "git {sub} writes files named in the repository or patch (a repository rooted at /, \
             or --work-tree, reaches any path), which proctor cannot judge from the line"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::analyze;

    #[test]
    fn extraction_patches_and_scripts_are_hidden() {
        for line in [
            "tar xf /tmp/a.tar -C /",
            "tar -xPf /tmp/a.tar",
            "tar --extract -f a.tar",
            "tar --extr -f a.tar",
            "busybox tar xf /tmp/a.tar",
            "gzip -dc a.tgz | tar x -C /",
            "bsdtar -x -f a.tar",
            "unzip -o /tmp/a.zip -d /",
            "cpio -idm < /tmp/a.cpio",
            "cpio --extract < a",
            "ar x /tmp/a.a",
            "7z x a.7z -o/",
            "pax -r < a.pax",
            "patch -p0 < /tmp/a.patch",
            "git apply /tmp/a.patch",
            "git --work-tree=/ checkout .",
            "git -C / checkout .",
            "git restore --source=HEAD~ /etc/shadow",
            "git reset --hard HEAD~",
            "git stash pop",
            "git pull",
            "dpkg -i /tmp/x.deb",
            "rpm -Uvh /tmp/x.rpm",
            "npm install",
            "npm run build",
            "yarn",
            "npx cowsay",
            "pip install .",
            "cargo build",
            "go run .",
            "sudo tar xf a.tar -C /",
            "git clone /tmp/repo /etc/cron.d",
            "systemctl --user link /tmp/x.service",
            "systemctl enable /tmp/x.service",
        ] {
            let f = analyze(line);
            assert!(!f.hidden.is_empty(), "{line} should be hidden: {f:?}");
        }
        for line in [
            "tar tf a.tar",
            "tar czf /tmp/backup.tgz xdir",
            "tar -cf a.tar -X excludes .",
            "unzip -l a.zip",
            "unzip -p a.zip f",
            "patch --dry-run -p1 < a.patch",
            "git apply --check a.patch",
            "git status",
            "git log -p",
            "git diff",
            "git reset HEAD f",
            "git stash list",
            "dpkg -l",
            "rpm -qa",
            "npm ls",
            "pip list",
            "cargo --version",
            "go version",
            "systemctl enable nginx",
        ] {
            let f = analyze(line);
            assert!(f.hidden.is_empty(), "{line}: {f:?}");
        }
    }
}
