/**
 * A plugin command's context (CommandContext) for tests that run a command directly: the test
 * gives the members the command uses; any other member throws, naming itself, when it is used.
 */
import type { CommandContext, Engine } from "../../core/engine.js";

function absent(member: string): never {
  throw new Error(`This test's command context has no ${member}.`);
}

export function commandContext(given: Partial<CommandContext>): CommandContext {
  return {
    config: undefined,
    projectDir: undefined,
    get engine(): Engine {
      return absent("engine");
    },
    store: async () => absent("store()"),
    storeExists: async () => absent("storeExists()"),
    invoke: async () => absent("invoke()"),
    print: () => absent("print()"),
    printJson: () => absent("printJson()"),
    ...given,
  };
}
