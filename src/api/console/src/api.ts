// The HTTP API at this page's own origin, with the bearer token kept in sessionStorage (gone
// when the tab closes). The event stream is read with fetch, since EventSource cannot send an
// Authorization header.

export type Role = "operator" | "approver" | "auditor" | "agent";

export interface Login {
  token: string;
  name: string;
  role: Role;
}

const KEY = "proctor.login";

export function currentLogin(): Login | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Login) : null;
  } catch {
    return null;
  }
}

export function saveLogin(l: Login): void {
  sessionStorage.setItem(KEY, JSON.stringify(l));
}

export function clearLogin(): void {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

function headers(token: string | undefined, json: boolean): HeadersInit {
  const h: Record<string, string> = {};
  if (token) h["Authorization"] = `Bearer ${token}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function failure(r: Response): Promise<ApiError> {
  let message = `${r.status} ${r.statusText}`;
  try {
    const body = await r.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch {
    /* not JSON */
  }
  if (r.status === 401) onUnauthorized();
  return new ApiError(r.status, message);
}

/** A request to the API; JSON in and out. */
export async function request(
  method: "GET" | "POST",
  path: string,
  body?: unknown,
): Promise<Response> {
  const login = currentLogin();
  const r = await fetch(path, {
    method,
    headers: headers(login?.token, body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (!r.ok) throw await failure(r);
  return r;
}

export async function get<T>(path: string): Promise<T> {
  return (await (await request("GET", path)).json()) as T;
}

export async function post<T>(path: string, body: unknown): Promise<T> {
  return (await (await request("POST", path, body)).json()) as T;
}

export async function getText(path: string): Promise<string> {
  return (await request("GET", path)).text();
}

export interface SseMessage {
  event: string;
  data: string;
}

/** Reads an SSE response body, calling `each` per message; resolves when the stream ends. */
async function readSse(body: ReadableStream<Uint8Array>, each: (m: SseMessage) => void) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end: number;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? "" : line.slice(i + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (data.length) each({ event, data: data.join("\n") });
    }
  }
}

/** Checks a token: the event stream's first message names the token and its role. */
export async function identify(token: string): Promise<Login> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 10_000);
  try {
    const r = await fetch("/api/events", {
      headers: headers(token, false),
      signal: ctl.signal,
      cache: "no-store",
    });
    if (r.status === 401) throw new ApiError(401, "this token is not valid here");
    if (!r.ok || !r.body) throw new ApiError(r.status, `the API answered ${r.status}`);
    let found: Login | null = null;
    await readSse(r.body, (m) => {
      if (m.event === "ready" && !found) {
        const d = JSON.parse(m.data);
        found = { token, name: d.token, role: d.role };
        ctl.abort();
      }
    }).catch((e) => {
      if (!found) throw e;
    });
    if (!found) throw new ApiError(0, "the event stream ended before saying who this token is");
    return found;
  } finally {
    clearTimeout(timer);
  }
}

export type LiveState = "connecting" | "live" | "retrying";

/**
 * The live event stream, reconnecting with backoff until stopped. `each` gets every message but
 * the greeting; `state` tells whether updates are flowing.
 */
export function liveEvents(
  each: (event: string, data: Record<string, unknown>) => void,
  state: (s: LiveState) => void,
): () => void {
  let stopped = false;
  let ctl: AbortController | null = null;
  let delay = 500;
  const run = async () => {
    while (!stopped) {
      const login = currentLogin();
      if (!login) return;
      ctl = new AbortController();
      state("connecting");
      try {
        const r = await fetch("/api/events", {
          headers: headers(login.token, false),
          signal: ctl.signal,
          cache: "no-store",
        });
        if (r.status === 401) {
          onUnauthorized();
          return;
        }
        if (r.ok && r.body) {
          await readSse(r.body, (m) => {
            if (m.event === "ready") {
              delay = 500;
              state("live");
              return;
            }
            let data: Record<string, unknown> = {};
            try {
              data = JSON.parse(m.data);
            } catch {
              /* keep {} */
            }
            each(m.event, data);
          });
        }
      } catch {
        /* retried below */
      }
      if (stopped) return;
      state("retrying");
      await new Promise((res) => setTimeout(res, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  };
  void run();
  return () => {
    stopped = true;
    ctl?.abort();
  };
}
