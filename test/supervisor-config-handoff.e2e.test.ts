// `apex start` hands the config it loaded and checked to the supervisor it spawns: the supervisor
// neither reads apex.config.yaml again nor loads the yaml package (~30 ms of its start-up CPU).
// Nor does it load the uuid package for the session's id.
// Observed honestly: every module each process loads (ESM resolutions and CommonJS loads) is
// recorded by a preload given through NODE_OPTIONS, which the supervisor inherits.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project } from "./fixtures/agents/harness.js";

const RECORDER = `import Module, { register } from "node:module";
import { appendFileSync } from "node:fs";
const record = (what) => appendFileSync(process.env.MODULE_RECORD, process.pid + " " + what + "\\n");
register("data:text/javascript," + encodeURIComponent(\`import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) { const found = await next(specifier, context); appendFileSync(process.env.MODULE_RECORD, process.pid + " " + found.url + "\\\\n"); return found; }\`));
const load = Module._load;
Module._load = function (request, ...rest) { record(request); return load.call(this, request, ...rest); };
`;

describe("the supervisor takes the config apex start checked", () => {
  // The modules (APEX_BUNDLE=0), each a file, which say what code runs: the supervisor's bundle holds them all, each run when first imported.
  it("loads no yaml nor code the start does not run, leaves no handed-over file, and runs the agents the config names", () => {
    const project = new Project('agents:\n  worker:\n    command: sleep\n    args: ["1000"]\n');
    writeFileSync(join(project.dir, "record.mjs"), RECORDER);
    const record = join(project.dir, "modules.txt");
    const env = { NODE_OPTIONS: `--import ${join(project.dir, "record.mjs")}`, MODULE_RECORD: record, APEX_BUNDLE: "0" };
    const started = project.apex(["start", "--task", "t", "--json"], { env });
    expect(started.status, started.stderr).toBe(0);
    const pid = (JSON.parse(started.stdout) as { supervisor_pid: number }).supervisor_pid;
    const lines = readFileSync(record, "utf8").split("\n");
    // The recorder works: the CLI loaded yaml to parse the file, and the supervisor loaded its own modules.
    expect(lines.filter((line) => !line.startsWith(`${pid} `)).some((line) => /yaml/.test(line))).toBe(true);
    const supervisor = lines.filter((line) => line.startsWith(`${pid} `));
    expect(supervisor.some((line) => line.includes("supervisor.js"))).toBe(true);
    expect(supervisor.filter((line) => /yaml|config\/load\.js/.test(line))).toEqual([]);
    // Nor the uuid package (~20 ms to load, its 20 modules): node:crypto's randomUUID makes the session's id.
    expect(supervisor.filter((line) => /node_modules\/uuid\//.test(line))).toEqual([]);
    // Nor code that only other commands, or later calls, run (docs/architecture.md, Start-up time): the
    // built-in plugins' schemas and validators (the CLI checked the options), restore (with its check that
    // a checkpoint stays inside its session), validation and LangGraph code of the checkpoint plugin (its
    // LangGraph index too: deleting a checkpoint uses it, writing one does not), its merge bases and the
    // checkpoint records `checkpoint show` prints, the git plugin's hooks and commands, archive bundles,
    // retention's cleanup (a new session's first checkpoint is its latest, which it always keeps), the
    // config checks' code, and tapable's hook classes that nothing defines (its index loads all twelve).
    const unneeded = /tapable\/lib\/index\.js|AsyncParallel|config\/(validate|explain|describe)\.js|validators\/|checkpoint\/(langgraph|langgraph-index|contained|merge-base|record|validate|validate-process|recover|plugin-list|dependents)\.js|git\/(hooks|passthrough|sync|compare|checkout|fire)\.js|archive\/bundle\.js|retention\/cleanup\.js/;
    expect(supervisor.filter((line) => unneeded.test(line))).toEqual([]);
    expect(readdirSync(project.storeDir).filter((name) => name.startsWith("supervisor-config-"))).toEqual([]);
    const status = JSON.parse(project.apex(["status", "--json"]).stdout) as { agents: { name: string; status: string }[] };
    expect(status.agents.map((agent) => [agent.name, agent.status])).toEqual([["worker", "running"]]);
    expect(project.apex(["stop"]).status).toBe(0);
  });

  it("runs from its bundle (dist/bundle/supervisor.cjs, through the loader), which loads neither yaml nor uuid either", () => {
    const project = new Project('agents:\n  worker:\n    command: sleep\n    args: ["1000"]\n');
    writeFileSync(join(project.dir, "record.mjs"), RECORDER);
    const record = join(project.dir, "modules.txt");
    const started = project.apex(["start", "--task", "t", "--json"], { env: { NODE_OPTIONS: `--import ${join(project.dir, "record.mjs")}`, MODULE_RECORD: record } });
    expect(started.status, started.stderr).toBe(0);
    const pid = (JSON.parse(started.stdout) as { supervisor_pid: number }).supervisor_pid;
    const supervisor = readFileSync(record, "utf8").split("\n").filter((line) => line.startsWith(`${pid} `));
    expect(supervisor.some((line) => line.endsWith("/dist/cli/bundle.cjs"))).toBe(true);
    // None of APEX's modules from its own file: the bundle holds them.
    expect(supervisor.filter((line) => /\/dist\/(core|plugins|cli)\/.*\.js$/.test(line))).toEqual([]);
    expect(supervisor.filter((line) => /yaml|node_modules\/uuid\//.test(line))).toEqual([]);
    expect(project.apex(["stop"]).status).toBe(0);
  });
});
