-- Internal transfers (voids, accelerations) pay no one outside the wallet; the policy
-- neither checks nor counts them against velocity limits (ADR 0035). Earlier versions
-- added each to its hour's count (amount 0): take them out again, as a stripe of their own
-- (-1; PostgreSQL's hourly fold merges it, a window sums every stripe).
INSERT INTO velocity_buckets (asset, bucket, stripe, n, t0, t1, t2, t3, t4)
SELECT asset, created_at - created_at % 3600, -1, -COUNT(*), 0, 0, 0, 0, 0
FROM withdrawals
WHERE state IN ('approved', 'signing', 'signed', 'broadcasting', 'broadcast', 'confirmed')
    AND (voids IS NOT NULL OR accelerates IS NOT NULL)
GROUP BY asset, created_at - created_at % 3600;
-- The velocity reads leave them out; so does their index. The two columns are in it (NULL
-- in every entry) so that SQLite still answers the reads from the index alone.
DROP INDEX withdrawals_asset_state_time_amount;
CREATE INDEX withdrawals_asset_state_time_amount
    ON withdrawals(asset, state, created_at, amount, voids, accelerates)
    WHERE voids IS NULL AND accelerates IS NULL;
