//! The ratelimit function's rules: per VPC as a whole or per endpoint, per direction, packets
//! and/or bytes per second with bursts. The data plane keys them by (VNI, endpoint address or 0,
//! direction).

use std::{fmt, str::FromStr};

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::{
    error::{SqlContext, StoreError},
    store::Store,
};

type Result<T> = std::result::Result<T, StoreError>;

/// Rules the data plane holds: `MZ_MAX_RATE_LIMITS` in ebpf/include/mizar_abi.h.
pub const MAX_RATE_LIMITS: usize = 4096;

/// Which way the traffic goes, seen from the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// What the endpoint receives (the function at ON_XDP_REDIRECT).
    Ingress,
    /// What the endpoint sends (the function at ON_EGRESS).
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ingress" | "in" => Ok(Self::Ingress),
            "egress" | "out" => Ok(Self::Egress),
            _ => Err(StoreError::InvalidDirection {
                input: s.to_owned(),
            }),
        }
    }
}

/// One rule. A burst left out is one second's worth.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimit {
    pub vpc: String,
    /// None: the VPC as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub direction: Direction,
    /// Packets per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_packets: Option<u64>,
    /// Bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<u64>,
}

impl RateLimit {
    fn subject(&self) -> String {
        subject(&self.vpc, self.endpoint.as_deref())
    }

    fn check(&self) -> Result<()> {
        let zero = |v: Option<u64>| v == Some(0);
        if (self.packets.is_none() && self.bytes.is_none())
            || zero(self.packets)
            || zero(self.bytes)
            || zero(self.burst_packets)
            || zero(self.burst_bytes)
        {
            return Err(StoreError::RateLimitEmpty {
                subject: self.subject(),
            });
        }
        Ok(())
    }
}

fn subject(vpc: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(ep) => format!("endpoint {ep:?} of VPC {vpc:?}"),
        None => format!("VPC {vpc:?}"),
    }
}

fn ids(tx: &Connection, vpc: &str, endpoint: Option<&str>) -> Result<(i64, Option<i64>)> {
    let vpc_id = crate::store::vpc_id(tx, vpc, || " (rate limit)".to_owned())?;
    let ep_id = endpoint
        .map(|name| crate::store::endpoint_id(tx, vpc, name))
        .transpose()?;
    Ok((vpc_id, ep_id))
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| v.min(i64::MAX as u64) as i64)
}

fn insert(tx: &Connection, rule: &RateLimit) -> Result<()> {
    rule.check()?;
    let (vpc_id, ep_id) = ids(tx, &rule.vpc, rule.endpoint.as_deref())?;
    tx.execute(
        "DELETE FROM rate_limits WHERE vpc_id = ?1 AND endpoint_id IS ?2 AND direction = ?3",
        params![vpc_id, ep_id, rule.direction.as_str()],
    )
    .ctx("setting a rate limit")?;
    let count: i64 = tx
        .query_row("SELECT count(*) FROM rate_limits", [], |row| row.get(0))
        .ctx("counting the rate limits")?;
    crate::validate::too_many(
        "the ratelimit function".to_owned(),
        "rules",
        count as usize + 1,
        MAX_RATE_LIMITS,
    )?;
    tx.execute(
        "INSERT INTO rate_limits (vpc_id, endpoint_id, direction, packets, burst_packets, bytes, \
         burst_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            vpc_id,
            ep_id,
            rule.direction.as_str(),
            to_i64(rule.packets),
            to_i64(rule.burst_packets),
            to_i64(rule.bytes),
            to_i64(rule.burst_bytes)
        ],
    )
    .ctx("setting a rate limit")?;
    Ok(())
}

pub(crate) fn load_rate_limits(conn: &Connection) -> Result<Vec<RateLimit>> {
    let ctx = "reading the rate limits";
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.name, e.name, r.direction, r.packets, r.burst_packets, r.bytes, \
             r.burst_bytes FROM rate_limits r JOIN vpcs v ON v.id = r.vpc_id \
             LEFT JOIN endpoints e ON e.id = r.endpoint_id \
             ORDER BY v.name, e.name IS NOT NULL, e.name, r.direction",
        )
        .ctx(ctx)?;
    let rows = stmt
        .query_map([], |row| {
            let u = |i: usize| row.get::<_, Option<i64>>(i).map(|v| v.map(|v| v as u64));
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, String>(2)?,
                u(3)?,
                u(4)?,
                u(5)?,
                u(6)?,
            ))
        })
        .ctx(ctx)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx(ctx)?;
    rows.into_iter()
        .map(
            |(vpc, endpoint, direction, packets, burst_packets, bytes, burst_bytes)| {
                Ok(RateLimit {
                    vpc,
                    endpoint,
                    direction: direction.parse()?,
                    packets,
                    burst_packets,
                    bytes,
                    burst_bytes,
                })
            },
        )
        .collect()
}

/// Makes the store's rules `rules` (inside an apply's transaction).
pub(crate) fn replace_rate_limits(tx: &Connection, rules: &[RateLimit]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for rule in rules {
        if !seen.insert((&rule.vpc, &rule.endpoint, rule.direction)) {
            return Err(StoreError::Duplicate {
                kind: crate::error::Kind::RateLimit,
                name: rule.direction.to_string(),
                scope: format!(" of {}", rule.subject()),
            });
        }
    }
    tx.execute("DELETE FROM rate_limits", [])
        .ctx("replacing the rate limits")?;
    for rule in rules {
        insert(tx, rule)?;
    }
    Ok(())
}

impl Store {
    pub fn rate_limits(&self) -> Result<Vec<RateLimit>> {
        self.read("reading the rate limits", load_rate_limits)
    }

    /// Sets (adds or replaces) the rule of its VPC or endpoint and direction.
    pub fn set_rate_limit(&mut self, rule: &RateLimit) -> Result<()> {
        rule.check()?;
        self.write("setting a rate limit", |tx| insert(tx, rule))
    }

    pub fn delete_rate_limit(
        &mut self,
        vpc: &str,
        endpoint: Option<&str>,
        direction: Direction,
    ) -> Result<()> {
        self.write("deleting a rate limit", |tx| {
            let (vpc_id, ep_id) = ids(tx, vpc, endpoint)?;
            let n = tx
                .execute(
                    "DELETE FROM rate_limits WHERE vpc_id = ?1 AND endpoint_id IS ?2 AND \
                     direction = ?3",
                    params![vpc_id, ep_id, direction.as_str()],
                )
                .ctx("deleting a rate limit")?;
            if n == 0 {
                return Err(StoreError::RateLimitUnknown {
                    subject: subject(vpc, endpoint),
                    direction: direction.to_string(),
                });
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Topology;

    const DOC: &str = "
hosts:
  - { name: h1, ip: 192.168.1.1, mac: '02:00:00:00:01:01', interface: ul0 }
  - { name: h2, ip: 192.168.1.2, mac: '02:00:00:00:01:02' }
vpcs:
  - name: blue
    vni: 100
    cidr: 10.0.0.0/16
    networks:
      - name: web
        cidr: 10.0.1.0/24
        endpoints:
          - { name: web1, ip: 10.0.1.10, mac: '02:00:0a:00:01:0a', host: h2 }
";

    fn store() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        store
            .apply(&Topology::from_yaml(DOC).unwrap(), false)
            .unwrap();
        store.set_this_host("h1", "ul0").unwrap();
        store
    }

    fn rule(endpoint: Option<&str>, direction: Direction) -> RateLimit {
        RateLimit {
            vpc: "blue".into(),
            endpoint: endpoint.map(str::to_owned),
            direction,
            packets: Some(1000),
            burst_packets: None,
            bytes: None,
            burst_bytes: None,
        }
    }

    #[test]
    fn rules_are_set_replaced_refused_and_follow_their_objects() {
        let mut store = store();
        store
            .set_rate_limit(&rule(None, Direction::Ingress))
            .unwrap();
        store
            .set_rate_limit(&rule(Some("web1"), Direction::Egress))
            .unwrap();
        let mut faster = rule(Some("web1"), Direction::Egress);
        faster.packets = Some(5000);
        store.set_rate_limit(&faster).unwrap();
        let rules = store.rate_limits().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].packets, Some(5000), "set replaces");

        let mut empty = rule(None, Direction::Egress);
        empty.packets = None;
        let errors = [
            store.set_rate_limit(&empty).unwrap_err(),
            store
                .set_rate_limit(&rule(Some("web9"), Direction::Egress))
                .unwrap_err(),
            store
                .delete_rate_limit("blue", None, Direction::Egress)
                .unwrap_err(),
        ];
        for (err, wanted) in errors.iter().zip([
            "needs --packets or --bytes",
            "unknown endpoint \"web9\"",
            "has no egress rate limit",
        ]) {
            assert!(err.to_string().contains(wanted), "{err}");
        }
        assert_eq!(store.rate_limits().unwrap(), rules);

        // An apply that changes the endpoint (its MAC) replaces its row under the same id: the
        // rule stays. Export and apply round trip.
        let mut doc = store.export().unwrap();
        assert_eq!(doc.rate_limits.as_deref(), Some(rules.as_slice()));
        doc.vpcs[0].networks[0].endpoints[0].mac = "02:00:0a:00:01:0b".parse().unwrap();
        store.apply(&doc, false).unwrap();
        assert_eq!(store.rate_limits().unwrap(), rules);
        // Removing the endpoint takes its rule along; the VPC's stays.
        store.delete_endpoint("blue", "web1", false).unwrap();
        assert_eq!(store.rate_limits().unwrap(), rules[..1]);
    }
}
