import { boundSessionId } from "../../core/session/sessions.js";
import { AsyncLocalStorage } from "node:async_hooks";
import { createRequire } from "node:module";
import type * as Tapable from "tapable";
import { parseDuration } from "../../core/config/duration.js";
import { builtinPluginSchema } from "../../core/config/schemas.js";
import type { CheckpointInfo, ErrorContext, GitContext, MilestoneContext, StopContext, TaskContext } from "../../core/engine.js";
import { checkpointHooksFor, provideCheckpointService } from "../../core/session/checkpoints.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";
import { Catalog } from "./catalog.js";
import { gitCommandOf } from "../git/repository.js";
import { SessionCheckpoints } from "./plugin-service.js";
import { checkDraftData } from "./checkpoints.js";

const PLUGIN_NAME = "checkpoint" as const;
// From its own file, as the engine takes it (core/engine.ts): tapable's index loads all its hook classes.
const AsyncSeriesHook = createRequire(import.meta.url)("tapable/lib/AsyncSeriesHook.js") as typeof Tapable.AsyncSeriesHook;

export interface CheckpointPluginOptions {
  /** Hooks that save a checkpoint when they fire. */
  triggers: string[];
  /** Globs of the project memory a checkpoint covers. */
  paths: string[];
  /** Time between interval checkpoints (seconds or a duration); default session.auto_checkpoint_interval. */
  interval?: number | string;
}

/**
 * The lifecycle hooks the plugin can take checkpoints on. The `onStop` trigger saves on
 * beforeStop, while the session is still current (onStop itself fires once it has ended).
 */
const LIFECYCLE_HOOKS = ["onStart", "beforeTask", "afterMilestone", "beforeGit", "onError", "onPause", "onResume", "beforeStop"] as const;
type LifecycleHook = (typeof LIFECYCLE_HOOKS)[number];

/** The name a trigger has in the options and in the manifests of the checkpoints it takes. */
function triggerName(hook: LifecycleHook): string {
  return hook === "beforeStop" ? "onStop" : hook;
}

/**
 * What taps of the `checkpointTrigger` hook receive, each time a session lifecycle hook fires
 * (onStart, beforeTask, afterMilestone, beforeGit, onError, onPause, onResume, beforeStop), after the
 * checkpoint the plugin's own `triggers` option may have taken for it.
 *
 * This is how third-party plugins add checkpoint triggers: tap `checkpointTrigger` (list
 * "checkpoint" in your plugin's `requires`), decide from the event whether your trigger
 * fires, and call `request` with your trigger's name. The checkpoint is written before the
 * hook's own work goes on (before the task is assigned, before git runs, …).
 *
 * ```js
 * apply(apex) {
 *   apex.triggers.checkpointTrigger.tapPromise("my-plugin", async (event) => {
 *     if (event.hook === "afterMilestone") await event.request({ trigger: "myTrigger", description: "…" });
 *   });
 * }
 * ```
 */
export interface CheckpointTriggerEvent {
  /** The lifecycle hook that fired. */
  hook: LifecycleHook;
  sessionId: string;
  /** What that hook received (TaskContext for beforeTask, ErrorContext for onError, …). */
  context: unknown;
  /**
   * Writes a checkpoint of the session with `trigger` (letters, digits, `_ . : -`) as its
   * trigger. With `skipUnchanged`, nothing is written when memory, tasks and agent states did
   * not change since the session's latest checkpoint. Resolves to the checkpoint written.
   */
  request(options: { trigger: string; description?: string; skipUnchanged?: boolean }): Promise<CheckpointInfo | undefined>;
}

/**
 * Automatic checkpoints on lifecycle triggers (beforeTask, afterMilestone, beforeGit, onError,
 * onPause by default) and on the supervisor's interval timer, the restore step of
 * `apex start --continue` and `--force-recovery`, and the `checkpointTrigger` hook through
 * which other plugins add triggers of their own. Inside a session (where `apex.store` is
 * defined) it provides the session's checkpoint service; elsewhere it only defines the hook.
 */
export default definePlugin<CheckpointPluginOptions>({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  // Read when asked for (config checks read it themselves): a supervisor applying the plugin reads no schema, loads no validator.
  get schema() {
    return builtinPluginSchema(PLUGIN_NAME);
  },
  apply(apex, options) {
    const checkpointTrigger = apex.defineHook("checkpointTrigger", new AsyncSeriesHook<[CheckpointTriggerEvent]>(["event"]));
    const store = apex.store;
    if (!store) return;
    const triggers = new Set<string>(options.triggers ?? []);
    const checkpoints = new SessionCheckpoints(store, {
      scope: { include: options.paths ?? ["/"] },
      interval: options.interval === undefined ? undefined : parseDuration(options.interval),
      warn: (message) => apex.warn(message),
      // Plugins tap hooks but do not fire them: the engine the session bound to the store runs
      // beforeCheckpoint (git state, …) and afterCheckpoint (retention, …) for each checkpoint.
      // Each tap's draft is checked as it returns it: data JSON cannot hold is said as that plugin's failure.
      enrich: async (draft) => (await checkpointHooksFor(store)?.waterfall("beforeCheckpoint", draft, checkDraftData)) ?? draft,
      afterCheckpoint: async (info) => checkpointHooksFor(store)?.fire("afterCheckpoint", info),
    });
    provideCheckpointService(store, checkpoints.service());

    // The session this process acts on (a supervisor: its own; core/session/binding.ts).
    const currentSession = (): string | undefined => {
      try {
        return boundSessionId(store);
      } catch {
        return undefined;
      }
    };

    // Set while an onError event is handled here: an error raised meanwhile (a failing
    // checkpointTrigger tap, a failing checkpoint) is not handled again, so errors never loop.
    // Disabled once no error is being handled, as SessionCheckpoints' own (plugin-service.ts).
    const handlingError = new AsyncLocalStorage<true>();
    let handling = 0;

    for (const hook of LIFECYCLE_HOOKS) {
      const handle = async (context: { sessionId?: string }): Promise<void> => {
        // Errors raised while a checkpoint is written (a beforeCheckpoint tap failing) do not take checkpoints: no loops.
        if (checkpoints.busy) return;
        const sessionId = context.sessionId ?? currentSession();
        if (!sessionId) return;
        if (triggers.has(triggerName(hook))) {
          try {
            // A crash loop took one identical checkpoint per crash: an agent's crash takes none while the latest
            // checkpoint is an onError one holding the same state (the supervisor's agent bookkeeping is no change).
            const crash = hook === "onError" && String((context as ErrorContext).origin).startsWith("agent:") && Catalog.of(store).latest(sessionId)?.trigger === "onError";
            await checkpoints.create({ sessionId, trigger: triggerName(hook), description: describe(hook, context), ...(crash ? { skipUnchanged: true } : {}) });
          } catch (error) {
            // A failed checkpoint is reported, but never vetoes the task, the milestone or the git operation.
            const message = `no ${hook} checkpoint: ${(error as Error).message}`;
            if (hook === "onPause" || hook === "onResume") throw new Error(message);
            apex.warn(message);
          }
        }
        if (checkpointTrigger.taps.length === 0) return;
        try {
          await checkpointTrigger.promise({
            hook,
            sessionId,
            context,
            request: async (request) => {
              if (!request || typeof request.trigger !== "string") throw new TypeError("request({ trigger, description }) needs a trigger name.");
              const created = await checkpoints.create({
                sessionId,
                trigger: request.trigger,
                description: typeof request.description === "string" ? request.description : request.trigger,
                skipUnchanged: request.skipUnchanged === true,
              });
              return created && { sessionId: created.sessionId, id: created.id, sequence: created.sequence, trigger: created.trigger };
            },
          });
        } catch (error) {
          // The engine already reported the failing plugin to onError; the hook's own work goes on.
          apex.warn(`checkpointTrigger: ${(error as Error).message}`);
        }
      };
      (apex.hooks[hook] as unknown as { tapPromise(name: string, fn: (context: { sessionId?: string }) => Promise<void>): void }).tapPromise(
        PLUGIN_NAME,
        hook === "onError"
          ? async (context) => {
              if (handlingError.getStore() || fromCheckpointing(context as ErrorContext, apex.pluginName)) return;
              handling++;
              try {
                await handlingError.run(true, () => handle(context));
              } finally {
                if (--handling === 0) handlingError.disable();
              }
            }
          : handle,
      );
    }
  },
});

/** Errors from this plugin, from the checkpoint hooks or from a checkpointTrigger tap never take an onError checkpoint. */
function fromCheckpointing(context: ErrorContext, pluginName: string): boolean {
  const hook = context.details?.hook;
  return context.origin === `plugin:${pluginName}` || hook === "beforeCheckpoint" || hook === "afterCheckpoint" || hook === "checkpointTrigger";
}

function describe(hook: LifecycleHook, context: unknown): string {
  switch (hook) {
    case "beforeTask": {
      const { task, agent } = context as TaskContext;
      return `before task ${task.id}: ${task.title}${agent ? ` (${agent})` : ""}`;
    }
    case "afterMilestone":
      return `after milestone: ${(context as MilestoneContext).milestone}`;
    case "beforeGit": {
      const { args, source } = context as GitContext;
      // The git command, after git's own options: `git -c a=b commit` is "before git commit" (it was "before git -c").
      return `before git ${gitCommandOf(args) ?? "operation"}${source === "git-hook" ? " (git hook)" : ""}`;
    }
    case "onError": {
      const { origin, error } = context as ErrorContext;
      return `error in ${origin}: ${error?.message ?? String(error)}`;
    }
    case "onPause":
      return "pause";
    case "onResume":
      return "resume";
    case "onStart":
      return "session start";
    case "beforeStop":
      return `session end: ${(context as StopContext).reason}`;
  }
}
