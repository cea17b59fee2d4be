-- Every certificate each client presented within the evidence window, not only its last: a
-- registry change is tried against each (auth::tryout), so a change that would keep out the
-- certificate some of a client's instances still present (a renewal under way) is refused.
-- One row per client and certificate; `chain` is the chain presented (leaf first, DER in hex,
-- space-separated). Rows not seen within migration.evidence_window_secs, and rows past each
-- client's latest eight, are pruned hourly.
CREATE TABLE presented_certificates (
    client       TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    chain        TEXT NOT NULL,
    last_seen    INTEGER NOT NULL,
    PRIMARY KEY (client, fingerprint)
) STRICT;
CREATE INDEX presented_certificates_last_seen ON presented_certificates (last_seen);

-- Carried over: the chain each usage row holds (its client's last of that hour). The column
-- stays, no longer written or read, as on PostgreSQL (where replicas of the version before keep
-- writing it during a rolling upgrade; their tryouts read it, so registry changes are made on
-- an upgraded replica meanwhile).
INSERT INTO presented_certificates (client, fingerprint, chain, last_seen)
SELECT client, last_cert_fingerprint, last_cert_chain, max(last_seen)
FROM client_usage
WHERE method = 'certificate' AND last_cert_fingerprint IS NOT NULL AND last_cert_chain IS NOT NULL
GROUP BY client, last_cert_fingerprint;
