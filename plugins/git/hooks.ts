import { chmodSync, lstatSync, readFileSync, realpathSync, renameSync, rmSync, unlinkSync, writeFileSync, mkdirSync } from "node:fs";
import { basename, isAbsolute, join, relative, resolve } from "node:path";
import { ApexError } from "../../core/errors.js";
import { exists, runGit, noRepository, shellQuote } from "./git.js";

/**
 * Git hooks that fire beforeGit before git changes the project: a commit (pre-commit), a merge
 * commit (pre-merge-commit), a rebase (pre-rebase), and any other move of HEAD or a branch,
 * such as `git checkout -b`, `git reset`, a fast-forward merge or `git commit --no-verify`
 * (reference-transaction, state "prepared": the refs are locked but not yet moved).
 *
 * Installing next to a hook that is already there renames it to `<hook>.apex-orig`; the APEX
 * hook runs it first, with the same arguments, stdin and `$0`, and stops with its exit code when
 * it fails. Uninstalling renames it back, so the file is exactly what it was (content, mode,
 * symlink). An APEX hook is recognised by its second line, {@link HOOK_MARKER}.
 *
 * One git operation fires beforeGit once: the hook that fires marks the git process that runs it
 * (pid and start time, under `<git-common-dir>/apex-hooks/`), and later hooks of the same process
 * (the ref update after a pre-commit, the many updates of a rebase) see the mark and stay quiet.
 */
export const GIT_HOOKS = ["pre-commit", "pre-merge-commit", "pre-rebase", "reference-transaction"] as const;
export type GitHookName = (typeof GIT_HOOKS)[number];

export const HOOK_MARKER = "# apex-git-hook 1";
export const ORIGINAL_SUFFIX = ".apex-orig";
/** Below the repository's common git directory: one file per git process that fired beforeGit. */
export const OPERATION_MARKS_DIR = "apex-hooks";

/** Where a hook finds APEX: absolute paths captured when it is installed (agents may not have `apex` on PATH). */
export interface HookTarget {
  /** The node executable. */
  node: string;
  /** APEX's bin/apex.js. */
  cli: string;
  /** The project directory: the hook runs APEX there. */
  projectDir: string;
  /** The project's apex.config.yaml, when it has one. */
  configPath: string | undefined;
  /** The project's store directory (APEX_HOME for the hook's APEX). */
  storeDir: string;
  /** Seconds the hook waits for APEX before letting git go on. */
  timeoutSeconds: number;
}

export interface HookLocation {
  /** The repository's top-level directory (or its git directory when bare). */
  repository: string;
  /** The directory git runs hooks from: core.hooksPath when set, else <git-common-dir>/hooks. */
  hooksDir: string;
  /** The git directory shared by all work trees of the repository (real path). */
  commonDir: string;
  /** Where core.hooksPath comes from ("local", "global", "system", …), when it is set. */
  hooksPathScope: string | undefined;
}

export type InstallAction = "installed" | "updated" | "wrapped";
export type UninstallAction = "removed" | "restored" | "absent" | "kept";

export interface HookChange<A extends string> {
  hook: GitHookName;
  path: string;
  action: A;
  /** The user's hook, kept beside the APEX hook (installed) or put back (uninstalled). */
  original?: string;
}

export interface InstallReport {
  repository: string;
  hooks_dir: string;
  hooks: HookChange<InstallAction>[];
  warnings: string[];
}

export interface UninstallReport {
  repository: string;
  hooks_dir: string;
  hooks: HookChange<UninstallAction>[];
  warnings: string[];
}

/**
 * Finds the hooks directory of the repository at (or above) `repoDir`, honouring core.hooksPath,
 * with one `git rev-parse` (it stops at --show-toplevel in a bare repository, having printed the
 * rest). `scope: false` leaves out where core.hooksPath is set (another git process), which only
 * the install warnings need: `apex start` refreshing the hooks runs one git process.
 */
export async function locateHooks(repoDir: string, options: { scope?: boolean } = {}): Promise<HookLocation> {
  const probe = await runGit(repoDir, ["rev-parse", "--path-format=absolute", "--git-common-dir", "--git-path", "hooks", "--is-bare-repository", "--show-toplevel"]);
  const [commonDir, hooksDir, bare, topLevel] = probe.stdout.trim().split("\n");
  if (probe.exitCode !== 0 && !(bare === "true" && /must be run in a work tree/.test(probe.stderr))) {
    if (/not a git repository/i.test(probe.stderr)) throw noRepository(repoDir);
    throw new ApexError("APEX_E_GIT_FAILED", `Cannot read the repository at ${repoDir}: ${probe.stderr.trim()}`);
  }
  const repository = realpathSync(bare === "true" ? commonDir! : topLevel!);
  let hooksPathScope: string | undefined;
  if (options.scope !== false) {
    const scope = await runGit(repoDir, ["config", "--show-scope", "--get", "core.hooksPath"]);
    hooksPathScope = scope.exitCode === 0 ? scope.stdout.split("\t")[0]?.trim() || undefined : undefined;
  }
  return { repository, hooksDir: resolve(hooksDir!), commonDir: realpathSync(commonDir!), hooksPathScope };
}

/**
 * Installs the APEX hooks (or updates them: installing twice is harmless). Refuses with
 * APEX_E_HOOK_CONFLICT, before changing anything, when a hook was replaced after an earlier
 * install while the user's hook saved then is still there.
 */
export async function installHooks(repoDir: string, target: HookTarget): Promise<InstallReport> {
  const location = await locateHooks(repoDir);
  mkdirSync(location.hooksDir, { recursive: true });
  const warnings = await hooksPathWarnings(location);
  const plans = GIT_HOOKS.map((hook) => planInstall(location.hooksDir, hook));
  await refuseTrackedHooks(location, plans);
  const changes: HookChange<InstallAction>[] = [];
  for (const plan of plans) {
    const script = hookScript(plan.hook, target, location.commonDir);
    const temporary = `${plan.path}.apex-tmp-${process.pid}`;
    writeFileSync(temporary, script, { mode: 0o755 });
    chmodSync(temporary, 0o755); // the umask may have taken execute bits away
    try {
      if (plan.action === "wrapped") renameSync(plan.path, plan.path + ORIGINAL_SUFFIX);
      try {
        renameSync(temporary, plan.path);
      } catch (error) {
        if (plan.action === "wrapped") renameSync(plan.path + ORIGINAL_SUFFIX, plan.path);
        throw error;
      }
    } catch (error) {
      rmSync(temporary, { force: true });
      throw new ApexError("APEX_E_GIT_FAILED", `Cannot install the ${plan.hook} hook at ${plan.path}: ${(error as Error).message}`, { cause: error });
    }
    const change: HookChange<InstallAction> = { hook: plan.hook, path: plan.path, action: plan.action };
    if (exists(plan.path + ORIGINAL_SUFFIX)) change.original = plan.path + ORIGINAL_SUFFIX;
    changes.push(change);
  }
  return { repository: location.repository, hooks_dir: location.hooksDir, hooks: changes, warnings };
}

export interface RefreshReport {
  repository: string;
  hooks_dir: string;
  /** APEX hooks rewritten because their script was not the one this APEX writes. */
  refreshed: Array<{ hook: GitHookName; path: string }>;
}

/**
 * Rewrites the APEX hooks whose script differs from the one this APEX would install (written by
 * an older APEX, e.g. before hooks passed git's top level as APEX_WORKTREE, or for another APEX
 * program or hook timeout). Only files that are APEX hooks are read and rewritten: a user's own
 * hook, the hooks APEX kept beside its own (`<hook>.apex-orig`) and hooks APEX never installed
 * are left as they are, and nothing is installed where no APEX hook is. Undefined outside a
 * repository.
 */
export async function refreshStaleHooks(repoDir: string, target: HookTarget): Promise<RefreshReport | undefined> {
  let location: HookLocation;
  try {
    location = await locateHooks(repoDir, { scope: false });
  } catch (error) {
    if (error instanceof ApexError && error.code === "APEX_E_NOT_A_REPOSITORY") return undefined;
    throw error;
  }
  const refreshed: RefreshReport["refreshed"] = [];
  for (const hook of GIT_HOOKS) {
    const path = join(location.hooksDir, hook);
    if (!isApexHook(path)) continue;
    const script = hookScript(hook, target, location.commonDir);
    if (readFileSync(path, "utf8") === script) continue;
    const temporary = `${path}.apex-tmp-${process.pid}`;
    try {
      writeFileSync(temporary, script, { mode: 0o755 });
      chmodSync(temporary, 0o755);
      renameSync(temporary, path);
    } catch (error) {
      rmSync(temporary, { force: true });
      throw new ApexError("APEX_E_GIT_FAILED", `Cannot refresh the ${hook} hook at ${path}: ${(error as Error).message}`, { cause: error });
    }
    refreshed.push({ hook, path });
  }
  return { repository: location.repository, hooks_dir: location.hooksDir, refreshed };
}

/** Removes the APEX hooks and puts back the hooks they kept, byte for byte. */
export async function uninstallHooks(repoDir: string): Promise<UninstallReport> {
  const location = await locateHooks(repoDir, { scope: false });
  const changes: HookChange<UninstallAction>[] = [];
  const warnings: string[] = [];
  for (const hook of GIT_HOOKS) {
    const path = join(location.hooksDir, hook);
    const original = path + ORIGINAL_SUFFIX;
    const ours = isApexHook(path);
    if (ours) {
      if (exists(original)) {
        renameSync(original, path);
        changes.push({ hook, path, action: "restored", original });
      } else {
        unlinkSync(path);
        changes.push({ hook, path, action: "removed" });
      }
    } else if (exists(original)) {
      if (exists(path)) {
        warnings.push(`${path} is not APEX's hook (it was replaced after APEX installed its own), so ${original} was left as it is: decide which one to keep.`);
        changes.push({ hook, path, action: "kept", original });
      } else {
        renameSync(original, path);
        changes.push({ hook, path, action: "restored", original });
      }
    } else {
      changes.push({ hook, path, action: exists(path) ? "kept" : "absent" });
    }
  }
  rmSync(join(location.commonDir, OPERATION_MARKS_DIR), { recursive: true, force: true });
  return { repository: location.repository, hooks_dir: location.hooksDir, hooks: changes, warnings };
}

/** True when the file at `path` is a hook APEX installed. */
export function isApexHook(path: string): boolean {
  try {
    if (!lstatSync(path).isFile()) return false;
    return readFileSync(path, "utf8").split("\n", 3)[1] === HOOK_MARKER;
  } catch {
    return false;
  }
}

interface InstallPlan {
  hook: GitHookName;
  path: string;
  action: InstallAction;
}

function planInstall(hooksDir: string, hook: GitHookName): InstallPlan {
  const path = join(hooksDir, hook);
  if (isApexHook(path)) return { hook, path, action: "updated" };
  if (!exists(path)) return { hook, path, action: "installed" };
  if (exists(path + ORIGINAL_SUFFIX)) {
    throw new ApexError(
      "APEX_E_HOOK_CONFLICT",
      `${path} is not APEX's hook, and ${path}${ORIGINAL_SUFFIX}, the hook an earlier install kept, is still there: installing would lose one of them.`,
      {
        hint: `Keep the one you want as ${hook} (delete or move the other), then run \`apex git install-hooks\` again.`,
        details: { hook, path },
      },
    );
  }
  if (lstatSync(path).isDirectory()) {
    throw new ApexError("APEX_E_HOOK_CONFLICT", `${path} is a directory, not a hook.`, { hint: "Move it away and install again.", details: { hook, path } });
  }
  return { hook, path, action: "wrapped" };
}

/**
 * Refuses (APEX_E_HOOK_CONFLICT, nothing changed) to wrap a hook git tracks (core.hooksPath
 * naming a directory of the repository, `.githooks/`): APEX's hook would take its place in the
 * working tree, where every checkpoint would count it as a change and `git commit -a` would
 * commit it, with this machine's paths, for everyone who shares the repository.
 */
async function refuseTrackedHooks(location: HookLocation, plans: InstallPlan[]): Promise<void> {
  const wrapped = plans.filter((plan) => plan.action === "wrapped");
  if (wrapped.length === 0) return;
  // Asked in the hooks directory: paths relative to it, and no answer where no work tree is (.git/hooks, a bare repository).
  const listed = await runGit(location.hooksDir, ["ls-files", "-z", "--", ...wrapped.map((plan) => basename(plan.path))]);
  if (listed.exitCode !== 0) return;
  const tracked = new Set(listed.stdout.split("\0").filter(Boolean));
  const plan = wrapped.find((candidate) => tracked.has(basename(candidate.path)));
  if (!plan) return;
  throw new ApexError(
    "APEX_E_HOOK_CONFLICT",
    `${plan.path} is tracked by git (core.hooksPath is ${location.hooksDir}): installing would put APEX's hook in its place in the working tree, ` +
      "a change every checkpoint would record and `git commit -a` would commit for everyone sharing the repository. Nothing was installed.",
    {
      hint: `Fire APEX from that hook yourself (a line \`apex git hook-fired ${plan.hook} -- "$@"\`), or run git through \`apex git -- …\`, which fires beforeGit without hooks.`,
      details: { hook: plan.hook, path: plan.path },
    },
  );
}

async function hooksPathWarnings(location: HookLocation): Promise<string[]> {
  const warnings: string[] = [];
  if (location.hooksPathScope !== undefined && location.hooksPathScope !== "local" && location.hooksPathScope !== "worktree") {
    warnings.push(
      `core.hooksPath is set in your ${location.hooksPathScope} git config: the hooks go to ${location.hooksDir}, which other repositories use too. ` +
        `They fire APEX only for this repository (${location.repository}).`,
    );
  }
  const inside = relative(location.repository, location.hooksDir);
  // Unless git ignores them there (husky's .husky/_ ignores everything in it).
  const shown = async () => (await runGit(location.hooksDir, ["check-ignore", "-q", "--", GIT_HOOKS[0]])).exitCode !== 0;
  if (inside !== "" && !inside.startsWith("..") && !isAbsolute(inside) && !inside.startsWith(".git") && (await shown())) {
    warnings.push(`The hooks directory ${location.hooksDir} is inside the working tree: git status shows the hooks APEX adds there.`);
  }
  return warnings;
}


/**
 * The hook script. POSIX sh; every APEX variable and function starts with `apex_` so nothing
 * clashes with the environment. Git never waits for APEX longer than the timeout, and an APEX
 * that is missing, broken or slow only costs a warning: the hook's exit code is the user's
 * hook's (0 without one).
 */
export function hookScript(hook: GitHookName, target: HookTarget, commonDir: string): string {
  const header = `#!/bin/sh
${HOOK_MARKER}
# Git runs this hook before it ${HOOK_PURPOSE[hook]}.
# It fires APEX's beforeGit, so that the checkpoint plugin saves a checkpoint of the running
# session first. Installed by \`apex git install-hooks\`; \`apex git uninstall-hooks\` removes it
# and puts back the hook that was here before, kept as ${hook}${ORIGINAL_SUFFIX} (which runs first).
apex_hook=${shellQuote(hook)}
apex_node=${shellQuote(target.node)}
apex_cli=${shellQuote(target.cli)}
apex_project=${shellQuote(target.projectDir)}
apex_config=${shellQuote(target.configPath ?? "")}
apex_home=${shellQuote(target.storeDir)}
apex_git_dir=${shellQuote(commonDir)}
apex_timeout=${Math.max(1, Math.round(target.timeoutSeconds))}
apex_orig="$0${ORIGINAL_SUFFIX}"
`;
  return `${header}${COMMON_FUNCTIONS}${hook === "reference-transaction" ? REFERENCE_TRANSACTION_BODY : SIMPLE_BODY}`;
}

const HOOK_PURPOSE: Record<GitHookName, string> = {
  "pre-commit": "records a commit",
  "pre-merge-commit": "records a merge commit",
  "pre-rebase": "rebases",
  "reference-transaction": "moves HEAD or a branch (checkout -b, reset, a fast-forward merge)",
};

const COMMON_FUNCTIONS = `
apex_warn() {
  printf 'apex: %s\\n' "$*" >&2
}

# Runs the hook that was here before APEX's, with this hook's arguments, stdin and $0:
# shell scripts are run by their own shell with $0 set to this hook's path, since hooks
# often find their files from $0; anything else is executed directly.
apex_run_original() {
  apex_line=
  IFS= read -r apex_line < "$apex_orig" || :
  case $apex_line in
    '#!'*) apex_line=\${apex_line#??} ;;
    *) apex_line=/bin/sh ;;
  esac
  apex_line=\${apex_line#"\${apex_line%%[![:space:]]*}"}
  apex_interp=\${apex_line%%[[:space:]]*}
  apex_interp_arg=\${apex_line#"$apex_interp"}
  apex_interp_arg=\${apex_interp_arg#"\${apex_interp_arg%%[![:space:]]*}"}
  apex_interp_arg=\${apex_interp_arg%"\${apex_interp_arg##*[![:space:]]}"}
  apex_shell=
  case \${apex_interp##*/} in
    sh|bash|dash|zsh|ksh|mksh|ash) apex_shell=1 ;;
    env) case $apex_interp_arg in sh|bash|dash|zsh|ksh|mksh|ash) apex_shell=1 ;; esac ;;
  esac
  if [ -n "$apex_shell" ]; then
    # The interpreter's argument is split into words, as a shell would do with its options.
    APEX_HOOK_ORIGINAL=$apex_orig "$apex_interp" $apex_interp_arg -c '. "$APEX_HOOK_ORIGINAL"' "$0" "$@"
  else
    "$apex_orig" "$@"
  fi
}

# The git process running this hook: its pid and start time (field 22 of /proc/<pid>/stat).
apex_operation() {
  apex_op=$PPID
  if [ -r "/proc/$PPID/stat" ]; then
    apex_stat=
    IFS= read -r apex_stat < "/proc/$PPID/stat" || :
    apex_stat=\${apex_stat##*")"}
    set -- $apex_stat
    [ $# -ge 20 ] && apex_op="$PPID-\${20}"
  fi
}

apex_mark_operation() {
  mkdir -p "$apex_git_dir/${OPERATION_MARKS_DIR}" 2>/dev/null || return 0
  for apex_mark in "$apex_git_dir/${OPERATION_MARKS_DIR}"/op-*; do
    [ -e "$apex_mark" ] || continue
    apex_mark_pid=\${apex_mark##*/op-}
    kill -0 "\${apex_mark_pid%%-*}" 2>/dev/null || rm -f "$apex_mark"
  done
  : > "$apex_git_dir/${OPERATION_MARKS_DIR}/op-$apex_op" 2>/dev/null || :
}

# Fires beforeGit through \`apex git hook-fired\`: at most once per git process, for this
# repository only (a core.hooksPath may be shared), never for longer than $apex_timeout seconds.
apex_fire() {
  [ -n "\${APEX_GIT_BEFORE_FIRED:-}" ] && return 0
  apex_operation
  [ -e "$apex_git_dir/${OPERATION_MARKS_DIR}/op-$apex_op" ] && return 0
  apex_here=$(git rev-parse --git-common-dir 2>/dev/null) || return 0
  apex_here=$(cd "$apex_here" 2>/dev/null && pwd -P) || return 0
  [ "$apex_here" = "$apex_git_dir" ] || return 0
  apex_mark_operation
  if [ ! -x "$apex_node" ] || [ ! -f "$apex_cli" ] || [ ! -d "$apex_project" ]; then
    apex_warn "cannot run APEX ($apex_node $apex_cli, project $apex_project): $apex_hook goes on without a checkpoint. Run \\\`apex git install-hooks\\\` again, or \\\`apex git uninstall-hooks\\\`."
    return 0
  fi
  if [ -n "$apex_config" ]; then
    set -- --config "$apex_config" git hook-fired "$apex_hook" -- "$@"
  else
    set -- git hook-fired "$apex_hook" -- "$@"
  fi
  # APEX runs in the project; the working tree git runs in (a branch's worktree, say) binds the session.
  apex_tree=$(git rev-parse --show-toplevel 2>/dev/null) || apex_tree=
  (
    cd "$apex_project" || exit 1
    APEX_HOME=$apex_home
    export APEX_HOME
    if [ -n "$apex_tree" ]; then
      APEX_WORKTREE=$apex_tree
      export APEX_WORKTREE
    fi
    exec "$apex_node" "$apex_cli" "$@"
  ) </dev/null 1>&2 &
  apex_pid=$!
  (
    trap 'kill "$apex_sleep" 2>/dev/null; exit 0' TERM
    sleep "$apex_timeout" &
    apex_sleep=$!
    wait "$apex_sleep"
    kill -TERM "$apex_pid"
  ) </dev/null >/dev/null 2>&1 &
  apex_watchdog=$!
  wait "$apex_pid" 2>/dev/null
  apex_status=$?
  kill -TERM "$apex_watchdog" 2>/dev/null
  wait "$apex_watchdog" 2>/dev/null
  if [ "$apex_status" -eq 143 ]; then
    apex_warn "APEX did not answer within $apex_timeout s: $apex_hook goes on without a checkpoint."
  elif [ "$apex_status" -ne 0 ]; then
    apex_warn "APEX failed (exit code $apex_status, see above): $apex_hook goes on without a checkpoint."
  fi
  return 0
}
`;

const SIMPLE_BODY = `
if [ -x "$apex_orig" ]; then
  apex_run_original "$@" || exit $?
fi
apex_fire "$@"
exit 0
`;

// Only the "prepared" state fires: the refs are locked, nothing has moved yet. Only HEAD and
// branches count, and neither deletions, nor no-op updates, nor refs rewritten with the value
// they already have (git pack-refs): none of these moves the working tree or HEAD.
const REFERENCE_TRANSACTION_BODY = `
if [ "$1" != prepared ]; then
  if [ -x "$apex_orig" ]; then
    apex_run_original "$@"
    exit $?
  fi
  exit 0
fi
apex_input=$(cat)
if [ -x "$apex_orig" ]; then
  if [ -n "$apex_input" ]; then printf '%s\\n' "$apex_input"; fi | apex_run_original "$@" || exit $?
fi
apex_refs=
while read -r apex_old apex_new apex_ref; do
  case $apex_ref in
    HEAD|refs/heads/*) ;;
    *) continue ;;
  esac
  [ "$apex_old" = "$apex_new" ] && continue
  case $apex_new in
    *[!0]*) ;;
    *) continue ;;
  esac
  case $apex_old in
    *[!0]*) ;;
    *) [ "$(git rev-parse -q --verify "$apex_ref" 2>/dev/null)" = "$apex_new" ] && continue ;;
  esac
  apex_refs="$apex_refs $apex_ref"
done <<apex_end_of_input
$apex_input
apex_end_of_input
[ -n "$apex_refs" ] || exit 0
apex_fire "$1" $apex_refs
exit 0
`;
