// The claim rule "one session per working tree" (core/session/claim.ts), on each storage backend:
// a session claimed in a worktree where another one is not ended is refused, naming that one, and
// writes nothing; in another worktree, or the project's own tree, it is claimed beside it.
import { spawn } from "node:child_process";
import { mkdirSync, symlinkSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Config } from "../core/config/types.js";
import { ApexError } from "../core/errors.js";
import { claimContinuedSession, claimNewSession, type SupervisorIdentity } from "../core/session/claim.js";
import { SUPERVISOR_NONCE_VAR, readProcStat } from "../core/session/proc.js";
import type { SessionRecord } from "../core/session/records.js";
import { endedMark, findSession } from "../core/session/sessions.js";
import type { Store } from "../core/store/store.js";
import { tempDir } from "./helpers/cli.js";
import { forEachBackend } from "./support/backends.js";

const config = { agents: {} } as unknown as Config;
const self: SupervisorIdentity = { pid: process.pid, start_time: 0, socket: "/nonexistent.sock", started_at: new Date().toISOString(), nonce: null, host: hostname(), lease_ttl_ms: 60_000 };

function branchRecord(id: string, name: string, worktree: string): SessionRecord {
  const at = "2026-01-01T00:00:00.000Z";
  return {
    session_id: id,
    project_id: "p",
    created_at: at,
    updated_at: at,
    status: "stopped",
    initial_task: null,
    agents: [],
    supervisor: null,
    history: [],
    outcome: "stopped",
    ended_at: at,
    restored_from: null,
    name,
    worktree: { path: worktree, branch: `apex/${name}`, commit: null },
  } as unknown as SessionRecord;
}

async function refusal(claim: Promise<unknown>): Promise<ApexError> {
  const error = await claim.then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(ApexError);
  return error as ApexError;
}

function sessionsState(store: Store) {
  return { active: store.get("/sessions/active") ?? null, current: store.get("/sessions/current") ?? null };
}

forEachBackend((backend) => {
  describe("one session per working tree", () => {
    it("refuses a second session in the same worktree (naming the one there), allows one in another worktree", async () => {
      const store = await backend.fresh();
      const { dir, cleanup } = tempDir("apex-claim-wt-");
      try {
        const alphaTree = join(dir, "alpha");
        const betaTree = join(dir, "beta");
        mkdirSync(alphaTree);
        mkdirSync(betaTree);
        // The same worktree, named through a symbolic link: still the same tree.
        symlinkSync(alphaTree, join(dir, "alpha-link"));
        await store.batch((batch) => {
          for (const record of [branchRecord("s-alpha", "alpha", alphaTree), branchRecord("s-twin", "twin", join(dir, "alpha-link")), branchRecord("s-beta", "beta", betaTree)]) {
            batch.set(`/sessions/history/${record.session_id}`, record as never);
          }
        });

        const alpha = await claimContinuedSession(store, config, { sessionId: "s-alpha", checkpoint: undefined }, self);
        expect(alpha).toMatchObject({ sessionId: "s-alpha", continued: true });
        const before = sessionsState(store);

        const refused = await refusal(claimContinuedSession(store, config, { sessionId: "s-twin", checkpoint: undefined }, self));
        expect(refused.code).toBe("APEX_E_SESSION_ACTIVE");
        expect(refused.exitCode).toBe(4);
        expect(refused.message).toContain("Session alpha (s-alpha) is");
        expect(refused.message).toContain(`in the worktree ${join(dir, "alpha-link")}`);
        expect(refused.details).toMatchObject({ session_id: "s-alpha" });
        // Nothing written: the twin is still ended, the active sessions as they were.
        expect(store.get("/sessions/s-twin")).toBeUndefined();
        expect((store.get("/sessions/history/s-twin") as SessionRecord).status).toBe("stopped");
        expect(sessionsState(store)).toEqual(before);

        // Another worktree, and the project's own tree: beside it.
        expect(await claimContinuedSession(store, config, { sessionId: "s-beta", checkpoint: undefined }, self)).toMatchObject({ sessionId: "s-beta" });
        const main = await claimNewSession(store, config, {} as never, self);
        expect(Object.keys(store.get("/sessions/active") as object).sort()).toEqual([main.sessionId, "s-alpha", "s-beta"].sort());
        expect((store.get("/sessions/current") as { session_id: string }).session_id).toBe(main.sessionId);

        // A second session in the project's own tree is refused, naming the first; the branches do not count there.
        const second = await refusal(claimNewSession(store, config, {} as never, self));
        expect(second.code).toBe("APEX_E_SESSION_ACTIVE");
        expect(second.message).toContain(`Session ${main.sessionId} is`);
        expect(second.message).toContain("in the project's working tree");
        expect(Object.keys(store.get("/sessions/active") as object)).toHaveLength(3);

        // Once alpha ended, its worktree takes the twin.
        await store.batch((batch) => {
          const record = batch.get("/sessions/s-alpha") as SessionRecord;
          batch.set("/sessions/s-alpha", { ...record, status: "stopped" } as never);
        });
        expect(await claimContinuedSession(store, config, { sessionId: "s-twin", checkpoint: undefined }, self)).toMatchObject({ sessionId: "s-twin" });
      } finally {
        cleanup();
      }
    });
  });

  describe("the ended state `apex start` read before launching a continue", () => {
    it("refuses the claim once an end was recorded since, writing nothing; an end stamped by a clock far ahead of this one's, read as it is, does not", async () => {
      const store = await backend.fresh();
      // Ended by another host whose clock runs a day ahead: no clock is compared, the continue is claimed.
      const ahead = { ...branchRecord("s-ahead", "ahead", "/nonexistent"), worktree: null, history: [{ event: "stopped", at: "2099-01-01T00:00:00.000Z" }], ended_at: "2099-01-01T00:00:00.000Z" } as unknown as SessionRecord;
      // Interrupted (its supervisor gone, the record still active) when read; stopped (by `apex stop`) before the claim.
      const raced = { ...branchRecord("s-raced", "raced", "/nonexistent"), status: "active", outcome: null, ended_at: null, history: [{ event: "started", at: "2026-01-01T00:00:00.000Z" }] } as unknown as SessionRecord;
      await store.batch((batch) => {
        batch.set("/sessions/history/s-ahead", ahead as never);
        batch.set("/sessions/s-raced", raced as never);
      });
      const read = { session_id: "s-raced", mark: endedMark(findSession(store, "s-raced")!) };
      await store.batch((batch) => {
        batch.delete("/sessions/s-raced");
        batch.set("/sessions/history/s-raced", { ...raced, status: "stopped", outcome: "stopped by user", ended_at: "2020-01-01T00:00:00.000Z", history: [...raced.history, { event: "stopped", at: "2020-01-01T00:00:00.000Z" }] } as never);
      });
      const before = sessionsState(store);
      const refused = await refusal(claimContinuedSession(store, config, { sessionId: "s-raced", checkpoint: undefined }, self, read));
      expect(refused).toMatchObject({ code: "APEX_E_SESSION_STATE", exitCode: 4, details: { session_id: "s-raced", status: "stopped" } });
      expect(refused.message).toBe("Session raced was stopped (stopped by user) while this start was continuing it, before it claimed it: it is not continued.");
      expect(store.get("/sessions/s-raced")).toBeUndefined();
      expect(sessionsState(store)).toEqual(before);
      // Read as it is now, the claim holds; as does the one of the session ended "in the future".
      expect(await claimContinuedSession(store, config, { sessionId: "s-ahead", checkpoint: undefined }, self, { session_id: "s-ahead", mark: endedMark(findSession(store, "s-ahead")!) })).toMatchObject({ sessionId: "s-ahead", continued: true });
    });
  });

  describe("a continue that loses the claim to another supervisor of the session", () => {
    it("names the session as its branch name and gives the commands that reach it from any tree, writing nothing", async () => {
      const store = await backend.fresh();
      // The winner: a live process carrying a supervisor's nonce, as a `start --continue` that claimed the branch first.
      const nonce = "0123456789abcdef0123456789abcdef";
      const winner = spawn("sleep", ["60"], { env: { ...process.env, [SUPERVISOR_NONCE_VAR]: nonce }, stdio: "ignore" });
      try {
        await new Promise((resolve) => winner.once("spawn", resolve));
        const startTime = readProcStat(winner.pid!)!.startTime;
        const running = { ...branchRecord("s-feature", "feature", "/nonexistent"), status: "active", outcome: null, ended_at: null, supervisor: { pid: winner.pid, start_time: startTime, nonce, host: hostname(), generation: 1 } } as unknown as SessionRecord;
        await store.batch((batch) => batch.set("/sessions/s-feature", running as never));
        const before = store.get("/sessions/s-feature");
        const refused = await refusal(claimContinuedSession(store, config, { sessionId: "s-feature", checkpoint: undefined }, self));
        expect(refused).toMatchObject({ code: "APEX_E_SESSION_ACTIVE", exitCode: 4, details: { session_id: "s-feature" } });
        expect(refused.message).toMatch(/^Session feature is running \(supervisor /);
        // It said `apex status` and `apex stop`: in the project's tree, the project's session, not the branch.
        expect(refused.hint).toBe("See it with `apex --session feature status`; `apex --session feature stop` ends it.");
        expect(store.get("/sessions/s-feature")).toEqual(before);
      } finally {
        winner.kill("SIGKILL");
      }
    });
  });
});
