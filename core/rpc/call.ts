import { connect } from "node:net";
import { ApexError, type ErrorCode } from "../errors.js";

/**
 * One request over the supervisor's control socket. The protocol is newline-delimited
 * JSON: `{id, method, params}` answered by `{id, result}` or `{id, error: {code, message, hint}}`.
 */
export function callSupervisor(socketPath: string, method: string, params: unknown, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let buffer = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ApexError("APEX_E_TIMEOUT", `The supervisor did not answer ${method} within ${timeoutMs} ms.`));
    }, timeoutMs);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(`${JSON.stringify({ id: 1, method, params })}\n`));
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const newline = buffer.indexOf("\n");
      if (newline < 0) return;
      clearTimeout(timer);
      socket.end();
      let reply: { result?: unknown; error?: { code: ErrorCode; message: string; hint?: string } };
      try {
        reply = JSON.parse(buffer.slice(0, newline));
      } catch (error) {
        reject(new ApexError("APEX_E_RPC", `Unreadable reply from the supervisor: ${(error as Error).message}`));
        return;
      }
      if (reply.error) {
        const code = reply.error.code ?? "APEX_E_RPC";
        reject(new ApexError(code, reply.error.message, reply.error.hint ? { hint: reply.error.hint } : {}));
      } else resolve(reply.result);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new ApexError("APEX_E_RPC", `Cannot reach the supervisor at ${socketPath}: ${error.code ?? error.message}.`, {
          hint: "Check `apex status`; if the session is interrupted, `apex start --continue last` recovers it.",
        }),
      );
    });
  });
}
