import { ApexError } from "../../core/errors.js";

/**
 * What `apex --remote` reads of a reply before it prints it: the shape of the answers of the reads
 * it prints (lists, records, the checkpoint and tree views, `memory watch`'s batches), checked once, here, for every command.
 * `apex serve` of this version always answers so; a server that is not APEX (or a man in the middle
 * on plain http) answered a list with a string or a record with a number, and the command failed
 * half-way as APEX_E_INTERNAL ("records.map is not a function"), after printing part of it. Only
 * what the printers read is required: a field an older `apex serve` leaves out is no problem.
 */
type Check = (value: unknown) => boolean;

const text: Check = (value) => typeof value === "string";
const count: Check = (value) => typeof value === "number";
const record = (fields: Record<string, Check> = {}): Check => (value) =>
  value !== null && typeof value === "object" && !Array.isArray(value) && Object.entries(fields).every(([name, check]) => check((value as Record<string, unknown>)[name]));
const list = (item: Check): Check => (value) => Array.isArray(value) && value.every(item);

const SHAPES: Record<string, { check: Check; what: string }> = {
  "session.list": { check: list(record({ session_id: text })), what: "a list of sessions" },
  "task.list": { check: list(record({ id: text })), what: "a list of tasks" },
  "task.get": { check: record({ id: text }), what: "a task" },
  "milestone.list": { check: list(record()), what: "a list of milestones" },
  "share.list": { check: list(record({ user: text })), what: "a list of grants" },
  "events.list": { check: list(record()), what: "a list of events" },
  "memory.query": { check: list(record({ path: text })), what: "a list of memory entries" },
  "memory.changes": { check: record({ revision: count, changes: list(record({ path: text })) }), what: "a batch of memory changes" },
  "whoami": { check: record({ session_id: text, user: text, role: text }), what: "who the token is" },
  "checkpoint.list": { check: record({ total: count, offset: count, items: list(record({ id: text, name: text })) }), what: "a page of checkpoints" },
  "checkpoint.show": {
    check: record({
      manifest: record({ id: text, name: text, session_id: text, memory: record({ keys: count, scope: record({ include: list(text) }) }), data: record() }),
      tasks: record(),
      agent_states: record(),
      memory_keys: list(text),
      memory_keys_count: count,
    }),
    what: "a checkpoint",
  },
  "checkpoint.diff": {
    check: record({
      from: record({ id: text, name: text }),
      to: record({ id: text, name: text }),
      memory: record({ added: list(text), removed: list(text), changed: list(text) }),
      tasks: record({ added: list(text), removed: list(text), changed: list(record({ id: text })) }),
      agents: record({ added: list(text), removed: list(text), changed: list(record({ id: text })) }),
    }),
    what: "a diff of two checkpoints",
  },
  "session.tree": { check: record({ sessions: list(record({ session_id: text })), nodes: list(record({ id: text, session_id: text, parents: list(text) })) }), what: "a tree of sessions" },
};

/** `result`, when it has the shape of METHOD's answer (or METHOD has none checked); else APEX_E_RPC naming what it should have been. */
export function checkedReply(origin: string, method: string, result: unknown): unknown {
  const shape = Object.hasOwn(SHAPES, method) ? SHAPES[method] : undefined;
  if (!shape || shape.check(result)) return result;
  throw new ApexError("APEX_E_RPC", `${origin} answered ${method} with a reply that is not ${shape.what} as this version of APEX reads it; nothing of it was used.`, {
    hint: "Is it `apex serve`, of this version of APEX? Check the address (and use https:// where anyone on the network could answer in its place).",
    details: { method },
  });
}
