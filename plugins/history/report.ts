import { locateSession, readAuditTrail } from "../../cli/session.js";
import type { MemoryReader } from "../../cli/memory-actions.js";
import {
  CONTEXT_SUFFIX,
  agentsPrefix,
  milestonesPrefix,
  taskNumber,
  tasksPrefix,
  type AgentRecord,
  type MilestoneRecord,
  type SessionEvent,
  type SessionRecord,
  type TaskRecord,
} from "../../core/session/records.js";
import type { JsonValue } from "../../core/store/store.js";
import { sessionGitPath } from "../git/repository.js";
import { checkpointsNow, inStatusNow, isRecord, metricsPath, type RepositoryMetrics, type SessionMetrics } from "../metrics/record.js";
import { repositoriesOf } from "../metrics/format.js";

export const REPORT_FORMAT = 1;

export interface CheckpointSummary {
  [key: string]: JsonValue;
  name: string;
  sequence: number;
  id: string | null;
  trigger: string | null;
  description: string | null;
  created_at: string | null;
  pinned: boolean;
  git_state: JsonValue;
}

export interface GitRange {
  [key: string]: JsonValue;
  /** Per repository: from the HEAD at the session's start to the HEAD at the last metrics sample. */
  repositories: RepositoryMetrics[];
  /** git_state of the first and the last checkpoint still kept. */
  first_checkpoint: JsonValue;
  last_checkpoint: JsonValue;
  /** The last `apex session sync-git` record. */
  synced: JsonValue;
}

/** Everything `apex session report` shows, as JSON. */
export interface SessionReport {
  [key: string]: JsonValue;
  format: number;
  generated_at: string;
  session: SessionRecord & { effective_status: string };
  /** null when the metrics plugin never sampled the session. */
  metrics: SessionMetrics | null;
  tasks: { counts: { pending: number; active: number; completed: number; failed: number; total: number }; items: TaskRecord[] };
  milestones: MilestoneRecord[];
  agents: AgentRecord[];
  checkpoints: CheckpointSummary[];
  git: GitRange;
  events: SessionEvent[];
}

const MANIFEST_NAME = /^checkpoint-(\d+)$/;

/** Gathers the report of the session `ref` names (the command resolves `last`, `current` and none to the bound session: boundSessionRef). */
export async function buildReport(reader: MemoryReader, ref: string | undefined, now = new Date()): Promise<SessionReport> {
  const { sessionId, record, status } = await locateSession(reader, ref);
  const [metricsValue, taskEntries, milestoneEntries, agentEntries, checkpointEntries, synced, events] = await Promise.all([
    reader.get(metricsPath(sessionId)),
    reader.query(`${tasksPrefix(sessionId)}/*`),
    reader.query(`${milestonesPrefix(sessionId)}/*`),
    reader.query(`${agentsPrefix(sessionId)}/*`),
    reader.query(`/sessions/${sessionId}/checkpoint-*`),
    reader.get(sessionGitPath(sessionId)),
    readAuditTrail(reader, sessionId),
  ]);
  // A record that is no object (null or a string written by hand with --force) is no task, milestone or agent, as
  // `apex task show` reads it: the report crashed on it ("Cannot read properties of null") or showed "undefined" in its rows.
  const tasks = records<TaskRecord>(taskEntries).sort((a, b) => taskNumber(a.id) - taskNumber(b.id));
  const counts = { pending: 0, active: 0, completed: 0, failed: 0, total: tasks.length };
  for (const task of tasks) if (task.status in counts) counts[task.status] += 1;
  const checkpoints = checkpointEntries.flatMap((entry) => summarizeCheckpoint(entry.path, entry.value)).sort((a, b) => a.sequence - b.sequence);
  const sampled = isRecord(metricsValue) && metricsValue.session_id === sessionId ? (metricsValue as SessionMetrics) : null;
  // In the status the session has now, as `session metrics` says it (the last sample said the status then),
  // with the checkpoints the report lists: those kept now (a cleanup since the last sample removed some).
  const metrics = sampled && inStatusNow(checkpointsNow(sampled, checkpointEntries), status);
  return {
    format: REPORT_FORMAT,
    generated_at: now.toISOString(),
    session: { ...record, effective_status: status },
    metrics,
    tasks: { counts, items: tasks },
    milestones: records<MilestoneRecord>(milestoneEntries),
    agents: records<AgentRecord>(agentEntries.filter((entry) => !entry.path.endsWith(CONTEXT_SUFFIX))),
    checkpoints,
    git: {
      repositories: repositoriesOf(metrics),
      first_checkpoint: checkpoints[0]?.git_state ?? null,
      last_checkpoint: checkpoints.at(-1)?.git_state ?? null,
      synced: synced ?? null,
    },
    events,
  };
}

function records<T>(entries: Array<{ value: JsonValue }>): T[] {
  return entries.flatMap((entry) => (isRecord(entry.value) ? [entry.value as unknown as T] : []));
}

function summarizeCheckpoint(path: string, value: JsonValue): CheckpointSummary[] {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const match = MANIFEST_NAME.exec(name);
  if (!match || !isRecord(value)) return [];
  const text = (key: string) => (typeof value[key] === "string" ? (value[key] as string) : null);
  return [
    {
      name,
      sequence: Number(match[1]),
      id: text("id"),
      trigger: text("trigger"),
      description: text("description"),
      created_at: text("created_at"),
      pinned: value.pinned === true,
      git_state: value.git_state ?? null,
    },
  ];
}
