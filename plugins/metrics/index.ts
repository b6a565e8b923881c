import { builtinPluginSchema } from "../../core/config/schemas.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";

const PLUGIN_NAME = "metrics" as const;

/**
 * Computes session metrics (task throughput, agent activity, plugin timings) into /sessions/<id>/metrics.
 *
 * Registered only: the plugin is known, listed, configurable and its options are validated
 * against schemas/plugins/metrics.schema.json, but it taps no hook until its behaviour lands.
 */
export default definePlugin({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  schema: builtinPluginSchema(PLUGIN_NAME),
  apply() {},
});
