#!/usr/bin/env bash
# A share refresh drill: after a 2-of-3 DKG, the lead makes a refresh plan from the same
# cards and the group key; all three run `refresh`; the wallet stays the same, every
# signer holds a new share and a new nonce seed, and every participant verifies both the
# DKG and the refresh records.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
new_work "${1:-}"
run_dkg 2 3
USB="$WORK/usb-refresh"; mkdir -p "$USB"
before="$(signer alice status | grep '^group xpub:')"

step "the lead makes the refresh plan"
signer alice plan create --kind refresh --group "$WORK/alice/group.key" --threshold 2 \
    --network regtest --purpose "drill refresh" --card "$WORK/alice/identity.card" \
    --card "$WORK/bob/identity.card" --card "$WORK/carol/identity.card" --out "$USB/plan.bin"
step "all three refresh"
parallel refresh "${HOLDERS[@]}" -- refresh --plan "$USB/plan.bin" --usb "$USB" \
    --timeout-secs "$TIMEOUT" --poll-ms 100
for w in "${HOLDERS[@]}"; do
    [ "$(signer "$w" status | grep '^group xpub:')" = "$before" ] || fail "$w's wallet changed"
done
REC="$(ls "$USB"/ceremony-*-refresh-record.json)"
step "everyone verifies the refresh and DKG records"
verify_record "$REC" "${HOLDERS[@]}"
verify_record "$DKG_RECORD" "${HOLDERS[@]}"
echo
echo "refresh drill complete"
