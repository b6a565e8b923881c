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
    .description("the project's store: migrate it to another backend")
    .addHelpText(
      "after",
      `
The store holds sessions, memory with revisions, tasks, events and checkpoints. By default it is
LMDB in .apex/; \`store:\` in apex.config.yaml or APEX_STORE_URL puts it on PostgreSQL.

Examples:
  apex store migrate --to postgres://apex@db.example:5432/apex
  apex store migrate --to lmdb:../backup-store --json`,
    );

  store
    .command("migrate")
    .description("copy the project's store to another backend (postgres://… or lmdb:PATH), verify every checkpoint there; the source is only read")
    .requiredOption("--to <url>", "the target store: postgres://user:password@host:5432/database, or lmdb:PATH (an empty directory)")
    .option(
      "--json",
      "print {source: {backend, location}, target: {backend, location}, project, revision, changes, records, tables: {NAME: rows}, checkpoints: {total, verified}, verified: true, switch: {config, env}}",
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
}
