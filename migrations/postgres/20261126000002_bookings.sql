-- Bookings (several reservations made, confirmed and cancelled together)
-- and arrival (check-in, check-out, no-shows).
--
-- - rsvp.bookings: one row per booking; its parts are reservations that
--   name it. A booking's idempotency key is its own (user, request id).
-- - A confirmed reservation of a resource with auto_release_after carries
--   its release time in expires_at: once that passes without a check-in it
--   holds nothing, exactly like an overdue hold (every live read already
--   says `expires_at IS NULL OR expires_at > now`), and is settled as
--   NO_SHOW where a pending one is settled as EXPIRED. CheckIn clears it.
-- - A checked-in reservation stays 'confirmed' with checked_in_at set, so
--   the exclusion constraint, the capacity trigger and every live read
--   hold it with no change.
-- - rsvp.place takes the booking its items belong to and each confirmed
--   item's release time; rsvp.revise sets the check-in and check-out
--   times; both return the new columns.
-- - rsvp.book makes a booking in one statement: every part placed in one
--   subtransaction under every resource's lock (sorted, as rsvp.place
--   takes them), rolled back whole if any part is refused.

CREATE TABLE rsvp.bookings (
    id                  uuid PRIMARY KEY,
    user_id             text NOT NULL,
    created_at          timestamptz NOT NULL,
    request_id          text,
    request_fingerprint bigint,
    CONSTRAINT bookings_request UNIQUE (user_id, request_id)
);

ALTER TABLE rsvp.reservations
    ADD COLUMN booking_id     uuid,
    ADD COLUMN booking_part   smallint,
    ADD COLUMN checked_in_at  timestamptz,
    ADD COLUMN checked_out_at timestamptz;
CREATE INDEX reservations_booking ON rsvp.reservations (booking_id)
    WHERE booking_id IS NOT NULL;
-- The sweeper's way to no-shows to settle.
CREATE INDEX reservations_release ON rsvp.reservations (expires_at)
    WHERE status = 'confirmed' AND expires_at IS NOT NULL;

ALTER TABLE rsvp.reservation_changes
    ADD COLUMN booking_id     uuid,
    ADD COLUMN checked_in_at  timestamptz,
    ADD COLUMN checked_out_at timestamptz;

CREATE OR REPLACE FUNCTION rsvp.record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r          rsvp.reservations;
    change_op  rsvp.change_op;
    stamp      timestamptz;
    v_capacity int;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD; change_op := 'delete'; stamp := now();
    ELSIF TG_OP = 'INSERT' THEN
        r := NEW; change_op := 'create'; stamp := NEW.updated_at;
        IF NOT NEW.shared THEN
            SELECT capacity INTO v_capacity FROM rsvp.resources WHERE id = NEW.resource_id;
            IF v_capacity > 1 THEN
                RAISE EXCEPTION 'reservation % of resource % (capacity %) must have shared = true',
                    NEW.id, NEW.resource_id, v_capacity
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_within_capacity';
            END IF;
        END IF;
    ELSE
        r := NEW; change_op := 'update'; stamp := NEW.updated_at;
    END IF;

    INSERT INTO rsvp.reservation_changes
        (op, changed_at, reservation_id, user_id, resource_id, status,
         timespan, note, created_at, updated_at, expires_at, quantity,
         booking_id, checked_in_at, checked_out_at)
    VALUES
        (change_op, stamp, r.id, r.user_id, r.resource_id, r.status,
         r.timespan, r.note, r.created_at, r.updated_at, r.expires_at, r.quantity,
         r.booking_id, r.checked_in_at, r.checked_out_at);
    RETURN NULL;
END
$$;

-- A check-in or a check-out is a change too.
DROP TRIGGER reservations_record_update ON rsvp.reservations;
CREATE TRIGGER reservations_record_update
    AFTER UPDATE ON rsvp.reservations
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.note IS DISTINCT FROM NEW.note
          OR OLD.timespan IS DISTINCT FROM NEW.timespan
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.resource_id IS DISTINCT FROM NEW.resource_id
          OR OLD.quantity IS DISTINCT FROM NEW.quantity
          OR OLD.checked_in_at IS DISTINCT FROM NEW.checked_in_at
          OR OLD.checked_out_at IS DISTINCT FROM NEW.checked_out_at)
    EXECUTE FUNCTION rsvp.record_change();

-- Takes the locks of the resources of reservations `p_ids`, in the one
-- order every writer takes them, before their rows are changed together:
-- a change of several rows of resources of several units would otherwise
-- take each resource's lock (in the capacity trigger) in row order.
CREATE FUNCTION rsvp.lock_resources_of(p_ids uuid[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_key bigint;
BEGIN
    FOR v_key IN
        SELECT DISTINCT rsvp.lock_key(r.resource_id) FROM rsvp.reservations r
        WHERE r.id = ANY(p_ids) ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
END
$$;

-- Settles what stopped holding its resource: overdue holds (expired) and
-- confirmed reservations past their release time with nobody checked in
-- (no-shows).
CREATE OR REPLACE FUNCTION rsvp.settle(
    p_resource text, p_span tstzrange, p_except uuid, p_now timestamptz, p_shared boolean)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_shared THEN
        UPDATE rsvp.reservations r
        SET status = CASE WHEN r.status = 'pending' THEN 'expired' ELSE 'no_show' END::rsvp.reservation_status, updated_at = p_now, version = r.version + 1
        WHERE r.resource_id = p_resource
          AND r.occupied && p_span
          AND r.status IN ('pending', 'confirmed', 'blocked') AND r.shared
          AND r.expires_at <= p_now
          AND r.id IS DISTINCT FROM p_except;
    ELSE
        UPDATE rsvp.reservations r
        SET status = CASE WHEN r.status = 'pending' THEN 'expired' ELSE 'no_show' END::rsvp.reservation_status, updated_at = p_now, version = r.version + 1
        WHERE r.resource_id = p_resource
          AND r.occupied && p_span
          AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
          AND r.expires_at <= p_now
          AND r.id IS DISTINCT FROM p_except;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION rsvp.refusal(
    p_resource text, p_span tstzrange, p_except uuid, p_now timestamptz, p_limit int,
    p_capacity int, p_shared boolean, p_quantity int)
RETURNS SETOF rsvp.refusal_row
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_units     int := CASE WHEN p_quantity = 0 THEN p_capacity ELSE p_quantity END;
    v_full      record;
    v_have_full boolean := false;
BEGIN
    IF NOT p_shared AND v_units <= 1 THEN
        -- One unit: anything live in the way refuses, and is full where
        -- it lies.
        SELECT array_agg(lower(f) ORDER BY f) AS starts, array_agg(upper(f) ORDER BY f) AS ends
        INTO v_full
        FROM (
            SELECT f FROM unnest((
                SELECT range_agg(r.occupied * p_span) FROM rsvp.reservations r
                WHERE r.resource_id = p_resource
                  AND r.occupied && p_span
                  AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
                  AND (r.expires_at IS NULL OR r.expires_at > p_now)
                  AND r.id IS DISTINCT FROM p_except)) AS f
            ORDER BY f LIMIT 20
        ) x;
        IF v_full.starts IS NULL THEN
            RETURN;
        END IF;
        v_have_full := true;
    ELSIF p_except IS NULL AND NOT (CASE
            WHEN p_shared THEN EXISTS (
                SELECT 1 FROM rsvp.reservations r
                WHERE r.resource_id = p_resource AND r.occupied && p_span
                  AND r.status IN ('pending', 'confirmed', 'blocked') AND r.shared
                  AND r.expires_at <= p_now)
            ELSE EXISTS (
                SELECT 1 FROM rsvp.reservations r
                WHERE r.resource_id = p_resource AND r.occupied && p_span
                  AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
                  AND r.expires_at <= p_now)
            END) THEN
        -- Nothing overdue in the way: the usage pieces are exact.
        IF v_units <= p_capacity AND coalesce((
                SELECT max(u.used) FROM rsvp.usage_pieces u
                WHERE u.resource_id = p_resource AND u.span && p_span), 0)
                + v_units <= p_capacity THEN
            RETURN;
        END IF;
        SELECT array_agg(lower(f) ORDER BY f) AS starts, array_agg(upper(f) ORDER BY f) AS ends
        INTO v_full
        FROM (
            SELECT f FROM unnest(CASE WHEN v_units > p_capacity
                THEN tstzmultirange(p_span)
                ELSE (SELECT range_agg(u.span * p_span) FROM rsvp.usage_pieces u
                      WHERE u.resource_id = p_resource AND u.span && p_span
                        AND u.used + v_units > p_capacity)
                END) AS f
            ORDER BY f LIMIT 20
        ) x;
        v_have_full := true;
    ELSIF v_units <= p_capacity AND coalesce((
            SELECT max(u.used) FROM rsvp.usage(p_resource, p_span, p_except, p_now, p_capacity) u),
            0) + v_units <= p_capacity THEN
        RETURN;
    END IF;
    IF NOT v_have_full THEN
        SELECT * INTO v_full
        FROM rsvp.full_within(p_resource, p_span, p_except, p_now, p_capacity, v_units);
    END IF;
    RETURN QUERY SELECT 0::bigint, NULL::uuid, NULL::text, NULL::text,
                        NULL::rsvp.reservation_status, NULL::timestamptz, NULL::timestamptz,
                        NULL::text, NULL::timestamptz, NULL::timestamptz, NULL::timestamptz,
                        NULL::bigint, NULL::integer, v_full.starts, v_full.ends;
    RETURN QUERY SELECT b.*, NULL::timestamptz[], NULL::timestamptz[]
                 FROM rsvp.blockers(p_resource, p_span, p_except, p_now, p_limit, p_shared) b;
END
$$;

DROP FUNCTION rsvp.place(uuid[], text[], text[], tstzrange[], text[], text[], interval[],
    text[], bigint[], int[], bigint[], bigint[], bigint[], boolean[], timestamptz, int);
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
    p_quantities   int[],
    p_befores      bigint[],
    p_afters       bigint[],
    p_versions     bigint[],
    p_dry          boolean[],
    p_now          timestamptz,
    p_limit        int,
    p_booking      uuid,
    p_releases     timestamptz[])
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
    waited              double precision,
    quantity            integer,
    capacity            integer,
    full_starts         timestamptz[],
    full_ends           timestamptz[],
    booking_id          uuid,
    checked_in_at       timestamptz,
    checked_out_at      timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_started  timestamptz := clock_timestamp();
    v_waited   double precision;
    v_key      bigint;
    v_now      timestamptz;
    v_capacity   int;
    v_version    bigint;
    v_occupied   tstzrange;
    v_ask        text;
    v_live       bigint;
    v_overdue    boolean;
    v_refused_ask text;
    v_refused    rsvp.refusal_row[];
BEGIN
    FOR v_key IN
        SELECT DISTINCT rsvp.lock_key(r) FROM unnest(p_resources) AS r ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
    v_now := coalesce(p_now, clock_timestamp());
    v_waited := extract(epoch FROM clock_timestamp() - v_started);

    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        IF p_request_ids[i] IS NOT NULL AND NOT p_dry[i] THEN
            RETURN QUERY
                SELECT i, 'existing'::text, v_now, 0::bigint, r.id, r.user_id,
                       r.resource_id, r.status, lower(r.timespan), upper(r.timespan),
                       r.note, r.created_at, r.updated_at, r.expires_at, r.version,
                       r.request_fingerprint, v_waited, r.quantity, NULL::int,
                       NULL::timestamptz[], NULL::timestamptz[], r.booking_id,
                       r.checked_in_at, r.checked_out_at
                FROM rsvp.reservations r
                WHERE r.user_id = p_users[i] AND r.request_id = p_request_ids[i];
            IF FOUND THEN
                CONTINUE;
            END IF;
        END IF;

        v_occupied := rsvp.occupied(p_spans[i], p_befores[i], p_afters[i]);
        -- The resource as it is, and (for one unit) how many live
        -- reservations are in the way and whether an overdue hold is, in
        -- one look.
        SELECT coalesce(res.capacity, 1), coalesce(res.version, 0),
               w.live, coalesce(w.overdue, false)
        INTO v_capacity, v_version, v_live, v_overdue
        FROM (SELECT 1) one
        LEFT JOIN rsvp.resources res ON res.id = p_resources[i]
        CROSS JOIN (
            SELECT count(*) FILTER (WHERE r.expires_at IS NULL OR r.expires_at > v_now) AS live,
                   bool_or(r.expires_at <= v_now) AS overdue
            FROM rsvp.reservations r
            WHERE r.resource_id = p_resources[i]
              AND r.occupied && v_occupied
              AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared) w;
        IF v_version <> p_versions[i] THEN
            RETURN QUERY SELECT i, 'stale'::text, v_now, 0::bigint, NULL::uuid, NULL::text,
                NULL::text, NULL::rsvp.reservation_status, NULL::timestamptz,
                NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz,
                NULL::timestamptz, NULL::bigint, NULL::bigint, v_waited, NULL::int,
                v_capacity, NULL::timestamptz[], NULL::timestamptz[], NULL::uuid,
                NULL::timestamptz, NULL::timestamptz;
            CONTINUE;
        END IF;

        -- One unit: nothing live in the way (the common case), or a
        -- refusal: the first of what is in the way, each with the part of
        -- the span it fills (those parts never overlap one another; the
        -- library merges them into the full stretches). With more in the
        -- way than listed, a header row first gives every full stretch.
        IF v_capacity = 1 AND p_quantities[i] <= 1 THEN
            IF v_live > 0 THEN
                IF v_live > p_limit THEN
                    RETURN QUERY
                        SELECT i, 'conflict'::text, v_now, 0::bigint, NULL::uuid, NULL::text,
                               NULL::text, NULL::rsvp.reservation_status, NULL::timestamptz,
                               NULL::timestamptz, NULL::text, NULL::timestamptz,
                               NULL::timestamptz, NULL::timestamptz, NULL::bigint,
                               NULL::bigint, v_waited, NULL::int, v_capacity, f.s, f.e,
                               NULL::uuid, NULL::timestamptz, NULL::timestamptz
                        FROM (SELECT array_agg(lower(x) ORDER BY x) AS s,
                                     array_agg(upper(x) ORDER BY x) AS e
                              FROM (SELECT x FROM unnest((
                                        SELECT range_agg(r.occupied * v_occupied)
                                        FROM rsvp.reservations r
                                        WHERE r.resource_id = p_resources[i]
                                          AND r.occupied && v_occupied
                                          AND r.status IN ('pending', 'confirmed', 'blocked')
                                          AND NOT r.shared
                                          AND (r.expires_at IS NULL OR r.expires_at > v_now)))
                                        AS x
                                    ORDER BY x LIMIT 20) y) f;
                END IF;
                RETURN QUERY
                    SELECT i, 'conflict'::text, v_now, v_live, r.id, r.user_id, r.resource_id,
                           r.status, lower(r.timespan), upper(r.timespan), r.note,
                           r.created_at, r.updated_at, r.expires_at, r.version, NULL::bigint,
                           v_waited, r.quantity, v_capacity,
                           ARRAY[lower(r.occupied * v_occupied)],
                           ARRAY[upper(r.occupied * v_occupied)], NULL::uuid,
                           NULL::timestamptz, NULL::timestamptz
                    FROM rsvp.reservations r
                    WHERE r.resource_id = p_resources[i]
                      AND r.occupied && v_occupied
                      AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
                      AND (r.expires_at IS NULL OR r.expires_at > v_now)
                    ORDER BY lower(r.timespan), r.id
                    LIMIT p_limit;
                CONTINUE;
            END IF;
            v_ask := NULL;
        ELSE
            -- A rush on one show: the items of a call that ask what the
            -- last refused item asked, with nothing written since, get its
            -- refusal.
            v_ask := p_resources[i] || ' ' || v_occupied::text || ' ' || p_quantities[i];
        END IF;
        IF v_ask IS NOT NULL AND v_refused_ask IS DISTINCT FROM v_ask THEN
            v_refused := ARRAY(
                SELECT b FROM rsvp.refusal(p_resources[i], v_occupied, NULL, v_now, p_limit,
                                           v_capacity, v_capacity > 1, p_quantities[i]) b);
            v_refused_ask := CASE WHEN cardinality(v_refused) > 0 THEN v_ask END;
        END IF;
        IF v_ask IS NOT NULL AND v_refused_ask IS NOT DISTINCT FROM v_ask THEN
            RETURN QUERY
                SELECT i, 'conflict'::text, v_now, b.total, b.id, b.user_id, b.resource_id,
                       b.status, b.start_at, b.end_at, b.note, b.created_at, b.updated_at,
                       b.expires_at, b.version, NULL::bigint, v_waited, b.quantity,
                       v_capacity, b.full_starts, b.full_ends, NULL::uuid,
                       NULL::timestamptz, NULL::timestamptz
                FROM unnest(v_refused) b;
            CONTINUE;
        END IF;

        IF p_dry[i] THEN
            RETURN QUERY SELECT i, 'fits'::text, v_now, 0::bigint, NULL::uuid, NULL::text,
                NULL::text, NULL::rsvp.reservation_status, NULL::timestamptz,
                NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz,
                NULL::timestamptz, NULL::bigint, NULL::bigint, v_waited, NULL::int,
                v_capacity, NULL::timestamptz[], NULL::timestamptz[], NULL::uuid,
                NULL::timestamptz, NULL::timestamptz;
            CONTINUE;
        END IF;

        v_refused_ask := NULL;
        IF v_capacity > 1 OR p_quantities[i] > 1 OR v_overdue THEN
            PERFORM rsvp.settle(p_resources[i], v_occupied, NULL, v_now, v_capacity > 1);
        END IF;
        RETURN QUERY
            INSERT INTO rsvp.reservations AS r
                (id, user_id, resource_id, status, timespan, note, created_at,
                 updated_at, expires_at, request_id, request_fingerprint, quantity,
                 buffer_before, buffer_after, shared, booking_id, booking_part)
            VALUES
                (p_ids[i], p_users[i], p_resources[i],
                 p_statuses[i]::rsvp.reservation_status, p_spans[i], p_notes[i], v_now,
                 v_now,
                 CASE WHEN p_statuses[i] = 'pending' THEN v_now + p_holds[i]
                      WHEN p_statuses[i] = 'confirmed' THEN p_releases[i] END,
                 p_request_ids[i], p_fingerprints[i], p_quantities[i], p_befores[i],
                 p_afters[i], v_capacity > 1, p_booking,
                 CASE WHEN p_booking IS NOT NULL THEN i - 1 END)
            RETURNING i, 'created'::text, v_now, 0::bigint, r.id, r.user_id,
                      r.resource_id, r.status, lower(r.timespan), upper(r.timespan),
                      r.note, r.created_at, r.updated_at, r.expires_at, r.version,
                      r.request_fingerprint, v_waited, r.quantity, v_capacity,
                      NULL::timestamptz[], NULL::timestamptz[], r.booking_id,
                      r.checked_in_at, r.checked_out_at;
    END LOOP;
END
$$;

DROP FUNCTION rsvp.revise(uuid, bigint, boolean, boolean, text, text, tstzrange,
    timestamptz, int, bigint, timestamptz, int);
CREATE FUNCTION rsvp.revise(
    p_id               uuid,
    p_version          bigint,
    p_seen_lapsed      boolean,
    p_check            boolean,
    p_status           text,
    p_note             text,
    p_span             tstzrange,
    p_expires_at       timestamptz,
    p_quantity         int,
    p_resource_version bigint,
    p_now              timestamptz,
    p_limit            int,
    p_checked_in_at    timestamptz,
    p_checked_out_at   timestamptz)
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
    waited              double precision,
    quantity            integer,
    capacity            integer,
    full_starts         timestamptz[],
    full_ends           timestamptz[],
    booking_id          uuid,
    checked_in_at       timestamptz,
    checked_out_at      timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_started  timestamptz := clock_timestamp();
    v_waited   double precision;
    v_row      rsvp.reservations;
    v_now      timestamptz;
    v_capacity int;
    v_version  bigint;
    v_occupied tstzrange;
BEGIN
    IF p_check THEN
        PERFORM pg_advisory_xact_lock(rsvp.lock_key(r.resource_id))
        FROM rsvp.reservations r WHERE r.id = p_id;
    END IF;
    v_now := coalesce(p_now, clock_timestamp());
    v_waited := extract(epoch FROM clock_timestamp() - v_started);

    SELECT * INTO v_row FROM rsvp.reservations r WHERE r.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT res.capacity, res.version INTO v_capacity, v_version
    FROM rsvp.resources res WHERE res.id = v_row.resource_id;
    IF NOT FOUND THEN
        v_capacity := 1;
        v_version := 0;
    END IF;
    IF v_row.version <> p_version
       OR (v_row.status IN ('pending', 'confirmed')
           AND coalesce(v_row.expires_at <= v_now, false))
          <> p_seen_lapsed
       OR (p_check AND v_version <> p_resource_version) THEN
        RETURN QUERY
            SELECT 1, 'stale'::text, v_now, 0::bigint, v_row.id, v_row.user_id,
                   v_row.resource_id, v_row.status, lower(v_row.timespan),
                   upper(v_row.timespan), v_row.note, v_row.created_at, v_row.updated_at,
                   v_row.expires_at, v_row.version, NULL::bigint, v_waited, v_row.quantity,
                   v_capacity, NULL::timestamptz[], NULL::timestamptz[], v_row.booking_id,
                   v_row.checked_in_at, v_row.checked_out_at;
        RETURN;
    END IF;

    IF p_check THEN
        v_occupied := rsvp.occupied(p_span, v_row.buffer_before, v_row.buffer_after);
        RETURN QUERY
            SELECT 1, 'conflict'::text, v_now, b.total, b.id, b.user_id, b.resource_id,
                   b.status, b.start_at, b.end_at, b.note, b.created_at, b.updated_at,
                   b.expires_at, b.version, NULL::bigint, v_waited, b.quantity, v_capacity,
                   b.full_starts, b.full_ends, NULL::uuid, NULL::timestamptz,
                   NULL::timestamptz
            FROM rsvp.refusal(v_row.resource_id, v_occupied, p_id, v_now, p_limit, v_capacity,
                              v_capacity > 1, p_quantity) b;
        IF FOUND THEN
            RETURN;
        END IF;
        PERFORM rsvp.settle(v_row.resource_id, v_occupied, p_id, v_now, v_capacity > 1);
    END IF;

    RETURN QUERY
        UPDATE rsvp.reservations r
        SET status = p_status::rsvp.reservation_status, note = p_note, timespan = p_span,
            expires_at = p_expires_at, quantity = p_quantity, updated_at = v_now,
            checked_in_at = p_checked_in_at, checked_out_at = p_checked_out_at,
            version = r.version + 1
        WHERE r.id = p_id
        RETURNING 1, 'revised'::text, v_now, 0::bigint, r.id, r.user_id, r.resource_id,
                  r.status, lower(r.timespan), upper(r.timespan), r.note, r.created_at,
                  r.updated_at, r.expires_at, r.version, NULL::bigint, v_waited, r.quantity,
                  v_capacity, NULL::timestamptz[], NULL::timestamptz[], r.booking_id,
                  r.checked_in_at, r.checked_out_at;
END
$$;

-- A row of rsvp.place, rsvp.revise or rsvp.book.
CREATE TYPE rsvp.write_row AS (
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
    waited              double precision,
    quantity            integer,
    capacity            integer,
    full_starts         timestamptz[],
    full_ends           timestamptz[],
    booking_id          uuid,
    checked_in_at       timestamptz,
    checked_out_at      timestamptz);

-- The parts of a booking as rsvp.book answers a retry: 'existing' rows, in
-- the order they were asked for, with the booking's request digest.
CREATE FUNCTION rsvp.booking_parts(p_booking rsvp.bookings, p_now timestamptz)
RETURNS SETOF rsvp.write_row
LANGUAGE sql STABLE AS $$
    SELECT r.booking_part + 1, 'existing'::text, coalesce(p_now, clock_timestamp()), 0::bigint,
           r.id, r.user_id, r.resource_id, r.status, lower(r.timespan), upper(r.timespan),
           r.note, r.created_at, r.updated_at, r.expires_at, r.version,
           p_booking.request_fingerprint, 0::double precision, r.quantity, NULL::int,
           NULL::timestamptz[], NULL::timestamptz[], r.booking_id, r.checked_in_at,
           r.checked_out_at
    FROM rsvp.reservations r
    WHERE r.booking_id = p_booking.id
    ORDER BY r.booking_part
$$;

-- Makes a booking: under every resource's lock (taken in one order, as
-- rsvp.place takes them), its row, then its parts through rsvp.place. Parts
-- on distinct resources are checked first and written only if all fit;
-- otherwise the parts are placed in a subtransaction that is rolled back
-- whole when any part is refused or stale, or when the call only checks (`p_dry`: the parts are placed, so
-- they count against one another, then undone). Answers rsvp.place's rows;
-- with `p_request_id` (dry or not), a booking the user already made under
-- it is answered instead, as rsvp.booking_parts.
CREATE FUNCTION rsvp.book(
    p_booking      uuid,
    p_user         text,
    p_request_id   text,
    p_fingerprint  bigint,
    p_ids          uuid[],
    p_resources    text[],
    p_spans        tstzrange[],
    p_statuses     text[],
    p_notes        text[],
    p_holds        interval[],
    p_quantities   int[],
    p_befores      bigint[],
    p_afters       bigint[],
    p_versions     bigint[],
    p_releases     timestamptz[],
    p_dry          boolean,
    p_now          timestamptz,
    p_limit        int)
RETURNS SETOF rsvp.write_row
LANGUAGE plpgsql AS $$
DECLARE
    v_rows    rsvp.write_row[];
    v_n       int := coalesce(array_length(p_ids, 1), 0);
    v_key     bigint;
    v_now     timestamptz;
    v_booking rsvp.bookings;
BEGIN
    IF p_request_id IS NOT NULL THEN
        SELECT * INTO v_booking FROM rsvp.bookings b
        WHERE b.user_id = p_user AND b.request_id = p_request_id;
        IF FOUND THEN
            RETURN QUERY SELECT * FROM rsvp.booking_parts(v_booking, p_now);
            RETURN;
        END IF;
    END IF;
    FOR v_key IN
        SELECT DISTINCT rsvp.lock_key(r) FROM unnest(p_resources) AS r ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
    v_now := coalesce(p_now, clock_timestamp());
    IF p_request_id IS NOT NULL THEN
        -- Again under the locks: a call with the same key that held them
        -- has committed by now.
        SELECT * INTO v_booking FROM rsvp.bookings b
        WHERE b.user_id = p_user AND b.request_id = p_request_id;
        IF FOUND THEN
            RETURN QUERY SELECT * FROM rsvp.booking_parts(v_booking, v_now);
            RETURN;
        END IF;
    END IF;
    -- Parts on as many resources: each is judged alone, so every part is
    -- checked first, writing nothing, and written only when all fit (under
    -- the same locks, nothing can come between). Parts that share a
    -- resource count against one another: they are placed in the block
    -- below, which undoes them all on a refusal.
    IF NOT p_dry AND (SELECT count(DISTINCT r) FROM unnest(p_resources) r) = v_n THEN
        SELECT array_agg(ROW(p.*)::rsvp.write_row) INTO v_rows
        FROM rsvp.place(
            p_ids, array_fill(p_user, ARRAY[v_n]), p_resources, p_spans, p_statuses, p_notes,
            p_holds, array_fill(NULL::text, ARRAY[v_n]), array_fill(NULL::bigint, ARRAY[v_n]),
            p_quantities, p_befores, p_afters, p_versions, array_fill(true, ARRAY[v_n]),
            v_now, p_limit, NULL, p_releases) p;
        IF EXISTS (SELECT 1 FROM unnest(v_rows) x WHERE x.outcome <> 'fits') THEN
            RETURN QUERY SELECT * FROM unnest(v_rows);
            RETURN;
        END IF;
        INSERT INTO rsvp.bookings (id, user_id, created_at, request_id, request_fingerprint)
        VALUES (p_booking, p_user, v_now, p_request_id, p_fingerprint)
        ON CONFLICT (user_id, request_id) DO NOTHING;
        IF NOT FOUND THEN
            -- The same request, made at the same moment, went first.
            SELECT * INTO v_booking FROM rsvp.bookings b
            WHERE b.user_id = p_user AND b.request_id = p_request_id;
            RETURN QUERY SELECT * FROM rsvp.booking_parts(v_booking, p_now);
            RETURN;
        END IF;
        SELECT array_agg(ROW(p.*)::rsvp.write_row) INTO v_rows
        FROM rsvp.place(
            p_ids, array_fill(p_user, ARRAY[v_n]), p_resources, p_spans, p_statuses, p_notes,
            p_holds, array_fill(NULL::text, ARRAY[v_n]), array_fill(NULL::bigint, ARRAY[v_n]),
            p_quantities, p_befores, p_afters, p_versions, array_fill(false, ARRAY[v_n]),
            v_now, p_limit, p_booking, p_releases) p;
        IF EXISTS (SELECT 1 FROM unnest(v_rows) x WHERE x.outcome <> 'created') THEN
            -- Only a writer that ignores the locks can get here: the whole
            -- call is undone, and may be retried.
            RAISE EXCEPTION 'a booking part was refused after every part was checked'
                USING ERRCODE = 'serialization_failure';
        END IF;
        RETURN QUERY SELECT * FROM unnest(v_rows);
        RETURN;
    END IF;
    BEGIN
        IF NOT p_dry THEN
            INSERT INTO rsvp.bookings (id, user_id, created_at, request_id, request_fingerprint)
            VALUES (p_booking, p_user, v_now, p_request_id, p_fingerprint);
        END IF;
        SELECT array_agg(ROW(p.*)::rsvp.write_row) INTO v_rows
        FROM rsvp.place(
            p_ids, array_fill(p_user, ARRAY[v_n]), p_resources, p_spans, p_statuses, p_notes,
            p_holds, array_fill(NULL::text, ARRAY[v_n]), array_fill(NULL::bigint, ARRAY[v_n]),
            p_quantities, p_befores, p_afters, p_versions, array_fill(false, ARRAY[v_n]),
            v_now, p_limit, CASE WHEN NOT p_dry THEN p_booking END, p_releases) p;
        IF p_dry OR EXISTS (SELECT 1 FROM unnest(v_rows) x WHERE x.outcome <> 'created') THEN
            RAISE EXCEPTION USING ERRCODE = 'RS001';
        END IF;
    EXCEPTION
        WHEN SQLSTATE 'RS001' THEN NULL;
        WHEN unique_violation THEN
            -- The same request, made at the same moment, went first.
            SELECT * INTO v_booking FROM rsvp.bookings b
            WHERE b.user_id = p_user AND b.request_id = p_request_id;
            IF NOT FOUND THEN
                RAISE;
            END IF;
            RETURN QUERY SELECT * FROM rsvp.booking_parts(v_booking, p_now);
            RETURN;
    END;
    RETURN QUERY SELECT * FROM unnest(v_rows);
END
$$;
