#!/usr/bin/env bash
# An Ethereum (threshold ECDSA) T-of-N drill with the real custody-signer binary: N signer
# homes create identities and import Paillier primes, the lead makes a key plan, all N
# run `eth keygen` (auxiliary info + key generation) over one "USB" directory, the first T
# presign a batch, each of them signs one EIP-1559 transfer from an eth-sign-request
# (one trip, one presignature), the lead combines the partial signatures into the signed
# raw transaction, and a reused presignature is refused.
#
# THIS IS A DRILL, NOT A CEREMONY: it imports the PUBLISHED TEST PRIMES from
# crates/custody-ecdsa/tests/data/paillier-primes.hex (so that it runs in CI in a minute
# instead of minutes per signer), signs without a policy (--insecure-without-policy) and
# uses a made-up request. A key made this way is NOT safe for real funds.
#
# Usage: ceremonies/eth-drill.sh [T N [OUT]]   (default 2 3; OUT keeps the homes and USB)
set -euo pipefail
T="${1:-2}"
N="${2:-3}"
source "$(dirname "$0")/lib.sh"
if [ "${CUSTODY_PREBUILT:-}" != 1 ]; then
    cargo build -q --locked -p custody-signer --example eth_drill_request
fi
REQ="$ROOT/target/debug/examples/eth_drill_request"
[ -x "$REQ" ] || fail "$REQ is missing; build it (cargo build -p custody-signer --examples)"
PRIMES="$ROOT/crates/custody-ecdsa/tests/data/paillier-primes.hex"
PRIME_LINES=$(grep -c . "$PRIMES")
[ "$N" -le "$PRIME_LINES" ] || fail "the test primes file has $PRIME_LINES sets; at most $PRIME_LINES participants"
[ "$T" -ge 2 ] && [ "$T" -le "$N" ] || fail "need 2 <= T <= N"
new_work "${3:-}"

echo "############################################################################"
echo "# DRILL ONLY: published test primes are imported; never use this key for funds"
echo "############################################################################"

HOLDERS=("${NAMES[@]:0:$N}")
SIGNERS=("${HOLDERS[@]:0:$T}")
USB="$WORK/usb-eth"
mkdir -p "$USB"
i=0
for w in "${HOLDERS[@]}"; do
    step "$w creates an identity and imports test primes (line $i)"
    new_holder "$w"
    signer "$w" eth primes --import "$PRIMES" --line "$i"
    i=$((i + 1))
done

step "the lead makes the ${T}-of-${N} Ethereum key plan from the cards"
cards=()
for w in "${HOLDERS[@]}"; do cards+=(--card "$WORK/$w/identity.card"); done
signer "${HOLDERS[0]}" eth plan key --threshold "$T" --purpose "eth drill ${T}-of-${N}" \
    "${cards[@]}" --out "$USB/eth-key-plan.bin"

step "all ${N} run the key ceremony (auxiliary info + key generation) over $USB"
parallel eth-keygen "${HOLDERS[@]}" -- eth keygen --plan "$USB/eth-key-plan.bin" --usb "$USB" \
    --timeout-secs "$TIMEOUT" --poll-ms 100
ADDRESSES=$(for w in "${HOLDERS[@]}"; do signer "$w" eth address; done | sort -u)
[ "$(echo "$ADDRESSES" | wc -l)" -eq 1 ] || fail "the signers disagree on the address"
ADDRESS="$ADDRESSES"
echo "group address: $ADDRESS"

step "the lead makes a presigning plan for ${SIGNERS[*]} (3 presignatures)"
signer_args=()
for w in "${SIGNERS[@]}"; do signer_args+=(--signer "$w"); done
signer "${HOLDERS[0]}" eth plan presign --group "$WORK/${HOLDERS[0]}/eth/group.key" \
    --threshold "$T" "${cards[@]}" "${signer_args[@]}" --count 3 \
    --purpose "eth drill withdrawals" --out "$USB/eth-presign-plan.bin"
parallel eth-presign "${SIGNERS[@]}" -- eth presign --plan "$USB/eth-presign-plan.bin" \
    --usb "$USB" --timeout-secs "$TIMEOUT" --poll-ms 100
BATCH=$(grep -o 'batch [0-9a-f]*' "$WORK/${SIGNERS[0]}.eth-presign.out" | head -1 | cut -d' ' -f2)

step "the coordinator (drill stand-in) writes an eth-sign-request: 0.25 ETH on chain 31337"
SIGN_USB="$WORK/usb-sign"
mkdir -p "$SIGN_USB"
"$REQ" --from "$ADDRESS" --to 0x000000000000000000000000000000000000dEaD \
    --value-wei 250000000000000000 --chain-id 31337 --nonce 0 --out "$SIGN_USB/withdrawal-1.ur"

partials=()
for w in "${SIGNERS[@]}"; do
    step "$w signs (one trip, presignature $BATCH/0)"
    signer "$w" eth sign --request "$SIGN_USB/withdrawal-1.ur" --presignature "$BATCH/0" \
        --insecure-without-policy --yes
    partials+=(--partial "$SIGN_USB/withdrawal-1-$w-part.ethsig")
done

step "the lead combines the partial signatures (no secrets)"
signer "${HOLDERS[0]}" eth combine --request "$SIGN_USB/withdrawal-1.ur" \
    --plan "$USB/eth-presign-plan.bin" "${partials[@]}" | tee "$WORK/combine.out"
grep -q "^sender: $ADDRESS " "$WORK/combine.out" || fail "the recovered sender is not the group address"
head -c 4 "$SIGN_USB/withdrawal-1-final.txn" | grep -q '^0x02' || fail "not an EIP-1559 raw transaction"

step "a second request with the spent presignature is refused"
"$REQ" --from "$ADDRESS" --to 0x000000000000000000000000000000000000dEaD \
    --value-wei 1 --chain-id 31337 --nonce 1 --out "$SIGN_USB/withdrawal-2.ur"
if signer "${SIGNERS[0]}" eth sign --request "$SIGN_USB/withdrawal-2.ur" \
    --presignature "$BATCH/0" --insecure-without-policy --yes 2> "$WORK/reuse.err"; then
    fail "a reused presignature was accepted"
fi
grep -q 'already used' "$WORK/reuse.err" || fail "no clear error for the reused presignature"
cat "$WORK/reuse.err"
[ ! -e "$SIGN_USB/withdrawal-2-${SIGNERS[0]}-part.ethsig" ] || fail "a partial signature was written"
signer "${SIGNERS[0]}" eth status

echo
echo "eth ${T}-of-${N} DRILL (test primes, not a real key) complete: $ADDRESS"
echo "signed raw transaction: $(cat "$SIGN_USB/withdrawal-1-final.txn")"
