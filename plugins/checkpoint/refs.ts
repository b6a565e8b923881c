import { noSessionToActOn, sessionBinding } from "../../core/session/sessions.js";
import { sessionFlag } from "../../core/session/binding.js";
import { ApexError, isApexError } from "../../core/errors.js";
import { ObjectStore, type Hash } from "./engine/objects.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog, type Located } from "./catalog.js";
import { resolveSessionRef } from "./plugin-sessions.js";
import {
  checkpointName,
  isRecord,
  manifestHash,
  manifestPath,
  manifestShapeProblems,
  parseCheckpointName,
  sessionPath,
  type CheckpointManifest,
} from "./manifest.js";

/** Finding checkpoints by reference, loading and checking manifests, and small helpers shared by the checkpoint modules. */

/** Actors recorded in the revision log for writes made by this module. */
export const ACTORS = {
  checkpoint: "system:checkpoint",
  restore: "system:restore",
  recover: "system:recover",
  repair: "system:repair",
  merge: "system:merge",
} as const;

export interface ResolveOptions {
  /** Session for `latest` and `checkpoint-NNN`; default: the current session. */
  sessionId?: string;
}

const MIN_PREFIX = 4;
/** Longest id prefix looked up: far beyond a uuid's 36 characters, well within LMDB's key size (1978 bytes). */
const MAX_PREFIX = 512;

/**
 * Finds a checkpoint by reference: a uuid, a unique uuid prefix (4+ characters),
 * `checkpoint-007`, `latest`, or `<session>/checkpoint-007` / `<session>/latest`.
 */
export function resolveCheckpoint(store: Store, ref: string, options: ResolveOptions = {}): Located {
  const text = typeof ref === "string" ? ref.trim() : "";
  if (!text) throw new ApexError("APEX_E_USAGE", "No checkpoint given.", { hint: refHint });
  const slash = text.indexOf("/");
  // The session as APEX prints it (`3f2a9c1e/checkpoint-004`) or by its branch name, not only its full id.
  if (slash > 0) {
    const rest = text.slice(slash + 1);
    // `<id>/checkpoint-002/x` is no reference: say so, not that no session is named "checkpoint-002".
    if (!rest || rest.includes("/")) {
      throw new ApexError("APEX_E_USAGE", `${JSON.stringify(text)} is not a checkpoint reference: ${rest ? "it has more than one \"/\"" : "nothing follows the \"/\""}.`, { hint: refHint, details: { ref: text } });
    }
    return resolveCheckpoint(store, rest, { sessionId: sessionOfRef(store, text.slice(0, slash), text) });
  }
  const catalog = Catalog.of(store);
  // Names are read as ids are, whatever their case (`CHECKPOINT-002`, `Latest`, `F2C89AB9`).
  const word = text.toLowerCase();
  if (word === "latest") {
    const sessionId = options.sessionId ?? currentSessionId(store);
    const latest = catalog.latest(sessionId);
    if (!latest) throw notFound(`Session ${sessionId} has no checkpoints yet.`, text);
    return { sessionId, sequence: latest.sequence, id: latest.id };
  }
  const sequence = parseCheckpointName(word);
  if (sequence !== undefined) {
    const sessionId = options.sessionId ?? currentSessionId(store);
    const summary = catalog.summary(sessionId, sequence);
    if (summary) return { sessionId, sequence, id: summary.id };
    // The catalog may have lost the record; the manifest is the source of truth.
    const manifest = readManifestRecord(store, sessionId, sequence);
    if (isRecord(manifest) && typeof manifest.id === "string") return { sessionId, sequence, id: manifest.id };
    // Numbers are never reused: one at or below the last taken existed and was removed.
    const taken = catalog.lastSequence(sessionId);
    if (sequence <= taken) {
      throw notFound(`${checkpointName(sequence)} of session ${sessionId} was deleted (\`apex checkpoint delete\`, retention or repair); its number is not reused.`, text, "`apex checkpoint list` shows the checkpoints the session keeps.");
    }
    throw notFound(`No ${checkpointName(sequence)} in session ${sessionId}${taken > 0 ? ` (its latest number is ${checkpointName(taken)})` : ""}.`, text);
  }
  const prefix = word;
  if (!/^[0-9a-f-]+$/.test(prefix)) throw notFound(`No checkpoint ${JSON.stringify(text)}.`, text, sessionRefHint(store, text));
  if (prefix.length < MIN_PREFIX) {
    // A branch's name of 1 to 3 such characters (`a`, `fe`, `c1`) is a session, as a longer one is: not "too short".
    const session = sessionRefHint(store, text);
    if (session) throw notFound(`No checkpoint ${JSON.stringify(text)}.`, text, session);
    throw new ApexError("APEX_E_USAGE", `The checkpoint id prefix ${JSON.stringify(text)} is too short (use at least ${MIN_PREFIX} characters).`, {
      hint: refHint,
    });
  }
  // No id is that long (the catalog's keys could not hold it), and LMDB refuses a key that long even to look it up.
  if (prefix.length > MAX_PREFIX) throw notFound(`No checkpoint id starts with ${JSON.stringify(`${text.slice(0, 40)}…`)} (${text.length} characters; an id is a 36-character uuid).`, text);
  const matches = catalog.idsWithPrefix(prefix, 11);
  if (matches.length === 0) throw notFound(`No checkpoint id starts with ${JSON.stringify(text)}.`, text, sessionRefHint(store, text));
  if (matches.length > 1) {
    const shown = matches.slice(0, 10).map((match) => `${match.id} (${match.sessionId}/${checkpointName(match.sequence)})`);
    throw new ApexError("APEX_E_AMBIGUOUS", `The checkpoint id prefix ${JSON.stringify(text)} matches ${matches.length > 10 ? "more than 10" : matches.length} checkpoints: ${shown.join(", ")}.`, {
      hint: "Give more characters of the id.",
      details: { candidates: matches.slice(0, 10) },
    });
  }
  return matches[0]!;
}

/** The session part of `<session>/checkpoint-007`: an id, a name or a unique id prefix (of a session with a record or checkpoints). */
function sessionOfRef(store: Store, ref: string, whole: string): string {
  try {
    return resolveSessionRef(store, ref);
  } catch (error) {
    if (isApexError(error) && error.code === "APEX_E_AMBIGUOUS") throw error;
    // A short prefix of an existing id is no reference: say so rather than that no such session exists.
    const short = ref.length < MIN_PREFIX ? ` (an id prefix names a session from ${MIN_PREFIX} characters on)` : "";
    throw notFound(`No session ${JSON.stringify(ref)} in this project${short}, so no checkpoint ${JSON.stringify(whole)}.`, whole);
  }
}

const refHint = "Refer to a checkpoint by id, a unique id prefix, checkpoint-007, latest or <session>/checkpoint-007 (`apex checkpoint list`).";

/**
 * A reference that names a session (its name, or its id as status and session list print it)
 * where a checkpoint was asked for: the hint gives that session's newest checkpoint, which the
 * user most likely meant. Undefined when it names no session.
 */
function sessionRefHint(store: Store, ref: string): string | undefined {
  if (ref === "current" || ref === "last") return undefined;
  try {
    resolveSessionRef(store, ref);
  } catch {
    return undefined;
  }
  return `${JSON.stringify(ref)} is a session, not a checkpoint: its newest checkpoint is \`${ref}/latest\` (\`apex checkpoint list --session ${ref}\` lists them).`;
}

function notFound(message: string, ref: string, hint = refHint): ApexError {
  return new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", message, { hint, details: { ref } });
}

/** The session /sessions/current points at. */
export function currentSessionId(store: Store): string {
  // The session this process acts on (core/session/binding.ts): a supervisor's own, --session, this worktree's, …
  let id: string | undefined;
  let named = false;
  try {
    const bound = sessionBinding(store);
    named = bound?.source === "flag" || bound?.source === "worktree";
    id = bound !== undefined && store.has(`/sessions/${bound.sessionId}`) ? bound.sessionId : undefined;
  } catch (error) {
    // (several sessions and nothing to choose; a --session naming no session or several)
    if (isApexError(error) && ["APEX_E_AMBIGUOUS_SESSION", "APEX_E_AMBIGUOUS", "APEX_E_NO_SESSION"].includes(error.code)) throw error;
    // A store that cannot be read (a server out of reach, refused credentials, damage) is that
    // error, not "no current session": the session is there, the store is not.
    if (isApexError(error) && (error.code.startsWith("APEX_E_STORE") || error.code === "APEX_E_DISK_FULL")) throw error;
    id = undefined;
  }
  // Named (by --session or by the worktree it runs in, a stopped branch's), but not one that runs:
  // that it has ended, not that none is current.
  if ((typeof id !== "string" || !id) && (named || sessionFlag() !== undefined)) throw noSessionToActOn(store);
  if (typeof id !== "string" || !id) {
    throw new ApexError("APEX_E_NO_SESSION", "There is no current session.", {
      hint: 'Start one with `apex start --task "…"`, or name a checkpoint of another session as <session>/checkpoint-007 (`apex session list` shows the sessions).',
    });
  }
  return id;
}

export function readManifestRecord(store: Store, sessionId: string, sequence: number): JsonValue | undefined {
  try {
    return store.get(manifestPath(sessionId, sequence));
  } catch {
    return undefined;
  }
}

export interface LoadOptions extends ResolveOptions {
  /** Return a manifest whose hash does not verify instead of throwing (forced recovery). */
  allowDamaged?: boolean;
}

/** Reads and checks a manifest. Throws APEX_E_INTEGRITY if it is unreadable or (unless allowDamaged) does not verify. */
export function loadManifest(store: Store, located: Located, options: { allowDamaged?: boolean } = {}): CheckpointManifest {
  const path = manifestPath(located.sessionId, located.sequence);
  let value: JsonValue | undefined;
  try {
    value = store.get(path);
  } catch (error) {
    throw new ApexError("APEX_E_INTEGRITY", `The manifest at ${path} cannot be decoded: ${(error as Error).message}`, {
      hint: "Run `apex session validate`; `apex session repair` removes it.",
      cause: error,
    });
  }
  if (value === undefined) {
    throw new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `The manifest of ${located.sessionId}/${checkpointName(located.sequence)} is missing (${path}).`, {
      hint: "The checkpoint index points at a deleted manifest: run `apex session repair`.",
    });
  }
  const problems = manifestShapeProblems(value);
  if (problems.length > 0) {
    throw new ApexError("APEX_E_INTEGRITY", `The manifest at ${path} is malformed: ${problems.join("; ")}.`, {
      hint: "Run `apex session validate`.",
      details: { path, problems },
    });
  }
  const manifest = value as unknown as CheckpointManifest;
  if (!options.allowDamaged && manifestHash(manifest) !== manifest.hash) {
    throw new ApexError("APEX_E_INTEGRITY", `The manifest at ${path} does not match its hash: it was modified or corrupted.`, {
      hint: salvageHint(`${located.sessionId}/${checkpointName(located.sequence)}`),
      details: { path },
    });
  }
  return manifest;
}

/** resolveCheckpoint + loadManifest. */
export function getCheckpoint(store: Store, ref: string | CheckpointManifest, options: LoadOptions = {}): CheckpointManifest {
  if (typeof ref !== "string") return options.allowDamaged ? ref : verifiedManifest(ref);
  return loadManifest(store, resolveCheckpoint(store, ref, options), options);
}

/** What to do about a checkpoint whose manifest does not verify: commands that exist, with the checkpoint named. */
function salvageHint(ref: string): string {
  return `Restore what still verifies with \`apex start --force-recovery ${ref}\`; \`apex session validate\` lists every problem.`;
}

export function verifiedManifest(manifest: CheckpointManifest): CheckpointManifest {
  if (manifestHash(manifest) !== manifest.hash) {
    throw new ApexError("APEX_E_INTEGRITY", `The manifest of ${manifest.session_id}/${manifest.name} does not match its hash.`, {
      hint: salvageHint(`${manifest.session_id}/${manifest.name}`),
    });
  }
  return manifest;
}

/** Removes manifest, summary and id record of a checkpoint. Call inside a write transaction. */
export function removeCheckpointRecords(store: Store, slot: { sessionId: string; sequence: number; id?: string | undefined }, actor: string): void {
  const catalog = Catalog.of(store);
  const path = manifestPath(slot.sessionId, slot.sequence);
  if (store.has(path)) store.batchSync((batch) => batch.delete(path), actor);
  catalog.removeSummary(slot.sessionId, slot.sequence);
  if (!slot.id) return;
  let record: unknown;
  try {
    record = catalog.locate(slot.id);
  } catch {
    record = undefined; // undecodable: remove it too
  }
  // Leave an id record that belongs to another checkpoint alone.
  if (!isRecord(record) || (record.s === slot.sessionId && record.n === slot.sequence)) catalog.removeId(slot.id);
}

/**
 * Roots of every tree something still needs: all checkpoints (catalog and manifests) and memory
 * bases; but those of the checkpoints in `without` (what a dry run of a cleanup would delete).
 */
export function liveRoots(store: Store, without: ReadonlyArray<{ sessionId: string; sequence: number }> = []): Set<Hash> {
  const roots = new Set<Hash>();
  const add = (hash: unknown) => {
    if (typeof hash === "string") roots.add(hash);
  };
  const gone = new Set(without.map(({ sessionId, sequence }) => `${sessionId}/${sequence}`));
  const catalog = Catalog.of(store);
  const objects = ObjectStore.of(store);
  for (const { sessionId, sequence } of catalog.summaryKeys()) {
    if (gone.has(`${sessionId}/${sequence}`)) continue;
    try {
      const summary = catalog.summary(sessionId, sequence);
      add(summary?.memory_root);
      add(summary?.tasks_root);
      add(summary?.agents_root);
    } catch {
      // undecodable summary: the manifest still names the roots
    }
  }
  for (const { sessionId, sequence } of manifestKeys(store)) {
    if (gone.has(`${sessionId}/${sequence}`)) continue;
    const manifest = readManifestRecord(store, sessionId, sequence);
    if (isRecord(manifest)) {
      if (isRecord(manifest.memory)) add(manifest.memory.root);
      if (isRecord(manifest.tasks)) add(manifest.tasks.root);
      if (isRecord(manifest.agents)) add(manifest.agents.root);
      // What a merge checkpoint merged in, as it recorded it: the base of later merges once that checkpoint's session is archived (merge-base.ts).
      // Kept while the store has it; one it no longer has (swept when every session that recorded it was archived, one of them brought
      // back since; or a merge imported from another store) is no damage of a kept checkpoint: merges fall back from it.
      const from = isRecord(manifest.data) && isRecord(manifest.data.merge) ? manifest.data.merge.from : undefined;
      if (isRecord(from)) {
        for (const root of [from.memory_root, from.tasks_root]) {
          if (typeof root === "string" && objects.has("tree", root)) add(root);
        }
      }
    }
  }
  for (const { base } of catalog.bases()) if (isRecord(base)) add(base.root);
  return roots;
}

const MANIFEST_KEY = /^\/sessions\/([^/]+)\/checkpoint-(\d+)$/;

/** Every manifest path in the keyspace (/sessions/<sid>/checkpoint-<NNN>), from the keys alone. */
export function* manifestKeys(store: Store): Iterable<{ sessionId: string; sequence: number; path: string }> {
  for (const path of store.keysBelow("/sessions")) {
    const match = MANIFEST_KEY.exec(path);
    if (!match) continue;
    const sequence = Number(match[2]);
    // Only canonical names (checkpoint-007, not checkpoint-0007) are manifests.
    if (Number.isSafeInteger(sequence) && sequence >= 1 && path === manifestPath(match[1]!, sequence)) {
      yield { sessionId: match[1]!, sequence, path };
    }
  }
}

export function assertWritable(store: Store): void {
  if (store.readOnly) throw new ApexError("APEX_E_INTERNAL", "The store was opened read-only.");
}

export function requireSession(store: Store, sessionId: string): void {
  // An ended session (its record in the history) can still get its final state checkpointed.
  if (!store.has(sessionPath(sessionId)) && !store.has(`/sessions/history/${sessionId}`)) {
    throw new ApexError("APEX_E_NO_SESSION", `No session ${sessionId}.`, { hint: "List sessions with `apex session list`." });
  }
}

