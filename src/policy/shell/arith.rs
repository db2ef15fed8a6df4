//! Where bash evaluates a variable's value as code, not as data.
//!
//! Bash reads a value as an arithmetic expression in `$((...))`, `$[...]`, `((...))`, `let`,
//! `[[ A -eq B ]]`, array subscripts and substring offsets, and follows names through it
//! recursively; an array subscript met on the way is expanded, so a command substitution in it
//! runs: after `x='a[$(rm -r /v)]'` (or `x=$(cat file)` holding that text), `echo $((x))` runs
//! `rm`. Indirect expansion (`${!x}`), namerefs (`declare -n r=$x`) and `-v NAME` tests do the
//! same through the subscript of the name they reach, and `${x@P}` expands the value as a
//! prompt, command substitutions included. Proctor does not know the values of variables, so
//! each of these is `hidden` unless every name it evaluates was given a literal number in the
//! same expression (`for ((i=0; i<3; i++))`).

/// Why evaluating `expr` as arithmetic may run a command hidden in a variable's value: it
/// names a variable (or expands `$...`) whose value proctor does not know.
pub fn unknown_value(expr: &str) -> Option<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut known: Vec<String> = Vec::new();
    let mut unknown: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' {
            // `$x`, `${x}`, `$1`, `$(cmd)`: text made at run time, then evaluated.
            return Some(reason(&format!("${}", name_at(&chars, i + 1))));
        } else if c == '`' {
            return Some(reason("`...`"));
        } else if c.is_ascii_digit() {
            // A number in any base (`0x1f`, `16#ff`, `2#101`): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "#_@".contains(chars[i]))
            {
                i += 1;
            }
            continue;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let name = name_at(&chars, i);
            i += name.chars().count();
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_start();
            // `i=0`: the name holds a literal number from here on.
            if let Some(value) = rest.strip_prefix('=')
                && !value.starts_with('=')
                && value.trim_start().starts_with(|c: char| c.is_ascii_digit())
            {
                known.push(name);
                continue;
            }
            if !known.contains(&name) && unknown.is_none() {
                unknown = Some(name);
            }
            continue;
        }
        i += 1;
    }
    unknown.map(|n| reason(&n))
}

fn name_at(chars: &[char], start: usize) -> String {
    chars[start.min(chars.len())..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .collect()
}

fn reason(name: &str) -> String {
    format!(
        "arithmetic evaluates the value of {name} as code (a subscript in it runs commands), and proctor does not know it"
    )
}

/// Why a `${...}` expansion (its text between the braces) evaluates a value as code.
pub fn parameter(inner: &str) -> Option<String> {
    if inner.ends_with("@P") {
        return Some(
            "${...@P} expands a value as a prompt, which runs command substitutions in it".into(),
        );
    }
    if let Some(rest) = inner.strip_prefix('!') {
        // `${!prefix*}`, `${!prefix@}`, `${!arr[@]}`: names or keys, nothing evaluated.
        let listing = rest.ends_with('*') || rest.ends_with('@') || rest.ends_with("[@]");
        let listing = listing || rest.ends_with("[*]");
        if !listing && !rest.is_empty() {
            return Some(
                "${!name} evaluates a value as a variable name (a subscript in it runs commands)"
                    .into(),
            );
        }
    }
    let name: String = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '#')
        .collect();
    let rest = &inner[name.len()..];
    if let Some(sub) = rest.strip_prefix('[') {
        let sub = sub.split(']').next().unwrap_or(sub);
        if sub != "@" && sub != "*" {
            return unknown_value(sub);
        }
    }
    // `${x:OFFSET:LENGTH}` (not `${x:-...}` and the other defaults) is arithmetic.
    if let Some(offset) = rest.strip_prefix(':')
        && !offset.starts_with(['-', '=', '?', '+'])
    {
        return unknown_value(offset);
    }
    None
}

/// Why a command (program and literal arguments) evaluates a value as code.
pub fn command(program: &str, args: &[&str]) -> Option<String> {
    match program {
        "let" => args.iter().find_map(|a| unknown_value(a)),
        "declare" | "typeset" | "local" | "readonly" | "export" => args
            .iter()
            .take_while(|a| *a != &"--")
            .any(|a| a.len() > 1 && a.starts_with(['-', '+']) && a[1..].contains(['n', 'i']))
            .then(|| {
                format!(
                    "{program} -n or -i makes later uses evaluate values (a subscript in them runs commands)"
                )
            }),
        "[[" | "test" | "[" => {
            let arithmetic = ["-eq", "-ne", "-lt", "-le", "-gt", "-ge"];
            for (k, a) in args.iter().enumerate() {
                let operand = args.get(k + 1).copied().unwrap_or("");
                if matches!(*a, "-v" | "-R") && (operand.contains('[') || operand.contains('$')) {
                    return Some(format!(
                        "{program} {a} evaluates the subscript of the name it tests"
                    ));
                }
                if program == "[[" && arithmetic.contains(a) {
                    let sides = [k.checked_sub(1).map(|j| args[j]), args.get(k + 1).copied()];
                    if let Some(why) = sides.into_iter().flatten().find_map(unknown_value) {
                        return Some(why);
                    }
                }
            }
            None
        }
        "printf" => {
            // `printf -v NAME`: a subscript in NAME is evaluated.
            let v = args.iter().position(|a| *a == "-v")?;
            let name = args.get(v + 1)?;
            (name.contains('[') || name.contains('$')).then(|| {
                "printf -v assigns to a name whose subscript is evaluated".to_string()
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_unknown_values_are_code() {
        assert!(unknown_value("x").is_some());
        assert!(unknown_value(" $x + 1").is_some());
        assert!(unknown_value("$(cat f)").is_some());
        assert!(unknown_value("i=0; i<3; i++").is_none());
        assert!(unknown_value("1 + 0x1f * 16#ff").is_none());
        assert!(unknown_value("i=0; i<n; i++").is_some());
        assert!(parameter("x@P").is_some());
        assert!(parameter("!x").is_some());
        assert!(parameter("!pre*").is_none());
        assert!(parameter("!arr[@]").is_none());
        assert!(parameter("a[i]").is_some());
        assert!(parameter("a[1]").is_none());
        assert!(parameter("a[@]").is_none());
        assert!(parameter("x:i").is_some());
        assert!(parameter("x:-default").is_none());
        assert!(parameter("x: -1").is_none());
        assert!(parameter("HOME").is_none());
        assert!(parameter("#x").is_none());
    }
}
