// The APEX dashboard: a page of the session `apex serve` serves. It talks to the same API as
// `apex --remote` with the token the owner shared; the token stays in this tab's
// sessionStorage and travels only in the Authorization header, never in a URL.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = { session: "", token: "", role: "viewer", samples: [[], [], []], chart: null, selected: [] };
  const ROLES = ["viewer", "operator", "owner"];

  function credentials() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.get("token") && fragment.get("session")) {
      sessionStorage.setItem("apex.session", fragment.get("session"));
      sessionStorage.setItem("apex.token", fragment.get("token"));
      history.replaceState(null, "", location.pathname);
    }
    state.session = sessionStorage.getItem("apex.session") || "";
    state.token = sessionStorage.getItem("apex.token") || "";
  }

  async function call(method, params) {
    const response = await fetch(`/api/sessions/${encodeURIComponent(state.session)}/rpc/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${state.token}` },
      body: JSON.stringify(params || {}),
    });
    const body = await response.json();
    if (!response.ok) {
      const error = new Error(body.error ? body.error.message : `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body.result;
  }

  function text(tag, content, className) {
    const node = document.createElement(tag);
    node.textContent = content;
    if (className) node.className = className;
    return node;
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("login-session").value = state.session;
    $("login-error").textContent = message || "";
  }

  async function start() {
    credentials();
    if (!state.session || !state.token) return showLogin();
    let me;
    try {
      me = await call("whoami");
    } catch (error) {
      sessionStorage.removeItem("apex.token");
      return showLogin(error.message);
    }
    state.role = me.role;
    $("login").hidden = true;
    $("app").hidden = false;
    $("who").textContent = `${me.user} (${me.role})`;
    $("session-id").textContent = state.session;
    buildControls();
    buildChart();
    await refresh();
    follow();
    setInterval(refresh, 2000);
  }

  function allowed(role) {
    return ROLES.indexOf(state.role) >= ROLES.indexOf(role);
  }

  /** Operators and owners get the buttons; for viewers they are not in the page at all. */
  function buildControls() {
    const box = $("controls");
    box.replaceChildren();
    if (!allowed("operator")) return;
    for (const [id, label, method, params] of [
      ["pause", "Pause", "session.pause"],
      ["resume", "Resume", "session.resume"],
      ["checkpoint", "Checkpoint", "checkpoint.create", { description: "from the dashboard" }],
    ]) {
      const button = text("button", label);
      button.id = `btn-${id}`;
      button.type = "button";
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await call(method, params);
          $("notice").textContent = "";
        } catch (error) {
          $("notice").textContent = error.message;
        } finally {
          button.disabled = false;
          refresh();
        }
      });
      box.append(button, " ");
    }
  }

  async function refresh() {
    try {
      const [status, tasks, checkpoints] = await Promise.all([
        call("session.status"),
        call("task.list"),
        call("checkpoint.list", { limit: 20 }).catch(() => ({ items: [] })),
      ]);
      renderStatus(status);
      renderTasks(tasks);
      renderCheckpoints(checkpoints.items || []);
      sample(status);
    } catch (error) {
      if (error.status === 401) return showLogin(error.message);
      $("notice").textContent = error.message;
    }
  }

  function renderStatus(status) {
    const session = status.session;
    const badge = $("session-status");
    badge.textContent = session ? session.status : "no session";
    badge.className = `badge status-${session ? session.status : "none"}`;
    const body = $("agents").tBodies[0];
    body.replaceChildren();
    for (const agent of status.agents) {
      const row = document.createElement("tr");
      row.dataset.agent = agent.name;
      row.append(text("td", agent.name), text("td", agent.status, `status status-${agent.status}`), text("td", agent.pid === null ? "-" : String(agent.pid)), text("td", `${agent.cpu_seconds.toFixed(2)} s`), text("td", agent.task || "-"));
      body.append(row);
    }
    const connected = status.connected || [];
    $("connected").textContent = connected.length ? `Connected: ${connected.map((c) => `${c.user} (${c.role})`).join(", ")}` : "";
  }

  function renderTasks(tasks) {
    const board = $("board");
    board.replaceChildren();
    for (const column of ["pending", "active", "completed", "failed"]) {
      const box = document.createElement("div");
      box.dataset.column = column;
      const items = tasks.filter((task) => task.status === column);
      box.append(text("h3", `${column} (${items.length})`));
      for (const task of items.slice(-30)) box.append(text("div", `${task.id} ${task.title}${task.assignee ? ` · ${task.assignee}` : ""}`, "card"));
      board.append(box);
    }
  }

  function renderCheckpoints(items) {
    const list = $("timeline");
    list.replaceChildren();
    for (const item of items) {
      const entry = document.createElement("li");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = state.selected.includes(item.id);
      box.addEventListener("change", () => pick(item.id, box.checked));
      entry.append(box, ` ${item.name} · ${item.trigger} · ${item.created_at.slice(11, 19)}${item.description ? ` · ${item.description}` : ""}`);
      list.append(entry);
    }
  }

  async function pick(id, on) {
    state.selected = state.selected.filter((other) => other !== id);
    if (on) state.selected.push(id);
    state.selected = state.selected.slice(-2);
    if (state.selected.length < 2) return;
    try {
      const diff = await call("checkpoint.diff", { from: state.selected[0], to: state.selected[1] });
      const lines = [`${diff.from.name} → ${diff.to.name}`];
      for (const kind of ["added", "removed", "changed"]) for (const path of diff.memory[kind]) lines.push(`${kind.padEnd(8)} ${path}`);
      lines.push(`tasks: +${diff.tasks.added.length} -${diff.tasks.removed.length} ~${diff.tasks.changed.length}; agents: ~${diff.agents.changed.length}`);
      $("diff").textContent = lines.join("\n");
    } catch (error) {
      $("diff").textContent = error.message;
    }
  }

  function buildChart() {
    if (typeof uPlot !== "function") return;
    state.chart = new uPlot(
      {
        width: Math.min(640, $("chart").clientWidth || 600),
        height: 220,
        series: [{}, { label: "tasks completed", stroke: "#1a7f37" }, { label: "agent CPU (s)", stroke: "#3056d3", scale: "cpu" }],
        axes: [{}, { label: "tasks" }, { side: 1, scale: "cpu", label: "CPU s" }],
      },
      state.samples,
      $("chart"),
    );
  }

  function sample(status) {
    if (!state.chart) return;
    const [times, done, cpu] = state.samples;
    times.push(Date.now() / 1000);
    done.push(status.tasks.completed);
    cpu.push(status.agents.reduce((sum, agent) => sum + agent.cpu_seconds, 0));
    if (times.length > 300) for (const series of state.samples) series.shift();
    state.chart.setData(state.samples);
  }

  /** Server-sent events over fetch (EventSource cannot send the Authorization header). */
  async function follow() {
    try {
      const response = await fetch(`/api/sessions/${encodeURIComponent(state.session)}/stream`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${state.token}` },
        body: JSON.stringify({ "events.subscribe": {} }),
      });
      if (!response.ok) throw new Error((await response.json()).error.message);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut = buffer.indexOf("\n\n");
        while (cut >= 0) {
          handle(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          cut = buffer.indexOf("\n\n");
        }
      }
      $("notice").textContent = "The live stream ended.";
    } catch (error) {
      $("notice").textContent = `Live events stopped: ${error.message}`;
    }
  }

  function handle(block) {
    let kind = "message";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) kind = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (!data) return;
    const payload = JSON.parse(data);
    if (kind === "error") {
      $("notice").textContent = payload.message;
      return;
    }
    if (kind !== "events.subscribe") return;
    const entry = text("li", `${payload.at.slice(11, 19)} ${payload.type} · ${payload.actor}`);
    $("events").prepend(entry);
    refresh();
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("apex.session", $("login-session").value.trim());
    sessionStorage.setItem("apex.token", $("login-token").value.trim());
    start();
  });
  start();
})();
