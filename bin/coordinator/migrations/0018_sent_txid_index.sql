-- The coin sync tells the wallet's own change from coins paid from outside by the txid of
-- a withdrawal the coordinator sent (ADR 0033): only rows that were sent are indexed, so a
-- withdrawal request adds no entry.
CREATE INDEX withdrawals_sent_txid ON withdrawals(txid)
    WHERE state IN ('broadcasting', 'broadcast', 'confirmed');
