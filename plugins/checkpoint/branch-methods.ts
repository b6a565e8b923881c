import type { CheckpointDraft, CheckpointInfo } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import type { MemoryScope } from "./scope.js";

/**
 * The control methods behind `apex session branch|merge|tree`: served by the supervisor while
 * one runs (it is the store's one writer, so a merge into the running session is applied
 * between two of its own writes), called in the CLI process otherwise. Their code is loaded on
 * the first call: a process that only reads or writes checkpoints never loads it.
 */
export function branchMethods(
  store: Store,
  options: {
    serialize: <T>(fn: () => Promise<T>) => Promise<T>;
    scope: MemoryScope;
    enrich?: (draft: CheckpointDraft) => Promise<CheckpointDraft>;
    afterCheckpoint?: (info: CheckpointInfo) => Promise<void>;
  },
): Record<string, (params: Record<string, unknown>) => unknown> {
  return {
    "session.branch": (params) =>
      options.serialize(async () => {
        const worktree = params.worktree as { path: string; branch: string; commit: string | null } | null | undefined;
        const { createBranch } = await import("./branch.js");
        const report = await createBranch(store, text(params, "checkpoint"), text(params, "name"), {
          ...(worktree ? { worktree } : {}),
          ...(typeof params.actor === "string" ? { actor: params.actor } : {}),
        });
        return report as unknown as JsonValue;
      }),
    "session.merge": (params) => {
      // writer_pid: the process that wrote the merge (DST's supervisor while DST runs: its one writer).
      // Not on a dry run, which writes nothing: its report is the same wherever it is read.
      const dryRun = params.dry_run === true;
      const run = async () =>
        ({ ...(await (await import("./session-merge.js")).mergeSessions(store, {
          source: text(params, "source"),
          destination: text(params, "destination"),
          strategy: typeof params.strategy === "string" ? params.strategy : undefined,
          dryRun,
          actor: typeof params.actor === "string" ? params.actor : undefined,
          scope: options.scope,
          ...(options.enrich ? { enrich: options.enrich } : {}),
          ...(options.afterCheckpoint ? { afterCheckpoint: options.afterCheckpoint } : {}),
          ...(params.git !== undefined ? { git: params.git as JsonValue } : {}),
        })), ...(dryRun ? {} : { writer_pid: process.pid }) }) as unknown as JsonValue;
      return dryRun ? run() : options.serialize(run);
    },
    "session.tree": async () => (await import("./tree.js")).sessionTree(store) as unknown as JsonValue,
  };
}

function text(params: Record<string, unknown>, name: string): string {
  const value = params[name];
  if (typeof value !== "string" || value.length === 0) throw new ApexError("APEX_E_BAD_INPUT", `The parameter ${name} is required.`);
  return value;
}
