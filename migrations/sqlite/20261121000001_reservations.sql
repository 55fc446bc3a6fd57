-- rsvp embedded (SQLite): the same model as PostgreSQL. Times are
-- microseconds since the Unix epoch; intervals are [start_us, end_us).
--
-- Released migrations are never edited; later changes are new files.

CREATE TABLE reservations (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL CHECK (length(user_id) BETWEEN 1 AND 64),
    resource_id         TEXT NOT NULL CHECK (length(resource_id) BETWEEN 1 AND 64),
    status              TEXT NOT NULL
        CHECK (status IN ('pending', 'confirmed', 'blocked', 'cancelled', 'expired')),
    start_us            INTEGER NOT NULL,
    end_us              INTEGER NOT NULL,
    note                TEXT NOT NULL DEFAULT '' CHECK (length(CAST(note AS BLOB)) <= 4096),
    created_us          INTEGER NOT NULL,
    updated_us          INTEGER NOT NULL,
    expires_us          INTEGER,
    request_id          TEXT CHECK (request_id IS NULL OR length(request_id) BETWEEN 1 AND 64),
    request_fingerprint INTEGER,
    CHECK (start_us < end_us)
) STRICT;

-- Reserve retries: one reservation per (user, request id).
CREATE UNIQUE INDEX reservations_user_request
    ON reservations (user_id, request_id) WHERE request_id IS NOT NULL;

-- Live reservations of a resource by start. Live intervals never overlap,
-- so sorted by start they are sorted by end too: a conflict check reads
-- backwards from the new end and stops at the first interval that ends
-- before the new start — logarithmic, not a scan of the resource's history.
CREATE INDEX reservations_live
    ON reservations (resource_id, start_us)
    WHERE status IN ('pending', 'confirmed', 'blocked');

-- Query and Filter by resource, by user, or neither, in keyset order.
CREATE INDEX reservations_resource_start ON reservations (resource_id, start_us, id);
CREATE INDEX reservations_user_start ON reservations (user_id, start_us, id);
CREATE INDEX reservations_start ON reservations (start_us, id);

-- The sweeper's scan for overdue holds.
CREATE INDEX reservations_pending_expiry
    ON reservations (expires_us) WHERE status = 'pending';

-- The last line of defence, as PostgreSQL's exclusion constraint: no write
-- may make two live reservations of a resource overlap. Because live
-- intervals never overlap, only the live neighbour that starts last before
-- the new end can collide.
CREATE TRIGGER reservations_no_overlap_insert
BEFORE INSERT ON reservations
WHEN NEW.status IN ('pending', 'confirmed', 'blocked')
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap')
    WHERE (SELECT r.end_us FROM reservations r
           WHERE r.resource_id = NEW.resource_id
             AND r.status IN ('pending', 'confirmed', 'blocked')
             AND r.start_us < NEW.end_us
           ORDER BY r.start_us DESC LIMIT 1) > NEW.start_us;
END;

CREATE TRIGGER reservations_no_overlap_update
BEFORE UPDATE OF status, start_us, end_us, resource_id ON reservations
WHEN NEW.status IN ('pending', 'confirmed', 'blocked')
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap')
    WHERE (SELECT r.end_us FROM reservations r
           WHERE r.resource_id = NEW.resource_id
             AND r.status IN ('pending', 'confirmed', 'blocked')
             AND r.start_us < NEW.end_us
             AND r.id <> NEW.id
           ORDER BY r.start_us DESC LIMIT 1) > NEW.start_us;
END;

-- The change feed: the reservation as it stood right after each change.
-- AUTOINCREMENT never reuses an id; writers are serialized, so ids are
-- assigned in commit order.
CREATE TABLE reservation_changes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    op             TEXT NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    changed_us     INTEGER NOT NULL,
    reservation_id TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    status         TEXT NOT NULL,
    start_us       INTEGER NOT NULL,
    end_us         INTEGER NOT NULL,
    note           TEXT NOT NULL,
    created_us     INTEGER NOT NULL,
    updated_us     INTEGER NOT NULL,
    expires_us     INTEGER
) STRICT;

CREATE INDEX reservation_changes_changed ON reservation_changes (changed_us);

CREATE TRIGGER reservations_record_insert
AFTER INSERT ON reservations
BEGIN
    INSERT INTO reservation_changes
        (op, changed_us, reservation_id, user_id, resource_id, status, start_us,
         end_us, note, created_us, updated_us, expires_us)
    VALUES
        ('create', NEW.updated_us, NEW.id, NEW.user_id, NEW.resource_id, NEW.status,
         NEW.start_us, NEW.end_us, NEW.note, NEW.created_us, NEW.updated_us, NEW.expires_us);
END;

CREATE TRIGGER reservations_record_update
AFTER UPDATE ON reservations
WHEN OLD.status IS NOT NEW.status
  OR OLD.note IS NOT NEW.note
  OR OLD.start_us IS NOT NEW.start_us
  OR OLD.end_us IS NOT NEW.end_us
  OR OLD.expires_us IS NOT NEW.expires_us
  OR OLD.user_id IS NOT NEW.user_id
  OR OLD.resource_id IS NOT NEW.resource_id
BEGIN
    INSERT INTO reservation_changes
        (op, changed_us, reservation_id, user_id, resource_id, status, start_us,
         end_us, note, created_us, updated_us, expires_us)
    VALUES
        ('update', NEW.updated_us, NEW.id, NEW.user_id, NEW.resource_id, NEW.status,
         NEW.start_us, NEW.end_us, NEW.note, NEW.created_us, NEW.updated_us, NEW.expires_us);
END;

CREATE TRIGGER reservations_record_delete
AFTER DELETE ON reservations
BEGIN
    INSERT INTO reservation_changes
        (op, changed_us, reservation_id, user_id, resource_id, status, start_us,
         end_us, note, created_us, updated_us, expires_us)
    VALUES
        ('delete', CAST(unixepoch('subsec') * 1000000 AS INTEGER), OLD.id, OLD.user_id,
         OLD.resource_id, OLD.status, OLD.start_us, OLD.end_us, OLD.note, OLD.created_us,
         OLD.updated_us, OLD.expires_us);
END;
