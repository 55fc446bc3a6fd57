-- Arrival and departure: a checked-out reservation is completed; a
-- confirmed one nobody checked in in time is a no-show. (A checked-in
-- reservation is kept as confirmed with its check-in time: it holds its
-- resource exactly as a confirmed one does.) In a migration of their own:
-- a new enum value may not be used in the transaction that adds it.
ALTER TYPE rsvp.reservation_status ADD VALUE IF NOT EXISTS 'completed';
ALTER TYPE rsvp.reservation_status ADD VALUE IF NOT EXISTS 'no_show';
