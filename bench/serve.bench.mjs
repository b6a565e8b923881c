// Remote sessions benchmark: a real `apex serve` on loopback in front of a live session.
//  - 10 clients × 1,000 requests (task.list; --status-load: session.status) with no error; p50 and p99;
//  - 20 watchers on the event stream, each receiving every one of 200 events, in order;
//  - the server's added latency for `status`: HTTP (keep-alive) against the supervisor's socket;
//  - task.list of the same session once it has ended (answered from the store, read-only) against while it ran.
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { APEX, REPO, median, numberOption, printTable, tempProject } from "./lib.mjs";

const CLIENTS = numberOption("clients", 10);
const REQUESTS = numberOption("requests", 1000);
const WATCHERS = numberOption("watchers", 20);
const EVENTS = numberOption("events", 200);
const LATENCY_RUNS = 300;
/** What the load phase asks: a store read; `session.status` also scans /proc, which the third row measures. */
const LOAD_METHOD = process.argv.includes("--status-load") ? "session.status" : "task.list";

const { callSupervisor } = await import(join(REPO, "dist/core/rpc/call.js"));
const work = tempProject("apex-bench-serve-");
const env = { ...process.env, NO_COLOR: "1" };
const apex = (...args) => spawnSync(process.execPath, [APEX, ...args], { cwd: work.dir, env, encoding: "utf8" });
let started = false;
let server;
try {
  writeFileSync(join(work.dir, "apex.config.yaml"), `agents:\n  a0:\n    command: sh\n    args: ["-c", "sleep 1000"]\nplugins: {}\n`);
  const start = apex("start", "--task", "serve benchmark", "--json");
  if (start.status !== 0) throw new Error(`apex start failed: ${start.stderr}`);
  started = true;
  const ready = JSON.parse(start.stdout);
  const sid = ready.session_id;
  server = spawn(process.execPath, [APEX, "serve", "--listen", "127.0.0.1:0", "--json"], { cwd: work.dir, env, stdio: ["ignore", "pipe", "ignore"] });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    server.stdout.setEncoding("utf8").on("data", (chunk) => {
      out += chunk;
      if (out.includes("}")) resolve(JSON.parse(out).url);
    });
    server.on("exit", (code) => reject(new Error(`apex serve exited ${code}`)));
  });
  const share = (user, role) => JSON.parse(apex("session", "share", "current", user, "--role", role, "--json").stdout).token;
  const viewer = share("bench-viewer", "viewer");
  const operator = share("bench-operator", "operator");
  const rpc = async (method, token, body = {}) => {
    const response = await fetch(`${url}/api/sessions/${sid}/rpc/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`${method}: HTTP ${response.status} ${text}`);
    return JSON.parse(text).result;
  };

  // 1. Load: CLIENTS concurrent clients, REQUESTS each.
  await rpc("session.status", viewer);
  const latencies = [];
  let errors = 0;
  const loadStart = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      for (let i = 0; i < REQUESTS; i++) {
        const t = performance.now();
        try {
          await rpc(LOAD_METHOD, viewer);
        } catch {
          errors++;
        }
        latencies.push(performance.now() - t);
      }
    }),
  );
  const loadSeconds = (performance.now() - loadStart) / 1000;
  latencies.sort((a, b) => a - b);
  const p50 = latencies[Math.floor(latencies.length * 0.5)];
  const p99 = latencies[Math.floor(latencies.length * 0.99)];

  // 2. Watchers: each must see every event, in order.
  const watchers = await Promise.all(
    Array.from({ length: WATCHERS }, async () => {
      const response = await fetch(`${url}/api/sessions/${sid}/stream`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${viewer}` },
        body: JSON.stringify({ "events.subscribe": {} }),
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const seqs = [];
      let buffer = "";
      const done = (async () => {
        while (seqs.length < EVENTS) {
          const { done: end, value } = await reader.read();
          if (end) break;
          buffer += decoder.decode(value, { stream: true });
          let cut = buffer.indexOf("\n\n");
          while (cut >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            cut = buffer.indexOf("\n\n");
            const data = block.split("\n").find((line) => line.startsWith("data: "));
            if (block.includes("event: events.subscribe") && data) {
              const event = JSON.parse(data.slice(6));
              if (event.type === "task.added") seqs.push(event.seq);
            }
          }
        }
        await reader.cancel();
      })();
      return { seqs, done };
    }),
  );
  await new Promise((resolve) => setTimeout(resolve, 300)); // every stream subscribed
  const eventsStart = performance.now();
  for (let i = 0; i < EVENTS; i++) await rpc("task.add", operator, { title: `bench task ${i}` });
  await Promise.race([Promise.all(watchers.map((watcher) => watcher.done)), new Promise((resolve) => setTimeout(resolve, 30_000))]);
  const eventsSeconds = (performance.now() - eventsStart) / 1000;
  const complete = watchers.filter((watcher) => watcher.seqs.length === EVENTS && watcher.seqs.every((seq, i) => i === 0 || seq > watcher.seqs[i - 1]));

  // 3. Added latency of status over HTTP against the local socket, interleaved.
  const socketTimes = [];
  const httpTimes = [];
  for (let i = 0; i < LATENCY_RUNS; i++) {
    let t = performance.now();
    await callSupervisor(ready.socket, "session.status", {});
    socketTimes.push(performance.now() - t);
    t = performance.now();
    await rpc("session.status", viewer);
    httpTimes.push(performance.now() - t);
  }
  const socketMs = median(socketTimes);
  const httpMs = median(httpTimes);

  // 4. The same reads once the session has ended: served from the store, no supervisor.
  const liveTimes = [];
  for (let i = 0; i < LATENCY_RUNS; i++) {
    const t = performance.now();
    await rpc("task.list", viewer);
    liveTimes.push(performance.now() - t);
  }
  if (apex("stop").status !== 0) throw new Error("apex stop failed");
  const endedTimes = [];
  let endedTasks = 0;
  for (let i = 0; i < LATENCY_RUNS; i++) {
    const t = performance.now();
    endedTasks = (await rpc("task.list", viewer)).length;
    endedTimes.push(performance.now() - t);
  }
  const liveMs = median(liveTimes);
  const endedMs = median(endedTimes);

  const ok = printTable("apex serve", [
    {
      label: `${CLIENTS} clients × ${REQUESTS} ${LOAD_METHOD} requests`,
      ms: p50,
      display: `p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, ${Math.round(latencies.length / loadSeconds)}/s`,
      target: "no error",
      pass: errors === 0 && latencies.length === CLIENTS * REQUESTS,
      baselineDisplay: `${errors} errors`,
    },
    {
      label: `${WATCHERS} watchers × ${EVENTS} events`,
      ms: eventsSeconds * 1000,
      display: `${complete.length}/${WATCHERS} complete in order (${eventsSeconds.toFixed(1)} s)`,
      target: "every event, in order",
      pass: complete.length === WATCHERS,
    },
    {
      label: "status: HTTP vs local socket",
      ms: httpMs,
      baselineMs: socketMs,
      ratio: httpMs / socketMs,
      display: `${httpMs.toFixed(2)} ms (+${(httpMs - socketMs).toFixed(2)} ms)`,
      target: "(no target)",
      pass: true,
    },
    {
      label: "task.list of an ended session vs live",
      ms: endedMs,
      baselineMs: liveMs,
      ratio: endedMs / liveMs,
      display: `${endedMs.toFixed(2)} ms (${endedTasks} tasks)`,
      target: "all tasks, read-only",
      pass: endedTasks === EVENTS,
    },
  ]);
  process.exitCode = ok ? 0 : 1;
} finally {
  if (server && server.exitCode === null) server.kill("SIGTERM");
  if (started) apex("stop", "--force");
  try {
    process.kill(JSON.parse(readFileSync(join(work.dir, ".apex", "supervisor.json"), "utf8")).pid, "SIGKILL");
  } catch {
    // stopped cleanly
  }
  work.cleanup();
}
