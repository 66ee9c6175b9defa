-- Schema version 1: hosts, VPCs, networks, endpoints and the assignments between them.
--
-- Append-only: a released migration is never edited; change the schema with a new file listed
-- after this one in src/schema.rs.
--
-- Addresses are stored as text in their canonical form (10.0.1.0/24, 02:00:00:00:00:01) so the
-- file stays readable with the sqlite3 shell; validation happens in Rust before any write.
--
-- Foreign keys are DEFERRABLE INITIALLY DEFERRED and have no ON DELETE actions: deleting a row
-- that is still referenced is refused in Rust with a message (or cascaded explicitly there), and
-- apply may replace a row under the same id within one transaction. The keys still catch, at
-- commit, any write that would leave a dangling reference.

CREATE TABLE hosts (
    id        INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE,
    ip        TEXT NOT NULL UNIQUE,
    mac       TEXT NOT NULL,
    interface TEXT,
    -- 1 for the machine this database belongs to ("this host").
    local     INTEGER NOT NULL DEFAULT 0 CHECK (local IN (0, 1)),
    CHECK (local = 0 OR interface IS NOT NULL)
) STRICT;

-- At most one host is this host.
CREATE UNIQUE INDEX hosts_one_local ON hosts (local) WHERE local = 1;

CREATE TABLE vpcs (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    vni  INTEGER NOT NULL UNIQUE CHECK (vni BETWEEN 1 AND 16777215),
    cidr TEXT NOT NULL
) STRICT;

CREATE TABLE vpc_dividers (
    vpc_id  INTEGER NOT NULL REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    host_id INTEGER NOT NULL REFERENCES hosts (id) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (vpc_id, host_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX vpc_dividers_host ON vpc_dividers (host_id);

CREATE TABLE networks (
    id      INTEGER PRIMARY KEY,
    vpc_id  INTEGER NOT NULL REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    name    TEXT NOT NULL,
    cidr    TEXT NOT NULL,
    gateway TEXT NOT NULL,
    UNIQUE (vpc_id, name),
    -- Target of endpoints' (network_id, vpc_id) key: an endpoint's VPC is its network's VPC.
    UNIQUE (id, vpc_id)
) STRICT;

CREATE TABLE network_bouncers (
    network_id INTEGER NOT NULL REFERENCES networks (id) DEFERRABLE INITIALLY DEFERRED,
    host_id    INTEGER NOT NULL REFERENCES hosts (id) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (network_id, host_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX network_bouncers_host ON network_bouncers (host_id);

CREATE TABLE endpoints (
    id           INTEGER PRIMARY KEY,
    -- Kept beside network_id so that SQL itself enforces one IP and one name per VPC.
    vpc_id       INTEGER NOT NULL REFERENCES vpcs (id) DEFERRABLE INITIALLY DEFERRED,
    network_id   INTEGER NOT NULL,
    name         TEXT NOT NULL,
    ip           TEXT NOT NULL,
    mac          TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('simple', 'scaled', 'host', 'function')),
    bypass_decap INTEGER NOT NULL DEFAULT 0 CHECK (bypass_decap IN (0, 1)),
    host_id      INTEGER NOT NULL REFERENCES hosts (id) DEFERRABLE INITIALLY DEFERRED,
    -- Host-side veth on its host (NULLs do not collide in the UNIQUE below).
    veth         TEXT,
    FOREIGN KEY (network_id, vpc_id) REFERENCES networks (id, vpc_id)
        DEFERRABLE INITIALLY DEFERRED,
    UNIQUE (vpc_id, name),
    UNIQUE (vpc_id, ip),
    UNIQUE (host_id, veth)
) STRICT;

CREATE INDEX endpoints_network ON endpoints (network_id, vpc_id);

CREATE TABLE endpoint_backends (
    endpoint_id INTEGER NOT NULL REFERENCES endpoints (id) DEFERRABLE INITIALLY DEFERRED,
    backend_id  INTEGER NOT NULL REFERENCES endpoints (id) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (endpoint_id, backend_id),
    CHECK (endpoint_id <> backend_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX endpoint_backends_backend ON endpoint_backends (backend_id);
