-- Changes with every write: an update is applied only to the version it was
-- planned from (reservation/src/engine), as on PostgreSQL.
ALTER TABLE reservations ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
