import { ApexError } from "../../core/errors.js";
import type { Role } from "./grants.js";

/**
 * How a plugin command forwarded through `apex serve` as `plugin.command` is served. A grant is
 * for one session, but a command's arguments may name another session, a file on the server's
 * disk or the whole project, and what it prints cannot be checked after it ran; so every command
 * is classed here, and `remotePluginCommand` checks a call against its class before anything runs:
 *
 * - `session`: acts on the one session its argument number `argument` names, the grant's session
 *   when absent. A reference to any other session is refused (403 APEX_E_FORBIDDEN, the same as
 *   for a session that does not exist). Only the options listed pass; any other (an output file
 *   on the server, say) is refused.
 * - `live`: acts on the session of the process running it, so it is served only while the grant's
 *   session's supervisor runs. (Forwarded commands run only in that supervisor today: the store's
 *   direct client does not serve `plugin.command`. Run anywhere else, such a command would act on
 *   the session the server's own directory is bound to; the rule keeps that from happening.)
 * - `refused`: acts on the server's files or on the whole project; run it on the server's host.
 *
 * A command missing here (a third-party plugin's, say) is refused: nothing tells what it reaches.
 */
export type RemoteCommandRule =
  | { serve: "session"; role: Role; argument: number; options: readonly string[] }
  | { serve: "live"; role: Role; options: readonly string[] }
  | { serve: "refused"; why: string };

const SERVER_DISK = "on the server's disk";

export const REMOTE_PLUGIN_COMMANDS: ReadonlyMap<string, RemoteCommandRule> = new Map<string, RemoteCommandRule>([
  // One session's checkpoints (every session's without an id: pinned to the grant's).
  ["session compress", { serve: "session", role: "owner", argument: 0, options: ["after", "olderThan", "algorithm", "level", "dryRun", "json"] }],
  // One session's report, printed back; -o would write a file on the server.
  ["session report", { serve: "session", role: "owner", argument: 0, options: ["format", "json"] }],
  // Records the git state of one session's worktree in that session.
  ["session sync-git", { serve: "session", role: "owner", argument: 0, options: ["json"] }],
  ["session metrics", { serve: "live", role: "owner", options: ["json"] }],
  ["session cleanup", { serve: "refused", why: `its sweep removes unreferenced data of the whole project's store, and it removes temporary files ${SERVER_DISK}` }],
  ["session archive", { serve: "refused", why: `it moves ended sessions of the whole project into bundle files ${SERVER_DISK}` }],
  ["session unarchive", { serve: "refused", why: `it reads a bundle file ${SERVER_DISK} into the project` }],
  ["session export", { serve: "refused", why: `it writes a bundle file ${SERVER_DISK}` }],
  ["session import", { serve: "refused", why: `it reads a bundle file ${SERVER_DISK} and adds its session to the project` }],
  ["backup", { serve: "refused", why: `it copies the whole project's store to a directory ${SERVER_DISK}` }],
  ["store migrate", { serve: "refused", why: "it moves the whole project's store to another backend" }],
  ["git", { serve: "refused", why: "it runs git in the server's repository" }],
  ["git install-hooks", { serve: "refused", why: "it writes the git hooks of the server's repository" }],
  ["git uninstall-hooks", { serve: "refused", why: "it writes the git hooks of the server's repository" }],
  ["git hook-fired", { serve: "refused", why: "the server's git hooks call it, for git operations on the server" }],
  ["git notify", { serve: "refused", why: "it announces a git operation on the server" }],
  ["session merge", { serve: "refused", why: "its arguments name two sessions; call session.merge, whose destination is this session (`apex --remote HOST/SESSION session merge SRC SESSION`)" }],
  ["checkpoint create", { serve: "refused", why: "call checkpoint.create (`apex --remote HOST/SESSION checkpoint create`)" }],
]);

/** The role a forwarded plugin command needs: its rule's, owner for the rest (refused anyway). */
export function pluginCommandRole(name: unknown): Role {
  const rule = REMOTE_PLUGIN_COMMANDS.get(String(name));
  return rule && rule.serve !== "refused" ? rule.role : "owner";
}

export interface CommandSessionLookup {
  /** The id of the session `ref` names in the project, or undefined (unknown, ambiguous). */
  resolve(ref: string): Promise<string | undefined>;
  /** True while the grant's session's supervisor runs. */
  live(): boolean;
}

/**
 * The `plugin.command` params to run for a grant of `sessionId`: the command's session argument
 * pinned to that session, only the options its rule lists; or an error, before anything runs.
 */
export async function remotePluginCommand(sessionId: string, params: Record<string, unknown>, lookup: CommandSessionLookup): Promise<Record<string, unknown>> {
  const name = typeof params.name === "string" ? params.name : "";
  const rule = REMOTE_PLUGIN_COMMANDS.get(name);
  if (!rule) {
    throw new ApexError("APEX_E_FORBIDDEN", `\`apex ${name}\` is not served remotely: APEX cannot tell which sessions and files a command of a plugin reaches unless it is in its table of remote commands.`, {
      hint: "Run it on the server's host.",
    });
  }
  if (rule.serve === "refused") throw new ApexError("APEX_E_FORBIDDEN", `\`apex ${name}\` is not served remotely: ${rule.why}.`, { hint: "Run it on the server's host." });
  const args = params.args === undefined || params.args === null ? [] : params.args;
  if (!Array.isArray(args)) throw new ApexError("APEX_E_BAD_INPUT", "The parameter args must be an array.");
  const options = params.options === undefined || params.options === null ? {} : params.options;
  if (typeof options !== "object" || Array.isArray(options)) throw new ApexError("APEX_E_BAD_INPUT", "The parameter options must be an object.");
  // The session option the server pins on every call is no option of these commands.
  const unserved = Object.keys(options).filter((key) => key !== "session" && !rule.options.includes(key));
  if (unserved.length > 0) {
    throw new ApexError("APEX_E_FORBIDDEN", `\`apex ${name}\` is served remotely without ${unserved.map(flagOf).join(", ")}; it takes only ${rule.options.map(flagOf).join(", ") || "no options"} there.`, {
      hint: "An option naming a file reaches the server's disk: run the command on the server's host for that.",
    });
  }
  const kept = Object.fromEntries(Object.entries(options).filter(([key]) => key !== "session"));
  if (rule.serve === "live") {
    if (args.some((arg) => arg !== null && arg !== undefined)) throw new ApexError("APEX_E_BAD_INPUT", `\`apex ${name}\` takes no arguments.`);
    if (!lookup.live()) {
      throw new ApexError("APEX_E_SESSION_STATE", `\`apex ${name}\` is served remotely only while session ${sessionId}'s supervisor runs: it acts on the running session.`, {
        hint: name === "session metrics" ? `The metrics last recorded: \`apex memory show /sessions/${sessionId}/metrics\`.` : "Ask the session's owner to continue it.",
      });
    }
    return { name, args: [], options: kept };
  }
  if (args.length > rule.argument + 1) throw new ApexError("APEX_E_BAD_INPUT", `\`apex ${name}\` takes at most ${rule.argument + 1} argument${rule.argument === 0 ? "" : "s"}.`);
  const ref = args[rule.argument];
  if (ref !== undefined && ref !== null && ref !== "") {
    if (typeof ref !== "string") throw new ApexError("APEX_E_BAD_INPUT", `The session argument of \`apex ${name}\` must be a string.`);
    if (ref !== sessionId && (await lookup.resolve(ref)) !== sessionId) {
      // The same answer whether the session exists or not: a grant tells nothing of other sessions.
      throw new ApexError("APEX_E_FORBIDDEN", `\`apex ${name}\` acts only on session ${sessionId} through this grant, not on ${JSON.stringify(ref)}. Nothing was done.`, {
        hint: "Leave out the session argument: it is this session.",
      });
    }
  }
  const pinned = [...args];
  pinned[rule.argument] = sessionId;
  return { name, args: pinned, options: kept };
}

function flagOf(key: string): string {
  return `--${key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}
