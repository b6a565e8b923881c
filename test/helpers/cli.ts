import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { expect } from "vitest";
import { registerDir } from "../support/process-registry.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const APEX_BIN = join(REPO_ROOT, "bin/apex.js");

/**
 * Environment in which bin/apex.js runs every command line through the full CLI (commander's
 * program, dist/cli/main.js), `apex status` and `apex status --json` too, which otherwise take
 * their fast path (dist/cli/status-main.js): the two are compared on the same command line. From
 * the CLI's modules (APEX_BUNDLE=0), which full-cli.mjs's hook sees load: the fast path's bundle
 * (dist/bundle/status.cjs) is a script no hook of ES modules is asked for.
 */
export const FULL_CLI_ENV: NodeJS.ProcessEnv = {
  NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${pathToFileURL(join(REPO_ROOT, "test/helpers/full-cli.mjs")).href}`.trim(),
  APEX_BUNDLE: "0",
};

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs the built `apex` CLI as a user would, in `cwd`. */
export function runApex(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; input?: string; timeout?: number }): CliResult {
  const spawnOptions: SpawnSyncOptions = {
    cwd: options.cwd,
    env: { ...cleanEnv(), NO_COLOR: "1", ...options.env },
    encoding: "utf8",
    timeout: options.timeout ?? 60_000,
    maxBuffer: 256 * 1024 * 1024,
  };
  if (options.input !== undefined) spawnOptions.input = options.input;
  const result = spawnSync(process.execPath, [APEX_BIN, ...args], spawnOptions);
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** A command's JSON output, parsed, once it exited 0 (else the test fails with its stderr). */
export function json<T = Record<string, unknown>>(result: { status: number | null; stdout: string; stderr: string }): T {
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as T;
}

/**
 * `apex ARGS` run in DIR with its stdout on /dev/full: the failed write is reported as every error
 * is (APEX_E_DISK_FULL, exit 1; JSON on stderr with --json), not as Node's stack trace.
 */
export function expectDiskFullReport(dir: string, args: string[]): void {
  const full = openSync("/dev/full", "w");
  try {
    const result = spawnSync(process.execPath, [APEX_BIN, ...args], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1" }, stdio: ["ignore", full, "pipe"], encoding: "utf8", timeout: 20_000 });
    expect(result.status, result.stderr).toBe(1);
    const message = "Cannot write the output to stdout: the disk is full (ENOSPC); the output is incomplete.";
    if (args.includes("--json")) expect(JSON.parse(result.stderr)).toEqual({ error: expect.objectContaining({ code: "APEX_E_DISK_FULL", message, exitCode: 1 }) });
    else expect(result.stderr).toBe(`error[APEX_E_DISK_FULL]: ${message}\n  hint: Free space where the output goes (or send it elsewhere) and run the command again.\n`);
  } finally {
    closeSync(full);
  }
}

/** The environment without APEX variables inherited from the developer's shell. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("APEX_")) env[key] = value;
  return env;
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = "apex-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  registerDir(dir);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }) };
}

/** A tiny seeded PRNG (mulberry32), so that randomized tests reproduce. */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
