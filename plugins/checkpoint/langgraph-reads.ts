import { ApexError } from "../../core/errors.js";
import type { Store } from "../../core/store/store.js";
import { LangGraphStore, optionalString } from "./langgraph.js";
import { sessionFor } from "./plugin-sessions.js";
import { DEFAULT_SCOPE } from "./scope.js";

/**
 * `langgraph.getTuple` and `langgraph.list` run on a store this process has open, without the
 * project's config or plugins: what ApexSaver's reads do with no supervisor (a resumed graph's
 * first call in a new process is a getTuple). The same methods, answers and session choice
 * (`session`, else the default session) as the checkpoint service serves under those names;
 * the reads use neither the plugin's scope nor its write queue.
 */
export const LANGGRAPH_READ_METHODS = ["langgraph.getTuple", "langgraph.list"] as const;
export type LangGraphReadMethod = (typeof LANGGRAPH_READ_METHODS)[number];

/** One reader per store, so that its cache of values already read serves the process's later reads. */
const readers = new WeakMap<Store, Record<string, (params: Record<string, unknown>) => unknown>>();

export function readLangGraph(store: Store, method: LangGraphReadMethod, params: Record<string, unknown>): unknown {
  let methods = readers.get(store);
  if (!methods) {
    const reader = new LangGraphStore(store, {
      scope: { include: [...DEFAULT_SCOPE.include], exclude: [...DEFAULT_SCOPE.exclude] },
      serialize: () => Promise.reject(new ApexError("APEX_E_INTERNAL", "This LangGraph store only reads.")),
    });
    methods = reader.methods((request) => sessionFor(store, optionalString(request, "session")));
    readers.set(store, methods);
  }
  return methods[method]!(params);
}
