"""Per-session chain rules (FORMAT.md "Records", "Signatures", "Store checkpoints", "Recovery").

Records are fed in log order. Each chain keeps its first finding only: later consequences of the
same change are not reported again.
"""

import struct

from codec import JOURNAL, ZERO32, DecodeError, uuid_text
from crypto import verify_strict

CONTEXT = {64: b"proctor checkpoint v1\x00", 65: b"proctor seal v1\x00"}
STORE_CP_CONTEXT = b"proctor store checkpoint v1\x00"


class Chain:
    def __init__(self, session):
        self.session = session
        self.next = 0
        self.prev = ZERO32
        self.seen = set()
        self.records = []  # records accepted in seq order (the first copy)
        self.finding = None  # (kind, seq, detail)
        self.signed_through = -1  # highest seq a valid signature covers
        self.cp_signed_through = -1  # the same, from the chain's own checkpoints only
        self.sealed = False
        self.recovered = None  # (record, its unsigned_from, own value)
        self.count = 0  # every record of the session in the log, readable frames
        self.last_sc = None  # hash of the previous kind-67 record (journal)
        self.listings = []  # (journal seq, seq, ts) where a verified store checkpoint lists it

    def fail(self, kind, seq, detail):
        if self.finding is None:
            self.finding = (kind, seq, detail)

    @property
    def last(self):
        return self.records[-1] if self.records else None


class Chains:
    def __init__(self, pubkey, key_id, later_seqs):
        """later_seqs(session, index) -> the seqs of that session after log position index."""
        self.pubkey = pubkey
        self.key_id = key_id
        self.chains = {}
        self.later_seqs = later_seqs
        self.present = set()

    def get(self, session):
        c = self.chains.get(session)
        if c is None:
            c = self.chains[session] = Chain(session)
        return c

    def feed(self, rec, pos):
        c = self.get(rec.session)
        c.count += 1
        if c.finding is not None:
            return
        if rec.seq in c.seen:
            c.fail("duplicate", rec.seq, "seq stored a second time")
            return
        if rec.seq != c.next:
            if c.next in self.later_seqs(rec.session, pos):
                c.fail("reordered", c.next, "seq %d stored before seq %d" % (rec.seq, c.next))
            else:
                c.fail("missing", c.next, "seq %d absent (next stored is %d)" % (c.next, rec.seq))
            return
        if rec.version != 1:
            c.fail("edited", rec.seq, "record version %d" % rec.version)
            return
        if rec.chain_hash(c.prev) != rec.hash:
            c.fail("edited", rec.seq, "chain hash does not recompute")
            return
        if c.sealed:
            c.fail("edited", rec.seq, "a record follows the seal")
            return
        try:
            body = rec.decode()
        except DecodeError as e:
            c.fail("edited", rec.seq, "body: %s" % e)
            return
        journal = rec.session == JOURNAL
        if journal and rec.kind not in (96, 64, 67):
            c.fail("edited", rec.seq, "kind %d in the store journal" % rec.kind)
            return
        if not journal and rec.kind in (96, 67):
            c.fail("edited", rec.seq, "journal-only kind %d in a session" % rec.kind)
            return
        if rec.seq == 0 and rec.kind != (96 if journal else 1):
            c.fail("edited", 0, "seq 0 is not the chain's start")
            return
        if rec.seq > 0 and rec.kind == 1:
            c.fail("edited", rec.seq, "session_start after seq 0")
            return
        if rec.kind in (64, 65):
            if not self._signature(c, rec, body):
                return
            if rec.kind == 65:
                if journal or c.last is None or c.last.kind != 2:
                    c.fail("edited", rec.seq, "seal not preceded by session_end")
                    return
                c.sealed = True
        elif rec.kind == 66:
            own = c.signed_through + 1
            if body["unsigned_from"] != own:
                if not self.lenient_recovered(c, body["unsigned_from"], rec.seq):
                    c.fail("edited", rec.seq, "recovered claims unsigned_from %d, the chain says %d" % (body["unsigned_from"], own))
                    return
            c.recovered = (rec, body["unsigned_from"], own)
        elif rec.kind == 67:
            if not self._store_checkpoint(c, rec, body):
                return
        c.seen.add(rec.seq)
        c.records.append(rec)
        c.prev = rec.hash
        c.next += 1

    def lenient_recovered(self, chain, claim, rec_seq):
        return False  # a store verifier has the journal: the claim must be exact

    def _signature(self, c, rec, body):
        if body["covered_seq"] != rec.seq - 1 or body["covered_hash"] != c.prev:
            c.fail("edited", rec.seq, "signature does not cover the preceding record")
            return False
        if body["key_id"] != self.key_id:
            c.fail("bad_signature", rec.seq, "signed by another key")
            return False
        msg = CONTEXT[rec.kind] + rec.session + struct.pack(">Q", body["covered_seq"]) + body["covered_hash"]
        if not verify_strict(self.pubkey, msg, body["sig"]):
            c.fail("bad_signature", rec.seq, "signature does not verify")
            return False
        c.signed_through = rec.seq
        c.cp_signed_through = rec.seq
        return True

    def _store_checkpoint(self, c, rec, body):
        if body["covered_seq"] != rec.seq - 1 or body["covered_hash"] != c.prev:
            c.fail("edited", rec.seq, "store checkpoint does not cover the preceding record")
            return False
        if body["key_id"] != self.key_id:
            c.fail("bad_signature", rec.seq, "store checkpoint signed by another key")
            return False
        if not verify_strict(self.pubkey, STORE_CP_CONTEXT + body["signed_part"], body["sig"]):
            c.fail("bad_signature", rec.seq, "store checkpoint signature does not verify")
            return False
        if body["previous"] != (c.last_sc or ZERO32):
            c.fail("edited", rec.seq, "store checkpoint does not name the previous one")
            return False
        c.last_sc = rec.hash
        c.signed_through = rec.seq
        c.cp_signed_through = rec.seq
        sessions = [s for s, _, _ in body["chains"]]
        if sessions != sorted(sessions) or len(set(sessions)) != len(sessions):
            c.fail("edited", rec.seq, "store checkpoint chains not sorted by session")
            return False
        for sess, seq, h in body["chains"]:
            if sess not in self.present or sess == JOURNAL:
                continue
            t = self.get(sess)
            self.apply_listing(t, seq, h, self._pos)
            if t.finding is None:
                t.listings.append((rec.seq, seq, t.last.ts))
        return True

    def apply_listing(self, t, seq, h, pos):
        """A store checkpoint says chain t stands at (seq, h) here."""
        if t.finding is not None:
            return
        if t.next <= seq:
            later = self.later_seqs(t.session, pos)
            if t.next in later:
                t.fail("reordered", t.next, "seq %d follows the store checkpoint that signs it" % t.next)
            elif any(s > t.next for s in later):
                t.fail("missing", t.next, "seq %d absent where a store checkpoint signs it" % t.next)
            else:
                t.fail("truncated", t.next, "chain ends before seq %d a store checkpoint signed" % seq)
        elif t.next - 1 > seq:
            t.fail("edited", seq + 1, "records stand before the store checkpoint that lists the chain at %d" % seq)
        elif t.last.hash != h:
            t.fail("edited", seq, "chain hash differs from the store checkpoint's")
        else:
            t.signed_through = max(t.signed_through, seq)

    def run(self, records):
        for i, rec in enumerate(records):
            self._pos = i
            self.feed(rec, i)


def unsigned_tail(c, store_open_is_tail=True):
    """The unsigned tail of one chain, or None (FORMAT.md "Recovery")."""
    if c.finding is not None or not c.records:
        return None
    if c.recovered is not None:
        rec, claim, own = c.recovered
        start = own
        end = rec.seq - 1
        if start > end:
            return None
        return _tail(c, start, end, True)
    if c.sealed:
        return None
    if not store_open_is_tail:
        return None
    if c.last.seq > c.signed_through:
        return _tail(c, c.signed_through + 1, c.last.seq, False)
    return None


def _tail(c, start, end, by_recovery):
    recs = [r for r in c.records if start <= r.seq <= end]
    return {
        "session": uuid_text(c.session),
        "from_seq": start,
        "to_seq": end,
        "records": len(recs),
        "first_ts_ns": recs[0].ts,
        "last_ts_ns": recs[-1].ts,
        "sealed_by_recovery": by_recovery,
    }
