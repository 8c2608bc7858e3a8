-- Velocity limits of Bitcoin are summed by the database (ADR 0024): the count and total of
-- one asset's approved-or-later withdrawals inside each window. With the amount in the
-- index the sum reads the index range alone, not a table row per withdrawal.
DROP INDEX withdrawals_asset_state_time;
CREATE INDEX withdrawals_asset_state_time_amount ON withdrawals(asset, state, created_at, amount);
