-- Schema version 10: function chains per VPC and per endpoint.
--
-- A VPC's chain at a stage (endpoint_id NULL) runs for its packets on every host, after the
-- host's chain; an endpoint's runs after its VPC's, for the packets it sends (ON_EGRESS) or
-- receives (the transit stages). Instances are unique across the table and never one a host
-- chain uses (checked in Rust), so a scoped function's counters are its own on any host.
-- Rows go with their VPC or endpoint (removed before the commit that removes them: see 0005).
CREATE TABLE scoped_chain_links (
    id          INTEGER PRIMARY KEY,
    vpc_id      INTEGER NOT NULL REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    endpoint_id INTEGER REFERENCES endpoints (id) DEFERRABLE INITIALLY DEFERRED,
    stage       TEXT NOT NULL CHECK (stage IN ('ON_XDP_TX', 'ON_XDP_REDIRECT',
                                               'ON_XDP_SCALED_EP', 'ON_EGRESS')),
    position    INTEGER NOT NULL CHECK (position >= 1),
    instance    INTEGER NOT NULL UNIQUE CHECK (instance BETWEEN 1 AND 1023),
    function    TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX scoped_chain_links_position
    ON scoped_chain_links (vpc_id, ifnull(endpoint_id, 0), stage, position);
