-- When operations were told that a sent withdrawal is still unconfirmed after
-- `worker.stuck_after_minutes` (once per withdrawal; NULL until then). An operator
-- accelerates a stuck Bitcoin withdrawal (ADR 0032).
ALTER TABLE withdrawals ADD COLUMN stuck_alerted_at BIGINT;
