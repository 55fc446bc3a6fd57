-- The change feed off the commit path.
--
-- A transaction that calls NOTIFY takes a database-wide lock at commit, so
-- every write's commit queued behind every other's. Writes no longer
-- notify: each server announces after its own commits, on a connection of
-- its own, and every feed also polls the table.
CREATE OR REPLACE FUNCTION rsvp.record_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r         rsvp.reservations;
    change_op rsvp.change_op;
    stamp     timestamptz;
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
         r.timespan, r.note, r.created_at, r.updated_at, r.expires_at);
    RETURN NULL;
END
$$;

-- How far retention has cut the feed: a listener that asks to resume below
-- it has missed changes, and is told so instead of starting later.
CREATE TABLE rsvp.feed_state (
    only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    purged_through bigint NOT NULL DEFAULT 0
);
INSERT INTO rsvp.feed_state DEFAULT VALUES;

-- rsvp.place, reading what is in the way once: an index probe that finds
-- nothing (the common case) is the whole check.
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
    v_live    bigint;
    v_lapsed  bigint;
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

        SELECT count(*) FILTER (WHERE NOT x.lapsed), count(*) FILTER (WHERE x.lapsed)
        INTO v_live, v_lapsed
        FROM (SELECT coalesce(r.status = 'pending' AND r.expires_at <= v_now, false) AS lapsed
              FROM rsvp.reservations r
              WHERE r.resource_id = p_resources[i]
                AND r.timespan && p_spans[i]
                AND r.status IN ('pending', 'confirmed', 'blocked')) x;
        IF v_live > 0 THEN
            RETURN QUERY
                SELECT i, 'conflict'::text, v_now, b.total, b.id, b.user_id, b.resource_id,
                       b.status, b.start_at, b.end_at, b.note, b.created_at, b.updated_at,
                       b.expires_at, b.version, NULL::bigint, v_waited
                FROM rsvp.blockers(p_resources[i], p_spans[i], NULL, v_now, p_limit) b;
            CONTINUE;
        END IF;
        IF v_lapsed > 0 THEN
            PERFORM rsvp.settle(p_resources[i], p_spans[i], NULL, v_now);
        END IF;

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
