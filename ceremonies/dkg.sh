#!/usr/bin/env bash
# A T-of-N DKG drill with the real custody-signer binary: N signer homes create
# identities, the lead makes a plan from their cards, all N run `dkg join` concurrently
# over one "USB" directory, and every participant verifies the ceremony record.
#
# Usage: ceremonies/dkg.sh T N [OUT]   (OUT keeps the homes and USB directory)
set -euo pipefail
T="${1:?usage: dkg.sh T N [OUT]}"
N="${2:?usage: dkg.sh T N [OUT]}"
source "$(dirname "$0")/lib.sh"
[ "$N" -le "${#NAMES[@]}" ] || fail "at most ${#NAMES[@]} participants in a drill"
new_work "${3:-}"
run_dkg "$T" "$N"
for w in "${HOLDERS[@]}"; do signer "$w" wallet show --count 2 > /dev/null; done
echo
echo "dkg ${T}-of-${N} drill complete: $(grep '^group xpub:' "$WORK/${HOLDERS[0]}.dkg.out")"
