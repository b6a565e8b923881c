import { ApexError } from "../../core/errors.js";
import { canonicalJson, isHash, sha256, type Hash } from "./engine/objects.js";
import { pathProblem } from "../../core/store/paths.js";
import type { JsonValue } from "../../core/store/store.js";
import type { MemoryScope } from "./scope.js";
import { RESERVED_SESSION_NAMES } from "../../core/session/records.js";

/** Built-in triggers; plugins may add their own (any name matching TRIGGER_PATTERN). */
export const BUILTIN_TRIGGERS = ["manual", "interval", "beforeTask", "afterMilestone", "beforeGit", "onError", "onPause"] as const;
export type BuiltinTrigger = (typeof BUILTIN_TRIGGERS)[number];
export type CheckpointTrigger = BuiltinTrigger | (string & {});

export const TRIGGER_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

export const MANIFEST_FORMAT = 1;

/**
 * An immutable checkpoint manifest, stored as JSON at /sessions/<sid>/checkpoint-<NNN>.
 * Memory, tasks and agent states are Merkle trees (see plugins/checkpoint/engine/objects.ts); the
 * manifest holds their root hashes, so a manifest is small whatever the memory size.
 */
export interface CheckpointManifest {
  format: typeof MANIFEST_FORMAT;
  /** uuid v4. */
  id: string;
  session_id: string;
  /** Per-session sequence number, from 1, never reused. */
  sequence: number;
  /** "checkpoint-007". */
  name: string;
  /** Id of the session's previous checkpoint, null for the first (a branch's first: the checkpoint it branched from). */
  parent: string | null;
  /** A merge checkpoint's second parent: the checkpoint of the source session merged in (plugins/checkpoint/merge.ts). */
  merge_parent?: string;
  /** ISO 8601. */
  created_at: string;
  description: string;
  trigger: CheckpointTrigger;
  pinned: boolean;
  /** The store revision whose state this checkpoint captures. */
  revision: number;
  memory: { root: Hash | null; keys: number; scope: MemoryScope };
  /** Tree of /sessions/<sid>/tasks/*, keyed by task id. */
  tasks: { root: Hash | null; count: number };
  /** Tree of /sessions/<sid>/agents/*, keyed by agent name. */
  agents: { root: Hash | null; count: number };
  /** Contributed by plugins through beforeCheckpoint (data.git_state); null when none did. */
  git_state: JsonValue | null;
  /** Everything else beforeCheckpoint taps added to the draft's data. */
  data: { [key: string]: JsonValue };
  /** sha256 of the canonical JSON of this manifest without `hash`. */
  hash: Hash;
}

export type UnsignedManifest = Omit<CheckpointManifest, "hash">;

export function manifestHash(manifest: UnsignedManifest | CheckpointManifest): Hash {
  const { hash: _ignored, ...unsigned } = manifest as CheckpointManifest;
  return sha256(canonicalJson(unsigned));
}

export function signManifest(unsigned: UnsignedManifest): CheckpointManifest {
  return { ...unsigned, hash: manifestHash(unsigned) };
}

export function checkpointName(sequence: number): string {
  return `checkpoint-${String(sequence).padStart(3, "0")}`;
}

export const CHECKPOINT_NAME_PATTERN = /^checkpoint-(\d{1,15})$/;

export function parseCheckpointName(name: string): number | undefined {
  const match = CHECKPOINT_NAME_PATTERN.exec(name);
  if (!match) return undefined;
  const sequence = Number(match[1]);
  return sequence >= 1 ? sequence : undefined;
}

export function sessionPath(sessionId: string): string {
  return `/sessions/${sessionId}`;
}

export function manifestPath(sessionId: string, sequence: number): string {
  return `/sessions/${sessionId}/${checkpointName(sequence)}`;
}

export function tasksRoot(sessionId: string): string {
  return `/sessions/${sessionId}/tasks`;
}

export function agentsRoot(sessionId: string): string {
  return `/sessions/${sessionId}/agents`;
}

export { RESERVED_SESSION_NAMES } from "../../core/session/records.js";

export function checkSessionId(sessionId: string): string {
  const problem =
    typeof sessionId !== "string" || sessionId.length === 0
      ? "it is empty"
      : sessionId.includes("/")
        ? "it contains '/'"
        : RESERVED_SESSION_NAMES.has(sessionId)
          ? `'${sessionId}' is reserved`
          : pathProblem(`/sessions/${sessionId}`);
  if (problem) {
    throw new ApexError("APEX_E_BAD_INPUT", `Invalid session id ${JSON.stringify(sessionId)}: ${problem}.`);
  }
  return sessionId;
}

export function checkTrigger(trigger: string): CheckpointTrigger {
  if (typeof trigger !== "string" || !TRIGGER_PATTERN.test(trigger)) {
    throw new ApexError("APEX_E_BAD_INPUT", `Invalid checkpoint trigger ${JSON.stringify(trigger)}.`, {
      hint: `Use one of ${BUILTIN_TRIGGERS.join(", ")}, or a plugin trigger name (letters, digits, _ . : -).`,
    });
  }
  return trigger;
}

/**
 * Checks that a decoded record has the shape of a manifest. Returns the problems found
 * (empty: well-formed); the hash is checked separately.
 */
export function manifestShapeProblems(value: unknown): string[] {
  const problems: string[] = [];
  if (!isRecord(value)) return ["it is not an object"];
  const need = (field: string, ok: boolean, expected: string) => {
    if (!ok) problems.push(`${field} should be ${expected}`);
  };
  need("format", value.format === MANIFEST_FORMAT, `${MANIFEST_FORMAT}`);
  need("id", typeof value.id === "string" && value.id.length > 0, "a uuid");
  need("session_id", typeof value.session_id === "string" && value.session_id.length > 0, "a session id");
  need("sequence", Number.isSafeInteger(value.sequence) && (value.sequence as number) >= 1, "a positive integer");
  need("name", typeof value.name === "string" && value.name === checkpointName(value.sequence as number), "checkpoint-<sequence>");
  need("parent", value.parent === null || typeof value.parent === "string", "a uuid or null");
  need("merge_parent", value.merge_parent === undefined || (typeof value.merge_parent === "string" && value.merge_parent.length > 0), "a uuid when present");
  need("created_at", typeof value.created_at === "string", "an ISO date");
  need("description", typeof value.description === "string", "a string");
  need("trigger", typeof value.trigger === "string" && TRIGGER_PATTERN.test(value.trigger), "a trigger name");
  need("pinned", typeof value.pinned === "boolean", "a boolean");
  need("revision", Number.isSafeInteger(value.revision) && (value.revision as number) >= 0, "a revision number");
  const memory = value.memory;
  need(
    "memory",
    isRecord(memory) &&
      (memory.root === null || isHash(memory.root)) &&
      Number.isSafeInteger(memory.keys) &&
      isRecord(memory.scope) &&
      isStringArray(memory.scope.include) &&
      isStringArray(memory.scope.exclude),
    "{root, keys, scope}",
  );
  for (const field of ["tasks", "agents"] as const) {
    const tree = value[field];
    need(field, isRecord(tree) && (tree.root === null || isHash(tree.root)) && Number.isSafeInteger(tree.count), "{root, count}");
  }
  need("data", isRecord(value.data), "an object");
  need("hash", isHash(value.hash), "a sha256 hex digest");
  return problems;
}

export function isRecord(value: unknown): value is Record<string, JsonValue> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}
