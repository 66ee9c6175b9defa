-- A change to one endpoint asks whether its host still hosts an endpoint of the VPC, and
-- whether this host still hosts one in its network (the data-plane entries that depend on it):
-- this index answers both with a probe instead of a scan of the host's endpoints.
CREATE INDEX endpoints_host_network ON endpoints (host_id, network_id);
