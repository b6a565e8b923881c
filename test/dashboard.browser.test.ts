// The dashboard in a real browser: Debian's headless Chromium driven by playwright-core, against
// a real `apex serve` in front of a live session. Logs in with a token, sees an agent pause live
// when `apex pause` runs in a terminal, resumes as an operator, and finds no buttons as a viewer;
// draws the session tree from branch records (parent_checkpoint, name) and memory size per checkpoint.
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext } from "playwright-core";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { LmdbStore, transactionSync } from "./helpers/store.js";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import { MANIFEST_FORMAT, signManifest } from "../plugins/checkpoint/manifest.js";
import { SupervisorChannel } from "../plugins/sharing/supervisor-channel.js";
import { Project, REPO_ROOT, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { proxy } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.2; done", beta: "while true; do sleep 0.2; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");
const SPIKE = "c2c2c2c2-0000-4000-8000-000000000000";
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let project: Project | undefined;
let context: BrowserContext | undefined;
let stopServer: (() => Promise<unknown>) | undefined;

// One Chromium for the file: a launch (and a persistent profile's) took ~1.5 s, in each test. Each
// test has a context of its own, closed after it: no page, cookie or storage is left to the next.
let browser: Browser | undefined;
async function newContext(options: { viewport?: { width: number; height: number }; timezoneId?: string } = {}): Promise<BrowserContext> {
  browser ??= await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: FLAGS });
  return browser.newContext(options);
}
const VIEWPORT = { viewport: { width: 1280, height: 900 } };
afterAll(async () => {
  await browser?.close();
});

afterEach(async () => {
  await context?.close();
  context = undefined;
  await stopServer?.();
  stopServer = undefined;
  // The project is cleaned up after this, by the harness.
});

describe("the dashboard in headless Chromium", () => {
  it("shows a pause live, the session tree and memory size, lets an operator resume, and shows a viewer no buttons", async () => {
    project = new Project(CONFIG);
    const ready = project.start();
    const sid = ready.session_id;
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stopServer = async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    };
    const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    const shareAs = (user: string, role: string, session = "current") => JSON.parse(project!.apex(["session", "share", session, user, "--role", role, "--json"]).stdout) as { url: string; token: string };
    const operator = shareAs("otto", "operator");
    const viewer = shareAs("vera", "viewer");
    expect(project.apex(["checkpoint", "create", "before the demo"]).status).toBe(0);
    // Branch records as `apex session branch` writes them (a name, the checkpoint branched from),
    // and an older session without a parent: the tree draws from these fields.
    const first = JSON.parse(project.apex(["checkpoint", "list", "--json", "--oldest"]).stdout).items[0] as { id: string; name: string; sequence: number };
    const store = LmdbStore.open(project.storeDir);
    const record = (id: string, fields: Record<string, unknown>) => ({ session_id: id, project_id: "p", status: "stopped", initial_task: null, agents: [], supervisor: null, created_at: new Date().toISOString(), updated_at: new Date().toISOString(), ended_at: new Date().toISOString(), ...fields });
    await store.set("/sessions/history/0ld0ld00-0000-4000-8000-000000000000", record("0ld0ld00-0000-4000-8000-000000000000", { created_at: "2026-01-01T00:00:00.000Z" }) as never);
    // experiment's checkpoint-001, spike's branch point, deleted with --force: its record keeps its id, as `checkpoint delete --force` keeps it.
    const spikePoint = "b1b1b1b1-0001-4000-8000-000000000000";
    await store.set("/sessions/history/b1b1b1b1-0000-4000-8000-000000000000", record("b1b1b1b1-0000-4000-8000-000000000000", { name: "experiment", parent_checkpoint: { id: first.id, session_id: sid, sequence: first.sequence, name: first.name }, parent_session: sid, deleted_points: [{ id: spikePoint, sequence: 1 }] }) as never);
    await store.set("/sessions/history/c2c2c2c2-0000-4000-8000-000000000000", record("c2c2c2c2-0000-4000-8000-000000000000", { name: "spike", parent_checkpoint: { id: spikePoint, session_id: "b1b1b1b1-0000-4000-8000-000000000000", sequence: 1, name: "checkpoint-001" } }) as never);
    // The branch's branch has more checkpoints than the page asks for (500): their catalog entries, as
    // checkpoint.list reads them (taking that many real ones would cost the test seconds).
    const catalog = Catalog.of(store);
    transactionSync(store, () => {
      for (let sequence = 1; sequence <= 505; sequence++) {
        const name = `checkpoint-${String(sequence).padStart(3, "0")}`;
        const at = new Date(Date.UTC(2026, 0, 1, 0, 0, sequence)).toISOString();
        catalog.putCheckpoint(signManifest({ format: MANIFEST_FORMAT, id: randomUUID(), session_id: SPIKE, sequence, name, parent: null, created_at: at, description: `step ${sequence}`, trigger: "manual", pinned: false, revision: sequence, memory: { root: null, keys: sequence, scope: { include: ["/"], exclude: ["/sessions"] } }, tasks: { root: null, count: 0 }, agents: { root: null, count: 0 }, git_state: null, data: {} }));
      }
      catalog.setLastSequence(SPIKE, 505);
    });
    await store.close();

    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    // Nothing the page asks for is missing: its icon was (every load, a 404 for /favicon.ico in the server's log and the console).
    const missing: string[] = [];
    page.on("response", (response) => void (response.status() === 404 && missing.push(new URL(response.url()).pathname)));
    await page.goto(operator.url);
    await page.locator("#who", { hasText: "otto (operator)" }).waitFor();
    await page.waitForLoadState("load");
    expect(missing).toEqual([]);
    expect(await page.locator('link[rel="icon"]').getAttribute("href")).toBe("/assets/icon.svg");
    const icon = await page.request.get(`${url}/assets/icon.svg`);
    expect(icon.status()).toBe(200);
    expect(icon.headers()["content-type"]).toBe("image/svg+xml");
    // The token left the address bar as soon as the page read it.
    expect(page.url()).toBe(`${url}/`);
    await page.locator('tr[data-agent="alpha"] .status', { hasText: "running" }).waitFor();

    // The session tree as a grant of this session sees it: this session (marked) and what it descends
    // from, which is nothing here; its branches and the unrelated older session are not its grant's to see.
    const here = page.locator(`#tree > li[data-session="${sid}"].here`);
    await here.waitFor();
    expect(await page.locator("#tree li").evaluateAll((items) => items.map((item) => (item as HTMLElement).dataset.session))).toEqual([sid]);

    // Memory size per checkpoint: a point per checkpoint, one more when a checkpoint records more keys.
    const memoryChart = page.locator("#memory-chart");
    await waitFor("the memory plot", async () => Number(await memoryChart.getAttribute("data-points")) >= 2);
    const before = (await memoryChart.getAttribute("data-keys"))!.split(",").map(Number);
    expect(await page.locator("#memory-chart .uplot, #chart .uplot").count()).toBe(2);
    expect(project.apex(["memory", "set", "/notes/one", "1"]).status).toBe(0);
    expect(project.apex(["memory", "set", "/notes/two", "2"]).status).toBe(0);
    expect(project.apex(["checkpoint", "create", "more memory"]).status).toBe(0);
    await waitFor("a new point", async () => Number(await memoryChart.getAttribute("data-points")) === before.length + 1);
    const after = (await memoryChart.getAttribute("data-keys"))!.split(",").map(Number);
    expect(after.at(-1)).toBe(before.at(-1)! + 2);
    // Two checkpoints ticked: their diff.
    await page.locator("#timeline li", { hasText: "before the demo" }).locator("input").check();
    await page.locator("#timeline li", { hasText: "more memory" }).locator("input").check();
    await page.locator("#diff", { hasText: "added   /notes/one" }).waitFor();
    expect(await page.locator("#diff").textContent()).toMatch(/added +\/notes\/two/);

    expect(project.apex(["pause"]).status).toBe(0);
    await page.locator('tr[data-agent="alpha"] .status', { hasText: "paused" }).waitFor({ timeout: 10_000 });
    await page.locator("#session-status", { hasText: "paused" }).waitFor();
    await page.locator("#events li", { hasText: "session.paused" }).waitFor();
    // The README's screenshots: refreshed with APEX_UPDATE_SCREENSHOTS=1, else kept in the temp project.
    const shots = process.env.APEX_UPDATE_SCREENSHOTS ? join(REPO_ROOT, "docs") : join(project.dir, "shots");
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });

    // Paused: Resume is the button to press, Pause is greyed out. Both could be pressed whatever the
    // state, and the refusal of the one that did not apply stayed on the page as an error.
    await waitFor("Pause greyed out", async () => (await page.locator("#btn-pause").isDisabled()) && !(await page.locator("#btn-resume").isDisabled()), 15_000);
    await page.locator("#btn-resume").click();
    await page.locator('tr[data-agent="alpha"] .status', { hasText: "running" }).waitFor({ timeout: 10_000 });
    await waitFor("Resume greyed out", async () => (await page.locator("#btn-resume").isDisabled()) && !(await page.locator("#btn-pause").isDisabled()), 15_000);
    expect(project.status().session!.status).toBe("active");
    const trail = project.apex(["session", "history", sid]).stdout;
    expect(trail).toMatch(/resumed.*\[user:otto\]/);

    // A burst of events (300 tasks added through the supervisor's socket, as busy agents would):
    // the page refreshes a few times, not once per event, and ends up showing them all. Before,
    // each event fetched the status, the tasks and the checkpoints: 900 calls for this burst.
    const statusCalls: string[] = [];
    const countStatus = (request: { url(): string }) => void (request.url().endsWith("/rpc/session.status") && statusCalls.push(request.url()));
    page.on("request", countStatus);
    const began = Date.now();
    const channel = new SupervisorChannel(ready.socket);
    try {
      for (let i = 0; i < 300; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => channel.call("task.add", { title: `burst ${i + k}`, actor: "user:burst" })));
    } finally {
      channel.close();
    }
    await page.locator('#board [data-column="pending"] h3', { hasText: "pending (300)" }).waitFor({ timeout: 15_000 });
    await page.waitForTimeout(1000);
    page.off("request", countStatus);
    // At most one refresh every half second (however slow this machine is now), far fewer than the events.
    expect(statusCalls.length).toBeLessThanOrEqual(Math.ceil((Date.now() - began) / 500) + 2);
    expect(statusCalls.length).toBeLessThan(100);
    // The newest events only, the newest on top: the list kept every event while the page was open
    // (thousands of rows for a busy session left open for a day, each one more for the page to lay out).
    const listed = await page.locator("#events li").allTextContents();
    expect(listed.length).toBe(100);
    expect(listed[0]).toContain("task.added");

    // The server restarts (same address): the page says the stream ended, then, once the server
    // answers again, follows the events again and the notice goes. Before, no event came again
    // until the page was reloaded, and the refresh error stayed.
    await stopServer();
    await page.locator("#notice", { hasText: /./ }).waitFor();
    const restarted = project.apexAsync(["serve", "--listen", url.replace("http://", ""), "--json"]);
    stopServer = async () => {
      if (restarted.child.exitCode === null) restarted.child.kill("SIGTERM");
      await restarted.done;
    };
    await waitFor("apex serve again", () => (restarted.output().includes("}") ? true : undefined), 30_000);
    // The notice goes once the events are followed again, with no event since: before, it said the
    // stream had ended until the next event came, which in a quiet session could be hours.
    await waitFor("the notice gone", async () => (await page.locator("#notice").textContent()) === "", 10_000);
    const pausedBefore = await page.locator("#events li", { hasText: "session.paused" }).count();
    expect(project.apex(["pause"]).status).toBe(0);
    await waitFor("the pause, streamed again", async () => (await page.locator("#events li", { hasText: "session.paused" }).count()) === pausedBefore + 1, 15_000);
    expect(project.apex(["resume"]).status).toBe(0);

    // A viewer, logging in with the form: everything to read, no button to press. The session by
    // its short id, as `session list` and `session share` print it: the page shows the session as
    // the whole id and marks it in the tree (it showed what was typed, and marked no session).
    const other = await context.newPage();
    await other.goto(`${url}/`);
    await other.evaluate(() => sessionStorage.clear());
    await other.reload();
    await other.locator("#login-session").fill(sid.slice(0, 8));
    await other.locator("#login-token").fill(viewer.token);
    await other.locator("#login button[type=submit]").click();
    await other.locator("#who", { hasText: "vera (viewer)" }).waitFor();
    await other.locator('tr[data-agent="beta"]').waitFor();
    expect(await other.locator("#btn-pause, #btn-resume, #btn-checkpoint").count()).toBe(0);
    expect(await other.locator("#session-id").textContent()).toBe(sid);
    await other.locator(`#tree > li[data-session="${sid}"].here`).waitFor();
    // Who is connected: a viewer is shown itself only, not the operator's page open beside it.
    await other.locator("#connected", { hasText: "vera (viewer)" }).waitFor({ timeout: 15_000 });
    expect(await other.locator("#connected").textContent()).toBe("Connected: vera (viewer)");
    await other.screenshot({ path: join(shots, "dashboard-viewer.png"), fullPage: true });

    // Access revoked while the page is open: the login form comes back with the reason, and the page
    // stops calling with the refused token (before, it kept refreshing every 2 s, each call a failed
    // login that slowed down every client at this address). The live stream says so first, and the
    // page signs out on it: it used to wait for its next refresh, three calls refused (three failed
    // logins counted against the address) and the reason lost for "not valid".
    const calls: string[] = [];
    other.on("request", (request) => void (request.url().includes("/api/") && calls.push(request.url())));
    expect(project.apex(["session", "unshare", "current", "vera"]).status).toBe(0);
    await other.locator("#login-error", { hasText: `vera's access to session ${sid} was revoked` }).waitFor({ timeout: 10_000 });
    // The header no longer names the user and the session's state (it did, above the login form).
    expect(await other.locator("header").evaluate((header) => [...header.querySelectorAll("span")].map((span) => span.textContent))).toEqual(["", "", "", ""]);
    const made = calls.length;
    const signedOut = Date.now();
    // Meanwhile (the 4.5 s the revoked page is watched are otherwise spent waiting), another page,
    // another user: a page whose live stream goes silent (a network gone under it: the connection
    // neither delivers nor closes): once the status counts events the stream has not brought, the
    // page follows again. Before, its events list stopped for good, while the rest of the page still refreshed.
    const link = await silentStreamLink(url);
    const sol = shareAs("sol", "viewer");
    const fifth = await context.newPage();
    await fifth.goto(`http://${link.address}/#session=${sid}&token=${sol.token}`);
    await fifth.locator("#who", { hasText: "sol (viewer)" }).waitFor();
    await waitFor("the stream silenced", () => link.silenced());
    expect(project.apex(["checkpoint", "create", "while the stream is silent"]).status).toBe(0);
    await fifth.locator("#events li").first().filter({ hasText: "checkpoint · user:" }).waitFor({ timeout: 15_000 });
    await fifth.close();
    await other.waitForTimeout(Math.max(0, signedOut + 4500 - Date.now()));
    expect(calls.slice(made)).toEqual([]);
    expect(await other.evaluate(() => sessionStorage.getItem("apex.token"))).toBeNull();
    // Signing in again on that page with a new token starts the page over: before, a second pair
    // of charts was drawn under the first, and the earlier events stayed with the new ones after them.
    const shown = await other.locator("#events li").count();
    expect(shown).toBeGreaterThan(0);
    const renewed = shareAs("vera", "viewer");
    await other.locator("#login-token").fill(renewed.token);
    await other.locator("#login button[type=submit]").click();
    await other.locator("#app").waitFor({ state: "visible" });
    await other.locator("#events li").first().waitFor();
    await other.locator('tr[data-agent="beta"]').waitFor();
    expect(await other.locator("#memory-chart .uplot, #chart .uplot").count()).toBe(2);
    // The last 20 events, and what came since (nothing much): not the earlier list as well.
    expect(await other.locator("#events li").count()).toBeLessThanOrEqual(22);
    expect(project.apex(["session", "unshare", "current", "vera"]).status).toBe(0);
    await other.locator("#login-error", { hasText: "was revoked" }).waitFor({ timeout: 10_000 });
    // A new invite opened in that tab: its address differs from the page's by the fragment only, so
    // the browser loads no page. Before, nothing happened: the page still said the access was revoked,
    // and the new token sat in the address bar.
    const invited = shareAs("vera", "viewer");
    await other.goto(invited.url);
    await other.locator("#app").waitFor({ state: "visible", timeout: 10_000 });
    await other.locator('tr[data-agent="beta"]').waitFor();
    expect(other.url()).toBe(`${url}/`);
    expect(await other.evaluate(() => sessionStorage.getItem("apex.token"))).toBe(invited.token);

    // A grant of the branch's branch: the tree from the session it descends from, down to it (marked),
    // each branch labelled with the checkpoint it started from; the unrelated older session is left out.
    const spike = shareAs("sam", "viewer", "c2c2c2c2-0000-4000-8000-000000000000");
    const third = await context.newPage();
    await third.goto(spike.url);
    await third.locator("#who", { hasText: "sam (viewer)" }).waitFor();
    const root = third.locator(`#tree > li[data-session="${sid}"]`);
    await root.waitFor();
    await root.locator(':scope > ul > li[data-session="b1b1b1b1-0000-4000-8000-000000000000"]', { hasText: `experiment stopped from ${first.name}` }).waitFor();
    // experiment's checkpoint-001 is no longer in the store: spike hangs under it drawn deleted, as session tree draws it.
    await root.locator('li[data-session="b1b1b1b1-0000-4000-8000-000000000000"] > ul > li.deleted > ul > li[data-session="c2c2c2c2-0000-4000-8000-000000000000"].here', { hasText: "spike" }).waitFor();
    expect(await third.locator("#tree > li").evaluateAll((items) => items.map((item) => (item as HTMLElement).dataset.session))).toEqual([sid]);
    // Its 505 checkpoints: the timeline shows the newest, the memory plot the newest 500, oldest first.
    // Before, the page asked for the oldest 500: both stopped at checkpoint-500 for good.
    await third.locator("#timeline li").first().filter({ hasText: "checkpoint-505" }).waitFor();
    expect(await third.locator("#timeline li").count()).toBe(20);
    const spikeChart = third.locator("#memory-chart");
    expect(await spikeChart.getAttribute("data-points")).toBe("500");
    expect((await spikeChart.getAttribute("data-keys"))!.split(",").map(Number)).toEqual(Array.from({ length: 500 }, (_, i) => i + 6));
    await third.close();

    // A wrong token gets the login form back with the server's message.
    await other.evaluate(() => sessionStorage.clear());
    await other.reload();
    await other.locator("#login-session").fill(sid);
    await other.locator("#login-token").fill("apx_0000000000000000_" + "A".repeat(43));
    await other.locator("#login button[type=submit]").click();
    await other.locator("#login-error", { hasText: "not valid" }).waitFor();

    // The session ends: the page keeps showing it, read-only (buttons greyed out).
    expect(project.apex(["stop"]).status).toBe(0);
    await page.locator("#session-status", { hasText: "stopped" }).waitFor({ timeout: 10_000 });
    expect(await page.locator("#btn-pause").isDisabled()).toBe(true);
    await page.locator("#timeline li", { hasText: "before the demo" }).waitFor();
    await page.locator('tr[data-agent="alpha"] .status', { hasText: "stopped" }).waitFor();
    // Its live stream ended with it: no alert says so, the badge does (it said "The live stream ended." for good, as when the server fails).
    await waitFor("the notice gone once the session stopped", async () => (await page.locator("#notice").textContent()) === "", 10_000);

    // Continued while the page is open: the page follows it again, its buttons back.
    expect(project.apex(["start", "--continue", sid]).status).toBe(0);
    await page.locator("#session-status", { hasText: "active" }).waitFor({ timeout: 10_000 });
    await page.locator('tr[data-agent="alpha"] .status', { hasText: "running" }).waitFor({ timeout: 10_000 });
    await page.locator("#events li", { hasText: "session.continued" }).first().waitFor({ timeout: 10_000 });
    expect(await page.locator("#btn-pause").isDisabled()).toBe(false);
    // Its supervisor killed (no event says so): the session tree says interrupted with the badge.
    // It called the session active beside an "interrupted" badge until its next refresh, 15 s later.
    const supervisor = project.status().session!.supervisor!.pid;
    process.kill(supervisor, "SIGKILL");
    await page.locator("#session-status", { hasText: "interrupted" }).waitFor({ timeout: 10_000 });
    await page.locator(`#tree li[data-session="${sid}"] > .node .status`, { hasText: "interrupted" }).waitFor({ timeout: 1500 });

    // A page opened while the server cannot check its token (here it refuses this address for a
    // moment, 429, for failed logins from it): the token is kept and Connect tries it again. Before,
    // any failure forgot it, as if refused, and an invite's token is shown only once.
    const fresh = shareAs("fay", "viewer");
    const guess = () => fetch(`${url}/api/sessions/${sid}/rpc/whoami`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer apx_0000000000000000_${"B".repeat(43)}` }, body: "{}" });
    // Failures from this address, one at a time, until they are answered late (each twice as late
    // as the last: 100 ms after three free, up to 5 s): past 3 s, the next is held 5 s, the time the
    // page has to open and be refused (at 800 ms, the next was held 1.6 s, which a loaded machine's
    // page load could outlast, to log in and find no error).
    for (let late = 0; late < 3000; ) {
      const began = Date.now();
      expect((await guess()).status).toBe(401);
      late = Date.now() - began;
    }
    const pending = guess();
    const fourth = await context.newPage();
    await fourth.goto(fresh.url);
    await fourth.locator("#login-error", { hasText: "Too many failed logins" }).waitFor();
    expect(await fourth.evaluate(() => sessionStorage.getItem("apex.token"))).toBe(fresh.token);
    expect((await pending).status).toBe(401);
    await fourth.locator("#login button[type=submit]").click();
    await fourth.locator("#who", { hasText: "fay (viewer)" }).waitFor();
    // Long: one session, one server and one browser for everything the page goes through (a loaded machine takes over a minute).
  }, 150_000);
});

/**
 * A TCP link to `url` that forwards both ways, except the first connection that asks for an event
 * stream: from that request on it passes nothing and closes nothing, as a network gone under it.
 */
function silentStreamLink(url: string): Promise<{ address: string; silenced(): boolean }> {
  return silentLink(url, "/stream HTTP/1.1");
}

/**
 * A TCP link to `url` that forwards both ways, except the first connection to send `asks` (a part of
 * a request line) once `armed()` says so: from that request on it passes nothing and closes nothing.
 */
async function silentLink(url: string, asks: string, armed = () => true): Promise<{ address: string; silenced(): boolean }> {
  const target = new URL(url);
  let silenced = false;
  const sockets = new Set<Socket>();
  const link = createNetServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    let silent = false;
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
    }
    client.on("data", (chunk: Buffer) => {
      if (!silenced && armed() && chunk.toString("latin1").includes(asks)) silent = silenced = true;
      if (!silent) upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => void (!silent && client.write(chunk)));
  });
  await new Promise<void>((resolve) => link.listen(0, "127.0.0.1", resolve));
  const previous = stopServer;
  stopServer = async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => link.close(resolve));
    await previous?.();
  };
  return { address: `127.0.0.1:${(link.address() as AddressInfo).port}`, silenced: () => silenced };
}

describe("the API from a page of another origin, in headless Chromium", () => {
  it("answers an origin --cors names, calls and streams alike, and no other origin", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    // The other origin's page: any page will do; what matters is where it is loaded from.
    const pages = createServer((_request, response) => response.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>ui</title>"));
    await new Promise<void>((resolve) => pages.listen(0, "127.0.0.1", resolve));
    const pagePort = (pages.address() as AddressInfo).port;
    const allowedOrigin = `http://localhost:${pagePort}`;
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json", "--cors", allowedOrigin]);
    stopServer = async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
      await new Promise((resolve) => pages.close(resolve));
    };
    const api = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    const { token } = JSON.parse(project.apex(["session", "share", "current", "ursula", "--role", "viewer", "--json"]).stdout) as { token: string };

    context = await newContext();
    const page = await context.newPage();
    /** whoami and the first events of the stream, as the page at `origin` gets them (or why not). */
    const fromPage = (origin: string) =>
      page.goto(`${origin}/`).then(() =>
        page.evaluate(async ({ api, sid, token }) => {
          const headers = { "content-type": "application/json", authorization: `Bearer ${token}` };
          try {
            const call = await fetch(`${api}/api/sessions/${sid}/rpc/whoami`, { method: "POST", headers, body: "{}" });
            const whoami = (await call.json()) as { result: { user: string } };
            const stream = await fetch(`${api}/api/sessions/${sid}/stream`, { method: "POST", headers, body: JSON.stringify({ "events.subscribe": { from_seq: 0 } }) });
            const reader = stream.body!.getReader();
            let text = "";
            while (!text.includes("event: events.subscribe")) text += new TextDecoder().decode((await reader.read()).value);
            await reader.cancel();
            return { user: whoami.result.user, streamed: true };
          } catch (error) {
            return { refused: String(error) };
          }
        }, { api, sid, token }),
      );
    expect(await fromPage(allowedOrigin)).toEqual({ user: "ursula", streamed: true });
    // 127.0.0.1 is another origin than localhost: not named by --cors, so the browser refuses.
    expect(await fromPage(`http://127.0.0.1:${pagePort}`)).toMatchObject({ refused: expect.stringContaining("Failed to fetch") });
  });
});

/** A new project's session, served by `apex serve` on loopback and shared with vera as a viewer. */
async function servedToViewer(): Promise<{ sid: string; url: string; token: string; socket: string }> {
  const served = new Project(CONFIG);
  project = served;
  const { session_id: sid, socket } = served.start();
  const run = served.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
  stopServer = async () => {
    if (run.child.exitCode === null) run.child.kill("SIGTERM");
    await run.done;
  };
  const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
  const { token } = JSON.parse(served.apex(["session", "share", "current", "vera", "--role", "viewer", "--json"]).stdout) as { token: string };
  return { sid, url, token, socket };
}

describe("the dashboard of a viewer, whose session's last events are shares", () => {
  it("lists no share event, and follows the one stream: the events it is not shown do not leave it behind the status", async () => {
    const { sid, url, token } = await servedToViewer();
    // The session's last events: grants the viewer is not to learn of (the status's event_seq counts them).
    for (const user of ["otto", "olga"]) expect(project!.apex(["session", "share", "current", user, "--role", "operator"]).status).toBe(0);
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    const streams: string[] = [];
    page.on("request", (request) => void (request.url().endsWith("/stream") && streams.push(request.url())));
    await page.goto(`${url}/#session=${sid}&token=${token}`);
    await page.locator("#who", { hasText: "vera (viewer)" }).waitFor();
    await page.locator("#events li", { hasText: "session.started" }).waitFor();
    // The page takes its stream as dead once the status (refreshed every 2 s) has counted events it has
    // not had for 5 s: with the shares left out and nothing in their place, it followed the session
    // again every 6 s or so, for ever.
    await page.waitForTimeout(10_000);
    expect(streams.length).toBe(1);
    expect(await page.locator("#events li", { hasText: "share." }).count()).toBe(0);
    expect(await page.locator("#notice").textContent()).toBe("");
  });
});

describe("the dashboard's plots of a lone point", () => {
  it("draw a session's one checkpoint, and the first sample, over minutes, not over years to come", async () => {
    const { sid, url, token } = await servedToViewer();
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${url}/#session=${sid}&token=${token}`);
    // The session's one checkpoint (onStart): uPlot's own range for one point ran to 2029.
    await page.locator("#memory-chart[data-points='1'][data-span]").waitFor();
    expect(Number(await page.locator("#memory-chart").getAttribute("data-span"))).toBe(120);
    // Tasks and utilization: sampled at each refresh (every 2 s), the first one alone at first.
    await page.locator("#chart[data-span]").waitFor();
    expect(Number(await page.locator("#chart").getAttribute("data-span"))).toBeLessThanOrEqual(120);
  });
});

describe("the dashboard's header", () => {
  it("names a branch in its header as apex status does, by its name with its whole id after it (the id alone was shown)", async () => {
    project = new Project(CONFIG);
    project.start();
    expect(project.apex(["session", "branch", "latest", "feat"]).status).toBe(0);
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stopServer = async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    };
    const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    const { token, session_id: feat } = JSON.parse(project.apex(["session", "share", "feat", "vera", "--json"]).stdout) as { token: string; session_id: string };
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${url}/#session=${feat}&token=${token}`);
    await page.locator("#session-status", { hasText: "stopped" }).waitFor();
    expect(await page.locator("#session-id").textContent()).toBe(`feat (${feat})`);
  });
});

describe("the dashboard's buttons", () => {
  it("look greyed out when they do not apply (Resume of a running session), not like the ones that do", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stopServer = async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    };
    const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    const { token } = JSON.parse(project.apex(["session", "share", sid, "otto", "--role", "operator", "--json"]).stdout) as { token: string };
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${url}/#session=${sid}&token=${token}`);
    await waitFor("Resume disabled", async () => (await page.locator("#btn-resume").isDisabled()) && !(await page.locator("#btn-pause").isDisabled()), 10_000);
    // The header's own button colours hid the browser's look of a disabled button: Resume looked as
    // pressable as Pause (same colours, opacity and pointer), which the README says is greyed out.
    const look = (id: string) => page.locator(id).evaluate((button) => {
      const style = getComputedStyle(button);
      return { color: style.color, background: style.backgroundColor, opacity: style.opacity, cursor: style.cursor };
    });
    const [pause, resume, checkpoint] = [await look("#btn-pause"), await look("#btn-resume"), await look("#btn-checkpoint")];
    expect(checkpoint).toEqual(pause);
    expect(resume).not.toEqual(pause);
    expect(Number(resume.opacity)).toBeLessThan(1);
    expect(resume.cursor).not.toBe("pointer");
  });
});

describe("the dashboard behind a proxy that answers for the server", () => {
  it("says the proxy answered (its status), not that a reply was not JSON, and keeps the token", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    // A proxy in front of the server: while `down`, it answers the API with its own HTML error page (nginx's 502).
    let down = true;
    const proxy = createServer((request, response) => {
      if (down && request.url!.startsWith("/api/")) {
        response.writeHead(502, { "content-type": "text/html" }).end("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>");
        return;
      }
      const forwarded = httpRequest(`${url}${request.url}`, { method: request.method, headers: { ...request.headers, host: new URL(url).host } }, (reply) => {
        response.writeHead(reply.statusCode!, reply.headers);
        reply.pipe(response);
      });
      response.on("close", () => forwarded.destroy());
      request.pipe(forwarded);
    });
    stopServer = async () => {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    };
    const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const { token } = JSON.parse(project.apex(["session", "share", "current", "pia", "--role", "operator", "--json"]).stdout) as { token: string };
    context = await newContext();
    const page = await context.newPage();
    // Before, the page said: Unexpected token '<', "<html><hea"... is not valid JSON.
    const said = "The server answered HTTP 502 Bad Gateway, not with APEX's reply";
    await page.goto(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}/#session=${sid}&token=${token}`);
    await page.locator("#login-error", { hasText: said }).waitFor();
    expect(await page.evaluate(() => sessionStorage.getItem("apex.token"))).toBe(token);
    down = false;
    await page.locator("#login button[type=submit]").click();
    await page.locator("#who", { hasText: "pia (operator)" }).waitFor();
    // A refresh the proxy answers: the notice says so, and goes once the server answers again.
    down = true;
    await page.locator("#notice", { hasText: said }).waitFor({ timeout: 10_000 });
    down = false;
    await waitFor("the notice gone", async () => (await page.locator("#notice").textContent()) === "", 10_000);
    // Unshared: the login form, and no operator's buttons left above it (they stayed, and did nothing when pressed).
    expect(await page.locator("#btn-pause, #btn-resume, #btn-checkpoint").count()).toBe(3);
    expect(project.apex(["session", "unshare", "current", "pia"]).status).toBe(0);
    await page.locator("#login-error", { hasText: "was revoked" }).waitFor({ timeout: 10_000 });
    expect(await page.locator("#btn-pause, #btn-resume, #btn-checkpoint").count()).toBe(0);
    expect(await page.locator("#who").textContent()).toBe("");
  });
});

describe("the dashboard's session tree", () => {
  it("draws a deleted branch point with its branches under it and which of them record it, and a deleted merge checkpoint with what it merged in, marked deleted, as session tree does", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const point = JSON.parse(project.apex(["checkpoint", "create", "fork", "--json"]).stdout) as { id: string };
    const later = JSON.parse(project.apex(["checkpoint", "create", "later", "--json"]).stdout) as { id: string; name: string; sequence: number };
    const exp = (JSON.parse(project.apex(["session", "branch", point.id, "exp", "--json"]).stdout) as { session_id: string }).session_id;
    // exp2, branched from it too, whose first checkpoint (which recorded the branch point) is deleted: only exp still records it.
    const exp2 = (JSON.parse(project.apex(["session", "branch", point.id, "exp2", "--json"]).stdout) as { session_id: string }).session_id;
    // (its first: the list comes newest first, and a branch may have taken another checkpoint by then)
    const exp2First = (JSON.parse(project.apex(["checkpoint", "list", "--session", "exp2", "--json"]).stdout) as { items: Array<{ id: string; name: string; sequence: number }> }).items.reduce((a, b) => (a.sequence < b.sequence ? a : b));
    // A merge of main's later checkpoint into exp whose checkpoint is gone, as exp's record keeps its edge (merge-base.ts recordMerge);
    // and one of exp2's first checkpoint, deleted below, so that exp2 is of exp's ancestry, which exp's grant sees.
    const merge = "d3d3d3d3-0000-4000-8000-000000000000";
    const store = LmdbStore.open(project.storeDir);
    const record = store.get(`/sessions/history/${exp}`) as Record<string, unknown>;
    const from = { session_id: sid, sequence: later.sequence, id: later.id, name: later.name };
    const fromExp2 = { session_id: exp2, sequence: exp2First.sequence, id: exp2First.id, name: exp2First.name };
    await store.set(`/sessions/history/${exp}`, {
      ...record,
      merges: [
        { id: merge, sequence: 2, created_at: new Date().toISOString(), description: `merge ${sid.slice(0, 8)}/${later.name} into exp`, from },
        { id: "e4e4e4e4-0000-4000-8000-000000000000", sequence: 3, created_at: new Date().toISOString(), description: `merge exp2/${exp2First.name} into exp`, from: fromExp2 },
      ],
    } as never);
    // exp3, branched from that merge checkpoint before it was deleted (its record as `session branch` writes it): the node is both a merge and a branch point.
    const exp3 = "f5f5f5f5-0000-4000-8000-000000000000";
    const { merges: _merges, ...expRecord } = record;
    await store.set(`/sessions/history/${exp3}`, { ...expRecord, session_id: exp3, name: "exp3", parent_checkpoint: { id: merge, session_id: exp, sequence: 2, name: "checkpoint-002" }, parent_session: exp } as never);
    await store.close();
    // Deleted once merged in: exp2's record keeps it, and the edge from exp's merge is borne out (sharing/archive.ts sessionAncestry).
    expect(project.apex(["checkpoint", "delete", exp2First.id, "--force"]).status).toBe(0);
    expect(project.apex(["checkpoint", "delete", point.id, "--force"]).status).toBe(0);
    // What session tree says of the branch point both branches came from.
    const said = "exp, exp2 branched from it (exp recorded it: a merge of exp still diffs against it; nothing recorded it for exp2: a merge of exp2 falls back to an older base)";
    expect(project.apex(["session", "tree"]).stdout).toContain(`checkpoint-002 deleted: ${said}`);
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stopServer = async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    };
    const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    const { token } = JSON.parse(project.apex(["session", "share", "exp", "sam", "--role", "viewer", "--json"]).stdout) as { token: string };
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${url}/#session=${exp}&token=${token}`);
    // exp hangs under main's deleted checkpoint-002 (it hung under main, from a checkpoint nothing said was gone).
    const deleted = page.locator(`#tree > li[data-session="${sid}"] > ul > li.deleted[data-checkpoint="${point.id}"]`);
    await deleted.locator(":scope > .node", { hasText: "checkpoint-002 (deleted)" }).waitFor();
    // Shared by two branches of which only exp records it: the dashboard says so as session tree does, naming each.
    expect(await deleted.locator(":scope > .from").textContent()).toBe(said);
    const branch = deleted.locator(`:scope > ul > li[data-session="${exp}"].here`);
    expect(await branch.locator(":scope > .from").textContent()).toBe("from checkpoint-002 (deleted)");
    expect(await deleted.locator(`:scope > ul > li[data-session="${exp2}"] > .from`).textContent()).toBe("from checkpoint-002 (deleted)");
    // The merge checkpoint, deleted, with its edge to what it merged in.
    const merged = branch.locator(`:scope > .merge.deleted[data-checkpoint="${merge}"]`);
    expect(await merged.getAttribute("data-merged-from")).toBe(later.id);
    expect(await merged.textContent()).toBe(`⇠ checkpoint-002 (deleted): merge ${sid.slice(0, 8)}/${later.name} into exp (its session recorded what it merged in: a later merge still finds it)`);
    // exp's grant does not see exp3: the merge checkpoint exp3 came off is a merge checkpoint to it, no branch point of no branch.
    expect(await branch.locator(`li.deleted[data-checkpoint="${merge}"]`).count()).toBe(0);

    // exp3's grant sees both roles of it, as session tree draws them: exp's merge line, and the branch point exp3 hangs under.
    const shared = JSON.parse(project.apex(["session", "share", "exp3", "tia", "--role", "viewer", "--json"]).stdout) as { token: string };
    const third = await context.newPage();
    await third.goto(`${url}/#session=${exp3}&token=${shared.token}`);
    const expItem = third.locator(`#tree li[data-session="${exp}"]`);
    const point3 = expItem.locator(`:scope > ul > li.deleted[data-checkpoint="${merge}"]`);
    await point3.locator(`:scope > ul > li[data-session="${exp3}"].here`).waitFor();
    expect(await point3.locator(":scope > .from").textContent()).toBe("exp3 branched from it (nothing recorded it: a merge of exp3 falls back to an older base)");
    const mergeLine = expItem.locator(`:scope > .merge.deleted[data-checkpoint="${merge}"]`);
    expect(await mergeLine.getAttribute("data-merged-from")).toBe(later.id);
    expect(await mergeLine.textContent()).toBe(`⇠ checkpoint-002 (deleted): merge ${sid.slice(0, 8)}/${later.name} into exp (its session recorded what it merged in: a later merge still finds it)`);
  });
});

describe("the dashboard of a session its supervisor serves (sharing.serve)", () => {
  it("says the session ended when its server closes with it: the badge, its agents as apex status shows them, every button greyed, no alert, and no call every 2 s to the closed port", async () => {
    project = new Project(CONFIG.replace("plugins:\n", 'plugins:\n  git: {}\n  sharing:\n    serve:\n      listen: "127.0.0.1:0"\n'));
    const sid = project.start().session_id;
    const own = JSON.parse(readFileSync(join(project.storeDir, "serve.json"), "utf8")) as { url: string };
    const { token } = JSON.parse(project.apex(["session", "share", sid, "otto", "--role", "operator", "--json"]).stdout) as { token: string };
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${own.url}/#session=${sid}&token=${token}`);
    await page.locator("#who", { hasText: "otto (operator)" }).waitFor();
    await waitFor("Checkpoint pressable", async () => !(await page.locator("#btn-checkpoint").isDisabled()), 10_000);
    for (const agent of ["alpha", "beta"]) await page.locator(`tr[data-agent="${agent}"] .status`, { hasText: "running" }).waitFor();
    /** The agents table's rows: name, status, pid, CPU, task. */
    const agentRows = () => page.locator("#agents tbody tr").evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll("td")].map((cell) => cell.textContent)));
    const calls: number[] = [];
    page.on("request", (request) => void (request.url().endsWith("/rpc/session.status") && calls.push(Date.now())));
    expect(project.apex(["stop"]).status).toBe(0);
    // The stream's end is the session's end: its server closes with it, so no later refresh could say so.
    // Before, the badge stayed on "stopping" (or "active"), with "Failed to fetch" and Checkpoint pressable.
    await page.locator("#session-status", { hasText: "stopped" }).waitFor({ timeout: 10_000 });
    for (const id of ["#btn-pause", "#btn-resume", "#btn-checkpoint"]) expect(await page.locator(id).isDisabled()).toBe(true);
    // Its agents as apex status shows the ended session's: stopped, no pid, no CPU time, no task. Before,
    // they stayed running with their pids for as long as the page was open.
    const said = JSON.parse(project.apex(["--session", sid, "status", "--json"]).stdout) as { session: { status: string }; agents: Array<{ name: string; status: string; pid: number | null; cpu_seconds: number; task: string | null }> };
    expect(said.session.status).toBe("stopped");
    const expected = said.agents.map((agent) => [agent.name, agent.status, agent.pid === null ? "-" : String(agent.pid), `${agent.cpu_seconds.toFixed(2)} s`, agent.task ?? "-"]);
    expect(expected).toEqual([
      ["alpha", "stopped", "-", "0.00 s", "-"],
      ["beta", "stopped", "-", "0.00 s", "-"],
    ]);
    expect(await agentRows()).toEqual(expected);
    // Quiet: no alert, and the closed port asked less and less often (5 s, 10 s, … up to a minute
    // apart: a session continued serves again there). It was every 2 s, for good.
    const ended = Date.now();
    await page.waitForTimeout(12_000);
    expect(await page.locator("#notice").textContent()).toBe("");
    expect(calls.filter((at) => at >= ended).length).toBeLessThanOrEqual(3);
    expect(await page.locator("#session-status").textContent()).toBe("stopped");
    expect(await agentRows()).toEqual(expected);
  });
});

describe("the dashboard of a session that ends while apex serve is down", () => {
  it("shows the session's last events once the server is back, from the last one shown, though the session has ended", async () => {
    const { sid, url, token } = await servedToViewer();
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${url}/#session=${sid}&token=${token}`);
    await page.locator("#events li", { hasText: "session.started" }).waitFor();
    await stopServer!();
    await page.locator("#notice", { hasText: /./ }).waitFor();
    // Meanwhile the session goes on, and ends.
    expect(project!.apex(["checkpoint", "create", "while the server is down"]).status).toBe(0);
    expect(project!.apex(["stop"]).status).toBe(0);
    const restarted = project!.apexAsync(["serve", "--listen", url.replace("http://", ""), "--json"]);
    stopServer = async () => {
      if (restarted.child.exitCode === null) restarted.child.kill("SIGTERM");
      await restarted.done;
    };
    await waitFor("apex serve again", () => (restarted.output().includes("}") ? true : undefined), 30_000);
    await page.locator("#session-status", { hasText: "stopped" }).waitFor({ timeout: 10_000 });
    // The server replays what the session wrote after the last event shown, then ends the stream. Before,
    // an ended session was not followed again: its checkpoint and its stop never reached the page.
    await page.locator("#events li", { hasText: "session.stopped" }).waitFor({ timeout: 10_000 });
    const listed = await page.locator("#events li").allTextContents();
    expect(listed.filter((line) => line.includes("checkpoint")).length).toBeGreaterThan(0);
    expect(listed.filter((line) => line.includes("session.started")).length).toBe(1);
    await waitFor("the notice gone", async () => (await page.locator("#notice").textContent()) === "", 10_000);
  });
});

describe("the dashboard when a call is never answered", () => {
  it("gives up on it after a while, says so, and goes on refreshing", async () => {
    const { sid, url, token } = await servedToViewer();
    // The page reaches the server through a link that black-holes one status call once armed: the
    // request is taken, and nothing comes back nor closes.
    let armed = false;
    const link = await silentLink(url, "/rpc/session.status HTTP/1.1", () => armed);
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`http://${link.address}/#session=${sid}&token=${token}`);
    await page.locator("#session-status", { hasText: "active" }).waitFor();
    // Every notice shown, however briefly: the next refresh, half a second later, takes it away once it succeeds.
    await page.evaluate(() => {
      const notice = document.getElementById("notice")!;
      const seen: string[] = [];
      Object.assign(window, { notices: seen });
      new MutationObserver(() => seen.push(notice.textContent ?? "")).observe(notice, { childList: true, characterData: true, subtree: true });
    });
    armed = true;
    await waitFor("a status call black-holed", () => link.silenced());
    const said = () => page.evaluate(() => (window as unknown as { notices: string[] }).notices.some((notice) => notice.startsWith("No answer to session.status in 15 s")));
    await waitFor("the call given up, said in the notice", said, 25_000);
    // Refreshed again: before, that one call held every later refresh for good (the page showed the
    // session active, silently, whatever it did).
    expect(project!.apex(["pause"]).status).toBe(0);
    await page.locator("#session-status", { hasText: "paused" }).waitFor({ timeout: 10_000 });
    await waitFor("the notice gone", async () => (await page.locator("#notice").textContent()) === "", 10_000);
  }, 90_000);
});

describe("the dashboard's checkpoint timeline", () => {
  /** A viewer's page of a new session with two more checkpoints, `older` and `newer`, and what `between` did between them (`before`, before them). */
  async function twoCheckpoints(between: () => void, before = () => {}): Promise<{ page: import("playwright-core").Page; older: { id: string; name: string }; newer: { id: string; name: string } }> {
    const { sid, url, token } = await servedToViewer();
    before();
    const older = JSON.parse(project!.apex(["checkpoint", "create", "older", "--json"]).stdout) as { id: string; name: string };
    between();
    const newer = JSON.parse(project!.apex(["checkpoint", "create", "newer", "--json"]).stdout) as { id: string; name: string };
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${url}/#session=${sid}&token=${token}`);
    await page.locator("#timeline li", { hasText: "newer" }).waitFor();
    return { page, older, newer };
  }

  it("keeps a checkbox's focus and tick across its refreshes, so a keyboard can tick two", async () => {
    const { page } = await twoCheckpoints(() => undefined);
    // Focused as Tab would (the checkbox of the older checkpoint), then left for a few refreshes (every 2 s).
    await page.locator("#timeline li", { hasText: "older" }).locator("input").focus();
    const focused = () => page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.closest("li")?.textContent ?? document.activeElement?.tagName);
    await page.waitForTimeout(5000);
    // Before, each refresh built the list anew: the focus went to BODY, and Space ticked nothing.
    expect(await focused()).toContain("older");
    await page.keyboard.press("Space");
    // A checkpoint taken meanwhile goes on top; the others stay as they are, focus and tick with them.
    expect(project!.apex(["checkpoint", "create", "newest"]).status).toBe(0);
    await page.locator("#timeline li").first().filter({ hasText: "newest" }).waitFor();
    await page.waitForTimeout(3000);
    expect(await page.locator("#timeline li", { hasText: "older" }).locator("input").isChecked()).toBe(true);
    expect(await focused()).toContain("older");
    // Shift+Tab: the newer checkpoint's box, above it. Ticked: the diff of the two.
    await page.keyboard.press("Shift+Tab");
    expect(await focused()).toContain("newer");
    await page.keyboard.press("Space");
    await page.locator("#diff", { hasText: "→" }).waitFor();
  });

  it("diffs from the older checkpoint to the newer whichever was ticked first, as checkpoint diff OLD NEW", async () => {
    const { page, older, newer } = await twoCheckpoints(() => expect(project!.apex(["memory", "set", "/notes/new", "1"]).status).toBe(0));
    // The newer ticked first: before, the diff went from it to the older, and the key added read as removed.
    await page.locator("#timeline li", { hasText: "newer" }).locator("input").check();
    await page.locator("#timeline li", { hasText: "older" }).locator("input").check();
    await page.locator("#diff", { hasText: "/notes/new" }).waitFor();
    const diff = (await page.locator("#diff").textContent())!.split("\n");
    expect(diff[0]).toBe(`${older.name} → ${newer.name}`);
    expect(diff).toContainEqual(expect.stringMatching(/^added +\/notes\/new$/));
  });

  it("counts the agents that changed as checkpoint diff does, an agent and its saved context as one", async () => {
    const report = (step: number) => expect(project!.apex(["agent", "report", "--agent", "alpha", "--status", `step ${step}`, "--context", `{"step": ${step}}`]).status).toBe(0);
    const { page, older, newer } = await twoCheckpoints(() => report(2), () => report(1));
    // The diff has alpha and alpha.context changed; checkpoint diff counts one agent.
    const json = JSON.parse(project!.apex(["checkpoint", "diff", older.id, newer.id, "--json"]).stdout) as { agents: { changed: Array<{ id: string }> } };
    expect(json.agents.changed.map((change) => change.id)).toEqual(expect.arrayContaining(["alpha", "alpha.context"]));
    const said = project!.apex(["checkpoint", "diff", older.id, newer.id]).stdout.match(/^Agents: (\d+) added, (\d+) removed, (\d+) changed$/m)!;
    expect(said).not.toBeNull();
    await page.locator("#timeline li", { hasText: "older" }).locator("input").check();
    await page.locator("#timeline li", { hasText: "newer" }).locator("input").check();
    await page.locator("#diff", { hasText: "agents:" }).waitFor();
    // Before: "agents: ~2" (or more), each agent's record and its context counted apart.
    expect(await page.locator("#diff").textContent()).toContain(`agents: +${said[1]} -${said[2]} ~${said[3]}`);
  });

  it("shows the diff of the pair ticked last, however its diffs land, and none once fewer than two are ticked", async () => {
    const { sid, url, token } = await servedToViewer();
    const made = ["cp-one", "cp-two", "cp-three"].map((description) => JSON.parse(project!.apex(["checkpoint", "create", description, "--json"]).stdout) as { id: string; name: string });
    const [one, two, three] = made as [(typeof made)[0], (typeof made)[0], (typeof made)[0]];
    // The page reaches the server through a proxy that holds a diff once armed, and answers it (the
    // server's own answer, fetched then) when the test lets it go: after the next pair's diff.
    let holding = false;
    const held: Array<() => Promise<void>> = [];
    const stops: Array<() => unknown> = [];
    const link = await proxy(url, stops, (incoming, outgoing) => {
      if (!holding || !incoming.url?.endsWith("/rpc/checkpoint.diff")) return false;
      holding = false;
      const chunks: Buffer[] = [];
      incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
      incoming.on("end", () =>
        held.push(async () => {
          const answer = await fetch(`${url}${incoming.url}`, { method: "POST", headers: { "content-type": "application/json", authorization: String(incoming.headers.authorization) }, body: Buffer.concat(chunks) });
          outgoing.writeHead(answer.status, { "content-type": "application/json" }).end(await answer.text());
        }),
      );
      return true;
    });
    const previous = stopServer;
    stopServer = async () => {
      for (const stop of stops) await stop();
      await previous?.();
    };
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${link.port}/#session=${sid}&token=${token}`);
    await page.locator("#timeline li", { hasText: "cp-three" }).waitFor();
    // Every text the diff shows, however briefly.
    await page.evaluate(() => {
      const diff = document.getElementById("diff")!;
      const seen: string[] = [];
      Object.assign(window, { diffs: seen });
      new MutationObserver(() => seen.push(diff.textContent ?? "")).observe(diff, { childList: true, characterData: true, subtree: true });
    });
    const shown = () => page.evaluate(() => (window as unknown as { diffs: string[] }).diffs.slice());
    const box = (description: string) => page.locator("#timeline li", { hasText: description }).locator("input");
    /** Lets the held diff's answer go, and waits until the page has it. */
    const release = async () => {
      await waitFor("a diff held", () => held.length === 1);
      const landed = page.waitForEvent("requestfinished", (request) => request.url().endsWith("/rpc/checkpoint.diff"));
      await held.pop()!();
      await landed;
      // Time for the page to read it and show it, were it to.
      await page.waitForTimeout(1000);
    };

    // one and two ticked: their diff is held. two and three (one unticked): theirs lands first.
    holding = true;
    await box("cp-one").check();
    await box("cp-two").check();
    await box("cp-three").check();
    expect(await box("cp-one").isChecked()).toBe(false);
    await page.locator("#diff", { hasText: `${two.name} → ${three.name}` }).waitFor();
    // The diff of one and two lands last: the page goes on showing the pair ticked. It showed the one to land last.
    await release();
    expect((await page.locator("#diff").textContent())!.split("\n")[0]).toBe(`${two.name} → ${three.name}`);

    // one ticked again (two and one: held), then unticked: fewer than two, and no diff shown, not the one that lands then.
    holding = true;
    await box("cp-three").uncheck();
    await box("cp-one").check();
    await box("cp-one").uncheck();
    await release();
    expect(await page.locator("#diff").textContent()).toBe("");
    expect((await shown()).filter((text) => text.startsWith(`${one.name} →`))).toEqual([]);
  });
});

describe("the dashboard's task board", () => {
  it("shows a long column's tasks next in line first, and says how many more there are and how to list them", async () => {
    const { sid, url, token, socket } = await servedToViewer();
    const channel = new SupervisorChannel(socket);
    try {
      for (let i = 0; i < 35; i++) await channel.call("task.add", { title: `task ${String(i).padStart(2, "0")}`, actor: "user:test" });
    } finally {
      channel.close();
    }
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${url}/#session=${sid}&token=${token}`);
    const pending = page.locator('#board [data-column="pending"]');
    await pending.locator("h3", { hasText: "pending (35)" }).waitFor();
    // The oldest first, the next an agent claims: before, the newest 30, and the first five hidden without a word.
    const cards = await pending.locator(".card").allTextContents();
    expect(cards.length).toBe(30);
    expect(cards[0]).toContain("task 00");
    expect(cards[29]).toContain("task 29");
    expect(await pending.locator(".more").textContent()).toBe("… 5 more after these: apex task list --status pending");
  });
});

describe("the dashboard's text from other users and agents", () => {
  it("shows bidirectional overrides and isolates in user names and task titles escaped, as the CLI does, not acting on the text", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stopServer = async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    };
    const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    // A right-to-left override turns what follows around: the title reads "invoiceexe.pdf" raw.
    expect(project.apex(["task", "add", "invoice\u202efdp.exe \u2066isolated\u2069"]).status).toBe(0);
    const { token } = JSON.parse(project.apex(["session", "share", sid, "m\u202eyrolla", "--role", "viewer", "--json"]).stdout) as { token: string };
    // What the CLI shows of the title: the page shows the same.
    const listed = project.apex(["task", "list"]).stdout;
    expect(listed).toContain("invoice\\u202efdp.exe \\u2066isolated\\u2069");
    context = await newContext(VIEWPORT);
    const page = await context.newPage();
    await page.goto(`${url}/#session=${sid}&token=${token}`);
    await page.locator('#board [data-column="pending"] .card').first().waitFor();
    expect(await page.locator('#board [data-column="pending"] .card').first().textContent()).toContain("invoice\\u202efdp.exe \\u2066isolated\\u2069");
    expect(await page.locator("#who").textContent()).toBe("m\\u202eyrolla (viewer)");
    await page.locator("#connected", { hasText: "m\\u202eyrolla (viewer)" }).waitFor({ timeout: 15_000 });
    // No character of the page acts on the text around it.
    expect(await page.evaluate(() => /[\u202a-\u202e\u2066-\u2069]/.test(document.body.innerText))).toBe(false);
  });
});

describe("the dashboard's times", () => {
  it("are UTC and say so, in the lists and the plots alike, whatever the browser's time zone", async () => {
    const { sid, url, token } = await servedToViewer();
    const [first] = (JSON.parse(project!.apex(["checkpoint", "list", "--json"]).stdout) as { items: Array<{ created_at: string }> }).items;
    // Fourteen hours ahead of UTC: a plot in local time reads another hour (and day) than the lists.
    context = await newContext({ ...VIEWPORT, timezoneId: "Pacific/Kiritimati" });
    const page = await context.newPage();
    await page.goto(`${url}/#session=${sid}&token=${token}`);
    await page.locator("#events li", { hasText: "session.started" }).waitFor();
    // The lists said 18:04:05 with no zone, beside plots in the browser's local time.
    expect(await page.locator("#events li", { hasText: "session.started" }).textContent()).toMatch(/^\d\d:\d\d:\d\d UTC session\.started/);
    expect(await page.locator("#timeline li").first().textContent()).toContain(`${first!.created_at.slice(11, 19)} UTC`);
    // The memory plot's one point (its checkpoint), under the cursor: its time in the legend, in UTC.
    await page.locator("#memory-chart[data-points='1'][data-span]").waitFor();
    for (const chart of ["#memory-chart", "#chart"]) expect(await page.locator(`${chart} .u-legend .u-label`).first().textContent()).toBe("time (UTC)");
    const plot = page.locator("#memory-chart .u-over");
    const box = (await plot.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    const at = new Date(first!.created_at);
    const hour = at.getUTCHours() % 12 || 12;
    const time = `${hour}:${String(at.getUTCMinutes()).padStart(2, "0")}${at.getUTCHours() < 12 ? "am" : "pm"}`;
    await page.locator("#memory-chart .u-legend .u-series:first-child .u-value", { hasText: `${first!.created_at.slice(0, 10)} ${time}` }).waitFor({ timeout: 5000 });
  });
});
