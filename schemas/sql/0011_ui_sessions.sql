-- Dashboard sessions: a browser signs in with an API key and then holds only a random
-- session token in an HttpOnly cookie. Only the token's SHA-256 is stored; every mutation
-- also carries the session's CSRF token in a header.
CREATE TABLE ui_sessions (
    token_hash text PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants(id),
    key_id     uuid NOT NULL REFERENCES api_keys(id),
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz -- signed out
);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
