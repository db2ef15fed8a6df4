//! Bash's own parser as a second opinion on whether a judged shell's command is complete
//! (issue 13). Proctor's reader (`protocols/ssh/src/judged/complete.rs`) decides when to stop
//! collecting lines; if it took as complete what bash takes as unfinished, bash would read
//! the next lines, each judged on its own, into one command nobody judged. So before a line
//! is judged, a real bash on the bastion parses it with `-n` (read, never execute), from
//! standard input, without profile, rc files or aliases, in an empty environment, from `/`.
//! An unfinished command is kept open; a check that cannot be made makes the line held.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proctor_gate::ShellSyntax;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Semaphore;

/// How long one check may take, a wait for a free slot included.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Bash's messages kept for classification; the rest is discarded unread.
const MAX_STDERR: u64 = 8 * 1024;
/// Checks running at once on the bastion: one agent's flood of lines waits here (and is held
/// past the timeout) instead of starting any number of processes.
const MAX_RUNNING: usize = 8;
/// Re-checks after syntax errors in one command (see [`BashSyntax::check`]).
const MAX_RECHECKS: usize = 16;

pub struct BashSyntax {
    bash: PathBuf,
    slots: Arc<Semaphore>,
}

/// The bastion's bash, found once in the usual places.
pub fn system() -> &'static BashSyntax {
    static CHECK: OnceLock<BashSyntax> = OnceLock::new();
    CHECK.get_or_init(|| {
        let bash = ["/usr/bin/bash", "/bin/bash", "/usr/local/bin/bash"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("/bin/bash"));
        BashSyntax::new(bash)
    })
}

/// What one run of `bash -n` said.
enum Parse {
    Complete,
    Unfinished,
    /// A syntax error at this line (1-based): bash refuses the command and, reading a
    /// terminal, goes on parsing at the next line.
    ErrorAt(usize),
}

impl BashSyntax {
    pub fn new(bash: impl Into<PathBuf>) -> BashSyntax {
        BashSyntax {
            bash: bash.into(),
            slots: Arc::new(Semaphore::new(MAX_RUNNING)),
        }
    }

    /// Whether bash would run `text` (sent with a newline, as the judged shell sends it) or
    /// read on. After a syntax error on line N, an interactive bash drops what it read and
    /// parses line N+1 afresh, so what follows the error is checked again on its own.
    pub async fn check(&self, text: &str) -> ShellSyntax {
        match tokio::time::timeout(TIMEOUT, self.check_all(text)).await {
            Ok(r) => r,
            Err(_) => ShellSyntax::Unchecked(format!(
                "bash's syntax check took longer than {}s",
                TIMEOUT.as_secs()
            )),
        }
    }

    async fn check_all(&self, text: &str) -> ShellSyntax {
        let mut rest = text;
        for _ in 0..MAX_RECHECKS {
            match self.parse(rest).await {
                Err(why) => return ShellSyntax::Unchecked(why),
                Ok(Parse::Complete) => return ShellSyntax::Complete,
                Ok(Parse::Unfinished) => return ShellSyntax::Unfinished,
                Ok(Parse::ErrorAt(line)) => match rest.split_inclusive('\n').nth(line) {
                    None => return ShellSyntax::Complete,
                    Some(_) => {
                        let skip: usize = rest.split_inclusive('\n').take(line).map(str::len).sum();
                        rest = &rest[skip..];
                    }
                },
            }
        }
        ShellSyntax::Unchecked(format!(
            "more than {MAX_RECHECKS} syntax errors in one command"
        ))
    }

    async fn parse(&self, text: &str) -> Result<Parse, String> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| "bash's syntax check is shut down".to_string())?;
        let mut child = Command::new(&self.bash)
            .args(["--noprofile", "--norc", "-n", "+O", "expand_aliases"])
            .env_clear()
            .env("LC_ALL", "C")
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("bash {} could not be started: {e}", self.bash.display()))?;
        let (Some(mut stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
            return Err("bash's pipes could not be opened".into());
        };
        let mut input = Vec::with_capacity(text.len() + 1);
        input.extend_from_slice(text.as_bytes());
        input.push(b'\n');
        // Written while bash's messages are read, so neither side can fill its pipe and wait.
        let write = async move {
            // Bash stops reading at its first syntax error: a closed pipe is no failure.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let read = async move {
            let mut buf = Vec::new();
            let _ = stderr.take(MAX_STDERR).read_to_end(&mut buf).await;
            buf
        };
        let ((), messages) = tokio::join!(write, read);
        let status = child
            .wait()
            .await
            .map_err(|e| format!("bash's syntax check failed: {e}"))?;
        classify(status.code(), &String::from_utf8_lossy(&messages))
    }
}

/// Bash 4 and 5 say these (with `LC_ALL=C`) when the text ends inside a command.
const UNFINISHED: &[&str] = &[
    "syntax error: unexpected end of file",
    "unexpected EOF while looking for matching",
    // `bash -n` only warns about a here-document cut off by the end of the text (exit 0);
    // reading a terminal, bash would wait for its delimiter.
    "delimited by end-of-file",
];

fn classify(code: Option<i32>, messages: &str) -> Result<Parse, String> {
    if UNFINISHED.iter().any(|m| messages.contains(m)) {
        return Ok(Parse::Unfinished);
    }
    match code {
        Some(0) => Ok(Parse::Complete),
        Some(2) => error_line(messages).map(Parse::ErrorAt).ok_or_else(|| {
            format!(
                "bash's syntax check failed without saying where: {:?}",
                messages.trim()
            )
        }),
        other => Err(format!(
            "bash's syntax check ended with {other:?}: {:?}",
            messages.trim()
        )),
    }
}

/// The line of bash's first message, `bash: line N: ...`.
fn error_line(messages: &str) -> Option<usize> {
    let at = messages.find("line ")? + "line ".len();
    let digits: String = messages[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn complete_and_unfinished_as_bash_reads_them() {
        let b = system();
        for t in [
            "ls -l",
            "if true; then echo y; fi",
            "cat <<EOF\nx\nEOF",
            "echo 'a\nb'",
            "f() { echo; }",
            // Syntax errors: bash refuses them whole, nothing is left open.
            "echo )",
            "fi",
            "echo )\necho fine",
        ] {
            assert_eq!(b.check(t).await, ShellSyntax::Complete, "{t:?}");
        }
        for t in [
            "if true",
            "echo a &&",
            "echo a |",
            "{ echo a",
            "(echo a",
            "f() {",
            "case x in",
            "echo \"a",
            "echo $(date",
            "for x in a; do",
            // A here-document cut off by the end of the text: `bash -n` only warns.
            "cat <<EOF\nx",
            // After a syntax error bash parses the next line afresh, which is left open.
            "echo )\nif true",
        ] {
            assert_eq!(b.check(t).await, ShellSyntax::Unfinished, "{t:?}");
        }
    }

    #[tokio::test]
    async fn nothing_the_text_says_is_executed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mark = dir.path().join("ran");
        let t = format!(
            "touch {0}; echo $(touch {0}) `touch {0}` <(touch {0})",
            mark.display()
        );
        assert_eq!(system().check(&t).await, ShellSyntax::Complete);
        assert!(!mark.exists());
    }

    #[tokio::test]
    async fn without_bash_the_check_fails_closed() {
        let b = BashSyntax::new("/nonexistent/bash");
        match b.check("ls").await {
            ShellSyntax::Unchecked(why) => assert!(why.contains("could not be started"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A "bash" that is something else entirely.
        let b = BashSyntax::new("/bin/false");
        assert!(matches!(b.check("ls").await, ShellSyntax::Unchecked(_)));
    }

    #[tokio::test]
    async fn a_hung_check_times_out_as_unchecked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("bash");
        std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").expect("write");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let started = std::time::Instant::now();
        match BashSyntax::new(&fake).check("ls").await {
            ShellSyntax::Unchecked(why) => assert!(why.contains("longer than"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn error_lines() {
        assert_eq!(
            error_line("bash: line 3: syntax error near unexpected token `)'"),
            Some(3)
        );
        assert_eq!(error_line("nothing"), None);
    }

    /// The check's cost per judged line (run with `--ignored --nocapture`).
    #[tokio::test]
    #[ignore]
    async fn latency_per_line() {
        let b = system();
        let mut us = Vec::new();
        for i in 0..200 {
            let line = format!("cd /srv/app-{i} && ls -l | grep -c '{i}' > /tmp/out-{i}");
            let t = std::time::Instant::now();
            assert_eq!(b.check(&line).await, ShellSyntax::Complete);
            us.push(t.elapsed().as_micros());
        }
        us.sort_unstable();
        eprintln!(
            "bash -n per line over 200: p50 {} us, p99 {} us, max {} us",
            us[100], us[197], us[199]
        );
    }
}
