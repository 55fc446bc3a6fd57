-- Bookings combined into one transaction, as reserves are: rsvp.books
-- takes the bookings a writing lane found queued (their parts flattened, in
-- order, `p_counts` parts each), takes the lock of every resource any of
-- them names (in one order, as rsvp.place and rsvp.book take them), reads
-- the time once, then makes each booking in turn through rsvp.book. Each
-- booking keeps its own outcome: a refused one leaves nothing behind and
-- does not refuse the others; a later booking sees the earlier ones' parts
-- (and a retry of an earlier one's key is answered with it). Rows are
-- rsvp.book's (`r`), each with the (1-based) booking it belongs to.

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
    p_limit        int)
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
                p_releases[v_first:v_last], p_dry[b], v_now, p_limit)
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
