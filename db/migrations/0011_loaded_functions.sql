-- Schema version 11: network functions loaded from users' objects (`mizar fn load`).
--
-- The object itself is kept, so `mizar up` loads the function again after a reboot; `slot` is
-- its place among the shared program slots of the chains of VPCs and endpoints (after the
-- built-in functions'), kept while it stays loaded.
CREATE TABLE loaded_functions (
    name         TEXT PRIMARY KEY,
    slot         INTEGER NOT NULL UNIQUE CHECK (slot >= 0),
    program      TEXT NOT NULL,
    drop_reasons TEXT NOT NULL DEFAULT '',
    object       BLOB NOT NULL
) STRICT;
