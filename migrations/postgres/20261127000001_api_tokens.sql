-- API tokens: only the SHA-256 digest of each secret is kept. Servers
-- load the active ones into memory and reload them every few seconds, so
-- a revoked token stops working on every replica soon after.
CREATE TABLE rsvp.api_tokens (
    id         uuid PRIMARY KEY,
    principal  text NOT NULL CHECK (length(principal) BETWEEN 1 AND 64),
    role       text NOT NULL CHECK (role IN ('admin', 'service', 'user')),
    digest     bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    revoked_at timestamptz
);
