//! Files that run commands later: shell and tool start-up files, sshd's per-user files, git's
//! configuration and hooks, per-user and system services, scheduled jobs, Python's `.pth` and
//! `sitecustomize` files, and the system's login and privilege configuration. A write to one is
//! allowed now and runs an unjudged command later (sshd's bash reads `~/.bashrc` even for
//! `ssh box true`; sshd runs `~/.ssh/rc` at every login; `core.fsmonitor` runs on
//! `git status`), so it is `hidden`: proctor cannot judge what, or when, it will run.
//!
//! Files with a name of their own (`.bashrc`, `.ssh/rc`, `.git/hooks/pre-commit`) count in any
//! directory, so a relative path counts whatever the working directory is. Directories whose
//! entries may have any name (`/etc/cron.d/`) count only for an absolute path inside them: a
//! relative name could land in any directory, and counting every relative write would hold
//! them all (a limit written in policies/README.md).

/// File names that shells, editors and tools read and run from (in a home directory, but
/// counted anywhere: the home is not known).
const DOTFILES: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".bash_aliases",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".zlogout",
    ".kshrc",
    ".mkshrc",
    ".cshrc",
    ".tcshrc",
    ".login",
    ".logout",
    ".inputrc",
    ".envrc",
    ".pam_environment",
    ".xinitrc",
    ".xsession",
    ".xsessionrc",
    ".xprofile",
    ".gitconfig",
    ".vimrc",
    ".exrc",
    ".gvimrc",
    ".lesskey",
    ".lessfilter",
    ".pythonrc",
    ".pythonrc.py",
    ".npmrc",
    ".yarnrc",
    ".curlrc",
    ".wgetrc",
    ".gdbinit",
    ".screenrc",
    ".tmux.conf",
    ".psqlrc",
    ".sqliterc",
    ".irbrc",
    ".Rprofile",
    ".perldb",
    ".mailcap",
    ".forward",
    "sitecustomize.py",
    "usercustomize.py",
];

/// Names git runs as hooks, and the suffixes of systemd units and autostart entries: counted
/// in any directory, since a relative write after a `cd .git/hooks` (or into
/// `~/.config/systemd/user`) on an earlier line lands in a directory proctor does not know.
const HOOK_NAMES: &[&str] = &[
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "proc-receive",
    "post-receive",
    "post-update",
    "reference-transaction",
    "push-to-checkout",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
    "fsmonitor-watchman",
    "post-index-change",
];
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".timer",
    ".socket",
    ".path",
    ".mount",
    ".automount",
    ".desktop",
];

/// Directories below a home (or anywhere, for `.git`) whose entries run or configure commands.
const DOT_DIRS: &[&str] = &[
    ".bashrc.d",
    ".profile.d",
    ".zshrc.d",
    ".config/systemd",
    ".config/autostart",
    ".config/git",
    ".config/fish",
    ".local/share/systemd",
    ".git/hooks",
];

/// Files in `.ssh` that sshd reads at login.
const SSH_FILES: &[&str] = &[
    "rc",
    "environment",
    "authorized_keys",
    "authorized_keys2",
    "config",
];

/// System files that run commands, or say who may run them, at login, at boot, on a schedule
/// or for every program.
const SYSTEM_FILES: &[&str] = &[
    "/etc/profile",
    "/etc/bash.bashrc",
    "/etc/bashrc",
    "/etc/zshrc",
    "/etc/zshenv",
    "/etc/zprofile",
    "/etc/zlogin",
    "/etc/zsh/zshrc",
    "/etc/zsh/zshenv",
    "/etc/zsh/zprofile",
    "/etc/zsh/zlogin",
    "/etc/environment",
    "/etc/inputrc",
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/rc.local",
    "/etc/crontab",
    "/etc/anacrontab",
    "/etc/sudoers",
    "/etc/gitconfig",
];

/// System directories whose entries (any name) run commands or configure who runs what.
const SYSTEM_DIRS: &[&str] = &[
    "/etc/profile.d",
    "/etc/cron.d",
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/etc/sudoers.d",
    "/etc/ld.so.conf.d",
    "/etc/systemd",
    "/etc/init.d",
    "/etc/rc0.d",
    "/etc/rc1.d",
    "/etc/rc2.d",
    "/etc/rc3.d",
    "/etc/rc4.d",
    "/etc/rc5.d",
    "/etc/rc6.d",
    "/etc/rcS.d",
    "/etc/update-motd.d",
    "/etc/environment.d",
    "/etc/pam.d",
    "/etc/security",
    "/etc/ssh",
    "/etc/apt/apt.conf.d",
    "/etc/logrotate.d",
    "/etc/udev/rules.d",
    "/etc/xdg/autostart",
    "/etc/X11/Xsession.d",
    "/etc/modprobe.d",
    "/etc/NetworkManager/dispatcher.d",
    "/etc/network/if-up.d",
    "/etc/network/if-down.d",
    "/etc/network/if-pre-up.d",
    "/etc/network/if-post-down.d",
    "/lib/systemd",
    "/usr/lib/systemd",
    "/usr/local/lib/systemd",
    "/var/spool/cron",
    "/var/spool/at",
    "/var/spool/anacron",
];

/// Where home directories usually are: a tree written at or above one may receive dotfiles.
const HOMES: &[&str] = &["/root", "/home", "/var/home", "/var/lib", "/srv"];

fn inside(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Why a write to `path` (normalised; absolute, or relative to a directory proctor does not
/// know) runs commands later, if it may.
pub fn runs_later(path: &str) -> Option<String> {
    let path = path.trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let name = parts.last().copied().unwrap_or("");
    let parent = parts.len().checked_sub(2).map(|i| parts[i]);
    let why = |what: &str| {
        Some(format!(
            "writes {what}, which runs commands later that proctor does not judge"
        ))
    };
    if DOTFILES.contains(&name) {
        return why(&format!("a start-up file ({name})"));
    }
    if let Some(why) = command_stream(path, &parts) {
        return Some(why);
    }
    if HOOK_NAMES.contains(&name) {
        return why(&format!("a file git runs as a hook ({name})"));
    }
    if let Some(suffix) = UNIT_SUFFIXES.iter().find(|x| name.ends_with(*x)) {
        return why(&format!("a service or autostart entry ({suffix})"));
    }
    if name.ends_with(".pth")
        && parent.is_some_and(|p| p == "site-packages" || p == "dist-packages")
    {
        return why("a Python .pth file");
    }
    if parent == Some(".ssh") && SSH_FILES.contains(&name) {
        return why(&format!("sshd's per-user file (.ssh/{name})"));
    }
    if parent == Some(".git") && name == "config" {
        return why("a git repository's configuration");
    }
    let joined = parts.join("/");
    for d in DOT_DIRS {
        if joined == *d
            || joined.ends_with(&format!("/{d}"))
            || joined.starts_with(&format!("{d}/"))
            || joined.contains(&format!("/{d}/"))
        {
            return why(&format!("into {d}"));
        }
    }
    if path.starts_with('/') {
        if SYSTEM_FILES.contains(&path) {
            return why(&format!("a system start-up or privilege file ({path})"));
        }
        if let Some(d) = SYSTEM_DIRS.iter().find(|d| inside(path, d)) {
            return why(&format!("into {d}"));
        }
    }
    None
}

/// A write that reaches the shell's own command stream or memory, or a kernel hook that runs a
/// program: a judged shell without a terminal reads its commands from a pipe, and
/// `echo 'rm -r /x' > /proc/self/fd/0` (the builtin's `self` is the shell) puts a line in it
/// that proctor never judged; `/proc/PID/mem` rewrites a running process; the kernel runs
/// `core_pattern` and `modprobe` programs as root. A relative `0` or `mem` counts too (after a
/// `cd /proc/self/fd` on an earlier line). `/dev/stdout`, `/dev/stderr` and `/dev/fd/1|2`
/// write output; duplicating the standard input onto them is hidden by the lexer.
fn command_stream(path: &str, parts: &[&str]) -> Option<String> {
    let why = || {
        Some(format!(
            "writes {path}, which may reach the shell's own input or memory (lines proctor never judged) or a program the kernel runs"
        ))
    };
    let name = parts.last().copied().unwrap_or("");
    if !path.starts_with('/') {
        let digits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
        return (digits || matches!(name, "mem" | "stdin"))
            .then(why)
            .flatten();
    }
    match parts {
        ["dev", "stdin"] | ["dev", "fd"] | ["dev", "fd", _, ..] if !matches!(name, "1" | "2") => {
            why()
        }
        ["proc", _, "fd", ..] | ["proc", _, "mem"] | ["proc", _, "task", _, "fd", ..] => why(),
        ["proc", _, "task", _, "mem"] => why(),
        ["proc", "sys", "kernel", "core_pattern" | "modprobe"]
        | ["sys", "kernel", "uevent_helper"]
        | ["proc", "sys", "fs", "binfmt_misc", ..] => why(),
        _ => None,
    }
}

/// Whether some file below the directory `dir` (a tree written by `scp -t`, `rsync`, `cp -r`,
/// a link target) may run commands later: a relative directory (it may be a home), a home
/// directory or any directory above one, or a directory at, above or inside a listed one.
pub fn tree_runs_later(dir: &str) -> Option<String> {
    // `host:path` (scp, rsync) is a directory on another host, relative to its login's home
    // there: judged as the same path here, since the host may be this one.
    let dir = match dir.split_once(':') {
        Some((host, path)) if !host.contains('/') => path,
        _ => dir,
    };
    let dir = dir.trim_end_matches('/');
    if let Some(why) = runs_later(dir) {
        return Some(why);
    }
    let why = Some(format!(
        "writes a directory tree ({}) that may receive start-up files or scheduled jobs, which run commands later that proctor does not judge",
        if dir.is_empty() { "/" } else { dir }
    ));
    if !dir.starts_with('/') && !dir.is_empty() {
        return why;
    }
    let above = |d: &str| dir.is_empty() || inside(d, dir);
    let home = HOMES.iter().any(|h| {
        above(h)
            || dir
                .strip_prefix(h)
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| !r.contains('/'))
    });
    if home
        || SYSTEM_DIRS.iter().any(|d| above(d))
        || SYSTEM_FILES.iter().any(|f| above(f))
        || dir
            .split('/')
            .any(|p| matches!(p, ".ssh" | ".config" | ".git" | ".local"))
    {
        return why;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_up_files_are_found_by_name_and_system_ones_by_place() {
        for p in [
            "/var/lib/proctor-agent/.bashrc",
            "~/.bashrc",
            ".profile",
            "/home/a/.ssh/rc",
            "~/.ssh/authorized_keys",
            ".git/hooks/pre-commit",
            "/srv/app/.git/config",
            "/srv/app/.git/hooks",
            "~/.config/systemd/user/x.service",
            "/usr/lib/python3/dist-packages/x.pth",
            "/etc/cron.d/job",
            "/etc/profile.d/x.sh",
            "/etc/ld.so.preload",
            "/var/spool/cron/crontabs/root",
            "/etc/sudoers.d/x",
            "/proc/self/fd/0",
            "/proc/1234/fd/0",
            "/dev/stdin",
            "/dev/fd/0",
            "/dev/fd/3",
            "/proc/1/mem",
            "/proc/sys/kernel/core_pattern",
            "0",
            "pre-commit",
            "evil.service",
            "x.timer",
        ] {
            assert!(runs_later(p).is_some(), "{p}");
        }
        for p in [
            "notes.txt",
            "job",
            "config",
            "/tmp/x",
            "/etc/hosts",
            "/srv/app/src/main.rs",
            "/home/a/notes.bashrc",
            "build.sh",
            "/dev/stdout",
            "/dev/stderr",
            "/dev/fd/2",
            "/dev/null",
            "out.1.log",
        ] {
            assert!(runs_later(p).is_none(), "{p}");
        }
    }

    #[test]
    fn trees_that_may_receive_them() {
        for d in [
            ".",
            "~",
            "",
            "/",
            "/etc",
            "/etc/",
            "/home",
            "/home/bob",
            "/root",
            "/var/lib/x",
            "/etc/cron.d",
            "/var",
            "/srv/app/.git",
            "/usr/lib",
        ] {
            assert!(tree_runs_later(d).is_some(), "{d}");
        }
        assert!(tree_runs_later("h:").is_some() && tree_runs_later("h:/dst/").is_none());
        for d in [
            "/tmp",
            "/tmp/upload/",
            "/srv/app/src",
            "/var/log",
            "/opt/app",
            "/home/bob/x/y",
        ] {
            assert!(tree_runs_later(d).is_none(), "{d}");
        }
    }
}
