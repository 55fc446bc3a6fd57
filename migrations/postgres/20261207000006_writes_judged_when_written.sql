-- A reservation is judged by the time it is written, not only by the time
-- it was asked: a write that queued behind others (in a server's writing
-- lane, or for a resource's lock) until after the notice of one of its
-- items had passed refuses that item ('late'), whenever the server judged
-- it. Each new reservation or booking part carries the last write time its
-- notice allows (`p_accept_until`, NULL: no limit), compared under the
-- resource's lock with the time the write reads after its locks.
--
-- So a keyed retry and its first call always get one answer: a retry the
-- server refuses only for its notice is sent here too, where its key is
-- looked up under the same lock the first call writes under; if the first
-- call has not written yet, it will find its own notice passed too.
--
-- rsvp.place, rsvp.book and rsvp.books gain the argument as new overloads;
-- the previous ones stay for the servers of the previous release during a
-- rolling upgrade.

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
    p_limit        int,
    p_accept_until timestamptz[])
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
            v_now, p_limit, NULL, p_releases, p_accept_until) p;
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
            v_now, p_limit, p_booking, p_releases, p_accept_until) p;
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
            v_now, p_limit, CASE WHEN NOT p_dry THEN p_booking END, p_releases,
            p_accept_until) p;
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

CREATE FUNCTION rsvp.books(
    p_bookings     uuid[],
    p_users        text[],
    p_request_ids  text[],
    p_fingerprints bigint[],
    p_dry          boolean[],
    p_counts       int[],
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
    p_now          timestamptz,
    p_limit        int,
    p_accept_until timestamptz[])
RETURNS TABLE (booking int, r rsvp.write_row)
LANGUAGE plpgsql AS $$
DECLARE
    v_started timestamptz := clock_timestamp();
    v_waited  double precision;
    v_key     bigint;
    v_now     timestamptz;
    v_first   int := 1;
    v_last    int;
    v_row     rsvp.write_row;
BEGIN
    FOR v_key IN
        SELECT DISTINCT rsvp.lock_key(res.id) FROM unnest(p_resources) AS res(id) ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
    v_now := coalesce(p_now, clock_timestamp());
    v_waited := extract(epoch FROM clock_timestamp() - v_started);
    FOR b IN 1 .. coalesce(array_length(p_bookings, 1), 0) LOOP
        v_last := v_first + p_counts[b] - 1;
        FOR v_row IN
            SELECT * FROM rsvp.book(
                p_bookings[b], p_users[b], p_request_ids[b], p_fingerprints[b],
                p_ids[v_first:v_last], p_resources[v_first:v_last], p_spans[v_first:v_last],
                p_statuses[v_first:v_last], p_notes[v_first:v_last], p_holds[v_first:v_last],
                p_quantities[v_first:v_last], p_befores[v_first:v_last],
                p_afters[v_first:v_last], p_versions[v_first:v_last],
                p_releases[v_first:v_last], p_dry[b], v_now, p_limit,
                p_accept_until[v_first:v_last])
        LOOP
            v_row.waited := v_waited;
            booking := b;
            r := v_row;
            RETURN NEXT;
        END LOOP;
        v_first := v_last + 1;
    END LOOP;
END
$$;
