-- Bookings (several reservations made, confirmed and cancelled together)
-- and arrival (check-in, check-out, no-shows), as on PostgreSQL:
--
-- - A reservation may be a part of a booking (booking_id, booking_part:
--   its position in the booking) and carries its check-in and check-out
--   times. A checked-in reservation stays 'confirmed': it holds its
--   resource exactly as a confirmed one does.
-- - Two more statuses, 'completed' and 'no_show'. A confirmed reservation
--   of a resource with auto_release_after carries its release time in
--   expires_us: once that passes with nobody checked in it holds nothing,
--   like an overdue hold, and is settled as 'no_show'.
--
-- SQLite cannot change a table's CHECK constraint in place: the table is
-- made again (SQLite's documented procedure), with its indexes and
-- triggers, and the triggers of resources that read it.

CREATE TABLE bookings (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    created_us          INTEGER NOT NULL,
    request_id          TEXT,
    request_fingerprint INTEGER
) STRICT;
CREATE UNIQUE INDEX bookings_request ON bookings (user_id, request_id)
    WHERE request_id IS NOT NULL;

DROP TRIGGER resources_usage_insert;
DROP TRIGGER resources_usage_capacity;
DROP TRIGGER resources_capacity_in_use;

CREATE TABLE reservations_next (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL CHECK (length(user_id) BETWEEN 1 AND 64),
    resource_id         TEXT NOT NULL CHECK (length(resource_id) BETWEEN 1 AND 64),
    status              TEXT NOT NULL
        CHECK (status IN ('pending', 'confirmed', 'blocked', 'cancelled', 'expired',
                          'completed', 'no_show')),
    start_us            INTEGER NOT NULL,
    end_us              INTEGER NOT NULL,
    note                TEXT NOT NULL DEFAULT '' CHECK (length(CAST(note AS BLOB)) <= 4096),
    created_us          INTEGER NOT NULL,
    updated_us          INTEGER NOT NULL,
    expires_us          INTEGER,
    request_id          TEXT CHECK (request_id IS NULL OR length(request_id) BETWEEN 1 AND 64),
    request_fingerprint INTEGER,
    version             INTEGER NOT NULL DEFAULT 0,
    quantity            INTEGER NOT NULL DEFAULT 1 CHECK (quantity BETWEEN 0 AND 1000000),
    buffer_before_us    INTEGER NOT NULL DEFAULT 0 CHECK (buffer_before_us >= 0),
    buffer_after_us     INTEGER NOT NULL DEFAULT 0 CHECK (buffer_after_us >= 0),
    occ_start_us        INTEGER GENERATED ALWAYS AS (start_us - buffer_before_us) VIRTUAL,
    occ_end_us          INTEGER GENERATED ALWAYS AS (end_us + buffer_after_us) VIRTUAL,
    booking_id          TEXT,
    booking_part        INTEGER,
    checked_in_us       INTEGER,
    checked_out_us      INTEGER,
    CHECK (start_us < end_us)
) STRICT;

INSERT INTO reservations_next
    (id, user_id, resource_id, status, start_us, end_us, note, created_us, updated_us,
     expires_us, request_id, request_fingerprint, version, quantity, buffer_before_us,
     buffer_after_us)
SELECT id, user_id, resource_id, status, start_us, end_us, note, created_us, updated_us,
       expires_us, request_id, request_fingerprint, version, quantity, buffer_before_us,
       buffer_after_us
FROM reservations;

DROP TABLE reservations;
ALTER TABLE reservations_next RENAME TO reservations;

ALTER TABLE reservation_changes ADD COLUMN booking_id TEXT;
ALTER TABLE reservation_changes ADD COLUMN checked_in_us INTEGER;
ALTER TABLE reservation_changes ADD COLUMN checked_out_us INTEGER;

CREATE UNIQUE INDEX reservations_user_request
    ON reservations (user_id, request_id) WHERE request_id IS NOT NULL;

CREATE INDEX reservations_resource_start ON reservations (resource_id, start_us, id);

CREATE INDEX reservations_user_start ON reservations (user_id, start_us, id);

CREATE INDEX reservations_start ON reservations (start_us, id);

CREATE INDEX reservations_pending_expiry
    ON reservations (expires_us) WHERE status = 'pending';

CREATE INDEX reservations_live
    ON reservations (resource_id, occ_start_us)
    WHERE status IN ('pending', 'confirmed', 'blocked');

CREATE INDEX reservations_live_end
    ON reservations (resource_id, occ_end_us)
    WHERE status IN ('pending', 'confirmed', 'blocked');

CREATE TRIGGER reservations_no_overlap_insert
BEFORE INSERT ON reservations
WHEN NEW.status IN ('pending', 'confirmed', 'blocked')
 AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) = 1
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap')
    WHERE NEW.quantity > 1
       OR (SELECT r.end_us + r.buffer_after_us FROM reservations r
           WHERE r.resource_id = NEW.resource_id
             AND r.status IN ('pending', 'confirmed', 'blocked')
             AND r.occ_start_us < NEW.end_us + NEW.buffer_after_us
           ORDER BY r.occ_start_us DESC LIMIT 1) > NEW.start_us - NEW.buffer_before_us;
END;

CREATE TRIGGER reservations_no_overlap_update
BEFORE UPDATE OF status, start_us, end_us, resource_id, quantity, buffer_before_us,
    buffer_after_us ON reservations
WHEN NEW.status IN ('pending', 'confirmed', 'blocked')
 AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) = 1
BEGIN
    SELECT RAISE(ABORT, 'reservations_no_overlap')
    WHERE NEW.quantity > 1
       OR (SELECT r.end_us + r.buffer_after_us FROM reservations r
           WHERE r.resource_id = NEW.resource_id
             AND r.status IN ('pending', 'confirmed', 'blocked')
             AND r.occ_start_us < NEW.end_us + NEW.buffer_after_us
             AND r.id <> NEW.id
           ORDER BY r.occ_start_us DESC LIMIT 1) > NEW.start_us - NEW.buffer_before_us;
END;

CREATE TRIGGER reservations_usage_insert
AFTER INSERT ON reservations
WHEN (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1)
BEGIN
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT resource_id, (NEW.start_us - NEW.buffer_before_us), end_us, used, closed FROM usage_pieces
        WHERE 1 AND resource_id = NEW.resource_id AND start_us < (NEW.start_us - NEW.buffer_before_us) AND end_us > (NEW.start_us - NEW.buffer_before_us);
    UPDATE usage_pieces SET end_us = (NEW.start_us - NEW.buffer_before_us)
        WHERE 1 AND resource_id = NEW.resource_id AND start_us < (NEW.start_us - NEW.buffer_before_us) AND end_us > (NEW.start_us - NEW.buffer_before_us);
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT resource_id, (NEW.end_us + NEW.buffer_after_us), end_us, used, closed FROM usage_pieces
        WHERE 1 AND resource_id = NEW.resource_id AND start_us < (NEW.end_us + NEW.buffer_after_us) AND end_us > (NEW.end_us + NEW.buffer_after_us);
    UPDATE usage_pieces SET end_us = (NEW.end_us + NEW.buffer_after_us)
        WHERE 1 AND resource_id = NEW.resource_id AND start_us < (NEW.end_us + NEW.buffer_after_us) AND end_us > (NEW.end_us + NEW.buffer_after_us);
    UPDATE usage_pieces SET used = used + (CASE WHEN NEW.quantity = 0 THEN 0 ELSE NEW.quantity END), closed = closed + (CASE WHEN NEW.quantity = 0 THEN 1 ELSE 0 END)
        WHERE 1 AND resource_id = NEW.resource_id AND start_us >= (NEW.start_us - NEW.buffer_before_us) AND end_us <= (NEW.end_us + NEW.buffer_after_us);
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT NEW.resource_id, gap_start, gap_end, (CASE WHEN NEW.quantity = 0 THEN 0 ELSE NEW.quantity END), (CASE WHEN NEW.quantity = 0 THEN 1 ELSE 0 END) FROM (
            SELECT coalesce(lag(end_us) OVER (ORDER BY start_us), (NEW.start_us - NEW.buffer_before_us)) AS gap_start,
                   start_us AS gap_end
            FROM usage_pieces
            WHERE resource_id = NEW.resource_id AND start_us >= (NEW.start_us - NEW.buffer_before_us) AND end_us <= (NEW.end_us + NEW.buffer_after_us)
            UNION ALL
            SELECT coalesce((SELECT max(end_us) FROM usage_pieces
                             WHERE resource_id = NEW.resource_id AND start_us >= (NEW.start_us - NEW.buffer_before_us) AND end_us <= (NEW.end_us + NEW.buffer_after_us)),
                            (NEW.start_us - NEW.buffer_before_us)),
                   (NEW.end_us + NEW.buffer_after_us))
        WHERE 1 AND gap_start < gap_end;
    SELECT RAISE(ABORT, 'reservations_within_capacity')
    WHERE 1 AND EXISTS (
        SELECT 1 FROM usage_pieces
        WHERE resource_id = NEW.resource_id AND end_us > (NEW.start_us - NEW.buffer_before_us) AND start_us < (NEW.end_us + NEW.buffer_after_us)
          AND (used > coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) OR (closed > 0 AND (used > 0 OR closed > 1))));
END;

CREATE TRIGGER reservations_usage_update
AFTER UPDATE OF status, start_us, end_us, resource_id, quantity, buffer_before_us,
    buffer_after_us ON reservations
WHEN (OLD.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = OLD.resource_id), 1) > 1) OR (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1)
BEGIN
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT resource_id, (OLD.start_us - OLD.buffer_before_us), end_us, used, closed FROM usage_pieces
        WHERE (OLD.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = OLD.resource_id), 1) > 1) AND resource_id = OLD.resource_id AND start_us < (OLD.start_us - OLD.buffer_before_us) AND end_us > (OLD.start_us - OLD.buffer_before_us);
    UPDATE usage_pieces SET end_us = (OLD.start_us - OLD.buffer_before_us)
        WHERE (OLD.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = OLD.resource_id), 1) > 1) AND resource_id = OLD.resource_id AND start_us < (OLD.start_us - OLD.buffer_before_us) AND end_us > (OLD.start_us - OLD.buffer_before_us);
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT resource_id, (OLD.end_us + OLD.buffer_after_us), end_us, used, closed FROM usage_pieces
        WHERE (OLD.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = OLD.resource_id), 1) > 1) AND resource_id = OLD.resource_id AND start_us < (OLD.end_us + OLD.buffer_after_us) AND end_us > (OLD.end_us + OLD.buffer_after_us);
    UPDATE usage_pieces SET end_us = (OLD.end_us + OLD.buffer_after_us)
        WHERE (OLD.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = OLD.resource_id), 1) > 1) AND resource_id = OLD.resource_id AND start_us < (OLD.end_us + OLD.buffer_after_us) AND end_us > (OLD.end_us + OLD.buffer_after_us);
    UPDATE usage_pieces SET used = used + -(CASE WHEN OLD.quantity = 0 THEN 0 ELSE OLD.quantity END), closed = closed + -(CASE WHEN OLD.quantity = 0 THEN 1 ELSE 0 END)
        WHERE (OLD.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = OLD.resource_id), 1) > 1) AND resource_id = OLD.resource_id AND start_us >= (OLD.start_us - OLD.buffer_before_us) AND end_us <= (OLD.end_us + OLD.buffer_after_us);
    DELETE FROM usage_pieces
        WHERE (OLD.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = OLD.resource_id), 1) > 1) AND resource_id = OLD.resource_id AND start_us >= (OLD.start_us - OLD.buffer_before_us) AND end_us <= (OLD.end_us + OLD.buffer_after_us)
          AND used = 0 AND closed = 0;
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT resource_id, (NEW.start_us - NEW.buffer_before_us), end_us, used, closed FROM usage_pieces
        WHERE (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1) AND resource_id = NEW.resource_id AND start_us < (NEW.start_us - NEW.buffer_before_us) AND end_us > (NEW.start_us - NEW.buffer_before_us);
    UPDATE usage_pieces SET end_us = (NEW.start_us - NEW.buffer_before_us)
        WHERE (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1) AND resource_id = NEW.resource_id AND start_us < (NEW.start_us - NEW.buffer_before_us) AND end_us > (NEW.start_us - NEW.buffer_before_us);
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT resource_id, (NEW.end_us + NEW.buffer_after_us), end_us, used, closed FROM usage_pieces
        WHERE (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1) AND resource_id = NEW.resource_id AND start_us < (NEW.end_us + NEW.buffer_after_us) AND end_us > (NEW.end_us + NEW.buffer_after_us);
    UPDATE usage_pieces SET end_us = (NEW.end_us + NEW.buffer_after_us)
        WHERE (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1) AND resource_id = NEW.resource_id AND start_us < (NEW.end_us + NEW.buffer_after_us) AND end_us > (NEW.end_us + NEW.buffer_after_us);
    UPDATE usage_pieces SET used = used + (CASE WHEN NEW.quantity = 0 THEN 0 ELSE NEW.quantity END), closed = closed + (CASE WHEN NEW.quantity = 0 THEN 1 ELSE 0 END)
        WHERE (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1) AND resource_id = NEW.resource_id AND start_us >= (NEW.start_us - NEW.buffer_before_us) AND end_us <= (NEW.end_us + NEW.buffer_after_us);
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT NEW.resource_id, gap_start, gap_end, (CASE WHEN NEW.quantity = 0 THEN 0 ELSE NEW.quantity END), (CASE WHEN NEW.quantity = 0 THEN 1 ELSE 0 END) FROM (
            SELECT coalesce(lag(end_us) OVER (ORDER BY start_us), (NEW.start_us - NEW.buffer_before_us)) AS gap_start,
                   start_us AS gap_end
            FROM usage_pieces
            WHERE resource_id = NEW.resource_id AND start_us >= (NEW.start_us - NEW.buffer_before_us) AND end_us <= (NEW.end_us + NEW.buffer_after_us)
            UNION ALL
            SELECT coalesce((SELECT max(end_us) FROM usage_pieces
                             WHERE resource_id = NEW.resource_id AND start_us >= (NEW.start_us - NEW.buffer_before_us) AND end_us <= (NEW.end_us + NEW.buffer_after_us)),
                            (NEW.start_us - NEW.buffer_before_us)),
                   (NEW.end_us + NEW.buffer_after_us))
        WHERE (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1) AND gap_start < gap_end;
    SELECT RAISE(ABORT, 'reservations_within_capacity')
    WHERE (NEW.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) > 1) AND EXISTS (
        SELECT 1 FROM usage_pieces
        WHERE resource_id = NEW.resource_id AND end_us > (NEW.start_us - NEW.buffer_before_us) AND start_us < (NEW.end_us + NEW.buffer_after_us)
          AND (used > coalesce((SELECT capacity FROM resources WHERE id = NEW.resource_id), 1) OR (closed > 0 AND (used > 0 OR closed > 1))));
END;

CREATE TRIGGER reservations_usage_delete
AFTER DELETE ON reservations
WHEN (OLD.status IN ('pending', 'confirmed', 'blocked') AND coalesce((SELECT capacity FROM resources WHERE id = OLD.resource_id), 1) > 1)
BEGIN
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT resource_id, (OLD.start_us - OLD.buffer_before_us), end_us, used, closed FROM usage_pieces
        WHERE 1 AND resource_id = OLD.resource_id AND start_us < (OLD.start_us - OLD.buffer_before_us) AND end_us > (OLD.start_us - OLD.buffer_before_us);
    UPDATE usage_pieces SET end_us = (OLD.start_us - OLD.buffer_before_us)
        WHERE 1 AND resource_id = OLD.resource_id AND start_us < (OLD.start_us - OLD.buffer_before_us) AND end_us > (OLD.start_us - OLD.buffer_before_us);
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
        SELECT resource_id, (OLD.end_us + OLD.buffer_after_us), end_us, used, closed FROM usage_pieces
        WHERE 1 AND resource_id = OLD.resource_id AND start_us < (OLD.end_us + OLD.buffer_after_us) AND end_us > (OLD.end_us + OLD.buffer_after_us);
    UPDATE usage_pieces SET end_us = (OLD.end_us + OLD.buffer_after_us)
        WHERE 1 AND resource_id = OLD.resource_id AND start_us < (OLD.end_us + OLD.buffer_after_us) AND end_us > (OLD.end_us + OLD.buffer_after_us);
    UPDATE usage_pieces SET used = used + -(CASE WHEN OLD.quantity = 0 THEN 0 ELSE OLD.quantity END), closed = closed + -(CASE WHEN OLD.quantity = 0 THEN 1 ELSE 0 END)
        WHERE 1 AND resource_id = OLD.resource_id AND start_us >= (OLD.start_us - OLD.buffer_before_us) AND end_us <= (OLD.end_us + OLD.buffer_after_us);
    DELETE FROM usage_pieces
        WHERE 1 AND resource_id = OLD.resource_id AND start_us >= (OLD.start_us - OLD.buffer_before_us) AND end_us <= (OLD.end_us + OLD.buffer_after_us)
          AND used = 0 AND closed = 0;
END;

CREATE TRIGGER reservations_record_insert
AFTER INSERT ON reservations
BEGIN
    INSERT INTO reservation_changes
        (op, changed_us, reservation_id, user_id, resource_id, status, start_us,
         end_us, note, created_us, updated_us, expires_us, quantity, booking_id,
         checked_in_us, checked_out_us)
    VALUES
        ('create', NEW.updated_us, NEW.id, NEW.user_id, NEW.resource_id, NEW.status,
         NEW.start_us, NEW.end_us, NEW.note, NEW.created_us, NEW.updated_us, NEW.expires_us,
         NEW.quantity, NEW.booking_id, NEW.checked_in_us, NEW.checked_out_us);
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
  OR OLD.quantity IS NOT NEW.quantity
  OR OLD.checked_in_us IS NOT NEW.checked_in_us
  OR OLD.checked_out_us IS NOT NEW.checked_out_us
BEGIN
    INSERT INTO reservation_changes
        (op, changed_us, reservation_id, user_id, resource_id, status, start_us,
         end_us, note, created_us, updated_us, expires_us, quantity, booking_id,
         checked_in_us, checked_out_us)
    VALUES
        ('update', NEW.updated_us, NEW.id, NEW.user_id, NEW.resource_id, NEW.status,
         NEW.start_us, NEW.end_us, NEW.note, NEW.created_us, NEW.updated_us, NEW.expires_us,
         NEW.quantity, NEW.booking_id, NEW.checked_in_us, NEW.checked_out_us);
END;

CREATE TRIGGER reservations_record_delete
AFTER DELETE ON reservations
BEGIN
    INSERT INTO reservation_changes
        (op, changed_us, reservation_id, user_id, resource_id, status, start_us,
         end_us, note, created_us, updated_us, expires_us, quantity, booking_id,
         checked_in_us, checked_out_us)
    VALUES
        ('delete', CAST(unixepoch('subsec') * 1000000 AS INTEGER), OLD.id, OLD.user_id,
         OLD.resource_id, OLD.status, OLD.start_us, OLD.end_us, OLD.note, OLD.created_us,
         OLD.updated_us, OLD.expires_us, OLD.quantity, OLD.booking_id, OLD.checked_in_us,
         OLD.checked_out_us);
END;

CREATE TRIGGER resources_usage_insert
AFTER INSERT ON resources
BEGIN
    DELETE FROM usage_pieces WHERE resource_id = NEW.id;
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
    SELECT NEW.id, t, next_t, used, closed FROM (
        SELECT t, lead(t) OVER (ORDER BY t) AS next_t,
               sum(dq) OVER (ORDER BY t) AS used, sum(dc) OVER (ORDER BY t) AS closed
        FROM (
            SELECT t, sum(dq) AS dq, sum(dc) AS dc FROM (
                SELECT occ_start_us AS t,
                       CASE WHEN quantity = 0 THEN 0 ELSE quantity END AS dq,
                       CASE WHEN quantity = 0 THEN 1 ELSE 0 END AS dc
                FROM reservations WHERE resource_id = NEW.id AND status IN ('pending', 'confirmed', 'blocked')
                UNION ALL
                SELECT occ_end_us,
                       -(CASE WHEN quantity = 0 THEN 0 ELSE quantity END),
                       -(CASE WHEN quantity = 0 THEN 1 ELSE 0 END)
                FROM reservations WHERE resource_id = NEW.id AND status IN ('pending', 'confirmed', 'blocked'))
            GROUP BY t))
    WHERE NEW.capacity > 1 AND next_t IS NOT NULL AND (used > 0 OR closed > 0);
END;

CREATE TRIGGER resources_usage_capacity
AFTER UPDATE OF capacity ON resources
BEGIN
    DELETE FROM usage_pieces WHERE resource_id = NEW.id;
    INSERT INTO usage_pieces (resource_id, start_us, end_us, used, closed)
    SELECT NEW.id, t, next_t, used, closed FROM (
        SELECT t, lead(t) OVER (ORDER BY t) AS next_t,
               sum(dq) OVER (ORDER BY t) AS used, sum(dc) OVER (ORDER BY t) AS closed
        FROM (
            SELECT t, sum(dq) AS dq, sum(dc) AS dc FROM (
                SELECT occ_start_us AS t,
                       CASE WHEN quantity = 0 THEN 0 ELSE quantity END AS dq,
                       CASE WHEN quantity = 0 THEN 1 ELSE 0 END AS dc
                FROM reservations WHERE resource_id = NEW.id AND status IN ('pending', 'confirmed', 'blocked')
                UNION ALL
                SELECT occ_end_us,
                       -(CASE WHEN quantity = 0 THEN 0 ELSE quantity END),
                       -(CASE WHEN quantity = 0 THEN 1 ELSE 0 END)
                FROM reservations WHERE resource_id = NEW.id AND status IN ('pending', 'confirmed', 'blocked'))
            GROUP BY t))
    WHERE NEW.capacity > 1 AND next_t IS NOT NULL AND (used > 0 OR closed > 0);
END;

CREATE TRIGGER resources_capacity_in_use
BEFORE UPDATE OF capacity ON resources
BEGIN
    SELECT RAISE(ABORT, 'resources_capacity_in_use')
    WHERE (SELECT coalesce(max(used), 0) FROM (
              SELECT sum(d) OVER (ORDER BY t) AS used FROM (
                  SELECT t, sum(d) AS d FROM (
                      SELECT r.occ_start_us AS t,
                             CASE WHEN r.quantity = 0 THEN NEW.capacity ELSE r.quantity END AS d
                      FROM reservations r
                      WHERE r.resource_id = NEW.id
                        AND r.status IN ('pending', 'confirmed', 'blocked')
                      UNION ALL
                      SELECT r.occ_end_us,
                             -(CASE WHEN r.quantity = 0 THEN NEW.capacity ELSE r.quantity END)
                      FROM reservations r
                      WHERE r.resource_id = NEW.id
                        AND r.status IN ('pending', 'confirmed', 'blocked'))
                  GROUP BY t))) > NEW.capacity;
END;

CREATE INDEX reservations_booking ON reservations (booking_id) WHERE booking_id IS NOT NULL;

-- The sweeper's way to no-shows to settle.
CREATE INDEX reservations_release ON reservations (expires_us)
    WHERE status = 'confirmed' AND expires_us IS NOT NULL;
