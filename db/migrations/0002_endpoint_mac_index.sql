-- Two endpoints of one VPC may not share a MAC (checked in Rust, which names both); this index
-- keeps that lookup cheap. Not UNIQUE: a store written before the rule may hold duplicates,
-- which `mizar apply` then reports instead of the migration failing.
CREATE INDEX endpoints_vpc_mac ON endpoints (vpc_id, mac);
