-- Running totals for velocity limits (ADR 0028): per asset and hour of creation, the
-- count and amount of the approved-or-later withdrawals. A withdrawal is added when it
-- enters a counted state and taken out when it leaves one, in the transaction that moves
-- it. A window reads the hours wholly inside it from here and the hour its start cuts
-- through from `withdrawals`, so its cost no longer grows with the number of withdrawals
-- it holds. Amounts are five base-10^9 limbs (t0 least significant), each summed as a
-- BIGINT, so that Ethereum's wei (beyond BIGINT) are summed exactly by both databases.
-- `stripe` spreads concurrent writers over rows (PostgreSQL's backend process; 0 on
-- SQLite): a window sums every stripe of its hours.
CREATE TABLE velocity_buckets (
    asset TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    stripe BIGINT NOT NULL,
    n BIGINT NOT NULL,
    t0 BIGINT NOT NULL,
    t1 BIGINT NOT NULL,
    t2 BIGINT NOT NULL,
    t3 BIGINT NOT NULL,
    t4 BIGINT NOT NULL,
    PRIMARY KEY (asset, bucket, stripe)
);
-- The withdrawals already stored; the limbs are cut from the amount's decimal text,
-- left-padded with zeros.
INSERT INTO velocity_buckets (asset, bucket, stripe, n, t0, t1, t2, t3, t4)
SELECT asset, created_at - created_at % 3600, 0, COUNT(*),
    CAST(SUM(CAST(substr(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT))), length(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT)))) - 8, 9) AS BIGINT)) AS BIGINT),
    CAST(SUM(CAST(substr(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT))), length(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT)))) - 17, 9) AS BIGINT)) AS BIGINT),
    CAST(SUM(CAST(substr(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT))), length(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT)))) - 26, 9) AS BIGINT)) AS BIGINT),
    CAST(SUM(CAST(substr(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT))), length(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT)))) - 35, 9) AS BIGINT)) AS BIGINT),
    CAST(SUM(CAST(substr(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT))), length(('000000000000000000000000000000000000000000000' || COALESCE(amount_text, CAST(amount AS TEXT)))) - 44, 9) AS BIGINT)) AS BIGINT)
FROM withdrawals
WHERE state IN ('approved', 'signing', 'signed', 'broadcasting', 'broadcast', 'confirmed')
GROUP BY asset, created_at - created_at % 3600;
