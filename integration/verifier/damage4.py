#!/usr/bin/env python3
"""Fourth round: the JSON a verifier reads (FORMAT.md "JSON") and cuts at record boundaries, each
compared between `proctor verify --json` and verify.py (compare.py), anchoring included.

    damage4.py PROCTOR_BIN STORE_DIR BUNDLE KNOWN_HEAD OUT_DIR [--sweep] --pubkey FILE [--tsa-cert CA]

STORE_DIR: a store with attestations (the vectors' `untouched`); BUNDLE: a bundle with
`timestamps` (the vectors' untouched bundle); KNOWN_HEAD: a head file the store extends.

JSON: a key twice (known or unknown field, at the top or nested, in a manifest, an attestation
or a known head), an integer written 1.0, as a string, as true, negative or past its range, NaN,
a missing `meta` field, a null where a list is due, an attestation cut short. Before this round
verify.py took the last of two keys and read 1.0 and true as 1, so it reported on manifests
proctor refuses (exit 2), and it only noted an attestation proctor finds unreadable.

Cuts: the store cut after each of the last 8 records of its last segment (with --sweep, after
every record of every segment), and the ledger cut after each of its last entries (with --sweep,
every entry): a torn tail, a truncated chain, a ledger without its newest
heads, each judged the same by both.
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree (tests run it)

import glob
import json
import os
import shutil
import struct
import subprocess

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from damage import bundle_parts, frames_of, nsegs, seg_path  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def copy_store(src, dst):
    os.makedirs(dst)
    for d in ("segments", "ledger", "keys", "blobs"):
        if os.path.exists(os.path.join(src, d)):
            shutil.copytree(os.path.join(src, d), os.path.join(dst, d), symlinks=True)
    return dst


# ---- attestation files ----


def newest_attestation(store):
    return sorted(glob.glob(os.path.join(store, "ledger", "attestations", "0*.json")))[-1]


def att_edit(change):
    def f(store):
        p = newest_attestation(store)
        a = json.load(open(p))
        text = change(a)
        open(p, "w").write(text if isinstance(text, str) else json.dumps(a))

    return f


def att_cut(store):
    p = newest_attestation(store)
    open(p, "w").write(open(p).read()[:-5])


# ---- cuts ----


def cut_segment_after(store, n, k):
    """Segment n cut right after its k-th frame (0: its header alone)."""
    p = seg_path(store, n)
    data = open(p, "rb").read()
    ends = [16] + [off + 8 + len(r.raw) for off, r in frames_of(data, 16)]
    open(p, "wb").write(data[: ends[k]])


def frame_count(store, n):
    return len(list(frames_of(open(seg_path(store, n), "rb").read(), 16)))


def ledger_ends(store):
    buf = open(os.path.join(store, "ledger", "ledger.log"), "rb").read()
    pos, ends = 16, []
    while pos + 8 <= len(buf):
        pos += 8 + struct.unpack(">I", buf[pos : pos + 4])[0]
        ends.append(pos)
    return ends


def cut_ledger_at(store, end):
    p = os.path.join(store, "ledger", "ledger.log")
    open(p, "r+b").truncate(end)


# ---- bundles ----


def bundle_text(src, dst, change):
    """The manifest changed as a dict (change returns None) or replaced by the text it returns."""
    _, man, frames = bundle_parts(src)
    text = change(man)
    if text is None:
        text = json.dumps(man)
    open(dst, "wb").write(b"PROCTOR-BUNDLE 1\n" + text.encode() + b"\n" + frames)


def with_key_twice(obj_text, key, value):
    """JSON text of an object with `key` added again at its end."""
    return obj_text[:-1] + ", %s: %s}" % (json.dumps(key), json.dumps(value))


def pop(d, k):
    d.pop(k)


BUNDLE_CASES = [
    ("bundle-format-twice-last-2", lambda m: with_key_twice(json.dumps(m), "format", 2)),
    ("bundle-format-twice-first-2", lambda m: '{"format": 2, ' + json.dumps(m)[1:]),
    ("bundle-unknown-key-twice", lambda m: with_key_twice(with_key_twice(json.dumps(m), "note", 1), "note", 2)),
    ("bundle-meta-agent-twice", lambda m: json.dumps(m).replace('"meta": {', '"meta": {"agent": "someone-else", ', 1)),
    ("bundle-timestamp-issuer-twice", lambda m: json.dumps(m).replace('"consistency_proof": [', '"issuer": "x", "consistency_proof": [', 1)),
    ("bundle-format-1.0", lambda m: m.update(format=1.0)),
    ("bundle-format-string", lambda m: m.update(format="1")),
    ("bundle-format-true", lambda m: m.update(format=True)),
    ("bundle-format-past-u32", lambda m: m.update(format=2**32 + 1)),
    ("bundle-leaf-index-float", lambda m: m.update(leaf_index=float(m["leaf_index"]))),
    ("bundle-tree-head-size-negative", lambda m: m["tree_head"].update(size=-1)),
    ("bundle-meta-events-past-u64", lambda m: m["meta"].update(events=2**64)),
    ("bundle-meta-events-float", lambda m: m["meta"].update(events=float(m["meta"]["events"]))),
    ("bundle-frames-nan", lambda m: json.dumps(m).replace('"frames": %d' % m["frames"], '"frames": NaN')),
    ("bundle-unknown-float", lambda m: with_key_twice(json.dumps(m), "note", 1.5)),
    ("bundle-meta-agent-missing", lambda m: pop(m["meta"], "agent")),
    ("bundle-meta-spans-missing", lambda m: pop(m["meta"], "spans")),
    ("bundle-meta-ended-missing", lambda m: pop(m["meta"], "ended_ns")),
    ("bundle-meta-purged-null", lambda m: m["meta"].update(purged=None)),
    ("bundle-meta-extra-field", lambda m: m["meta"].update(extra=1)),
    ("bundle-meta-agent-nfd", lambda m: m["meta"].update(agent=m["meta"]["agent"] + "\u0301")),
    ("bundle-timestamps-null", lambda m: m.update(timestamps=None)),
    ("bundle-timestamp-format-string", lambda m: m["timestamps"][0].update(format="1")),
    ("bundle-timestamp-without-proof", lambda m: pop(m["timestamps"][0], "consistency_proof")),
]


def without_tsa(args):
    out, skip = [], False
    for a in args:
        if skip or a == "--tsa-cert":
            skip = not skip
            continue
        out.append(a)
    return out


def compare(binary, args):
    r = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), binary] + args, capture_output=True, text=True, timeout=120)
    return r.returncode == 0, r.stdout + r.stderr[-400:]


def main(argv):
    binary, store, bundle, known, out = argv[:5]
    extra = argv[5:]
    sweep = "--sweep" in extra
    extra = [a for a in extra if a != "--sweep"]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    store_cases = [
        ("attestation-cut-short", att_cut, extra),
        ("attestation-tree-head-twice", att_edit(lambda a: '{"tree_head": {"size": 1}, ' + json.dumps(a)[1:]), extra),
        ("attestation-unknown-key-twice", att_edit(lambda a: with_key_twice(with_key_twice(json.dumps(a), "x", 1), "x", 2)), extra),
        ("attestation-format-string", att_edit(lambda a: a.update(format="1")), extra),
        ("attestation-format-1.0", att_edit(lambda a: a.update(format=1.0)), extra),
        ("attestation-received-past-i64", att_edit(lambda a: a.update(received_ns=2**64)), extra),
        ("attestation-cut-short-unchecked", att_cut, without_tsa(extra)),
    ]
    for name, text in (
        ("known-head-size-twice", lambda h: with_key_twice(json.dumps(h), "size", 1)),
        ("known-head-unknown-key-twice", lambda h: with_key_twice(with_key_twice(json.dumps(h), "n", 1), "n", 2)),
        ("known-head-size-1.0", lambda h: json.dumps(dict(h, size=float(h["size"])))),
    ):
        kh = os.path.join(out, name + ".json")
        open(kh, "w").write(text(json.load(open(known))))
        store_cases.append((name, lambda s: None, extra + ["--known-head", kh]))
    # Without --sweep: the last 8 boundaries of the last segment (seals, the journal's last
    # checkpoints, the open session's tail), to keep the test short.
    segs = range(1, nsegs(store) + 1) if sweep else [nsegs(store)]
    for n in segs:
        count = frame_count(store, n)
        for k in range(count) if sweep else range(max(0, count - 8), count):
            store_cases.append(("segment-%d-cut-after-frame-%d" % (n, k), lambda s, n=n, k=k: cut_segment_after(s, n, k), extra))
    ends = ledger_ends(store)
    for i, end in enumerate(ends[:-1]):
        if sweep or i >= len(ends) - 4:
            store_cases.append(("ledger-cut-after-entry-%d" % i, lambda s, end=end: cut_ledger_at(s, end), extra))
    rows, bad = [], 0
    for name, f, args in store_cases:
        d = copy_store(store, os.path.join(out, name))
        f(d)
        ok, text = compare(binary, args + [d])
        rows.append((name, text))
        bad += not ok
    for name, change in BUNDLE_CASES:
        d = os.path.join(out, name + ".bundle")
        bundle_text(bundle, d, change)
        ok, text = compare(binary, extra + ["--bundle", d])
        rows.append((name, text))
        bad += not ok
    for name, text in rows:
        print("== %s\n%s" % (name, text))
    print("%d disagreement(s) in %d case(s)" % (bad, len(rows)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
