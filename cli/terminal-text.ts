/**
 * Text that reaches a terminal carries no control characters but newline and tab. Task titles,
 * log lines, memory values, user names and error messages may come from another user, an agent
 * or a remote server (`apex connect`, `--remote`); an escape sequence among them would act on
 * the reader's terminal (move the cursor, rewrite what was printed, set the window title, write
 * the clipboard). Each such character is shown as its escape instead, `\u001b`: visible as text,
 * and, inside a JSON string, the same character again (JSON.stringify already escapes the C0
 * controls; DEL, C1 and the bidirectional overrides it leaves as they are are escaped here).
 *
 * The CLI installs this on stdout and stderr (`guardTerminalOutput`); the colours APEX paints
 * itself (cli/output.ts `paint`) pass on a stream that shows colour, and the few writers of
 * cursor movements (the live view of `apex connect`, progress lines) use `writeControl`, with
 * their text made safe first.
 */

/** C0 but tab and newline, a carriage return not followed by a newline, DEL, C1, and the bidirectional embeddings, overrides and isolates. */
const UNSAFE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|\r(?!\n)/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, "g");
/** The same, with tab and newline (and CR-LF) too: text that must stay on one line. */
const UNSAFE_LINE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
/** Every control character but tab: one line of an agent's output, or a title, with its tabs. */
const UNSAFE_BUT_TAB = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** Exactly the sequences `paint` writes (cli/output.ts), kept on a stream that shows colour. */
const OWN_COLOURS = new RegExp(`\\u001b\\[(?:0|1|2|3[1-6]|90)m|${UNSAFE.source}`, "g");

function escaped(char: string): string {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

export interface SafeTextOptions {
  /** Keep the colour sequences APEX paints (only for a stream that shows colour). */
  keepColours?: boolean;
  /** Escape newlines and tabs too: the text is one cell or one line of a screen. */
  singleLine?: boolean;
}

/**
 * One line of an agent's output (`apex logs`) or a text agents and users write (titles,
 * milestones, reports) as one line: every control character but tab shown as its escape, a
 * line break too. `--json` keeps the text exact.
 */
export function visibleText(text: string): string {
  return text.replace(UNSAFE_BUT_TAB, escaped);
}

/**
 * A log line as the lines a terminal would have shown one after the other: a carriage return
 * not at the end starts a new segment (an agent's progress bar, `10%\r20%\r30%`, reads as
 * three lines instead of one line of escapes), so nothing a later segment would have drawn
 * over is hidden. One carriage return at the end (a CR-LF line ending) is dropped; empty
 * segments are left out, unless the line is empty.
 */
export function logLineSegments(line: string): string[] {
  const text = line.endsWith("\r") ? line.slice(0, -1) : line;
  if (!text.includes("\r")) return [text];
  const segments = text.split("\r").filter((segment) => segment.length > 0);
  return segments.length > 0 ? segments : [""];
}

/** `text` with every control character shown as its escape (see above). */
export function terminalSafe(text: string, options: SafeTextOptions = {}): string {
  if (options.singleLine) return text.replace(UNSAFE_LINE, escaped);
  if (!UNSAFE.test(text)) return text;
  if (options.keepColours) return text.replace(OWN_COLOURS, (match) => (match.length > 1 ? match : escaped(match)));
  return text.replace(UNSAFE_ALL, escaped);
}

/** The colour sequences `paint` writes: they take no column. */
const COLOURS = /\u001b\[(?:0|1|2|3[1-6]|90)m/g;
/**
 * The classes of wide and of zero-width characters, made on the first text that is not plain ASCII:
 * as literals, their Unicode properties cost ICU's tables as the module loads (half a millisecond of
 * every command that imports it, `apex status` among them), which most text never needs.
 */
let classes: { wide: RegExp; zeroWidth: RegExp } | undefined;
function widthClasses(): { wide: RegExp; zeroWidth: RegExp } {
  return (classes ??= {
    // East Asian wide and fullwidth blocks (Hangul Jamo, CJK, kana, Hangul syllables, fullwidth forms), which a terminal shows two columns wide.
    wide: new RegExp(
      "[\\u1100-\\u115f\\u2e80-\\u303e\\u3041-\\u33ff\\u3400-\\u4dbf\\u4e00-\\u9fff\\ua000-\\ua4cf\\ua960-\\ua97f\\uac00-\\ud7a3\\uf900-\\ufaff\\ufe10-\\ufe19\\ufe30-\\ufe6f\\uff00-\\uff60\\uffe0-\\uffe6\\u{16fe0}-\\u{18d08}\\u{1b000}-\\u{1b2ff}\\u{20000}-\\u{3fffd}]|\\p{Emoji_Presentation}|\\ufe0f",
      "u",
    ),
    // What takes no column of its own: combining marks, zero-width characters, joiners, variation selectors.
    zeroWidth: new RegExp("^[\\p{Mark}\\p{Default_Ignorable_Code_Point}]+$", "u"),
  });
}
let graphemes: Intl.Segmenter | undefined;

/**
 * The columns `text` takes on a terminal, as the guarded streams print it: APEX's colours take
 * none, a control character the six of its escape (`\u001b`), a character of a wide East Asian
 * script or an emoji two, a combining mark or zero-width character none (each grapheme, as a
 * terminal draws it, counts once). `.length` counts UTF-16 units: a column of CJK titles or
 * accented names was padded short and the columns after it went out of line.
 */
export function displayWidth(text: string): number {
  const plain = text.includes("\u001b") ? text.replace(COLOURS, "") : text;
  if (/^[\u0020-\u007e]*$/.test(plain)) return plain.length;
  graphemes ??= new Intl.Segmenter(undefined, { granularity: "grapheme" });
  const { wide, zeroWidth } = widthClasses();
  let width = 0;
  for (const { segment } of graphemes.segment(plain)) {
    const controls = segment.match(UNSAFE_LINE)?.length ?? 0;
    const visible = controls > 0 ? segment.replace(UNSAFE_LINE, "") : segment;
    width += controls * 6 + (visible === "" || zeroWidth.test(visible) ? 0 : wide.test(visible) ? 2 : 1);
  }
  return width;
}

/** TEXT cut to at most WIDTH columns (displayWidth), ending in "…" when cut; a grapheme is never split. */
export function cutToWidth(text: string, width: number): string {
  if (displayWidth(text) <= width) return text;
  graphemes ??= new Intl.Segmenter(undefined, { granularity: "grapheme" });
  let kept = "";
  for (const { segment } of graphemes.segment(text)) {
    if (displayWidth(kept + segment) > width - 1) break;
    kept += segment;
  }
  return `${kept}…`;
}

/**
 * A value's text shown in a line, cut to WIDTH columns as cutToWidth cuts it (an emoji, or any
 * grapheme, kept whole: a cut by UTF-16 units kept half of one, printed as U+FFFD), only its
 * start looked at when it is long (a value's JSON may be megabytes).
 */
export function clippedText(text: string, width: number): string {
  return cutToWidth(text.length > 4 * width ? `${text.slice(0, 4 * width)}…` : text, width);
}

/** Colour only on a TTY, never with NO_COLOR (here, beside the guard that keeps it, for `apex status`'s fast path: output.ts loads later there). */
export function useColor(stream: NodeJS.WriteStream = process.stdout): boolean {
  return Boolean(stream.isTTY) && !("NO_COLOR" in process.env) && process.env.TERM !== "dumb";
}

type Write = NodeJS.WriteStream["write"];
const unguarded = new WeakMap<NodeJS.WriteStream, Write>();

/**
 * Makes every later write to `streams` terminal-safe. `keepColours(stream)` says whether the
 * stream shows APEX's colours (so they pass).
 */
export function guardTerminalOutput(keepColours: (stream: NodeJS.WriteStream) => boolean, streams: NodeJS.WriteStream[] = [process.stdout, process.stderr]): void {
  for (const stream of streams) {
    if (unguarded.has(stream)) continue;
    const write = stream.write.bind(stream) as Write;
    unguarded.set(stream, write);
    const options = { keepColours: keepColours(stream) };
    stream.write = ((chunk: unknown, encoding?: unknown, callback?: unknown) => {
      let data = chunk;
      let enc = encoding;
      if (typeof chunk === "string") data = terminalSafe(chunk, options);
      else if (chunk instanceof Uint8Array) {
        const text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString("utf8");
        if (UNSAFE.test(text)) {
          data = terminalSafe(text, options);
          if (typeof enc === "string") enc = "utf8";
        }
      }
      return (write as (...args: unknown[]) => boolean)(data, enc, callback);
    }) as Write;
  }
}

/**
 * Writes terminal control sequences as they are (cursor movement, clearing a line): for the
 * live view and progress lines, whose text was made safe with `terminalSafe` first.
 */
export function writeControl(stream: NodeJS.WriteStream, text: string | Uint8Array): boolean {
  const write = unguarded.get(stream);
  return write ? (write as (text: string | Uint8Array) => boolean)(text) : stream.write(text);
}
