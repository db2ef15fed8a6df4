//! Algorithm lists for both sides: modern key exchange (ML-KEM hybrid, curve25519) with the
//! strict-kex extension (Terrapin countermeasure), AEAD ciphers (AES-GCM where the CPU
//! accelerates it), ed25519/ECDSA/RSA-SHA2 keys, no compression.

use std::borrow::Cow;

use russh::keys::Algorithm;
use russh::keys::ssh_key::{EcdsaCurve, HashAlg};
use russh::{Preferred, cipher, compression, kex, mac};

const SERVER_KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

const CLIENT_KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

// AES-GCM first towards targets: with AES-NI it is the fastest; the agent's client picks its
// own order on the agent side.
const CLIENT_CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::CHACHA20_POLY1305,
];

// Towards agents the client's order decides, and OpenSSH lists ChaCha20-Poly1305 first. Where
// the CPU accelerates AES-GCM (AES-NI and carry-less multiply, or the ARMv8 crypto extension) it
// is several times cheaper, and a bastion relays every byte twice: ChaCha20-Poly1305 is then
// left out so clients settle on AES-GCM (every OpenSSH since 6.2 offers it). Without such
// instructions ChaCha20-Poly1305 is the faster one and is offered.
const SERVER_CIPHERS_AES_FIRST: &[cipher::Name] = &[cipher::AES_128_GCM, cipher::AES_256_GCM];

const SERVER_CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
];

fn aes_gcm_accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

// Only used when a peer insists on a non-AEAD cipher, which none of the lists above offer;
// kept to encrypt-then-MAC SHA-2 so negotiation never falls back to anything weaker.
const MACS: &[mac::Name] = &[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM];

// RSA with SHA-2 signatures only (RFC 8332): many agents and targets still hold RSA keys;
// SHA-1 `ssh-rsa` signatures are not accepted. A server only offers host key algorithms it
// holds a key for, so listing RSA here changes nothing for proctor's own ed25519 host key.
const KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

const COMPRESSION: &[compression::Name] = &[compression::NONE];

pub(crate) fn server() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(SERVER_KEX),
        key: Cow::Borrowed(KEYS),
        host_key_certificates: Cow::Borrowed(&[]),
        cipher: Cow::Borrowed(if aes_gcm_accelerated() {
            SERVER_CIPHERS_AES_FIRST
        } else {
            SERVER_CIPHERS
        }),
        mac: Cow::Borrowed(MACS),
        compression: Cow::Borrowed(COMPRESSION),
    }
}

/// `host_certificates`: also accept host certificates (only when a host CA is configured).
pub(crate) fn client(host_certificates: bool) -> Preferred {
    Preferred {
        kex: Cow::Borrowed(CLIENT_KEX),
        key: Cow::Borrowed(KEYS),
        host_key_certificates: if host_certificates {
            Cow::Borrowed(KEYS)
        } else {
            Cow::Borrowed(&[])
        },
        cipher: Cow::Borrowed(CLIENT_CIPHERS),
        mac: Cow::Borrowed(MACS),
        compression: Cow::Borrowed(COMPRESSION),
    }
}
