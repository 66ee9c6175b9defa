//! Writing the difference between two states, and the report of what changed.
//!
//! Objects are identified by name (endpoints and networks by name within their VPC). A changed
//! row is deleted and inserted again under the same id: that way two objects may swap a unique
//! value (a VNI, an IP, a veth) within one apply, which in-place UPDATEs cannot do since SQLite
//! checks UNIQUE per statement. References survive because the foreign keys are deferred to
//! the commit, by which time the row is back.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::{
    error::{Kind, SqlContext, StoreError},
    model::{Endpoint, Host, Network, Vpc},
    state::{EpKey, Ids, State, insert_backends},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// One object created, changed or removed. `name` is qualified: `blue` (VPC), `blue/web`
/// (network), `blue/web1` (endpoint, unique per VPC), `blue/web:gw1` (bouncer), `blue:gw1`
/// (divider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub action: Action,
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.action {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
        };
        write!(f, "{sign} {} {}", self.kind, self.name)
    }
}

/// What a write did (or, from `plan`, would do), in the order it was done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub changes: Vec<Change>,
}

impl ApplyReport {
    /// Nothing changed: the store already was what the document says.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn count(&self, kind: Kind, action: Action) -> usize {
        self.changes
            .iter()
            .filter(|c| c.kind == kind && c.action == action)
            .count()
    }

    pub(crate) fn push(&mut self, action: Action, kind: Kind, name: impl Into<String>) {
        self.changes.push(Change {
            action,
            kind,
            name: name.into(),
        });
    }

    /// `2 created, 1 changed, 0 removed`.
    pub fn summary(&self) -> String {
        let count = |action| self.changes.iter().filter(|c| c.action == action).count();
        format!(
            "{} created, {} changed, {} removed",
            count(Action::Create),
            count(Action::Update),
            count(Action::Delete)
        )
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        write!(f, "{}", self.summary())
    }
}

/// Keys of `old` and `new` split into (deleted, changed, created), each in key order.
fn split<'a, K: Ord, V: PartialEq>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
    same: impl Fn(&K, &V, &V) -> bool,
) -> (Vec<&'a K>, Vec<&'a K>, Vec<&'a K>) {
    let deleted = old.keys().filter(|k| !new.contains_key(k)).collect();
    let changed = new
        .iter()
        .filter(|(k, v)| old.get(k).is_some_and(|o| !same(k, o, v)))
        .map(|(k, _)| k)
        .collect();
    let created = new.keys().filter(|k| !old.contains_key(k)).collect();
    (deleted, changed, created)
}

fn delete_by_id(tx: &Connection, table: &'static str, id: i64) -> Result<(), StoreError> {
    // `table` is one of our constants, never user input.
    tx.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))
        .and_then(|mut stmt| stmt.execute([id]))
        .ctx("deleting a row")?;
    Ok(())
}

pub(crate) fn insert_host(
    tx: &Connection,
    id: Option<i64>,
    host: &Host,
    local: bool,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO hosts (id, name, ip, mac, interface, local) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            host.name,
            host.ip.to_string(),
            host.mac.to_string(),
            host.interface,
            local
        ])
    })
    .ctx("writing a host")?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn insert_vpc(tx: &Connection, id: Option<i64>, vpc: &Vpc) -> Result<i64, StoreError> {
    tx.prepare_cached("INSERT INTO vpcs (id, name, vni, cidr) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut stmt| stmt.execute(params![id, vpc.name, vpc.vni, vpc.cidr.to_string()]))
        .ctx("writing a VPC")?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn insert_network(
    tx: &Connection,
    id: Option<i64>,
    vpc_id: i64,
    net: &Network,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO networks (id, vpc_id, name, cidr, gateway) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id,
            vpc_id,
            net.name,
            net.cidr.to_string(),
            net.gateway.to_string()
        ])
    })
    .ctx("writing a network")?;
    Ok(tx.last_insert_rowid())
}

#[derive(Clone, Copy)]
pub(crate) struct EndpointRefs {
    pub vpc_id: i64,
    pub network_id: i64,
    pub host_id: i64,
}

/// Writes endpoint rows `(id, refs, endpoint)`, many to a statement: at 100,000 endpoints,
/// stepping one statement a row costs as much as SQLite's own work for it. A row without an id
/// gets SQLite's next one.
fn insert_endpoints(
    tx: &Connection,
    rows: &[(Option<i64>, EndpointRefs, &Endpoint)],
) -> Result<(), StoreError> {
    const PER_STATEMENT: usize = 64; // 640 parameters, far below SQLite's limit
    for chunk in rows.chunks(PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO endpoints (id, vpc_id, network_id, name, ip, mac, kind, bypass_decap, \
             host_id, veth, labels) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let texts: Vec<(String, String, &str, String)> = chunk
            .iter()
            .map(|(_, _, ep)| {
                (
                    ep.ip.to_string(),
                    ep.mac.to_string(),
                    ep.kind.as_str(),
                    ep.labels.join(","),
                )
            })
            .collect();
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 11);
        for ((id, refs, ep), (ip, mac, kind, labels)) in chunk.iter().zip(&texts) {
            params.extend([
                id as &dyn rusqlite::ToSql,
                &refs.vpc_id,
                &refs.network_id,
                &ep.name,
                ip,
                mac,
                kind,
                &ep.bypass_decap,
                &refs.host_id,
                &ep.veth,
                labels,
            ]);
        }
        tx.prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(params.as_slice()))
            .ctx("writing endpoints")?;
    }
    Ok(())
}

/// Writes one endpoint row (under `id`, or SQLite's next); returns its id.
pub(crate) fn insert_endpoint(
    tx: &Connection,
    id: Option<i64>,
    refs: &EndpointRefs,
    ep: &Endpoint,
) -> Result<i64, StoreError> {
    insert_endpoints(tx, &[(id, *refs, ep)])?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn insert_pair(
    tx: &Connection,
    table: &'static str,
    columns: &'static str,
    a: i64,
    b: i64,
) -> Result<(), StoreError> {
    // `table` and `columns` are our constants, never user input.
    tx.prepare_cached(&format!("INSERT INTO {table} ({columns}) VALUES (?1, ?2)"))
        .and_then(|mut stmt| stmt.execute([a, b]))
        .ctx("writing an assignment")?;
    Ok(())
}

fn delete_pair(
    tx: &Connection,
    table: &'static str,
    where_: &'static str,
    a: i64,
    b: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(&format!("DELETE FROM {table} WHERE {where_}"))
        .and_then(|mut stmt| stmt.execute([a, b]))
        .ctx("deleting an assignment")?;
    Ok(())
}

/// Looks an id up that the write itself guarantees (validated, or inserted just before).
fn id_of<K: std::hash::Hash + Eq + fmt::Debug>(
    map: &rustc_hash::FxHashMap<K, i64>,
    key: &K,
) -> Result<i64, StoreError> {
    map.get(key).copied().ok_or_else(|| StoreError::Corrupt {
        what: "reference during apply",
        value: format!("{key:?}"),
    })
}

/// Brings the database from `current` (loaded with `ids`) to `desired` (validated).
pub(crate) fn write_diff(
    tx: &Connection,
    current: &State,
    ids: &mut Ids,
    desired: &State,
) -> Result<ApplyReport, StoreError> {
    let mut report = ApplyReport::default();
    let is_local = |state: &State, name: &str| state.this_host.as_deref() == Some(name);

    let (hosts_gone, hosts_changed, hosts_new) =
        split(&current.hosts, &desired.hosts, |name, old, new| {
            old == new && is_local(current, name) == is_local(desired, name)
        });
    let (vpcs_gone, vpcs_changed, vpcs_new) = split(&current.vpcs, &desired.vpcs, |_, a, b| a == b);
    let (nets_gone, nets_changed, nets_new) =
        split(&current.networks, &desired.networks, |_, a, b| a == b);
    let (eps_gone, eps_changed, eps_new) =
        split(&current.endpoints, &desired.endpoints, |_, a, b| a == b);
    let dividers_gone: Vec<_> = current.dividers.difference(&desired.dividers).collect();
    let dividers_new: Vec<_> = desired.dividers.difference(&current.dividers).collect();
    let bouncers_gone: Vec<_> = current.bouncers.difference(&desired.bouncers).collect();
    let bouncers_new: Vec<_> = desired.bouncers.difference(&current.bouncers).collect();

    // Removals, dependents first.
    for (keys, sql) in [
        // A removed endpoint leaves every backend list (those that named it changed too).
        (
            &eps_gone,
            "DELETE FROM endpoint_backends WHERE endpoint_id = ?1 OR backend_id = ?1",
        ),
        // A replaced one gets its own list back below, and stays in the lists of others.
        (
            &eps_changed,
            "DELETE FROM endpoint_backends WHERE endpoint_id = ?1",
        ),
    ] {
        for key in keys {
            let id = id_of(&ids.endpoints, key)?;
            tx.prepare_cached(sql)
                .and_then(|mut stmt| stmt.execute([id]))
                .ctx("deleting backends")?;
            delete_by_id(tx, "endpoints", id)?;
        }
    }
    for (vpc, net, host) in &bouncers_gone {
        let net_id = id_of(&ids.networks, &(vpc.clone(), net.clone()))?;
        let host_id = id_of(&ids.hosts, host)?;
        delete_pair(
            tx,
            "network_bouncers",
            "network_id = ?1 AND host_id = ?2",
            net_id,
            host_id,
        )?;
        report.push(Action::Delete, Kind::Bouncer, format!("{vpc}/{net}:{host}"));
    }
    for key in nets_gone.iter().chain(&nets_changed) {
        delete_by_id(tx, "networks", id_of(&ids.networks, key)?)?;
    }
    for (vpc, host) in &dividers_gone {
        let vpc_id = id_of(&ids.vpcs, vpc)?;
        let host_id = id_of(&ids.hosts, host)?;
        delete_pair(
            tx,
            "vpc_dividers",
            "vpc_id = ?1 AND host_id = ?2",
            vpc_id,
            host_id,
        )?;
        report.push(Action::Delete, Kind::Divider, format!("{vpc}:{host}"));
    }
    for key in vpcs_gone.iter().chain(&vpcs_changed) {
        delete_by_id(tx, "vpcs", id_of(&ids.vpcs, key)?)?;
    }
    for key in hosts_gone.iter().chain(&hosts_changed) {
        delete_by_id(tx, "hosts", id_of(&ids.hosts, key)?)?;
    }
    for (vpc, name) in &eps_gone {
        report.push(Action::Delete, Kind::Endpoint, format!("{vpc}/{name}"));
    }
    for (vpc, name) in &nets_gone {
        report.push(Action::Delete, Kind::Network, format!("{vpc}/{name}"));
    }
    for name in &vpcs_gone {
        report.push(Action::Delete, Kind::Vpc, name.as_str());
    }
    for name in &hosts_gone {
        report.push(Action::Delete, Kind::Host, name.as_str());
    }

    // Additions and replacements, referenced objects first.
    for (keys, action) in [
        (&hosts_changed, Action::Update),
        (&hosts_new, Action::Create),
    ] {
        for &name in keys {
            let old_id = ids.hosts.get(name).copied();
            let host = &desired.hosts[name];
            let id = insert_host(tx, old_id, host, is_local(desired, name))?;
            ids.hosts.insert(name.clone(), id);
            if action == Action::Create || current.hosts.get(name) != Some(host) {
                report.push(action, Kind::Host, name.as_str());
            }
        }
    }
    if current.this_host != desired.this_host {
        let action = match (&current.this_host, &desired.this_host) {
            (None, _) => Action::Create,
            (_, None) => Action::Delete,
            _ => Action::Update,
        };
        let name = desired.this_host.as_ref().or(current.this_host.as_ref());
        report.push(action, Kind::ThisHost, name.cloned().unwrap_or_default());
    }
    for (keys, action) in [(&vpcs_changed, Action::Update), (&vpcs_new, Action::Create)] {
        for &name in keys {
            let id = insert_vpc(tx, ids.vpcs.get(name).copied(), &desired.vpcs[name])?;
            ids.vpcs.insert(name.clone(), id);
            report.push(action, Kind::Vpc, name.as_str());
        }
    }
    for (vpc, host) in &dividers_new {
        let vpc_id = id_of(&ids.vpcs, vpc)?;
        let host_id = id_of(&ids.hosts, host)?;
        insert_pair(tx, "vpc_dividers", "vpc_id, host_id", vpc_id, host_id)?;
        report.push(Action::Create, Kind::Divider, format!("{vpc}:{host}"));
    }
    for (keys, action) in [(&nets_changed, Action::Update), (&nets_new, Action::Create)] {
        for &key in keys {
            let vpc_id = id_of(&ids.vpcs, &key.0)?;
            let old_id = ids.networks.get(key).copied();
            let id = insert_network(tx, old_id, vpc_id, &desired.networks[key])?;
            ids.networks.insert(key.clone(), id);
            report.push(action, Kind::Network, format!("{}/{}", key.0, key.1));
        }
    }
    for (vpc, net, host) in &bouncers_new {
        let net_id = id_of(&ids.networks, &(vpc.clone(), net.clone()))?;
        let host_id = id_of(&ids.hosts, host)?;
        insert_pair(
            tx,
            "network_bouncers",
            "network_id, host_id",
            net_id,
            host_id,
        )?;
        report.push(Action::Create, Kind::Bouncer, format!("{vpc}/{net}:{host}"));
    }
    let mut with_backends = Vec::new();
    // New endpoints get ids after every id in use, the rewritten endpoints' included (their
    // rows are deleted just now and come back below under the same ids), so that the rows can
    // be written many to a statement.
    let in_table: i64 = tx
        .query_row("SELECT COALESCE(MAX(id), 0) FROM endpoints", [], |r| {
            r.get(0)
        })
        .ctx("numbering new endpoints")?;
    let mut next_id = 1 + ids.endpoints.values().copied().fold(in_table, i64::max);
    let mut rows = Vec::with_capacity(eps_changed.len() + eps_new.len());
    for (keys, action) in [(&eps_changed, Action::Update), (&eps_new, Action::Create)] {
        for &key in keys {
            let ep = &desired.endpoints[key];
            let refs = EndpointRefs {
                vpc_id: id_of(&ids.vpcs, &ep.vpc)?,
                network_id: id_of(&ids.networks, &(ep.vpc.clone(), ep.network.clone()))?,
                host_id: id_of(&ids.hosts, &ep.host)?,
            };
            let id = match ids.endpoints.get(key) {
                Some(id) => *id,
                None => {
                    next_id += 1;
                    next_id - 1
                }
            };
            ids.endpoints.insert(key.clone(), id);
            if !ep.backends.is_empty() {
                with_backends.push((id, refs.vpc_id, ep));
            }
            rows.push((Some(id), refs, ep));
            report.push(action, Kind::Endpoint, format!("{}/{}", key.0, key.1));
        }
    }
    insert_endpoints(tx, &rows)?;
    // Backends last: they may name endpoints created just above.
    for (id, vpc_id, ep) in with_backends {
        insert_backends(tx, id, vpc_id, &ep.backends)?;
    }
    // The veth pairs mizar made: a rewritten endpoint lost its record with its row.
    let rewritten: BTreeSet<&EpKey> = eps_changed.iter().chain(&eps_new).copied().collect();
    for (key, netns) in &desired.netns {
        let recorded = current.netns.get(key);
        if recorded == Some(netns) && !rewritten.contains(key) {
            continue;
        }
        let id = id_of(&ids.endpoints, key)?;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO endpoint_netns (endpoint_id, netns) VALUES (?1, ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![id, netns]))
        .ctx("recording an endpoint's network namespace")?;
        if recorded != Some(netns) && !rewritten.contains(key) {
            report.push(
                Action::Update,
                Kind::Endpoint,
                format!("{}/{}", key.0, key.1),
            );
        }
    }
    for key in current.netns.keys() {
        if desired.netns.contains_key(key) || !desired.endpoints.contains_key(key) {
            continue; // kept, or gone with its endpoint
        }
        let id = id_of(&ids.endpoints, key)?;
        tx.prepare_cached("DELETE FROM endpoint_netns WHERE endpoint_id = ?1")
            .and_then(|mut stmt| stmt.execute([id]))
            .ctx("forgetting an endpoint's network namespace")?;
        report.push(
            Action::Update,
            Kind::Endpoint,
            format!("{}/{}", key.0, key.1),
        );
    }
    Ok(report)
}
