// The APEX dashboard: a page of the session `apex serve` serves. It talks to the same API as
// `apex --remote` with the token the owner shared; the token stays in this tab's
// sessionStorage and travels only in the Authorization header, never in a URL.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const state = { session: "", token: "", role: "viewer", samples: [[], [], []], chart: null, memoryChart: null, lastCpu: null, merges: [], lastSeq: null, statusSeq: null, selected: [], diffAsked: 0, agents: [] };
  const ROLES = ["viewer", "operator", "owner"];
  const ENDED = ["completed", "failed", "stopped"];
  /** The notices that say the live stream is down. */
  const STREAM_DOWN = /^(The live stream ended|Live events stopped)/;

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

  /** The page's periodic refreshes: stopped when access ends, so a revoked tab stops calling. */
  const timers = [];

  /**
   * The token was refused (revoked, expired): stop every refresh and forget it, then ask for
   * another. Else the tab kept sending the refused token every 2 s, and the server slowed down
   * every client at this address for its failures.
   */
  function signedOut(message) {
    while (timers.length) clearInterval(timers.pop());
    clearTimeout(refreshes.timer);
    if (state.stream) state.stream.abort();
    state.stream = null;
    state.token = "";
    sessionStorage.removeItem("apex.token");
    showLogin(message);
  }

  /** How long a call the page makes by itself (the refreshes) may go unanswered. */
  const CALL_TIMEOUT_MS = 15000;
  /** How long a button's call or a diff may: a checkpoint or a diff of a large session takes a while. */
  const ACTION_TIMEOUT_MS = 60000;

  /**
   * One API call, given up after `timeout` ms without its whole reply. A connection that takes a
   * request and never answers nor closes (a network gone under it, a proxy holding it) kept the
   * call waiting for good: the refresh under way never ended, so no refresh came after it, and the
   * page went on showing that moment's state without a word.
   */
  async function call(method, params, timeout = CALL_TIMEOUT_MS) {
    if (!state.token) {
      const error = new Error("Not signed in.");
      error.status = 401;
      throw error;
    }
    let response;
    let body;
    try {
      response = await fetch(`/api/sessions/${encodeURIComponent(state.session)}/rpc/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${state.token}` },
        body: JSON.stringify(params || {}),
        signal: AbortSignal.timeout(timeout),
      });
      body = await replyBody(response);
    } catch (error) {
      if (error && error.name === "TimeoutError") throw new Error(`No answer to ${method} in ${timeout / 1000} s: the connection to the server may be lost. The page asks again.`);
      throw error;
    }
    if (!response.ok) {
      const error = new Error(body.error ? body.error.message : `HTTP ${response.status}`);
      error.status = response.status;
      if (response.status === 401 && state.token) signedOut(error.message);
      throw error;
    }
    return body.result;
  }

  /**
   * A reply's JSON body. One that is not JSON is not APEX's (a proxy in front of the server
   * answering for it while the server restarts: an HTML error page): said so, with its status, and
   * without a status of its own, so that a proxy's 401 does not sign the page out. Before, the page
   * showed the JSON parser's error: "Unexpected token '<', "<html>"... is not valid JSON".
   */
  async function replyBody(response) {
    try {
      return await response.json();
    } catch (error) {
      // The call's time ran out as its reply was read: said as such by call, not as a reply that was not APEX's.
      if (error && error.name === "TimeoutError") throw error;
      const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
      throw new Error(`The server answered ${status}, not with APEX's reply: a proxy in front of apex serve may have answered for it (is apex serve running behind it?).`);
    }
  }

  /**
   * Characters that act on the text around them shown as their escape (`\u202e`), as the CLI shows
   * them (cli/terminal-text.ts visibleText): the bidirectional embeddings, overrides and isolates,
   * the marks that change a run's direction, and control characters but tab. User names, task titles,
   * descriptions, paths and agents' reports come from other users and agents: a right-to-left
   * override in a title turned the text after it around on the page (`invoice\u202efdp.exe` read
   * `invoiceexe.pdf`), where the CLI shows it escaped.
   */
  const UNSEEN = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

  function visible(content) {
    return String(content).replace(UNSEEN, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
  }

  /** An element with `content` as its text, made visible (see visible). */
  function text(tag, content, className) {
    const node = document.createElement(tag);
    node.textContent = visible(content);
    if (className) node.className = className;
    return node;
  }

  function showLogin(message) {
    $("app").hidden = true;
    // The header too: it went on naming the signed-out user and the session's state, with the
    // operator's buttons, which did nothing when pressed (their error shows in the hidden page).
    for (const id of ["session-id", "session-status", "who"]) $(id).textContent = "";
    $("session-status").className = "badge";
    $("controls").replaceChildren();
    $("login").hidden = false;
    $("login-session").value = state.session;
    $("login-error").textContent = visible(message || "");
  }

  async function start() {
    while (timers.length) clearInterval(timers.pop());
    clearTimeout(refreshes.timer);
    Object.assign(refreshes, { timer: null, running: false, again: false, last: 0 });
    // Signing in again on the same page (after a revoke, with a new token) starts the page over:
    // before, a second pair of charts was drawn under the first, the events were listed twice,
    // and the old live stream, if still open, kept adding to them.
    if (state.stream) state.stream.abort();
    state.stream = null;
    for (const chart of [state.chart, state.memoryChart]) if (chart) chart.destroy();
    Object.assign(state, { ended: false, endedAs: null, streamEnded: false, replayedTo: null, retryDelay: 0, retryAt: 0, live: false, chart: null, memoryChart: null, samples: [[], [], []], lastCpu: null, merges: [], lastSeq: null, statusSeq: null, selected: [], sequenceOf: new Map(), nameOf: new Map(), refreshFailed: false, shownStatus: undefined, behindSince: 0 });
    $("events").replaceChildren();
    // A diff still on its way from before is not shown over the page started over.
    state.diffAsked++;
    $("diff").textContent = "";
    $("notice").textContent = "";
    credentials();
    if (!state.session || !state.token) return showLogin();
    let me;
    try {
      me = await call("whoami");
    } catch (error) {
      if (error.status === 401) return signedOut(error.message);
      // Not refused: the server could not check it now (restarting, a proxy without it, a moment of
      // rate limiting). The token is kept, in the form too, for Connect to try again; forgetting it
      // lost an invite whose token is shown only once.
      showLogin(`${error.message} Connect to try again.`);
      $("login-token").value = state.token;
      return;
    }
    state.role = me.role;
    // The session as the server resolved it (a short id or a branch's name typed in the form): the
    // page shows its whole id, marks it in the tree and lists merges into it, which compare whole ids.
    if (typeof me.session_id === "string" && me.session_id) {
      state.session = me.session_id;
      sessionStorage.setItem("apex.session", me.session_id);
    }
    $("login").hidden = true;
    $("app").hidden = false;
    $("who").textContent = visible(`${me.user} (${me.role})`);
    $("session-id").textContent = state.session;
    buildControls();
    buildCharts();
    await refresh();
    await seedEvents();
    await refreshTree();
    state.live = true;
    follow();
    timers.push(setInterval(poll, REFRESH_EVERY_MS), setInterval(pollTree, 15000));
  }

  /** How often the page refreshes the status, the tasks and the checkpoints. */
  const REFRESH_EVERY_MS = 2000;
  /** The longest wait between refreshes of an ended session whose server does not answer. */
  const RETRY_MAX_MS = 60000;

  /**
   * The clock's refresh, unless the page waits before asking again: an ended session whose server
   * no longer answers (a supervisor's own server, sharing.serve, closes with its session) is asked
   * less and less often (see refresh), not every 2 s for as long as the page stays open.
   */
  function poll() {
    if (Date.now() < state.retryAt) return;
    refreshSoon();
  }

  function pollTree() {
    if (Date.now() < state.retryAt) return;
    refreshTree();
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
        button.dataset.busy = "1";
        try {
          await call(method, params, ACTION_TIMEOUT_MS);
          $("notice").textContent = "";
        } catch (error) {
          $("notice").textContent = visible(error.message);
        } finally {
          delete button.dataset.busy;
          // Pressable again unless the session's state says otherwise (the refresh to come shows the new one).
          button.disabled = Boolean(button.title);
          refreshSoon();
        }
      });
      box.append(button, " ");
    }
  }

  /**
   * Refreshes asked for by live events, the clock and the buttons: one at a time, at most one
   * every REFRESH_GAP_MS, and one more after the last ask (the page ends up showing the latest
   * state). Before, every event fetched the status, the tasks and the checkpoints at once: a
   * session adding a thousand tasks got three thousand calls from each open tab, a thousand of
   * them listing every task, all answered by the session's supervisor.
   */
  const REFRESH_GAP_MS = 500;
  const refreshes = { timer: null, running: false, again: false, last: 0 };

  function refreshSoon() {
    if (refreshes.timer) return; // the refresh to come will show what this one asks for
    if (refreshes.running) {
      refreshes.again = true;
      return;
    }
    refreshes.timer = setTimeout(async () => {
      refreshes.timer = null;
      refreshes.running = true;
      refreshes.last = Date.now();
      try {
        await refresh();
      } finally {
        refreshes.running = false;
        if (refreshes.again) {
          refreshes.again = false;
          if (state.token) refreshSoon();
        }
      }
    }, Math.max(0, refreshes.last + REFRESH_GAP_MS - Date.now()));
  }

  async function refresh() {
    try {
      const [status, tasks, checkpoints] = await Promise.all([
        call("session.status"),
        call("task.list"),
        // The newest 500, newest first: the timeline shows the first 20, the memory plot all of them,
        // oldest first. (Asked oldest first, a session with more stopped at its 500th checkpoint.)
        call("checkpoint.list", { limit: 500 }).catch(() => ({ items: [] })),
      ]);
      const items = checkpoints.items || [];
      state.retryDelay = 0;
      state.retryAt = 0;
      // The stream said the session ended, and its record is not written yet (a supervisor's own server
      // answering as it closes): it is shown as ended, as the stream said, not as stopping again.
      // Its agents too: that answer may still have them running.
      if (state.streamEnded && status.session && status.session.status === "stopping") {
        status.session.status = state.endedAs || "stopped";
        status.agents = endedAgents(status.agents);
      }
      renderStatus(status);
      // The session's status changed (a supervisor killed, which no event tells): the tree shows it too,
      // not the status it had until its next refresh, 15 s later.
      const now = status.session ? status.session.status : null;
      if (state.shownStatus !== undefined && now !== state.shownStatus) refreshTree();
      state.shownStatus = now;
      renderTasks(tasks);
      renderCheckpoints(items.slice(0, 20));
      plotMemory(items.slice().reverse());
      sample(status);
      // The last event this status includes: where the live stream starts if the events cannot be listed.
      state.statusSeq = status.session && typeof status.session.event_seq === "number" ? status.session.event_seq : null;
      followIfSilent();
      // A refresh that failed (the server restarting, say) no longer says so once one succeeds.
      if (state.refreshFailed) $("notice").textContent = "";
      state.refreshFailed = false;
      // An ended session streams nothing more: that its stream ended is no news (the badge says it ended), not an alert.
      state.ended = Boolean(status.session && ENDED.includes(status.session.status));
      if (state.ended && STREAM_DOWN.test($("notice").textContent)) $("notice").textContent = "";
      // The live stream ended (the server restarted) while the session goes on: followed again, from the last event shown.
      // So too, once, for a session that ended meanwhile while the status counts events the page has not shown: the
      // server replays them from there (its stop among them), then ends the stream. Before, an ended session was not
      // followed again, and the events it wrote while the server was down never reached the page.
      const behind = typeof state.statusSeq === "number" && state.lastSeq !== null && state.statusSeq > state.lastSeq;
      const replay = state.ended && behind && state.replayedTo !== state.statusSeq;
      if (state.live && !state.stream && state.token && status.session && (!state.ended || replay)) {
        if (state.ended) state.replayedTo = state.statusSeq;
        follow();
      }
    } catch (error) {
      if (error.status === 401) return; // signed out: the login form shows why
      if (state.ended) {
        // An ended session whose server does not answer: its badge says it ended, and the server may be gone
        // for good (a supervisor's own server closes with its session; it comes back if the session is
        // continued). No alert, and asked again less and less often: it was "Failed to fetch" every 2 s.
        state.retryDelay = Math.min(RETRY_MAX_MS, Math.max(5000, state.retryDelay * 2));
        state.retryAt = Date.now() + state.retryDelay;
        return;
      }
      $("notice").textContent = visible(error.message);
      state.refreshFailed = true;
    }
  }

  function renderStatus(status) {
    const session = status.session;
    // Named as `apex status` and `apex connect` name it: a branch by its name, with its whole id after it.
    if (session && session.session_id === state.session) $("session-id").textContent = typeof session.name === "string" && session.name ? visible(`${session.name} (${state.session})`) : state.session;
    showSessionStatus(session ? session.status : null);
    renderAgents(status.agents);
    const connected = status.connected || [];
    $("connected").textContent = connected.length ? visible(`Connected: ${connected.map((c) => `${c.user} (${c.role})`).join(", ")}`) : "";
  }

  /** The agents table; the agents are kept for the session's end (endedAgents). */
  function renderAgents(agents) {
    state.agents = agents;
    const body = $("agents").tBodies[0];
    body.replaceChildren();
    for (const agent of agents) {
      const row = document.createElement("tr");
      row.dataset.agent = agent.name;
      row.append(text("td", agent.name), text("td", agent.status, `status status-${agent.status}`), text("td", agent.pid === null ? "-" : String(agent.pid)), text("td", `${agent.cpu_seconds.toFixed(2)} s`), text("td", agent.task || "-"));
      body.append(row);
    }
  }

  /**
   * The agents once their session has ended, as its supervisor leaves them and `apex status` shows them:
   * one that exited or failed stays so, every other is stopped; none runs (no pid, no CPU time) or holds
   * a task. What the page shows when the session's end comes from the stream, which a supervisor's own
   * server (sharing.serve) closes with: no refresh could then say it, and the table went on showing
   * the agents running, with their pids.
   */
  function endedAgents(agents) {
    return agents.map((agent) => ({ ...agent, status: agent.status === "exited" || agent.status === "failed" ? agent.status : "stopped", pid: null, cpu_seconds: 0, task: null }));
  }

  /** The header's badge and buttons for the session's status (null: no session). */
  function showSessionStatus(now) {
    const badge = $("session-status");
    badge.textContent = now === null ? "no session" : now;
    badge.className = `badge status-${now === null ? "none" : now}`;
    // An ended session is read-only: its buttons stay, greyed, with the reason. Pause is for a running
    // session, Resume for a paused one: the other is greyed too (pressed, its refusal stayed on the page).
    const ended = ENDED.includes(now) || now === "ended";
    for (const button of $("controls").querySelectorAll("button")) {
      const why = ended ? `Session ${now}: read-only` : button.id === "btn-pause" && now !== "active" ? `Session ${now}: not running` : button.id === "btn-resume" && now !== "paused" ? `Session ${now}: not paused` : "";
      button.disabled = Boolean(why) || button.dataset.busy === "1";
      button.title = why;
    }
  }

  /**
   * The session's events ended (the stream's `end`): the session has ended, said at once from the
   * stream. A supervisor's own server (sharing.serve) closes as its session stops, so no refresh to
   * come could say it: the page stayed on the last status it had read ("stopping", Checkpoint
   * pressable), with "Failed to fetch" every 2 s. The badge says how it ended (its last event:
   * stopped, completed or failed; "ended" if the stream did not bring it), every button is greyed,
   * and a refresh the server no longer answers is no alert (refresh).
   */
  function sessionEnded() {
    state.ended = true;
    state.streamEnded = true;
    showSessionStatus(state.endedAs || "ended");
    renderAgents(endedAgents(state.agents || []));
    if (STREAM_DOWN.test($("notice").textContent)) $("notice").textContent = "";
    refreshSoon();
  }

  /** Cards a column of the task board shows; the others are counted under them. */
  const CARDS_SHOWN = 30;

  /**
   * The task board: a column per status, its tasks in the list's order (oldest first). A column with
   * more than CARDS_SHOWN shows the pending and active ones next in line (the oldest: the next an agent
   * claims, the longest held) and the newest of those finished, with how many more there are and the
   * command that lists them. It showed the last 30 of each, so the pending tasks to be claimed next were
   * the ones hidden, without a word.
   */
  function renderTasks(tasks) {
    const board = $("board");
    board.replaceChildren();
    for (const column of ["pending", "active", "completed", "failed"]) {
      const box = document.createElement("div");
      box.dataset.column = column;
      const items = tasks.filter((task) => task.status === column);
      box.append(text("h3", `${column} (${items.length})`));
      const waiting = column === "pending" || column === "active";
      const shown = waiting ? items.slice(0, CARDS_SHOWN) : items.slice(-CARDS_SHOWN);
      for (const task of shown) box.append(text("div", `${task.id} ${task.title}${task.assignee ? ` · ${task.assignee}` : ""}`, "card"));
      const hidden = items.length - shown.length;
      if (hidden > 0) box.append(text("div", `… ${hidden} more ${waiting ? "after these" : "before these"}: apex task list --status ${column}`, "more muted"));
      board.append(box);
    }
  }

  /**
   * The newest checkpoints, one <li> each, keyed by the checkpoint's id (data-checkpoint) and updated
   * in place: an entry is made for a checkpoint new to the list, removed for one gone from it, and the
   * others are left where they are (a node moved or made anew loses the focus). Before, every refresh
   * (every 2 s) built the list anew: a checkbox focused with the keyboard lost its focus to the page
   * before Space could tick it.
   */
  function renderCheckpoints(items) {
    const list = $("timeline");
    const ids = new Set(items.map((item) => item.id));
    const entries = new Map();
    for (const entry of [...list.children]) {
      if (ids.has(entry.dataset.checkpoint)) entries.set(entry.dataset.checkpoint, entry);
      else entry.remove();
    }
    items.forEach((item, index) => {
      state.sequenceOf.set(item.id, item.sequence);
      state.nameOf.set(item.id, item.name);
      let entry = entries.get(item.id);
      if (!entry) {
        entry = document.createElement("li");
        entry.dataset.checkpoint = item.id;
        const box = document.createElement("input");
        box.type = "checkbox";
        box.addEventListener("change", () => pick(item.id, box.checked));
        // The label's text ticks the box too.
        const label = document.createElement("label");
        label.append(box, text("span", ""));
        entry.append(label);
      }
      const label = visible(` ${item.name} · ${item.trigger} · ${clock(item.created_at)}${item.description ? ` · ${item.description}` : ""}`);
      const span = entry.querySelector("span");
      if (span.textContent !== label) span.textContent = label;
      entry.querySelector("input").checked = state.selected.includes(item.id);
      // In place unless out of order: the newest checkpoints come first, so a new one goes above the others, which stay.
      if (list.children[index] !== entry) list.insertBefore(entry, list.children[index] || null);
    });
  }

  async function pick(id, on) {
    state.selected = state.selected.filter((other) => other !== id);
    if (on) state.selected.push(id);
    state.selected = state.selected.slice(-2);
    // A third one ticked unticks the first: at once, not at the next refresh.
    for (const box of $("timeline").querySelectorAll("li[data-checkpoint] input")) box.checked = state.selected.includes(box.closest("li").dataset.checkpoint);
    // Each tick asks anew, and only the latest ask's answer is shown: the diffs of pairs ticked one after
    // the other are answered in any order (a large pair's after a small one's ticked later), and the
    // last to land was shown, a pair no longer ticked. Fewer than two ticked: no diff is shown, nor one
    // still on its way.
    const asked = ++state.diffAsked;
    if (state.selected.length < 2) {
      $("diff").textContent = "";
      return;
    }
    // From the older to the newer (by sequence), as `apex checkpoint diff OLD NEW`, whichever was ticked
    // first: the diff went from the first ticked, so a key the newer one added read as removed.
    const [from, to] = state.selected.slice().sort((a, b) => state.sequenceOf.get(a) - state.sequenceOf.get(b));
    // Until it lands, the pair it is of: not the last diff shown, of another pair.
    $("diff").textContent = visible(`Diffing ${state.nameOf.get(from) || from} and ${state.nameOf.get(to) || to}…`);
    try {
      const diff = await call("checkpoint.diff", { from, to }, ACTION_TIMEOUT_MS);
      if (asked !== state.diffAsked) return;
      const lines = [`${diff.from.name} → ${diff.to.name}`];
      for (const kind of ["added", "removed", "changed"]) for (const path of diff.memory[kind]) lines.push(`${kind.padEnd(8)} ${path}`);
      const agents = agentCounts(diff.agents);
      lines.push(`tasks: +${diff.tasks.added.length} -${diff.tasks.removed.length} ~${diff.tasks.changed.length}; agents: +${agents.added} -${agents.removed} ~${agents.changed}`);
      $("diff").textContent = lines.map(visible).join("\n");
    } catch (error) {
      if (asked !== state.diffAsked) return;
      $("diff").textContent = visible(error.message);
    }
  }

  /**
   * A diff's agents counted as `apex checkpoint diff` counts them (plugins/checkpoint/plugin-cli.ts):
   * the diff lists an agent's record (`alpha`) and the context it saved (`alpha.context`) apart, as the
   * store keeps them; each is one agent. Added and removed: the records. Changed: the agents whose record
   * changed, and those of any context added, removed or changed. The page counted every entry of
   * `changed`: an agent whose report and context changed was two.
   */
  function agentCounts(agents) {
    const isContext = (id) => id.endsWith(".context");
    const changed = new Set(agents.changed.map((change) => change.id).filter((id) => !isContext(id)));
    for (const id of [...agents.added, ...agents.removed, ...agents.changed.map((change) => change.id)]) {
      if (isContext(id)) changed.add(id.slice(0, -".context".length));
    }
    return { added: agents.added.filter((id) => !isContext(id)).length, removed: agents.removed.filter((id) => !isContext(id)).length, changed: changed.size };
  }

  /**
   * A record's time of day as the page shows it: UTC, said so (`18:04:05 UTC`), as the records hold
   * it; the plots' time axes are UTC too (utc). The lists showed the UTC time with no zone, beside
   * plots in the browser's local time.
   */
  function clock(iso) {
    return `${String(iso).slice(11, 19)} UTC`;
  }

  /** The plots' times in UTC, as the lists show them, whatever the browser's time zone. */
  const utc = (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC");

  /**
   * The time axis of a chart: its points' span, or a minute either side of a lone point (the first
   * sample, a session's one checkpoint), which uPlot's own range drew over years to come (1,000 days).
   * The span drawn is kept on the chart's box (data-span, seconds).
   */
  const timeRange = (box) => (u, min, max) => {
    // uPlot widens a lone time itself, by 86,400,000 units (a day in ms; these times are seconds): it is read from the data.
    const times = u.data[0] || [];
    const lone = times.length > 0 && times[0] === times[times.length - 1];
    const range = min == null ? [null, null] : lone ? [times[0] - 60, times[0] + 60] : [min, max];
    if (min != null) box.dataset.span = String(range[1] - range[0]);
    return range;
  };

  function buildCharts() {
    if (typeof uPlot !== "function") return;
    const width = Math.min(640, $("chart").clientWidth || 600);
    state.chart = new uPlot(
      {
        width,
        height: 200,
        series: [{ label: "time (UTC)" }, { label: "tasks completed", stroke: "#1a7f37" }, { label: "agent utilization (%)", stroke: "#3056d3", scale: "%" }],
        tzDate: utc,
        axes: [{ label: "time (UTC)" }, { label: "tasks" }, { side: 1, scale: "%", label: "CPU %" }],
        scales: { x: { range: timeRange($("chart")) }, "%": { range: [0, 100] } },
      },
      state.samples,
      $("chart"),
    );
    state.memoryChart = new uPlot(
      {
        width,
        height: 160,
        series: [{ label: "time (UTC)" }, { label: "memory keys", stroke: "#8250df", points: { show: true } }],
        tzDate: utc,
        axes: [{ label: "time (UTC)" }, { label: "keys" }],
        scales: { x: { range: timeRange($("memory-chart")) } },
      },
      [[], []],
      $("memory-chart"),
    );
  }

  /** Agent utilization: the agents' CPU time over wall time since the last sample, per agent. */
  function sample(status) {
    if (!state.chart) return;
    const now = Date.now() / 1000;
    const cpu = status.agents.reduce((sum, agent) => sum + agent.cpu_seconds, 0);
    const previous = state.lastCpu;
    state.lastCpu = { at: now, cpu };
    if (!previous || now <= previous.at) return;
    const agents = Math.max(1, status.agents.length);
    const [times, done, utilization] = state.samples;
    times.push(now);
    done.push(status.tasks.completed);
    utilization.push(Math.max(0, Math.min(100, ((cpu - previous.cpu) / (now - previous.at) / agents) * 100)));
    if (times.length > 300) for (const series of state.samples) series.shift();
    state.chart.setData(state.samples);
  }

  /** Memory size over the session's life: the key count each checkpoint recorded. */
  function plotMemory(items) {
    const box = $("memory-chart");
    box.dataset.points = String(items.length);
    box.dataset.keys = items.map((item) => item.memory_keys).join(",");
    if (!state.memoryChart) return;
    state.memoryChart.setData([items.map((item) => Date.parse(item.created_at) / 1000), items.map((item) => item.memory_keys)]);
  }

  /**
   * The project's sessions as a tree: a branch (a session record with parent_checkpoint) under
   * the session it branched from, labelled with that checkpoint; merges into the viewed session
   * (its session.merged events) listed under it. Without branches, a flat list. Checkpoints no
   * longer in the store that `apex session tree` still draws (its nodes with trigger "deleted") are
   * drawn as it draws them, marked deleted, with their edges: a branch point deleted with
   * `checkpoint delete --force` under its session, the branches made from it under it; a merge
   * checkpoint deleted (or removed by a repair) under its session, with what it merged in; a merge
   * checkpoint sessions were branched from, both.
   */
  async function refreshTree() {
    let sessions;
    let tree;
    try {
      // The graph's nodes only add the deleted ones: without them (a server that does not answer it), the sessions as before.
      [sessions, tree] = await Promise.all([call("session.list"), call("session.tree").catch(() => null)]);
    } catch (error) {
      return;
    }
    const byId = new Map(sessions.map((record) => [record.session_id, record]));
    const children = new Map();
    const roots = [];
    for (const record of sessions) {
      const parent = parentOf(record);
      if (parent && byId.has(parent) && parent !== record.session_id) {
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(record);
      } else roots.push(record);
    }
    // The deleted nodes, by the session they were in; a deleted branch point, by each branch made from it.
    const deletedIn = new Map();
    const deletedPointOf = new Map();
    for (const node of (tree && Array.isArray(tree.nodes) ? tree.nodes : []).filter((node) => node.trigger === "deleted")) {
      if (!deletedIn.has(node.session_id)) deletedIn.set(node.session_id, []);
      deletedIn.get(node.session_id).push(node);
      for (const branch of node.branched_by || []) deletedPointOf.set(branch, node);
    }
    const byCreation = (a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0);
    const seen = new Set();
    const node = (record) => {
      seen.add(record.session_id);
      const item = document.createElement("li");
      item.dataset.session = record.session_id;
      if (record.session_id === state.session) item.className = "here";
      const label = document.createElement("span");
      label.className = "node";
      label.append(visible(`${record.name || record.session_id.slice(0, 8)} `), text("span", record.status, `status status-${record.status}`));
      item.append(label);
      if (record.parent_checkpoint) {
        const from = record.parent_checkpoint;
        const gone = deletedPointOf.has(record.session_id) ? " (deleted)" : "";
        item.append(" ", text("span", `from ${typeof from === "string" ? from : from.name || from.id}${gone}`, "from"));
      }
      const deleted = deletedIn.get(record.session_id) || [];
      // A merge checkpoint sessions were branched from is both: its merge line here, and its branch point below.
      const deletedMerges = deleted.filter((gone) => !gone.branched_by || gone.deleted_merge);
      if (record.session_id === state.session) {
        // A merge whose checkpoint is drawn deleted below is listed there, with its edge.
        for (const merge of state.merges.filter((merge) => !deletedMerges.some((gone) => gone.parents[1] === merge.id))) {
          item.append(text("div", `⇠ merged ${merge.name || ""} from ${nameOf(byId, merge.session_id)}`, "merge"));
        }
      }
      for (const gone of deletedMerges) {
        const line = text("div", `⇠ ${gone.name} (deleted): ${gone.description || "a merge"} (its session recorded what it merged in: a later merge still finds it)`, "merge deleted");
        line.dataset.checkpoint = gone.id;
        if (gone.parents[1]) line.dataset.mergedFrom = gone.parents[1];
        item.append(line);
      }
      const kids = (children.get(record.session_id) || []).filter((kid) => !seen.has(kid.session_id)).sort(byCreation);
      const points = deleted.filter((gone) => gone.branched_by && gone.branched_by.length > 0);
      const direct = kids.filter((kid) => !points.includes(deletedPointOf.get(kid.session_id)));
      const list = document.createElement("ul");
      for (const point of points.sort((a, b) => a.sequence - b.sequence)) {
        const under = kids.filter((kid) => deletedPointOf.get(kid.session_id) === point);
        const entry = document.createElement("li");
        entry.className = "deleted";
        entry.dataset.checkpoint = point.id;
        entry.append(text("span", `${point.name} (deleted)`, "node"), " ", text("span", deletedPointText(point, byId), "from"));
        if (under.length) {
          const branches = document.createElement("ul");
          for (const kid of under) branches.append(node(kid));
          entry.append(branches);
        }
        list.append(entry);
      }
      for (const kid of direct) list.append(node(kid));
      if (list.children.length) item.append(list);
      return item;
    };
    $("tree").replaceChildren(...roots.sort(byCreation).map(node));
  }

  /** A deleted branch point, as `apex session tree` says it: the branches made from it, and what a merge of them does without it. */
  function deletedPointText(point, byId) {
    const names = (ids) => ids.map((id) => nameOf(byId, id)).join(", ");
    const branched = point.branched_by || [];
    const recorded = point.recorded_by || [];
    const others = branched.filter((id) => !recorded.includes(id));
    const what =
      point.deleted === "recorded by its branch"
        ? `${branched.length === 1 ? "its branch" : "their branches"} recorded it: a merge of ${names(branched)} still diffs against it`
        : point.deleted === "recorded by some of its branches"
          ? `${names(recorded)} recorded it: a merge of ${names(recorded)} still diffs against it; nothing recorded it for ${names(others)}: a merge of ${names(others)} falls back to an older base`
          : `nothing recorded it: a merge of ${names(branched)} falls back to an older base`;
    return `${names(branched)} branched from it (${what})`;
  }

  function parentOf(record) {
    const from = record.parent_checkpoint;
    if (from && typeof from === "object" && typeof from.session_id === "string") return from.session_id;
    return typeof record.parent_session === "string" ? record.parent_session : null;
  }

  function nameOf(byId, id) {
    const record = byId.get(id);
    return record && record.name ? record.name : String(id || "?").slice(0, 8);
  }

  /** The last events before the page opened, and the merges among all of them. */
  async function seedEvents() {
    try {
      // The last 20 and the merges, not every event of the session (the server keeps those it is asked for).
      const [events, merges] = await Promise.all([call("events.list", { last: 20 }), call("events.list", { type: "session.merged" })]);
      state.merges = merges.filter((event) => event.from).map((event) => event.from);
      for (const event of events) showEvent(event);
      state.lastSeq = events.length ? events[events.length - 1].seq : 0;
    } catch (error) {
      // The live stream starts after the last event the status showed, so none after it is missed.
      if (typeof state.statusSeq === "number") state.lastSeq = state.statusSeq;
    }
  }

  /** Events the list shows, the newest on top: a page left open on a busy session would hold every event since it opened. */
  const EVENTS_SHOWN = 100;

  function showEvent(event) {
    const list = $("events");
    list.prepend(text("li", `${clock(event.at)} ${event.type} · ${event.actor}`));
    while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
  }

  /** How long the live stream may stay behind the status before it is taken as dead. */
  const STREAM_BEHIND_MS = 5000;

  /**
   * The status counts events the live stream has not brought, and has for a while: the stream is
   * taken as dead (a network gone under it neither delivers nor closes it) and followed again from
   * the last event shown. Else the events list stopped for good while the rest of the page refreshed.
   */
  function followIfSilent() {
    const behind = state.stream && typeof state.statusSeq === "number" && state.lastSeq !== null && state.statusSeq > state.lastSeq;
    if (!behind) {
      state.behindSince = 0;
      return;
    }
    if (!state.behindSince) state.behindSince = Date.now();
    if (Date.now() - state.behindSince < STREAM_BEHIND_MS) return;
    state.behindSince = 0;
    state.stream.abort();
    state.stream = null;
    follow();
  }

  /** Server-sent events over fetch (EventSource cannot send the Authorization header). */
  async function follow() {
    const abort = new AbortController();
    state.stream = abort;
    // Until this stream says otherwise: a session continued is followed again, its end to come.
    state.streamEnded = false;
    try {
      const response = await fetch(`/api/sessions/${encodeURIComponent(state.session)}/stream`, {
        method: "POST",
        signal: abort.signal,
        headers: { "content-type": "application/json", authorization: `Bearer ${state.token}` },
        // From the last event shown, so that none is missed or shown twice.
        body: JSON.stringify({ "events.subscribe": state.lastSeq === null ? {} : { from_seq: state.lastSeq } }),
      });
      if (!response.ok) throw new Error((await replyBody(response)).error.message);
      // Followed again (after a server restart): the notice that said it was down goes now, not at the next event.
      if (STREAM_DOWN.test($("notice").textContent)) $("notice").textContent = "";
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
      if (!abort.signal.aborted && !state.ended) $("notice").textContent = "The live stream ended.";
    } catch (error) {
      // An ended session's replay that failed (its server gone again) is no alert: the next refresh the
      // server answers asks for it again.
      if (state.ended) state.replayedTo = null;
      else if (!abort.signal.aborted) $("notice").textContent = visible(`Live events stopped: ${error.message}`);
    }
    if (state.stream === abort) state.stream = null;
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
      // Access ended (revoked, expired): the stream says so first, with the reason. Signed out at once;
      // waiting for the next refresh cost three refused calls (failed logins counted against this
      // address) and told only that the token was not valid.
      if (payload.code === "APEX_E_UNAUTHORIZED") return signedOut(payload.message);
      $("notice").textContent = visible(payload.message);
      return;
    }
    // An event this role is not shown (a share, to a viewer): only its seq, so the page knows it is not behind.
    if (kind === "events.skipped") {
      if (typeof payload.seq === "number" && (state.lastSeq === null || payload.seq > state.lastSeq)) state.lastSeq = payload.seq;
      return;
    }
    // The stream's end (or its events part's, were it to follow more): it follows the session's events
    // only, which end with the session. Dropped before, so the page learnt of the end from a refresh
    // alone, which a server that closed with its session could no longer answer.
    if (kind === "end" || (kind === "ended" && payload.method === "events.subscribe")) return sessionEnded();
    if (kind !== "events.subscribe") return;
    if (typeof payload.seq === "number" && state.lastSeq !== null && payload.seq <= state.lastSeq) return; // shown already
    if (STREAM_DOWN.test($("notice").textContent)) $("notice").textContent = "";
    showEvent(payload);
    if (typeof payload.seq === "number") state.lastSeq = payload.seq;
    // How the session ended, for the badge once the stream ends (its server may not answer by then).
    if (/^session\.(stopped|completed|failed)$/.test(payload.type)) state.endedAs = payload.type.slice("session.".length);
    else if (/^session\.(started|continued)$/.test(payload.type)) state.endedAs = null;
    if (payload.type === "session.merged" && payload.from) state.merges.push(payload.from);
    refreshSoon();
    if (/^session\./.test(payload.type)) refreshTree();
  }

  // An invite opened in a tab that shows the dashboard already (a new one after a revoke, another
  // session's) differs from the page's address by its fragment only: the browser loads no page, it
  // changes the hash. Before, nothing happened: the page went on with the old token (or kept saying
  // it was revoked), and the new token stayed in the address bar.
  window.addEventListener("hashchange", () => {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (fragment.get("token") && fragment.get("session")) start();
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("apex.session", $("login-session").value.trim());
    sessionStorage.setItem("apex.token", $("login-token").value.trim());
    start();
  });
  start();
})();
