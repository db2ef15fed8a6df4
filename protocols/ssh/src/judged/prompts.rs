//! The target's own word on whether a command is complete (issue 13): a judged shell on a
//! terminal is started with `PS1` and `PS2` that begin with markers random for the channel.
//! Bash prints a prompt before each line it reads, `PS2` when that line continues a command.
//! Proctor sends a judged command of N lines at once, so the first N-1 prompts after it are
//! bash reading it; a `PS2` after that means bash took the whole command as unfinished and
//! waits for more, which would join the next judged line to it. The relay then interrupts
//! (Ctrl-C: bash drops what it read) and says so. The markers are taken out of what the
//! agent sees; the record keeps the output as the target sent it.
//!
//! Before it starts bash, the login shell prints a third marker with its process id (bash is
//! exec'd in its place, so the id is bash's). Only a marker that arrives before bash's first
//! prompt is believed: bash reads no command before that prompt, so nothing the agent typed
//! has run yet. The id lets the relay
//! read the shell's working directory from the target's kernel after each prompt, for the
//! approval card (the agent cannot forge what `/proc/PID/cwd` says).

/// Markers of one channel, and the prompts owed for what was sent.
#[derive(Debug, Clone)]
pub struct Prompts {
    ps1: String,
    ps2: String,
    /// Bytes at the end of the last output that may begin a marker, held back until the
    /// next output says whether they do.
    tail: Vec<u8>,
    /// Prompts bash will print while still reading commands already sent.
    owed: usize,
    /// What the process-id marker begins with; the id and `]` follow.
    pid_prefix: String,
    /// Bash printed its first prompt: process-id markers are no longer believed.
    prompted: bool,
    /// The shell's process id, from the marker printed before bash started.
    shell_pid: Option<u32>,
    /// A prompt came since the working directory was last read: a command ran.
    cwd_stale: bool,
    /// Commands sent whose closing `PS1` has not come: bash is still running them, so a line
    /// judged now runs after them, wherever they leave the shell.
    running: usize,
}

/// Whether the shell's working directory should be read before the next line is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CwdDue {
    /// Nothing ran since the last reading (or the shell's process id is unknown).
    Unchanged,
    /// A command ended since: read it from process `pid`.
    Read(u32),
    /// A command sent earlier is still running: the directory the next line runs in is not
    /// known yet.
    Busy,
}

/// Digits of a process id at most (Linux's `pid_max` is below 2^22; 10 covers any u32).
const PID_DIGITS: usize = 10;

/// What one piece of target output holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// The output without markers, for the agent.
    pub shown: Vec<u8>,
    /// Bash printed `PS2` after reading all that was sent: it waits for more.
    pub unfinished: bool,
}

impl Prompts {
    /// `seed`: random, per channel, so neither the agent nor a program knows the markers
    /// ahead (hex only, so they need no quoting in the shell's command).
    pub fn new(seed: u128) -> Prompts {
        Prompts {
            ps1: format!("[proctor-ps1-{seed:032x}]"),
            ps2: format!("[proctor-ps2-{seed:032x}]"),
            tail: Vec::new(),
            owed: 0,
            pid_prefix: format!("[proctor-pid-{seed:032x}:"),
            prompted: false,
            shell_pid: None,
            cwd_stale: false,
            running: 0,
        }
    }

    /// What the login shell prints before it starts bash: this, its process id, then `]`.
    pub fn pid_prefix(&self) -> &str {
        &self.pid_prefix
    }

    /// Whether the shell's working directory should be read again before a line is judged.
    /// The count of running commands rests on the prompt markers, which a program that learnt
    /// them can print: so the reading only ever adds to a judgement, and the card says when it
    /// was read.
    pub fn cwd_due(&mut self) -> CwdDue {
        let Some(pid) = self.shell_pid else {
            return CwdDue::Unchanged;
        };
        if self.running > 0 {
            // Read again once the shell is back at its prompt.
            self.cwd_stale = true;
            return CwdDue::Busy;
        }
        if std::mem::take(&mut self.cwd_stale) {
            CwdDue::Read(pid)
        } else {
            CwdDue::Unchanged
        }
    }

    pub fn ps1(&self) -> &str {
        &self.ps1
    }

    pub fn ps2(&self) -> &str {
        &self.ps2
    }

    /// A judged command went to the target: one prompt for each line after its first.
    pub fn sent(&mut self, text: &str) {
        self.running = self.running.saturating_add(1);
        self.owed = self.owed.saturating_add(text.matches('\n').count());
    }

    /// The interrupt key went to the target: bash drops what it was reading.
    pub fn interrupted(&mut self) {
        self.owed = 0;
    }

    pub fn scan(&mut self, data: &[u8]) -> Scanned {
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(data);
        let mut out = Scanned::default();
        let (ps1, ps2) = (self.ps1.as_bytes(), self.ps2.as_bytes());
        let mut i = 0;
        while i < buf.len() {
            let rest = &buf[i..];
            // Both markers begin with `[`: what comes before the next one is shown at once
            // (this runs on every byte of a judged shell's output).
            let plain = rest.iter().position(|&b| b == b'[').unwrap_or(rest.len());
            if plain > 0 {
                out.shown.extend_from_slice(&rest[..plain]);
                i += plain;
                continue;
            }
            // Only a marker before bash's first prompt is the login shell's: bash reads no
            // command before it prints that prompt, so nothing the agent sent has run yet.
            let pid_wanted = !self.prompted && self.shell_pid.is_none();
            if pid_wanted && rest.starts_with(self.pid_prefix.as_bytes()) {
                match self.pid_marker(&rest[self.pid_prefix.len()..]) {
                    PidMarker::Whole { pid, len } => {
                        self.shell_pid = pid;
                        self.cwd_stale = true;
                        i += self.pid_prefix.len() + len;
                        continue;
                    }
                    PidMarker::Cut => {
                        self.tail = rest.to_vec();
                        break;
                    }
                    PidMarker::Not => {}
                }
            } else if pid_wanted
                && rest.len() < self.pid_prefix.len()
                && self.pid_prefix.as_bytes().starts_with(rest)
            {
                self.tail = rest.to_vec();
                break;
            }
            if rest.starts_with(ps1) || rest.starts_with(ps2) {
                self.prompted = true;
                if rest.starts_with(ps1) {
                    self.cwd_stale = true;
                }
                if self.owed > 0 {
                    self.owed -= 1;
                } else if rest.starts_with(ps2) {
                    out.unfinished = true;
                } else {
                    // The prompt for a new command: the oldest one sent has ended.
                    self.running = self.running.saturating_sub(1);
                }
                i += ps1.len();
                continue;
            }
            if rest.len() < ps1.len() && (ps1.starts_with(rest) || ps2.starts_with(rest)) {
                // Perhaps a marker cut in two: decided with the next output.
                self.tail = rest.to_vec();
                break;
            }
            out.shown.push(buf[i]);
            i += 1;
        }
        out
    }

    /// What follows the process-id marker's prefix: digits and `]`.
    fn pid_marker(&self, after: &[u8]) -> PidMarker {
        let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
        match after.get(digits) {
            Some(b']') if digits > 0 => PidMarker::Whole {
                pid: std::str::from_utf8(&after[..digits])
                    .ok()
                    .and_then(|d| d.parse().ok()),
                len: digits + 1,
            },
            None if digits <= PID_DIGITS => PidMarker::Cut,
            _ => PidMarker::Not,
        }
    }

    /// Output held back when the channel ends: it was no marker.
    pub fn flush(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tail)
    }
}

enum PidMarker {
    /// The marker, `len` bytes after its prefix.
    Whole {
        pid: Option<u32>,
        len: usize,
    },
    /// Perhaps the marker, cut short by the end of this output.
    Cut,
    Not,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_removed_and_an_unowed_ps2_means_unfinished() {
        let mut p = Prompts::new(7);
        let (m1, m2) = (p.ps1().to_string(), p.ps2().to_string());
        let s = p.scan(format!("{m1}u@h:~$ ").as_bytes());
        assert_eq!(s.shown, b"u@h:~$ ");
        assert!(!s.unfinished);
        // A three-line command: two continuation prompts are bash reading it.
        p.sent("if true\nthen echo y\nfi");
        let s = p.scan(format!("{m2}{m2}y\r\n{m1}u@h:~$ ").as_bytes());
        assert_eq!(s.shown, b"y\r\nu@h:~$ ");
        assert!(!s.unfinished);
        // A command bash reads on after its last line.
        p.sent("echo a &&");
        let s = p.scan(m2.as_bytes());
        assert!(s.unfinished && s.shown.is_empty());
        p.interrupted();
        // A marker cut across two reads.
        let (a, b) = m2.as_bytes().split_at(9);
        let s = p.scan(&[b"out ".as_slice(), a].concat());
        assert_eq!(s.shown, b"out ");
        let s = p.scan(b);
        assert!(s.unfinished && s.shown.is_empty());
        // Text that only looks like the start of a marker is shown once it is clear.
        let s = p.scan(b"[pro");
        assert!(s.shown.is_empty());
        let s = p.scan(b"se]");
        assert_eq!(s.shown, b"[prose]");
        assert_eq!(p.scan(b"[p").shown, b"");
        assert_eq!(p.flush(), b"[p");
    }

    #[test]
    fn the_shell_pid_is_believed_only_before_the_first_prompt() {
        let mut p = Prompts::new(9);
        let (m1, pid) = (p.ps1().to_string(), p.pid_prefix().to_string());
        assert_eq!(p.cwd_due(), CwdDue::Unchanged);
        // Cut across two reads, then the first prompt.
        let whole = format!("{pid}4242]{m1}u@h:~$ ");
        let (a, b) = whole.as_bytes().split_at(pid.len() + 2);
        assert_eq!(p.scan(a).shown, b"");
        assert_eq!(p.scan(b).shown, b"u@h:~$ ");
        assert_eq!(p.cwd_due(), CwdDue::Read(4242));
        assert_eq!(p.cwd_due(), CwdDue::Unchanged, "read once per prompt");
        // After the first prompt, a marker in a command's output is shown and not believed.
        p.sent("cd /tmp");
        // A line typed while it runs: the directory is not known yet.
        assert_eq!(p.cwd_due(), CwdDue::Busy);
        p.sent("rm -r data");
        let s = p.scan(format!("{pid}1]{m1}$ ").as_bytes());
        assert_eq!(s.shown, format!("{pid}1]$ ").as_bytes());
        assert_eq!(p.cwd_due(), CwdDue::Busy, "one of two commands still runs");
        p.scan(m1.as_bytes());
        assert_eq!(p.cwd_due(), CwdDue::Read(4242));
        // A continuation prompt owed while bash reads a command does not end it.
        p.sent("if true\nthen cd /\nfi");
        p.scan(format!("{}{}", p.ps2(), p.ps2()).as_bytes());
        assert_eq!(p.cwd_due(), CwdDue::Busy);
        p.scan(m1.as_bytes());
        assert_eq!(p.cwd_due(), CwdDue::Read(4242));
        // Not digits: shown as it is.
        let mut q = Prompts::new(3);
        let qp = q.pid_prefix().to_string();
        assert_eq!(
            q.scan(format!("{qp}x]").as_bytes()).shown,
            format!("{qp}x]").as_bytes()
        );
        assert_eq!(q.cwd_due(), CwdDue::Unchanged);
    }

    /// Output with markers at random places, cut into random pieces: the agent sees exactly
    /// the output without its markers (what is held back included), never a marker's part
    /// that completes it, and an unowed `PS2` is always reported.
    #[test]
    fn random_cuts_show_the_output_without_markers() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for case in 0..500u128 {
            let mut p = Prompts::new(case);
            let (m1, m2) = (p.ps1().to_string(), p.ps2().to_string());
            let mut stream = Vec::new();
            let mut plain = Vec::new();
            let mut ps2 = 0;
            for _ in 0..next(20) {
                match next(5) {
                    0 => stream.extend_from_slice(m1.as_bytes()),
                    1 => {
                        stream.extend_from_slice(m2.as_bytes());
                        ps2 += 1;
                    }
                    2 => {
                        // Text that begins like a marker and is not one.
                        let cut = 1 + next(m1.len() - 1);
                        stream.extend_from_slice(&m1.as_bytes()[..cut]);
                        plain.extend_from_slice(&m1.as_bytes()[..cut]);
                        stream.push(b'.');
                        plain.push(b'.');
                    }
                    _ => {
                        let t = format!("out{} ", next(1000));
                        stream.extend_from_slice(t.as_bytes());
                        plain.extend_from_slice(t.as_bytes());
                    }
                }
            }
            let mut shown = Vec::new();
            let mut unfinished = 0;
            let mut i = 0;
            while i < stream.len() {
                let n = 1 + next(12);
                let end = (i + n).min(stream.len());
                let s = p.scan(&stream[i..end]);
                shown.extend_from_slice(&s.shown);
                unfinished += usize::from(s.unfinished);
                i = end;
            }
            shown.extend_from_slice(&p.flush());
            assert_eq!(shown, plain, "case {case}");
            assert_eq!(unfinished > 0, ps2 > 0, "case {case}");
        }
    }
}
