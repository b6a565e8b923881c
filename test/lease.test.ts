// The lease rules on real processes and a real LMDB store: who counts as alive (the process and
// its nonce on its own host, the lease from any other), claims that refuse or take a session over,
// and the supervisor's side (renewal, fenced writes, a lease lost to another host).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { claimContinuedSession, claimNewSession } from "../dist/core/session/claim.js";
import { LeaseHolder, leaseValid, localHost, readLease } from "../dist/core/session/lease.js";
import { eventsPrefix, sessionPath, type SessionRecord } from "../dist/core/session/records.js";
import { effectiveStatus, findSession, supervisorAlive } from "../dist/core/session/sessions.js";
import { openStore } from "../dist/core/store/open.js";
import type { Store } from "../dist/core/store/store.js";
import { procInfo, signalIfAlive } from "./fixtures/agents/harness.js";
import { forEachBackend } from "./support/backends.js";

const NONCE = "0123456789abcdef0123456789abcdef";
const OTHER_NONCE = "fedcba9876543210fedcba9876543210";

let dir: string;
let children: ChildProcess[] = [];
const savedHost = process.env.APEX_HOST;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "apex-lease-"));
});
afterEach(() => {
  for (const child of children) if (child.pid) signalIfAlive(child.pid, "SIGKILL");
  children = [];
  if (savedHost === undefined) delete process.env.APEX_HOST;
  else process.env.APEX_HOST = savedHost;
  rmSync(dir, { recursive: true, force: true });
});

/** A live process started with `env`, and its real start time. */
function startProcess(env: Record<string, string> = {}): { pid: number; startTime: number } {
  const child = spawn("sleep", ["600"], { stdio: "ignore", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } });
  children.push(child);
  const info = procInfo(child.pid!);
  expect(info).toBeDefined();
  return { pid: child.pid!, startTime: info!.startTime };
}

function record(supervisor: SessionRecord["supervisor"], status: SessionRecord["status"] = "active"): SessionRecord {
  const at = new Date().toISOString();
  return { session_id: "s-1", project_id: "p", created_at: at, updated_at: at, status, initial_task: null, agents: [], supervisor, history: [], outcome: null, ended_at: null, restored_from: null };
}

const inMs = (ms: number) => new Date(Date.now() + ms).toISOString();

describe("supervisorAlive", () => {
  it("on the supervisor's own host: the same process carrying the recorded nonce, nothing less", () => {
    process.env.APEX_HOST = "host-a";
    const own = startProcess({ APEX_SUPERVISOR_NONCE: NONCE });
    const base = { pid: own.pid, start_time: own.startTime, socket: "/x.sock", started_at: new Date().toISOString(), host: "host-a", generation: 1, lease_expires_at: inMs(60_000) };
    expect(supervisorAlive(record({ ...base, nonce: NONCE }))).toBe(true);
    // A live process with its real start time but another nonce (a reused pid, a forged record) is not the supervisor.
    expect(supervisorAlive(record({ ...base, nonce: OTHER_NONCE }))).toBe(false);
    expect(effectiveStatus(record({ ...base, nonce: OTHER_NONCE }))).toBe("interrupted");
    // Without a nonce nothing proves it.
    expect(supervisorAlive(record({ ...base, nonce: null }))).toBe(false);
    // Another start time: the pid was reused.
    expect(supervisorAlive(record({ ...base, nonce: NONCE, start_time: own.startTime + 1 }))).toBe(false);
    // On its own host the process decides, not the lease: an expired lease of a live supervisor is still alive.
    expect(supervisorAlive(record({ ...base, nonce: NONCE, lease_expires_at: inMs(-60_000) }))).toBe(true);
    // A record older than hosts is taken as this host's.
    const { host: _host, generation: _generation, lease_expires_at: _lease, ...legacy } = base;
    expect(supervisorAlive(record({ ...legacy, nonce: NONCE }))).toBe(true);
    expect(supervisorAlive(record({ ...legacy, nonce: OTHER_NONCE }))).toBe(false);
  });

  it("a host name with a control character (APEX_HOST) is refused, exit 2, before anything is written: every host would print it", async () => {
    const { runApex } = await import("./helpers/cli.js");
    const { existsSync, writeFileSync } = await import("node:fs");
    for (const host of ["host-a\n  supervisor  pid 1 on host-b", "host-\u001b[2Ja", "host-\u202ea"]) {
      process.env.APEX_HOST = host;
      expect(() => localHost()).toThrow(/APEX_HOST holds a control character/);
    }
    writeFileSync(join(dir, "apex.config.yaml"), 'agents:\n  w:\n    command: sh\n    args: ["-c", "sleep 60"]\n');
    const started = runApex(["start", "--task", "t", "--json"], { cwd: dir, env: { APEX_HOST: "host-a\nforged line" } });
    expect(started.status, started.stderr).toBe(2);
    expect(JSON.parse(started.stderr).error).toMatchObject({ code: "APEX_E_CONFIG", message: expect.stringContaining("APEX_HOST holds a control character") });
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("from another host: the lease, never a local pid", () => {
    process.env.APEX_HOST = "host-b";
    expect(localHost()).toBe("host-b");
    const local = startProcess({ APEX_SUPERVISOR_NONCE: NONCE });
    const base = { pid: local.pid, start_time: local.startTime, socket: "/x.sock", started_at: new Date().toISOString(), nonce: NONCE, host: "host-a", generation: 3 };
    // A local process that matches pid, start time and nonce says nothing about host-a.
    expect(supervisorAlive(record({ ...base, lease_expires_at: inMs(-1) }))).toBe(false);
    expect(effectiveStatus(record({ ...base, lease_expires_at: inMs(-1) }))).toBe("interrupted");
    expect(effectiveStatus(record({ ...base, lease_expires_at: inMs(-1) }, "paused"))).toBe("interrupted");
    // A pid that does not exist here, with a lease that has not expired: it runs there.
    expect(supervisorAlive(record({ ...base, pid: 999_999_999, lease_expires_at: inMs(10_000) }))).toBe(true);
    expect(effectiveStatus(record({ ...base, pid: 999_999_999, lease_expires_at: inMs(10_000) }))).toBe("active");
    const withoutLease = { ...base } as Record<string, unknown>;
    expect(supervisorAlive(record(withoutLease as SessionRecord["supervisor"]))).toBe(false);
    // Ended sessions stay ended whatever the lease says.
    expect(effectiveStatus(record({ ...base, lease_expires_at: inMs(10_000) }, "stopped"))).toBe("stopped");
    expect(leaseValid({ ...base, lease_expires_at: inMs(10_000) }, Date.now() + 20_000)).toBe(false);
  });
});

const CONFIG = { agents: { w: { command: "sh", args: ["-c", "true"], env: {}, cwd: ".", restart: "never", max_restarts: 0, restart_delay: 0 } } } as never;

function identity(host: string, ttlMs: number, nonce = NONCE) {
  return { pid: process.pid, start_time: procInfo(process.pid)!.startTime, socket: "/x.sock", started_at: new Date().toISOString(), nonce, host, lease_ttl_ms: ttlMs };
}

async function asHost<T>(host: string, fn: () => Promise<T>): Promise<T> {
  const previous = process.env.APEX_HOST;
  process.env.APEX_HOST = host;
  try {
    return await fn();
  } finally {
    process.env.APEX_HOST = previous;
  }
}

function events(store: Store, sid: string): Array<{ type: string; [key: string]: unknown }> {
  return Array.from(store.query(`${eventsPrefix(sid)}/*`)).map((entry) => entry.value as { type: string });
}

function errorOf(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  return promise.then(
    () => {
      throw new Error("expected a refusal");
    },
    (error: { code: string; message: string }) => error,
  );
}

describe("claims and the supervisor's lease", () => {
  it("a new session is refused while another host holds a live lease (naming it), continued by takeover once it expired", async () => {
    const store = await openStore(join(dir, "store"));
    try {
      const first = await asHost("host-a", () => claimNewSession(store, CONFIG, { mode: "start", projectDir: dir, configPath: undefined, storeDir: dir, task: "t" }, identity("host-a", 2000)));
      expect(first.generation).toBe(1);
      const held = store.get(sessionPath(first.sessionId)) as SessionRecord;
      expect(held.supervisor).toMatchObject({ host: "host-a", generation: 1, nonce: NONCE });
      // The expiry is the lease row's, never stored in the record; the session readers add it.
      expect(held.supervisor!.lease_expires_at).toBeUndefined();
      expect(readLease(store, first.sessionId)).toMatchObject({ host: "host-a", generation: 1, nonce: NONCE });
      expect(Date.parse(findSession(store, first.sessionId)!.supervisor!.lease_expires_at!)).toBeGreaterThan(Date.now());

      // From host-b, while the lease runs: refused, naming host-a.
      const refused = await asHost("host-b", () => errorOf(claimNewSession(store, CONFIG, { mode: "start", projectDir: dir, configPath: undefined, storeDir: dir, task: "u" }, identity("host-b", 2000, OTHER_NONCE))));
      expect(refused.code).toBe("APEX_E_SESSION_ACTIVE");
      expect(refused.message).toContain("on host host-a");
      const early = await asHost("host-b", () => errorOf(claimContinuedSession(store, CONFIG, { sessionId: first.sessionId, checkpoint: undefined }, identity("host-b", 60_000, OTHER_NONCE))));
      expect(early.code).toBe("APEX_E_SESSION_ACTIVE");
      expect(early.message).toContain("host host-a");

      // The lease runs out unrenewed: host-b takes the session over.
      await new Promise((resolve) => setTimeout(resolve, 2100));
      const taken = await asHost("host-b", () => claimContinuedSession(store, CONFIG, { sessionId: first.sessionId, checkpoint: undefined }, identity("host-b", 60_000, OTHER_NONCE)));
      expect(taken).toMatchObject({ generation: 2, takenOverFrom: "host-a", continued: true });
      const now = store.get(sessionPath(first.sessionId)) as SessionRecord;
      expect(now.supervisor).toMatchObject({ host: "host-b", generation: 2, nonce: OTHER_NONCE });
      expect(readLease(store, first.sessionId)).toMatchObject({ host: "host-b", generation: 2, nonce: OTHER_NONCE });
      expect(now.history.at(-1)).toMatchObject({ event: "continued", from: "interrupted", host: "host-b", taken_over_from: { host: "host-a", generation: 1 } });
      expect(events(store, first.sessionId).map((event) => event.type)).toEqual(["session.started", "session.taken_over", "session.continued"]);
      expect(events(store, first.sessionId)[1]).toMatchObject({ from_host: "host-a", to_host: "host-b", generation: 2 });
      // Now host-a is refused in turn, naming host-b.
      const back = await asHost("host-a", () => errorOf(claimNewSession(store, CONFIG, { mode: "start", projectDir: dir, configPath: undefined, storeDir: dir, task: "v" }, identity("host-a", 400))));
      expect(back.message).toContain("on host host-b");
    } finally {
      await store.close();
    }
  });

  it("the holder renews, renews past an expiry nobody used, and once taken over refuses every write and says who took it", async () => {
    const store = await openStore(join(dir, "store"));
    try {
      const claimedAt = performance.now();
      const claim = await asHost("host-a", () => claimNewSession(store, CONFIG, { mode: "start", projectDir: dir, configPath: undefined, storeDir: dir, task: "t" }, identity("host-a", 300)));
      const lost: string[] = [];
      const holder = new LeaseHolder(store, claim.sessionId, { host: "host-a", generation: 1, nonce: NONCE }, 300, (reason) => lost.push(reason), () => undefined, claimedAt);
      holder.fence();
      const before = readLease(store, claim.sessionId)!.expires_at;
      const revision = store.revision();
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(holder.renew()).toMatchObject({ kind: "renewed" });
      const after = readLease(store, claim.sessionId)!.expires_at;
      expect(Date.parse(after)).toBeGreaterThan(Date.parse(before));
      // A renewal is not a keyspace revision.
      expect(store.revision()).toBe(revision);

      // Past the deadline (a frozen process), the next write renews first, since nobody took the session.
      await new Promise((resolve) => setTimeout(resolve, 400));
      await store.set("/notes/a", 1);
      expect(store.get("/notes/a")).toBe(1);
      expect(Date.parse(readLease(store, claim.sessionId)!.expires_at)).toBeGreaterThan(Date.now());

      // Expired again, and this time host-b takes it over (writing around the fence, as another process would).
      await new Promise((resolve) => setTimeout(resolve, 400));
      const other = await openStore(join(dir, "store"));
      try {
        await asHost("host-b", () => claimContinuedSession(other, CONFIG, { sessionId: claim.sessionId, checkpoint: undefined }, identity("host-b", 60_000, OTHER_NONCE)));
      } finally {
        await other.close();
      }
      const refused = await errorOf(store.set("/notes/b", 2));
      expect(refused.code).toBe("APEX_E_LEASE_LOST");
      expect(refused.message).toContain(`host host-b (pid ${process.pid}) took it over (generation 2)`);
      expect(lost).toEqual([`host host-b (pid ${process.pid}) took it over (generation 2)`]);
      expect(store.get("/notes/b")).toBeUndefined();
      // The record is host-b's, untouched by host-a's attempts.
      expect((store.get(sessionPath(claim.sessionId)) as SessionRecord).supervisor).toMatchObject({ host: "host-b", generation: 2 });
      await expect(store.batch((batch) => batch.set("/notes/c", 3))).rejects.toMatchObject({ code: "APEX_E_LEASE_LOST" });
      holder.stop();
    } finally {
      await store.close();
    }
  });
});

// On each backend: the lease lives in the leases table, so a running holder leaves the keyspace
// alone, and the generation in that row fences every write, whatever the holder's clock says.
forEachBackend((backend) => {
  it("a holder renewing for 3×ttl adds no revision and no change; the lease row moves on", async () => {
    const store = await backend.fresh();
    const claim = await asHost("host-a", () => claimNewSession(store, CONFIG, { mode: "start", projectDir: dir, configPath: undefined, storeDir: dir, task: "t" }, identity("host-a", 600)));
    const holder = new LeaseHolder(store, claim.sessionId, { host: "host-a", generation: 1, nonce: NONCE }, 600, () => undefined, () => undefined, performance.now());
    holder.fence();
    const revision = store.revision();
    const first = readLease(store, claim.sessionId)!.expires_at;
    holder.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 1800));
    } finally {
      holder.stop();
    }
    expect(holder.lost).toBe(false);
    expect(store.revision()).toBe(revision);
    expect(Array.from(store.changesSince(revision))).toEqual([]);
    // Renewed (at least once: the timer runs every 200 ms, on a loaded machine fewer times).
    expect(Date.parse(readLease(store, claim.sessionId)!.expires_at)).toBeGreaterThan(Date.parse(first));
    // And the record read through the session readers carries the row's expiry.
    expect(findSession(store, claim.sessionId)!.supervisor!.lease_expires_at).toBe(readLease(store, claim.sessionId)!.expires_at);
  });

  it("a write of a holder taken over is refused by the lease row, before its own deadline passed", async () => {
    const store = await backend.fresh();
    const claim = await asHost("host-a", () => claimNewSession(store, CONFIG, { mode: "start", projectDir: dir, configPath: undefined, storeDir: dir, task: "t" }, identity("host-a", 1)));
    const lost: string[] = [];
    // Its own clock says the lease runs for another minute (a skewed clock, say).
    const holder = new LeaseHolder(store, claim.sessionId, { host: "host-a", generation: 1, nonce: NONCE }, 60_000, (reason) => lost.push(reason), () => undefined, performance.now());
    holder.fence();
    await store.set("/notes/a", 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const other = await backend.reopen(store);
    await asHost("host-b", () => claimContinuedSession(other, CONFIG, { sessionId: claim.sessionId, checkpoint: undefined }, identity("host-b", 60_000, OTHER_NONCE)));
    const refused = await errorOf(store.set("/notes/b", 2));
    expect(refused.code).toBe("APEX_E_LEASE_LOST");
    expect(lost).toEqual([`host host-b (pid ${process.pid}) took it over (generation 2)`]);
    expect(store.get("/notes/b")).toBeUndefined();
    expect(store.get("/notes/a")).toBe(1);
  });
});

describe("session history sees the lease", () => {
  it("a session live on another host is active while its lease runs, interrupted once it ran out (from the built CLI)", async () => {
    const { runApex } = await import("./helpers/cli.js");
    const { writeLease } = await import("../dist/core/session/lease.js");
    const store = await openStore(join(dir, ".apex"));
    let sessionId: string;
    try {
      const claimed = await asHost("host-a", () => claimNewSession(store, CONFIG, { mode: "start", projectDir: dir, configPath: undefined, storeDir: join(dir, ".apex"), task: "t" }, identity("host-a", 60_000)));
      sessionId = claimed.sessionId;
    } finally {
      await store.close();
    }
    const history = () => {
      const result = runApex(["session", "history", sessionId, "--json"], { cwd: dir, env: { APEX_HOST: "host-b" } });
      expect(result.status, result.stderr).toBe(0);
      return JSON.parse(result.stdout) as { status: string };
    };
    expect(history().status).toBe("active");
    const again = await openStore(join(dir, ".apex"));
    try {
      await again.transaction(() => writeLease(again, sessionId, { host: "host-a", generation: 1, nonce: NONCE, expires_at: inMs(-1000) }));
    } finally {
      await again.close();
    }
    expect(history().status).toBe("interrupted");
  });
});
