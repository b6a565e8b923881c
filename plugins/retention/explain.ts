import type { Config } from "../../core/config/types.js";
import type { Store } from "../../core/store/store.js";
import { planRetention } from "./cleanup.js";
import { policyFromOptions, type RetentionOptions } from "./options.js";

/**
 * Why each checkpoint of a session is kept, as `apex checkpoint list` shows it: checkpoint id
 * → the protections and rules that keep it ("manual", "latest", "last", "base of …"), or an
 * empty list for one the policy would remove at the next cleanup. Reads the store; writes nothing.
 */
export function keptByRetention(store: Store, sessionId: string, options: RetentionOptions, config: Pick<Config, "session"> | undefined): Map<string, string[]> {
  const plan = planRetention(store, policyFromOptions(options, config), { sessionId });
  const reasons = new Map<string, string[]>();
  for (const { result } of plan.sessions) {
    for (const decision of result.decisions) reasons.set(decision.item.id, decision.keep ? decision.reasons : []);
  }
  return reasons;
}
