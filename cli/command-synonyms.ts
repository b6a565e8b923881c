import type { Command } from "commander";

/**
 * Words other tools use for a memory or checkpoint command. Commander's nearest name by
 * spelling misled for some ("memory get": "Did you mean set?", a write), and knew none for
 * others ("checkpoint restore", which `apex start --continue` is).
 */
const SYNONYMS: Record<string, Record<string, string>> = {
  memory: {
    get: "show", read: "show", cat: "show", print: "show",
    ls: "query", list: "query", find: "query", search: "query", keys: "query",
    rm: "delete", remove: "delete", del: "delete", unset: "delete",
    put: "set", write: "set",
    tail: "watch", follow: "watch", subscribe: "watch",
    dump: "export", save: "export", load: "import", restore: "import",
  },
  checkpoint: {
    restore: "", rollback: "", revert: "", checkout: "", load: "",
    ls: "list", rm: "delete", remove: "delete",
    new: "create", save: "create", take: "create",
    get: "show", info: "show", inspect: "show", compare: "diff",
  },
};

/**
 * For `apex GROUP WORD …` where WORD is no command of GROUP but a synonym of one: turns off
 * commander's own guess for that group (it is printed in the error) and returns the hint to
 * give instead; undefined otherwise.
 */
export function synonymHint(program: Command, words: string[], args: string[]): string | undefined {
  const [groupName, word] = words;
  const group = program.commands.find((command) => command.name() === groupName);
  const target = group && word !== undefined ? SYNONYMS[groupName!]?.[word] : undefined;
  if (!group || target === undefined || group.commands.some((sub) => sub.name() === word || sub.aliases().includes(word!))) return undefined;
  group.showSuggestionAfterError(false);
  if (target !== "") return `Did you mean apex ${groupName} ${target}? (\`apex ${groupName} --help\` lists that group's commands)`;
  // The checkpoint the user named, if any, in the command that restores it.
  const at = args.indexOf(word!);
  const checkpoint = args.slice(at + 1).find((arg) => !arg.startsWith("-"));
  const shown = checkpoint === undefined ? "CHECKPOINT" : /^[\w@%+=:,./-]+$/.test(checkpoint) ? checkpoint : `'${checkpoint.replace(/'/g, `'\\''`)}'`;
  return `A checkpoint is restored by apex start --continue ${shown}, which first saves the state it replaces (\`apex session branch ${shown} NAME\` tries it beside the current session).`;
}
