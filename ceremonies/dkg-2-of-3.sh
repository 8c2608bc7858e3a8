#!/usr/bin/env bash
# Kept for old references: the 2-of-3 DKG drill is `ceremonies/dkg.sh 2 3`.
exec "$(dirname "$0")/dkg.sh" 2 3 "$@"
