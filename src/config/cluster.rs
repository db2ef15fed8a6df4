//! `[cluster]`: several proctor nodes sharing a PostgreSQL control plane for live state and
//! commands (kill, approve, deny). Without the table proctor is one node, as it always was.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::Digest;

fn default_poll_ms() -> u64 {
    1000
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// libpq-style DSN of the control-plane database: a database of its own, never a target.
    pub control_plane: String,
    /// This node's name in the control plane; default: hostname and a hash of the data
    /// directory, so it is stable across restarts and two nodes on one host differ.
    #[serde(default)]
    pub node_id: Option<String>,
    /// How other nodes and people reach this node (shown beside its sessions).
    #[serde(default)]
    pub advertise: String,
    /// The backstop: every this many milliseconds a node looks for commands addressed to it
    /// (notifications are lost while its listener reconnects) and re-publishes its live state.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// `false`: no LISTEN/NOTIFY, commands arrive by the poll alone (tests prove the backstop).
    #[serde(default = "default_true")]
    pub notify: bool,
}

/// Longest node id: `proctor_cmd_<id>` must fit PostgreSQL's 63-byte channel names.
pub const MAX_NODE_ID: usize = 48;

/// Checks the table; the error names the key.
pub fn validate(c: &ClusterConfig) -> Result<(), (String, String)> {
    if c.control_plane.trim().is_empty() {
        return Err((
            "cluster.control_plane".into(),
            "a PostgreSQL DSN is required".into(),
        ));
    }
    if let Some(id) = &c.node_id
        && !valid_node_id(id)
    {
        return Err((
            "cluster.node_id".into(),
            format!("1 to {MAX_NODE_ID} characters of a-z, A-Z, 0-9, '-', '_' or '.'"),
        ));
    }
    if c.poll_interval_ms == 0 || c.poll_interval_ms > 60_000 {
        return Err((
            "cluster.poll_interval_ms".into(),
            "between 1 and 60000".into(),
        ));
    }
    Ok(())
}

pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NODE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The configured id, or `HOSTNAME-HASH` where HASH is the first 8 hex digits of SHA-256 of
/// the data directory's canonical path.
pub fn node_id(c: &ClusterConfig, data_dir: &Path) -> String {
    if let Some(id) = &c.node_id {
        return id.clone();
    }
    let host: String = hostname()
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
        .take(MAX_NODE_ID - 9)
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
    format!("{host}-{}", &hex::encode(digest)[..8])
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_node_id_is_stable_and_differs_by_data_dir() {
        let c = ClusterConfig {
            control_plane: "host=x".into(),
            node_id: None,
            advertise: String::new(),
            poll_interval_ms: 1000,
            notify: true,
        };
        let a = node_id(&c, Path::new("/tmp/proctor-a"));
        assert_eq!(a, node_id(&c, Path::new("/tmp/proctor-a")));
        assert_ne!(a, node_id(&c, Path::new("/tmp/proctor-b")));
        assert!(valid_node_id(&a), "{a}");
        assert!(!valid_node_id("a\"; drop"));
    }
}
