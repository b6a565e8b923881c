#!/usr/bin/env node
// Runs every command of the session-management flow, as a new user would, with the built CLI in
// a fresh git project that has no apex.config.yaml (the built-in defaults apply), and prints each
// command with its exit code. `npm run build` first. Usage: node scripts/flow-walkthrough.mjs [--keep]
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const bin = join(resolve(dirname(fileURLToPath(import.meta.url)), ".."), "bin/apex.js");
const dir = mkdtempSync(join(tmpdir(), "apex-flow-"));
const env = { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("APEX_"))), NO_COLOR: "1" };
const rows = [];

function run(args, { expectJson = false } = {}) {
  const result = spawnSync(process.execPath, [bin, ...args], { cwd: dir, env, encoding: "utf8", timeout: 120_000 });
  const status = result.status ?? -1;
  const shown = args.map((arg) => (/^[\w@%+=:,./*-]+$/.test(arg) ? arg : JSON.stringify(arg))).join(" ");
  const firstError = status === 0 ? "" : (result.stderr.split("\n").find((line) => line.startsWith("error")) ?? result.stderr.split("\n")[0] ?? "").slice(0, 110);
  rows.push({ status, command: `apex ${shown}`, note: firstError });
  if (!expectJson || status !== 0) return undefined;
  try {
    return JSON.parse(result.stdout);
  } catch {
    return undefined;
  }
}

function git(...args) {
  spawnSync("git", args, { cwd: dir, env: { ...env, GIT_AUTHOR_NAME: "flow", GIT_AUTHOR_EMAIL: "flow@example.com", GIT_COMMITTER_NAME: "flow", GIT_COMMITTER_EMAIL: "flow@example.com" } });
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

try {
  git("init", "-q");
  git("commit", "-q", "--allow-empty", "-m", "init");

  run(["config", "validate"]);
  run(["plugins", "list"]);
  const started = run(["start", "--task", "Implement user authentication", "--json"], { expectJson: true });
  const sid = started?.session_id ?? "unknown";
  run(["status"]);
  run(["memory", "show", "/sessions/current"]);
  await sleep(3000);
  run(["checkpoint", "create", "Before major refactoring"]);
  run(["checkpoint", "list"]);
  run(["memory", "query", `/sessions/${sid}/checkpoint-*`, "--keys"]);
  run(["memory", "show", `/sessions/${sid}/checkpoint-latest`]);
  const shown = run(["checkpoint", "show", "latest", "--json"], { expectJson: true });
  run(["memory", "show", `/sessions/${sid}/metrics`]);
  run(["pause"]);
  run(["resume"]);
  run(["task", "list"]);
  run(["agent", "list"]);
  run(["milestone"]);
  run(["logs", "-n", "5"]);
  run(["memory", "watch", "/sessions/current/**", "--timeout", "1"]);
  run(["memory", "set", "/projects/mem/notes", '{"todo": 3}']);
  run(["memory", "export", "/projects/mem"]);
  run(["session", "sync-git"]);
  run(["session", "metrics"]);
  run(["stop"]);
  run(["task", "list"]);
  run(["milestone"]);
  run(["agent", "list"]);
  run(["logs", "-n", "5"]);
  run(["checkpoint", "list"]);
  run(["start", "--continue", shown?.checkpoint_id ?? "last"]);
  run(["stop"]);
  run(["session", "list"]);
  run(["session", "history", "last"]);
  run(["session", "validate"]);
  run(["session", "repair", sid, "--dry-run"]);
  run(["session", "reconstruct", sid]);
  run(["session", "list"]);
  run(["session", "cleanup", "--dry-run"]);
  run(["session", "compress"]);
  run(["session", "archive", "--older-than", "30days", "--dry-run"]);
  run(["session", "report", "last", "-o", join(dir, "report.md")]);
  run(["checkpoint", "diff", shown?.checkpoint_id ?? "latest", "latest", "--session", sid]);
} finally {
  // Whatever still runs is this script's: end it through APEX.
  spawnSync(process.execPath, [bin, "stop", "--force"], { cwd: dir, env, encoding: "utf8", timeout: 60_000 });
  const width = Math.max(...rows.map((row) => row.command.length));
  process.stdout.write(`Fresh project ${dir}, no apex.config.yaml (the built-in defaults):\n`);
  for (const row of rows) process.stdout.write(`${String(row.status).padStart(4)}  ${row.command.padEnd(width)}${row.note ? `  ${row.note}` : ""}\n`);
  if (!process.argv.includes("--keep")) rmSync(dir, { recursive: true, force: true });
}
