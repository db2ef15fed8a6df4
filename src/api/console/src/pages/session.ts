// Auditors: one recorded session. SSH sessions play in a terminal player (the server's
// asciicast export) beside a timeline of the commands, which seeks the player; PostgreSQL
// sessions show their statements with verdicts, approvals and results. Alerts and the agent's
// reasoning appear in line. The verification badge is the server's own check of the chain,
// seal and ledger entry (GET /api/sessions/{id}/verify).

import * as AsciinemaPlayer from "asciinema-player";
import "asciinema-player/dist/bundle/asciinema-player.css";
import { get, getText } from "../api";
import { badge, clear, errorBox, fmtDuration, fmtOffset, fmtTime, h } from "../dom";
import type { PageCtx } from "../main";
import type { EventsPage, RecordJson, SessionMeta, Verification } from "../types";
import { outcomeBadge } from "./search";

/** Pages of records read for the timeline (5000 each); terminal output is most of them. */
const MAX_PAGES = 40;
const PAGE = 5000;

type Player = ReturnType<typeof AsciinemaPlayer.create>;

interface Item {
  seq: number;
  offset: number;
  kind: string;
  el: HTMLElement;
  /** Where verdicts, approvals and results of this item go. */
  notes?: HTMLElement;
  seekable: boolean;
}

const str = (v: unknown): string => (v === null || v === undefined ? "" : String(v));

async function loadEvents(id: string, progress: (n: number) => void): Promise<{ events: RecordJson[]; truncated: boolean }> {
  const events: RecordJson[] = [];
  let from: number | null = 0;
  for (let page = 0; page < MAX_PAGES && from !== null; page++) {
    const r: EventsPage = await get<EventsPage>(`/api/sessions/${encodeURIComponent(id)}/events?from=${from}&limit=${PAGE}`);
    events.push(...r.events);
    from = r.next_from;
    progress(events.length);
  }
  return { events, truncated: from !== null };
}

function verdictBadge(v: string): HTMLElement {
  return badge(v, v === "allow" ? "ok" : v === "deny" ? "bad" : v === "hold" ? "hold" : "warn");
}

function renderVerification(el: HTMLElement, id: string): void {
  clear(el, badge("verifying…", "plain"));
  get<Verification>(`/api/sessions/${encodeURIComponent(id)}/verify`)
    .then((v) => {
      const problems = v.report.problems ?? [];
      const title = `Checked by the server with ${v.key}: ${v.report.records} records` + (v.report.notes?.length ? `; ${v.report.notes.join("; ")}` : "");
      clear(
        el,
        v.ok
          ? h("span", { className: "badge badge-ok verify", title, "data-testid": "verify" }, "✓ verified")
          : h("span", { className: "badge badge-bad verify", title, "data-testid": "verify" }, "✗ verification FAILED"),
        problems.length
          ? h("ul", { className: "problems" }, problems.map((p) => h("li", null, Object.entries(p).map(([k, x]) => `${k}: ${typeof x === "string" ? x : JSON.stringify(x)}`).join(", "))))
          : null,
      );
    })
    .catch((e) => clear(el, h("span", { className: "badge badge-bad verify", "data-testid": "verify" }, "verification unavailable"), errorBox(e)));
}

function header(meta: SessionMeta, verify: HTMLElement): HTMLElement {
  const dur = meta.ended_ns ? fmtDuration(meta.ended_ns - meta.started_ns) : "open";
  return h(
    "section",
    { className: "session-head" },
    h(
      "h1",
      null,
      `${meta.agent} → ${meta.target}`,
      meta.login ? h("span", { className: "as-login" }, ` as ${meta.login}`) : null,
      " ",
      badge(meta.protocol, "plain"),
      " ",
      badge(meta.privilege, meta.privilege),
      " ",
      outcomeBadge(meta),
      " ",
      verify,
    ),
    h(
      "dl",
      { className: "facts" },
      h("dt", null, "Session"),
      h("dd", { className: "mono" }, meta.id),
      h("dt", null, "Started"),
      h("dd", null, fmtTime(meta.started_ns)),
      h("dt", null, "Duration"),
      h("dd", null, dur),
      h("dt", null, "Client"),
      h("dd", null, meta.client_addr),
      h("dt", null, "Grant"),
      h("dd", null, meta.grant),
      h("dt", null, "Records"),
      h("dd", null, `${meta.events} (${meta.record_bytes} bytes)`),
      meta.end_reason ? [h("dt", null, "Ended"), h("dd", null, meta.end_reason)] : null,
      meta.ledger_index !== null && meta.ledger_index !== undefined ? [h("dt", null, "Ledger"), h("dd", null, `leaf ${meta.ledger_index}`)] : null,
    ),
  );
}

/** Builds the timeline: statements or commands, with their verdicts, approvals and results. */
function timeline(meta: SessionMeta, events: RecordJson[], seek: (t: number) => void): { list: HTMLElement; items: Item[] } {
  const list = h("ol", { className: "timeline", "data-testid": "timeline" });
  const items: Item[] = [];
  const statements = new Map<number, Item>();
  const byApproval = new Map<string, Item>();
  const lastCommand = new Map<number, Item>();
  const pendingVerdict = new Map<number, RecordJson>();
  const offsetOf = (e: RecordJson) => Math.max(0, (e.ts_ns - meta.started_ns) / 1e9);

  const add = (e: RecordJson, kind: string, body: (HTMLElement | string | null)[], seekable = false): Item => {
    const notes = h("div", { className: "notes" });
    const offset = offsetOf(e);
    const time = seekable
      ? h("button", { className: "offset link", title: "play from here", onclick: () => seek(offset) }, fmtOffset(offset))
      : h("span", { className: "offset" }, fmtOffset(offset));
    const el = h("li", { className: `item item-${kind}`, "data-seq": e.seq, "data-kind": kind }, time, h("div", { className: "body" }, body, notes));
    list.appendChild(el);
    const item = { seq: e.seq, offset, kind, el, notes, seekable };
    items.push(item);
    return item;
  };
  const verdictNote = (item: Item | undefined, e: RecordJson) => {
    const note = h(
      "div",
      { className: "note" },
      verdictBadge(str(e.verdict)),
      e.rule ? ` rule ${str(e.rule)}` : "",
      e.reason ? h("span", { className: "why" }, ` — ${str(e.reason)}`) : null,
    );
    if (item?.notes) item.notes.appendChild(note);
    else add(e, "verdict", [h("span", { className: "subject" }, str(e.subject)), note]);
    if (e.approval_id && item) byApproval.set(str(e.approval_id), item);
  };

  for (const e of events) {
    switch (e.kind) {
      case "statement": {
        const item = add(e, "statement", [
          h("pre", { className: "sql" }, str(e.text)),
          h(
            "div",
            { className: "meta" },
            badge(str(e.class), "plain"),
            (e.tables as string[] | undefined)?.length ? ` ${(e.tables as string[]).join(", ")}` : "",
            (e.params as unknown[] | undefined)?.length ? h("span", { className: "params" }, ` params ${JSON.stringify(e.params)}`) : null,
          ),
          e.reasoning ? h("div", { className: "reasoning-inline" }, "reasoning: ", str(e.reasoning)) : null,
        ]);
        statements.set(Number(e.statement_id), item);
        break;
      }
      case "command_line":
      case "exec": {
        const channel = Number(e.channel);
        const text = str(e.kind === "exec" ? e.command : e.line);
        const item = add(e, "command", [h("code", { className: "cmd" }, e.kind === "exec" ? `exec: ${text}` : `$ ${text}`)], true);
        lastCommand.set(channel, item);
        const pending = pendingVerdict.get(channel);
        if (pending) {
          pendingVerdict.delete(channel);
          verdictNote(item, pending);
        }
        break;
      }
      case "verdict": {
        const subject = str(e.subject);
        const st = subject.match(/^statement (\d+)/);
        const ch = subject.match(/channel (\d+)/);
        if (st) verdictNote(statements.get(Number(st[1])), e);
        else if (ch && (subject.startsWith("exec") || subject.startsWith("line"))) {
          // A command's verdict may be recorded just before or just after the command itself.
          const c = Number(ch[1]);
          const last = lastCommand.get(c);
          if (last && last.notes && !last.notes.querySelector(".note") && e.seq - last.seq < 8) verdictNote(last, e);
          else pendingVerdict.set(c, e);
        } else if (str(e.verdict) !== "allow") verdictNote(undefined, e);
        break;
      }
      case "approval": {
        const item = byApproval.get(str(e.approval_id));
        const note = h(
          "div",
          { className: "note" },
          badge(str(e.outcome), str(e.outcome) === "approved" ? "ok" : "bad"),
          e.approver ? ` by ${str(e.approver)}` : "",
          e.reason ? h("span", { className: "why" }, ` — ${str(e.reason)}`) : null,
        );
        if (item?.notes) item.notes.appendChild(note);
        else add(e, "approval", [note]);
        break;
      }
      case "result": {
        const item = statements.get(Number(e.statement_id));
        const err = e.error as { code?: string; message?: string } | null;
        const note = h(
          "div",
          { className: `note result${err ? " failed" : ""}` },
          err ? badge(`error ${str(err.code)}`, "bad") : badge(str(e.tag) || "ok", "ok"),
          err ? ` ${str(err.message)}` : "",
          typeof e.rows === "number" ? ` · ${e.rows} rows` : "",
          typeof e.duration_ns === "number" ? ` · ${fmtDuration(e.duration_ns)}` : "",
          e.digest ? h("span", { className: "digest", title: "SHA-256 of every DataRow" }, ` · ${str(e.digest).slice(0, 12)}…`) : null,
        );
        if (item?.notes) item.notes.appendChild(note);
        break;
      }
      case "alert":
        add(e, "alert", [badge(`alert ${str(e.severity)}`, "warn"), " ", h("strong", null, str(e.rule)), ` ${str(e.message)}`]);
        break;
      case "annotation": {
        // Proctor's own notes (the shell's working directory, unenforced verdicts) are not
        // anyone's reasoning; an API annotation's source always names its credential, so only
        // proctor writes "proctor".
        const label = str(e.source) === "proctor" ? "proctor's note" : `reasoning · ${str(e.source)}`;
        add(e, "annotation", [h("div", { className: "label" }, label), h("div", { className: "text" }, str(e.text))]);
        break;
      }
      case "sftp":
        add(e, "sftp", [h("code", null, `sftp ${str(e.op)} ${str(e.path)}${e.target_path ? ` → ${str(e.target_path)}` : ""}`), e.status ? ` (${str(e.status)})` : ""]);
        break;
      case "exit_status":
        add(e, "exit", [`channel ${str(e.channel)} exited with status ${str(e.status)}`]);
        break;
      case "protocol_error":
        add(e, "error", [badge("protocol error", "bad"), ` ${str(e.party)}: ${str(e.message)}`]);
        break;
      case "session_end":
        add(e, "end", [`session ended: ${str(e.outcome)}`, e.reason ? ` — ${str(e.reason)}` : ""]);
        break;
      default:
        break;
    }
  }
  for (const e of pendingVerdict.values()) verdictNote(undefined, e);
  if (!items.length) list.appendChild(h("li", { className: "empty" }, "No commands or statements were recorded."));
  return { list, items };
}

export function renderSession(root: HTMLElement, ctx: PageCtx, id: string): void {
  const verify = h("span", { className: "verify-slot" });
  const status = h("div", { className: "status", role: "status" }, "Loading…");
  clear(root, status);
  let player: Player | null = null;
  let timer: ReturnType<typeof setInterval> | null = null;
  ctx.onLeave(() => {
    if (timer) clearInterval(timer);
    player?.dispose();
  });

  void (async () => {
    let meta: SessionMeta;
    try {
      meta = await get<SessionMeta>(`/api/sessions/${encodeURIComponent(id)}`);
    } catch (e) {
      clear(root, h("h1", null, "Session"), errorBox(e));
      return;
    }
    renderVerification(verify, meta.id);
    const playerBox = h("div", { className: "player", "data-testid": "player" });
    const seek = async (t: number) => {
      if (!player) return;
      await player.seek(Math.max(0, t - 0.05));
      await player.play();
    };
    const content = h("div", { className: meta.protocol === "ssh" ? "session-body ssh" : "session-body" });
    clear(root, header(meta, verify), status, content);

    let events: RecordJson[];
    let truncated: boolean;
    try {
      ({ events, truncated } = await loadEvents(meta.id, (n) => clear(status, `Reading records… ${n}`)));
    } catch (e) {
      clear(status, errorBox(e));
      return;
    }
    clear(status, truncated ? h("div", { className: "warning" }, `Only the first ${MAX_PAGES * PAGE} records are shown; export the session for the rest.`) : null);
    const { list, items } = timeline(meta, events, (t) => void seek(t));
    const side = h("aside", { className: "side" }, h("h2", null, meta.protocol === "ssh" ? "Commands" : "Statements"), list);

    if (meta.protocol === "ssh") {
      clear(content, playerBox, side);
      try {
        const cast = await getText(`/api/sessions/${encodeURIComponent(meta.id)}/export?format=asciicast`);
        if (cast.trim().split("\n").length < 2) {
          clear(playerBox, h("p", { className: "empty" }, "No terminal output was recorded in this session."));
        } else {
          // A pty requested without a size (ssh -tt from a pipe) records 0x0; show 80x24.
          const head = JSON.parse(cast.slice(0, cast.indexOf("\n"))) as { width?: number; height?: number };
          const small = (head.width ?? 0) < 10 || (head.height ?? 0) < 2;
          player = AsciinemaPlayer.create({ data: cast }, playerBox, {
            cols: small ? 80 : undefined,
            rows: small ? 24 : undefined,
            fit: "width",
            terminalFontSize: "small",
            preload: true,
            controls: true,
          });
          const commands = items.filter((i) => i.seekable);
          timer = setInterval(() => {
            if (!player) return;
            const t = player.getCurrentTime();
            let current: Item | null = null;
            for (const c of commands) if (c.offset <= t + 0.01) current = c;
            for (const c of commands) c.el.classList.toggle("current", c === current);
          }, 250);
        }
      } catch (e) {
        clear(playerBox, errorBox(e));
      }
    } else {
      clear(content, side);
    }
    const want = ctx.params.get("seq");
    if (want) {
      const target = items.find((i) => i.seq >= Number(want));
      if (target) {
        target.el.classList.add("found");
        target.el.scrollIntoView({ block: "center" });
      }
    }
  })();
}
