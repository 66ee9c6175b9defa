//! The acl function's rules: per VPC and direction, in order (first match wins), each allowing
//! or denying traffic between two address sets (any, a CIDR, the endpoints with a label, one
//! endpoint) for a protocol and destination ports; and a default per VPC and direction.

use std::{fmt, str::FromStr};

use ipnet::Ipv4Net;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{
    error::{SqlContext, StoreError},
    ratelimit::Direction,
    store::Store,
};

type Result<T> = std::result::Result<T, StoreError>;

/// Rules the data plane counts hits for: `MZ_MAX_ACL_RULES` in ebpf/include/mizar_abi.h.
pub const MAX_ACL_RULES: usize = 65536;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum AclAction {
    #[default]
    Allow,
    Deny,
}

impl AclAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for AclAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AclAction {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "allow" | "accept" | "permit" => Ok(Self::Allow),
            "deny" | "drop" => Ok(Self::Deny),
            _ => Err(StoreError::AclBadAction {
                input: s.to_owned(),
            }),
        }
    }
}

/// One side of a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum AclAddr {
    #[default]
    Any,
    Cidr(Ipv4Net),
    /// The VPC's endpoints labelled `key=value`.
    Label(String),
    /// One endpoint of the VPC, by name.
    Endpoint(String),
}

impl fmt::Display for AclAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Cidr(net) => write!(f, "{net}"),
            Self::Label(l) => write!(f, "label:{l}"),
            Self::Endpoint(e) => write!(f, "ep:{e}"),
        }
    }
}

impl FromStr for AclAddr {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| StoreError::AclBadAddress {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s == "any" {
            return Ok(Self::Any);
        }
        if let Some(label) = s.strip_prefix("label:") {
            crate::validate::check_label(label)
                .map_err(|_| bad("a label is key=value, of letters, digits, '.', '_' and '-'"))?;
            return Ok(Self::Label(label.to_owned()));
        }
        if let Some(ep) = s.strip_prefix("ep:") {
            if ep.is_empty() {
                return Err(bad("ep: needs an endpoint's name"));
            }
            return Ok(Self::Endpoint(ep.to_owned()));
        }
        let net: Ipv4Net = if s.contains('/') {
            s.parse().map_err(|_| bad("not an IPv4 CIDR"))?
        } else {
            let ip: std::net::Ipv4Addr = s.parse().map_err(|_| bad("not an IPv4 address"))?;
            Ipv4Net::from(ip)
        };
        if net.trunc() != net {
            return Err(bad(&format!(
                "host bits are set; the network is {}",
                net.trunc()
            )));
        }
        Ok(Self::Cidr(net))
    }
}

impl Serialize for AclAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AclAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A protocol: None is every protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AclProto(pub Option<u8>);

impl AclProto {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMP: u8 = 1;
    pub const SCTP: u8 = 132;

    /// Whether the protocol has ports a rule may match.
    pub fn has_ports(self) -> bool {
        matches!(self.0, Some(Self::TCP | Self::UDP | Self::SCTP))
    }
}

impl fmt::Display for AclProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("any"),
            Some(Self::TCP) => f.write_str("tcp"),
            Some(Self::UDP) => f.write_str("udp"),
            Some(Self::ICMP) => f.write_str("icmp"),
            Some(Self::SCTP) => f.write_str("sctp"),
            Some(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for AclProto {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(Self(match s {
            "any" => None,
            "tcp" => Some(Self::TCP),
            "udp" => Some(Self::UDP),
            "icmp" => Some(Self::ICMP),
            "sctp" => Some(Self::SCTP),
            n => Some(n.parse().map_err(|_| StoreError::AclBadProto {
                input: s.to_owned(),
            })?),
        }))
    }
}

impl Serialize for AclProto {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AclProto {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Destination ports, inclusive: "80" or "8000-8100".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| StoreError::AclBadPorts {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| bad("a port is a number from 0 to 65535"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(bad("the first port is above the last"));
        }
        Ok(Self { first, last })
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // YAML gives a lone port as a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let s = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(s) => s,
        };
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One rule, as the CLI and the topology document give it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AclRule {
    pub direction: Direction,
    pub action: AclAction,
    #[serde(default, skip_serializing_if = "is_any")]
    pub src: AclAddr,
    #[serde(default, skip_serializing_if = "is_any")]
    pub dst: AclAddr,
    #[serde(default, skip_serializing_if = "is_any_proto")]
    pub proto: AclProto,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,
}

fn is_any(a: &AclAddr) -> bool {
    *a == AclAddr::Any
}

fn is_any_proto(p: &AclProto) -> bool {
    p.0.is_none()
}

impl AclRule {
    fn check(&self) -> Result<()> {
        if self.ports.is_some() && !self.proto.has_ports() {
            return Err(StoreError::AclPortsWithoutProto {
                proto: self.proto.to_string(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for AclRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} -> {} {}",
            self.direction, self.action, self.src, self.dst, self.proto
        )?;
        if let Some(p) = self.ports {
            write!(f, " port {p}")?;
        }
        Ok(())
    }
}

/// A VPC's ACL, as the topology document holds it: defaults, then rules in order (each
/// direction's rules keep their relative order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Acl {
    pub vpc: String,
    #[serde(default)]
    pub ingress_default: AclAction,
    #[serde(default)]
    pub egress_default: AclAction,
    #[serde(default)]
    pub rules: Vec<AclRule>,
}

/// A rule as stored: its id (its hit counter in the data plane) and position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclRuleRow {
    pub id: u32,
    pub position: u32,
    #[serde(flatten)]
    pub rule: AclRule,
}

/// A VPC's ACL as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AclState {
    pub vpc: String,
    pub ingress_default: AclAction,
    pub egress_default: AclAction,
    /// Raised by each change made with --cut.
    pub epoch: u32,
    /// Ingress rules in order, then egress rules in order.
    pub rules: Vec<AclRuleRow>,
}

impl AclState {
    pub fn default_of(&self, direction: Direction) -> AclAction {
        match direction {
            Direction::Ingress => self.ingress_default,
            Direction::Egress => self.egress_default,
        }
    }
}

/// Checks that what a rule names exists in its VPC: a label some endpoint carries, an endpoint.
fn check_refs(tx: &Connection, vpc: &str, vpc_id: i64, rule: &AclRule) -> Result<()> {
    for addr in [&rule.src, &rule.dst] {
        match addr {
            AclAddr::Label(label) => {
                let labels: Vec<String> = tx
                    .prepare_cached(
                        "SELECT labels FROM endpoints WHERE vpc_id = ?1 AND labels != ''",
                    )
                    .and_then(|mut s| {
                        s.query_map([vpc_id], |r| r.get::<_, String>(0))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .ctx("reading endpoint labels")?;
                let known: std::collections::BTreeSet<&str> =
                    labels.iter().flat_map(|l| l.split(',')).collect();
                if !known.contains(label.as_str()) {
                    return Err(StoreError::AclUnknownLabel {
                        vpc: vpc.to_owned(),
                        label: label.clone(),
                        known: known.into_iter().map(str::to_owned).collect(),
                    });
                }
            }
            AclAddr::Endpoint(name) => {
                crate::store::endpoint_id(tx, vpc, name)?;
            }
            AclAddr::Any | AclAddr::Cidr(_) => {}
        }
    }
    Ok(())
}

fn acl_vpc_row(tx: &Connection, vpc_id: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO acl_vpcs (vpc_id) VALUES (?1) ON CONFLICT (vpc_id) DO NOTHING",
        [vpc_id],
    )
    .ctx("writing an ACL")?;
    Ok(())
}

fn bump_epoch(tx: &Connection, vpc_id: i64) -> Result<()> {
    acl_vpc_row(tx, vpc_id)?;
    tx.execute(
        "UPDATE acl_vpcs SET epoch = (epoch + 1) % 4294967296 WHERE vpc_id = ?1",
        [vpc_id],
    )
    .ctx("cutting flows")?;
    Ok(())
}

fn count_rules(tx: &Connection, vpc_id: i64, direction: Direction) -> Result<u32> {
    let n: i64 = tx
        .query_row(
            "SELECT count(*) FROM acl_rules WHERE vpc_id = ?1 AND direction = ?2",
            params![vpc_id, direction.as_str()],
            |r| r.get(0),
        )
        .ctx("counting ACL rules")?;
    Ok(n as u32)
}

/// Inserts `rule` at `position` (1-based; None: last) of its VPC and direction.
fn insert_rule(tx: &Connection, vpc: &str, rule: &AclRule, position: Option<u32>) -> Result<u32> {
    rule.check()?;
    let vpc_id = crate::store::vpc_id(tx, vpc, || " (ACL rule)".to_owned())?;
    check_refs(tx, vpc, vpc_id, rule)?;
    let count = count_rules(tx, vpc_id, rule.direction)?;
    let position = match position {
        None => count + 1,
        Some(p) if p >= 1 && p <= count + 1 => p,
        Some(p) => {
            return Err(StoreError::AclBadPosition {
                vpc: vpc.to_owned(),
                direction: rule.direction.to_string(),
                position: p,
                count,
            });
        }
    };
    let total: i64 = tx
        .query_row("SELECT count(*) FROM acl_rules", [], |r| r.get(0))
        .ctx("counting ACL rules")?;
    crate::validate::too_many(
        "the acl function".to_owned(),
        "rules",
        total as usize + 1,
        MAX_ACL_RULES,
    )?;
    // Make room: positions are unique, so shift from the end (negated first, then back).
    tx.execute(
        "UPDATE acl_rules SET position = -(position + 1) WHERE vpc_id = ?1 AND direction = ?2 \
         AND position >= ?3",
        params![vpc_id, rule.direction.as_str(), position],
    )
    .and_then(|_| {
        tx.execute(
            "UPDATE acl_rules SET position = -position WHERE vpc_id = ?1 AND position < 0",
            [vpc_id],
        )
    })
    .ctx("making room for an ACL rule")?;
    acl_vpc_row(tx, vpc_id)?;
    tx.execute(
        "INSERT INTO acl_rules (vpc_id, direction, position, action, src, dst, proto, ports) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            vpc_id,
            rule.direction.as_str(),
            position,
            rule.action.as_str(),
            rule.src.to_string(),
            rule.dst.to_string(),
            rule.proto.to_string(),
            rule.ports.map(|p| p.to_string())
        ],
    )
    .ctx("adding an ACL rule")?;
    Ok(position)
}

fn parse_row<T: FromStr<Err = StoreError>>(s: &str) -> Result<T> {
    s.parse()
}

pub(crate) fn load_acls(conn: &Connection) -> Result<Vec<AclState>> {
    let ctx = "reading the ACLs";
    let mut out: Vec<AclState> = Vec::new();
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.name, a.ingress_default, a.egress_default, a.epoch FROM acl_vpcs a \
             JOIN vpcs v ON v.id = a.vpc_id ORDER BY v.name",
        )
        .ctx(ctx)?;
    let vpcs = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .ctx(ctx)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx(ctx)?;
    for (vpc, ingress, egress, epoch) in vpcs {
        out.push(AclState {
            vpc,
            ingress_default: parse_row(&ingress)?,
            egress_default: parse_row(&egress)?,
            epoch: epoch as u32,
            rules: Vec::new(),
        });
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT v.name, r.id, r.position, r.direction, r.action, r.src, r.dst, r.proto, \
             r.ports FROM acl_rules r JOIN vpcs v ON v.id = r.vpc_id \
             ORDER BY v.name, r.direction = 'egress', r.position",
        )
        .ctx(ctx)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                [
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                ],
                r.get::<_, Option<String>>(8)?,
            ))
        })
        .ctx(ctx)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx(ctx)?;
    for (vpc, id, position, [direction, action, src, dst, proto], ports) in rows {
        let row = AclRuleRow {
            id: id as u32,
            position: position as u32,
            rule: AclRule {
                direction: direction.parse()?,
                action: parse_row(&action)?,
                src: parse_row(&src)?,
                dst: parse_row(&dst)?,
                proto: parse_row(&proto)?,
                ports: ports.as_deref().map(parse_row).transpose()?,
            },
        };
        // Every VPC with rules has its acl_vpcs row (written with the first rule).
        if let Some(state) = out.iter_mut().find(|s| s.vpc == vpc) {
            state.rules.push(row);
        }
    }
    Ok(out)
}

/// Makes the store's ACLs `acls` (inside an apply's transaction). A VPC whose ACL is unchanged
/// keeps its rows (their ids are the rules' hit counters) and its epoch.
pub(crate) fn replace_acls(tx: &Connection, acls: &[Acl]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for acl in acls {
        if !seen.insert(&acl.vpc) {
            return Err(StoreError::Duplicate {
                kind: crate::error::Kind::Acl,
                name: acl.vpc.clone(),
                scope: String::new(),
            });
        }
        for rule in &acl.rules {
            rule.check()?;
        }
    }
    let current = load_acls(tx)?;
    let as_doc = |s: &AclState| Acl {
        vpc: s.vpc.clone(),
        ingress_default: s.ingress_default,
        egress_default: s.egress_default,
        rules: s.rules.iter().map(|r| r.rule.clone()).collect(),
    };
    for state in &current {
        if !acls.iter().any(|a| *a == as_doc(state)) {
            let vpc_id = crate::store::vpc_id(tx, &state.vpc, String::new)?;
            tx.execute("DELETE FROM acl_rules WHERE vpc_id = ?1", [vpc_id])
                .and_then(|_| tx.execute("DELETE FROM acl_vpcs WHERE vpc_id = ?1", [vpc_id]))
                .ctx("replacing an ACL")?;
        }
    }
    for acl in acls {
        if current.iter().any(|s| as_doc(s) == *acl) {
            continue;
        }
        let vpc_id = crate::store::vpc_id(tx, &acl.vpc, || " (ACL)".to_owned())?;
        acl_vpc_row(tx, vpc_id)?;
        tx.execute(
            "UPDATE acl_vpcs SET ingress_default = ?2, egress_default = ?3 WHERE vpc_id = ?1",
            params![
                vpc_id,
                acl.ingress_default.as_str(),
                acl.egress_default.as_str()
            ],
        )
        .ctx("writing an ACL")?;
        for rule in &acl.rules {
            insert_rule(tx, &acl.vpc, rule, None)?;
        }
    }
    Ok(())
}

impl Store {
    /// Every VPC's ACL, rules in order.
    pub fn acls(&self) -> Result<Vec<AclState>> {
        self.read("reading the ACLs", load_acls)
    }

    /// Adds a rule at `position` (1-based, among its VPC's rules of its direction; None:
    /// last); returns the position. With `cut`, flows already open are judged again.
    pub fn add_acl_rule(
        &mut self,
        vpc: &str,
        rule: &AclRule,
        position: Option<u32>,
        cut: bool,
    ) -> Result<u32> {
        rule.check()?;
        self.write("adding an ACL rule", |tx| {
            let at = insert_rule(tx, vpc, rule, position)?;
            if cut {
                bump_epoch(tx, crate::store::vpc_id(tx, vpc, String::new)?)?;
            }
            Ok(at)
        })
    }

    /// Removes the rule at `position` of a VPC's rules of `direction`; returns it.
    pub fn delete_acl_rule(
        &mut self,
        vpc: &str,
        direction: Direction,
        position: u32,
        cut: bool,
    ) -> Result<AclRule> {
        self.write("deleting an ACL rule", |tx| {
            let vpc_id = crate::store::vpc_id(tx, vpc, || " (ACL rule)".to_owned())?;
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM acl_rules WHERE vpc_id = ?1 AND direction = ?2 AND position = ?3",
                    params![vpc_id, direction.as_str(), position],
                    |r| r.get(0),
                )
                .optional()
                .ctx("finding an ACL rule")?;
            let Some(id) = id else {
                return Err(StoreError::AclBadPosition {
                    vpc: vpc.to_owned(),
                    direction: direction.to_string(),
                    position,
                    count: count_rules(tx, vpc_id, direction)?,
                });
            };
            let removed = load_acls(tx)?
                .into_iter()
                .flat_map(|s| s.rules)
                .find(|r| i64::from(r.id) == id)
                .map(|r| r.rule)
                .expect("the rule just found");
            tx.execute("DELETE FROM acl_rules WHERE id = ?1", [id])
                .and_then(|_| {
                    tx.execute(
                        "UPDATE acl_rules SET position = -(position - 1) WHERE vpc_id = ?1 AND \
                         direction = ?2 AND position > ?3",
                        params![vpc_id, direction.as_str(), position],
                    )
                })
                .and_then(|_| {
                    tx.execute(
                        "UPDATE acl_rules SET position = -position WHERE vpc_id = ?1 AND position < 0",
                        [vpc_id],
                    )
                })
                .ctx("deleting an ACL rule")?;
            if cut {
                bump_epoch(tx, vpc_id)?;
            }
            Ok(removed)
        })
    }

    /// Sets what a VPC's packets matching no rule of `direction` get.
    pub fn set_acl_default(
        &mut self,
        vpc: &str,
        direction: Direction,
        action: AclAction,
        cut: bool,
    ) -> Result<()> {
        self.write("setting an ACL default", |tx| {
            let vpc_id = crate::store::vpc_id(tx, vpc, || " (ACL)".to_owned())?;
            acl_vpc_row(tx, vpc_id)?;
            let column = match direction {
                Direction::Ingress => "ingress_default",
                Direction::Egress => "egress_default",
            };
            tx.execute(
                &format!("UPDATE acl_vpcs SET {column} = ?2 WHERE vpc_id = ?1"),
                params![vpc_id, action.as_str()],
            )
            .ctx("setting an ACL default")?;
            if cut {
                bump_epoch(tx, vpc_id)?;
            }
            Ok(())
        })
    }

    /// Removes a VPC's ACL (rules and defaults): its traffic is no longer filtered.
    pub fn clear_acl(&mut self, vpc: &str) -> Result<()> {
        self.write("clearing an ACL", |tx| {
            let vpc_id = crate::store::vpc_id(tx, vpc, || " (ACL)".to_owned())?;
            let n = tx
                .execute("DELETE FROM acl_rules WHERE vpc_id = ?1", [vpc_id])
                .ctx("clearing an ACL")?
                + tx.execute("DELETE FROM acl_vpcs WHERE vpc_id = ?1", [vpc_id])
                    .ctx("clearing an ACL")?;
            if n == 0 {
                return Err(StoreError::AclNone {
                    vpc: vpc.to_owned(),
                });
            }
            Ok(())
        })
    }
}

/// The ACLs as the topology document holds them.
pub(crate) fn export_acls(states: &[AclState]) -> Vec<Acl> {
    states
        .iter()
        .map(|s| Acl {
            vpc: s.vpc.clone(),
            ingress_default: s.ingress_default,
            egress_default: s.egress_default,
            rules: s.rules.iter().map(|r| r.rule.clone()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Topology;

    const DOC: &str = "
hosts:
  - { name: h1, ip: 192.168.1.1, mac: '02:00:00:00:01:01', interface: ul0 }
vpcs:
  - name: blue
    vni: 100
    cidr: 10.0.0.0/16
    networks:
      - name: web
        cidr: 10.0.1.0/24
        endpoints:
          - { name: web1, ip: 10.0.1.10, mac: '02:00:0a:00:01:0a', host: h1, veth: v1, labels: [role=web] }
          - { name: db1, ip: 10.0.1.20, mac: '02:00:0a:00:01:14', host: h1, veth: v2 }
";

    fn store() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        store
            .apply(&Topology::from_yaml(DOC).unwrap(), false)
            .unwrap();
        store
    }

    fn rule(s: &str) -> AclRule {
        let parts: Vec<&str> = s.split_whitespace().collect();
        AclRule {
            direction: parts[0].parse().unwrap(),
            action: parts[1].parse().unwrap(),
            src: parts[2].parse().unwrap(),
            dst: parts[3].parse().unwrap(),
            proto: parts[4].parse().unwrap(),
            ports: parts.get(5).map(|p| p.parse().unwrap()),
        }
    }

    #[test]
    fn rules_keep_their_order_and_refuse_bad_input() {
        let mut store = store();
        assert_eq!(
            store
                .add_acl_rule("blue", &rule("ingress deny any any tcp 22"), None, false)
                .unwrap(),
            1
        );
        store
            .add_acl_rule(
                "blue",
                &rule("ingress allow label:role=web ep:db1 tcp 5432"),
                Some(1),
                false,
            )
            .unwrap();
        store
            .add_acl_rule(
                "blue",
                &rule("egress allow any 10.0.0.0/8 udp 53"),
                None,
                true,
            )
            .unwrap();
        store
            .set_acl_default("blue", Direction::Ingress, AclAction::Deny, false)
            .unwrap();
        let acls = store.acls().unwrap();
        assert_eq!(acls.len(), 1);
        let a = &acls[0];
        assert_eq!(a.ingress_default, AclAction::Deny);
        assert_eq!(a.epoch, 1, "a change with cut raises the epoch");
        let shown: Vec<String> = a
            .rules
            .iter()
            .map(|r| format!("{} {}", r.position, r.rule))
            .collect();
        assert_eq!(
            shown,
            [
                "1 ingress allow label:role=web -> ep:db1 tcp port 5432",
                "2 ingress deny any -> any tcp port 22",
                "1 egress allow any -> 10.0.0.0/8 udp port 53",
            ]
        );

        let bad = [
            ("10.0.0.300/8", "not an IPv4 CIDR"),
            ("10.0.0.1/8", "host bits are set; the network is 10.0.0.0/8"),
            ("label:nope", "a label is key=value"),
        ];
        for (input, wanted) in bad {
            let err = input.parse::<AclAddr>().unwrap_err().to_string();
            assert!(err.contains(wanted), "{input}: {err}");
        }
        let errors = [
            store
                .add_acl_rule(
                    "blue",
                    &rule("ingress allow label:role=db any tcp"),
                    None,
                    false,
                )
                .unwrap_err(),
            store
                .add_acl_rule("blue", &rule("ingress allow ep:nope any tcp"), None, false)
                .unwrap_err(),
            store
                .add_acl_rule("blue", &rule("ingress allow any any icmp 80"), None, false)
                .unwrap_err(),
            store
                .add_acl_rule("blue", &rule("ingress allow any any tcp"), Some(9), false)
                .unwrap_err(),
            store
                .add_acl_rule("red", &rule("ingress allow any any tcp"), None, false)
                .unwrap_err(),
            store
                .delete_acl_rule("blue", Direction::Egress, 2, false)
                .unwrap_err(),
        ];
        let wanted = [
            "no endpoint of VPC \"blue\" has the label \"role=db\"; labels in use: role=web",
            "unknown endpoint \"nope\"",
            "ports need a protocol with ports",
            "position 9",
            "unknown VPC \"red\"",
            "egress rules of VPC \"blue\" have no position 2",
        ];
        for (err, wanted) in errors.iter().zip(wanted) {
            assert!(err.to_string().contains(wanted), "{err}");
        }
        assert_eq!(store.acls().unwrap(), acls, "refusals change nothing");
        assert!("70000".parse::<PortRange>().is_err());
        assert!("90-80".parse::<PortRange>().is_err());
        assert!("tcpx".parse::<AclProto>().is_err());

        // Delete closes the gap; export and apply round trip, keeping ids of an unchanged ACL.
        let removed = store
            .delete_acl_rule("blue", Direction::Ingress, 1, false)
            .unwrap();
        assert_eq!(
            removed,
            rule("ingress allow label:role=web ep:db1 tcp 5432")
        );
        let before = store.acls().unwrap();
        assert_eq!(before[0].rules[0].position, 1);
        let doc = store.export().unwrap();
        assert_eq!(doc.acls.as_ref().map(Vec::len), Some(1));
        let yaml = doc.to_yaml().unwrap();
        let back = Topology::from_yaml(&yaml).unwrap();
        store.apply(&back, false).unwrap();
        assert_eq!(store.acls().unwrap(), before);
        // Removing the VPC takes its ACL along.
        store.delete_vpc("blue", true).unwrap();
        assert!(store.acls().unwrap().is_empty());
    }
}
