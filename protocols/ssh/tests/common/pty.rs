//! A real pseudo-terminal around a child process (the agent's `ssh`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::eventually;

const T: Duration = Duration::from_secs(20);

pub struct Pty {
    pub master: std::fs::File,
    screen: Arc<Mutex<Vec<u8>>>,
    /// When each chunk of output arrived.
    stamps: Arc<Mutex<Vec<Instant>>>,
    child: Child,
}

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
        let stdin = slave.try_clone().expect("dup");
        let stdout = slave.try_clone().expect("dup");
        let stderr = slave.try_clone().expect("dup");
        cmd.stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
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
        let child = cmd.spawn().expect("spawn ssh");
        drop(slave);
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup master");
        let sink = screen.clone();
        let stamps = Arc::new(Mutex::new(Vec::new()));
        let stamp_sink = stamps.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                stamp_sink.lock().unwrap().push(Instant::now());
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
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

    /// When the first output after `t` arrived, if it has.
    pub fn first_output_after(&self, t: Instant) -> Option<Instant> {
        self.stamps
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take_while(|s| **s > t)
            .last()
            .copied()
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    pub async fn wait_for(&self, needle: &str, count: usize) -> bool {
        eventually(T, || self.output().matches(needle).count() >= count).await
    }

    /// Waits until nothing new has been printed for a moment.
    pub async fn quiet(&self) {
        let mut last = self.screen.lock().unwrap().len();
        let mut since = Instant::now();
        let start = Instant::now();
        while start.elapsed() < T {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.screen.lock().unwrap().len();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > Duration::from_millis(300) {
                return;
            }
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
