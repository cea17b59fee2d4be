-- Several keys per client, so that a rotation can leave the old key valid for an overlap: each
-- key its own row (its SHA-256 the key), with an optional expiry and its own use.
CREATE TABLE api_keys_by_hash (
    key_sha256    TEXT PRIMARY KEY,
    client        TEXT NOT NULL REFERENCES clients (name) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    -- Unix seconds from which the key is refused (`key_expired`); NULL: until replaced.
    expires_at    INTEGER,
    -- Unix seconds: when a rotation replaced it (then it lives out its overlap); NULL: the
    -- client's current key.
    replaced_at   INTEGER,
    last_used_at  INTEGER,
    use_count     INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO api_keys_by_hash (key_sha256, client, created_at)
    SELECT key_sha256, client, created_at FROM api_keys;
DROP TABLE api_keys;
ALTER TABLE api_keys_by_hash RENAME TO api_keys;
CREATE INDEX api_keys_client ON api_keys (client);
-- One current key per client: two rotations racing on two replicas cannot both leave a key
-- that nothing replaces (the second one's insert fails, and it is rolled back whole).
CREATE UNIQUE INDEX api_keys_one_current ON api_keys (client) WHERE replaced_at IS NULL;
