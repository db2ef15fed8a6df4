"""Byte layouts of src/recorder/FORMAT.md: body primitives, frames, records, ledger entries.

Written from FORMAT.md alone (no look at the Rust recorder), as an outside verifier would.
"""

import hashlib
import struct
import zlib

import external

MAX_FRAME = 64 * 1024 * 1024
MIN_RECORD = 66
ZERO32 = b"\x00" * 32
JOURNAL = b"\x00" * 16


class DecodeError(Exception):
    pass


class Reader:
    """Cursor over a body; every read checks the bounds (the bytes are untrusted)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise DecodeError("body ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def bool(self):
        v = self.u8()
        if v > 1:
            raise DecodeError("bool is not 0 or 1")
        return v == 1

    def bytes(self):
        return self.take(self.u32())

    def str(self):
        try:
            return self.bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError("str is not UTF-8") from e

    def h32(self):
        return self.take(32)

    def opt(self, f):
        tag = self.u8()
        if tag == 0:
            return None
        if tag != 1:
            raise DecodeError("opt tag is not 0 or 1")
        return f()

    def list(self, f):
        n = self.u32()
        # Each item takes at least one byte: a count past the rest is damage, not a loop.
        if n > len(self.data) - self.pos:
            raise DecodeError("list count past the body")
        return [f() for _ in range(n)]

    def end(self):
        if self.pos != len(self.data):
            raise DecodeError("trailing bytes in body")


def _strs(n):
    return lambda r: [r.str() for _ in range(n)]


def _param(r):
    return (r.bool(), r.opt(r.bytes))


def _err(r):
    return (r.str(), r.str(), r.str())


def _signed(r):
    covered_seq = r.u64()
    covered_hash = r.h32()
    key_id = r.h32()
    sig = _sig(r)
    return {"covered_seq": covered_seq, "covered_hash": covered_hash, "key_id": key_id, "sig": sig}


def _sig(r):
    # FORMAT.md, Signatures: the length is 64; any other makes the body malformed (*edited*).
    sig = r.bytes()
    if len(sig) != 64:
        raise DecodeError("signature length %d, not 64" % len(sig))
    return sig


def _store_checkpoint(r):
    start = r.pos
    covered_seq = r.u64()
    covered_hash = r.h32()
    previous = r.h32()
    chains = r.list(lambda: (r.take(16), r.u64(), r.h32()))
    signed_part = r.data[start : r.pos]
    key_id = r.h32()
    sig = _sig(r)
    return {
        "covered_seq": covered_seq,
        "covered_hash": covered_hash,
        "previous": previous,
        "chains": chains,
        "signed_part": signed_part,
        "key_id": key_id,
        "sig": sig,
    }


# kind -> decoder of the body (FORMAT.md "Record kinds and bodies").
BODIES = {
    1: lambda r: dict(zip(["agent", "target", "protocol", "login", "privilege", "client_addr", "grant", "proctor_version"], _strs(8)(r))),
    2: lambda r: {"outcome": r.str(), "reason": r.str()},
    3: lambda r: r.list(lambda: (r.str(), r.str())),
    4: lambda r: (r.u32(), r.str(), r.str()),
    5: lambda r: (r.u32(), r.str(), r.str(), r.bool()),
    6: lambda r: (r.u32(), r.u32(), r.u32()),
    7: lambda r: (r.u32(), r.bytes()),
    8: lambda r: (r.u32(), r.u8(), r.bytes()),
    9: lambda r: (r.u32(), r.str()),
    10: lambda r: (r.u32(), r.str()),
    11: lambda r: (r.u32(), r.u32()),
    12: lambda r: (r.u32(), r.str(), r.str()),
    13: lambda r: (r.u32(), r.u64(), r.u64(), r.h32(), r.h32()),
    14: lambda r: (r.u32(), r.str(), r.str(), r.str(), r.str(), r.u64(), r.u64(), r.opt(r.h32), r.opt(r.h32), r.str()),
    15: lambda r: (r.u64(), r.str(), r.list(lambda: _param(r)), r.str(), r.str(), r.bool(), r.str(), r.str(), r.list(r.str), r.opt(r.str)),
    16: lambda r: (r.u64(), r.str(), r.u64(), r.opt(lambda: _err(r)), r.u64(), r.list(r.str), r.list(lambda: r.list(lambda: r.opt(r.str))), r.h32(), r.bool()),
    17: lambda r: (r.u64(), r.str(), r.u64(), r.h32()),
    18: lambda r: (r.str(), r.str()),
    19: lambda r: dict(zip(["subject", "verdict", "rule", "reason", "approval_id"], _strs(5)(r))),
    20: lambda r: _strs(4)(r),
    21: lambda r: _strs(3)(r),
    22: lambda r: _strs(2)(r),
    23: lambda r: {"kind": r.str(), "name": r.str(), "serial": r.u64(), "principals": r.list(r.str), "valid_after_ns": r.i64(), "valid_before_ns": r.i64(), "detail": r.str()},
    24: lambda r: {"name": r.str(), "detail": r.str()},
    25: lambda r: _strs(2)(r),
    26: lambda r: {"online_until_ns": r.i64(), "retain_until_ns": r.i64(), "policy": r.str()},
    64: _signed,
    65: _signed,
    66: lambda r: {"unsigned_from": r.u64(), "note": r.str()},
    67: _store_checkpoint,
    68: external.decode_body,
    96: lambda r: {"topic": r.str(), "text": r.str()},
}


class Record:
    __slots__ = ("raw", "version", "kind", "session", "seq", "ts", "body", "hash", "frame_len", "where")

    def chain_hash(self, prev):
        return hashlib.sha256(prev + self.raw[:-32]).digest()

    def decode(self):
        """The body by kind; DecodeError when unknown, short or with trailing bytes."""
        f = BODIES.get(self.kind)
        if f is None:
            raise DecodeError("unknown record kind %d" % self.kind)
        r = Reader(self.body)
        out = f(r)
        r.end()
        return out


def parse_record(raw):
    if len(raw) < MIN_RECORD:
        raise DecodeError("record shorter than 66 bytes")
    rec = Record()
    rec.raw = raw
    rec.version = raw[0]
    rec.kind = raw[1]
    rec.session = raw[2:18]
    rec.seq, rec.ts = struct.unpack(">Qq", raw[18:34])
    rec.body = raw[34:-32]
    rec.hash = raw[-32:]
    rec.frame_len = len(raw) + 8
    return rec


def crc32(b):
    return zlib.crc32(b) & 0xFFFFFFFF


def read_frames(data, start, last):
    """Frames of one segment (or a bundle). Yields ('record', Record, offset) and
    ('bad', kind, detail, offset, header) where header is (session, seq) when readable.
    kind is 'torn' (crash at the end: only meaningful in the last segment) or 'damaged'.
    """
    pos = start
    n = len(data)
    while pos < n:
        rest = data[pos:]
        if rest.count(0) == len(rest):
            return  # preallocated zero tail
        if n - pos < 8:
            yield ("bad", "torn", "frame header cut by the end of the file", pos, None)
            return
        ln, crc = struct.unpack(">II", data[pos : pos + 8])
        header = None
        if n - pos - 8 >= 34:
            header = (data[pos + 10 : pos + 26], struct.unpack(">Q", data[pos + 26 : pos + 34])[0])
        if ln < MIN_RECORD or ln > MAX_FRAME:
            if _zeros_after(data, pos + 8):
                yield ("bad", "torn", "frame length %d out of range, followed only by zeros" % ln, pos, header)
                return
            # The length cannot be trusted, so neither can the header after it: the frame is
            # damaged without a name, and reading resumes at the next offset where a whole
            # frame checks (length in range, inside the file, CRC).
            yield ("bad", "damaged", "impossible record length %d" % ln, pos, None)
            nxt = _resync(data, pos + 1)
            if nxt is None:
                return
            pos = nxt
            continue
        if pos + 8 + ln > n:
            yield ("bad", "torn", "frame of %d bytes cut by the end of the file" % ln, pos, header)
            return
        raw = data[pos + 8 : pos + 8 + ln]
        if crc32(raw) != crc:
            if _zeros_after(data, pos + 8 + ln):
                yield ("bad", "torn", "frame fails its CRC, followed only by zeros", pos, header)
                return
            yield ("bad", "damaged", "frame fails its CRC", pos, header)
            pos += 8 + ln
            continue
        rec = parse_record(raw)
        yield ("record", rec, pos)
        pos += 8 + ln


def _resync(data, pos):
    n = len(data)
    while pos + 8 + MIN_RECORD <= n:
        ln, crc = struct.unpack(">II", data[pos : pos + 8])
        if MIN_RECORD <= ln <= MAX_FRAME and pos + 8 + ln <= n and crc32(data[pos + 8 : pos + 8 + ln]) == crc:
            return pos
        pos += 1
    return None


def _zeros_after(data, pos):
    rest = data[pos:]
    return rest.count(0) == len(rest)


def decode_leaf(data):
    r = Reader(data)
    leaf = {
        "kind": r.u8(),
        "session": r.take(16),
        "final_seq": r.u64(),
        "final_hash": r.h32(),
        "started_ns": r.i64(),
        "ended_ns": r.i64(),
        "agent": r.str(),
        "target": r.str(),
        "outcome": r.str(),
        "logged_ns": r.i64(),
        "note": r.str(),
    }
    r.end()
    return leaf


def decode_tree_head(r):
    head = {"size": r.u64(), "root": r.h32(), "ts_ns": r.i64(), "key_id": r.h32()}
    sig = r.bytes()
    head["signature"] = sig
    return head


def tree_head_message(size, root, ts_ns):
    return b"proctor tree head v1\x00" + struct.pack(">Q", size) + root + struct.pack(">q", ts_ns)


def tree_head_entry_bytes(h):
    """The 148 bytes a tree head entry stores after its type byte (the RFC 3161 imprint input)."""
    return struct.pack(">Q", h["size"]) + h["root"] + struct.pack(">q", h["ts_ns"]) + h["key_id"] + struct.pack(">I", len(h["signature"])) + h["signature"]


def head_from_json(o):
    return {
        "size": int(o["size"]),
        "root": bytes.fromhex(o["root"]),
        "ts_ns": int(o["ts_ns"]),
        "key_id": bytes.fromhex(o["key_id"]),
        "signature": bytes.fromhex(o["signature"]),
    }


def uuid_text(b):
    h = b.hex()
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
