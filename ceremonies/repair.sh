#!/usr/bin/env bash
# A repair drill: after a 2-of-3 DKG, carol loses her key share (her identity survives);
# the lead makes a repair plan; alice and bob help, carol recovers her share over a USB
# directory, and every participant verifies the repair record.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
new_work "${1:-}"
run_dkg 2 3
USB="$WORK/usb-repair"; mkdir -p "$USB"
before="$(signer carol status | grep '^group xpub:')"

step "carol's keystore is lost"
rm -rf "$WORK/carol/keystore"
signer carol status > "$WORK/carol.status"
grep -q "key share: no" "$WORK/carol.status" || fail "the share is still there"

step "the lead makes the repair plan"
signer alice plan create --kind repair --group "$WORK/alice/group.key" --lost carol \
    --helper alice --helper bob --threshold 2 --network regtest --purpose "drill repair" \
    --card "$WORK/alice/identity.card" --card "$WORK/bob/identity.card" \
    --card "$WORK/carol/identity.card" --out "$USB/plan.bin"

step "alice and bob help, carol recovers"
signer carol repair recover --plan "$USB/plan.bin" --usb "$USB" --timeout-secs "$TIMEOUT" \
    --poll-ms 100 > "$WORK/carol.repair.out" 2> "$WORK/carol.repair.err" &
carol_pid=$!
parallel repair alice bob -- repair help --plan "$USB/plan.bin" --lost carol --usb "$USB" \
    --timeout-secs "$TIMEOUT" --poll-ms 100
wait "$carol_pid" || { cat "$WORK/carol.repair.err" >&2; fail "carol's recovery"; }
cat "$WORK/carol.repair.out"
[ "$(signer carol status | grep '^group xpub:')" = "$before" ] || fail "carol's wallet changed"

REC="$(ls "$USB"/ceremony-*-repair-record.json)"
step "everyone verifies the repair record"
verify_record "$REC" "${HOLDERS[@]}"
echo
echo "repair drill complete"
