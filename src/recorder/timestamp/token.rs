//! RFC 3161 on the wire: the `TimeStampReq` proctor sends, the `TimeStampResp` it gets back,
//! and the check of a `TimeStampToken` (a CMS SignedData over a `TSTInfo`) against the TSA
//! certificates an auditor trusts. CMS and X.509 are parsed with RustCrypto `cms`/`x509-cert`;
//! signatures and the certificate chain are checked with rustls-webpki on aws-lc-rs, the crypto
//! stack proctor's TLS already uses.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::{Any, GeneralizedTime, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Sequence, Tag, Tagged};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use sha2::{Digest, Sha256, Sha384, Sha512};
use thiserror::Error;
use webpki::aws_lc_rs as algs;

const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const OID_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const OID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const OID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const OID_RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const OID_RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-kp-timeStamping (1.3.6.1.5.5.7.3.8), as the DER value webpki compares.
const EKU_TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a timestamp token: {0}")]
    Malformed(String),
    #[error("the TSA refused: status {status}{text}")]
    Refused { status: u32, text: String },
    #[error("the token is over another message (imprint {found}, the tree head's is {expected})")]
    WrongImprint { found: String, expected: String },
    #[error("the token's nonce is not the request's")]
    WrongNonce,
    #[error("the token's signature does not verify: {0}")]
    BadSignature(String),
    #[error("the TSA certificate does not chain to a trusted TSA certificate: {0}")]
    Untrusted(String),
    #[error("the ESS signing-certificate check failed: {0}")]
    SignerCertificate(String),
}

fn bad(what: impl std::fmt::Display) -> TokenError {
    TokenError::Malformed(what.to_string())
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct AlgorithmId {
    algorithm: ObjectIdentifier,
    #[asn1(optional = "true")]
    parameters: Option<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct MessageImprint {
    hash_algorithm: AlgorithmId,
    hashed_message: OctetString,
}

/// `TimeStampReq` (RFC 3161 section 2.4.1), without extensions.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TimeStampReq {
    version: u8,
    message_imprint: MessageImprint,
    #[asn1(optional = "true")]
    req_policy: Option<ObjectIdentifier>,
    #[asn1(optional = "true")]
    nonce: Option<u64>,
    cert_req: bool,
}

/// The DER request for a SHA-256 `imprint`, asking for the TSA's certificate in the token.
pub fn request(imprint: &[u8; 32], nonce: u64, policy: Option<&str>) -> Result<Vec<u8>, String> {
    let req_policy = policy
        .map(|p| ObjectIdentifier::new(p).map_err(|e| format!("policy OID {p:?}: {e}")))
        .transpose()?;
    let req = TimeStampReq {
        version: 1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmId {
                algorithm: OID_SHA256,
                parameters: None,
            },
            hashed_message: OctetString::new(imprint.to_vec()).map_err(|e| e.to_string())?,
        },
        req_policy,
        nonce: Some(nonce),
        cert_req: true,
    };
    req.to_der().map_err(|e| e.to_string())
}

/// The token (a DER `ContentInfo`) from a DER `TimeStampResp`, if the TSA granted it.
pub fn token_from_response(resp: &[u8]) -> Result<Vec<u8>, TokenError> {
    let items: Vec<Any> = Vec::<Any>::from_der(resp).map_err(bad)?;
    let status_info = items.first().ok_or_else(|| bad("empty response"))?;
    let status_items: Vec<Any> = status_info.decode_as().map_err(bad)?;
    let status: u32 = status_items
        .first()
        .ok_or_else(|| bad("no status"))?
        .decode_as()
        .map_err(bad)?;
    // 0 granted, 1 granted with modifications; anything else is a refusal.
    if status > 1 {
        let text = status_items
            .get(1)
            .map(|a| format!(" ({})", String::from_utf8_lossy(a.value()).escape_debug()))
            .unwrap_or_default();
        return Err(TokenError::Refused { status, text });
    }
    let token = items.get(1).ok_or_else(|| bad("granted without a token"))?;
    token.to_der().map_err(bad)
}

/// What a token says, once its signature and chain are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `genTime`, nanoseconds since the Unix epoch.
    pub gen_time_ns: i64,
    /// As the token spells it.
    pub gen_time: String,
    pub policy: String,
    pub serial_hex: String,
    pub nonce: Option<u64>,
    /// The signer's subject, for reports.
    pub signer: String,
}

/// `GeneralizedTime` as RFC 3161 allows it (`YYYYMMDDhhmmss[.f+]Z`), to Unix nanoseconds.
fn parse_gen_time(s: &str) -> Option<i64> {
    let body = s.strip_suffix('Z')?;
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let n = |a: usize, b: usize| whole[a..b].parse::<u32>().ok();
    let dt = GeneralizedTime::from_date_time(
        der::DateTime::new(
            u16::try_from(n(0, 4)?).ok()?,
            u8::try_from(n(4, 6)?).ok()?,
            u8::try_from(n(6, 8)?).ok()?,
            u8::try_from(n(8, 10)?).ok()?,
            u8::try_from(n(10, 12)?).ok()?,
            u8::try_from(n(12, 14)?).ok()?,
        )
        .ok()?,
    );
    let secs = i64::try_from(dt.to_unix_duration().as_secs()).ok()?;
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

struct TstInfo {
    policy: ObjectIdentifier,
    imprint: MessageImprint,
    serial: Vec<u8>,
    gen_time: String,
    nonce: Option<u64>,
}

/// `TSTInfo` (RFC 3161 section 2.4.2). Only the fields proctor checks are decoded strictly;
/// the optional ones after `genTime` are told apart by their tags.
fn parse_tst_info(der_bytes: &[u8]) -> Result<TstInfo, TokenError> {
    let items: Vec<Any> = Vec::<Any>::from_der(der_bytes).map_err(bad)?;
    if items.len() < 5 {
        return Err(bad("TSTInfo has too few fields"));
    }
    let version: u8 = items[0].decode_as().map_err(bad)?;
    if version != 1 {
        return Err(bad(format!("TSTInfo version {version}")));
    }
    let policy: ObjectIdentifier = items[1].decode_as().map_err(bad)?;
    let imprint: MessageImprint = items[2].decode_as().map_err(bad)?;
    if items[3].tag() != Tag::Integer {
        return Err(bad("TSTInfo serial is not an INTEGER"));
    }
    let serial = items[3].value().to_vec();
    if items[4].tag() != Tag::GeneralizedTime {
        return Err(bad("TSTInfo genTime is not a GeneralizedTime"));
    }
    let gen_time = String::from_utf8(items[4].value().to_vec()).map_err(bad)?;
    let nonce = items[5..]
        .iter()
        .find(|a| a.tag() == Tag::Integer)
        .map(|a| a.decode_as::<u64>())
        .transpose()
        .map_err(bad)?;
    Ok(TstInfo {
        policy,
        imprint,
        serial,
        gen_time,
        nonce,
    })
}

fn digest(alg: &ObjectIdentifier, data: &[u8]) -> Result<Vec<u8>, TokenError> {
    Ok(match *alg {
        OID_SHA256 => Sha256::digest(data).to_vec(),
        OID_SHA384 => Sha384::digest(data).to_vec(),
        OID_SHA512 => Sha512::digest(data).to_vec(),
        other => return Err(bad(format!("unsupported digest algorithm {other}"))),
    })
}

/// The webpki algorithms that may match a SignerInfo's signature and digest algorithms (the
/// key's curve or size picks among them).
fn signature_algs(
    sig: &ObjectIdentifier,
    digest: &ObjectIdentifier,
) -> Vec<&'static dyn SignatureVerificationAlgorithm> {
    match (*sig, *digest) {
        (OID_RSA, OID_SHA256) | (OID_RSA_SHA256, _) => vec![algs::RSA_PKCS1_2048_8192_SHA256],
        (OID_RSA, OID_SHA384) | (OID_RSA_SHA384, _) => vec![algs::RSA_PKCS1_2048_8192_SHA384],
        (OID_RSA, OID_SHA512) | (OID_RSA_SHA512, _) => vec![algs::RSA_PKCS1_2048_8192_SHA512],
        (OID_ECDSA_SHA256, _) => vec![algs::ECDSA_P256_SHA256, algs::ECDSA_P384_SHA256],
        (OID_ECDSA_SHA384, _) => vec![algs::ECDSA_P384_SHA384, algs::ECDSA_P256_SHA384],
        (OID_ECDSA_SHA512, _) => vec![algs::ECDSA_P256_SHA512, algs::ECDSA_P384_SHA512],
        (OID_ED25519, _) => vec![algs::ED25519],
        _ => Vec::new(),
    }
}

fn attr_value(
    attrs: &x509_cert::attr::Attributes,
    oid: ObjectIdentifier,
) -> Result<&Any, TokenError> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let attr = found
        .next()
        .ok_or_else(|| bad(format!("signed attribute {oid} is absent")))?;
    if found.next().is_some() || attr.values.len() != 1 {
        return Err(bad(format!("signed attribute {oid} is not single-valued")));
    }
    attr.values
        .iter()
        .next()
        .ok_or_else(|| bad(format!("signed attribute {oid} is empty")))
}

/// Checks `token` (DER ContentInfo): it is a SignedData over a TSTInfo whose message imprint is
/// SHA-256 `imprint`; its one signer's signature over the signed attributes verifies, and those
/// attributes bind the TSTInfo (content type and message digest); the signer's certificate
/// (carried in the token) chains, with the timeStamping extended key usage and valid at
/// `genTime`, to one of `trusted` (DER certificates: a TSA's CA, or a self-issued TSA
/// certificate). `nonce`, when given, must be the token's.
pub fn check(
    token: &[u8],
    imprint: &[u8; 32],
    nonce: Option<u64>,
    trusted: &[CertificateDer<'static>],
) -> Result<Checked, TokenError> {
    let ci = ContentInfo::from_der(token).map_err(bad)?;
    if ci.content_type != OID_SIGNED_DATA {
        return Err(bad(format!("content type {}", ci.content_type)));
    }
    let sd: SignedData = ci.content.decode_as().map_err(bad)?;
    if sd.encap_content_info.econtent_type != OID_TST_INFO {
        return Err(bad(format!(
            "encapsulated content {}",
            sd.encap_content_info.econtent_type
        )));
    }
    let econtent: OctetString = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| bad("no TSTInfo"))?
        .decode_as()
        .map_err(bad)?;
    let tst = parse_tst_info(econtent.as_bytes())?;
    let found = tst.imprint.hashed_message.as_bytes();
    if tst.imprint.hash_algorithm.algorithm != OID_SHA256 || found != imprint {
        return Err(TokenError::WrongImprint {
            found: format!(
                "{} {}",
                tst.imprint.hash_algorithm.algorithm,
                hex::encode(found)
            ),
            expected: hex::encode(imprint),
        });
    }
    if nonce.is_some() && tst.nonce != nonce {
        return Err(TokenError::WrongNonce);
    }
    let gen_time_ns =
        parse_gen_time(&tst.gen_time).ok_or_else(|| bad(format!("genTime {:?}", tst.gen_time)))?;

    let mut signers = sd.signer_infos.0.iter();
    let si = signers.next().ok_or_else(|| bad("no signer"))?;
    if signers.next().is_some() {
        return Err(bad("more than one signer"));
    }
    let certs: Vec<x509_cert::Certificate> = sd
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(c) => Some(c.clone()),
                    CertificateChoices::Other(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let signer_cert = certs
        .iter()
        .find(|c| match &si.sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                c.tbs_certificate().issuer() == &ias.issuer
                    && c.tbs_certificate().serial_number() == &ias.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => c
                .tbs_certificate()
                .get_extension::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
                .ok()
                .flatten()
                .is_some_and(|(_, k)| k == *ski),
        })
        .ok_or_else(|| bad("the token does not carry its signer's certificate"))?;
    let signer_der = CertificateDer::from(signer_cert.to_der().map_err(bad)?);
    let signer = signer_cert.tbs_certificate().subject().to_string();

    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| bad("no signed attributes"))?;
    let ct: ObjectIdentifier = attr_value(attrs, OID_CONTENT_TYPE)?
        .decode_as()
        .map_err(bad)?;
    if ct != OID_TST_INFO {
        return Err(bad(format!("signed content type {ct}")));
    }
    let md: OctetString = attr_value(attrs, OID_MESSAGE_DIGEST)?
        .decode_as()
        .map_err(bad)?;
    if md.as_bytes() != digest(&si.digest_alg.oid, econtent.as_bytes())? {
        return Err(TokenError::BadSignature(
            "the TSTInfo does not match the signed message digest (edited)".into(),
        ));
    }
    // The signature covers the DER of the signed attributes as a SET (RFC 5652 section 5.4).
    let signed = attrs.to_der().map_err(bad)?;
    let ee = webpki::EndEntityCert::try_from(&signer_der)
        .map_err(|e| bad(format!("signer certificate: {e}")))?;
    let candidates = signature_algs(&si.signature_algorithm.oid, &si.digest_alg.oid);
    if candidates.is_empty() {
        return Err(TokenError::BadSignature(format!(
            "unsupported signature algorithm {} with {}",
            si.signature_algorithm.oid, si.digest_alg.oid
        )));
    }
    let mut last = String::new();
    let verified = candidates.iter().any(|alg| {
        match ee.verify_signature(*alg, &signed, si.signature.as_bytes()) {
            Ok(()) => true,
            Err(e) => {
                last = e.to_string();
                false
            }
        }
    });
    if !verified {
        return Err(TokenError::BadSignature(last));
    }
    // The certificate that verified the signature must be the one the signed attributes name.
    super::ess::check(attrs, signer_der.as_ref()).map_err(TokenError::SignerCertificate)?;

    let anchors = trusted
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).map(|a| a.to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TokenError::Untrusted(format!("a --tsa-cert is not a certificate: {e}")))?;
    let intermediates: Vec<CertificateDer<'static>> = certs
        .iter()
        .filter(|c| *c != signer_cert)
        .filter_map(|c| c.to_der().ok().map(CertificateDer::from))
        .collect();
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(gen_time_ns / 1_000_000_000).unwrap_or(0),
    ));
    let direct = trusted.iter().any(|t| t.as_ref() == signer_der.as_ref());
    if !direct {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            at,
            webpki::KeyUsage::required(EKU_TIME_STAMPING),
            None,
            None,
        )
        .map_err(|e| TokenError::Untrusted(format!("{signer}: {e}")))?;
    }
    Ok(Checked {
        gen_time_ns,
        gen_time: tst.gen_time,
        policy: tst.policy.to_string(),
        serial_hex: hex::encode(&tst.serial),
        nonce: tst.nonce,
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gen_time_with_and_without_fractions() {
        assert_eq!(parse_gen_time("19700101000001Z"), Some(1_000_000_000));
        assert_eq!(parse_gen_time("19700101000001.5Z"), Some(1_500_000_000));
        assert_eq!(parse_gen_time("19700101000001"), None);
        assert_eq!(parse_gen_time("1970010100000Z"), None);
    }

    #[test]
    fn request_is_der_with_the_imprint() {
        let der = request(&[7u8; 32], 42, Some("1.2.3.4")).expect("request");
        let back = TimeStampReq::from_der(&der).expect("decode");
        assert_eq!(back.message_imprint.hashed_message.as_bytes(), &[7u8; 32]);
        assert_eq!(back.nonce, Some(42));
        assert!(back.cert_req);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert!(matches!(
            token_from_response(b"\x30\x03\x02\x01"),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            check(b"junk", &[0; 32], None, &[]),
            Err(TokenError::Malformed(_))
        ));
    }
}
