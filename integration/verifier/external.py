"""External bodies (src/recorder/FORMAT.md, "External bodies"), from FORMAT.md alone.

A kind-68 record stands for a record of another kind whose body is stored out of line: in a
store as blobs/SESSION/SHA256, in a bundle in the manifest's `external_bodies`. The chain covers
the kind-68 record (kind, size, SHA-256); the blob must be there, of that size and SHA-256, and
decode as a body of that kind.
"""

import base64
import binascii
import hashlib
import os
import stat

EXTERNAL = 68
# 3..25 except verdict (19), credential_issued (23), credential_revoked (24).
ALLOWED = set(range(3, 26)) - {19, 23, 24}


def decode_body(r):
    """The kind-68 body: {"kind", "size", "sha256"}; DecodeError (from the reader) when short."""
    kind = r.u8()
    size = r.u64()
    sha = r.h32()
    if kind not in ALLOWED:
        from codec import DecodeError

        raise DecodeError("external record names kind %d" % kind)
    return {"kind": kind, "size": size, "sha256": sha}


def kind_of(rec):
    """The kind a record counts as in derived metadata: the one a kind-68 record names."""
    if rec.kind == EXTERNAL and len(rec.body) >= 1 and rec.body[0] in ALLOWED:
        return rec.body[0]
    return rec.kind


def _check(rec, blob):
    """(kind, detail) of the finding for this record's blob bytes (None: absent), or None."""
    from codec import BODIES, DecodeError, Reader

    try:
        ext = rec.decode()
    except Exception:
        return None  # a malformed kind-68 body is the chain's finding
    what = "the external body (kind %d, %d bytes, SHA-256 %s)" % (ext["kind"], ext["size"], ext["sha256"].hex())
    if blob is None:
        return ("missing", what + " is missing")
    if len(blob) < ext["size"]:
        return ("truncated", what + " is cut short (%d bytes)" % len(blob))
    if len(blob) > ext["size"] or hashlib.sha256(blob).digest() != ext["sha256"]:
        return ("edited", what + " was changed")
    try:
        r = Reader(blob)
        BODIES[ext["kind"]](r)
        r.end()
    except (DecodeError, KeyError, ValueError) as e:
        return ("edited", what + " is malformed: %s" % e)
    return None


def _apply(chain, rec, finding):
    # The earliest finding of a session is the one reported (FORMAT.md, "What a verifier checks").
    if finding is None:
        return
    old = chain.finding
    if old is None or (old[0] != "back_dated" and old[1] is not None and old[1] > rec.seq):
        chain.finding = (finding[0], rec.seq, finding[1])


def _store_blob(root, rec):
    try:
        ext = rec.decode()
    except Exception:
        return None
    sid = rec.session.hex()
    uid = "%s-%s-%s-%s-%s" % (sid[:8], sid[8:12], sid[12:16], sid[16:20], sid[20:])
    path = os.path.join(root, "blobs", uid, ext["sha256"].hex())
    # FORMAT.md: a regular file in real directories; a link is not followed and a FIFO or
    # device is not opened: either is a file that cannot be read (*missing*).
    for p, want_dir in ((os.path.join(root, "blobs"), True), (os.path.join(root, "blobs", uid), True), (path, False)):
        try:
            m = os.lstat(p).st_mode
        except OSError:
            return None
        if not (stat.S_ISDIR(m) if want_dir else stat.S_ISREG(m)):
            return None
    try:
        with open(path, "rb") as f:
            return f.read(ext["size"] + 1)
    except OSError:
        return None


def check_store(root, chains, records):
    """Checks the blob of every kind-68 record of a chain read from the store."""
    for rec in records:
        if rec.kind != EXTERNAL or rec.session not in chains.chains:
            continue
        _apply(chains.chains[rec.session], rec, _check(rec, _store_blob(root, rec)))


def check_bundle(man, chain, records):
    """Checks the blob of every kind-68 record of a bundle against `external_bodies`."""
    listed = {}
    for e in man.get("external_bodies") or []:
        listed.setdefault(e.get("sha256"), e.get("base64"))
    for rec in records:
        if rec.kind != EXTERNAL:
            continue
        try:
            name = rec.decode()["sha256"].hex()
        except Exception:
            continue
        blob = None
        if name in listed:
            try:
                blob = base64.b64decode(listed[name] or "", validate=True)
            except (binascii.Error, ValueError):
                _apply(chain, rec, ("edited", "the external body %s: its base64 does not decode" % name))
                continue
        _apply(chain, rec, _check(rec, blob))
