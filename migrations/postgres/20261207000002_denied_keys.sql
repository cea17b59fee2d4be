-- Keys on the deny list: every certificate whose public key hashes to `spki_sha256` (SHA-256
-- of its SubjectPublicKeyInfo) is refused as cert_revoked on its next request, whatever its
-- fingerprint: a stolen private key dies with every certificate issued for it (a renewal that
-- reused the key included), not only the one a CRL names.
CREATE TABLE denied_keys (
    spki_sha256  TEXT PRIMARY KEY,
    reason       TEXT NOT NULL,
    denied_by    TEXT NOT NULL,
    denied_at    BIGINT NOT NULL
);
