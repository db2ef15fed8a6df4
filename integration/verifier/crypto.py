"""Strict Ed25519 (FORMAT.md "Strict Ed25519") and RFC 6962/9162 Merkle proofs.

Ed25519 is implemented here in plain Python on purpose: the strict rules (canonical S, no small
order A or R, cofactorless equation, R compared by encoding) are the point, and a library's
default check may be laxer.
"""

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENT = (0, 1, 1, 0)


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, p):
    q = IDENT
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode(p):
    x, y, z, _ = p
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decode(b):
    if len(b) != 32:
        return None
    v = int.from_bytes(b, "little")
    sign = v >> 255
    y = v & ((1 << 255) - 1)
    if y >= P:
        return None  # non-canonical y
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        if sign:
            return None
        return (0, y, 1, 0)
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _is_ident(p):
    x, y, z, _ = p
    return x % P == 0 and (y - z) % P == 0


def _small_order(p):
    return _is_ident(_mul(8, p))


_BY = 4 * pow(5, P - 2, P) % P
B = _decode(_BY.to_bytes(32, "little"))


def verify_strict(pub, msg, sig):
    """True when sig is a valid strict Ed25519 signature of msg by the 32-byte key pub."""
    if len(pub) != 32 or len(sig) != 64:
        return False
    a = _decode(pub)
    r = _decode(sig[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    if _small_order(a) or _small_order(r):
        return False
    k = int.from_bytes(hashlib.sha512(sig[:32] + pub + msg).digest(), "little") % L
    # R' = [S]B - [k]A, compared with R by its encoding (cofactorless).
    neg_a = ((P - a[0]) % P, a[1], a[2], (P - a[3]) % P)
    rp = _add(_mul(s, B), _mul(k, neg_a))
    return _encode(rp) == sig[:32]


# --- RFC 6962 Merkle tree -------------------------------------------------------------------


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(hashes):
    """Merkle tree hash over leaf hashes (RFC 6962 2.1)."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(root_of(hashes[:k]), root_of(hashes[k:]))


class Roots:
    """Roots of every prefix of a list of leaf hashes, computed incrementally (compact range)."""

    def __init__(self):
        self.stack = []  # (size, hash) perfect subtrees, biggest first
        self.n = 0

    def push(self, h):
        size = 1
        while self.stack and self.stack[-1][0] == size:
            s, left = self.stack.pop()
            h = node_hash(left, h)
            size *= 2
        self.stack.append((size, h))
        self.n += 1

    def root(self):
        if not self.stack:
            return hashlib.sha256(b"").digest()
        h = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            h = node_hash(left, h)
        return h


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(size1, size2, root1, root2, proof):
    """RFC 9162 2.1.4.2."""
    if size1 > size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: first_hash is the old root itself
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0


def key_id(pub):
    return hashlib.sha256(pub).digest()


def load_pubkey(text):
    """A PEM SubjectPublicKeyInfo (Ed25519) or 64 hex digits -> the raw 32-byte key."""
    import base64

    t = text.strip()
    if len(t) == 64 and all(c in "0123456789abcdefABCDEF" for c in t):
        return bytes.fromhex(t)
    lines = [x for x in t.splitlines() if x and not x.startswith("-----")]
    der = base64.b64decode("".join(lines))
    # SPKI for Ed25519: 30 2a 30 05 06 03 2b 65 70 03 21 00 || 32 bytes
    prefix = bytes.fromhex("302a300506032b6570032100")
    if len(der) != 44 or not der.startswith(prefix):
        raise ValueError("not an Ed25519 SubjectPublicKeyInfo")
    return der[12:]
