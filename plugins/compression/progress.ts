import { terminalSafe, writeControl } from "../../cli/terminal-text.js";

/**
 * Progress of long operations on a terminal: one line on stderr, rewritten with \r at most
 * ten times a second, erased when done. Silent when stderr is not a TTY (pipes, CI, a
 * command forwarded to the supervisor), so output stays clean for scripts.
 */
export class Progress {
  private last = 0;
  private shown = false;
  private readonly enabled: boolean;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr, enabled?: boolean) {
    this.enabled = enabled ?? (Boolean(stream.isTTY) && process.env.TERM !== "dumb");
  }

  update(text: string, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const width = Math.max(20, (this.stream.columns ?? 80) - 1);
    const safe = terminalSafe(text, { singleLine: true });
    writeControl(this.stream, `\r${safe.length > width ? `${safe.slice(0, width - 1)}…` : safe}\u001b[K`);
    this.shown = true;
  }

  done(): void {
    if (!this.shown) return;
    writeControl(this.stream, "\r\u001b[K");
    this.shown = false;
  }
}
