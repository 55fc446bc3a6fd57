-- What each piece of a reserve costs PostgreSQL: the ceiling (the smallest
-- table that can refuse an overlap, one checked insert per transaction) and
-- the same insert with one more piece of rsvp's work at a time. Each piece
-- is one function call, so every variant is one round trip.

CREATE SCHEMA bench;

-- The ceiling: only the exclusion constraint.
CREATE TABLE bench.minimal (
    resource_id text NOT NULL,
    timespan    tstzrange NOT NULL,
    EXCLUDE USING gist (resource_id WITH =, timespan WITH &&)
);

CREATE FUNCTION bench.span(h int) RETURNS tstzrange
LANGUAGE sql IMMUTABLE AS $$
    SELECT tstzrange('2027-01-01'::timestamptz + h * interval '1 hour',
                     '2027-01-01'::timestamptz + (h + 1) * interval '1 hour', '[)')
$$;

-- + the resource's transaction lock.
CREATE FUNCTION bench.lock(r int, h int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(rsvp.lock_key('bench-' || r));
    INSERT INTO bench.minimal VALUES ('bench-' || r, bench.span(h)) ON CONFLICT DO NOTHING;
END $$;

-- + reading what is in the way first.
CREATE FUNCTION bench.lock_read(r int, h int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(rsvp.lock_key('bench-' || r));
    SELECT count(*) INTO n FROM bench.minimal m
    WHERE m.resource_id = 'bench-' || r AND m.timespan && bench.span(h);
    IF n = 0 THEN
        INSERT INTO bench.minimal VALUES ('bench-' || r, bench.span(h)) ON CONFLICT DO NOTHING;
    END IF;
END $$;

-- Tables of rsvp's shape (columns and checks), each with one more of
-- rsvp's indexes than the one before; the last also records changes.
CREATE TABLE bench.shape_exclusion (LIKE rsvp.reservations INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE bench.shape_exclusion ADD EXCLUDE USING gist (resource_id WITH =, timespan WITH &&)
    WHERE (status IN ('pending', 'confirmed', 'blocked'));

CREATE TABLE bench.shape_pk (LIKE bench.shape_exclusion INCLUDING ALL);
ALTER TABLE bench.shape_pk ADD PRIMARY KEY (id);

CREATE TABLE bench.shape_resource (LIKE bench.shape_pk INCLUDING ALL);
CREATE INDEX ON bench.shape_resource USING gist (resource_id, timespan);

CREATE TABLE bench.shape_user (LIKE bench.shape_resource INCLUDING ALL);
CREATE INDEX ON bench.shape_user USING gist (user_id, timespan);

CREATE TABLE bench.shape_start (LIKE bench.shape_user INCLUDING ALL);
CREATE INDEX ON bench.shape_start (lower(timespan), id);

CREATE TABLE bench.shape_keyset (LIKE bench.shape_start INCLUDING ALL);
CREATE INDEX ON bench.shape_keyset (resource_id, lower(timespan), id);
CREATE INDEX ON bench.shape_keyset (user_id, lower(timespan), id);

CREATE TABLE bench.shape_changes (LIKE bench.shape_keyset INCLUDING ALL);
CREATE TABLE bench.changes (LIKE rsvp.reservation_changes INCLUDING ALL);
CREATE FUNCTION bench.record_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench.changes
        (op, changed_at, reservation_id, user_id, resource_id, status,
         timespan, note, created_at, updated_at, expires_at)
    VALUES
        ('create', NEW.updated_at, NEW.id, NEW.user_id, NEW.resource_id, NEW.status,
         NEW.timespan, NEW.note, NEW.created_at, NEW.updated_at, NEW.expires_at);
    RETURN NULL;
END $$;
CREATE TRIGGER record AFTER INSERT ON bench.shape_changes
    FOR EACH ROW EXECUTE FUNCTION bench.record_change();

-- Lock, read what is in the way (live rows, as rsvp.place does), insert a
-- confirmed reservation: one function per table, named as the table.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['shape_exclusion', 'shape_pk', 'shape_resource', 'shape_user',
                             'shape_start', 'shape_keyset', 'shape_changes'] LOOP
        EXECUTE format($f$
            CREATE FUNCTION bench.%1$s(r int, h int) RETURNS void LANGUAGE plpgsql AS $b$
            DECLARE n bigint;
            BEGIN
                PERFORM pg_advisory_xact_lock(rsvp.lock_key('bench-' || r));
                SELECT count(*) INTO n FROM bench.%1$s t
                WHERE t.resource_id = 'bench-' || r AND t.timespan && bench.span(h)
                  AND t.status IN ('pending', 'confirmed', 'blocked');
                IF n = 0 THEN
                    INSERT INTO bench.%1$s
                        (id, user_id, resource_id, status, timespan, note, created_at, updated_at)
                    VALUES (gen_random_uuid(), 'pgbench', 'bench-' || r, 'confirmed',
                            bench.span(h), '', now(), now());
                END IF;
            END $b$ $f$, t);
    END LOOP;
END $$;

-- The same, also marking overdue holds in the way expired first (an UPDATE
-- that finds nothing to do).
CREATE FUNCTION bench.shape_settle(r int, h int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE bench.shape_changes t SET status = 'expired'
    WHERE t.resource_id = 'bench-' || r AND t.timespan && bench.span(h)
      AND t.status = 'pending' AND t.expires_at <= now();
    PERFORM bench.shape_changes(r, h);
END $$;
