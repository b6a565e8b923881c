import type { ApexApi, GitContext, SessionContext } from "../../core/engine.js";
import { appendEvent } from "../../core/session/service.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { gitCommandOf, sessionGitPath } from "../git/repository.js";

/** Who the git events name: the git plugin fires beforeGit and records syncs on behalf of whoever ran git. */
export const GIT_ACTOR = "plugin:git";
/** How often the supervisor looks for a new `apex session sync-git` record. */
const SYNC_POLL_MS = 1000;

/**
 * The audit events the core cannot write itself, added to the session's trail inside the
 * supervisor (the store's one writer):
 *
 * - `git.operation` {command, args, source}: a git operation about to change the project
 *   (beforeGit: `apex git -- …`, `apex git notify`, or an installed git hook);
 * - `git.synced` {branch, commit, dirty, synced_at}: `apex session sync-git` recorded the
 *   repository's state at /sessions/<id>/git (seen by polling that record, as the git plugin
 *   fires no hook for it).
 *
 * Lifecycle, task, checkpoint, restore and retention events are written by the code that
 * makes those changes, in the same transaction.
 */
export class GitAudit {
  private sessionId: string | undefined;
  private lastSync: string | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly apex: ApexApi) {}

  start(context: SessionContext): void {
    const store = this.apex.store;
    if (!store) return;
    this.stop();
    this.sessionId = context.sessionId;
    // A sync recorded before this run is not news.
    this.lastSync = JSON.stringify(store.get(sessionGitPath(context.sessionId)) ?? null);
    this.timer = setInterval(() => void this.pollSync(store), SYNC_POLL_MS).unref();
  }

  async gitOperation(context: GitContext): Promise<void> {
    const store = this.apex.store;
    // A supervisor records its own session's; a command run on the store (no supervisor running the session) the one it fired in.
    if (!store || (this.sessionId !== undefined && context.sessionId !== this.sessionId)) return;
    await this.record(store, context.sessionId, "git.operation", { command: gitCommandOf(context.args) ?? null, args: [...context.args], source: context.source });
  }

  /** The session ended: a sync made just before still gets its event. */
  async finish(sessionId: string): Promise<void> {
    const store = this.apex.store;
    if (store && sessionId === this.sessionId) await this.pollSync(store);
    this.stop();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private syncFailing = false;

  /** Never rejects (it runs on a timer): a store that cannot be read now (PostgreSQL restarting) is looked at again on the next tick. */
  private async pollSync(store: Store): Promise<void> {
    const sessionId = this.sessionId;
    if (!sessionId) return;
    let value: JsonValue | undefined;
    try {
      value = store.get(sessionGitPath(sessionId));
    } catch {
      return;
    }
    const seen = JSON.stringify(value ?? null);
    if (seen === this.lastSync) return;
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      this.lastSync = seen;
      return;
    }
    const record = value;
    const field = (name: string) => (record[name] === undefined ? null : record[name]!);
    try {
      await this.record(store, sessionId, "git.synced", { branch: field("branch"), commit: field("commit"), dirty: field("dirty"), synced_at: field("synced_at") });
      this.lastSync = seen;
      this.syncFailing = false;
    } catch (error) {
      // Tried again on the next tick: warned of once.
      if (!this.syncFailing) this.apex.warn(`cannot record a git sync (trying again): ${(error as Error).message}`);
      this.syncFailing = true;
    }
  }

  private async record(store: Store, sessionId: string, type: string, data: Record<string, JsonValue>): Promise<void> {
    await store.batch((batch) => {
      appendEvent(batch, sessionId, type, GIT_ACTOR, data);
    }, GIT_ACTOR);
  }
}
