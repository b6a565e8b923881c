import { ApexError } from "../../core/errors.js";
import { isSameProcessAlive } from "../../core/session/proc.js";
import { canonicalJson, ObjectStore, PackCache, sha256, type Hash, type ObjectKind } from "../checkpoint/engine/objects.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog } from "../checkpoint/catalog.js";
import { checkpointName } from "../checkpoint/manifest.js";
import { readBundle, type BundleContent, type BundleKind, type ReadLimits } from "./bundle.js";
import { isRecord } from "../checkpoint/manifest.js";
import { historyPath, isGrantPath, livePath } from "./collect.js";
import { readBundleFile } from "./files.js";
import { shortSessionId } from "../../core/session/names.js";
import { sessionNamedAlike } from "../checkpoint/session-name.js";
import { worktreeOf } from "../../core/session/records.js";

/** Actor of the revision-log entries archive, unarchive and import write. */
export const ARCHIVE_ACTOR = "system:archive";

const ENDED = new Set(["completed", "failed", "stopped"]);

export interface InstallResult {
  sessionId: string;
  /** Its name (a branch's), null for an unnamed session: text names the session by it. */
  name: string | null;
  kind: BundleKind;
  createdAt: string;
  checkpoints: number;
  records: number;
  objects: { total: number; written: number; present: number };
  /** A live session's bundle comes back as an ended (stopped) session. */
  converted: boolean;
  /** Agent records from another project whose process ids were cleared. */
  sanitizedAgents: number;
  /** Access grants the bundle held that were not installed (every one, unless keepGrants). */
  droppedGrants: number;
  /** A branch's git worktree of another project, recorded here as where this project puts it (`was`: the other project's path). */
  worktree: { path: string; was: string } | null;
  previousStatus: string | null;
  revision: number;
}

/** Reads and completely verifies a bundle file (see bundle.ts); nothing is written. */
export function verifyBundleFile(path: string, limits: ReadLimits = {}): { content: BundleContent; fileBytes: number } {
  const file = readBundleFile(path, limits.maxBytes);
  return { content: readBundle(file, limits), fileBytes: file.length };
}

/**
 * Puts a verified bundle's session into the store: objects it lacks (or holds damaged),
 * the records, the checkpoint catalog entries and the session's sequence counter, in one
 * write transaction. Refuses (APEX_E_SESSION_EXISTS, APEX_E_CONFLICT; exit 4) when the
 * session or one of its checkpoint ids is already there, and then writes nothing.
 *
 * A bundle of a session that was live when exported is installed as ended: its record
 * goes to /sessions/history/<sid> with status `stopped` (if it was not ended), because
 * its supervisor and agents belong to another time or machine. `apex start --continue`
 * brings it back to life.
 *
 * The bundle's access grants (/sessions/<sid>/grants/*) are written only with `keepGrants`: the
 * caller sets it for this project's own archive being unarchived (see keepsGrants). Any other
 * bundle's grants are dropped: a grant holds the hash of a token, and a bundle crafted with one
 * whose token its author knows would let that author into this project's `apex serve`.
 */
export async function installBundle(store: Store, content: BundleContent, options: { now?: () => Date } & InstallSource): Promise<InstallResult> {
  if (store.readOnly) throw new ApexError("APEX_E_INTERNAL", "The store was opened read-only.");
  const { manifest } = content;
  const sessionId = manifest.session_id;
  const fromElsewhere = foreign(store, manifest.project_id);
  // A session that is here is refused as such (refuseIfPresent): the bundle of a session running in
  // this project names its agents, which run, and was refused as a forged bundle (exit 2).
  const here = store.has(historyPath(sessionId)) || store.has(livePath(sessionId));
  if (!fromElsewhere && !here) refuseRunningProcesses(content.records, sessionId);
  refuseIfPresent(store, content);
  const now = (options.now ?? (() => new Date()))().toISOString();
  const { records, converted, previousStatus, worktree, sanitizedAgents, droppedGrants } = recordsToInstall(store, content, options, now);
  const name = sessionName(records, sessionId);

  let revision = store.revision();
  let written = 0;
  await store.transaction(() => {
    refuseIfPresent(store, content); // again, under the write lock
    const objects = ObjectStore.of(store);
    const packCache = new PackCache();
    const missing: Array<{ kind: ObjectKind; hash: Hash; bytes: Buffer }> = [];
    for (const [hash, { kind, bytes }] of content.objects) {
      const stored = objects.getRaw(kind, hash, packCache);
      if (!stored || sha256(stored) !== hash) missing.push({ kind, hash, bytes });
    }
    objects.putMany(missing);
    written = missing.length;
    revision = store.batchSync((batch) => {
      for (const [path, value] of records) batch.set(path, value);
    }, ARCHIVE_ACTOR).revision;
    const catalog = Catalog.of(store);
    for (const checkpoint of content.checkpoints) catalog.putCheckpoint(checkpoint);
    catalog.setLastSequence(sessionId, manifest.last_sequence);
  });
  return {
    sessionId,
    name,
    kind: manifest.kind,
    createdAt: manifest.created_at,
    checkpoints: content.checkpoints.length,
    records: records.length,
    objects: { total: content.objects.size, written, present: content.objects.size - written },
    converted,
    previousStatus,
    sanitizedAgents,
    droppedGrants,
    worktree,
    revision,
  };
}

interface PreparedRecords {
  records: Array<[string, JsonValue]>;
  converted: boolean;
  previousStatus: string | null;
  worktree: InstallResult["worktree"];
  sanitizedAgents: number;
  droppedGrants: number;
}

/**
 * Where a bundle comes from, for the records installed: `source` is said in an imported live
 * session's reason; `keepGrants` installs the bundle's access grants (this project's own archive
 * only: keepsGrants), which are otherwise dropped.
 */
export type InstallSource = { source: string; worktreeHere?: (path: string, name: string) => string; keepGrants?: boolean };

/**
 * Whether unarchiving `content` from `file` gives back the access grants it holds: only an archive
 * (what `session archive` writes) of this very project, read from this project's backup directory
 * (`inBackupDirectory`: owner-only, written by APEX), where `session archive` put it. An export
 * holds none; another project's archive, or one found elsewhere, is a bundle like any other, whose
 * grants were made for another server or by whoever wrote it.
 */
export function keepsGrants(store: Store, content: BundleContent, inBackupDirectory: boolean): boolean {
  return content.manifest.kind === "archive" && inBackupDirectory && !foreign(store, content.manifest.project_id);
}

/** The records installBundle writes for `content`, importing it at `now` (an ISO time). */
function recordsToInstall(store: Store, content: BundleContent, options: InstallSource, now: string): PreparedRecords {
  const { manifest } = content;
  const sessionId = manifest.session_id;
  const fromElsewhere = foreign(store, manifest.project_id);
  const all = content.records.map(([path, value]): [string, JsonValue] => [path, value]);
  const records = options.keepGrants ? all : all.filter(([path]) => !isGrantPath(sessionId, path));
  const droppedGrants = all.length - records.length;
  let converted = false;
  let previousStatus: string | null = null;
  if (manifest.session_state === "live") {
    const index = records.findIndex(([path]) => path === livePath(sessionId));
    const record = records[index]![1] as Record<string, JsonValue>;
    previousStatus = typeof record.status === "string" ? record.status : null;
    const ended = previousStatus !== null && ENDED.has(previousStatus);
    const reason = `imported from ${options.source}; it was ${previousStatus ?? "in an unknown state"} when exported`;
    const next: Record<string, JsonValue> = { ...record, supervisor: null, updated_at: now };
    if (!ended) {
      next.status = "stopped";
      next.outcome = reason;
      next.ended_at = manifest.created_at;
      next.history = [...(Array.isArray(record.history) ? record.history : []), { event: "stopped", at: now, reason }];
    }
    records.splice(index, 1);
    records.push([historyPath(sessionId), next]);
    converted = true;
  } else {
    // No supervisor of an imported session runs here: a record naming one would let a bundle point at a process.
    const index = records.findIndex(([path]) => path === historyPath(sessionId));
    const record = records[index]![1] as Record<string, JsonValue>;
    if (record.supervisor !== undefined && record.supervisor !== null) records[index] = [historyPath(sessionId), { ...record, supervisor: null }];
  }
  let worktree: InstallResult["worktree"] = null;
  if (fromElsewhere) {
    // It ran on another project's store: its runs there do not make this project's live memory its
    // own (liveMemoryOwner counts those since "imported"), so continuing it restores its checkpoint.
    const index = records.findIndex(([path]) => path === historyPath(sessionId));
    const record = records[index]![1] as Record<string, JsonValue>;
    const history = Array.isArray(record.history) ? record.history : [];
    const event: Record<string, JsonValue> = { event: "imported", at: now, from_project: manifest.project_id };
    // A branch that ran in a git worktree of the other project (another machine's path, or another
    // repository's worktree here): it runs in this project's, where `session branch --worktree` puts it.
    const was = worktreeOf(record);
    const path = was === null ? null : options.worktreeHere?.(was, typeof record.name === "string" && record.name ? record.name : sessionId.slice(0, 8));
    const next: Record<string, JsonValue> = { ...record, history: [...history, event] };
    if (was !== null && path && path !== was) {
      worktree = { path, was };
      event.worktree_from = was;
      next.worktree = { ...(record.worktree as Record<string, JsonValue>), path };
    }
    records[index] = [historyPath(sessionId), next];
  }
  const sanitizedAgents = fromElsewhere ? clearProcessIds(records, sessionId) : 0;
  return { records, converted, previousStatus, worktree, sanitizedAgents, droppedGrants };
}

/**
 * True when the store holds the bundle's session exactly as importing it wrote: the records as
 * installBundle makes them (at the time of its "imported" event, or of its record), the same
 * checkpoints and every object intact. A second `apex session import` of the file is then a no-op.
 */
export function alreadyInstalled(store: Store, content: BundleContent, collected: { records: ReadonlyArray<[string, JsonValue]>; checkpoints: ReadonlyArray<{ hash: string }> }, options: InstallSource): boolean {
  const sessionId = content.manifest.session_id;
  const stored = store.get(historyPath(sessionId));
  if (!isRecord(stored)) return false;
  if (content.checkpoints.map((checkpoint) => checkpoint.hash).join() !== collected.checkpoints.map((checkpoint) => checkpoint.hash).join()) return false;
  const objects = ObjectStore.of(store);
  const packCache = new PackCache();
  for (const [hash, { kind }] of content.objects) {
    const raw = objects.getRaw(kind, hash, packCache);
    if (!raw || sha256(raw) !== hash) return false;
  }
  const events = Array.isArray(stored.history) ? stored.history.filter(isRecord) : [];
  const imported = events.filter((event) => event.event === "imported").at(-1);
  const at = typeof imported?.at === "string" ? imported.at : typeof stored.updated_at === "string" ? stored.updated_at : "";
  const sorted = (list: ReadonlyArray<[string, JsonValue]>) => canonicalJson([...list].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return sorted(recordsToInstall(store, content, options, at).records) === sorted(collected.records);
}

/** True unless the bundle comes from this very project. */
function foreign(store: Store, projectId: string | null): boolean {
  const config = store.get("/projects/config");
  const own = isRecord(config) && typeof config.project_id === "string" ? config.project_id : null;
  return own === null || projectId === null || own !== projectId;
}

const AGENT_RECORD = /^\/sessions\/[^/]+\/agents\/[^/]+$/;
const PROCESS_FIELDS = ["pid", "pgid", "start_time", "nonce", "spawn_nonce"] as const;

/** The name the session's record in `records` gives it (a branch's), null for an unnamed session. */
export function sessionName(records: ReadonlyArray<readonly [string, JsonValue]>, sessionId: string, path = historyPath(sessionId)): string | null {
  const record = records.find(([at]) => at === path)?.[1];
  return isRecord(record) && typeof record.name === "string" && record.name ? record.name : null;
}

/**
 * Agent records of another project's session name processes of another machine or time.
 * `apex start --continue` stops an agent's recorded process group before it restarts the
 * agent, so a bundle must not be able to point it at a process here: the ids are cleared.
 */
function clearProcessIds(records: Array<[string, JsonValue]>, sessionId: string): number {
  let cleared = 0;
  for (const entry of records) {
    const [path, value] = entry;
    if (!path.startsWith(`/sessions/${sessionId}/agents/`) || !AGENT_RECORD.test(path) || !isRecord(value)) continue;
    if (!PROCESS_FIELDS.some((field) => value[field] !== undefined && value[field] !== null)) continue;
    const next: Record<string, JsonValue> = { ...value };
    for (const field of PROCESS_FIELDS) if (field in next) next[field] = null;
    entry[1] = next;
    cleared += 1;
  }
  return cleared;
}

/**
 * A bundle of this project whose agent records name a process that runs here (same pid
 * and start time) is refused: the session is not in this store, so no agent of it runs, and
 * the record was forged to point at someone else's process. (APEX would not signal such a
 * process anyway: it signals only processes carrying the nonce it gave them.)
 */
function refuseRunningProcesses(records: ReadonlyArray<[string, JsonValue]>, sessionId: string): void {
  for (const [path, value] of records) {
    if (!path.startsWith(`/sessions/${sessionId}/agents/`) || !AGENT_RECORD.test(path) || !isRecord(value)) continue;
    const startTime = typeof value.start_time === "number" ? value.start_time : undefined;
    for (const field of ["pid", "pgid"] as const) {
      const pid = value[field];
      if (typeof pid !== "number" || !isSameProcessAlive(pid, startTime)) continue;
      throw new ApexError("APEX_E_BUNDLE_INVALID", `Refusing the bundle: agent record ${path} names process ${pid} (${field}, start time ${startTime}), which is running on this machine and is not an agent of this session.`, {
        hint: "Nothing was written. A bundle cannot point APEX at a running process; export the session again once its agents have stopped.",
        details: { path, pid },
      });
    }
  }
}

/** Refuses a bundle whose session (records, counter, checkpoints) or checkpoint ids the store already has. */
export function refuseIfPresent(store: Store, content: BundleContent): void {
  const sessionId = content.manifest.session_id;
  const catalog = Catalog.of(store);
  let present: string | undefined;
  if (store.has(historyPath(sessionId))) present = `an ended session ${sessionId}`;
  else if (store.has(livePath(sessionId))) present = `a session ${sessionId}`;
  else if (!isEmpty(store.keysBelow(livePath(sessionId)))) present = `records below /sessions/${sessionId}/`;
  else if (catalog.lastSequence(sessionId) > 0 || catalog.count(sessionId) > 0) present = `checkpoints of a session ${sessionId}`;
  if (present) {
    // There is no command that deletes a session: the way to make room is to archive it (once it ended).
    const ended = store.has(historyPath(sessionId));
    throw new ApexError("APEX_E_SESSION_EXISTS", `This project already has ${present}; refusing to import the bundle over it.`, {
      hint: `Nothing was written. ${ended ? "To" : "Once it has ended (`apex stop`), to"} replace it by the bundle's, archive it first (\`apex session archive ${shortSessionId(sessionId)}\`); or import into another project.`,
      details: { session_id: sessionId },
    });
  }
  // A name is unique in a project: a second session of that name would take commands meant for the
  // other (`session merge NAME …`, `--session NAME`, git's apex/NAME), whichever the lookup found first.
  const name = sessionName(content.records, sessionId) ?? sessionName(content.records, sessionId, livePath(sessionId));
  // Whatever its case: apex/exp and apex/EXP are one git branch where the file system ignores case.
  const alike = name === null ? undefined : sessionNamedAlike(store, name);
  const holder = alike?.sessionId;
  if (name !== null && alike !== undefined) {
    const which = alike.name === name ? "that name too" : `a name that differs from it only in case (${name})`;
    throw new ApexError("APEX_E_CONFLICT", `This project already has a session named ${alike.name} (${holder}); refusing to bring back ${sessionId}, which has ${which}.`, {
      hint: `Nothing was written. Names are unique in a project, whatever their case: archive or export the session ${alike.name} now names (apex session archive ${holder}), then bring this one back.`,
      details: { session_id: sessionId, name, named_session: holder!, ...(alike.name === name ? {} : { existing_name: alike.name }) },
    });
  }
  for (const checkpoint of content.checkpoints) {
    let owner: unknown;
    try {
      owner = catalog.locate(checkpoint.id);
    } catch {
      owner = "an unreadable record";
    }
    if (owner !== undefined) {
      const where = isRecord(owner) && typeof owner.s === "string" ? ` (in session ${owner.s})` : "";
      throw new ApexError("APEX_E_CONFLICT", `Checkpoint id ${checkpoint.id} of ${checkpointName(checkpoint.sequence)} already exists in this project${where}.`, {
        hint: "Nothing was written. This bundle's checkpoints are already here under another session.",
        details: { checkpoint_id: checkpoint.id },
      });
    }
  }
}

function isEmpty(items: Iterable<unknown>): boolean {
  for (const _ of items) return false;
  return true;
}
