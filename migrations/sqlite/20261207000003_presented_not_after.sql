-- A presented certificate is evidence until it expires, not only within the evidence window:
-- a weekly job, or a client idle over a weekend, keeps its certificate protected from capture
-- by the tryout while that certificate can still authenticate. `not_after` is the earliest
-- notAfter of the chain as verified (unix seconds); rows written before this column have none,
-- and count within the evidence window as before.
ALTER TABLE presented_certificates ADD COLUMN not_after INTEGER;
