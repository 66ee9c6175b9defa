//! What a write proposes, as its commit guard sees it: the whole configuration the write would
//! leave, loaded on demand, and for writes that change only endpoints of one VPC (`ep add`,
//! `ep del`: the frequent ones) a small neighbourhood of the change that is enough to derive
//! every data-plane entry the change touches. The second is what lets one `ep add` in a store
//! of 100,000 endpoints cost what it changes, not what the store holds.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{
    error::{SqlContext, StoreError},
    model::{Endpoint, Topology},
    state::Filter,
    state::{
        State, load_bouncers, load_dividers, load_hosts, load_networks, load_vpcs, select_endpoints,
    },
};

/// What a write would leave, handed to the commit guard inside the write's transaction.
pub struct Proposal<'a> {
    tx: &'a Connection,
    endpoints: Option<EndpointChange>,
    /// The configuration, when the write already has it in memory (`apply` does).
    known: std::cell::RefCell<Option<Topology>>,
}

impl<'a> Proposal<'a> {
    pub(crate) fn new(
        tx: &'a Connection,
        endpoints: Option<EndpointChange>,
        known: Option<Topology>,
    ) -> Self {
        Self {
            tx,
            endpoints,
            known: std::cell::RefCell::new(known),
        }
    }

    /// The whole configuration the write leaves: loaded now (it costs what the store holds),
    /// unless the write knew it already, which it then hands over (the first call only).
    pub fn topology(&self) -> Result<Topology, StoreError> {
        match self.known.borrow_mut().take() {
            Some(topology) => Ok(topology),
            None => Ok(State::load(self.tx)?.0.to_topology()),
        }
    }

    /// Every VPC's ACL as the write leaves them.
    pub fn acls(&self) -> Result<Vec<crate::acl::AclState>, StoreError> {
        crate::acl::load_acls(self.tx)
    }

    /// When the write changed only endpoints of one VPC: which, and their neighbourhood.
    pub fn endpoint_change(&self) -> Option<&EndpointChange> {
        self.endpoints.as_ref()
    }
}

/// A write that changed only endpoints of one VPC (added, removed, or changed in place).
///
/// [`EndpointChange::context`] is a partial configuration, faithful for everything the changed
/// endpoints take part in: it has every host (and which one is this host), the VPC with all its
/// networks, bouncers and dividers, and of the VPC's endpoints only
/// - the changed endpoints as they are after the write;
/// - for every host of a changed endpoint (before or after), one endpoint it still hosts in
///   the VPC, if any (so the host's role in the VPC is what the whole configuration says);
/// - for every network of a changed endpoint, one endpoint this host still hosts in it, if any
///   (so whether this host needs the network is too).
///
/// Whatever is derived from the context for the changed endpoints, their hosts' membership of
/// the VPC and their networks is what the whole configuration implies; nothing else is.
#[derive(Debug, Clone)]
pub struct EndpointChange {
    pub vpc: String,
    /// The changed endpoints as they were before the write (removed or changed ones).
    pub before: Vec<Endpoint>,
    /// The changed endpoints as they are after it (added or changed ones).
    pub after: Vec<Endpoint>,
    pub context: Topology,
    /// An upper bound on the endpoints in the whole store after the write: no host's maps can
    /// hold more.
    pub endpoints_at_most: usize,
    /// This host's endpoints after the write that have a veth, as (VPC, endpoint, veth): what
    /// the data plane checks for endpoints waiting for their veth.
    pub local_veths: Vec<(String, String, String)>,
}

impl EndpointChange {
    /// Gathers the neighbourhood of a change inside its transaction, after the write.
    pub(crate) fn gather(
        tx: &Connection,
        vpc: &str,
        before: Vec<Endpoint>,
        after: Vec<Endpoint>,
    ) -> Result<Self, StoreError> {
        const ACTION: &str = "reading what an endpoint change touches";
        let mut state = State::default();
        let mut host_ids = std::collections::HashMap::new();
        let mut this_host_id = None;
        for (id, host, local) in load_hosts(tx)? {
            if local {
                state.this_host = Some(host.name.clone());
                this_host_id = Some(id);
            }
            host_ids.insert(host.name.clone(), id);
            state.hosts.insert(host.name.clone(), host);
        }
        let Some((vpc_id, vpc_row)) = load_vpcs(tx, Some(vpc))?.into_iter().next() else {
            return Err(StoreError::Corrupt {
                what: "VPC of a changed endpoint",
                value: vpc.to_owned(),
            });
        };
        state.vpcs.insert(vpc.to_owned(), vpc_row);
        let mut network_ids = std::collections::HashMap::new();
        for (id, net) in load_networks(tx, Filter::Vpc(vpc))? {
            network_ids.insert(net.name.clone(), id);
            state
                .networks
                .insert((vpc.to_owned(), net.name.clone()), net);
        }
        state.bouncers = load_bouncers(tx, None)?
            .into_iter()
            .filter(|(v, ..)| v == vpc)
            .collect();
        state.dividers = load_dividers(tx, Some(vpc))?.into_iter().collect();

        let changed = before.iter().chain(&after);
        let hosts: BTreeSet<&str> = changed.clone().map(|ep| ep.host.as_str()).collect();
        let networks: BTreeSet<&str> = changed.map(|ep| ep.network.as_str()).collect();
        let mut witnesses = BTreeSet::new();
        let first = |sql: &str, a: i64, b: i64| {
            tx.prepare_cached(sql)
                .and_then(|mut stmt| {
                    stmt.query_row(params![a, b], |r| r.get::<_, i64>(0))
                        .optional()
                })
                .ctx(ACTION)
        };
        for host in hosts {
            let Some(&host_id) = host_ids.get(host) else {
                continue;
            };
            let sql = "SELECT e.id FROM endpoints e WHERE e.host_id = ?1 AND e.network_id IN \
                       (SELECT id FROM networks WHERE vpc_id = ?2) LIMIT 1";
            witnesses.extend(first(sql, host_id, vpc_id)?);
        }
        if let Some(me) = this_host_id {
            for network in networks {
                let Some(&network_id) = network_ids.get(network) else {
                    continue;
                };
                let sql = "SELECT id FROM endpoints WHERE host_id = ?1 AND network_id = ?2 LIMIT 1";
                witnesses.extend(first(sql, me, network_id)?);
            }
        }
        for ep in &after {
            state
                .endpoints
                .insert((ep.vpc.clone(), ep.name.clone()), ep.clone());
        }
        for id in witnesses {
            for (_, ep) in select_endpoints(tx, "WHERE e.id = ?1", [id])? {
                state
                    .endpoints
                    .entry((ep.vpc.clone(), ep.name.clone()))
                    .or_insert(ep);
            }
        }

        let local_veths = match this_host_id {
            None => Vec::new(),
            Some(me) => {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT v.name, e.name, e.veth FROM endpoints e \
                         JOIN vpcs v ON v.id = e.vpc_id \
                         WHERE e.host_id = ?1 AND e.veth IS NOT NULL AND e.kind <> 'scaled'",
                    )
                    .ctx(ACTION)?;
                let rows = stmt
                    .query_map([me], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .ctx(ACTION)?;
                rows.collect::<Result<_, _>>().ctx(ACTION)?
            }
        };
        Ok(Self {
            vpc: vpc.to_owned(),
            before,
            after,
            context: state.to_topology(),
            endpoints_at_most: endpoints_at_most(tx)?,
            local_veths,
        })
    }
}

/// The largest row id bounds the count (ids are never below 1 nor shared) and costs one probe;
/// the count itself, a scan, only when that bound is above the most a data plane holds.
fn endpoints_at_most(tx: &Connection) -> Result<usize, StoreError> {
    const ACTION: &str = "counting endpoints";
    let max_id: Option<i64> = tx
        .query_row("SELECT MAX(id) FROM endpoints", [], |r| r.get(0))
        .ctx(ACTION)?;
    let bound = max_id.unwrap_or(0).max(0) as usize;
    if bound <= crate::validate::MAX_ENDPOINTS {
        return Ok(bound);
    }
    let count: i64 = tx
        .query_row("SELECT COUNT(*) FROM endpoints", [], |r| r.get(0))
        .ctx(ACTION)?;
    Ok(count as usize)
}
