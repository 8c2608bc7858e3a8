#!/usr/bin/env bash
# Quickstart: the whole promise, end to end, with the real binaries on embedded defaults.
#
#   ./ceremonies/quickstart.sh [OUT_DIR]        (default ./quickstart-out)
#
# Three key holders run a 2-of-3 DKG with `custody-signer`; `custody-coordinator` runs as a
# real process on loopback with its embedded SQLite database and the development chain
# file; a customer registers with TOTP, gets a deposit, whitelists a destination, has their
# password reset and asks for a withdrawal, which the coordinator holds for 24 hours; the
# development clock passes the hold, two approvers approve, two signers answer the signing
# round (one from QR PNG frames, one from a USB file) after re-checking it against the
# policy, and the coordinator aggregates, verifies and "broadcasts". The artifacts listed
# in README.md ("Artifacts") are left in OUT_DIR and checked before it exits 0.
#
# Time passes by restarting the daemon with a larger `--dev-clock-offset-secs`: the run
# starts three days in the (development) past and ends at the real time, so the signers,
# whose clock is never shifted, see a decision whose hold has passed.
#
# DEVELOPMENT ONLY: passphrases and passwords in plain files, a low scrypt work factor, drill
# admins whose secrets sit in a file (`custody-coordinator dev policy`).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

OUT_ARG="${1:-./quickstart-out}"
MARKER=".quickstart-out"
if [ -e "$OUT_ARG" ] && [ -n "$(ls -A "$OUT_ARG" 2>/dev/null)" ]; then
    if [ -f "$OUT_ARG/$MARKER" ]; then
        rm -rf "$OUT_ARG"
    else
        echo "FAILED: $OUT_ARG exists and is not an earlier quickstart output; choose another OUT_DIR" >&2
        exit 1
    fi
fi
mkdir -p "$OUT_ARG"
OUT="$(cd "$OUT_ARG" && pwd)"
touch "$OUT/$MARKER"

if [ "${CUSTODY_PREBUILT:-}" = 1 ]; then
    # .ci/run built them with the test suite.
    printf '\n== using the custody-signer and custody-coordinator built by the test suite\n'
else
    printf '\n== building custody-signer and custody-coordinator (debug profile, as .ci/run)\n'
    cargo build --locked -p custody-signer -p custody-coordinator --bins --examples
fi

# One signer home per person, "USB sticks", the coordinator's data: under OUT/work.
WORK="$OUT/work"
mkdir -p "$WORK"
# shellcheck source=ceremonies/lib.sh
source "$ROOT/ceremonies/lib.sh"
CC="$ROOT/target/debug/custody-coordinator"
[ -x "$CC" ] || fail "$CC is missing; build it (cargo build -p custody-coordinator --bins)"
CFG="$WORK/coordinator.toml"
CPID=""
OFFSET=0
PASSWORD="correct horse battery staple"
NEW_PASSWORD="a new passphrase after the reset"

stop_coordinator() {
    if [ -n "$CPID" ]; then
        kill -TERM "$CPID" 2>/dev/null || true
        wait "$CPID" 2>/dev/null || true
        CPID=""
    fi
}
on_exit() {
    local code=$?
    stop_coordinator
    if [ "$code" -ne 0 ]; then
        echo "FAILED (exit $code); the coordinator's log is $WORK/coordinator.log" >&2
    fi
}
trap on_exit EXIT

# coord ARGS…: the coordinator CLI on the quickstart's configuration.
coord() { RUST_LOG="${RUST_LOG:-warn}" "$CC" --config "$CFG" "$@"; }

# jget FILE EXPR: prints the Python expression EXPR over the JSON document d in FILE
# (utc(t) formats a unix time).
jget() {
    python3 -c "import json,sys,time; utc=lambda t: time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t)); d=json.load(open(sys.argv[1])); print($2)" "$1"
}

# signer_json NAME TYPE ARGS…: runs a signer command with --json and prints the data of
# its record of TYPE.
signer_json() {
    local who="$1" kind="$2"; shift 2
    signer "$who" --json "$@" > "$WORK/$who.json.out"
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["type"] == sys.argv[2]:
        print(json.dumps(r["data"]))
        break
else:
    sys.exit("no %s record" % sys.argv[2])' "$WORK/$who.json.out" "$kind"
}

# call EXPECTED_STATUS METHOD PATH TOKEN [BODY] [IDEMPOTENCY_KEY]: one HTTP call; the body
# of the answer is left in $RESP; fails unless the status is the expected one.
RESP="$WORK/response.json"
call() {
    local expect="$1" method="$2" path="$3" token="$4" body="${5:-}" idem="${6:-}"
    local args=(-sS --cacert "$WORK/coordinator-data/dev-cert.pem" -o "$RESP" -w '%{http_code}' -X "$method"
        -H 'content-type: application/json' -H 'user-agent: coinport-quickstart')
    [ -n "$token" ] && args+=(-H "authorization: Bearer $token")
    [ -n "$idem" ] && args+=(-H "idempotency-key: $idem")
    [ -n "$body" ] && args+=(--data "$body")
    local status
    status="$(curl "${args[@]}" "https://127.0.0.1:$PORT$path")" || fail "$method $path: no answer"
    if [ "$status" != "$expect" ]; then
        echo "$method $path answered $status, expected $expect:" >&2
        cat "$RESP" >&2 || true
        echo >&2
        fail "$method $path"
    fi
}
idem() { python3 -c 'import uuid; print(uuid.uuid4())'; }

start_coordinator() {
    OFFSET="$1"
    "$CC" --config "$CFG" serve --dev-clock-offset-secs="$OFFSET" >> "$WORK/coordinator.log" 2>&1 &
    CPID=$!
    for _ in $(seq 1 150); do
        # HTTPS with the development certificate the daemon made in its data directory on
        # first start; curl trusts exactly that certificate (--cacert), nothing is skipped.
        if [ -f "$WORK/coordinator-data/dev-cert.pem" ] && curl -fsS --cacert "$WORK/coordinator-data/dev-cert.pem" \
            "https://127.0.0.1:$PORT/healthz" > /dev/null 2>&1; then
            echo "coordinator running (pid $CPID) on https://127.0.0.1:$PORT, development clock offset ${OFFSET}s"
            return 0
        fi
        kill -0 "$CPID" 2>/dev/null || fail "the coordinator exited; see $WORK/coordinator.log"
        sleep 0.2
    done
    fail "the coordinator did not answer /healthz within 30 seconds"
}

# totp WHO: a fresh code from WHO's authenticator. The coordinator takes each 30-second
# step once and accepts the next one early, so this picks the first step not used yet and
# waits when it is too far ahead.
totp() {
    local who="$1" last now cur step
    last="$(cat "$WORK/$who.totp-step" 2>/dev/null || echo 0)"
    while :; do
        now=$(( $(date +%s) + OFFSET ))
        cur=$(( now / 30 ))
        step=$(( last + 1 > cur ? last + 1 : cur ))
        [ "$step" -le $(( cur + 1 )) ] && break
        sleep 2
    done
    echo "$step" > "$WORK/$who.totp-step"
    coord dev totp --otpauth-uri-file "$WORK/$who.totp-uri" \
        --offset-secs=$(( step * 30 + 15 - $(date +%s) ))
}

# login WHO EMAIL PASSWORD: signs in (with TOTP once enrolled); sets TOKEN_<WHO>.
login() {
    local who="$1" email="$2" pw="$3" code=""
    if [ -f "$WORK/$who.totp-uri" ]; then
        code="$(totp "$who")"
        call 201 POST /v1/sessions "" "{\"email\":\"$email\",\"password\":\"$pw\",\"totp\":\"$code\"}"
    else
        call 201 POST /v1/sessions "" "{\"email\":\"$email\",\"password\":\"$pw\"}"
    fi
    printf -v "TOKEN_$who" '%s' "$(jget "$RESP" 'd["token"]')"
    printf -v "ID_$who" '%s' "$(jget "$RESP" 'd["principal_id"]')"
}
token() { local v="TOKEN_$1"; printf '%s' "${!v}"; }

# enrol WHO: TOTP enrolment; the otpauth URI goes to the simulated authenticator.
enrol() {
    local who="$1"
    call 200 POST /v1/me/totp "$(token "$who")"
    jget "$RESP" 'd["otpauth_uri"]' > "$WORK/$who.totp-uri"
    call 204 POST /v1/me/totp/confirm "$(token "$who")" "{\"code\":\"$(totp "$who")\"}"
}

STAFF=(admin ops dana eve)
staff_email() { echo "$1@coinport.example"; }
USER_EMAIL="carol.customer@example.com"
relogin_all() {
    for s in "${STAFF[@]}"; do login "$s" "$(staff_email "$s")" "$PASSWORD"; done
    login user "$USER_EMAIL" "$USER_PASSWORD"
}

######################################################################################
step "1. three key holders run a 2-of-3 DKG over a \"USB\" directory"
run_dkg 2 3

step "2. the wallet: descriptor and the first 10 receive addresses"
mkdir -p "$OUT/wallet"
signer_json alice wallet wallet show --count 10 > "$WORK/wallet.json"
signer_json bob wallet wallet show --count 10 > "$WORK/wallet-bob.json"
jget "$WORK/wallet.json" 'd["descriptor"]' > "$OUT/wallet/descriptor.txt"
jget "$WORK/wallet.json" '"\n".join(a["address"] for a in d["receive_addresses"])' > "$OUT/wallet/addresses.txt"
cmp -s "$WORK/wallet.json" "$WORK/wallet-bob.json" || fail "alice and bob derive different wallets"
echo "descriptor: $(cat "$OUT/wallet/descriptor.txt")"
echo "alice and bob derive the same descriptor and addresses; first address $(head -1 "$OUT/wallet/addresses.txt")"
DEPOSIT_ADDRESS="$(head -1 "$OUT/wallet/addresses.txt")"

step "2b. the same key holders make the Ethereum key (threshold ECDSA) and two presignatures"
echo "DRILL: published test Paillier primes are imported (a real ceremony generates them: custody-signer eth primes)"
PRIMES="$ROOT/crates/custody-ecdsa/tests/data/paillier-primes.hex"
USB_ETH="$WORK/usb-eth"
mkdir -p "$USB_ETH" "$OUT/eth"
i=0
for w in "${HOLDERS[@]}"; do
    signer "$w" eth primes --import "$PRIMES" --line "$i"
    i=$((i + 1))
done
eth_cards=()
for w in "${HOLDERS[@]}"; do eth_cards+=(--card "$WORK/$w/identity.card"); done
signer alice eth plan key --threshold 2 --purpose "quickstart ETH" "${eth_cards[@]}" \
    --out "$USB_ETH/eth-key-plan.bin"
parallel eth-keygen "${HOLDERS[@]}" -- eth keygen --plan "$USB_ETH/eth-key-plan.bin" \
    --usb "$USB_ETH" --timeout-secs "$TIMEOUT" --poll-ms 100
ETH_ADDRESSES="$(for w in "${HOLDERS[@]}"; do signer "$w" eth address; done | sort -u)"
[ "$(echo "$ETH_ADDRESSES" | wc -l)" -eq 1 ] || fail "the key holders disagree on the Ethereum address"
echo "$ETH_ADDRESSES" > "$OUT/eth/address.txt"
echo "the group's Ethereum address: $(cat "$OUT/eth/address.txt")"
signer alice eth plan presign --group "$WORK/alice/eth/group.key" --threshold 2 "${eth_cards[@]}" \
    --signer alice --signer bob --count 2 --purpose "quickstart ETH withdrawals" \
    --out "$USB_ETH/eth-presign-plan.bin"
parallel eth-presign alice bob -- eth presign --plan "$USB_ETH/eth-presign-plan.bin" \
    --usb "$USB_ETH" --timeout-secs "$TIMEOUT" --poll-ms 100
echo "alice and bob hold two presignatures each (one air-gap trip per Ethereum withdrawal)"

step "3. the coordinator: configuration, identity, policy, staff accounts, then the daemon"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
cat > "$CFG" <<EOF
# The quickstart's coordinator: embedded SQLite in data_dir, the development chain file.
bind = "127.0.0.1:$PORT"
data_dir = "$WORK/coordinator-data"
network = "regtest"

[wallet]
group_key_file = "$WORK/alice/group.key"
plan_file = "$WORK/usb-dkg/plan.bin"

[chain]
kind = "file"
path = "$WORK/dev-chain.json"
network = "regtest"

[ethereum]
key_plan_file = "$USB_ETH/eth-key-plan.bin"
group_key_file = "$WORK/alice/eth/group.key"

[ethereum.chain]
kind = "file"
path = "$WORK/dev-evm-chain.json"
chain_id = 31337
EOF
coord init
for a in dana eve; do
    echo "-- approver $a creates an identity (a signer home used only to approve)"
    new_holder "$a"
done
DEST="$("$COORD" address --seed 7)"
echo "the destination the customer will whitelist: $DEST"
ETH_DEST="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
echo "-- the admins sign the first policy: this coordinator, approvers dana and eve, the destination"
coord dev policy --dir "$WORK/admins" --approver-card "$WORK/dana/identity.card" \
    --approver-card "$WORK/eve/identity.card" --whitelist "$DEST" --whitelist "$ETH_DEST" \
    --limit-sat 100000000 --limit-wei 5000000000000000000
POLICY="$WORK/admins/policy-v1.policy"
coord policy install --file "$POLICY" --trust-first
for w in "${HOLDERS[@]}"; do
    echo "-- $w pins the admins and installs the same policy"
    signer "$w" policy pin-admins --threshold 2 --card "$WORK/admins/admin-1.card" --card "$WORK/admins/admin-2.card"
    signer "$w" policy install --file "$POLICY"
done
printf '%s\n' "$PASSWORD" > "$WORK/staff.password"
chmod 600 "$WORK/staff.password"
coord admin create --email "$(staff_email admin)" --role admin --password-file "$WORK/staff.password"
coord admin create --email "$(staff_email ops)" --role operator --password-file "$WORK/staff.password"
for a in dana eve; do
    coord admin create --email "$(staff_email "$a")" --role approver \
        --password-file "$WORK/staff.password" --approver-card "$WORK/$a/identity.card"
done
# Day 0 is three days in the development past; every restart moves the clock forward.
start_coordinator -259200

step "4. staff enrol TOTP; a customer registers with TOTP, gets a deposit, whitelists a destination"
for s in "${STAFF[@]}"; do
    login "$s" "$(staff_email "$s")" "$PASSWORD"
    enrol "$s"
done
USER_PASSWORD="$PASSWORD"
call 201 POST /v1/users "" "{\"email\":\"$USER_EMAIL\",\"password\":\"$USER_PASSWORD\"}"
login user "$USER_EMAIL" "$USER_PASSWORD"
enrol user
echo "customer $USER_EMAIL registered, TOTP enrolled"
coord dev fund --address "$DEPOSIT_ADDRESS" --amount 50000000
call 200 POST /v1/admin/utxos/sync "$(token ops)"
[ "$(jget "$RESP" 'd["utxos"]')" -ge 1 ] || fail "the coordinator does not see the deposit"
echo "the coordinator sees $(jget "$RESP" 'd["utxos"]') unspent coin(s) of the wallet"
call 201 POST /v1/me/whitelist "$(token user)" "{\"address\":\"$DEST\",\"totp\":\"$(totp user)\"}"
echo "whitelisted $DEST; usable only after the 24-hour activation delay (from $(jget "$RESP" 'utc(d["active_from"])') on the development clock)"
coord dev eth-fund --address "$(cat "$OUT/eth/address.txt")" --wei 2000000000000000000
call 201 POST /v1/me/whitelist "$(token user)" "{\"address\":\"$ETH_DEST\",\"totp\":\"$(totp user)\"}"
echo "whitelisted $ETH_DEST too (an Ethereum address, stored EIP-55 checksummed)"

step "5. a day later: the password is reset, then the customer asks for a withdrawal"
stop_coordinator
start_coordinator -165600
relogin_all
call 204 POST "/v1/admin/principals/$ID_user/reset-password" "$(token admin)" \
    "{\"totp\":\"$(totp admin)\",\"new_password\":\"$NEW_PASSWORD\"}"
USER_PASSWORD="$NEW_PASSWORD"
echo "an admin reset the customer's password (this ends the customer's sessions)"
login user "$USER_EMAIL" "$USER_PASSWORD"
call 200 GET /v1/me/holds "$(token user)"
jget "$RESP" '"\n".join("account hold: " + h["reason"] for h in d)'
AMOUNT=20000000
call 201 POST /v1/withdrawals "$(token user)" \
    "{\"asset\":\"BTC\",\"address\":\"$DEST\",\"amount\":$AMOUNT,\"totp\":\"$(totp user)\"}" "$(idem)"
cp "$RESP" "$WORK/withdrawal.json"
WID="$(jget "$RESP" 'd["id"]')"
DIGEST="$(jget "$RESP" 'd["approval_digest"]')"
[ "$(jget "$RESP" 'd["hold"]["active"]')" = "True" ] || fail "the withdrawal is not held"
echo "withdrawal $WID of $AMOUNT sat to $DEST: $(jget "$RESP" 'd["state"]'), held until $(jget "$RESP" 'utc(d["hold"]["until"])') (development clock) because:"
jget "$RESP" '"\n".join("  - [%s] %s" % (h["rule"], h["reason"]) for h in d["hold"]["reasons"])'
for a in dana eve; do
    echo "-- approver $a checks withdrawal $WID and signs its approval digest"
    SIG="$(signer_json "$a" approval approve --digest "$DIGEST" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signature"])')"
    call 200 POST "/v1/withdrawals/$WID/approvals" "$(token "$a")" \
        "{\"signature\":\"$SIG\",\"totp\":\"$(totp "$a")\"}" "$(idem)"
    echo "approvals: $(jget "$RESP" 'd["approvals"]') of $(jget "$RESP" 'd["required_approvals"]'), state $(jget "$RESP" 'd["state"]')"
done
echo "-- the operator tries to start the signing round now, before the hold ends"
call 409 POST "/v1/withdrawals/$WID/round" "$(token ops)" '{"signers":[1,2]}' "$(idem)"
[ "$(jget "$RESP" 'd["error"]["code"]')" = "hold_active" ] || fail "refused for the wrong reason"
echo "refused, as it should be: $(jget "$RESP" 'd["error"]["message"]')"

step "6. the development clock passes the hold; commitments; the signing round is exported"
stop_coordinator
start_coordinator 0
relogin_all
call 200 GET "/v1/withdrawals/$WID" "$(token ops)"
[ "$(jget "$RESP" 'd["hold"]["active"]')" = "False" ] || fail "the hold is still active"
echo "the hold has passed; state $(jget "$RESP" 'd["state"]') with $(jget "$RESP" 'd["approvals"]') approvals"
USB_C="$WORK/usb-commitments"
mkdir -p "$USB_C"
for w in alice bob; do
    FILE="$(signer_json "$w" commitments commitments issue --count 4 --usb "$USB_C" | python3 -c 'import json,sys; print(json.load(sys.stdin)["file"])')"
    call 200 POST /v1/commitments "$(token ops)" "{\"envelope\":\"$(base64 -w0 "$FILE")\"}"
    echo "$w's commitments uploaded: signer $(jget "$RESP" 'd["signer"]'), $(jget "$RESP" 'd["added"]') added"
done
call 200 POST "/v1/withdrawals/$WID/round" "$(token ops)" '{"signers":[1,2]}' "$(idem)"
mkdir -p "$OUT/withdrawal"
jget "$RESP" 'd["psbt"]' | base64 -d > "$OUT/withdrawal/request.psbt"
echo "signing round for signers $(jget "$RESP" 'd["signers"]') written to $OUT/withdrawal/request.psbt"
coord dev round-qr --psbt "$OUT/withdrawal/request.psbt" --out "$OUT/withdrawal/qr"
if command -v zbarimg > /dev/null; then
    for f in "$OUT"/withdrawal/qr/frame-*.png; do
        zbarimg -q --raw "$f" 2> /dev/null | grep -q '^UR:CRYPTO-PSBT/' || fail "zbarimg does not read $f"
    done
    echo "zbarimg reads every frame too"
fi

step "7. two signers answer: alice from the QR frames, bob from the USB file"
USB_S="$WORK/usb-sign"
mkdir -p "$USB_S"
cp "$OUT/withdrawal/request.psbt" "$USB_S/request.psbt"
signer alice sign --qr-in "$OUT"/withdrawal/qr/frame-*.png --usb "$USB_S" --yes
signer bob sign --request "$USB_S/request.psbt" --yes
ANSWERS=("$USB_S"/request-*-alice-part.psbt "$USB_S/request-bob-part.psbt")

step "8. the coordinator aggregates, finalizes, verifies (libbitcoinconsensus) and broadcasts"
for a in "${ANSWERS[@]}"; do
    [ -f "$a" ] || fail "no answer file $a"
    call_status=202
    [ "$a" = "${ANSWERS[-1]}" ] && call_status=200
    call "$call_status" POST "/v1/withdrawals/$WID/shares" "$(token ops)" \
        "{\"psbt\":\"$(base64 -w0 "$a")\"}" "$(idem)"
    echo "imported $(basename "$a"): $(jget "$RESP" 'd["state"]')"
done
TXID="$(jget "$RESP" 'd["txid"]')"
echo "signed and verified: txid $TXID"
call 200 POST "/v1/withdrawals/$WID/broadcast" "$(token ops)"
[ "$(jget "$RESP" 'd["txid"]')" = "$TXID" ] || fail "the broadcast reports another txid"
echo "broadcast to the development chain: $(jget "$RESP" 'd["state"]')"
call 200 GET "/v1/withdrawals/$WID" "$(token user)"
echo "the customer sees the withdrawal as $(jget "$RESP" 'd["state"]')"

step "8b. Ethereum: 0.5 ETH through the same gates, signed with the threshold-ECDSA key"
ETH_AMOUNT=500000000000000000
call 201 POST /v1/withdrawals "$(token user)" \
    "{\"asset\":\"ETH\",\"address\":\"$ETH_DEST\",\"amount\":\"$ETH_AMOUNT\",\"totp\":\"$(totp user)\"}" "$(idem)"
EWID="$(jget "$RESP" 'd["id"]')"
EDIGEST="$(jget "$RESP" 'd["approval_digest"]')"
echo "withdrawal $EWID of $ETH_AMOUNT wei to $ETH_DEST: $(jget "$RESP" 'd["state"]'), hold active: $(jget "$RESP" 'd["hold"]["active"]')"
for a in dana eve; do
    SIG="$(signer_json "$a" approval approve --digest "$EDIGEST" | python3 -c 'import json,sys; print(json.load(sys.stdin)["signature"])')"
    call 200 POST "/v1/withdrawals/$EWID/approvals" "$(token "$a")" \
        "{\"signature\":\"$SIG\",\"totp\":\"$(totp "$a")\"}" "$(idem)"
done
echo "approved by dana and eve (they signed the intent: chain, recipient, value)"
call 200 POST /v1/ethereum/presignatures "$(token ops)" \
    "{\"plan\":\"$(python3 -c 'import sys; print(open(sys.argv[1],"rb").read().hex())' "$USB_ETH/eth-presign-plan.bin")\"}"
echo "the operator registered the presignature batch ($(jget "$RESP" 'd["added"]') presignatures)"
call 200 POST "/v1/withdrawals/$EWID/round" "$(token ops)" '{"signers":[1,2]}' "$(idem)"
ETH_USB="$WORK/usb-eth-sign"
mkdir -p "$ETH_USB"
jget "$RESP" 'd["eth"]["sign_request"]' > "$ETH_USB/eth-withdrawal.ur"
jget "$RESP" 'd["eth"]["decision"]' > "$ETH_USB/eth-withdrawal.decision"
PRESIG="$(jget "$RESP" 'd["eth"]["presignature_batch"] + "/" + str(d["eth"]["presignature_index"])')"
echo "signing round: nonce $(jget "$RESP" 'd["eth"]["summary"]["nonce"]'), presignature $PRESIG"
for w in alice bob; do
    signer "$w" eth sign --request "$ETH_USB/eth-withdrawal.ur" --decision "$ETH_USB/eth-withdrawal.decision" \
        --presignature "$PRESIG" --usb "$ETH_USB" --yes
done
PARTS=("$ETH_USB"/eth-withdrawal-*-part.ethsig)
[ "${#PARTS[@]}" -eq 2 ] || fail "expected two partial signatures, found ${#PARTS[@]}"
for p in "${PARTS[@]}"; do
    status=202
    [ "$p" = "${PARTS[-1]}" ] && status=200
    call "$status" POST "/v1/withdrawals/$EWID/shares" "$(token ops)" \
        "{\"partial_signature\":\"$(python3 -c 'import sys; print(open(sys.argv[1],"rb").read().hex())' "$p")\"}" "$(idem)"
done
ETH_HASH="$(jget "$RESP" 'd["txid"]')"
echo "combined; the sender recovers to the group address; transaction $ETH_HASH"
signer alice eth combine --request "$ETH_USB/eth-withdrawal.ur" --plan "$USB_ETH/eth-presign-plan.bin" \
    --partial "${PARTS[0]}" --partial "${PARTS[1]}" > /dev/null
cp "$ETH_USB/eth-withdrawal-final.txn" "$OUT/eth/tx.hex"
call 200 POST "/v1/withdrawals/$EWID/broadcast" "$(token ops)"
[ "$(jget "$RESP" 'd["txid"]')" = "$ETH_HASH" ] || fail "the broadcast reports another transaction"
coord dev eth-mine --blocks 1
echo "broadcast to the development EVM chain and mined: $ETH_HASH"
stop_coordinator

step "9. the audit log, the artifacts, and where everything is"
coord audit verify
mkdir -p "$OUT/audit"
coord audit export --out "$OUT/audit/log.jsonl"
coord dev signed --id "$WID" --psbt-out "$OUT/withdrawal/signed.psbt" --tx-out "$OUT/withdrawal/tx.hex"
coord dev check-tx --tx-hex "$OUT/withdrawal/tx.hex" --signed-psbt "$OUT/withdrawal/signed.psbt" --txid "$TXID"
coord dev holds --out "$OUT/holds.json"
python3 - "$OUT" "$WID" "$ETH_HASH" "$ETH_DEST" "$ETH_AMOUNT" <<'PY'
import json, re, sys, pathlib
out, wid = pathlib.Path(sys.argv[1]), sys.argv[2]
eth_hash, eth_dest, eth_amount = sys.argv[3], sys.argv[4].lower(), sys.argv[5]
def check(ok, what):
    if not ok:
        sys.exit("artifact check failed: " + what)
d = (out / "wallet/descriptor.txt").read_text()
check(d.endswith("\n") and d.count("\n") == 1, "descriptor.txt is one line")
check(re.fullmatch(r"tr\(.+\)#[0-9a-z]{8}", d.strip()) is not None, "descriptor.txt is tr(...)#checksum")
a = (out / "wallet/addresses.txt").read_text().split("\n")
a = [x for x in a if x]
check(len(a) == 10 and len(set(a)) == 10 and all(x.startswith("bcrt1p") for x in a), "addresses.txt holds 10 distinct regtest Taproot addresses")
for name in ("request.psbt", "signed.psbt"):
    check((out / "withdrawal" / name).read_bytes().startswith(b"psbt\xff"), name + " is a binary PSBT")
t = (out / "withdrawal/tx.hex").read_text()
check(t.count("\n") == 1 and re.fullmatch(r"[0-9a-f]+", t.strip()) is not None, "tx.hex is one line of hex")
frames = sorted((out / "withdrawal/qr").glob("*.png"))
check(len(frames) >= 1 and [f.name for f in frames] == ["frame-%04d.png" % (i + 1) for i in range(len(frames))], "qr/ holds frame-0001.png, ... in order")
lines = (out / "audit/log.jsonl").read_text().splitlines()
check(len(lines) > 10 and all(isinstance(json.loads(l), dict) for l in lines), "log.jsonl is JSON Lines")
holds = json.loads((out / "holds.json").read_text())
rules = {h["rule"] for h in holds}
check({"password_reset", "unusual_withdrawal"} <= rules, "holds.json holds the password-reset and unusual-withdrawal holds")
check(all(h["reason"] and h["until"] > h["since"] for h in holds), "every hold has a reason, a start and an end")
check(any(h["withdrawal_id"] == wid for h in holds), "holds.json names the withdrawal")
e = (out / "eth/address.txt").read_text()
check(e.count("\n") == 1 and re.fullmatch(r"0x[0-9a-fA-F]{40}", e.strip()) is not None, "eth/address.txt is one checksummed address")
et = (out / "eth/tx.hex").read_text()
check(et.count("\n") <= 1 and re.fullmatch(r"0x02[0-9a-f]+", et.strip()) is not None, "eth/tx.hex is one line: 0x and an EIP-1559 transaction")
evm = json.loads((out / "work/dev-evm-chain.json").read_text())
mined = [t for t in evm["transactions"] if t["hash"] == eth_hash]
check(len(mined) == 1 and mined[0]["raw"].lower() == et.strip().lower(), "the development EVM chain holds eth/tx.hex under the coordinator's hash")
check(evm["accounts"][eth_dest]["balance"] == eth_amount, "the recipient received exactly the withdrawn wei")
print("every artifact has the documented shape")
PY

rm -f "$OUT/$MARKER"
touch "$OUT/$MARKER"
cat <<EOF

quickstart complete: withdrawal $WID paid $AMOUNT sat to $DEST in transaction $TXID.

Artifacts in $OUT:
  wallet/descriptor.txt      the wallet descriptor (one line, with checksum)
  wallet/addresses.txt       the first 10 receive addresses
  withdrawal/request.psbt    the signing request the coordinator exported
  withdrawal/qr/             the request as UR:CRYPTO-PSBT QR frames (alice signed from these)
  withdrawal/signed.psbt     the finalized PSBT
  withdrawal/tx.hex          the final transaction
  eth/address.txt            the group's Ethereum address (EIP-55 checksummed)
  eth/tx.hex                 the signed EIP-1559 transaction of the ETH withdrawal (0x-hex)
  audit/log.jsonl            the coordinator's audit log (verified above)
  holds.json                 every hold placed during the run
  work/                      signer homes, "USB" directories, the coordinator's data and log
EOF
