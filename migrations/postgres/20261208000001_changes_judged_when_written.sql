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
