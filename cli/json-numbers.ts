import { ApexError } from "../core/errors.js";

/**
 * JSON text may write numbers a JSON number (a double) does not hold; JSON.parse reads them as
 * something else without a word: `1e400` as Infinity, `1e-400` as 0, `12345678901234567890` (an
 * id past 2^53) as 12345678901234567000. Each is refused, naming the number as it was written,
 * with a hint to give it as a string. A fraction or an exponent that only rounds (0.1, 2.5e-324)
 * is taken to the nearest double, as JSON numbers are; so is an integer written as JSON writes a
 * double (12345678901234567000: what `memory export` writes).
 *
 * WHAT names the value ("The value for /k"); WHERE, for a file, the line at an offset of TEXT.
 */
export function refuseInexactNumbers(text: string, what: string, where: (offset: number) => string = () => ""): void {
  // Only 16 digits in a row, or an exponent of 3 digits, can be such a number: the common case costs one search.
  if (!/\d{16}|[eE][+-]?\d{3}/.test(text)) return;
  const number = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
  for (let at = 0; at < text.length; at++) {
    const code = text.charCodeAt(at);
    if (code === 0x22) {
      // A string: skipped to its closing quote (one not escaped).
      for (;;) {
        at = text.indexOf('"', at + 1);
        let backslashes = 0;
        while (text.charCodeAt(at - 1 - backslashes) === 0x5c) backslashes += 1;
        if (at === -1 || backslashes % 2 === 0) break;
      }
      if (at === -1) return;
    } else if (code === 0x2d || (code >= 0x30 && code <= 0x39)) {
      number.lastIndex = at;
      const token = number.exec(text)?.[0];
      if (token === undefined) continue;
      const problem = inexactNumber(token, token.length > 60 ? `${token.slice(0, 40)}…${token.slice(-10)} (${token.length} characters)` : token);
      if (problem) {
        const keep = /[.eE]/.test(token) ? "it as written" : "every digit";
        throw new ApexError("APEX_E_BAD_INPUT", `${where(at)}${what} has the ${problem}.`, {
          hint: `Nothing was written. Give it as a string to keep ${keep}${token.length > 60 ? ", in double quotes" : `: "${token}"`}.`,
          details: { number: token },
        });
      }
      at += token.length - 1;
    }
  }
}

/** What is wrong with the JSON number TOKEN (SHOWN so) as JSON.parse reads it ("number 1e400, …"), or undefined if it reads as written (to the nearest). */
function inexactNumber(token: string, shown: string): string | undefined {
  const value = Number(token);
  if (!Number.isFinite(value)) return `number ${shown}, larger than a JSON number holds (about 1.8e308): it would be ${String(value)}, which JSON cannot store`;
  // Digits that are not all zero, read as 0: below the smallest JSON number (about 5e-324).
  if (value === 0 && /[1-9]/.test(token.replace(/[eE].*$/, ""))) return `number ${shown}, nearer zero than a JSON number holds (about 5e-324): it would be stored as 0`;
  // An integer written with a zero fraction (9007199254740993.0) is that integer: it loses a digit as one written without.
  const integer = /^-?\d+\.0+$/.test(token) ? token.slice(0, token.indexOf(".")) : token;
  if (/[.eE]/.test(integer) || integer.replace("-", "").length < 16) return undefined;
  // The form JSON.stringify gives a double (what `memory export` writes: 12345678901234567000) is that double.
  if (BigInt(integer) === BigInt(value) || String(value) === integer) return undefined;
  return `integer ${shown}, past what a JSON number holds exactly: it would be stored as ${String(value)}`;
}
