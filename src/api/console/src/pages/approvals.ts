// Approvers: held actions waiting for a person, with their full context, approve or deny with
// a reason. The queue follows the event stream (new holds appear, decided ones leave) and keeps
// what the approver is typing while it changes. Holds come grouped from the API (look-alikes of
// one agent together, the most dangerous group first): each group shows its count, and large
// groups start folded so one dangerous hold is not buried under a hundred look-alikes. Every
// hold keeps its own card and its own decision.

import { get, post } from "../api";
import { badge, clear, errorBox, fmtTime, h, shortId } from "../dom";
import type { PageCtx } from "../main";
import type { PendingApproval } from "../types";

interface Group {
  el: HTMLDetailsElement;
  summary: HTMLElement;
  body: HTMLElement;
  /** The person opened or closed it: their choice stands while the group grows or shrinks. */
  chosen: boolean;
}

/** Groups larger than this start folded (the person can open them). */
const FOLD_AT = 3;

interface Card {
  el: HTMLElement;
  expires: HTMLElement;
  approvals: HTMLElement;
  item: PendingApproval;
}

function remaining(ns: number): string {
  const s = Math.round((ns - Date.now() * 1e6) / 1e9);
  if (s <= 0) return "expiring";
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s left` : `${s} s left`;
}

export function renderApprovals(root: HTMLElement, ctx: PageCtx): void {
  const status = h("div", { role: "status", className: "status", "data-testid": "approval-status" });
  const list = h("div", { className: "groups", "data-testid": "approvals" });
  const empty = h("p", { className: "empty" }, "Nothing is waiting for approval.");
  clear(root, h("h1", null, "Approval queue"), status, empty, list);
  const cards = new Map<string, Card>();
  const groups = new Map<string, Group>();

  const groupOf = (item: PendingApproval): Group => {
    const id = item.group?.id || item.id;
    let g = groups.get(id);
    if (!g) {
      const summary = h("summary");
      const body = h("div", { className: "cards" });
      const el = h("details", { className: "group", "data-group": id }, summary, body);
      const group: Group = { el, summary, body, chosen: false };
      summary.addEventListener("click", () => (group.chosen = true));
      g = group;
      groups.set(id, g);
    }
    if (!g.chosen) g.el.open = (item.group?.count ?? 1) <= FOLD_AT;
    clear(
      g.summary,
      badge(item.severity ?? "low", `severity-${item.severity ?? "low"}`),
      " ",
      h("strong", { "data-testid": "group-count" }, `${item.group?.count ?? 1} held`),
      " · ",
      h("strong", null, item.agent),
      " · ",
      h("code", null, item.group?.normalised ?? item.detail),
    );
    return g;
  };

  const decide = async (item: PendingApproval, action: "approve" | "deny", reason: HTMLTextAreaElement, buttons: HTMLButtonElement[]) => {
    const text = reason.value.trim();
    if (action === "deny" && !text) {
      clear(status, errorBox("A reason is required to deny."));
      reason.focus();
      return;
    }
    buttons.forEach((b) => (b.disabled = true));
    try {
      const r = await post<{ released?: boolean; denied?: boolean; approver: string }>(
        `/api/approvals/${encodeURIComponent(item.id)}/${action}`,
        { reason: text },
      );
      const what = `${item.kind} in ${shortId(item.session_id)} (${item.agent} on ${item.target})`;
      if (action === "deny") clear(status, `Denied ${what} as ${r.approver}.`);
      else if (r.released) clear(status, `Approved and released ${what} as ${r.approver}.`);
      else clear(status, `Approval by ${r.approver} recorded; more approvers are needed for ${what}.`);
      await load();
    } catch (e) {
      clear(status, errorBox(e));
      buttons.forEach((b) => (b.disabled = false));
    }
  };

  const card = (item: PendingApproval): Card => {
    const reason = h("textarea", {
      rows: 2,
      placeholder: "reason (recorded with your decision; required to deny)",
      "aria-label": "reason",
      name: "reason",
    });
    const approve = h("button", { className: "approve" }, "Approve");
    const deny = h("button", { className: "danger" }, "Deny");
    approve.addEventListener("click", () => void decide(item, "approve", reason, [approve, deny]));
    deny.addEventListener("click", () => void decide(item, "deny", reason, [approve, deny]));
    const expires = h("span", { className: "expires" }, remaining(item.expires_ns));
    const approvals = h("span");
    const el = h(
      "article",
      { className: "card", "data-approval": item.id },
      h(
        "header",
        null,
        badge("held", "hold"),
        " ",
        badge(item.severity ?? "low", `severity-${item.severity ?? "low"}`),
        " ",
        h("strong", null, item.agent),
        " → ",
        h("strong", null, item.target),
        " ",
        badge(item.protocol, "plain"),
        " ",
        badge(item.privilege, item.privilege),
        h("span", { className: "spacer" }),
        expires,
      ),
      h("pre", { className: "detail" }, item.detail),
      h(
        "dl",
        null,
        h("dt", null, "Kind"),
        h("dd", null, item.kind + (item.class ? ` · ${item.class}` : "")),
        item.tables.length ? [h("dt", null, "Tables"), h("dd", null, item.tables.join(", "))] : null,
        (item.settings ?? []).map((s) => [
          h("dt", null, s.name),
          h("dd", { "data-setting": s.name }, h("span", { className: "mono" }, s.value), h("div", { className: "note" }, s.note)),
        ]),
        h("dt", null, "Held by rule"),
        h("dd", null, item.rule || "—"),
        h("dt", null, "Why"),
        h("dd", null, item.reason || "—"),
        h("dt", null, "Session"),
        h("dd", { className: "mono" }, item.session_id),
        h("dt", null, "Held at"),
        h("dd", null, fmtTime(item.created_ns)),
        h("dt", null, "Approvals"),
        h("dd", null, approvals),
      ),
      item.reasoning.length
        ? h(
            "div",
            { className: "reasoning" },
            h("div", { className: "label" }, "Agent's reasoning"),
            h("ul", null, item.reasoning.map((r) => h("li", null, r))),
          )
        : null,
      h("div", { className: "decide" }, reason, h("div", { className: "buttons" }, approve, deny)),
    );
    return { el, expires, approvals, item };
  };

  const load = async () => {
    let items: PendingApproval[];
    try {
      items = await get<PendingApproval[]>("/api/approvals");
    } catch (e) {
      clear(status, errorBox(e));
      return;
    }
    const ids = new Set(items.map((i) => i.id));
    for (const [id, c] of cards) {
      if (!ids.has(id)) {
        c.el.remove();
        cards.delete(id);
      }
    }
    const live = new Set(items.map((i) => i.group?.id || i.id));
    for (const [id, g] of groups) {
      if (!live.has(id)) {
        g.el.remove();
        groups.delete(id);
      }
    }
    // The API's order: appending an element that is already there moves it, so the page
    // follows the order without rebuilding cards (and what the approver typed survives).
    for (const item of items) {
      const g = groupOf(item);
      list.appendChild(g.el);
      let c = cards.get(item.id);
      if (!c) {
        c = card(item);
        cards.set(item.id, c);
      }
      g.body.appendChild(c.el);
      c.item = item;
      clear(
        c.approvals,
        `${item.approvals.length} of ${Math.max(1, item.min_approvals)}`,
        item.approvals.length ? ` (${item.approvals.join(", ")})` : "",
      );
    }
    empty.hidden = cards.size > 0;
  };

  ctx.onLive((event) => {
    if (["hold", "approval", "session_end"].includes(event)) void load();
  });
  const tick = setInterval(() => {
    for (const c of cards.values()) c.expires.textContent = remaining(c.item.expires_ns);
  }, 1000);
  // A safety net for a lagged or reconnecting stream.
  const poll = setInterval(() => void load(), 15_000);
  ctx.onLeave(() => {
    clearInterval(tick);
    clearInterval(poll);
  });
  void load();
}
