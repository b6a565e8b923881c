import { ApexError } from "../../core/errors.js";
import { boundSessionId, resolveSessionId as resolveSessionRef } from "../../core/session/sessions.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { diffGitState, type GitChanges } from "./compare.js";
import { isDirectory } from "../../core/config/locate.js";
import { noRepository } from "./git.js";
import { asGitState, type ChangedFile, type GitState } from "./state.js";

/** Where `apex session sync-git` records a session's git state. */
export function sessionGitPath(sessionId: string): string {
  return `/sessions/${sessionId}/git`;
}

export type RecordedGitState = GitState & {
  synced_at: string;
};

export interface CheckpointRef {
  name: string;
  id: string | null;
  sequence: number;
  created_at: string | null;
  git_state: GitState | null;
}

export interface SyncReport {
  session_id: string;
  repository: string;
  git: RecordedGitState;
  /** The session's latest checkpoint; null when it has none. */
  checkpoint: CheckpointRef | null;
  /** The difference from the checkpoint's git_state; null without a checkpoint or git_state. */
  changes: {
    branch_changed: boolean;
    branch_from: string | null;
    branch_to: string | null;
    commit_from: string | null;
    commit_to: string | null;
    commits_since: number | null;
    commits_behind: number | null;
    log: GitChanges["log"];
    checkpoint_commit_present: boolean | null;
  } | null;
  /** The uncommitted changes now, with or without a checkpoint. */
  dirty_files: ChangedFile[];
}

/**
 * `apex session sync-git`: records the repository's git state at /sessions/<id>/git and
 * compares it with the git_state of the session's latest checkpoint.
 */
export async function syncGit(store: Store, sessionId: string, repoDir: string, now: Date = new Date()): Promise<SyncReport> {
  const latest = latestCheckpoint(store, sessionId);
  // The store's own files (.apex/) are never a change of the project.
  const changes = await diffGitState(repoDir, latest?.git_state ?? null, [store.dir]);
  const current = changes.current;
  if (!current) throw noRepository(repoDir, isDirectory(repoDir) ? undefined : "the directory does not exist");
  const recorded: RecordedGitState = { branch: current.branch, commit: current.commit, dirty: current.dirty, synced_at: now.toISOString() };
  await store.set(sessionGitPath(sessionId), recorded as JsonValue, "plugin:git");
  return {
    session_id: sessionId,
    repository: repoDir,
    git: recorded,
    checkpoint: latest,
    changes: latest?.git_state
      ? {
          branch_changed: changes.branch_changed,
          branch_from: latest.git_state.branch,
          branch_to: current.branch,
          commit_from: latest.git_state.commit,
          commit_to: current.commit,
          commits_since: changes.commits_since,
          commits_behind: changes.commits_behind,
          log: changes.log,
          checkpoint_commit_present: changes.checkpoint_commit_present,
        }
      : null,
    dirty_files: current.files,
  };
}

/**
 * The session `id` names (core's resolveSessionId: an id, a unique prefix, a name), or without an id
 * the session this command is bound to (core/session/binding.ts: the agent's, `--session`, this
 * worktree's, the project's, the only active one). Looks in /sessions and /sessions/history.
 */
export function resolveSessionId(store: Store, id: string | undefined): string {
  if (id === undefined) {
    const bound = boundSessionId(store);
    if (bound) return bound;
    throw new ApexError("APEX_E_NO_SESSION", "No session is active in this project.", {
      hint: "Name a session: apex session sync-git <ID> (see `apex session list`).",
    });
  }
  // An id, a unique prefix, a branch's name, last or current: as every command reads a session.
  return resolveSessionRef(store, id);
}

/**
 * The session's checkpoint manifest with the highest sequence number, read from the keyspace
 * (/sessions/<id>/checkpoint-<NNN>), so that it works whichever code wrote it.
 */
export function latestCheckpoint(store: Store, sessionId: string): CheckpointRef | null {
  let best: CheckpointRef | null = null;
  for (const { path, value } of store.query(`/sessions/${escapeGlob(sessionId)}/checkpoint-*`)) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    const match = /^checkpoint-(\d+)$/.exec(name);
    if (!match) continue;
    const sequence = Number(match[1]);
    if (best && best.sequence >= sequence) continue;
    const manifest = value !== null && typeof value === "object" && !Array.isArray(value) ? value : {};
    best = {
      name,
      id: typeof manifest.id === "string" ? manifest.id : null,
      sequence,
      created_at: typeof manifest.created_at === "string" ? manifest.created_at : null,
      git_state: asGitState(manifest.git_state),
    };
  }
  return best;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?\\]/g, (char) => `\\${char}`);
}
