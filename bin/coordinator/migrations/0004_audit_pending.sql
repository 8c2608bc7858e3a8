-- Audit entries are written here in the transaction of the change they record, and
-- chained into audit_log (sequence number and hash) in batches right after: concurrent
-- transactions no longer queue on the audit_head row while they commit.
CREATE TABLE audit_pending (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    data TEXT NOT NULL
);
