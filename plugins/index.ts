import type { ApexPlugin } from "../core/engine.js";
import archive from "./archive/index.js";
import checkpoint from "./checkpoint/index.js";
import compression from "./compression/index.js";
import git from "./git/index.js";
import history from "./history/index.js";
import metrics from "./metrics/index.js";
import retention from "./retention/index.js";
import sharing from "./sharing/index.js";

/** The built-in plugins, in the order `apex plugins list` shows them. */
export const builtinPlugins: readonly ApexPlugin<any>[] = [checkpoint, retention, git, compression, sharing, metrics, history, archive];
