// Descriptors a child would inherit: LMDB opens the store's data file without close-on-exec (on
// purpose), so every agent and the git runner shell held the store open. sealedStdio gives them
// /dev/null in its place. Real LMDB store, real processes, the built CLI.
import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { sealedStdio } from "../core/session/proc.js";
import { LmdbStore } from "../plugins/lmdb/backend.js";
import { Project } from "./fixtures/agents/harness.js";
import { tempDir } from "./helpers/cli.js";

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What `ls -l /proc/$$/fd` prints in a shell spawned with these extra stdio entries. */
function descriptorsOfChild(extra: Array<"ignore" | number>): string {
  const result = spawnSync("sh", ["-c", "ls -l /proc/$$/fd"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe", ...extra] });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

describe("sealedStdio", () => {
  it("gives a child /dev/null where it would inherit the store's data file", async () => {
    const temp = tempDir("apex-sealed-");
    cleanups.push(temp.cleanup);
    const store = LmdbStore.open(temp.dir);
    cleanups.push(() => store.close());
    await store.set("/a", 1);
    // Unsealed, the child holds the data file: what this guards against.
    expect(descriptorsOfChild([])).toContain("store.mdb");
    const sealed = sealedStdio();
    try {
      expect(sealed.extra.some((entry) => typeof entry === "number")).toBe(true);
      const listing = descriptorsOfChild(sealed.extra);
      expect(listing).not.toContain("store.mdb");
      expect(listing).toContain("/dev/null");
    } finally {
      sealed.release();
    }
    // The store is still this process's to use.
    await store.set("/a", 2);
    expect(store.get("/a")).toBe(2);
  });
});

describe("agents", () => {
  it("do not inherit the supervisor's store descriptors", async () => {
    const project = new Project(
      ["agents:", "  worker:", "    command: sh", `    args: ["-c", "ls -l /proc/$$/fd; echo listed; while true; do sleep 0.5; done"]`, ""].join("\n"),
      "apex-sealed-agent-",
    );
    cleanups.push(() => project.cleanup());
    project.start(["--task", "list descriptors"]);
    let logs = "";
    for (let tries = 0; tries < 100 && !logs.includes("listed"); tries++) {
      logs = project.apex(["logs", "worker"]).stdout;
      if (!logs.includes("listed")) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(logs).toContain("listed");
    expect(logs).toContain("worker.log");
    expect(logs).not.toContain("store.mdb");
    expect(project.apex(["stop"]).status).toBe(0);
  });
});
