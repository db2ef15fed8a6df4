"""Verification of an export bundle (FORMAT.md "Bundles")."""

import hashlib
import re
import struct

import crypto
import external
import strictjson
from chains import STORE_CP_CONTEXT, Chains, unsigned_tail
from codec import JOURNAL, DecodeError, crc32, decode_leaf, head_from_json, parse_record, read_frames, tree_head_message, uuid_text


class BundleChains(Chains):
    def lenient_recovered(self, chain, claim, rec_seq):
        # No journal here: a claim between our own value and the recovered record's seq is
        # accepted; the tail is reported from our own value (the larger one).
        return chain.signed_through + 1 <= claim <= rec_seq


def parse_bundle(data):
    # A first line that is not the magic, or a manifest line without its end, is no bundle: no
    # report (exit 2), as proctor.
    first, _, rest = data.partition(b"\n")
    if first != b"PROCTOR-BUNDLE 1":
        raise Unreadable("not a proctor bundle (line 1)")
    manifest_line, nl, frames = rest.partition(b"\n")
    if not nl:
        raise Unreadable("bundle manifest is cut")
    try:
        return strictjson.loads(manifest_line), frames
    except strictjson.Invalid as e:
        raise Unreadable("manifest: %s" % e)


REQUIRED = ("format", "session", "meta", "public_key_pem", "leaf_data", "leaf_index", "inclusion_proof", "tree_head", "frames", "frames_sha256")
SESSION_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Unreadable(Exception):
    """A manifest that is not strict JSON (FORMAT.md "JSON"), lacks a required field, has a field
    of another type, or whose session is not in the one spelling: no report (exit 2), as
    FORMAT.md "Bundles" says."""


def verify_bundle(path, pinned):
    data = open(path, "rb").read()
    man, frames = parse_bundle(data)
    missing = [f for f in REQUIRED if f not in man]
    if missing:
        raise Unreadable("manifest lacks %s" % ", ".join(missing))
    try:
        strictjson.check(man, strictjson.MANIFEST)
    except strictjson.Invalid as e:
        raise Unreadable(str(e))
    if not isinstance(man["session"], str) or not SESSION_TEXT.match(man["session"]):
        raise Unreadable("session %r is not a UUID in hyphenated lower-case form" % man["session"])
    problems = []
    notes = []

    def add(kind, seq, detail, session=True):
        problems.append({"session": man.get("session") if session else None, "seq": seq, "kind": kind, "detail": detail})

    bad_format = man.get("format") != 1  # reported with the metadata (FORMAT.md, Bundles)
    if pinned is None:
        pub = crypto.load_pubkey(man["public_key_pem"])
        key_source = "bundle"
    else:
        pub = pinned
        key_source = "pinned"
    kid = crypto.key_id(pub)
    sid = bytes.fromhex(man["session"].replace("-", ""))

    records, bad = [], []
    for item in read_frames(frames, 0, True):
        if item[0] == "record":
            records.append(item[1])
        else:
            bad.append(item)
    positions = [(i, r.seq) for i, r in enumerate(records)]

    def later_seqs(session, pos):
        return {s for i, s in positions if i > pos}

    chains = BundleChains(pub, kid, later_seqs)
    c = chains.get(sid)
    for _, kind, detail, off, header in bad:
        # In a bundle every frame is the session's: a bad one is *edited* (at its seq when the
        # header is readable).
        seq = header[1] if header is not None and header[0] == sid else None
        c.fail("edited", seq, "frame at %d: %s" % (off, detail))
    foreign = [r for r in records if r.session != sid]
    if foreign:
        c.fail("edited", foreign[0].seq, "a frame of another session (%s)" % uuid_text(foreign[0].session))
    records = [r for r in records if r.session == sid]
    # FORMAT.md: a frames/frames_sha256 mismatch "is reported with the chain finding".
    frames_differ = hashlib.sha256(frames).hexdigest() != man.get("frames_sha256") or man.get("frames") != len(records) + len(bad) + len(foreign)

    # Every entry is checked on its own (FORMAT.md: at most one is written, and a valid entry
    # only ever adds what its own signature vouches for).
    scs = [_store_checkpoint(item, sid, pub, kid) for item in man.get("store_checkpoints") or []]
    for i, rec in enumerate(records):
        chains._pos = i
        chains.feed(rec, i)
        for sc in scs:
            if sc[2] is None and rec.seq == sc[0] and c.finding is None and c.last is rec:
                if rec.hash != sc[1]:
                    c.fail("edited", sc[0], "chain does not stand where the store checkpoint signed it")
                else:
                    c.signed_through = max(c.signed_through, sc[0])

    external.check_bundle(man, c, records)

    # The sealed leaf, the audit path and the tree head.
    head = head_from_json(man["tree_head"])
    sealed_ok = False
    try:
        leaf_data = bytes.fromhex(man["leaf_data"])
        leaf = decode_leaf(leaf_data)
    except (DecodeError, ValueError) as e:
        add("ledger", None, "leaf_data: %s" % e)
        leaf = None
    if head["key_id"] != kid or not crypto.verify_strict(pub, tree_head_message(head["size"], head["root"], head["ts_ns"]), head["signature"]):
        add("bad_signature", None, "tree head signature does not verify")
    if leaf is not None:
        proof = [bytes.fromhex(h) for h in man.get("inclusion_proof", [])]
        if not crypto.verify_inclusion(int(man["leaf_index"]), head["size"], crypto.leaf_hash(leaf_data), proof, head["root"]):
            add("ledger", None, "inclusion proof does not lead to the tree head's root")
        if leaf["kind"] != 1 or leaf["session"] != sid:
            add("ledger", None, "the leaf is not this session's sealed leaf")
        elif c.records:
            if c.records[0].ts != leaf["started_ns"]:
                c.finding = ("back_dated", 0, "seq 0 at %d, the leaf says %d" % (c.records[0].ts, leaf["started_ns"]))
            elif c.finding is None:
                if c.last.seq < leaf["final_seq"]:
                    c.fail("truncated", c.last.seq + 1, "chain ends before the seal at %d" % leaf["final_seq"])
                elif c.records[leaf["final_seq"]].hash != leaf["final_hash"] or c.records[leaf["final_seq"]].kind != 65:
                    c.fail("replaced", leaf["final_seq"], "the leaf names another seal")
                else:
                    sealed_ok = True
    sealed = c.finding is None and c.sealed and sealed_ok
    if c.finding is None and sealed_ok:
        start = c.records[0].decode()
        end = next((r for r in c.records if r.kind == 2), None)
        seal = c.records[leaf["final_seq"]]
        if start["agent"] != leaf["agent"] or start["target"] != leaf["target"] or end is None or end.decode()["outcome"] != leaf["outcome"] or seal.ts != leaf["ended_ns"]:
            c.fail("metadata", 0, "the leaf's fields differ from the records")
    if c.finding is None and c.records:
        diff = meta_diff(man.get("meta", {}), c.records, frames_len(c.records), man) + (["format"] if bad_format else [])
        if diff:
            c.fail("metadata", 0, "meta differs from the records: %s" % ", ".join(diff))

    if frames_differ:
        if c.finding is not None:
            c.finding = (c.finding[0], c.finding[1], c.finding[2] + "; frames/frames_sha256 differ from the manifest")
        else:
            c.fail("edited", None, "frames or frames_sha256 differ from the manifest")
    tails = []
    if c.finding is not None:
        kind, seq, detail = c.finding
        problems.insert(0, {"session": man["session"], "seq": seq, "kind": kind, "detail": detail})
        if kind == "truncated":
            t = unsigned_tail(_without_finding(c))
            if t:
                tails.append(t)
    else:
        t = unsigned_tail(c)
        if t:
            tails.append(t)
    for sc in scs:
        if sc[2] is not None:
            problems.append({"session": man["session"], "seq": sc[0], "kind": sc[2][0], "detail": sc[2][1]})
    report = {
        "session": man["session"],
        "records": len(records),
        "sealed": sealed,
        "key_source": key_source,
        "tree_size": head["size"],
        "problems": problems,
        "unsigned_tails": tails,
        "notes": notes,
    }
    return report, man, head


class _without_finding:
    def __init__(self, c):
        self.__dict__.update(c.__dict__)
        self.finding = None

    last = property(lambda self: self.records[-1] if self.records else None)


def frames_len(records):
    return sum(r.frame_len for r in records)


def _store_checkpoint(item, sid, pub, kid):
    """(seq, hash, problem) from the manifest's store checkpoint, or None. Its problem is
    reported apart from the chain's finding; a record with a problem signs nothing."""
    try:
        raw = bytes.fromhex(item)
        ln, crc = struct.unpack(">II", raw[:8])
        if ln != len(raw) - 8 or crc32(raw[8:]) != crc:
            raise DecodeError("bad frame")
        rec = parse_record(raw[8:])
        if rec.kind != 67 or rec.session != JOURNAL:
            raise DecodeError("not a store checkpoint of the journal")
        body = rec.decode()
    except (DecodeError, ValueError, struct.error) as e:
        return (None, None, ("edited", "store checkpoint: %s" % e))
    mine = [(x[1], x[2]) for x in body["chains"] if x[0] == sid]
    if not mine:
        return (None, None, ("edited", "store checkpoint does not list the session"))
    seq, h = mine[0]
    if body["key_id"] != kid or not crypto.verify_strict(pub, STORE_CP_CONTEXT + body["signed_part"], body["sig"]):
        return (seq, h, ("bad_signature", "store checkpoint signature does not verify"))
    return (seq, h, None)


def meta_diff(meta, recs, nbytes, man):
    start = recs[0].decode() if recs[0].kind == 1 else {}
    want = {k: start.get(k) for k in ("agent", "target", "protocol", "login", "privilege", "client_addr", "grant")}
    want["started_ns"] = recs[0].ts
    end = next((r for r in recs if r.kind == 2), None)
    if end is not None:
        e = end.decode()
        want.update(outcome=e["outcome"], end_reason=e["reason"], ended_ns=end.ts)
    ret = next((r for r in reversed(recs) if r.kind == 26), None)
    if ret is not None:
        b = ret.decode()
        want.update(online_until_ns=b["online_until_ns"], retain_until_ns=b["retain_until_ns"])
    else:
        want.update(online_until_ns=None, retain_until_ns=None)
    creds = []
    for r in recs:
        if r.kind == 23:
            b = r.decode()
            creds.append({"kind": b["kind"], "name": b["name"], "valid_before_ns": b["valid_before_ns"], "revoked": False})
        elif r.kind == 24:
            name = r.decode()["name"]
            for c in creds:
                if c["name"] == name:
                    c["revoked"] = True
    want["credentials"] = creds
    last = recs[-1]
    verdicts = [r.decode() for r in recs if r.kind == 19]
    want.update(
        sealed=any(r.kind == 65 for r in recs),
        last_seq=last.seq,
        last_hash=last.hash.hex(),
        last_ts_ns=last.ts,
        events=len(recs),
        record_bytes=nbytes,
        statements=sum(1 for r in recs if external.kind_of(r) == 15),
        commands=sum(1 for r in recs if external.kind_of(r) in (9, 10)),
        holds=sum(1 for v in verdicts if v["verdict"] == "hold"),
        denies=sum(1 for v in verdicts if v["verdict"] == "deny"),
        alerts=sum(1 for r in recs if external.kind_of(r) == 21),
    )
    out = [k for k, v in want.items() if meta.get(k) != v]
    if meta.get("ledger_index") != man.get("leaf_index"):
        out.append("ledger_index")
    if meta.get("id") not in (None, man.get("session")):
        out.append("id")
    return out
