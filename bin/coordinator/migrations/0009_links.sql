-- Anti-phishing codes and single-use links in emails ("this wasn't me", device and email
-- confirmation). 0008 is another change's.

-- The user's anti-phishing code, sealed with the vault key file (custody-vault purpose
-- `secret`, record id `anti_phishing_code:<principal id>`); NULL when not set.
ALTER TABLE principals ADD COLUMN anti_phishing_code TEXT;

-- One row per link: only SHA-256(domain, purpose, token) is kept (custody-auth
-- `link_token_hash`, hex), so a copy of the database holds no usable link.
CREATE TABLE link_tokens (
    token_hash TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals(id),
    -- freeze_account, confirm_device or confirm_email.
    purpose TEXT NOT NULL,
    -- What the link acts on (custody-auth `LinkTokenRecord::subject`): the principal id.
    subject TEXT NOT NULL,
    -- JSON: what else the action needs, e.g. {"device_id": "…"} to confirm.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX link_tokens_principal ON link_tokens(principal_id);
CREATE INDEX link_tokens_expiry ON link_tokens(expires_at);
