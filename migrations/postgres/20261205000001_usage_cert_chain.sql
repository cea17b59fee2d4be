-- The chain each client last presented (leaf first, DER in hex, space-separated): the live
-- certificate a registry change is tried against before it is made, on every replica.
ALTER TABLE client_usage ADD COLUMN last_cert_chain TEXT;
