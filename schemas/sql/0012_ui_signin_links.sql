-- One-time dashboard sign-in links: made by a signed-in key for itself (scripts/run prints one
-- for the demo owner), redeemed once within their lifetime for a session of that key. Only
-- the token's SHA-256 is stored.
CREATE TABLE ui_signin_links (
    token_hash text PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants(id),
    key_id     uuid NOT NULL REFERENCES api_keys(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
