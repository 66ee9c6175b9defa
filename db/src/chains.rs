//! Function chains at the pipeline's stages, per host: which functions run at each stage of a
//! host's data plane, in order. Each placed function has an instance number on its host, the
//! slot of its counters in that host's data plane, kept while it stays in the chain whatever its
//! position.
//!
//! Every change ([`ChainEdit`]) rewrites one host's stage in one transaction; a topology
//! document's `chains` ([`ChainSpec`]) does the same for every stage it lists, inside the apply's
//! transaction. The data plane publishes a host's chains as whole generations (appliance
//! `dataplane::chains`).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{
    apply::{Action, ApplyReport},
    error::{Kind, SqlContext, StoreError},
    store::Store,
};

type Result<T> = std::result::Result<T, StoreError>;

/// The stages a chain can sit at, in the data plane's slot order.
pub const CHAIN_STAGES: [&str; 6] = [
    "ON_XDP_TX",
    "ON_XDP_PASS",
    "ON_XDP_REDIRECT",
    "ON_XDP_DROP",
    "ON_XDP_SCALED_EP",
    "ON_EGRESS",
];

/// The stages a VPC's or an endpoint's chain can sit at: where the packet's VPC is known and
/// checked (ON_XDP_PASS and ON_XDP_DROP can be reached before: host chains only).
pub const SCOPED_STAGES: [&str; 4] = [
    "ON_XDP_TX",
    "ON_XDP_REDIRECT",
    "ON_XDP_SCALED_EP",
    "ON_EGRESS",
];

/// Functions one packet's chain at a stage holds, the host's, its VPC's and its endpoint's
/// together: `MZ_MAX_CHAIN` in ebpf/include/mizar_abi.h.
pub const MAX_CHAIN: usize = 16;
/// Instance numbers run 1 ..= this: `MZ_CAPTURE_INSTANCE_BASE - 1` in
/// ebpf/include/mizar_abi.h (the numbers above are a capture's taps).
pub const MAX_FN_INSTANCES: usize = 999;
/// The functions built into `mizar` (the appliance checks this list against the programs it
/// embeds at compile time).
pub const BUILTIN_FUNCTIONS: &[&str] = &["count", "ddos", "ratelimit", "acl"];

/// A function placed in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainLinkRow {
    pub host: String,
    pub stage: String,
    /// 1-based.
    pub position: usize,
    pub instance: u16,
    pub function: String,
    /// A disabled function keeps its place and counters; packets skip it.
    pub enabled: bool,
}

/// A function's place in a chain being written: its instance (None: a new one), name, and
/// whether it is enabled.
type Placement = (Option<u16>, String, bool);

/// A chain as a document gives it: its functions, and the positions (from 1) disabled.
type DocumentChain = (Vec<String>, Vec<usize>);

/// A function placed in a VPC's chain (endpoint None) or an endpoint's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopedChainLinkRow {
    pub vpc: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub stage: String,
    /// 1-based.
    pub position: usize,
    pub instance: u16,
    pub function: String,
    pub enabled: bool,
}

impl ScopedChainLinkRow {
    /// Whose chain, as status and metrics label it: "vpc:NAME" or "ep:VPC/NAME".
    pub fn scope(&self) -> String {
        match &self.endpoint {
            Some(e) => format!("ep:{}/{e}", self.vpc),
            None => format!("vpc:{}", self.vpc),
        }
    }
}

/// A VPC's chain (or one of its endpoints') at one stage, as a topology document writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScopedChainSpec {
    pub vpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub stage: String,
    /// In order; empty: no function there.
    #[serde(default)]
    pub functions: Vec<String>,
    /// Positions (from 1) of the functions that are disabled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<usize>,
}

/// One host's chain at one stage, as a topology document writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChainSpec {
    pub host: String,
    pub stage: String,
    /// In order; empty: no function there.
    #[serde(default)]
    pub functions: Vec<String>,
    /// Positions (from 1) of the functions that are disabled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<usize>,
}

/// A change to one stage's chain. Positions are 1-based, as `mizar chain show` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEdit {
    /// The whole chain, in order (empty: no function).
    Set(Vec<String>),
    /// One function at a position (None: at the end).
    Add { function: String, at: Option<usize> },
    /// The function at a position.
    Remove { position: usize },
    /// The function at `from` moves to `to`; the others keep their order.
    Move { from: usize, to: usize },
    /// The function at a position is enabled or disabled (it keeps its place and counters).
    Enable { position: usize, enabled: bool },
}

/// The stage's canonical name (`on_xdp_tx`, `ON_XDP_TX` and `tx` are all ON_XDP_TX).
pub fn parse_stage(input: &str) -> Result<&'static str> {
    let upper = input.trim().to_ascii_uppercase().replace('-', "_");
    CHAIN_STAGES
        .iter()
        .find(|s| {
            **s == upper
                || s.strip_prefix("ON_XDP_") == Some(upper.as_str())
                || s.strip_prefix("ON_") == Some(upper.as_str())
        })
        .copied()
        .ok_or(StoreError::UnknownStage {
            input: input.to_owned(),
        })
}

fn check_functions(conn: &Connection, stage: &str, functions: &[String]) -> Result<()> {
    let known = crate::functions::known_functions(conn)?;
    if let Some(unknown) = functions.iter().find(|f| !known.contains(f)) {
        return Err(StoreError::UnknownFunction {
            name: unknown.clone(),
            known: known.join(", "),
        });
    }
    if functions.len() > MAX_CHAIN {
        return Err(StoreError::ChainTooLong {
            stage: stage.to_owned(),
            count: functions.len(),
            max: MAX_CHAIN,
        });
    }
    Ok(())
}

fn host_id(conn: &Connection, host: &str) -> Result<i64> {
    let id = conn
        .prepare_cached("SELECT id FROM hosts WHERE name = ?1")
        .and_then(|mut stmt| {
            stmt.query_map([host], |row| row.get::<_, i64>(0))?
                .next()
                .transpose()
        })
        .ctx("reading the hosts")?;
    match id {
        Some(id) => Ok(id),
        None => {
            let known: Vec<String> = conn
                .prepare_cached("SELECT name FROM hosts ORDER BY name")
                .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
                .ctx("reading the hosts")?;
            Err(crate::validate::unknown_host(
                host,
                " (chain host)".to_owned(),
                known.into_iter().collect(),
            ))
        }
    }
}

/// Every chain row, in host, stage and chain order.
pub(crate) fn load_chains(conn: &Connection) -> Result<Vec<ChainLinkRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT h.name, c.stage, c.position, c.instance, c.function, c.enabled \
             FROM chain_links c JOIN hosts h ON h.id = c.host_id \
             ORDER BY h.name, c.stage, c.position",
        )
        .ctx("reading the chains")?;
    let rows = stmt
        .query_map([], |row| {
            Ok(ChainLinkRow {
                host: row.get(0)?,
                stage: row.get(1)?,
                position: row.get::<_, i64>(2)? as usize,
                instance: row.get(3)?,
                function: row.get(4)?,
                enabled: row.get(5)?,
            })
        })
        .ctx("reading the chains")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading the chains")
}

/// Writes one host's chain at one stage, keeping the instance of each function that stays
/// (matched by name, in order; `order` entries with Some keep theirs). New ones take the
/// smallest free numbers of the host.
fn write_chain(conn: &Connection, host_id: i64, stage: &str, order: &[Placement]) -> Result<()> {
    let mut used: BTreeSet<u16> = conn
        .prepare_cached(
            "SELECT instance FROM chain_links WHERE host_id = ?1 AND stage <> ?2 \
             UNION SELECT instance FROM scoped_chain_links",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![host_id, stage], |row| row.get(0))?
                .collect()
        })
        .ctx("reading the chains")?;
    insert_links(
        &mut used,
        order,
        |position, instance, function, enabled| {
            conn.execute(
                "INSERT INTO chain_links (host_id, stage, position, instance, function, \
                 enabled) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![host_id, stage, position, instance, function, enabled],
            )
            .map(|_| ())
        },
        || {
            conn.execute(
                "DELETE FROM chain_links WHERE host_id = ?1 AND stage = ?2",
                params![host_id, stage],
            )
            .map(|_| ())
        },
    )?;
    check_budget(conn)
}

/// Writes a chain's links in `order` (clearing the old ones first), giving new functions the
/// smallest instance numbers not in `used`.
fn insert_links(
    used: &mut BTreeSet<u16>,
    order: &[Placement],
    mut insert: impl FnMut(i64, u16, &str, bool) -> rusqlite::Result<()>,
    clear: impl FnOnce() -> rusqlite::Result<()>,
) -> Result<()> {
    used.extend(order.iter().filter_map(|(i, _, _)| *i));
    let new = order.iter().filter(|(i, _, _)| i.is_none()).count();
    if used.len() + new > MAX_FN_INSTANCES {
        return Err(StoreError::TooManyFunctionInstances {
            count: used.len() + new,
            max: MAX_FN_INSTANCES,
        });
    }
    clear().ctx("changing a chain")?;
    let mut next_free = 1u16;
    for (index, (instance, function, enabled)) in order.iter().enumerate() {
        let instance = match instance {
            Some(i) => *i,
            None => {
                while used.contains(&next_free) {
                    next_free += 1;
                }
                used.insert(next_free);
                next_free
            }
        };
        insert(index as i64 + 1, instance, function, *enabled).ctx("changing a chain")?;
    }
    Ok(())
}

/// The VPC's id and the endpoint's (None: the VPC's own chain).
fn scope_ids(conn: &Connection, vpc: &str, endpoint: Option<&str>) -> Result<(i64, Option<i64>)> {
    let vpc_id = crate::store::vpc_id(conn, vpc, || " (chain)".to_owned())?;
    let ep_id = endpoint
        .map(|e| crate::store::endpoint_id(conn, vpc, e))
        .transpose()?;
    Ok((vpc_id, ep_id))
}

/// Writes a VPC's or an endpoint's chain at one stage (see [`write_chain`]). Its new
/// functions take numbers no host chain and no other scoped chain uses.
fn write_scoped_chain(
    conn: &Connection,
    (vpc_id, ep_id): (i64, Option<i64>),
    stage: &str,
    order: &[Placement],
) -> Result<()> {
    if !SCOPED_STAGES.contains(&stage) {
        return Err(StoreError::StageNotScoped {
            stage: stage.to_owned(),
        });
    }
    let mut used: BTreeSet<u16> = conn
        .prepare_cached(
            "SELECT instance FROM chain_links UNION SELECT instance FROM scoped_chain_links \
             WHERE NOT (vpc_id = ?1 AND endpoint_id IS ?2 AND stage = ?3)",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![vpc_id, ep_id, stage], |row| row.get(0))?
                .collect()
        })
        .ctx("reading the chains")?;
    insert_links(
        &mut used,
        order,
        |position, instance, function, enabled| {
            conn.execute(
                "INSERT INTO scoped_chain_links (vpc_id, endpoint_id, stage, position, instance, \
                 function, enabled) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![vpc_id, ep_id, stage, position, instance, function, enabled],
            )
            .map(|_| ())
        },
        || {
            conn.execute(
            "DELETE FROM scoped_chain_links WHERE vpc_id = ?1 AND endpoint_id IS ?2 AND stage = ?3",
            params![vpc_id, ep_id, stage],
        )
        .map(|_| ())
        },
    )?;
    check_budget(conn)
}

/// Refuses chains that a packet could meet more than [`MAX_CHAIN`] functions of at one stage:
/// the longest host chain, plus the longest VPC chain with the longest endpoint chain of that
/// VPC.
fn check_budget(conn: &Connection) -> Result<()> {
    let ctx = "checking the chains' length";
    for stage in SCOPED_STAGES {
        let host: (i64, String) = conn
            .query_row(
                "SELECT count(*) AS n, ifnull(h.name, '') FROM chain_links c JOIN hosts h \
                 ON h.id = c.host_id WHERE c.stage = ?1 GROUP BY c.host_id \
                 UNION ALL SELECT 0, '' ORDER BY n DESC LIMIT 1",
                [stage],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ctx(ctx)?;
        let scoped: Option<(i64, String, i64, Option<String>)> = conn
            .query_row(
                "WITH own AS (SELECT vpc_id, endpoint_id, count(*) AS n FROM scoped_chain_links \
                 WHERE stage = ?1 GROUP BY vpc_id, endpoint_id), \
                 vpc AS (SELECT vpc_id, n FROM own WHERE endpoint_id IS NULL), \
                 ep AS (SELECT vpc_id, endpoint_id, n FROM own WHERE endpoint_id IS NOT NULL) \
                 SELECT ifnull(v.n, 0) + ifnull(e.n, 0) AS total, p.name, ifnull(v.n, 0), \
                 (SELECT name FROM endpoints WHERE id = e.endpoint_id) \
                 FROM (SELECT vpc_id FROM own GROUP BY vpc_id) o \
                 JOIN vpcs p ON p.id = o.vpc_id \
                 LEFT JOIN vpc v ON v.vpc_id = o.vpc_id \
                 LEFT JOIN ep e ON e.vpc_id = o.vpc_id \
                 ORDER BY total DESC LIMIT 1",
                [stage],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .ctx(ctx)?;
        let Some((scoped_len, vpc, vpc_len, endpoint)) = scoped else {
            continue;
        };
        let total = host.0 + scoped_len;
        if total as usize > MAX_CHAIN {
            return Err(StoreError::ChainBudget {
                stage: stage.to_owned(),
                counts: format!(
                    "{} functions of host {:?}'s chain, {vpc_len} of VPC {vpc:?}'s and {} of \
                     endpoint {:?}'s",
                    host.0,
                    host.1,
                    scoped_len - vpc_len,
                    endpoint.unwrap_or_default()
                ),
                max: MAX_CHAIN,
            });
        }
    }
    Ok(())
}

/// Every scoped chain row, in VPC, endpoint (the VPC's own first), stage and chain order.
pub(crate) fn load_scoped_chains(conn: &Connection) -> Result<Vec<ScopedChainLinkRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.name, e.name, c.stage, c.position, c.instance, c.function, c.enabled \
             FROM scoped_chain_links c JOIN vpcs v ON v.id = c.vpc_id \
             LEFT JOIN endpoints e ON e.id = c.endpoint_id \
             ORDER BY v.name, e.name IS NOT NULL, e.name, c.stage, c.position",
        )
        .ctx("reading the chains")?;
    let rows = stmt
        .query_map([], |row| {
            Ok(ScopedChainLinkRow {
                vpc: row.get(0)?,
                endpoint: row.get(1)?,
                stage: row.get(2)?,
                position: row.get::<_, i64>(3)? as usize,
                instance: row.get(4)?,
                function: row.get(5)?,
                enabled: row.get(6)?,
            })
        })
        .ctx("reading the chains")?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .ctx("reading the chains")
}

/// The order of a chain after `edit`: (kept instance, function) pairs.
fn edited(
    conn: &Connection,
    stage: &str,
    current: &[(u16, &str, bool)],
    edit: &ChainEdit,
) -> Result<Vec<Placement>> {
    let mut order: Vec<Placement> = current
        .iter()
        .map(|(i, f, e)| (Some(*i), (*f).to_owned(), *e))
        .collect();
    let position = |p: usize, len: usize| -> Result<usize> {
        if p == 0 || p > len {
            return Err(StoreError::ChainPosition {
                stage: stage.to_owned(),
                position: p,
                len: current.len(),
            });
        }
        Ok(p - 1)
    };
    match edit {
        ChainEdit::Set(functions) => order = keep_instances(current, functions),
        ChainEdit::Add { function, at } => {
            let index = match at {
                None => order.len(),
                Some(p) => position(*p, order.len() + 1)?,
            };
            order.insert(index, (None, function.clone(), true));
        }
        ChainEdit::Enable {
            position: p,
            enabled,
        } => {
            let index = position(*p, order.len())?;
            order[index].2 = *enabled;
        }
        ChainEdit::Remove { position: p } => {
            order.remove(position(*p, order.len())?);
        }
        ChainEdit::Move { from, to } => {
            let link = order.remove(position(*from, order.len())?);
            let to = position(*to, order.len() + 1)?;
            order.insert(to, link);
        }
    }
    let functions: Vec<String> = order.iter().map(|(_, f, _)| f.clone()).collect();
    check_functions(conn, stage, &functions)?;
    Ok(order)
}

/// What a document's chain (`functions`, the positions in `disabled` off) does to the chain
/// `now`: None when it is the same.
fn chain_action(
    now: &[(u16, &str, bool)],
    functions: &[String],
    disabled: &[usize],
) -> Option<Action> {
    let wanted = functions
        .iter()
        .enumerate()
        .map(|(i, f)| (f.as_str(), !disabled.contains(&(i + 1))));
    if now.iter().map(|(_, f, e)| (*f, *e)).eq(wanted) {
        return None;
    }
    Some(match (now.is_empty(), functions.is_empty()) {
        (true, _) => Action::Create,
        (false, true) => Action::Delete,
        (false, false) => Action::Update,
    })
}

/// `functions` with the instances of `current` kept for the functions that stay (which keep
/// their enabled state; new ones are enabled).
fn keep_instances(current: &[(u16, &str, bool)], functions: &[String]) -> Vec<Placement> {
    let mut kept: Vec<(u16, &str, bool)> = current.to_vec();
    functions
        .iter()
        .map(
            |function| match kept.iter().position(|(_, f, _)| f == function) {
                Some(i) => {
                    let (instance, _, enabled) = kept.remove(i);
                    (Some(instance), function.clone(), enabled)
                }
                None => (None, function.clone(), true),
            },
        )
        .collect()
}

/// A document's chain: its functions, instances kept, the positions in `disabled` off and
/// the others on.
fn document_order(
    current: &[(u16, &str, bool)],
    functions: &[String],
    disabled: &[usize],
) -> Vec<Placement> {
    let mut order = keep_instances(current, functions);
    for (i, placed) in order.iter_mut().enumerate() {
        placed.2 = !disabled.contains(&(i + 1));
    }
    order
}

/// Applies a document's chains inside its transaction: every (host, stage) it lists becomes what
/// it says; with `prune`, the chains it does not list are emptied. Problems are returned, not
/// written.
pub(crate) fn apply_chains(
    tx: &Connection,
    chains: &[ChainSpec],
    prune: bool,
    report: &mut ApplyReport,
) -> Result<()> {
    let current = load_chains(tx)?;
    let mut listed: BTreeMap<(String, &'static str), &ChainSpec> = BTreeMap::new();
    for spec in chains {
        let stage = parse_stage(&spec.stage)?;
        check_functions(tx, stage, &spec.functions)?;
        if listed.insert((spec.host.clone(), stage), spec).is_some() {
            return Err(StoreError::Duplicate {
                kind: Kind::Chain,
                name: stage.to_owned(),
                scope: format!(" of host {:?}", spec.host),
            });
        }
    }
    let mut wanted: BTreeMap<(String, &'static str), DocumentChain> = listed
        .into_iter()
        .map(|(key, spec)| (key, (spec.functions.clone(), spec.disabled.clone())))
        .collect();
    if prune {
        for row in &current {
            let key = (row.host.clone(), parse_stage(&row.stage)?);
            wanted.entry(key).or_default();
        }
    }
    for ((host, stage), (functions, disabled)) in wanted {
        let now: Vec<(u16, &str, bool)> = current
            .iter()
            .filter(|r| r.host == host && r.stage == stage)
            .map(|r| (r.instance, r.function.as_str(), r.enabled))
            .collect();
        let Some(action) = chain_action(&now, &functions, &disabled) else {
            continue;
        };
        let id = host_id(tx, &host)?;
        write_chain(tx, id, stage, &document_order(&now, &functions, &disabled))?;
        report.push(action, Kind::Chain, format!("{host}:{stage}"));
    }
    Ok(())
}

impl Store {
    /// The host a chain command means: `host`, or this host.
    fn chain_host(&self, host: Option<&str>) -> Result<String> {
        match host {
            Some(h) => Ok(self.host(h)?.name),
            None => Ok(self.this_host()?.ok_or(StoreError::NoThisHost)?.name),
        }
    }

    /// Every chain of the store (every host's), in host, stage and chain order.
    pub fn all_chains(&self) -> Result<Vec<ChainLinkRow>> {
        self.read("reading the chains", load_chains)
    }

    /// A host's chains (None: this host's) by stage, in chain order; stages without functions
    /// are left out.
    pub fn chains(&self, host: Option<&str>) -> Result<BTreeMap<&'static str, Vec<ChainLinkRow>>> {
        let host = match host {
            Some(h) => h.to_owned(),
            None => match self.this_host()? {
                Some(me) => me.name,
                None => return Ok(BTreeMap::new()),
            },
        };
        let mut chains: BTreeMap<&'static str, Vec<ChainLinkRow>> = BTreeMap::new();
        for row in self.all_chains()?.into_iter().filter(|r| r.host == host) {
            chains
                .entry(parse_stage(&row.stage)?)
                .or_default()
                .push(row);
        }
        Ok(chains)
    }

    /// The chains as a topology document writes them.
    pub fn chain_specs(&self) -> Result<Vec<ChainSpec>> {
        Ok(specs_of(
            self.all_chains()?,
            |s: &ChainSpec, r: &ChainLinkRow| s.host == r.host && s.stage == r.stage,
            |r| ChainSpec {
                host: r.host.clone(),
                stage: r.stage.clone(),
                functions: Vec::new(),
                disabled: Vec::new(),
            },
            |s| (&mut s.functions, &mut s.disabled),
            |r| (r.function, r.position, r.enabled),
        ))
    }

    /// Changes one host's chain at one stage (host None: this host). Returns the chain as it
    /// now is.
    pub fn edit_chain(
        &mut self,
        host: Option<&str>,
        stage: &str,
        edit: &ChainEdit,
    ) -> Result<Vec<ChainLinkRow>> {
        let stage = parse_stage(stage)?;
        let host = self.chain_host(host)?;
        let rows = self.chains(Some(&host))?.remove(stage).unwrap_or_default();
        let current: Vec<(u16, &str, bool)> = rows
            .iter()
            .map(|l| (l.instance, l.function.as_str(), l.enabled))
            .collect();
        let order = self.read("reading the functions", |conn| {
            edited(conn, stage, &current, edit)
        })?;
        self.write("changing a chain", |tx| {
            write_chain(tx, host_id(tx, &host)?, stage, &order)
        })?;
        Ok(self.chains(Some(&host))?.remove(stage).unwrap_or_default())
    }

    /// Every VPC's and endpoint's chain.
    pub fn scoped_chains(&self) -> Result<Vec<ScopedChainLinkRow>> {
        self.read("reading the chains", load_scoped_chains)
    }

    /// Changes a VPC's chain (endpoint None) or one of its endpoints' at one stage; returns it
    /// as it now is.
    pub fn edit_scoped_chain(
        &mut self,
        vpc: &str,
        endpoint: Option<&str>,
        stage: &str,
        edit: &ChainEdit,
    ) -> Result<Vec<ScopedChainLinkRow>> {
        let stage = parse_stage(stage)?;
        let mine = |r: &ScopedChainLinkRow| {
            r.vpc == vpc && r.endpoint.as_deref() == endpoint && r.stage == stage
        };
        let rows: Vec<ScopedChainLinkRow> =
            self.scoped_chains()?.into_iter().filter(mine).collect();
        let current: Vec<(u16, &str, bool)> = rows
            .iter()
            .map(|l| (l.instance, l.function.as_str(), l.enabled))
            .collect();
        let order = self.read("reading the functions", |conn| {
            edited(conn, stage, &current, edit)
        })?;
        self.write("changing a chain", |tx| {
            let ids = scope_ids(tx, vpc, endpoint)?;
            write_scoped_chain(tx, ids, stage, &order)
        })?;
        Ok(self.scoped_chains()?.into_iter().filter(mine).collect())
    }

    /// The scoped chains as a topology document writes them.
    pub fn scoped_chain_specs(&self) -> Result<Vec<ScopedChainSpec>> {
        Ok(specs_of(
            self.scoped_chains()?,
            |s: &ScopedChainSpec, r: &ScopedChainLinkRow| {
                s.vpc == r.vpc && s.endpoint == r.endpoint && s.stage == r.stage
            },
            |r| ScopedChainSpec {
                vpc: r.vpc.clone(),
                endpoint: r.endpoint.clone(),
                stage: r.stage.clone(),
                functions: Vec::new(),
                disabled: Vec::new(),
            },
            |s| (&mut s.functions, &mut s.disabled),
            |r| (r.function, r.position, r.enabled),
        ))
    }
}

/// Rows in chain order grouped into document chains: `same` says whether a row continues the
/// last chain, `start` begins one, `lists` gives a chain's functions and disabled positions,
/// `link` a row's function, position and state.
fn specs_of<R, S>(
    rows: Vec<R>,
    same: impl Fn(&S, &R) -> bool,
    start: impl Fn(&R) -> S,
    lists: impl Fn(&mut S) -> (&mut Vec<String>, &mut Vec<usize>),
    link: impl Fn(R) -> (String, usize, bool),
) -> Vec<S> {
    let mut specs: Vec<S> = Vec::new();
    for row in rows {
        if !specs.last().is_some_and(|s| same(s, &row)) {
            specs.push(start(&row));
        }
        let spec = specs.last_mut().expect("just pushed");
        let (function, position, enabled) = link(row);
        let (functions, disabled) = lists(spec);
        functions.push(function);
        if !enabled {
            disabled.push(position);
        }
    }
    specs
}

/// Applies a document's scoped chains inside its transaction, as [`apply_chains`] does.
pub(crate) fn apply_scoped_chains(
    tx: &Connection,
    chains: &[ScopedChainSpec],
    prune: bool,
    report: &mut ApplyReport,
) -> Result<()> {
    let current = load_scoped_chains(tx)?;
    type Key = (String, Option<String>, &'static str);
    let mut wanted: BTreeMap<Key, DocumentChain> = BTreeMap::new();
    for spec in chains {
        let stage = parse_stage(&spec.stage)?;
        check_functions(tx, stage, &spec.functions)?;
        let key = (spec.vpc.clone(), spec.endpoint.clone(), stage);
        let value = (spec.functions.clone(), spec.disabled.clone());
        if wanted.insert(key, value).is_some() {
            return Err(StoreError::Duplicate {
                kind: Kind::Chain,
                name: stage.to_owned(),
                scope: scope_words(&spec.vpc, spec.endpoint.as_deref()),
            });
        }
    }
    if prune {
        for row in &current {
            let key = (
                row.vpc.clone(),
                row.endpoint.clone(),
                parse_stage(&row.stage)?,
            );
            wanted.entry(key).or_default();
        }
    }
    for ((vpc, endpoint, stage), (functions, disabled)) in wanted {
        let now: Vec<(u16, &str, bool)> = current
            .iter()
            .filter(|r| r.vpc == vpc && r.endpoint == endpoint && r.stage == stage)
            .map(|r| (r.instance, r.function.as_str(), r.enabled))
            .collect();
        let Some(action) = chain_action(&now, &functions, &disabled) else {
            continue;
        };
        let ids = scope_ids(tx, &vpc, endpoint.as_deref())?;
        write_scoped_chain(tx, ids, stage, &document_order(&now, &functions, &disabled))?;
        let name = match &endpoint {
            Some(e) => format!("{vpc}/{e}:{stage}"),
            None => format!("{vpc}:{stage}"),
        };
        report.push(action, Kind::Chain, name);
    }
    Ok(())
}

/// " of VPC blue" or " of endpoint web1 of VPC blue".
pub fn scope_words(vpc: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(e) => format!(" of endpoint {e:?} of VPC {vpc:?}"),
        None => format!(" of VPC {vpc:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Host, MacAddr};

    fn functions(chain: &[ChainLinkRow]) -> Vec<(u16, &str)> {
        chain
            .iter()
            .map(|l| (l.instance, l.function.as_str()))
            .collect()
    }

    fn store() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        for (i, name) in ["gw1", "h2"].iter().enumerate() {
            store
                .add_host(&Host {
                    name: (*name).to_owned(),
                    ip: [192, 168, 0, i as u8 + 1].into(),
                    mac: MacAddr([2, 0, 0, 0, 0, i as u8 + 1]),
                    interface: Some("eth0".to_owned()),
                })
                .unwrap();
        }
        store.set_this_host("gw1", "eth0").unwrap();
        store
    }

    #[test]
    fn vpc_and_endpoint_chains_keep_their_own_instances_and_the_budget() {
        use crate::model::{Endpoint, Network, Vpc};
        let mut store = store();
        store
            .add_vpc(&Vpc {
                name: "blue".into(),
                vni: 100,
                cidr: "10.0.0.0/16".parse().unwrap(),
            })
            .unwrap();
        store
            .add_network(&Network {
                vpc: "blue".into(),
                name: "web".into(),
                cidr: "10.0.1.0/24".parse().unwrap(),
                gateway: "10.0.1.1".parse().unwrap(),
            })
            .unwrap();
        let mut ep = Endpoint::simple(
            "blue",
            "web",
            "web1",
            "10.0.1.10".parse().unwrap(),
            MacAddr([2, 0, 0, 0, 1, 10]),
            "h2",
        );
        ep.labels = vec!["role=web".into()];
        store.add_endpoint(&ep).unwrap();
        let set = |n: usize| ChainEdit::Set(vec!["count".to_owned(); n]);
        store.edit_chain(None, "redirect", &set(2)).unwrap();
        let vpc = store
            .edit_scoped_chain("blue", None, "redirect", &set(3))
            .unwrap();
        let ep_chain = store
            .edit_scoped_chain("blue", Some("web1"), "redirect", &set(2))
            .unwrap();
        let instances: Vec<u16> = vpc.iter().chain(&ep_chain).map(|l| l.instance).collect();
        assert_eq!(instances, [3, 4, 5, 6, 7], "never a host chain's (1, 2)");
        // A host chain added later skips the scoped chains' numbers.
        let tx = store.edit_chain(Some("h2"), "tx", &set(1)).unwrap();
        assert_eq!(
            tx[0].instance, 1,
            "another host's own numbering, below the scoped ones"
        );
        let more = store.edit_chain(None, "tx", &set(1)).unwrap();
        assert_eq!(more[0].instance, 8);

        let refusals = [
            (
                store
                    .edit_scoped_chain("blue", None, "pass", &set(1))
                    .unwrap_err(),
                "cannot sit at ON_XDP_PASS",
            ),
            (
                store.edit_chain(None, "redirect", &set(12)).unwrap_err(),
                "12 functions of host \"gw1\"'s chain, 3 of VPC \"blue\"'s and 2 of endpoint \"web1\"'s",
            ),
            (
                store
                    .edit_scoped_chain("blue", Some("web9"), "redirect", &set(1))
                    .unwrap_err(),
                "unknown endpoint \"web9\"",
            ),
        ];
        for (err, wanted) in refusals {
            assert!(err.to_string().contains(wanted), "{err}");
        }
        // Disabling keeps the place and the instance; the document lists the position.
        let off = store
            .edit_scoped_chain(
                "blue",
                None,
                "redirect",
                &ChainEdit::Enable {
                    position: 2,
                    enabled: false,
                },
            )
            .unwrap();
        assert_eq!(
            off.iter()
                .map(|l| (l.instance, l.enabled))
                .collect::<Vec<_>>(),
            [(3, true), (4, false), (5, true)]
        );
        let before = store.scoped_chains().unwrap();
        assert_eq!(before.len(), 5);
        // Round trip through a document; the endpoint's chain goes with it.
        let doc = store.export().unwrap();
        assert_eq!(doc.scoped_chains.len(), 2);
        assert_eq!(doc.scoped_chains[0].disabled, [2]);
        store.apply(&doc, true).unwrap();
        assert_eq!(store.scoped_chains().unwrap(), before);
        store.delete_endpoint("blue", "web1", false).unwrap();
        assert_eq!(store.scoped_chains().unwrap().len(), 3);
    }

    #[test]
    fn stages_are_named_as_the_cli_and_the_document_write_them() {
        assert_eq!(parse_stage("on_xdp_tx").unwrap(), "ON_XDP_TX");
        assert_eq!(parse_stage("redirect").unwrap(), "ON_XDP_REDIRECT");
        assert_eq!(parse_stage("scaled-ep").unwrap(), "ON_XDP_SCALED_EP");
        let err = parse_stage("ON_XDP_ABORTED").unwrap_err().to_string();
        assert!(err.contains("ON_XDP_TX, ON_XDP_PASS"), "{err}");
    }

    #[test]
    fn edits_keep_instances_and_renumber_positions() {
        let mut store = store();
        let add = |f: &str, at| ChainEdit::Add {
            function: f.to_owned(),
            at,
        };
        store.edit_chain(None, "tx", &add("count", None)).unwrap();
        store.edit_chain(None, "tx", &add("count", None)).unwrap();
        let chain = store
            .edit_chain(None, "tx", &add("count", Some(1)))
            .unwrap();
        assert_eq!(
            functions(&chain),
            [(3, "count"), (1, "count"), (2, "count")]
        );
        assert_eq!(
            chain.iter().map(|l| l.position).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(
            chain.iter().all(|l| l.host == "gw1"),
            "this host by default"
        );
        let chain = store
            .edit_chain(None, "tx", &ChainEdit::Move { from: 3, to: 1 })
            .unwrap();
        assert_eq!(
            functions(&chain),
            [(2, "count"), (3, "count"), (1, "count")]
        );
        let chain = store
            .edit_chain(None, "tx", &ChainEdit::Remove { position: 2 })
            .unwrap();
        assert_eq!(functions(&chain), [(2, "count"), (1, "count")]);
        // Set keeps the instances of the functions that stay; a freed number is reused.
        let chain = store
            .edit_chain(None, "tx", &ChainEdit::Set(vec!["count".into(); 3]))
            .unwrap();
        assert_eq!(
            functions(&chain),
            [(2, "count"), (1, "count"), (3, "count")]
        );
        // Another stage's instances differ; another host's are its own.
        let other = store.edit_chain(None, "pass", &add("count", None)).unwrap();
        assert_eq!(functions(&other), [(4, "count")]);
        let remote = store
            .edit_chain(Some("h2"), "pass", &add("count", None))
            .unwrap();
        assert_eq!(functions(&remote), [(1, "count")]);
        assert_eq!(store.chains(None).unwrap().len(), 2);
        assert_eq!(store.chains(Some("h2")).unwrap().len(), 1);
        store
            .edit_chain(None, "tx", &ChainEdit::Set(Vec::new()))
            .unwrap();
        assert_eq!(
            store.chains(None).unwrap().into_keys().collect::<Vec<_>>(),
            ["ON_XDP_PASS"]
        );
        // An apply that changes a host (its MAC) replaces its row under the same id: its chains
        // stay.
        let mut doc = store.export().unwrap();
        doc.hosts.iter_mut().find(|h| h.name == "h2").unwrap().mac = MacAddr([2, 0, 0, 0, 9, 9]);
        let before = store.all_chains().unwrap();
        store.apply(&doc, false).unwrap();
        assert_eq!(store.all_chains().unwrap(), before);
        // A host's chains go with it.
        store.delete_host("h2", true).unwrap();
        assert!(store.all_chains().unwrap().iter().all(|r| r.host == "gw1"));
    }

    #[test]
    fn bad_edits_are_refused_and_change_nothing() {
        let mut store = store();
        let set = |n: usize| ChainEdit::Set(vec!["count".to_owned(); n]);
        store.edit_chain(None, "tx", &set(2)).unwrap();
        let before = store.all_chains().unwrap();
        let refusals = [
            (
                ChainEdit::Add {
                    function: "nat".into(),
                    at: None,
                },
                "unknown function \"nat\"; functions: count",
            ),
            (
                set(MAX_CHAIN + 1),
                "17 functions at ON_XDP_TX exceed the 16",
            ),
            (
                ChainEdit::Remove { position: 3 },
                "position 3 is not in the chain",
            ),
            (ChainEdit::Remove { position: 0 }, "positions run from 1"),
            (ChainEdit::Move { from: 1, to: 4 }, "position 4"),
            (
                ChainEdit::Add {
                    function: "count".into(),
                    at: Some(4),
                },
                "position 4",
            ),
        ];
        for (edit, message) in refusals {
            let err = store.edit_chain(None, "tx", &edit).unwrap_err().to_string();
            assert!(err.contains(message), "{edit:?}: {err}");
            assert_eq!(
                store.all_chains().unwrap(),
                before,
                "{edit:?} changed the store"
            );
        }
        assert!(store.edit_chain(None, "nowhere", &set(1)).is_err());
        let err = store
            .edit_chain(Some("h9"), "tx", &set(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown host \"h9\""), "{err}");
        let mut fresh = Store::open_in_memory().unwrap();
        let err = fresh
            .edit_chain(None, "tx", &set(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mizar init"), "{err}");
    }

    #[test]
    fn documents_round_trip_chains_and_bad_ones_change_nothing() {
        let mut store = store();
        let mut doc = store.export().unwrap();
        doc.chains = vec![
            ChainSpec {
                disabled: Vec::new(),
                host: "gw1".into(),
                stage: "redirect".into(),
                functions: vec!["count".into(), "count".into()],
            },
            ChainSpec {
                disabled: Vec::new(),
                host: "h2".into(),
                stage: "ON_XDP_TX".into(),
                functions: vec!["count".into()],
            },
        ];
        let report = store.apply(&doc, false).unwrap();
        assert_eq!(report.count(Kind::Chain, Action::Create), 2, "{report}");
        let exported = store.export().unwrap();
        assert_eq!(
            exported
                .chains
                .iter()
                .map(|c| (c.host.as_str(), c.stage.as_str(), c.functions.len()))
                .collect::<Vec<_>>(),
            [("gw1", "ON_XDP_REDIRECT", 2), ("h2", "ON_XDP_TX", 1)]
        );
        // Back through YAML: the same document, and applying it again changes nothing.
        let yaml = exported.to_yaml().unwrap();
        assert!(yaml.contains("chains:"), "{yaml}");
        let again = crate::model::Topology::from_yaml(&yaml).unwrap();
        assert_eq!(again, exported);
        assert!(store.apply(&again, false).unwrap().is_empty());
        let instances = store.all_chains().unwrap();

        let bad = |functions: Vec<&str>, host: &str, stage: &str| {
            let mut doc = exported.clone();
            doc.chains.push(ChainSpec {
                disabled: Vec::new(),
                host: host.into(),
                stage: stage.into(),
                functions: functions.into_iter().map(String::from).collect(),
            });
            doc
        };
        for (doc, message) in [
            (bad(vec!["nat"], "gw1", "tx"), "unknown function \"nat\""),
            (bad(vec!["count"], "h9", "tx"), "unknown host \"h9\""),
            (bad(vec!["count"], "gw1", "nowhere"), "unknown stage"),
            (bad(vec!["count"], "gw1", "redirect"), "more than once"),
            (bad(vec!["count"; 17], "gw1", "tx"), "exceed the 16"),
        ] {
            let err = store.apply(&doc, false).unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
            assert_eq!(
                store.all_chains().unwrap(),
                instances,
                "{message}: nothing changed"
            );
        }

        // Without pruning, unlisted chains stay; with it, they go.
        let mut partial = exported.clone();
        partial.chains.truncate(1);
        assert!(store.apply(&partial, false).unwrap().is_empty());
        assert_eq!(store.all_chains().unwrap(), instances);
        let report = store.apply(&partial, true).unwrap();
        assert_eq!(report.count(Kind::Chain, Action::Delete), 1, "{report}");
        assert_eq!(
            store.chain_specs().unwrap(),
            partial
                .chains
                .iter()
                .map(|c| ChainSpec {
                    stage: parse_stage(&c.stage).unwrap().to_owned(),
                    ..c.clone()
                })
                .collect::<Vec<_>>()
        );
    }
}
