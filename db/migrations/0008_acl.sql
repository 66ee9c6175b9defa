-- Schema version 8: endpoint labels and the acl function's rules.
--
-- An endpoint's labels are `key=value` strings, sorted, joined by commas: the groups ACL rules
-- name (`label:key=value`).
ALTER TABLE endpoints ADD COLUMN labels TEXT NOT NULL DEFAULT '';

-- A VPC's ACL: its default per direction, and the epoch flows are judged in (raised by a
-- change made with --cut: flows opened before it are judged again). A VPC without a row and
-- without rules has no ACL.
CREATE TABLE acl_vpcs (
    vpc_id          INTEGER PRIMARY KEY REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    ingress_default TEXT NOT NULL DEFAULT 'allow' CHECK (ingress_default IN ('allow', 'deny')),
    egress_default  TEXT NOT NULL DEFAULT 'allow' CHECK (egress_default IN ('allow', 'deny')),
    epoch           INTEGER NOT NULL DEFAULT 0
) STRICT;

-- The rules, in order per VPC and direction (position 1 first). Addresses are `any`, a CIDR,
-- `label:key=value` or `ep:name` (resolved against the VPC's endpoints when compiled).
CREATE TABLE acl_rules (
    id        INTEGER PRIMARY KEY,
    vpc_id    INTEGER NOT NULL REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    direction TEXT NOT NULL CHECK (direction IN ('ingress', 'egress')),
    position  INTEGER NOT NULL, -- 1 first (negated for a moment while rules move)
    action    TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
    src       TEXT NOT NULL,
    dst       TEXT NOT NULL,
    proto     TEXT NOT NULL,
    ports     TEXT,
    UNIQUE (vpc_id, direction, position)
) STRICT;
