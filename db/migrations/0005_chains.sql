-- Schema version 5: the function chains at the pipeline's stages, per host.
--
-- One row per function placed in a chain. `instance` is the function's instance number on its
-- host, the slot of its counters in that host's data plane (1 to 1023), kept while it stays in
-- the chain whatever its position; positions are 1-based and dense within a host's stage. A
-- host's chains go with it: no ON DELETE action (apply replaces a changed host under its id),
-- the rows of hosts that are gone are removed before each commit (Store::sweep_orphans).
CREATE TABLE chain_links (
    id       INTEGER PRIMARY KEY,
    host_id  INTEGER NOT NULL REFERENCES hosts (id) DEFERRABLE INITIALLY DEFERRED,
    stage    TEXT NOT NULL CHECK (stage IN ('ON_XDP_TX', 'ON_XDP_PASS', 'ON_XDP_REDIRECT',
                                            'ON_XDP_DROP', 'ON_XDP_SCALED_EP', 'ON_EGRESS')),
    position INTEGER NOT NULL CHECK (position >= 1),
    instance INTEGER NOT NULL CHECK (instance BETWEEN 1 AND 1023),
    function TEXT NOT NULL,
    UNIQUE (host_id, stage, position),
    UNIQUE (host_id, instance)
) STRICT;
