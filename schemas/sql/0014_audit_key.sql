-- The audit chain is keyed: each new entry's hash is HMAC-SHA256 under a key held outside the
-- database (PL_AUDIT_KEY), named here by key_id (16 hex digits derived from the key, not the
-- key). Entries written before carry no key_id: they are plain SHA-256 and may only come
-- before a tenant's keyed entries.
ALTER TABLE audit_log ADD COLUMN key_id text;
