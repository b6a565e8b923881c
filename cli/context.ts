import type { Command } from "commander";
import { locateProject, type ProjectLocation } from "../core/config/locate.js";
import type { Entry, JsonValue } from "../core/store/store.js";

/** Options every command can see (declared on the root program). */
export interface GlobalOptions {
  config?: string;
  json?: boolean;
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals() as GlobalOptions;
}

/** Where the project's config and store are, honouring --config, APEX_CONFIG and APEX_HOME. */
export function projectOf(command: Command): ProjectLocation {
  return locateProject({ configFlag: globalOptions(command).config });
}

/**
 * What write commands need. Implemented directly on the store when no supervisor runs,
 * and over the supervisor's control socket when one does (it is then the one writer).
 */
export interface MemoryWriter {
  /** `force`: write paths APEX owns too (plugins/owned-paths.ts), an operator's repair. */
  set(path: string, value: JsonValue, force?: boolean): Promise<{ revision: number }>;
  delete(path: string, recursive: boolean, force?: boolean): Promise<{ deleted: number; revision: number }>;
  importEntries(entries: Entry[], force?: boolean): Promise<{ count: number; revision: number }>;
  close(): Promise<void>;
}

/** Opens a writer for the project after checking that its config is valid. */
export async function openWriter(location: ProjectLocation): Promise<MemoryWriter> {
  const { openMemoryWriter } = await import("./writer.js");
  return openMemoryWriter(location);
}
