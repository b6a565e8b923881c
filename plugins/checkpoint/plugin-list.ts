/**
 * `apex checkpoint list`: fast on purpose (benchmarked against `node -e 0` with 10,000
 * checkpoints in a session): a read-only store, one page of compact catalog summaries, no
 * config, no plugins, no manifest decoded. Inside an agent the supervisor answers instead,
 * so that the agent never opens LMDB.
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import { known, paint, printJson, printLine, table, visibleText } from "../../cli/output.js";
import { cutToWidth, displayWidth } from "../../cli/terminal-text.js";
import { remoteApex } from "../../cli/remote-commands.js";
import { ApexError } from "../../core/errors.js";
import { readView } from "../../core/store/port.js";
import { type Store } from "../../core/store/store.js";
import { Catalog, type CheckpointSummary } from "./catalog.js";
import { sessionFor } from "./plugin-sessions.js";
import { sessionName } from "./merge-base.js";
import { shortSessionId } from "../../core/session/names.js";

export const DEFAULT_PAGE = 20;

export interface ListOptions {
  session?: string;
  limit?: number;
  offset?: number;
  oldest?: boolean;
  json?: boolean;
}

/** One page of a session's checkpoints, as `checkpoint list --json` prints it. */
export interface CheckpointPage {
  session_id: string;
  /** The session's name (a branch), null for an unnamed one: text names the session by it, else by its uuid's short form. */
  session_name: string | null;
  total: number;
  /** Checkpoints ever taken in the session (the last sequence number): more than `total` once some were removed. */
  taken: number;
  offset: number;
  limit: number;
  order: "newest" | "oldest";
  items: CheckpointListItem[];
  /**
   * KEPT BY's texts of the reasons naming sessions (servedPage), from a process answering the
   * list for one that does not open the store; the command prints them and leaves them out of --json.
   */
  kept_by_labels?: Record<string, string>;
}

export interface CheckpointListItem {
  id: string;
  name: string;
  sequence: number;
  created_at: string;
  trigger: string;
  description: string;
  pinned: boolean;
  parent: string | null;
  revision: number;
  memory_keys: number;
  task_count: number;
  agent_count: number;
  /**
   * What keeps it under the retention policy ("manual", "latest", "last", "base of <sid>"); an
   * empty list when the policy would remove it at the next cleanup; null when retention is not
   * enabled (nothing removes checkpoints then), or by a supervisor that did not apply it.
   */
  kept_by: string[] | null;
}

/** Why each checkpoint of a session is kept (id → reasons), given by the retention plugin when it is enabled. */
export type KeptBy = (store: Store, sessionId: string) => Map<string, string[]>;

export function checkpointPage(store: Store, options: Omit<ListOptions, "json">, keptBy?: KeptBy): CheckpointPage {
  const sessionId = sessionFor(store, options.session);
  const limit = options.limit ?? DEFAULT_PAGE;
  const offset = options.offset ?? 0;
  const catalog = Catalog.of(store);
  const items: CheckpointListItem[] = [];
  const reasons = keptBy?.(store, sessionId);
  for (const summary of catalog.summaries(sessionId, { reverse: !options.oldest, offset, limit })) items.push(listItem(summary, reasons));
  const total = catalog.count(sessionId);
  const taken = Math.max(total, catalog.lastSequence(sessionId));
  return { session_id: sessionId, session_name: sessionName(store, sessionId), total, taken, offset, limit, order: options.oldest ? "oldest" : "newest", items };
}

function listItem(summary: CheckpointSummary, reasons: Map<string, string[]> | undefined): CheckpointListItem {
  return {
    id: summary.id,
    name: summary.name,
    sequence: summary.sequence,
    created_at: summary.created_at,
    trigger: summary.trigger,
    description: summary.description,
    pinned: summary.pinned,
    parent: summary.parent,
    revision: summary.revision,
    memory_keys: summary.memory_keys,
    task_count: summary.task_count,
    agent_count: summary.agent_count,
    kept_by: reasons ? (reasons.get(summary.id) ?? []) : null,
  };
}

export async function listCheckpointsCommand(location: ProjectLocation, options: ListOptions, keptBy?: () => Promise<KeptBy | undefined>): Promise<void> {
  let page: CheckpointPage;
  // For text: KEPT BY's reasons naming sessions as the other commands do, read while the store is open (a supervisor or server answering sends them).
  let reasonTexts = new Map<string, string>();
  const { openSessionClient } = await import("../../core/session/client.js");
  const noStore = () => new ApexError("APEX_E_NO_SESSION", "No session in this project yet.", { hint: 'Start one with `apex start --task "…"`.' });
  const client = await openSessionClient(location, "read", { noStore });
  try {
    const params = { session: options.session, limit: options.limit, offset: options.offset, oldest: options.oldest === true, kept_by: keptBy !== undefined };
    page = await client.run(
      "checkpoint.list",
      params,
      async (store) => {
        const read = checkpointPage(store, options, await keptBy?.());
        if (!options.json) reasonTexts = await reasonLabels(store, read);
        return read;
      },
      30_000,
    );
  } finally {
    await client.close();
  }
  if (page.kept_by_labels) {
    reasonTexts = new Map(Object.entries(page.kept_by_labels));
    delete page.kept_by_labels;
  }
  if (options.json) {
    printJson(page);
    return;
  }
  printPage(page, reasonTexts);
}

/**
 * checkpointPage for a process answering the list for another (a supervisor, `apex serve`): with
 * the texts KEPT BY names sessions by (`kept_by_labels`), which the command cannot read itself.
 */
export async function servedPage(store: Store, options: Omit<ListOptions, "json">, keptBy: KeptBy | undefined): Promise<CheckpointPage> {
  const page = readView(store, () => checkpointPage(store, options, keptBy));
  const labels = await reasonLabels(store, page);
  return labels.size > 0 ? { ...page, kept_by_labels: Object.fromEntries(labels) } : page;
}

/**
 * KEPT BY's reasons that end in a session (`branch <sid>`, `base of <sid>`, `merged into <sid>`)
 * -> the text that names it as the other commands do: by name, else a uuid's short form
 * (--json keeps the whole ids). Read only when a reason names a session; the retention code that
 * gave the reasons has loaded these modules already.
 */
async function reasonLabels(store: Store, page: CheckpointPage): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  const reasons = new Set(page.items.flatMap((item) => item.kept_by ?? []));
  if (![...reasons].some((reason) => /^(branch|merge point of|merged into|base of) /.test(reason))) return texts;
  const [{ labelReason }, { sessionLabel }] = await Promise.all([import("./dependents.js"), import("./merge-base.js")]);
  for (const reason of reasons) texts.set(reason, labelReason(reason, (sessionId) => sessionLabel(store, sessionId)));
  return texts;
}

function printPage(page: CheckpointPage, reasonTexts: ReadonlyMap<string, string>): void {
  // The session as session list prints it, by name or short id (a supervisor older than session_name leaves it out); --json has the whole id.
  const session = known(page.session_name ? visibleText(page.session_name) : shortSessionId(page.session_id));
  if (page.total === 0) {
    printLine(`Session ${session} has no checkpoints yet.`);
    printLine(paint('Create one: apex checkpoint create "what this is"', "gray"));
    return;
  }
  // Retention and repair remove checkpoints; their numbers are never reused, so say why they skip.
  const count = page.taken > page.total ? `${page.total} kept of ${page.taken} taken` : `${page.total}`;
  printLine(`Checkpoints of session ${paint(session, "bold")} (${visibleText(`${count}, ${page.order}`)} first)`);
  if (page.items.length === 0) {
    printLine(`No checkpoints past offset ${page.offset}.`);
    return;
  }
  const retention = page.items.some((item) => item.kept_by !== null);
  const rows = page.items.map((item) => [
    item.name,
    item.id.slice(0, 8),
    item.created_at.replace(/\.\d+Z$/, "Z"),
    item.trigger,
    item.pinned ? "pinned" : "",
    ...(retention ? [item.kept_by === null ? "" : item.kept_by.length > 0 ? item.kept_by.map((reason) => reasonTexts.get(reason) ?? reason).join(", ") : "nothing (next cleanup removes it)"] : []),
  ]);
  const headers = ["NAME", "ID", "CREATED", "TRIGGER", "PIN", ...(retention ? ["KEPT BY"] : [])];
  // A description (up to 240 characters) is cut to what is left of the row: the terminal's width, or COLUMNS when
  // output is not a terminal; piped without COLUMNS it is whole, so that grep finds it. --json has it whole.
  const before = headers.reduce((sum, header, i) => sum + Math.max(displayWidth(header), ...rows.map((row) => displayWidth(String(row[i])))) + 2, 0);
  const columns = process.stdout.isTTY && process.stdout.columns ? process.stdout.columns : Number(process.env.COLUMNS) || Infinity;
  const width = Math.max(20, columns - before);
  rows.forEach((row, i) => row.push(cutToWidth(visibleText(page.items[i]!.description || "-"), width)));
  printLine(table([...headers, "DESCRIPTION"], rows));
  const shown = page.offset + page.items.length;
  if (page.offset > 0 || shown < page.total) {
    // Through --remote, the command that reads that session's next page (as written it reads this machine's project).
    const apex = remoteApex();
    const next = shown < page.total ? `; next page: ${apex} checkpoint list --offset ${shown}${page.limit !== DEFAULT_PAGE ? ` --limit ${page.limit}` : ""}` : "";
    printLine(paint(`Showing ${page.offset + 1}–${shown} of ${page.total}${next}`, "gray"));
  }
}
