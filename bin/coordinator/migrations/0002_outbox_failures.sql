-- A notification given up after `notifications.max_attempts` is marked, not deleted.
ALTER TABLE outbox ADD COLUMN failed_at BIGINT;
