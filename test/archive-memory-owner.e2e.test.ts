// Archiving the session whose memory the project's live keyspace holds: the memory stays its
// own. The owner is found from the sessions' runs, and once the archive removed its records the
// session that ran before it was taken for the owner: the next start saved this memory as that
// session's "final state", and a `start --continue` of it went on with this memory as its own.
import { afterEach, describe, expect, it } from "vitest";
import { Project, idleAgentConfig } from "./fixtures/agents/harness.js";
import { ok } from "./support/serve.js";

let project: Project | undefined;
afterEach(() => {
  project?.cleanup();
  project = undefined;
});

const CONFIG = idleAgentConfig(["checkpoint: {}", "archive: {}"]);

interface CheckpointPage {
  items: Array<{ id: string; trigger: string; description: string }>;
}

describe("apex session archive of the session holding the live memory", () => {
  it("leaves the memory to no session: continuing the session before it restores its own checkpoint, and saves nothing of the archived one's as its state", () => {
    project = new Project(CONFIG);
    const p = project;
    const earlier = p.start(["--task", "earlier"]).session_id;
    ok(p.apex(["memory", "set", "/notes/owner", JSON.stringify("earlier")]));
    ok(p.apex(["stop"]));
    const last = p.start(["--task", "last"]).session_id;
    ok(p.apex(["memory", "set", "/notes/owner", JSON.stringify("last")]));
    ok(p.apex(["memory", "set", "/notes/only-last", JSON.stringify("last's alone")]));
    ok(p.apex(["stop"]));
    const before = (JSON.parse(ok(p.apex(["checkpoint", "list", "--session", earlier, "--json"]))) as CheckpointPage).items.map((item) => item.id);

    ok(p.apex(["session", "archive", last]));
    const continued = p.start(["--continue", earlier]);
    expect(continued.session_id).toBe(earlier);
    // Its own memory came back, not the archived session's.
    expect(JSON.parse(ok(p.apex(["memory", "show", "/notes/owner", "--json"])))).toMatchObject({ value: "earlier" });
    expect(p.apex(["memory", "show", "/notes/only-last"]).status).toBe(3);
    ok(p.apex(["stop"]));
    // No checkpoint of it holds the archived session's memory as its "final state".
    const items = (JSON.parse(ok(p.apex(["checkpoint", "list", "--session", earlier, "--json"]))) as CheckpointPage).items;
    const added = items.filter((item) => !before.includes(item.id));
    expect(added.map((item) => item.description)).not.toContain("final state, saved before another session takes the live memory");
    for (const item of added.filter((item) => item.trigger !== "beforeRestore")) {
      const shown = JSON.parse(ok(p.apex(["checkpoint", "show", item.id, "--json"]))) as { memory_keys?: string[]; memory?: { keys?: string[] } };
      expect(JSON.stringify(shown)).not.toContain("/notes/only-last");
    }

    // Brought back, it holds no claim the session that ran since has not replaced: continuing it restores its own checkpoint.
    ok(p.apex(["session", "unarchive", last]));
    p.start(["--continue", last]);
    expect(JSON.parse(ok(p.apex(["memory", "show", "/notes/only-last", "--json"])))).toMatchObject({ value: "last's alone" });
    ok(p.apex(["stop"]));
  });

  it("keeps it the archived session's until another runs: unarchived, it continues on the live memory as it left it, unsaved writes included", () => {
    project = new Project(CONFIG);
    const p = project;
    p.start(["--task", "earlier"]);
    ok(p.apex(["stop"]));
    const last = p.start(["--task", "last"]).session_id;
    ok(p.apex(["stop"]));
    // Written after its final checkpoint: the live memory alone holds it.
    ok(p.apex(["memory", "set", "/notes/unsaved", JSON.stringify("after the stop")]));
    ok(p.apex(["session", "archive", last]));
    ok(p.apex(["session", "unarchive", last]));
    const continued = p.start(["--continue", last]);
    expect(continued.session_id).toBe(last);
    expect(JSON.parse(ok(p.apex(["memory", "show", "/notes/unsaved", "--json"])))).toMatchObject({ value: "after the stop" });
    ok(p.apex(["stop"]));
  });
});
