import { builtinPluginSchema } from "../../core/config/schemas.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";

const PLUGIN_NAME = "retention" as const;

/**
 * Keeps the checkpoints the policy says to keep and sweeps blobs no kept checkpoint needs.
 *
 * Registered only: the plugin is known, listed, configurable and its options are validated
 * against schemas/plugins/retention.schema.json, but it taps no hook until its behaviour lands.
 */
export default definePlugin({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  schema: builtinPluginSchema(PLUGIN_NAME),
  apply() {},
});
