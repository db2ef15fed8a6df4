// Browser tests of the web console, with real parts only: `proctor dev` (proctor with a real
// PostgreSQL and sshd on random loopback ports), real `psql` and `ssh` clients, and Debian's
// Chromium driven headless by playwright-core. Screenshots go to target/console-artifacts/.
//
//   node --test src/api/console/tests/        (after `cargo build` and `npm run build`)
//
// PROCTOR_BIN overrides target/debug/proctor; CHROMIUM overrides /usr/bin/chromium.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const BIN = process.env.PROCTOR_BIN ?? join(ROOT, "target/debug/proctor");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARTIFACTS = join(ROOT, "target/console-artifacts");
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
let dev; // { proc, data, info, log }
let browser;
const pageErrors = [];
const timings = {};

/** Spawns a process whose output is collected; `done(ms)` resolves with code and output. */
function run(cmd, args, opts = {}) {
  const proc = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], ...opts });
  children.add(proc);
  let stdout = "";
  let stderr = "";
  proc.stdout.on("data", (d) => (stdout += d));
  proc.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise((res) =>
    proc.on("close", (code, signal) => {
      children.delete(proc);
      res({ code, signal });
    }),
  );
  return {
    proc,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    async done(ms) {
      const t = setTimeout(() => proc.kill("SIGKILL"), ms);
      const r = await exited;
      clearTimeout(t);
      return { ...r, stdout, stderr };
    },
  };
}

async function api(path, token, init = {}) {
  const r = await fetch(dev.info.api_url + path, {
    ...init,
    headers: { Authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
  });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`${name} console: ${m.text()}`);
  });
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function login(page, token, role) {
  await page.goto(dev.info.api_url + "/");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.getByTestId("who").filter({ hasText: `(${role})` }).waitFor({ timeout: 10_000 });
  // The live event stream is connected (updates arrive without reloading).
  await page.locator("#live-state.live-live").waitFor({ timeout: 10_000 });
}

before(async () => {
  assert.ok(existsSync(BIN), `${BIN} is missing: run cargo build first`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const data = mkdtempSync(join(tmpdir(), "proctor-console-"));
  const started = Date.now();
  const proc = run(BIN, [
    "dev",
    "--data",
    data,
    "--postgres-listen",
    "127.0.0.1:0",
    "--ssh-listen",
    "127.0.0.1:0",
    "--api-listen",
    "127.0.0.1:0",
  ]);
  dev = { proc, data, info: null };
  const file = join(data, "dev.json");
  for (let i = 0; i < 240 && !dev.info; i++) {
    if (proc.proc.exitCode !== null) break;
    try {
      dev.info = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      await sleep(250);
    }
  }
  assert.ok(dev.info, `proctor dev did not start:\n${proc.stdout}\n${proc.stderr}`);
  timings.dev_start_ms = Date.now() - started;
  const index = await fetch(dev.info.api_url + "/");
  assert.equal(index.status, 200);
  assert.match(await index.text(), /<div id="app">/, "the binary embeds the built console");
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}, { timeout: 120_000 });

after(async () => {
  await browser?.close().catch(() => {});
  for (const c of children) if (c !== dev?.proc.proc) c.kill("SIGKILL");
  if (dev) {
    dev.proc.proc.kill("SIGTERM");
    const r = await dev.proc.done(20_000);
    writeFileSync(join(ARTIFACTS, "proctor-dev.log"), dev.proc.stdout + dev.proc.stderr);
    if (r.signal === "SIGKILL") console.log("proctor dev had to be killed");
    rmSync(dev.data, { recursive: true, force: true });
  }
  writeFileSync(join(ARTIFACTS, "timings.json"), JSON.stringify(timings, null, 2) + "\n");
  console.log("timings (ms):", JSON.stringify(timings));
}, { timeout: 60_000 });

// Interrupted (Ctrl-C, a CI timeout): stop proctor dev gracefully so it stops its PostgreSQL
// and sshd too, and kill the clients.
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    for (const c of children) c.kill(c === dev?.proc.proc ? "SIGTERM" : "SIGKILL");
    setTimeout(() => process.exit(130), 3000).unref();
  });
}

test("an approver approves a held DELETE on the approval page and psql completes", { timeout: 90_000 }, async () => {
  const t0 = Date.now();
  const page = await newPage("approver");
  await login(page, dev.info.tokens.approver, "approver");
  assert.match(page.url(), /#\/approvals/);
  await page.getByText("Nothing is waiting for approval.").waitFor();

  // psql starts after the page is open: the hold must arrive over the event stream.
  const psql = run("psql", [dev.info.postgres_dsn, "-XAtc", "delete from accounts"], {
    env: { ...process.env, PGCONNECT_TIMEOUT: "10" },
  });
  const held = Date.now();
  const card = page.locator("article.card", { hasText: "delete from accounts" });
  await card.waitFor({ timeout: 10_000 });
  timings.hold_shown_ms = Date.now() - held;
  assert.ok(timings.hold_shown_ms < 5_000, `the hold took ${timings.hold_shown_ms} ms to appear`);
  await sleep(300);
  assert.equal(psql.proc.exitCode, null, "psql waits while the statement is held");
  await assert.doesNotReject(card.getByText("dev-agent").first().waitFor());
  await shot(page, "1-approval-held");

  const reason = "console test: reviewed, dev data only";
  await card.locator("textarea").fill(reason);
  const clicked = Date.now();
  await card.getByRole("button", { name: "Approve" }).click();
  await page.getByTestId("approval-status").filter({ hasText: "Approved and released" }).waitFor({ timeout: 10_000 });
  const r = await psql.done(30_000);
  timings.approve_to_psql_done_ms = Date.now() - clicked;
  assert.equal(r.code, 0, `psql: ${r.stderr}`);
  assert.match(r.stdout, /DELETE 5/);
  await card.waitFor({ state: "detached", timeout: 10_000 });
  await page.getByText("Nothing is waiting for approval.").waitFor();
  await shot(page, "2-approval-released");

  // The recording names the approver's token and the reason typed in the page.
  const sessions = await api("/api/sessions?protocol=postgres&limit=5", dev.info.tokens.auditor);
  let found = null;
  for (const s of sessions) {
    const { events } = await api(`/api/sessions/${s.id}/events?limit=5000`, dev.info.tokens.auditor);
    found ??= events.find((e) => e.kind === "approval" && e.reason === reason);
  }
  assert.ok(found, "the approval with its reason is in the recording");
  assert.equal(found.outcome, "approved");
  await page.context().close();
  timings.scenario_approval_ms = Date.now() - t0;
});

test("an auditor finds a recorded SSH session by its commands and plays it", { timeout: 90_000 }, async () => {
  const t0 = Date.now();
  // An interactive shell on a pty, one line at a time, as a person or an agent would type.
  const ssh = run("ssh", ["-tt", "-o", "BatchMode=yes", ...dev.info.ssh_args]);
  // nproc is a program the dev agent has not used before: a first-use alert (echo, sleep and
  // printf only look, so they raise none).
  const lines = ["echo one", "sleep 0.3; echo two", "printf '%s\\n' proctor-$((6*7))", "nproc", "exit"];
  await sleep(800);
  for (const line of lines) {
    if (line === "exit") {
      // The agent's framework records its reasoning in the live session (clause 4.6).
      const live = await api("/api/live", dev.info.tokens.operator);
      const s = live.find((x) => x.protocol === "ssh");
      assert.ok(s, `the ssh session is live: ${JSON.stringify(live)}`);
      await api(`/api/sessions/${s.id}/annotations`, dev.info.tokens.agent, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ source: "planner", text: "checked the arithmetic before leaving" }),
      });
    }
    ssh.proc.stdin.write(line + "\n");
    await sleep(500);
  }
  const r = await ssh.done(20_000);
  assert.equal(r.code, 0, `ssh: ${r.stderr}`);
  assert.match(r.stdout, /proctor-42/);

  const page = await newPage("auditor");
  await login(page, dev.info.tokens.auditor, "auditor");
  assert.match(page.url(), /#\/sessions/);
  // Text search across sessions, then open the match.
  await page.fill("input[name=q]", "echo two");
  await page.click("form.search button[type=submit]");
  const match = page.locator("a.match", { hasText: "sleep 0.3; echo two" });
  await match.waitFor({ timeout: 10_000 });
  await shot(page, "3-search");
  await match.click();

  await page.getByTestId("verify").filter({ hasText: "verified" }).waitFor({ timeout: 15_000 });
  assert.equal(await page.getByTestId("verify").textContent(), "✓ verified");
  const timeline = page.getByTestId("timeline");
  const commands = await timeline.locator(".item-command .cmd").allTextContents();
  for (const line of lines) assert.ok(commands.includes(`$ ${line}`), `timeline lists ${line}: ${commands}`);
  // Reasoning and alerts in line with the commands.
  const reasoning = timeline.locator(".item-annotation", { hasText: "checked the arithmetic before leaving" });
  await reasoning.waitFor();
  assert.match(await reasoning.locator(".label").textContent(), /reasoning.*dev-agent.*planner/);
  // Proctor's own notes (here the shell's working directory) are not labelled as reasoning.
  const notes = await timeline.locator(".item-annotation", { hasText: "working directory" }).locator(".label").allTextContents();
  assert.ok(notes.length > 0 && notes.every((l) => l === "proctor's note"), `proctor's notes: ${notes}`);
  assert.ok((await timeline.locator(".item-alert").count()) > 0, "first-use alerts are shown");

  // Seek by command: from "echo two" on, the player shows the output that followed.
  const player = page.getByTestId("player");
  await player.locator(".ap-term").waitFor({ timeout: 10_000 });
  const played = Date.now();
  await timeline.locator(".item-command", { hasText: "echo two" }).locator("button.offset").click();
  await page.waitForFunction(
    () => (document.querySelector("[data-testid=player] .ap-term")?.textContent ?? "").includes("proctor-42"),
    null,
    { timeout: 15_000 },
  );
  timings.seek_to_output_ms = Date.now() - played;
  const screen = await player.locator(".ap-term").textContent();
  assert.match(screen, /two/);
  await page.locator(".item-command.current").first().waitFor({ timeout: 5_000 });
  await shot(page, "4-session-player");
  await page.context().close();
  timings.scenario_ssh_ms = Date.now() - t0;
});

test("an auditor reads the approved DELETE in its PostgreSQL statement timeline", { timeout: 90_000 }, async () => {
  const page = await newPage("auditor-pg");
  await login(page, dev.info.tokens.auditor, "auditor");
  await page.goto(`${dev.info.api_url}/#/sessions?q=${encodeURIComponent("DELETE FROM accounts")}&protocol=postgres`);
  const match = page.locator("a.match", { hasText: "delete from accounts" });
  await match.waitFor({ timeout: 10_000 });
  await match.click();
  await page.getByTestId("verify").filter({ hasText: "verified" }).waitFor({ timeout: 15_000 });
  const item = page.locator(".item-statement", { hasText: "delete from accounts" });
  await item.waitFor();
  await item.locator(".note", { hasText: "hold" }).waitFor();
  await item.locator(".note", { hasText: "approved by dev-approver" }).waitFor();
  await item.locator(".note", { hasText: "console test: reviewed" }).waitFor();
  await item.locator(".note.result", { hasText: "DELETE 5" }).waitFor();
  assert.ok(await item.evaluate((el) => el.classList.contains("found")), "the search hit is highlighted");
  await shot(page, "5-session-postgres");
  await page.context().close();
});

test("an operator kills a live session from the live sessions page", { timeout: 90_000 }, async () => {
  const t0 = Date.now();
  const psql = run("psql", [dev.info.postgres_dsn, "-XAtc", "select pg_sleep(60)"], {
    env: { ...process.env, PGCONNECT_TIMEOUT: "10" },
  });
  const page = await newPage("operator");
  await login(page, dev.info.tokens.operator, "operator");
  const row = page.locator("tr[data-session]", { hasText: "appdb" });
  await row.waitFor({ timeout: 10_000 });
  await row.getByRole("button", { name: "Kill…" }).click();
  await row.locator("input").fill("console test: runaway query");
  await row.getByRole("button", { name: "Kill session" }).click();
  await page.locator(".status", { hasText: "Killed" }).waitFor({ timeout: 10_000 });
  const r = await psql.done(20_000);
  assert.notEqual(r.code, 0, "psql was cut off");
  await row.waitFor({ state: "detached", timeout: 10_000 });
  await shot(page, "6-live-killed");
  const [s] = await api("/api/sessions?protocol=postgres&outcome=killed&limit=1", dev.info.tokens.auditor);
  assert.ok(s, "a killed session is recorded");
  assert.match(s.end_reason, /runaway query/);
  await page.context().close();
  timings.scenario_kill_ms = Date.now() - t0;
});

test("an approval card shows bidi overrides and invisible characters instead of obeying them", { timeout: 60_000 }, async () => {
  const page = await newPage("approver-hidden");
  await login(page, dev.info.tokens.approver, "approver");
  // Trojan Source: rendered as-is, the override makes this read as if it had a WHERE clause.
  const sql = "update ledger set note = 'x\u200by' /*\u202e 24=di EREHW \u2066*/";
  const psql = run("psql", [dev.info.postgres_dsn, "-XAtc", sql], {
    env: { ...process.env, PGCONNECT_TIMEOUT: "10" },
  });
  const card = page.locator("article.card", { hasText: "update ledger set note" });
  await card.waitFor({ timeout: 10_000 });
  const detail = card.locator("pre.detail");
  for (const cp of ["U+202E", "U+2066", "U+200B"]) {
    assert.equal(await detail.locator(`.cp[data-cp="${cp}"]`).count(), 1, `${cp} is marked`);
  }
  assert.match(await detail.locator('.cp[data-cp="U+202E"]').getAttribute("title"), /RIGHT-TO-LEFT OVERRIDE/);
  const shown = await detail.innerText();
  assert.equal(shown, "update ledger set note = 'x<U+200B>y' /*<U+202E> 24=di EREHW <U+2066>*/");
  assert.ok(!/[\u202e\u2066\u200b]/u.test(shown), "no override or invisible character reaches the page");
  await shot(page, "7-approval-hidden-characters");
  await card.locator("textarea").fill("console test: hidden characters");
  await card.getByRole("button", { name: "Deny" }).click();
  await card.waitFor({ state: "detached", timeout: 10_000 });
  const r = await psql.done(20_000);
  assert.notEqual(r.code, 0, "the denied statement failed");
  await page.context().close();
});

test("an approval card shows spaces that are letters, look-alike letters and covering marks", { timeout: 60_000 }, async () => {
  const page = await newPage("approver-lookalike");
  await login(page, dev.info.tokens.approver, "approver");
  // U+2002 is a letter to PostgreSQL: `x WHERE id IS NULL` is one alias and this DELETE has
  // no WHERE. Cyrillic а and ԝ inside ASCII words, `=` with a slash overlay, a struck-through
  // word and a stack of accents.
  const sql =
    "delete from ledger x\u2002WHERE\u2002id\u2002IS\u2002NULL /* \u0430ccounts \u051dhere id =\u0338 1, z\u0300\u0301\u0302\u0303, D\u0336ROP, \u0444\u0430\u0439\u043b */";
  const psql = run("psql", [dev.info.postgres_dsn, "-XAtc", sql], {
    env: { ...process.env, PGCONNECT_TIMEOUT: "10" },
  });
  const card = page.locator("article.card", { hasText: "delete from ledger x" });
  await card.waitFor({ timeout: 10_000 });
  const detail = card.locator("pre.detail");
  assert.equal(await detail.locator('.cp[data-cp="U+2002"]').count(), 4, "every en space is marked");
  assert.match(await detail.locator('.cp[data-cp="U+2002"]').first().getAttribute("title"), /EN SPACE/);
  assert.match(await detail.locator('.cp[data-cp="U+0430"]').first().getAttribute("title"), /looks like a Latin/);
  const shown = await detail.innerText();
  assert.equal(
    shown,
    "delete from ledger x<U+2002>WHERE<U+2002>id<U+2002>IS<U+2002>NULL /* <U+0430>ccounts <U+051D>here id =<U+0338> 1, z\u0300\u0301<U+0302><U+0303>, D<U+0336>ROP, \u0444\u0430\u0439\u043b */",
    "a whole Cyrillic word is text, not disguise",
  );
  // The group's header folds only ASCII: the en spaces are not turned into spaces there.
  const group = page.locator("details.group", { has: card });
  assert.equal(await group.locator('summary code .cp[data-cp="U+2002"]').count(), 4, "the header keeps the en spaces");
  await shot(page, "7b-approval-lookalikes");
  await card.locator("textarea").fill("console test: look-alikes");
  await card.getByRole("button", { name: "Deny" }).click();
  await card.waitFor({ state: "detached", timeout: 10_000 });
  const r = await psql.done(20_000);
  assert.notEqual(r.code, 0, "the denied statement failed");
  await page.context().close();
});

test("the approval queue groups look-alikes, puts the dangerous hold first and shows search_path", { timeout: 90_000 }, async () => {
  const page = await newPage("approver-queue");
  await login(page, dev.info.tokens.approver, "approver");
  const env = { ...process.env, PGCONNECT_TIMEOUT: "10" };
  // Six look-alike holds (held by pg-hold-side-effect-functions), then a DELETE of every row
  // behind a SET search_path in the same message. Both groups are critical, so the older group
  // comes first, but folded: the DELETE shows without scrolling through the look-alikes.
  const clients = [];
  for (let i = 1; i <= 6; i++) {
    clients.push(run("psql", [dev.info.postgres_dsn, "-XAtc", `select pg_cancel_backend(${1000 + i})`], { env }));
    await page.locator("article.card", { hasText: `pg_cancel_backend(${1000 + i})` }).waitFor({ state: "attached", timeout: 10_000 });
  }
  clients.push(run("psql", [dev.info.postgres_dsn, "-XAtc", "set search_path = public; delete from accounts"], { env }));
  const del = page.locator("article.card", { hasText: "delete from accounts" });
  await del.waitFor({ timeout: 10_000 });
  const groups = page.locator("details.group");
  assert.equal(await groups.count(), 2);
  const looks = groups.nth(0);
  assert.match(await looks.locator("summary").innerText(), /critical\s+6 held · dev-agent · select pg_cancel_backend\(0\)/);
  assert.equal(await looks.evaluate((d) => d.open), false, "six look-alikes start folded");
  const dangerous = groups.nth(1);
  assert.match(await dangerous.locator("summary").innerText(), /critical\s+1 held · dev-agent · delete from accounts/);
  assert.ok(await del.isVisible(), "the DELETE card is shown");
  const box = await del.boundingBox();
  const viewport = page.viewportSize();
  assert.ok(box && viewport && box.y < viewport.height, `the DELETE card starts on the first screen: ${JSON.stringify(box)}`);
  assert.match(await del.locator('[data-setting="search_path"]').innerText(), /public/);
  await shot(page, "8-approval-queue-grouped");
  for (const h of await api("/api/approvals", dev.info.tokens.approver)) {
    await api(`/api/approvals/${h.id}/deny`, dev.info.tokens.approver, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ reason: "console test: queue" }),
    });
  }
  for (const c of clients) assert.notEqual((await c.done(20_000)).code, 0);
  await page.context().close();
});

test("no script errors in any page", { timeout: 90_000 }, () => {
  assert.deepEqual(pageErrors, []);
});
