// What the `apex serve` e2e tests share: a server on loopback for a project (ended by the test's
// cleanup list), a grant, a call of the HTTP API, and a command through `apex --remote`.
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "vitest";
import { waitFor, type Project } from "../fixtures/agents/harness.js";
import { endChild } from "./cleanup.js";

/** Starts `apex serve` on a free loopback port; its stop (SIGTERM, SIGKILL if it lingers) joins `stops`. Returns its URL. */
export async function serve(p: Project, stops: Array<() => unknown>, env?: NodeJS.ProcessEnv): Promise<string> {
  return (await serveLogged(p, stops, env)).url;
}

/** serve(), with the server's log (its stderr) so far and its pid: for a test that waits for what the server did. */
export async function serveLogged(p: Project, stops: Array<() => unknown>, env?: NodeJS.ProcessEnv): Promise<{ url: string; log: () => string; pid: number }> {
  const run = p.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"], env ? { env } : {});
  stops.push(() => endChild(run));
  const url = await waitFor("apex serve's address", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
  return { url, log: run.errors, pid: run.child.pid! };
}

/**
 * A real HTTP proxy on loopback in front of `upstream` (an `apex serve` URL), as a client may find one between it and the
 * server: a request `answer` answers itself (it returns true once it has) ends there; every other is forwarded as it came.
 * Its close joins `stops`. `requests`: the path of each request it got, in order.
 */
export async function proxy(
  upstream: string,
  stops: Array<() => unknown>,
  answer: (incoming: IncomingMessage, outgoing: ServerResponse) => boolean = () => false,
): Promise<{ port: number; requests: () => string[] }> {
  const target = new URL(upstream);
  const requests: string[] = [];
  const server: Server = createServer((incoming, outgoing) => {
    requests.push(incoming.url ?? "");
    if (answer(incoming, outgoing)) return;
    const forwarded = request({ host: target.hostname, port: target.port, path: incoming.url, method: incoming.method, headers: incoming.headers }, (reply) => {
      outgoing.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(outgoing);
    });
    forwarded.on("error", () => outgoing.writeHead(502).end());
    incoming.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  stops.push(() => new Promise((resolve) => server.close(resolve)));
  server.unref();
  return { port: (server.address() as AddressInfo).port, requests: () => [...requests] };
}

/** A command's stdout, once it exited 0 (its stderr is the failure message otherwise). */
export function ok(result: { status: number; stdout: string; stderr: string }): string {
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

/** `apex session share SESSION USER --role ROLE --json`. */
export function share(p: Project, session: string, user: string, role: string): { token: string; session_id: string } {
  return JSON.parse(ok(p.apex(["session", "share", session, user, "--role", role, "--json"])));
}

/** One method of the HTTP API, as a grant's bearer. */
export async function rpc(url: string, sid: string, method: string, token: string, body: unknown = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(`${url}/api/sessions/${sid}/rpc/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** An `apex --remote HOST/SESSION …` command with the grant's token. */
export function remote(p: Project, url: string, sid: string, token: string, args: string[]) {
  return p.apex(["--remote", `${url.replace(/^http:\/\//, "")}/${sid}`, ...args], { env: { APEX_TOKEN: token } });
}

/**
 * True once the server on `port` has read what the client on `clientPort` sent it: the receive queue
 * of its end of the connection (/proc/net/tcp) is empty. A fixed wait for that was a window a loaded machine missed.
 */
export function readByServer(port: number, clientPort: number): boolean {
  const hex = (n: number) => `:${n.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const [, local, remote, , queues] = line.trim().split(/\s+/);
    if (local?.endsWith(hex(port)) && remote?.endsWith(hex(clientPort))) return parseInt(queues!.split(":")[1]!, 16) === 0;
  }
  return false;
}

/** How many connections the server listening on `port` has open (/proc/net/tcp: its ends, in any state but LISTEN). */
export function serverConnections(port: number): number {
  return serverConnectionStates(port).length;
}

/** /proc/net/tcp's code of a connection whose other end has closed it, this end not yet. */
export const CLOSE_WAIT = "08";

/** The states of the server's end of each connection on `port` (not its listening socket), as /proc/net/tcp codes them. */
export function serverConnectionStates(port: number): string[] {
  const local = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter(([, address, , state]) => address?.endsWith(local) && state !== "0A")
    .map(([, , , state]) => state!);
}

/**
 * Bytes process `pid` has been sent on its connections to `port` and not read yet (/proc/net/tcp:
 * the receive queue of each of its sockets, found by inode among its descriptors). With the
 * process stopped (SIGSTOP), more than 0 says the server's reply has reached it.
 */
export function unreadBy(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith("socket:[")) inodes.add(target.slice(8, -1));
    } catch {
      // closed meanwhile
    }
  }
  const remote = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let unread = 0;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[2]?.endsWith(remote) && inodes.has(fields[9]!)) unread += parseInt(fields[4]!.split(":")[1]!, 16);
  }
  return unread;
}
