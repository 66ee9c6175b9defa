-- Schema version 7: the ratelimit function's rules.
--
-- Per VPC as a whole (endpoint_id NULL) or per endpoint of it, per direction (ingress: what
-- the endpoint receives; egress: what it sends), packets and/or bytes per second, each with a
-- burst. Duplicate VPC-wide rows (NULLs do not collide in UNIQUE) are refused in Rust. A rule
-- goes with its VPC or endpoint (removed before the commit that removes them: see 0005).
CREATE TABLE rate_limits (
    id            INTEGER PRIMARY KEY,
    vpc_id        INTEGER NOT NULL REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    endpoint_id   INTEGER REFERENCES endpoints (id) DEFERRABLE INITIALLY DEFERRED,
    direction     TEXT NOT NULL CHECK (direction IN ('ingress', 'egress')),
    packets       INTEGER CHECK (packets >= 1),
    burst_packets INTEGER CHECK (burst_packets >= 1),
    bytes         INTEGER CHECK (bytes >= 1),
    burst_bytes   INTEGER CHECK (burst_bytes >= 1),
    CHECK (packets IS NOT NULL OR bytes IS NOT NULL),
    UNIQUE (vpc_id, endpoint_id, direction)
) STRICT;
