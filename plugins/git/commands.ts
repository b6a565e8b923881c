import { join } from "node:path";
import { linkedWorktreeOf } from "../../core/config/locate.js";
import { worktreeOfProject } from "../../core/session/runtime.js";
import { packageRoot } from "../../core/config/schemas.js";
import type { ApexApi, CommandContext, CommandSpec } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import type { HookTarget, InstallReport, UninstallReport } from "./hooks.js";
import { hookTimeoutSeconds, repositoryDir, repositoryIn, sessionWorktree, type GitPluginOptions } from "./repository.js";
import { findSession } from "../../core/session/sessions.js";

/**
 * The commands of the git plugin: `apex git …` and `apex session sync-git`. Every process that
 * loads the plugin registers them (a supervisor too); each loads its code when it runs.
 */
export function registerGitCommands(apex: ApexApi, options: GitPluginOptions): void {
  // `examples` is for `--help` once plugin commands can show examples (CommandSpec has no field for them yet).
  const register = (spec: CommandSpec & { examples: string[] }) => apex.registerCommand(spec);
  const repository = (context: CommandContext) => repositoryDir(context.projectDir ?? process.cwd(), options);

  // First: the subcommands below go inside it.
  register({
    name: "git",
    description: "run git in the project repository after firing beforeGit (read-only commands such as status just run); exits with git's exit code, e.g. apex git -- commit -am \"msg\"",
    examples: ['apex git -- commit -am "Add login form"', "apex git -- rebase main", "apex git -- status          # read-only: runs without firing beforeGit"],
    arguments: [{ syntax: "[git-args...]", description: "git's arguments, after -- (so that APEX does not read them as its own)" }],
    // git gets the user's terminal; beforeGit fires where the store's writer is, through `git notify`.
    runsIn: "cli",
    async action(input, context) {
      const args = (input.args[0] as string[] | undefined) ?? [];
      if (args.length === 0) {
        throw new ApexError("APEX_E_USAGE", "Give the git command to run after --, e.g. `apex git -- commit -m \"msg\"`.", {
          hint: "See `apex git --help` for the git subcommands of APEX (install-hooks, uninstall-hooks, …).",
        });
      }
      // In a branch's git worktree of the project, git runs there (and beforeGit fires in its session).
      const repositoryDir = repositoryIn(context.projectDir ?? process.cwd(), options, projectWorktreeOf(context, process.cwd()));
      const { assertRepositoryFor, isReadOnlyGitCommand, passthroughDirectory, runGitInteractive } = await import("./passthrough.js");
      await assertRepositoryFor(repositoryDir, args);
      const cwd = await passthroughDirectory(repositoryDir, process.cwd());
      if (!isReadOnlyGitCommand(args)) {
        // Like a hook, a failing beforeGit costs a warning, not the git operation.
        const problem = await context.invoke("git notify", { args: [args], options: {} }).then(
          (code) => (code === 0 ? undefined : `exit code ${code}`),
          (error: unknown) => (error instanceof Error ? error.message : String(error)),
        );
        if (problem) process.stderr.write(`apex: beforeGit failed (${problem}); git runs without a checkpoint.\n`);
      }
      return runGitInteractive(cwd, args);
    },
  });

  register({
    name: "git install-hooks",
    description: "install git hooks so that commits, merges, rebases and checkouts made outside APEX fire beforeGit; existing hooks keep running",
    examples: ["apex git install-hooks", "apex git install-hooks --json"],
    options: [{ flags: "--json", description: "print {repository, hooks_dir, hooks: [{hook, action, …}], warnings}" }],
    async action(input, context) {
      const { installHooks } = await import("./hooks.js");
      const report = await installHooks(repository(context), hookTarget(context, options));
      if (input.options.json) return context.printJson(report);
      printHookReport(context, report, {
        installed: "installed",
        updated: "updated",
        wrapped: "installed; the hook that was there runs first",
      });
      context.print("Commits, merges, rebases and checkouts in this repository now fire beforeGit. Undo: apex git uninstall-hooks");
    },
  });

  register({
    name: "git uninstall-hooks",
    description: "remove APEX's git hooks and put back the hooks they kept, exactly as they were",
    examples: ["apex git uninstall-hooks", "apex git uninstall-hooks --json"],
    options: [{ flags: "--json", description: "print {repository, hooks_dir, hooks: [{hook, action, …}], warnings}" }],
    async action(input, context) {
      const { uninstallHooks } = await import("./hooks.js");
      const report = await uninstallHooks(repository(context));
      if (input.options.json) return context.printJson(report);
      printHookReport(context, report, {
        removed: "removed",
        restored: "removed; the hook that was there before is back",
        absent: "not installed",
        kept: "not APEX's hook: left as it is",
      });
    },
  });

  register({
    name: "git hook-fired",
    description: "fire beforeGit for a git hook (what the installed hooks run); does nothing outside a session",
    examples: ["apex git hook-fired pre-commit", "apex git hook-fired pre-rebase -- main feature", "apex git hook-fired reference-transaction --json -- prepared refs/heads/x"],
    arguments: [
      { syntax: "<hook>", description: "the git hook: pre-commit, pre-merge-commit, pre-rebase, reference-transaction" },
      { syntax: "[args...]", description: "the hook's arguments (for reference-transaction: the state, then the refs it moves)" },
    ],
    options: [{ flags: "--json", description: "print {session_id, fired, args, source}" }],
    async action(input, context) {
      const hook = input.args[0] as string;
      if (!/^[a-z][a-z-]*$/.test(hook)) throw new ApexError("APEX_E_USAGE", `'${hook}' is not a git hook name.`, { hint: "See `git help hooks`." });
      const { fireBeforeGit } = await import("./fire.js");
      const result = await fireBeforeGit(context, [hook, ...((input.args[1] as string[] | undefined) ?? [])], "git-hook");
      if (input.options.json) context.printJson(result);
    },
  });

  register({
    name: "git notify",
    description: "fire beforeGit for a git operation you run yourself (what apex git -- does first); does nothing outside a session",
    examples: ["apex git notify -- push --force-with-lease", "apex git notify --json -- checkout main"],
    arguments: [{ syntax: "<git-args...>", description: "the git arguments, after --" }],
    options: [{ flags: "--json", description: "print {session_id, fired, args, source}" }],
    async action(input, context) {
      const { fireBeforeGit } = await import("./fire.js");
      const result = await fireBeforeGit(context, (input.args[0] as string[] | undefined) ?? [], "cli");
      if (input.options.json) context.printJson(result);
    },
  });

  register({
    name: "session sync-git",
    description: "record the repository's git state in the session and show what changed since its latest checkpoint (commits, branch, uncommitted files)",
    examples: ["apex session sync-git", "apex session sync-git 3f2a --json"],
    arguments: [{ syntax: "[id]", description: "the session (default: the one this command is bound to, as for every command); a unique prefix or a branch's name will do", session: true }],
    options: [{ flags: "--json", description: "print {session_id, repository, git: {branch, commit, dirty, synced_at}, checkpoint, changes, dirty_files: [{status, path}]}" }],
    async action(input, context) {
      if (!(await context.storeExists())) {
        throw new ApexError("APEX_E_NO_SESSION", "This project has no APEX store yet, so no session to sync.", { hint: 'Start a session: apex start --task "…"' });
      }
      const store = await context.store();
      const { formatSyncReport, resolveSessionId, syncGit } = await import("./sync.js");
      const sessionId = resolveSessionId(store, input.args[0] as string | undefined);
      // A session in a branch's git worktree: that worktree's git state.
      const report = await syncGit(store, sessionId, repositoryIn(context.projectDir ?? process.cwd(), options, sessionWorktree(store, sessionId)));
      // Run on the store while the session is not ended (interrupted: no supervisor runs it), the sync goes in its audit trail here when the history
      // plugin keeps one: a supervisor records the syncs made while it runs, and one made before it started it takes as old news, so it was in no trail.
      const history = context.engine.plugin("history");
      if (!context.engine.store && history?.enabled && history.options.enabled !== false && store.get(`/sessions/${sessionId}`) !== undefined) {
        const { appendEvent } = await import("../../core/session/service.js");
        await store.batch((batch) => void appendEvent(batch, sessionId, "git.synced", "plugin:git", { ...report.git }), "plugin:git");
      }
      if (input.options.json) return context.printJson(report);
      const name = (findSession(store, sessionId) as { name?: unknown } | undefined)?.name;
      for (const line of formatSyncReport(report, typeof name === "string" && name ? name : null)) context.print(line);
    },
  });
}

/** The linked git worktree of the project `dir` is in (a branch session's), or null. */
function projectWorktreeOf(context: Pick<CommandContext, "projectDir">, dir: string): string | null {
  const worktree = linkedWorktreeOf(dir);
  // The project in the main tree, or in a linked worktree of its own (it looked in the main tree only: git ran in the project's tree).
  return worktree && context.projectDir && worktreeOfProject(worktree, context.projectDir) ? worktree : null;
}

/** Where the hooks find APEX: this node and this APEX, the project's config and store. */
export function hookTarget(context: Pick<CommandContext, "config" | "projectDir">, options: GitPluginOptions): HookTarget {
  const projectDir = context.config?.projectDir ?? context.projectDir ?? process.cwd();
  return {
    node: process.execPath,
    cli: join(packageRoot(), "bin", "apex.js"),
    projectDir,
    configPath: context.config?.configPath,
    storeDir: context.config?.storeDir ?? join(projectDir, ".apex"),
    timeoutSeconds: hookTimeoutSeconds(options),
  };
}

function printHookReport<A extends string>(
  context: CommandContext,
  report: (InstallReport | UninstallReport) & { hooks: Array<{ hook: string; path: string; action: A }> },
  labels: Record<A, string>,
): void {
  context.print(`Hooks in ${report.hooks_dir} (repository ${report.repository}):`);
  const width = Math.max(...report.hooks.map((change) => change.hook.length));
  for (const change of report.hooks) context.print(`  ${change.hook.padEnd(width)}  ${labels[change.action]}`);
  for (const warning of report.warnings) context.print(`warning: ${warning}`);
}
