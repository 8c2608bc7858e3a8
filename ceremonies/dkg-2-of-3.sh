#!/usr/bin/env bash
# A 2-of-3 DKG drill with the custody-signer binary: three signer homes create
# identities, a plan is made from their cards, the three run `dkg join` concurrently over
# one shared "USB" directory, and each prints its watch-only wallet. Exits non-zero if any
# step fails. Uses a low scrypt work factor: a drill, not a real ceremony.
set -euo pipefail

cd "$(dirname "$0")/.."
cargo build -q -p custody-signer
BIN="$PWD/target/debug/custody-signer"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
USB="$WORK/usb"
mkdir -p "$USB"

signer() {
    local who="$1"; shift
    "$BIN" --home "$WORK/$who" --passphrase-file "$WORK/$who.pass" --scrypt-log-n 10 "$@"
}

for who in alice bob carol; do
    printf 'drill passphrase for %s\n' "$who" > "$WORK/$who.pass"
    chmod 600 "$WORK/$who.pass"
    echo "== $who creates an identity"
    signer "$who" identity create --name "$who"
done

echo "== the ceremony lead makes the plan from the three cards"
signer alice plan create --threshold 2 --network regtest --purpose "dkg-2-of-3 drill" \
    --card "$WORK/alice/identity.card" --card "$WORK/bob/identity.card" \
    --card "$WORK/carol/identity.card" --out "$USB/plan.bin"

echo "== all three run the DKG over $USB"
pids=()
for who in alice bob carol; do
    signer "$who" dkg join --plan "$USB/plan.bin" --usb "$USB" --timeout-secs 300 \
        > "$WORK/$who.dkg.out" 2> "$WORK/$who.dkg.err" &
    pids+=("$!")
done
status=0
for i in 0 1 2; do
    wait "${pids[$i]}" || status=$?
done
for who in alice bob carol; do
    echo "-- $who"
    cat "$WORK/$who.dkg.out"
    if [ "$status" -ne 0 ]; then cat "$WORK/$who.dkg.err" >&2; fi
done
[ "$status" -eq 0 ] || { echo "DKG FAILED" >&2; exit "$status"; }

for who in alice bob carol; do
    echo "== $who: wallet show"
    signer "$who" wallet show --count 3
done

xpubs=$(for who in alice bob carol; do grep '^group xpub:' "$WORK/$who.dkg.out"; done | sort -u | wc -l)
[ "$xpubs" -eq 1 ] || { echo "the signers disagree on the group xpub" >&2; exit 1; }
echo "dkg-2-of-3 drill complete: all three signers hold shares of the same key"
