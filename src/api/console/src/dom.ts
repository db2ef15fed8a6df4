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

// The same rules as the CLI's (`proctor_gate::inert`). Always shown: controls other than tab
// and newline, DEL, C1 controls, soft hyphen, combining grapheme joiner, Arabic letter mark,
// Hangul fillers, Khmer inherent vowels, Mongolian vowel separator, zero-width characters and
// bidi marks, line/paragraph separators, bidi embeddings, overrides and isolates, word joiner
// and invisible operators, variation selectors, the BOM, interlinear annotations, shorthand and
// musical format controls, tag characters; spaces other than U+0020 (PostgreSQL reads them as
// letters of a name), Latin clicks that pass for `|` and `!`, fullwidth and mathematical
// letters. By context: look-alike letters inside a word with ASCII letters, and combining
// marks that cover or change what they sit on.
const HIDDEN =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u00a0\u00ad\u01c0-\u01c3\u034f\u061c\u115f\u1160\u1680\u17b4\u17b5\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\ufff9-\ufffb\uff01-\uff5e\uffa0\u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{1d400}-\u{1d7ff}\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]/u;
// Letters of scripts with Latin look-alikes (Cyrillic, Greek, Armenian, Cherokee, IPA...).
const LOOKALIKE =
  /[\u0131\u0237\u0250-\u02af\u0370-\u03ff\u0400-\u052f\u0530-\u058f\u13a0-\u13ff\u1c80-\u1c8f\u1d00-\u1dbf\u1f00-\u1fff\u2100-\u214f\u2c80-\u2cff\u2de0-\u2dff\ua640-\ua69f\ua4d0-\ua4ff\uab70-\uabbf]/u;
// Overlays (strike-through, slash) and enclosing marks.
const COVERING =
  /[\u0334-\u0338\u0488\u0489\u20d2\u20d3\u20d8-\u20da\u20dd-\u20e0\u20e2-\u20e6\u20ea\u20eb\ua670-\ua672]/u;
const MARK = /\p{M}/u;
const LETTER = /\p{Alphabetic}/u;
const WORDS = /[\p{Alphabetic}\p{N}_$\p{M}]+/gu;

const NAMES: Record<number, string> = {
  0x1b: "ESCAPE",
  0xa0: "NO-BREAK SPACE",
  0x2002: "EN SPACE",
  0x2003: "EM SPACE",
  0x3000: "IDEOGRAPHIC SPACE",
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
  0x0336: "COMBINING LONG STROKE OVERLAY",
  0x0338: "COMBINING LONG SOLIDUS OVERLAY",
};

/** The token shown for a hidden character: `\x1b` for C0 controls and DEL, else `<U+202E>`. */
export function token(cp: number): string {
  const hex = cp.toString(16).toUpperCase();
  if (cp === 0x0d) return "\\r";
  if (cp < 0x20 || cp === 0x7f) return `\\x${hex.toLowerCase().padStart(2, "0")}`;
  return `<U+${hex.padStart(4, "0")}>`;
}

/** Why a character is shown as a token, for its title. */
function why(cp: number, ch: string): string {
  if (NAMES[cp]) return NAMES[cp];
  if (LOOKALIKE.test(ch)) return "a letter that looks like a Latin one, inside a Latin word";
  if (MARK.test(ch)) return "a combining mark that covers or changes what it sits on";
  return "";
}

/** String offsets of the characters of `text` shown as tokens (see `HIDDEN`). */
function hiddenAt(text: string): number[] {
  // Look-alike letters count only in a word that also has ASCII letters.
  const lookalike = new Set<number>();
  for (const w of text.matchAll(WORDS)) {
    const word = w[0];
    // eslint-disable-next-line no-control-regex
    if (/^[\x00-\x7f]*$/.test(word) || !/[A-Za-z]/.test(word)) continue;
    let at = w.index ?? 0;
    for (const ch of word) {
      if (LOOKALIKE.test(ch) && LETTER.test(ch)) lookalike.add(at);
      at += ch.length;
    }
  }
  const out: number[] = [];
  // The character a mark sits on, whether it was shown as a token, how many marks it carries.
  let base: string | null = null;
  let baseShown = true;
  let marks = 0;
  let at = 0;
  for (const ch of text) {
    let shown: boolean;
    if (MARK.test(ch)) {
      marks += 1;
      const onSymbol = base === null || (base.charCodeAt(0) < 0x80 && !/[A-Za-z0-9]/.test(base));
      shown = baseShown || onSymbol || COVERING.test(ch) || marks > 2 || HIDDEN.test(ch);
    } else {
      shown = (HIDDEN.test(ch) && ch !== "\n" && ch !== "\t") || lookalike.has(at);
      base = ch;
      baseShown = shown;
      marks = 0;
    }
    if (shown) out.push(at);
    at += ch.length;
  }
  return out;
}

/**
 * Agent-controlled text as DOM nodes a person can trust: every character that would reorder
 * (Trojan Source bidi overrides), hide (zero-width, tags, controls) or disguise text (spaces
 * that are letters, look-alike letters, covering marks) is replaced by a marked token naming
 * its code point (hover for the name). Nothing is dropped.
 */
export function visible(text: string): Node {
  const hidden = hiddenAt(text);
  if (hidden.length === 0) return document.createTextNode(text);
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const at of hidden) {
    if (at > last) frag.appendChild(document.createTextNode(text.slice(last, at)));
    const cp = text.codePointAt(at) ?? 0;
    const ch = String.fromCodePoint(cp);
    const code = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
    const mark = document.createElement("span");
    mark.className = "cp";
    mark.dataset.cp = code;
    const name = why(cp, ch);
    mark.title = `${code}${name ? ` ${name}` : ""}: shown, not obeyed`;
    mark.textContent = token(cp);
    frag.appendChild(mark);
    last = at + ch.length;
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
