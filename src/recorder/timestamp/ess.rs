//! The ESS signing-certificate attribute of a timestamp token (RFC 3161 section 2.4.1, RFC 5816,
//! RFC 2634/5035): a signed attribute naming, by hash, the certificate the TSA signed with.
//! The SignerInfo's certificate reference (`sid`) and the token's certificate set are not
//! signed, so without this check a token whose embedded certificate was swapped for another
//! one with the same key (another subject, another EKU, another issuer) would still verify.

use der::Sequence;
use der::asn1::{Any, ObjectIdentifier, OctetString};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// id-aa-signingCertificate (ESSCertID, SHA-1).
pub const OID_SIGNING_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
/// id-aa-signingCertificateV2 (ESSCertIDv2, SHA-256 unless it names another hash).
pub const OID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertId {
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificate {
    certs: Vec<EssCertId>,
    #[asn1(optional = "true")]
    policies: Option<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct HashAlgorithm {
    algorithm: ObjectIdentifier,
    #[asn1(optional = "true")]
    parameters: Option<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<HashAlgorithm>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    policies: Option<Any>,
}

/// Checks that the signed attributes `attrs` hold exactly one signing-certificate attribute
/// (version 1 or 2) whose first certificate ID (the signer's, RFC 5035 section 5.4) is the hash
/// of `signer_der`, the certificate whose key verified the signature. Err: why not, in words.
pub fn check(attrs: &x509_cert::attr::Attributes, signer_der: &[u8]) -> Result<(), String> {
    let mut found = attrs
        .iter()
        .filter(|a| a.oid == OID_SIGNING_CERTIFICATE || a.oid == OID_SIGNING_CERTIFICATE_V2);
    let attr = found.next().ok_or(
        "the signed attributes hold no ESS signing-certificate attribute (signingCertificate or signingCertificateV2), so nothing binds the signature to the TSA certificate",
    )?;
    if found.next().is_some() || attr.values.len() != 1 {
        return Err("the ESS signing-certificate attribute is not single-valued".into());
    }
    let value = attr
        .values
        .iter()
        .next()
        .ok_or("the ESS signing-certificate attribute is empty")?;
    let (version, alg, named) = if attr.oid == OID_SIGNING_CERTIFICATE {
        let sc: SigningCertificate = value
            .decode_as()
            .map_err(|e| format!("signingCertificate is malformed: {e}"))?;
        let first = sc
            .certs
            .into_iter()
            .next()
            .ok_or("signingCertificate lists no certificate")?;
        ("signingCertificate", "SHA-1", first.cert_hash)
    } else {
        let sc: SigningCertificateV2 = value
            .decode_as()
            .map_err(|e| format!("signingCertificateV2 is malformed: {e}"))?;
        let first = sc
            .certs
            .into_iter()
            .next()
            .ok_or("signingCertificateV2 lists no certificate")?;
        let alg = first.hash_algorithm.map_or(OID_SHA256, |a| a.algorithm);
        let name = match alg {
            OID_SHA256 => "SHA-256",
            OID_SHA384 => "SHA-384",
            OID_SHA512 => "SHA-512",
            other => {
                return Err(format!(
                    "signingCertificateV2 uses hash algorithm {other}, which this verifier does not know"
                ));
            }
        };
        ("signingCertificateV2", name, first.cert_hash)
    };
    let actual = match alg {
        "SHA-1" => Sha1::digest(signer_der).to_vec(),
        "SHA-256" => Sha256::digest(signer_der).to_vec(),
        "SHA-384" => Sha384::digest(signer_der).to_vec(),
        _ => Sha512::digest(signer_der).to_vec(),
    };
    if named.as_bytes() != actual.as_slice() {
        return Err(format!(
            "the signed {version} attribute names the certificate with {alg} {}, but the signature was verified with a certificate whose {alg} is {} (the token's certificate was replaced)",
            hex::encode(named.as_bytes()),
            hex::encode(&actual)
        ));
    }
    Ok(())
}
