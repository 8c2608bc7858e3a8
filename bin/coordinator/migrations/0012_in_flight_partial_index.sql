-- The background work looks for withdrawals being broadcast (`state IN ('broadcasting',
-- 'broadcast')`), the only query that filters on the state alone. A partial index of
-- those rows replaces the index of every row's state: a new withdrawal no longer adds an
-- entry (it starts 'pending_approval', 'approved' or 'rejected'), the index holds only
-- the few withdrawals in flight, and PostgreSQL's planner no longer reads an account's or
-- the wallet's velocity window through it instead of the covering index (ADR 0024).
-- The predicate is written exactly as the queries write it, so SQLite uses it too.
DROP INDEX withdrawals_state;
CREATE INDEX withdrawals_in_flight ON withdrawals(state) WHERE state IN ('broadcasting', 'broadcast');
