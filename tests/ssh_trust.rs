//! What crosses proctor on the agent's behalf is only what the agent's grant allows, checked
//! against a real OpenSSH client and a real sshd that would accept more: `SetEnv` names off
//! the allow-list never reach the target (and are recorded as refused), and the just-in-time
//! certificate the target sees carries no forwarding permissions and is bound to proctor's
//! own address.

mod ssh_support;

use std::process::Command;

use ssh_support::*;

fn permissive_target() -> Env {
    Env::start_with(Options {
        // The target accepts every variable and shows the session how it authenticated: only
        // proctor stands between the agent's SetEnv and the target's environment.
        sshd_extra: vec!["AcceptEnv *".into(), "ExposeAuthInfo yes".into()],
        ..Options::default()
    })
}

#[test]
fn setenv_outside_the_allow_list_never_reaches_the_target() {
    let env = permissive_target();
    let marker = env.dir.path().join("bash-env-ran");
    let script = env.dir.path().join("evil.sh");
    std::fs::write(&script, format!("touch {}\n", marker.display())).expect("script");
    let child = env
        .ssh("box")
        .arg("-o")
        .arg(format!(
            "SetEnv=BASH_ENV={} LD_PRELOAD=/nonexistent/x.so GIT_SSH_COMMAND=injected LC_PROCTOR_TEST=kept PROCTOR_REASON=checking-env",
            script.display()
        ))
        .arg("bash -c 'echo \"bash_env=[$BASH_ENV] ld=[$LD_PRELOAD] git=[$GIT_SSH_COMMAND] lc=[$LC_PROCTOR_TEST]\"'")
        .spawn()
        .expect("ssh");
    let out = wait_output(child, T);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "bash_env=[] ld=[] git=[] lc=[kept]",
        "{}",
        text(&out.stderr)
    );
    assert!(!marker.exists(), "BASH_ENV ran on the target");

    let s = env
        .store()
        .sealed_session(|s| s["agent"] == AGENT && s["target"] == "box");
    let recs = env.export(&str_field(&s, "id"));
    let env_reqs: Vec<(String, bool)> = of_kind(&recs, "channel_request")
        .iter()
        .filter(|r| r["request"] == "env")
        .map(|r| (str_field(r, "detail"), r["accepted"] == true))
        .collect();
    let find = |name: &str| {
        env_reqs
            .iter()
            .find(|(d, _)| d.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no env record for {name}: {env_reqs:?}"))
            .clone()
    };
    for refused in ["BASH_ENV", "LD_PRELOAD", "GIT_SSH_COMMAND"] {
        let (detail, accepted) = find(refused);
        assert!(!accepted, "{detail}");
        assert!(detail.contains("refused"), "{detail}");
    }
    for kept in ["LC_PROCTOR_TEST", "PROCTOR_REASON"] {
        assert!(find(kept).1, "{kept}");
    }
    // The stated reason is still the agent's reasoning.
    assert!(
        of_kind(&recs, "annotation")
            .iter()
            .any(|a| a["text"] == "checking-env"),
        "reason not recorded"
    );
    env.verify();
}

#[test]
fn the_certificate_carries_only_what_the_grant_permits() {
    let env = permissive_target();
    // sshd's record of how this very session authenticated: the certificate proctor used.
    let out = env.exec("cat \"$SSH_USER_AUTH\"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let auth = text(&out.stdout);
    let cert_line = auth
        .lines()
        .find_map(|l| l.strip_prefix("publickey "))
        .unwrap_or_else(|| panic!("no publickey line in {auth:?}"));
    assert!(cert_line.contains("-cert-v01@openssh.com"), "{cert_line}");
    let cert = env.dir.path().join("session-cert.pub");
    std::fs::write(&cert, format!("{cert_line}\n")).expect("cert");
    let shown = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .expect("ssh-keygen -L");
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    let section = |name: &str| -> Vec<String> {
        let mut lines = shown
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(name));
        lines.next();
        lines
            .take_while(|l| l.starts_with("                "))
            .map(|l| l.trim().to_string())
            .collect()
    };
    assert_eq!(
        section("Critical Options:"),
        vec!["source-address 127.0.0.1/32".to_string()],
        "{shown}"
    );
    // The grant allows a pty (the default) and no port forwarding: nothing else.
    assert_eq!(
        section("Extensions:"),
        vec!["permit-pty".to_string()],
        "{shown}"
    );
    assert!(shown.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"));
    assert!(
        shown.contains(&format!("Principals: \n                {}", env.login)),
        "{shown}"
    );
}
