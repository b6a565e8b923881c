import { setTimeout as sleep } from "node:timers/promises";
import type { ProjectLocation } from "../config/locate.js";
import type { Glob } from "../store/glob.js";
import { Store, type Change, type JsonValue } from "../store/store.js";
import { paint } from "./output.js";
import { forcedEndpoint } from "../session/runtime.js";

const POLL_MS = 100;

/**
 * Follows the revision log and prints every change under the glob. Polls the log (a cheap
 * range read from the last seen revision), so writes by any process are seen.
 */
export async function watchChanges(
  location: ProjectLocation,
  glob: Glob,
  options: { since?: number; timeout?: number; json?: boolean },
): Promise<void> {
  const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout * 1000;
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const endpoint = forcedEndpoint();
  if (endpoint) {
    await watchThroughSupervisor(endpoint, glob, options, deadline, () => interrupted);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    return;
  }
  let store: Store | undefined;
  try {
    while (!interrupted && Date.now() < deadline) {
      if (!store && Store.exists(location.storeDir)) store = Store.open(location.storeDir, { readOnly: true });
      if (store) break;
      await sleep(POLL_MS);
    }
    if (!store) return;
    let since = options.since ?? store.revision();
    while (!interrupted && Date.now() < deadline) {
      for (const change of store.changesSince(since)) {
        since = change.revision;
        if (glob.matches(change.path)) print(change, store, Boolean(options.json));
      }
      await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await store?.close();
  }
}

/** Inside an agent: poll the supervisor's revision log, so the agent never opens LMDB. */
async function watchThroughSupervisor(
  socket: string,
  glob: Glob,
  options: { since?: number; json?: boolean },
  deadline: number,
  interrupted: () => boolean,
): Promise<void> {
  const { callSupervisor } = await import("../rpc/call.js");
  let since = options.since;
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

function print(change: Change, store: Store, json: boolean): void {
  printChange(change, change.kind === "put" ? store.get(change.path) : undefined, json);
}

function printChange(change: Change, value: JsonValue | undefined, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...change, value: value ?? null })}\n`);
    return;
  }
  const kind = change.kind === "put" ? paint("put   ", "green") : paint("delete", "red");
  const shown = change.kind === "put" ? `  ${JSON.stringify(value)}` : "";
  process.stdout.write(`${paint(String(change.revision).padStart(6), "gray")} ${kind} ${paint(change.path, "cyan")}${shown}  ${paint(change.actor, "gray")}\n`);
}
