#!/usr/bin/env bash
# A backup-and-restore drill: after a 2-of-3 DKG, bob exports a backup of his share
# (encrypted to a backup passphrase), verifies it, loses his laptop, and restores onto a
# fresh home with the DKG record; the restored signer draws a new nonce seed, holds the
# same wallet, and every participant (bob's restored signer included) verifies the record.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
new_work "${1:-}"
run_dkg 2 3
printf 'a separate backup passphrase\n' > "$WORK/backup.pass"

step "bob issues commitments, then exports and verifies a backup"
signer bob commitments issue --count 3 --usb "$WORK/usb-dkg" > /dev/null
signer bob backup export --out "$WORK/bob.backup" --backup-passphrase-file "$WORK/backup.pass"
signer bob backup verify --file "$WORK/bob.backup" --backup-passphrase-file "$WORK/backup.pass"
before="$(signer bob status | grep '^group xpub:')"

step "bob's laptop is lost; he restores onto a new one"
mv "$WORK/bob" "$WORK/bob-lost"
signer bob backup restore --file "$WORK/bob.backup" --backup-passphrase-file "$WORK/backup.pass" \
    --record "$DKG_RECORD" | tee "$WORK/restore.out"
grep -q "a new nonce seed was drawn" "$WORK/restore.out" || fail "no new nonce seed"
after="$(signer bob status | grep '^group xpub:')"
[ "$before" = "$after" ] || fail "the restored signer holds another wallet"
signer bob status > "$WORK/bob.status"
grep -q "nonces: 0 issued" "$WORK/bob.status" || fail "the restored signer kept nonce state"

step "everyone verifies the DKG record"
verify_record "$DKG_RECORD" "${HOLDERS[@]}"
echo
echo "backup-and-restore drill complete"
