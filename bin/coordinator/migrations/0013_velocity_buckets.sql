-- Running totals for Bitcoin velocity limits (ADR 0028): the count and satoshis of the
-- approved-or-later withdrawals created in each hour. A withdrawal is added when it
-- enters a counted state and taken out when it leaves one, in the transaction that
-- moves it. A window reads the hours wholly inside it from here and the hour its start
-- cuts through from `withdrawals`, so its cost no longer grows with the number of
-- withdrawals it holds. `stripe` spreads concurrent writers over rows (PostgreSQL's
-- backend process; 0 on SQLite): a window sums every stripe of its hours.
CREATE TABLE velocity_buckets (
    asset TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    stripe BIGINT NOT NULL,
    n BIGINT NOT NULL,
    total BIGINT NOT NULL,
    PRIMARY KEY (asset, bucket, stripe)
);
INSERT INTO velocity_buckets (asset, bucket, stripe, n, total)
SELECT asset, created_at - created_at % 3600, 0, COUNT(*), CAST(SUM(amount) AS BIGINT)
FROM withdrawals
WHERE asset = 'BTC'
  AND state IN ('approved', 'signing', 'signed', 'broadcasting', 'broadcast', 'confirmed')
GROUP BY asset, created_at - created_at % 3600;
