#!/usr/bin/env bash
# A signing drill: a 2-of-3 DKG, the admins' signed policy pinned and installed on every
# signer, commitments issued to the coordinator's "USB stick", a withdrawal request with
# an approved decision, two signers check and sign it (unattended: --yes, which still
# refuses anything out of policy), the coordinator aggregates and libbitcoinconsensus
# accepts the transaction. A request to a destination outside the policy is refused.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
new_work "${1:-}"
run_dkg 2 3
USB="$WORK/usb-sign"; AUTH="$WORK/authority"
mkdir -p "$USB" "$AUTH"
DEST="$("$COORD" address --seed 7)"
OTHER="$("$COORD" address --seed 8)"

step "the admins sign a policy (drill stand-in: examples/drill_coordinator)"
"$COORD" policy --dir "$AUTH" --network regtest --whitelist "$DEST" --limit-sat 100000000
for w in "${HOLDERS[@]}"; do
    step "$w pins the admins and installs the policy"
    signer "$w" policy pin-admins --threshold 2 --card "$AUTH/admin-1.card" --card "$AUTH/admin-2.card"
    signer "$w" policy install --file "$AUTH/policy-v1.policy"
done

step "alice and carol issue commitments (also as QR frames)"
signer alice commitments issue --count 5 --usb "$USB" --qr-out "$USB" --gif > /dev/null
signer carol commitments issue --count 5 --usb "$USB"

step "the coordinator builds an approved request"
"$COORD" request --dir "$AUTH" --group "$WORK/alice/group.key" --usb "$USB" \
    --card "$WORK/alice/identity.card" --card "$WORK/carol/identity.card" \
    --amount-sat 25000000 --to "$DEST" --out "$USB/withdrawal.psbt"

step "alice inspects, then alice and carol sign"
signer alice inspect --request "$USB/withdrawal.psbt"
for w in alice carol; do
    signer "$w" sign --request "$USB/withdrawal.psbt" --usb "$USB" --yes
done

step "the coordinator aggregates and checks the transaction"
"$COORD" finalize --group "$WORK/alice/group.key" --request "$USB/withdrawal.psbt" \
    --answer "$USB/withdrawal-alice-part.psbt" --answer "$USB/withdrawal-carol-part.psbt"

step "a request to a destination outside the policy is refused"
signer alice commitments issue --count 2 --usb "$USB" > /dev/null
signer carol commitments issue --count 2 --usb "$USB" > /dev/null
"$COORD" request --dir "$AUTH" --group "$WORK/alice/group.key" --usb "$USB" \
    --card "$WORK/alice/identity.card" --card "$WORK/carol/identity.card" \
    --amount-sat 1000000 --to "$OTHER" --out "$USB/rogue.psbt" > /dev/null
set +e
signer alice sign --request "$USB/rogue.psbt" --yes 2> "$WORK/rogue.err"
code=$?
set -e
cat "$WORK/rogue.err"
[ "$code" -eq 1 ] || fail "the out-of-policy request was not refused (exit $code)"
grep -q "is not on the whitelist" "$WORK/rogue.err" || fail "refused for the wrong reason"

step "everyone verifies the DKG record again"
verify_record "$DKG_RECORD" "${HOLDERS[@]}"
echo
echo "signing drill complete"
