import type { Command } from "commander";
import { projectOf } from "../../cli/context.js";
import { examples } from "../../cli/output.js";

/**
 * `apex store …`: `apex store migrate --to URL` copies the project's store to another backend
 * (plugins/postgres/migrate.ts). The action loads its code (and the pg driver) only when run.
 */
export function registerStoreCommands(program: Command): void {
  const store = program
    .command("store")
    .description("the project's store: migrate it to another backend; the projects of a PostgreSQL database")
    .addHelpText(
      "after",
      `
The store holds sessions, memory with revisions, tasks, events and checkpoints. By default it is
LMDB in .apex/; \`store:\` in apex.config.yaml or APEX_STORE_URL puts it on PostgreSQL.

Examples:
  apex store migrate --to postgres://apex@db.example:5432/apex
  apex store migrate --to lmdb:../backup-store --json
  apex store projects
  apex store rename-project my-app-feature-x my-app`,
    );

  store
    .command("migrate")
    .description("copy the project's store to another backend (postgres://… or lmdb:PATH), verify every checkpoint there; the source is only read")
    .requiredOption("--to <url>", "the target store: postgres://user:password@host:5432/database, or lmdb:PATH (an empty directory)")
    .option(
      "--json",
      "print {source: {backend, location}, target: {backend, location}, project (null for lmdb:PATH), revision, changes, records, tables: {NAME: rows}, checkpoints: {total, verified}, verified: true, switch: {config, env}, warnings: [text] (only when there are: sessions interrupted on another host and copied as they are)}",
    )
    .addHelpText(
      "after",
      `
The target must be empty (a new database or project id, an empty directory) and no supervisor
may run (stop the session first). Progress goes to stderr. Nothing is changed in the source:
point the project at the target afterwards with the printed \`store:\` line or APEX_STORE_URL.
${examples("apex store migrate --to postgres://apex@localhost:5432/apex", "apex store migrate --to lmdb:/srv/apex/store --json")}`,
    )
    .action(async (options: { to: string; json?: boolean }, command: Command) => {
      const { migrateStoreCommand } = await import("./migrate-cli.js");
      await migrateStoreCommand(projectOf(command), options);
    });

  store
    .command("projects")
    .description("list the project ids of the PostgreSQL database this project's store is in, with their revision, sessions and running sessions")
    .option("--json", "print {database, current, projects: [{project, revision, created, current, sessions, active: [{session_id, status, host, running, lease_expires_at}]}]}")
    .addHelpText(
      "after",
      `
Several projects share one database, each under its id (store.project, else the project
directory's name). Only reads. On LMDB, which holds one project, it is a usage error.
${examples("apex store projects", "APEX_STORE_URL=postgres://apex@db.example/apex apex store projects --json")}`,
    )
    .action(async (options: { json?: boolean }, command: Command) => {
      const { listProjectsCommand } = await import("./projects-cli.js");
      await listProjectsCommand(projectOf(command), options);
    });

  store
    .command("rename-project")
    .description("move every record of project id FROM to project id TO in the same database, in one transaction")
    .argument("<from>", "the project id that holds the data")
    .argument("<to>", "the project id to move it to: one that holds nothing")
    .option("--json", "print {database, from, to, revision, sessions}")
    .addHelpText(
      "after",
      `
For data kept under an id no installation uses any more: sessions an older APEX started in a
git worktree went to a project named after the worktree's directory. Everything moves: memory
and its revisions, sessions, tasks, checkpoints, leases. Refused, changing nothing, when TO
holds data (exit 4, APEX_E_CONFLICT), when a session of FROM runs here or holds an unexpired
lease on another host (exit 4, APEX_E_SESSION_ACTIVE), and when FROM is not in the database
(exit 3, APEX_E_NOT_FOUND).
${examples("apex store projects", "apex store rename-project my-app-feature-x my-app")}`,
    )
    .action(async (from: string, to: string, options: { json?: boolean }, command: Command) => {
      const { renameProjectCommand } = await import("./projects-cli.js");
      await renameProjectCommand(projectOf(command), from, to, options);
    });
}
