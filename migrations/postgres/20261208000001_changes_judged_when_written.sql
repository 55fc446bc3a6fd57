-- An update is judged by the time it is written, as a new reservation is
-- (20261207000006): a cancel or a move of a confirmed reservation that
-- queued for the resource's lock past its cancel notice, a move past the
-- new start's notice, or a check-in past the reservation's end, is not
-- written. The caller names the last write time its plan allows
-- (`p_accept_until`, NULL: no limit); past it, under the locks, the answer
-- is 'stale' with the row as it is, and the caller judges again by the
-- time given back.
--
-- rsvp.revise_versioned gains the argument as a new overload; the previous
-- one stays for the servers of the previous release during a rolling
-- upgrade.
--
-- The reservations in the way of a refused write are listed whole, as the
-- embedded store lists them: with the booking they belong to and when they
-- were checked in and out (a checked-in one is stored as confirmed, and
-- read as checked in by its check-in time). The new overload does so, and
-- rsvp.place of the previous migration is replaced by itself doing so too
-- (same arguments, same answer otherwise: servers of the previous release
-- read these columns already).

CREATE FUNCTION rsvp.revise_versioned(
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
    p_checked_out_at   timestamptz,
    p_accept_until     timestamptz)
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
    v_shared   boolean;
    v_resource text;
BEGIN
    IF p_check THEN
        PERFORM pg_advisory_xact_lock(rsvp.lock_key(r.resource_id))
        FROM rsvp.reservations r WHERE r.id = p_id;
    ELSE
        -- The resource's lock before the reservation's row, as every write
        -- of the resource takes them: exclusive for a row of a resource of
        -- several units (its capacity trigger takes it so), shared
        -- otherwise. A change of the rules, which takes it exclusive,
        -- waits for this update, or it for the change.
        SELECT r.shared, r.resource_id INTO v_shared, v_resource
        FROM rsvp.reservations r WHERE r.id = p_id;
        IF v_shared THEN
            PERFORM pg_advisory_xact_lock(rsvp.lock_key(v_resource));
        ELSIF FOUND THEN
            PERFORM pg_advisory_xact_lock_shared(rsvp.lock_key(v_resource));
        END IF;
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
       -- Judged by rules that are no longer the resource's (none given:
       -- no rule has a say in it).
       OR v_version <> coalesce(p_resource_version, v_version)
       -- The resource's capacity changed between the lock and the row:
       -- plan again (under the lock its rows now need).
       OR (NOT p_check AND v_row.shared IS DISTINCT FROM v_shared)
       -- Past the last time the plan's judgment by the clock holds.
       OR coalesce(v_now > p_accept_until, false) THEN
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
                   b.full_starts, b.full_ends, w.booking_id, w.checked_in_at,
                   w.checked_out_at
            FROM rsvp.refusal(v_row.resource_id, v_occupied, p_id, v_now, p_limit, v_capacity,
                              v_capacity > 1, p_quantity) WITH ORDINALITY AS b
            LEFT JOIN rsvp.reservations w ON w.id = b.id
            ORDER BY b.ordinality;
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

CREATE OR REPLACE FUNCTION rsvp.place(
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
    p_releases     timestamptz[],
    p_accept_until timestamptz[])
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
    -- Of each row of v_refused: its booking, and when it was checked in
    -- and out (read once per refusal, not once per item it refuses).
    v_refused_bookings uuid[];
    v_refused_ins      timestamptz[];
    v_refused_outs     timestamptz[];
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
        IF v_now > p_accept_until[i] THEN
            RETURN QUERY SELECT i, 'late'::text, v_now, 0::bigint, NULL::uuid, NULL::text,
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
                           ARRAY[upper(r.occupied * v_occupied)], r.booking_id,
                           r.checked_in_at, r.checked_out_at
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
            SELECT array_agg(w.booking_id ORDER BY b.ordinality),
                   array_agg(w.checked_in_at ORDER BY b.ordinality),
                   array_agg(w.checked_out_at ORDER BY b.ordinality)
            INTO v_refused_bookings, v_refused_ins, v_refused_outs
            FROM unnest(v_refused) WITH ORDINALITY AS b
            LEFT JOIN rsvp.reservations w ON w.id = b.id;
        END IF;
        IF v_ask IS NOT NULL AND v_refused_ask IS NOT DISTINCT FROM v_ask THEN
            RETURN QUERY
                SELECT i, 'conflict'::text, v_now, b.total, b.id, b.user_id, b.resource_id,
                       b.status, b.start_at, b.end_at, b.note, b.created_at, b.updated_at,
                       b.expires_at, b.version, NULL::bigint, v_waited, b.quantity,
                       v_capacity, b.full_starts, b.full_ends,
                       v_refused_bookings[b.ordinality], v_refused_ins[b.ordinality],
                       v_refused_outs[b.ordinality]
                FROM unnest(v_refused) WITH ORDINALITY AS b
                ORDER BY b.ordinality;
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
