// `npm run bench`: runs every bench/*.bench.mjs in turn and reports which targets were met.
import { readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const benches = readdirSync(here)
  .filter((name) => name.endsWith(".bench.mjs"))
  .filter((name) => only.length === 0 || only.some((filter) => name.includes(filter)))
  .sort();
const failed = [];
for (const name of benches) {
  const result = spawnSync(process.execPath, [join(here, name)], { stdio: "inherit" });
  if (result.status !== 0) failed.push(name);
}
console.log(`\n${benches.length - failed.length} of ${benches.length} benchmark files met every target${failed.length ? `; missed: ${failed.join(", ")}` : ""}.`);
process.exitCode = failed.length ? 1 : 0;
