import { durationHelp } from "../../cli/durations.js";
import { builtinPluginSchema } from "../../core/config/schemas.js";
import type { CommandSpec } from "../../core/engine.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";
import { settingsFromOptions, type ArchivePluginOptions } from "./options.js";

const PLUGIN_NAME = "archive" as const;

/**
 * Archive, export and backup. Ended sessions move out of the live store into one
 * compressed, self-verifying bundle each (FORMAT.md) under session.backup_location and come
 * back verified; any session can be exported to and imported from the same format; and
 * `apex backup` makes a verified, compacted copy of the whole store.
 */
export default definePlugin<ArchivePluginOptions>({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  // Archives and backups are made of the checkpoint engine's objects and catalog.
  requires: ["checkpoint"],
  // Read when asked for (config checks read it themselves): a supervisor applying the plugin reads no schema, loads no validator.
  get schema() {
    return builtinPluginSchema(PLUGIN_NAME);
  },
  apply(apex, options) {
    const settings = settingsFromOptions(options);
    const register = (spec: CommandSpec) => apex.registerCommand(spec);

    register({
      name: "session archive",
      description: "move ended sessions older than a duration out of the store, one verified bundle each under session.backup_location",
      arguments: [{ syntax: "[id]", description: "archive this ended session (default: the one --session names, else every ended session older than --older-than)", session: true }],
      options: [
        { flags: "--older-than <duration>", description: durationHelp("sessions that ended at least this long ago (default: the plugin's older_than)", "30d, 30days, 12h, 2w") },
        { flags: "--dry-run", description: "show what would be archived; write and remove nothing" },
        { flags: "--json", description: "print {dry_run, older_than_seconds, cutoff, directory, archived: [{session_id, ended_at, file (with --dry-run, the file the run would write), checkpoints, records, objects, body_bytes, file_bytes}], skipped: [{session_id, reason, code, archived_elsewhere}] (archived_elsewhere: another process archived it meanwhile), sweep: {values, trees, bytes, packs: {removed, rewritten, bytes_freed, and as before bytesFreed}} or null, sweep_error: {code, message, hint} or null} (a session that could not be archived, or a sweep_error, makes the exit code 1; one left by rule, not old enough, live or a branch point, does not)" },
      ],
      examples: ["apex session archive --older-than 30days", "apex session archive --older-than 12h --dry-run", "apex session archive 3f2a9c1e --json"],
      async action(input, context) {
        const { runArchive } = await import("./commands.js");
        return runArchive(input, context, settings);
      },
    });

    register({
      name: "session unarchive",
      description: "bring an archived session back into the store, after verifying its bundle",
      runsIn: "cli",
      arguments: [{ syntax: "<bundle>", description: "a bundle file, or a session archived under session.backup_location: its id, a branch's name or a unique id prefix" }],
      options: [
        { flags: "--keep", description: "keep the bundle file (default: an archive in the backup directory is removed once the session is back; a bundle elsewhere, such as an export, is always kept)" },
        { flags: "--json", description: "print {session_id, name, file, bundle_kind, bundle_created_at, checkpoints, records, objects, converted_to_ended, agents_process_ids_cleared, grants_dropped, previous_status, worktree, revision, already_back, bundle_removed}; grants_dropped counts the access grants the bundle held that were not brought in (all but those of this project's own archive)" },
      ],
      examples: ["apex session unarchive 3f2a9c1e", "apex session unarchive experiment", "apex session unarchive .apex/backups/3f2a9c1e.apexbundle --keep", "apex session unarchive 3f2a --json"],
      async action(input, context) {
        const { runUnarchive } = await import("./commands.js");
        return runUnarchive(input, context, settings);
      },
    });

    register({
      name: "session export",
      description: "write a session, its checkpoints and all their data to one verified bundle file",
      runsIn: "cli",
      arguments: [{ syntax: "<id>", description: "the session (id, unique prefix or a branch's name; live or ended)", session: true }],
      options: [
        { flags: "-o, --output <file>", description: "the bundle file to write (required); - writes the bundle to standard output, for a pipe (the summary then goes to stderr; not with --json)" },
        { flags: "--force", description: "replace the file if it exists" },
        { flags: "--json", description: "print {session_id, file, state, checkpoints, records, objects, body_bytes, file_bytes, algorithm}" },
      ],
      examples: ["apex session export 3f2a9c1e -o auth-work.apexbundle", "apex session export 3f2a -o /tmp/s.apexbundle --force --json", "apex session export 3f2a -o - | ssh build-box 'cd project && apex session import -'"],
      async action(input, context) {
        const { runExport } = await import("./commands.js");
        return runExport(input, context, settings);
      },
    });

    register({
      name: "session import",
      description: "add the session of a bundle file (from export or archive) to this project, after verifying it",
      runsIn: "cli",
      arguments: [{ syntax: "<file>", description: "the bundle file; - reads the bundle from standard input (`… session export ID -o - | apex session import -`)" }],
      options: [{ flags: "--json", description: "print {session_id, name, file, bundle_kind, bundle_created_at, checkpoints, records, objects, converted_to_ended, agents_process_ids_cleared, grants_dropped, previous_status, worktree, revision, already_imported}; grants_dropped counts the access grants the bundle held, which an import never brings in; already_imported is true when the project held the session exactly as the bundle does (a repeated import: nothing written, exit 0)" }],
      examples: ["apex session import auth-work.apexbundle", "apex session import /tmp/s.apexbundle --json", "ssh laptop 'cd project && apex session export last -o -' | apex session import -"],
      async action(input, context) {
        const { runImport } = await import("./commands.js");
        return runImport(input, context, settings);
      },
    });

    register({
      name: "backup",
      description: "write a consistent, compacted copy of the whole LMDB store and verify it (PostgreSQL: pg_dump)",
      runsIn: "cli",
      options: [
        { flags: "--to <dir>", description: "directory for the copy; it must not hold a store.mdb yet (default: a new directory session.backup_location/store-<time>, store-<time>-2 when a backup made in the same second has that one)" },
        { flags: "--json", description: "print {directory, file, bytes, source_bytes, revision, counts: {records, checkpoints, values, trees, packs}, validation: {ok, errors, warnings, problems: [text]}, ms, swept}" },
      ],
      examples: ["apex backup", "apex backup --to /mnt/backups/apex-2026-11-20", "apex backup --json"],
      async action(input, context) {
        const { runBackup } = await import("./commands.js");
        return runBackup(input, context);
      },
    });
  },
});
