import "./style.css";
import {
  clearLogin,
  currentLogin,
  identify,
  liveEvents,
  saveLogin,
  setUnauthorizedHandler,
  type LiveState,
  type Role,
} from "./api";
import { clear, errorBox, h } from "./dom";
import { renderApprovals } from "./pages/approvals";
import { renderLive } from "./pages/live";
import { renderSearch } from "./pages/search";
import { renderSession } from "./pages/session";

export type LiveListener = (event: string, data: Record<string, unknown>) => void;

export interface PageCtx {
  role: Role;
  params: URLSearchParams;
  /** Subscribes to the live event stream for as long as the page is shown. */
  onLive(f: LiveListener): void;
  /** Runs when the page is left. */
  onLeave(f: () => void): void;
  navigate(hash: string): void;
}

const app = document.getElementById("app")!;
const listeners = new Set<LiveListener>();
let stopLive: (() => void) | null = null;
let liveState: LiveState = "connecting";
let leaving: (() => void)[] = [];

const PAGES: { hash: string; title: string; role: Role }[] = [
  { hash: "#/live", title: "Live sessions", role: "operator" },
  { hash: "#/approvals", title: "Approvals", role: "approver" },
  { hash: "#/sessions", title: "Sessions", role: "auditor" },
];

function home(role: Role): string {
  return PAGES.find((p) => p.role === role)?.hash ?? "#/agent";
}

function navigate(hash: string): void {
  if (location.hash === hash) route();
  else location.hash = hash;
}

setUnauthorizedHandler(() => {
  signOut("The token was refused (expired or revoked?): sign in again.");
});

function signOut(message?: string): void {
  clearLogin();
  stopLive?.();
  stopLive = null;
  if (message) sessionStorage.setItem("proctor.message", message);
  navigate("#/login");
}

function startLive(): void {
  if (stopLive) return;
  stopLive = liveEvents(
    (event, data) => listeners.forEach((f) => f(event, data)),
    (s) => {
      liveState = s;
      const el = document.getElementById("live-state");
      if (el) {
        el.textContent = s === "live" ? "live" : s === "connecting" ? "connecting…" : "reconnecting…";
        el.className = `live-state live-${s}`;
      }
    },
  );
}

function renderLogin(): void {
  const message = sessionStorage.getItem("proctor.message");
  sessionStorage.removeItem("proctor.message");
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    placeholder: "prt_…",
    required: true,
  });
  const status = h("div", { role: "status" });
  const form = h(
    "form",
    { className: "login" },
    h("h1", null, "proctor"),
    h("p", null, "Paste an API token. It is kept in this tab only (sessionStorage) and sent as a bearer token to this server."),
    message ? h("div", { className: "error", role: "alert" }, message) : null,
    h("label", { for: "token" }, "Token"),
    input,
    h("button", { type: "submit" }, "Sign in"),
    status,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    clear(status, "Checking…");
    try {
      const login = await identify(token);
      saveLogin(login);
      navigate(home(login.role));
    } catch (e) {
      clear(status, errorBox(e));
    }
  });
  clear(app, form);
  input.focus();
}

function shell(role: Role, name: string): HTMLElement {
  const main = h("main", { id: "page" });
  const current = location.hash.split("?")[0];
  const nav = h(
    "nav",
    null,
    h("span", { className: "brand" }, "proctor"),
    PAGES.filter((p) => p.role === role).map((p) =>
      h("a", { href: p.hash, className: current.startsWith(p.hash) ? "active" : "" }, p.title),
    ),
    h("span", { className: "spacer" }),
    h("span", { id: "live-state", className: `live-state live-${liveState}` }, liveState === "live" ? "live" : "connecting…"),
    h("span", { className: "who", "data-testid": "who" }, `${name} (${role})`),
    h("button", { className: "link", onclick: () => signOut() }, "Sign out"),
  );
  clear(app, nav, main);
  return main;
}

function route(): void {
  leaving.forEach((f) => f());
  leaving = [];
  listeners.clear();
  const [path, query] = (location.hash || "#/").split("?");
  const login = currentLogin();
  if (path === "#/login" || !login) {
    if (path !== "#/login") {
      location.hash = "#/login";
      return;
    }
    renderLogin();
    return;
  }
  startLive();
  const ctx: PageCtx = {
    role: login.role,
    params: new URLSearchParams(query ?? ""),
    onLive: (f) => listeners.add(f),
    onLeave: (f) => leaving.push(f),
    navigate,
  };
  const main = shell(login.role, login.name);
  const need = (role: Role, title: string): boolean => {
    if (login.role === role) return true;
    clear(main, h("h1", null, title), errorBox(`This page needs an ${role} token; this one is ${login.role}.`));
    return false;
  };
  const session = path.match(/^#\/sessions\/([^/]+)$/);
  if (path === "#/live") {
    if (need("operator", "Live sessions")) renderLive(main, ctx);
  } else if (path === "#/approvals") {
    if (need("approver", "Approvals")) renderApprovals(main, ctx);
  } else if (path === "#/sessions") {
    if (need("auditor", "Sessions")) renderSearch(main, ctx);
  } else if (session) {
    if (need("auditor", "Session")) renderSession(main, ctx, decodeURIComponent(session[1]));
  } else if (path === "#/agent") {
    clear(
      main,
      h("h1", null, "Agent token"),
      h("p", null, "Agent tokens may only annotate their own agent's live sessions (POST /api/sessions/{id}/annotations); the console has no page for them."),
    );
  } else {
    location.hash = home(login.role);
  }
}

window.addEventListener("hashchange", route);
route();
