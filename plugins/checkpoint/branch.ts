import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { worktreeBackHint } from "../../cli/git-worktrees.js";
import { ApexError } from "../../core/errors.js";
import { worktreeOf } from "../../core/session/records.js";
import { allSessions } from "../../core/session/sessions.js";
import { checkSessionName, sessionNamedAlike } from "./session-name.js";
import { appendEvent } from "../../core/session/service.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog } from "./catalog.js";
import { checkpointName, manifestPath, signManifest, MANIFEST_FORMAT, type CheckpointManifest } from "./manifest.js";
import { ACTORS, assertWritable, getCheckpoint } from "./refs.js";
import { ancestryOf, BRANCH_TRIGGER, sessionLabel, sessionName, sessionRecord } from "./merge-base.js";
import { defaultSessionIfAny } from "./plugin-sessions.js";
import { inheritLangGraphThreads, type InheritedThreads } from "./langgraph-branch.js";

/**
 * `apex session branch CHECKPOINT NAME`: a new session whose state is a checkpoint. Nothing is
 * copied: the branch's first checkpoint (trigger `branch`, parent: the checkpoint it branched
 * from) names the same three tree roots, so creating it writes a session record, one manifest,
 * its catalog records and two audit events, whatever the size of memory. The session is kept
 * with the stopped ones (it runs nothing yet); `apex start --continue NAME` runs it, restoring
 * that checkpoint.
 */

export interface BranchOptions {
  /** The git worktree created for the branch (done by the caller, recorded here). */
  worktree?: { path: string; branch: string; commit: string | null } | undefined;
  actor?: string;
  now?: () => Date;
}

export interface BranchReport {
  session_id: string;
  name: string;
  parent_checkpoint: { id: string; session_id: string; sequence: number; name: string };
  checkpoint: { id: string; name: string; sequence: number };
  worktree: { path: string; branch: string; commit: string | null } | null;
  /** The LangGraph threads the branch resumes from where they were (langgraph-branch.ts); absent when the checkpoint holds none. */
  langgraph?: InheritedThreads;
}

/** The checkpoint `ref` names, looked up in the current session (else the one that ended last) for short forms. */
export function branchSource(store: Store, ref: string): CheckpointManifest {
  const sessionId = defaultSessionIfAny(store);
  return getCheckpoint(store, ref, sessionId ? { sessionId } : {});
}

/** Refuses a name that is invalid or taken (by a name or a session id). */
export function checkNewSessionName(store: Store, name: string): void {
  checkSessionName(name);
  const taken = sessionNamedAlike(store, name);
  if (taken && taken.name !== name) {
    throw new ApexError("APEX_E_CONFLICT", `A session named ${JSON.stringify(taken.name)} already exists (${taken.sessionId}); ${JSON.stringify(name)} differs from it only in case.`, {
      hint: `Session names are unique in a project whatever their case (their git branches apex/${taken.name} and apex/${name} would be one on a file system that ignores case); choose another (\`apex session list\` shows them).`,
      details: { name, existing: { name: taken.name, session_id: taken.sessionId } },
    });
  }
  if (taken || sessionRecord(store, name)) {
    throw new ApexError("APEX_E_CONFLICT", `A session named ${JSON.stringify(name)} already exists${taken ? ` (${taken.sessionId})` : ""}.`, {
      hint: "Session names are unique in a project; choose another (`apex session list` shows them).",
    });
  }
}

/**
 * Refuses a worktree directory another session records as its own (one whose directory was
 * deleted by hand, then given to a new branch): both would bind to it, and the older session,
 * continued, ran there on the new branch's git branch.
 */
export function checkWorktreeFree(store: Store, path: string, projectDir?: string): void {
  const holder = allSessions(store).find((record) => worktreeOf(record) === path);
  if (!holder) return;
  const label = typeof holder.name === "string" && holder.name ? holder.name : holder.session_id;
  const { branch, commit } = (holder.worktree ?? {}) as { branch?: unknown; commit?: string | null };
  // Gone: moved with mv (git worktree repair, then move, keeps its files), or deleted (made again). The CLI looks for where it went.
  const back = existsSync(path) || typeof branch !== "string" ? undefined : projectDir !== undefined ? worktreeBackHint(projectDir, path, branch, commit) : undefined;
  const gone = existsSync(path) || typeof branch !== "string" ? "" : back ? ` ${label}'s worktree: ${back.hint.charAt(0).toLowerCase()}${back.hint.slice(1)}` : ` To bring ${label}'s back, from the project: moved with mv, git worktree repair NEW-DIR && git worktree move NEW-DIR ${JSON.stringify(path)}; deleted, git worktree prune && git worktree add ${JSON.stringify(path)} ${branch}`;
  throw new ApexError("APEX_E_CONFLICT", `${path} is the git worktree of session ${label}${existsSync(path) ? "" : back?.movedTo ? ` (its directory was moved to ${back.movedTo})` : " (its directory is gone)"}; not creating another one there.`, {
    hint: `Give --worktree another directory.${gone}`,
    details: { path, session_id: holder.session_id, ...(back?.movedTo ? { moved_to: back.movedTo } : {}) },
  });
}

export async function createBranch(store: Store, ref: string, name: string, options: BranchOptions = {}): Promise<BranchReport> {
  assertWritable(store);
  let report!: BranchReport;
  await store.transaction(() => {
    const source = branchSource(store, ref);
    checkNewSessionName(store, name);
    if (options.worktree) checkWorktreeFree(store, options.worktree.path);
    const sessionId = randomUUID();
    const at = (options.now?.() ?? new Date()).toISOString();
    const actor = options.actor ?? "user";
    const parentRecord = sessionRecord(store, source.session_id);
    const projectConfig = store.get("/projects/config") as { project_id?: unknown } | undefined;
    const parent = { id: source.id, session_id: source.session_id, sequence: source.sequence, name: source.name };
    const agents = Array.isArray(parentRecord?.agents) ? parentRecord.agents.filter((agent): agent is string => typeof agent === "string") : [];
    const record: Record<string, JsonValue> = {
      session_id: sessionId,
      name,
      project_id: typeof parentRecord?.project_id === "string" ? parentRecord.project_id : typeof projectConfig?.project_id === "string" ? projectConfig.project_id : null,
      created_at: at,
      updated_at: at,
      // Not running: kept with the stopped sessions until `apex start --continue NAME`.
      status: "stopped",
      initial_task: typeof parentRecord?.initial_task === "string" ? parentRecord.initial_task : null,
      agents,
      supervisor: null,
      history: [{ event: "branched", at, checkpoint: source.id }],
      // The session as session list names it (its name, else its id's short form): it was the whole uuid.
      outcome: `branched from ${sessionLabel(store, source.session_id)}/${source.name}`,
      ended_at: at,
      restored_from: null,
      parent_checkpoint: parent,
      parent_session: source.session_id,
      worktree: options.worktree ?? null,
    };
    const manifest = writeDerivedCheckpoint(store, {
      sessionId,
      trigger: BRANCH_TRIGGER,
      description: `branch ${name} from ${sessionLabel(store, source.session_id)}/${source.name}`,
      parent: source.id,
      createdAt: at,
      roots: source,
      gitState: withWorktree(source.git_state, options.worktree),
      // With the branch point's time and ancestry (its trees are this checkpoint's own): once it is deleted with
      // `checkpoint delete --force`, a merge of the branch still finds it as the base (merge-base.ts recordedBranchPoint).
      data: {
        branch: {
          name,
          from: {
            ...parent,
            session_name: sessionName(store, source.session_id),
            created_at: source.created_at,
            memory_root: source.memory.root,
            tasks_root: source.tasks.root,
            ancestry: Object.fromEntries(ancestryOf(store, { sessionId: source.session_id, sequence: source.sequence })),
          },
        },
      },
      actor: ACTORS.checkpoint,
    });
    const threads = inheritLangGraphThreads(store, source, manifest, ACTORS.checkpoint);
    store.batchSync((batch) => {
      batch.set(`/sessions/history/${sessionId}`, record);
      appendEvent(batch, sessionId, "session.branched", actor, { name, from: parent, checkpoint: manifest.id, worktree: options.worktree ?? null });
      appendEvent(batch, source.session_id, "session.branch", actor, { name, session: sessionId, checkpoint: source.id });
    }, actor);
    report = {
      session_id: sessionId,
      name,
      parent_checkpoint: parent,
      checkpoint: { id: manifest.id, name: manifest.name, sequence: manifest.sequence },
      worktree: options.worktree ?? null,
      ...(threads.carried.length + threads.missing.length > 0 ? { langgraph: threads } : {}),
    };
  });
  return report;
}

function withWorktree(gitState: JsonValue | null, worktree: BranchOptions["worktree"]): JsonValue | null {
  if (!worktree) return gitState;
  const base = gitState && typeof gitState === "object" && !Array.isArray(gitState) ? gitState : {};
  return { ...base, branch: worktree.branch, commit: worktree.commit, dirty: false, worktree: worktree.path };
}

export interface DerivedCheckpoint {
  sessionId: string;
  trigger: string;
  description: string;
  parent: string | null;
  mergeParent?: string;
  createdAt: string;
  /** Whose trees it holds (memory, tasks, agents). */
  roots: Pick<CheckpointManifest, "memory" | "tasks" | "agents">;
  gitState: JsonValue | null;
  data: { [key: string]: JsonValue };
  actor: string;
}

/**
 * Writes a checkpoint from trees that already exist (a branch's first checkpoint, a merge into
 * a session that is not running). Call inside a write transaction. It is not the base of the
 * next incremental build: that stays the live state's.
 */
export function writeDerivedCheckpoint(store: Store, params: DerivedCheckpoint): CheckpointManifest {
  const catalog = Catalog.of(store);
  const sequence = catalog.allocateSequence(params.sessionId);
  const manifest = signManifest({
    format: MANIFEST_FORMAT,
    id: randomUUID(),
    session_id: params.sessionId,
    sequence,
    name: checkpointName(sequence),
    parent: params.parent,
    ...(params.mergeParent ? { merge_parent: params.mergeParent } : {}),
    created_at: params.createdAt,
    description: params.description,
    trigger: params.trigger,
    pinned: false,
    revision: store.revision(),
    memory: { root: params.roots.memory.root, keys: params.roots.memory.keys, scope: params.roots.memory.scope },
    tasks: { root: params.roots.tasks.root, count: params.roots.tasks.count },
    agents: { root: params.roots.agents.root, count: params.roots.agents.count },
    git_state: params.gitState,
    data: params.data,
  });
  store.batchSync((batch) => batch.set(manifestPath(params.sessionId, sequence), manifest as unknown as JsonValue), params.actor);
  catalog.putCheckpoint(manifest);
  return manifest;
}
