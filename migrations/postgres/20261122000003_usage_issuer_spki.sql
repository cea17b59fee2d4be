-- The key of the CA that signed each client's last certificate (SHA-256 of its SPKI), shown in
-- the migration report so that an operator can paste it into a binding's issuer_spki_sha256.
ALTER TABLE client_usage ADD COLUMN last_cert_issuer_spki TEXT;
