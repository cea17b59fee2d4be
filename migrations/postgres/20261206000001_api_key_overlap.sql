-- Several keys per client, so that a rotation can leave the old key valid for an overlap: each
-- key its own row (its SHA-256 the key), with an optional expiry and its own use.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_pkey;
ALTER TABLE api_keys ADD PRIMARY KEY (key_sha256);
-- The primary key now: the old uniqueness constraint would only repeat it.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_key_sha256_key;
-- Unix seconds from which the key is refused (`key_expired`); NULL: until replaced.
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
-- Unix seconds: when a rotation replaced it (then it lives out its overlap); NULL: the
-- client's current key.
ALTER TABLE api_keys ADD COLUMN replaced_at BIGINT;
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_keys ADD COLUMN use_count BIGINT NOT NULL DEFAULT 0;
CREATE INDEX api_keys_client ON api_keys (client);
-- One current key per client: two rotations racing on two replicas cannot both leave a key
-- that nothing replaces (the second one's insert fails, and it is rolled back whole).
CREATE UNIQUE INDEX api_keys_one_current ON api_keys (client) WHERE replaced_at IS NULL;
