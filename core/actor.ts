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

function loginName(): string { try { return userInfo().username; } catch { return "unknown"; } }
