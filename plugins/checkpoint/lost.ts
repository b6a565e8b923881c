import type { Store } from "../../core/store/store.js";
import type { DamagedRegion } from "../lmdb/salvage.js";
import { Catalog } from "./catalog.js";
import { checkpointName, isRecord, manifestPath } from "./manifest.js";
import type { StoreProblem } from "./validate.js";

/**
 * The checkpoints a truncated store file lost with the cut, found in what is left of it (the
 * scratch copy validate-process.ts validates). A checkpoint whose manifest and catalog records were
 * both in the pages past the end of the file left nothing the validation of the copy could meet: it
 * was not named at all, and `checkpoint list` then simply showed fewer. It is named here when what is
 * left says it existed:
 *
 *  - a trace of it: its `checkpoint` event in its session's audit trail, a catalog record (a
 *    summary, an id record) that outlived its manifest, or its manifest's write in the revision log;
 *  - or the place its manifest had: the key `/sessions/<sid>/checkpoint-NNN` falls in a run of pages
 *    of the keyspace the cut took (after the last key read before them, before the next one read),
 *    for a sequence the session had taken (up to the highest one any trace or its counter names).
 *
 * A trace is also the write of its manifest in what is left of the revision log. One deleted before
 * the cut is left out when what is left says so (retention's `retention.delete` event, or the deletion
 * of its manifest last in the revision log); one whose deletion was recorded only in pages the cut took
 * too cannot be told from a lost one, which the message says.
 */
export interface LostCheckpoint {
  session_id: string;
  sequence: number;
  name: string;
  /** Its id, when a trace names it. */
  id: string | null;
  /** Named by a trace (an event, a catalog record, the revision log), not only by the place of its manifest. */
  recorded: boolean;
}

const MANIFEST = /^\/sessions\/([^/]+)\/checkpoint-(\d+)$/;
const EVENT = /^\/sessions\/([^/]+)\/events\/\d+$/;

/**
 * A session whose checkpoints after `after_sequence` (its highest one anything left names), if it took
 * any, had their manifests in pages the cut took: how many, nothing left says.
 */
export interface LostAfter {
  session_id: string;
  after_sequence: number;
  /** Its name; null when nothing left names any checkpoint of the session (0). */
  after: string | null;
}

export interface LostReport {
  lost: LostCheckpoint[];
  lostAfter: LostAfter[];
}

/** `kvRegions`: the damaged regions of the keyspace table (`kv`) the page reader reported. */
export function lostCheckpoints(store: Store, kvRegions: readonly DamagedRegion[]): LostReport {
  const present = new Map<string, Set<number>>();
  const traces = new Map<string, Map<number, string | null>>();
  const deleted = new Map<string, Set<number>>();
  const highest = new Map<string, number>();
  const sessions = new Set<string>();
  const note = (sessionId: string, sequence: unknown) => {
    if (typeof sequence !== "number" || !Number.isSafeInteger(sequence) || sequence < 1) return false;
    sessions.add(sessionId);
    highest.set(sessionId, Math.max(highest.get(sessionId) ?? 0, sequence));
    return true;
  };
  const trace = (sessionId: string, sequence: unknown, id: unknown) => {
    if (!note(sessionId, sequence)) return;
    const known = traces.get(sessionId) ?? new Map<number, string | null>();
    traces.set(sessionId, known);
    if (typeof id === "string" || !known.has(sequence as number)) known.set(sequence as number, typeof id === "string" ? id : null);
  };
  const events: string[] = [];
  for (const path of store.keysBelow("/sessions")) {
    const manifest = MANIFEST.exec(path);
    if (manifest && path === manifestPath(manifest[1]!, Number(manifest[2]))) {
      note(manifest[1]!, Number(manifest[2]));
      addTo(present, manifest[1]!, Number(manifest[2]));
    } else if (EVENT.test(path)) events.push(path);
    // A session with records left (its history record, or any below its own path): one whose checkpoints after its highest may be lost.
    const session = /^\/sessions\/history\/([^/]+)$/.exec(path)?.[1] ?? /^\/sessions\/(?!history\/)([^/]+)\/./.exec(path)?.[1];
    if (session !== undefined) sessions.add(session);
  }
  for (const path of events) {
    const sessionId = EVENT.exec(path)![1]!;
    let event: unknown;
    try {
      event = store.get(path);
    } catch {
      continue; // an undecodable event: validation reports it
    }
    if (!isRecord(event)) continue;
    if (event.type === "checkpoint") trace(sessionId, event.sequence, event.id);
    else if (event.type === "retention.delete" && typeof event.sequence === "number") addTo(deleted, sessionId, event.sequence);
  }
  // The revision log left: each manifest written (a trace, when its last change is a put) or deleted (deleted before the cut).
  const logged = new Map<string, "put" | "delete">();
  try {
    for (const change of store.changesSince(0)) if (MANIFEST.test(change.path)) logged.set(change.path, change.kind);
  } catch {
    // a log that does not read past some point: what was read stands
  }
  for (const [path, kind] of logged) {
    const [, sessionId, sequence] = MANIFEST.exec(path)!;
    if (path !== manifestPath(sessionId!, Number(sequence))) continue;
    if (kind === "put") trace(sessionId!, Number(sequence), undefined);
    else if (note(sessionId!, Number(sequence))) addTo(deleted, sessionId!, Number(sequence));
  }
  const catalog = Catalog.of(store);
  for (const { sessionId, last } of catalog.counters()) note(sessionId, last);
  for (const { sessionId, sequence } of catalog.summaryKeys()) {
    let summary: unknown;
    try {
      summary = catalog.summary(sessionId, sequence);
    } catch {
      summary = undefined;
    }
    trace(sessionId, sequence, isRecord(summary) ? summary.id : undefined);
  }
  for (const id of catalog.idKeys()) {
    let record: unknown;
    try {
      record = catalog.raw(["i", id]);
    } catch {
      continue;
    }
    if (isRecord(record) && typeof record.s === "string") trace(record.s, record.n, id);
  }

  // The runs of keyspace keys the cut took: after the last key read before each (none: from the table's start) up to the next one read.
  const gaps = kvRegions.map((region) => {
    const after = region.after === null ? undefined : Buffer.from(region.after, "hex");
    let next: Buffer | undefined;
    for (const key of store.keys(after === undefined ? { limit: 1 } : { start: after.toString("utf8"), limit: 2 })) {
      const bytes = Buffer.from(key, "utf8");
      if (after === undefined || Buffer.compare(bytes, after) > 0) {
        next = bytes;
        break;
      }
    }
    return { after, next };
  });
  const inGap = (path: string) => {
    const bytes = Buffer.from(path, "utf8");
    return gaps.some(({ after, next }) => (after === undefined || Buffer.compare(bytes, after) > 0) && (next === undefined || Buffer.compare(bytes, next) < 0));
  };

  const lost: LostCheckpoint[] = [];
  const lostAfter: LostAfter[] = [];
  for (const sessionId of [...sessions].sort()) {
    const top = highest.get(sessionId) ?? 0;
    if (inGap(manifestPath(sessionId, top + 1))) lostAfter.push({ session_id: sessionId, after_sequence: top, after: top === 0 ? null : checkpointName(top) });
    const here = present.get(sessionId) ?? new Set<number>();
    const known = traces.get(sessionId) ?? new Map<number, string | null>();
    const gone = deleted.get(sessionId) ?? new Set<number>();
    for (let sequence = 1; sequence <= (highest.get(sessionId) ?? 0); sequence++) {
      if (here.has(sequence) || gone.has(sequence)) continue;
      const recorded = known.has(sequence);
      if (!recorded && !inGap(manifestPath(sessionId, sequence))) continue;
      lost.push({ session_id: sessionId, sequence, name: checkpointName(sequence), id: known.get(sequence) ?? null, recorded });
    }
  }
  return { lost, lostAfter };
}

/** One `checkpoint-lost` problem per session, naming its lost checkpoints (runs of sequences as `checkpoint-003 to checkpoint-007`). */
export function lostProblems({ lost, lostAfter }: LostReport): StoreProblem[] {
  const bySession = new Map<string, LostCheckpoint[]>();
  for (const checkpoint of lost) {
    const list = bySession.get(checkpoint.session_id) ?? [];
    bySession.set(checkpoint.session_id, list);
    list.push(checkpoint);
  }
  const named = [...bySession].map(([sessionId, checkpoints]) => {
    const recorded = checkpoints.filter((checkpoint) => checkpoint.recorded).map((checkpoint) => checkpoint.sequence);
    const placed = checkpoints.filter((checkpoint) => !checkpoint.recorded).map((checkpoint) => checkpoint.sequence);
    const one = checkpoints.length === 1;
    const why = [
      ...(recorded.length > 0 ? [`${runs(recorded)} ${recorded.length === 1 ? "is" : "are"} named by what is left of the session's events, the checkpoint catalog or the revision log`] : []),
      ...(placed.length > 0 ? [`the pages the cut took held the place of the manifest${placed.length === 1 ? "" : "s"} of ${runs(placed)}`] : []),
    ];
    return {
      code: "checkpoint-lost" as const,
      severity: "error" as const,
      message: `Session ${sessionId} lost ${one ? "a checkpoint" : `${checkpoints.length} checkpoints`} with the cut, ${runs(checkpoints.map((checkpoint) => checkpoint.sequence))}: ${one ? "its manifest is" : "their manifests are"} not in what is left of the store file (${why.join("; ")}). Repair cannot bring ${one ? "it" : "them"} back. (One deleted before the cut, its deletion recorded only in pages the cut took too, is named as well.)`,
      path: `/sessions/${sessionId}`,
    };
  });
  const unnamed = lostAfter.map(({ session_id: sessionId, after_sequence: sequence }) => ({
    code: "checkpoint-lost" as const,
    severity: "error" as const,
    message: `Session ${sessionId} may have lost checkpoints ${sequence === 0 ? "from its first" : `after ${checkpointName(sequence)}`} with the cut: their manifests would be in pages the cut took, and nothing left names any (how many it took is not known; \`apex checkpoint list\` shows those left once the store is repaired).`,
    path: `/sessions/${sessionId}`,
  }));
  return [...named, ...unnamed];
}

/** 3, 4, 5, 9 -> "checkpoint-003 to checkpoint-005, checkpoint-009". */
function runs(sequences: number[]): string {
  const sorted = [...sequences].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(j === i ? checkpointName(sorted[i]!) : `${checkpointName(sorted[i]!)}${j === i + 1 ? " and " : " to "}${checkpointName(sorted[j]!)}`);
    i = j + 1;
  }
  return parts.join(", ");
}

function addTo(map: Map<string, Set<number>>, key: string, value: number): void {
  const set = map.get(key) ?? new Set<number>();
  map.set(key, set.add(value));
}
