-- A guarded flip: a mode change watched for `watch_until` for refusals it causes (key_retired,
-- method_not_allowed), reverted by the service itself at `max_refusals`. One row per client,
-- its latest guard; every replica adds the refusals it saw, so they count together.
CREATE TABLE mode_guards (
    client        TEXT PRIMARY KEY REFERENCES clients (name) ON DELETE CASCADE,
    from_mode     TEXT NOT NULL,
    to_mode       TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    watch_until   INTEGER NOT NULL,
    max_refusals  INTEGER NOT NULL,
    refusals      INTEGER NOT NULL DEFAULT 0,
    -- watching, confirmed (ran out cleanly), reverted, cancelled (a manual mode change), or
    -- kept (the revert would have locked every operator out).
    state         TEXT NOT NULL,
    ended_at      INTEGER,
    -- The refusals seen: counts by reason code, source networks, first and last seen (JSON).
    evidence      TEXT NOT NULL DEFAULT '{}'
) STRICT;
