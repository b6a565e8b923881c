// A branch session's name is read in any case, as checkpoint names and session ids are: through the built CLI,
// with a real supervisor and a real LMDB store. An older store holding two names that differ only in case: the
// exact one wins, another case is ambiguous.
import { afterEach, describe, expect, it } from "vitest";
import { Project } from "./fixtures/agents/harness.js";
import { openStore } from "../core/store/open.js";
import { HISTORY_PREFIX } from "../core/session/records.js";

const agent = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins:", "  checkpoint: {}", ""].join("\n");
let project: Project | undefined;
afterEach(() => project?.cleanup());

describe("session names in references", () => {
  it("are read whatever their case; two names alike in an older store: exact case wins, another is ambiguous", async () => {
    project = new Project(agent, "apex-name-case-");
    const p = project;
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "c1"]).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "Exp"]).status).toBe(0);
    const sessions = JSON.parse(p.apex(["session", "list", "--json"]).stdout) as Array<{ session_id: string; name: string | null }>;
    const exp = sessions.find((session) => session.name === "Exp")!.session_id;

    const list = p.apex(["checkpoint", "list", "--session", "exp", "--json"]);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toContain(exp);
    const show = p.apex(["checkpoint", "show", "EXP/latest", "--json"]);
    expect(show.status, show.stderr).toBe(0);
    expect(JSON.parse(show.stdout).session_id).toBe(exp);
    const history = p.apex(["session", "history", "eXp", "--json"]);
    expect(history.status, history.stderr).toBe(0);
    expect(JSON.parse(history.stdout).session_id).toBe(exp);
    const logs = p.apex(["logs", "--session", "EXP"]);
    // The session found: it has no logs yet, never having run; named as `session list` names it (it was its whole id).
    expect(logs.stderr.split("\n")[0]).toBe("error[APEX_E_NO_SESSION]: Session Exp has no logs in this project: its agents never ran here.");
    expect(logs.stderr).not.toContain(exp);
    expect(logs.stderr).not.toContain('No session "EXP"');

    // An older store: a second session named alike (new names differing only in case are refused).
    const other = "0badcafe-0000-4000-8000-000000000001";
    const store = await openStore(p.storeDir);
    await store.batch((batch) => batch.set(`${HISTORY_PREFIX}/${other}`, { session_id: other, name: "EXP", status: "stopped", started_at: "2026-01-01T00:00:00.000Z", ended_at: "2026-01-01T00:00:01.000Z" }));
    await store.close();
    const exact = p.apex(["session", "history", "Exp", "--json"]);
    expect(exact.status, exact.stderr).toBe(0);
    expect(JSON.parse(exact.stdout).session_id).toBe(exp);
    for (const args of [["checkpoint", "list", "--session", "exp"], ["session", "history", "exp"], ["checkpoint", "show", "exp/latest"]]) {
      const ambiguous = p.apex(args);
      expect(ambiguous.status, ambiguous.stderr).toBe(2);
      expect(ambiguous.stderr).toContain("APEX_E_AMBIGUOUS");
      expect(ambiguous.stderr).toContain(exp);
      expect(ambiguous.stderr).toContain(other);
    }
    // An id the names take, in any case: a conflict naming both sessions (exit 4), not "ambiguous" (exit 2) as if it were looked up.
    const first = sessions.find((session) => session.name === null)!.session_id;
    for (const as of ["exp", "Exp"]) {
      const taken = p.apex(["session", "reconstruct", first, "--as", as, "--json"]);
      expect(taken.status, taken.stderr).toBe(4);
      const error = JSON.parse(taken.stderr).error;
      expect(error).toMatchObject({ code: "APEX_E_CONFLICT", details: { id: as, named: other, sessions: [{ name: "EXP", session_id: other }, { name: "Exp", session_id: exp }] } });
      expect(error.message).toBe(`Sessions are named ${as} already, in any case (EXP: ${other}; Exp: ${exp}); the reconstructed session cannot take it as its id.`);
    }
  });
});
