// Operators: sessions open right now, with kill (a reason is required and recorded in the
// session's seal together with the operator's token name).

import { get, post } from "../api";
import { badge, clear, errorBox, fmtTime, h, shortId } from "../dom";
import type { PageCtx } from "../main";
import type { LiveSession } from "../types";

export function renderLive(root: HTMLElement, ctx: PageCtx): void {
  const status = h("div", { role: "status", className: "status" });
  const body = h("div");
  clear(root, h("h1", null, "Live sessions"), status, body);

  let open: string | null = null;
  const load = async () => {
    let sessions: LiveSession[];
    try {
      sessions = await get<LiveSession[]>("/api/live");
    } catch (e) {
      clear(body, errorBox(e));
      return;
    }
    if (!sessions.length) {
      clear(body, h("p", { className: "empty" }, "No session is open."));
      return;
    }
    const rows = sessions.map((s) => {
      const reason = h("input", {
        type: "text",
        placeholder: "why (recorded in the seal)",
        "aria-label": `reason to kill ${s.id}`,
      });
      const confirm = h("button", { className: "danger" }, "Kill session");
      const form = h("form", { className: "kill-form", hidden: open !== s.id }, reason, confirm);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        if (!reason.value.trim()) {
          clear(status, errorBox("A reason is required to kill a session."));
          return;
        }
        confirm.disabled = true;
        try {
          const r = await post<{ killed: string; reason: string }>(
            `/api/sessions/${encodeURIComponent(s.id)}/kill`,
            { reason: reason.value.trim() },
          );
          clear(status, `Killed ${r.killed}: ${r.reason}`);
          open = null;
          void load();
        } catch (e) {
          clear(status, errorBox(e));
          confirm.disabled = false;
        }
      });
      const toggle = h(
        "button",
        {
          onclick: () => {
            open = open === s.id ? null : s.id;
            form.hidden = open !== s.id;
            if (!form.hidden) reason.focus();
          },
        },
        "Kill…",
      );
      return h(
        "tr",
        { "data-session": s.id },
        h("td", { className: "mono", title: s.id }, shortId(s.id)),
        h("td", null, s.agent),
        h("td", null, s.target),
        h("td", null, s.protocol),
        h("td", null, badge(s.privilege, s.privilege)),
        h("td", null, s.login),
        h("td", null, s.client_addr),
        h("td", null, fmtTime(s.started_ns)),
        h("td", null, s.pending_holds.length ? badge(`${s.pending_holds.length} held`, "hold") : ""),
        h("td", null, toggle, form),
      );
    });
    clear(
      body,
      h(
        "table",
        { className: "grid" },
        h(
          "thead",
          null,
          h("tr", null, ["Session", "Agent", "Target", "Protocol", "Privilege", "Login", "Client", "Started", "Holds", ""].map((t) => h("th", null, t))),
        ),
        h("tbody", null, rows),
      ),
    );
  };
  ctx.onLive((event) => {
    // An open kill form keeps its typed reason: only a session ending redraws under it.
    if (open !== null && event !== "session_end") return;
    if (["session_start", "session_end", "hold", "approval"].includes(event)) void load();
  });
  const timer = setInterval(() => {
    if (open === null) void load();
  }, 10_000);
  ctx.onLeave(() => clearInterval(timer));
  void load();
}
