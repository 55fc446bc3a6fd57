-- API tokens, as on PostgreSQL: only the SHA-256 digest of each secret is
-- kept.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    principal  TEXT NOT NULL CHECK (length(principal) BETWEEN 1 AND 64),
    role       TEXT NOT NULL CHECK (role IN ('admin', 'service', 'user')),
    digest     BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_us INTEGER NOT NULL,
    expires_us INTEGER,
    revoked_us INTEGER
) STRICT;
