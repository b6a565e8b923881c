import { setTimeout as sleep } from "node:timers/promises";
import type { ProjectLocation } from "../config/locate.js";
import type { Glob } from "../store/glob.js";
import type { Change, JsonValue } from "../store/store.js";
import { openSessionClient, type SessionClient } from "../session/client.js";
import { paint } from "./output.js";

const POLL_MS = 100;

export interface WatchOptions {
  since?: number;
  timeout?: number;
  json?: boolean;
  /** Only changes: no current values first (as with --since, which replays changes instead). */
  changesOnly?: boolean;
}

/**
 * Prints the current value of every path under the glob (kind `current`), then follows the
 * revision log and prints every change (kind `put` or `delete`). Polls the log (a cheap range
 * read from the last seen revision), so writes by any process are seen. The values are read
 * after the revision they start from, so a write in between is printed twice (as a current
 * value and as a change) rather than missed.
 */
export async function watchChanges(location: ProjectLocation, glob: Glob, options: WatchOptions): Promise<void> {
  const withCurrent = options.changesOnly !== true && options.since === undefined;
  const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout * 1000;
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let client: SessionClient | undefined;
  try {
    // With no store yet, wait for one (the first write creates it).
    while (!interrupted && Date.now() < deadline) {
      client = await openSessionClient(location, "read");
      if (!client.empty) break;
      await client.close();
      client = undefined;
      await sleep(POLL_MS);
    }
    if (client) await follow(client, glob, { ...options, withCurrent }, deadline, () => interrupted);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await client?.close();
  }
}

/** Polls the revision log where the session is (inside an agent, the supervisor's, so the agent never opens LMDB). */
async function follow(
  client: SessionClient,
  glob: Glob,
  options: { since?: number; json?: boolean; withCurrent: boolean },
  deadline: number,
  interrupted: () => boolean,
): Promise<void> {
  let since = options.since;
  if (options.withCurrent) {
    since = ((await client.call("memory.changes", {})) as { revision: number }).revision;
    const entries = (await client.call("memory.query", { glob: glob.source })) as Array<{ path: string; value: JsonValue }>;
    for (const entry of entries) printCurrent(entry.path, entry.value, since, Boolean(options.json));
  }
  while (!interrupted() && Date.now() < deadline) {
    const reply = (await client.call("memory.changes", { since, glob: glob.source })) as {
      revision: number;
      changes: Array<Change & { value: JsonValue | null }>;
    };
    for (const change of reply.changes) printChange(change, change.value ?? undefined, Boolean(options.json));
    since = reply.revision;
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
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
