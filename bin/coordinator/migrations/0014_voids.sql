-- A void replaces a withdrawal whose signing round is out but which must never pay: a
-- transaction of its own, signed in a round of its own, spending the same coins back to
-- the wallet (ADR 0031). It is a row of `withdrawals` like any other, so approvals,
-- rounds, answers and the broadcast gates apply to it unchanged; `voids` names the
-- withdrawal it replaces (NULL for every ordinary withdrawal). Its amount is 0: it adds
-- nothing to the velocity totals, but it is one more transaction in a count limit's window.
ALTER TABLE withdrawals ADD COLUMN voids TEXT;
CREATE INDEX withdrawals_voids ON withdrawals(voids) WHERE voids IS NOT NULL;
