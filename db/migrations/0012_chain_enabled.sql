-- Schema version 12: a function can be disabled in its chain, keeping its place and its
-- instance (its counters); the data plane skips it until it is enabled again.
ALTER TABLE chain_links ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1));
ALTER TABLE scoped_chain_links ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1));
