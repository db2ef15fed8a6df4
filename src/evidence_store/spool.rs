//! The persistent spool: what is not yet shipped, on disk in `DATA/object-store/`. Each
//! pending object is two files in `spool/`: `NAME.obj` (the exact bytes to PUT) and
//! `NAME.json` (its key, SHA-256, size, retain-until and order), NAME being the first 32 hex
//! digits of SHA-256 of the key. `shipped.log` lists every object the store confirmed
//! (`KEY SHA256HEX`, one a line, appended and fsynced before the spool files go), so a restart
//! neither loses nor re-derives anything it already shipped.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One object waiting to be shipped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    pub key: String,
    pub sha256: String,
    pub size: u64,
    pub retain_until_ns: i64,
    /// When it was spooled (ns); objects ship in this order.
    pub spooled_ns: i64,
}

pub struct Spool {
    dir: PathBuf,
    log: PathBuf,
    bytes: AtomicU64,
    /// Key -> SHA-256 hex of everything shipped or spooled.
    known: Mutex<HashMap<String, String>>,
}

pub fn root(data: &Path) -> PathBuf {
    data.join("object-store")
}

fn name(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    pub fn open(data: &Path) -> io::Result<Spool> {
        let dir = root(data).join("spool");
        fs::create_dir_all(&dir)?;
        let log = root(data).join("shipped.log");
        let mut known = HashMap::new();
        if let Ok(text) = fs::read_to_string(&log) {
            // A torn last line (crash mid-append) is ignored: that object is still spooled.
            for line in text.lines() {
                if let Some((k, h)) = line.split_once(' ')
                    && h.len() == 64
                {
                    known.insert(k.to_string(), h.to_string());
                }
            }
        }
        let spool = Spool {
            dir,
            log,
            bytes: AtomicU64::new(0),
            known: Mutex::new(known),
        };
        let mut total = 0;
        for (p, _) in spool.pending()? {
            total += p.size;
            spool.known_map().insert(p.key.clone(), p.sha256.clone());
        }
        spool.bytes.store(total, Ordering::SeqCst);
        Ok(spool)
    }

    fn known_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shipped or waiting: either way it is not spooled again.
    pub fn known(&self, key: &str) -> bool {
        self.known_map().contains_key(key)
    }

    /// Bytes waiting to be shipped.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Spools `bytes` under `key` durably (object first, then its description; a crash between
    /// leaves an `.obj` without `.json`, which the next spooling of the same key overwrites).
    pub fn put(&self, key: &str, bytes: &[u8], retain_until_ns: i64) -> io::Result<()> {
        if self.known(key) {
            return Ok(());
        }
        let n = name(key);
        let p = Pending {
            key: key.to_string(),
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
            retain_until_ns,
            spooled_ns: crate::clock::now_ns(),
        };
        write_synced(&self.dir.join(format!("{n}.obj")), bytes)?;
        write_synced(
            &self.dir.join(format!("{n}.json")),
            &serde_json::to_vec(&p).map_err(io::Error::from)?,
        )?;
        sync_dir(&self.dir)?;
        self.bytes.fetch_add(p.size, Ordering::SeqCst);
        self.known_map().insert(p.key, p.sha256);
        Ok(())
    }

    /// Everything waiting, oldest first, with the path of its bytes.
    pub fn pending(&self) -> io::Result<Vec<(Pending, PathBuf)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            let path = e?.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let p: Pending = match serde_json::from_slice(&fs::read(&path)?) {
                Ok(p) => p,
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("spool entry {}: {e}", path.display()),
                    ));
                }
            };
            out.push((p, path.with_extension("obj")));
        }
        out.sort_by(|a, b| (a.0.spooled_ns, &a.0.key).cmp(&(b.0.spooled_ns, &b.0.key)));
        Ok(out)
    }

    /// The store confirmed `p` with an equal checksum: log it, then drop the spool files.
    pub fn shipped(&self, p: &Pending) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        f.write_all(format!("{} {}\n", p.key, p.sha256).as_bytes())?;
        f.sync_data()?;
        let n = name(&p.key);
        fs::remove_file(self.dir.join(format!("{n}.json")))?;
        let _ = fs::remove_file(self.dir.join(format!("{n}.obj")));
        self.bytes
            .fetch_sub(p.size.min(self.bytes()), Ordering::SeqCst);
        Ok(())
    }

    /// How many objects the store has confirmed.
    pub fn shipped_count(&self) -> usize {
        fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_forgets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        s.put("sessions/a.bundle", b"one", 5).unwrap();
        s.put("ledger/leaves/0000000000000000", b"two!", 5).unwrap();
        assert_eq!(s.bytes(), 7);
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.bytes(), 7);
        let list = s.pending().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(fs::read(&list[0].1).unwrap(), b"one");
        s.shipped(&list[0].0).unwrap();
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.bytes(), 4);
        assert!(
            s.known("sessions/a.bundle"),
            "shipped keys are not spooled again"
        );
        s.put("sessions/a.bundle", b"other bytes", 5).unwrap();
        assert_eq!(s.pending().unwrap().len(), 1);
    }
}
