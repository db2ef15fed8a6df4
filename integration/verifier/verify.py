#!/usr/bin/env python3
"""An outside verifier of proctor evidence, written from src/recorder/FORMAT.md alone.

    verify.py STORE_DIR [--pubkey FILE] [--tsa-cert PEM]... [--known-head FILE]...
    verify.py --bundle FILE [--pubkey FILE] [--tsa-cert PEM]...

Prints JSON comparable to `proctor verify --json`: {"ok", "verdict", "key", "report",
"timestamps"}. Exit 0 when intact and signed, 3 with unsigned tails only, 1 on any problem.
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree (tests run it)

import argparse
import base64
import glob
import json
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import crypto  # noqa: E402
from codec import head_from_json, tree_head_entry_bytes, tree_head_message  # noqa: E402


def check_attestation(att, pub, kid, in_ledger, trusted):
    """FORMAT.md "Attestations" checks 1-5 for one object; returns (facts, None) or (None, why)."""
    import hashlib

    import tsa

    head = head_from_json(att["tree_head"])
    if head["key_id"] != kid or not crypto.verify_strict(pub, tree_head_message(head["size"], head["root"], head["ts_ns"]), head["signature"]):
        return None, "tree head signature does not verify"
    if not in_ledger(head, att):
        return None, "the attested head is not part of the verified ledger"
    imprint = hashlib.sha256(tree_head_entry_bytes(head)).digest()
    try:
        facts = tsa.check_token(base64.b64decode(att["token"]), imprint, trusted)
    except (tsa.TokenError, ValueError, IndexError, TypeError) as e:
        return None, str(e) or type(e).__name__
    facts.update(issuer=att.get("issuer"), tree_size=head["size"], tree_head_ts_ns=head["ts_ns"])
    return facts, None


def timestamps(atts, pub, kid, in_ledger, trusted, newest_size, newest_ts, head_ts):
    """head_ts: (size, ts_ns) of every tree head known, oldest first (for first_ts_ns)."""
    out = {"tokens": [], "problems": [], "not_timestamped": None, "notes": []}
    for att in atts:
        # The attestation's `format` is not authenticated and proctor does not act on it
        # (FORMAT.md, Attestations): the type decides.
        if att.get("type") != "rfc3161":
            out["notes"].append("attestation of type %r not checked" % att.get("type"))
            continue
        facts, why = check_attestation(att, pub, kid, in_ledger, trusted)
        if why:
            size = att.get("tree_head", {}).get("size")
            out["problems"].append({"kind": "timestamp", "tree_size": size, "issuer": att.get("issuer"), "detail": why})
        else:
            out["tokens"].append(facts)
    best = max((t["tree_size"] for t in out["tokens"]), default=0)
    if newest_size is not None and best < newest_size:
        first = next((t for size, t in head_ts if size > best), newest_ts)
        out["not_timestamped"] = {"since_size": best, "newest_size": newest_size, "first_ts_ns": first, "newest_ts_ns": newest_ts}
    return out


def archived_leaves(data):
    """(index, session, path, sha256) of every archived leaf (kind 2) of a store's ledger."""
    import struct

    from codec import DecodeError, decode_leaf, uuid_text

    buf = open(os.path.join(data, "ledger", "ledger.log"), "rb").read()
    pos, index, out = 16, 0, []
    while pos + 8 <= len(buf):
        ln = struct.unpack(">I", buf[pos : pos + 4])[0]
        entry = buf[pos + 8 : pos + 8 + ln]
        pos += 8 + ln
        if not entry or entry[0] != 1:
            continue
        try:
            leaf = decode_leaf(entry[9:])
        except DecodeError:
            continue
        index += 1
        note = leaf["note"]
        if leaf["kind"] == 2 and note.startswith("archived to ") and " (sha256 " in note and note.endswith(")"):
            path, sha = note[len("archived to ") : -1].rsplit(" (sha256 ", 1)
            out.append((index - 1, uuid_text(leaf["session"]), path, sha.lower()))
    return out


def verify_archive(d, pinned, store_dir=None):
    """FORMAT.md "Archives": every manifest entry's file digest, gzip, and bundle; with the
    store, that every session its ledger archived into d is there, unchanged and listed."""
    import gzip
    import hashlib
    import tempfile

    import bundle

    out = {"manifests": 0, "sessions": 0, "problems": [], "ledger_checked": store_dir is not None}
    listed = set()
    for mp in sorted(glob.glob(os.path.join(d, "MANIFEST-*.json"))):
        out["manifests"] += 1
        m = json.load(open(mp))
        listed.update(e["session"] for e in m["sessions"])
        key = pinned or crypto.load_pubkey(m["public_key_pem"])
        for e in m["sessions"]:
            out["sessions"] += 1
            try:
                data = open(os.path.join(d, e["file"]), "rb").read()
            except OSError as err:
                out["problems"].append("session %s: %s unreadable: %s" % (e["session"], e["file"], err))
                continue
            if hashlib.sha256(data).hexdigest() != e["sha256"]:
                out["problems"].append("session %s: %s does not match the manifest's SHA-256" % (e["session"], e["file"]))
                continue
            try:
                raw = gzip.decompress(data)
            except (OSError, EOFError) as err:
                out["problems"].append("session %s: not valid gzip: %s" % (e["session"], err))
                continue
            with tempfile.NamedTemporaryFile() as t:
                t.write(raw)
                t.flush()
                rep, _, _ = bundle.verify_bundle(t.name, key)
            if rep["problems"]:
                out["problems"].append("session %s: %s" % (e["session"], rep["problems"][0]["detail"]))
    if not out["manifests"]:
        out["problems"].append("%s: no MANIFEST-*.json" % d)
    if store_dir is not None:
        here = os.path.realpath(d)
        for index, session, path, sha in archived_leaves(store_dir):
            if os.path.realpath(os.path.dirname(path)) != here and session not in listed:
                continue  # archived elsewhere
            f = os.path.join(d, os.path.basename(path))
            if not os.path.exists(f):
                what = "is missing"
            elif hashlib.sha256(open(f, "rb").read()).hexdigest() != sha:
                what = "differs from the SHA-256 the ledger recorded"
            elif session not in listed:
                what = "is listed by no manifest"
            else:
                continue
            out["problems"].append("session %s: the ledger (leaf %d) says it was archived to %s, which %s" % (session, index, os.path.basename(path), what))
    return out


def load_known_head(f):
    """A --known-head file: a head `proctor ledger head` printed (with `consistency_from` and
    `consistency_proof` when made with --from), or a bundle (its manifest's tree_head)."""
    import strictjson

    raw = open(f, "rb").read()
    if raw.startswith(b"PROCTOR-BUNDLE 1\n"):
        raw = raw.split(b"\n", 2)[1]  # a bundle: its manifest's tree_head
    try:
        # FORMAT.md "JSON": strict, or no report at all (exit 2), as proctor does.
        o = strictjson.loads(raw)
        strictjson.check(o["tree_head"] if isinstance(o, dict) and "tree_head" in o else o, strictjson.HEAD, "known head")
        head_from_json(o["tree_head"] if "tree_head" in o else o)
    except (strictjson.Invalid, ValueError) as e:
        sys.stderr.write("%s: not a tree head or bundle: %s\n" % (f, e))
        raise SystemExit(2)
    cons = None
    if isinstance(o, dict) and "consistency_from" in o and "consistency_proof" in o:
        cons = (int(o["consistency_from"]), [bytes.fromhex(h) for h in o["consistency_proof"]])
    if isinstance(o, dict) and "tree_head" in o:
        o = o["tree_head"]
    return head_from_json(o), cons


def verdict(report):
    if report["problems"]:
        return "failed"
    if report["unsigned_tails"]:
        return "unsigned_tail"
    return "ok"


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("store", nargs="?")
    ap.add_argument("--bundle")
    ap.add_argument("--archive")
    ap.add_argument("--data", help="with --archive: the store whose ledger lists what was archived")
    ap.add_argument("--pubkey")
    ap.add_argument("--tsa-cert", action="append", default=[])
    ap.add_argument("--known-head", action="append", default=[])
    a = ap.parse_args(argv)
    pinned = crypto.load_pubkey(open(a.pubkey).read()) if a.pubkey else None
    trusted = None
    if a.tsa_cert:
        import tsa

        trusted = tsa.load_certs(a.tsa_cert)

    if a.archive:
        out = verify_archive(a.archive, pinned, a.data)
        json.dump(out, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return 1 if out["problems"] else 0
    if a.bundle:
        import bundle

        try:
            report, man, head = bundle.verify_bundle(a.bundle, pinned)
        except bundle.Unreadable as e:
            sys.stderr.write("unreadable bundle: %s\n" % e)
            return 2
        pub = pinned or crypto.load_pubkey(man["public_key_pem"])
        kid = crypto.key_id(pub)
        ts = None
        if trusted is not None:

            def in_bundle(h, att):
                proof = [bytes.fromhex(x) for x in att.get("consistency_proof", [])]
                return crypto.verify_consistency(h["size"], head["size"], h["root"], head["root"], proof)

            ts = timestamps(man.get("timestamps") or [], pub, kid, in_bundle, trusted, head["size"], head["ts_ns"], [(head["size"], head["ts_ns"])])
            for p in ts["problems"]:
                report["problems"].append({"session": None, "seq": None, "kind": "timestamp", "detail": p["detail"]})
        from anchoring import bundle_anchoring, bundle_known_head

        failed = any(p["kind"] != "timestamp" for p in report["problems"])
        sources, notes = [], []
        for f in a.known_head:
            kh, cons = load_known_head(f)
            r = bundle_known_head(kh, cons, head, pub, kid)
            if r[0] == "anchor":
                sources.append(r[1])
            elif r[0] == "problem":
                report["problems"].insert(0, {"session": man["session"], "seq": None, "kind": r[1], "detail": r[2]})
            else:
                notes.append(r[1])
        sources += [{"kind": "rfc3161", "tree_size": t["tree_size"], "tree_head_ts_ns": t["tree_head_ts_ns"], "gen_time_ns": t["gen_time_ns"]} for t in (ts or {}).get("tokens", [])]
        # Like `proctor verify --bundle --json`: the bundle's report itself (FORMAT.md).
        out = dict(report)
        if ts is not None:
            out["timestamps"] = ts
        out["anchoring"] = bundle_anchoring(report, man, sources, failed)
        out["anchoring"]["notes"] = notes
    else:
        import store

        root = a.store
        key_note = "pinned key %s" % a.pubkey
        if pinned is None:
            try:
                pinned = crypto.load_pubkey(open(os.path.join(root, "keys", "recorder.pub")).read())
            except OSError as e:
                sys.stderr.write("no key to verify with: %s (pass --pubkey)\n" % e)
                return 2  # FORMAT.md: no report at all
            key_note = "the store's own keys/recorder.pub (integrity, not origin)"
        kid = crypto.key_id(pinned)
        known = [load_known_head(f)[0] for f in a.known_head]
        report, leaves, heads, newest, all_heads, chains = store.verify_store(root, pinned, known)
        import strictjson

        atts, unreadable = [], []
        for f in sorted(glob.glob(os.path.join(root, "ledger", "attestations", "*.json"))):
            if os.path.basename(f) == "status.json":
                continue
            # FORMAT.md "JSON": strict JSON of the attestation's layout, or unreadable (a
            # *timestamp* finding when tokens are checked).
            try:
                att = strictjson.loads(open(f, "rb").read())
                strictjson.check(att, ("obj", strictjson.ATTESTATION), os.path.basename(f))
                atts.append(att)
            except (OSError, strictjson.Invalid) as e:
                unreadable.append("%s: unreadable attestation: %s" % (os.path.basename(f), e))
        ts = None
        if trusted is not None:
            leaf_hashes = [crypto.leaf_hash(l["data"]) for l in leaves]

            def in_store(h, att):
                return h["size"] <= len(leaf_hashes) and crypto.root_of(leaf_hashes[: h["size"]]) == h["root"]

            ts = timestamps(atts, pinned, kid, in_store, trusted, newest and newest["size"], newest and newest["ts_ns"], all_heads)
            ts["problems"] += [{"kind": "timestamp", "tree_size": None, "issuer": None, "detail": u} for u in unreadable]
            for p in ts["problems"]:
                report["problems"].append({"session": None, "seq": None, "kind": "timestamp", "detail": p["detail"]})
        elif atts or unreadable:
            report["notes"].append("%d attestations not checked (no --tsa-cert)" % (len(atts) + len(unreadable)))
        out = {"ok": not report["problems"], "verdict": verdict(report), "key": key_note, "report": report}
        if ts is not None:
            out["timestamps"] = ts
        from anchoring import anchoring

        sources = [{"kind": "known_head", "tree_size": h["size"], "tree_head_ts_ns": h["ts_ns"], "gen_time_ns": None} for h in chains.good_known_heads]
        sources += [{"kind": "rfc3161", "tree_size": t["tree_size"], "tree_head_ts_ns": t["tree_head_ts_ns"], "gen_time_ns": t["gen_time_ns"]} for t in (ts or {}).get("tokens", [])]
        out["anchoring"] = anchoring(chains, leaves, sources)
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    v = verdict(out.get("report", out))
    return 0 if v == "ok" else 3 if v == "unsigned_tail" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
