import { isRecord } from "./manifest.js";

// The shape a task or agent record must have. The bundle reader (archive plugin) refuses a record
// without it, export and archive refuse to bundle one, and `apex session validate` names it.

/** Agent names (as apex.config.yaml allows them) and task ids: no path characters. */
export const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/;
const PROCESS_FIELDS = ["pid", "pgid", "start_time"];

/** What a bundle's reader refuses in a record, if anything: export checks its records with it, so that it never writes a bundle that does not read back, and validate reports it. */
export function identityProblem(relative: string, value: unknown, path: string): string | undefined {
  const [kind, id, ...deeper] = relative.split("/");
  if (deeper.length > 0 || id === undefined || (kind !== "agents" && kind !== "tasks")) return undefined;
  if (kind === "agents" && id.endsWith(".context")) return undefined;
  const field = kind === "agents" ? "name" : "id";
  if (!ID.test(id)) return `record ${JSON.stringify(path)} names ${kind === "agents" ? "an agent" : "a task"} ${JSON.stringify(id)}, which is not an id (letters, digits, '.', '_', '-')`;
  if (!isRecord(value) || value[field] !== id) return `record ${path} is not the ${kind === "agents" ? "agent" : "task"} record of ${id} (its ${field} is ${JSON.stringify(isRecord(value) ? value[field] : value)})`;
  if (kind === "agents") {
    for (const name of PROCESS_FIELDS) {
      const number = value[name];
      if (number !== undefined && number !== null && !isCount(number)) return `agent record ${path} has ${name} ${JSON.stringify(number)}, not a process id`;
    }
  }
  return undefined;
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}
