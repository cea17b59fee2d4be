-- Registered clients and how far each has moved from the shared API key to mTLS.
CREATE TABLE clients (
    name        TEXT PRIMARY KEY,
    mode        TEXT NOT NULL CHECK (mode IN ('api_key', 'dual', 'mtls')),
    scopes      TEXT NOT NULL,              -- space-separated scope names
    disabled    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,           -- unix seconds
    updated_at  INTEGER NOT NULL
) STRICT;

-- How a certificate is tied to a client: issuer plus subject CN or SPIFFE URI, optional pins.
CREATE TABLE cert_bindings (
    id            INTEGER PRIMARY KEY,
    client        TEXT NOT NULL REFERENCES clients (name) ON DELETE CASCADE,
    issuer        TEXT,
    subject_cn    TEXT,
    spiffe_id     TEXT,
    fingerprints  TEXT NOT NULL DEFAULT ''  -- space-separated lowercase hex SHA-256
) STRICT;
CREATE INDEX cert_bindings_client ON cert_bindings (client);

-- Only the SHA-256 of a key is stored; the key itself is shown once, when it is made.
CREATE TABLE api_keys (
    client      TEXT PRIMARY KEY REFERENCES clients (name) ON DELETE CASCADE,
    key_sha256  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
) STRICT;

-- Immediate revocation without a CRL: checked on every request.
CREATE TABLE revoked_certificates (
    fingerprint  TEXT PRIMARY KEY,
    reason       TEXT NOT NULL,
    revoked_by   TEXT NOT NULL,
    revoked_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE plans (
    id               TEXT PRIMARY KEY,
    client           TEXT NOT NULL,
    auth_method      TEXT NOT NULL,
    route_id         TEXT NOT NULL,
    team             TEXT NOT NULL,
    planned_date     TEXT NOT NULL,
    stop_count       INTEGER NOT NULL,
    body             TEXT NOT NULL,         -- the validated plan as JSON
    idempotency_key  TEXT,
    request_sha256   TEXT NOT NULL,
    received_at      INTEGER NOT NULL,
    UNIQUE (client, idempotency_key)
) STRICT;

-- Which method each client actually used, bucketed by hour for the migration report.
CREATE TABLE client_usage (
    client                 TEXT NOT NULL,
    method                 TEXT NOT NULL CHECK (method IN ('api_key', 'certificate')),
    hour                   INTEGER NOT NULL,  -- unix seconds, truncated to the hour
    request_count          INTEGER NOT NULL,
    first_seen             INTEGER NOT NULL,
    last_seen              INTEGER NOT NULL,
    last_cert_fingerprint  TEXT,
    last_cert_not_after    INTEGER,
    PRIMARY KEY (client, method, hour)
) STRICT;

-- Refusals, alerts and admin changes (with before and after).
CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('auth_refused', 'alert', 'admin_change')),
    reason    TEXT NOT NULL,
    client    TEXT,
    actor     TEXT,
    method    TEXT,
    before    TEXT,
    after     TEXT,
    detail    TEXT NOT NULL DEFAULT '{}'   -- JSON: certificate subject, fingerprint, peer, ...
) STRICT;
CREATE INDEX audit_events_client ON audit_events (client, id);
