//! The store: one SQLite connection, a typed API per noun, and whole-configuration snapshot,
//! export and apply.
//!
//! Every write is one IMMEDIATE transaction: it takes the database's write lock before reading
//! what it validates against, so two `mizar` commands at once are serialised (the second waits
//! up to [`BUSY_TIMEOUT`](crate::schema::BUSY_TIMEOUT)) and neither can validate against a state
//! the other is about to change. Reads run in a deferred transaction: a consistent view that
//! never waits for a writer (WAL).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

use crate::{
    apply::{
        Action, ApplyReport, EndpointRefs, insert_endpoint, insert_host, insert_network,
        insert_pair, insert_vpc, write_diff,
    },
    error::{Kind, Names, SqlContext, StoreError, endpoint_subject, network_subject},
    model::{Endpoint, EndpointKind, Host, Network, Topology, Vpc},
    proposal::{EndpointChange, Proposal},
    schema,
    state::{
        Filter, State, insert_backends, load_bouncers, load_dividers, load_endpoints, load_hosts,
        load_netns, load_networks, load_vpcs, parse, select_endpoints,
    },
    validate::{
        MAX_BOUNCERS, MAX_DIVIDERS, check_backend, check_endpoint, check_endpoint_ip, check_host,
        check_interface, check_network, check_no_overlap, check_veth_present, check_vpc, too_many,
        unknown_endpoint, unknown_host, unknown_network, unknown_vpc, validate_state,
    },
};

/// A host assigned as bouncer of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bouncer {
    pub vpc: String,
    pub network: String,
    pub host: String,
}

/// A host assigned as divider of a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divider {
    pub vpc: String,
    pub host: String,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    guard: Option<CommitGuard>,
    dry_run: bool,
}

/// Why a [`CommitGuard`] refused a write.
pub type Refusal = Box<dyn std::error::Error + Send + Sync>;

/// Called inside every write transaction, after the write and before its commit, with what the
/// write would leave: an error rolls the write back (see [`Store::set_commit_guard`]).
pub type CommitGuard = Box<dyn FnMut(&Proposal<'_>) -> std::result::Result<(), Refusal>>;

/// Endpoints of one VPC that a write changed: (VPC, as they were, as they are).
type Touched = (String, Vec<Endpoint>, Vec<Endpoint>);

type Result<T> = std::result::Result<T, StoreError>;

fn already_exists(kind: Kind, name: &str, scope: String) -> StoreError {
    StoreError::AlreadyExists {
        kind,
        name: name.to_owned(),
        scope,
        fix: match kind {
            Kind::Host => "pick another name, or change the existing one with mizar host set",
            Kind::Vpc => "pick another name, or change the existing one with mizar vpc set",
            Kind::Network => "pick another name, or change the existing one with mizar net set",
            Kind::Endpoint => "pick another name, or change the existing one with mizar ep set",
            _ => "pick another name",
        },
    }
}

/// Every value of a one-column query.
fn strings(tx: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<String>> {
    const ACTION: &str = "listing names";
    let mut stmt = tx.prepare_cached(sql).ctx(ACTION)?;
    let rows = stmt
        .query_map(params, |row| row.get::<_, String>(0))
        .ctx(ACTION)?;
    rows.collect::<std::result::Result<_, _>>().ctx(ACTION)
}

/// Names from a one-column query, for messages (only the first few are kept).
fn names(tx: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Names> {
    Ok(strings(tx, sql, params)?.into_iter().collect())
}

fn vpc_row(tx: &Connection, name: &str, used_by: impl FnOnce() -> String) -> Result<(i64, Vpc)> {
    match load_vpcs(tx, Some(name))?.pop() {
        Some(row) => Ok(row),
        None => Err(unknown_vpc(
            name,
            used_by(),
            names(tx, "SELECT name FROM vpcs ORDER BY name", [])?,
        )),
    }
}

/// Removes the function rules of hosts, VPCs and endpoints that the transaction removed. Their
/// tables have no ON DELETE action because apply replaces a changed object under the same id
/// (delete, then insert), which must not take its rules along; an object that is really gone
/// leaves rows no object owns, removed here, before the commit checks the foreign keys.
fn sweep_orphans(tx: &Connection) -> Result<()> {
    tx.execute_batch(
        "DELETE FROM chain_links WHERE host_id NOT IN (SELECT id FROM hosts);
         DELETE FROM ddos_blocks WHERE vpc_id IS NOT NULL AND vpc_id NOT IN (SELECT id FROM vpcs);
         DELETE FROM ddos_limits WHERE vpc_id IS NOT NULL AND vpc_id NOT IN (SELECT id FROM vpcs);
         DELETE FROM ddos_syn_limits WHERE vpc_id IS NOT NULL AND vpc_id NOT IN (SELECT id FROM vpcs);
         DELETE FROM rate_limits WHERE vpc_id NOT IN (SELECT id FROM vpcs)
             OR (endpoint_id IS NOT NULL AND endpoint_id NOT IN (SELECT id FROM endpoints));
         DELETE FROM acl_rules WHERE vpc_id NOT IN (SELECT id FROM vpcs);
         DELETE FROM scoped_chain_links WHERE vpc_id NOT IN (SELECT id FROM vpcs)
             OR (endpoint_id IS NOT NULL AND endpoint_id NOT IN (SELECT id FROM endpoints));
         DELETE FROM acl_vpcs WHERE vpc_id NOT IN (SELECT id FROM vpcs);",
    )
    .ctx("removing the rules of removed objects")
}

/// An endpoint's id, refusing an unknown one with the names that exist.
pub(crate) fn endpoint_id(tx: &Connection, vpc: &str, name: &str) -> Result<i64> {
    let (vpc_id, _) = vpc_row(tx, vpc, String::new)?;
    match endpoint_row(tx, vpc_id, name)? {
        Some((id, _)) => Ok(id),
        None => Err(endpoint_not_found(tx, vpc, vpc_id, name)?),
    }
}

/// A VPC's id, refusing an unknown one with the names that exist.
pub(crate) fn vpc_id(tx: &Connection, name: &str, used_by: impl FnOnce() -> String) -> Result<i64> {
    Ok(vpc_row(tx, name, used_by)?.0)
}

fn network_row(
    tx: &Connection,
    vpc: &str,
    name: &str,
    used_by: impl FnOnce() -> String,
) -> Result<(i64, Network)> {
    match load_networks(tx, Filter::One(vpc, name))?.pop() {
        Some(row) => Ok(row),
        None => {
            // Say which VPC is missing before which network.
            let (vpc_id, _) = vpc_row(tx, vpc, String::new)?;
            Err(unknown_network(
                vpc,
                name,
                used_by(),
                names(
                    tx,
                    "SELECT name FROM networks WHERE vpc_id = ?1 ORDER BY name",
                    [vpc_id],
                )?,
            ))
        }
    }
}

/// (id, is this host) of a host.
fn host_row(tx: &Connection, name: &str, used_by: impl FnOnce() -> String) -> Result<(i64, bool)> {
    let row = tx
        .prepare_cached("SELECT id, local FROM hosts WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .ctx("looking a host up")?;
    match row {
        Some(row) => Ok(row),
        None => Err(unknown_host(
            name,
            used_by(),
            names(tx, "SELECT name FROM hosts ORDER BY name", [])?,
        )),
    }
}

/// (id, type) of an endpoint.
fn endpoint_row(tx: &Connection, vpc_id: i64, name: &str) -> Result<Option<(i64, EndpointKind)>> {
    let row = tx
        .prepare_cached("SELECT id, kind FROM endpoints WHERE vpc_id = ?1 AND name = ?2")
        .and_then(|mut stmt| {
            stmt.query_row(params![vpc_id, name], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
        })
        .ctx("looking an endpoint up")?;
    row.map(|(id, kind)| Ok((id, parse("endpoint type", kind)?)))
        .transpose()
}

fn endpoint_not_found(tx: &Connection, vpc: &str, vpc_id: i64, name: &str) -> Result<StoreError> {
    let known = names(
        tx,
        "SELECT name FROM endpoints WHERE vpc_id = ?1 ORDER BY name",
        [vpc_id],
    )?;
    Ok(unknown_endpoint(vpc, name, known))
}

/// "networks web, db", "endpoints a, b and 3 more": the users of an object, for InUse.
fn describe(what: &str, names: &[String]) -> Option<String> {
    (!names.is_empty()).then(|| format!("{what} {}", names.iter().cloned().collect::<Names>()))
}

/// Removes endpoints (by id) and their backend rows; scaled endpoints that keep existing but
/// lose a backend are reported as changed.
fn remove_endpoints(
    tx: &Connection,
    targets: &[(i64, String, String)],
    report: &mut ApplyReport,
) -> Result<()> {
    const ACTION: &str = "deleting endpoints";
    let doomed: BTreeSet<i64> = targets.iter().map(|(id, ..)| *id).collect();
    let mut losers = BTreeSet::new();
    for (id, ..) in targets {
        let mut stmt = tx
            .prepare_cached(
                "SELECT o.id, v.name, o.name FROM endpoint_backends b \
                 JOIN endpoints o ON o.id = b.endpoint_id JOIN vpcs v ON v.id = o.vpc_id \
                 WHERE b.backend_id = ?1",
            )
            .ctx(ACTION)?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .ctx(ACTION)?;
        for row in rows {
            let (owner, vpc, name) = row.ctx(ACTION)?;
            if !doomed.contains(&owner) {
                losers.insert(format!("{vpc}/{name}"));
            }
        }
    }
    for (id, vpc, name) in targets {
        tx.prepare_cached(
            "DELETE FROM endpoint_backends WHERE endpoint_id = ?1 OR backend_id = ?1",
        )
        .and_then(|mut stmt| stmt.execute([id]))
        .ctx(ACTION)?;
        tx.prepare_cached("DELETE FROM endpoints WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute([id]))
            .ctx(ACTION)?;
        report.push(Action::Delete, Kind::Endpoint, format!("{vpc}/{name}"));
    }
    for name in losers {
        report.push(Action::Update, Kind::Endpoint, name);
    }
    Ok(())
}

/// (id, VPC name, name) of endpoints chosen by a WHERE clause over `e` with one parameter.
fn endpoint_ids(tx: &Connection, where_: &str, param: i64) -> Result<Vec<(i64, String, String)>> {
    const ACTION: &str = "finding endpoints";
    let sql = format!(
        "SELECT e.id, v.name, e.name FROM endpoints e JOIN vpcs v ON v.id = e.vpc_id \
         WHERE {where_} ORDER BY v.name, e.name"
    );
    let mut stmt = tx.prepare_cached(&sql).ctx(ACTION)?;
    let rows = stmt
        .query_map([param], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .ctx(ACTION)?;
    rows.collect::<std::result::Result<_, _>>().ctx(ACTION)
}

fn qualified(rows: &[(i64, String, String)]) -> Vec<String> {
    rows.iter()
        .map(|(_, vpc, name)| format!("{vpc}/{name}"))
        .collect()
}

impl Store {
    /// Opens the database at `path`, creating it (and its directory) if needed, and brings its
    /// schema up to date. A database written by a newer mizar is refused and left untouched.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| StoreError::StateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        schema::prepare(&mut conn, path)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            guard: None,
            dry_run: false,
        })
    }

    /// A private database in memory, for tests.
    pub fn open_in_memory() -> Result<Store> {
        let path = PathBuf::from(":memory:");
        let mut conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        schema::prepare(&mut conn, &path)?;
        Ok(Store {
            conn,
            path,
            guard: None,
            dry_run: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<i64> {
        schema::user_version(&self.conn).ctx("reading the schema version")
    }

    /// A number that changes whenever another connection (another `mizar` command, the
    /// dashboard's changes) commits to the store: a reader can skip re-reading what did not
    /// change. SQLite's `PRAGMA data_version`.
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .ctx("reading the store's data version")
    }

    /// Every later write is checked by `guard` before it commits: whoever must follow the store
    /// (the data plane) computes what the new configuration implies for it and refuses what it
    /// could not take, so the store never runs ahead of it. The guard sees the configuration
    /// inside the write's transaction, so what it approves is exactly what commits.
    pub fn set_commit_guard(&mut self, guard: CommitGuard) {
        self.guard = Some(guard);
    }

    /// With `dry_run`, every write runs, is checked (by the guard too) and reports what it would
    /// do, then is rolled back: nothing changes.
    pub fn set_dry_run(&mut self, dry_run: bool) {
        self.dry_run = dry_run;
    }

    /// Runs `f` in one IMMEDIATE transaction, committed only if `f` succeeds and the commit
    /// guard approves what it leaves (and not at all in a dry run).
    pub(crate) fn write<T>(
        &mut self,
        action: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_endpoints(action, |tx| Ok((f(tx)?, None)))
    }

    /// [`Self::write`] for a write that may change only endpoints of one VPC: `f` says which
    /// (None: it changed something else too), so the guard can look at just those.
    fn write_endpoints<T>(
        &mut self,
        action: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<(T, Option<Touched>)>,
    ) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(action)?;
        let (out, touched) = f(&tx)?;
        let change = match touched {
            Some((vpc, before, after)) if self.guard.is_some() => {
                Some(EndpointChange::gather(&tx, &vpc, before, after)?)
            }
            _ => None,
        };
        Self::check_and_commit(&mut self.guard, self.dry_run, tx, action, change, None)?;
        Ok(out)
    }

    fn check_and_commit(
        guard: &mut Option<CommitGuard>,
        dry_run: bool,
        tx: Transaction<'_>,
        action: &'static str,
        change: Option<EndpointChange>,
        known: Option<Topology>,
    ) -> Result<()> {
        sweep_orphans(&tx)?;
        if let Some(guard) = guard {
            guard(&Proposal::new(&tx, change, known)).map_err(StoreError::Refused)?;
        }
        if dry_run {
            tx.rollback().ctx(action)
        } else {
            tx.commit().ctx(action)
        }
    }

    /// Runs `f` in a read transaction: everything it reads is one consistent state.
    pub(crate) fn read<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let tx = self.conn.unchecked_transaction().ctx(action)?;
        let out = f(&tx)?;
        tx.finish().ctx(action)?;
        Ok(out)
    }

    // ---- Hosts ----

    pub fn add_host(&mut self, host: &Host) -> Result<()> {
        check_host(host)?;
        self.write("adding a host", |tx| {
            let taken = tx
                .prepare_cached("SELECT name FROM hosts WHERE name = ?1 OR ip = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![host.name, host.ip.to_string()], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()
                })
                .ctx("looking a host up")?;
            match taken {
                Some(other) if other == host.name => {
                    Err(already_exists(Kind::Host, &host.name, String::new()))
                }
                Some(other) => Err(StoreError::HostIpTaken {
                    host: host.name.clone(),
                    ip: host.ip,
                    other,
                }),
                None => insert_host(tx, None, host, false).map(drop),
            }
        })
    }

    /// Makes `name` this host, reached through `interface` (the previous one stops being it).
    pub fn set_this_host(&mut self, name: &str, interface: &str) -> Result<()> {
        check_interface(|| format!("host {name:?}"), interface)?;
        self.write("setting this host", |tx| {
            let (id, _) = host_row(tx, name, || " (this-host)".to_owned())?;
            // Endpoints hosted there become local: each needs its veth.
            let bare = tx
                .prepare_cached(
                    "SELECT v.name, e.name FROM endpoints e JOIN vpcs v ON v.id = e.vpc_id \
                     WHERE e.host_id = ?1 AND e.veth IS NULL AND e.kind <> 'scaled' \
                     ORDER BY v.name, e.name LIMIT 1",
                )
                .and_then(|mut stmt| {
                    stmt.query_row([id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .optional()
                })
                .ctx("checking endpoints")?;
            if let Some((vpc, endpoint)) = bare {
                return Err(StoreError::VethMissing {
                    vpc,
                    endpoint,
                    host: name.to_owned(),
                });
            }
            tx.execute(
                "UPDATE hosts SET local = 0 WHERE local = 1 AND id <> ?1",
                [id],
            )
            .ctx("setting this host")?;
            tx.execute(
                "UPDATE hosts SET local = 1, interface = ?2 WHERE id = ?1",
                params![id, interface],
            )
            .ctx("setting this host")?;
            Ok(())
        })
    }

    /// The host the store belongs to, once set.
    pub fn this_host(&self) -> Result<Option<Host>> {
        Ok(load_hosts(&self.conn)?
            .into_iter()
            .find(|(_, _, local)| *local)
            .map(|(_, host, _)| host))
    }

    pub fn hosts(&self) -> Result<Vec<Host>> {
        Ok(load_hosts(&self.conn)?
            .into_iter()
            .map(|(_, host, _)| host)
            .collect())
    }

    pub fn host(&self, name: &str) -> Result<Host> {
        let hosts = self.hosts()?;
        match hosts.iter().position(|h| h.name == name) {
            Some(i) => Ok(hosts[i].clone()),
            None => Err(unknown_host(
                name,
                String::new(),
                hosts.into_iter().map(|h| h.name).collect(),
            )),
        }
    }

    /// Deletes a host. Refused while it bounces, divides or hosts endpoints, unless `cascade`,
    /// which removes those assignments and endpoints with it.
    pub fn delete_host(&mut self, name: &str, cascade: bool) -> Result<ApplyReport> {
        self.write("deleting a host", |tx| {
            let (id, local) = host_row(tx, name, String::new)?;
            let bounces = strings(
                tx,
                "SELECT v.name || '/' || n.name FROM network_bouncers b \
                 JOIN networks n ON n.id = b.network_id JOIN vpcs v ON v.id = n.vpc_id \
                 WHERE b.host_id = ?1 ORDER BY 1",
                [id],
            )?;
            let divides = strings(
                tx,
                "SELECT v.name FROM vpc_dividers d JOIN vpcs v ON v.id = d.vpc_id \
                 WHERE d.host_id = ?1 ORDER BY 1",
                [id],
            )?;
            let endpoints = endpoint_ids(tx, "e.host_id = ?1", id)?;
            let users: Vec<String> = [
                describe("bouncer assignments of networks", &bounces),
                describe("divider assignments of VPCs", &divides),
                describe("endpoints", &qualified(&endpoints)),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !users.is_empty() && !cascade {
                return Err(StoreError::InUse {
                    kind: Kind::Host,
                    name: name.to_owned(),
                    scope: String::new(),
                    users: users.join("; "),
                });
            }
            let mut report = ApplyReport::default();
            remove_endpoints(tx, &endpoints, &mut report)?;
            for net in bounces {
                report.push(Action::Delete, Kind::Bouncer, format!("{net}:{name}"));
            }
            for vpc in divides {
                report.push(Action::Delete, Kind::Divider, format!("{vpc}:{name}"));
            }
            tx.execute("DELETE FROM network_bouncers WHERE host_id = ?1", [id])
                .ctx("deleting bouncer assignments")?;
            tx.execute("DELETE FROM vpc_dividers WHERE host_id = ?1", [id])
                .ctx("deleting divider assignments")?;
            tx.execute("DELETE FROM hosts WHERE id = ?1", [id])
                .ctx("deleting a host")?;
            report.push(Action::Delete, Kind::Host, name);
            if local {
                report.push(Action::Delete, Kind::ThisHost, name);
            }
            Ok(report)
        })
    }

    // ---- VPCs ----

    pub fn add_vpc(&mut self, vpc: &Vpc) -> Result<()> {
        check_vpc(vpc)?;
        self.write("adding a VPC", |tx| {
            let taken = tx
                .prepare_cached("SELECT name FROM vpcs WHERE name = ?1 OR vni = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![vpc.name, vpc.vni], |r| r.get::<_, String>(0))
                        .optional()
                })
                .ctx("looking a VPC up")?;
            match taken {
                Some(other) if other == vpc.name => {
                    Err(already_exists(Kind::Vpc, &vpc.name, String::new()))
                }
                Some(other) => Err(StoreError::VniTaken {
                    vpc: vpc.name.clone(),
                    vni: vpc.vni,
                    other,
                }),
                None => insert_vpc(tx, None, vpc).map(drop),
            }
        })
    }

    pub fn vpcs(&self) -> Result<Vec<Vpc>> {
        Ok(load_vpcs(&self.conn, None)?
            .into_iter()
            .map(|(_, vpc)| vpc)
            .collect())
    }

    pub fn vpc(&self, name: &str) -> Result<Vpc> {
        self.read("reading a VPC", |tx| Ok(vpc_row(tx, name, String::new)?.1))
    }

    /// Deletes a VPC and its divider assignments. Refused while it has networks, unless
    /// `cascade`, which removes them with their endpoints and bouncer assignments.
    pub fn delete_vpc(&mut self, name: &str, cascade: bool) -> Result<ApplyReport> {
        self.write("deleting a VPC", |tx| {
            let (id, _) = vpc_row(tx, name, String::new)?;
            let networks = load_networks(tx, Filter::Vpc(name))?;
            if !networks.is_empty() && !cascade {
                let endpoints = endpoint_ids(tx, "e.vpc_id = ?1", id)?;
                let mut users = describe(
                    "networks",
                    &networks
                        .iter()
                        .map(|(_, n)| n.name.clone())
                        .collect::<Vec<_>>(),
                )
                .unwrap_or_default();
                if !endpoints.is_empty() {
                    users += &format!(" (with {} endpoints)", endpoints.len());
                }
                return Err(StoreError::InUse {
                    kind: Kind::Vpc,
                    name: name.to_owned(),
                    scope: String::new(),
                    users,
                });
            }
            let mut report = ApplyReport::default();
            // All endpoints at once: backends never cross VPCs, so no scaled endpoint is
            // reported as changed just before it goes too.
            remove_endpoints(tx, &endpoint_ids(tx, "e.vpc_id = ?1", id)?, &mut report)?;
            for (net_id, net) in &networks {
                remove_network(tx, *net_id, net, &mut report)?;
            }
            for (_, host) in load_dividers(tx, Some(name))? {
                report.push(Action::Delete, Kind::Divider, format!("{name}:{host}"));
            }
            tx.execute("DELETE FROM vpc_dividers WHERE vpc_id = ?1", [id])
                .ctx("deleting divider assignments")?;
            tx.execute("DELETE FROM vpcs WHERE id = ?1", [id])
                .ctx("deleting a VPC")?;
            report.push(Action::Delete, Kind::Vpc, name);
            Ok(report)
        })
    }

    // ---- Networks ----

    pub fn add_network(&mut self, net: &Network) -> Result<()> {
        self.write("adding a network", |tx| {
            let (vpc_id, vpc) =
                vpc_row(tx, &net.vpc, || format!(" (VPC of network {:?})", net.name))?;
            check_network(&vpc, net)?;
            let siblings = load_networks(tx, Filter::Vpc(&net.vpc))?;
            if siblings.iter().any(|(_, n)| n.name == net.name) {
                return Err(already_exists(
                    Kind::Network,
                    &net.name,
                    format!(" in VPC {:?}", net.vpc),
                ));
            }
            check_no_overlap(net, siblings.iter().map(|(_, n)| n))?;
            insert_network(tx, None, vpc_id, net).map(drop)
        })
    }

    /// Networks of one VPC, or of all, in (VPC, name) order.
    pub fn networks(&self, vpc: Option<&str>) -> Result<Vec<Network>> {
        self.read("listing networks", |tx| {
            if let Some(vpc) = vpc {
                vpc_row(tx, vpc, String::new)?;
            }
            let filter = vpc.map_or(Filter::All, Filter::Vpc);
            Ok(load_networks(tx, filter)?
                .into_iter()
                .map(|(_, n)| n)
                .collect())
        })
    }

    pub fn network(&self, vpc: &str, name: &str) -> Result<Network> {
        self.read("reading a network", |tx| {
            Ok(network_row(tx, vpc, name, String::new)?.1)
        })
    }

    /// The network of `vpc` that contains `ip`: where an endpoint with that IP belongs.
    pub fn network_for(&self, vpc: &str, ip: Ipv4Addr) -> Result<Network> {
        self.read("finding a network", |tx| {
            vpc_row(tx, vpc, String::new)?;
            load_networks(tx, Filter::Vpc(vpc))?
                .into_iter()
                .map(|(_, n)| n)
                .find(|n| n.cidr.contains(&ip))
                .ok_or_else(|| StoreError::NoNetworkFor {
                    vpc: vpc.to_owned(),
                    ip,
                })
        })
    }

    /// Deletes a network and its bouncer assignments. Refused while it has endpoints, unless
    /// `cascade`, which removes them too.
    pub fn delete_network(&mut self, vpc: &str, name: &str, cascade: bool) -> Result<ApplyReport> {
        self.write("deleting a network", |tx| {
            let (id, net) = network_row(tx, vpc, name, String::new)?;
            let endpoints = endpoint_ids(tx, "e.network_id = ?1", id)?;
            if !endpoints.is_empty() && !cascade {
                return Err(StoreError::InUse {
                    kind: Kind::Network,
                    name: name.to_owned(),
                    scope: format!(" in VPC {vpc:?}"),
                    users: describe("endpoints", &qualified(&endpoints)).unwrap_or_default(),
                });
            }
            let mut report = ApplyReport::default();
            remove_network(tx, id, &net, &mut report)?;
            Ok(report)
        })
    }

    // ---- Bouncers and dividers ----

    pub fn add_bouncer(&mut self, vpc: &str, network: &str, host: &str) -> Result<()> {
        self.write("adding a bouncer", |tx| {
            let subject = network_subject(vpc, network);
            let (net_id, _) = network_row(tx, vpc, network, String::new)?;
            let (host_id, _) = host_row(tx, host, || format!(" (bouncer of {subject})"))?;
            let current = load_bouncers(tx, Some((vpc, network)))?;
            if current.iter().any(|(.., h)| h == host) {
                return Err(StoreError::AlreadyExists {
                    kind: Kind::Bouncer,
                    name: host.to_owned(),
                    scope: format!(" of {subject}"),
                    fix: "nothing to add",
                });
            }
            too_many(subject, "bouncers", current.len() + 1, MAX_BOUNCERS)?;
            insert_pair(
                tx,
                "network_bouncers",
                "network_id, host_id",
                net_id,
                host_id,
            )
        })
    }

    pub fn delete_bouncer(&mut self, vpc: &str, network: &str, host: &str) -> Result<()> {
        self.write("deleting a bouncer", |tx| {
            let (net_id, _) = network_row(tx, vpc, network, String::new)?;
            let deleted = tx
                .execute(
                    "DELETE FROM network_bouncers WHERE network_id = ?1 \
                     AND host_id = (SELECT id FROM hosts WHERE name = ?2)",
                    params![net_id, host],
                )
                .ctx("deleting a bouncer")?;
            if deleted == 0 {
                return Err(StoreError::Unknown {
                    kind: Kind::Bouncer,
                    name: host.to_owned(),
                    scope: format!(" of {}", network_subject(vpc, network)),
                    used_by: String::new(),
                    known: load_bouncers(tx, Some((vpc, network)))?
                        .into_iter()
                        .map(|(.., h)| h)
                        .collect(),
                    fix: "nothing to delete",
                });
            }
            Ok(())
        })
    }

    /// Bouncer assignments of one network, or of all, in name order.
    pub fn bouncers(&self, network: Option<(&str, &str)>) -> Result<Vec<Bouncer>> {
        self.read("listing bouncers", |tx| {
            if let Some((vpc, net)) = network {
                network_row(tx, vpc, net, String::new)?;
            }
            Ok(load_bouncers(tx, network)?
                .into_iter()
                .map(|(vpc, network, host)| Bouncer { vpc, network, host })
                .collect())
        })
    }

    pub fn add_divider(&mut self, vpc: &str, host: &str) -> Result<()> {
        self.write("adding a divider", |tx| {
            let (vpc_id, _) = vpc_row(tx, vpc, String::new)?;
            let (host_id, _) = host_row(tx, host, || format!(" (divider of VPC {vpc:?})"))?;
            let current = load_dividers(tx, Some(vpc))?;
            if current.iter().any(|(_, h)| h == host) {
                return Err(StoreError::AlreadyExists {
                    kind: Kind::Divider,
                    name: host.to_owned(),
                    scope: format!(" of VPC {vpc:?}"),
                    fix: "nothing to add",
                });
            }
            too_many(
                format!("VPC {vpc:?}"),
                "dividers",
                current.len() + 1,
                MAX_DIVIDERS,
            )?;
            insert_pair(tx, "vpc_dividers", "vpc_id, host_id", vpc_id, host_id)
        })
    }

    pub fn delete_divider(&mut self, vpc: &str, host: &str) -> Result<()> {
        self.write("deleting a divider", |tx| {
            let (vpc_id, _) = vpc_row(tx, vpc, String::new)?;
            let deleted = tx
                .execute(
                    "DELETE FROM vpc_dividers WHERE vpc_id = ?1 \
                     AND host_id = (SELECT id FROM hosts WHERE name = ?2)",
                    params![vpc_id, host],
                )
                .ctx("deleting a divider")?;
            if deleted == 0 {
                return Err(StoreError::Unknown {
                    kind: Kind::Divider,
                    name: host.to_owned(),
                    scope: format!(" of VPC {vpc:?}"),
                    used_by: String::new(),
                    known: load_dividers(tx, Some(vpc))?
                        .into_iter()
                        .map(|(_, h)| h)
                        .collect(),
                    fix: "nothing to delete",
                });
            }
            Ok(())
        })
    }

    /// Divider assignments of one VPC, or of all, in name order.
    pub fn dividers(&self, vpc: Option<&str>) -> Result<Vec<Divider>> {
        self.read("listing dividers", |tx| {
            if let Some(vpc) = vpc {
                vpc_row(tx, vpc, String::new)?;
            }
            Ok(load_dividers(tx, vpc)?
                .into_iter()
                .map(|(vpc, host)| Divider { vpc, host })
                .collect())
        })
    }

    // ---- Endpoints ----

    pub fn add_endpoint(&mut self, ep: &Endpoint) -> Result<()> {
        self.add_endpoint_wired(ep, None)
    }

    /// Adds an endpoint whose veth pair was made for it, its inner end moved to the network
    /// namespace `netns` (recorded, so that deleting the endpoint can remove the pair).
    pub fn add_endpoint_in_netns(&mut self, ep: &Endpoint, netns: &str) -> Result<()> {
        if ep.veth.is_none() {
            return Err(StoreError::VethMissing {
                vpc: ep.vpc.clone(),
                endpoint: ep.name.clone(),
                host: ep.host.clone(),
            });
        }
        self.add_endpoint_wired(ep, Some(netns))
    }

    /// The network namespace the veth pair of an endpoint was made for, if mizar made it.
    pub fn endpoint_netns(&self, vpc: &str, name: &str) -> Result<Option<String>> {
        self.read("reading an endpoint's network namespace", |tx| {
            tx.prepare_cached(
                "SELECT w.netns FROM endpoint_netns w JOIN endpoints e ON e.id = w.endpoint_id \
                 JOIN vpcs v ON v.id = e.vpc_id WHERE v.name = ?1 AND e.name = ?2",
            )
            .and_then(|mut stmt| stmt.query_row([vpc, name], |r| r.get(0)).optional())
            .ctx("reading an endpoint's network namespace")
        })
    }

    /// Every endpoint whose veth pair mizar made, by (VPC, endpoint), with its namespace.
    pub fn plumbed(&self) -> Result<BTreeMap<(String, String), String>> {
        self.read("reading endpoints' network namespaces", load_netns)
    }

    fn add_endpoint_wired(&mut self, ep: &Endpoint, netns: Option<&str>) -> Result<()> {
        check_endpoint(ep)?;
        self.write_endpoints("adding an endpoint", |tx| {
            let subject = || endpoint_subject(&ep.vpc, &ep.name);
            let (vpc_id, _) = vpc_row(tx, &ep.vpc, || format!(" (VPC of {})", subject()))?;
            let siblings = load_networks(tx, Filter::Vpc(&ep.vpc))?;
            let Some((network_id, net)) = siblings.iter().find(|(_, n)| n.name == ep.network)
            else {
                return Err(unknown_network(
                    &ep.vpc,
                    &ep.network,
                    format!(" (network of endpoint {:?})", ep.name),
                    siblings.iter().map(|(_, n)| n.name.clone()).collect(),
                ));
            };
            check_endpoint_ip(ep, net, siblings.iter().map(|(_, n)| n))?;
            if endpoint_row(tx, vpc_id, &ep.name)?.is_some() {
                return Err(already_exists(
                    Kind::Endpoint,
                    &ep.name,
                    format!(" in VPC {:?}", ep.vpc),
                ));
            }
            let holder = tx
                .prepare_cached("SELECT name FROM endpoints WHERE vpc_id = ?1 AND ip = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![vpc_id, ep.ip.to_string()], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()
                })
                .ctx("looking an IP up")?;
            if let Some(other) = holder {
                return Err(StoreError::EndpointIpTaken {
                    vpc: ep.vpc.clone(),
                    ip: ep.ip,
                    endpoint: ep.name.clone(),
                    other,
                });
            }
            let holder = tx
                .prepare_cached("SELECT name FROM endpoints WHERE vpc_id = ?1 AND mac = ?2")
                .and_then(|mut stmt| {
                    stmt.query_row(params![vpc_id, ep.mac.to_string()], |r| {
                        r.get::<_, String>(0)
                    })
                    .optional()
                })
                .ctx("looking a MAC up")?;
            if let Some(other) = holder {
                return Err(StoreError::EndpointMacTaken {
                    vpc: ep.vpc.clone(),
                    mac: ep.mac,
                    endpoint: ep.name.clone(),
                    other,
                });
            }
            let (host_id, local) = host_row(tx, &ep.host, || format!(" (host of {})", subject()))?;
            check_veth_present(ep, local.then_some(ep.host.as_str()))?;
            if let Some(veth) = &ep.veth {
                let holder = tx
                    .prepare_cached(
                        "SELECT e.name, v.name FROM endpoints e JOIN vpcs v ON v.id = e.vpc_id \
                         WHERE e.host_id = ?1 AND e.veth = ?2",
                    )
                    .and_then(|mut stmt| {
                        stmt.query_row(params![host_id, veth], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                        })
                        .optional()
                    })
                    .ctx("looking a veth up")?;
                if let Some((other, other_vpc)) = holder {
                    return Err(StoreError::VethTaken {
                        host: ep.host.clone(),
                        veth: veth.clone(),
                        endpoint: ep.name.clone(),
                        other: format!("{other:?} of VPC {other_vpc:?}"),
                    });
                }
            }
            let mut backends = ep.backends.clone();
            backends.sort();
            backends.dedup();
            for backend in &backends {
                let found = endpoint_row(tx, vpc_id, backend)?.map(|(_, kind)| kind);
                check_backend(ep, backend, found, || {
                    names(
                        tx,
                        "SELECT name FROM endpoints WHERE vpc_id = ?1 ORDER BY name",
                        [vpc_id],
                    )
                    .unwrap_or_default()
                })?;
            }
            let refs = EndpointRefs {
                vpc_id,
                network_id: *network_id,
                host_id,
            };
            let id = insert_endpoint(tx, None, &refs, ep)?;
            insert_backends(tx, id, vpc_id, &backends)?;
            if let Some(netns) = netns {
                tx.prepare_cached(
                    "INSERT INTO endpoint_netns (endpoint_id, netns) VALUES (?1, ?2)",
                )
                .and_then(|mut stmt| stmt.execute(params![id, netns]))
                .ctx("recording an endpoint's network namespace")?;
            }
            let added = Endpoint {
                backends,
                ..ep.clone()
            };
            Ok(((), Some((ep.vpc.clone(), Vec::new(), vec![added]))))
        })
    }

    /// Endpoints of one VPC, or of all, in (VPC, network, name) order.
    pub fn endpoints(&self, vpc: Option<&str>) -> Result<Vec<Endpoint>> {
        self.read("listing endpoints", |tx| {
            if let Some(vpc) = vpc {
                vpc_row(tx, vpc, String::new)?;
            }
            let filter = vpc.map_or(Filter::All, Filter::Vpc);
            Ok(load_endpoints(tx, filter)?
                .into_iter()
                .map(|(_, e)| e)
                .collect())
        })
    }

    pub fn endpoint(&self, vpc: &str, name: &str) -> Result<Endpoint> {
        self.read("reading an endpoint", |tx| {
            match load_endpoints(tx, Filter::One(vpc, name))?.pop() {
                Some((_, ep)) => Ok(ep),
                None => {
                    let (vpc_id, _) = vpc_row(tx, vpc, String::new)?;
                    Err(endpoint_not_found(tx, vpc, vpc_id, name)?)
                }
            }
        })
    }

    /// Deletes an endpoint. Refused while a scaled endpoint lists it as a backend, unless
    /// `cascade`, which takes it out of those lists.
    pub fn delete_endpoint(&mut self, vpc: &str, name: &str, cascade: bool) -> Result<ApplyReport> {
        self.write_endpoints("deleting an endpoint", |tx| {
            let (vpc_id, _) = vpc_row(tx, vpc, String::new)?;
            let Some((id, _)) = endpoint_row(tx, vpc_id, name)? else {
                return Err(endpoint_not_found(tx, vpc, vpc_id, name)?);
            };
            let removed: Vec<Endpoint> = select_endpoints(tx, "WHERE e.id = ?1", [id])?
                .into_iter()
                .map(|(_, ep)| ep)
                .collect();
            let users = names(
                tx,
                "SELECT o.name FROM endpoint_backends b JOIN endpoints o ON o.id = b.endpoint_id \
                 WHERE b.backend_id = ?1 ORDER BY 1",
                [id],
            )?;
            if users.total > 0 && !cascade {
                return Err(StoreError::InUse {
                    kind: Kind::Endpoint,
                    name: name.to_owned(),
                    scope: format!(" in VPC {vpc:?}"),
                    users: format!("scaled endpoints {users} (as a backend)"),
                });
            }
            let mut report = ApplyReport::default();
            remove_endpoints(tx, &[(id, vpc.to_owned(), name.to_owned())], &mut report)?;
            // Scaled endpoints that lose it as a backend change too: not only endpoints are
            // touched then, as far as the guard can tell.
            let only_it = users.total == 0;
            Ok((
                report,
                only_it.then(|| (vpc.to_owned(), removed, Vec::new())),
            ))
        })
    }

    // ---- Changes in place ----
    //
    // A change names an existing object and says what it should be. It is validated as `apply`
    // validates a document (the whole configuration it would leave, so a network shrunk under
    // its endpoints or a VPC moved to a VNI another one has are refused with the fix) and its
    // commit guard sees that whole configuration. Changes are rare next to endpoints added and
    // removed, which have their own scoped path.

    /// Brings host `host.name` to `host`'s address, MAC and interface.
    pub fn change_host(&mut self, host: &Host) -> Result<ApplyReport> {
        check_host(host)?;
        self.change_in_place("changing a host", |state| {
            let Some(current) = state.hosts.get_mut(&host.name) else {
                let known = state.hosts.keys().cloned().collect();
                return Err(unknown_host(&host.name, String::new(), known));
            };
            *current = host.clone();
            Ok(())
        })
    }

    /// Brings VPC `vpc.name` to `vpc`'s VNI and CIDR.
    pub fn change_vpc(&mut self, vpc: &Vpc) -> Result<ApplyReport> {
        check_vpc(vpc)?;
        self.change_in_place("changing a VPC", |state| {
            let Some(current) = state.vpcs.get_mut(&vpc.name) else {
                let known = state.vpcs.keys().cloned().collect();
                return Err(unknown_vpc(&vpc.name, String::new(), known));
            };
            *current = vpc.clone();
            Ok(())
        })
    }

    /// Brings network `net.name` of VPC `net.vpc` to `net`'s CIDR and gateway.
    pub fn change_network(&mut self, net: &Network) -> Result<ApplyReport> {
        self.change_in_place("changing a network", |state| {
            let Some(vpc) = state.vpcs.get(&net.vpc) else {
                let known = state.vpcs.keys().cloned().collect();
                return Err(unknown_vpc(&net.vpc, String::new(), known));
            };
            check_network(vpc, net)?;
            let key = (net.vpc.clone(), net.name.clone());
            let Some(current) = state.networks.get_mut(&key) else {
                let known = state
                    .networks_of(&net.vpc)
                    .map(|n| n.name.clone())
                    .collect();
                return Err(unknown_network(&net.vpc, &net.name, String::new(), known));
            };
            *current = net.clone();
            Ok(())
        })
    }

    /// Brings endpoint `ep.name` of VPC `ep.vpc` to what `ep` says: address, MAC, network (when
    /// empty: the one containing the address), host, veth, type, bypass-decap and backends. An
    /// endpoint whose veth pair mizar made (`ep add --netns`) keeps its host and veth: the pair
    /// lives in that host's namespace.
    pub fn change_endpoint(&mut self, ep: &Endpoint) -> Result<ApplyReport> {
        check_endpoint(ep)?;
        let mut ep = ep.clone();
        ep.backends.sort();
        ep.backends.dedup();
        self.change_in_place("changing an endpoint", |state| {
            if !state.vpcs.contains_key(&ep.vpc) {
                let known = state.vpcs.keys().cloned().collect();
                return Err(unknown_vpc(&ep.vpc, String::new(), known));
            }
            let key = (ep.vpc.clone(), ep.name.clone());
            // Read in the change's own transaction: a concurrent `ep add --netns` cannot slip
            // between this check and the write.
            let netns = state.netns.get(&key).cloned();
            let Some(current) = state.endpoints.get_mut(&key) else {
                let known = state.endpoints_of(&ep.vpc).map(|e| e.name.clone());
                return Err(unknown_endpoint(&ep.vpc, &ep.name, known.collect()));
            };
            if let Some(netns) = netns
                && (current.host != ep.host || current.veth != ep.veth)
            {
                return Err(StoreError::NetnsPlumbed {
                    vpc: ep.vpc.clone(),
                    endpoint: ep.name.clone(),
                    netns,
                });
            }
            let mut ep = ep.clone();
            if ep.network.is_empty() {
                // Outside every network: the validation below says so, with the fix.
                ep.network = current.network.clone();
                if let Some(net) = state.networks_of(&ep.vpc).find(|n| n.cidr.contains(&ep.ip)) {
                    ep.network = net.name.clone();
                }
            }
            state.endpoints.insert(key, ep);
            Ok(())
        })
    }

    fn change_in_place(
        &mut self,
        action: &'static str,
        edit: impl FnOnce(&mut State) -> Result<()>,
    ) -> Result<ApplyReport> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(action)?;
        let (current, mut ids) = State::load(&tx)?;
        let mut desired = current.clone();
        edit(&mut desired)?;
        if let Some(err) = StoreError::from_problems(validate_state(&desired, &current)) {
            return Err(err);
        }
        let report = write_diff(&tx, &current, &mut ids, &desired)?;
        if report.is_empty() {
            return Ok(report); // already so: the transaction rolls back, nothing to commit
        }
        let known = self.guard.is_some().then(|| desired.to_topology());
        Self::check_and_commit(&mut self.guard, self.dry_run, tx, action, None, known)?;
        Ok(report)
    }

    // ---- The whole configuration ----

    /// Everything, nested and in name order: what reconcile computes the kernel maps from.
    pub fn snapshot(&self) -> Result<Topology> {
        self.read("reading the configuration", |tx| {
            Ok(State::load(tx)?.0.to_topology())
        })
    }

    /// The configuration as a document that `apply` takes back unchanged.
    pub fn export(&self) -> Result<Topology> {
        let mut doc = self.snapshot()?;
        doc.chains = self.chain_specs()?;
        doc.scoped_chains = self.scoped_chain_specs()?;
        doc.ddos = Some(self.ddos()?).filter(|d| *d != crate::ddos::DdosConfig::default());
        doc.rate_limits = Some(self.rate_limits()?).filter(|r| !r.is_empty());
        doc.acls = Some(crate::acl::export_acls(&self.acls()?)).filter(|a| !a.is_empty());
        Ok(doc)
    }

    /// Makes the store what `doc` describes, in one transaction: every object of the document
    /// is created or brought to what it says; with `prune`, whatever it does not list is
    /// removed. Any invalid object (or, with `prune`, any remaining reference to a removed one)
    /// fails the whole apply with every problem found, and nothing is changed.
    pub fn apply(&mut self, doc: &Topology, prune: bool) -> Result<ApplyReport> {
        self.apply_inner(doc, prune, true)
    }

    /// What `apply` would change, without changing anything.
    pub fn plan(&mut self, doc: &Topology, prune: bool) -> Result<ApplyReport> {
        self.apply_inner(doc, prune, false)
    }

    fn apply_inner(&mut self, doc: &Topology, prune: bool, commit: bool) -> Result<ApplyReport> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("applying a topology")?;
        let (current, mut ids) = State::load(&tx)?;
        let (incoming, mut problems) = State::from_topology(doc);
        let mut desired = if prune {
            let mut desired = incoming;
            // A document that does not say which host this is keeps the current one, if the
            // document still has it.
            if desired.this_host.is_none() {
                desired.this_host = current
                    .this_host
                    .clone()
                    .filter(|name| desired.hosts.contains_key(name));
            }
            desired
        } else {
            current.clone().overlay(incoming)
        };
        problems.extend(keep_plumbing(&current, &mut desired));
        problems.extend(validate_state(&desired, &current));
        if let Some(err) = StoreError::from_problems(problems) {
            return Err(err);
        }
        let mut report = write_diff(&tx, &current, &mut ids, &desired)?;
        crate::chains::apply_chains(&tx, &doc.chains, prune, &mut report)?;
        crate::chains::apply_scoped_chains(&tx, &doc.scoped_chains, prune, &mut report)?;
        match (&doc.ddos, prune) {
            (Some(ddos), _) => crate::ddos::replace_ddos(&tx, ddos)?,
            (None, true) => crate::ddos::replace_ddos(&tx, &crate::ddos::DdosConfig::default())?,
            (None, false) => {}
        }
        match (&doc.rate_limits, prune) {
            (Some(rules), _) => crate::ratelimit::replace_rate_limits(&tx, rules)?,
            (None, true) => crate::ratelimit::replace_rate_limits(&tx, &[])?,
            (None, false) => {}
        }
        match (&doc.acls, prune) {
            (Some(acls), _) => crate::acl::replace_acls(&tx, acls)?,
            (None, true) => crate::acl::replace_acls(&tx, &[])?,
            (None, false) => {}
        }
        if commit {
            // What was just written is the store's whole state: no need to read it back.
            let known = self.guard.is_some().then(|| desired.to_topology());
            Self::check_and_commit(
                &mut self.guard,
                self.dry_run,
                tx,
                "committing a topology",
                None,
                known,
            )?;
        }
        Ok(report)
    }
}

/// What a document does to the veth pairs mizar made (`netns`): an endpoint it lists without a
/// namespace keeps its pair, while it keeps its host and veth; one it moves to another host,
/// veth or namespace is refused, since the pair lives in its host's namespace (delete the
/// endpoint and add it again). An endpoint the document removes takes its record along.
fn keep_plumbing(current: &State, desired: &mut State) -> Vec<StoreError> {
    let mut problems = Vec::new();
    for (key, netns) in &current.netns {
        let (Some(old), Some(new)) = (current.endpoints.get(key), desired.endpoints.get(key))
        else {
            continue;
        };
        let same_place = old.host == new.host && old.veth == new.veth;
        match desired.netns.get(key) {
            None if same_place => {
                desired.netns.insert(key.clone(), netns.clone());
            }
            Some(wanted) if wanted == netns && same_place => {}
            _ => problems.push(StoreError::NetnsPlumbed {
                vpc: key.0.clone(),
                endpoint: key.1.clone(),
                netns: netns.clone(),
            }),
        }
    }
    problems
}

/// Removes a network with its endpoints and bouncer assignments.
fn remove_network(tx: &Connection, id: i64, net: &Network, report: &mut ApplyReport) -> Result<()> {
    let endpoints = endpoint_ids(tx, "e.network_id = ?1", id)?;
    remove_endpoints(tx, &endpoints, report)?;
    for (.., host) in load_bouncers(tx, Some((&net.vpc, &net.name)))? {
        report.push(
            Action::Delete,
            Kind::Bouncer,
            format!("{}/{}:{host}", net.vpc, net.name),
        );
    }
    tx.execute("DELETE FROM network_bouncers WHERE network_id = ?1", [id])
        .ctx("deleting bouncer assignments")?;
    tx.execute("DELETE FROM networks WHERE id = ?1", [id])
        .ctx("deleting a network")?;
    report.push(
        Action::Delete,
        Kind::Network,
        format!("{}/{}", net.vpc, net.name),
    );
    Ok(())
}
