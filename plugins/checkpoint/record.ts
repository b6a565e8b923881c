/**
 * A checkpoint as people and tools read it (`apex checkpoint show --json`, `apex memory show
 * /sessions/<sid>/checkpoint-007` or `…/checkpoint-latest`): the manifest's facts under the
 * names the session-management flow uses, with what the manifest only references filled in
 * from its trees.
 *
 * ```
 * checkpoint_id, session_id, session_name, name, sequence, created_at, description, trigger, pinned, parent
 * agent_states.<agent>   { status, current_task, ...the agent record, context }
 * memory_keys            the memory paths it holds, one page (default the first 100)
 * memory_keys_count      how many there are; memory_keys_next_offset: the next page, or null
 * git_state              { branch, commit, dirty } (null outside a repository)
 * tasks                  task id -> task record
 * manifest               the stored manifest, as is
 * ```
 * Nothing here is stored: `memory_keys` is read from the memory tree when asked for (a page
 * costs a walk of that many paths), so a checkpoint is written as fast as before.
 */
import { ObjectStore, walkTree, type Hash } from "./engine/objects.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { RESERVED_SESSION_NAMES, type CheckpointManifest } from "./manifest.js";
import { getCheckpoint, type ResolveOptions } from "./refs.js";
import { sessionName } from "./session-name.js";
import { segmentsPath } from "./scope.js";

export const DEFAULT_KEYS_PAGE = 100;

export interface KeysPage {
  /** Paths to list (default 100; 0 lists none, only the count). */
  keysLimit?: number;
  /** Paths to skip first (the previous page's memory_keys_next_offset). */
  keysOffset?: number;
}

export interface AgentState {
  [key: string]: JsonValue;
  status: JsonValue;
  current_task: JsonValue;
}

export interface CheckpointRecord {
  [key: string]: JsonValue | CheckpointManifest | Record<string, AgentState>;
  checkpoint_id: string;
  session_id: string;
  /** The session's name (a branch), null for an unnamed one: text names the session by it, else by its uuid's short form. */
  session_name: string | null;
  name: string;
  sequence: number;
  created_at: string;
  description: string;
  trigger: string;
  pinned: boolean;
  parent: string | null;
  /** A merge checkpoint's second parent (null for any other checkpoint). */
  merge_parent: string | null;
  agent_states: Record<string, AgentState>;
  memory_keys: string[];
  memory_keys_count: number;
  memory_keys_next_offset: number | null;
  git_state: JsonValue | null;
  tasks: { [id: string]: JsonValue };
  manifest: CheckpointManifest;
}

/** Reads the checkpoint `ref` names and everything its record shows. Damage throws APEX_E_INTEGRITY. */
export function checkpointRecord(store: Store, ref: string | CheckpointManifest, options: ResolveOptions & KeysPage = {}): CheckpointRecord {
  const manifest = getCheckpoint(store, ref, options);
  const view = ObjectStore.of(store).view();
  const tasks: { [id: string]: JsonValue } = {};
  for (const { segments, hash } of walkTree(view, manifest.tasks.root)) tasks[segments.join("/")] = view.readValue(hash);

  const records = new Map<string, JsonValue>();
  const contexts = new Map<string, JsonValue>();
  for (const { segments, hash } of walkTree(view, manifest.agents.root)) {
    const name = segments.join("/");
    if (name.endsWith(".context")) contexts.set(name.slice(0, -".context".length), view.readValue(hash));
    else records.set(name, view.readValue(hash));
  }
  const agent_states: Record<string, AgentState> = {};
  for (const name of new Set([...records.keys(), ...contexts.keys()])) {
    const record = records.get(name);
    const fields = record !== null && typeof record === "object" && !Array.isArray(record) ? record : {};
    agent_states[name] = {
      ...fields,
      status: fields.status ?? null,
      current_task: fields.task ?? null,
      ...(contexts.has(name) ? { context: contexts.get(name)! } : {}),
    };
  }

  const limit = Math.max(0, options.keysLimit ?? DEFAULT_KEYS_PAGE);
  const offset = Math.max(0, options.keysOffset ?? 0);
  const memory_keys: string[] = [];
  if (limit > 0 && offset < manifest.memory.keys) {
    let index = 0;
    for (const { segments } of walkTree(view, manifest.memory.root)) {
      if (index++ < offset) continue;
      memory_keys.push(segmentsPath(segments));
      if (memory_keys.length === limit) break;
    }
  }
  const end = offset + memory_keys.length;
  return {
    checkpoint_id: manifest.id,
    session_id: manifest.session_id,
    session_name: sessionName(store, manifest.session_id),
    name: manifest.name,
    sequence: manifest.sequence,
    created_at: manifest.created_at,
    description: manifest.description,
    trigger: manifest.trigger,
    pinned: manifest.pinned,
    parent: manifest.parent,
    merge_parent: manifest.merge_parent ?? null,
    agent_states,
    memory_keys,
    memory_keys_count: manifest.memory.keys,
    memory_keys_next_offset: limit > 0 && end < manifest.memory.keys ? end : null,
    git_state: manifest.git_state,
    tasks,
    manifest,
  };
}

/**
 * `/sessions/<sid>/checkpoint-007` or `/sessions/<sid>/checkpoint-latest` as a checkpoint reference, else undefined.
 * `current` is the session commands act on, as `checkpoint show current/latest` takes it (no checkpoint is stored below /sessions/current).
 */
export function checkpointRefOfPath(path: string): string | undefined {
  const match = /^\/sessions\/([^/]+)\/checkpoint-(\d+|latest)$/.exec(path);
  if (!match || (match[1] !== "current" && RESERVED_SESSION_NAMES.has(match[1]!))) return undefined;
  return match[2] === "latest" ? `${match[1]}/latest` : `${match[1]}/checkpoint-${match[2]}`;
}

/**
 * The agents a checkpoint holds, by name, and how many of them have a saved context: the agents
 * tree keeps `<name>` and `<name>.context` side by side, so its entry count is not the number
 * of agents.
 */
export function agentsOf(store: Store, agentsRoot: Hash | null): { agents: string[]; agent_contexts: number } {
  const view = ObjectStore.of(store).view();
  const agents: string[] = [];
  let contexts = 0;
  for (const { segments } of walkTree(view, agentsRoot)) {
    const name = segments.join("/");
    if (name.endsWith(".context")) contexts += 1;
    else agents.push(name);
  }
  return { agents, agent_contexts: contexts };
}
