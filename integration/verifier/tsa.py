"""RFC 3161 attestations of tree heads (FORMAT.md "Attestations", type rfc3161, checks 3-5).

DER is walked by hand (the token is untrusted); certificates and signatures use `cryptography`.
"""

import datetime
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_TSTINFO = "1.2.840.113549.1.9.16.1.4"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_SIGNING_CERT = "1.2.840.113549.1.9.16.2.12"
OID_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"
OID_SHA1 = "1.3.14.3.2.26"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
OID_SHA512 = "2.16.840.1.101.3.4.2.3"
OID_TIMESTAMPING = "1.3.6.1.5.5.7.3.8"
DIGESTS = {OID_SHA1: "sha1", OID_SHA256: "sha256", OID_SHA384: "sha384", OID_SHA512: "sha512"}
HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class TokenError(Exception):
    pass


class Tlv:
    __slots__ = ("tag", "content", "der")

    def __init__(self, tag, content, der):
        self.tag, self.content, self.der = tag, content, der

    def children(self):
        return parse_all(self.content)


def parse_one(b, pos=0):
    if pos + 2 > len(b):
        raise TokenError("DER ends early")
    tag = b[pos]
    if tag & 0x1F == 0x1F:
        raise TokenError("high tag numbers are not used here")
    ln = b[pos + 1]
    hdr = 2
    if ln & 0x80:
        nb = ln & 0x7F
        if nb == 0 or nb > 4 or pos + 2 + nb > len(b):
            raise TokenError("bad DER length")
        ln = int.from_bytes(b[pos + 2 : pos + 2 + nb], "big")
        hdr += nb
    end = pos + hdr + ln
    if end > len(b):
        raise TokenError("DER value past its container")
    return Tlv(tag, b[pos + hdr : end], b[pos:end]), end


def parse_all(b):
    out, pos = [], 0
    while pos < len(b):
        t, pos = parse_one(b, pos)
        out.append(t)
    return out


def oid(t):
    if t.tag != 0x06 or not t.content:
        raise TokenError("expected an OID")
    c = t.content
    first = c[0]
    parts = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    v = 0
    for byte in c[1:]:
        v = (v << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(v)
            v = 0
    return ".".join(str(p) for p in parts)


def integer(t):
    if t.tag != 0x02:
        raise TokenError("expected an INTEGER")
    return int.from_bytes(t.content, "big", signed=True)


def expect(t, tag, what):
    if t.tag != tag:
        raise TokenError("expected %s" % what)
    return t


def gen_time(t):
    if t.tag != 0x18:
        raise TokenError("genTime is not a GeneralizedTime")
    s = t.content.decode("ascii")
    if not s.endswith("Z"):
        raise TokenError("genTime is not UTC")
    s = s[:-1]
    frac = ""
    if "." in s:
        s, frac = s.split(".", 1)
    dt = datetime.datetime.strptime(s, "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc)
    ns = int(dt.timestamp()) * 10**9 + (int((frac + "000000000")[:9]) if frac else 0)
    return dt, ns, t.content.decode("ascii")


def check_token(token_der, imprint, trusted):
    """Checks 3-5 of FORMAT.md for one DER TimeStampToken; returns facts or raises TokenError."""
    ci = parse_one(token_der)[0].children()
    if len(ci) < 2 or oid(ci[0]) != OID_SIGNED_DATA or ci[1].tag != 0xA0:
        raise TokenError("not a CMS SignedData")
    sd = expect(ci[1].children()[0], 0x30, "SignedData").children()
    encap = expect(sd[2], 0x30, "encapContentInfo").children()
    if oid(encap[0]) != OID_TSTINFO:
        raise TokenError("encapsulated content is not id-ct-TSTInfo")
    if len(encap) < 2 or encap[1].tag != 0xA0:
        raise TokenError("no eContent")
    tst_bytes = expect(encap[1].children()[0], 0x04, "eContent OCTET STRING").content
    tst = expect(parse_one(tst_bytes)[0], 0x30, "TSTInfo").children()
    if integer(tst[0]) != 1:
        raise TokenError("TSTInfo version is not 1")
    policy = oid(tst[1])
    mi = tst[2].children()
    if oid(mi[0].children()[0]) != OID_SHA256:
        raise TokenError("message imprint is not SHA-256")
    if expect(mi[1], 0x04, "hashedMessage").content != imprint:
        raise TokenError("message imprint is not the tree head's")
    gt, gt_ns, gt_text = gen_time(tst[4])

    certs = []
    signer_infos = None
    for t in sd[3:]:
        if t.tag == 0xA0:
            certs = [x509.load_der_x509_certificate(c.der) for c in t.children() if c.tag == 0x30]
        elif t.tag == 0x31:
            signer_infos = t.children()
    if signer_infos is None or len(signer_infos) != 1:
        raise TokenError("not exactly one SignerInfo")
    si = signer_infos[0].children()
    sid = si[1]
    digest_alg = DIGESTS.get(oid(si[2].children()[0]))
    if digest_alg not in HASHES:
        raise TokenError("SignerInfo digest algorithm not SHA-256/384/512")
    if si[3].tag != 0xA0:
        raise TokenError("no signed attributes")
    attrs_tlv = si[3]
    sig_alg = oid(si[4].children()[0])
    signature = expect(si[5], 0x04, "signature").content

    # Which certificate the SignerInfo names.
    cert = None
    for c in certs:
        if sid.tag == 0x30:
            iss, ser = sid.children()
            if iss.der == c.issuer.public_bytes() and integer(ser) == c.serial_number:
                cert = c
        elif sid.tag == 0x80:
            try:
                ski = c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if ski == sid.content:
                cert = c
    if cert is None:
        raise TokenError("the certificate the SignerInfo names is not in the token")

    seen = {}
    for a in attrs_tlv.children():
        parts = a.children()
        seen.setdefault(oid(parts[0]), []).append(expect(parts[1], 0x31, "attribute values").children())
    for needed in (OID_CONTENT_TYPE, OID_MESSAGE_DIGEST):
        if len(seen.get(needed, [])) != 1 or len(seen[needed][0]) != 1:
            raise TokenError("signed attributes do not hold exactly one %s" % needed)
    if oid(seen[OID_CONTENT_TYPE][0][0]) != OID_TSTINFO:
        raise TokenError("content-type attribute is not id-ct-TSTInfo")
    if expect(seen[OID_MESSAGE_DIGEST][0][0], 0x04, "message digest").content != hashlib.new(digest_alg, tst_bytes).digest():
        raise TokenError("message-digest attribute does not match the TSTInfo")

    signed = b"\x31" + attrs_tlv.der[1:]
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), HASHES[digest_alg]())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if key.curve.name not in ("secp256r1", "secp384r1"):
                raise TokenError("ECDSA curve not P-256/P-384")
            key.verify(signature, signed, ec.ECDSA(HASHES[digest_alg]()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed)
        else:
            raise TokenError("unsupported signer key (%s)" % sig_alg)
    except InvalidSignature as e:
        raise TokenError("SignerInfo signature does not verify") from e

    ess = seen.get(OID_SIGNING_CERT, []) + seen.get(OID_SIGNING_CERT_V2, [])
    if len(ess) != 1 or len(ess[0]) != 1:
        raise TokenError("signed attributes do not hold exactly one ESS signing-certificate")
    cert_der = cert.public_bytes(serialization_der())
    first = ess[0][0].children()[0].children()[0].children()
    if OID_SIGNING_CERT in seen:
        want = hashlib.sha1(cert_der).digest()
        got = expect(first[0], 0x04, "certHash").content
    else:
        alg = "sha256"
        i = 0
        if first[0].tag == 0x30:
            alg = DIGESTS.get(oid(first[0].children()[0]))
            i = 1
        if alg not in HASHES:
            raise TokenError("ESSCertIDv2 hash is not SHA-256/384/512")
        want = hashlib.new(alg, cert_der).digest()
        got = expect(first[i], 0x04, "certHash").content
    if got != want:
        raise TokenError("ESS signing-certificate does not name the signer's certificate")

    check_chain(cert, certs, trusted, gt)
    return {
        "gen_time": gt_text,
        "gen_time_ns": gt_ns,
        "signer": cert.subject.rfc4514_string(),
        "policy": policy,
    }


def serialization_der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _valid_at(c, when):
    # cryptography < 42 (Debian's python3-cryptography) has only the naive UTC properties.
    if hasattr(c, "not_valid_before_utc"):
        return c.not_valid_before_utc <= when <= c.not_valid_after_utc
    naive = when.replace(tzinfo=None)
    return c.not_valid_before <= naive <= c.not_valid_after


def _issued_by(cert, issuer):
    """cert's signature verifies with issuer's key (verify_directly_issued_by needs cryptography 40)."""
    key = issuer.public_key()
    h = cert.signature_hash_algorithm
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), h)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(h))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(cert.signature, cert.tbs_certificate_bytes)
    else:
        raise TypeError("unsupported issuer key")


def check_chain(cert, pool, trusted, when):
    der = serialization_der()
    trusted_der = {t.public_bytes(der) for t in trusted}
    if cert.public_bytes(der) in trusted_der:
        return
    cur = cert
    for _ in range(8):
        # FORMAT.md: the signer and every intermediate (not the trusted certificate) carry the
        # extended key usage id-kp-timeStamping.
        try:
            eku = cur.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound as e:
            raise TokenError("%s has no extended key usage" % cur.subject.rfc4514_string()) from e
        if x509.ObjectIdentifier(OID_TIMESTAMPING) not in eku:
            raise TokenError("%s is not for time stamping" % cur.subject.rfc4514_string())
        if not _valid_at(cur, when):
            raise TokenError("certificate %s not valid at genTime" % cur.subject.rfc4514_string())
        for issuer in list(trusted) + list(pool):
            if issuer.subject != cur.issuer or issuer.public_bytes(der) == cur.public_bytes(der):
                continue
            try:
                _issued_by(cur, issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            if issuer.public_bytes(der) in trusted_der:
                if not _valid_at(issuer, when):
                    raise TokenError("trusted certificate not valid at genTime")
                return
            cur = issuer
            break
        else:
            raise TokenError("signer certificate does not chain to a trusted TSA certificate")
    raise TokenError("certificate chain too long")


def load_certs(paths):
    out = []
    for p in paths:
        text = open(p, "rb").read()
        end = b"-----END CERTIFICATE-----"
        for chunk in text.split(end)[:-1]:
            out.append(x509.load_pem_x509_certificate(chunk + end + b"\n"))
    return out
