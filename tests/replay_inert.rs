//! `proctor replay` on an auditor's terminal (issue 18, item 8): a recorded SSH shell whose
//! output sets the clipboard, the window title and a hyperlink, and erases the agent's command
//! line on screen. Played under a real pty (`script`), the terminal receives none of those
//! sequences, and the erased line is still shown, as proctor's marker of the recorded line.
//! `--step` shows every byte, escapes as tokens. The session is written by the real recorder.

use std::path::Path;
use std::process::{Command, Stdio};

use bytes::Bytes;
use proctor::clock::now_ns;
use proctor::recorder::{Store, WriterOptions};
use proctor_gate::{ChannelKind, Event, Outcome, OutputStream, Privilege, Protocol, SessionInfo};

const CLIPBOARD: &str = "\x1b]52;c;cm0gLXJmIH4=\x07";

/// Records one shell session: the agent types `rm -r /victim`, its shell's output erases the
/// line and writes a harmless one in its place, then sets the clipboard, title and a link.
fn record_session(data: &Path) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut store = Store::open(data, WriterOptions::default()).expect("store opens");
        store.finish_recovery().await.expect("recovery");
        let id = uuid::Uuid::now_v7();
        let key = *id.as_bytes();
        let rec = &store.recorder;
        let output = |s: &str| Event::Output {
            channel: 0,
            stream: OutputStream::Stdout,
            data: Bytes::from(s.as_bytes().to_vec()),
        };
        let events = [
            Event::SessionStart(SessionInfo {
                agent: "agent-a".into(),
                target: "web1".into(),
                protocol: Protocol::Ssh,
                login: "deploy".into(),
                privilege: Privilege::Elevated,
                client_addr: "127.0.0.1:5555".into(),
                grant: "g".into(),
                proctor_version: "test".into(),
            }),
            Event::ChannelOpen {
                channel: 0,
                kind: ChannelKind::Shell,
                detail: String::new(),
            },
            output("$ rm -r /victim"),
            Event::CommandLine {
                channel: 0,
                line: "rm -r /victim".into(),
            },
            // Erase the echoed line, write a harmless one.
            output("\r\x1b[2K$ ls /tmp\r\n"),
            output(&format!(
                "{CLIPBOARD}\x1b]0;innocent title\x07\x1b]8;;https://evil.example/\x1b\\docs\x1b]8;;\x1b\\\r\n"
            )),
            Event::CommandLine {
                channel: 0,
                line: format!("echo {CLIPBOARD}done"),
            },
            output("done\r\n$ "),
            // Output that imitates `--step`'s own markers: a command that never ran and a
            // denial of the rm that did.
            output("\r\n=== +0.500s command: ls /tmp\r\n--- +0.600s deny by rule no-rm: rm -r /victim\r\n$ "),
        ];
        for e in &events {
            rec.record(key, now_ns(), e).await.expect("event");
        }
        rec.seal(key, now_ns(), Outcome::Completed, "done")
            .await
            .expect("seal");
        store.close();
        id.to_string()
    })
}

fn on_a_terminal(args: &[&str]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let cmd = std::iter::once(env!("CARGO_BIN_EXE_proctor"))
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    // The terminal's keyboard stays open and silent: at end of input `script` would type a NUL
    // (Ctrl-Space) into the replay.
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let keyboard = child.stdin.take();
    let out = child.wait_with_output().expect("script ends");
    drop(keyboard);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{cmd}: {text}");
    text
}

#[test]
fn replay_drops_what_acts_outside_the_screen_and_marks_erased_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let id = record_session(&data);
    let data = data.to_str().expect("utf-8 path");

    // Interactive playback on a terminal.
    let played = on_a_terminal(&["replay", &id, "--data", data, "--max-idle", "0.1"]);
    for seq in ["\x1b]", "\x1bP", "\x1b_", "\x07", "\u{9d}"] {
        assert!(
            !played.contains(seq),
            "{seq:?} reached the terminal: {played:?}"
        );
    }
    assert!(
        played.contains("$ ls /tmp") && played.contains("docs"),
        "{played:?}"
    );
    // The erased line is in the replay, as proctor's marker of what was recorded.
    assert!(
        played.contains("proctor: command: rm -r /victim "),
        "{played:?}"
    );
    // A recorded line's own escapes are shown, not obeyed.
    assert!(
        played.contains("proctor: command: echo \\x1b]52;c;cm0gLXJmIH4=\\x07done "),
        "{played:?}"
    );
    // Screen drawing still works: the erase reaches the terminal.
    assert!(played.contains("\x1b[2K"), "{played:?}");

    // For scripts: every byte, as tokens, nothing obeyed.
    let step = on_a_terminal(&["replay", &id, "--data", data, "--step"]);
    assert!(!step.contains('\x1b') && !step.contains('\x07'), "{step:?}");
    assert!(step.contains("command: rm -r /victim"), "{step:?}");
    assert!(
        step.contains("\\r\\x1b[2K$ ls /tmp") && step.contains("\\x1b]52;c;cm0gLXJmIH4=\\x07"),
        "{step:?}"
    );
    // Recorded output sits behind a gutter: its imitation markers cannot start a line.
    assert!(
        step.contains("| === +0.500s command: ls /tmp") && step.contains("| --- +0.600s deny"),
        "{step:?}"
    );
    let markers: Vec<&str> = step
        .lines()
        .filter(|l| l.starts_with("===") || l.starts_with("---"))
        .collect();
    assert_eq!(
        markers.len(),
        3,
        "the two recorded lines and the end: {markers:?}"
    );
    assert!(
        markers
            .iter()
            .all(|m| !m.contains("ls /tmp") && !m.contains("deny")),
        "{markers:?}"
    );
}
