//! What `verify --tsa-cert` and `ledger head` say about the tree heads' timestamp tokens
//! (FORMAT.md, "Attestations").

use std::fmt::Write as _;

use anyhow::{Result, anyhow};
use ed25519_dalek::VerifyingKey;
use rustls_pki_types::CertificateDer;

use crate::clock::format_ns;
use crate::recorder::signing;
use crate::recorder::timestamp::check::{self, Lag, TimestampReport};
use proctor_gate::inert::line;

/// Checks a bundle's timestamp tokens against its tree head, with the pinned key or else the
/// bundle's own (as `verify --bundle` does).
pub fn bundle(
    bytes: &[u8],
    pinned: Option<&VerifyingKey>,
    trusted: &[CertificateDer<'static>],
) -> Result<TimestampReport> {
    let (manifest, _) = crate::export::bundle::read_manifest(bytes).map_err(|e| anyhow!(e))?;
    let key = match pinned {
        Some(k) => *k,
        None => signing::parse_public_key(&manifest.public_key_pem)
            .map_err(|e| anyhow!("bundle public key: {e}"))?,
    };
    let head = manifest
        .tree_head
        .to_head()
        .ok_or_else(|| anyhow!("the bundle's tree head is malformed"))?;
    Ok(check::check_bundle(
        &manifest.timestamps,
        &head,
        &key,
        trusted,
    ))
}

/// The text lines: each valid token, the unchecked attestation types, the named gap. Problems
/// are printed with the others (FAIL lines).
pub fn text(t: &mut String, r: &TimestampReport) {
    for tok in &r.tokens {
        let _ = writeln!(
            t,
            "TIMESTAMP tree size {} (signed {}) timestamped at {} by {} ({}, policy {})",
            tok.tree_size,
            format_ns(tok.tree_head_ts_ns),
            format_ns(tok.gen_time_ns),
            line(&tok.issuer),
            line(&tok.signer),
            line(&tok.policy),
        );
    }
    for n in &r.notes {
        let _ = writeln!(t, "note: {}", line(n));
    }
    if let Some(g) = &r.not_timestamped {
        let _ = writeln!(t, "NOT TIMESTAMPED {g}");
    }
}

/// `ledger head`'s lines on timestamping, one per TSA.
pub fn lag_text(lags: &[Lag]) -> String {
    let mut t = String::new();
    for l in lags {
        let _ = write!(
            t,
            "timestamps from {}: newest token covers tree size {}",
            line(&l.url),
            l.timestamped_size
        );
        match l.untimestamped_since_ns {
            Some(since) => {
                let _ = write!(
                    t,
                    "; not timestamped since tree size {} (a head signed {}), lag {:.0}s",
                    l.timestamped_size,
                    format_ns(since),
                    l.lag_seconds
                );
            }
            None => t.push_str("; every tree head is timestamped"),
        }
        if let Some(e) = &l.last_error {
            let _ = write!(t, "; {} failed attempts, last: {}", l.failures, line(e));
        }
        t.push('\n');
    }
    t
}
