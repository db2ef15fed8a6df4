#!/usr/bin/env python3
"""Runs verify.py over src/recorder/testdata (and v2/, v4/) and compares with each expected.json.

    check_vectors.py TESTDATA_DIR [--flip NAME]

Prints one line per vector (name, expected, got) and exits 1 on any disagreement. `--flip NAME`
replaces that vector's expected problems with none, to show the comparison can fail.
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree (tests run it)

import io
import json
import os
from contextlib import redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import verify  # noqa: E402


def facts(out, is_store, with_ts):
    rep = out.get("report", out)
    f = {
        "problems": sorted((p["kind"], p["session"], p["seq"]) for p in rep["problems"]),
        "unsigned_tails": sorted(json.dumps(t, sort_keys=True) for t in rep["unsigned_tails"]),
        "records": rep["records"],
    }
    if is_store:
        f["verdict"] = out["verdict"]
        for k in ("sessions", "sealed", "open", "tampered", "ledger_leaves"):
            f[k] = rep[k]
    else:
        f["sealed"] = rep["sealed"]
    if with_ts:
        ts = out.get("timestamps") or {}
        nt = ts.get("not_timestamped")
        f["timestamps"] = {
            "token_tree_sizes": sorted(t["tree_size"] for t in ts.get("tokens", [])),
            "problems": sorted(p["kind"] for p in ts.get("problems", [])),
            "not_timestamped_since": nt["since_size"] if nt else None,
        }
    return f


def expected_facts(e, is_store, with_ts):
    f = {
        "problems": sorted((p["kind"], p["session"], p["seq"]) for p in e["problems"]),
        "unsigned_tails": sorted(json.dumps(t, sort_keys=True) for t in e["unsigned_tails"]),
        "records": e["records"],
    }
    if is_store:
        for k in ("verdict", "sessions", "sealed", "open", "tampered", "ledger_leaves"):
            f[k] = e[k]
    else:
        f["sealed"] = e["sealed"]
    if with_ts:
        t = e["timestamps"]
        f["timestamps"] = {
            "token_tree_sizes": sorted(t["token_tree_sizes"]),
            "problems": sorted(t["problems"]),
            "not_timestamped_since": t["not_timestamped_since"],
        }
    return f


def run(args):
    buf = io.StringIO()
    with redirect_stdout(buf):
        verify.main(args)
    return json.loads(buf.getvalue())


def cases(td):
    for sub, with_ts in (("", True), ("v2", False), ("v4", False)):
        base = os.path.join(td, sub)
        pub = os.path.join(base, "recorder.pub")
        extra = ["--tsa-cert", os.path.join(td, "tsa", "ca.pem")] if with_ts else []
        for name in sorted(os.listdir(os.path.join(base, "stores"))):
            d = os.path.join(base, "stores", name)
            args = [d, "--pubkey", pub] + extra
            if os.path.exists(os.path.join(d, "known-head.json")):
                args += ["--known-head", os.path.join(d, "known-head.json")]
            yield (sub + "/stores/" + name).lstrip("/"), args, os.path.join(d, "expected.json"), True, with_ts
        for f in sorted(os.listdir(os.path.join(base, "bundles"))):
            if f.endswith(".bundle"):
                name = f[: -len(".bundle")]
                args = ["--bundle", os.path.join(base, "bundles", f), "--pubkey", pub] + extra
                yield (sub + "/bundles/" + name).lstrip("/"), args, os.path.join(base, "bundles", name + ".expected.json"), False, with_ts


def main(argv):
    td = argv[0]
    flip = argv[2] if len(argv) > 2 and argv[1] == "--flip" else None
    bad = 0
    for name, args, exp_path, is_store, with_ts in cases(td):
        e = json.load(open(exp_path))
        if name == flip:
            e["problems"] = []
        want = expected_facts(e, is_store, with_ts)
        try:
            got = facts(run(args), is_store, with_ts)
        except Exception as ex:  # a crash on a vector is a disagreement, reported as such
            got = {"error": "%s: %s" % (type(ex).__name__, ex)}
        same = got == want
        bad += not same
        short = lambda f: [(k, s and s[:8], q) for k, s, q in f.get("problems", [])] or f.get("error") or "no problems"  # noqa: E731
        print("%-48s %s expected=%s got=%s" % (name, "agree" if same else "DISAGREE", short(want), short(got)))
        if not same:
            for k in sorted(set(want) | set(got)):
                if want.get(k) != got.get(k):
                    print("    %s: expected %s, got %s" % (k, want.get(k), got.get(k)))
    print("%d disagreement(s)" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
