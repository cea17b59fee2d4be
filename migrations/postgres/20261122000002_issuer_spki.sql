-- A binding may pin the key of its issuer (SHA-256 of the issuing CA's SubjectPublicKeyInfo,
-- lowercase hex): needed where the issuer's name alone could stand for more than one CA.
ALTER TABLE cert_bindings ADD COLUMN issuer_spki_sha256 TEXT;
