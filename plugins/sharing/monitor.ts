import type { Color } from "../../cli/output.js";
import type { SessionEvent } from "../../core/session/records.js";
import type { StatusReport } from "../../core/session/status-report.js";
import { STATUS_COLORS, eventParts } from "../../cli/session/format.js";
import { terminalSafe } from "../../cli/terminal-text.js";

/**
 * `apex connect` on a terminal: one screen, redrawn in place (like pm2 monit or a tmux status
 * line) — the session's status line, its agents with their state, task counts, the last
 * checkpoint and the most recent events. `renderMonitor` is a pure function of what the
 * client knows and the terminal's size; `connectCommand` redraws with it.
 */
export interface MonitorState {
  origin: string;
  me: { user: string; role: string };
  status: StatusReport | null;
  /** Oldest first; the screen shows the newest that fit. */
  events: SessionEvent[];
  /** Shown under the events: why the stream ended, or the last error. */
  notice: string | null;
  /** When the screen was drawn (the status line shows the time). */
  now: Date;
}

type Segment = readonly [text: string, color?: Color];
type Line = Segment[];

/** The screen as lines of at most `width` visible characters, at most `height` lines. */
export function renderMonitor(state: MonitorState, width: number, height: number, colorize: (text: string, color: Color) => string = (text) => text): string[] {
  const lines: Line[] = [];
  const status = state.status;
  const session = status?.session;
  const clock = state.now.toISOString().slice(11, 19);
  lines.push([
    ["APEX ", "bold"],
    // A branch session by its name, its id after it.
    [session ? (typeof session.name === "string" && session.name ? `${session.name} (${session.session_id})` : String(session.session_id)) : "no session"],
    ["  "],
    [session ? String(session.status) : "-", session ? STATUS_COLORS[session.status] : undefined],
    [`  ${state.me.user} (${state.me.role}) @ ${state.origin}  ${clock}`, "gray"],
  ]);
  if (status && session) {
    const t = status.tasks ?? { pending: 0, active: 0, completed: 0, failed: 0 };
    lines.push([["tasks       "], [`${t.pending} pending · ${t.active} active · ${t.completed} completed · ${t.failed} failed`]]);
    const checkpoint = status.last_checkpoint;
    lines.push([
      ["checkpoint  "],
      [checkpoint ? `${checkpoint.sequence ?? "?"} (${checkpoint.trigger ?? "?"})${checkpoint.description ? ` "${checkpoint.description}"` : ""} at ${(checkpoint.created_at ?? "").slice(11, 19)}` : "none yet"],
    ]);
    if (Array.isArray(status.connected) && status.connected.length) lines.push([["connected   "], [status.connected.map((user) => `${user.user} (${user.role})`).join(", ")]]);
    lines.push([]);
    lines.push([[`${"AGENT".padEnd(14)}${"STATE".padEnd(12)}${"PID".padEnd(9)}${"CPU".padEnd(10)}TASK`, "bold"]]);
    // A server that is not this version of APEX may leave fields out: shown as "-", never a crash.
    const agents = Array.isArray(status.agents) ? status.agents : [];
    for (const agent of agents) {
      const name = terminalSafe(String(agent.name), { singleLine: true });
      const state = String(agent.status);
      lines.push([
        [[...name].slice(0, 13).join("").padEnd(14)],
        [state.padEnd(12), STATUS_COLORS[state]],
        [(typeof agent.pid === "number" ? String(agent.pid) : "-").padEnd(9)],
        [`${typeof agent.cpu_seconds === "number" ? agent.cpu_seconds.toFixed(2) : "-"}s`.padEnd(10)],
        [agent.task ?? "-"],
      ]);
    }
    if (agents.length === 0) lines.push([["(no agents)", "gray"]]);
  }
  lines.push([]);
  lines.push([["RECENT EVENTS", "bold"]]);
  const footer: Line[] = [];
  if (state.notice) footer.push([[state.notice, "yellow"]]);
  footer.push([["Ctrl-C detaches.", "gray"]]);
  const room = Math.max(0, height - lines.length - footer.length);
  const shown = room === 0 ? [] : state.events.slice(-room);
  for (const event of shown) {
    const { time, what, color } = eventParts(event);
    lines.push([[time, "gray"], ["  "], [what, color], [`  [${event.actor}]`, "gray"]]);
  }
  if (state.events.length === 0 && room > 0) lines.push([["(none yet)", "gray"]]);
  lines.push(...footer);
  return lines.slice(0, Math.max(1, height)).map((line) => fit(line, width, colorize));
}

/**
 * Cuts a line to `width` visible characters (the last one an ellipsis when cut), then colours it.
 * What the server sent (names, titles, events) is made terminal-safe and kept on its line first:
 * the screen is written with its control sequences as they are.
 */
function fit(raw: Line, width: number, colorize: (text: string, color: Color) => string): string {
  const line = raw.map(([text, color]) => [terminalSafe(text, { singleLine: true }), color] as const);
  let left = Math.max(1, width);
  let out = "";
  const total = line.reduce((sum, [text]) => sum + [...text].length, 0);
  const cut = total > left;
  if (cut) left -= 1;
  for (const [text, color] of line) {
    if (left <= 0) break;
    const chars = [...text];
    const part = chars.slice(0, left).join("");
    left -= Math.min(chars.length, left);
    out += color ? colorize(part, color) : part;
  }
  return cut ? `${out}…` : out;
}

/** ANSI control sequences of the live view: an alternate screen, like top or pm2 monit. */
export const SCREEN = {
  enter: "\u001b[?1049h\u001b[?25l",
  leave: "\u001b[?25h\u001b[?1049l",
  /** Cursor home; each line clears its rest; then clear below. */
  frame: (lines: string[]) => `\u001b[H${lines.map((line) => `${line}\u001b[K`).join("\n")}\u001b[J`,
};
