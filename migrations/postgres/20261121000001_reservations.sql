-- rsvp on PostgreSQL: reservations that can never overlap while live, and a
-- change feed filled by triggers.
--
-- Released migrations are never edited; later changes are new files.

CREATE SCHEMA IF NOT EXISTS rsvp;
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TYPE rsvp.reservation_status AS ENUM
    ('pending', 'confirmed', 'blocked', 'cancelled', 'expired');

CREATE TYPE rsvp.change_op AS ENUM ('create', 'update', 'delete');

CREATE TABLE rsvp.reservations (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL,
    resource_id text NOT NULL,
    status      rsvp.reservation_status NOT NULL,
    timespan    tstzrange NOT NULL,
    note        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- When a pending hold expires; kept once it has expired, cleared otherwise.
    expires_at  timestamptz,
    -- Idempotency key of the reserve that made the row, and a digest of that
    -- request, which tells a retry from a different request reusing the key.
    request_id  text,
    request_fingerprint bigint,

    CONSTRAINT reservations_user_id_length
        CHECK (char_length(user_id) BETWEEN 1 AND 64),
    CONSTRAINT reservations_resource_id_length
        CHECK (char_length(resource_id) BETWEEN 1 AND 64),
    CONSTRAINT reservations_request_id_length
        CHECK (request_id IS NULL OR char_length(request_id) BETWEEN 1 AND 64),
    CONSTRAINT reservations_note_length
        CHECK (octet_length(note) <= 4096),
    -- Bounded, half-open [start, end), not empty.
    CONSTRAINT reservations_timespan_bounded CHECK (
        NOT isempty(timespan)
        AND NOT lower_inf(timespan) AND NOT upper_inf(timespan)
        AND isfinite(lower(timespan)) AND isfinite(upper(timespan))
        AND lower_inc(timespan) AND NOT upper_inc(timespan)
    ),
    -- The last line of defence: no two live reservations of one resource
    -- overlap, whatever wrote them.
    CONSTRAINT reservations_no_overlap EXCLUDE USING gist
        (resource_id WITH =, timespan WITH &&)
        WHERE (status IN ('pending', 'confirmed', 'blocked'))
);

-- Reserve retries: one reservation per (user, request id).
CREATE UNIQUE INDEX reservations_user_request
    ON rsvp.reservations (user_id, request_id)
    WHERE request_id IS NOT NULL;

-- Query and Filter by resource or by user over a window, any status.
CREATE INDEX reservations_resource_timespan
    ON rsvp.reservations USING gist (resource_id, timespan);
CREATE INDEX reservations_user_timespan
    ON rsvp.reservations USING gist (user_id, timespan);

-- Keyset order (start, id) for selections without a user or resource.
CREATE INDEX reservations_start_id
    ON rsvp.reservations (lower(timespan), id);

-- The sweeper's scan for overdue holds.
CREATE INDEX reservations_pending_expiry
    ON rsvp.reservations (expires_at)
    WHERE status = 'pending';

-- The change feed. Each row is the reservation as it stood right after the
-- change. Rows older than the retention period (7 days unless configured)
-- are deleted by the sweeper; listeners can resume from any retained id.
CREATE TABLE rsvp.reservation_changes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op             rsvp.change_op NOT NULL,
    changed_at     timestamptz NOT NULL,
    reservation_id uuid NOT NULL,
    user_id        text NOT NULL,
    resource_id    text NOT NULL,
    status         rsvp.reservation_status NOT NULL,
    timespan       tstzrange NOT NULL,
    note           text NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    expires_at     timestamptz
);

CREATE INDEX reservation_changes_changed_at
    ON rsvp.reservation_changes (changed_at);

CREATE FUNCTION rsvp.record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r         rsvp.reservations;
    change_op rsvp.change_op;
    stamp     timestamptz;
    change_id bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD; change_op := 'delete'; stamp := now();
    ELSIF TG_OP = 'INSERT' THEN
        r := NEW; change_op := 'create'; stamp := NEW.updated_at;
    ELSE
        r := NEW; change_op := 'update'; stamp := NEW.updated_at;
    END IF;

    INSERT INTO rsvp.reservation_changes
        (op, changed_at, reservation_id, user_id, resource_id, status,
         timespan, note, created_at, updated_at, expires_at)
    VALUES
        (change_op, stamp, r.id, r.user_id, r.resource_id, r.status,
         r.timespan, r.note, r.created_at, r.updated_at, r.expires_at)
    RETURNING id INTO change_id;

    -- Delivered at commit to every server listening on this database.
    PERFORM pg_notify('rsvp_changes', change_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER reservations_record_insert_delete
    AFTER INSERT OR DELETE ON rsvp.reservations
    FOR EACH ROW EXECUTE FUNCTION rsvp.record_change();

CREATE TRIGGER reservations_record_update
    AFTER UPDATE ON rsvp.reservations
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.note IS DISTINCT FROM NEW.note
          OR OLD.timespan IS DISTINCT FROM NEW.timespan
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.resource_id IS DISTINCT FROM NEW.resource_id)
    EXECUTE FUNCTION rsvp.record_change();

-- Reserve in one round trip. Takes the resource's transaction lock (so that
-- conflicting inserts queue instead of deadlocking inside the exclusion
-- check), answers a retried request_id with the reservation it made, expires
-- overdue holds in the window, and then either returns the live reservations
-- that block the window (outcome 'conflict') or inserts (outcome 'created').
CREATE FUNCTION rsvp.reserve(
    p_id                  uuid,
    p_user_id             text,
    p_resource_id         text,
    p_timespan            tstzrange,
    p_status              rsvp.reservation_status,
    p_note                text,
    p_expires_at          timestamptz,
    p_request_id          text,
    p_request_fingerprint bigint,
    p_now                 timestamptz)
RETURNS TABLE (
    outcome             text,
    id                  uuid,
    user_id             text,
    resource_id         text,
    status              rsvp.reservation_status,
    start_at            timestamptz,
    end_at              timestamptz,
    note                text,
    created_at          timestamptz,
    updated_at          timestamptz,
    expires_at          timestamptz,
    request_fingerprint bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_resource_id, 0));

    IF p_request_id IS NOT NULL THEN
        RETURN QUERY
            SELECT 'existing', r.id, r.user_id, r.resource_id, r.status,
                   lower(r.timespan), upper(r.timespan), r.note, r.created_at,
                   r.updated_at, r.expires_at, r.request_fingerprint
            FROM rsvp.reservations r
            WHERE r.user_id = p_user_id AND r.request_id = p_request_id;
        IF FOUND THEN
            RETURN;
        END IF;
    END IF;

    UPDATE rsvp.reservations r
    SET status = 'expired', updated_at = p_now
    WHERE r.resource_id = p_resource_id
      AND r.timespan && p_timespan
      AND r.status = 'pending'
      AND r.expires_at <= p_now;

    RETURN QUERY
        SELECT 'conflict', r.id, r.user_id, r.resource_id, r.status,
               lower(r.timespan), upper(r.timespan), r.note, r.created_at,
               r.updated_at, r.expires_at, r.request_fingerprint
        FROM rsvp.reservations r
        WHERE r.resource_id = p_resource_id
          AND r.timespan && p_timespan
          AND r.status IN ('pending', 'confirmed', 'blocked')
        ORDER BY lower(r.timespan), r.id;
    IF FOUND THEN
        RETURN;
    END IF;

    RETURN QUERY
        INSERT INTO rsvp.reservations AS r
            (id, user_id, resource_id, status, timespan, note, created_at,
             updated_at, expires_at, request_id, request_fingerprint)
        VALUES
            (p_id, p_user_id, p_resource_id, p_status, p_timespan, p_note,
             p_now, p_now, p_expires_at, p_request_id, p_request_fingerprint)
        RETURNING 'created', r.id, r.user_id, r.resource_id, r.status,
                  lower(r.timespan), upper(r.timespan), r.note, r.created_at,
                  r.updated_at, r.expires_at, r.request_fingerprint;
END
$$;
