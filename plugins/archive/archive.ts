import { existsSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { ApexError, isApexError, withDetail } from "../../core/errors.js";
import { canonicalJson, type PackCodec } from "../checkpoint/engine/objects.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog } from "../checkpoint/catalog.js";
import { sweepFailure, sweepUnreferenced, type SweepFailure, type SweepResult } from "../checkpoint/checkpoints.js";
import { manifestKeys } from "../checkpoint/refs.js";
import { branchPoints, knownSessions, type SessionInfo } from "../retention/sessions.js";
import { encodeBundle, readBundle, type BundleContent } from "./bundle.js";
import { isRecord } from "../checkpoint/manifest.js";
import { sessionLabel } from "../checkpoint/merge-base.js";
import { shortSessionId } from "../../core/session/names.js";
import { MEMORY_OWNER_PATH, type SessionRecord } from "../../core/session/records.js";
import { effectiveStatus, lastRunAt, liveMemoryOwner } from "../../core/session/sessions.js";
import { collectSession, historyPath, isGrantPath, livePath, locateSession, type CollectedSession } from "./collect.js";
import { bundleFileName, makeBackupDirectory, readBundleFile } from "./files.js";
import { writeFileAtomic } from "../../cli/output-file.js";
import { ARCHIVE_ACTOR } from "./install.js";
import { stopCommand } from "../stop-command.js";

export interface ArchiveOptions {
  /** Archive ended sessions that ended at least this long ago. */
  olderThanMs?: number | undefined;
  /** Archive this session (it must have ended; with olderThanMs, only if it ended long enough ago). */
  sessionId?: string | undefined;
  /** Directory the bundles go to (absolute). */
  directory: string;
  codec: PackCodec;
  level?: number | undefined;
  /** Bound for reading the bundle back (plugins.archive.max_bundle_bytes). */
  maxBytes?: number | undefined;
  dryRun?: boolean;
  now?: () => Date;
  onProgress?: (text: string) => void;
  /**
   * Checkpoints the memory of an ended session that the live keyspace holds (it ran last in the
   * project's tree), before it is collected: what was written since its last checkpoint is in
   * the live keyspace alone, and would not leave with it into its bundle.
   */
  saveFinalState?: (sessionId: string) => Promise<void>;
}

export interface ArchivedSession {
  sessionId: string;
  endedAt: string;
  /** The bundle written; for a dry run, the one the run would write (the same path). */
  file: string;
  checkpoints: number;
  records: number;
  objects: number;
  /** Uncompressed size of the bundle's body, and the file's size. */
  bodyBytes: number;
  fileBytes: number;
}

export interface SkippedSession {
  sessionId: string;
  reason: string;
  code: string | null;
  /**
   * Archiving it failed (damaged, refused by the store, a bundle of another state of it in the
   * way): it needs attention, and the command exits 1. False for one left by rule (not old enough,
   * live, a branch point), whatever its code: a branch point and a bundle in the way share APEX_E_CONFLICT.
   */
  failed: boolean;
  /** Another process archived (or removed) it meanwhile: it is not in the store any more, though this run did not archive it. */
  archivedElsewhere?: boolean;
}

export interface ArchiveResult {
  dryRun: boolean;
  cutoff: string | null;
  directory: string;
  archived: ArchivedSession[];
  skipped: SkippedSession[];
  /** The sweep of objects only archived sessions used. */
  sweep: SweepResult | null;
  sweepError: SweepFailure | null;
}

interface Candidate {
  sessionId: string;
  endedAt: string;
}

/**
 * Archives ended sessions: each is written to one verified bundle in `directory`, then
 * removed from the live store (its record, everything below /sessions/<sid>/, its catalog
 * entries and sequence counter) in one write transaction, and finally the objects only
 * archived sessions used are swept. A session is left alone (and reported) if it is still
 * live, is the branch point of a session that stays, cannot be bundled because something
 * of it is damaged, already has a bundle file, or changed while its bundle was written.
 */
export async function archiveSessions(store: Store, options: ArchiveOptions): Promise<ArchiveResult> {
  if (!options.dryRun && store.readOnly) throw new ApexError("APEX_E_INTERNAL", "The store was opened read-only.");
  if (options.sessionId === undefined && options.olderThanMs === undefined) {
    throw new ApexError("APEX_E_USAGE", "Say which sessions to archive: --older-than <duration> or a session id.", {
      hint: "apex session archive --older-than 30d",
    });
  }
  const now = (options.now ?? (() => new Date()))();
  const cutoff = options.olderThanMs === undefined ? undefined : cutoffOf(now.getTime(), options.olderThanMs);
  const result: ArchiveResult = {
    dryRun: options.dryRun ?? false,
    cutoff: cutoff === undefined ? null : new Date(cutoff).toISOString(),
    directory: options.directory,
    archived: [],
    skipped: [],
    sweep: null,
    sweepError: null,
  };
  const explicit = options.sessionId !== undefined;
  const candidates = selectCandidates(store, options.sessionId, cutoff, result);
  for (const skipped of protectBranchPoints(store, candidates)) {
    if (explicit) throw new ApexError("APEX_E_CONFLICT", withDetail(`Not archiving session ${sessionLabel(store, skipped.sessionId)}`, skipped.reason), { hint: "Archive the branched session too, or leave this one.", details: { session_id: skipped.sessionId } });
    result.skipped.push(skipped);
  }

  // Branches before the sessions they were branched from: a branch whose archive fails stays, and
  // then so must its parent (archived first, it left the branch's parent dangling).
  const kept = childrenFirst(store, candidates.filter((candidate) => !result.skipped.some((skipped) => skipped.sessionId === candidate.sessionId)));
  for (const [index, candidate] of kept.entries()) {
    options.onProgress?.(`archiving ${index + 1}/${kept.length}: ${candidate.sessionId}`);
    // A session branched from this one is still here (its archive failed, or it was branched meanwhile).
    // A dry run removed none: the sessions it would have archived by now count as gone, so that a
    // parent whose branch would stay is said to stay, as the run keeps it (the dry run listed it).
    const leaving = result.dryRun ? [...result.archived.map(({ sessionId, endedAt }) => ({ sessionId, endedAt })), candidate] : [candidate];
    const staying = protectBranchPoints(store, leaving).filter((skipped) => skipped.sessionId === candidate.sessionId);
    if (staying.length > 0) {
      if (explicit) throw new ApexError("APEX_E_CONFLICT", withDetail(`Not archiving session ${sessionLabel(store, candidate.sessionId)}`, staying[0]!.reason), { hint: "Archive the branched session too, or leave this one.", details: { session_id: candidate.sessionId } });
      result.skipped.push(...staying);
      continue;
    }
    try {
      const archived = await archiveOne(store, candidate, options, now);
      result.archived.push(archived);
    } catch (error) {
      if (explicit || !isApexError(error)) throw error;
      const elsewhere = error.details?.archived_elsewhere === true;
      result.skipped.push({ sessionId: candidate.sessionId, reason: error.message, code: error.code, failed: !leftByRule(error), ...(elsewhere ? { archivedElsewhere: true } : {}) });
    }
  }

  if (result.archived.length > 0) {
    options.onProgress?.("sweeping data only archived sessions used");
    try {
      // A dry run says what the sweep would free, counting the sessions' checkpoints as gone (it said nothing).
      const gone = new Set(result.archived.map((archived) => archived.sessionId));
      const without = [...Catalog.of(store).summaryKeys(), ...manifestKeys(store)].filter((slot) => gone.has(slot.sessionId));
      result.sweep = await sweepUnreferenced(store, result.dryRun ? { dryRun: true, without } : {});
    } catch (error) {
      const failure = isApexError(error) ? error : new ApexError("APEX_E_INTERNAL", (error as Error).message);
      result.sweepError = sweepFailure(failure);
    }
  }
  return result;
}

/** Refusals that mean the session could not be archived, though their code is the one a branch point's is. */
const BUNDLE_IN_THE_WAY = new WeakSet<ApexError>();

/**
 * A session archiveOne left by rule: live again, archived by another process meanwhile, branched
 * from or changed while it was being archived (a rerun takes it). Anything else is a failure.
 */
function leftByRule(error: ApexError): boolean {
  if (BUNDLE_IN_THE_WAY.has(error)) return false;
  return error.code === "APEX_E_SESSION_ACTIVE" || error.code === "APEX_E_NO_SESSION" || error.code === "APEX_E_CONFLICT";
}

/** The earliest time a Date holds (100,000,000 days before 1970). */
const EARLIEST_TIME = -8.64e15;

/**
 * When sessions must have ended by to be archived: `olderThanMs` before `now`, or the earliest time
 * a Date holds for a longer duration (older_than: "99999999999999999999w" is a valid duration, and
 * its cutoff made toISOString throw "Invalid time value").
 */
export function cutoffOf(now: number, olderThanMs: number): number {
  return Math.max(EARLIEST_TIME, now - olderThanMs);
}

/** Ended sessions to archive: the one named (refused unless it ended), or every one that ended before the cutoff. */
function selectCandidates(store: Store, sessionId: string | undefined, cutoff: number | undefined, result: ArchiveResult): Candidate[] {
  const current = store.get("/sessions/current");
  const currentId = isRecord(current) && typeof current.session_id === "string" ? current.session_id : undefined;
  const endedAt = (record: Record<string, JsonValue>): string | undefined => {
    for (const field of ["ended_at", "updated_at"]) {
      const value = record[field];
      if (typeof value === "string" && Number.isFinite(Date.parse(value))) return value;
    }
    return undefined;
  };
  if (sessionId !== undefined) {
    const location = locateSession(store, sessionId);
    // As `apex status` says it: a session whose supervisor died is interrupted (it said "status active").
    const status = typeof location.record.status === "string" ? effectiveStatus(location.record as unknown as SessionRecord) : "unknown";
    if (location.state === "live" || currentId === sessionId) {
      throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${sessionLabel(store, sessionId)} has not ended (${status === "interrupted" ? "it is interrupted: its supervisor is gone" : `status ${status}`}); only ended sessions are archived.`, {
        hint: `Stop it first (${stopCommand(sessionId, location.record.name)}), or export a copy with \`apex session export\`.`,
        details: { session_id: sessionId },
      });
    }
    const ended = endedAt(location.record);
    if (!ended) throw new ApexError("APEX_E_INTEGRITY", `Session ${sessionLabel(store, sessionId)} has no valid ended_at; not archiving it.`, { hint: "`apex session repair` dates it by its last checkpoint (`apex session validate` names it).", details: { session_id: sessionId } });
    if (cutoff !== undefined && Date.parse(ended) > cutoff) {
      result.skipped.push({ sessionId, reason: `it ended ${ended}, after ${new Date(cutoff).toISOString()}`, code: null, failed: false });
      return [];
    }
    return [{ sessionId, endedAt: ended }];
  }
  const out: Candidate[] = [];
  for (const { path, value } of store.query("/sessions/history/*")) {
    const id = path.slice("/sessions/history/".length);
    if (!isRecord(value)) {
      result.skipped.push({ sessionId: id, reason: "its record is not an object", code: "APEX_E_INTEGRITY", failed: true });
      continue;
    }
    const ended = endedAt(value);
    if (!ended) {
      result.skipped.push({ sessionId: id, reason: "its record has no valid ended_at", code: "APEX_E_INTEGRITY", failed: true });
      continue;
    }
    if (Date.parse(ended) > cutoff!) continue;
    if (id === currentId || store.has(livePath(id))) {
      result.skipped.push({ sessionId: id, reason: "it is the current session again", code: "APEX_E_SESSION_ACTIVE", failed: false });
      continue;
    }
    out.push({ sessionId: id, endedAt: ended });
  }
  return out.sort((a, b) => (a.endedAt < b.endedAt ? -1 : a.endedAt > b.endedAt ? 1 : 0));
}

/**
 * Sessions that must stay because a session that stays was branched from one of their
 * checkpoints (archiving them would leave that session's parent dangling). Repeated
 * until nothing changes: keeping one session can keep the session it was branched from.
 */
function protectBranchPoints(store: Store, candidates: readonly Candidate[]): SkippedSession[] {
  const sessions = knownSessions(store);
  const points = branchPoints(store, sessions);
  if (points.size === 0) return [];
  const checkpointsOf = new Map(candidates.map(({ sessionId }) => [sessionId, checkpointIdsOf(store, sessionId)]));
  const leaving = new Set(candidates.map((candidate) => candidate.sessionId));
  const skipped: SkippedSession[] = [];
  for (let changed = true; changed; ) {
    changed = false;
    for (const sessionId of leaving) {
      for (const id of checkpointsOf.get(sessionId) ?? []) {
        const staying = (points.get(id) ?? []).map((reason) => reason.replace(/^branch /, "")).filter((other) => other !== sessionId && !leaving.has(other));
        if (staying.length === 0) continue;
        leaving.delete(sessionId);
        // The branches as session list names them (it gave their whole ids, however many), the first five.
        const named = staying.slice(0, 5).map((other) => sessionLabel(store, other)).join(", ") + (staying.length > 5 ? ` and ${staying.length - 5} more` : "");
        skipped.push({ sessionId, reason: `${staying.length === 1 ? "session" : "sessions"} ${named} ${staying.length === 1 ? "was" : "were"} branched from its checkpoint ${id}`, code: "APEX_E_CONFLICT", failed: false });
        changed = true;
        break;
      }
    }
  }
  return skipped;
}

/** The ids of a session's checkpoints, from their manifests. */
function checkpointIdsOf(store: Store, sessionId: string): string[] {
  const ids: string[] = [];
  for (const { path, value } of store.query(`/sessions/${sessionId}/checkpoint-*`)) {
    if (isRecord(value) && typeof value.id === "string" && path.startsWith(`/sessions/${sessionId}/`)) ids.push(value.id);
  }
  return ids;
}

/** The candidates with every branch before the candidates it was branched from (else in their order). */
function childrenFirst(store: Store, candidates: readonly Candidate[]): Candidate[] {
  const points = branchPoints(store, knownSessions(store));
  if (points.size === 0) return [...candidates];
  const ids = new Set(candidates.map((candidate) => candidate.sessionId));
  const parents = new Map<string, string[]>();
  for (const { sessionId } of candidates) {
    for (const id of checkpointIdsOf(store, sessionId)) {
      for (const reason of points.get(id) ?? []) {
        const child = reason.replace(/^branch /, "");
        if (child !== sessionId && ids.has(child)) parents.set(child, [...(parents.get(child) ?? []), sessionId]);
      }
    }
  }
  const depths = new Map<string, number>();
  const depth = (sessionId: string, seen: Set<string>): number => {
    const known = depths.get(sessionId);
    if (known !== undefined) return known;
    if (seen.has(sessionId)) return 0; // a cycle (crafted records): any order
    seen.add(sessionId);
    const value = Math.max(0, ...(parents.get(sessionId) ?? []).map((parent) => 1 + depth(parent, seen)));
    depths.set(sessionId, value);
    return value;
  };
  // Deepest branches first; sort is stable, so sessions of one depth keep their order.
  return [...candidates].sort((a, b) => depth(b.sessionId, new Set()) - depth(a.sessionId, new Set()));
}

async function archiveOne(store: Store, candidate: Candidate, options: ArchiveOptions, now: Date): Promise<ArchivedSession> {
  const { sessionId } = candidate;
  if (!options.dryRun && options.saveFinalState && liveMemoryOwner(store) === sessionId) await options.saveFinalState(sessionId);
  let collected: ReturnType<typeof collectSession>;
  try {
    collected = collectSession(store, sessionId, { kind: "archive", createdAt: now.toISOString() });
  } catch (error) {
    // Objects gone while they were read, with the session: another archive of it (another
    // process) removed both. Not damage to repair, as APEX_E_INTEGRITY's hint would say. Nor
    // "No session" (its record gone since the candidates were chosen): the same archive, earlier.
    if (isApexError(error) && (error.code === "APEX_E_INTEGRITY" || error.code === "APEX_E_NO_SESSION") && gone(store, sessionId)) throw archivedElsewhere(sessionId, "read");
    throw error;
  }
  if (collected.location.state !== "ended") {
    throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${sessionLabel(store, sessionId)} is live again; only ended sessions are archived.`, { details: { session_id: sessionId } });
  }
  const summary = {
    sessionId,
    endedAt: candidate.endedAt,
    checkpoints: collected.checkpoints.length,
    records: collected.input.records.length,
    objects: collected.input.objects.length,
  };
  const { file: bytes, bodyBytes } = await encodeBundle(collected.input, options.codec, options.level);
  const file = join(options.directory, bundleFileName(sessionId));
  // A bundle of the session exactly as it is now: what an archive killed after writing it, before
  // removing the session, left, or an unarchive that kept it (--keep, or killed before removing
  // it). It is the archive: the session leaves the store. Refused, the rerun was stuck (unarchive
  // refuses while the session is here, and this hint said to unarchive it). Looked at in a dry
  // run too, which said it would archive a session the run then refused.
  const existing = existsSync(file);
  if (existing) refuseBundleInTheWay(store, file, collected, options.maxBytes);
  if (options.dryRun) return { ...summary, file, bodyBytes, fileBytes: bytes.length };

  makeBackupDirectory(options.directory);
  // The bundle found in place is the archive: the session leaves the store.
  const takeExisting = async (): Promise<ArchivedSession> => {
    await removeSession(store, collected);
    return { ...summary, file, bodyBytes, fileBytes: statSync(file).size };
  };
  if (existing) return takeExisting();
  try {
    writeFileAtomic(file, bytes, { overwrite: false });
  } catch (error) {
    // Written since it was looked for: another archive of the session (another process, `session archive`
    // run twice at once) put its bundle there first. Taken as any bundle found in place: the same state is
    // the archive (the session, once that process removed it, is said to be archived by it), another refused.
    if (!(isApexError(error) && error.code === "APEX_E_CONFLICT" && existsSync(file))) throw error;
    refuseBundleInTheWay(store, file, collected, options.maxBytes);
    return takeExisting();
  }
  try {
    verifyWritten(file, collected, options.maxBytes);
    await removeSession(store, collected);
  } catch (error) {
    // The session stays: a bundle of it must not look archived. Unless another archive of it, run
    // meanwhile, found this very bundle in place, took it as the archive and removed the session:
    // then the file is the session's only copy (removing it lost the session).
    if (store.get(`/sessions/history/${sessionId}`) !== undefined || store.get(`/sessions/${sessionId}`) !== undefined) unlinkSync(file);
    throw error;
  }
  return { ...summary, file, bodyBytes, fileBytes: bytes.length };
}

/** True when the store holds no record of the session, live or ended: another process archived (or removed) it. */
function gone(store: Store, sessionId: string): boolean {
  return store.get(historyPath(sessionId)) === undefined && store.get(livePath(sessionId)) === undefined;
}

/**
 * A session another process archived (or removed) while this one was archiving it (`while`: what
 * this one was doing then). No failure: it is archived, by the other (leftByRule: APEX_E_NO_SESSION).
 */
function archivedElsewhere(sessionId: string, during: "read" | "archived"): ApexError {
  return new ApexError("APEX_E_NO_SESSION", `Session ${shortSessionId(sessionId)} was archived or removed by another process while it was being ${during}.`, {
    hint: "See `apex session list`; its bundle is where that process put it (`apex session unarchive` lists them).",
    details: { session_id: sessionId, archived_elsewhere: true },
  });
}

/** Reads the written bundle back and checks it holds what was collected. */
function verifyWritten(file: string, collected: CollectedSession, maxBytes: number | undefined): void {
  // Our own bytes, just written: the compression ratio bound (against bombs) does not apply.
  const content = readBundle(readBundleFile(file, maxBytes), { ...(maxBytes === undefined ? {} : { maxBytes }), maxRatio: Number.MAX_SAFE_INTEGER });
  if (!sameSession(content, collected)) throw new ApexError("APEX_E_INTERNAL", `The bundle written to ${file} does not hold what was collected.`);
}

/**
 * Refuses (APEX_E_CONFLICT, a failure: BUNDLE_IN_THE_WAY) to archive a session whose bundle file is
 * taken by a bundle that is not its archive as it is now. An export of the session as it is now is
 * refused too, saying so: it was said to hold "another state of it", while `unarchive` of that very
 * file said the session is here in the same state. Taking it as the archive would leave an export
 * where archives go, which `unarchive` never removes (nor would it give back the grants an export
 * leaves out); and it is the user's own file, not to be overwritten.
 */
function refuseBundleInTheWay(store: Store, file: string, collected: CollectedSession, maxBytes: number | undefined): void {
  const content = readBack(file, maxBytes);
  if (content?.manifest.kind === "archive" && sameSession(content, collected)) return;
  const sessionId = collected.location.sessionId;
  const label = sessionLabel(store, sessionId);
  const exportOfIt = content?.manifest.kind === "export" && sameSession(content, withoutGrants(collected));
  const what = exportOfIt ? "an export of it as it is now (`apex session export`), not an archive" : "holding another state of it (or not readable)";
  const error = new ApexError("APEX_E_CONFLICT", `Session ${label} already has a bundle at ${file}, ${what}; not overwriting it${exportOfIt ? " nor taking it as the archive" : ""}.`, {
    hint: exportOfIt
      ? `Nothing was written. Move the export elsewhere (\`mv ${file} ${file}.export\`), then archive the session again (\`apex session archive ${shortSessionId(sessionId)}\`): the archive is written where the export was.`
      : "Move that file away first (it is an older archive or export of this session).",
    details: { session_id: sessionId, file, ...(content === undefined ? {} : { bundle_kind: content.manifest.kind, same_state: exportOfIt }) },
  });
  BUNDLE_IN_THE_WAY.add(error);
  throw error;
}

/** The bundle at `file`, read and verified; undefined when it does not read. */
function readBack(file: string, maxBytes: number | undefined): BundleContent | undefined {
  try {
    // An archive of compressible data may exceed the ratio bound import applies; the size bound holds.
    return readBundle(readBundleFile(file, maxBytes), { ...(maxBytes === undefined ? {} : { maxBytes }), maxRatio: Number.MAX_SAFE_INTEGER });
  } catch {
    return undefined;
  }
}

/** What an export of the collected session holds: its records but its access grants (isGrantPath). */
function withoutGrants(collected: CollectedSession): CollectedSession {
  const sessionId = collected.location.sessionId;
  return { ...collected, input: { ...collected.input, records: collected.input.records.filter(([path]) => !isGrantPath(sessionId, path)) } };
}

/**
 * The same session: its id, checkpoints, objects and every record (path and value), but for the
 * supervisor its ended record names, which unarchive clears (installBundle: no bundle points at
 * a process).
 */
export function sameSession(content: BundleContent, collected: CollectedSession): boolean {
  const sessionId = collected.location.sessionId;
  if (content.manifest.session_id !== sessionId) return false;
  if (content.checkpoints.map((checkpoint) => checkpoint.hash).join() !== collected.checkpoints.map((checkpoint) => checkpoint.hash).join()) return false;
  if (content.objects.size !== collected.input.objects.length || collected.input.objects.some((object) => !content.objects.has(object.hash))) return false;
  const comparable = ([path, value]: [string, JsonValue]): [string, JsonValue] => (path === historyPath(sessionId) && isRecord(value) ? [path, { ...value, supervisor: null }] : [path, value]);
  const records = (list: Array<[string, JsonValue]>) => canonicalJson(list.map(comparable).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return records(content.records) === records(collected.input.records);
}

/**
 * Removes an archived session from the live store in one write transaction, unless any of
 * its paths (or /sessions/current) changed since it was collected.
 */
async function removeSession(store: Store, collected: CollectedSession): Promise<void> {
  const { sessionId } = collected.location;
  await store.transaction(() => {
    const own = (path: string) => path === historyPath(sessionId) || path === livePath(sessionId) || path.startsWith(`${livePath(sessionId)}/`) || path === "/sessions/current";
    // Session records written meanwhile (one level below /sessions or /sessions/history).
    const written = new Map<string, SessionInfo>();
    for (const change of store.changesSince(collected.revision)) {
      if (own(change.path)) {
        // Its records gone since: another archive of it (another process, `session archive` run twice at
        // once) removed it. Said as archived by that process, not as a session that changed and stays.
        if (gone(store, sessionId)) throw archivedElsewhere(sessionId, "archived");
        throw new ApexError("APEX_E_CONFLICT", `Session ${sessionLabel(store, sessionId)} changed while it was being archived (${change.path}); it stays.`, { hint: "Run the archive again.", details: { session_id: sessionId } });
      }
      const other = /^\/sessions\/(?:history\/)?([^/]+)$/.exec(change.path)?.[1];
      const record = other !== undefined && other !== "current" && other !== "history" ? store.get(change.path) : undefined;
      if (isRecord(record)) written.set(change.path, { sessionId: other!, state: change.path.startsWith("/sessions/history/") ? "ended" : "current", record });
    }
    // A branch made from one of its checkpoints meanwhile: removing the session would take the
    // checkpoint that branch starts from (the branch points were checked before the bundle was written).
    const ids = new Set(collected.checkpoints.map((checkpoint) => checkpoint.id));
    for (const [id, reasons] of written.size > 0 ? branchPoints(store, [...written.values()]) : []) {
      const branches = reasons.map((reason) => reason.replace(/^branch /, "")).filter((other) => other !== sessionId);
      if (ids.has(id) && branches.length > 0) {
        throw new ApexError("APEX_E_CONFLICT", `Session ${branches.map((branch) => sessionLabel(store, branch)).join(", ")} was branched from checkpoint ${id} of session ${sessionLabel(store, sessionId)} while it was being archived; it stays.`, {
          hint: "Archive the branch first, or keep the session.",
          details: { session_id: sessionId, branches },
        });
      }
    }
    // The session whose memory the live keyspace holds keeps its claim on it once its records are
    // gone: the session that ran before it was taken for the owner, its final-state checkpoint
    // (at the next start) and a `start --continue` of it took this session's memory as its own.
    const record = store.get(historyPath(sessionId));
    const owner = isRecord(record) && liveMemoryOwner(store) === sessionId ? { session_id: sessionId, ran_at: lastRunAt(record as unknown as SessionRecord) } : undefined;
    store.batchSync((batch) => {
      batch.delete(historyPath(sessionId));
      batch.delete(livePath(sessionId));
      batch.deleteTree(livePath(sessionId));
      if (owner) batch.set(MEMORY_OWNER_PATH, owner);
    }, ARCHIVE_ACTOR);
    // The catalog: summaries, id records and the sequence counter of the session.
    Catalog.of(store).removeSession(sessionId, collected.checkpoints.map((checkpoint) => checkpoint.id));
  });
}
