import type { Config } from "../core/config/types.js";
import { describe, expect, it } from "vitest";
import { AsyncSeriesHook, SyncHook } from "tapable";
import { Engine, type ApexPlugin, type CheckpointDraft, type ErrorContext, type SessionContext } from "../core/engine.js";
import { definePlugin } from "../core/plugins.js";
import { ApexError } from "../core/errors.js";
import { commandContext } from "./support/command-context.js";

const session = (): SessionContext => ({ sessionId: "s-1", session: { status: "active" } });
const task = { ...session(), task: { id: "t-1", title: "write tests" } };

/** An engine whose warnings are collected instead of printed. */
function testEngine(tapTimeoutMs = 5_000): { engine: Engine; warnings: string[] } {
  const warnings: string[] = [];
  return { engine: new Engine({ tapTimeoutMs, warn: (message) => warnings.push(message) }), warnings };
}

/** Resolves to "pending" when `promise` has not settled after `ms`: the tapable trap we guard against. */
async function settlesWithin<T>(promise: Promise<T>, ms = 1_000): Promise<T | "pending"> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<"pending">((resolve) => (timer = setTimeout(() => resolve("pending"), ms)));
  try {
    return await Promise.race([promise, pending]);
  } finally {
    clearTimeout(timer);
  }
}

function failing(name: string, hook: "beforeTask" | "onStart", message: string): ApexPlugin {
  return definePlugin({
    name,
    apply(apex) {
      apex.hooks[hook].tapPromise(name, async () => {
        throw new Error(message);
      });
    },
  });
}

function errorRecorder(seen: ErrorContext[], name = "recorder"): ApexPlugin {
  return definePlugin({
    name,
    apply(apex) {
      apex.hooks.onError.tapPromise(name, async (context) => {
        seen.push(context);
      });
    },
  });
}

describe("engine: every tap is wrapped", () => {
  it("names the plugin and the hook in a failure, with a stable code", async () => {
    const { engine } = testEngine();
    await engine.use(failing("boom", "beforeTask", "disk full"));

    const error = await engine.fire("beforeTask", task).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(ApexError);
    expect(error).toMatchObject({
      code: "APEX_E_PLUGIN_FAILED",
      exitCode: 1,
      message: "plugin boom failed in beforeTask: disk full",
      details: { plugin: "boom", hook: "beforeTask" },
    });
    expect(((error as ApexError).cause as Error).message).toBe("disk full");
    expect(engine.timings()).toContainEqual(expect.objectContaining({ plugin: "boom", hook: "beforeTask", calls: 1, failures: 1 }));
  });

  it("fires onError with origin plugin:<name> and the session", async () => {
    const { engine } = testEngine();
    const seen: ErrorContext[] = [];
    await engine.use(errorRecorder(seen));
    await engine.use(failing("boom", "beforeTask", "disk full"));

    await expect(engine.fire("beforeTask", task)).rejects.toThrow("plugin boom failed in beforeTask: disk full");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.origin).toBe("plugin:boom");
    expect(seen[0]!.sessionId).toBe("s-1");
    expect(seen[0]!.error.message).toBe("plugin boom failed in beforeTask: disk full");
    expect(seen[0]!.details).toEqual({ hook: "beforeTask" });
  });

  it("a failing onError tap never hides the original error: both are reported, the original is thrown", async () => {
    const { engine, warnings } = testEngine();
    const seen: ErrorContext[] = [];
    await engine.use(failing("boom", "beforeTask", "disk full"));
    await engine.use(
      definePlugin({
        name: "mailer",
        apply(apex) {
          apex.hooks.onError.tapPromise("mailer", () => {
            throw new Error("SMTP refused"); // a sync throw, on purpose
          });
        },
      }),
    );
    await engine.use(errorRecorder(seen, "after-mailer"));

    const error = (await engine.fire("beforeTask", task).catch((thrown: unknown) => thrown)) as ApexError;
    expect(error.message).toBe("plugin boom failed in beforeTask: disk full");
    expect(error.code).toBe("APEX_E_PLUGIN_FAILED");
    expect(error.details?.alsoFailed).toEqual(["plugin mailer failed in onError: SMTP refused"]);
    expect(warnings).toEqual(["plugin mailer failed in onError: SMTP refused (while reporting: plugin boom failed in beforeTask: disk full)"]);
    // the onError taps after the failing one still ran
    expect(seen.map((context) => context.origin)).toEqual(["plugin:boom"]);
  });

  it("a failing tap vetoes onStart, beforeTask and beforeGit; on the hooks that tell what happened, the other plugins' taps run all the same", async () => {
    // Before, a plugin failing in onPause (or afterMilestone, beforeStop, …) ahead of the checkpoint plugin took its checkpoint with it.
    const { engine } = testEngine();
    const ran: string[] = [];
    const hooks = ["onStart", "beforeTask", "beforeGit", "afterMilestone", "onPause", "onResume", "beforeStop", "onStop", "afterCheckpoint"] as const;
    const tapAll = (name: string, fail: boolean): ApexPlugin =>
      definePlugin({
        name,
        apply(apex) {
          for (const hook of hooks) {
            (apex.hooks[hook] as AsyncSeriesHook<[unknown]>).tapPromise(name, async () => {
              ran.push(`${name} ${hook}`);
              if (fail) throw new Error(`${hook} broke`);
            });
          }
        },
      });
    await engine.use(tapAll("first", true));
    await engine.use(tapAll("second", true));
    await engine.use(tapAll("last", false));
    const context = { ...task, milestone: "m", args: ["commit"], source: "cli", reason: "stopped", id: "c-1", sequence: 1, trigger: "manual" };
    for (const hook of hooks) {
      ran.length = 0;
      const error = (await (engine.fire as (name: string, context: unknown) => Promise<void>)(hook, context).catch((thrown: unknown) => thrown)) as ApexError;
      // The first failure is the one thrown, whichever the hook.
      expect(error.message, hook).toBe(`plugin first failed in ${hook}: ${hook} broke`);
      expect(ran, hook).toEqual(["onStart", "beforeTask", "beforeGit"].includes(hook) ? [`first ${hook}`] : [`first ${hook}`, `second ${hook}`, `last ${hook}`]);
    }
  });

  it("onError fired by APEX itself never rejects because of a failing tap", async () => {
    const { engine, warnings } = testEngine();
    await engine.use(
      definePlugin({
        name: "mailer",
        apply(apex) {
          apex.hooks.onError.tapPromise("mailer", async () => {
            throw new Error("SMTP refused");
          });
        },
      }),
    );
    const crash = new Error("agent coder exited with code 1");
    await expect(engine.fire("onError", { error: crash, origin: "agent:coder" })).resolves.toBeUndefined();
    expect(warnings).toEqual(["plugin mailer failed in onError: SMTP refused (while reporting: agent coder exited with code 1)"]);
  });

  it("times out a tap that never settles, with a message that says what was probably forgotten", async () => {
    const { engine } = testEngine(50);
    const seen: ErrorContext[] = [];
    await engine.use(errorRecorder(seen));
    await engine.use(
      definePlugin({
        name: "stuck",
        apply(apex) {
          apex.hooks.onPause.tapPromise("stuck", () => new Promise<void>(() => {}));
        },
      }),
    );
    const error = (await settlesWithin(engine.fire("onPause", session()).catch((thrown: unknown) => thrown))) as ApexError;
    expect(error).toBeInstanceOf(ApexError);
    expect(error.code).toBe("APEX_E_PLUGIN_TIMEOUT");
    expect(error.message).toBe("plugin stuck did not finish onPause within 50 ms (did it forget to resolve a promise or return from an async tap?)");
    expect(seen.map((context) => context.origin)).toEqual(["plugin:stuck"]);
  });

  it("times out a callback-style tap that never calls back", async () => {
    const { engine } = testEngine(30);
    await engine.use(
      definePlugin({
        name: "forgetful",
        apply(apex) {
          apex.hooks.onResume.tapAsync("forgetful", (_session, _callback) => {});
        },
      }),
    );
    await expect(settlesWithin(engine.fire("onResume", session()))).rejects.toThrow(
      "plugin forgetful did not finish onResume within 30 ms (did it forget to call its callback?)",
    );
  });

  it("times out an apply that never finishes: the plugin cannot be loaded (exit 2, as for a top-level await that never settles)", async () => {
    const { engine } = testEngine(30);
    const plugin = definePlugin({ name: "slow-start", apply: () => new Promise<void>(() => {}) });
    // Before, APEX_E_PLUGIN_TIMEOUT (exit 1): `config validate --json` printed nothing on stdout, the error JSON on stderr, exit 1.
    await expect(settlesWithin(engine.use(plugin))).rejects.toMatchObject({
      code: "APEX_E_PLUGIN_INVALID",
      exitCode: 2,
      message: "plugin slow-start did not finish apply within 30 ms (does the promise its apply returns ever settle?)",
    });
  });

  it("turns a sync throw in a promise tap into a rejection instead of a pending hook", async () => {
    const { engine } = testEngine(10_000);
    await engine.use(
      definePlugin({
        name: "first",
        apply(apex) {
          apex.hooks.onStart.tapPromise("first", async () => {});
        },
      }),
    );
    await engine.use(
      definePlugin({
        name: "sync-thrower",
        apply(apex) {
          // Not async: plain tapable would leave hook.promise() pending and crash the process.
          apex.hooks.onStart.tapPromise("sync-thrower", (() => {
            throw new Error("oops");
          }) as () => Promise<void>);
        },
      }),
    );
    const outcome = await settlesWithin(engine.fire("onStart", session()).then(() => "resolved", (error: Error) => error.message));
    expect(outcome).toBe("plugin sync-thrower failed in onStart: oops");
  });

  it("wraps sync taps too", async () => {
    const { engine } = testEngine();
    await engine.use(
      definePlugin({
        name: "sync-tap",
        apply(apex) {
          apex.hooks.onStop.tap("sync-tap", ({ reason }) => {
            throw new TypeError(`cannot stop: ${reason}`);
          });
        },
      }),
    );
    await expect(settlesWithin(engine.fire("onStop", { ...session(), reason: "user" }))).rejects.toMatchObject({
      code: "APEX_E_PLUGIN_FAILED",
      message: "plugin sync-tap failed in onStop: cannot stop: user",
    });
  });

  it("names a tap after its plugin, whatever name the plugin passes", async () => {
    const { engine } = testEngine();
    await engine.use(
      definePlugin({
        name: "honest",
        apply(apex) {
          apex.hooks.afterCheckpoint.tapPromise("SomebodyElse", async () => {
            throw new Error("nope");
          });
        },
      }),
    );
    expect(engine.hooks.afterCheckpoint.taps.map((tap) => tap.name)).toEqual(["honest"]);
    await expect(engine.fire("afterCheckpoint", { sessionId: "s", id: "c", sequence: 1, trigger: "manual" })).rejects.toThrow(
      "plugin honest failed in afterCheckpoint: nope",
    );
    expect(engine.tapsOf("honest")).toEqual(["afterCheckpoint"]);
  });

  it("beforeCheckpoint is a waterfall: each plugin adds data to the draft", async () => {
    const { engine } = testEngine();
    await engine.use(
      definePlugin({
        name: "git",
        apply(apex) {
          apex.hooks.beforeCheckpoint.tapPromise("git", async (draft) => ({ ...draft, data: { ...draft.data, git_state: { head: "abc123" } } }));
        },
      }),
    );
    await engine.use(
      definePlugin({
        name: "metrics",
        apply(apex) {
          apex.hooks.beforeCheckpoint.tapPromise("metrics", async (draft) => {
            // sees what git added
            draft.data.metrics = { keys: Object.keys(draft.data).length };
            return draft;
          });
        },
      }),
    );
    const draft: CheckpointDraft = { sessionId: "s-1", trigger: "manual", description: "before refactor", data: {} };
    const result = await engine.waterfall("beforeCheckpoint", draft);
    expect(result).toEqual({ ...draft, data: { git_state: { head: "abc123" }, metrics: { keys: 1 } } });
  });

  it("a beforeCheckpoint tap that returns no draft, or one its caller's check refuses, fails as that plugin's, before the next tap runs", async () => {
    const { engine } = testEngine();
    const seen: ErrorContext[] = [];
    await engine.use(errorRecorder(seen));
    const after: string[] = [];
    await engine.use(definePlugin({ name: "in-place", apply: (apex) => apex.hooks.beforeCheckpoint.tapPromise("in-place", async (d) => void (d.data.seen = true) as unknown as CheckpointDraft) }));
    await engine.use(definePlugin({ name: "forgets", apply: (apex) => apex.hooks.beforeCheckpoint.tapPromise("forgets", async () => null as unknown as CheckpointDraft) }));
    await engine.use(definePlugin({ name: "later", apply: (apex) => apex.hooks.beforeCheckpoint.tapPromise("later", async (draft) => (after.push("later"), draft)) }));
    const draft: CheckpointDraft = { sessionId: "s-1", trigger: "manual", description: "", data: {} };
    // Nothing returned (in-place) keeps the draft, as tapable's waterfall has it; null is no draft (tapable passed it on as the draft).
    const error = (await engine.waterfall("beforeCheckpoint", draft).catch((thrown: unknown) => thrown)) as ApexError;
    expect(error.message).toMatch(/^plugin forgets failed in beforeCheckpoint: it returned null, not the checkpoint draft/);
    expect(draft.data).toEqual({ seen: true });
    expect(error).toMatchObject({ code: "APEX_E_PLUGIN_FAILED", details: { plugin: "forgets", hook: "beforeCheckpoint" } });
    expect(error.hint).toContain("The plugin forgets");
    expect(after).toEqual([]);
    expect(seen.map((context) => context.error.message)).toEqual([error.message]);
    // The refused draft counts as that tap's failure in the timings (metrics), the others' calls as successes.
    const timing = (plugin: string) => engine.timings().find((entry) => entry.plugin === plugin && entry.hook === "beforeCheckpoint");
    expect(timing("forgets")).toMatchObject({ calls: 1, failures: 1 });
    expect(timing("in-place")).toMatchObject({ calls: 1, failures: 0 });
    expect(timing("later")).toBeUndefined();

    const { engine: checked } = testEngine();
    await checked.use(definePlugin({ name: "adds", apply: (apex) => apex.hooks.beforeCheckpoint.tapPromise("adds", async (d) => ({ ...d, data: { n: 1 } })) }));
    const refused = (await checked
      .waterfall("beforeCheckpoint", draft, (d) => {
        if (d.data.n === 1) throw new Error("n may not be 1");
      })
      .catch((thrown: unknown) => thrown)) as ApexError;
    expect(refused.message).toBe("plugin adds failed in beforeCheckpoint: n may not be 1");
  });

  it("tells a plugin the time its taps are given: its own plugin_timeouts entry, else plugin_timeout, else the engine's", async () => {
    const seen: Record<string, number> = {};
    const reader = (name: string) => definePlugin({ name, apply: (apex) => void (seen[name] = apex.tapTimeoutMs()) });
    const config = { session: { plugin_timeout: 90, plugin_timeouts: { slow: 600, free: 0 } } } as unknown as Config;
    const engine = new Engine({ config, tapTimeoutMs: 5_000, warn: () => undefined });
    for (const name of ["slow", "free", "other"]) await engine.use(reader(name));
    const { engine: plain } = testEngine(7_000);
    await plain.use(reader("plain"));
    expect(seen).toEqual({ slow: 600_000, free: 0, other: 90_000, plain: 7_000 });
  });

  it("runs taps in the order the plugins were applied; stage moves one earlier", async () => {
    const { engine } = testEngine();
    const order: string[] = [];
    const recorder = (name: string, stage?: number) =>
      definePlugin({
        name,
        apply(apex) {
          apex.hooks.onStart.tapPromise(stage === undefined ? name : { name, stage }, async () => {
            order.push(name);
          });
        },
      });
    for (const plugin of [recorder("c"), recorder("a"), recorder("b"), recorder("early", -10)]) await engine.use(plugin);
    await engine.fire("onStart", session());
    expect(order).toEqual(["early", "c", "a", "b"]);
  });

  it("an error in apply names the plugin", async () => {
    const { engine } = testEngine();
    await expect(engine.use(definePlugin({ name: "bad-apply", apply: () => Promise.reject(new Error("no config")) }))).rejects.toThrow(
      "plugin bad-apply failed in apply: no config",
    );
  });

  it("reports a failure to onError once, even when it crosses a plugin's trigger", async () => {
    const { engine } = testEngine();
    const seen: ErrorContext[] = [];
    await engine.use(errorRecorder(seen));
    await engine.use(
      definePlugin({
        name: "outer",
        apply(apex) {
          const inner = apex.defineHook("inner", new AsyncSeriesHook<[]>());
          apex.hooks.onStart.tapPromise("outer", () => inner.promise());
        },
      }),
    );
    await engine.use(
      definePlugin({
        name: "inner-tap",
        apply: (apex) =>
          apex.triggers.inner!.tapPromise("inner-tap", async () => {
            throw new Error("inner broke");
          }),
      }),
    );
    const error = (await engine.fire("onStart", session()).catch((thrown: unknown) => thrown)) as ApexError;
    // attributed to the plugin whose tap failed, not re-wrapped by the outer tap that fired the trigger
    expect(error.message).toBe("plugin inner-tap failed in inner: inner broke");
    expect(error.toJSON()).toMatchObject({ error: { details: { plugin: "inner-tap", hook: "inner" } } });
    expect(seen.map((context) => context.origin)).toEqual(["plugin:inner-tap"]);
  });

  it("taps by APEX's own code are named as such, not as plugins", async () => {
    const { engine } = testEngine();
    const seen: ErrorContext[] = [];
    await engine.use(errorRecorder(seen));
    engine.hooks.afterCheckpoint.tapPromise("session", async () => {
      throw new Error("audit trail full");
    });
    await expect(engine.fire("afterCheckpoint", { sessionId: "s", id: "c", sequence: 1, trigger: "manual" })).rejects.toMatchObject({
      code: "APEX_E_INTERNAL",
      message: "session failed in afterCheckpoint: audit trail full",
    });
    expect(seen[0]!.origin).toBe("core:session");
  });

  it("keeps per-plugin, per-hook timings", async () => {
    const { engine } = testEngine();
    await engine.use(
      definePlugin({
        name: "slowish",
        apply(apex) {
          apex.hooks.onPause.tapPromise("slowish", () => new Promise((resolve) => setTimeout(resolve, 20)));
        },
      }),
    );
    await engine.fire("onPause", session());
    await engine.fire("onPause", session());
    const timing = engine.timings().find((entry) => entry.plugin === "slowish" && entry.hook === "onPause")!;
    expect(timing).toMatchObject({ calls: 2, failures: 0 });
    expect(timing.totalMs).toBeGreaterThanOrEqual(30);
    expect(timing.maxMs).toBeGreaterThanOrEqual(15);
    expect(engine.timings().find((entry) => entry.plugin === "slowish" && entry.hook === "apply")).toMatchObject({ calls: 1 });
  });

  it("refuses a plugin whose dependency has not been applied", async () => {
    const { engine } = testEngine();
    await expect(engine.use(definePlugin({ name: "sharing", requires: ["git"], apply() {} }))).rejects.toMatchObject({
      code: "APEX_E_PLUGIN_DEPENDENCY",
      message: "The dependency 'git' of plugin 'sharing' is not enabled.",
    });
  });

  it("refuses to apply the same plugin twice", async () => {
    const { engine } = testEngine();
    const plugin = definePlugin({ name: "once", apply() {} });
    await engine.use(plugin);
    await expect(engine.use(plugin)).rejects.toMatchObject({ code: "APEX_E_PLUGIN_DUPLICATE" });
  });
});

describe("engine: extension points", () => {
  it("a plugin-defined trigger is tapped by other plugins and their taps are wrapped", async () => {
    const { engine } = testEngine();
    const ticks: number[] = [];
    await engine.use(
      definePlugin({
        name: "ticker",
        apply(apex) {
          const tick = apex.defineHook("tick", new AsyncSeriesHook<[{ count: number }]>(["tick"]));
          let count = 0;
          apex.hooks.beforeTask.tapPromise("ticker", async () => {
            await tick.promise({ count: ++count });
          });
        },
      }),
    );
    await engine.use(
      definePlugin({
        name: "listener",
        apply(apex) {
          apex.triggers.tick!.tapPromise("listener", async ({ count }: { count: number }) => {
            if (count === 3) throw new Error("three is too many");
            ticks.push(count);
          });
        },
      }),
    );
    await engine.fire("beforeTask", task);
    await engine.fire("beforeTask", task);
    // the failure is attributed to the listener, in the trigger, not to the ticker that fired it
    await expect(engine.fire("beforeTask", task)).rejects.toMatchObject({
      code: "APEX_E_PLUGIN_FAILED",
      message: "plugin listener failed in tick: three is too many",
    });
    expect(ticks).toEqual([1, 2]);
    expect(engine.tapsOf("listener")).toEqual(["tick"]);
    expect(engine.triggers.get("tick")?.plugin).toBe("ticker");
    await expect(engine.fireTrigger("tick", { count: 4 })).resolves.toBeUndefined();
    expect(ticks).toEqual([1, 2, 4]);
  });

  it("sync triggers keep sync taps, still wrapped", async () => {
    const { engine } = testEngine();
    let hook!: SyncHook<[string]>;
    await engine.use(
      definePlugin({
        name: "sync-owner",
        apply(apex) {
          hook = apex.defineHook("announce", new SyncHook<[string]>(["text"]));
        },
      }),
    );
    await engine.use(
      definePlugin({
        name: "sync-listener",
        apply(apex) {
          apex.triggers.announce!.tap("sync-listener", (text: string) => {
            if (text === "bad") throw new Error("bad text");
          });
        },
      }),
    );
    expect(() => hook.call("good")).not.toThrow();
    expect(() => hook.call("bad")).toThrow("plugin sync-listener failed in announce: bad text");
  });

  it("tapping an unknown trigger fails with a did-you-mean and how to fix the order", async () => {
    const { engine } = testEngine();
    await engine.use(definePlugin({ name: "ticker", apply: (apex) => void apex.defineHook("everyNTasks", new AsyncSeriesHook<[]>()) }));
    const error = (await engine
      .use(definePlugin({ name: "typo", apply: (apex) => apex.triggers.everyNTask!.tapPromise("typo", async () => {}) }))
      .catch((thrown: unknown) => thrown)) as ApexError;
    expect(error.message).toBe("plugin typo failed in apply: No plugin defines the trigger 'everyNTask'. Did you mean 'everyNTasks'?");
    expect(error.code).toBe("APEX_E_PLUGIN_DEPENDENCY");
    expect(error.hint).toContain("list it in the `requires` of plugin typo");
  });

  it("an unknown name on apex.hooks fails with the hook, a did-you-mean, APEX's hooks and apex.triggers, not a TypeError", async () => {
    const { engine } = testEngine();
    const error = (await engine
      .use(definePlugin({ name: "typo", apply: (apex) => (apex.hooks as unknown as Record<string, { tapPromise: Function }>).onPuase!.tapPromise("typo", async () => {}) }))
      .catch((thrown: unknown) => thrown)) as ApexError;
    // It was "Cannot read properties of undefined (reading 'tapPromise')".
    expect(error.message).toBe("plugin typo failed in apply: apex.hooks has no hook 'onPuase'. Did you mean 'onPause'?");
    expect(error).toMatchObject({ code: "APEX_E_PLUGIN_INVALID", details: { plugin: "typo", hook: "apply" } });
    expect(error.hint).toContain("APEX's hooks: onStart, beforeTask,");
    expect(error.hint).toContain("apex.triggers.<name>");
    // What still reads as before: the hooks it has, `in`, and a promise check (await apex.hooks).
    let seen: unknown[] = [];
    await engine.use(definePlugin({ name: "fine", apply: (apex) => void (seen = ["onStart" in apex.hooks, "onFoo" in apex.hooks, (apex.hooks as unknown as { then?: unknown }).then, typeof apex.hooks.onStart.tapPromise]) }));
    expect(seen).toEqual([true, false, undefined, "function"]);
  });

  it("refuses a trigger that shadows a core hook or another trigger", async () => {
    const { engine } = testEngine();
    await expect(engine.use(definePlugin({ name: "x", apply: (apex) => void apex.defineHook("onStart", new AsyncSeriesHook<[]>()) }))).rejects.toThrow(
      "plugin x failed in apply: The trigger 'onStart' is already defined by APEX.",
    );
  });

  it("backends are registered by name and looked up with a did-you-mean", async () => {
    const { engine } = testEngine();
    await engine.use(
      definePlugin({
        name: "mem",
        apply(apex) {
          apex.registerBackend("storage", "memory", (options) => ({ kind: "memory", options }));
        },
      }),
    );
    expect(engine.backend("storage", "memory").plugin).toBe("mem");
    await expect(engine.createBackend("storage", "memory", { size: 1 })).resolves.toEqual({ kind: "memory", options: { size: 1 } });
    expect(() => engine.backend("storage", "memroy")).toThrow("No storage backend named 'memroy'. Did you mean 'memory'?");
    expect(() => engine.backend("transport", "memory")).toThrow(expect.objectContaining({ code: "APEX_E_BACKEND_UNKNOWN" }));
    await expect(engine.use(definePlugin({ name: "mem2", apply: (apex) => apex.registerBackend("storage", "memory", () => ({})) }))).rejects.toThrow(
      "plugin mem2 failed in apply: The storage backend 'memory' is already registered by plugin mem.",
    );
  });

  it("commands run through the engine, errors name the plugin", async () => {
    const { engine } = testEngine();
    await engine.use(
      definePlugin({
        name: "greeter",
        apply(apex) {
          apex.registerCommand({
            name: "greet",
            description: "say hello",
            action: ({ options }) => {
              if (!options.name) throw new Error("--name is required");
              if (options.name === "nobody") throw new ApexError("APEX_E_NOT_FOUND", "No one called nobody.");
              return 0;
            },
          });
        },
      }),
    );
    const context = commandContext({ config: undefined, projectDir: undefined, print() {}, printJson() {} });
    await expect(engine.runCommand("greet", { args: [], options: { name: "x" } }, context)).resolves.toBe(0);
    await expect(engine.runCommand("greet", { args: [], options: {} }, context)).rejects.toThrow("plugin greeter failed in command greet: --name is required");
    // An ApexError is the command's answer (usage, not found…): it passes as it is.
    await expect(engine.runCommand("greet", { args: [], options: { name: "nobody" } }, context)).rejects.toMatchObject({
      code: "APEX_E_NOT_FOUND",
      message: "No one called nobody.",
    });
  });
});
