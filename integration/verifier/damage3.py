#!/usr/bin/env python3
"""Third round of damage no earlier round tried (blobs swapped, linked or cut loose, bundles
carrying blobs nobody names, tree heads back in time, a duplicated ledger leaf, a swapped key
file, a session directory of another case), each compared between `proctor verify --json` and
verify.py (compare.py), anchoring included.

    damage3.py PROCTOR_BIN STORE_DIR BUNDLE OTHER_PUB OUT_DIR --pubkey FILE

STORE_DIR: a stopped store written by the real recorder (tests/outside_verifier.rs) whose
sessions A and B each hold one blob of the same size (different bytes), A's after seq 1, and
whose `keys/recorder.key` is there (the host's key, for the damage only its holder can make);
BUNDLE: A's bundle; OTHER_PUB: another valid recorder public key.
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree (tests run it)

import base64
import json
import os
import shutil
import struct
import subprocess
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from codec import JOURNAL, tree_head_message, uuid_text  # noqa: E402
from damage import bundle_parts, frames_of, nsegs, seg_path, write_bundle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def copy_store(src, dst):
    os.makedirs(dst)
    for d in ("segments", "ledger", "keys", "blobs"):
        if os.path.exists(os.path.join(src, d)):
            shutil.copytree(os.path.join(src, d), os.path.join(dst, d), symlinks=True)
    k = os.path.join(dst, "keys", "recorder.key")
    if os.path.exists(k):
        os.remove(k)  # evidence only; the damage that needs the key reads the original's
    return dst


def blob_files(store):
    """{session uuid text: [blob paths]} in file-name order."""
    out = {}
    root = os.path.join(store, "blobs")
    for s in sorted(os.listdir(root)):
        out[s] = [os.path.join(root, s, f) for f in sorted(os.listdir(os.path.join(root, s)))]
    return out


def sessions_with_blobs(store):
    """The first two sessions (log order) that own a blob: A and B."""
    owned = blob_files(store)
    seen = []
    for n in range(1, nsegs(store) + 1):
        for _, r in frames_of(open(seg_path(store, n), "rb").read(), 16):
            u = uuid_text(r.session)
            if r.session != JOURNAL and u in owned and u not in seen:
                seen.append(u)
    return seen[:2]


# ---- store cases ----


def blob_swapped(store):
    a, b = sessions_with_blobs(store)
    fa, fb = blob_files(store)[a][0], blob_files(store)[b][0]
    da, db = open(fa, "rb").read(), open(fb, "rb").read()
    assert len(da) == len(db)
    open(fa, "wb").write(db)
    open(fb, "wb").write(da)


def blob_symlink(store):
    """A's blob replaced by a link to a copy of the same bytes outside the store."""
    a = sessions_with_blobs(store)[0]
    f = blob_files(store)[a][0]
    outside = store.rstrip("/") + ".outside-blob"
    shutil.copy(f, outside)
    os.remove(f)
    os.symlink(outside, f)


def blob_directory(store):
    a = sessions_with_blobs(store)[0]
    f = blob_files(store)[a][0]
    os.remove(f)
    os.mkdir(f)


def blob_fifo(store):
    a = sessions_with_blobs(store)[0]
    f = blob_files(store)[a][0]
    os.remove(f)
    os.mkfifo(f)


def session_dir_upper_case(store):
    a = sessions_with_blobs(store)[0]
    root = os.path.join(store, "blobs")
    os.rename(os.path.join(root, a), os.path.join(root, a.upper()))


def record_cut_after_blob(store):
    """A's records after its kind-68 record removed (the blob stays)."""
    a = bytes.fromhex(sessions_with_blobs(store)[0].replace("-", ""))
    ext_seq = None
    for n in range(1, nsegs(store) + 1):
        for _, r in frames_of(open(seg_path(store, n), "rb").read(), 16):
            if r.session == a and r.kind == 68 and ext_seq is None:
                ext_seq = r.seq
    for n in range(1, nsegs(store) + 1):
        p = seg_path(store, n)
        data = open(p, "rb").read()
        out = bytearray(data[:16])
        for _, r in frames_of(data, 16):
            if r.session == a and r.seq > ext_seq:
                continue
            out += struct.pack(">II", len(r.raw), zlib.crc32(r.raw) & 0xFFFFFFFF) + r.raw
        open(p, "wb").write(out)


def ledger_entries(store):
    p = os.path.join(store, "ledger", "ledger.log")
    buf = open(p, "rb").read()
    pos, out = 16, []
    while pos + 8 <= len(buf):
        ln = struct.unpack(">I", buf[pos : pos + 4])[0]
        out.append(buf[pos + 8 : pos + 8 + ln])
        pos += 8 + ln
    return buf[:16], out


def write_ledger(store, header, entries):
    out = bytearray(header)
    for e in entries:
        out += struct.pack(">II", len(e), zlib.crc32(e) & 0xFFFFFFFF) + e
    open(os.path.join(store, "ledger", "ledger.log"), "wb").write(out)


def leaf_duplicated_at_end(store):
    """The last leaf appended again, numbered as the next leaf, with no tree head after it."""
    header, entries = ledger_entries(store)
    leaves = [e for e in entries if e[0] == 1]
    last = leaves[-1]
    entries.append(b"\x01" + struct.pack(">Q", len(leaves)) + last[9:])
    write_ledger(store, header, entries)


def _signer(original):
    """The host's key from its PKCS#8 PEM. Read by hand: proctor writes PKCS#8 v2 (RFC 5958, the
    public key included as [1]), which python-cryptography 48 refuses ("extra data")."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = open(os.path.join(original, "keys", "recorder.key")).read()
    der = base64.b64decode("".join(l for l in pem.splitlines() if l and not l.startswith("-----")))
    # SEQUENCE { INTEGER, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) }, ... }
    at = der.index(bytes.fromhex("0420"), 12)
    return Ed25519PrivateKey.from_private_bytes(der[at + 2 : at + 34])


def head_back_in_time(store, original):
    """The last tree head re-signed (with the host's key) with a time before the one before it."""
    header, entries = ledger_entries(store)
    heads = [i for i, e in enumerate(entries) if e[0] == 2]
    last, prev = heads[-1], heads[-2]
    size, root, _ = struct.unpack(">Q32sq", entries[last][1:49])
    prev_ts = struct.unpack(">q", entries[prev][41:49])[0]
    ts = prev_ts - 1_000_000_000
    sig = _signer(original).sign(tree_head_message(size, root, ts))
    kid = entries[last][49:81]
    entries[last] = b"\x02" + struct.pack(">Q32sq", size, root, ts) + kid + struct.pack(">I", 64) + sig
    write_ledger(store, header, entries)


def journal_checkpoint_short_signature(store):
    """The journal's last checkpoint (kind 64) with a 63-byte signature (length field 63, one
    byte dropped), the chain re-hashed from there (no key needed)."""
    from damage import rechain

    last = None
    for n in range(1, nsegs(store) + 1):
        for _, r in frames_of(open(seg_path(store, n), "rb").read(), 16):
            if r.session == JOURNAL and r.kind == 64:
                last = r.seq

    def short(head):
        # head: the record without its hash; the body ends with u32 64 and the 64 bytes.
        return head[:-68] + struct.pack(">I", 63) + head[-64:-1]

    rechain(store, JOURNAL, last, short)


def key_file_swapped(store, other_pub):
    shutil.copy(other_pub, os.path.join(store, "keys", "recorder.pub"))


def add_token(store, pki, issuer):
    """A real RFC 3161 token (`openssl ts -reply` with the PKI's ts.cnf) over the ledger's last
    tree head, stored as an attestation."""
    import hashlib
    import tempfile

    _, entries = ledger_entries(store)
    head = [e for e in entries if e[0] == 2][-1]
    size, root, ts = struct.unpack(">Q32sq", head[1:49])
    kid, sig = head[49:81], head[85:149]
    imprint = hashlib.sha256(head[1:]).hexdigest()
    with tempfile.TemporaryDirectory() as t:
        q, tok = os.path.join(t, "q.tsq"), os.path.join(t, "tok.der")
        subprocess.run(["openssl", "ts", "-query", "-digest", imprint, "-sha256", "-cert", "-out", q], check=True, capture_output=True)
        subprocess.run(["openssl", "ts", "-reply", "-config", os.path.join(pki, "ts.cnf"), "-queryfile", q, "-token_out", "-out", tok], check=True, capture_output=True, cwd=pki)
        token = open(tok, "rb").read()
    att = {
        "format": 1,
        "type": "rfc3161",
        "issuer": issuer,
        "tree_head": {"size": size, "root": root.hex(), "ts_ns": ts, "key_id": kid.hex(), "signature": sig.hex()},
        "token": base64.b64encode(token).decode(),
        "received_ns": ts,
    }
    d = os.path.join(store, "ledger", "attestations")
    os.makedirs(d, exist_ok=True)
    name = "%016d-rfc3161-%s.json" % (size, hashlib.sha256(issuer.encode()).hexdigest()[:16])
    open(os.path.join(d, name), "w").write(json.dumps(att))


# ---- bundle cases ----


def bundle_extra_blob(src, dst):
    """An entry no record names added to `external_bodies`."""
    l1, man, frames = bundle_parts(src)
    data = b"not named by any record"
    import hashlib

    man.setdefault("external_bodies", []).append({"sha256": hashlib.sha256(data).hexdigest(), "base64": base64.b64encode(data).decode()})
    write_bundle(dst, l1, man, frames)


def bundle_blob_listed_twice(src, dst, good_first):
    """The named blob listed twice: the true bytes and other bytes, in either order."""
    l1, man, frames = bundle_parts(src)
    e = man["external_bodies"][0]
    bad = {"sha256": e["sha256"], "base64": base64.b64encode(b"other bytes").decode()}
    man["external_bodies"] = [e, bad] if good_first else [bad, e]
    write_bundle(dst, l1, man, frames)


def bundle_blob_name_upper(src, dst):
    l1, man, frames = bundle_parts(src)
    for e in man["external_bodies"]:
        e["sha256"] = e["sha256"].upper()
    write_bundle(dst, l1, man, frames)


def bundle_blob_unpadded(src, dst):
    """The base64 without its `=` padding (FORMAT.md: standard, with padding)."""
    l1, man, frames = bundle_parts(src)
    e = man["external_bodies"][0]
    if not e["base64"].endswith("="):
        e["base64"] = base64.b64encode(base64.b64decode(e["base64"]) + b"").decode()
    e["base64"] = e["base64"].rstrip("=")
    write_bundle(dst, l1, man, frames)


def compare(binary, args):
    r = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), binary] + args, capture_output=True, text=True, timeout=120)
    return r.returncode == 0, r.stdout + r.stderr[-400:]


def main(argv):
    binary, store, bundle, other_pub, out = argv[:5]
    extra = argv[5:]
    pki = {}
    for flag in ("--trusted-pki", "--other-pki"):
        if flag in extra:
            i = extra.index(flag)
            pki[flag] = extra[i + 1]
            extra = extra[:i] + extra[i + 2 :]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    store_cases = [
        ("blob-swapped-between-sessions", blob_swapped, extra),
        ("blob-replaced-by-symlink-to-same-bytes", blob_symlink, extra),
        ("blob-replaced-by-directory", blob_directory, extra),
        ("blob-replaced-by-fifo", blob_fifo, extra),
        ("blob-session-dir-upper-case", session_dir_upper_case, extra),
        ("records-cut-after-the-blob-record", record_cut_after_blob, extra),
        ("ledger-leaf-duplicated-at-end", leaf_duplicated_at_end, extra),
        ("tree-head-back-in-time-resigned", lambda s: head_back_in_time(s, store), extra),
        ("journal-checkpoint-63-byte-signature-rechained", journal_checkpoint_short_signature, extra),
        ("key-file-swapped-unpinned", lambda s: key_file_swapped(s, other_pub), []),
        ("key-file-swapped-pinned", lambda s: key_file_swapped(s, other_pub), extra),
    ]
    if "--trusted-pki" in pki:
        # Tokens: checked with --tsa-cert of the trusted PKI's CA only.
        trusted, other = pki["--trusted-pki"], pki["--other-pki"]
        tsa = extra + ["--tsa-cert", os.path.join(trusted, "ca.pem")]
        store_cases += [
            ("token-from-the-configured-tsa", lambda s: add_token(s, trusted, "http://trusted.example/"), tsa),
            ("token-same-imprint-from-another-tsa", lambda s: add_token(s, other, "http://trusted.example/"), tsa),
        ]
    rows, bad = [], 0
    for name, f, args in store_cases:
        d = copy_store(store, os.path.join(out, name))
        f(d)
        ok, text = compare(binary, args + [d])
        rows.append((name, text))
        bad += not ok
    bundle_cases = [
        ("bundle-blob-named-by-no-record", bundle_extra_blob),
        ("bundle-blob-listed-twice-true-first", lambda s, d: bundle_blob_listed_twice(s, d, True)),
        ("bundle-blob-listed-twice-other-first", lambda s, d: bundle_blob_listed_twice(s, d, False)),
        ("bundle-blob-name-upper-case", bundle_blob_name_upper),
        ("bundle-blob-base64-unpadded", bundle_blob_unpadded),
    ]
    for name, f in bundle_cases:
        d = os.path.join(out, name + ".bundle")
        f(bundle, d)
        ok, text = compare(binary, extra + ["--bundle", d])
        rows.append((name, text))
        bad += not ok
    for name, text in rows:
        print("== %s\n%s" % (name, text))
    print("%d disagreement(s)" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
