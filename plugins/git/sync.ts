import { ApexError } from "../../core/errors.js";
import { boundSessionId, resolveSessionId as resolveSessionRef } from "../../core/session/sessions.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { countOf, diffGitState, type GitChanges } from "./compare.js";
import { isDirectory } from "../../core/config/locate.js";
import { noRepository } from "./git.js";
import { sessionGitPath } from "./repository.js";
import { asGitState, describeState, formatChangedFile, shortCommit, type ChangedFile, type GitState } from "./state.js";
import { shortSessionId } from "../../core/session/names.js";
import { visibleText } from "../../cli/terminal-text.js";

export { sessionGitPath };

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

/** `name`: the session's name, which the text names it by, else its uuid's short form, as session list does (--json has the whole id). */
export function formatSyncReport(report: SyncReport, name: string | null = null): string[] {
  const lines: string[] = [];
  const dirty = report.git.dirty ? `, ${countOf(report.dirty_files.length, "uncommitted change")}` : ", clean";
  lines.push(`Recorded the git state of session ${name ? visibleText(name) : shortSessionId(report.session_id)}: ${describeState(report.git)}${dirty}.`);
  const checkpoint = report.checkpoint;
  if (!checkpoint) {
    lines.push("The session has no checkpoint yet: nothing to compare with.");
  } else if (!checkpoint.git_state || !report.changes) {
    lines.push(`${checkpoint.name} recorded no git state: nothing to compare with.`);
  } else {
    const changes = report.changes;
    lines.push(`Since ${checkpoint.name} (${describeState(checkpoint.git_state)}):`);
    let any = false;
    if (changes.commit_from !== changes.commit_to) {
      any = true;
      if (changes.checkpoint_commit_present === false) {
        lines.push(`  HEAD moved from ${shortCommit(changes.commit_from ?? "")}, a commit that is not in this repository.`);
      } else {
        lines.push(`  ${countOf(changes.commits_since ?? 0, "commit")} since the checkpoint${changes.commits_since ? ":" : "."}`);
        for (const entry of changes.log) lines.push(`    ${shortCommit(entry.commit)} ${entry.subject}`);
        if ((changes.commits_since ?? 0) > changes.log.length) lines.push(`    … and ${(changes.commits_since ?? 0) - changes.log.length} more`);
        if (changes.commits_behind) lines.push(`  ${countOf(changes.commits_behind, "commit")} of the checkpoint no longer on HEAD.`);
      }
    }
    if (changes.branch_changed) {
      any = true;
      lines.push(`  Branch changed: ${changes.branch_from ?? "(detached HEAD)"} → ${changes.branch_to ?? "(detached HEAD)"}`);
    }
    if (!any) lines.push(`  No new commits; same branch.`);
  }
  if (report.dirty_files.length > 0) {
    lines.push(`Uncommitted changes (${report.dirty_files.length}):`);
    for (const file of report.dirty_files) lines.push(`  ${formatChangedFile(file)}`);
  }
  return lines;
}
