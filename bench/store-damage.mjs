// Damage to the store file, measured: one random byte changed in `store.mdb` (25 times, fixed
// seed), then what the user sees through the real CLI:
//   - reads (`memory export`, `checkpoint list`): right answer, a clear error (error[APEX_E_…]
//     with exit 1), a wrong answer without a word, or a crash (SIGSEGV/SIGBUS); after a crash,
//     what the next command does after a read died (names the damage or crashes again);
//   - `session validate`: does it find the damage (a flip that changed what reads return, or
//     that LMDB itself trips on, must be found; a flip in an unused page changes nothing);
//   - `session repair`: afterwards, does validate pass and do reads work, or did repair say
//     exactly what it could not save?
// Usage: node bench/store-damage.mjs [flips=25] [seed=20261202]
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { APEX, mulberry32 } from "./lib.mjs";

const FLIPS = Number(process.argv[2] ?? 25);
const SEED = Number(process.argv[3] ?? 20261202);


const env = { ...process.env, NO_COLOR: "1" };
for (const key of Object.keys(env)) if (key.startsWith("APEX_")) delete env[key];

function apex(cwd, args, input) {
  const result = spawnSync(process.execPath, [APEX, ...args], { cwd, env, encoding: "utf8", input, timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  return { status: result.status, signal: result.signal, stdout: result.stdout ?? "", stderr: result.stderr ?? "" };
}

function must(cwd, args, input) {
  const result = apex(cwd, args, input);
  if (result.status !== 0) throw new Error(`apex ${args.join(" ")}: ${result.status} ${result.signal ?? ""} ${result.stderr}`);
  return result.stdout;
}

const CONFIG = ["agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.2; done"]', "plugins:", "  checkpoint: {}", ""].join("\n");

/** A project with a stopped session: 3,000 memory keys, tasks, 6 checkpoints. */
function baseProject() {
  const dir = mkdtempSync(join(tmpdir(), "apex-damage-base-"));
  writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
  const started = JSON.parse(must(dir, ["start", "--task", "damage", "--json"]));
  const next = mulberry32(7);
  const entries = {};
  for (let i = 0; i < 3000; i++) entries[`/notes/${i % 20}/item-${i}`] = { i, text: "word ".repeat(Math.floor(next() * 60)), tags: ["a", "b"].slice(0, i % 3) };
  must(dir, ["memory", "import", "-"], JSON.stringify(entries));
  for (let round = 0; round < 6; round++) {
    must(dir, ["task", "add", `task ${round}`]);
    for (let i = 0; i < 20; i++) must(dir, ["memory", "set", `/notes/${i}/changed`, JSON.stringify({ round, i })]);
    must(dir, ["checkpoint", "create", `round ${round}`]);
  }
  must(dir, ["stop", "--force"]);
  return { dir, sessionId: started.session_id };
}

/**
 * A digest of every record of every database, read raw in a child process (it may crash):
 * whether a flip changed stored data at all, or hit bytes nothing uses (free pages, slack).
 */
const DUMP = `
const { open } = (await import("node:module")).createRequire(${JSON.stringify(APEX)})("lmdb");
const { createHash } = await import("node:crypto");
const root = open({ path: process.argv[1], readOnly: true, maxDbs: 64, compression: false });
const hash = createHash("sha256");
const names = [];
for (const key of root.getKeys()) names.push(String(key));
for (const name of names.sort()) {
  const db = root.openDB({ name, encoding: "binary", keyEncoding: "binary" });
  hash.update(name);
  for (const { key, value } of db.getRange()) hash.update(key).update(value);
}
process.stdout.write(hash.digest("hex"));
`;
function digest(file) {
  const result = spawnSync(process.execPath, ["--input-type=module", "-e", DUMP, file], { encoding: "utf8", timeout: 60_000 });
  return result.status === 0 ? result.stdout : result.signal ? `crash:${result.signal}` : "error";
}

/** What a read did: "ok" (the undamaged answer), "clear" (error[APEX_E_…], exit 1..4), "silent-wrong", "unclear" (failed without a code), "crash:<signal>". */
function readOutcome(result, expected) {
  if (result.signal) return `crash:${result.signal}`;
  if (result.status === 0) return result.stdout === expected ? "ok" : "silent-wrong";
  return /error\[APEX_E_[A-Z_]+\]/.test(result.stderr) ? "clear" : "unclear";
}

const base = baseProject();
const storeFile = join(base.dir, ".apex", "store.mdb");
const expected = { export: must(base.dir, ["memory", "export"]), list: must(base.dir, ["checkpoint", "list", "--limit", "100", "--json"]) };
const size = statSync(storeFile).size;
const pristine = readFileSync(storeFile);
const pristineDigest = digest(storeFile);
const next = mulberry32(SEED);
const rows = [];
for (let flip = 0; flip < FLIPS; flip++) {
  const offset = Math.floor(next() * size);
  const xor = 1 + Math.floor(next() * 255);
  const dir = mkdtempSync(join(tmpdir(), "apex-damage-"));
  writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
  mkdirSync(join(dir, ".apex"));
  const bytes = Buffer.from(pristine);
  bytes[offset] ^= xor;
  writeFileSync(join(dir, ".apex", "store.mdb"), bytes);
  try {
    const changed = digest(join(dir, ".apex", "store.mdb")) !== pristineDigest;
    const reads = [readOutcome(apex(dir, ["memory", "export"]), expected.export), readOutcome(apex(dir, ["checkpoint", "list", "--limit", "100", "--json"]), expected.list)];
    // After a read died by a signal, the next command: does it say the store is damaged (and where to go), or crash again?
    const again = reads.some((read) => read.startsWith("crash")) ? apex(dir, ["memory", "export"]) : undefined;
    const next = again === undefined ? "-" : again.signal ? `crash:${again.signal}` : /error\[APEX_E_STORE_DAMAGED\][^\n]*died while reading it/.test(again.stderr) && /session repair/.test(again.stderr) ? "named the crash" : readOutcome(again, expected.export);
    const validate = apex(dir, ["session", "validate", "--json"]);
    const found = validate.status !== 0;
    const repair = apex(dir, ["session", "repair", base.sessionId, "--json"]);
    const repairSaid = repair.signal ? `crash:${repair.signal}` : repair.status === 0 ? "repaired" : /error\[APEX_E_|"problems"/.test(repair.stderr + repair.stdout) ? "said what it could not save" : "failed without a word";
    const after = apex(dir, ["session", "validate", "--json"]);
    const readsAfter = [apex(dir, ["memory", "export"]), apex(dir, ["checkpoint", "list", "--limit", "100", "--json"])];
    const worksAfter = after.status === 0 && readsAfter.every((result) => result.status === 0);
    // Memory as it was: no memory write followed the last checkpoint, so repair can put all of it back.
    const restored = readsAfter[0].status === 0 && readsAfter[0].stdout === expected.export;
    rows.push({ flip, changed, offset, page: Math.floor(offset / 4096), xor, reads, next, found, repair: repairSaid, validAfter: after.status === 0, worksAfter, restored, changedReads: reads.some((read) => read !== "ok") });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
rmSync(base.dir, { recursive: true, force: true });

console.log(`store.mdb of ${size} bytes (${size / 4096} pages), ${FLIPS} flips, seed ${SEED}`);
console.log("flip  data     offset   page  reads (export, list)          next command     validate  repair                       valid after  reads after  memory as before");
for (const row of rows) {
  console.log(
    `${String(row.flip).padStart(4)}  ${(row.changed ? "changed" : "same").padEnd(7)}  ${String(row.offset).padStart(7)}  ${String(row.page).padStart(4)}  ${row.reads.join(", ").padEnd(28)}  ${row.next.padEnd(15)}  ${(row.found ? "found" : "clean").padEnd(8)}  ${row.repair.padEnd(28)} ${String(row.validAfter).padEnd(12)} ${String(row.worksAfter).padEnd(12)} ${row.restored}`,
  );
}
const count = (predicate) => rows.filter(predicate).length;
const harmful = rows.filter((row) => row.changedReads);
const changedData = rows.filter((row) => row.changed);
console.log("");
console.log(`stored data: ${changedData.length} of ${FLIPS} flips changed what the store holds (the others hit free pages or unused bytes)`);
console.log(`reads: ${count((row) => row.reads.every((read) => read === "ok"))} of ${FLIPS} flips changed nothing a read sees; reads that crashed (SIGSEGV/SIGBUS): ${count((row) => row.reads.some((read) => read.startsWith("crash")))}; failed without a code: ${count((row) => row.reads.includes("unclear"))}; wrong answer without a word: ${count((row) => row.reads.includes("silent-wrong"))}`);
console.log(`after a read crashed, the next command named the damage and pointed to validate/repair in ${count((row) => row.next === "named the crash")} of ${count((row) => row.next !== "-")} (crashed again: ${count((row) => row.next.startsWith("crash"))})`);
console.log(`validate: found damage in ${count((row) => row.found)} of ${FLIPS}; in ${changedData.filter((row) => row.found).length} of the ${changedData.length} that changed stored data; of the ${harmful.length} flips that reads notice, validate found ${harmful.filter((row) => row.found).length}`);
console.log(`repair: store valid and readable afterwards in ${count((row) => row.validAfter && row.worksAfter)} of ${FLIPS}, with memory exactly as before the flip in ${count((row) => row.restored)}; otherwise said what it could not save in ${count((row) => !(row.validAfter && row.worksAfter) && row.repair === "said what it could not save")}, crashed in ${count((row) => row.repair.startsWith("crash"))}, failed without a word in ${count((row) => row.repair === "failed without a word")}`);
