"""Shared by the Python driver programs: run checks with a time limit each, and name what
proctor holds when a check stalls (a statement waiting for an approver looks like a hang)."""
import json
import os
import subprocess
import sys
import threading

CHECK_TIMEOUT = float(os.environ.get("COMPAT_CHECK_TIMEOUT", "30"))


def proctor():
    """(binary, data dir) from COMPAT_PROCTOR="BIN DATA", or None (e.g. against the target)."""
    v = os.environ.get("COMPAT_PROCTOR")
    return tuple(v.split(" ", 1)) if v else None


def held():
    p = proctor()
    if not p:
        return []
    out = subprocess.run([p[0], "approvals", "list", "--json", "--data", p[1]],
                         capture_output=True, text=True, check=False).stdout
    try:
        return json.loads(out)
    except ValueError:
        return []


def describe_held():
    h = held()
    if not h:
        return ""
    return "; held at proctor: " + ", ".join(f"{a['rule']}: {a['detail'][:80]!r}" for a in h)


def run_checks(driver, checks):
    """Runs (name, fn) pairs, each in a thread bounded by CHECK_TIMEOUT; COMPAT_ONLY filters
    by substring. Prints ok/FAIL lines and 'N passed, N failed'; exits non-zero on failure."""
    only = os.environ.get("COMPAT_ONLY")
    failed = ran = 0
    for name, fn in checks:
        if only and only not in name:
            continue
        ran += 1
        box = {}

        def target(fn=fn, box=box):
            try:
                fn()
            except BaseException as e:  # noqa: BLE001
                box["error"] = e

        t = threading.Thread(target=target, daemon=True)
        t.start()
        t.join(CHECK_TIMEOUT)
        if t.is_alive():
            failed += 1
            print(f"  FAIL {driver}: {name}: no answer within {CHECK_TIMEOUT:g} s{describe_held()}", flush=True)
        elif "error" in box:
            failed += 1
            e = box["error"]
            print(f"  FAIL {driver}: {name}: {type(e).__name__}: {e}", flush=True)
        else:
            print(f"  ok   {driver}: {name}", flush=True)
    print(f"{driver}: {ran - failed} passed, {failed} failed", flush=True)
    sys.stdout.flush()
    # A stalled check's thread may still be blocked in the driver: do not wait for it.
    os._exit(1 if failed or not ran else 0)


def registry():
    """A list of (name, function) checks, and the decorator that adds one to it."""
    checks = []

    def check(name):
        def wrap(fn):
            checks.append((name, fn))
            return fn

        return wrap

    return checks, check
