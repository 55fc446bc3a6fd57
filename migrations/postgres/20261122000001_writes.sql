-- Writes whose rules are decided in the library (reservation/src/engine):
-- the database takes the locks, reads the time after them, refuses what
-- would overlap, and writes. Two functions, one round trip each:
--
-- - rsvp.place: new reservations, several per call, in one transaction;
-- - rsvp.revise: one reservation's update (a reschedule included), applied
--   only if the row is still as the library read it.
--
-- A refused write changes nothing; a write that goes ahead first marks the
-- overdue holds in its way expired (each a change event).

-- Changes with every write; rsvp.revise applies an update only to the
-- version it was planned from.
ALTER TABLE rsvp.reservations ADD COLUMN version bigint NOT NULL DEFAULT 0;

DROP FUNCTION rsvp.reserve(uuid, text, text, tstzrange, rsvp.reservation_status, text,
                           timestamptz, text, bigint, timestamptz);

-- The transaction lock of a resource: every writer of a resource takes it
-- before reading what is in the way, so conflicting writers queue instead
-- of deadlocking inside the exclusion check.
CREATE FUNCTION rsvp.lock_key(p_resource text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended(p_resource, 0)
$$;

-- The live reservations of a resource that overlap `p_span` at `p_now` (an
-- overdue hold holds nothing), other than `p_except`, by start then id: at
-- most `p_limit`, each row with how many there are in all.
CREATE FUNCTION rsvp.blockers(
    p_resource text, p_span tstzrange, p_except uuid, p_now timestamptz, p_limit int)
RETURNS TABLE (
    total       bigint,
    id          uuid,
    user_id     text,
    resource_id text,
    status      rsvp.reservation_status,
    start_at    timestamptz,
    end_at      timestamptz,
    note        text,
    created_at  timestamptz,
    updated_at  timestamptz,
    expires_at  timestamptz,
    version     bigint)
LANGUAGE sql STABLE AS $$
    SELECT count(*) OVER (), r.id, r.user_id, r.resource_id, r.status, lower(r.timespan),
           upper(r.timespan), r.note, r.created_at, r.updated_at, r.expires_at, r.version
    FROM rsvp.reservations r
    WHERE r.resource_id = p_resource
      AND r.timespan && p_span
      AND r.status IN ('pending', 'confirmed', 'blocked')
      AND (r.expires_at IS NULL OR r.expires_at > p_now)
      AND r.id IS DISTINCT FROM p_except
    ORDER BY lower(r.timespan), r.id
    LIMIT p_limit
$$;

-- Marks the overdue holds of a resource that overlap `p_span` expired, so
-- that the exclusion constraint lets a write take their place.
CREATE FUNCTION rsvp.settle(
    p_resource text, p_span tstzrange, p_except uuid, p_now timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rsvp.reservations r
    SET status = 'expired', updated_at = p_now, version = r.version + 1
    WHERE r.resource_id = p_resource
      AND r.timespan && p_span
      AND r.status = 'pending'
      AND r.expires_at <= p_now
      AND r.id IS DISTINCT FROM p_except;
END
$$;

-- Places new reservations, item by item, in one transaction. First it
-- takes the lock of every resource involved, in one global order (sorted
-- keys), so that writers of several resources cannot deadlock; then it
-- reads the time (`p_now` when the caller fixes it). For each item, in
-- order: a retried (user, request id) returns what the first call made
-- ('existing'); live reservations in the way refuse it ('conflict', the
-- first `p_limit` of them); otherwise it is inserted ('created'), a pending
-- hold expiring `p_holds[i]` after the time (never when null).
CREATE FUNCTION rsvp.place(
    p_ids          uuid[],
    p_users        text[],
    p_resources    text[],
    p_spans        tstzrange[],
    p_statuses     text[],
    p_notes        text[],
    p_holds        interval[],
    p_request_ids  text[],
    p_fingerprints bigint[],
    p_now          timestamptz,
    p_limit        int)
RETURNS TABLE (
    item                int,
    outcome             text,
    at                  timestamptz,
    total               bigint,
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
    version             bigint,
    request_fingerprint bigint,
    waited              double precision)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_started timestamptz := clock_timestamp();
    v_waited  double precision;
    v_key     bigint;
    v_now     timestamptz;
BEGIN
    FOR v_key IN
        SELECT DISTINCT rsvp.lock_key(r) FROM unnest(p_resources) AS r ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
    v_now := coalesce(p_now, clock_timestamp());
    v_waited := extract(epoch FROM clock_timestamp() - v_started);

    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        IF p_request_ids[i] IS NOT NULL THEN
            RETURN QUERY
                SELECT i, 'existing'::text, v_now, 0::bigint, r.id, r.user_id,
                       r.resource_id, r.status, lower(r.timespan), upper(r.timespan),
                       r.note, r.created_at, r.updated_at, r.expires_at, r.version,
                       r.request_fingerprint, v_waited
                FROM rsvp.reservations r
                WHERE r.user_id = p_users[i] AND r.request_id = p_request_ids[i];
            IF FOUND THEN
                CONTINUE;
            END IF;
        END IF;

        RETURN QUERY
            SELECT i, 'conflict'::text, v_now, b.total, b.id, b.user_id, b.resource_id,
                   b.status, b.start_at, b.end_at, b.note, b.created_at, b.updated_at,
                   b.expires_at, b.version, NULL::bigint, v_waited
            FROM rsvp.blockers(p_resources[i], p_spans[i], NULL, v_now, p_limit) b;
        IF FOUND THEN
            CONTINUE;
        END IF;

        PERFORM rsvp.settle(p_resources[i], p_spans[i], NULL, v_now);
        RETURN QUERY
            INSERT INTO rsvp.reservations AS r
                (id, user_id, resource_id, status, timespan, note, created_at,
                 updated_at, expires_at, request_id, request_fingerprint)
            VALUES
                (p_ids[i], p_users[i], p_resources[i],
                 p_statuses[i]::rsvp.reservation_status, p_spans[i], p_notes[i], v_now,
                 v_now,
                 CASE WHEN p_statuses[i] = 'pending' THEN v_now + p_holds[i] END,
                 p_request_ids[i], p_fingerprints[i])
            RETURNING i, 'created'::text, v_now, 0::bigint, r.id, r.user_id,
                      r.resource_id, r.status, lower(r.timespan), upper(r.timespan),
                      r.note, r.created_at, r.updated_at, r.expires_at, r.version,
                      r.request_fingerprint, v_waited;
    END LOOP;
END
$$;

-- Applies one reservation's planned update: its status, note, interval and
-- expiry as given. Only if the row is still at `p_version` and its hold
-- has lapsed exactly when the plan saw it so (`p_seen_lapsed`); otherwise
-- it returns the row as it is ('stale') for the library to plan again.
-- A reschedule (`p_reschedule`) takes the resource's lock first and is
-- refused ('conflict') when live reservations are in the way. No row: the
-- reservation does not exist.
CREATE FUNCTION rsvp.revise(
    p_id           uuid,
    p_version      bigint,
    p_seen_lapsed  boolean,
    p_reschedule   boolean,
    p_status       text,
    p_note         text,
    p_span         tstzrange,
    p_expires_at   timestamptz,
    p_now          timestamptz,
    p_limit        int)
RETURNS TABLE (
    item                int,
    outcome             text,
    at                  timestamptz,
    total               bigint,
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
    version             bigint,
    request_fingerprint bigint,
    waited              double precision)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_started timestamptz := clock_timestamp();
    v_waited  double precision;
    v_row     rsvp.reservations;
    v_now     timestamptz;
BEGIN
    IF p_reschedule THEN
        PERFORM pg_advisory_xact_lock(rsvp.lock_key(r.resource_id))
        FROM rsvp.reservations r WHERE r.id = p_id;
    END IF;
    v_now := coalesce(p_now, clock_timestamp());
    v_waited := extract(epoch FROM clock_timestamp() - v_started);

    SELECT * INTO v_row FROM rsvp.reservations r WHERE r.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_row.version <> p_version
       OR (v_row.status = 'pending' AND coalesce(v_row.expires_at <= v_now, false))
          <> p_seen_lapsed THEN
        RETURN QUERY
            SELECT 1, 'stale'::text, v_now, 0::bigint, v_row.id, v_row.user_id,
                   v_row.resource_id, v_row.status, lower(v_row.timespan),
                   upper(v_row.timespan), v_row.note, v_row.created_at, v_row.updated_at,
                   v_row.expires_at, v_row.version, NULL::bigint, v_waited;
        RETURN;
    END IF;

    IF p_reschedule THEN
        RETURN QUERY
            SELECT 1, 'conflict'::text, v_now, b.total, b.id, b.user_id, b.resource_id,
                   b.status, b.start_at, b.end_at, b.note, b.created_at, b.updated_at,
                   b.expires_at, b.version, NULL::bigint, v_waited
            FROM rsvp.blockers(v_row.resource_id, p_span, p_id, v_now, p_limit) b;
        IF FOUND THEN
            RETURN;
        END IF;
        PERFORM rsvp.settle(v_row.resource_id, p_span, p_id, v_now);
    END IF;

    RETURN QUERY
        UPDATE rsvp.reservations r
        SET status = p_status::rsvp.reservation_status, note = p_note, timespan = p_span,
            expires_at = p_expires_at, updated_at = v_now, version = r.version + 1
        WHERE r.id = p_id
        RETURNING 1, 'revised'::text, v_now, 0::bigint, r.id, r.user_id, r.resource_id,
                  r.status, lower(r.timespan), upper(r.timespan), r.note, r.created_at,
                  r.updated_at, r.expires_at, r.version, NULL::bigint, v_waited;
END
$$;
