//! Lines that change what later lines do, and programs whose keys proctor cannot judge.
//!
//! In a judged shell proctor judges each line as the target will run it; a line that changes
//! how the shell reads or runs later lines (an alias, a function, a trap, key bindings,
//! history, the terminal's line discipline, the prompt hooks) would make a later, harmless
//! looking line run something else, so it is `hidden`. Full-screen programs and programs that
//! can start a shell from inside read keys proctor does not see as lines: `hidden` too,
//! unless a rule allows them.

use super::words::Word;

fn literal_args(args: &[Word]) -> impl Iterator<Item = &str> {
    args.iter().map(|a| a.text.as_str())
}

fn has_short(args: &[Word], flags: &str) -> bool {
    literal_args(args).any(|a| {
        a.starts_with('-') && !a.starts_with("--") && a[1..].chars().any(|c| flags.contains(c))
    })
}

/// Why this builtin changes what later lines run, if it does.
pub fn changes_later_lines(program: &str, args: &[Word]) -> Option<&'static str> {
    match program {
        // `alias` alone or `alias name` lists; `alias name=code` defines.
        "alias" if literal_args(args).any(|a| a.contains('=')) => {
            Some("alias defines a name whose code runs where a later line uses it")
        }
        "unalias" => None,
        // `exec 2>/dev/null`, `exec 2>&-`: no command, only redirections, which then hold for
        // the shell itself: its prompts and errors (the judged shell's continuation marker
        // among them) could go where nobody sees them.
        "exec" if args.is_empty() => {
            Some("exec without a command redirects the shell's own input, output or errors")
        }
        "function" => Some("a function definition changes what a later command name runs"),
        "trap" => {
            let rest: Vec<&str> = literal_args(args).skip_while(|a| *a == "--").collect();
            let only_looks = rest.is_empty()
                || matches!(rest[0], "-p" | "-l" | "-P")
                || (rest[0] == "-" && rest.len() >= 2);
            (!only_looks)
                .then_some("trap sets code that runs later, at a signal or before commands")
        }
        // Listing and querying only: -l -p -P -s -S -v -V -q.
        "bind" => {
            let looks = !args.is_empty()
                && literal_args(args).all(|a| {
                    a.starts_with('-')
                        && a.len() > 1
                        && a[1..].chars().all(|c| "lpPsSvVq".contains(c))
                });
            (!looks).then_some("bind changes what keys do in the shell's line editor")
        }
        "set"
            if literal_args(args).any(|a| {
                matches!(
                    a,
                    "vi" | "emacs"
                        | "histexpand"
                        | "history"
                        | "functrace"
                        | "keyword"
                        | "-T"
                        | "+T"
                ) || (a.len() > 1
                    && (a.starts_with('-') || a.starts_with('+'))
                    && !a.starts_with("--")
                    && a[1..].chars().any(|c| matches!(c, 'H' | 'T' | 'k')))
            }) =>
        {
            // `set -k` makes `NAME=value` anywhere in a later command an assignment to its
            // environment (`ls LD_PRELOAD=/tmp/x.so` preloads), which the reader takes for an
            // argument.
            Some(
                "set changes line editing, history expansion, trap inheritance or where assignments may stand",
            )
        }
        "shopt" if has_short(args, "su") => {
            Some("shopt changes shell options (aliases, history, debugging traps)")
        }
        "enable" if literal_args(args).any(|a| !matches!(a, "-a" | "-p" | "-s")) => {
            Some("enable turns builtins on or off, or loads new ones")
        }
        "history" if has_short(args, "srna") => Some("history changes the shell's history"),
        "stty"
            if literal_args(args)
                .any(|a| !matches!(a, "-a" | "--all" | "-g" | "--save" | "size" | "speed")) =>
        {
            Some("stty changes the terminal's line discipline")
        }
        _ => None,
    }
}

/// Full-screen programs and programs that can start a shell or run commands from inside.
const INTERACTIVE: &[&str] = &[
    "vi",
    "vim",
    "nvim",
    "view",
    "vimdiff",
    "rvim",
    "ex",
    "nano",
    "pico",
    "emacs",
    "mg",
    "jed",
    "joe",
    "ed",
    "less",
    "more",
    "most",
    "pg",
    "man",
    "info",
    "top",
    "htop",
    "atop",
    "iotop",
    "btop",
    "gdb",
    "lldb",
    "pdb",
    "mc",
    "ranger",
    "nnn",
    "vifm",
    "tig",
    "ftp",
    "sftp",
    "telnet",
    "minicom",
    "irb",
    "ghci",
    "tclsh",
    "wish",
    "visudo",
    "vipw",
    "vigr",
    // Editors, pagers and browsers by their Debian alternative names, others with a shell
    // escape (`!` in w3m, lynx, mutt and mail's `~!`, `b` in ncdu).
    "editor",
    "sensible-editor",
    "pager",
    "sensible-pager",
    "sensible-browser",
    "w3m",
    "lynx",
    "links",
    "links2",
    "elinks",
    "mutt",
    "neomutt",
    "mail",
    "mailx",
    "s-nail",
    "bsd-mailx",
    "alpine",
    "pine",
    "ncdu",
    "lf",
    "micro",
    "mcedit",
    "kak",
    "hx",
    "nvi",
    "vim.basic",
    "vim.tiny",
    "vim.nox",
    "ne",
    "zile",
    "jove",
    "vimtutor",
    "ipython",
    "ipython3",
    "bpython",
];

pub fn interactive_program(program: &str) -> bool {
    INTERACTIVE.contains(&program)
}

/// `name () ...` or `name() {` somewhere in the text: a function definition. Read on the raw
/// text (the lexer turns parentheses into separators), so a quoted `f()` also counts: the
/// reading stays on the side of holding.
pub fn defines_function(text: &str) -> bool {
    if text
        .split(|c: char| c.is_whitespace() || ";&|(){}".contains(c))
        .any(|w| w == "function")
    {
        return true;
    }
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find('(') {
        let open = i + off;
        i = open + 1;
        let mut j = open + 1;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j >= b.len() || b[j] != b')' {
            continue;
        }
        let mut k = open;
        while k > 0 && (b[k - 1] == b' ' || b[k - 1] == b'\t') {
            k -= 1;
        }
        let end = k;
        while k > 0
            && (b[k - 1].is_ascii_alphanumeric() || matches!(b[k - 1], b'_' | b'-' | b':' | b'.'))
        {
            k -= 1;
        }
        // A name, not `$(`, `<(`, `>(` or `@(` (extended globs).
        if end > k
            && (k == 0
                || !matches!(
                    b[k - 1],
                    b'$' | b'<' | b'>' | b'@' | b'!' | b'+' | b'*' | b'?'
                ))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::analyze;

    #[track_caller]
    fn hidden(line: &str) {
        assert!(!analyze(line).hidden.is_empty(), "{line} should be hidden");
    }

    #[track_caller]
    fn clear(line: &str) {
        let f = analyze(line);
        assert!(f.hidden.is_empty(), "{line}: {f:?}");
    }

    #[test]
    fn lines_that_change_later_lines_are_hidden() {
        for line in [
            "alias ls='ls --color'",
            "alias x=id",
            "ls() { id; }",
            "function ls { id; }",
            "cd () { builtin cd \"$@\"; }",
            "trap 'rm -r /x' DEBUG",
            "trap id EXIT",
            "bind '\"\\C-u\": \"rm -r /victim #\"'",
            "bind -x '\"\\C-a\": id'",
            "bind -f /tmp/inputrc",
            "set -o vi",
            "set -o emacs",
            "set -H",
            "set -o histexpand",
            "shopt -s expand_aliases",
            "shopt -u extdebug",
            "PROMPT_COMMAND='id'",
            "export PS0='$(id)'",
            "PS2='$(id)'",
            "histchars='+^#'",
            "IFS=x",
            "BASH_ENV=/tmp/x",
            "enable -n cd",
            "enable -f /tmp/x.so x",
            "source /tmp/x",
            ". /tmp/x",
            "stty -echo",
            "stty raw",
            "history -s 'rm -r /x'",
            "history -r /tmp/h",
            "fc -s",
            "set -k",
            "set -o keyword",
            "set -ek",
            "MAILPATH='/tmp/m?$(id)'",
            "GLOBIGNORE=x",
            "EXECIGNORE=/usr/bin/ls",
            "exec python3",
            "exec bash",
            "vim /etc/hosts",
            "less /var/log/syslog",
            "man bash",
            "top",
            "gdb -p 1",
        ] {
            hidden(line);
        }
    }

    #[test]
    fn interpreters_reading_the_session_are_interactive() {
        for line in [
            "bash",
            "sh -",
            "bash -i",
            "python3",
            "exec bash",
            "sudo -u x bash",
        ] {
            assert!(analyze(line).interactive, "{line}");
        }
        for line in [
            "bash -c 'id'",
            "python3 x.py",
            "bash x.sh",
            "ls",
            "python3 -c 'print(1)'",
        ] {
            assert!(!analyze(line).interactive, "{line}");
        }
    }

    #[test]
    fn looking_is_not_hidden() {
        for line in [
            "alias",
            "alias ll",
            "trap -p",
            "trap -l",
            "trap - INT",
            "bind -l",
            "bind -p",
            "set -e",
            "set -o",
            "shopt expand_aliases",
            "enable -a",
            "history",
            "history 5",
            "stty size",
            "stty -a",
            "stty",
            "echo 'a (b) c'",
            "echo $(date)",
            "diff <(ls a) <(ls b)",
            "fc -l",
        ] {
            clear(line);
        }
    }
}
