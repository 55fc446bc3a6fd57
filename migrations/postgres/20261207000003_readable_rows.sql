-- Every reservation can be read back: ids as rsvp takes them (no control
-- characters), times finite and within what a reader can represent
-- (before year 200,000). rsvp writes nothing else; the constraint refuses
-- it from any other writer, one of whose rows would otherwise stop the
-- change feed of every listener on every server (a time of 'infinity'
-- cannot be read as a time; an id with a tab in it is not an id) and fail
-- every read that meets it. The change rows are copies the trigger makes
-- of these rows.
--
-- One constraint, written small: PostgreSQL prepares a table's check
-- constraints again for every statement that writes it.
--
-- Added NOT VALID, so adding it does not read the table; the next
-- migration validates it in a transaction of its own, which holds off no
-- writer while it reads.

ALTER TABLE rsvp.reservations
    ADD CONSTRAINT reservations_readable CHECK (
        user_id !~ '[\x01-\x1f\x7f-\x9f]'
        AND resource_id !~ '[\x01-\x1f\x7f-\x9f]'
        AND GREATEST(upper(timespan), created_at, updated_at, expires_at, checked_in_at,
                     checked_out_at) < '200000-01-01 00:00:00+00'
        AND LEAST(created_at, updated_at, expires_at, checked_in_at, checked_out_at)
            > '-infinity'
    ) NOT VALID;
