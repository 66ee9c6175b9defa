-- Schema version 9: the ddos function's SYN-flood guard.
--
-- Per destination, at most `syns` new TCP connections (SYN without ACK) per window, for one VPC
-- or (vpc_id NULL) the default for every VPC; above it, SYNs from sources without an
-- established connection to that destination are dropped until the window ends.
CREATE TABLE ddos_syn_limits (
    id        INTEGER PRIMARY KEY,
    vpc_id    INTEGER UNIQUE REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    syns      INTEGER NOT NULL CHECK (syns >= 1),
    window_ms INTEGER NOT NULL CHECK (window_ms BETWEEN 10 AND 3600000)
) STRICT;
