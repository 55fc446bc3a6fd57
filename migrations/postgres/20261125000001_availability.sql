-- What a resource has in use over a span, for Availability: for each
-- resource asked (with the span to read, in order), the resource as it is
-- (null columns: never registered) and the pieces of its span where live
-- reservations hold units (buffers included; a hold overdue at `p_now`
-- holds nothing; a block of quantity 0 holds every unit), each with the
-- units held and, of those, the units of pending holds. One statement, so
-- one snapshot, whatever the number of resources.
CREATE FUNCTION rsvp.availability(p_resources text[], p_spans tstzrange[], p_now timestamptz)
RETURNS TABLE (
    resource_id text,
    capacity    integer,
    spec        bytea,
    created_at  timestamptz,
    updated_at  timestamptz,
    deleted_at  timestamptz,
    version     bigint,
    starts      timestamptz[],
    ends        timestamptz[],
    used        bigint[],
    held        bigint[])
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT a.resource_id, res.capacity, res.spec, res.created_at, res.updated_at,
           res.deleted_at, res.version, u.starts, u.ends, u.used, u.held
    FROM unnest(p_resources, p_spans) WITH ORDINALITY AS a(resource_id, span, n)
    LEFT JOIN rsvp.resources res ON res.id = a.resource_id
    LEFT JOIN LATERAL (
        WITH live AS (
            -- Each kind of row through the partial index that holds it.
            SELECT r.occupied * a.span AS o, r.quantity, r.status
            FROM rsvp.reservations r
            WHERE r.resource_id = a.resource_id AND r.occupied && a.span
              AND r.status IN ('pending', 'confirmed', 'blocked') AND r.shared
              AND (r.expires_at IS NULL OR r.expires_at > p_now)
            UNION ALL
            SELECT r.occupied * a.span, r.quantity, r.status
            FROM rsvp.reservations r
            WHERE r.resource_id = a.resource_id AND r.occupied && a.span
              AND r.status IN ('pending', 'confirmed', 'blocked') AND NOT r.shared
              AND (r.expires_at IS NULL OR r.expires_at > p_now)
        ), units AS (
            SELECT o, CASE WHEN quantity = 0 THEN coalesce(res.capacity, 1) ELSE quantity END AS q,
                   status = 'pending' AS pending
            FROM live WHERE NOT isempty(o)
        ), steps AS (
            SELECT t, sum(dq) AS dq, sum(dh) AS dh FROM (
                SELECT lower(o) AS t, q AS dq, CASE WHEN pending THEN q ELSE 0 END AS dh
                FROM units
                UNION ALL
                SELECT upper(o), -q, CASE WHEN pending THEN -q ELSE 0 END FROM units
            ) e GROUP BY t
        ), profile AS (
            SELECT t, lead(t) OVER w AS next_t, (sum(dq) OVER w)::bigint AS used,
                   (sum(dh) OVER w)::bigint AS held
            FROM steps WINDOW w AS (ORDER BY t)
        )
        SELECT array_agg(p.t ORDER BY p.t) AS starts, array_agg(p.next_t ORDER BY p.t) AS ends,
               array_agg(p.used ORDER BY p.t) AS used, array_agg(p.held ORDER BY p.t) AS held
        FROM profile p
        WHERE p.next_t IS NOT NULL AND p.used > 0
    ) u ON true
    ORDER BY a.n;
END
$$;
