"""FORMAT.md "Anchoring": what an outside anchor (a token that checks out, a known head that is
not rolled back) pins, per chain, and what after it only the host's key signed."""

from codec import JOURNAL, uuid_text


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
    out = {"sources": sources, "anchored_leaves": min(size, len(leaves)), "ledger_leaves": len(leaves), "journal": None, "sessions": [], "sessions_anchored_whole": 0}
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
    return out
