//! A real pseudo-terminal around a child process (an agent's `ssh -tt`), for tests that type
//! into a shell and read the screen.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

pub struct Pty {
    pub master: std::fs::File,
    screen: Arc<Mutex<Vec<u8>>>,
    /// When each chunk of output arrived.
    stamps: Arc<Mutex<Vec<Instant>>>,
    child: Child,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Sets the terminal size of the pty behind `fd`.
pub fn set_size(fd: i32, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on a pty we own, with a valid winsize.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    assert_eq!(r, 0, "TIOCSWINSZ");
}

impl Pty {
    /// Runs `cmd` with a new pty (80x24) as its controlling terminal and collects its output.
    pub fn spawn(mut cmd: Command) -> Pty {
        let mut master: i32 = -1;
        let mut slave: i32 = -1;
        // SAFETY: openpty writes two descriptors into the provided ints.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0, "openpty");
        // SAFETY: both descriptors were just returned by openpty and are owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        set_size(master.as_raw_fd(), 80, 24);
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave.try_clone().expect("dup")));
        // SAFETY: setsid and TIOCSCTTY are async-signal-safe; the slave is fd 0 in the child.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn the pty's program");
        drop(slave);
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let stamps = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup master");
        let (sink, stamp_sink) = (screen.clone(), stamps.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                lock(&stamp_sink).push(Instant::now());
                lock(&sink).extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            screen,
            stamps,
            child,
        }
    }

    pub fn type_in(&mut self, s: &[u8]) {
        self.master.write_all(s).expect("write to pty");
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&lock(&self.screen)).into_owned()
    }

    /// Bytes printed so far.
    pub fn printed(&self) -> usize {
        lock(&self.screen).len()
    }

    /// When the first output after `t` arrived, if it has.
    pub fn first_output_after(&self, t: Instant) -> Option<Instant> {
        lock(&self.stamps)
            .iter()
            .rev()
            .take_while(|s| **s > t)
            .last()
            .copied()
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
