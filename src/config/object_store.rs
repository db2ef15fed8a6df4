//! `[object_store]`: sealed sessions, ledger entries, tree heads and timestamp tokens shipped
//! as write-once objects (S3 Object Lock, COMPLIANCE) to a bucket in another security domain.
//! Works on one node as well as in cluster mode. Without the table nothing is shipped.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

fn default_region() -> String {
    "us-east-1".into()
}

fn default_mode() -> String {
    "compliance".into()
}

fn default_spool_max() -> String {
    "1GiB".into()
}

fn default_interval_ms() -> u64 {
    1000
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// The S3 endpoint, `http(s)://host:port` (path-style requests are used).
    pub endpoint: String,
    /// A bucket created with Object Lock enabled (proctor does not create it).
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    /// A file holding the secret access key (first line), or ...
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// ... the name of an environment variable holding it. Exactly one of the two.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// Only `compliance`: a governance lock can be lifted by whoever holds the right key.
    #[serde(default = "default_mode")]
    pub retention_mode: String,
    /// Past this many bytes waiting in the spool, new sessions are refused (`1GiB`, `500MB`).
    #[serde(default = "default_spool_max")]
    pub spool_max: String,
    /// How often the shipper looks for new evidence and retries the store, in milliseconds.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Keep the local copy after shipping (the default). `false` is refused for now: retention
    /// in the local store still decides when local evidence goes.
    #[serde(default = "default_true")]
    pub keep_local: bool,
}

/// Checks the table; the error names the key.
pub fn validate(c: &ObjectStoreConfig) -> Result<(), (String, String)> {
    let bad = |k: &str, m: &str| Err((format!("object_store.{k}"), m.to_string()));
    if !(c.endpoint.starts_with("http://") || c.endpoint.starts_with("https://")) {
        return bad("endpoint", "an http:// or https:// URL is required");
    }
    if !valid_bucket(&c.bucket) {
        return bad(
            "bucket",
            "3 to 63 characters of a-z, 0-9, '-' and '.', starting and ending with a letter or digit",
        );
    }
    if c.region.trim().is_empty() {
        return bad("region", "must not be empty");
    }
    if c.access_key_id.trim().is_empty() {
        return bad("access_key_id", "must not be empty");
    }
    if c.retention_mode != "compliance" {
        return bad(
            "retention_mode",
            "only \"compliance\" is accepted: evidence under a governance lock can be deleted by a privileged key",
        );
    }
    if crate::config::parse_size(&c.spool_max).map_or(true, |n| n == 0) {
        return bad(
            "spool_max",
            "a size such as \"1GiB\" or \"500MB\", above zero",
        );
    }
    if c.interval_ms == 0 || c.interval_ms > 600_000 {
        return bad("interval_ms", "between 1 and 600000");
    }
    if !c.keep_local {
        return bad(
            "keep_local",
            "only true: the local copy is kept, and local retention decides when it goes",
        );
    }
    match (&c.secret_access_key_file, &c.secret_access_key_env) {
        (Some(_), Some(_)) | (None, None) => bad(
            "secret_access_key_file",
            "give exactly one of secret_access_key_file and secret_access_key_env",
        ),
        _ => secret(c).map(|_| ()),
    }
}

/// The secret access key, read from its file or variable.
pub fn secret(c: &ObjectStoreConfig) -> Result<String, (String, String)> {
    if let Some(p) = &c.secret_access_key_file {
        let text = std::fs::read_to_string(p).map_err(|e| {
            (
                "object_store.secret_access_key_file".to_string(),
                format!("{}: {e}", p.display()),
            )
        })?;
        let s = text.lines().next().unwrap_or_default().trim().to_string();
        if s.is_empty() {
            return Err((
                "object_store.secret_access_key_file".into(),
                format!("{} is empty", p.display()),
            ));
        }
        return Ok(s);
    }
    let name = c.secret_access_key_env.clone().unwrap_or_default();
    match std::env::var(&name) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err((
            "object_store.secret_access_key_env".into(),
            format!("environment variable {name:?} is not set or empty"),
        )),
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ObjectStoreConfig {
        ObjectStoreConfig {
            endpoint: "http://127.0.0.1:8333".into(),
            bucket: "evidence".into(),
            region: default_region(),
            access_key_id: "k".into(),
            secret_access_key_file: None,
            secret_access_key_env: Some("PATH".into()),
            retention_mode: default_mode(),
            spool_max: default_spool_max(),
            interval_ms: 1000,
            keep_local: true,
        }
    }

    #[test]
    fn refuses_what_would_weaken_the_lock_or_cannot_work() {
        assert!(validate(&base()).is_ok());
        let key = |c: ObjectStoreConfig| validate(&c).unwrap_err().0;
        assert_eq!(
            key(ObjectStoreConfig {
                retention_mode: "governance".into(),
                ..base()
            }),
            "object_store.retention_mode"
        );
        assert_eq!(
            key(ObjectStoreConfig {
                endpoint: "127.0.0.1:8333".into(),
                ..base()
            }),
            "object_store.endpoint"
        );
        assert_eq!(
            key(ObjectStoreConfig {
                bucket: "Evidence_1".into(),
                ..base()
            }),
            "object_store.bucket"
        );
        assert_eq!(
            key(ObjectStoreConfig {
                secret_access_key_env: Some("PROCTOR_TEST_NO_SUCH_VARIABLE".into()),
                ..base()
            }),
            "object_store.secret_access_key_env"
        );
        assert_eq!(
            key(ObjectStoreConfig {
                secret_access_key_file: Some("/nonexistent/secret".into()),
                secret_access_key_env: None,
                ..base()
            }),
            "object_store.secret_access_key_file"
        );
        assert_eq!(
            key(ObjectStoreConfig {
                spool_max: "lots".into(),
                ..base()
            }),
            "object_store.spool_max"
        );
    }
}
