//! Each wrapper read with its own options.

use super::*;

fn w(line: &str) -> Vec<Word> {
    super::super::words::lex(line)
        .toks
        .into_iter()
        .filter_map(|t| match t {
            super::super::words::Tok::Word(w) => Some(w),
            _ => None,
        })
        .collect()
}

fn argv(program: &str, args: &str) -> Vec<String> {
    let u = unwrap(program, &w(args)).expect("a wrapper");
    match u.runs.first() {
        Some(Inner::Argv { words, .. }) => words.iter().map(|x| x.text.clone()).collect(),
        other => panic!("{program} {args}: {other:?}"),
    }
}

#[test]
fn option_grammars() {
    assert_eq!(argv("sudo", "-u root -g wheel rm -r x"), ["rm", "-r", "x"]);
    assert_eq!(argv("sudo", "--user=root -- id"), ["id"]);
    assert_eq!(argv("sudo", "-uroot A=1 id"), ["id"]);
    assert_eq!(argv("ionice", "-c 3 -n7 rm -r x"), ["rm", "-r", "x"]);
    assert_eq!(argv("timeout", "-s KILL -k 5 10s rm x"), ["rm", "x"]);
    assert_eq!(argv("timeout", "--sig=KILL 10 rm x"), ["rm", "x"]);
    assert_eq!(argv("nice", "-5 rm x"), ["rm", "x"]);
    assert_eq!(argv("nice", "-n 5 rm x"), ["rm", "x"]);
    assert_eq!(argv("chrt", "-f 10 rm x"), ["rm", "x"]);
    assert_eq!(argv("taskset", "-c 0,1 rm x"), ["rm", "x"]);
    assert_eq!(argv("chroot", "--userspec=a:b /srv rm x"), ["rm", "x"]);
    assert_eq!(argv("stdbuf", "-oL -e 0 rm x"), ["rm", "x"]);
    assert_eq!(argv("exec", "-a name rm x"), ["rm", "x"]);
    assert_eq!(
        argv("strace", "-f -o /tmp/t -e trace=file rm x"),
        ["rm", "x"]
    );
    assert_eq!(argv("env", "-S 'rm -r' x"), ["rm", "-r", "x"]);
    assert_eq!(argv("env", "-u A -i B=1 rm x"), ["rm", "x"]);
    assert_eq!(argv("flock", "-w 5 /tmp/l rm x"), ["rm", "x"]);
    assert_eq!(
        argv("find", ". -name y -exec rm -r {} ;"),
        ["rm", "-r", "{}"]
    );
    assert_eq!(argv("runuser", "-u app -- rm x"), ["rm", "x"]);
    assert_eq!(argv("busybox", "rm -r x"), ["rm", "-r", "x"]);
    assert!(matches!(
        unwrap("xargs", &w("-a f -I{} rm {}")).map(|u| u.runs),
        Some(v) if matches!(&v[0], Inner::Argv { runtime_args: true, .. })
    ));
    let code = |p: &str, a: &str| match unwrap(p, &w(a)).map(|u| u.runs) {
        Some(v) => match v.first() {
            Some(Inner::Code(c)) => c.text.clone(),
            other => panic!("{p} {a}: {other:?}"),
        },
        None => panic!("{p}"),
    };
    assert_eq!(code("su", "- root -c 'rm x'"), "rm x");
    assert_eq!(code("flock", "/tmp/l -c 'rm x'"), "rm x");
    assert_eq!(code("script", "-q -c 'rm x' /dev/null"), "rm x");
    assert_eq!(code("watch", "-n 5 rm -r x"), "rm -r x");
    assert_eq!(code("trap", "'rm x' EXIT"), "rm x");
    assert_eq!(code("strace", "-o '|rm x' ls"), "rm x");
    for (p, a) in [
        ("su", ""),
        ("unshare", "-m"),
        ("nsenter", "-t 1 -a"),
        ("script", "-q"),
    ] {
        assert_eq!(
            unwrap(p, &w(a)).map(|u| u.runs),
            Some(vec![Inner::Shell]),
            "{p} {a}"
        );
    }
    assert!(
        unwrap("sudo", &w("-$(echo u) root id"))
            .and_then(|u| u.hidden)
            .is_some()
    );
    assert_eq!(
        unwrap("sudo", &w("-e /etc/x")).map(|u| u.also),
        Some(vec!["sudoedit".to_string()])
    );
    assert_eq!(
        unwrap("time", &w("-o /etc/x id")).map(|u| u.writes.len()),
        Some(1)
    );
}
