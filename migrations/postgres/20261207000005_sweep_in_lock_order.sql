-- The sweeper expires overdue holds and marks no-shows in one function that
-- takes the locks of the resources of several units involved first, in the
-- one global order, and only then locks their rows: as every writer does.
-- Before, the sweep was one UPDATE whose capacity triggers took those locks
-- at the end of the statement, after its row locks; a reserve that held a
-- resource's lock and settled a lapsed hold of it that the sweep had
-- locked deadlocked with the sweep (broken by PostgreSQL after a second).
--
-- Only the rows chosen before the locks are taken are updated, and only if
-- they still belong to the resource whose lock was taken: a row moved or
-- reshaped meanwhile waits for the next sweep. Rows locked by a writer are
-- skipped: that writer settles them.
CREATE FUNCTION rsvp.expire_overdue(p_now timestamptz, p_limit int)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_ids       uuid[];
    v_resources text[];
    v_shared    boolean[];
    v_key       bigint;
    v_done      bigint;
BEGIN
    SELECT array_agg(d.id), array_agg(d.resource_id), array_agg(d.shared)
    INTO v_ids, v_resources, v_shared
    FROM ((SELECT r.id, r.resource_id, r.shared FROM rsvp.reservations r
           WHERE r.status = 'pending' AND r.expires_at <= p_now
           ORDER BY r.expires_at LIMIT p_limit)
          UNION ALL
          (SELECT r.id, r.resource_id, r.shared FROM rsvp.reservations r
           WHERE r.status = 'confirmed' AND r.expires_at <= p_now
           ORDER BY r.expires_at LIMIT p_limit)) d;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    FOR v_key IN
        SELECT DISTINCT rsvp.lock_key(due.resource_id)
        FROM unnest(v_resources, v_shared) AS due(resource_id, shared)
        WHERE due.shared
        ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
    UPDATE rsvp.reservations r
    SET status = CASE WHEN r.status = 'pending' THEN 'expired' ELSE 'no_show' END
            ::rsvp.reservation_status,
        updated_at = p_now,
        version = r.version + 1
    FROM (SELECT held.id
          FROM rsvp.reservations held
          JOIN unnest(v_ids, v_resources, v_shared) AS due(id, resource_id, shared)
            ON held.id = due.id AND held.resource_id = due.resource_id
               AND held.shared = due.shared
          WHERE held.status IN ('pending', 'confirmed') AND held.expires_at <= p_now
          FOR UPDATE OF held SKIP LOCKED) locked
    WHERE r.id = locked.id;
    GET DIAGNOSTICS v_done = ROW_COUNT;
    RETURN v_done;
END $$;
