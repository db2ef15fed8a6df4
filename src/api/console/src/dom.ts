// A tiny element builder. Recorded content (statements, command lines, terminal output) is
// written by the recorded agent, so it only ever goes into text nodes, never into HTML, and
// characters that would hide or reorder what a person reads are shown, not obeyed (`visible`).

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs | null = null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (k === "className") {
      el.className = String(v);
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(visible(String(c)));
  }
}

// The same set as the CLI's (`proctor_gate::inert`): controls other than tab and newline,
// DEL, C1 controls, soft hyphen, combining grapheme joiner, Arabic letter mark, Hangul fillers,
// Khmer inherent vowels, Mongolian vowel separator, zero-width characters and bidi marks,
// line/paragraph separators, bidi embeddings, overrides and isolates, word joiner and invisible
// operators, variation selectors, the BOM, interlinear annotations, shorthand and musical
// format controls, tag characters.
const HIDDEN =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\ufff9-\ufffb\uffa0\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]/gu;

const NAMES: Record<number, string> = {
  0x1b: "ESCAPE",
  0x200b: "ZERO WIDTH SPACE",
  0x200c: "ZERO WIDTH NON-JOINER",
  0x200d: "ZERO WIDTH JOINER",
  0x200e: "LEFT-TO-RIGHT MARK",
  0x200f: "RIGHT-TO-LEFT MARK",
  0x202a: "LEFT-TO-RIGHT EMBEDDING",
  0x202b: "RIGHT-TO-LEFT EMBEDDING",
  0x202c: "POP DIRECTIONAL FORMATTING",
  0x202d: "LEFT-TO-RIGHT OVERRIDE",
  0x202e: "RIGHT-TO-LEFT OVERRIDE",
  0x2066: "LEFT-TO-RIGHT ISOLATE",
  0x2067: "RIGHT-TO-LEFT ISOLATE",
  0x2068: "FIRST STRONG ISOLATE",
  0x2069: "POP DIRECTIONAL ISOLATE",
  0x2060: "WORD JOINER",
  0xfeff: "ZERO WIDTH NO-BREAK SPACE",
  0x00ad: "SOFT HYPHEN",
};

/** The token shown for a hidden character: `\x1b` for C0 controls and DEL, else `<U+202E>`. */
export function token(cp: number): string {
  const hex = cp.toString(16).toUpperCase();
  if (cp === 0x0d) return "\\r";
  if (cp < 0x20 || cp === 0x7f) return `\\x${hex.toLowerCase().padStart(2, "0")}`;
  return `<U+${hex.padStart(4, "0")}>`;
}

/**
 * Agent-controlled text as DOM nodes a person can trust: every character that would reorder
 * (Trojan Source bidi overrides) or hide text (zero-width, tags, controls) is replaced by a
 * marked token naming its code point (hover for the name). Nothing is dropped.
 */
export function visible(text: string): Node {
  HIDDEN.lastIndex = 0;
  const any = HIDDEN.test(text);
  // matchAll starts where the global regex's lastIndex stands: from the beginning.
  HIDDEN.lastIndex = 0;
  if (!any) return document.createTextNode(text);
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const m of text.matchAll(HIDDEN)) {
    const at = m.index ?? 0;
    if (at > last) frag.appendChild(document.createTextNode(text.slice(last, at)));
    const cp = m[0].codePointAt(0) ?? 0;
    const code = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
    const mark = document.createElement("span");
    mark.className = "cp";
    mark.dataset.cp = code;
    mark.title = `${code}${NAMES[cp] ? ` ${NAMES[cp]}` : ""}: shown, not obeyed`;
    mark.textContent = token(cp);
    frag.appendChild(mark);
    last = at + m[0].length;
  }
  if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
  return frag;
}

export function clear(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** Nanoseconds since the epoch, as local date and time. */
export function fmtTime(ns: number | null | undefined): string {
  if (ns === null || ns === undefined) return "";
  const d = new Date(ns / 1e6);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** Seconds as m:ss.s (the player's clock). */
export function fmtOffset(seconds: number): string {
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  const rest = s - m * 60;
  return `${m}:${rest.toFixed(1).padStart(4, "0")}`;
}

export function fmtDuration(ns: number): string {
  if (ns < 1e6) return `${(ns / 1e3).toFixed(0)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(1)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

export function shortId(id: string): string {
  return id.length > 13 ? id.slice(0, 13) : id;
}

export function badge(text: string, kind: string): HTMLSpanElement {
  return h("span", { className: `badge badge-${kind}` }, text);
}

export function errorBox(e: unknown): HTMLDivElement {
  const msg = e instanceof Error ? e.message : String(e);
  return h("div", { className: "error", role: "alert" }, msg);
}
