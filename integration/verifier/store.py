"""Verification of a whole store (FORMAT.md "Segments", "Ledger", "What a verifier checks")."""

import os
import re
import struct

import crypto
import external
from chains import Chains, unsigned_tail
from codec import JOURNAL, ZERO32, DecodeError, Reader, crc32, decode_leaf, decode_tree_head, read_frames, tree_head_message, uuid_text

SEG_RE = re.compile(r"^(\d{16})\.log$")


class Report:
    def __init__(self):
        self.problems = []
        self.notes = []

    def add(self, kind, session, seq, detail):
        self.problems.append({"session": uuid_text(session) if session is not None else None, "seq": seq, "kind": kind, "detail": detail})


def read_segments(root, rep, live=False):
    """All records in log order, plus segment facts."""
    segdir = os.path.join(root, "segments")
    names = sorted(os.listdir(segdir)) if os.path.isdir(segdir) else []
    nums = []
    for n in names:
        m = SEG_RE.match(n)
        if not m:
            rep.notes.append("not a segment file: %s" % n)
            continue
        nums.append((int(m.group(1)), n))
    nums.sort()
    for i, (num, _) in enumerate(nums):
        if num != i + 1:
            rep.add("segment_missing", None, None, "segment %d is missing (next file is %d)" % (i + 1, num))
            break
    records, damaged, total_bytes = [], [], 0
    for idx, (num, name) in enumerate(nums):
        data = open(os.path.join(segdir, name), "rb").read()
        total_bytes += len(data)
        last = idx == len(nums) - 1
        if len(data) < 16:
            rep.add("damaged", None, None, "segment %d: shorter than its header (%d bytes)" % (num, len(data)))
            continue
        if data[:8] != b"PRCTLOG1" or struct.unpack(">Q", data[8:16])[0] != num:
            rep.add("segment_missing", None, None, "segment %d: header does not name it" % num)
            if data[:8] != b"PRCTLOG1":
                continue
        for item in read_frames(data, 16, last):
            if item[0] == "record":
                rec = item[1]
                rec.where = (num, item[2])
                records.append(rec)
                continue
            _, kind, detail, off, header = item
            if kind == "torn" and last:
                if not live:
                    rep.notes.append("torn tail in segment %d at offset %d: %s (never acknowledged)" % (num, off, detail))
            else:
                damaged.append((num, off, detail, header))
    return records, damaged, len(nums), total_bytes


def read_ledger(root, rep, pubkey, key_id):
    """Leaves, the valid tree heads, and the ledger findings."""
    path = os.path.join(root, "ledger", "ledger.log")
    leaves, heads, found = [], [], []
    if not os.path.exists(path):
        rep.add("ledger", None, None, "no ledger")
        return leaves, heads, None, 0, []
    data = open(path, "rb").read()
    if data[:16] != b"PRCTLDG1" + b"\x00" * 8:
        rep.add("ledger", None, None, "bad ledger header")
        return leaves, heads, None, 0, []
    pos = 16
    roots = crypto.Roots()
    last_head_ts = None
    last_head = None
    all_heads = []
    n_heads = 0
    last_logged = None
    first = {}

    def problem(what, detail):
        # Later consequences of one change are not repeated; but each tree head's own key,
        # signature and time are checked on their own (FORMAT.md, "What a verifier checks").
        if what not in first or what in ("head-sig", "head-ts"):
            first[what] = True
            rep.add("ledger", None, None, detail)

    while pos < len(data):
        if len(data) - pos < 8:
            rep.notes.append("ledger: torn final entry")
            break
        ln, crc = struct.unpack(">II", data[pos : pos + 8])
        if ln < 1 or ln > 1 << 20:
            problem("entry", "ledger entry at %d: bad length" % pos)
            break
        if pos + 8 + ln > len(data):
            rep.notes.append("ledger: torn final entry")
            break
        entry = data[pos + 8 : pos + 8 + ln]
        if crc32(entry) != crc:
            problem("entry", "ledger entry at %d fails its CRC" % pos)
            break
        pos += 8 + ln
        try:
            r = Reader(entry)
            t = r.u8()
            if t == 1:
                index = r.u64()
                leaf_data = r.data[r.pos :]
                leaf = decode_leaf(leaf_data)
                leaf["data"] = leaf_data
                if index != len(leaves):
                    problem("index", "leaf numbered %d at position %d" % (index, len(leaves)))
                if last_logged is not None and leaf["logged_ns"] < last_logged:
                    problem("logged", "leaf %d logged before the one before it" % len(leaves))
                last_logged = leaf["logged_ns"]
                leaves.append(leaf)
                roots.push(crypto.leaf_hash(leaf_data))
            elif t == 2:
                head = decode_tree_head(r)
                r.end()
                last_head = head
                all_heads.append((head["size"], head["ts_ns"]))
                n_heads += 1
                ok = True
                if head["size"] != len(leaves) or head["root"] != roots.root():
                    problem("head", "tree head of size %d does not match the leaves before it" % head["size"])
                    ok = False
                if head["key_id"] != key_id or not crypto.verify_strict(pubkey, tree_head_message(head["size"], head["root"], head["ts_ns"]), head["signature"]):
                    problem("head-sig", "tree head of size %d: bad signature" % head["size"])
                    ok = False
                if last_head_ts is not None and head["ts_ns"] < last_head_ts:
                    # Its own finding; the head still covers its leaves (its root and signature
                    # check), so no second *uncovered* finding follows from it.
                    problem("head-ts", "tree head of size %d goes back in time" % head["size"])
                if ok:
                    heads.append(head)
                last_head_ts = head["ts_ns"]
            else:
                problem("entry", "unknown ledger entry type %d" % t)
                break
        except DecodeError as e:
            problem("entry", "ledger entry: %s" % e)
            break
    covered = heads[-1]["size"] if heads else 0
    if covered < len(leaves) and "head" not in first:
        problem("uncovered", "leaves from %d are covered by no valid tree head" % covered)
    return leaves, heads, last_head, n_heads, all_heads


def is_live(root):
    """A running proctor holds an exclusive flock on LOCK: the store is being written."""
    import fcntl

    try:
        fd = os.open(os.path.join(root, "LOCK"), os.O_WRONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def verify_store(root, pubkey, known_heads=()):
    rep = Report()
    live = is_live(root)
    kid = crypto.key_id(pubkey)
    records, damaged, nsegs, nbytes = read_segments(root, rep, live)
    present = {r.session for r in records}

    positions = {}
    for i, r in enumerate(records):
        positions.setdefault(r.session, []).append((i, r.seq))

    def later_seqs(session, pos):
        return {s for i, s in positions.get(session, []) if i > pos}

    chains = Chains(pubkey, kid, later_seqs)
    chains.present = present
    for num, off, detail, header in damaged:
        if header is not None and header[0] in present:
            chains.get(header[0]).fail("edited", header[1], "segment %d offset %d: %s" % (num, off, detail))
        else:
            rep.add("damaged", None, None, "segment %d offset %d: %s" % (num, off, detail))
    chains.run(records)
    external.check_store(root, chains, records)

    leaves, heads, last_head, n_heads, all_heads = read_ledger(root, rep, pubkey, kid)
    # FORMAT.md "Versions": records of kinds 66/67 exist only from version 2 on, so a ledger
    # without its format leaf beside them lost leaves (unless a ledger finding says so already).
    later = next((r for r in records if r.kind in (66, 67)), None)
    has_format = any(l["kind"] == 5 and l["final_seq"] >= 2 for l in leaves)
    if later is not None and not has_format and not any(p["kind"] == "ledger" for p in rep.problems):
        rep.add("ledger", None, None, "no format leaf, yet %s seq %d is of kind %d" % (uuid_text(later.session), later.seq, later.kind))
    cross_check(chains, leaves, present, records, live)

    sessions = [c for s, c in chains.chains.items() if s != JOURNAL and c.count]
    counts = {"sessions": len(sessions), "sealed": 0, "open": 0, "tampered": 0}
    tails = []
    for s in sorted(chains.chains):
        c = chains.chains[s]
        if c.finding is not None:
            kind, seq, detail = c.finding
            rep.add(kind, s, seq, detail)
            if s != JOURNAL and c.count:
                counts["tampered"] += 1
            continue
        if s != JOURNAL:
            counts["sealed" if c.sealed else "open"] += 1
        t = unsigned_tail(c)
        if t and live and not t["sealed_by_recovery"]:
            t = None  # a chain being written is signed within the checkpoint interval
        if t:
            tails.append(t)
    for c in getattr(chains, "ledger_only", []):
        rep.add(*c)

    chains.good_known_heads = [kh for kh in known_heads if check_known_head(kh, leaves, pubkey, kid, rep)]

    report = {
        **counts,
        "records": len(records),
        "bytes": nbytes,
        "segments": nsegs,
        "ledger_leaves": len(leaves),
        "tree_heads": n_heads,
        "problems": rep.problems,
        "unsigned_tails": tails,
        "notes": rep.notes,
    }
    return report, leaves, heads, last_head, all_heads, chains


def check_known_head(kh, leaves, pubkey, kid, rep):
    if kh["key_id"] != kid or not crypto.verify_strict(pubkey, tree_head_message(kh["size"], kh["root"], kh["ts_ns"]), kh["signature"]):
        rep.add("bad_signature", None, None, "known head: bad signature")
        return False
    if len(leaves) < kh["size"]:
        rep.add("rolled_back", None, None, "ledger has %d leaves, the known head %d" % (len(leaves), kh["size"]))
        return False
    if crypto.root_of([crypto.leaf_hash(l["data"]) for l in leaves[: kh["size"]]]) != kh["root"]:
        rep.add("rolled_back", None, None, "the first %d leaves do not have the known head's root" % kh["size"])
        return False
    return True


def cross_check(chains, leaves, present, records, live):
    """FORMAT.md "What a verifier checks", 4."""
    fmt_at = next((i for i, l in enumerate(leaves) if l["kind"] == 5), None)
    gone = {l["session"] for l in leaves if l["kind"] in (2, 3)}
    sealed_leaf, opened_leaf = {}, {}
    extra = []
    import time

    def recent(ts):  # a live store may lag its leaves by one commit: 10 s of grace
        return live and time.time_ns() - ts < 10 * 10**9

    for i, l in enumerate(leaves):
        s = l["session"]
        if l["kind"] == 1:
            if s in sealed_leaf:
                extra.append(("ledger", None, None, "second sealed leaf for %s" % uuid_text(s)))
            sealed_leaf[s] = i
        elif l["kind"] == 4:
            if s in opened_leaf:
                extra.append(("ledger", None, None, "second opened leaf for %s" % uuid_text(s)))
            opened_leaf[s] = i
    for s, i in sealed_leaf.items():
        l = leaves[i]
        if s not in present:
            if s not in gone:
                chains.get(s).fail("session_missing", 0, "sealed leaf %d names a session absent from the store" % i)
            continue
        c = chains.chains[s]
        _start_checks(c, l)
        if c.finding is not None:
            continue
        if c.last.seq < l["final_seq"]:
            c.fail("truncated", c.last.seq + 1, "chain ends before the seal at %d" % l["final_seq"])
            continue
        rec = c.records[l["final_seq"]]
        if rec.hash != l["final_hash"] or rec.kind != 65:
            c.fail("replaced", l["final_seq"], "the sealed leaf names another seal")
            continue
        end = next((r for r in c.records if r.kind == 2), None)
        start = c.records[0].decode()
        if start["agent"] != l["agent"] or start["target"] != l["target"] or end is None or end.decode()["outcome"] != l["outcome"] or rec.ts != l["ended_ns"]:
            c.fail("metadata", 0, "sealed leaf fields differ from the records")
    for s, i in opened_leaf.items():
        l = leaves[i]
        if s not in present:
            if s not in gone and s not in sealed_leaf:
                chains.get(s).fail("session_missing", 0, "opened leaf %d names a session absent from the store" % i)
            continue
        c = chains.chains[s]
        _start_checks(c, l)
        if c.finding is None and c.records and c.records[0].hash != l["final_hash"]:
            c.fail("replaced", 0, "opened leaf names another session_start")
        if c.finding is None and c.records:
            start = c.records[0].decode()
            if start["agent"] != l["agent"] or start["target"] != l["target"]:
                c.fail("metadata", 0, "opened leaf fields differ from the session_start")
    for s, c in chains.chains.items():
        if s == JOURNAL:
            continue
        if c.finding is None and c.sealed and s not in sealed_leaf and not recent(c.last.ts):
            c.fail("not_in_ledger", c.last.seq, "sealed session without a sealed leaf")
        if fmt_at is not None and s not in opened_leaf and c.records:
            # One finding per session, the one at the lowest seq (FORMAT.md, "What a verifier
            # checks"): a session the ledger never opened is named at seq 0 even when its chain
            # also breaks later (a foreign or renamed session), or its sealed leaf is missing
            # too (the ledger cut back past both: found by damage4's ledger cuts).
            if not (s in sealed_leaf and sealed_leaf[s] < fmt_at) and not recent(c.records[0].ts):
                if c.finding is None or c.finding[1] > 0:
                    c.finding = ("not_in_ledger", 0, "session without an opened leaf")
    anchors = [l for l in leaves if l["kind"] == 6]
    if anchors:
        j = chains.chains.get(JOURNAL)
        if j is None or not j.count:
            chains.get(JOURNAL).fail("session_missing", 0, "the store journal is gone")
        elif j.finding is None:
            for l in anchors:
                if j.last.seq < l["final_seq"]:
                    j.fail("truncated", j.last.seq + 1, "journal ends before its anchored checkpoint %d" % l["final_seq"])
                    break
                rec = j.records[l["final_seq"]]
                if rec.hash != l["final_hash"] or rec.kind != 64:
                    j.fail("replaced", l["final_seq"], "journal checkpoint differs from its anchor")
                    break
    chains.ledger_only = extra


def _start_checks(c, l):
    """back_dated takes precedence over every other finding of the session."""
    if not c.records and c.finding is None:
        return
    first = c.records[0] if c.records else None
    if first is not None and first.seq == 0 and first.ts != l["started_ns"]:
        c.finding = ("back_dated", 0, "seq 0 at %d, the ledger says %d" % (first.ts, l["started_ns"]))
