#!/usr/bin/env bash
# Prepares the Hardhat 2 node that custody-evm's integration tests start on 127.0.0.1, and
# prints the directory to use. Starts nothing: each test starts and stops its own node.
# Idempotent: `npm ci` runs only when node_modules does not match package-lock.json; the
# test ERC-20 (contracts/TestToken.sol) is compiled with solcjs (no download at run time).
# Usage: eval "$(.ci/evm-node.sh)"   → exports CUSTODY_TEST_EVM_NODE_DIR
set -euo pipefail

log() { printf '%s\n' "$*" >&2; }

dir="$(cd "$(dirname "$0")/evm-node" && pwd)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "Node.js and npm are needed for the EVM test node (Hardhat 2 runs on Node 18-22); install them (Debian: apt-get install nodejs npm)"
  exit 2
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  log "Node.js $(node --version) is too old for Hardhat 2; Node 18 or later is needed"
  exit 2
fi

# npm ci wipes and reinstalls node_modules (about 300 MB), so it runs only when the lock
# changed since the last successful install (the stamp holds the lock's hash).
stamp="$dir/node_modules/.custody-lock.sha256"
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing the EVM test node's npm packages (npm ci)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
  echo "$want" >"$stamp"
fi

(cd "$dir" && node compile.js) >&2
test -s "$dir/build/TestToken.bin" || { log "TestToken was not compiled"; exit 2; }

cli="$dir/node_modules/hardhat/internal/cli/cli.js"
version=$(cd "$dir" && HARDHAT_DISABLE_TELEMETRY_PROMPT=true node "$cli" --version 2>/dev/null) || {
  log "Hardhat does not run: node $cli --version failed"
  exit 2
}
log "Hardhat $version ready in $dir"
echo "export CUSTODY_TEST_EVM_NODE_DIR=$dir"
