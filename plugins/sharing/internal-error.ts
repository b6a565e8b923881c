import { randomBytes } from "node:crypto";
import { ApexError, ErrorCodes, isApexError, type ErrorCode } from "../../core/errors.js";

/** The HTTP status of an error's answer, where its exit code does not say it (2: 400, 3: 404, 4: 409, any other: 500). */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  APEX_E_UNAUTHORIZED: 401,
  APEX_E_FORBIDDEN: 403,
  APEX_E_TOO_LARGE: 413,
  APEX_E_RATE_LIMITED: 429,
  APEX_E_RPC: 502,
  // The store's server is down or restarting: the request may be sent again once it is back.
  APEX_E_STORE_UNREACHABLE: 503,
  APEX_E_TIMEOUT: 504,
};

export function httpStatus(error: ApexError): number {
  const exit = ErrorCodes[error.code];
  return HTTP_STATUS[error.code] ?? (exit === 2 ? 400 : exit === 3 ? 404 : exit === 4 ? 409 : 500);
}

/**
 * What a remote client is told of an error. One that answers its request (refused: 4xx; the
 * supervisor, the store's server or a timeout in the way: 502–504) as it is: its message says what
 * to send instead or when to come back. Any other, a 500 (a bug, a failing disk, a damaged store, a
 * plugin's own failure), may name the server's files or its internals, which are no remote
 * client's business: the client gets its code (APEX_E_INTERNAL for an error that is not APEX's), a
 * message that says only that the server failed, and a reference; the server's log (`apex serve`'s
 * stderr) gets the whole error, message, cause and stack, under that reference.
 */
export function publicError(error: unknown, log: (line: string) => void, where: string): ApexError {
  if (isApexError(error) && httpStatus(error) !== 500) return error;
  const reference = randomBytes(4).toString("hex");
  const code: ErrorCode = isApexError(error) ? error.code : "APEX_E_INTERNAL";
  log(`error ${reference}: ${where}: ${code}: ${describe(error)}`);
  return new ApexError(code, `The server failed on this request (error ${reference}); what failed is in the server's log, not in this answer.`, {
    hint: `Give the server's owner the reference ${reference}: its log (\`apex serve\`'s stderr) has the error under it.`,
    details: { reference },
  });
}

/** An error as the server's log keeps it: its message, then its stack and its causes' (indented). */
function describe(error: unknown, depth = 0): string {
  if (!(error instanceof Error)) return String(error);
  const stack = error.stack?.split("\n").slice(1).map((line) => `  ${line.trim()}`).join("\n");
  const hint = isApexError(error) && error.hint ? `\n  hint: ${error.hint}` : "";
  const cause = error.cause !== undefined && depth < 5 ? `\n  caused by: ${describe(error.cause, depth + 1)}` : "";
  return `${error.message}${hint}${stack ? `\n${stack}` : ""}${cause}`;
}
