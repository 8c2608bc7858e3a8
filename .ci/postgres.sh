#!/usr/bin/env bash
# Starts a real PostgreSQL for the coordinator's tests and prints the URL to use.
# Idempotent: installs the Debian packages if missing, starts the cluster if it is down,
# creates the test role (allowed to create databases: each test makes its own).
# Usage: eval "$(.ci/postgres.sh)"   → exports CUSTODY_TEST_POSTGRES_URL
set -euo pipefail

log() { printf '%s\n' "$*" >&2; }

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "PostgreSQL is not installed and cannot be installed here (need root and apt-get): apt-get install postgresql"
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
  pg_createcluster "$version" main >&2
fi
if ! pg_lsclusters -h | awk '$1=="'"$version"'" && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$version" main start >&2
fi

# Wait (bounded) until it accepts connections.
for _ in $(seq 1 60); do
  if su postgres -c "psql -qAtc 'SELECT 1'" >/dev/null 2>&1; then break; fi
  sleep 0.5
done
su postgres -c "psql -qAtc 'SELECT 1'" >/dev/null || { log "PostgreSQL did not come up"; exit 2; }

su postgres -c "psql -qAt" >&2 <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'custody_test') THEN
    CREATE ROLE custody_test LOGIN CREATEDB PASSWORD 'custody_test';
  END IF;
END $$;
SELECT 'role ready';
SQL
if ! su postgres -c "psql -qAtc \"SELECT 1 FROM pg_database WHERE datname = 'custody_test'\"" | grep -q 1; then
  su postgres -c "createdb -O custody_test custody_test" >&2
fi
port=$(pg_lsclusters -h | awk '$1=="'"$version"'" && $2=="main" {print $3}')
echo "export CUSTODY_TEST_POSTGRES_URL=postgres://custody_test:custody_test@127.0.0.1:${port}/custody_test"
