import type { Command } from "commander";
import { sessionArgument } from "../../cli/session-arguments.js";
import { projectOf } from "../../cli/context.js";
import { durationHelp } from "../../cli/durations.js";

/**
 * `apex serve`, `apex connect`, `apex login` and `apex session share|unshare|shares`: a
 * session shared with other users over HTTP(S). The work is in plugins/sharing/, loaded only
 * when one of these commands runs (fastify too, only by `serve`).
 */
export function registerRemoteCommands(program: Command): void {
  program
    .command("serve")
    .description("serve the project's sessions over HTTP(S) to the users they are shared with (API, live events, dashboard at /)")
    .option("--listen <host[:port]>", "address to listen on: HOST[:PORT], port 7433 when left out (0 picks a free one)", "127.0.0.1:7433")
    .option("--tls-cert <file>", "PEM certificate: serve HTTPS")
    .option("--tls-key <file>", "PEM private key of --tls-cert")
    .option("--insecure", "allow plain HTTP on a non-loopback address (tokens would cross the network in clear)")
    .option("--cors <origin...>", "browser origins allowed to call the API (none by default)")
    .option("--allow-host <name...>", "host names requests may be addressed to besides localhost, 127.0.0.1 and [::1] (a proxy's, a tunnel's, this host's); others are refused, on any address once given")
    .option("--max-connections <n>", "connections held at once, a quarter of them at most from one client address (loopback ones: this host, a tunnel: any); past it, new ones are refused (503, or 429 for the address) until some close", "1000")
    .option("--json", "print {url, port, pid} once listening")
    .addHelpText(
      "after",
      `
Loopback by default. A non-loopback address needs --tls-cert and --tls-key (or --insecure).
On loopback, a request addressed to another name (Host header) is refused (403): a web page
can point its own name at 127.0.0.1 (DNS rebinding); --allow-host names a proxy's or tunnel's.
Every request needs a token from \`apex session share\`; roles decide what it may do.
Runs until Ctrl-C. A session's supervisor can serve too: \`sharing: { serve: { listen: … } }\`.

Examples:
  apex serve
  apex serve --listen 0.0.0.0:7433 --tls-cert cert.pem --tls-key key.pem
  apex serve --listen 127.0.0.1:0 --json`,
    )
    .action(async (options: { listen: string; tlsCert?: string; tlsKey?: string; insecure?: boolean; cors?: string[]; allowHost?: string[]; maxConnections?: string; json?: boolean }, command: Command) => {
      const { serveCommand } = await import("./cli.js");
      await serveCommand(projectOf(command), options);
    });

  program
    .command("connect")
    .description("attach to a remote session: on a terminal a live view redrawn until Ctrl-C; on a pipe its status, then its events line by line")
    .argument("<target>", "HOST[:PORT]/SESSION or HOST:SESSION (default port 7433; SESSION: id, unique id prefix or branch name)")
    .option("--json", "print {connected, status}, then one JSON object per event, a line each")
    .addHelpText(
      "after",
      `
On a terminal: status line, agents (state, PID, CPU, task), task counts, last checkpoint,
who is connected and the recent events, redrawn on each event and every 2 s.
On a pipe: ends at the session's end (exit 0, said on stderr) or Ctrl-C; a server that stops
or a connection lost under it is exit 1 (APEX_E_RPC, how in details.connection).
The token comes from --token-file FILE, APEX_TOKEN or \`apex login HOST\` (--token VALUE works
too, but every user of the machine sees it in \`ps\` and the shell's history keeps it).
To run one command against the session instead: apex --remote HOST/SESSION status

Examples:
  apex connect build-box:3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b --token-file token.txt
  APEX_TOKEN=apx_… apex connect 127.0.0.1:7433/3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b`,
    )
    .action(async (target: string, options: { json?: boolean }) => {
      const { connectCommand } = await import("./cli.js");
      await connectCommand(target, Boolean(options.json));
    });

  program
    .command("login")
    .description("save a token for a host in the credentials file (mode 0600), for --remote and connect")
    .argument("<host>", "HOST[:PORT], or HOST[:PORT]/SESSION to check the token first and keep it as that session's (one token per session of a server)")
    .option("--json", "print {host, session, file} (never the token)")
    .addHelpText(
      "after",
      `
The token is read from one line of standard input (typed without echo on a terminal),
--token-file FILE or APEX_TOKEN (--token VALUE too, visible to every user in \`ps\`).
The file is $APEX_CREDENTIALS, else $XDG_CONFIG_HOME/apex/credentials.json (~/.config/apex/…).

Examples:
  apex login build-box:7433 < token.txt
  apex login 127.0.0.1:7433/3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b --token-file token.txt`,
    )
    .action(async (host: string, options: { json?: boolean }) => {
      const { loginCommand } = await import("./cli.js");
      await loginCommand(host, Boolean(options.json));
    });

  const session = program.commands.find((command) => command.name() === "session") ?? program.command("session");
  session
    .command("share")
    .description("share the session with a user: prints an invite (URL and `apex connect` line) with a token shown once")
    .addArgument(sessionArgument("<session>", "the session: `current`, or any session of the project by id, unique prefix or name (an ended one is shared read-only)"))
    .argument("<user>", "who gets access, e.g. alice@example.com")
    .option("--role <role>", "viewer (reads), operator (also pause, resume, continue, checkpoint create, task add and reopen, memory set) or owner (everything: stop, task claim|done|fail, memory delete|import, merge, sharing)", "viewer")
    .option("--expires <duration>", durationHelp("how long the token is valid (default: until revoked)", "12h, 7d"))
    .option("--url <url>", "the server's address for the invite (default: the running `apex serve`, else http://127.0.0.1:7433)")
    .option("--json", "print {token_id, user, role, created_at, created_by, expires_at, last_used_at, via_token_id, session_id, name, token, url, connect}")
    .addHelpText("after", "\nExamples:\n  apex session share current alice@example.com --role operator --expires 7d\n  apex session share 3f2a bob --json")
    .action(async (sessionRef: string, user: string, options: { role: string; expires?: string; url?: string; json?: boolean }, command: Command) => {
      const { shareCommand } = await import("./cli.js");
      await shareCommand(projectOf(command), sessionRef, user, options);
    });
  session
    .command("unshare")
    .description("revoke a user's access to the session at once, and every grant made with it through `apex serve` (open streams are closed)")
    .addArgument(sessionArgument("<session>", "the session: its id, a unique prefix, its name, or `current`"))
    .argument("<user>", "the user to revoke")
    .option("--json", "print {session_id, name, user, revoked, derived: [{user, role, token_id, made_by?}]} (derived: grants made with the revoked ones, revoked too; made_by: an older grant taken as made by that user)")
    .addHelpText("after", "\nExamples:\n  apex session unshare current alice@example.com")
    .action(async (sessionRef: string, user: string, options: { json?: boolean }, command: Command) => {
      const { unshareCommand } = await import("./cli.js");
      await unshareCommand(projectOf(command), sessionRef, user, Boolean(options.json));
    });
  session
    .command("shares")
    .description("the session's grants: user, role, created, expires, last used, and who made each (via USER: made with USER's grant through `apex serve`)")
    .addArgument(sessionArgument("[session]", "the session: its id, a unique prefix, its name, or `current` (the default: the session the command acts on, the remote one with --remote)"))
    .option("--json", "print [{token_id, user, role, created_at, created_by, expires_at, last_used_at, via_token_id}] (via_token_id: the grant it was made with through `apex serve`; null: made on the server's host; absent: recorded before grants named it)")
    .addHelpText("after", "\nExamples:\n  apex session shares\n  apex session shares 3f2a --json\n  apex --remote host:7433/3f2a session shares")
    .action(async (sessionRef: string | undefined, options: { json?: boolean }, command: Command) => {
      const { sharesCommand } = await import("./cli.js");
      await sharesCommand(projectOf(command), sessionRef ?? "current", Boolean(options.json));
    });
}
