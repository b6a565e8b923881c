import { ApexError } from "../../core/errors.js";
import { APEX_VERSION } from "../../core/plugins.js";
import {
  decodeValueObject,
  ObjectDamageError,
  ObjectStore,
  PackCache,
  compareCodePoints,
  decodeTreeNode,
  sha256,
  type Hash,
  type ObjectKind,
} from "../checkpoint/engine/objects.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog } from "../checkpoint/catalog.js";
import { checkSessionId, isRecord, manifestHash, manifestPath, manifestShapeProblems, parseCheckpointName, type CheckpointManifest } from "../checkpoint/manifest.js";
import type { BundleInput, BundleKind } from "./bundle.js";
import { identityProblem } from "../checkpoint/record-identity.js";
import { sessionLabel } from "../checkpoint/merge-base.js";

/** Where a session's record is and what it says. */
export interface SessionLocation {
  sessionId: string;
  state: "ended" | "live";
  path: string;
  record: Record<string, JsonValue>;
}

export interface CollectedSession {
  input: BundleInput;
  location: SessionLocation;
  checkpoints: CheckpointManifest[];
  /** Store revision the collection saw: archive checks nothing of the session changed since. */
  revision: number;
  /** Every keyspace path the bundle holds. */
  paths: string[];
}

export const historyPath = (sessionId: string) => `/sessions/history/${sessionId}`;
export const livePath = (sessionId: string) => `/sessions/${sessionId}`;

/**
 * Whether `path` is one of the session's access grants (/sessions/<sid>/grants/<token id>, written
 * by the sharing plugin: plugins/sharing/grants.ts). A grant is this project's word on who may reach
 * the session through its `apex serve`, not part of the session's work: an export never carries one
 * (its holder's token would work against any project that imported it), and an import never writes
 * one (a crafted bundle would plant a grant whose token its author knows). Only an archive keeps
 * them, for its own project's unarchive (installBundle's keepGrants).
 */
export function isGrantPath(sessionId: string, path: string): boolean {
  const prefix = `${livePath(sessionId)}/grants`;
  return path === prefix || path.startsWith(`${prefix}/`);
}

/** The session's record: ended (/sessions/history/<sid>) or live (/sessions/<sid>). */
export function locateSession(store: Store, sessionId: string): SessionLocation {
  checkSessionId(sessionId);
  const ended = store.get(historyPath(sessionId));
  const live = store.get(livePath(sessionId));
  if (ended !== undefined && live !== undefined) {
    throw new ApexError("APEX_E_CONFLICT", `Session ${sessionId} has both a live record and an ended one; not touching it.`, {
      hint: "Run `apex session validate`; this store was modified outside APEX.",
    });
  }
  const state = ended !== undefined ? "ended" : "live";
  const record = ended ?? live;
  if (record === undefined) {
    throw new ApexError("APEX_E_NO_SESSION", `No session ${sessionId} in this project.`, { hint: "See `apex session list` and `apex session history`." });
  }
  if (!isRecord(record)) throw new ApexError("APEX_E_INTEGRITY", `The record of session ${sessionId} is not an object.`, { hint: "Run `apex session validate`." });
  return { sessionId, state, path: state === "ended" ? historyPath(sessionId) : livePath(sessionId), record };
}

/**
 * Everything of one session, read in one synchronous pass (one consistent snapshot): its
 * record, every record below /sessions/<sid>/, its checkpoint manifests (each verified) and
 * every object they reference (each re-hashed). Damage refuses with APEX_E_INTEGRITY: a
 * bundle never holds data that does not verify. An export leaves the session's access grants out
 * (isGrantPath); an archive keeps them, so that its own project's unarchive gives them back.
 */
export function collectSession(store: Store, sessionId: string, options: { kind: BundleKind; createdAt: string }): CollectedSession {
  const location = locateSession(store, sessionId);
  const label = sessionLabel(store, sessionId);
  const revision = store.revision();
  const records: Array<[string, JsonValue]> = [];
  if (location.state === "ended") records.push([location.path, location.record]);
  for (const { path, value } of store.tree(livePath(sessionId))) {
    if (options.kind !== "archive" && isGrantPath(sessionId, path)) continue;
    records.push([path, value]);
  }
  records.sort((a, b) => compareCodePoints(a[0], b[0]));
  // A task or agent record that is not one (null, or another id, written by hand with --force): the bundle's reader
  // refuses it, so export failed after writing with APEX_E_INTERNAL ("does not read back"), blaming the plugin.
  for (const [path, value] of records) {
    const problem = path.startsWith(`${livePath(sessionId)}/`) ? identityProblem(path.slice(livePath(sessionId).length + 1), value, path) : undefined;
    if (problem !== undefined) {
      throw new ApexError("APEX_E_INTEGRITY", `Session ${sessionId} cannot be bundled: ${problem}; a bundle holding it would not read back.`, {
        hint: `Nothing was written. Write the record back as APEX keeps it, or delete it (\`apex memory delete ${path} --force\`), and try again.`,
        details: { session_id: sessionId, path },
      });
    }
  }

  const checkpoints: CheckpointManifest[] = [];
  for (const [path, value] of records) {
    const name = path.slice(livePath(sessionId).length + 1);
    const sequence = parseCheckpointName(name);
    if (sequence === undefined || manifestPath(sessionId, sequence) !== path) continue;
    const problems = manifestShapeProblems(value);
    if (problems.length > 0 || manifestHash(value as unknown as CheckpointManifest) !== (value as { hash?: unknown }).hash) {
      throw damaged(label, `its manifest ${path} ${problems.length > 0 ? `is malformed (${problems.join("; ")})` : "does not match its hash"}`);
    }
    const manifest = value as unknown as CheckpointManifest;
    if (manifest.session_id !== sessionId || manifest.sequence !== sequence) throw damaged(label, `its manifest ${path} names ${manifest.session_id}/${manifest.name}`);
    checkpoints.push(manifest);
  }

  const objects = collectObjects(store, label, checkpoints);
  const lastSequence = Math.max(Catalog.of(store).lastSequence(sessionId), ...checkpoints.map((checkpoint) => checkpoint.sequence), 0);
  const project = store.get("/projects/config");
  const projectId = isRecord(project) && typeof project.project_id === "string" ? project.project_id : null;
  return {
    input: {
      kind: options.kind,
      created_at: options.createdAt,
      apex_version: APEX_VERSION,
      project_id: projectId,
      session_id: sessionId,
      session_state: location.state,
      last_sequence: lastSequence,
      checkpoints: checkpoints.map((checkpoint) => ({ sequence: checkpoint.sequence, id: checkpoint.id, hash: checkpoint.hash })),
      records,
      objects,
    },
    location,
    checkpoints,
    revision,
    paths: records.map(([path]) => path),
  };
}

/** The objects the checkpoints reference, depth first from each root, each read from the packs and re-hashed. */
function collectObjects(store: Store, label: string, checkpoints: readonly CheckpointManifest[]): Array<{ kind: ObjectKind; hash: Hash; bytes: Buffer }> {
  const objects = ObjectStore.of(store);
  const packCache = new PackCache();
  const out: Array<{ kind: ObjectKind; hash: Hash; bytes: Buffer }> = [];
  const seen = new Set<string>();
  const read = (kind: ObjectKind, hash: Hash, where: string): Buffer => {
    const bytes = objects.getRaw(kind, hash, packCache);
    if (!bytes) throw damaged(label, new ObjectDamageError(kind, hash, "missing").message, where);
    if (sha256(bytes) !== hash) throw damaged(label, new ObjectDamageError(kind, hash, "corrupt").message, where);
    return Buffer.from(bytes);
  };
  const tree = (hash: Hash, where: string): void => {
    if (seen.has(`tree:${hash}`)) return;
    seen.add(`tree:${hash}`);
    const bytes = read("tree", hash, where);
    let node;
    try {
      node = decodeTreeNode(bytes);
    } catch (error) {
      throw damaged(label, new ObjectDamageError("tree", hash, "undecodable", (error as Error).message).message, where);
    }
    out.push({ kind: "tree", hash, bytes });
    if (node.kind === "split") for (const bucket of node.buckets) tree(bucket.hash, where);
    else
      for (const entry of node.entries) {
        if (entry.value && !seen.has(`value:${entry.value}`)) {
          seen.add(`value:${entry.value}`);
          const value = read("value", entry.value, where);
          try {
            decodeValueObject(value);
          } catch (error) {
            throw damaged(label, new ObjectDamageError("value", entry.value, "undecodable", (error as Error).message).message, where);
          }
          out.push({ kind: "value", hash: entry.value, bytes: value });
        }
        if (entry.tree) tree(entry.tree, where);
      }
  };
  for (const checkpoint of checkpoints) {
    for (const root of [checkpoint.memory.root, checkpoint.tasks.root, checkpoint.agents.root]) if (root) tree(root, checkpoint.name);
  }
  return out;
}

/** `label`: the session as sessionLabel prints it (a branch by its name). */
function damaged(label: string, what: string, where?: string): ApexError {
  return new ApexError("APEX_E_INTEGRITY", `Session ${label} cannot be bundled: ${where ? `${where}: ` : ""}${what.replace(/\.$/, "")}.`, {
    hint: "Nothing was written. Run `apex session validate`, then `apex session repair`, and try again.",
  });
}
