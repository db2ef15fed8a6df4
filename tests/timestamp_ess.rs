//! The ESS signing-certificate attribute (RFC 3161, RFC 5816): tokens from the real `openssl ts
//! -reply`, with signingCertificateV2 (SHA-256) and with signingCertificate (SHA-1), check out;
//! a token whose embedded certificate was swapped for another certificate of the same key
//! (its signature still verifies, and the impostor certificate is trusted) fails on the
//! attribute, with a diagnosis that says so.

mod tsa_support;

use std::path::Path;
use std::process::Command;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::ContentInfo;
use cms::signed_data::{CertificateSet, SignedData, SignerIdentifier, SignerInfos};
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode};
use proctor::recorder::timestamp::token::{self, TokenError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use sha2::{Digest, Sha256};
use tsa_support::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A token from `openssl ts -reply` with config `cnf` over SHA-256 of `data.txt`.
fn token(dir: &Path, cnf: &str) -> (Vec<u8>, [u8; 32]) {
    std::fs::write(dir.join("data.txt"), b"a tree head").expect("data");
    openssl(
        dir,
        &[
            "ts", "-query", "-data", "data.txt", "-sha256", "-cert", "-out", "q.tsq",
        ],
    );
    openssl(
        dir,
        &[
            "ts",
            "-reply",
            "-config",
            cnf,
            "-queryfile",
            "q.tsq",
            "-token_out",
            "-out",
            "token.der",
        ],
    );
    let imprint: [u8; 32] = Sha256::digest(b"a tree head").into();
    (
        std::fs::read(dir.join("token.der")).expect("token"),
        imprint,
    )
}

fn cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("pem certificate")
}

/// The token with its certificate set and signer reference pointing at `other` instead: what
/// an attacker can change without the TSA key, since neither is signed.
fn swap_certificate(token: &[u8], other: &Path) -> Vec<u8> {
    let other = x509_cert::Certificate::from_der(cert(other).as_ref()).expect("other certificate");
    let ci = ContentInfo::from_der(token).expect("content info");
    let mut sd: SignedData = ci.content.decode_as().expect("signed data");
    sd.certificates = Some(CertificateSet(
        SetOfVec::try_from(vec![CertificateChoices::Certificate(other.clone())]).expect("set"),
    ));
    let mut infos = sd.signer_infos.0.into_vec();
    infos[0].sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: other.tbs_certificate().issuer().clone(),
        serial_number: other.tbs_certificate().serial_number().clone(),
    });
    sd.signer_infos = SignerInfos(SetOfVec::try_from(infos).expect("signer infos"));
    ContentInfo {
        content_type: ci.content_type,
        content: Any::encode_from(&sd).expect("encode"),
    }
    .to_der()
    .expect("der")
}

#[test]
fn the_signing_certificate_attribute_must_name_the_certificate_that_verified() {
    let base = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(base.path(), "ess", false);
    let dir = &pki.dir;
    let tsa_cert = cert(&dir.join("tsa.pem"));
    let ca = cert(&pki.ca);

    // signingCertificateV2 with SHA-256 (the harness's config says ess_cert_id_alg = sha256).
    let (v2, imprint) = token(dir, "ts.cnf");
    for trusted in [&tsa_cert, &ca] {
        token::check(&v2, &imprint, None, std::slice::from_ref(trusted)).expect("v2 token checks");
    }
    // signingCertificate (version 1, SHA-1): OpenSSL's default.
    let cnf = std::fs::read_to_string(dir.join("ts.cnf")).expect("cnf");
    std::fs::write(
        dir.join("ts-v1.cnf"),
        cnf.replace("ess_cert_id_alg = sha256\n", ""),
    )
    .expect("cnf v1");
    let (v1, imprint) = token(dir, "ts-v1.cnf");
    // The DER of each attribute's OID (1.2.840.113549.1.9.16.2.47 and .12): each token holds its own.
    let has = |t: &[u8], oid_tail: u8| {
        let oid = [
            0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, oid_tail,
        ];
        t.windows(oid.len()).any(|w| w == oid)
    };
    assert!(
        has(&v2, 0x2f) && !has(&v2, 0x0c),
        "v2 token carries signingCertificateV2"
    );
    assert!(
        has(&v1, 0x0c) && !has(&v1, 0x2f),
        "v1 token carries signingCertificate"
    );
    token::check(&v1, &imprint, None, std::slice::from_ref(&tsa_cert)).expect("v1 token checks");

    // Another certificate of the TSA's own key, self-issued, with the timeStamping usage: the
    // signature verifies with it, and it is trusted as it is; only the attribute tells.
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "tsa.key",
            "-subj",
            "/CN=Impostor TSA",
            "-days",
            "2",
            "-addext",
            "extendedKeyUsage=critical,timeStamping",
            "-out",
            "impostor.pem",
        ],
    );
    let impostor = cert(&dir.join("impostor.pem"));
    for (name, tok) in [("v2", &v2), ("v1", &v1)] {
        let swapped = swap_certificate(tok, &dir.join("impostor.pem"));
        let err = token::check(&swapped, &imprint, None, std::slice::from_ref(&impostor))
            .expect_err("a swapped certificate must fail");
        match &err {
            TokenError::SignerCertificate(why) => assert!(
                why.contains("names the certificate") && why.contains("replaced"),
                "{name}: {why}"
            ),
            other => panic!("{name}: expected the ESS check to fail, got {other}"),
        }
        assert!(err.to_string().contains("ESS signing-certificate"), "{err}");
    }
}
