-- Resources with a capacity and rules, and reservations of several units
-- with buffers around them.
--
-- - rsvp.resources: registered resources. A resource id never registered
--   is a resource of capacity 1 with no rules.
-- - A reservation holds `quantity` units over its occupied span: its
--   interval widened by the buffers copied onto it when it was made.
-- - The database refuses overbooking, whoever writes: the rows of a
--   resource of capacity 1 keep the exclusion constraint (on the occupied
--   span); the rows of a larger resource are `shared` and a constraint
--   trigger, holding the resource's transaction lock, checks the peak
--   usage over each row's span.

CREATE TABLE rsvp.resources (
    id           text PRIMARY KEY,
    capacity     integer NOT NULL,
    -- The rest of the resource (name, policy, opening hours, zone, admins,
    -- labels) as the library encodes it; only the library reads it.
    spec         bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    deleted_at   timestamptz,
    -- Changes with every update: the etag.
    version      bigint NOT NULL,

    CONSTRAINT resources_id_length CHECK (char_length(id) BETWEEN 1 AND 64),
    CONSTRAINT resources_capacity CHECK (capacity BETWEEN 1 AND 1000000)
);

-- A reservation's occupied span: its interval with the buffers (in
-- microseconds) before and after. Immutable in fact: the buffers are whole
-- microseconds, which no time zone changes.
CREATE FUNCTION rsvp.occupied(p_span tstzrange, p_before bigint, p_after bigint)
RETURNS tstzrange
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_before = 0 AND p_after = 0 THEN p_span
                ELSE tstzrange(lower(p_span) - p_before * interval '1 microsecond',
                               upper(p_span) + p_after * interval '1 microsecond', '[)')
           END
$$;

ALTER TABLE rsvp.reservations
    ADD COLUMN quantity integer NOT NULL DEFAULT 1,
    ADD COLUMN buffer_before bigint NOT NULL DEFAULT 0,
    ADD COLUMN buffer_after bigint NOT NULL DEFAULT 0,
    -- True when the resource has more than one unit: the row is checked by
    -- peak usage instead of the exclusion constraint.
    ADD COLUMN shared boolean NOT NULL DEFAULT false,
    ADD COLUMN occupied tstzrange
        GENERATED ALWAYS AS (rsvp.occupied(timespan, buffer_before, buffer_after)) STORED,
    ADD CONSTRAINT reservations_quantity CHECK (
        quantity BETWEEN 0 AND 1000000
        AND (quantity > 0 OR status IN ('blocked', 'cancelled'))
        AND (shared OR quantity <= 1)),
    ADD CONSTRAINT reservations_buffers CHECK (
        buffer_before BETWEEN 0 AND 316224000000000
        AND buffer_after BETWEEN 0 AND 316224000000000);

ALTER TABLE rsvp.reservations DROP CONSTRAINT reservations_no_overlap;
ALTER TABLE rsvp.reservations ADD CONSTRAINT reservations_no_overlap EXCLUDE USING gist
    (resource_id WITH =, occupied WITH &&)
    WHERE (status IN ('pending', 'confirmed', 'blocked') AND NOT shared);

-- What is in the way on a resource of several units.
CREATE INDEX reservations_shared_live
    ON rsvp.reservations USING gist (resource_id, occupied)
    WHERE (status IN ('pending', 'confirmed', 'blocked') AND shared);

ALTER TABLE rsvp.reservation_changes
    ADD COLUMN quantity integer NOT NULL DEFAULT 1;

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
         timespan, note, created_at, updated_at, expires_at, quantity)
    VALUES
        (change_op, stamp, r.id, r.user_id, r.resource_id, r.status,
         r.timespan, r.note, r.created_at, r.updated_at, r.expires_at, r.quantity);
    RETURN NULL;
END
$$;

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
          OR OLD.quantity IS DISTINCT FROM NEW.quantity)
    EXECUTE FUNCTION rsvp.record_change();

-- The usage of a resource over `p_span`: the span cut into pieces of
-- constant usage, each with the units live reservations (other than
-- `p_except`) hold there. A hold overdue at `p_now` holds nothing; with
-- `p_now` null every pending hold counts. A block of quantity 0 holds
-- every unit, `p_capacity`.
CREATE FUNCTION rsvp.usage(
    p_resource text, p_span tstzrange, p_except uuid, p_now timestamptz, p_capacity int)
RETURNS TABLE (piece_start timestamptz, piece_end timestamptz, used bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH live AS (
        SELECT r.occupied * p_span AS o,
               CASE WHEN r.quantity = 0 THEN p_capacity ELSE r.quantity END AS q
        FROM rsvp.reservations r
        WHERE r.resource_id = p_resource
          AND r.occupied && p_span
          AND r.status IN ('pending', 'confirmed', 'blocked')
          AND (p_now IS NULL OR r.expires_at IS NULL OR r.expires_at > p_now)
          AND r.id IS DISTINCT FROM p_except
    ), steps AS (
        SELECT t, sum(d) AS d FROM (
            SELECT lower(o) AS t, q AS d FROM live
            UNION ALL SELECT upper(o), -q FROM live
            UNION ALL SELECT lower(p_span), 0
            UNION ALL SELECT upper(p_span), 0
        ) e GROUP BY t
    ), profile AS (
        SELECT t, lead(t) OVER (ORDER BY t) AS next_t,
               (sum(d) OVER (ORDER BY t))::bigint AS used
        FROM steps
    )
    SELECT t, next_t, used FROM profile WHERE next_t IS NOT NULL ORDER BY t;
END
$$;

-- Where, within `p_span`, fewer than `p_quantity` units are free: the
-- starts and ends of those stretches, merged, at most 20.
CREATE FUNCTION rsvp.full_within(
    p_resource text, p_span tstzrange, p_except uuid, p_now timestamptz,
    p_capacity int, p_quantity int,
    OUT starts timestamptz[], OUT ends timestamptz[])
LANGUAGE sql STABLE AS $$
    SELECT array_agg(lower(f) ORDER BY f), array_agg(upper(f) ORDER BY f)
    FROM (
        SELECT f FROM unnest((
            SELECT range_agg(tstzrange(u.piece_start, u.piece_end, '[)'))
            FROM rsvp.usage(p_resource, p_span, p_except, p_now, p_capacity) u
            WHERE u.used + p_quantity > p_capacity)) AS f
        ORDER BY f
        LIMIT 20
    ) x
$$;

-- The live reservations of a resource whose occupied span overlaps
-- `p_span` at `p_now`, other than `p_except`, by start then id: at most
-- `p_limit`, each with how many there are in all. `p_shared` says which
-- index holds them.
DROP FUNCTION rsvp.blockers(text, tstzrange, uuid, timestamptz, int);
CREATE FUNCTION rsvp.blockers(
    p_resource text, p_span tstzrange, p_except uuid, p_now timestamptz, p_limit int,
    p_shared boolean)
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
    version     bigint,
    quantity    integer)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_total bigint;
BEGIN
    IF p_shared THEN
        SELECT count(*) INTO v_total
        FROM rsvp.reservations r
        WHERE r.resource_id = p_resource
          AND r.occupied && p_span
          AND r.status IN ('pending', 'confirmed', 'blocked') AND r.shared
          AND (r.expires_at IS NULL OR r.expires_at > p_now)
          AND r.id IS DISTINCT FROM p_except;
        RETURN QUERY
            SELECT v_total, r.id, r.user_id, r.resource_id, r.status,
                   lower(r.timespan), upper(r.timespan), r.note, r.created_at,
                   r.updated_at, r.expires_at, r.version, r.quantity
            FROM rsvp.reservations r
            WHERE r.resource_id = p_resource
              AND r.occupied && p_span
              AND r.status IN ('pending', 'confirmed', 'blocked') AND r.shared
              AND (r.expires_at IS NULL OR r.expires_at > p_now)
              AND r.id IS DISTINCT FROM p_except
            ORDER BY lower(r.timespan), r.id
            LIMIT p_limit;
    ELSE
        SELECT count(*) INTO v_total
        FROM rsvp.reservations r
        WHERE r.resource_id = p_resource
          AND r.occupied && p_span
          AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
          AND (r.expires_at IS NULL OR r.expires_at > p_now)
          AND r.id IS DISTINCT FROM p_except;
        RETURN QUERY
            SELECT v_total, r.id, r.user_id, r.resource_id, r.status,
                   lower(r.timespan), upper(r.timespan), r.note, r.created_at,
                   r.updated_at, r.expires_at, r.version, r.quantity
            FROM rsvp.reservations r
            WHERE r.resource_id = p_resource
              AND r.occupied && p_span
              AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
              AND (r.expires_at IS NULL OR r.expires_at > p_now)
              AND r.id IS DISTINCT FROM p_except
            ORDER BY lower(r.timespan), r.id
            LIMIT p_limit;
    END IF;
END
$$;

-- Marks the overdue holds of a resource whose occupied span overlaps
-- `p_span` expired, so that a write may take their place.
CREATE OR REPLACE FUNCTION rsvp.settle(
    p_resource text, p_span tstzrange, p_except uuid, p_now timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rsvp.reservations r
    SET status = 'expired', updated_at = p_now, version = r.version + 1
    WHERE r.resource_id = p_resource
      AND r.occupied && p_span
      AND r.status = 'pending'
      AND r.expires_at <= p_now
      AND r.id IS DISTINCT FROM p_except;
END
$$;

-- Whether `p_quantity` more units fit over `p_span` of a resource
-- (`p_shared`: of several units), and if not, what is in the way:
-- a header row (id null) with the capacity and the full stretches, then
-- the first `p_limit` live reservations in the way.
-- A row of a refusal: the header (id null: the capacity's full stretches)
-- or a reservation in the way.
CREATE TYPE rsvp.refusal_row AS (
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
    version     bigint,
    quantity    integer,
    full_starts timestamptz[],
    full_ends   timestamptz[]);

CREATE FUNCTION rsvp.refusal(
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
    ELSIF p_except IS NULL AND NOT EXISTS (
            SELECT 1 FROM rsvp.reservations r
            WHERE r.status = 'pending' AND r.expires_at <= p_now
              AND r.resource_id = p_resource AND r.occupied && p_span) THEN
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

-- The units held on each resource of several units, as pieces of time of
-- constant usage (none where nothing is held). The trigger below keeps it
-- for every write of a shared row, under the resource's lock, so a
-- capacity check reads the few pieces under a span, not every reservation
-- there: a hot resource selling 1,000 seats of one show checks one piece.
CREATE TABLE rsvp.usage_pieces (
    resource_id text NOT NULL,
    span        tstzrange NOT NULL,
    used        bigint NOT NULL CHECK (used >= 0)
);
CREATE INDEX usage_pieces_span ON rsvp.usage_pieces USING gist (resource_id, span);

-- Adds `p_units` (negative: removes) to the usage of a resource over
-- `p_span`. The caller holds the resource's lock.
CREATE FUNCTION rsvp.hold_units(p_resource text, p_span tstzrange, p_units bigint)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_piece record;
BEGIN
    IF p_units = 0 OR isempty(p_span) THEN
        RETURN;
    END IF;
    -- Cut the pieces that reach past the span's ends.
    FOR v_piece IN
        DELETE FROM rsvp.usage_pieces u
        WHERE u.resource_id = p_resource AND u.span && p_span AND NOT u.span <@ p_span
        RETURNING u.span, u.used
    LOOP
        INSERT INTO rsvp.usage_pieces (resource_id, span, used)
        SELECT p_resource, piece, v_piece.used
        FROM unnest(tstzmultirange(v_piece.span) - tstzmultirange(p_span)) AS piece
        UNION ALL
        SELECT p_resource, v_piece.span * p_span, v_piece.used;
    END LOOP;
    UPDATE rsvp.usage_pieces u SET used = u.used + p_units
    WHERE u.resource_id = p_resource AND u.span <@ p_span;
    IF p_units > 0 THEN
        INSERT INTO rsvp.usage_pieces (resource_id, span, used)
        SELECT p_resource, gap, p_units
        FROM unnest(tstzmultirange(p_span) - coalesce(
            (SELECT range_agg(u.span) FROM rsvp.usage_pieces u
             WHERE u.resource_id = p_resource AND u.span <@ p_span),
            '{}'::tstzmultirange)) AS gap;
    ELSE
        DELETE FROM rsvp.usage_pieces u
        WHERE u.resource_id = p_resource AND u.span <@ p_span AND u.used = 0;
    END IF;
END
$$;

-- The last line of defence for every writer: a live row agrees with its
-- resource's capacity (shared exactly when there are several units), and
-- on a resource of several units the usage pieces follow every write of a
-- live row, and no piece under a new or moved row holds more than the
-- capacity. Takes the resource's lock, as rsvp's writers do first. Every
-- pending hold counts, overdue or not: writers settle those in their way
-- first.
CREATE FUNCTION rsvp.check_capacity() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_capacity int;
    v_peak     bigint;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.shared
       AND OLD.status IN ('pending', 'confirmed', 'blocked') THEN
        PERFORM pg_advisory_xact_lock(rsvp.lock_key(OLD.resource_id));
        SELECT capacity INTO v_capacity FROM rsvp.resources WHERE id = OLD.resource_id;
        PERFORM rsvp.hold_units(OLD.resource_id, OLD.occupied,
            -(CASE WHEN OLD.quantity = 0 THEN coalesce(v_capacity, 1) ELSE OLD.quantity END));
    END IF;
    IF TG_OP = 'DELETE' OR NEW.status NOT IN ('pending', 'confirmed', 'blocked') THEN
        RETURN NULL;
    END IF;
    SELECT capacity INTO v_capacity FROM rsvp.resources WHERE id = NEW.resource_id;
    v_capacity := coalesce(v_capacity, 1);
    IF NEW.shared <> (v_capacity > 1) THEN
        RAISE EXCEPTION 'reservation % of resource % (capacity %) must have shared = %',
            NEW.id, NEW.resource_id, v_capacity, v_capacity > 1
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_within_capacity';
    END IF;
    IF NOT NEW.shared THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(rsvp.lock_key(NEW.resource_id));
    PERFORM rsvp.hold_units(NEW.resource_id, NEW.occupied,
        CASE WHEN NEW.quantity = 0 THEN v_capacity ELSE NEW.quantity END);
    SELECT max(u.used) INTO v_peak FROM rsvp.usage_pieces u
    WHERE u.resource_id = NEW.resource_id AND u.span && NEW.occupied;
    IF v_peak > v_capacity THEN
        RAISE EXCEPTION 'resource % would hold % of its % units', NEW.resource_id, v_peak,
            v_capacity
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_within_capacity';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER reservations_within_capacity
    AFTER INSERT ON rsvp.reservations
    FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'confirmed', 'blocked'))
    EXECUTE FUNCTION rsvp.check_capacity();

CREATE CONSTRAINT TRIGGER reservations_within_capacity_update
    AFTER UPDATE OF status, timespan, quantity, buffer_before, buffer_after, resource_id, shared
    ON rsvp.reservations
    FOR EACH ROW
    WHEN (NEW.status IN ('pending', 'confirmed', 'blocked') OR OLD.shared)
    EXECUTE FUNCTION rsvp.check_capacity();

CREATE CONSTRAINT TRIGGER reservations_within_capacity_delete
    AFTER DELETE ON rsvp.reservations
    FOR EACH ROW
    WHEN (OLD.shared)
    EXECUTE FUNCTION rsvp.check_capacity();

-- A resource's capacity, set or changed by anyone: its rows follow it
-- (shared or not), its usage pieces are counted again (a block of every
-- unit holds the new number), and no live reservations may hold more than
-- it.
CREATE FUNCTION rsvp.apply_capacity() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_peak bigint;
    v_row  record;
BEGIN
    PERFORM pg_advisory_xact_lock(rsvp.lock_key(NEW.id));
    DELETE FROM rsvp.usage_pieces WHERE resource_id = NEW.id;
    UPDATE rsvp.reservations r SET shared = (NEW.capacity > 1)
    WHERE r.resource_id = NEW.id AND r.shared <> (NEW.capacity > 1);
    DELETE FROM rsvp.usage_pieces WHERE resource_id = NEW.id;
    IF NEW.capacity > 1 THEN
        FOR v_row IN
            SELECT r.occupied, r.quantity FROM rsvp.reservations r
            WHERE r.resource_id = NEW.id AND r.shared
              AND r.status IN ('pending', 'confirmed', 'blocked')
        LOOP
            PERFORM rsvp.hold_units(NEW.id, v_row.occupied,
                CASE WHEN v_row.quantity = 0 THEN NEW.capacity ELSE v_row.quantity END);
        END LOOP;
        SELECT max(u.used) INTO v_peak FROM rsvp.usage_pieces u WHERE u.resource_id = NEW.id;
        IF v_peak > NEW.capacity THEN
            RAISE EXCEPTION 'live reservations of resource % hold % units, more than %',
                NEW.id, v_peak, NEW.capacity
                USING ERRCODE = 'check_violation', CONSTRAINT = 'resources_capacity_in_use';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER resources_apply_capacity
    AFTER INSERT OR UPDATE OF capacity ON rsvp.resources
    FOR EACH ROW EXECUTE FUNCTION rsvp.apply_capacity();

-- Places new reservations, as before (rsvp.place of the writes migration),
-- now of several units with buffers, on resources with a capacity. Each
-- item names the version of its resource that the library judged it by
-- (0: not registered); if the resource is not at that version any more the
-- item is 'stale' and nothing is written for it (the library judges it
-- again). A dry item ('fits' when it would be placed) writes nothing.
DROP FUNCTION rsvp.place(uuid[], text[], text[], tstzrange[], text[], text[], interval[],
                         text[], bigint[], timestamptz, int);
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
    waited              double precision,
    quantity            integer,
    capacity            integer,
    full_starts         timestamptz[],
    full_ends           timestamptz[])
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
    v_in_the_way boolean;
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
                       NULL::timestamptz[], NULL::timestamptz[]
                FROM rsvp.reservations r
                WHERE r.user_id = p_users[i] AND r.request_id = p_request_ids[i];
            IF FOUND THEN
                CONTINUE;
            END IF;
        END IF;

        v_occupied := rsvp.occupied(p_spans[i], p_befores[i], p_afters[i]);
        -- The resource as it is, and (for one unit) whether anything live
        -- is in the way, in one look.
        SELECT coalesce(res.capacity, 1), coalesce(res.version, 0),
               EXISTS (SELECT 1 FROM rsvp.reservations r
                       WHERE r.resource_id = p_resources[i]
                         AND r.occupied && v_occupied
                         AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
                         AND (r.expires_at IS NULL OR r.expires_at > v_now))
        INTO v_capacity, v_version, v_in_the_way
        FROM (SELECT 1) one LEFT JOIN rsvp.resources res ON res.id = p_resources[i];
        IF v_version <> p_versions[i] THEN
            RETURN QUERY SELECT i, 'stale'::text, v_now, 0::bigint, NULL::uuid, NULL::text,
                NULL::text, NULL::rsvp.reservation_status, NULL::timestamptz,
                NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz,
                NULL::timestamptz, NULL::bigint, NULL::bigint, v_waited, NULL::int,
                v_capacity, NULL::timestamptz[], NULL::timestamptz[];
            CONTINUE;
        END IF;

        -- One unit: nothing live in the way (the common case), or a
        -- refusal read in one statement: where it is full (the spans in the
        -- way never overlap one another), how many are in the way, the
        -- first of them.
        IF v_capacity = 1 AND p_quantities[i] <= 1 THEN
            IF v_in_the_way THEN
                RETURN QUERY
                    WITH b AS MATERIALIZED (
                        SELECT r.* FROM rsvp.reservations r
                        WHERE r.resource_id = p_resources[i]
                          AND r.occupied && v_occupied
                          AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
                          AND (r.expires_at IS NULL OR r.expires_at > v_now)),
                    f AS (
                        SELECT array_agg(lower(x) ORDER BY x) AS s,
                               array_agg(upper(x) ORDER BY x) AS e
                        FROM (SELECT x FROM unnest((SELECT range_agg(b.occupied * v_occupied)
                                                    FROM b)) AS x
                              ORDER BY x LIMIT 20) y),
                    n AS (SELECT count(*) AS total FROM b)
                    (SELECT i, 'conflict'::text, v_now, 0::bigint, NULL::uuid, NULL::text,
                            NULL::text, NULL::rsvp.reservation_status, NULL::timestamptz,
                            NULL::timestamptz, NULL::text, NULL::timestamptz,
                            NULL::timestamptz, NULL::timestamptz, NULL::bigint, NULL::bigint,
                            v_waited, NULL::int, v_capacity, f.s, f.e
                     FROM f)
                    UNION ALL
                    (SELECT i, 'conflict'::text, v_now, n.total, b.id, b.user_id,
                            b.resource_id, b.status, lower(b.timespan), upper(b.timespan),
                            b.note, b.created_at, b.updated_at, b.expires_at, b.version,
                            NULL::bigint, v_waited, b.quantity, v_capacity,
                            NULL::timestamptz[], NULL::timestamptz[]
                     FROM b, n ORDER BY lower(b.timespan), b.id LIMIT p_limit);
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
                       v_capacity, b.full_starts, b.full_ends
                FROM unnest(v_refused) b;
            CONTINUE;
        END IF;

        IF p_dry[i] THEN
            RETURN QUERY SELECT i, 'fits'::text, v_now, 0::bigint, NULL::uuid, NULL::text,
                NULL::text, NULL::rsvp.reservation_status, NULL::timestamptz,
                NULL::timestamptz, NULL::text, NULL::timestamptz, NULL::timestamptz,
                NULL::timestamptz, NULL::bigint, NULL::bigint, v_waited, NULL::int,
                v_capacity, NULL::timestamptz[], NULL::timestamptz[];
            CONTINUE;
        END IF;

        v_refused_ask := NULL;
        PERFORM rsvp.settle(p_resources[i], v_occupied, NULL, v_now);
        RETURN QUERY
            INSERT INTO rsvp.reservations AS r
                (id, user_id, resource_id, status, timespan, note, created_at,
                 updated_at, expires_at, request_id, request_fingerprint, quantity,
                 buffer_before, buffer_after, shared)
            VALUES
                (p_ids[i], p_users[i], p_resources[i],
                 p_statuses[i]::rsvp.reservation_status, p_spans[i], p_notes[i], v_now,
                 v_now,
                 CASE WHEN p_statuses[i] = 'pending' THEN v_now + p_holds[i] END,
                 p_request_ids[i], p_fingerprints[i], p_quantities[i], p_befores[i],
                 p_afters[i], v_capacity > 1)
            RETURNING i, 'created'::text, v_now, 0::bigint, r.id, r.user_id,
                      r.resource_id, r.status, lower(r.timespan), upper(r.timespan),
                      r.note, r.created_at, r.updated_at, r.expires_at, r.version,
                      r.request_fingerprint, v_waited, r.quantity, v_capacity,
                      NULL::timestamptz[], NULL::timestamptz[];
    END LOOP;
END
$$;

-- Applies one reservation's planned update, as before (rsvp.revise of the
-- writes migration), now with a quantity. `p_check` (a reschedule or more
-- units) takes the resource's lock first and refuses ('conflict') what
-- the capacity does not leave room for; `p_resource_version` is the
-- version of the resource the library judged the update by ('stale' if it
-- changed since, like the row's own version).
DROP FUNCTION rsvp.revise(uuid, bigint, boolean, boolean, text, text, tstzrange, timestamptz,
                          timestamptz, int);
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
    p_limit            int)
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
    full_ends           timestamptz[])
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
       OR (v_row.status = 'pending' AND coalesce(v_row.expires_at <= v_now, false))
          <> p_seen_lapsed
       OR (p_check AND v_version <> p_resource_version) THEN
        RETURN QUERY
            SELECT 1, 'stale'::text, v_now, 0::bigint, v_row.id, v_row.user_id,
                   v_row.resource_id, v_row.status, lower(v_row.timespan),
                   upper(v_row.timespan), v_row.note, v_row.created_at, v_row.updated_at,
                   v_row.expires_at, v_row.version, NULL::bigint, v_waited, v_row.quantity,
                   v_capacity, NULL::timestamptz[], NULL::timestamptz[];
        RETURN;
    END IF;

    IF p_check THEN
        v_occupied := rsvp.occupied(p_span, v_row.buffer_before, v_row.buffer_after);
        RETURN QUERY
            SELECT 1, 'conflict'::text, v_now, b.total, b.id, b.user_id, b.resource_id,
                   b.status, b.start_at, b.end_at, b.note, b.created_at, b.updated_at,
                   b.expires_at, b.version, NULL::bigint, v_waited, b.quantity, v_capacity,
                   b.full_starts, b.full_ends
            FROM rsvp.refusal(v_row.resource_id, v_occupied, p_id, v_now, p_limit, v_capacity,
                              v_capacity > 1, p_quantity) b;
        IF FOUND THEN
            RETURN;
        END IF;
        PERFORM rsvp.settle(v_row.resource_id, v_occupied, p_id, v_now);
    END IF;

    RETURN QUERY
        UPDATE rsvp.reservations r
        SET status = p_status::rsvp.reservation_status, note = p_note, timespan = p_span,
            expires_at = p_expires_at, quantity = p_quantity, updated_at = v_now,
            version = r.version + 1
        WHERE r.id = p_id
        RETURNING 1, 'revised'::text, v_now, 0::bigint, r.id, r.user_id, r.resource_id,
                  r.status, lower(r.timespan), upper(r.timespan), r.note, r.created_at,
                  r.updated_at, r.expires_at, r.version, NULL::bigint, v_waited, r.quantity,
                  v_capacity, NULL::timestamptz[], NULL::timestamptz[];
END
$$;
