import { userInfo } from "node:os";

/**
 * Who a change is by, as the revision log and the audit trail record it: "agent:<name>"
 * inside an agent (APEX_AGENT), else "user:<login name>".
 */
export function currentActor(): string {
  const agent = process.env.APEX_AGENT;
  if (agent) return `agent:${agent}`;
  return `user:${process.env.USER ?? process.env.LOGNAME ?? loginName()}`;
}

/** The actor a request names (`actor`: the CLI's currentActor, `apex serve`'s caller), else "user:unknown". */
export function actorParam(params: Record<string, unknown>): string {
  const actor = params.actor;
  return typeof actor === "string" && /^(agent|user|plugin):[^\s]{1,128}$/.test(actor) ? actor : "user:unknown";
}

function loginName(): string { try { return userInfo().username; } catch { return "unknown"; } }
