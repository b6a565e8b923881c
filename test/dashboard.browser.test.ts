// The dashboard in a real browser: Debian's headless Chromium driven by playwright-core, against
// a real `apex serve` in front of a live session. Logs in with a token, sees an agent pause live
// when `apex pause` runs in a terminal, resumes as an operator, and finds no buttons as a viewer.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type BrowserContext } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import { Project, REPO_ROOT, shellAgents, waitFor } from "./fixtures/agents/harness.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.2; done", beta: "while true; do sleep 0.2; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

let project: Project | undefined;
let context: BrowserContext | undefined;
let stopServer: (() => Promise<unknown>) | undefined;

afterEach(async () => {
  await context?.close();
  context = undefined;
  await stopServer?.();
  stopServer = undefined;
  project?.cleanup();
  project = undefined;
});

describe("the dashboard in headless Chromium", () => {
  it("shows a pause live, lets an operator resume, and shows a viewer no buttons", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stopServer = async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    };
    const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    const shareAs = (user: string, role: string) => JSON.parse(project!.apex(["session", "share", "current", user, "--role", role, "--json"]).stdout) as { url: string; token: string };
    const operator = shareAs("otto", "operator");
    const viewer = shareAs("vera", "viewer");
    expect(project.apex(["checkpoint", "create", "before the demo"]).status).toBe(0);

    context = await chromium.launchPersistentContext(join(project.dir, "chromium-profile"), { executablePath: "/usr/bin/chromium", headless: true, args: FLAGS, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(operator.url);
    await page.locator("#who", { hasText: "otto (operator)" }).waitFor();
    // The token left the address bar as soon as the page read it.
    expect(page.url()).toBe(`${url}/`);
    await page.locator('tr[data-agent="alpha"] .status', { hasText: "running" }).waitFor();

    expect(project.apex(["pause"]).status).toBe(0);
    await page.locator('tr[data-agent="alpha"] .status', { hasText: "paused" }).waitFor({ timeout: 10_000 });
    await page.locator("#session-status", { hasText: "paused" }).waitFor();
    await page.locator("#events li", { hasText: "session.paused" }).waitFor();
    // The README's screenshots: refreshed with APEX_UPDATE_SCREENSHOTS=1, else kept in the temp project.
    const shots = process.env.APEX_UPDATE_SCREENSHOTS ? join(REPO_ROOT, "docs") : join(project.dir, "shots");
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, "dashboard.png"), fullPage: true });

    await page.locator("#btn-resume").click();
    await page.locator('tr[data-agent="alpha"] .status', { hasText: "running" }).waitFor({ timeout: 10_000 });
    expect(project.status().session!.status).toBe("active");
    const trail = project.apex(["session", "history", sid]).stdout;
    expect(trail).toMatch(/resumed.*\[user:otto\]/);

    // A viewer, logging in with the form: everything to read, no button to press.
    const other = await context.newPage();
    await other.goto(`${url}/`);
    await other.evaluate(() => sessionStorage.clear());
    await other.reload();
    await other.locator("#login-session").fill(sid);
    await other.locator("#login-token").fill(viewer.token);
    await other.locator("#login button[type=submit]").click();
    await other.locator("#who", { hasText: "vera (viewer)" }).waitFor();
    await other.locator('tr[data-agent="beta"]').waitFor();
    expect(await other.locator("#btn-pause, #btn-resume, #btn-checkpoint").count()).toBe(0);
    await other.screenshot({ path: join(shots, "dashboard-viewer.png"), fullPage: true });

    // A wrong token gets the login form back with the server's message.
    await other.evaluate(() => sessionStorage.clear());
    await other.reload();
    await other.locator("#login-session").fill(sid);
    await other.locator("#login-token").fill("apx_0000000000000000_" + "A".repeat(43));
    await other.locator("#login button[type=submit]").click();
    await other.locator("#login-error", { hasText: "not valid" }).waitFor();
  });
});
