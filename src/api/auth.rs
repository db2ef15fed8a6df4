//! Bearer tokens. The config holds only SHA-256 digests; a presented token is hashed and
//! compared with every configured digest in constant time, so neither a timing difference nor
//! an early exit tells an attacker how close a guess came or which entry it matched.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};
use crate::config::ApiToken;

pub use crate::service::Role;

/// The caller, as named by its token's config entry.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// For agent tokens: whose sessions it may annotate.
    pub agent: Option<String>,
}

impl Principal {
    /// The caller as the service layer knows it.
    pub fn actor(&self) -> crate::service::Actor {
        crate::service::Actor::Token {
            name: self.name.clone(),
            role: self.role,
        }
    }

    /// 403 unless the caller has one of `roles`; `what` completes "may not ...".
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::Forbidden(format!(
            "{} token {:?} may not {what} (needs {})",
            self.role.as_str(),
            self.name,
            allowed.join(" or ")
        )))
    }
}

struct Entry {
    digest: [u8; 32],
    principal: Principal,
}

pub struct Tokens {
    entries: Vec<Entry>,
}

impl Tokens {
    /// Entries the config validation would have refused are skipped (with a warning) rather
    /// than accepted in some weakened form.
    pub fn from_config(tokens: &[ApiToken]) -> Tokens {
        let mut entries = Vec::new();
        for t in tokens {
            let digest: Option<[u8; 32]> = hex::decode(t.sha256.trim())
                .ok()
                .and_then(|d| d.try_into().ok());
            let (Some(digest), Some(role)) = (digest, Role::parse(&t.role)) else {
                tracing::warn!(token = %t.name, "ignoring an invalid API token entry");
                continue;
            };
            if role == Role::Agent && t.agent.is_none() {
                tracing::warn!(token = %t.name, "ignoring an agent token without an agent");
                continue;
            }
            entries.push(Entry {
                digest,
                principal: Principal {
                    name: t.name.clone(),
                    role,
                    agent: if role == Role::Agent {
                        t.agent.clone()
                    } else {
                        None
                    },
                },
            });
        }
        Tokens { entries }
    }

    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let digest = Sha256::digest(token.as_bytes());
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            let equal: bool = e.digest.as_slice().ct_eq(digest.as_slice()).into();
            if equal && found.is_none() {
                found = Some(e);
            }
        }
        found.map(|e| e.principal.clone())
    }
}

/// `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110).
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        bearer(parts)
            .and_then(|t| state.tokens.authenticate(t))
            .ok_or(ApiError::Unauthorized)
    }
}

/// Journals an auditor's read of a recording before it is served. If the journal cannot be
/// written the read is refused: an unrecorded read would break "the auditors are audited".
pub async fn audit(
    state: &ApiState,
    who: &Principal,
    what: &str,
    session: &str,
) -> Result<(), ApiError> {
    let text = format!(
        "{} {:?} {what} session {session}",
        who.role.as_str(),
        who.name
    );
    state
        .core
        .recorder
        .journal("audit", &text)
        .await
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "the read could not be recorded in the audit journal, so it is refused: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, role: &str, agent: Option<&str>, secret: &str) -> ApiToken {
        ApiToken {
            name: name.into(),
            role: role.into(),
            agent: agent.map(Into::into),
            sha256: hex::encode(Sha256::digest(secret.as_bytes())),
        }
    }

    #[test]
    fn tokens_match_by_digest_only() {
        let t = Tokens::from_config(&[
            token("ops", "operator", None, "s1"),
            token("bot", "agent", Some("billing"), "s2"),
            token("broken", "agent", None, "s3"),
            token("typo", "admin", None, "s4"),
        ]);
        let p = t.authenticate("s1").expect("operator");
        assert_eq!((p.name.as_str(), p.role), ("ops", Role::Operator));
        let p = t.authenticate("s2").expect("agent");
        assert_eq!(p.agent.as_deref(), Some("billing"));
        assert!(t.authenticate("s3").is_none());
        assert!(t.authenticate("s4").is_none());
        assert!(t.authenticate("").is_none());
        assert!(
            t.authenticate(&hex::encode(Sha256::digest(b"s1")))
                .is_none()
        );
    }
}
