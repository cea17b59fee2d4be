-- Evidence per instance, not per certificate: with each presented certificate, the network it
-- was last presented from and the names it carries (its CNs, DNS names and URIs, sorted). The
-- tryout reads the newest certificate of each (client, network, names): a client whose
-- instances renew every few minutes keeps one live row per instance, and no instance is crowded
-- out by another's renewals. Rows written before have neither, and each counts as an instance
-- of its own until it is pruned.
ALTER TABLE presented_certificates ADD COLUMN network TEXT;
ALTER TABLE presented_certificates ADD COLUMN names TEXT;
