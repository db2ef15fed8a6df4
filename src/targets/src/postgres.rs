//! A real PostgreSQL cluster: `initdb` into a directory, scram-sha-256 everywhere, a random
//! loopback port, a superuser with a random password for admin work.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{ChildGuard, chown_to_nobody, find_program, free_port, unprivileged};
use crate::{Result, TargetError};

const PG_DIRS: &[&str] = &[
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
];

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Where the cluster lives; a temporary directory (removed on drop) when `None`.
    pub dir: Option<PathBuf>,
    pub max_connections: u32,
    /// Durable like production (`fsync=on`), or fast for tests.
    pub durable: bool,
    pub superuser: String,
    /// Extra `postgresql.conf` lines.
    pub extra_conf: Vec<String>,
    pub port: Option<u16>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            dir: None,
            max_connections: 100,
            durable: false,
            superuser: "postgres".into(),
            extra_conf: Vec::new(),
            port: None,
        }
    }
}

pub struct LocalPostgres {
    pub port: u16,
    pub superuser: String,
    pub password: String,
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    bin_dir: PathBuf,
    opts: PostgresOptions,
    child: Option<ChildGuard>,
    _temp: Option<tempfile::TempDir>,
}

fn pg_program(name: &str) -> Result<PathBuf> {
    find_program(name, PG_DIRS).ok_or_else(|| TargetError::Missing {
        program: name.into(),
        hint: "install PostgreSQL server binaries (Debian: apt-get install postgresql)".into(),
    })
}

impl LocalPostgres {
    /// initdb (unless the directory already holds a cluster) and start.
    pub fn start(opts: PostgresOptions) -> Result<LocalPostgres> {
        let initdb = pg_program("initdb")?;
        // /usr/local/bin may hold only links to a few server programs; pg_isready and friends
        // live beside the real initdb.
        let initdb = fs::canonicalize(&initdb).unwrap_or(initdb);
        let bin_dir = initdb.parent().map(Path::to_path_buf).unwrap_or_default();
        let (root, temp) = match &opts.dir {
            Some(d) => {
                fs::create_dir_all(d)
                    .map_err(TargetError::io(format!("create {}", d.display())))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("proctor-pg-")
                    .tempdir()
                    .map_err(TargetError::io("create a temporary directory"))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        chown_to_nobody(&root)?;
        let data_dir = root.join("data");
        let socket_dir = root.join("run");
        let password_file = root.join("superuser.password");
        let password = if data_dir.join("PG_VERSION").exists() {
            fs::read_to_string(&password_file)
                .map_err(TargetError::io("read the superuser password"))?
                .trim()
                .to_string()
        } else {
            let password = hex::encode(rand::random::<[u8; 16]>());
            let pwfile = root.join("pwfile");
            fs::write(&pwfile, format!("{password}\n")).map_err(TargetError::io("write pwfile"))?;
            chown_to_nobody(&pwfile)?;
            let out = unprivileged(&initdb)
                .arg("-D")
                .arg(&data_dir)
                .arg("-U")
                .arg(&opts.superuser)
                .arg("--auth=scram-sha-256")
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["-E", "UTF8", "--locale=C", "--no-sync"])
                .stdin(Stdio::null())
                .output()
                .map_err(TargetError::io("run initdb"))?;
            let _ = fs::remove_file(&pwfile);
            if !out.status.success() {
                return Err(TargetError::Failed(format!(
                    "initdb failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            fs::write(&password_file, &password).map_err(TargetError::io("save the password"))?;
            fs::write(
                data_dir.join("pg_hba.conf"),
                "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
            )
            .map_err(TargetError::io("write pg_hba.conf"))?;
            password
        };
        fs::create_dir_all(&socket_dir).map_err(TargetError::io("create the socket directory"))?;
        chown_to_nobody(&socket_dir)?;
        let mut pg = LocalPostgres {
            port: opts.port.unwrap_or(0),
            superuser: opts.superuser.clone(),
            password,
            data_dir,
            socket_dir,
            bin_dir,
            opts: opts.clone(),
            child: None,
            _temp: temp,
        };
        pg.launch(&opts)?;
        pg.opts.port = Some(pg.port);
        Ok(pg)
    }

    fn launch(&mut self, opts: &PostgresOptions) -> Result<()> {
        let mut last_err = String::new();
        for _ in 0..5 {
            if self.port == 0 || opts.port.is_none() && last_err.contains("in use") {
                self.port = free_port()?;
            }
            let mut conf = format!(
                "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nmax_connections = {}\nfsync = {}\nsynchronous_commit = {}\nfull_page_writes = {}\nshared_buffers = 64MB\nlog_min_messages = warning\npassword_encryption = 'scram-sha-256'\n",
                self.port,
                self.socket_dir.display(),
                opts.max_connections,
                if opts.durable { "on" } else { "off" },
                if opts.durable { "on" } else { "off" },
                if opts.durable { "on" } else { "off" },
            );
            for line in &opts.extra_conf {
                conf.push_str(line);
                conf.push('\n');
            }
            fs::write(self.data_dir.join("postgresql.auto.conf"), conf)
                .map_err(TargetError::io("write postgresql.auto.conf"))?;
            let log = self
                .data_dir
                .parent()
                .map(|p| p.join("postgres.log"))
                .unwrap_or_else(|| PathBuf::from("/dev/null"));
            let logf = fs::File::create(&log).map_err(TargetError::io("create the server log"))?;
            chown_to_nobody(&log)?;
            let errf = logf
                .try_clone()
                .map_err(TargetError::io("clone the log handle"))?;
            let mut cmd = unprivileged(&self.bin_dir.join("postgres"));
            cmd.arg("-D")
                .arg(&self.data_dir)
                .stdin(Stdio::null())
                .stdout(logf)
                .stderr(errf);
            let mut child = ChildGuard::spawn("postgres", &mut cmd)?;
            if self.wait_ready(&mut child, Duration::from_secs(30)) {
                self.child = Some(child);
                return Ok(());
            }
            child.stop(Duration::from_secs(2));
            last_err = fs::read_to_string(&log).unwrap_or_default();
            if !last_err.contains("in use") {
                break;
            }
        }
        Err(TargetError::Failed(format!(
            "postgres did not start: {}",
            last_err
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
        )))
    }

    fn wait_ready(&self, child: &mut ChildGuard, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if child.exited() {
                return false;
            }
            let ok = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .stdin(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// libpq URI for the superuser.
    pub fn admin_dsn(&self, dbname: &str) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            self.superuser, self.password, self.port, dbname
        )
    }

    /// Runs SQL as the superuser with psql; returns stdout (unaligned, tuples only).
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String> {
        let psql = find_program("psql", PG_DIRS).ok_or_else(|| TargetError::Missing {
            program: "psql".into(),
            hint: "install postgresql-client".into(),
        })?;
        let out = Command::new(psql)
            .arg(self.admin_dsn(dbname))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(TargetError::io("run psql"))?;
        if !out.status.success() {
            return Err(TargetError::Failed(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the server (fast shutdown). `start_again` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.signal(libc::SIGINT);
            c.stop(Duration::from_secs(10));
        }
    }

    /// Kills the postmaster with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill();
        }
    }

    pub fn start_again(&mut self) -> Result<()> {
        let opts = self.opts.clone();
        self.launch(&opts)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| !c.exited())
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
