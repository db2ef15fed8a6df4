#!/usr/bin/env python3
"""Damages copies of a store and a bundle in ways the test vectors do not, and compares
`proctor verify --json` with verify.py on each (compare.py).

    damage.py PROCTOR_BIN STORE_DIR BUNDLE OUT_DIR [--pubkey FILE]

STORE_DIR needs at least two segments; BUNDLE is a bundle exported from it.
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree (tests run it)

import json
import os
import shutil
import struct
import subprocess
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from codec import parse_record, read_frames  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def copy_store(src, dst):
    os.makedirs(dst)
    for d in ("segments", "ledger", "keys"):
        shutil.copytree(os.path.join(src, d), os.path.join(dst, d))
    return dst


def seg_path(store, n):
    return os.path.join(store, "segments", "%016d.log" % n)


def frames_of(data, start):
    out = []
    for item in read_frames(data, start, True):
        if item[0] == "record":
            out.append((item[2], item[1]))
    return out


def fix_crc(data, off):
    ln = struct.unpack(">I", data[off : off + 4])[0]
    data[off + 4 : off + 8] = struct.pack(">I", zlib.crc32(bytes(data[off + 8 : off + 8 + ln])) & 0xFFFFFFFF)


def last_record_payload_flip(store, fix):
    p = seg_path(store, 1)
    data = bytearray(open(p, "rb").read())
    off, rec = frames_of(bytes(data), 16)[-1]
    # a byte inside the body, well before the hash
    data[off + 8 + 34 + min(3, len(rec.body) - 1)] ^= 0x01
    if fix:
        fix_crc(data, off)
    open(p, "wb").write(data)


def nsegs(store):
    return len(os.listdir(os.path.join(store, "segments")))


def delete_last_segment(store):
    os.remove(seg_path(store, nsegs(store)))


def swap_segments(store, rewrite_headers):
    a, b = seg_path(store, 1), seg_path(store, 2)
    da, db = bytearray(open(a, "rb").read()), bytearray(open(b, "rb").read())
    if rewrite_headers:
        da[8:16], db[8:16] = struct.pack(">Q", 2), struct.pack(">Q", 1)
    open(a, "wb").write(db)
    open(b, "wb").write(da)


def replay_old_tree_head(store):
    p = os.path.join(store, "ledger", "ledger.log")
    data = open(p, "rb").read()
    pos, heads = 16, []
    while pos + 8 <= len(data):
        ln = struct.unpack(">I", data[pos : pos + 4])[0]
        if data[pos + 8] == 2:
            heads.append(data[pos : pos + 8 + ln])
        pos += 8 + ln
    open(p, "ab").write(heads[0])


def truncate_in_header(store):
    n = nsegs(store)
    p = seg_path(store, n)
    data = open(p, "rb").read()
    off, _ = frames_of(data, 16)[-1]
    open(p, "wb").write(data[: off + 8 + 10])


def truncate_in_header_not_last(store):
    p = seg_path(store, 1)
    data = open(p, "rb").read()
    off, _ = frames_of(data, 16)[-1]
    open(p, "wb").write(data[: off + 8 + 10])


def huge_length(store, seg, which):
    p = seg_path(store, seg)
    data = bytearray(open(p, "rb").read())
    off, _ = frames_of(bytes(data), 16)[which]
    data[off : off + 4] = struct.pack(">I", 0x7FFFFFFF)
    open(p, "wb").write(data)


def append_forged_journal(store):
    """A journal_note appended after the last record, chained but unsigned."""
    n = nsegs(store)
    p = seg_path(store, n)
    data = open(p, "rb").read()
    last = None
    for s in range(1, n + 1):
        for _, r in frames_of(open(seg_path(store, s), "rb").read(), 16):
            if r.session == b"\x00" * 16:
                last = r
    import hashlib

    body = struct.pack(">I", 5) + b"audit" + struct.pack(">I", 6) + b"forged"
    head = bytes([1, 96]) + b"\x00" * 16 + struct.pack(">Qq", last.seq + 1, last.ts + 1) + body
    h = hashlib.sha256(last.hash + head).digest()
    raw = head + h
    frame = struct.pack(">II", len(raw), zlib.crc32(raw) & 0xFFFFFFFF) + raw
    open(p, "wb").write(data.rstrip(b"\x00") + frame if data.endswith(b"\x00" * 8) else data + frame)


def cut_ledger_last_leaf(store):
    """The ledger without its last leaf and the tree head after it (a sealed leaf lost)."""
    p = os.path.join(store, "ledger", "ledger.log")
    data = open(p, "rb").read()
    pos, starts = 16, []
    while pos + 8 <= len(data):
        ln = struct.unpack(">I", data[pos : pos + 4])[0]
        starts.append((pos, data[pos + 8]))
        pos += 8 + ln
    last_leaf = [o for o, t in starts if t == 1][-1]
    open(p, "wb").write(data[:last_leaf])


def rechain(store, session, from_seq, mutate):
    """Rewrite one record of a session with mutate(raw_without_hash) and recompute every later
    hash of that chain (no key: signatures after it break)."""
    import hashlib

    prev = None
    for n in range(1, nsegs(store) + 1):
        p = seg_path(store, n)
        data = bytearray(open(p, "rb").read())
        out = bytearray(data[:16])
        for off, r in frames_of(bytes(data), 16):
            raw = r.raw
            if r.session == session and r.seq >= from_seq:
                head = raw[:-32]
                if r.seq == from_seq:
                    head = mutate(head)
                raw = head + hashlib.sha256(prev + head).digest()
            if r.session == session:
                prev = raw[-32:]
            out += struct.pack(">II", len(raw), zlib.crc32(raw) & 0xFFFFFFFF) + raw
        open(p, "wb").write(out)


def first_session(store):
    for _, r in frames_of(open(seg_path(store, 1), "rb").read(), 16):
        if r.session != b"\x00" * 16:
            return r.session


def body_trailing_byte(store):
    rechain(store, first_session(store), 2, lambda h: h + b"\x00")


def unknown_kind(store):
    rechain(store, first_session(store), 2, lambda h: h[:1] + bytes([50]) + h[2:])


def record_after_seal(store):
    """A record chained after a sealed session's seal, appended to the last segment."""
    import hashlib

    sid = first_session(store)
    last = None
    for n in range(1, nsegs(store) + 1):
        for _, r in frames_of(open(seg_path(store, n), "rb").read(), 16):
            if r.session == sid:
                last = r
    body = struct.pack(">I", 5) + b"agent" + struct.pack(">I", 4) + b"more"
    head = bytes([1, 22]) + sid + struct.pack(">Qq", last.seq + 1, last.ts + 1) + body
    raw = head + hashlib.sha256(last.hash + head).digest()
    p = seg_path(store, nsegs(store))
    open(p, "ab").write(struct.pack(">II", len(raw), zlib.crc32(raw) & 0xFFFFFFFF) + raw)


L = 2**252 + 27742317777372353535851937790883648493


def malleate(sig):
    """S + L: the same signature with a non-canonical S (a lax verifier accepts it)."""
    s = int.from_bytes(sig[32:], "little") + L
    return sig[:32] + s.to_bytes(32, "little")


def ledger_head_noncanonical(store):
    p = os.path.join(store, "ledger", "ledger.log")
    data = bytearray(open(p, "rb").read())
    pos, last = 16, None
    while pos + 8 <= len(data):
        ln = struct.unpack(">I", data[pos : pos + 4])[0]
        if data[pos + 8] == 2:
            last = pos
        pos += 8 + ln
    e = last + 8
    sig_at = e + 1 + 8 + 32 + 8 + 32 + 4
    data[sig_at : sig_at + 64] = malleate(bytes(data[sig_at : sig_at + 64]))
    fix_crc(data, last)
    open(p, "wb").write(data)


def checkpoint_noncanonical(store):
    sid = first_session(store)
    cp = None
    for _, r in frames_of(open(seg_path(store, 1), "rb").read(), 16):
        if r.session == sid and r.kind in (64, 65):
            cp = r.seq
            break

    def m(head):
        sig_at = 34 + 8 + 32 + 32 + 4
        return head[:sig_at] + malleate(head[sig_at : sig_at + 64]) + head[sig_at + 64 :]

    rechain(store, sid, cp, m)


def zeros_between_frames(store):
    p = seg_path(store, nsegs(store))
    data = open(p, "rb").read()
    off, _ = frames_of(data, 16)[-1]
    open(p, "wb").write(data[:off] + b"\x00" * 16 + data[off:])


def stray_file(store):
    open(os.path.join(store, "segments", "%016d.log.bak" % 1), "wb").write(b"junk")


def empty_middle_segment(store):
    n = nsegs(store)
    os.rename(seg_path(store, n), seg_path(store, n + 1))
    open(seg_path(store, n), "wb").write(b"")


def uncovered_leaf(store):
    p = os.path.join(store, "ledger", "ledger.log")
    data = open(p, "rb").read()
    pos, last_leaf = 16, None
    while pos + 8 <= len(data):
        ln = struct.unpack(">I", data[pos : pos + 4])[0]
        if data[pos + 8] == 1:
            last_leaf = data[pos : pos + 8 + ln]
        pos += 8 + ln
    e = bytearray(last_leaf[8:])  # a copy of the last leaf, renumbered as the next one
    leaves = 0
    pos = 16
    while pos + 8 <= len(data):
        ln = struct.unpack(">I", data[pos : pos + 4])[0]
        leaves += data[pos + 8] == 1
        pos += 8 + ln
    e[1:9] = struct.pack(">Q", leaves)
    open(p, "ab").write(struct.pack(">II", len(e), zlib.crc32(bytes(e)) & 0xFFFFFFFF) + bytes(e))


def duplicate_after_seal(store):
    """An exact copy of seq 3 of a sealed session appended at the end of the last segment."""
    sid = first_session(store)
    for _, r in frames_of(open(seg_path(store, 1), "rb").read(), 16):
        if r.session == sid and r.seq == 3:
            raw = r.raw
    p = seg_path(store, nsegs(store))
    open(p, "ab").write(struct.pack(">II", len(raw), zlib.crc32(raw) & 0xFFFFFFFF) + raw)


def first_segment_copied_as_new_last(store):
    n = nsegs(store) + 1
    data = bytearray(open(seg_path(store, 1), "rb").read())
    data[8:16] = struct.pack(">Q", n)
    open(seg_path(store, n), "wb").write(data)


def bundle_parts(path):
    data = open(path, "rb").read()
    l1, rest = data.split(b"\n", 1)
    man, frames = rest.split(b"\n", 1)
    return l1, json.loads(man), frames


def write_bundle(path, l1, man, frames):
    open(path, "wb").write(l1 + b"\n" + json.dumps(man).encode() + b"\n" + frames)


def bundle_foreign_record(src, dst, store, fix_manifest):
    l1, man, frames = bundle_parts(src)
    sid = bytes.fromhex(man["session"].replace("-", ""))
    other = None
    for n in range(nsegs(store), 0, -1):
        for _, r in frames_of(open(seg_path(store, n), "rb").read(), 16):
            if r.session != sid and r.session != b"\x00" * 16:
                other = r
    raw = other.raw
    frame = struct.pack(">II", len(raw), zlib.crc32(raw) & 0xFFFFFFFF) + raw
    recs = frames_of(frames, 0)
    cut = recs[3][0]
    frames = frames[:cut] + frame + frames[cut:]
    if fix_manifest:
        import hashlib

        man["frames"] += 1
        man["frames_sha256"] = hashlib.sha256(frames).hexdigest()
    write_bundle(dst, l1, man, frames)


def bundle_crc_flip(src, dst):
    l1, man, frames = bundle_parts(src)
    off, _ = frames_of(frames, 0)[4]
    frames = bytearray(frames)
    frames[off + 8 + 40] ^= 1
    write_bundle(dst, l1, man, bytes(frames))


def bundle_head_noncanonical(src, dst):
    l1, man, frames = bundle_parts(src)
    man["tree_head"]["signature"] = malleate(bytes.fromhex(man["tree_head"]["signature"])).hex()
    write_bundle(dst, l1, man, frames)


def bundle_other_session_id(src, dst):
    l1, man, frames = bundle_parts(src)
    sid = man["session"]
    man["session"] = sid[:-1] + ("0" if sid[-1] != "0" else "1")
    man["meta"]["id"] = man["session"]
    write_bundle(dst, l1, man, frames)


def bundle_meta_events(src, dst):
    l1, man, frames = bundle_parts(src)
    man["meta"]["events"] += 1
    write_bundle(dst, l1, man, frames)


def bundle_proof_changed(src, dst):
    l1, man, frames = bundle_parts(src)
    p = man["inclusion_proof"]
    p[0] = p[0][:-2] + ("00" if p[0][-2:] != "00" else "01")
    write_bundle(dst, l1, man, frames)


def bundle_manifest(src, dst, change):
    l1, man, frames = bundle_parts(src)
    change(man)
    write_bundle(dst, l1, man, frames)


def _forge_sc(man):
    """The store checkpoint's signature changed (CRC fixed), placed before the valid one."""
    raw = bytearray(bytes.fromhex(man["store_checkpoints"][0]))
    raw[-33] ^= 1  # the signature's last byte (the record's own chain hash follows it)
    raw[4:8] = struct.pack(">I", zlib.crc32(bytes(raw[8:])) & 0xFFFFFFFF)
    man["store_checkpoints"].insert(0, raw.hex())


def bundle_append(src, dst, which):
    """A record appended after the seal (chained, unsigned), or a copy of seq 3."""
    import hashlib

    l1, man, frames = bundle_parts(src)
    recs = frames_of(frames, 0)
    if which == "after-seal":
        last = recs[-1][1]
        body = struct.pack(">I", 5) + b"agent" + struct.pack(">I", 4) + b"more"
        head = bytes([1, 22]) + last.session + struct.pack(">Qq", last.seq + 1, last.ts + 1) + body
        raw = head + hashlib.sha256(last.hash + head).digest()
    else:
        raw = recs[3][1].raw
    frames += struct.pack(">II", len(raw), zlib.crc32(raw) & 0xFFFFFFFF) + raw
    man["frames"] += 1
    man["frames_sha256"] = hashlib.sha256(frames).hexdigest()
    write_bundle(dst, l1, man, frames)


def bundle_frames_sha_only(src, dst):
    l1, man, frames = bundle_parts(src)
    man["frames_sha256"] = "00" * 32
    write_bundle(dst, l1, man, frames)


def bundle_trailing_garbage(src, dst):
    l1, man, frames = bundle_parts(src)
    write_bundle(dst, l1, man, frames + b"\x00\x00\x00\x05junk!")


def main(argv):
    binary, store, bundle, out = argv[:4]
    extra = argv[4:]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    store_cases = [
        ("flip-last-record-of-segment-crc-fixed", lambda s: last_record_payload_flip(s, True)),
        ("flip-last-record-of-segment", lambda s: last_record_payload_flip(s, False)),
        ("delete-last-segment", delete_last_segment),
        ("swap-segments-headers-rewritten", lambda s: swap_segments(s, True)),
        ("swap-segments", lambda s: swap_segments(s, False)),
        ("replay-older-tree-head", replay_old_tree_head),
        ("truncate-mid-header-last-segment", truncate_in_header),
        ("truncate-mid-header-first-segment", truncate_in_header_not_last),
        ("huge-length-first-frame", lambda s: huge_length(s, 1, 0)),
        ("huge-length-last-frame-last-segment", lambda s: huge_length(s, nsegs(s), -1)),
        ("forged-journal-note-appended", append_forged_journal),
        ("ledger-last-leaf-cut", cut_ledger_last_leaf),
        ("body-trailing-byte-rechained", body_trailing_byte),
        ("unknown-kind-rechained", unknown_kind),
        ("record-after-seal", record_after_seal),
        ("ledger-head-noncanonical-s", ledger_head_noncanonical),
        ("checkpoint-noncanonical-s-rechained", checkpoint_noncanonical),
        ("zeros-between-frames-last-segment", zeros_between_frames),
        ("stray-file-in-segments", stray_file),
        ("empty-segment-in-the-middle", empty_middle_segment),
        ("uncovered-leaf-appended", uncovered_leaf),
        ("duplicate-after-seal", duplicate_after_seal),
        ("first-segment-copied-as-new-last", first_segment_copied_as_new_last),
    ]
    bad = 0
    rows = []
    for name, f in store_cases:
        d = copy_store(store, os.path.join(out, name))
        f(d)
        r = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), binary] + extra + [d], capture_output=True, text=True)
        rows.append((name, r.stdout))
        bad += r.returncode != 0
    bundle_cases = [
        ("bundle-foreign-record", lambda d: bundle_foreign_record(bundle, d, store, False)),
        ("bundle-foreign-record-manifest-fixed", lambda d: bundle_foreign_record(bundle, d, store, True)),
        ("bundle-frames-sha256-only", lambda d: bundle_frames_sha_only(bundle, d)),
        ("bundle-crc-flip", lambda d: bundle_crc_flip(bundle, d)),
        ("bundle-tree-head-noncanonical-s", lambda d: bundle_head_noncanonical(bundle, d)),
        ("bundle-other-session-id", lambda d: bundle_other_session_id(bundle, d)),
        ("bundle-meta-events", lambda d: bundle_meta_events(bundle, d)),
        ("bundle-inclusion-proof-changed", lambda d: bundle_proof_changed(bundle, d)),
        ("bundle-record-after-seal", lambda d: bundle_append(bundle, d, "after-seal")),
        ("bundle-duplicate-seq-3", lambda d: bundle_append(bundle, d, "dup")),
        ("bundle-format-2", lambda d: bundle_manifest(bundle, d, lambda m: m.update(format=2))),
        ("bundle-meta-ledger-index", lambda d: bundle_manifest(bundle, d, lambda m: m["meta"].update(ledger_index=m["meta"]["ledger_index"] + 1))),
        ("bundle-meta-unauthenticated-fields", lambda d: bundle_manifest(bundle, d, lambda m: m["meta"].update(spans=[], legal_hold="x", extra=1))),
        ("bundle-trailing-garbage", lambda d: bundle_trailing_garbage(bundle, d)),
    ]
    man = bundle_parts(bundle)[1]
    if man.get("timestamps"):
        bundle_cases.append(("bundle-attestation-unknown-type", lambda d: bundle_manifest(bundle, d, lambda m: m["timestamps"][0].update(type="c2sp-cosignature/v1"))))
    if man.get("store_checkpoints"):
        bundle_cases.append(("bundle-store-checkpoint-forged-before-valid", lambda d: bundle_manifest(bundle, d, _forge_sc)))
    for name, f in bundle_cases:
        d = os.path.join(out, name + ".bundle")
        f(d)
        r = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), binary] + extra + ["--bundle", d], capture_output=True, text=True)
        rows.append((name, r.stdout))
        bad += r.returncode != 0
    for name, text in rows:
        print("== %s\n%s" % (name, text))
    print("%d disagreement(s)" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
