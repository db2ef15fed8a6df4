//! Programs that run shell commands named in their own arguments or files: `sed`'s `e`
//! command and `s///e` flag, `tar --to-command`, `zip -TT`, `git -c core.pager=...` or an
//! alias starting with `!`, `rsync -e`, `make` (its recipes), `mapfile -C`. What such an argument runs is a
//! command proctor has not judged, so the line is `hidden`.

use super::words::Word;

/// Why this command runs commands (or writes files) named inside its arguments.
pub fn runs_commands(program: &str, args: &[Word]) -> Option<String> {
    match program {
        "sed" | "gsed" => sed(args),
        "tar" | "gtar" | "bsdtar" => tar(args),
        "zip" => args
            .iter()
            .any(|a| a.text == "-TT" || long_prefix(&a.text, &["unzip-command"], 3))
            .then(|| "zip -TT runs a command named in its arguments".to_string()),
        "git" => git(args),
        // `mapfile -C CODE -c N` runs CODE every N lines read.
        "mapfile" | "readarray" => args
            .iter()
            .take_while(|a| a.text != "--")
            .any(|a| a.text.starts_with('-') && a.text.contains('C'))
            .then(|| format!("{program} -C runs a callback of shell code")),
        "rsync" => rsync(args),
        "ssh" | "scp" | "sftp" => ssh_options(program, args),
        // `systemctl edit`, `kubectl edit`, `virsh edit`: an editor, which can start a shell.
        "systemctl" | "kubectl" | "virsh" if args.iter().any(|a| a.text == "edit") => Some(
            format!("{program} edit opens an editor, which can run commands"),
        ),
        p if RUNS_ITS_ARGUMENTS.contains(&p) => (!args
            .iter()
            .any(|a| matches!(a.text.as_str(), "--version" | "-V" | "--help" | "-h")))
        .then(|| {
            format!("{program} runs a command from its arguments, which proctor does not follow")
        }),
        "make" | "gmake" | "ninja" => (!args
            .iter()
            .any(|a| matches!(a.text.as_str(), "--version" | "-v" | "--help" | "-h")))
        .then(|| format!("{program} runs the recipes of a file proctor has not read")),
        _ => None,
    }
}

/// Variables that name a command git, systemd, sudo, ssh, rsync, tar or make runs (or
/// options that do): setting one changes what a later, harmless-looking command runs.
pub const COMMAND_VARIABLES: &[&str] = &[
    "GIT_PAGER",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
    "GIT_EXTERNAL_DIFF",
    "GIT_SSH",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_PROXY_COMMAND",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_EXEC_PATH",
    "SYSTEMD_EDITOR",
    "SUDO_EDITOR",
    "MANPAGER",
    "RSYNC_RSH",
    "RSYNC_CONNECT_PROG",
    "TAR_OPTIONS",
    // Options unzip reads before its own (`UNZIP=-:` keeps `../` in member names).
    "UNZIP",
    "UNZIPOPT",
    "MAKEFLAGS",
];

/// Programs that run a command (or a shell) given in their arguments, with an option grammar
/// proctor does not read: what they run is not judged, so the line is hidden (`sudo`, `env`,
/// `nice`, `timeout`... are followed instead; see `wrappers`).
const RUNS_ITS_ARGUMENTS: &[&str] = &[
    "toybox",
    "setpriv",
    "sg",
    "newgrp",
    "runcon",
    "prlimit",
    "cgexec",
    "firejail",
    "bwrap",
    "systemd-nspawn",
    "dbus-launch",
    "dbus-run-session",
    "unbuffer",
    "faketime",
    "catchsegv",
    "valgrind",
    "perf",
    "eatmydata",
    "fakeroot",
    "fakechroot",
    "proot",
    "torsocks",
    "torify",
    "proxychains",
    "proxychains4",
    "tsocks",
    "numactl",
    "cset",
    "daemonize",
    "start-stop-daemon",
    "machinectl",
    "run0",
    "capsh",
    "schroot",
    "lxc-attach",
    "xvfb-run",
    "with-lock-ex",
    "lckdo",
    "chpst",
    "softlimit",
    "setuidgid",
    "envuidgid",
    "pipx",
    "npx",
    "uvx",
];

/// `ssh -o ProxyCommand=...` (and the other options naming a local command), `-F` with a
/// configuration file proctor has not read, `scp`/`sftp -S PROGRAM` and `sftp -D`.
fn ssh_options(program: &str, args: &[Word]) -> Option<String> {
    const COMMANDS: &[&str] = &[
        "proxycommand",
        "localcommand",
        "permitlocalcommand",
        "knownhostscommand",
        "match",
        "include",
        "proxyusefdpass",
        "remotecommand",
    ];
    for (k, a) in args.iter().enumerate() {
        let t = a.text.as_str();
        if !t.starts_with('-') || t.starts_with("--") {
            continue;
        }
        let value = |flag: char| -> Option<String> {
            let at = t.find(flag)?;
            let after = &t[at + 1..];
            Some(if after.is_empty() {
                args.get(k + 1).map(|w| w.text.clone()).unwrap_or_default()
            } else {
                after.to_string()
            })
        };
        if let Some(o) = value('o') {
            let key = o.trim_start().to_ascii_lowercase();
            if COMMANDS.iter().any(|c| key.starts_with(c)) {
                return Some(format!("{program} -o {o} runs a local command"));
            }
        }
        if t.contains('F') || (program != "ssh" && (t.contains('S') || t.contains('D'))) {
            return Some(format!(
                "{program} {t} runs a program or reads a configuration proctor has not read"
            ));
        }
        if !a.is_literal() {
            return Some(format!("{program} takes an option known only at run time"));
        }
    }
    None
}

/// `--NAME[=...]` where NAME is at least `min` characters and a prefix of one of `names`
/// (GNU tools accept unambiguous prefixes of long options).
fn long_prefix(arg: &str, names: &[&str], min: usize) -> bool {
    let Some(long) = arg.strip_prefix("--") else {
        return false;
    };
    let name = long.split('=').next().unwrap_or(long);
    name.len() >= min && names.iter().any(|n| n.starts_with(name))
}

fn sed(args: &[Word]) -> Option<String> {
    let mut scripts: Vec<&Word> = Vec::new();
    let mut operand_script = true;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let t = a.text.as_str();
        if t == "--" {
            break;
        }
        if long_prefix(t, &["file"], 2) {
            return Some("sed runs a script file proctor has not read".into());
        }
        if long_prefix(t, &["expression"], 2) {
            operand_script = false;
            match t.split_once('=') {
                Some(_) => scripts.push(a),
                None => scripts.extend(args.get(i + 1)),
            }
            i += if t.contains('=') { 1 } else { 2 };
            continue;
        }
        if t.starts_with('-') && !t.starts_with("--") && t.len() > 1 {
            // A short cluster: `-ne SCRIPT`, `-escript`, `-f FILE`, `-l 80`, `-i.bak`.
            let body = &t[1..];
            if let Some(k) = body.find(['e', 'f', 'l', 'i']) {
                match &body[k..k + 1] {
                    "f" => return Some("sed runs a script file proctor has not read".into()),
                    "e" => {
                        operand_script = false;
                        if body.len() > k + 1 {
                            scripts.push(a);
                        } else {
                            scripts.extend(args.get(i + 1));
                            i += 1;
                        }
                    }
                    "l" if body.len() == k + 1 => i += 1,
                    _ => {}
                }
            }
            i += 1;
            continue;
        }
        if operand_script {
            scripts.push(a);
        }
        break;
    }
    for s in scripts {
        if !s.is_literal() {
            return Some("sed runs a script known only at run time".into());
        }
        // `-escript` clusters: read from the `e` on; the leading letters cannot add a command.
        if let Some(why) = sed_script_escapes(&s.text) {
            return Some(why.into());
        }
    }
    None
}

/// Why a sed script runs commands or writes files: the `e` command or `s///e` flag, `w`/`W`
/// commands and the `w` flag. A script proctor cannot parse counts as running commands.
fn sed_script_escapes(script: &str) -> Option<&'static str> {
    let c: Vec<char> = script.chars().collect();
    let runs =
        "a sed script that runs commands or writes files (the e command, e or w flags, w, W)";
    let mut i = 0;
    let skip_to_eol = |i: &mut usize| {
        while *i < c.len() && c[*i] != '\n' {
            *i += 1;
        }
    };
    // Reads a delimited part, escapes included; false when it does not end.
    let delimited = |i: &mut usize, d: char| -> bool {
        while *i < c.len() {
            if c[*i] == '\\' {
                *i += 2;
                continue;
            }
            if c[*i] == d {
                *i += 1;
                return true;
            }
            *i += 1;
        }
        false
    };
    while i < c.len() {
        // Addresses: numbers, `$`, `/re/`, `\cREc`, `first~step`, `addr,+N`, `!`.
        loop {
            match c.get(i) {
                Some(' ' | '\t' | '\n' | ';' | '!' | ',' | '~' | '+' | '$' | '{' | '}') => i += 1,
                Some(d) if d.is_ascii_digit() => i += 1,
                Some('/') => {
                    i += 1;
                    if !delimited(&mut i, '/') {
                        return Some(runs);
                    }
                    while matches!(c.get(i), Some('I' | 'M')) {
                        i += 1;
                    }
                }
                Some('\\') => {
                    let Some(&d) = c.get(i + 1) else {
                        return Some(runs);
                    };
                    i += 2;
                    if !delimited(&mut i, d) {
                        return Some(runs);
                    }
                }
                _ => break,
            }
        }
        let Some(&cmd) = c.get(i) else {
            break;
        };
        i += 1;
        match cmd {
            's' | 'y' => {
                let Some(&d) = c.get(i) else {
                    return Some(runs);
                };
                i += 1;
                if !delimited(&mut i, d) || !delimited(&mut i, d) {
                    return Some(runs);
                }
                if cmd == 's' {
                    while let Some(&f) = c.get(i) {
                        match f {
                            'e' | 'w' | 'W' => return Some(runs),
                            'g' | 'p' | 'i' | 'I' | 'm' | 'M' => i += 1,
                            d if d.is_ascii_digit() => i += 1,
                            _ => break,
                        }
                    }
                }
            }
            'e' | 'w' | 'W' => return Some(runs),
            // Text or a file name to the end of the line.
            'a' | 'i' | 'c' | 'r' | 'R' | ':' | '#' => skip_to_eol(&mut i),
            // A label or a number up to `;`.
            'b' | 't' | 'T' | 'q' | 'Q' | 'l' | 'L' => {
                while i < c.len() && !matches!(c[i], ';' | '\n' | '}') {
                    i += 1;
                }
            }
            'd' | 'D' | 'g' | 'G' | 'h' | 'H' | 'n' | 'N' | 'p' | 'P' | 'x' | 'z' | '=' | 'F' => {}
            _ => return Some(runs),
        }
    }
    None
}

fn tar(args: &[Word]) -> Option<String> {
    const RUNS: &[&str] = &[
        "to-command",
        "checkpoint-action",
        "use-compress-program",
        "info-script",
        "new-volume-script",
        "rsh-command",
        "rmt-command",
    ];
    for (k, a) in args.iter().enumerate() {
        let t = a.text.as_str();
        // `-I PROG` / `-F SCRIPT` in a short cluster, or the old `tar xIf` first word.
        let cluster =
            (t.starts_with('-') && !t.starts_with("--")) || (k == 0 && !t.starts_with('-'));
        if long_prefix(t, RUNS, 3)
            || (cluster && t.contains(['I', 'F']))
            || (!a.is_literal() && t.starts_with('-'))
        {
            return Some(format!(
                "tar runs a command named in its options ({})",
                t.replace(super::words::DYNAMIC, "$(...)")
            ));
        }
    }
    None
}

fn git(args: &[Word]) -> Option<String> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        let t = a.text.as_str();
        if t == "-c" || t.starts_with("--config-env") || (t.starts_with("-c") && t.len() > 2) {
            return Some(
                "git -c sets configuration that can run commands (pagers, aliases, hooks)".into(),
            );
        }
        if !t.starts_with('-') {
            // The subcommand: `git config NAME VALUE` sets what later git commands run.
            let rest: Vec<&str> = args[i + 1..].iter().map(|w| w.text.as_str()).collect();
            let reads = rest.iter().any(|r| {
                matches!(
                    *r,
                    "-l" | "--list" | "--get" | "--get-all" | "--get-regexp" | "--show-origin"
                ) || matches!(*r, "list" | "get")
            });
            let values = rest.iter().filter(|r| !r.starts_with('-')).count();
            if t == "config" && !reads && values >= 2 {
                return Some(
                    "git config sets configuration that can make later git commands run others"
                        .into(),
                );
            }
            return None;
        }
        // Global options that take a value: `-C DIR`, `--git-dir DIR`...
        if matches!(t, "-C" | "--git-dir" | "--work-tree" | "--namespace") {
            i += 1;
        }
        i += 1;
    }
    None
}

fn rsync(args: &[Word]) -> Option<String> {
    // On the server side (`rsync --server -logDtpre.iLsfxCIvu`) `-e` carries the client's
    // protocol capabilities, not a command.
    if args.iter().any(|a| a.text == "--server") {
        return None;
    }
    for (k, a) in args.iter().enumerate() {
        let t = a.text.as_str();
        let value = if long_prefix(t, &["rsh"], 3) {
            match t.split_once('=') {
                Some((_, v)) => Some(v.to_string()),
                None => args.get(k + 1).map(|w| w.text.clone()),
            }
        } else if t.starts_with('-') && !t.starts_with("--") && t.contains('e') {
            let after = &t[t.find('e').map_or(t.len(), |p| p + 1)..];
            if after.is_empty() {
                args.get(k + 1).map(|w| w.text.clone())
            } else {
                Some(after.to_string())
            }
        } else {
            None
        };
        if let Some(v) = value {
            // `-e ssh`, `-e 'ssh -p 2222'`: plain ssh with options that run nothing else.
            let words: Vec<&str> = v.split_whitespace().collect();
            let plain_ssh = words.first() == Some(&"ssh")
                && !words[1..]
                    .iter()
                    .any(|w| w.starts_with("-o") || w.starts_with("-F") || !w.is_ascii())
                && !v.contains(['$', '`', ';', '|', '&', '\'', '"', '\\', '(']);
            if !plain_ssh {
                return Some(format!("rsync -e runs a command of its own ({v})"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Option<String> {
        let mut words = line.split_whitespace();
        let program = words.next().unwrap_or_default();
        let args: Vec<Word> = words.map(Word::literal).collect();
        runs_commands(program, &args)
    }

    #[test]
    fn commands_inside_arguments() {
        for line in [
            "sed s|.*|id|e",
            "sed -n 1e\\ id /etc/hostname",
            "sed -e p -e 1e /x",
            "sed --expr=s/a/b/w/etc/shadow /x",
            "sed -f script.sed /x",
            "sed 1w/tmp/out /x",
            "tar xf t.tar --to-command=sh",
            "tar xf t.tar --to-com=sh",
            "tar -cf x.tar --checkpoint=1 --checkpoint-action=exec=sh .",
            "tar -xIsh -f t.tar",
            "tar xIf sh t.tar",
            "zip z.zip f -T -TT sh",
            "git -c core.pager=sh log",
            "git -c alias.x=!sh x",
            "git config alias.x !sh",
            "rsync -e sh\\ -c x h:/y",
            "rsync --rsh=sh a h:/b",
            "rsync -avze ./sh a h:/b",
            "make",
            "make -f /tmp/M",
            "mapfile -C f -c 1",
            "readarray -tC f",
            "run0 id",
            "sg grp -c id",
            "toybox rm -r /v",
            "start-stop-daemon --start --exec /bin/rm -- -r /v",
            "ssh -oProxyCommand=sh h id",
            "ssh -o proxycommand=sh h id",
            "scp -S ./x a h:b",
            "sftp -D ./x",
            "systemctl edit nginx",
        ] {
            assert!(run(line).is_some(), "{line}");
        }
        for line in [
            "sed s/hello/world/g /x",
            "sed -n /err/p /x",
            "sed -i.bak s/a/b/ /x",
            "sed -e 1d -e $d /x",
            "tar xf t.tar -C /tmp",
            "tar -czf x.tgz dir",
            "zip -r z.zip dir",
            "git log -p",
            "git config --get user.name",
            "git -C /srv/app status",
            "rsync -avz -e ssh a h:/b",
            "rsync -av a /b",
            "rsync --server -logDtpre.iLsfxCIvu . /dst/",
            "rsync --server --sender -re.iLsfxCIvu . /src/",
            "make --version",
            "mapfile -t lines",
            "ssh -p 22 -o BatchMode=yes h uptime",
            "scp -P 22 a h:b",
        ] {
            assert_eq!(run(line), None, "{line}");
        }
    }
}
