//! How the target side of a judged shell is started.

use russh::Pty;

/// Directories searched for programs in a judged shell: a fixed `PATH`, so nothing the
/// target's rc files exported decides which program a judged word runs.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Pagers and editors read keys, not lines, and run commands from inside (`less`'s `!rm -r
/// /x`, vim's `:!`): an allowed `git log`, `systemctl status` or `journalctl` would start one,
/// and the next line the agent types, judged as a shell line, would be a command to it. So a
/// judged shell's pagers are `cat` and its editors refuse (`false`); a `less` started anyway
/// (or through a pager setting proctor did not see) runs in its secure mode, without shell
/// commands, pipes, editors or log files. Lines that set or unset these are `hidden`.
const QUIET_PROGRAMS: &str = "PAGER=cat GIT_PAGER=cat SYSTEMD_PAGER=cat MANPAGER=cat \
     LESSSECURE=1 SYSTEMD_PAGERSECURE=1 EDITOR=false VISUAL=false GIT_EDITOR=false";

/// The `exec` request that starts a judged shell on the target, through the login's own
/// shell (sshd runs it with `-c`). The environment is emptied (`env -i`): no exported
/// functions, `PROMPT_COMMAND`, `BASH_ENV`, `ENV` or `PS0`-`PS4` from rc files; bash reads no
/// profile or rc file, has no line editing (proctor edits), no history and no history
/// expansion, no aliases. A target without bash ends the channel with a message: proctor
/// cannot judge a shell it cannot start this way, so it does not start another.
///
/// `prompts`: the markers `PS1` and `PS2` begin with, on a terminal (see [`super::Prompts`]).
pub fn command(pty: bool, prompts: Option<&super::Prompts>) -> String {
    // bash takes its long options before the short ones.
    let (long, short) = if pty {
        ("--noediting ", "-i")
    } else {
        // No terminal: commands from standard input, one judged command at a time.
        ("", "-s")
    };
    // Hex and brackets only: nothing in them needs quoting inside single quotes.
    let (ps1, ps2) = prompts.map_or(("", ""), |p| (p.ps1(), p.ps2()));
    // The login shell's process id is bash's once it has exec'd it: the relay reads the
    // shell's working directory through it (see [`super::Prompts`]).
    let pid = prompts.map_or(String::new(), |p| {
        format!("printf '%s%s]' '{}' \"$$\"; ", p.pid_prefix())
    });
    // The target's own `LANG` (pam_env's default, not the agent's: proctor refuses a `SetEnv`
    // of another character set) is kept only if bash would read the agent's lines in it as
    // proctor does (see `proctor_gate::locale`): under BIG5 or SJIS a `\` inside a character is
    // no quote to bash. `LC_ALL`/`LC_CTYPE` are dropped with the rest of the environment.
    format!(
        "if command -v bash >/dev/null 2>&1; then {pid}\
         case \"${{LANG:-C.UTF-8}}\" in *[!A-Za-z0-9_.@-]*) LANG=C.UTF-8;; C|POSIX|*.[Uu][Tt][Ff]-8|*.[Uu][Tt][Ff]8|*.[Uu][Tt][Ff]-8@*|*.[Uu][Tt][Ff]8@*) ;; \
         *) LANG=C.UTF-8;; esac; \
         exec env -i HOME=\"$HOME\" USER=\"$USER\" LOGNAME=\"$LOGNAME\" SHELL=\"$SHELL\" \
         TERM=\"${{TERM:-dumb}}\" LANG=\"${{LANG:-C.UTF-8}}\" PATH={PATH} {QUIET_PROGRAMS} \
         PS1='{ps1}\\u@\\h:\\w\\$ ' PS2='{ps2}' \
         bash --noprofile --norc {long}+H +o history +O expand_aliases {short}; \
         else echo 'proctor: this target has no bash; a judged shell needs one' >&2; exit 127; fi"
    )
}

/// An `exec` that only asks for a shell (`bash`, `sh -i`, `/bin/bash -s`...): under a judged
/// grant it is given the judged shell. Anything else is an ordinary exec, judged by policy
/// (which holds other shells and interpreters reading the session as `hidden`).
pub fn plain_shell(command: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(command) else {
        return false;
    };
    let mut words = text.split_ascii_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    matches!(
        program,
        "bash" | "sh" | "/bin/bash" | "/usr/bin/bash" | "/bin/sh" | "/usr/bin/sh"
    ) && words.all(|w| {
        matches!(
            w,
            "-i" | "-s" | "-l" | "-il" | "-li" | "--login" | "--norc" | "--noprofile"
        )
    })
}

/// Terminal modes of the target's pty, fixed by proctor rather than taken from the agent's
/// request: echo off (proctor echoes what it edits), canonical input with the standard
/// special characters (all of them controls, which proctor never sends inside a line), no
/// case or CR/NL translation that would make the target read other bytes than were judged,
/// and the end-of-line characters disabled (255 is "disabled" in SSH's encoding).
pub fn pty_modes() -> Vec<(Pty, u32)> {
    vec![
        (Pty::ECHO, 0),
        (Pty::ECHOE, 0),
        (Pty::ECHOK, 0),
        (Pty::ECHONL, 0),
        (Pty::ICANON, 1),
        (Pty::ISIG, 1),
        (Pty::IEXTEN, 1),
        (Pty::ICRNL, 1),
        (Pty::INLCR, 0),
        (Pty::IGNCR, 0),
        (Pty::IUCLC, 0),
        (Pty::ISTRIP, 0),
        (Pty::IXON, 0),
        (Pty::IUTF8, 1),
        (Pty::OPOST, 1),
        (Pty::ONLCR, 1),
        (Pty::OLCUC, 0),
        (Pty::VINTR, 3),
        (Pty::VQUIT, 28),
        (Pty::VERASE, 127),
        (Pty::VKILL, 21),
        (Pty::VEOF, 4),
        (Pty::VEOL, 255),
        (Pty::VEOL2, 255),
        (Pty::VSTART, 17),
        (Pty::VSTOP, 19),
        (Pty::VSUSP, 26),
        (Pty::VREPRINT, 18),
        (Pty::VWERASE, 23),
        (Pty::VLNEXT, 22),
        (Pty::VDISCARD, 15),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_shells_only() {
        for c in [
            "bash",
            "sh",
            "bash -i",
            "/bin/bash -s",
            "sh -il",
            " bash  --login ",
        ] {
            assert!(plain_shell(c.as_bytes()), "{c}");
        }
        for c in [
            "",
            "bash -c id",
            "bash x.sh",
            "zsh",
            "python3",
            "bash -i; id",
            "bash\x00",
        ] {
            assert!(!plain_shell(c.as_bytes()), "{c}");
        }
    }
}
