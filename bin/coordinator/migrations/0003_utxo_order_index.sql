-- Coin selection reads the largest free coins in a fixed order; this index serves that
-- order directly (the first index left SQLite sorting every coin of equal amount).
DROP INDEX utxos_free;
CREATE INDEX utxos_free_order ON utxos(reserved_by, spent_by, amount, outpoint);
