//! Assignments to variables that change what later commands run or how later lines are read,
//! however the line makes them: `NAME=value`, `NAME+=value`, `NAME[i]=value`, `export`/`declare`
//! arguments, and the builtins and loops that assign to a variable named in their arguments
//! (`for NAME in …`, `read NAME`, `printf -v NAME`, `mapfile NAME`). `for PROMPT_COMMAND in 'rm
//! -r /x'; do :; done` sets `PROMPT_COMMAND`, which an interactive bash runs before every prompt,
//! as surely as `PROMPT_COMMAND=…` does.

use super::words::Word;
use super::{embedded, programs};
use proctor_gate::locale;

/// The variable a word assigns to (`NAME=`, `NAME+=`, `NAME[i]=`), as bash reads an
/// assignment: a name, an optional subscript, an optional `+`, then `=`.
pub(super) fn assigned_name(word: &str) -> Option<&str> {
    let eq = word.find('=')?;
    let mut name = &word[..eq];
    name = name.strip_suffix('+').unwrap_or(name);
    if let Some(open) = name.find('[') {
        if !name.ends_with(']') {
            return None;
        }
        name = &name[..open];
    }
    let mut chars = name.chars();
    let first = chars.next()?;
    ((first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_'))
    .then_some(name)
}

pub(super) fn is_assignment(word: &str) -> bool {
    assigned_name(word).is_some()
}

/// A variable whose value, set by a line, changes what later commands run or how bash reads
/// later lines (its character set: see [`proctor_gate::locale`]).
fn risky_name(name: &str) -> bool {
    programs::RISKY_VARIABLES.contains(&name)
        || embedded::COMMAND_VARIABLES.contains(&name)
        || locale::CHARSET_VARIABLES.contains(&name)
}

/// An assignment to a variable that changes what later commands run (`PATH=`, `LD_PRELOAD=`),
/// or to a locale bash would read lines in otherwise than proctor (`LC_ALL=zh_TW.BIG5`;
/// `LC_ALL=C sort` is plain).
pub(super) fn risky_assignment(words: &[Word]) -> Option<String> {
    words.iter().find_map(|w| {
        let name = assigned_name(&w.text)?;
        // `a[i]=…`: an indexed array's subscript is arithmetic, which evaluates the value of a
        // variable named in it as code (`x='y[$(rm -r /v)]'; a[x]=1` runs the rm). Only a
        // number is read.
        let head = &w.text[..w.text.find('=').unwrap_or(0)];
        if let Some((_, sub)) = head.trim_end_matches('+').split_once('[') {
            let sub = sub.trim_end_matches(']');
            if w.expands || sub.is_empty() || !sub.bytes().all(|b| b.is_ascii_digit()) {
                return Some(format!(
                    "assigns to an element of {name} whose subscript is evaluated as arithmetic"
                ));
            }
        }
        if locale::CHARSET_VARIABLES.contains(&name) && name != "LOCPATH" {
            let value = w.text.split_once('=').map_or("", |(_, v)| v);
            let plain = w.is_literal() && !w.text.contains("+=") && locale::reads_as_proctor(value);
            return (!plain).then(|| {
                format!(
                    "sets {name} to a locale in which bash may read later lines otherwise than \
                     proctor (only UTF-8, C and POSIX are read as bash reads them)"
                )
            });
        }
        risky_name(name).then(|| format!("sets {name}, which changes what later commands run"))
    })
}

/// `for NAME in …` and `select NAME in …` assign each word to NAME.
pub(super) fn loop_variable(words: &[Word]) -> Option<String> {
    let name = words.get(1)?;
    (!name.is_literal() || risky_name(&name.text)).then(|| {
        format!(
            "a loop assigns to {}, which changes what later commands run",
            name.text
        )
    })
}

/// Builtins that assign to variables named in their arguments: `read NAME`, `read -a NAME`,
/// `printf -v NAME`, `mapfile`/`readarray NAME`, `getopts OPTS NAME`, `wait -p NAME`. Every
/// argument is taken as a possible name (an option's value named like a risky variable holds
/// the line too: it errs towards holding), and a name known only at run time may be any.
pub(super) fn assigns_by_name(program: &str, args: &[Word]) -> Option<String> {
    if !matches!(
        program,
        "read" | "printf" | "mapfile" | "readarray" | "getopts" | "wait"
    ) {
        return None;
    }
    if program == "printf" {
        // `printf -v NAME` or `printf -vNAME`, before the format; the rest is data.
        let mut it = args.iter().take_while(|a| a.text != "--");
        let a = it.next()?;
        let name = match a.text.strip_prefix("-v") {
            Some("") => it.next()?,
            Some(_) => a,
            None => return None,
        };
        let text = name.text.strip_prefix("-v").unwrap_or(&name.text);
        return named(program, name, text.split('[').next().unwrap_or(text));
    }
    if program == "getopts" {
        // `getopts OPTSTRING NAME [ARGS]`: only the second word is a name.
        let a = args.get(1)?;
        return named(program, a, &a.text);
    }
    if program == "wait" {
        // `wait -p NAME`: its other arguments are process ids and jobs.
        let p = args.iter().position(|a| a.text == "-p")?;
        let a = args.get(p + 1)?;
        return named(program, a, &a.text);
    }
    // Option letters whose value is data, not a name (`read -p "$msg" x`, `read -rt 5 x`).
    let takes_data = match program {
        "read" => "dinNptu",
        _ => "dnOsuCc",
    };
    let mut data_next = false;
    for a in args {
        let text = a.text.as_str();
        if std::mem::take(&mut data_next) {
            continue;
        }
        if a.is_literal() && text.len() > 1 && text.starts_with('-') && !text.starts_with("--") {
            data_next = text.ends_with(|c| takes_data.contains(c));
            continue;
        }
        if let Some(why) = named(program, a, text.split('[').next().unwrap_or(text)) {
            return Some(why);
        }
    }
    None
}

/// Builtins that remove a variable, or its export, by name: `unset NAME`, `export -n NAME`,
/// `declare +x NAME`. A judged shell's quiet pager and editor settings (`LESSSECURE=1`,
/// `PAGER=cat`) are in its environment; without them `git log` starts a `less` that runs
/// commands.
pub(super) fn removes_by_name(program: &str, args: &[Word]) -> Option<String> {
    let removing = match program {
        "unset" => !args.iter().any(|a| a.text == "-f"),
        "export" => args
            .iter()
            .any(|a| a.text.starts_with('-') && a.text.contains('n')),
        "declare" | "typeset" | "local" => args
            .iter()
            .any(|a| a.text.starts_with('+') && a.text.contains('x')),
        _ => false,
    };
    if !removing {
        return None;
    }
    args.iter()
        .filter(|a| !(a.is_literal() && (a.text.starts_with('-') || a.text.starts_with('+'))))
        .find_map(|a| {
            let name = assigned_name(&a.text).unwrap_or(&a.text);
            if risky_name(name) {
                Some(format!(
                    "{program} removes {name}, which changes what later commands run"
                ))
            } else if !a.is_literal() {
                Some(format!(
                    "{program} removes a variable named only at run time ({})",
                    super::shown(&a.text)
                ))
            } else {
                None
            }
        })
}

/// `env -u NAME`: why removing NAME holds the line, if it does.
pub(super) fn removed_by_env(name: &Word) -> Option<String> {
    if !name.is_literal() {
        return Some(format!(
            "env removes a variable named only at run time ({})",
            super::shown(&name.text)
        ));
    }
    risky_name(&name.text).then(|| {
        format!(
            "env removes {}, which changes what later commands run",
            name.text
        )
    })
}

/// Why assigning to `name` (the word `word`) holds the line, if it does.
fn named(program: &str, word: &Word, name: &str) -> Option<String> {
    if risky_name(name) {
        Some(format!(
            "{program} assigns to {name}, which changes what later commands run"
        ))
    } else if !word.is_literal() {
        Some(format!(
            "{program} assigns to a variable named only at run time ({})",
            super::shown(&word.text)
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_bash_reads_them() {
        assert_eq!(assigned_name("PATH=/x"), Some("PATH"));
        assert_eq!(assigned_name("PATH+=:/x"), Some("PATH"));
        assert_eq!(
            assigned_name("PROMPT_COMMAND[0]=id"),
            Some("PROMPT_COMMAND")
        );
        assert_eq!(assigned_name("a[$(id)]+=1"), Some("a"));
        for no in ["=x", "1A=x", "a b=x", "a[1=x", "-v=x", "a++=x"] {
            assert_eq!(assigned_name(no), None, "{no}");
        }
    }

    fn hidden(line: &str) -> bool {
        !super::super::analyze(line).hidden.is_empty()
    }

    #[test]
    fn loops_and_builtins_that_assign_by_name() {
        for line in [
            "for PROMPT_COMMAND in 'rm -r /victim'; do :; done",
            "for PS1 in '$(id)'; do :; done",
            "select PATH in /tmp; do break; done",
            "for \"$v\" in x; do :; done",
            "read PROMPT_COMMAND < f",
            "read -r -a PROMPT_COMMAND < f",
            "IFS= read -rd '' PS0 < f",
            "read -p 'x' LC_ALL",
            "printf -v PROMPT_COMMAND '\\x72m -r /v'",
            "printf -vPATH %s /tmp",
            "mapfile -t PROMPT_COMMAND < f",
            "readarray PS1 < f",
            "getopts a PATH",
            "wait -n -p PROMPT_COMMAND",
            "read \"$name\" < f",
            "printf -v \"$n\" %s x",
            "builtin read PATH < f",
            "PROMPT_COMMAND+=reboot",
            "PROMPT_COMMAND[0]='rm -r victim'",
            "export PROMPT_COMMAND+=id",
            "unset LESSSECURE",
            "unset -v PAGER",
            "export -n GIT_PAGER",
            "declare +x EDITOR",
            "unset \"$v\"",
            "env -u LESSSECURE git log",
            "env --unset=PAGER git log",
            "env -i git log",
            "LESSSECURE= git log",
            "exec -c git log",
            "a[x]=1",
            "a[$x]=1",
            "a[1+x]+=1",
            "BASH_CMDS[ls]=/tmp/evil",
            "exec -lc git log",
        ] {
            assert!(hidden(line), "{line}");
        }
        for line in [
            "for x in a b; do echo $x; done",
            "for ((i=0; i<3; i++)); do echo $i; done",
            "read -r line < f",
            "read -p \"$msg\" -t 5 answer",
            "printf -v out %s \"$x\"",
            "printf '%s' \"$PATH\"",
            "mapfile -t lines < f",
            "wait \"$pid\"",
            "x+=1",
            "unset x y",
            "unset -f PATH",
            "exec -a name git log",
            "a[0]=1",
            "a[12]+=x",
        ] {
            assert!(
                !hidden(line),
                "{line}: {:?}",
                super::super::analyze(line).hidden
            );
        }
    }

    #[test]
    fn locales_bash_reads_otherwise_are_hidden() {
        for line in [
            "LC_ALL=zh_TW.BIG5",
            "export LANG=ja_JP.SJIS",
            "declare -x LC_CTYPE=zh_CN.GBK",
            "LC_ALL=zh_TW.BIG5 bash -c 'echo x'",
            "env LC_ALL=zh_TW bash -c 'echo x'",
            "LC_ALL=\"$L\"",
            "LOCPATH=/tmp/loc",
            "export LOCPATH=/tmp/loc LC_ALL=C.UTF-8",
        ] {
            assert!(hidden(line), "{line}");
        }
        for line in [
            "LC_ALL=C sort f",
            "LANG=en_US.UTF-8 date",
            "export LC_ALL=C.utf8",
            "LC_TIME=zh_TW.BIG5 date",
        ] {
            assert!(
                !hidden(line),
                "{line}: {:?}",
                super::super::analyze(line).hidden
            );
        }
    }
}
