//! `tls-server-end-point` channel binding data (RFC 5929 section 4.1) for SCRAM-SHA-256-PLUS:
//! the hash of proctor's own server certificate, with the hash function of the certificate's
//! signature algorithm, except that MD5 and SHA-1 are replaced by SHA-256.
//!
//! The certificate is parsed with RustCrypto's `x509-cert` (only the signature algorithm is
//! read); the hash covers the whole DER encoding as the client received it in the handshake.

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::oid::ObjectIdentifier;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelBindingError {
    #[error("the server certificate cannot be parsed: {0}")]
    Parse(String),
    /// RFC 5929 defines no hash for this signature (RSASSA-PSS, Ed25519, ...): PostgreSQL
    /// offers no channel binding for such certificates either.
    #[error("no tls-server-end-point hash is defined for signature algorithm {0}")]
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

fn oid(s: &str) -> ObjectIdentifier {
    // The table below holds only well-formed literals; a typo is caught by the unit test.
    ObjectIdentifier::new(s).unwrap_or_else(|_| unreachable!("bad OID literal {s}"))
}

/// The hash RFC 5929 assigns to a certificate signature algorithm.
fn hash_for(alg: &ObjectIdentifier) -> Option<Hash> {
    const TABLE: &[(&str, Hash)] = &[
        // MD5 and SHA-1 become SHA-256 (RFC 5929 4.1).
        ("1.2.840.113549.1.1.4", Hash::Sha256), // md5WithRSAEncryption
        ("1.2.840.113549.1.1.5", Hash::Sha256), // sha1WithRSAEncryption
        ("1.2.840.10045.4.1", Hash::Sha256),    // ecdsa-with-SHA1
        ("1.2.840.10040.4.3", Hash::Sha256),    // dsa-with-sha1
        ("1.2.840.113549.1.1.14", Hash::Sha224), // sha224WithRSAEncryption
        ("1.2.840.10045.4.3.1", Hash::Sha224),  // ecdsa-with-SHA224
        ("2.16.840.1.101.3.4.3.1", Hash::Sha224), // dsa-with-sha224
        ("1.2.840.113549.1.1.11", Hash::Sha256), // sha256WithRSAEncryption
        ("1.2.840.10045.4.3.2", Hash::Sha256),  // ecdsa-with-SHA256
        ("2.16.840.1.101.3.4.3.2", Hash::Sha256), // dsa-with-sha256
        ("1.2.840.113549.1.1.12", Hash::Sha384), // sha384WithRSAEncryption
        ("1.2.840.10045.4.3.3", Hash::Sha384),  // ecdsa-with-SHA384
        ("1.2.840.113549.1.1.13", Hash::Sha512), // sha512WithRSAEncryption
        ("1.2.840.10045.4.3.4", Hash::Sha512),  // ecdsa-with-SHA512
    ];
    TABLE.iter().find(|(o, _)| oid(o) == *alg).map(|(_, h)| *h)
}

/// The `tls-server-end-point` binding data for a DER certificate (the end-entity certificate
/// proctor presents to agents).
pub fn tls_server_end_point(cert_der: &[u8]) -> Result<Vec<u8>, ChannelBindingError> {
    let cert =
        Certificate::from_der(cert_der).map_err(|e| ChannelBindingError::Parse(e.to_string()))?;
    let alg = cert.signature_algorithm().oid;
    let hash = hash_for(&alg).ok_or_else(|| ChannelBindingError::Unsupported(alg.to_string()))?;
    Ok(match hash {
        Hash::Sha224 => Sha224::digest(cert_der).to_vec(),
        Hash::Sha256 => Sha256::digest(cert_der).to_vec(),
        Hash::Sha384 => Sha384::digest(cert_der).to_vec(),
        Hash::Sha512 => Sha512::digest(cert_der).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn hash_follows_the_signature_algorithm() {
        let p256 = cert(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            tls_server_end_point(&p256).unwrap(),
            Sha256::digest(&p256).to_vec()
        );
        let p384 = cert(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert_eq!(
            tls_server_end_point(&p384).unwrap(),
            Sha384::digest(&p384).to_vec()
        );
    }

    #[test]
    fn undefined_hashes_and_garbage_are_errors() {
        let ed = cert(&rcgen::PKCS_ED25519);
        assert!(matches!(
            tls_server_end_point(&ed),
            Err(ChannelBindingError::Unsupported(_))
        ));
        assert!(matches!(
            tls_server_end_point(b"not a certificate"),
            Err(ChannelBindingError::Parse(_))
        ));
    }

    #[test]
    fn table_literals_parse() {
        // Every entry must be a valid OID (oid() would panic otherwise).
        let sha1_rsa = ObjectIdentifier::new("1.2.840.113549.1.1.5").unwrap();
        assert_eq!(hash_for(&sha1_rsa), Some(Hash::Sha256));
        assert_eq!(
            hash_for(&ObjectIdentifier::new("1.3.101.112").unwrap()),
            None
        );
    }
}
