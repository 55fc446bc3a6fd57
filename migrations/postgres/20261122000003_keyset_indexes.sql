-- Query and Filter by resource or by user read in keyset order, start then
-- id. The GiST indexes find what overlaps a window but return it unsorted,
-- so a long selection was sorted again for every batch; these btree
-- indexes hold it in that order. The planner takes the GiST for a narrow
-- window and these for a long, ordered read.
CREATE INDEX reservations_resource_start_id
    ON rsvp.reservations (resource_id, lower(timespan), id);
CREATE INDEX reservations_user_start_id
    ON rsvp.reservations (user_id, lower(timespan), id);
