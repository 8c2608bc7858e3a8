-- Ethereum withdrawals (ETH and ERC-20) share the withdrawals table and its lifecycle.
-- amount_text: the amount in base units as a decimal string (wei and token units exceed
-- BIGINT); amount stays the satoshi amount of Bitcoin withdrawals and 0 otherwise.
ALTER TABLE withdrawals ADD COLUMN amount_text TEXT;
-- The intent digest approvals and decisions sign (custody_ethereum intent_digest), hex.
ALTER TABLE withdrawals ADD COLUMN eth_intent TEXT;
-- The unsigned transaction (hex of its EIP-2718 unsigned encoding), set at round export.
ALTER TABLE withdrawals ADD COLUMN eth_tx TEXT;
ALTER TABLE withdrawals ADD COLUMN eth_nonce BIGINT;
-- The presignature the round spends, and the partial signatures received (JSON, hex).
ALTER TABLE withdrawals ADD COLUMN presign_batch TEXT;
ALTER TABLE withdrawals ADD COLUMN presign_index BIGINT;
ALTER TABLE withdrawals ADD COLUMN partials TEXT;
-- The coordinator's signed decision sent with the round (hex), so a repeated export
-- returns the same round.
ALTER TABLE withdrawals ADD COLUMN decision TEXT;

-- One row per account nonce in use: a nonce belongs to at most one withdrawal. Rows of
-- withdrawals that never reached the chain are deleted so the nonce is used again.
CREATE TABLE eth_nonces (
    nonce BIGINT PRIMARY KEY,
    withdrawal_id TEXT NOT NULL
);

-- Presignature batches (public presigning plans) and their single-use entries.
CREATE TABLE presign_batches (
    batch TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    signers TEXT NOT NULL,
    count BIGINT NOT NULL,
    added_at BIGINT NOT NULL
);
CREATE TABLE presignatures (
    batch TEXT NOT NULL,
    idx BIGINT NOT NULL,
    signers TEXT NOT NULL,
    used_by TEXT,
    PRIMARY KEY (batch, idx)
);
CREATE INDEX presignatures_free ON presignatures(signers, used_by);
