//! The ddos function's configuration: sources to drop and per-source packet-rate thresholds,
//! each for one VPC or (no VPC) for every VPC. The data plane keys them by VNI (0: every VPC).

use ipnet::Ipv4Net;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{
    error::{SqlContext, StoreError},
    store::Store,
};

type Result<T> = std::result::Result<T, StoreError>;

/// Blocks the data plane holds: `MZ_MAX_DDOS_BLOCKS` in ebpf/include/mizar_abi.h.
pub const MAX_DDOS_BLOCKS: usize = 65_536;

fn check_block_count(count: usize) -> Result<()> {
    crate::validate::too_many(
        "the ddos function".to_owned(),
        "blocks",
        count,
        MAX_DDOS_BLOCKS,
    )
}

/// A blocked source range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DdosBlock {
    /// None: every VPC (and the host's own traffic at ON_XDP_PASS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    #[serde(deserialize_with = "crate::model::cidr::deserialize")]
    pub cidr: Ipv4Net,
}

/// A per-source packet-rate threshold: at most `packets` per `window_ms` from one source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DdosLimit {
    /// None: the default for every VPC without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    pub packets: u64,
    pub window_ms: u64,
}

/// The SYN-flood guard: per destination, at most `syns` new TCP connections per `window_ms`;
/// above it, SYNs from sources without an established connection to it are dropped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DdosSynLimit {
    /// None: the default for every VPC without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    pub syns: u64,
    pub window_ms: u64,
}

/// The two kinds of threshold, each a table of (VPC or default, count, window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// Packets per source.
    SourcePackets,
    /// New TCP connections per destination.
    DestinationSyns,
}

impl Threshold {
    fn table(self) -> &'static str {
        match self {
            Self::SourcePackets => "ddos_limits",
            Self::DestinationSyns => "ddos_syn_limits",
        }
    }

    fn count_column(self) -> &'static str {
        match self {
            Self::SourcePackets => "packets",
            Self::DestinationSyns => "syns",
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DdosConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<DdosBlock>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<DdosLimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syn_limits: Vec<DdosSynLimit>,
}

fn subject(vpc: Option<&str>) -> String {
    match vpc {
        Some(v) => format!("VPC {v:?}"),
        None => "every VPC".to_owned(),
    }
}

/// The VPC's id (None: every VPC), refusing an unknown one.
fn vpc_id(tx: &Connection, vpc: Option<&str>) -> Result<Option<i64>> {
    vpc.map(|name| crate::store::vpc_id(tx, name, || " (ddos rule)".to_owned()))
        .transpose()
}

fn check_threshold(kind: Threshold, vpc: Option<&str>, count: u64, window_ms: u64) -> Result<()> {
    if count == 0 || !(10..=3_600_000).contains(&window_ms) {
        return Err(StoreError::DdosLimitRange {
            subject: subject(vpc),
            what: match kind {
                Threshold::SourcePackets => "rate threshold",
                Threshold::DestinationSyns => "SYN threshold",
            },
            unit: match kind {
                Threshold::SourcePackets => "packet",
                Threshold::DestinationSyns => "SYN",
            },
            packets: count,
            window_ms,
        });
    }
    Ok(())
}

fn check_cidr(vpc: Option<&str>, cidr: Ipv4Net) -> Result<()> {
    if cidr.trunc() != cidr {
        return Err(StoreError::HostBitsSet {
            subject: format!("the ddos block of {}", subject(vpc)),
            given: cidr,
            suggested: cidr.trunc(),
        });
    }
    Ok(())
}

/// A kind of threshold's rows: (VPC or None for every VPC, count, window in ms).
fn load_thresholds(conn: &Connection, kind: Threshold) -> Result<Vec<(Option<String>, u64, u64)>> {
    conn.prepare_cached(&format!(
        "SELECT v.name, l.{}, l.window_ms FROM {} l LEFT JOIN vpcs v ON v.id = l.vpc_id \
         ORDER BY v.name IS NOT NULL, v.name",
        kind.count_column(),
        kind.table()
    ))
    .and_then(|mut stmt| {
        stmt.query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get::<_, i64>(1)? as u64,
                row.get::<_, i64>(2)? as u64,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()
    })
    .ctx("reading the ddos configuration")
}

/// A document's thresholds of one kind: each in range, one per VPC (and one default).
fn check_thresholds<'a>(
    kind: Threshold,
    rows: impl Iterator<Item = (&'a Option<String>, u64, u64)>,
) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for (vpc, count, window_ms) in rows {
        check_threshold(kind, vpc.as_deref(), count, window_ms)?;
        if !seen.insert(vpc) {
            return Err(StoreError::Duplicate {
                kind: crate::error::Kind::DdosLimit,
                name: vpc.clone().unwrap_or_else(|| "(every VPC)".to_owned()),
                scope: match kind {
                    Threshold::SourcePackets => String::new(),
                    Threshold::DestinationSyns => " (SYN thresholds)".to_owned(),
                },
            });
        }
    }
    Ok(())
}

pub(crate) fn load_ddos(conn: &Connection) -> Result<DdosConfig> {
    let ctx = "reading the ddos configuration";
    let blocks = conn
        .prepare_cached(
            "SELECT v.name, b.cidr FROM ddos_blocks b LEFT JOIN vpcs v ON v.id = b.vpc_id \
             ORDER BY v.name IS NOT NULL, v.name, b.cidr",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |row| {
                Ok((row.get::<_, Option<String>>(0)?, row.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx(ctx)?;
    let limits = load_thresholds(conn, Threshold::SourcePackets)?
        .into_iter()
        .map(|(vpc, packets, window_ms)| DdosLimit {
            vpc,
            packets,
            window_ms,
        })
        .collect();
    let syn_limits = load_thresholds(conn, Threshold::DestinationSyns)?
        .into_iter()
        .map(|(vpc, syns, window_ms)| DdosSynLimit {
            vpc,
            syns,
            window_ms,
        })
        .collect();
    let blocks = blocks
        .into_iter()
        .map(|(vpc, cidr)| {
            Ok(DdosBlock {
                vpc,
                cidr: cidr.parse().map_err(|_| StoreError::Corrupt {
                    what: "ddos block CIDR",
                    value: cidr.clone(),
                })?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DdosConfig {
        blocks,
        limits,
        syn_limits,
    })
}

/// Makes the store's ddos configuration `config` (inside an apply's transaction).
pub(crate) fn replace_ddos(tx: &Connection, config: &DdosConfig) -> Result<()> {
    check_block_count(config.blocks.len())?;
    let mut seen = std::collections::BTreeSet::new();
    for b in &config.blocks {
        check_cidr(b.vpc.as_deref(), b.cidr)?;
        if !seen.insert((b.vpc.clone(), b.cidr)) {
            return Err(StoreError::DdosBlockExists {
                subject: subject(b.vpc.as_deref()),
                cidr: b.cidr,
            });
        }
    }
    check_thresholds(
        Threshold::SourcePackets,
        config
            .limits
            .iter()
            .map(|l| (&l.vpc, l.packets, l.window_ms)),
    )?;
    check_thresholds(
        Threshold::DestinationSyns,
        config
            .syn_limits
            .iter()
            .map(|l| (&l.vpc, l.syns, l.window_ms)),
    )?;
    tx.execute("DELETE FROM ddos_blocks", [])
        .ctx("replacing the ddos configuration")?;
    tx.execute("DELETE FROM ddos_syn_limits", [])
        .ctx("replacing the ddos configuration")?;
    tx.execute("DELETE FROM ddos_limits", [])
        .ctx("replacing the ddos configuration")?;
    for b in &config.blocks {
        let id = vpc_id(tx, b.vpc.as_deref())?;
        tx.execute(
            "INSERT INTO ddos_blocks (vpc_id, cidr) VALUES (?1, ?2)",
            params![id, b.cidr.to_string()],
        )
        .ctx("writing a ddos block")?;
    }
    for l in &config.limits {
        insert_threshold(
            tx,
            Threshold::SourcePackets,
            l.vpc.as_deref(),
            l.packets,
            l.window_ms,
        )?;
    }
    for l in &config.syn_limits {
        insert_threshold(
            tx,
            Threshold::DestinationSyns,
            l.vpc.as_deref(),
            l.syns,
            l.window_ms,
        )?;
    }
    Ok(())
}

/// Writes (replacing) the threshold of one VPC or (None) the default.
fn insert_threshold(
    tx: &Connection,
    kind: Threshold,
    vpc: Option<&str>,
    count: u64,
    window_ms: u64,
) -> Result<()> {
    let id = vpc_id(tx, vpc)?;
    tx.execute(
        &format!("DELETE FROM {} WHERE vpc_id IS ?1", kind.table()),
        [id],
    )
    .and_then(|_| {
        tx.execute(
            &format!(
                "INSERT INTO {} (vpc_id, {}, window_ms) VALUES (?1, ?2, ?3)",
                kind.table(),
                kind.count_column()
            ),
            params![id, count as i64, window_ms as i64],
        )
    })
    .ctx("writing a ddos threshold")?;
    Ok(())
}

impl Store {
    /// The ddos function's configuration.
    pub fn ddos(&self) -> Result<DdosConfig> {
        self.read("reading the ddos configuration", load_ddos)
    }

    /// Blocks sources in `cidr`, for one VPC or (None) every VPC.
    pub fn add_ddos_block(&mut self, vpc: Option<&str>, cidr: Ipv4Net) -> Result<()> {
        check_cidr(vpc, cidr)?;
        self.write("adding a ddos block", |tx| {
            let id = vpc_id(tx, vpc)?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM ddos_blocks WHERE vpc_id IS ?1 AND cidr = ?2",
                    params![id, cidr.to_string()],
                    |_| Ok(()),
                )
                .optional()
                .ctx("reading the ddos blocks")?
                .is_some();
            if exists {
                return Err(StoreError::DdosBlockExists {
                    subject: subject(vpc),
                    cidr,
                });
            }
            let count: i64 = tx
                .query_row("SELECT count(*) FROM ddos_blocks", [], |row| row.get(0))
                .ctx("counting the ddos blocks")?;
            check_block_count(count as usize + 1)?;
            tx.execute(
                "INSERT INTO ddos_blocks (vpc_id, cidr) VALUES (?1, ?2)",
                params![id, cidr.to_string()],
            )
            .ctx("adding a ddos block")?;
            Ok(())
        })
    }

    pub fn delete_ddos_block(&mut self, vpc: Option<&str>, cidr: Ipv4Net) -> Result<()> {
        self.write("deleting a ddos block", |tx| {
            let id = vpc_id(tx, vpc)?;
            let n = tx
                .execute(
                    "DELETE FROM ddos_blocks WHERE vpc_id IS ?1 AND cidr = ?2",
                    params![id, cidr.to_string()],
                )
                .ctx("deleting a ddos block")?;
            if n == 0 {
                return Err(StoreError::DdosBlockUnknown {
                    subject: subject(vpc),
                    cidr,
                });
            }
            Ok(())
        })
    }

    /// Sets the per-source threshold of one VPC or (None) the default.
    pub fn set_ddos_limit(
        &mut self,
        vpc: Option<&str>,
        packets: u64,
        window_ms: u64,
    ) -> Result<()> {
        self.set_ddos_threshold(Threshold::SourcePackets, vpc, packets, window_ms)
    }

    pub fn delete_ddos_limit(&mut self, vpc: Option<&str>) -> Result<()> {
        self.delete_ddos_threshold(Threshold::SourcePackets, vpc)
    }

    /// Sets a threshold of one VPC or (None) the default.
    pub fn set_ddos_threshold(
        &mut self,
        kind: Threshold,
        vpc: Option<&str>,
        count: u64,
        window_ms: u64,
    ) -> Result<()> {
        check_threshold(kind, vpc, count, window_ms)?;
        self.write("setting a ddos threshold", |tx| {
            insert_threshold(tx, kind, vpc, count, window_ms)
        })
    }

    pub fn delete_ddos_threshold(&mut self, kind: Threshold, vpc: Option<&str>) -> Result<()> {
        self.write("deleting a ddos threshold", |tx| {
            let id = vpc_id(tx, vpc)?;
            let n = tx
                .execute(
                    &format!("DELETE FROM {} WHERE vpc_id IS ?1", kind.table()),
                    [id],
                )
                .ctx("deleting a ddos threshold")?;
            if n == 0 {
                return Err(StoreError::DdosLimitUnknown {
                    subject: subject(vpc),
                    what: match kind {
                        Threshold::SourcePackets => "rate threshold",
                        Threshold::DestinationSyns => "SYN threshold",
                    },
                });
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Vpc;

    fn store() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        for (name, vni) in [("blue", 100), ("red", 200)] {
            store
                .add_vpc(&Vpc {
                    name: name.into(),
                    vni,
                    cidr: "10.0.0.0/16".parse().unwrap(),
                })
                .unwrap();
        }
        store
    }

    #[test]
    fn blocks_and_limits_per_vpc_and_for_every_vpc() {
        let mut store = store();
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        store
            .add_ddos_block(Some("blue"), net("10.0.1.0/24"))
            .unwrap();
        store.add_ddos_block(None, net("192.0.2.0/24")).unwrap();
        store
            .add_ddos_block(Some("red"), net("10.0.1.0/24"))
            .unwrap();
        store.set_ddos_limit(None, 1000, 1000).unwrap();
        store.set_ddos_limit(Some("red"), 10, 100).unwrap();
        store.set_ddos_limit(Some("red"), 20, 100).unwrap();
        let config = store.ddos().unwrap();
        assert_eq!(
            config
                .blocks
                .iter()
                .map(|b| (b.vpc.as_deref(), b.cidr.to_string()))
                .collect::<Vec<_>>(),
            [
                (None, "192.0.2.0/24".to_owned()),
                (Some("blue"), "10.0.1.0/24".to_owned()),
                (Some("red"), "10.0.1.0/24".to_owned()),
            ]
        );
        assert_eq!(config.limits.len(), 2);
        assert_eq!(config.limits[1].packets, 20, "set replaces");

        // Refused, and nothing changes.
        let errors = [
            store
                .add_ddos_block(Some("blue"), net("10.0.1.0/24"))
                .unwrap_err(),
            store.add_ddos_block(None, net("192.0.2.0/24")).unwrap_err(),
            store
                .add_ddos_block(Some("green"), net("10.0.1.0/24"))
                .unwrap_err(),
            store.add_ddos_block(None, net("10.0.1.1/24")).unwrap_err(),
            store
                .delete_ddos_block(Some("red"), net("10.9.0.0/16"))
                .unwrap_err(),
            store.set_ddos_limit(Some("blue"), 0, 1000).unwrap_err(),
            store.set_ddos_limit(Some("blue"), 10, 5).unwrap_err(),
            store.delete_ddos_limit(Some("blue")).unwrap_err(),
        ];
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for (message, wanted) in messages.iter().zip([
            "VPC \"blue\" already blocks 10.0.1.0/24",
            "every VPC already blocks 192.0.2.0/24",
            "unknown VPC \"green\"",
            "write the network address: 10.0.1.0/24",
            "does not block 10.9.0.0/16",
            "at least 1 packet per window",
            "at least 1 packet per window",
            "has no rate threshold",
        ]) {
            assert!(message.contains(wanted), "{message}");
        }
        assert_eq!(store.ddos().unwrap(), config);

        // A VPC's rules go with it.
        store.delete_vpc("red", true).unwrap();
        let left = store.ddos().unwrap();
        assert_eq!(left.blocks.len(), 2);
        assert_eq!(left.limits.len(), 1);
    }

    #[test]
    fn syn_thresholds_are_set_replaced_refused_and_round_trip() {
        let mut store = store();
        let syn = Threshold::DestinationSyns;
        store
            .set_ddos_threshold(syn, Some("blue"), 100, 1000)
            .unwrap();
        store
            .set_ddos_threshold(syn, Some("blue"), 50, 1000)
            .unwrap();
        store.set_ddos_threshold(syn, None, 500, 1000).unwrap();
        let config = store.ddos().unwrap();
        assert_eq!(config.syn_limits.len(), 2);
        assert_eq!(config.syn_limits[1].syns, 50, "set replaces");
        assert!(
            config.limits.is_empty(),
            "a SYN threshold is not a rate threshold"
        );
        let errors = [
            store
                .set_ddos_threshold(syn, Some("blue"), 0, 1000)
                .unwrap_err(),
            store.delete_ddos_threshold(syn, Some("red")).unwrap_err(),
            store
                .set_ddos_threshold(syn, Some("green"), 1, 1000)
                .unwrap_err(),
        ];
        for (err, wanted) in errors.iter().zip([
            "the SYN threshold of VPC \"blue\" must allow at least 1 SYN",
            "VPC \"red\" has no SYN threshold",
            "unknown VPC \"green\"",
        ]) {
            assert!(err.to_string().contains(wanted), "{err}");
        }
        let doc = store.export().unwrap();
        let yaml = doc.to_yaml().unwrap();
        assert!(yaml.contains("syn-limits:"), "{yaml}");
        store
            .apply(&crate::model::Topology::from_yaml(&yaml).unwrap(), true)
            .unwrap();
        assert_eq!(store.ddos().unwrap(), config);
        store.delete_vpc("blue", true).unwrap();
        assert_eq!(
            store.ddos().unwrap().syn_limits.len(),
            1,
            "a VPC's threshold goes with it"
        );
    }

    #[test]
    fn more_blocks_than_the_data_plane_holds_are_refused_before_anything_is_written() {
        let mut store = store();
        let mut doc = store.export().unwrap();
        doc.ddos = Some(DdosConfig {
            blocks: (0..=MAX_DDOS_BLOCKS as u32)
                .map(|i| DdosBlock {
                    vpc: None,
                    cidr: Ipv4Net::new((0x0a00_0000 + i).into(), 32).unwrap(),
                })
                .collect(),
            limits: Vec::new(),
            syn_limits: Vec::new(),
        });
        let err = store.apply(&doc, false).unwrap_err().to_string();
        assert!(
            err.contains("65537 blocks, but the data plane supports at most 65536"),
            "{err}"
        );
        assert_eq!(store.ddos().unwrap(), DdosConfig::default());
    }
}
