//! The whole configuration as flat, name-keyed maps: what is loaded from SQLite, what a document
//! becomes, what validation walks and what apply diffs. BTreeMaps keep every walk in name order,
//! which is what makes snapshots and reports deterministic.

use std::{
    collections::{BTreeMap, BTreeSet},
    str::FromStr,
};

use rusqlite::{Connection, params};
use rustc_hash::FxHashMap as HashMap;

use crate::{
    error::{Kind, SqlContext, StoreError},
    model::{Endpoint, EndpointSpec, Host, Network, NetworkSpec, Topology, Vpc, VpcSpec},
};

pub(crate) type NetKey = (String, String);
pub(crate) type EpKey = (String, String);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub this_host: Option<String>,
    pub hosts: BTreeMap<String, Host>,
    pub vpcs: BTreeMap<String, Vpc>,
    /// (VPC, host)
    pub dividers: BTreeSet<(String, String)>,
    /// (VPC, network)
    pub networks: BTreeMap<NetKey, Network>,
    /// (VPC, network, host)
    pub bouncers: BTreeSet<(String, String, String)>,
    /// (VPC, endpoint); each endpoint's backends sorted.
    pub endpoints: BTreeMap<EpKey, Endpoint>,
    /// (VPC, endpoint) -> the network namespace mizar plumbed the endpoint's veth pair into.
    pub netns: BTreeMap<EpKey, String>,
}

/// Row ids of what was loaded, for writing the difference.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    pub hosts: HashMap<String, i64>,
    pub vpcs: HashMap<String, i64>,
    pub networks: HashMap<NetKey, i64>,
    pub endpoints: HashMap<EpKey, i64>,
}

/// Which part of a table to load.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Filter<'a> {
    All,
    Vpc(&'a str),
    One(&'a str, &'a str),
}

impl<'a> Filter<'a> {
    /// A WHERE clause over `v.name` (the VPC) and `{alias}.name`, and its parameters.
    fn clause(self, alias: &str) -> (String, Vec<&'a str>) {
        match self {
            Filter::All => (String::new(), vec![]),
            Filter::Vpc(vpc) => ("WHERE v.name = ?1".to_owned(), vec![vpc]),
            Filter::One(vpc, name) => (
                format!("WHERE v.name = ?1 AND {alias}.name = ?2"),
                vec![vpc, name],
            ),
        }
    }
}

pub(crate) fn parse<T: FromStr>(what: &'static str, text: String) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt { what, value: text })
}

pub(crate) fn load_hosts(conn: &Connection) -> Result<Vec<(i64, Host, bool)>, StoreError> {
    const ACTION: &str = "reading hosts";
    let mut stmt = conn
        .prepare_cached("SELECT id, name, ip, mac, interface, local FROM hosts ORDER BY name")
        .ctx(ACTION)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, bool>(5)?,
            ))
        })
        .ctx(ACTION)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, name, ip, mac, interface, local) = row.ctx(ACTION)?;
        let host = Host {
            name,
            ip: parse("host IP", ip)?,
            mac: parse("host MAC", mac)?,
            interface,
        };
        out.push((id, host, local));
    }
    Ok(out)
}

pub(crate) fn load_vpcs(
    conn: &Connection,
    filter: Option<&str>,
) -> Result<Vec<(i64, Vpc)>, StoreError> {
    const ACTION: &str = "reading VPCs";
    let sql = match filter {
        None => "SELECT id, name, vni, cidr FROM vpcs v ORDER BY name",
        Some(_) => "SELECT id, name, vni, cidr FROM vpcs v WHERE name = ?1",
    };
    let mut stmt = conn.prepare_cached(sql).ctx(ACTION)?;
    let params: Vec<&str> = filter.into_iter().collect();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .ctx(ACTION)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, name, vni, cidr) = row.ctx(ACTION)?;
        let cidr = parse("VPC CIDR", cidr)?;
        out.push((id, Vpc { name, vni, cidr }));
    }
    Ok(out)
}

pub(crate) fn load_networks(
    conn: &Connection,
    filter: Filter<'_>,
) -> Result<Vec<(i64, Network)>, StoreError> {
    const ACTION: &str = "reading networks";
    let (clause, params) = filter.clause("n");
    let sql = format!(
        "SELECT n.id, v.name, n.name, n.cidr, n.gateway FROM networks n \
         JOIN vpcs v ON v.id = n.vpc_id {clause} ORDER BY v.name, n.name"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx(ACTION)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .ctx(ACTION)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, vpc, name, cidr, gateway) = row.ctx(ACTION)?;
        out.push((
            id,
            Network {
                vpc,
                name,
                cidr: parse("network CIDR", cidr)?,
                gateway: parse("network gateway", gateway)?,
            },
        ));
    }
    Ok(out)
}

/// Endpoints in (VPC, network, name) order, with their backends.
pub(crate) fn load_endpoints(
    conn: &Connection,
    filter: Filter<'_>,
) -> Result<Vec<(i64, Endpoint)>, StoreError> {
    let (clause, params) = filter.clause("e");
    select_endpoints(conn, &clause, rusqlite::params_from_iter(&params))
}

/// Endpoints chosen by a WHERE clause over `e` (the endpoint), `v` (its VPC) and `h` (its
/// host), in (VPC, network, name) order, with their backends.
pub(crate) fn select_endpoints(
    conn: &Connection,
    clause: &str,
    params: impl rusqlite::Params + Clone,
) -> Result<Vec<(i64, Endpoint)>, StoreError> {
    const ACTION: &str = "reading endpoints";
    let sql = format!(
        "SELECT e.id, v.name, n.name, e.name, e.ip, e.mac, e.kind, e.bypass_decap, h.name, \
         e.veth, e.labels FROM endpoints e JOIN vpcs v ON v.id = e.vpc_id \
         JOIN networks n ON n.id = e.network_id JOIN hosts h ON h.id = e.host_id \
         {clause} ORDER BY v.name, n.name, e.name"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx(ACTION)?;
    let rows = stmt
        .query_map(params.clone(), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                [
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ],
                r.get::<_, bool>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, String>(10)?,
            ))
        })
        .ctx(ACTION)?;
    let mut out = Vec::new();
    let mut index = HashMap::default();
    for row in rows {
        let (id, [vpc, network, name, ip, mac, kind], bypass_decap, host, veth, labels) =
            row.ctx(ACTION)?;
        index.insert(id, out.len());
        out.push((
            id,
            Endpoint {
                vpc,
                network,
                name,
                ip: parse("endpoint IP", ip)?,
                mac: parse("endpoint MAC", mac)?,
                kind: parse("endpoint type", kind)?,
                bypass_decap,
                host,
                veth,
                backends: Vec::new(),
                labels: labels
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
        ));
    }

    if out.is_empty() {
        return Ok(out);
    }
    // Backends live in the scaled endpoint's VPC, so the same clause on the owner applies.
    let sql = format!(
        "SELECT b.endpoint_id, be.name FROM endpoint_backends b \
         JOIN endpoints e ON e.id = b.endpoint_id JOIN vpcs v ON v.id = e.vpc_id \
         JOIN hosts h ON h.id = e.host_id \
         JOIN endpoints be ON be.id = b.backend_id {clause} ORDER BY b.endpoint_id, be.name"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx(ACTION)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .ctx(ACTION)?;
    for row in rows {
        let (owner, backend) = row.ctx(ACTION)?;
        if let Some(&i) = index.get(&owner) {
            out[i].1.backends.push(backend);
        }
    }
    Ok(out)
}

/// Which endpoints have a veth pair mizar made, and into which namespace.
pub(crate) fn load_netns(conn: &Connection) -> Result<BTreeMap<EpKey, String>, StoreError> {
    const ACTION: &str = "reading endpoints' network namespaces";
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.name, e.name, w.netns FROM endpoint_netns w \
             JOIN endpoints e ON e.id = w.endpoint_id JOIN vpcs v ON v.id = e.vpc_id",
        )
        .ctx(ACTION)?;
    let rows = stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .ctx(ACTION)?;
    rows.collect::<Result<_, _>>().ctx(ACTION)
}

/// (VPC, host) pairs, optionally of one VPC, in name order.
pub(crate) fn load_dividers(
    conn: &Connection,
    vpc: Option<&str>,
) -> Result<Vec<(String, String)>, StoreError> {
    const ACTION: &str = "reading dividers";
    let filter = vpc.map_or(Filter::All, Filter::Vpc);
    let (clause, params) = filter.clause("h");
    let sql = format!(
        "SELECT v.name, h.name FROM vpc_dividers d JOIN vpcs v ON v.id = d.vpc_id \
         JOIN hosts h ON h.id = d.host_id {clause} ORDER BY v.name, h.name"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx(ACTION)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .ctx(ACTION)?;
    rows.collect::<Result<_, _>>().ctx(ACTION)
}

/// (VPC, network, host) triples, optionally of one network, in name order.
pub(crate) fn load_bouncers(
    conn: &Connection,
    network: Option<(&str, &str)>,
) -> Result<Vec<(String, String, String)>, StoreError> {
    const ACTION: &str = "reading bouncers";
    let filter = network.map_or(Filter::All, |(vpc, net)| Filter::One(vpc, net));
    let (clause, params) = filter.clause("n");
    let sql = format!(
        "SELECT v.name, n.name, h.name FROM network_bouncers b \
         JOIN networks n ON n.id = b.network_id JOIN vpcs v ON v.id = n.vpc_id \
         JOIN hosts h ON h.id = b.host_id {clause} ORDER BY v.name, n.name, h.name"
    );
    let mut stmt = conn.prepare_cached(&sql).ctx(ACTION)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .ctx(ACTION)?;
    rows.collect::<Result<_, _>>().ctx(ACTION)
}

impl State {
    /// Everything in the database. Call inside a transaction for a consistent view.
    pub fn load(conn: &Connection) -> Result<(State, Ids), StoreError> {
        let mut state = State::default();
        let mut ids = Ids::default();
        for (id, host, local) in load_hosts(conn)? {
            if local {
                state.this_host = Some(host.name.clone());
            }
            ids.hosts.insert(host.name.clone(), id);
            state.hosts.insert(host.name.clone(), host);
        }
        for (id, vpc) in load_vpcs(conn, None)? {
            ids.vpcs.insert(vpc.name.clone(), id);
            state.vpcs.insert(vpc.name.clone(), vpc);
        }
        state.dividers = load_dividers(conn, None)?.into_iter().collect();
        for (id, net) in load_networks(conn, Filter::All)? {
            let key = (net.vpc.clone(), net.name.clone());
            ids.networks.insert(key.clone(), id);
            state.networks.insert(key, net);
        }
        state.bouncers = load_bouncers(conn, None)?.into_iter().collect();
        for (id, ep) in load_endpoints(conn, Filter::All)? {
            let key = (ep.vpc.clone(), ep.name.clone());
            ids.endpoints.insert(key.clone(), id);
            state.endpoints.insert(key, ep);
        }
        state.netns = load_netns(conn)?;
        Ok((state, ids))
    }

    /// The document's objects, flattened; listing one twice is a problem of its own.
    pub fn from_topology(doc: &Topology) -> (State, Vec<StoreError>) {
        let mut state = State {
            this_host: doc.this_host.clone(),
            ..State::default()
        };
        let mut problems = Vec::new();
        let mut duplicate = |kind, name: &str, scope: String| {
            problems.push(StoreError::Duplicate {
                kind,
                name: name.to_owned(),
                scope,
            })
        };
        for host in &doc.hosts {
            if state
                .hosts
                .insert(host.name.clone(), host.clone())
                .is_some()
            {
                duplicate(Kind::Host, &host.name, String::new());
            }
        }
        for vpc in &doc.vpcs {
            let VpcSpec {
                name,
                vni,
                cidr,
                dividers,
                networks,
            } = vpc;
            let flat = Vpc {
                name: name.clone(),
                vni: *vni,
                cidr: *cidr,
            };
            if state.vpcs.insert(name.clone(), flat).is_some() {
                duplicate(Kind::Vpc, name, String::new());
            }
            for host in dividers {
                if !state.dividers.insert((name.clone(), host.clone())) {
                    duplicate(Kind::Divider, host, format!(" of VPC {name:?}"));
                }
            }
            for net in networks {
                state.add_network_spec(name, net, &mut duplicate);
            }
        }
        (state, problems)
    }

    fn add_network_spec(
        &mut self,
        vpc: &str,
        net: &NetworkSpec,
        duplicate: &mut impl FnMut(Kind, &str, String),
    ) {
        let flat = Network {
            vpc: vpc.to_owned(),
            name: net.name.clone(),
            cidr: net.cidr,
            gateway: net.gateway(),
        };
        let key = (vpc.to_owned(), net.name.clone());
        if self.networks.insert(key, flat).is_some() {
            duplicate(Kind::Network, &net.name, format!(" in VPC {vpc:?}"));
        }
        for host in &net.bouncers {
            if !self
                .bouncers
                .insert((vpc.to_owned(), net.name.clone(), host.clone()))
            {
                duplicate(
                    Kind::Bouncer,
                    host,
                    format!(" of network {:?} in VPC {vpc:?}", net.name),
                );
            }
        }
        for ep in &net.endpoints {
            let mut backends = ep.backends.clone();
            backends.sort();
            for pair in backends.windows(2) {
                if pair[0] == pair[1] {
                    duplicate(
                        Kind::Backend,
                        &pair[0],
                        format!(" of endpoint {:?} in VPC {vpc:?}", ep.name),
                    );
                }
            }
            backends.dedup();
            let flat = Endpoint {
                backends,
                ..Endpoint::from_spec(vpc, &net.name, ep)
            };
            let key = (vpc.to_owned(), ep.name.clone());
            if let Some(netns) = &ep.netns {
                self.netns.insert(key.clone(), netns.clone());
            }
            if self.endpoints.insert(key, flat).is_some() {
                duplicate(Kind::Endpoint, &ep.name, format!(" in VPC {vpc:?}"));
            }
        }
    }

    /// `doc` laid over `self`: its objects replace those of the same name, memberships
    /// (dividers, bouncers, backends) are added to, nothing is removed.
    pub fn overlay(mut self, doc: State) -> State {
        if doc.this_host.is_some() {
            self.this_host = doc.this_host;
        }
        self.hosts.extend(doc.hosts);
        self.vpcs.extend(doc.vpcs);
        self.dividers.extend(doc.dividers);
        self.networks.extend(doc.networks);
        self.bouncers.extend(doc.bouncers);
        self.netns.extend(doc.netns);
        for (key, mut ep) in doc.endpoints {
            if let Some(old) = self.endpoints.get(&key) {
                ep.backends.extend(old.backends.iter().cloned());
                ep.backends.sort();
                ep.backends.dedup();
            }
            self.endpoints.insert(key, ep);
        }
        self
    }

    /// The networks of one VPC, in name order.
    pub fn networks_of<'a>(&'a self, vpc: &'a str) -> impl Iterator<Item = &'a Network> + 'a {
        self.networks
            .range((vpc.to_owned(), String::new())..)
            .take_while(move |((v, _), _)| v == vpc)
            .map(|(_, net)| net)
    }

    /// The endpoints of one VPC, in name order.
    pub fn endpoints_of<'a>(&'a self, vpc: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints
            .range((vpc.to_owned(), String::new())..)
            .take_while(move |((v, _), _)| v == vpc)
            .map(|(_, ep)| ep)
    }

    /// The nested document, everything in name order, every default spelled out.
    pub fn to_topology(&self) -> Topology {
        let mut by_network: HashMap<(&str, &str), Vec<&Endpoint>> = HashMap::default();
        for ep in self.endpoints.values() {
            by_network
                .entry((ep.vpc.as_str(), ep.network.as_str()))
                .or_default()
                .push(ep);
        }
        let mut dividers: HashMap<&str, Vec<String>> = HashMap::default();
        for (vpc, host) in &self.dividers {
            dividers.entry(vpc).or_default().push(host.clone());
        }
        let mut bouncers: HashMap<(&str, &str), Vec<String>> = HashMap::default();
        for (vpc, net, host) in &self.bouncers {
            bouncers.entry((vpc, net)).or_default().push(host.clone());
        }
        let vpcs = self
            .vpcs
            .values()
            .map(|vpc| VpcSpec {
                name: vpc.name.clone(),
                vni: vpc.vni,
                cidr: vpc.cidr,
                dividers: dividers.remove(vpc.name.as_str()).unwrap_or_default(),
                networks: self
                    .networks_of(&vpc.name)
                    .map(|net| {
                        let key = (vpc.name.as_str(), net.name.as_str());
                        let mut endpoints: Vec<EndpointSpec> = by_network
                            .remove(&key)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|ep| EndpointSpec {
                                name: ep.name.clone(),
                                ip: ep.ip,
                                mac: ep.mac,
                                kind: ep.kind,
                                bypass_decap: ep.bypass_decap,
                                host: ep.host.clone(),
                                veth: ep.veth.clone(),
                                backends: ep.backends.clone(),
                                netns: self.netns.get(&(ep.vpc.clone(), ep.name.clone())).cloned(),
                                labels: ep.labels.clone(),
                            })
                            .collect();
                        endpoints.sort_by(|a, b| a.name.cmp(&b.name));
                        NetworkSpec {
                            name: net.name.clone(),
                            cidr: net.cidr,
                            gateway: Some(net.gateway),
                            bouncers: bouncers.remove(&key).unwrap_or_default(),
                            endpoints,
                        }
                    })
                    .collect(),
            })
            .collect();
        Topology {
            scoped_chains: Vec::new(),
            this_host: self.this_host.clone(),
            hosts: self.hosts.values().cloned().collect(),
            vpcs,
            chains: Vec::new(),
            ddos: None,
            rate_limits: None,
            acls: None,
        }
    }
}

/// Inserts one endpoint's backend rows, by name within its VPC.
pub(crate) fn insert_backends(
    tx: &Connection,
    endpoint_id: i64,
    vpc_id: i64,
    backends: &[String],
) -> Result<(), StoreError> {
    const ACTION: &str = "writing backends";
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO endpoint_backends (endpoint_id, backend_id) \
             SELECT ?1, id FROM endpoints WHERE vpc_id = ?2 AND name = ?3",
        )
        .ctx(ACTION)?;
    for backend in backends {
        // Validation saw every backend exist; a miss here means that check and this write
        // disagree, and silently dropping the backend would be worse than failing.
        if stmt
            .execute(params![endpoint_id, vpc_id, backend])
            .ctx(ACTION)?
            != 1
        {
            return Err(StoreError::Corrupt {
                what: "backend reference",
                value: backend.clone(),
            });
        }
    }
    Ok(())
}
