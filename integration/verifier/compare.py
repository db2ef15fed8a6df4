#!/usr/bin/env python3
"""Runs `proctor verify --json` and verify.py on the same evidence and compares the facts.

    compare.py PROCTOR_BIN [verify options...] (STORE_DIR | --bundle FILE)

The facts are those FORMAT.md's test vectors keep: verdict, counts, each problem's kind, session
and seq, the unsigned tails, and the timestamp summary. Prints both and exits 1 on a difference.
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree (tests run it)

import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def facts(out):
    rep = out.get("report", out)
    f = {
        "verdict": out.get("verdict"),
        "bundle_sealed": out.get("sealed") if "report" not in out else None,
        "problems": sorted(((p["kind"], p.get("session"), p.get("seq")) for p in rep.get("problems", [])), key=str),
        "unsigned_tails": sorted(json.dumps(t, sort_keys=True) for t in rep.get("unsigned_tails", [])),
    }
    for k in ("sessions", "sealed", "open", "tampered", "records", "ledger_leaves", "tree_heads", "segments"):
        if k in rep:
            f[k] = rep[k]
    an = out.get("anchoring")
    if an and "leaf_index" in an:  # a bundle's
        f["anchoring"] = {
            "bundle": [an["leaf_index"], an["tree_size"], an["anchored_whole"], len(an["notes"])],
            "sources": sorted((s["kind"], s["tree_size"]) for s in an["sources"]),
            "session": an["session"],
        }
    elif an:
        f["anchoring"] = {
            "leaves": [an["anchored_leaves"], an["ledger_leaves"], an["sessions_anchored_whole"]],
            "sources": sorted((s["kind"], s["tree_size"]) for s in an["sources"]),
            "chains": sorted(json.dumps(g, sort_keys=True) for g in ([an["journal"]] if an["journal"] else []) + an["sessions"]),
            "nothing_anchored": an.get("nothing_anchored"),
        }
    ts = out.get("timestamps")
    if ts:
        nt = ts.get("not_timestamped")
        f["timestamps"] = {
            "tokens": sorted(t["tree_size"] for t in ts.get("tokens", [])),
            "problems": len(ts.get("problems", [])),
            "since": nt and [nt.get(k) for k in ("since_size", "newest_size", "first_ts_ns", "newest_ts_ns")],
        }
    return f


def main(argv):
    binary, args = argv[0], argv[1:]
    ref_args = list(args)
    if "--bundle" not in args:
        ref_args = args[:-1] + ["--data", args[-1]]
    ref = subprocess.run([binary, "verify", "--json"] + ref_args, capture_output=True, text=True)
    mine = subprocess.run([sys.executable, os.path.join(HERE, "verify.py")] + args, capture_output=True, text=True)
    try:
        a = facts(json.loads(ref.stdout))
    except ValueError:
        a = {"error": True}  # no report (exit 2 or a crash): the exit status tells which
    try:
        b = facts(json.loads(mine.stdout))
    except ValueError:
        b = {"error": True}
    a["exit"], b["exit"] = ref.returncode, mine.returncode
    same = a == b
    print("proctor : %s" % json.dumps(a, sort_keys=True))
    print("outside : %s" % json.dumps(b, sort_keys=True))
    for name, r in (("proctor", ref), ("outside", mine)):
        if "error" in (a if name == "proctor" else b):
            print("%s said: %s" % (name, (r.stdout + r.stderr)[-300:].strip()))
    print("AGREE" if same else "DISAGREE")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
