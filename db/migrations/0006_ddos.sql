-- Schema version 6: the ddos function's configuration.
--
-- Sources to drop, per VPC or (vpc_id NULL) for every VPC; a CIDR in its canonical form. And a
-- per-source packet-rate threshold per VPC or (vpc_id NULL) the default for every VPC. Duplicate
-- "every VPC" rows (NULLs do not collide in UNIQUE) are refused in Rust. A VPC's rows go with it
-- (removed before the commit that removes it: see 0005).
CREATE TABLE ddos_blocks (
    id     INTEGER PRIMARY KEY,
    vpc_id INTEGER REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    cidr   TEXT NOT NULL,
    UNIQUE (vpc_id, cidr)
) STRICT;

CREATE TABLE ddos_limits (
    id        INTEGER PRIMARY KEY,
    vpc_id    INTEGER UNIQUE REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    packets   INTEGER NOT NULL CHECK (packets >= 1),
    window_ms INTEGER NOT NULL CHECK (window_ms BETWEEN 10 AND 3600000)
) STRICT;
