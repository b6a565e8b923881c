import { isDirectory } from "../../core/config/locate.js";
import { builtinPluginSchema } from "../../core/config/schemas.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";
import { hookTarget, registerGitCommands } from "./commands.js";
import { PLUGIN_NAME, repositoryDir, repositoryIn, sessionWorktree, type GitPluginOptions } from "./repository.js";
import { GitRunner } from "./runner.js";
import { readGitState } from "./state.js";

/**
 * Records the project repository's git state in every checkpoint (`git_state`: branch, HEAD
 * commit, dirty; of a session in a branch's git worktree, that worktree's) and fires beforeGit before git changes the project: through `apex git -- …`,
 * and, with `hooks: true` (or `apex git install-hooks`), through git hooks, so that commits,
 * merges, rebases and checkouts made by anyone get their checkpoint first.
 */
export default definePlugin<GitPluginOptions>({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  // Read when asked for (config checks read it themselves): a supervisor applying the plugin reads no schema, loads no validator.
  get schema() {
    return builtinPluginSchema(PLUGIN_NAME);
  },
  apply(apex, options) {
    const projectDir = apex.config?.projectDir ?? process.cwd();
    const repository = repositoryDir(projectDir, options);

    // Every checkpoint runs `git status` afresh; from a process that checkpoints again and again
    // (a supervisor), through a small shell that spawns git more cheaply than this process can.
    const runner = new GitRunner();
    let noRepositorySaid = false;
    apex.hooks.beforeCheckpoint.tapPromise(PLUGIN_NAME, async (draft) => {
      const ignore = apex.config ? [apex.config.storeDir] : [];
      const tree = repositoryIn(projectDir, options, sessionWorktree(apex.store, draft.sessionId));
      let failed = false;
      draft.data.git_state = await readGitState(tree, (message) => ((failed = true), apex.warn(message)), { ignore, runner });
      // A `repository` named in the config that is none (a typo, a directory moved) is said once: every checkpoint went without its git state, and nothing said so.
      if (draft.data.git_state === null && !failed && !noRepositorySaid && (options.repository ?? ".") !== ".") {
        noRepositorySaid = true;
        apex.warn(`no git state recorded: the repository option (${JSON.stringify(options.repository)}) names ${tree}, ${isDirectory(tree) ? "which is not in a git repository" : "which does not exist"}; checkpoints record no git state until it names one (apex.config.yaml).`);
      }
      return draft;
    });

    if (options.hooks) {
      // Installed (or refreshed) when a session starts; a project without a repository only gets a warning.
      apex.hooks.onStart.tapPromise(PLUGIN_NAME, async () => {
        try {
          const { installHooks } = await import("./hooks.js");
          const report = await installHooks(repository, hookTarget({ config: apex.config, projectDir }, options));
          for (const warning of report.warnings) apex.warn(warning);
        } catch (error) {
          apex.warn(`git hooks not installed: ${(error as Error).message}`);
        }
      });
    }

    registerGitCommands(apex, options);
  },
});
