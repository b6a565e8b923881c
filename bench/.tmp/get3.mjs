import { readFileSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
const { ApexSaver } = await import("/work/main/dist/integrations/langgraph/index.js");
const cfg = JSON.parse(readFileSync(process.argv[2] + "/config.json", "utf8"));
for (let i = 0; i < 3; i++) { const s = new ApexSaver({ project: process.argv[2] }); await s.getTuple(cfg); await s.close?.(); }
const session = new Session(); session.connect();
await session.post("Profiler.enable"); await session.post("Profiler.setSamplingInterval", { interval: 100 });
await session.post("Profiler.start");
const times = [];
for (let i = 0; i < 5; i++) { const t = performance.now(); const s = new ApexSaver({ project: process.argv[2] }); await s.getTuple(cfg); times.push(performance.now() - t); await s.close?.(); }
const { profile } = await session.post("Profiler.stop");
writeFileSync("/tmp/lgp/prof/new.cpuprofile", JSON.stringify(profile));
console.log(times.map((x) => x.toFixed(1)).join(" "));
process.exit(0);
