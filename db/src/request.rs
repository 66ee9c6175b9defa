//! A change to the store as a front end asks for it: the CLI builds one from its arguments, the
//! dashboard from a form, and both hand it to the same change path, so a change made either way
//! is validated, refused and reported alike.

use std::fmt;

use crate::{ApplyReport, Endpoint, Host, Kind, Network, Store, StoreError, Vpc};

type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    AddHost(Host),
    DeleteHost {
        name: String,
        cascade: bool,
    },
    /// Brings an existing object to what the request holds (matched by its name; the VPC's
    /// too for networks and endpoints): the change forms and `mizar … set` build these.
    ChangeHost(Host),
    AddVpc(Vpc),
    DeleteVpc {
        name: String,
        cascade: bool,
    },
    ChangeVpc(Vpc),
    AddNetwork(Network),
    DeleteNetwork {
        vpc: String,
        name: String,
        cascade: bool,
    },
    ChangeNetwork(Network),
    /// With `netns`, the appliance also plumbs the endpoint's veth into that namespace.
    AddEndpoint {
        endpoint: Endpoint,
        netns: Option<String>,
    },
    DeleteEndpoint {
        vpc: String,
        name: String,
    },
    ChangeEndpoint(Endpoint),
    AddBouncer {
        vpc: String,
        network: String,
        host: String,
    },
    DeleteBouncer {
        vpc: String,
        network: String,
        host: String,
    },
    AddDivider {
        vpc: String,
        host: String,
    },
    DeleteDivider {
        vpc: String,
        host: String,
    },
    /// Sources in `cidr` dropped by the ddos function, for a VPC or (None) every VPC.
    AddDdosBlock {
        vpc: Option<String>,
        cidr: ipnet::Ipv4Net,
    },
    DeleteDdosBlock {
        vpc: Option<String>,
        cidr: ipnet::Ipv4Net,
    },
    /// At most `packets` per `window_ms` from one source of a VPC (None: the default).
    SetDdosLimit {
        vpc: Option<String>,
        packets: u64,
        window_ms: u64,
    },
    DeleteDdosLimit {
        vpc: Option<String>,
    },
    /// The SYN-flood guard: at most `syns` new TCP connections per `window_ms` to one
    /// destination of a VPC (None: the default).
    SetDdosSynLimit {
        vpc: Option<String>,
        syns: u64,
        window_ms: u64,
    },
    DeleteDdosSynLimit {
        vpc: Option<String>,
    },
    /// Sets the ratelimit function's rule of a VPC or an endpoint, for one direction.
    SetRateLimit(crate::ratelimit::RateLimit),
    DeleteRateLimit {
        vpc: String,
        endpoint: Option<String>,
        direction: crate::ratelimit::Direction,
    },
    /// Adds an ACL rule at a position of its VPC's rules of its direction (None: last); with
    /// `cut`, flows already open are judged again by the new rules.
    AddAclRule {
        vpc: String,
        rule: crate::acl::AclRule,
        position: Option<u32>,
        cut: bool,
    },
    DeleteAclRule {
        vpc: String,
        direction: crate::ratelimit::Direction,
        position: u32,
        cut: bool,
    },
    SetAclDefault {
        vpc: String,
        direction: crate::ratelimit::Direction,
        action: crate::acl::AclAction,
        cut: bool,
    },
    /// Removes a VPC's ACL: its traffic is no longer filtered.
    ClearAcl {
        vpc: String,
    },
    /// A change to a VPC's chain (endpoint None) or one of its endpoints' at a stage.
    EditScopedChain {
        vpc: String,
        endpoint: Option<String>,
        stage: String,
        edit: crate::chains::ChainEdit,
    },
    /// A change to a host's chain at a stage (host None: this host's).
    EditChain {
        host: Option<String>,
        stage: String,
        edit: crate::chains::ChainEdit,
    },
}

impl Request {
    /// Whether the request removes something (front ends ask for confirmation first).
    pub fn removes(&self) -> bool {
        matches!(
            self,
            Self::DeleteHost { .. }
                | Self::DeleteVpc { .. }
                | Self::DeleteNetwork { .. }
                | Self::DeleteEndpoint { .. }
                | Self::DeleteBouncer { .. }
                | Self::DeleteDivider { .. }
                | Self::EditChain {
                    edit: crate::chains::ChainEdit::Remove { .. },
                    ..
                }
                | Self::EditScopedChain {
                    edit: crate::chains::ChainEdit::Remove { .. },
                    ..
                }
                | Self::DeleteDdosBlock { .. }
                | Self::DeleteDdosLimit { .. }
                | Self::DeleteDdosSynLimit { .. }
                | Self::DeleteRateLimit { .. }
                | Self::DeleteAclRule { .. }
                | Self::ClearAcl { .. }
        )
    }

    /// Whether the request changes a function's configuration (ddos, ratelimit, acl).
    pub fn is_function_config(&self) -> bool {
        matches!(
            self,
            Self::AddDdosBlock { .. }
                | Self::DeleteDdosBlock { .. }
                | Self::SetDdosLimit { .. }
                | Self::DeleteDdosLimit { .. }
                | Self::SetDdosSynLimit { .. }
                | Self::DeleteDdosSynLimit { .. }
                | Self::SetRateLimit(_)
                | Self::DeleteRateLimit { .. }
                | Self::AddAclRule { .. }
                | Self::DeleteAclRule { .. }
                | Self::SetAclDefault { .. }
                | Self::ClearAcl { .. }
        )
    }
}

/// What the request asks, in the words a confirmation prompt uses.
impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cascade = |c: &bool| if *c { " and everything in it" } else { "" };
        match self {
            Self::AddHost(h) => write!(f, "add host {} ({})", h.name, h.ip),
            Self::DeleteHost { name, cascade: c } => {
                write!(f, "delete host {name}{}", cascade(c))
            }
            Self::ChangeHost(h) => write!(f, "change host {} ({}, {})", h.name, h.ip, h.mac),
            Self::ChangeVpc(v) => write!(f, "change VPC {} (VNI {}, {})", v.name, v.vni, v.cidr),
            Self::ChangeNetwork(n) => {
                write!(f, "change network {} of VPC {} ({})", n.name, n.vpc, n.cidr)
            }
            Self::ChangeEndpoint(e) => {
                write!(f, "change endpoint {} of VPC {} ({})", e.name, e.vpc, e.ip)
            }
            Self::AddVpc(v) => write!(f, "add VPC {} (VNI {}, {})", v.name, v.vni, v.cidr),
            Self::DeleteVpc { name, cascade: c } => write!(f, "delete VPC {name}{}", cascade(c)),
            Self::AddNetwork(n) => {
                write!(f, "add network {} ({}) to VPC {}", n.name, n.cidr, n.vpc)
            }
            Self::DeleteNetwork {
                vpc,
                name,
                cascade: c,
            } => write!(f, "delete network {name} of VPC {vpc}{}", cascade(c)),
            Self::AddEndpoint { endpoint: e, .. } => {
                write!(f, "add endpoint {} ({}) to VPC {}", e.name, e.ip, e.vpc)
            }
            Self::DeleteEndpoint { vpc, name } => write!(f, "delete endpoint {name} of VPC {vpc}"),
            Self::AddBouncer { vpc, network, host } => {
                write!(f, "make {host} a bouncer of network {network} of VPC {vpc}")
            }
            Self::DeleteBouncer { vpc, network, host } => {
                write!(
                    f,
                    "remove bouncer {host} from network {network} of VPC {vpc}"
                )
            }
            Self::AddDivider { vpc, host } => write!(f, "make {host} a divider of VPC {vpc}"),
            Self::DeleteDivider { vpc, host } => {
                write!(f, "remove divider {host} from VPC {vpc}")
            }
            Self::AddDdosBlock { vpc, cidr } => {
                write!(f, "block sources in {cidr} for {}", ddos_subject(vpc))
            }
            Self::DeleteDdosBlock { vpc, cidr } => {
                write!(f, "unblock {cidr} for {}", ddos_subject(vpc))
            }
            Self::SetDdosLimit {
                vpc,
                packets,
                window_ms,
            } => write!(
                f,
                "limit each source of {} to {packets} packets per {window_ms} ms",
                ddos_subject(vpc)
            ),
            Self::DeleteDdosLimit { vpc } => {
                write!(f, "remove the rate threshold of {}", ddos_subject(vpc))
            }
            Self::SetDdosSynLimit {
                vpc,
                syns,
                window_ms,
            } => write!(
                f,
                "guard each destination of {} above {syns} new TCP connections per {window_ms} ms",
                ddos_subject(vpc)
            ),
            Self::DeleteDdosSynLimit { vpc } => {
                write!(f, "remove the SYN threshold of {}", ddos_subject(vpc))
            }
            Self::SetRateLimit(r) => write!(
                f,
                "limit the {} traffic of {}",
                r.direction,
                rate_subject(&r.vpc, r.endpoint.as_deref())
            ),
            Self::DeleteRateLimit {
                vpc,
                endpoint,
                direction,
            } => write!(
                f,
                "remove the {direction} rate limit of {}",
                rate_subject(vpc, endpoint.as_deref())
            ),
            Self::AddAclRule {
                vpc,
                rule,
                position,
                ..
            } => match position {
                Some(p) => write!(f, "add ACL rule {rule} at position {p} in VPC {vpc}"),
                None => write!(f, "add ACL rule {rule} in VPC {vpc}"),
            },
            Self::DeleteAclRule {
                vpc,
                direction,
                position,
                ..
            } => write!(f, "delete {direction} ACL rule {position} of VPC {vpc}"),
            Self::SetAclDefault {
                vpc,
                direction,
                action,
                ..
            } => write!(f, "make the {direction} ACL default of VPC {vpc} {action}"),
            Self::ClearAcl { vpc } => write!(f, "remove the ACL of VPC {vpc}"),
            Self::EditScopedChain {
                vpc,
                endpoint,
                stage,
                edit,
            } => {
                let scope = crate::chains::scope_words(vpc, endpoint.as_deref());
                write!(
                    f,
                    "{}{scope}",
                    Self::EditChain {
                        host: None,
                        stage: stage.clone(),
                        edit: edit.clone(),
                    }
                )
            }
            Self::EditChain { stage, edit, .. } => {
                use crate::chains::ChainEdit;
                match edit {
                    ChainEdit::Set(functions) if functions.is_empty() => {
                        write!(f, "empty the chain at {stage}")
                    }
                    ChainEdit::Set(functions) => {
                        write!(f, "make the chain at {stage} {}", functions.join(" -> "))
                    }
                    ChainEdit::Add { function, at: None } => {
                        write!(f, "add {function} at the end of the chain at {stage}")
                    }
                    ChainEdit::Add {
                        function,
                        at: Some(p),
                    } => write!(f, "add {function} at position {p} of the chain at {stage}"),
                    ChainEdit::Remove { position } => {
                        write!(f, "remove function {position} of the chain at {stage}")
                    }
                    ChainEdit::Move { from, to } => {
                        write!(f, "move function {from} of the chain at {stage} to {to}")
                    }
                    ChainEdit::Enable { position, enabled } => write!(
                        f,
                        "{} function {position} of the chain at {stage}",
                        if *enabled { "enable" } else { "disable" }
                    ),
                }
            }
        }
    }
}

fn rate_subject(vpc: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(ep) => format!("endpoint {ep} of VPC {vpc}"),
        None => format!("VPC {vpc}"),
    }
}

fn ddos_subject(vpc: &Option<String>) -> String {
    match vpc {
        Some(v) => format!("VPC {v}"),
        None => "every VPC".to_owned(),
    }
}

/// "chain at ON_XDP_TX: count -> count", as the CLI prints a chain after a change.
/// What a change to a VPC's or an endpoint's chain says: the chain as it now is.
pub fn scoped_chain_outcome(
    vpc: &str,
    endpoint: Option<&str>,
    stage: &str,
    chain: &[crate::chains::ScopedChainLinkRow],
) -> String {
    let names: Vec<&str> = chain.iter().map(|l| l.function.as_str()).collect();
    format!(
        "chain{} at {}: {}",
        crate::chains::scope_words(vpc, endpoint),
        crate::chains::parse_stage(stage).unwrap_or(stage),
        if names.is_empty() {
            "empty".to_owned()
        } else {
            names.join(" -> ")
        }
    )
}

pub fn chain_outcome(stage: &str, chain: &[crate::chains::ChainLinkRow]) -> String {
    let stage = chain.first().map_or(stage, |l| l.stage.as_str());
    if chain.is_empty() {
        format!("chain at {stage}: empty")
    } else {
        let names: Vec<&str> = chain.iter().map(|l| l.function.as_str()).collect();
        format!("chain at {stage}: {}", names.join(" -> "))
    }
}

/// "endpoint blue/web1 changed", or "… unchanged" when it already was what was asked.
fn changed(kind: Kind, name: &str, report: ApplyReport) -> String {
    if report.is_empty() {
        format!("{kind} {name} unchanged")
    } else {
        format!("{kind} {name} changed")
    }
}

impl Store {
    /// Writes the request and says what it did, as the CLI prints it. Endpoints are written
    /// here too, but a front end with a data plane asks the appliance (which plans their map
    /// entries from their neighbourhood and plumbs `netns`).
    pub fn make(&mut self, request: &Request) -> Result<String> {
        Ok(match request {
            Request::AddHost(host) => {
                self.add_host(host)?;
                format!("host {} added", host.name)
            }
            Request::DeleteHost { name, cascade } => self.delete_host(name, *cascade)?.summary(),
            Request::ChangeHost(host) => changed(Kind::Host, &host.name, self.change_host(host)?),
            Request::ChangeVpc(vpc) => changed(Kind::Vpc, &vpc.name, self.change_vpc(vpc)?),
            Request::ChangeNetwork(net) => changed(
                Kind::Network,
                &format!("{}/{}", net.vpc, net.name),
                self.change_network(net)?,
            ),
            Request::ChangeEndpoint(ep) => changed(
                Kind::Endpoint,
                &format!("{}/{}", ep.vpc, ep.name),
                self.change_endpoint(ep)?,
            ),
            Request::AddVpc(vpc) => {
                self.add_vpc(vpc)?;
                format!("VPC {} added (VNI {})", vpc.name, vpc.vni)
            }
            Request::DeleteVpc { name, cascade } => self.delete_vpc(name, *cascade)?.summary(),
            Request::AddNetwork(net) => {
                self.add_network(net)?;
                format!(
                    "network {} ({}) added to VPC {}",
                    net.name, net.cidr, net.vpc
                )
            }
            Request::DeleteNetwork { vpc, name, cascade } => {
                self.delete_network(vpc, name, *cascade)?.summary()
            }
            Request::AddEndpoint { endpoint, netns } => {
                match netns {
                    Some(netns) => self.add_endpoint_in_netns(endpoint, netns)?,
                    None => self.add_endpoint(endpoint)?,
                }
                format!(
                    "endpoint {} ({}) added to VPC {}",
                    endpoint.name, endpoint.ip, endpoint.vpc
                )
            }
            Request::DeleteEndpoint { vpc, name } => {
                self.delete_endpoint(vpc, name, false)?.summary()
            }
            Request::AddBouncer { vpc, network, host } => {
                self.add_bouncer(vpc, network, host)?;
                format!("{host} now bounces network {network} of VPC {vpc}")
            }
            Request::DeleteBouncer { vpc, network, host } => {
                self.delete_bouncer(vpc, network, host)?;
                format!("{host} no longer bounces network {network} of VPC {vpc}")
            }
            Request::AddDivider { vpc, host } => {
                self.add_divider(vpc, host)?;
                format!("{host} now divides VPC {vpc}")
            }
            Request::DeleteDivider { vpc, host } => {
                self.delete_divider(vpc, host)?;
                format!("{host} no longer divides VPC {vpc}")
            }
            Request::AddDdosBlock { vpc, cidr } => {
                self.add_ddos_block(vpc.as_deref(), *cidr)?;
                format!("{cidr} blocked for {}", ddos_subject(vpc))
            }
            Request::DeleteDdosBlock { vpc, cidr } => {
                self.delete_ddos_block(vpc.as_deref(), *cidr)?;
                format!("{cidr} no longer blocked for {}", ddos_subject(vpc))
            }
            Request::SetDdosLimit {
                vpc,
                packets,
                window_ms,
            } => {
                self.set_ddos_limit(vpc.as_deref(), *packets, *window_ms)?;
                format!(
                    "each source of {} limited to {packets} packets per {window_ms} ms",
                    ddos_subject(vpc)
                )
            }
            Request::DeleteDdosLimit { vpc } => {
                self.delete_ddos_limit(vpc.as_deref())?;
                format!("no rate threshold for {} any more", ddos_subject(vpc))
            }
            Request::SetDdosSynLimit {
                vpc,
                syns,
                window_ms,
            } => {
                self.set_ddos_threshold(
                    crate::ddos::Threshold::DestinationSyns,
                    vpc.as_deref(),
                    *syns,
                    *window_ms,
                )?;
                format!(
                    "each destination of {} guarded above {syns} new TCP connections per \
                     {window_ms} ms (then only sources with an established connection)",
                    ddos_subject(vpc)
                )
            }
            Request::DeleteDdosSynLimit { vpc } => {
                self.delete_ddos_threshold(
                    crate::ddos::Threshold::DestinationSyns,
                    vpc.as_deref(),
                )?;
                format!("no SYN threshold for {} any more", ddos_subject(vpc))
            }
            Request::SetRateLimit(rule) => {
                self.set_rate_limit(rule)?;
                let mut parts = Vec::new();
                if let Some(p) = rule.packets {
                    parts.push(format!("{p} packets/s"));
                }
                if let Some(b) = rule.bytes {
                    parts.push(format!("{b} bytes/s"));
                }
                format!(
                    "{} traffic of {} limited to {}",
                    rule.direction,
                    rate_subject(&rule.vpc, rule.endpoint.as_deref()),
                    parts.join(" and ")
                )
            }
            Request::DeleteRateLimit {
                vpc,
                endpoint,
                direction,
            } => {
                self.delete_rate_limit(vpc, endpoint.as_deref(), *direction)?;
                format!(
                    "no {direction} rate limit for {} any more",
                    rate_subject(vpc, endpoint.as_deref())
                )
            }
            Request::AddAclRule {
                vpc,
                rule,
                position,
                cut,
            } => {
                let at = self.add_acl_rule(vpc, rule, *position, *cut)?;
                let cut = if *cut {
                    "; open flows judged again"
                } else {
                    ""
                };
                format!(
                    "ACL rule added to VPC {vpc} at {} position {at}: {rule}{cut}",
                    rule.direction
                )
            }
            Request::DeleteAclRule {
                vpc,
                direction,
                position,
                cut,
            } => {
                let rule = self.delete_acl_rule(vpc, *direction, *position, *cut)?;
                let cut = if *cut {
                    "; open flows judged again"
                } else {
                    ""
                };
                format!("ACL rule {position} of VPC {vpc} deleted: {rule}{cut}")
            }
            Request::SetAclDefault {
                vpc,
                direction,
                action,
                cut,
            } => {
                self.set_acl_default(vpc, *direction, *action, *cut)?;
                let cut = if *cut {
                    "; open flows judged again"
                } else {
                    ""
                };
                format!("VPC {vpc}'s {direction} traffic matching no rule: {action}{cut}")
            }
            Request::ClearAcl { vpc } => {
                self.clear_acl(vpc)?;
                format!("VPC {vpc} has no ACL any more: its traffic is not filtered")
            }
            Request::EditChain { host, stage, edit } => {
                chain_outcome(stage, &self.edit_chain(host.as_deref(), stage, edit)?)
            }
            Request::EditScopedChain {
                vpc,
                endpoint,
                stage,
                edit,
            } => {
                let chain = self.edit_scoped_chain(vpc, endpoint.as_deref(), stage, edit)?;
                scoped_chain_outcome(vpc, endpoint.as_deref(), stage, &chain)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_write_and_report_as_the_cli_does() {
        let mut store = Store::open_in_memory().unwrap();
        let host = Host {
            name: "h1".into(),
            ip: "192.168.1.1".parse().unwrap(),
            mac: "02:00:00:00:00:01".parse().unwrap(),
            interface: Some("eth0".into()),
        };
        assert_eq!(
            store.make(&Request::AddHost(host)).unwrap(),
            "host h1 added"
        );
        let vpc = Vpc {
            name: "blue".into(),
            vni: 100,
            cidr: "10.0.0.0/16".parse().unwrap(),
        };
        assert_eq!(
            store.make(&Request::AddVpc(vpc.clone())).unwrap(),
            "VPC blue added (VNI 100)"
        );
        let again = store.make(&Request::AddVpc(vpc)).unwrap_err();
        assert!(again.to_string().contains("blue"), "{again}");
        let net = Network::new("blue", "web", "10.0.1.0/24".parse().unwrap());
        assert_eq!(
            store.make(&Request::AddNetwork(net)).unwrap(),
            "network web (10.0.1.0/24) added to VPC blue"
        );
        let divider = Request::AddDivider {
            vpc: "blue".into(),
            host: "h1".into(),
        };
        assert_eq!(store.make(&divider).unwrap(), "h1 now divides VPC blue");
        let delete = Request::DeleteVpc {
            name: "blue".into(),
            cascade: true,
        };
        assert!(delete.removes() && !divider.removes());
        assert_eq!(delete.to_string(), "delete VPC blue and everything in it");
        assert!(store.make(&delete).unwrap().contains("removed"));
        assert!(store.vpcs().unwrap().is_empty());
    }
}
