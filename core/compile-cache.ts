import module from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";

/**
 * Node 22.1 and later keep the code they compiled between runs (a shorter start-up), here in
 * the user's own cache directory rather than the shared temporary one. Called first by the
 * `apex` command and by the supervisor's entry, before either loads the rest of its modules
 * (the cache serves only what is compiled after it is on). NODE_COMPILE_CACHE in the
 * environment takes precedence, and NODE_DISABLE_COMPILE_CACHE=1 turns it off. A cache that
 * cannot be used changes nothing: the process starts as before.
 */
export function enableCompileCache(): void {
  // (Node 20's types do not declare it.)
  const node = module as { enableCompileCache?: (directory: string) => unknown };
  if (!node.enableCompileCache || process.env.NODE_COMPILE_CACHE) return;
  try {
    node.enableCompileCache(join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "apex", "compile-cache"));
  } catch {
    /* no cache: start as before */
  }
}
