// Status benchmark (issue: sessions): `apex status` of a session with 10 agents and 1000
// tasks, median CLI wall time within 2× of `node -e 0` measured in the same run.
import { spawnSync } from "node:child_process";
import { connect } from "node:net";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { APEX, compare, printTable, tempProject } from "./lib.mjs";

const AGENTS = 10;
const TASKS = 1000;

const work = tempProject("apex-bench-status-");
const env = { ...process.env, NO_COLOR: "1" };
const apex = (...args) => spawnSync(process.execPath, [APEX, ...args], { cwd: work.dir, env, encoding: "utf8" });
let started = false;
try {
  const agents = Array.from({ length: AGENTS }, (_, i) => `  a${i}:\n    command: sh\n    args: ["-c", "while true; do sleep 1; done"]\n`).join("");
  writeFileSync(join(work.dir, "apex.config.yaml"), `agents:\n${agents}plugins: {}\n`);
  const start = apex("start", "--task", "status benchmark", "--json");
  if (start.status !== 0) throw new Error(`apex start failed: ${start.stderr}`);
  started = true;
  const { socket, supervisor_pid: supervisorPid } = JSON.parse(start.stdout);
  await addTasks(socket, TASKS);
  const check = JSON.parse(apex("status", "--json").stdout);
  if (check.tasks.total !== TASKS || check.agents.length !== AGENTS) throw new Error(`unexpected status: ${JSON.stringify(check.tasks)}`);

  const row = compare(
    `status (${AGENTS} agents, ${TASKS} tasks)`,
    [process.execPath, [APEX, "status"], { cwd: work.dir, env }],
    [process.execPath, ["-e", "0"], { cwd: work.dir }],
    21,
  );
  const json = compare(
    `status --json (${AGENTS} agents, ${TASKS} tasks)`,
    [process.execPath, [APEX, "status", "--json"], { cwd: work.dir, env }],
    [process.execPath, ["-e", "0"], { cwd: work.dir }],
    21,
  );
  // The same session with its supervisor killed: status then reads the store itself.
  process.kill(supervisorPid, "SIGKILL");
  for (let i = 0; i < 100 && JSON.parse(apex("status", "--json").stdout).session.status !== "interrupted"; i++) await new Promise((r) => setTimeout(r, 50));
  const offline = compare(
    `status, supervisor killed (store read here)`,
    [process.execPath, [APEX, "status"], { cwd: work.dir, env }],
    [process.execPath, ["-e", "0"], { cwd: work.dir }],
    21,
  );
  const ok = printTable("apex status", [
    { ...row, target: "≤ 2× node -e 0", pass: row.ratio <= 2 },
    { ...json, target: "≤ 2× node -e 0", pass: json.ratio <= 2 },
    { ...offline, target: "(no target)", pass: true },
  ]);
  process.exitCode = ok ? 0 : 1;
} finally {
  if (started) apex("stop", "--force");
  killLeftovers(work.dir);
  work.cleanup();
}

/** Adds tasks over the control socket, pipelined on one connection. */
function addTasks(socketPath, count) {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buffer = "";
    let answered = 0;
    socket.setEncoding("utf8");
    socket.on("connect", () => {
      let lines = "";
      for (let i = 1; i <= count; i++) lines += `${JSON.stringify({ id: i, method: "task.add", params: { title: `task ${i}`, actor: "user:bench" } })}\n`;
      socket.write(lines);
    });
    socket.on("data", (chunk) => {
      buffer += chunk;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const reply = JSON.parse(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        if (reply.error) return reject(new Error(reply.error.message));
        if (++answered === count) {
          socket.end();
          resolve();
        }
      }
    });
    socket.on("error", reject);
  });
}

/** If stop failed, end the supervisor and agent groups the session recorded (by pid, never by name). */
function killLeftovers(dir) {
  try {
    const runtime = JSON.parse(readFileSync(join(dir, ".apex", "supervisor.json"), "utf8"));
    process.kill(runtime.pid, "SIGKILL");
  } catch {
    // stopped cleanly
  }
}
