-- An acceleration speeds up a Bitcoin withdrawal that was sent but sits unconfirmed: a
-- child transaction of its own that spends the withdrawal's change output (and, when
-- that is too small, more of the wallet's coins) back to the wallet, paying enough fee
-- for the pair to reach the rate the operator asked for (child pays for parent, ADR
-- 0032). It is a row of `withdrawals` like any other, so approvals, rounds, answers and
-- the broadcast gates apply unchanged; `accelerates` names the withdrawal it pays for
-- (NULL for every other withdrawal). Its amount is 0, as for a void.
ALTER TABLE withdrawals ADD COLUMN accelerates TEXT;
CREATE INDEX withdrawals_accelerates ON withdrawals(accelerates) WHERE accelerates IS NOT NULL;
