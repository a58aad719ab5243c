#!/usr/bin/env bash
# Install tuf-js (an independent TUF client) for the interop tests into tests/interop/node_modules,
# exactly as pinned by the committed tests/interop/package-lock.json (`npm ci`, no install scripts).
#
# Idempotent: skips when node_modules was installed from the same package.json + package-lock.json
# (a stamp inside node_modules records their hash). Without a usable Node.js it says so and exits 0;
# the interop tests then skip locally and fail under CI=true.
set -euo pipefail

cd "$(dirname "$0")/../tests/interop"
STAMP=node_modules/.cfl-installed-from
MIN_NODE_MAJOR=20
MIN_NODE_MINOR=17 # tuf-js 5 requires node ^20.17.0 || >=22.9.0

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup-node: node/npm not found; run scripts/setup-system.sh as root (or install Node.js >= ${MIN_NODE_MAJOR}.${MIN_NODE_MINOR})" >&2
  exit 0
fi
version=$(node -p 'process.versions.node')
IFS=. read -r major minor _ <<<"$version"
if ((major < MIN_NODE_MAJOR || (major == MIN_NODE_MAJOR && minor < MIN_NODE_MINOR))); then
  echo "setup-node: node ${version} is too old for tuf-js; install Node.js >= ${MIN_NODE_MAJOR}.${MIN_NODE_MINOR}" >&2
  exit 0
fi

if [[ ! -f package-lock.json ]]; then
  echo "setup-node: tests/interop/package-lock.json is missing; create it with \`npm install\` there and commit it" >&2
  exit 1
fi

wanted=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && $(cat "$STAMP") == "$wanted" && -d node_modules/tuf-js ]]; then
  echo "setup-node: tuf-js is up to date in tests/interop/node_modules"
  exit 0
fi

echo "setup-node: npm ci in tests/interop"
timeout 600 npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
echo "$wanted" >"$STAMP"
echo "setup-node: installed tuf-js $(node -p "require('tuf-js/package.json').version")"
