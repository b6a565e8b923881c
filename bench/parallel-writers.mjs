// Twenty `apex memory set` loops on one store with no supervisor, each write a fresh process,
// as twenty shell loops would run them: counts the writes that fail, how they fail (a message,
// a signal), and checks every acknowledged write is in the store afterwards.
// Usage: node bench/parallel-writers.mjs [writers=20] [writes=30] [rounds=1] [--store]
// --store: each write is a fresh node process that opens the store (dist/core/store/open.js),
// sets one key and closes it, without the rest of the CLI: the same opens, at a third the cost.
// What it measures is rare and load-dependent: before the last-commit guard
// (plugins/lmdb/last-commit.ts) 16 of 6,000 acknowledged writes were lost on a loaded 2-core
// machine (20 30 10 --store), after it 0 of 8,400; run several rounds.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { APEX } from "./lib.mjs";

const args = process.argv.slice(2).filter((arg) => arg !== "--store");
const STORE_ONLY = process.argv.includes("--store");
const WRITERS = Number(args[0] ?? 20);
const WRITES = Number(args[1] ?? 30);
const ROUNDS = Number(args[2] ?? 1);
const OPEN = new URL("../dist/core/store/open.js", import.meta.url).href;
// Each step names itself when it fails, so that a failed open tells apart from a failed write.
const ONE_WRITE = [
  `const { openStore } = await import(${JSON.stringify(OPEN)});`,
  "const step = async (name, fn) => { try { return await fn(); } catch (error) { process.stderr.write(`${name} failed: ${String(error?.message ?? error).replace(/\\s+/g, ' ')}\\n`); process.exit(1); } };",
  "const store = await step('open', () => openStore(process.argv[1]));",
  "await step('write', () => store.set(process.argv[2], Number(process.argv[3])));",
  "await step('close', () => store.close());",
].join(" ");
const env = { ...process.env, NO_COLOR: "1" };
for (const key of Object.keys(env)) if (key.startsWith("APEX_")) delete env[key];

function run(cwd, args) {
  return new Promise((resolve) => {
    const argv = STORE_ONLY ? ["--input-type=module", "-e", ONE_WRITE, join(cwd, ".apex"), args[2], args[3]] : [APEX, ...args];
    const child = spawn(process.execPath, argv, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk));
    child.stdout.resume();
    child.on("close", (code, signal) => resolve({ code, signal, stderr }));
  });
}

let total = 0;
const failures = [];
for (let round = 0; round < ROUNDS; round++) {
  const dir = mkdtempSync(join(tmpdir(), "apex-writers-"));
  const acknowledged = [];
  await Promise.all(
    Array.from({ length: WRITERS }, async (_, id) => {
      for (let i = 0; i < WRITES; i++) {
        const result = await run(dir, ["memory", "set", `/w/${id}/${i}`, String(i)]);
        total += 1;
        if (result.code === 0) acknowledged.push(`/w/${id}/${i}`);
        else failures.push({ round, write: `/w/${id}/${i}`, code: result.code, signal: result.signal, stderr: result.stderr.trim().split("\n").join(" | ") });
      }
    }),
  );
  const exported = spawnSync(process.execPath, [APEX, "memory", "export", "/w"], { cwd: dir, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  const stored = exported.status === 0 ? Object.keys(JSON.parse(exported.stdout)) : [];
  const missing = acknowledged.filter((path) => !stored.includes(path));
  console.log(`round ${round + 1}: ${WRITERS * WRITES - acknowledged.length} of ${WRITERS * WRITES} writes failed; ${missing.length} acknowledged writes missing${missing.length > 0 ? ` (${missing.join(", ")})` : ""}${exported.status === 0 ? "" : ` (export failed: ${exported.stderr.trim()})`}`);
  rmSync(dir, { recursive: true, force: true });
}
console.log(`${failures.length} of ${total} writes failed`);
for (const failure of failures) console.log(`  ${failure.write} (round ${failure.round + 1}): exit ${failure.code}${failure.signal ? `, ${failure.signal}` : ""}: ${failure.stderr}`);
