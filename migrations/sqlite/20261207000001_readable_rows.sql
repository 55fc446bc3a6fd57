-- Every reservation row can be read back: ids as rsvp takes them (no
-- control characters), times within what a reader can represent (from
-- 4713 BC to before year 200,000). rsvp writes nothing else; these
-- triggers refuse it from any other writer, one of whose rows would
-- otherwise stop the change feed of every listener and fail every read
-- that meets it. (The change rows are written from these rows by
-- triggers.)

CREATE TRIGGER reservations_readable_insert
BEFORE INSERT ON reservations
WHEN NEW.user_id GLOB '*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*'
  OR NEW.resource_id GLOB '*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*'
  OR min(NEW.start_us, NEW.end_us, NEW.created_us, NEW.updated_us,
         coalesce(NEW.expires_us, 0), coalesce(NEW.checked_in_us, 0),
         coalesce(NEW.checked_out_us, 0)) < -210863520000000000
  OR max(NEW.start_us, NEW.end_us, NEW.created_us, NEW.updated_us,
         coalesce(NEW.expires_us, 0), coalesce(NEW.checked_in_us, 0),
         coalesce(NEW.checked_out_us, 0)) >= 6249223180800000000
BEGIN
    SELECT RAISE(ABORT, 'reservations_readable');
END;

-- An update is refused only what it would make unreadable: a row written
-- unreadable by another tool before this migration can still be
-- cancelled, expired or mended.
CREATE TRIGGER reservations_readable_update
BEFORE UPDATE ON reservations
WHEN (NEW.user_id IS NOT OLD.user_id
      AND NEW.user_id GLOB '*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*')
  OR (NEW.resource_id IS NOT OLD.resource_id
      AND NEW.resource_id GLOB '*[' || char(1) || '-' || char(31) || char(127) || '-' || char(159) || ']*')
  OR (min(NEW.start_us, NEW.end_us, NEW.created_us, NEW.updated_us,
          coalesce(NEW.expires_us, 0), coalesce(NEW.checked_in_us, 0),
          coalesce(NEW.checked_out_us, 0)) < -210863520000000000
      AND min(NEW.start_us, NEW.end_us, NEW.created_us, NEW.updated_us,
              coalesce(NEW.expires_us, 0), coalesce(NEW.checked_in_us, 0),
              coalesce(NEW.checked_out_us, 0))
          < min(OLD.start_us, OLD.end_us, OLD.created_us, OLD.updated_us,
                coalesce(OLD.expires_us, 0), coalesce(OLD.checked_in_us, 0),
                coalesce(OLD.checked_out_us, 0)))
  OR (max(NEW.start_us, NEW.end_us, NEW.created_us, NEW.updated_us,
          coalesce(NEW.expires_us, 0), coalesce(NEW.checked_in_us, 0),
          coalesce(NEW.checked_out_us, 0)) >= 6249223180800000000
      AND max(NEW.start_us, NEW.end_us, NEW.created_us, NEW.updated_us,
              coalesce(NEW.expires_us, 0), coalesce(NEW.checked_in_us, 0),
              coalesce(NEW.checked_out_us, 0))
          > max(OLD.start_us, OLD.end_us, OLD.created_us, OLD.updated_us,
                coalesce(OLD.expires_us, 0), coalesce(OLD.checked_in_us, 0),
                coalesce(OLD.checked_out_us, 0)))
BEGIN
    SELECT RAISE(ABORT, 'reservations_readable');
END;
