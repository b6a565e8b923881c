import { builtinPluginSchema } from "../../core/config/schemas.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";

const PLUGIN_NAME = "checkpoint" as const;

/**
 * Automatic checkpoints on lifecycle triggers (interval, beforeTask, afterMilestone, beforeGit, onError, onPause).
 *
 * Registered only: the plugin is known, listed, configurable and its options are validated
 * against schemas/plugins/checkpoint.schema.json, but it taps no hook until its behaviour lands.
 */
export default definePlugin({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  schema: builtinPluginSchema(PLUGIN_NAME),
  apply() {},
});
