/**
 * Which PostgreSQL store a spec names, as one string with no user and no password: the server
 * (host in lower case, port), the database and the project id, which is what keys the data
 * (backend.ts). So URLs that differ only in the password, the user, `postgresql://` for
 * `postgres://` or their parameters (order or value: sslmode, options, …) name the same
 * store. Missing parts are filled in as libpq and node-postgres do (PGHOST, PGPORT, PGUSER,
 * PGDATABASE, the database named after the user). `localhost` and `127.0.0.1` stay two
 * names. Loads no pg.
 */
import { userInfo } from "node:os";
import type { StoreSpec } from "../../core/store/port.js";
import { redactUrl } from "../../core/store/open.js";

export function storeIdentity(spec: StoreSpec, env: NodeJS.ProcessEnv = process.env): string {
  const project = spec.project ?? "";
  let url: URL;
  try {
    url = parsePostgresUrl(spec.url ?? "");
  } catch {
    return `${redactUrl(spec.url ?? "")} (project ${project})`; // opening it reports the URL
  }
  const { host: named, port, database } = serverOf(url, env);
  // Host names are case-insensitive; a socket directory is a path, which is not.
  const host = named.startsWith("/") ? named : named.toLowerCase();
  return `postgres://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}/${database} (project ${project})`;
}

/**
 * The server, user and database a parsed URL connects to, with what it leaves out filled in as
 * the driver fills it in (PGHOST, PGPORT, PGUSER, PGDATABASE, the database named after the user).
 */
export function serverOf(url: URL, env: NodeJS.ProcessEnv = process.env): { host: string; port: string; user: string; database: string } {
  const query = url.searchParams;
  const host = query.get("host") || (url.hostname === NO_HOST ? "" : decodeURIComponent(url.hostname)) || env.PGHOST || "localhost";
  const port = query.get("port") || url.port || env.PGPORT || "5432";
  const user = decodeURIComponent(url.username) || query.get("user") || env.PGUSER || osUser();
  const database = decodeURIComponent(url.pathname.replace(/^\//, "")) || query.get("dbname") || env.PGDATABASE || user;
  return { host, port, user, database };
}

/** The login name, which libpq takes when the URL and PGUSER name none (a uid without a passwd entry has none). */
function osUser(): string {
  try {
    return userInfo().username;
  } catch {
    return "";
  }
}

/** The host a URL without one is read with (parsePostgresUrl): a name no server has. */
export const NO_HOST = "apex-no-host.invalid";

/**
 * A PostgreSQL URL as the driver (pg-connection-string) reads it. WHATWG URL refuses a URL with
 * user info but no host, `postgres://user:password@/db?host=/var/run/postgresql` (libpq's form for
 * a unix socket), which the driver reads with a stand-in host, and so does this: its hostname is
 * then NO_HOST. Throws as `new URL` does for any other URL it cannot parse.
 */
export function parsePostgresUrl(text: string): URL {
  try {
    return new URL(text);
  } catch (error) {
    const hostless = text.replace(/^(postgres(?:ql)?:\/\/[^/?#]*)@\//i, `$1@${NO_HOST}/`);
    if (hostless === text) throw error;
    return new URL(hostless);
  }
}
