import { createRequire } from "node:module";
import type * as Tapable from "tapable";
import { ApexError, isApexError, thrownMessage, withDetail } from "./errors.js";
import { didYouMean } from "./suggest.js";
import { fileDiskFullError, isFileDiskFull } from "./store/store-errors.js";
import type { Config } from "./config/types.js";
import type { Store, JsonValue } from "./store/store.js";

/** What every hook receives about the session it fires for. */
export interface SessionContext {
  sessionId: string;
  /** The session record as stored at /sessions/<id>. */
  session: Record<string, unknown>;
}

export interface TaskContext extends SessionContext {
  task: { id: string; title: string; assignee?: string | undefined; [key: string]: unknown };
  agent?: string | undefined;
}

export interface MilestoneContext extends SessionContext {
  milestone: string;
  taskId?: string | undefined;
  agent?: string | undefined;
}

export interface GitContext extends SessionContext {
  /** The git arguments about to run, e.g. ["commit", "-m", "…"], or the git hook name. */
  args: string[];
  source: "cli" | "git-hook";
}

export interface ErrorContext {
  sessionId?: string | undefined;
  error: Error & { code?: string };
  /** Where it happened: "agent:coder", "plugin:git", "supervisor", … */
  origin: string;
  details?: Record<string, unknown>;
}

export interface StopContext extends SessionContext {
  reason: string;
}

/** The checkpoint being built; beforeCheckpoint taps add to it and return it. */
export interface CheckpointDraft {
  sessionId: string;
  trigger: string;
  description: string;
  /** Extra data plugins contribute (git_state, metrics, …). */
  data: Record<string, JsonValue>;
}

export interface CheckpointInfo {
  sessionId: string;
  id: string;
  sequence: number;
  trigger: string;
}

// The engine's two hook classes, each from its own file: tapable's index loads all twelve (as an
// import, through Node's CommonJS translator), ~5 ms of every process's start. The same classes.
const AsyncSeriesHook = createRequire(import.meta.url)("tapable/lib/AsyncSeriesHook.js") as typeof Tapable.AsyncSeriesHook;
const AsyncSeriesWaterfallHook = createRequire(import.meta.url)("tapable/lib/AsyncSeriesWaterfallHook.js") as typeof Tapable.AsyncSeriesWaterfallHook;

/**
 * The plugin contract: every hook APEX fires, declared once with explicit types.
 * Series hooks run taps one after another; beforeCheckpoint is a waterfall so plugins can add data.
 */
export function createHooks() {
  return Object.freeze({
    /** A session started (or was continued); agents are about to run. */
    onStart: new AsyncSeriesHook<[SessionContext]>(["session"]),
    /** A task is about to be assigned to an agent. */
    beforeTask: new AsyncSeriesHook<[TaskContext]>(["task"]),
    /** A milestone was recorded, or a milestone task completed. */
    afterMilestone: new AsyncSeriesHook<[MilestoneContext]>(["milestone"]),
    /** A git operation is about to run in the project. */
    beforeGit: new AsyncSeriesHook<[GitContext]>(["git"]),
    /** Something failed: an agent crashed, a plugin threw, a task failed. Never rejects: failing taps are reported. */
    onError: new AsyncSeriesHook<[ErrorContext]>(["error"]),
    /** The session's agents were stopped with SIGSTOP. */
    onPause: new AsyncSeriesHook<[SessionContext]>(["session"]),
    /** The session's agents were continued with SIGCONT. */
    onResume: new AsyncSeriesHook<[SessionContext]>(["session"]),
    /**
     * The session is about to end: its agents have stopped, its records are not final yet
     * (the session is still current). The checkpoint plugin's `onStop` trigger saves here.
     */
    beforeStop: new AsyncSeriesHook<[StopContext]>(["stop"]),
    /** The session ended (its record is in the history). */
    onStop: new AsyncSeriesHook<[StopContext]>(["stop"]),
    /** A checkpoint is being built: return the draft, with your data added. */
    beforeCheckpoint: new AsyncSeriesWaterfallHook<[CheckpointDraft]>(["draft"]),
    /** A checkpoint was written. */
    afterCheckpoint: new AsyncSeriesHook<[CheckpointInfo]>(["checkpoint"]),
  });
}

export type ApexHooks = ReturnType<typeof createHooks>;
export type HookName = keyof ApexHooks;
export const HOOK_NAMES = Object.freeze(Object.keys(createHooks()) as HookName[]);
export type HookArgs<K extends HookName> = ApexHooks[K] extends Tapable.AsyncSeriesHook<infer A> ? (A extends unknown[] ? A : [A]) : never;
/** The hooks `engine.fire` runs: every series hook (the waterfall has `engine.waterfall`). */
export type SeriesHookName = Exclude<HookName, "beforeCheckpoint">;

/** What the tap wrapper needs of a tapable hook (tapable does not export its base class). */
export interface AnyHook {
  readonly taps: ReadonlyArray<{ name: string; type: string; fn: Function }>;
  intercept(interceptor: any): void;
  promise(...args: any[]): Promise<unknown>;
}
interface FullTap {
  name: string;
  type: "sync" | "async" | "promise";
  fn: Function;
  stage?: number;
  before?: string;
}
export interface TapOptions {
  name?: string;
  /** Lower stages run first; equal stages run in config order. */
  stage?: number;
  /** Run before this plugin's tap. */
  before?: string;
}

/** A hook as a plugin sees it: it can tap (always under its own name) but not fire. */
export type ScopedHook<H> = Pick<H, Extract<keyof H, "tap" | "tapPromise" | "tapAsync">>;
export type ScopedHooks = { readonly [K in HookName]: ScopedHook<ApexHooks[K]> };
/** A plugin-defined trigger as other plugins see it (its types are the defining plugin's business). */
export interface ScopedTrigger {
  tap(options: string | TapOptions, fn: (...args: any[]) => any): void;
  tapPromise(options: string | TapOptions, fn: (...args: any[]) => Promise<any>): void;
  tapAsync(options: string | TapOptions, fn: (...args: any[]) => void): void;
}

export type BackendKind = "storage" | "transport";
export const BACKEND_KINDS: readonly BackendKind[] = ["storage", "transport"];
export interface BackendContext {
  projectDir: string | undefined;
  store: Store | undefined;
}
export type BackendFactory<T = unknown> = (options: Record<string, unknown>, context: BackendContext) => T | Promise<T>;
export interface BackendRegistration {
  kind: BackendKind;
  name: string;
  plugin: string;
  factory: BackendFactory;
}

/** A CLI subcommand a plugin adds: `apex <name> [arguments] [options]`. */
export interface CommandSpec {
  name: string;
  description: string;
  /**
   * Where the action runs. "writer" (the default): where the store's one writer is — inside
   * the supervisor (forwarded over its socket, output sent back) while one runs, else in the
   * CLI. "cli": always in the CLI process (for commands that need the user's terminal); such
   * an action must not write the store itself and uses `context.invoke` for that.
   */
  runsIn?: "writer" | "cli";
  /** Command lines shown under "Examples:" in --help. */
  examples?: string[];
  /**
   * Commander argument syntax: "<file>", "[names...]". `session: true`: it names the session the command acts on, as
   * `--session` does: left out, it is `--session`'s; naming another session than `--session` is a usage error (exit 2).
   */
  arguments?: Array<{ syntax: string; description?: string; session?: boolean }>;
  /** Commander option syntax: "-n, --name <name>", "--dry-run". */
  options?: Array<{ flags: string; description?: string; default?: string | boolean | string[] }>;
  action(input: CommandInput, context: CommandContext): void | number | Promise<void | number>;
}
export interface CommandInput {
  /** Declared arguments, in order (a variadic one is an array). */
  args: unknown[];
  options: Record<string, unknown>;
}
export interface CommandContext {
  config: Config | undefined;
  projectDir: string | undefined;
  /** The engine with every configured plugin applied (to fire hooks, find other plugins). */
  engine: Engine;
  /**
   * The project store, opened for writing on first use. The command runs where the
   * store's one writer is: in the CLI when no supervisor runs, inside the supervisor
   * (forwarded over its socket) when one does.
   */
  store(): Promise<Store>;
  /** False while the project has no store yet (store() would create it): a command with nothing to act on says so instead. */
  storeExists(): Promise<boolean>;
  /** Runs another plugin command where the store's writer is, printing its output; resolves to its exit code. */
  invoke(name: string, input: CommandInput): Promise<number>;
  /** Prints one line to stdout. */
  print(text: string): void;
  printJson(value: unknown): void;
}
export interface CommandRegistration {
  plugin: string;
  spec: CommandSpec;
}

/** What a plugin's `apply(apex, options)` receives: the engine, scoped to that plugin. */
export interface ApexApi {
  /** The plugin's own name; every tap it makes is named after it. */
  readonly pluginName: string;
  readonly hooks: ScopedHooks;
  /** Hooks declared by plugins with defineHook; an unknown name throws with a did-you-mean. */
  readonly triggers: Readonly<Record<string, ScopedTrigger>>;
  /** Declares a new trigger other plugins can tap (their taps are wrapped like any other). Fire it yourself. */
  defineHook<H extends AnyHook>(name: string, hook: H): H;
  registerBackend(kind: BackendKind, name: string, factory: BackendFactory): void;
  registerCommand(spec: CommandSpec): void;
  readonly config: Config | undefined;
  /** The project store while a session runs; undefined for one-off CLI commands. */
  readonly store: Store | undefined;
  /** Prints a warning for the user, prefixed with the plugin's name. */
  warn(message: string): void;
  /** How long each plugin's taps took so far, per hook (for metrics and reports). */
  timings(): ReturnType<Engine["timings"]>;
  /** How long each of this plugin's taps may take, in ms (0: no limit): work it bounds itself fits in it. */
  tapTimeoutMs(): number;
}

/** Where a plugin came from, as `apex plugins list` shows it. */
export interface PluginSource {
  kind: "built-in" | "npm" | "file";
  /** "built-in", "npm:<package>" or "file:<path as written in the config>". */
  label: string;
  /** The module file, for npm and file plugins. */
  file?: string;
}

export interface ApexPlugin<Options = Record<string, unknown>> {
  name: string;
  version?: string;
  /** Names of plugins that must be enabled too; they are applied first. */
  requires?: string[];
  /** JSON Schema of the options; without one, the plugin takes no options. */
  schema?: Record<string, unknown>;
  apply(apex: ApexApi, options: Options): void | Promise<void>;
}

/** One configured plugin: applied when enabled, listed either way. */
export interface PluginRecord {
  name: string;
  version: string | undefined;
  requires: string[];
  source: PluginSource;
  enabled: boolean;
  options: Record<string, unknown>;
  /** Where the config enables it, "apex.config.yaml:12:3". */
  at: string | undefined;
  /** Why a disabled plugin could not even be loaded (it is listed, not applied). */
  problem?: string;
}

export interface TapTiming {
  plugin: string;
  hook: string;
  calls: number;
  failures: number;
  totalMs: number;
  maxMs: number;
}

export interface EngineOptions {
  config?: Config | undefined;
  store?: Store | undefined;
  /** How long a tap (or a plugin's apply) may take before it fails with APEX_E_PLUGIN_TIMEOUT. */
  tapTimeoutMs?: number;
  /** Where warnings go (a failing onError tap, a plugin's warn); default: stderr. */
  warn?: (message: string) => void;
}

export const DEFAULT_TAP_TIMEOUT_MS = 30_000;
// By name, not identity: a plugin may bring its own copy of tapable for the hooks it defines.
const SYNC_HOOK_KINDS: ReadonlySet<string> = new Set(["SyncHook", "SyncBailHook", "SyncWaterfallHook", "SyncLoopHook"]);
const NAME_PATTERN = /^[A-Za-z][\w-]*$/;
/** Hooks whose failing tap vetoes what they announce: the taps after it do not run. */
const VETO_HOOKS: ReadonlySet<string> = new Set(["onStart", "beforeTask", "beforeGit"]);
/** Error codes that mean a plugin itself failed (rather than answered with an error). */
const PLUGIN_FAILURE_CODES: ReadonlySet<string> = new Set(["APEX_E_PLUGIN_FAILED", "APEX_E_PLUGIN_TIMEOUT", "APEX_E_INTERNAL"]);
/** Errors already stamped with a plugin and hook, and those already passed to onError: never twice. */
const attributed = new WeakSet<ApexError>();
const reported = new WeakSet<ApexError>();

/**
 * Owns the hooks, the plugins applied to them, the triggers, backends and commands they
 * registered, and per-plugin timings. Every tap on every hook goes through `wrapTap` (a
 * tapable `register` interceptor), which names the plugin and hook in errors, fires onError,
 * turns sync throws into rejections and times out taps that never settle.
 */
export class Engine {
  readonly hooks: ApexHooks = createHooks();
  readonly config: Config | undefined;
  readonly store: Store | undefined;
  readonly tapTimeoutMs: number;
  readonly #warn: (message: string) => void;
  readonly #records: PluginRecord[] = [];
  readonly #triggers = new Map<string, { hook: AnyHook; plugin: string }>();
  readonly #backends = new Map<string, BackendRegistration>();
  readonly #commands = new Map<string, CommandRegistration>();
  readonly #timings = new Map<string, TapTiming>();

  constructor(options: EngineOptions = {}) {
    this.config = options.config;
    this.store = options.store;
    this.tapTimeoutMs = options.tapTimeoutMs ?? DEFAULT_TAP_TIMEOUT_MS;
    this.#warn = options.warn ?? ((message) => process.stderr.write(`warning: ${message}\n`));
    for (const name of HOOK_NAMES) this.#intercept(name, this.hooks[name] as unknown as AnyHook);
  }

  /**
   * Runs a series hook. Rejects with the first failing tap's error (already reported to onError).
   * onStart, beforeTask and beforeGit stop at a failing tap (it vetoes what follows); the other
   * hooks tell what happened, so every tap runs: one plugin failing in onPause, afterMilestone or
   * beforeStop took the checkpoint plugin's checkpoint, tapped after it, with it.
   */
  async fire<K extends SeriesHookName>(name: K, ...args: HookArgs<K>): Promise<void> {
    const hook = this.hooks[name] as unknown as AnyHook;
    if (VETO_HOOKS.has(name)) return void (await hook.promise(...args));
    let failure: { error: unknown } | undefined;
    for (const tap of [...hook.taps]) await Promise.resolve(tap.fn(...args)).catch((error: unknown) => void (failure ??= { error }));
    if (failure) throw failure.error;
  }

  /**
   * Runs the beforeCheckpoint waterfall and returns the draft as the plugins left it. The draft
   * each tap returns is checked before the next tap gets it (and `check`, the caller's test of its
   * data, runs on it), so what is wrong with it is said as the failure of the plugin that made it.
   */
  async waterfall(name: "beforeCheckpoint", draft: CheckpointDraft, check?: (draft: CheckpointDraft) => void): Promise<CheckpointDraft> {
    const hook = this.hooks[name] as unknown as AnyHook;
    let current = draft;
    for (const tap of [...hook.taps]) {
      const result: unknown = await tap.fn(current);
      try {
        current = returnedDraft(result, current);
        check?.(current);
      } catch (error) {
        // The tap ran (and was counted) as a success; what it returned fails it.
        this.#countRejected(tap.name, name);
        const failure = this.#attribute(tap.name, name, error);
        if (failure.fresh) await this.#notifyOnError(failure.error, tap.name, draft);
        throw failure.error;
      }
    }
    return current;
  }

  /** Runs a plugin-defined trigger. */
  async fireTrigger(name: string, ...args: unknown[]): Promise<unknown> {
    return this.#trigger(name).hook.promise(...args);
  }

  /** Applies a plugin (or, with `enabled: false`, only records it). Its apply runs guarded like a tap. */
  async use<O>(
    plugin: ApexPlugin<O>,
    init: { options?: O; source?: PluginSource; enabled?: boolean; at?: string; problem?: string } = {},
  ): Promise<void> {
    const enabled = init.enabled ?? true;
    const options = (init.options ?? {}) as O;
    if (enabled && this.#records.some((record) => record.enabled && record.name === plugin.name)) {
      throw new ApexError("APEX_E_PLUGIN_DUPLICATE", `Plugin '${plugin.name}' is already loaded; a plugin is applied once.`);
    }
    const record: PluginRecord = {
      name: plugin.name,
      version: plugin.version,
      requires: [...(plugin.requires ?? [])],
      source: init.source ?? { kind: "file", label: "inline" },
      enabled,
      options: options as Record<string, unknown>,
      at: init.at,
    };
    if (init.problem !== undefined) record.problem = init.problem;
    if (enabled) {
      const missing = record.requires.find((name) => !this.#records.some((other) => other.enabled && other.name === name));
      if (missing !== undefined) {
        throw new ApexError("APEX_E_PLUGIN_DEPENDENCY", `The dependency '${missing}' of plugin '${plugin.name}' is not enabled.`, { hint: `Apply plugin ${missing} before plugin ${plugin.name}.` });
      }
    }
    this.#records.push(record);
    if (!enabled) return;
    const api = this.#apiFor(plugin.name);
    await this.#guard(plugin.name, "apply", "promise", () => plugin.apply(api, options), []);
  }

  /** Every configured plugin, in the order it was applied. */
  get plugins(): readonly PluginRecord[] {
    return this.#records;
  }

  plugin(name: string): PluginRecord | undefined {
    return this.#records.find((record) => record.name === name);
  }

  /** The hooks and triggers a plugin taps, read from the hooks themselves. */
  tapsOf(plugin: string): string[] {
    const hooks: Array<[string, AnyHook]> = [
      ...HOOK_NAMES.map((name): [string, AnyHook] => [name, this.hooks[name] as unknown as AnyHook]),
      ...[...this.#triggers].map(([name, { hook }]): [string, AnyHook] => [name, hook]),
    ];
    return hooks.filter(([, hook]) => hook.taps.some((tap) => tap.name === plugin)).map(([name]) => name);
  }

  get triggers(): ReadonlyMap<string, { hook: AnyHook; plugin: string }> {
    return this.#triggers;
  }

  get commands(): CommandRegistration[] {
    return [...this.#commands.values()];
  }

  /**
   * Runs a plugin command's action. Commands have no timeout. An ApexError the command throws
   * (a usage error, something not found, a conflict) is its answer to the user and passes
   * unchanged; anything else is a failure of the plugin: named after it and reported to onError.
   */
  async runCommand(name: string, input: CommandInput, context: CommandContext): Promise<void | number> {
    const registration = this.#commands.get(name);
    if (!registration) throw new ApexError("APEX_E_USAGE", `No plugin provides the command '${name}'.`);
    let answer: ApexError | undefined;
    const run = async () => {
      try {
        return await registration.spec.action(input, context);
      } catch (error) {
        if (!isApexError(error) || PLUGIN_FAILURE_CODES.has(error.code)) throw error;
        answer = error;
        return undefined;
      }
    };
    // A dry run is timed apart, as `command NAME --dry-run`: it did none of the command's work
    // (a session compress --dry-run was counted as a run that compressed).
    const hook = input.options.dryRun === true ? `command ${name} --dry-run` : `command ${name}`;
    const result = (await this.#guard(registration.plugin, hook, "promise", run, [], { timeout: false })) as void | number;
    if (answer) throw answer;
    return result;
  }

  get backends(): BackendRegistration[] {
    return [...this.#backends.values()];
  }

  /** The backend registered under kind/name; an unknown name fails with a did-you-mean. */
  backend(kind: BackendKind, name: string): BackendRegistration {
    const found = this.#backends.get(`${kind}:${name}`);
    if (found) return found;
    const known = this.backends.filter((backend) => backend.kind === kind);
    const guess = didYouMean(name, known.map((backend) => backend.name));
    throw new ApexError("APEX_E_BACKEND_UNKNOWN", `No ${kind} backend named '${name}'.${guess ? ` Did you mean '${guess}'?` : ""}`, {
      hint: known.length
        ? `Registered ${kind} backends: ${known.map((backend) => `${backend.name} (plugin ${backend.plugin})`).join(", ")}.`
        : `No plugin registers a ${kind} backend; enable the plugin that provides '${name}' in apex.config.yaml.`,
      details: { kind, name, known: known.map((backend) => backend.name) },
    });
  }

  /** Creates a backend instance with its factory, guarded like a tap. */
  async createBackend<T = unknown>(kind: BackendKind, name: string, options: Record<string, unknown> = {}): Promise<T> {
    const { plugin, factory } = this.backend(kind, name);
    const context: BackendContext = { projectDir: this.config?.projectDir, store: this.store };
    return (await this.#guard(plugin, `${kind} backend ${name}`, "promise", () => factory(options, context), [])) as T;
  }

  /** Per plugin and hook: how often its taps ran, failed, and how long they took. */
  timings(): TapTiming[] {
    return [...this.#timings.values()].map((timing) => ({ ...timing }));
  }

  #apiFor(pluginName: string): ApexApi {
    const engine = this;
    const known = Object.freeze(Object.fromEntries(HOOK_NAMES.map((name) => [name, scope(this.hooks[name] as unknown as AnyHook, pluginName)])));
    // An unknown hook name is said as such (it read undefined, and `.tapPromise` of it threw a TypeError).
    const hooks = new Proxy(known, {
      get: (target, key) => {
        if (typeof key !== "string" || Object.hasOwn(target, key) || key === "then" || key === "toJSON") return Reflect.get(target, key);
        throw unknownHookError(key, engine.#triggers.has(key));
      },
    }) as unknown as ScopedHooks;
    const triggers = new Proxy({} as Record<string, never>, {
      get: (_target, key) => {
        if (typeof key !== "string" || key === "then" || key === "toJSON") return undefined;
        return scope(engine.#trigger(key, pluginName).hook, pluginName);
      },
      has: (_target, key) => typeof key === "string" && engine.#triggers.has(key),
      ownKeys: () => [...engine.#triggers.keys()],
      getOwnPropertyDescriptor: (_target, key) =>
        typeof key === "string" && engine.#triggers.has(key)
          ? { enumerable: true, configurable: true, value: scope(engine.#triggers.get(key)!.hook, pluginName) }
          : undefined,
    });
    return Object.freeze({
      pluginName,
      hooks,
      triggers,
      defineHook: <H extends AnyHook>(name: string, hook: H): H => this.#defineHook(pluginName, name, hook),
      registerBackend: (kind: BackendKind, name: string, factory: BackendFactory) => this.#registerBackend(pluginName, kind, name, factory),
      registerCommand: (spec: CommandSpec) => this.#registerCommand(pluginName, spec),
      get config() {
        return engine.config;
      },
      get store() {
        return engine.store;
      },
      warn: (message: string) => this.#warn(`plugin ${pluginName}: ${message}`),
      timings: () => engine.timings(),
      tapTimeoutMs: () => engine.tapTimeoutOf(pluginName),
    });
  }

  #defineHook<H extends AnyHook>(plugin: string, name: string, hook: H): H {
    if (!NAME_PATTERN.test(name)) throw new ApexError("APEX_E_PLUGIN_INVALID", `defineHook: '${name}' is not a valid trigger name (letters, digits, '_' or '-', starting with a letter).`);
    if (!hook || typeof hook.intercept !== "function" || !Array.isArray(hook.taps)) {
      throw new ApexError("APEX_E_PLUGIN_INVALID", `defineHook('${name}'): the second argument must be a tapable hook, e.g. new AsyncSeriesHook(["ctx"]).`);
    }
    const owner = (HOOK_NAMES as readonly string[]).includes(name) ? "APEX" : this.#triggers.get(name)?.plugin;
    if (owner !== undefined) {
      throw new ApexError("APEX_E_PLUGIN_DUPLICATE", `The trigger '${name}' is already defined by ${owner === "APEX" ? "APEX" : `plugin ${owner}`}.`);
    }
    this.#intercept(name, hook);
    this.#triggers.set(name, { hook, plugin });
    return hook;
  }

  #trigger(name: string, requester?: string): { hook: AnyHook; plugin: string } {
    const found = this.#triggers.get(name);
    if (found) return found;
    const guess = didYouMean(name, this.#triggers.keys());
    const defined = [...this.#triggers].map(([trigger, { plugin }]) => `${trigger} (plugin ${plugin})`);
    throw new ApexError("APEX_E_PLUGIN_DEPENDENCY", `No plugin defines the trigger '${name}'.${guess ? ` Did you mean '${guess}'?` : ""}`, {
      hint:
        (defined.length ? `Defined triggers: ${defined.join(", ")}. ` : "No triggers are defined. ") +
        `Enable the plugin that defines '${name}'${requester ? ` and list it in the \`requires\` of plugin ${requester}` : ""}, so that it is applied first.`,
    });
  }

  #registerBackend(plugin: string, kind: BackendKind, name: string, factory: BackendFactory): void {
    if (!BACKEND_KINDS.includes(kind)) {
      throw new ApexError("APEX_E_PLUGIN_INVALID", `registerBackend: the kind must be ${BACKEND_KINDS.map((k) => `'${k}'`).join(" or ")}, not '${String(kind)}'.`);
    }
    if (typeof name !== "string" || !NAME_PATTERN.test(name)) throw new ApexError("APEX_E_PLUGIN_INVALID", `registerBackend: '${String(name)}' is not a valid backend name.`);
    if (typeof factory !== "function") throw new ApexError("APEX_E_PLUGIN_INVALID", `registerBackend('${kind}', '${name}'): the factory must be a function.`);
    const existing = this.#backends.get(`${kind}:${name}`);
    if (existing) throw new ApexError("APEX_E_PLUGIN_DUPLICATE", `The ${kind} backend '${name}' is already registered by plugin ${existing.plugin}.`);
    this.#backends.set(`${kind}:${name}`, { kind, name, plugin, factory });
  }

  #registerCommand(plugin: string, spec: CommandSpec): void {
    if (!spec || typeof spec.name !== "string" || !/^[a-z][a-z0-9-]*( [a-z][a-z0-9-]*)?$/.test(spec.name)) {
      throw new ApexError(
        "APEX_E_PLUGIN_INVALID",
        `registerCommand: the command name must be lowercase letters, digits and '-', optionally inside a core group ("session cleanup") (got ${JSON.stringify(spec?.name)}).`,
      );
    }
    if (typeof spec.action !== "function") throw new ApexError("APEX_E_PLUGIN_INVALID", `registerCommand('${spec.name}'): action must be a function.`);
    const existing = this.#commands.get(spec.name);
    if (existing) throw new ApexError("APEX_E_PLUGIN_DUPLICATE", `The command '${spec.name}' is already added by plugin ${existing.plugin}.`);
    this.#commands.set(spec.name, { plugin, spec });
  }

  #intercept(hookName: string, hook: AnyHook): void {
    const sync = SYNC_HOOK_KINDS.has((hook as { constructor?: { name?: string } }).constructor?.name ?? "");
    hook.intercept({ name: "apex", register: (tap: FullTap) => this.#wrapTap(hookName, tap, sync) });
  }

  /**
   * On async hooks every tap becomes a promise tap whose function never throws synchronously
   * (tapable can leave hook.promise() pending on a sync throw). Sync hooks keep sync taps.
   */
  #wrapTap(hookName: string, tap: FullTap, syncHook: boolean): FullTap {
    const original = tap.fn;
    const plugin = tap.name;
    if (syncHook) {
      const fn = (...args: unknown[]) => {
        const started = performance.now();
        try {
          const result = original(...args);
          this.#count(plugin, hookName, started, false);
          return result;
        } catch (error) {
          this.#count(plugin, hookName, started, true);
          const failure = this.#attribute(plugin, hookName, error);
          if (failure.fresh) void this.#notifyOnError(failure.error, plugin, args[0]);
          throw failure.error;
        }
      };
      return { ...tap, fn };
    }
    const fn = (...args: unknown[]) => this.#guard(plugin, hookName, tap.type, () => invoke(original, tap.type, args), args);
    return { ...tap, type: "promise", fn };
  }

  /** Runs one plugin call with timing, a timeout, error attribution and onError. */
  async #guard(
    plugin: string,
    hookName: string,
    type: FullTap["type"],
    run: () => unknown,
    args: unknown[],
    { timeout = true }: { timeout?: boolean } = {},
  ): Promise<unknown> {
    const started = performance.now();
    try {
      const result = await (timeout ? this.#withTimeout(plugin, hookName, type, run) : run());
      this.#count(plugin, hookName, started, false);
      return result;
    } catch (error) {
      this.#count(plugin, hookName, started, true);
      const failure = this.#attribute(plugin, hookName, error);
      if (hookName === "onError") {
        // A failing onError tap must not hide the error being reported: note both, go on.
        this.#reportSecondary(failure.error, args[0] as ErrorContext | undefined);
        return undefined;
      }
      if (failure.fresh) await this.#notifyOnError(failure.error, plugin, args[0]);
      throw failure.error;
    }
  }

  /** The time a tap of `plugin` is given, in ms: its own session.plugin_timeouts, else session.plugin_timeout, else the engine's (30 s); 0 is no limit. */
  tapTimeoutOf(plugin: string): number {
    const { plugin_timeouts: own = {}, plugin_timeout: all } = this.config?.session ?? {};
    const seconds = Object.hasOwn(own, plugin) ? own[plugin] : all;
    return seconds === undefined ? this.tapTimeoutMs : seconds * 1000;
  }

  #withTimeout(plugin: string, hookName: string, type: FullTap["type"], run: () => unknown): Promise<unknown> {
    const ms = this.tapTimeoutOf(plugin);
    return new Promise((resolve, reject) => {
      const timer = ms === 0 ? undefined : setTimeout(() => {
        const forgot = hookName === "apply" ? "does the promise its apply returns ever settle?" : type === "async" ? "did it forget to call its callback?" : "did it forget to resolve a promise or return from an async tap?";
        const { label, hint } = this.#owner(plugin);
        // An apply that never finishes: the plugin cannot be loaded (exit 2, an error of `config validate`), as when its top-level await never settles.
        const timeout = new ApexError(hookName === "apply" ? "APEX_E_PLUGIN_INVALID" : "APEX_E_PLUGIN_TIMEOUT", `${label} did not finish ${hookName} within ${ms} ms (${forgot})`, {
          ...(hint ? { hint } : {}),
          details: { plugin, hook: hookName, timeoutMs: ms },
        });
        attributed.add(timeout);
        reject(timeout);
      }, ms);
      void new Promise((inner) => inner(run())).then(resolve, reject).finally(() => clearTimeout(timer));
    });
  }

  /** Names the plugin and hook in an error; errors already attributed to a plugin pass through. */
  #attribute(plugin: string, hookName: string, error: unknown): { error: ApexError; fresh: boolean } {
    if (isApexError(error) && attributed.has(error)) return { error, fresh: !reported.has(error) };
    const owner = this.#owner(plugin);
    const message = thrownMessage(error);
    if (!isApexError(error) && isFileDiskFull(error)) {
      // A full disk is the machine's failure, not the plugin's: no blame, no advice to disable it.
      const path = (error as { path?: unknown }).path;
      const full =
        typeof path === "string"
          ? fileDiskFullError(path, error)
          : new ApexError("APEX_E_DISK_FULL", withDetail(`The disk is full`, message), { hint: "Free space on that filesystem and run the command again.", cause: error, details: { plugin, hook: hookName } });
      attributed.add(full);
      return { error: full, fresh: true };
    }
    // A plugin that throws in apply cannot be loaded: the config naming it cannot run (2), as for one that throws on import.
    // A usage error from a third-party plugin's tap (a store path, a value) is its misuse of APEX, not the user's input: the plugin failed (exit 1, its hint).
    const misuse = owner.isPlugin && this.plugin(plugin)?.source.kind !== "built-in" && isApexError(error) && error.exitCode === 2 && ((HOOK_NAMES as readonly string[]).includes(hookName) || this.#triggers.has(hookName));
    const code = isApexError(error) && !misuse ? error.code : !owner.isPlugin ? "APEX_E_INTERNAL" : hookName === "apply" ? "APEX_E_PLUGIN_INVALID" : "APEX_E_PLUGIN_FAILED";
    const hint = (isApexError(error) && !misuse && error.hint) || owner.hint;
    const failure = new ApexError(code, `${owner.label} failed in ${hookName}: ${message}`, { cause: error, ...(hint ? { hint } : {}), details: { plugin, hook: hookName, ...(misuse ? { cause_code: (error as ApexError).code } : {}) } });
    attributed.add(failure);
    return { error: failure, fresh: true };
  }

  async #notifyOnError(error: ApexError, plugin: string, firstArg: unknown): Promise<void> {
    // Mark it so that outer taps that see the same error do not report it again.
    reported.add(error);
    const sessionId = (firstArg as { sessionId?: unknown } | undefined)?.sessionId;
    const context: ErrorContext = { error, origin: this.#owner(plugin).origin, details: { hook: error.details?.hook } };
    if (typeof sessionId === "string") context.sessionId = sessionId;
    try {
      await this.hooks.onError.promise(context);
    } catch (secondary) {
      this.#reportSecondary(secondary, context);
    }
  }

  #reportSecondary(secondary: unknown, context: ErrorContext | undefined): void {
    const message = thrownMessage(secondary);
    const original = context?.error;
    if (isApexError(original) && original.details) {
      const list = Array.isArray(original.details.alsoFailed) ? (original.details.alsoFailed as string[]) : [];
      list.push(message);
      original.details.alsoFailed = list;
    }
    this.#warn(original ? `${message} (while reporting: ${original.message})` : message);
  }

  /** A tap is a plugin's, or APEX's own (core code taps hooks too, e.g. "session"). */
  #owner(tapName: string): { isPlugin: boolean; label: string; origin: string; hint: string | undefined } {
    const record = this.#records.find((candidate) => candidate.enabled && candidate.name === tapName);
    if (!record) return { isPlugin: false, label: tapName, origin: `core:${tapName}`, hint: undefined };
    // A project without a `plugins:` section (or without a config) runs the list of APEX's shipped default config (record.at is there):
    // "set it to false there" would send the user to edit APEX's own file, and a section naming only this plugin drops the others.
    const config = this.config?.configPath === undefined ? undefined : this.config.source?.displayFile;
    const listed = record.at === undefined || (config !== undefined && this.config?.source?.doc.has("plugins") === true);
    const off = listed ? `, or set it to false under \`plugins:\`${record.at ? ` at ${record.at}` : ""} to run without it.` : `. It is on because the plugin list comes from APEX's shipped default config (${record.at}): ${config ? `${config} has no \`plugins:\` section` : "the project has no apex.config.yaml"}. To run without it, add a \`plugins:\` section to ${config ?? "a new apex.config.yaml"} that lists the plugins to keep (\`apex config show\` shows them) and \`${tapName}: false\`.`;
    return { isPlugin: true, label: `plugin ${tapName}`, origin: `plugin:${tapName}`, hint: `The plugin ${tapName} (${record.source.label}) caused this: report it to its author${off}` };
  }

  #count(plugin: string, hook: string, started: number, failed: boolean): void {
    const key = `${plugin}\u0000${hook}`;
    const elapsed = performance.now() - started;
    const timing = this.#timings.get(key) ?? { plugin, hook, calls: 0, failures: 0, totalMs: 0, maxMs: 0 };
    timing.calls++;
    if (failed) timing.failures++;
    timing.totalMs += elapsed;
    timing.maxMs = Math.max(timing.maxMs, elapsed);
    this.#timings.set(key, timing);
  }

  /** A call counted as a success whose result was then refused: a failure after all. */
  #countRejected(plugin: string, hook: string): void {
    const timing = this.#timings.get(`${plugin}\u0000${hook}`);
    if (timing) timing.failures++;
  }
}

/** A plugin asked `apex.hooks` for a hook APEX does not have: which it has, and where plugins' own hooks are. */
function unknownHookError(name: string, isTrigger: boolean): ApexError {
  const guess = didYouMean(name, HOOK_NAMES);
  const where = isTrigger ? `'${name}' is a hook a plugin defines: tap it as apex.triggers.${name}.` : `Hooks other plugins define (defineHook) are tapped through apex.triggers.<name>.`;
  return new ApexError("APEX_E_PLUGIN_INVALID", `apex.hooks has no hook '${name}'.${guess ? ` Did you mean '${guess}'?` : ""}`, {
    hint: `APEX's hooks: ${HOOK_NAMES.join(", ")}. ${where}`,
    details: { hook: name, hooks: [...HOOK_NAMES] },
  });
}

/**
 * The draft a beforeCheckpoint tap returned: nothing keeps the one it was given (changed in place,
 * as tapable's waterfall has it); anything else but a draft fails.
 */
function returnedDraft(result: unknown, given: CheckpointDraft): CheckpointDraft {
  if (result === undefined) return given;
  const draft = result as Partial<CheckpointDraft> | null;
  const isObject = (value: unknown) => typeof value === "object" && value !== null && !Array.isArray(value);
  if (isObject(draft) && isObject(draft!.data) && typeof draft!.description === "string") return draft as CheckpointDraft;
  const got = draft === null ? "null" : isObject(draft) ? "a draft without a `data` object or a `description` string" : `a ${Array.isArray(draft) ? "array" : typeof draft}`;
  throw new ApexError("APEX_E_PLUGIN_FAILED", `it returned ${got}, not the checkpoint draft (a waterfall tap has to return its argument: \`async (draft) => { draft.data.x = …; return draft; }\`)`);
}

function invoke(fn: Function, type: FullTap["type"], args: unknown[]): unknown {
  if (type !== "async") return fn(...args);
  return new Promise((resolve, reject) => {
    fn(...args, (error: unknown, result?: unknown) => (error ? reject(error) : resolve(result)));
  });
}

/** A tap-only view of a hook for one plugin: whatever name it passes, the tap is named after the plugin. */
function scope(hook: AnyHook, pluginName: string): any {
  const named = (options: unknown): TapOptions & { name: string } => {
    const tapOptions: TapOptions & { name: string } = { name: pluginName };
    if (options && typeof options === "object") {
      const { stage, before } = options as TapOptions;
      if (stage !== undefined) tapOptions.stage = stage;
      if (before !== undefined) tapOptions.before = before;
    }
    return tapOptions;
  };
  const target = hook as unknown as Record<string, (options: unknown, fn: unknown) => void>;
  return Object.freeze({
    tap: (options: unknown, fn: unknown) => target.tap!.call(hook, named(options), fn),
    tapPromise: (options: unknown, fn: unknown) => target.tapPromise!.call(hook, named(options), fn),
    tapAsync: (options: unknown, fn: unknown) => target.tapAsync!.call(hook, named(options), fn),
  });
}
