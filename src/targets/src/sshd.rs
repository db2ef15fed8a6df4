//! A real OpenSSH `sshd`: its own host key and config in a temporary directory, a random
//! loopback port, user certificates trusted through `TrustedUserCAKeys`, no PAM, no passwords.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{ChildGuard, find_program, free_port, is_root, wait_for_port};
use crate::{Result, TargetError};

#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// Where config and keys live; a temporary directory (removed on drop) when `None`.
    pub dir: Option<PathBuf>,
    /// OpenSSH public key lines of user CAs to trust.
    pub trusted_user_ca_keys: Vec<String>,
    pub port: Option<u16>,
    /// Extra `sshd_config` lines.
    pub extra_config: Vec<String>,
}

pub struct LocalSshd {
    pub port: u16,
    /// `ssh-ed25519 AAAA...` of the host key, for pinning.
    pub host_key: String,
    pub dir: PathBuf,
    config: PathBuf,
    sshd: PathBuf,
    child: Option<ChildGuard>,
    _temp: Option<tempfile::TempDir>,
}

pub fn sshd_program() -> Result<PathBuf> {
    find_program("sshd", &["/usr/sbin", "/usr/local/sbin"]).ok_or_else(|| TargetError::Missing {
        program: "sshd".into(),
        hint: "install OpenSSH's server (Debian: apt-get install -y openssh-server)".into(),
    })
}

/// The login sshd can accept for us: any user when root, only ourselves otherwise.
pub fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            if is_root() {
                "root".into()
            } else {
                "nobody".into()
            }
        })
}

impl LocalSshd {
    pub fn start(opts: SshdOptions) -> Result<LocalSshd> {
        let sshd = sshd_program()?;
        let (dir, temp) = match &opts.dir {
            Some(d) => {
                fs::create_dir_all(d)
                    .map_err(TargetError::io(format!("create {}", d.display())))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("proctor-sshd-")
                    .tempdir()
                    .map_err(TargetError::io("create a temporary directory"))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        // sshd's privilege separation needs this directory to exist.
        if is_root() {
            let _ = fs::create_dir_all("/run/sshd");
        }
        let host_key_path = dir.join("ssh_host_ed25519_key");
        if !host_key_path.exists() {
            let out = Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "proctor-test-host",
                    "-f",
                ])
                .arg(&host_key_path)
                .stdin(Stdio::null())
                .output()
                .map_err(TargetError::io("run ssh-keygen"))?;
            if !out.status.success() {
                return Err(TargetError::Failed(format!(
                    "ssh-keygen failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        let host_key = fs::read_to_string(host_key_path.with_extension("pub"))
            .map_err(TargetError::io("read the host public key"))?;
        let host_key = host_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let ca_file = dir.join("trusted_user_ca_keys");
        fs::write(&ca_file, opts.trusted_user_ca_keys.join("\n") + "\n")
            .map_err(TargetError::io("write TrustedUserCAKeys"))?;
        let mut s = LocalSshd {
            port: opts.port.unwrap_or(0),
            host_key,
            config: dir.join("sshd_config"),
            dir,
            sshd,
            child: None,
            _temp: temp,
        };
        s.launch(&opts, &host_key_path, &ca_file)?;
        Ok(s)
    }

    fn launch(&mut self, opts: &SshdOptions, host_key: &Path, ca_file: &Path) -> Result<()> {
        let mut last = String::new();
        for _ in 0..5 {
            if self.port == 0 || (opts.port.is_none() && !last.is_empty()) {
                self.port = free_port()?;
            }
            let mut config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {dir}/sshd.pid\nTrustedUserCAKeys {ca}\nAuthorizedKeysFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\nX11Forwarding no\nPermitUserEnvironment no\nAcceptEnv LANG LC_* PROCTOR_*\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\nMaxStartups 200:30:400\nMaxSessions 100\nPrintMotd no\n",
                port = self.port,
                hk = host_key.display(),
                dir = self.dir.display(),
                ca = ca_file.display(),
            );
            for line in &opts.extra_config {
                config.push_str(line);
                config.push('\n');
            }
            fs::write(&self.config, config).map_err(TargetError::io("write sshd_config"))?;
            let log = self.dir.join("sshd.log");
            let logf = fs::File::create(&log).map_err(TargetError::io("create the sshd log"))?;
            let mut cmd = Command::new(&self.sshd);
            cmd.arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&self.config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(logf);
            let mut child = ChildGuard::spawn("sshd", &mut cmd)?;
            if wait_for_port(self.port, Duration::from_secs(10)) && !child.exited() {
                self.child = Some(child);
                return Ok(());
            }
            child.stop(Duration::from_secs(1));
            last = fs::read_to_string(&log).unwrap_or_default();
            if !last.contains("in use") && !last.contains("Bind to port") {
                break;
            }
        }
        Err(TargetError::Failed(format!(
            "sshd did not start: {}",
            last.trim()
        )))
    }

    /// A `known_hosts` line for this server.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.stop(Duration::from_secs(5));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    /// Starts sshd again with the same port, keys and config.
    pub fn start_again(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.sshd);
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("sshd.log"))
            .map_err(TargetError::io("open the sshd log"))?;
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = ChildGuard::spawn("sshd", &mut cmd)?;
        if !wait_for_port(self.port, Duration::from_secs(10)) {
            return Err(TargetError::Failed("sshd did not come back".into()));
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for LocalSshd {
    fn drop(&mut self) {
        self.stop();
    }
}
