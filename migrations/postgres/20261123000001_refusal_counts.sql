-- Refusals of callers the service cannot name (no credentials, an unknown key, a certificate no
-- client is bound to) are counted per hour, reason and source (a client's name, or the caller's
-- network) instead of written one row each: a flood of them costs a counter, not the disk.
CREATE TABLE refusal_counts (
    hour        BIGINT NOT NULL,   -- unix seconds, start of the hour
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,      -- client name, or e.g. 203.0.113.0/24, or 'other'
    count       BIGINT NOT NULL,
    first_seen  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    last_detail TEXT NOT NULL DEFAULT '{}',  -- JSON of the last one: path, issuer, ... (clipped)
    PRIMARY KEY (hour, reason, source)
);
CREATE INDEX refusal_counts_last_seen ON refusal_counts (last_seen);
-- audit.retention_days prunes by time.
CREATE INDEX audit_events_at ON audit_events (at);
