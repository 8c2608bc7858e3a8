#!/usr/bin/env bash
# Quickstart: a 2-of-3 key ceremony drill, end to end, with real code.
#
# Three key holders create identities, run the certified DKG, derive a Taproot receive key
# from the group xpub, pre-issue nonce commitments, and two of them sign a message in one
# trip; libsecp256k1 checks the signature. Everything runs in one process on this machine.
#
# Usage: ./ceremonies/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --locked -p custody-threshold --example dkg_drill
