-- Where each client's credentials were used from: one row per client, method and source
-- network (a /24, or a /64), with when it last authenticated from there. A guard started by a
-- flip reads the networks that used the method it retires within the evidence window: only
-- refusals from those networks count toward it (a leaked key sent from anywhere else cannot
-- undo the flip that retired it). Rows not seen within migration.evidence_window_secs, and
-- rows past each client and method's latest 64, are pruned hourly.
CREATE TABLE credential_networks (
    client     TEXT NOT NULL,
    method     TEXT NOT NULL CHECK (method IN ('api_key', 'certificate')),
    network    TEXT NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (client, method, network)
) STRICT;
CREATE INDEX credential_networks_last_seen ON credential_networks (last_seen);

-- The method a guarded flip retires (NULL: it retires none), the networks that used it within
-- the evidence window before the flip (JSON array), and, once reverted, the networks the
-- retired method is re-admitted from and until when.
ALTER TABLE mode_guards ADD COLUMN retired_method TEXT;
ALTER TABLE mode_guards ADD COLUMN known_networks TEXT NOT NULL DEFAULT '[]';
ALTER TABLE mode_guards ADD COLUMN reopened_networks TEXT NOT NULL DEFAULT '[]';
ALTER TABLE mode_guards ADD COLUMN reopened_until INTEGER;
