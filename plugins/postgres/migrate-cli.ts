/**
 * `apex store migrate --to URL`: copies the project's store (opened read-only) into an empty
 * store on another backend with migrateStore, then validates every checkpoint on the target
 * and prints how to switch the project to it. Refuses, writing nothing, while a supervisor
 * runs on either store (the store would change under the copy) and when the target already holds data.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { ProjectLocation } from "../../core/config/locate.js";
import { plural, printJson, printLine } from "../../cli/output.js";
import { ApexError, isApexError } from "../../core/errors.js";
import { backendFactory, describeStore, openStore, redactUrl, resolveStoreSpec, storeExists, storeIdentity } from "../../core/store/open.js";
import type { StorageBackend, StoreSpec, TableOptions } from "../../core/store/port.js";
import { activeSessions, currentSession, supervisorAlive } from "../../core/session/sessions.js";
import { liveSupervisors, type SupervisorRuntime } from "../../core/session/runtime.js";
import { CATALOG_DB, CATALOG_TABLE } from "../checkpoint/catalog.js";
import { FILTER_DB } from "../checkpoint/engine/hash-filter.js";
import { JOURNAL_DB, PACKS_DB, TREES_DB, VALUES_DB } from "../checkpoint/engine/objects.js";
import { validateStore } from "../checkpoint/validate.js";
import { migrateStore } from "./migrate.js";
import { PostgresBackend, postgresUrlProblem } from "./backend.js";
import { LEASES_OPTIONS, LEASES_TABLE, localHost, onOtherHost, supervisorHost } from "../../core/session/lease.js";
import type { SessionRecord } from "../../core/session/records.js";
import { stopCommand } from "../stop-command.js";

/** The tables of core and the built-in plugins with their kinds (the port's tableNames() gives names only). */
const TABLES: Record<string, TableOptions> = {
  [VALUES_DB]: { keys: "binary", values: "binary" },
  [TREES_DB]: { keys: "binary", values: "binary" },
  [PACKS_DB]: { keys: "uint32", values: "binary" },
  [JOURNAL_DB]: { keys: "uint32", values: "binary" },
  [FILTER_DB]: { keys: "uint32", values: "binary" },
  [CATALOG_DB]: CATALOG_TABLE,
  // The sessions' leases (core/session/lease.ts).
  [LEASES_TABLE]: LEASES_OPTIONS,
};

export interface MigrateCommandResult {
  source: { backend: string; location: string };
  target: { backend: string; location: string };
  /** The target's project id; null for an LMDB target (a directory holds one project). */
  project: string | null;
  revision: number;
  changes: number;
  records: number;
  tables: Record<string, number>;
  checkpoints: { total: number; verified: number };
  verified: true;
  switch: { config: string; env: string };
  /** Sessions interrupted on another host, copied as they are (interruptedElsewhere). */
  warnings?: string[];
}

export async function migrateStoreCommand(location: ProjectLocation, options: { to: string; json?: boolean }): Promise<void> {
  const targetSpec = await targetSpecOf(location, options.to);
  const sourceSpec = await resolveStoreSpec(location);
  if (!(await storeExists(location))) {
    throw new ApexError("APEX_E_NO_STORE", `There is no store to migrate (${describeStore(sourceSpec).backend} at ${describeStore(sourceSpec).location}).`, {
      hint: "Run `apex start` in this project first, or point APEX_STORE_URL at the store to copy.",
    });
  }
  if ((await storeIdentity(sourceSpec)) === (await storeIdentity(targetSpec))) {
    throw new ApexError("APEX_E_CONFLICT", "The target is the project's own store.", { hint: "Point --to at another database, project id or directory." });
  }
  const running = await supervisorOn(location, [sourceSpec, targetSpec]);
  if (running) throw supervisorRunning({ sessionId: running.session_id, name: running.name, pid: running.pid, host: localHost(), leaseExpiresAt: null });
  if (targetSpec.backend === "lmdb") refuseForeignFiles(describeStore(targetSpec).location);

  const progress = (message: string) => process.stderr.write(`apex store migrate: ${message}\n`);
  let source: StorageBackend | undefined;
  let target: StorageBackend | undefined;
  try {
    source = await openStore(location, { readOnly: true });
    // Any session of the project with a live supervisor, here or (its lease unexpired) on another host sharing the store.
    const live = [currentSession(source), ...activeSessions(source)].find(
      (session) => session !== undefined && (session.status === "active" || session.status === "paused") && supervisorAlive(session),
    );
    if (live) {
      throw supervisorRunning({
        sessionId: live.session_id,
        name: live.name,
        pid: live.supervisor?.pid,
        host: supervisorHost(live.supervisor) ?? localHost(),
        leaseExpiresAt: onOtherHost(live.supervisor) ? (live.supervisor?.lease_expires_at ?? null) : null,
      });
    }
    const warnings = interruptedElsewhere(activeSessions(source));
    for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
    target = await openTarget(targetSpec, options.to);
    target.spec = targetSpec;
    const opened = target;
    if (opened instanceof PostgresBackend && !opened.tryCopyLock()) {
      throw new ApexError("APEX_E_CONFLICT", `Another \`apex store migrate\` into ${describeStore(targetSpec).location} (project ${targetSpec.project}) is running.`, {
        hint: "Wait for it to end: a copy that ends well says so. Nothing was written.",
      });
    }
    const report = await migrateStore(source, target, {
      tables: TABLES,
      onProgress: progress,
      // A PostgreSQL project that an interrupted migration of this store filled is emptied and filled again.
      clearInterrupted: opened instanceof PostgresBackend ? () => opened.clearProject() : undefined,
    }).catch((error: unknown) => {
      // A whole copy already there (a migration stopped after its copy, before its report): how to use it, as a report says.
      if (isApexError(error) && error.details?.whole_copy === true) {
        const lines = switchLines(targetSpec, options.to);
        throw new ApexError(error.code, error.message, { hint: `That copy can be used as it is: put \`${lines.config}\` in apex.config.yaml, or set ${lines.env}. To copy again, empty the target first.`, details: error.details });
      }
      throw lostTarget(error, targetSpec);
    });
    progress("validating checkpoints on the target");
    const validation = validateStore(target);
    if (!validation.ok || validation.checkpoints.verified !== validation.checkpoints.total) {
      const first = validation.problems.find((problem) => problem.severity === "error");
      throw new ApexError("APEX_E_INTEGRITY", `The copy's checkpoints do not verify: ${validation.checkpoints.verified} of ${validation.checkpoints.total}${first ? ` (${first.message})` : ""}.`, {
        hint: "The source is unchanged; drop the target and run the migration again.",
      });
    }
    const result: MigrateCommandResult = {
      source: describeStore(sourceSpec),
      target: describeStore(targetSpec),
      project: targetSpec.project ?? null,
      revision: report.revision,
      changes: report.changes,
      records: report.entries,
      tables: report.tables,
      checkpoints: { total: validation.checkpoints.total, verified: validation.checkpoints.verified },
      verified: true,
      switch: switchLines(targetSpec, options.to),
      ...(warnings.length > 0 ? { warnings } : {}),
    };
    if (options.json) {
      printJson(result);
      return;
    }
    printLine(`Copied the store (${result.source.backend} at ${result.source.location}) to ${result.target.backend} at ${result.target.location}${result.project ? `, project ${result.project}` : ""}.`);
    printLine(`  revision ${result.revision}, ${plural(result.records, "record")}, ${Object.entries(result.tables).map(([name, rows]) => `${name} ${rows}`).join(", ") || "no tables"}`);
    printLine(`  ${result.checkpoints.verified} of ${plural(result.checkpoints.total, "checkpoint")} verified on the target; the source is unchanged.`);
    printLine("To use it, put in apex.config.yaml:");
    printLine(`  ${result.switch.config}`);
    printLine(`or set: ${result.switch.env}`);
    // The lines are to be copied: a password left as *** there is refused (APEX_E_STORE_AUTH).
    if (targetSpec.backend === "postgres" && redactUrl(options.to) !== redactUrl(options.to, "")) printLine("  (with the password where *** stands, or without it in the URL and kept in ~/.pgpass or PGPASSWORD)");
  } finally {
    await target?.close();
    await source?.close();
  }
}

/** The target's spec: --to read as APEX_STORE_URL would be (same project id), else a usage error. */
async function targetSpecOf(location: ProjectLocation, url: string): Promise<StoreSpec> {
  try {
    const spec = await resolveStoreSpec(location, { ...process.env, APEX_STORE_URL: url });
    const problem = spec.backend === "postgres" ? postgresUrlProblem(url) : undefined;
    if (problem) {
      throw new ApexError("APEX_E_USAGE", `--to ${redactUrl(url)} ${problem}.`, {
        hint: "e.g. apex store migrate --to postgres://apex@localhost:5432/apex (a port from 1 to 65535). Nothing was written.",
      });
    }
    return spec;
  } catch (error) {
    if (error instanceof ApexError && error.code === "APEX_E_CONFIG" && error.message.startsWith("APEX_STORE_URL")) {
      throw new ApexError("APEX_E_USAGE", `--to must be postgres://… or lmdb:PATH, not ${JSON.stringify(redactUrl(url))}.`, {
        hint: "e.g. apex store migrate --to postgres://apex@localhost:5432/apex, or --to lmdb:/srv/apex/store",
      });
    }
    throw error;
  }
}

/** The target store, opened to write; a target the backend cannot use at all (a file for a directory) is a bad --to. */
async function openTarget(spec: StoreSpec, url: string): Promise<StorageBackend> {
  try {
    return await (await backendFactory(spec.backend)).open(spec, {});
  } catch (error) {
    if (error instanceof ApexError && error.code === "APEX_E_CONFIG") {
      // (PostgreSQL's hint says what to fix in the URL itself, an sslmode without its sslrootcert; LMDB's names store.url)
      const hint = (spec.backend === "postgres" ? error.hint : undefined) ?? "Point --to at an empty directory or a new database.";
      throw new ApexError("APEX_E_USAGE", `--to ${redactUrl(url)}: ${error.message}`, { hint: `${hint} Nothing was written.`, details: error.details, cause: error });
    }
    // The target's server, credentials or database: what to fix is --to, not the project's store URL.
    const fix: Record<string, string> = {
      APEX_E_STORE_UNREACHABLE: "Is the target's server running, and are the host and port in --to right?",
      APEX_E_STORE_AUTH: "Check the user and password in --to (or ~/.pgpass, PGPASSWORD), or the target server's pg_hba.conf.",
    };
    if (error instanceof ApexError && fix[error.code]) {
      throw new ApexError(error.code, error.message, { hint: `${fix[error.code]} Nothing was written.`, details: error.details, cause: error });
    }
    throw error;
  }
}

/**
 * A PostgreSQL target lost during the copy (its server gone, its password changed): the error
 * names its URL, and its hint said to check the project's own store URL. What to do is to run the
 * migration again once the target answers: it starts over on what this copy left there.
 */
function lostTarget(error: unknown, spec: StoreSpec): unknown {
  const lost = ["APEX_E_STORE_UNREACHABLE", "APEX_E_STORE_AUTH", "APEX_E_STORE_NO_DATABASE"];
  if (!(error instanceof ApexError) || !lost.includes(error.code) || spec.backend !== "postgres" || error.details?.url !== redactUrl(spec.url!, "")) return error;
  return new ApexError(error.code, error.message, {
    hint: "The copy's target (--to) failed during the copy. Once it answers, run the migration again: it empties what this copy left there and copies again. The source is unchanged.",
    details: error.details,
    cause: error,
  });
}

/**
 * An LMDB target is an empty directory, or one that holds only a store (refused later when it
 * holds data): a store made in a directory of other files would make the directory and every
 * file in it owner-only, and its `.gitignore` (`*`) would hide them from git.
 */
function refuseForeignFiles(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // missing (it is made), or not a directory (the open names it)
  }
  const own = (name: string) =>
    name === "store.mdb" || name === "store.mdb-lock" || (name === ".gitignore" && readFileSync(join(dir, name), "utf8").split("\n").filter((line) => line !== "" && !line.startsWith("#")).join("\n") === "*");
  const foreign = names.filter((name) => !own(name)).sort();
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 5).join(", ") + (foreign.length > 5 ? `, … (${foreign.length} in all)` : "");
    throw new ApexError("APEX_E_CONFLICT", `The target directory ${dir} is not empty (${shown}); a migration copies into an empty directory.`, {
      hint: "Point --to at a new or empty directory. Nothing was written.",
      details: { dir, entries: foreign.slice(0, 100) },
    });
  }
}

/**
 * A live supervisor of this project directory that runs on the source or the target store. One
 * on another store (the project's runtime files are shared by every store it names) changes
 * neither, and is no reason to refuse. A runtime file without `store` (an older APEX) is taken
 * as the source's, as every command takes it.
 */
async function supervisorOn(location: ProjectLocation, specs: StoreSpec[]): Promise<SupervisorRuntime | undefined> {
  const stores = new Set(await Promise.all(specs.map((spec) => storeIdentity(spec))));
  return liveSupervisors(location.storeDir).find((runtime) => runtime.store === undefined || stores.has(runtime.store));
}

/**
 * Sessions of the store left active or paused by a supervisor on another host whose lease ran
 * out (`apex status` there: interrupted, naming the host). They are copied as they are; said,
 * since that host may wake up and go on in the source store, which the copy does not follow.
 */
function interruptedElsewhere(sessions: SessionRecord[]): string[] {
  return sessions
    .filter((session) => (session.status === "active" || session.status === "paused") && onOtherHost(session.supervisor) && !supervisorAlive(session))
    .map(
      (session) =>
        `session ${session.session_id} is interrupted: its supervisor on host ${supervisorHost(session.supervisor)} (pid ${session.supervisor?.pid}) stopped renewing its lease${session.supervisor?.lease_expires_at ? `, which expired at ${session.supervisor.lease_expires_at}` : ""}; it is copied as interrupted, and what that host writes to the source store from now on is not in the copy (stop it there first).`,
    );
}

/**
 * The refusal while a supervisor runs, naming its session, host and pid: from another host
 * sharing the store, that host is where to stop it (its pid means nothing here).
 */
function supervisorRunning(holder: { sessionId: string; name?: unknown; pid: number | undefined; host: string; leaseExpiresAt: string | null }): ApexError {
  const remote = holder.host !== localHost();
  const where = `${remote ? `on host ${holder.host} ` : ""}(supervisor pid ${holder.pid ?? "unknown"}${holder.leaseExpiresAt ? `, lease until ${holder.leaseExpiresAt}` : ""})`;
  return new ApexError("APEX_E_SESSION_ACTIVE", `Session ${holder.sessionId} is running ${where}: the store would change under the copy.`, {
    hint: remote
      ? `Stop it on ${holder.host} (\`apex stop\` there, or \`apex --remote ${holder.host}/${holder.sessionId} stop\` through its server), then run the migration again. Nothing was written.`
      : `Stop it (${stopCommand(holder.sessionId, holder.name)}), then run the migration again. Nothing was written.`,
    details: { session_id: holder.sessionId, host: holder.host, pid: holder.pid ?? null, lease_expires_at: holder.leaseExpiresAt },
  });
}

/**
 * The config line and the environment variable that point the project at the target. A
 * password in the URL is printed as *** (output ends up in terminals' scrollback and CI logs):
 * put it back, or keep it in ~/.pgpass or PGPASSWORD.
 */
function switchLines(spec: StoreSpec, url: string): { config: string; env: string } {
  if (spec.backend === "postgres") {
    const shown = redactUrl(url);
    return { config: `store: { backend: postgres, url: ${JSON.stringify(shown)}, project: ${yamlScalar(spec.project!)} }`, env: `APEX_STORE_URL=${shown}` };
  }
  const path = describeStore(spec).location;
  return { config: `store: { backend: lmdb, url: ${JSON.stringify(path)} }`, env: `APEX_STORE_URL=${shellWord(`lmdb:${path}`)}` };
}

/** A YAML scalar that reads back as `text`: plain when nothing in it is special, else JSON's double-quoted form (valid YAML). */
function yamlScalar(text: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(text) ? text : JSON.stringify(text);
}

/** A word a POSIX shell reads back as `text`: as it is when nothing in it is special, else single-quoted. */
function shellWord(text: string): string {
  return /^[\p{L}\p{N}_@%+=:,./~-]+$/u.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}
