"""Strict reading of the JSON a verifier reads (FORMAT.md "JSON"): bundle manifests, attestation
files (and a bundle's `timestamps` entries), known-head files.

No key twice in one object, no NaN/Infinity, integers without fraction or exponent and in their
type's range, every field of its JSON type. Python's `json` alone takes the last of two keys,
reads 1.0 as equal to 1 and true as 1: each of those would make this verifier read a manifest
proctor refuses.
"""

import json

U32 = (0, 2**32 - 1)
U64 = (0, 2**64 - 1)
I64 = (-(2**63), 2**63 - 1)


class Invalid(ValueError):
    pass


def _pairs(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise Invalid("key %r twice in one object" % k)
        out[k] = v
    return out


def _no_constant(text):
    raise Invalid("%s is not JSON" % text)


def loads(data):
    """JSON text (str or bytes) with no key twice: raises Invalid."""
    try:
        return json.loads(data, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except Invalid:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise Invalid(str(e))


# Field types: "str", "bool", U32/U64/I64 (integers), ("opt", T) (absent or null), ("list", T),
# ("obj", {field: T}) (unknown fields ignored), ("tuple", [T...]).
HEAD = ("obj", {"size": U64, "root": "str", "ts_ns": I64, "key_id": "str", "signature": "str"})
ATTESTATION = {"format": U32, "type": "str", "issuer": "str", "tree_head": HEAD, "token": "str", "received_ns": I64}
CREDENTIAL = ("obj", {"kind": "str", "name": "str", "valid_before_ns": I64, "revoked": "bool"})
SPAN = ("obj", {"segment": U64, "start": U64, "end": U64})
META = (
    "obj",
    dict(
        {k: "str" for k in ("id", "agent", "target", "protocol", "login", "privilege", "client_addr", "grant", "end_reason", "last_hash")},
        started_ns=I64,
        ended_ns=("opt", I64),
        outcome=("opt", "str"),
        credentials=("list", CREDENTIAL),
        sealed="bool",
        last_seq=U64,
        last_ts_ns=I64,
        spans=("list", SPAN),
        ledger_index=("opt", U64),
        online_until_ns=("opt", I64),
        retain_until_ns=("opt", I64),
        legal_hold=("opt", "str"),
        archived=("opt", "str"),
        purged=("default", "bool"),
        store_signed=("opt", ("tuple", [U64, "str"])),
        last_store_checkpoint=("opt", "str"),
        **{k: U64 for k in ("events", "record_bytes", "statements", "commands", "holds", "denies", "alerts")},
    ),
)
MANIFEST = (
    "obj",
    {
        "format": U32,
        "session": "str",
        "meta": META,
        "public_key_pem": "str",
        "leaf_index": U64,
        "leaf_data": "str",
        "inclusion_proof": ("list", "str"),
        "tree_head": HEAD,
        "frames": U64,
        "frames_sha256": "str",
        "timestamps": ("default", ("list", ("obj", dict(ATTESTATION, consistency_proof=("list", "str"))))),
        "store_checkpoints": ("default", ("list", "str")),
        "external_bodies": ("default", ("list", ("obj", {"sha256": "str", "base64": "str"}))),
    },
)


def check(value, t, where="manifest"):
    """Raises Invalid naming the first field that is absent or not of type `t`."""
    if isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], int):
        if isinstance(value, bool) or not isinstance(value, int) or not t[0] <= value <= t[1]:
            raise Invalid("%s: %r is not an integer in [%d, %d]" % (where, value, t[0], t[1]))
    elif t == "str":
        if not isinstance(value, str):
            raise Invalid("%s: %r is not a string" % (where, value))
    elif t == "bool":
        if not isinstance(value, bool):
            raise Invalid("%s: %r is not true or false" % (where, value))
    elif t[0] == "opt":
        if value is not None:
            check(value, t[1], where)
    elif t[0] == "list":
        if not isinstance(value, list):
            raise Invalid("%s: not a list" % where)
        for i, v in enumerate(value):
            check(v, t[1], "%s[%d]" % (where, i))
    elif t[0] == "tuple":
        if not isinstance(value, list) or len(value) != len(t[1]):
            raise Invalid("%s: not a list of %d" % (where, len(t[1])))
        for i, (v, tt) in enumerate(zip(value, t[1])):
            check(v, tt, "%s[%d]" % (where, i))
    elif t[0] == "obj":
        if not isinstance(value, dict):
            raise Invalid("%s: not an object" % where)
        for k, tt in t[1].items():
            if k not in value:
                # Absent is allowed for optional fields (null reads as absent) and defaults;
                # a default may not be null.
                if isinstance(tt, tuple) and tt[0] in ("opt", "default"):
                    continue
                raise Invalid("%s: no field %s" % (where, k))
            check(value[k], tt[1] if isinstance(tt, tuple) and tt[0] == "default" else tt, "%s.%s" % (where, k))
    else:
        raise AssertionError(t)
