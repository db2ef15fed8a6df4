//! What the reader knows about programs by name: which are shells, which interpret code of
//! another language, which only look (so a run-time argument cannot make them do harm), where
//! real programs live, and the long options of the programs default rules match on.

/// Shells whose `-c` code the reader reads as shell code.
const POSIX_SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "lksh", "pdksh", "oksh", "loksh", "ash",
    "hush", "yash", "posh", "rbash",
];

/// Shells with a syntax of their own: their code is not read.
const OTHER_SHELLS: &[&str] = &[
    "fish",
    "csh",
    "tcsh",
    "nu",
    "xonsh",
    "elvish",
    "pwsh",
    "powershell",
    "rc",
    "es",
    "ion",
    "oil",
    "osh",
    "ysh",
];

/// Interpreters, debuggers and database clients that read commands from their arguments,
/// files, standard input or a terminal. Versioned names (`python3.12`, `lua5.4`, `php8.2`) are
/// recognised by their stem.
const INTERPRETERS: &[&str] = &[
    "python",
    "python2",
    "python3",
    "pypy",
    "pypy3",
    "ipython",
    "ipython3",
    "perl",
    "perl5",
    "ruby",
    "irb",
    "pry",
    "jruby",
    "node",
    "nodejs",
    "deno",
    "bun",
    "php",
    "lua",
    "luajit",
    "tclsh",
    "wish",
    "expect",
    "R",
    "Rscript",
    "julia",
    "octave",
    "gdb",
    "lldb",
    "pdb",
    "psql",
    "mysql",
    "mariadb",
    "sqlite3",
    "sqlite",
    "redis-cli",
    "mongo",
    "mongosh",
    "cqlsh",
    "clickhouse-client",
    "groovy",
    "jshell",
    "scala",
    "ghci",
    "erl",
    "iex",
    "guile",
    "racket",
    "sbcl",
    "clisp",
    "ocaml",
    "dc",
    "ed",
    "ex",
    "jrunscript",
];

/// awk: its program is read for what can run or write (see [`awk_program_escapes`]).
const AWKS: &[&str] = &["awk", "gawk", "mawk", "nawk"];

/// Versioned interpreter names: the stem before the digits.
const VERSIONED: &[&str] = &[
    "python", "pypy", "perl", "ruby", "php", "lua", "tclsh", "node",
];

/// Programs that only read and print: an argument known only at run time cannot make them
/// write, run or signal anything. Everything else with such an argument is hidden.
const LOOK_ONLY: &[&str] = &[
    "echo",
    "printf",
    "cat",
    "ls",
    "cd",
    "pwd",
    "test",
    "[",
    "[[",
    "]]",
    "true",
    "false",
    ":",
    "head",
    "tail",
    "wc",
    "grep",
    "egrep",
    "fgrep",
    "zgrep",
    "stat",
    "du",
    "df",
    "id",
    "whoami",
    "groups",
    "sleep",
    "basename",
    "dirname",
    "realpath",
    "readlink",
    "printenv",
    "which",
    "type",
    "exit",
    "return",
    "shift",
    "wait",
    "jobs",
    "diff",
    "cmp",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "b2sum",
    "cksum",
    "file",
    "getent",
    "nproc",
    "uname",
    "unset",
    "read",
    "let",
    "set",
    "expr",
    "seq",
    "yes",
    "numfmt",
    "jq",
    "column",
    "fold",
    "fmt",
    "nl",
    "od",
    "hexdump",
    "xxd",
    "strings",
    "rev",
    "tac",
    "comm",
    "join",
    "paste",
    "cut",
    "tr",
    "base64",
    "base32",
];

/// Directories real programs are installed in; a program named by another path runs a file
/// proctor has not read (`./x.sh`, `/tmp/x`).
const BIN_DIRS: &[&str] = &[
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/games",
    "/usr/lib/openssh",
    "/usr/libexec/openssh",
    "/usr/lib/ssh",
    "/usr/libexec",
    "/etc/init.d",
];

/// Environment variables that change what later commands run (the program found, code run
/// at start-up or at every prompt): setting one is hidden.
pub const RISKY_VARIABLES: &[&str] = &[
    "PATH",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "histchars",
    "INPUTRC",
    "SHELLOPTS",
    "BASHOPTS",
    "BASH_LOADABLES_PATH",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "NODE_OPTIONS",
    "GCONV_PATH",
    "IFS",
    "CDPATH",
    // An interactive bash expands MAILPATH's messages (command substitutions included) before
    // a prompt once the file changes.
    "MAILPATH",
    // Which files a glob or a `PATH` search may find.
    "GLOBIGNORE",
    "EXECIGNORE",
    "GIT_SSH_COMMAND",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "SYSTEMD_PAGER",
    "LESSOPEN",
    // A judged shell starts its pagers and editors quiet (`PAGER=cat`, `LESSSECURE=1`,
    // `EDITOR=false`): these would let `less` run commands again, or start another program.
    "LESSSECURE",
    "SYSTEMD_PAGERSECURE",
    "LESS",
    "LESSKEY",
    "LESSKEYIN",
    "LESSKEY_CONTENT",
    "LESSEDIT",
    "LESSCLOSE",
    "SYSTEMD_LESS",
    "MANOPT",
    "BROWSER",
    "FCEDIT",
    // `BASH_CMDS[ls]=/tmp/x` is `hash -p /tmp/x ls`.
    "BASH_CMDS",
    "BASH_ALIASES",
];

/// Programs that run commands later or inside a terminal of their own, where proctor does
/// not judge them (`crontab -l` only lists).
pub fn runs_elsewhere(program: &str, args: &[super::words::Word]) -> bool {
    match program {
        "at" | "batch" | "tmux" | "screen" | "byobu" | "dtach" | "abduco" | "expect" => !args
            .iter()
            .any(|a| matches!(a.text.as_str(), "-V" | "-v" | "-l" | "-ls" | "ls")),
        "crontab" => !args.iter().any(|a| a.text == "-l"),
        _ => false,
    }
}

/// Shell builtins that change what later commands run: `enable -f` loads a shared object,
/// `hash -p` binds a name to a path, `bind -x` binds a key to code, `fc` re-runs history.
pub fn builtin_changes_later_commands(program: &str, args: &[super::words::Word]) -> bool {
    let has = |flag: char| {
        args.iter().any(|a| {
            a.text.starts_with('-') && !a.text.starts_with("--") && a.text[1..].contains(flag)
        })
    };
    match program {
        "enable" => has('f'),
        "hash" => has('p'),
        "bind" => has('x'),
        "fc" => !has('l'),
        "complete" | "compgen" => has('C') || has('F'),
        _ => false,
    }
}

pub fn is_posix_shell(p: &str) -> bool {
    POSIX_SHELLS.contains(&p)
}

pub fn is_other_shell(p: &str) -> bool {
    OTHER_SHELLS.contains(&p)
}

pub fn is_interpreter(p: &str) -> bool {
    if INTERPRETERS.contains(&p) {
        return true;
    }
    VERSIONED.iter().any(|stem| {
        p.strip_prefix(stem).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
        })
    })
}

pub fn is_awk(p: &str) -> bool {
    AWKS.contains(&p)
}

/// An awk program that can run a command or write a file: `system(...)`, a pipe to or from a
/// command, output redirected to a file (`print > "f"`, `print >> f`). A comparison with a
/// number (`$3 > 100`) is not a redirection.
pub fn awk_program_escapes(program: &str) -> bool {
    if program.contains("system") || program.contains('|') {
        return true;
    }
    let b = program.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'>'
            && b[i + 1..]
                .iter()
                .find(|x| !matches!(x, b' ' | b'\t' | b'>' | b'='))
                .is_some_and(|x| !x.is_ascii_digit() && *x != b'(' && *x != b'-' && *x != b'$')
    })
}

pub fn looks_only(p: &str) -> bool {
    LOOK_ONLY.contains(&p)
}

/// A path naming a program outside the directories programs live in.
pub fn is_script_path(word: &str) -> bool {
    if !word.contains('/') {
        return false;
    }
    let path = super::normalize_path(word);
    match path.rsplit_once('/') {
        Some((dir, name)) => !name.is_empty() && !BIN_DIRS.contains(&dir),
        None => true,
    }
}

/// `/etc/init.d/NAME`: a System V service script, judged as `service NAME ...`.
pub fn init_script(word: &str) -> Option<String> {
    let path = super::normalize_path(word);
    path.strip_prefix("/etc/init.d/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .map(str::to_string)
}

mod long_options;
pub use long_options::full_long_option;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        assert!(is_interpreter("python3.12") && is_interpreter("lua5.4") && is_interpreter("R"));
        assert!(!is_interpreter("python-config") && !is_interpreter("ls"));
        assert!(is_script_path("./x.sh") && is_script_path("/tmp/x") && is_script_path("x/y"));
        assert!(!is_script_path("/usr/bin/sudo") && !is_script_path("/usr/bin//../bin/id"));
        assert!(is_script_path("/usr/bin/../../tmp/x"));
        assert_eq!(init_script("/etc/init.d/nginx").as_deref(), Some("nginx"));
        assert_eq!(
            full_long_option("rm", "--recur").as_deref(),
            Some("--recursive")
        );
        assert_eq!(
            full_long_option("rm", "--r").as_deref(),
            Some("--recursive")
        );
        assert_eq!(full_long_option("rm", "--recursive"), None);
        assert_eq!(full_long_option("rm", "--ve"), None, "ambiguous");
        assert_eq!(
            full_long_option("cp", "--target=/etc").as_deref(),
            Some("--target-directory=/etc")
        );
        assert_eq!(
            full_long_option("usermod", "--pass").as_deref(),
            Some("--password")
        );
    }
}
