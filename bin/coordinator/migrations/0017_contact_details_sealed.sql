-- Contact details sealed at rest (ADR 0034). `principals.email` keeps the account's lookup
-- key, unique as before: the keyed blind index of the normalised address (hex, never an
-- address once the start-up has sealed the rows of earlier versions). The address itself
-- and the phone number are sealed with the vault key file; `phone` is left empty.
ALTER TABLE principals ADD COLUMN email_sealed TEXT;
ALTER TABLE principals ADD COLUMN phone_sealed TEXT;
-- The rows an earlier version wrote, until the start-up seals them (then empty).
CREATE INDEX principals_unsealed ON principals(id) WHERE email_sealed IS NULL;
