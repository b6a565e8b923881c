import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { uuid6 } from "@langchain/langgraph-checkpoint";
import { ApexSaver } from "apex-sessions/langgraph";
import { stepWorkload } from "/work/main/bench/lib.mjs";
import { openStore } from "/work/main/dist/core/store/open.js";
const dir = process.argv[2]; mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n");
const store = await openStore(join(dir, ".apex"));
await store.batch((b) => { b.set("/sessions/bench", { session_id: "bench", status: "stopped", agents: [], supervisor: null, history: [] }); b.set("/sessions/current", { session_id: "bench" }); });
await store.close();
const { filler, keyName, stepChanges } = stepWorkload(10000, 100);
const saver = new ApexSaver({ project: dir });
let config = { configurable: { thread_id: "t", checkpoint_ns: "" } };
const values = {}, versions = {};
for (let i = 0; i < 10000; i++) { values[keyName(i)] = `${i}:0:${filler}`; versions[keyName(i)] = 1; }
const configs = [];
const put = async (step, changed) => { const nv = {}; for (const k of changed) { versions[k] = step + 1; nv[k] = step + 1; }
  config = await saver.put(config, { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: { ...values }, channel_versions: { ...versions }, versions_seen: {} }, { source: "loop", step, parents: {} }, nv); configs.push(config); };
await put(0, Object.keys(values));
let step = 1;
for (const changed of stepChanges()) { for (const i of changed) values[keyName(i)] = `${i}:${step}:${filler}`; await put(step, changed.map(keyName)); step++; }
await saver.close();
writeFileSync(join(dir, "config.json"), JSON.stringify(configs[50]));
