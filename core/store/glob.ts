import { ApexError } from "../errors.js";
import { prefixRange } from "./paths.js";

/**
 * A compiled path glob: `*` matches within one segment, `**` any number of segments
 * (including none), `?` one character other than '/'. `\` escapes `*`, `?` and `\`.
 */
export interface Glob {
  readonly source: string;
  /** The literal part before the first wildcard: only keys with this prefix can match. */
  readonly prefix: string;
  /** Exact key range worth scanning. */
  readonly range: { start: string; end: string | undefined };
  /** True when the glob has no wildcard: it names one path. */
  readonly literal: boolean;
  matches(path: string): boolean;
}

export function compileGlob(source: string): Glob {
  if (typeof source !== "string" || !source.startsWith("/")) {
    throw new ApexError("APEX_E_BAD_GLOB", `Invalid glob ${JSON.stringify(source)}: it must start with '/'.`, { hint: "Examples: /notes/*, /a/**, /sessions/*/tasks/?" });
  }
  let pattern = "^";
  let prefix = "";
  let sawWildcard = false;
  // By code point, as the regex's `u` flag reads the path; each part also as a token of the matcher below.
  const chars = Array.from(source);
  const tokens: Token[] = [];
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i]!;
    // `\` escapes a wildcard or itself; before anything else it is a character of the path (`/a\b` is a plain path).
    if (char === "\\" && /^[*?\\]$/.test(chars[i + 1] ?? "")) {
      const escaped = chars[++i]!;
      pattern += escapeRegExp(escaped);
      tokens.push(escaped);
      if (!sawWildcard) prefix += escaped;
      continue;
    }
    if (char === "*") {
      sawWildcard = true;
      if (chars[i + 1] === "*") {
        i++;
        const segmentStart = i - 1 === 0 || chars[i - 2] === "/";
        const segmentEnd = i + 1 === chars.length || chars[i + 1] === "/";
        if (segmentStart && segmentEnd && chars[i + 1] === "/") {
          // "/**/" matches "/" or "/any/depth/"
          pattern += "(?:.*/)?";
          tokens.push(DIRS);
          i++;
        } else {
          pattern += ".*";
          tokens.push(ANY);
        }
      } else {
        pattern += "[^/]*";
        tokens.push(STAR);
      }
      continue;
    }
    if (char === "?") {
      sawWildcard = true;
      pattern += "[^/]";
      tokens.push(ONE);
      continue;
    }
    pattern += escapeRegExp(char);
    tokens.push(char);
    if (!sawWildcard) prefix += char;
  }
  pattern += "$";
  // "s": `.` (of `**`) matches U+2028 and U+2029 too, characters a path may hold.
  const regex = new RegExp(pattern, "su");
  // Two wildcards of any length or more: the regex backtracks, exponentially in how many (a remote
  // viewer's `/**/**/…/x` held a supervisor for ever); matched by the tokens instead, in linear time.
  const unbounded = tokens.filter((token) => token === STAR || token === ANY || token === DIRS).length;
  return {
    source,
    prefix,
    range: prefixRange(prefix),
    literal: !sawWildcard,
    matches: unbounded < 2 ? (path: string) => regex.test(path) : (path: string) => matchTokens(tokens, path),
  };
}

// A glob's parts: a literal code point, `?`, `*`, `**`, and DIRS: a `**` segment between slashes, `(any/)?` after the first.
type Token = string | typeof ONE | typeof STAR | typeof ANY | typeof DIRS;
const ONE = 0;
const STAR = 1;
const ANY = 2;
const DIRS = 3;

/**
 * Whether `path` matches the tokens, by the set of states reached after each code point (an NFA,
 * never backtracking). State 2i: at token i; 2i+1: inside token i, a DIRS that has read characters
 * (it ends only after a '/').
 */
function matchTokens(tokens: readonly Token[], path: string): boolean {
  const end = 2 * tokens.length;
  // Wildcards may match nothing: from each, the next token is reached as well (a Set visits what is added while it is walked).
  const closed = (states: Set<number>) => {
    for (const state of states) if (state % 2 === 0 && state < end && typeof tokens[state / 2] === "number" && tokens[state / 2] !== ONE) states.add(state + 2);
    return states;
  };
  let states = closed(new Set([0]));
  for (const char of path) {
    const next = new Set<number>();
    for (const state of states) {
      const token = tokens[state >> 1];
      if (state === end) continue;
      if (state % 2 === 1 || token === DIRS) next.add(state | 1).add(char === "/" ? (state & ~1) + 2 : state | 1);
      else if (token === ANY || (token === STAR && char !== "/")) next.add(state);
      else if (token === char || (token === ONE && char !== "/")) next.add(state + 2);
    }
    if (next.size === 0) return false;
    states = closed(next);
  }
  return states.has(end);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
