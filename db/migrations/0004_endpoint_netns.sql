-- Endpoints whose veth pair mizar made (`ep add --netns`): the network namespace their inner
-- end was moved to, so that `ep del` removes the pair again. Host-local plumbing, not part of
-- the fabric's description: it goes with its endpoint.
CREATE TABLE endpoint_netns (
    endpoint_id INTEGER PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
    netns       TEXT NOT NULL
) STRICT;
