#!/usr/bin/env python3
"""Second round of damage no earlier round tried (splices, moved sessions, foreign keys,
ledger leaves for nothing, reused tokens, odd ids, padding segments, the named anchoring gap),
each compared between `proctor verify --json` and verify.py (compare.py).

    damage2.py PROCTOR_BIN STORE_DIR BUNDLE OTHER_STORE OUT_DIR --pubkey FILE --tsa-cert PEM

STORE_DIR is the vectors' untouched store (two sealed sessions, one open, attestations);
OTHER_STORE a store written under another key (the v2 vectors' untouched store).
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree (tests run it)

import glob
import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from codec import JOURNAL  # noqa: E402
from damage import bundle_parts, copy_store, frames_of, nsegs, rechain, seg_path, write_bundle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def frame_of(raw):
    return struct.pack(">II", len(raw), zlib.crc32(raw) & 0xFFFFFFFF) + raw


def all_records(store):
    out = []
    for n in range(1, nsegs(store) + 1):
        for off, r in frames_of(open(seg_path(store, n), "rb").read(), 16):
            out.append((n, off, r))
    return out


def sessions_in_order(store):
    seen = []
    for _, _, r in all_records(store):
        if r.session != JOURNAL and r.session not in seen:
            seen.append(r.session)
    return seen


def rewrite_segment(store, n, keep):
    """Rewrites segment n with the frames keep(record) returns (a list of raw records each)."""
    p = seg_path(store, n)
    data = open(p, "rb").read()
    out = bytearray(data[:16])
    for _, r in frames_of(data, 16):
        for raw in keep(r):
            out += frame_of(raw)
    open(p, "wb").write(out)


# ---- store cases ----


def splice_foreign_segment(store, other):
    """The other store's first segment spliced in as this store's last (renumbered)."""
    n = nsegs(store) + 1
    data = bytearray(open(os.path.join(other, "segments", "%016d.log" % 1), "rb").read())
    data[8:16] = struct.pack(">Q", n)
    open(seg_path(store, n), "wb").write(data)


def session_moved(store):
    """Session B's records rewritten under a new id (chain recomputed, no key)."""
    b = sessions_in_order(store)[1]
    new = bytes(reversed(b))
    for n in range(1, nsegs(store) + 1):
        rewrite_segment(store, n, lambda r: [r.raw[:2] + new + r.raw[18:]] if r.session == b else [r.raw])
    prev = b"\x00" * 32
    for n in range(1, nsegs(store) + 1):
        out = []

        def keep(r):
            nonlocal prev
            if r.session != new:
                return [r.raw]
            raw = r.raw[:-32] + hashlib.sha256(prev + r.raw[:-32]).digest()
            prev = raw[-32:]
            return [raw]

        rewrite_segment(store, n, keep)
        del out


def future_record(store):
    """The open session's last record dated a year ahead, chain recomputed."""
    c = sessions_in_order(store)[2]
    last = max(r.seq for _, _, r in all_records(store) if r.session == c)
    year = 365 * 24 * 3600 * 10**9
    rechain(store, c, last, lambda h: h[:26] + struct.pack(">q", struct.unpack(">q", h[26:34])[0] + year) + h[34:])


def checkpoint_other_key(store):
    """A's first checkpoint re-signed by a key enrolled nowhere (key_id and signature)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = Ed25519PrivateKey.generate()
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    a = sessions_in_order(store)[0]
    cp = next(r for _, _, r in all_records(store) if r.session == a and r.kind == 64)

    def resign(h):
        body = h[34:]
        covered = body[:40]
        msg = b"proctor checkpoint v1\x00" + a + covered
        return h[:34] + covered + hashlib.sha256(pub).digest() + struct.pack(">I", 64) + k.sign(msg) + body[40 + 32 + 4 + 64 :]

    rechain(store, a, cp.seq, resign)


def leaf_for_nothing(store):
    """A sealed leaf naming a session that never existed, appended (no key: no head after it)."""
    p = os.path.join(store, "ledger", "ledger.log")
    data = open(p, "rb").read()
    pos, leaves = 16, 0
    while pos + 8 <= len(data):
        ln = struct.unpack(">I", data[pos : pos + 4])[0]
        leaves += data[pos + 8] == 1
        pos += 8 + ln

    def s(x):
        return struct.pack(">I", len(x)) + x

    leaf = bytes([1]) + b"\x42" * 16 + struct.pack(">Q", 9) + b"\x11" * 32 + struct.pack(">qq", 1, 2) + s(b"ghost") + s(b"db") + s(b"completed") + struct.pack(">q", 3) + s(b"")
    e = bytes([1]) + struct.pack(">Q", leaves) + leaf
    open(p, "ab").write(frame_of(e))


def journal_duplicated(store):
    """Every journal record stored twice in a row (exact copies)."""
    for n in range(1, nsegs(store) + 1):
        rewrite_segment(store, n, lambda r: [r.raw, r.raw] if r.session == JOURNAL else [r.raw])


def zero_length_last_segment(store):
    open(seg_path(store, nsegs(store) + 1), "wb").write(b"")


def padding_only_segment(store, middle):
    """A new segment holding its header and then only zero bytes, last or in the middle."""
    n = nsegs(store)
    if middle:
        os.rename(seg_path(store, n), seg_path(store, n + 1))
        d = bytearray(open(seg_path(store, n + 1), "rb").read())
        d[8:16] = struct.pack(">Q", n + 1)
        open(seg_path(store, n + 1), "wb").write(d)
        target = n
    else:
        target = n + 1
    open(seg_path(store, target), "wb").write(b"PRCTLOG1" + struct.pack(">Q", target) + b"\x00" * 4096)


def journal_cut_after_anchor(store):
    """The named gap: the journal's records after its last kind-64 checkpoint, and the open
    session's records after the last seq a store checkpoint before it lists, removed."""
    from codec import parse_record  # noqa: F401

    recs = all_records(store)
    last_cp = max(r.seq for _, _, r in recs if r.session == JOURNAL and r.kind == 64)
    c = sessions_in_order(store)[2]
    listed = -1
    for _, _, r in recs:
        if r.session == JOURNAL and r.kind == 67 and r.seq < last_cp:
            for sess, seq, _ in r.decode()["chains"]:
                if sess == c:
                    listed = seq
    for n in range(1, nsegs(store) + 1):
        rewrite_segment(store, n, lambda r: [] if (r.session == JOURNAL and r.seq > last_cp) or (r.session == c and r.seq > listed) else [r.raw])


def token_reused(store):
    """The newest attestation stored a second time under another issuer's file name."""
    atts = sorted(glob.glob(os.path.join(store, "ledger", "attestations", "*-rfc3161-*.json")))
    src = atts[-1]
    o = json.load(open(src))
    o["issuer"] = "http://another-tsa.example/"
    size = o["tree_head"]["size"]
    open(os.path.join(os.path.dirname(src), "%016d-rfc3161-%s.json" % (size, hashlib.sha256(o["issuer"].encode()).hexdigest()[:16])), "w").write(json.dumps(o))


def token_for_older_head_file(store):
    """The newest token's file renamed to claim the older head's size (content unchanged)."""
    atts = sorted(glob.glob(os.path.join(store, "ledger", "attestations", "*-rfc3161-*.json")))
    src = atts[-1]
    base = os.path.basename(src)
    os.rename(src, os.path.join(os.path.dirname(src), "0000000000000001" + base[16:]))


def key_file_deleted(store):
    os.remove(os.path.join(store, "keys", "recorder.pub"))


def ledger_deleted(store):
    os.remove(os.path.join(store, "ledger", "ledger.log"))


def ledger_cut_to_header(store):
    p = os.path.join(store, "ledger", "ledger.log")
    open(p, "r+b").truncate(16)


# ---- bundle cases ----


def bundle_head_smaller_than_token(src, dst, earlier):
    """The bundle's tree_head replaced by an earlier (smaller) head than its token attests."""
    l1, man, frames = bundle_parts(src)
    man["tree_head"] = json.load(open(earlier))
    for k in ("consistency_from", "consistency_proof"):
        man["tree_head"].pop(k, None)
    write_bundle(dst, l1, man, frames)


def bundle_token_twice(src, dst):
    l1, man, frames = bundle_parts(src)
    man["timestamps"] = man["timestamps"] + man["timestamps"]
    write_bundle(dst, l1, man, frames)


def bundle_without_key(src, dst):
    l1, man, frames = bundle_parts(src)
    del man["public_key_pem"]
    write_bundle(dst, l1, man, frames)


def bundle_session_id(src, dst, how):
    l1, man, frames = bundle_parts(src)
    if how == "upper":
        man["session"] = man["session"].upper()
    elif how == "braces":
        man["session"] = "{%s}" % man["session"]
    elif how == "fullwidth":
        man["session"] = "".join(chr(ord(ch) + 0xFEE0) if ch.isdigit() else ch for ch in man["session"])
    write_bundle(dst, l1, man, frames)


def archive_listed_twice(bundle, dst):
    os.makedirs(dst)
    _, man, _ = bundle_parts(bundle)
    gz = gzip.compress(open(bundle, "rb").read())
    open(os.path.join(dst, "s.bundle.gz"), "wb").write(gz)
    e = {"session": man["session"], "file": "s.bundle.gz", "sha256": hashlib.sha256(gz).hexdigest(), "agent": "a", "target": "t", "started_ns": 0, "ended_ns": 0, "retain_until_ns": 0, "ledger_leaf": man["leaf_index"]}
    m = {"format": "proctor-archive 1", "created_ns": 1, "public_key_pem": man["public_key_pem"], "sessions": [e, e]}
    open(os.path.join(dst, "MANIFEST-1.json"), "w").write(json.dumps(m))


def compare(binary, args):
    r = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), binary] + args, capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr[-400:]


def compare_archive(binary, d, pub):
    a = subprocess.run([binary, "verify", "--json", "--archive", d, "--pubkey", pub], capture_output=True, text=True)
    b = subprocess.run([sys.executable, os.path.join(HERE, "verify.py"), "--archive", d, "--pubkey", pub], capture_output=True, text=True)

    def f(r):
        try:
            o = json.loads(r.stdout)
        except ValueError:
            return {"error": (r.stdout + r.stderr)[-300:]}
        return {"exit": r.returncode, "sessions": o.get("sessions"), "manifests": o.get("manifests"), "problems": len(o.get("problems", []))}

    fa, fb = f(a), f(b)
    return fa == fb, "proctor : %s\noutside : %s\n%s" % (json.dumps(fa, sort_keys=True), json.dumps(fb, sort_keys=True), "AGREE" if fa == fb else "DISAGREE")


def main(argv):
    binary, store, bundle, other, out = argv[:5]
    extra = argv[5:]
    pub = extra[extra.index("--pubkey") + 1]
    td = os.path.dirname(os.path.dirname(os.path.abspath(store)))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    store_cases = [
        ("foreign-store-segment-spliced", lambda s: splice_foreign_segment(s, other)),
        ("session-moved-to-new-id-rechained", session_moved),
        ("record-from-the-future-rechained", future_record),
        ("checkpoint-signed-by-unenrolled-key", checkpoint_other_key),
        ("sealed-leaf-for-no-session", leaf_for_nothing),
        ("journal-records-duplicated", journal_duplicated),
        ("zero-length-last-segment", zero_length_last_segment),
        ("padding-only-last-segment", lambda s: padding_only_segment(s, False)),
        ("padding-only-middle-segment", lambda s: padding_only_segment(s, True)),
        ("journal-cut-after-last-anchor", journal_cut_after_anchor),
        ("token-reused-under-another-issuer", token_reused),
        ("token-file-renamed-to-another-size", token_for_older_head_file),
        ("ledger-deleted", ledger_deleted),
        ("ledger-cut-to-its-header", ledger_cut_to_header),
    ]
    rows, bad = [], 0
    has_tokens = bool(glob.glob(os.path.join(store, "ledger", "attestations", "*-rfc3161-*.json")))
    for name, f in store_cases:
        if name.startswith("token-") and not has_tokens:
            continue  # a store without attestations (e.g. from `proctor dev`)
        d = copy_store(store, os.path.join(out, name))
        f(d)
        ok, text = compare(binary, extra + [d])
        rows.append((name, text))
        bad += not ok
    # The named gap with the saved earlier head: the cut is past it, so nothing can tell.
    earlier = os.path.join(td, "heads", "earlier.json")
    if os.path.exists(earlier):
        d = os.path.join(out, "journal-cut-after-last-anchor")
        ok, text = compare(binary, extra + ["--known-head", earlier, d])
        rows.append(("journal-cut-after-last-anchor+known-head", text))
        bad += not ok
    # The store's own key file gone and no key pinned: neither verifier can make a report.
    d = copy_store(store, os.path.join(out, "key-file-deleted-unpinned"))
    key_file_deleted(d)
    ok, text = compare(binary, [d])
    rows.append(("key-file-deleted-unpinned", text))
    bad += not ok
    bundle_cases = [
        ("bundle-head-smaller-than-its-token", lambda d: bundle_head_smaller_than_token(bundle, d, os.path.join(td, "heads", "earlier.json")), extra),
        ("bundle-token-listed-twice", lambda d: bundle_token_twice(bundle, d), extra),
        ("bundle-without-key-pinned", lambda d: bundle_without_key(bundle, d), extra),
        ("bundle-without-key-unpinned", lambda d: bundle_without_key(bundle, d), []),
        ("bundle-session-id-uppercase", lambda d: bundle_session_id(bundle, d, "upper"), extra),
        ("bundle-session-id-braces", lambda d: bundle_session_id(bundle, d, "braces"), extra),
        ("bundle-session-id-fullwidth-digits", lambda d: bundle_session_id(bundle, d, "fullwidth"), extra),
    ]
    has_bundle_tokens = bool(bundle_parts(bundle)[1].get("timestamps"))
    for name, f, args in bundle_cases:
        if "token" in name and not has_bundle_tokens:
            continue
        d = os.path.join(out, name + ".bundle")
        f(d)
        ok, text = compare(binary, args + ["--bundle", d])
        rows.append((name, text))
        bad += not ok
    d = os.path.join(out, "archive-manifest-lists-a-file-twice")
    archive_listed_twice(bundle, d)
    ok, text = compare_archive(binary, d, pub)
    rows.append(("archive-manifest-lists-a-file-twice", text))
    bad += not ok
    for name, text in rows:
        print("== %s\n%s" % (name, text))
    print("%d disagreement(s)" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
