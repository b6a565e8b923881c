import { pluginCommandRole } from "./command-scope.js";
import type { Role } from "./grants.js";

/**
 * The role each control method needs when it arrives through `apex serve`. A method missing
 * here needs `owner`; the few in INTERNAL are never served remotely.
 */
const VIEWER_METHODS = [
  "hello",
  "whoami",
  "session.status",
  "session.list",
  "session.history",
  "session.tree",
  "agent.list",
  "task.list",
  "task.get",
  "milestone.list",
  "events.list",
  "events.subscribe",
  "memory.get",
  "memory.query",
  // memory.query a page at a time (`apex --remote … memory query`, `show`, `export` and a watch's
  // first read): scoped and redacted as memory.query's answer is (scope.ts, redact.ts).
  "memory.page",
  "memory.changes",
  "memory.watch",
  "checkpoint.list",
  "checkpoint.show",
  "checkpoint.diff",
  "logs.read",
  "logs.follow",
];
const OPERATOR_METHODS = ["session.continue", "session.pause", "session.resume", "checkpoint.create", "task.add", "task.reopen", "memory.set"];
/**
 * Named here so that the table reads whole: owner also shares, merges and stops. (Any method
 * not listed needs owner too; `session.merge` is refused to viewers and operators whether or
 * not this project's APEX serves it yet.)
 */
const OWNER_METHODS = ["share.create", "share.revoke", "share.list", "session.merge", "session.stop"];
/** Plumbing between the server and the session's writer: never a remote caller's to call. */
const INTERNAL = new Set(["share.authenticate", "share.touch", "session.connections"]);

/**
 * Methods that make new sessions of the project (from any session's checkpoint, a worktree
 * anywhere on the server's disk): not one session's to do, so never served through a grant.
 */
const PROJECT_METHODS = new Set(["session.branch", "session.reconstruct"]);

export function isProjectMethod(method: string): boolean {
  return PROJECT_METHODS.has(method);
}

const NEEDED = new Map<string, Role>([
  ...VIEWER_METHODS.map((m) => [m, "viewer"] as const),
  ...OPERATOR_METHODS.map((m) => [m, "operator"] as const),
  ...OWNER_METHODS.map((m) => [m, "owner"] as const),
]);

// A part of an import sent in parts (staged-imports.ts, served by `apex serve` itself): what the import needs.
NEEDED.set("memory.stage", NEEDED.get("memory.import") ?? "owner");

export function isInternalMethod(method: string): boolean {
  return INTERNAL.has(method);
}

export function roleNeeded(method: string, params: Record<string, unknown>): Role {
  // Plugin commands: their table in command-scope.ts, which also says how each is pinned or refused.
  if (method === "plugin.command") return pluginCommandRole(params.name);
  // A checkpoint made pinned is a pin (checkpoint.pin: owner): retention never removes it, and an operator can neither unpin nor delete it.
  if (isPinningCreate(method, params)) return "owner";
  return NEEDED.get(method) ?? "owner";
}

/** `checkpoint create --pin`: named so in a refusal, which otherwise said an operator's checkpoint.create needs owner. */
export function isPinningCreate(method: string, params: Record<string, unknown>): boolean {
  return method === "checkpoint.create" && params.pin === true;
}

/** The role table as it is served: each method named in it, with the role it needs. */
export function roleTable(): ReadonlyMap<string, Role> {
  return NEEDED;
}
