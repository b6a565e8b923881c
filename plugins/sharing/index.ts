import { builtinPluginSchema } from "../../core/config/schemas.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";

const PLUGIN_NAME = "sharing" as const;

/**
 * Shares sessions and checkpoints with other machines; needs the git plugin for repository state.
 *
 * Registered only: the plugin is known, listed, configurable and its options are validated
 * against schemas/plugins/sharing.schema.json, but it taps no hook until its behaviour lands.
 */
export default definePlugin({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  requires: ["git"],
  schema: builtinPluginSchema(PLUGIN_NAME),
  apply() {},
});
