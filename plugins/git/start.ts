import type { Config } from "../../core/config/types.js";
import { ApexError } from "../../core/errors.js";
import type { Store } from "../../core/store/store.js";
import { planCheckout, restoreBranchName, type CheckoutPlan } from "./checkout.js";
import { hookTarget } from "./commands.js";
import { refreshStaleHooks, type RefreshReport } from "./hooks.js";
import { gitPluginOptions, repositoryDir, repositoryIn, sessionWorktree } from "./repository.js";

/**
 * What `apex start` asks of the git plugin before it launches a supervisor: refreshing APEX's
 * git hooks that an older APEX wrote, and `--continue … --git-checkout`. Both read the project's
 * config: with the git plugin disabled, there are no hooks to keep up and no git state to check out.
 */

/** Refreshes APEX's out-of-date git hooks of the project repository; undefined when the plugin is off or there is no repository. */
export async function refreshHooksOnStart(config: Config): Promise<RefreshReport | undefined> {
  const options = gitPluginOptions(config);
  if (!options) return undefined;
  return refreshStaleHooks(repositoryDir(config.projectDir, options), hookTarget({ config, projectDir: config.projectDir }, options));
}

/**
 * Plans the checkout of a checkpoint's commit for the session that continues from it: in the
 * session's own git worktree when it has one (a branch made with `--worktree`), else in the
 * project's repository. A new branch `apex/<session>/<checkpoint>` (restoreBranchName).
 */
export async function planContinueCheckout(
  config: Config,
  store: Pick<Store, "get">,
  checkpoint: { sessionId: string; name: string; gitState: unknown },
): Promise<CheckoutPlan> {
  const options = gitPluginOptions(config);
  if (!options) {
    throw new ApexError("APEX_E_USAGE", "--git-checkout needs the git plugin, which is not enabled in this project's config: its checkpoints record no git state.", {
      hint: "Enable it (plugins: git: {}) or continue without --git-checkout.",
    });
  }
  const repository = repositoryIn(config.projectDir, options, sessionWorktree(store, checkpoint.sessionId));
  const branch = await restoreBranchName(repository, checkpoint.sessionId, checkpoint.name);
  return planCheckout(repository, checkpoint.gitState, branch, [config.storeDir], config.configPath ? [config.configPath] : []);
}

export { applyCheckout, type CheckoutPlan } from "./checkout.js";
