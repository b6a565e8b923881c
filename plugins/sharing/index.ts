import { builtinPluginSchema } from "../../core/config/schemas.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";
import type { RunningServer } from "./server.js";

const PLUGIN_NAME = "sharing" as const;

export interface SharingOptions {
  backend?: string;
  location?: string;
  /** Serve the session over HTTP(S) from its supervisor, as `apex serve` does on its own. */
  serve?: { listen: string; tls_cert?: string; tls_key?: string; insecure?: boolean; cors?: string[]; allow_hosts?: string[]; max_connections?: number };
}

/**
 * Shares a session with other users. With `serve: { listen: … }` the session's supervisor
 * serves it over HTTP(S) while it runs (the same server as `apex serve`, started on onStart and
 * closed on onStop); grants and roles are the session's records (`apex session share`).
 */
export default definePlugin<SharingOptions>({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  requires: ["git"],
  // Read when asked for (config checks read it themselves): a supervisor applying the plugin reads no schema, loads no validator.
  get schema() {
    return builtinPluginSchema(PLUGIN_NAME);
  },
  apply(apex, options) {
    const serve = options.serve;
    if (!serve) return;
    let server: RunningServer | undefined;
    apex.hooks.onStart.tapPromise(PLUGIN_NAME, async () => {
      const config = apex.config;
      if (!config || server) return;
      const [{ startServer }, { writeServeFile }] = await Promise.all([import("./server.js"), import("./serve-file.js")]);
      const { resolve } = await import("node:path");
      server = await startServer({
        location: { configPath: config.configPath, projectDir: config.projectDir, storeDir: config.storeDir },
        listen: serve.listen,
        tlsCert: serve.tls_cert ? resolve(config.projectDir, serve.tls_cert) : undefined,
        tlsKey: serve.tls_key ? resolve(config.projectDir, serve.tls_key) : undefined,
        insecure: serve.insecure,
        corsOrigins: serve.cors,
        allowHosts: serve.allow_hosts,
        maxConnections: serve.max_connections,
        closesWithSession: true,
        // It logs no requests; its own failures, which its 500s give only a reference to, go to the supervisor's log.
        errorLog: (line) => void process.stderr.write(`[${new Date().toISOString()}] sharing.serve: ${line}\n`),
      });
      writeServeFile(config.storeDir, server.url);
    });
    apex.hooks.onStop.tapPromise(PLUGIN_NAME, async (stop) => {
      // The session's end closes this server: its streams end as the session's end (a client exits 0), not as a server gone.
      const name = stop.session?.name;
      await server?.close({ sessionId: stop.sessionId, name: typeof name === "string" ? name : null });
      server = undefined;
      // Only this supervisor's record (or one whose server is gone): an `apex serve` still running keeps its own.
      const config = apex.config;
      if (config) (await import("./serve-file.js")).removeServeFile(config.storeDir);
    });
  },
});
