-- KYC records, sealed at rest (custody-vault envelope encryption; docs/kyc.md).
-- Nothing personal is stored in clear: the record is one sealed blob, lookups go through
-- keyed blind indexes. (0007 belongs to another change; versions only need to increase.)

-- One record per principal. id is a random UUID and the associated data the blob is
-- sealed for, so a blob copied into another row does not open; it is not personal data.
-- sealed: base64 of the custody-vault SealedBlob (purpose KYC record).
-- kek_id: the key-encryption key that wraps the record's data key, kept in step with the
-- blob so `vault status` and `vault rotate` can query rotation progress.
CREATE TABLE kyc_records (
    id TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL UNIQUE REFERENCES principals(id),
    sealed TEXT NOT NULL,
    kek_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX kyc_records_kek ON kyc_records(kek_id);

-- Blind indexes of a record: field is the indexed field ('document_number',
-- 'name_dob'), value the lower-case hex of HMAC-SHA256 under a key from the vault key
-- file (32 characters), never the plaintext.
CREATE TABLE kyc_blind_index (
    record_id TEXT NOT NULL REFERENCES kyc_records(id),
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (record_id, field)
);
CREATE INDEX kyc_blind_index_lookup ON kyc_blind_index(field, value);
