//! Server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802 / 7677) against a stored
//! verifier.
//!
//! Built from `hmac` + `sha2` rather than pgwire's `ScramServerAuth`: that helper lives behind
//! pgwire's server feature, which pulls `x509-certificate` and with it `ring`, and proctor keeps a
//! single crypto stack (aws-lc-rs).
//!
//! Over TLS, `-PLUS` with `tls-server-end-point` channel binding is offered first (as PostgreSQL
//! does). It binds the password proof to the certificate the client actually saw, so a client
//! that does not verify the certificate (`sslmode=require`, the libpq default `prefer`, most
//! drivers' defaults) still detects a man in the middle holding another certificate: the
//! attacker cannot relay the exchange to proctor, because proctor's binding data would differ
//! from what the client hashed. A client that supports binding but is told it is not offered
//! (`y` flag) while it was offered is refused: someone stripped `-PLUS` from the list
//! (RFC 5802 section 6, downgrade protection).
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The channel-binding variant; only `tls-server-end-point` binding is supported.
pub const MECHANISM_PLUS: &str = "SCRAM-SHA-256-PLUS";
const BINDING_TYPE: &str = "tls-server-end-point";

/// Iterations used for the fake verifier of an unknown agent (PostgreSQL's default).
const FAKE_ITERATIONS: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("unsupported SCRAM channel-binding type {0:?}")]
    BindingType(String),
    /// `y` flag although `-PLUS` was offered: a downgrade (RFC 5802 section 6).
    #[error(
        "the client supports SCRAM channel binding but thinks the server does not; this server does support channel binding"
    )]
    Downgrade,
    #[error("the client selected SCRAM-SHA-256-PLUS without channel binding data")]
    PlusWithoutBinding,
    #[error("the client selected SCRAM-SHA-256 but sent channel binding data")]
    BindingWithoutPlus,
    #[error("SCRAM channel binding check failed")]
    BindingMismatch,
    #[error("invalid SCRAM verifier")]
    BadVerifier,
}

/// A parsed `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier.
#[derive(Clone)]
pub struct Verifier {
    iterations: u32,
    salt_b64: String,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn parse(s: &str) -> Result<Verifier, ScramError> {
        let rest = s
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::BadVerifier)?;
        let (params, keys) = rest.split_once('$').ok_or(ScramError::BadVerifier)?;
        let (iter, salt) = params.split_once(':').ok_or(ScramError::BadVerifier)?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::BadVerifier)?;
        let iterations: u32 = iter.parse().map_err(|_| ScramError::BadVerifier)?;
        if iterations == 0 || B64.decode(salt).is_err() {
            return Err(ScramError::BadVerifier);
        }
        let key = |k: &str| -> Result<[u8; 32], ScramError> {
            B64.decode(k)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
                .ok_or(ScramError::BadVerifier)
        };
        Ok(Verifier {
            iterations,
            salt_b64: salt.to_string(),
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// A verifier no password matches, with a salt that is stable per name so that repeated
    /// probes of an unknown agent look exactly like probes of a real one.
    pub fn fake(agent: &str) -> Verifier {
        static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
        let secret = SECRET.get_or_init(rand::random);
        let salt = hmac_sha256(secret, agent.as_bytes());
        Verifier {
            iterations: FAKE_ITERATIONS,
            salt_b64: B64.encode(&salt[..16]),
            stored_key: rand::random(),
            server_key: rand::random(),
        }
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| {
        unreachable!("HMAC takes keys of any length");
    });
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// What the server offered and the client selected, for the channel-binding checks.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// `tls-server-end-point` data when `-PLUS` was offered (TLS, usable certificate).
    pub offered: Option<&'a [u8]>,
    /// The client selected `SCRAM-SHA-256-PLUS`.
    pub plus_selected: bool,
}

impl Binding<'_> {
    /// Plain SCRAM, nothing offered (no TLS).
    pub const NONE: Binding<'static> = Binding {
        offered: None,
        plus_selected: false,
    };
}

/// Waiting for the client-final message.
pub struct ServerFirst {
    verifier: Verifier,
    /// The bytes the client must echo, base64, in `c=`: the gs2 header, then the binding data
    /// when it bound the channel.
    expected_cbind: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ServerFirst {
    /// Handles the client-first message; returns the state and the server-first message.
    pub fn start(
        verifier: Verifier,
        client_first: &[u8],
        binding: Binding<'_>,
    ) -> Result<(ServerFirst, String), ScramError> {
        let msg = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("utf-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("gs2 header"))?;
        // The same checks, in the same order, as PostgreSQL's read_client_first_message.
        let bound_data: &[u8] = match flag {
            "n" if binding.plus_selected => return Err(ScramError::PlusWithoutBinding),
            "n" => &[],
            "y" if binding.plus_selected => return Err(ScramError::PlusWithoutBinding),
            "y" if binding.offered.is_some() => return Err(ScramError::Downgrade),
            "y" => &[],
            f if f.starts_with("p=") => {
                if !binding.plus_selected {
                    return Err(ScramError::BindingWithoutPlus);
                }
                let kind = &f[2..];
                if kind != BINDING_TYPE {
                    return Err(ScramError::BindingType(kind.to_string()));
                }
                // plus_selected is only accepted by the caller when PLUS was offered.
                binding.offered.ok_or(ScramError::ChannelBinding)?
            }
            _ => return Err(ScramError::Malformed("channel binding flag")),
        };
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("gs2 header"))?;
        if !authzid.is_empty() {
            // PostgreSQL does not support authorization identities either.
            return Err(ScramError::Malformed("authzid"));
        }
        let gs2_header = format!("{flag},,");
        let mut cbind_input = gs2_header.clone().into_bytes();
        cbind_input.extend_from_slice(bound_data);
        let expected_cbind = B64.encode(&cbind_input);
        // client-first-bare: [reserved-mext ","] username "," nonce ["," extensions]
        let mut parts = bare.split(',');
        let user = parts.next().ok_or(ScramError::Malformed("username"))?;
        if user.starts_with("m=") {
            return Err(ScramError::Malformed("mandatory extension"));
        }
        if !user.starts_with("n=") {
            return Err(ScramError::Malformed("username"));
        }
        let cnonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(ScramError::Malformed("nonce"))?;
        if cnonce.is_empty()
            || !cnonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(ScramError::Malformed("nonce"));
        }
        let snonce = B64.encode(rand::random::<[u8; 18]>());
        let nonce = format!("{cnonce}{snonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            verifier.salt_b64, verifier.iterations
        );
        Ok((
            ServerFirst {
                verifier,
                expected_cbind,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client-final message. `Ok(Some(server_final))` when the proof is right,
    /// `Ok(None)` when it is not (wrong password or unknown agent), `Err` when malformed.
    pub fn finish(self, client_final: &[u8]) -> Result<Option<String>, ScramError> {
        let msg = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("utf-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("proof"))?;
        let mut parts = without_proof.split(',');
        let cbind = parts
            .next()
            .and_then(|p| p.strip_prefix("c="))
            .ok_or(ScramError::Malformed("channel binding"))?;
        // Not secret: the binding data is a hash of proctor's public certificate.
        if cbind != self.expected_cbind {
            return Err(ScramError::BindingMismatch);
        }
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(ScramError::Malformed("nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce mismatch"));
        }
        let proof = B64
            .decode(proof)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .ok_or(ScramError::Malformed("proof"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (i, b) in client_key.iter_mut().enumerate() {
            *b = proof[i] ^ client_signature[i];
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        // Constant-time comparison: the stored key is the secret half of the verifier.
        let diff = stored
            .iter()
            .zip(self.verifier.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Ok(None);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        Ok(Some(format!("v={}", B64.encode(server_signature))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// One exchange with postgres-protocol's client (tokio-postgres's SCRAM code).
    fn exchange_with(
        verifier: &str,
        password: &[u8],
        client_binding: ChannelBinding,
        server: Binding<'_>,
    ) -> Result<bool, ScramError> {
        let v = Verifier::parse(verifier).unwrap();
        let mut client = ScramSha256::new(password, client_binding);
        let (state, server_first) = ServerFirst::start(v, client.message(), server)?;
        client.update(server_first.as_bytes()).unwrap();
        Ok(match state.finish(client.message())? {
            Some(server_final) => {
                client.finish(server_final.as_bytes()).unwrap();
                true
            }
            None => false,
        })
    }

    fn exchange(verifier: &str, password: &[u8]) -> bool {
        exchange_with(
            verifier,
            password,
            ChannelBinding::unsupported(),
            Binding::NONE,
        )
        .unwrap()
    }

    #[test]
    fn verifies_against_postgres_protocol_client() {
        let v = postgres_protocol::password::scram_sha_256(b"s3cret");
        assert!(exchange(&v, b"s3cret"));
        assert!(!exchange(&v, b"wrong"));
    }

    #[test]
    fn channel_binding_is_checked() {
        let v = postgres_protocol::password::scram_sha_256(b"s3cret");
        let ours = [7u8; 32];
        let plus = Binding {
            offered: Some(&ours),
            plus_selected: true,
        };
        let cb = |d: &[u8]| ChannelBinding::tls_server_end_point(d.to_vec());
        assert_eq!(exchange_with(&v, b"s3cret", cb(&ours), plus), Ok(true));
        assert_eq!(exchange_with(&v, b"wrong", cb(&ours), plus), Ok(false));
        // A client that hashed another certificate (a man in the middle) is refused even
        // with the right password.
        assert_eq!(
            exchange_with(&v, b"s3cret", cb(&[8u8; 32]), plus),
            Err(ScramError::BindingMismatch)
        );
        // Binding data with the plain mechanism, or PLUS without binding data.
        let plain_offered = Binding {
            offered: Some(&ours),
            plus_selected: false,
        };
        assert_eq!(
            exchange_with(&v, b"s3cret", cb(&ours), plain_offered),
            Err(ScramError::BindingWithoutPlus)
        );
        assert_eq!(
            exchange_with(&v, b"s3cret", ChannelBinding::unsupported(), plus),
            Err(ScramError::PlusWithoutBinding)
        );
        // Plain SCRAM without binding support ('n') is still accepted when PLUS is offered.
        assert_eq!(
            exchange_with(&v, b"s3cret", ChannelBinding::unsupported(), plain_offered),
            Ok(true)
        );
    }

    #[test]
    fn downgrade_is_refused() {
        let v = Verifier::parse(&postgres_protocol::password::scram_sha_256(b"x")).unwrap();
        let ours = [7u8; 32];
        let offered = Binding {
            offered: Some(&ours),
            plus_selected: false,
        };
        // 'y': the client could bind but believes the server cannot. PLUS was offered, so the
        // list was tampered with.
        assert_eq!(
            ServerFirst::start(v.clone(), b"y,,n=,r=abc", offered).err(),
            Some(ScramError::Downgrade)
        );
        assert!(ServerFirst::start(v.clone(), b"y,,n=,r=abc", Binding::NONE).is_ok());
        let plus = Binding {
            offered: Some(&ours),
            plus_selected: true,
        };
        assert_eq!(
            ServerFirst::start(v, b"p=tls-unique,,n=,r=abc", plus).err(),
            Some(ScramError::BindingType("tls-unique".into()))
        );
    }

    #[test]
    fn fake_verifier_never_matches_and_is_stable() {
        let a = Verifier::fake("nobody");
        let b = Verifier::fake("nobody");
        assert_eq!(a.salt_b64, b.salt_b64);
        let mut client = ScramSha256::new(b"", ChannelBinding::unsupported());
        let (state, sf) = ServerFirst::start(a, client.message(), Binding::NONE).unwrap();
        client.update(sf.as_bytes()).unwrap();
        assert_eq!(state.finish(client.message()).unwrap(), None);
    }

    #[test]
    fn rejects_garbage() {
        let v = Verifier::parse(&postgres_protocol::password::scram_sha_256(b"x")).unwrap();
        let none = Binding::NONE;
        assert!(ServerFirst::start(v.clone(), b"p=tls-server-end-point,,n=,r=abc", none).is_err());
        assert!(ServerFirst::start(v.clone(), b"n,,n=,r=", none).is_err());
        assert!(ServerFirst::start(v.clone(), b"garbage", none).is_err());
        assert!(ServerFirst::start(v, &[0xff, 0xfe], none).is_err());
        assert!(Verifier::parse("md5abc").is_err());
    }
}
