//! The shell reader's examples about writes: where they land, trees, relative paths after
//! `cd`, and files that run commands later.

use super::*;

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
    // The receiving side writes its log, batch, temporary and partial files where they are
    // named, and hard-links `--link-dest` files into the destination (round 6:
    // `rsync -M--log-file=/etc/shadow` appended to the guarded file).
    for (line, tree) in [
        (
            "rsync --server -e.LsfxC --log-file=/etc/shadow . /tmp/w/",
            "/etc/shadow",
        ),
        (
            "rsync -M--log-file=/etc/shadow /tmp/x h:/tmp/w/",
            "/etc/shadow",
        ),
        (
            "rsync --server -re.iLsfxC --link-dest /etc . /tmp/w/",
            "/etc",
        ),
        ("rsync --server -e.LsfxC --temp-dir /etc . /tmp/w/", "/etc"),
        ("rsync -T /etc /tmp/x /tmp/w/", "/etc"),
        ("rsync --partial-dir=/etc /tmp/x /tmp/w/", "/etc"),
        (
            "rsync --write-batch=/etc/cron.d/b /tmp/x /tmp/w/",
            "/etc/cron.d/b.sh",
        ),
        (
            "rsync --only-write-batch /etc/shadow /tmp/x /tmp/w/",
            "/etc/shadow",
        ),
    ] {
        assert!(
            trees(line).iter().any(|d| d == tree),
            "{line}: {:?}",
            trees(line)
        );
    }
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
