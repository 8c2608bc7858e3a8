# Shared helpers of the ceremony drill scripts; sourced, not run.
#
# One signer home per key holder ($WORK/NAME), one directory per "USB stick" ($WORK/usb-*),
# passphrase files instead of a terminal and a low scrypt work factor: drills, not real
# ceremonies (see ceremonies/README.md for the real runbooks).

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# .ci/run builds every binary and example with the test suite and sets CUSTODY_PREBUILT=1
# (a second build here would differ only in dev-dependency features); run on its own, a
# drill builds what it uses.
if [ "${CUSTODY_PREBUILT:-}" != 1 ]; then
    cargo build -q --locked -p custody-signer --bin custody-signer --example drill_coordinator
fi
BIN="$ROOT/target/debug/custody-signer"
COORD="$ROOT/target/debug/examples/drill_coordinator"
for built in "$BIN" "$COORD"; do
    [ -x "$built" ] || { echo "FAILED: $built is missing; build it (cargo build -p custody-signer --bins --examples)" >&2; exit 1; }
done
NAMES=(alice bob carol dave erin frank grace heidi ivan judy)
TIMEOUT="${CEREMONY_TIMEOUT_SECS:-600}"

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# signer NAME ARGS…: runs custody-signer as NAME.
signer() {
    local who="$1"; shift
    "$BIN" --home "$WORK/$who" --passphrase-file "$WORK/$who.pass" --scrypt-log-n 10 "$@"
}

# new_holder NAME: a passphrase file and an identity.
new_holder() {
    printf 'drill passphrase for %s\n' "$1" > "$WORK/$1.pass"
    chmod 600 "$WORK/$1.pass"
    signer "$1" identity create --name "$1"
    signer "$1" identity show --words | grep '^fingerprint words:'
}

# parallel LABEL NAME… -- ARGS…: runs `signer NAME ARGS…` for every NAME at once and
# waits; prints each output; fails if any failed.
parallel() {
    local label="$1"; shift
    local who=()
    while [ "$1" != "--" ]; do who+=("$1"); shift; done
    shift
    local pids=() status=0
    for w in "${who[@]}"; do
        signer "$w" "$@" > "$WORK/$w.$label.out" 2> "$WORK/$w.$label.err" &
        pids+=("$!")
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            status=1
            echo "-- ${who[$i]} failed:" >&2
            cat "$WORK/${who[$i]}.$label.err" >&2
        fi
    done
    for w in "${who[@]}"; do echo "-- $w"; cat "$WORK/$w.$label.out"; done
    [ "$status" -eq 0 ] || fail "$label"
}

# verify_record FILE NAME…: every NAME's signer checks the ceremony record.
verify_record() {
    local file="$1"; shift
    for w in "$@"; do
        echo "-- $w verifies $(basename "$file")"
        signer "$w" record verify --file "$file" || fail "$w does not accept $(basename "$file")"
    done
}

# run_dkg T N: N holders (the first N names) run a T-of-N DKG over $WORK/usb-dkg; sets
# HOLDERS and DKG_RECORD.
run_dkg() {
    local t="$1" n="$2"
    HOLDERS=("${NAMES[@]:0:$n}")
    local usb="$WORK/usb-dkg"
    mkdir -p "$usb"
    for w in "${HOLDERS[@]}"; do
        step "$w creates an identity"
        new_holder "$w"
    done
    step "the lead makes the ${t}-of-${n} plan from the cards"
    local cards=()
    for w in "${HOLDERS[@]}"; do cards+=(--card "$WORK/$w/identity.card"); done
    signer "${HOLDERS[0]}" plan create --threshold "$t" --network regtest \
        --purpose "drill ${t}-of-${n}" "${cards[@]}" --out "$usb/plan.bin"
    step "all ${n} run the DKG over $usb"
    parallel dkg "${HOLDERS[@]}" -- dkg join --plan "$usb/plan.bin" --usb "$usb" \
        --timeout-secs "$TIMEOUT" --poll-ms 100
    local xpubs
    xpubs=$(for w in "${HOLDERS[@]}"; do grep '^group xpub:' "$WORK/$w.dkg.out"; done | sort -u | wc -l)
    [ "$xpubs" -eq 1 ] || fail "the signers disagree on the group xpub"
    DKG_RECORD="$(ls "$usb"/ceremony-*-dkg-record.json)"
    step "everyone verifies the DKG record"
    verify_record "$DKG_RECORD" "${HOLDERS[@]}"
}

# new_work [DIR]: the drill's working directory (removed at exit unless DIR is given).
new_work() {
    if [ -n "${1:-}" ]; then
        WORK="$(mkdir -p "$1" && cd "$1" && pwd)"
    else
        WORK="$(mktemp -d)"
        trap 'rm -rf "$WORK"' EXIT
    fi
}
