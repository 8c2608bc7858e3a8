-- User-level security: second factors beyond TOTP, attempt lockout, IP allowlists, the
-- whitelist-only mode, API keys, and device/session management.

-- A phone number (E.164) for SMS codes, verified by a first code.
ALTER TABLE principals ADD COLUMN phone TEXT;
ALTER TABLE principals ADD COLUMN phone_verified BIGINT NOT NULL DEFAULT 0;
-- The account's IP allowlist in canonical text form (one CIDR per line); NULL allows any.
ALTER TABLE principals ADD COLUMN ip_allowlist TEXT;
-- 1 (the default): withdrawals only to active whitelisted addresses; turning it off places a hold.
ALTER TABLE principals ADD COLUMN whitelist_only BIGINT NOT NULL DEFAULT 1;

-- A device may withdraw once confirmed (the device an account is opened from is confirmed
-- with it); a revoked device's sessions end and it must be confirmed again.
ALTER TABLE devices ADD COLUMN confirmed_at BIGINT;
ALTER TABLE devices ADD COLUMN revoked_at BIGINT;
ALTER TABLE devices ADD COLUMN last_ip TEXT;
UPDATE devices SET confirmed_at = first_seen;

-- A public id per session for listing and revoking (the token hash stays internal).
ALTER TABLE sessions ADD COLUMN id TEXT;

CREATE TABLE webauthn_credentials (
    credential_id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    name TEXT NOT NULL,
    credential TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX webauthn_credentials_principal ON webauthn_credentials(principal_id);

-- Pending second-factor challenges: WebAuthn ceremonies and email/SMS codes. Deleted when
-- used; expired rows are ignored and swept.
CREATE TABLE auth_challenges (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX auth_challenges_principal ON auth_challenges(principal_id, kind);

-- Recovery codes, as keyed hashes only.
CREATE TABLE recovery_codes (
    principal_id TEXT PRIMARY KEY REFERENCES principals(id),
    codes TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Failed sign-in and code attempts per account, and the lockout they lead to.
CREATE TABLE lockouts (
    principal_id TEXT PRIMARY KEY REFERENCES principals(id),
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    name TEXT NOT NULL,
    record TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_used_at BIGINT,
    last_ip TEXT
);
CREATE INDEX api_keys_principal ON api_keys(principal_id);

-- Request nonces seen inside the replay window, per key.
CREATE TABLE api_nonces (
    key_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX api_nonces_expiry ON api_nonces(expires_at);

-- The coordinator's own small secrets (the key for code and recovery-code hashes), sealed
-- by the vault key file.
CREATE TABLE coordinator_secrets (
    name TEXT PRIMARY KEY,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
