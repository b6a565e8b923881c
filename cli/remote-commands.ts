/**
 * The commands that work against a remote session (`apex --remote HOST/SESSION …`): their code
 * reaches the session through openSessionClient. A group's list is the subcommands that do.
 */
export const REMOTE_COMMANDS: Record<string, string[] | true> = {
  status: true,
  start: true,
  pause: true,
  resume: true,
  stop: true,
  logs: true,
  milestone: true,
  help: true,
  memory: ["show", "query", "set", "delete", "watch", "import", "export"],
  task: ["add", "list", "show", "claim", "done", "fail", "reopen"],
  agent: ["report", "list"],
  checkpoint: ["create", "list", "show", "diff"],
  session: ["list", "history", "tree", "merge", "share", "unshare", "shares"],
};

/** Whether `apex WORD [SUB]` works against a remote session. */
export function worksRemotely(word: string, sub: string | undefined): boolean {
  const allowed = Object.hasOwn(REMOTE_COMMANDS, word) ? REMOTE_COMMANDS[word] : undefined;
  return allowed === true || (Array.isArray(allowed) && sub !== undefined && allowed.includes(sub));
}

/**
 * How a printed next command starts: `apex`, or through --remote (APEX_REMOTE) `apex --remote
 * TARGET`, which reaches the same session (as written, `apex status` reads this machine's project).
 * The target's characters that would not print, or would split the line, show as "?".
 */
export function remoteApex(target: string | undefined = process.env.APEX_REMOTE): string {
  return target ? `apex --remote ${target.replace(/[^\x21-\x7e]/g, "?")}` : "apex";
}

/**
 * The hint of an error a remote session's server sent, for the user of `apex --remote TARGET`:
 * each `` `apex COMMAND …` `` that works remotely carries `--remote TARGET`, as written it would
 * act on this machine's project (`It is already running: \`apex status\``). A sentence about the
 * server's host or the session's owner (`Read more on the session's host with \`apex logs -n N\``,
 * `The session's owner can grant …: \`apex session share …\``) names commands run there by
 * someone else, and stays as it is.
 */
export function remoteHint(hint: string, target: string): string {
  const prefix = remoteApex(target);
  return hint
    .split(/(?<=[.;!?]\s+)/)
    .map((sentence) =>
      /\bhosts?\b|\bowner/i.test(sentence)
        ? sentence
        : sentence.replace(/`apex ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?/g, (whole, word: string, sub: string | undefined) =>
            worksRemotely(word, sub) ? `\`${prefix} ${whole.slice("`apex ".length)}` : whole,
          ),
    )
    .join("");
}
