// Auditors: search recorded sessions by agent, target, time, privilege, protocol, outcome and
// text inside their statements and command lines. The filters live in the URL, so a search
// can be bookmarked or shared (the token cannot: it stays in the tab).

import { request } from "../api";
import { badge, clear, errorBox, fmtTime, h, shortId } from "../dom";
import type { PageCtx } from "../main";
import type { SessionMeta } from "../types";

const FIELDS = ["q", "agent", "target", "since", "until", "privilege", "protocol", "outcome", "open"] as const;

function select(name: string, label: string, options: string[], value: string): HTMLElement {
  return h(
    "label",
    null,
    label,
    h(
      "select",
      { name },
      h("option", { value: "" }, "any"),
      options.map((o) => h("option", { value: o, selected: o === value }, o)),
    ),
  );
}

function input(name: string, label: string, value: string, placeholder = ""): HTMLElement {
  return h("label", null, label, h("input", { name, value, placeholder, type: "text" }));
}

export function outcomeBadge(s: SessionMeta): HTMLElement {
  if (!s.sealed && !s.outcome) return badge("open", "live");
  const o = s.outcome ?? "sealed";
  return badge(o, o === "completed" ? "ok" : o === "killed" || o === "denied" ? "bad" : "warn");
}

export function renderSearch(root: HTMLElement, ctx: PageCtx): void {
  const p = ctx.params;
  const v = (k: string) => p.get(k) ?? "";
  const form = h(
    "form",
    { className: "search" },
    h(
      "label",
      { className: "wide" },
      "Text in commands and statements",
      h("input", { name: "q", value: v("q"), type: "search", placeholder: "e.g. delete from accounts" }),
    ),
    input("agent", "Agent", v("agent")),
    input("target", "Target", v("target")),
    input("since", "Since", v("since"), "2h, 2026-01-31 or RFC 3339"),
    input("until", "Until", v("until")),
    select("privilege", "Privilege", ["routine", "elevated", "break-glass"], v("privilege")),
    select("protocol", "Protocol", ["ssh", "postgres"], v("protocol")),
    select("outcome", "Outcome", ["completed", "killed", "interrupted", "target_lost", "denied"], v("outcome")),
    h("label", { className: "check" }, h("input", { type: "checkbox", name: "open", checked: v("open") === "true" }), "open only"),
    h("button", { type: "submit" }, "Search"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    for (const k of FIELDS) {
      const val = k === "open" ? (data.get("open") ? "true" : "") : String(data.get(k) ?? "").trim();
      if (val) q.set(k, val);
    }
    ctx.navigate(`#/sessions?${q}`);
  });
  const results = h("div", { "data-testid": "results" });
  clear(root, h("h1", null, "Sessions"), form, results);

  const search = async () => {
    const q = new URLSearchParams();
    for (const k of FIELDS) if (p.get(k)) q.set(k, p.get(k)!);
    q.set("limit", "200");
    clear(results, h("p", { className: "empty" }, "Searching…"));
    let found: SessionMeta[];
    let incomplete: string | null;
    try {
      const r = await request("GET", `/api/sessions?${q}`);
      incomplete = r.headers.get("x-proctor-search-incomplete");
      found = (await r.json()) as SessionMeta[];
    } catch (e) {
      clear(results, errorBox(e));
      return;
    }
    const rows = found.map((s) => {
      const link = `#/sessions/${encodeURIComponent(s.id)}`;
      const tr = h(
        "tr",
        { className: "clickable", onclick: () => ctx.navigate(link) },
        h("td", null, fmtTime(s.started_ns)),
        h("td", null, h("a", { href: link, className: "mono", title: s.id }, shortId(s.id))),
        h("td", null, s.agent),
        h("td", null, s.target + (s.login ? ` (${s.login})` : "")),
        h("td", null, s.protocol),
        h("td", null, badge(s.privilege, s.privilege)),
        h("td", null, outcomeBadge(s)),
        h("td", { className: "num" }, s.protocol === "postgres" ? s.statements : s.commands),
        h(
          "td",
          null,
          s.holds ? badge(`${s.holds} held`, "hold") : null,
          s.denies ? badge(`${s.denies} denied`, "bad") : null,
          s.alerts ? badge(`${s.alerts} alerts`, "warn") : null,
        ),
      );
      const matches = s.matches?.length
        ? h(
            "tr",
            { className: "matches" },
            h(
              "td",
              { colspan: 9 },
              s.matches.map((m) =>
                h(
                  "a",
                  { href: `${link}?seq=${m.seq}`, className: "match" },
                  h("span", { className: "kind" }, m.kind === "statement" ? "SQL" : "$"),
                  " ",
                  h("code", null, m.text.length > 200 ? m.text.slice(0, 200) + "…" : m.text),
                ),
              ),
            ),
          )
        : null;
      return [tr, matches];
    });
    clear(
      results,
      incomplete
        ? h("div", { className: "warning" }, `The text search stopped at its bounds: ${incomplete} older sessions were not read. Narrow the filters (time, agent, target) to search them.`)
        : null,
      h("p", { className: "count" }, found.length === 200 ? "200 sessions (the first 200; narrow the search)" : `${found.length} session${found.length === 1 ? "" : "s"}`),
      found.length
        ? h(
            "table",
            { className: "grid" },
            h(
              "thead",
              null,
              h("tr", null, ["Started", "Session", "Agent", "Target", "Protocol", "Privilege", "Outcome", "Cmds", ""].map((t) => h("th", null, t))),
            ),
            h("tbody", null, rows),
          )
        : null,
    );
  };
  void search();
}
