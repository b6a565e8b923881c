import { ApexError } from "../../core/errors.js";
import { MAX_LINE_BYTES } from "../../core/rpc/protocol.js";

/**
 * A `memory import` larger than one request body (`apex serve` takes 1 MiB) is sent in parts:
 * `memory.stage` {upload, entries} for each part but the last, which `apex serve` keeps in its
 * own memory, then `memory.import` {upload, entries} with the last: the server adds the parts
 * staged before it and sends the whole import to the session's writer as one call, one
 * transaction, all or nothing, as locally. Nothing is written before the last part.
 *
 * Bounds: at most UPLOADS_PER_GRANT uploads of one grant at a time, at most one socket request's
 * worth (256 MiB of JSON) in an upload, STAGED_TOTAL_BYTES on the whole server, and an upload no
 * part has reached for IDLE_MS is dropped.
 */
const IDLE_MS = 120_000;
const UPLOADS_PER_GRANT = 4;
const STAGED_TOTAL_BYTES = 2 * MAX_LINE_BYTES;
const UPLOAD_ID = /^[0-9a-f]{16,64}$/;

interface Upload {
  grant: string;
  session: string;
  entries: unknown[];
  bytes: number;
  timer?: NodeJS.Timeout;
}

export class StagedImports {
  /** By grant (token id) and upload id. */
  private readonly uploads = new Map<string, Upload>();
  private total = 0;

  /** Keeps a part; returns how many entries the upload holds so far. */
  stage(grant: string, session: string, params: Record<string, unknown>, bytes: number): { upload: string; staged: number } {
    const id = uploadId(params.upload);
    if (!Array.isArray(params.entries)) throw new ApexError("APEX_E_BAD_INPUT", "memory.stage needs entries: [{path, value}].");
    const key = `${grant}/${id}`;
    let upload = this.uploads.get(key);
    if (upload && upload.session !== session) {
      this.drop(key);
      upload = undefined;
    }
    if (!upload && [...this.uploads.values()].filter((other) => other.grant === grant).length >= UPLOADS_PER_GRANT) {
      throw new ApexError("APEX_E_RATE_LIMITED", `This grant already has ${UPLOADS_PER_GRANT} imports sent in parts under way, the most one grant may; nothing of this one was imported.`, {
        hint: `Try again once they have ended (or in ${IDLE_MS / 1000} s, when those no part reaches are dropped).`,
      });
    }
    if ((upload?.bytes ?? 0) + bytes > MAX_LINE_BYTES) {
      this.drop(key);
      throw new ApexError("APEX_E_TOO_LARGE", `The import sent in parts is over ${MAX_LINE_BYTES / 1024 / 1024} MiB of JSON, the most one write carries to the session; nothing was imported.`, {
        hint: "Import it in parts of at most 256 MiB (several files: `apex memory export GLOB` writes a part), or on the server's host with no session running.",
        details: { limit_bytes: MAX_LINE_BYTES },
      });
    }
    if (this.total + bytes > STAGED_TOTAL_BYTES) {
      throw new ApexError("APEX_E_RATE_LIMITED", "The server holds as many imports sent in parts as it may; nothing of this one was imported.", {
        hint: "Try again once the imports under way have ended.",
      });
    }
    upload ??= { grant, session, entries: [], bytes: 0 };
    clearTimeout(upload.timer);
    upload.timer = setTimeout(() => this.drop(key), IDLE_MS);
    upload.timer.unref();
    for (const entry of params.entries) upload.entries.push(entry);
    upload.bytes += bytes;
    this.total += bytes;
    this.uploads.set(key, upload);
    return { upload: id, staged: upload.entries.length };
  }

  /** The entries staged for `upload`, before those of the last part, and the upload dropped. */
  take(grant: string, session: string, params: Record<string, unknown>): unknown[] {
    const id = uploadId(params.upload);
    const key = `${grant}/${id}`;
    const upload = this.uploads.get(key);
    if (!upload || upload.session !== session) {
      throw new ApexError("APEX_E_BAD_INPUT", `No import sent in parts as ${id} is under way on this server (its parts were dropped after ${IDLE_MS / 1000} s without one, or the server restarted); nothing was imported.`, {
        hint: "Run the import again.",
      });
    }
    this.drop(key);
    return [...upload.entries, ...(Array.isArray(params.entries) ? params.entries : [])];
  }

  /** Drops every upload (the server stops). */
  clear(): void {
    for (const key of [...this.uploads.keys()]) this.drop(key);
  }

  private drop(key: string): void {
    const upload = this.uploads.get(key);
    if (!upload) return;
    clearTimeout(upload.timer);
    this.total -= upload.bytes;
    this.uploads.delete(key);
  }
}

function uploadId(value: unknown): string {
  if (typeof value === "string" && UPLOAD_ID.test(value)) return value;
  throw new ApexError("APEX_E_BAD_INPUT", "upload must be the id of an import sent in parts: 16 to 64 hex digits.");
}
