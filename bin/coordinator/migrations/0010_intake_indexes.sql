-- Every withdrawal request reads three things whose cost grew with history instead of
-- with what they return:
-- * velocity history: one asset's approved-or-later withdrawals inside the window. With
--   (asset, created_at) every withdrawal in the window was visited, pending and rejected
--   ones too, to test its state;
-- * "paid this address before": the account's broadcast or confirmed withdrawals to the
--   address, which visited every withdrawal the account ever made;
-- * a recent sensitive change: the account's password, 2FA and email events of the last
--   week, which visited every event the account ever had (each withdrawal adds one).
DROP INDEX withdrawals_asset_time;
CREATE INDEX withdrawals_asset_state_time ON withdrawals(asset, state, created_at);
CREATE INDEX withdrawals_principal_address ON withdrawals(principal_id, address, state);
DROP INDEX security_events_principal;
CREATE INDEX security_events_principal_kind ON security_events(principal_id, kind, recorded_at);
