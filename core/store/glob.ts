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
    throw new ApexError("APEX_E_BAD_GLOB", `Invalid glob ${JSON.stringify(source)}: it must start with '/'.`, {
      hint: "Examples: /notes/*, /a/**, /sessions/*/tasks/?",
    });
  }
  let pattern = "^";
  let prefix = "";
  let sawWildcard = false;
  for (let i = 0; i < source.length; i++) {
    const char = source[i]!;
    // `\` escapes a wildcard or itself; before anything else it is a character of the path (`/a\b` is a plain path).
    if (char === "\\" && /^[*?\\]$/.test(source[i + 1] ?? "")) {
      const escaped = source[++i]!;
      pattern += escapeRegExp(escaped);
      if (!sawWildcard) prefix += escaped;
      continue;
    }
    if (char === "*") {
      sawWildcard = true;
      if (source[i + 1] === "*") {
        i++;
        const segmentStart = i - 1 === 0 || source[i - 2] === "/";
        const segmentEnd = i + 1 === source.length || source[i + 1] === "/";
        if (segmentStart && segmentEnd && source[i + 1] === "/") {
          // "/**/" matches "/" or "/any/depth/"
          pattern += "(?:.*/)?";
          i++;
        } else {
          pattern += ".*";
        }
      } else {
        pattern += "[^/]*";
      }
      continue;
    }
    if (char === "?") {
      sawWildcard = true;
      pattern += "[^/]";
      continue;
    }
    pattern += escapeRegExp(char);
    if (!sawWildcard) prefix += char;
  }
  pattern += "$";
  // "s": `.` (of `**`) matches U+2028 and U+2029 too, characters a path may hold.
  const regex = new RegExp(pattern, "su");
  return {
    source,
    prefix,
    range: prefixRange(prefix),
    literal: !sawWildcard,
    matches: (path: string) => regex.test(path),
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
