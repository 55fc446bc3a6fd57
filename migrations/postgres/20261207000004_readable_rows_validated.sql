-- The constraint of the previous migration, checked against the rows
-- already there (a transaction of its own: validating takes a lock that
-- lets writes go on). A row that fails names the constraint; such a row
-- was written by something other than rsvp and must be mended by hand.

ALTER TABLE rsvp.reservations VALIDATE CONSTRAINT reservations_readable;
