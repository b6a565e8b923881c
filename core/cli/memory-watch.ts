import { setTimeout as sleep } from "node:timers/promises";
import type { ProjectLocation } from "../config/locate.js";
import type { Glob } from "../store/glob.js";
import { type Store, type Change, type JsonValue } from "../store/store.js";
import { openStore, storeExists } from "../store/open.js";
import { paint } from "./output.js";
import { forcedEndpoint } from "../session/runtime.js";

const POLL_MS = 100;
/** How often the log is read when the store signals nothing (a signal lost with a connection). */
const RECHECK_MS = 1000;

export interface WatchOptions {
  since?: number;
  timeout?: number;
  json?: boolean;
  /** Only changes: no current values first (as with --since, which replays changes instead). */
  changesOnly?: boolean;
}

/**
 * Prints the current value of every path under the glob (kind `current`), then follows the
 * revision log and prints every change (kind `put` or `delete`). The log (a cheap range read
 * from the last seen revision) is read when the store signals a change (`subscribe`: LMDB polls
 * its revision, PostgreSQL LISTENs), and once a second in any case, so writes by any process
 * are seen. The values are read after the revision they start from, so a write in between is
 * printed twice (as a current value and as a change) rather than missed.
 */
export async function watchChanges(location: ProjectLocation, glob: Glob, options: WatchOptions): Promise<void> {
  const withCurrent = options.changesOnly !== true && options.since === undefined;
  const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout * 1000;
  let interrupted = false;
  /** Ends the current wait for a change (a signal from the store, or SIGINT/SIGTERM). */
  let wake: (() => void) | undefined;
  const onSignal = () => {
    interrupted = true;
    wake?.();
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const endpoint = forcedEndpoint();
  if (endpoint) {
    await watchThroughSupervisor(endpoint, glob, { ...options, withCurrent }, deadline, () => interrupted);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    return;
  }
  let store: Store | undefined;
  let unsubscribe: (() => void) | undefined;
  try {
    // The store is looked for, and the log read, at least once whatever the timeout: opening a
    // server store can take longer than a short --timeout, which ends the following, not the
    // replay of what was there when the watch began.
    for (let first = true; first || (!interrupted && Date.now() < deadline); first = false) {
      if (!store && (await storeExists(location))) store = await openStore(location, { readOnly: true });
      if (store) break;
      await sleep(POLL_MS);
    }
    if (!store) return;
    const { memoryViewOf } = await import("../session/memory-view.js");
    const { boundSessionId } = await import("../session/sessions.js");
    // The working memory of the session this command acts on (its own root in a git worktree).
    const view = memoryViewOf(store, boundSessionId(store));
    // Subscribed before the first read, so that a commit after it is signalled.
    let signalled = false;
    unsubscribe = store.subscribe(() => {
      signalled = true;
      wake?.();
    });
    let since = options.since ?? store.revision();
    if (withCurrent) for (const entry of view.entries(store.query(view.glob(glob.source)), glob.source)) printCurrent(entry.path, entry.value, since, Boolean(options.json));
    for (let first = true; first || (!interrupted && Date.now() < deadline); first = false) {
      signalled = false;
      for (const change of store.changesSince(since)) {
        since = change.revision;
        if (!view.covers(change.path)) continue;
        const path = view.unpath(change.path);
        if (glob.matches(path)) print({ ...change, path }, store, Boolean(options.json), change.path);
      }
      if (signalled || interrupted) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => done(), Math.min(RECHECK_MS, Math.max(0, deadline - Date.now())));
        const done = () => {
          clearTimeout(timer);
          wake = undefined;
          resolve();
        };
        wake = done;
      });
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    unsubscribe?.();
    await store?.close();
  }
}

/** Inside an agent: poll the supervisor's revision log, so the agent never opens LMDB. */
async function watchThroughSupervisor(
  socket: string,
  glob: Glob,
  options: { since?: number; json?: boolean; withCurrent: boolean },
  deadline: number,
  interrupted: () => boolean,
): Promise<void> {
  const { callSupervisor } = await import("../rpc/call.js");
  let since = options.since;
  if (options.withCurrent) {
    since = ((await callSupervisor(socket, "memory.changes", {})) as { revision: number }).revision;
    const entries = (await callSupervisor(socket, "memory.query", { glob: glob.source })) as Array<{ path: string; value: JsonValue }>;
    for (const entry of entries) printCurrent(entry.path, entry.value, since, Boolean(options.json));
  }
  while (!interrupted() && Date.now() < deadline) {
    const reply = (await callSupervisor(socket, "memory.changes", { since, glob: glob.source })) as {
      revision: number;
      changes: Array<Change & { value: JsonValue | null }>;
    };
    for (const change of reply.changes) printChange(change, change.value ?? undefined, Boolean(options.json));
    since = reply.revision;
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
}

function print(change: Change, store: Store, json: boolean, storedPath = change.path): void {
  printChange(change, change.kind === "put" ? store.get(storedPath) : undefined, json);
}

function printCurrent(path: string, value: JsonValue, revision: number, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ revision, kind: "current", path, value })}\n`);
    return;
  }
  process.stdout.write(`${paint(String(revision).padStart(6), "gray")} ${paint("current", "blue")} ${paint(path, "cyan")}  ${JSON.stringify(value)}\n`);
}

function printChange(change: Change, value: JsonValue | undefined, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...change, value: value ?? null })}\n`);
    return;
  }
  const kind = change.kind === "put" ? paint("put    ", "green") : paint("delete ", "red");
  const shown = change.kind === "put" ? `  ${JSON.stringify(value)}` : "";
  process.stdout.write(`${paint(String(change.revision).padStart(6), "gray")} ${kind} ${paint(change.path, "cyan")}${shown}  ${paint(change.actor, "gray")}\n`);
}
