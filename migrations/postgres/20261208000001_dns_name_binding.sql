-- A binding by a dNSName SAN of the certificate (ACME CAs name workloads so), stored in lower
-- case: see dispatch-api/src/registry/binding/name.rs.
ALTER TABLE cert_bindings ADD COLUMN dns_name TEXT;
