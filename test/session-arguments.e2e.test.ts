// A command that takes its session as an argument (`session history [id]`, `session export <id>`) takes --session too, as
// every command does: through the built CLI, two different sessions named the two ways are a usage error before anything
// is written, the same one named both ways is fine, and the argument left out is --session's session.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Project } from "./fixtures/agents/harness.js";

const config = [
  "agents:",
  "  worker:",
  "    command: sh",
  `    args: ["-c", "while true; do sleep 0.5; done"]`,
  "plugins:",
  "  checkpoint: {}",
  "  archive: {}",
  "  retention: {}",
  "  compression: {}",
  "  history: {}",
  "",
].join("\n");

let project: Project;
let first: string;
let second: string;

beforeAll(() => {
  project = new Project(config, "apex-session-args-");
  first = project.start(["--task", "first"]).session_id;
  expect(project.apex(["stop"]).status).toBe(0);
  second = project.start(["--task", "second"]).session_id;
  expect(project.apex(["stop"]).status).toBe(0);
}, 60_000);

afterAll(() => project?.cleanup());

async function run(lines: string[][]) {
  return Promise.all(lines.map(async (args) => ({ args: args.join(" "), ...(await project.apexAsync(args).done) })));
}

describe("a session argument and --session", () => {
  it("naming two sessions is APEX_E_USAGE (exit 2) for every command that takes one, and nothing is written", async () => {
    const bundle = join(project.dir, "never.apexbundle");
    const lines = [
      ["session", "history", first.slice(0, 8)],
      ["session", "validate", first.slice(0, 8)],
      ["session", "cleanup", first.slice(0, 8)],
      ["session", "archive", first.slice(0, 8)],
      ["session", "export", first.slice(0, 8), "-o", bundle],
      ["session", "report", first],
    ].map((line) => [...line, "--session", second.slice(0, 8)]);
    for (const got of await run(lines)) {
      expect(got.status, `${got.args}: ${got.stderr}`).toBe(2);
      expect(got.stdout, got.args).toBe("");
      expect(got.stderr, got.args).toMatch(/^error\[APEX_E_USAGE\]: `apex session [a-z]+` was given two sessions: [0-9a-f-]+ as its ID and [0-9a-f-]+ with --session\.\n/);
      expect(got.stderr, got.args).toContain(second);
    }
    expect(existsSync(bundle)).toBe(false);
    // The first session was not archived: both are listed as before.
    const list = JSON.parse(project.apex(["session", "list", "--json"]).stdout) as Array<{ session_id: string }>;
    expect(list.map((session) => session.session_id).sort()).toEqual([first, second].sort());
    // --session before the command words, and --json: the error as JSON on stderr.
    const json = project.apex(["--session", second, "session", "history", first.slice(0, 8), "--json"]);
    expect(json.status).toBe(2);
    expect(json.stdout).toBe("");
    expect(JSON.parse(json.stderr).error).toMatchObject({ code: "APEX_E_USAGE", exitCode: 2, details: { argument: first.slice(0, 8), session: second } });
  });

  it("the same session named both ways (an id, a prefix, `last`) is the one the command acts on", async () => {
    const got = await run([
      ["session", "history", first.slice(0, 8), "--session", first, "--json"],
      ["session", "history", first, "--session", first.slice(0, 6), "--json"],
      ["session", "history", "last", "--session", first, "--json"],
      ["session", "validate", first.slice(0, 8), "--session", first.slice(0, 5), "--json"],
    ]);
    for (const { args, status, stdout, stderr } of got) {
      expect(status, `${args}: ${stderr}`).toBe(0);
      expect((JSON.parse(stdout) as { session_id: string }).session_id, args).toBe(first);
    }
  });

  it("the argument left out is --session's session, not every session (session cleanup, session validate)", async () => {
    const [cleanup, validate] = await run([
      ["session", "cleanup", "--dry-run", "--json", "--session", first.slice(0, 8)],
      ["--session", second, "session", "validate", "--json"],
    ]);
    expect(cleanup!.status, cleanup!.stderr).toBe(0);
    expect((JSON.parse(cleanup!.stdout) as { sessions: Array<{ session_id: string }> }).sessions.map((session) => session.session_id)).toEqual([first]);
    expect(validate!.status, validate!.stderr).toBe(0);
    expect((JSON.parse(validate!.stdout) as { session_id: string }).session_id).toBe(second);
  });

  it("--session with no value (last on the line, or before another option) is a usage error, not a session named --json", async () => {
    // Before, `status --session --json` looked for a session "--json" (exit 3), `status --session` was an unknown option.
    for (const got of await run([["status", "--session", "--json"], ["session", "history", "--json", "--session"], ["status", "--session"], ["memory", "show", "/x", "--session"]])) {
      expect(got.status, got.args).toBe(2);
      expect(got.stdout, got.args).toBe("");
      if (got.args.includes("--json")) expect(JSON.parse(got.stderr).error, got.args).toMatchObject({ code: "APEX_E_USAGE", message: "option '--session <ID|NAME>' argument missing." });
      else expect(got.stderr, got.args).toMatch(/^error\[APEX_E_USAGE\]: option '--session <ID\|NAME>' argument missing\.\n/);
    }
  });

  it("--session given twice must name one session: two are APEX_E_USAGE (exit 2), not an unknown option or the first silently", async () => {
    // Before, `status --session A --session B` was `unknown option '--session'`, and `checkpoint list` took A and left B unread.
    const [status, list, same] = await run([
      ["status", "--session", first.slice(0, 8), "--session", second.slice(0, 8), "--json"],
      ["checkpoint", "list", "--session", first, "--session=" + second],
      ["status", "--session", first.slice(0, 8), "--session=" + first.toUpperCase(), "--json"],
    ]);
    expect(status!.status).toBe(2);
    expect(JSON.parse(status!.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: `--session was given twice, naming two sessions: ${first.slice(0, 8)} and ${second.slice(0, 8)}.` });
    expect(list!.status).toBe(2);
    expect(list!.stdout).toBe("");
    expect(list!.stderr).toMatch(/^error\[APEX_E_USAGE\]: --session was given twice, naming two sessions: /);
    expect(same!.status, same!.stderr).toBe(0);
    expect((JSON.parse(same!.stdout) as { session: { session_id: string } }).session.session_id).toBe(first);
  });

  it("a required session argument left out is --session's (session export, merge, share): not missing", async () => {
    // Before, `session export --session S -o F` said `missing required argument 'id'`, and `session share --session S USER` read USER as the session.
    const bundle = join(project.dir, "first.apexbundle");
    const [exported, merged, shared] = await run([
      ["session", "export", "--session", first.slice(0, 8), "-o", bundle, "--json"],
      ["session", "merge", second, "--session", first.slice(0, 8), "--dry-run", "--json"],
      ["--session", first.slice(0, 8), "session", "share", "alice", "--json"],
    ]);
    expect(exported!.status, exported!.stderr).toBe(0);
    expect(JSON.parse(exported!.stdout)).toMatchObject({ session_id: first, file: bundle });
    expect(existsSync(bundle)).toBe(true);
    expect(merged!.status, merged!.stderr).toBe(0);
    expect(JSON.parse(merged!.stdout)).toMatchObject({ source: { session_id: second }, destination: { session_id: first }, dry_run: true });
    expect(shared!.status, shared!.stderr).toBe(0);
    expect(JSON.parse(shared!.stdout)).toMatchObject({ session_id: first, user: "alice" });
    expect(project.apex(["session", "unshare", "alice", "--session", first]).status).toBe(0);
    // Its hint names that session (it said `session share current USER`, which shares another one, or none).
    const none = project.apex(["session", "shares", "--session", first.slice(0, 8)]);
    expect(none.stdout).toBe(`The session is not shared with anyone. Share it: apex session share ${first} USER --role viewer\n`);
    // What is still missing is, as without --session; the session named twice is two sessions, as for an optional argument.
    const [missing, twice] = await run([
      ["session", "share", "--session", first, "--json"],
      ["session", "merge", second, second, "--session", first, "--dry-run"],
    ]);
    expect(missing!.status).toBe(2);
    expect(JSON.parse(missing!.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: "missing required argument 'user'." });
    expect(twice!.status).toBe(2);
    expect(twice!.stderr).toMatch(/^error\[APEX_E_USAGE\]: `apex session merge` was given two sessions: [0-9a-f-]+ as its DST and [0-9a-f-]+ with --session\.\n/);
    // --help with --session on the line shows the usage as it is.
    expect(project.apex(["session", "export", "--help", "--session", first]).stdout).toMatch(/^Usage: apex session export \[options\] <id>\n/);
  });

  it("a checkpoint of another session than --session's (`S/latest`, its id) is APEX_E_USAGE (exit 2), nothing written; of the same session it is the one", async () => {
    // Before, the reference won silently: `checkpoint show S/latest --session T` showed S's, `delete ID --session T` deleted S's.
    const listed = () => project.apex(["checkpoint", "list", "--session", first, "--json"]).stdout;
    const before = listed();
    const checkpoint = (JSON.parse(before) as { items: Array<{ id: string; pinned: boolean }> }).items[0]!;
    const [f, s] = [first.slice(0, 8), second.slice(0, 8)];
    const lines = [
      ["checkpoint", "show", `${f}/latest`],
      ["checkpoint", "pin", `${f}/checkpoint-001`],
      ["checkpoint", "delete", checkpoint.id.slice(0, 8), "--force"],
      ["checkpoint", "diff", "latest", `${f.toUpperCase()}/LATEST`],
      ["session", "branch", `${f}/latest`, "never-made"],
    ].map((line) => [...line, "--session", s]);
    for (const got of await run(lines)) {
      expect(got.status, `${got.args}: ${got.stderr}`).toBe(2);
      expect(got.stdout, got.args).toBe("");
      expect(got.stderr, got.args).toMatch(new RegExp(`^error\\[APEX_E_USAGE\\]: \`apex [a-z ]+\` was given two sessions: \\S+ \\(its [A-Z]+\\) is a checkpoint of session ${first}, and --session names ${second}\\.\n`));
    }
    expect(listed()).toBe(before);
    expect(project.apex(["session", "list", "--json"]).stdout).not.toContain("never-made");
    const json = project.apex(["checkpoint", "show", `${f}/latest`, "--session", s, "--json"]);
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stderr).error).toMatchObject({ code: "APEX_E_USAGE", details: { argument: `${f}/latest`, checkpoint_session: first, session: second } });
    // The same session both ways, or a checkpoint name of --session's session: that checkpoint.
    for (const args of [["checkpoint", "show", `${f}/latest`, "--session", first], ["checkpoint", "show", checkpoint.id, "--session", f], ["--session", f, "checkpoint", "show", "checkpoint-001"]]) {
      const got = project.apex([...args, "--json"]);
      expect(got.status, `${args.join(" ")}: ${got.stderr}`).toBe(0);
      expect((JSON.parse(got.stdout) as { checkpoint_id: string }).checkpoint_id).toBe(checkpoint.id);
    }
  });

  it("an argument or a --session that names no session is that error (APEX_E_NO_SESSION, exit 3), not two sessions", async () => {
    // Before, `session history abc --session last` said it was given two sessions, abc and the last one.
    const [unknown, flag, json] = await run([
      ["session", "history", "abc", "--session", "last"],
      ["session", "validate", first.slice(0, 8), "--session", "no-such-session"],
      ["session", "cleanup", "zzzz", "--dry-run", "--session", second, "--json"],
    ]);
    expect(unknown!.status, unknown!.stderr).toBe(3);
    expect(unknown!.stderr).toMatch(/^error\[APEX_E_NO_SESSION\]: No session "abc" in this project\.\n/);
    expect(flag!.status, flag!.stderr).toBe(3);
    expect(flag!.stderr).toMatch(/^error\[APEX_E_NO_SESSION\]: No session "no-such-session" in this project\.\n/);
    expect(json!.status).toBe(3);
    expect(json!.stdout).toBe("");
    expect(JSON.parse(json!.stderr).error).toMatchObject({ code: "APEX_E_NO_SESSION", message: 'No session "zzzz" in this project.' });
    // A session's name is read whatever its case, as --session reads it: the same session both ways.
    const named = project.apex(["session", "branch", `${first.slice(0, 8)}/latest`, "Args-Branch", "--json"]);
    expect(named.status, named.stderr).toBe(0);
    const branch = (JSON.parse(named.stdout) as { session_id: string }).session_id;
    const same = project.apex(["session", "validate", "args-branch", "--session", "ARGS-BRANCH", "--json"]);
    expect(same.status, same.stderr).toBe(0);
    expect((JSON.parse(same.stdout) as { session_id: string }).session_id).toBe(branch);
  });

  it("`current` as the argument with --session naming an ended session says that session has ended, while another session runs", async () => {
    // Before: "No session is current in this project.", with a session running.
    const running = project.start(["--task", "third"]).session_id;
    try {
      const [validate, history, json] = await run([
        ["session", "validate", "current", "--session", first.slice(0, 8)],
        ["session", "history", "current", "--session", first],
        ["session", "validate", "current", "--session", first.slice(0, 8), "--json"],
      ]);
      for (const [got, line] of [[validate!, "validate"], [history!, "history"]] as const) {
        expect(got.status, got.stderr).toBe(3);
        expect(got.stdout).toBe("");
        expect(got.stderr).toBe(
          `error[APEX_E_NO_SESSION]: Session ${first.slice(0, 8)}, which --session names, has ended: \`current\` names it only while it runs.\n` +
            `  hint: Name it as it is (\`apex session ${line} ${first.slice(0, 8)}\`), or give \`last\`; \`apex session list\` shows the sessions that run.\n`,
        );
      }
      expect(JSON.parse(json!.stderr).error).toMatchObject({ code: "APEX_E_NO_SESSION", details: { session_id: first } });
      // The running one is `current` with --session naming it.
      const live = project.apex(["session", "validate", "current", "--session", running.slice(0, 8), "--json"]);
      expect(live.status, live.stderr).toBe(0);
      expect((JSON.parse(live.stdout) as { session_id: string }).session_id).toBe(running);
    } finally {
      expect(project.apex(["stop"]).status).toBe(0);
    }
  });

  it("config, plugins, store, session list and tree, backup, session import and unarchive refuse --session (exit 2), which they would ignore", async () => {
    // Before, each ran as if --session had not been given (`config show --session S` printed the config, `session list` every session).
    const lines = [["config", "show"], ["config", "validate"], ["plugins", "list"], ["store", "projects"], ["session", "list"], ["session", "tree"], ["backup"], ["session", "import", "x.apexbundle"], ["session", "unarchive", "x"]];
    for (const got of await run(lines.map((line) => [...line, "--session", first.slice(0, 8)]))) {
      expect(got.status, got.args).toBe(2);
      expect(got.stdout, got.args).toBe("");
      const command = got.args.replace(/ (x\.apexbundle|x)?\s*--session.*$/, "");
      expect(got.stderr, got.args).toMatch(new RegExp(`^error\\[APEX_E_USAGE\\]: --session ${first.slice(0, 8)} does not work with \`apex ${command}\`: .+\\.\n  hint: Leave --session out\\.\n$`));
    }
    // Before the command words, whatever the value names, and with --json.
    const json = project.apex(["--session", "no-such-session", "config", "show", "--json"]);
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: expect.stringContaining("does not work with `apex config show`") });
    // Their help says so, and is shown with --session on the line too.
    const help = project.apex(["session", "list", "--help", "--session", first]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("--session is refused here: apex session list lists every session of the project.");
    expect(project.apex(["config", "show", "--help"]).stdout).toContain("--session is refused here");
  });

  it("apex start: --session without --continue, or naming another session than --continue, is refused; --continue CHECKPOINT is --session's; a milestone is recorded in --session's", async () => {
    // Before, `start --task t --session S` started a new session, `--continue last --session S` continued another one, and
    // `--continue checkpoint-001 --session S` rolled the session that ended last back to its own checkpoint-001.
    const [fresh, other] = await run([
      ["start", "--task", "never", "--session", first.slice(0, 8)],
      ["start", "--continue", "last", "--session", first.slice(0, 8), "--json"],
    ]);
    expect(fresh!.status).toBe(2);
    expect(fresh!.stderr).toMatch(/^error\[APEX_E_USAGE\]: --session [0-9a-f-]+ does not work with `apex start` without --continue: it starts a new session\.\n/);
    expect(other!.status).toBe(2);
    expect(JSON.parse(other!.stderr).error).toMatchObject({ code: "APEX_E_USAGE", details: { continue: "last", session: first } });
    expect(project.status().session?.status).not.toBe("active");
    const checkpoint = (JSON.parse(project.apex(["checkpoint", "list", "--session", first, "--oldest", "--json"]).stdout) as { items: Array<{ id: string; name: string }> }).items[0]!;
    expect(checkpoint.name).toBe("checkpoint-001");
    const started = project.apex(["start", "--continue", "checkpoint-001", "--session", first.slice(0, 8), "--json"]);
    expect(started.status, started.stderr).toBe(0);
    expect(JSON.parse(started.stdout)).toMatchObject({ session_id: first, restored_from: checkpoint.id });
    // A milestone is recorded in --session's session while it runs, as a task is (it was refused: --session only listed them);
    // in an ended one, refused as `task add` is (exit 4), nothing recorded.
    const [recorded, ended] = await run([
      ["milestone", "reached", "--session", first.slice(0, 8), "--json"],
      ["milestone", "never", "--session", second, "--json"],
    ]);
    expect(recorded!.status, recorded!.stderr).toBe(0);
    expect(JSON.parse(recorded!.stdout)).toMatchObject({ text: "reached" });
    expect(ended!.status).toBe(4);
    expect(JSON.parse(ended!.stderr).error).toMatchObject({ code: "APEX_E_SESSION_STATE" });
    expect((JSON.parse(project.apex(["milestone", "--session", first, "--json"]).stdout) as Array<{ text: string }>).map((item) => item.text)).toEqual(["reached"]);
    expect(project.apex(["milestone", "--session", second, "--json"]).stdout).not.toContain("never");
    expect(project.apex(["stop"]).status).toBe(0);
  });
});
