"""FORMAT.md "Anchoring": what an outside anchor (a token that checks out, a known head that is
not rolled back) pins, per chain, and what after it only the host's key signed."""

import crypto
from codec import JOURNAL, decode_leaf, tree_head_message, uuid_text


def anchoring(chains, leaves, sources):
    size = max((s["tree_size"] for s in sources), default=0)
    anchored = leaves[:size]
    journal_anchors = [(l["final_seq"], l["ended_ns"]) for l in anchored if l["kind"] == 6]
    j_to = journal_anchors[-1] if journal_anchors else None
    sealed, opened = {}, {}
    for l in anchored:
        if l["kind"] == 1:
            sealed.setdefault(l["session"], (l["final_seq"], l["ended_ns"]))
        elif l["kind"] == 4:
            opened.setdefault(l["session"], (0, l["started_ns"]))
    out = {"sources": sources, "anchored_leaves": min(size, len(leaves)), "ledger_leaves": len(leaves), "journal": None, "sessions": [], "sessions_anchored_whole": 0, "nothing_anchored": None}
    for s in sorted(chains.chains):
        c = chains.chains[s]
        if not c.records or c.finding is not None:
            continue  # a chain with a finding is failed already: no anchoring stated
        last = c.last
        if s == JOURNAL:
            to = j_to
        else:
            cands = [x for x in (opened.get(s), sealed.get(s)) if x]
            if j_to is not None:
                listed = [(q, ts) for jq, q, ts in c.listings if jq <= j_to[0]]
                if listed:
                    cands.append(listed[-1])
            to = max(cands, default=None)
        g = {
            "session": uuid_text(s),
            "anchored_to_seq": to and to[0],
            "anchored_ts_ns": to and to[1],
            "last_seq": last.seq,
            "last_ts_ns": last.ts,
            "unanchored_records": last.seq + 1 if to is None else max(0, last.seq - to[0]),
        }
        if s == JOURNAL:
            out["journal"] = g
        elif g["unanchored_records"] == 0:
            out["sessions_anchored_whole"] += 1
        else:
            out["sessions"].append(g)
    if out["anchored_leaves"] == 0:
        # FORMAT.md: no leaf anchored, so no record is: one entry for the whole store.
        gaps = ([out["journal"]] if out["journal"] else []) + out["sessions"]
        out["nothing_anchored"] = {"sessions": len(out["sessions"]), "journal": out["journal"] is not None, "records": sum(g["unanchored_records"] for g in gaps)}
        out["journal"], out["sessions"] = None, []
    return out


def bundle_known_head(kh, consistency, head, pub, kid):
    """FORMAT.md "Anchoring" in a bundle: ("anchor", source) | ("problem", kind, detail) |
    ("note", text) for a --known-head against the bundle's tree head."""
    if kh["key_id"] != kid or not crypto.verify_strict(pub, tree_head_message(kh["size"], kh["root"], kh["ts_ns"]), kh["signature"]):
        return ("problem", "bad_signature", "known head: bad signature")
    src = {"kind": "known_head", "tree_size": kh["size"], "tree_head_ts_ns": kh["ts_ns"], "gen_time_ns": None}
    if kh["size"] == head["size"]:
        return ("anchor", src) if kh["root"] == head["root"] else ("problem", "rolled_back", "same size, another root")
    if kh["size"] < head["size"]:
        return ("note", "known head older than the bundle's: not linked")
    if consistency is None or consistency[0] != head["size"]:
        return ("note", "known head without a consistency proof from the bundle's head: not linked")
    if crypto.verify_consistency(head["size"], kh["size"], head["root"], kh["root"], consistency[1]):
        return ("anchor", src)
    return ("problem", "rolled_back", "the known head does not extend the bundle's head")


def bundle_anchoring(report, man, sources, failed):
    """The bundle's `anchoring`: the whole session when an outside head covers its sealed leaf."""
    try:
        leaf = decode_leaf(bytes.fromhex(man["leaf_data"]))
        final_seq, ended = leaf["final_seq"], leaf["ended_ns"]
    except Exception:  # a leaf that does not decode is a *ledger* problem already
        final_seq, ended = 0, 0
    idx = int(man["leaf_index"])
    whole = any(s["tree_size"] > idx for s in sources)
    session = None
    if not failed:
        session = {
            "session": man["session"],
            "anchored_to_seq": final_seq if whole else None,
            "anchored_ts_ns": ended if whole else None,
            "last_seq": final_seq,
            "last_ts_ns": ended,
            "unanchored_records": 0 if whole else final_seq + 1,
        }
    return {"sources": sources, "leaf_index": idx, "tree_size": int(man["tree_head"]["size"]), "session": session, "anchored_whole": whole and not failed, "notes": []}
