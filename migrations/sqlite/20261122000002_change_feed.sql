-- How far retention has cut the feed: a listener that asks to resume below
-- it has missed changes, and is told so instead of starting later.
CREATE TABLE feed_state (
    only_row       INTEGER PRIMARY KEY CHECK (only_row = 1),
    purged_through INTEGER NOT NULL
) STRICT;
INSERT INTO feed_state (only_row, purged_through) VALUES (1, 0);
