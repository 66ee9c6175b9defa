//! Management: add, change and delete VPCs, networks, endpoints, hosts, bouncers and dividers,
//! and the built-in functions' rules (acl, ratelimit, ddos) and the chains of VPCs and
//! endpoints, through forms. Fields are parsed as the CLI parses its arguments (the same `FromStr`), the request
//! goes through the same change path as the CLI, deletes are confirmed first, and the answer
//! (the CLI's message or its error) is shown.

use std::{net::Ipv4Addr, str::FromStr};

use mizar_db::{Endpoint, EndpointKind, Host, Ipv4Net, MacAddr, Network, Request, Topology, Vpc};
use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent},
    layout::{Constraint, Layout, Rect},
    text::{Line, Span},
    widgets::{Block, Paragraph, Wrap},
};

use super::{Cursor, View, move_cursor};
use crate::app::{Action, Context};

#[derive(Clone, Copy)]
struct Field {
    label: &'static str,
    hint: &'static str,
    optional: bool,
}

const fn req(label: &'static str, hint: &'static str) -> Field {
    Field {
        label,
        hint,
        optional: false,
    }
}

const fn opt(label: &'static str, hint: &'static str) -> Field {
    Field {
        label,
        hint,
        optional: true,
    }
}

type Build = fn(&Values) -> Result<Request, String>;

/// The current values of the fields after the key fields, from the store's topology, or why
/// there are none.
type Fill = fn(&Topology, &Values) -> Result<Vec<String>, String>;

#[derive(Clone, Copy)]
struct Form {
    title: &'static str,
    fields: &'static [Field],
    build: Build,
    /// A change form: its first `keys` fields name the object; leaving them fills the rest
    /// with what the object is now, so only what changes is typed.
    fill: Option<(usize, Fill)>,
}

/// The values typed into a form, read by label.
pub struct Values<'a> {
    fields: &'static [Field],
    values: &'a [String],
}

impl Values<'_> {
    fn text(&self, label: &str) -> Result<String, String> {
        let i = self
            .fields
            .iter()
            .position(|f| f.label == label)
            .expect("field of this form");
        let v = self.values[i].trim();
        if v.is_empty() && !self.fields[i].optional {
            return Err(format!("{label} is required: {}", self.fields[i].hint));
        }
        Ok(v.to_owned())
    }

    fn optional(&self, label: &str) -> Result<Option<String>, String> {
        Ok(Some(self.text(label)?).filter(|v| !v.is_empty()))
    }

    /// Parsed as the CLI parses the same argument, with its message.
    fn parse<T: FromStr>(&self, label: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.text(label)?;
        v.parse()
            .map_err(|e| format!("invalid value '{v}' for {label}: {e}"))
    }

    fn parse_optional<T: FromStr>(&self, label: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.optional(label)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e| format!("invalid value '{v}' for {label}: {e}")),
        }
    }

    /// A comma- or space-separated list.
    fn list(&self, label: &str) -> Result<Vec<String>, String> {
        Ok(self
            .text(label)?
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn yes(&self, label: &str) -> Result<bool, String> {
        match self.text(label)?.to_lowercase().as_str() {
            "" | "n" | "no" => Ok(false),
            "y" | "yes" => Ok(true),
            other => Err(format!(
                "invalid value '{other}' for {label}: answer yes or no"
            )),
        }
    }
}

const CASCADE: Field = opt("cascade", "yes: also delete what it contains (default no)");
const BYPASS_DECAP: Field = opt(
    "bypass-decap",
    "yes: deliver the tunnel packet as is (default no)",
);
const BACKENDS: Field = opt(
    "backends",
    "scaled: the endpoints serving it, comma-separated",
);

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn no_such(kind: &str, name: &str) -> String {
    format!("no {kind} {name} in the store: check the name (the Topology view lists them)")
}

fn vpc_from(v: &Values) -> Result<Vpc, String> {
    Ok(Vpc {
        name: v.text("name")?,
        vni: v.parse("vni")?,
        cidr: v.parse::<Ipv4Net>("cidr")?,
    })
}

fn host_from(v: &Values) -> Result<Host, String> {
    Ok(Host {
        name: v.text("name")?,
        ip: v.parse("ip")?,
        mac: v.parse("mac")?,
        interface: v.optional("interface")?,
    })
}

fn endpoint_from(v: &Values) -> Result<Endpoint, String> {
    let mut ep = Endpoint::simple(
        v.text("vpc")?,
        v.optional("network")?.unwrap_or_default(),
        v.text("name")?,
        v.parse("ip")?,
        v.parse::<MacAddr>("mac")?,
        v.text("host")?,
    );
    ep.veth = v.optional("veth")?;
    ep.kind = v
        .parse_optional::<EndpointKind>("type")?
        .unwrap_or_default();
    ep.bypass_decap = v.yes("bypass-decap")?;
    ep.backends = v.list("backends")?;
    ep.labels = mizar_db::sorted_labels(&v.list("labels")?);
    Ok(ep)
}

const LABELS: Field = opt(
    "labels",
    "key=value labels, comma-separated (the groups ACL rules name)",
);
const CUT: Field = opt(
    "cut",
    "yes: judge flows already open again (default: new flows only)",
);

fn direction(v: &Values) -> Result<mizar_db::Direction, String> {
    v.parse("direction")
}

fn every_vpc(v: &Values) -> Result<Option<String>, String> {
    v.optional("vpc")
}

fn ms(v: &Values, label: &str) -> Result<u64, String> {
    Ok(v.parse_optional::<u64>(label)?.unwrap_or(1000))
}

/// An optional field parsed as the CLI parses it, "any" when left empty.
fn any_or<T: FromStr>(v: &Values, label: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let text = v.optional(label)?.unwrap_or_else(|| "any".to_owned());
    text.parse()
        .map_err(|e| format!("invalid value '{text}' for {label}: {e}"))
}

fn chain_edit(v: &Values, edit: mizar_db::ChainEdit) -> Result<Request, String> {
    Ok(Request::EditScopedChain {
        vpc: v.text("vpc")?,
        endpoint: v.optional("endpoint")?,
        stage: v.text("stage")?,
        edit,
    })
}

/// The forms that change an object in place, after the add forms.
const CHANGE_FORMS: [Form; 4] = [
    Form {
        title: "change VPC",
        fields: &[
            req("name", "the VPC"),
            req("vni", "a new VNI retags all its traffic"),
            req("cidr", "still containing every network"),
        ],
        build: |v| Ok(Request::ChangeVpc(vpc_from(v)?)),
        fill: Some((1, |topology, v| {
            let name = v.text("name")?;
            let vpc = topology.vpcs.iter().find(|x| x.name == name);
            let vpc = vpc.ok_or_else(|| no_such("VPC", &name))?;
            Ok(vec![vpc.vni.to_string(), vpc.cidr.to_string()])
        })),
    },
    Form {
        title: "change network",
        fields: &[
            req("vpc", "the VPC"),
            req("name", "the network"),
            req("cidr", "still containing its endpoints"),
            opt(
                "gateway",
                "blank: the prefix's default, its first host address",
            ),
        ],
        build: |v| {
            let mut net = Network::new(v.text("vpc")?, v.text("name")?, v.parse("cidr")?);
            // As `net set` does: a default gateway follows a new prefix, another one stays.
            if let Some(gw) = v.parse_optional::<Ipv4Addr>("gateway")? {
                net.gateway = gw;
            }
            Ok(Request::ChangeNetwork(net))
        },
        fill: Some((2, |topology, v| {
            let (vpc, name) = (v.text("vpc")?, v.text("name")?);
            let net = topology
                .networks()
                .find(|(x, n)| x.name == vpc && n.name == name)
                .map(|(_, n)| n);
            let net = net.ok_or_else(|| no_such("network", &format!("{vpc}/{name}")))?;
            let gateway = net.gateway();
            let gateway = if gateway == mizar_db::default_gateway(net.cidr) {
                String::new()
            } else {
                gateway.to_string()
            };
            Ok(vec![net.cidr.to_string(), gateway])
        })),
    },
    Form {
        title: "change endpoint",
        fields: &[
            req("vpc", "the VPC it belongs to"),
            req("name", "the endpoint"),
            req("ip", "its address, inside one of the VPC's networks"),
            req("mac", "unicast, unique in the VPC"),
            req("host", "moving it moves its traffic"),
            opt("network", "empty: the network containing the IP"),
            opt("veth", "host-side veth, required on this host"),
            opt("type", "simple, scaled, host or function"),
            BYPASS_DECAP,
            BACKENDS,
            LABELS,
        ],
        build: |v| Ok(Request::ChangeEndpoint(endpoint_from(v)?)),
        fill: Some((2, |topology, v| {
            let (vpc, name) = (v.text("vpc")?, v.text("name")?);
            let found = topology
                .endpoints()
                .find(|(x, _, e)| x.name == vpc && e.name == name);
            let (_, net, ep) =
                found.ok_or_else(|| no_such("endpoint", &format!("{vpc}/{name}")))?;
            Ok(vec![
                ep.ip.to_string(),
                ep.mac.to_string(),
                ep.host.clone(),
                net.name.clone(),
                ep.veth.clone().unwrap_or_default(),
                ep.kind.to_string(),
                yes_no(ep.bypass_decap),
                ep.backends.join(","),
                ep.labels.join(","),
            ])
        })),
    },
    Form {
        title: "change host",
        fields: &[
            req("name", "the host"),
            req("ip", "its underlay IPv4 address"),
            req("mac", "the MAC frames to it are sent to"),
            opt("interface", "its underlay interface"),
        ],
        build: |v| Ok(Request::ChangeHost(host_from(v)?)),
        fill: Some((1, |topology, v| {
            let name = v.text("name")?;
            let host = topology.hosts.iter().find(|h| h.name == name);
            let host = host.ok_or_else(|| no_such("host", &name))?;
            Ok(vec![
                host.ip.to_string(),
                host.mac.to_string(),
                host.interface.clone().unwrap_or_default(),
            ])
        })),
    },
];

static FORMS: &[Form] = &[
    Form {
        title: "add VPC",
        fields: &[
            req("name", "a new VPC name"),
            req("vni", "24-bit VNI, unique in the fabric"),
            req("cidr", "its address space, e.g. 10.0.0.0/16"),
        ],
        build: |v| Ok(Request::AddVpc(vpc_from(v)?)),
        fill: None,
    },
    Form {
        title: "add network",
        fields: &[
            req("vpc", "the VPC it belongs to"),
            req("name", "a network name, new in the VPC"),
            req("cidr", "inside the VPC's CIDR, e.g. 10.0.1.0/24"),
            opt("gateway", "default: the first host address"),
        ],
        build: |v| {
            let mut net = Network::new(v.text("vpc")?, v.text("name")?, v.parse("cidr")?);
            if let Some(gw) = v.parse_optional::<Ipv4Addr>("gateway")? {
                net.gateway = gw;
            }
            Ok(Request::AddNetwork(net))
        },
        fill: None,
    },
    Form {
        title: "add endpoint",
        fields: &[
            req("vpc", "the VPC it belongs to"),
            req("name", "an endpoint name, new in the VPC"),
            req("ip", "its address, inside one of the VPC's networks"),
            req("mac", "e.g. 02:00:0a:00:01:0a"),
            req("host", "the host it lives on"),
            opt("network", "default: the network containing the IP"),
            opt("veth", "host-side veth, required on this host"),
            opt("netns", "plumb the veth into this network namespace"),
            opt("type", "simple (default), scaled, host or function"),
            BYPASS_DECAP,
            BACKENDS,
            LABELS,
        ],
        build: |v| {
            Ok(Request::AddEndpoint {
                endpoint: endpoint_from(v)?,
                netns: v.optional("netns")?,
            })
        },
        fill: None,
    },
    Form {
        title: "add host",
        fields: &[
            req("name", "a new host name"),
            req("ip", "its underlay IPv4 address"),
            req("mac", "the MAC frames to it are sent to"),
            opt(
                "interface",
                "its underlay interface (required for this host)",
            ),
        ],
        build: |v| Ok(Request::AddHost(host_from(v)?)),
        fill: None,
    },
    Form {
        title: "add bouncer",
        fields: &[
            req("vpc", "the VPC"),
            req("network", "the network it bounces"),
            req("host", "the host"),
        ],
        build: |v| {
            Ok(Request::AddBouncer {
                vpc: v.text("vpc")?,
                network: v.text("network")?,
                host: v.text("host")?,
            })
        },
        fill: None,
    },
    Form {
        title: "add divider",
        fields: &[req("vpc", "the VPC it divides"), req("host", "the host")],
        build: |v| {
            Ok(Request::AddDivider {
                vpc: v.text("vpc")?,
                host: v.text("host")?,
            })
        },
        fill: None,
    },
    CHANGE_FORMS[0],
    CHANGE_FORMS[1],
    CHANGE_FORMS[2],
    CHANGE_FORMS[3],
    Form {
        title: "delete VPC",
        fields: &[req("name", "the VPC"), CASCADE],
        build: |v| {
            Ok(Request::DeleteVpc {
                name: v.text("name")?,
                cascade: v.yes("cascade")?,
            })
        },
        fill: None,
    },
    Form {
        title: "delete network",
        fields: &[req("vpc", "the VPC"), req("name", "the network"), CASCADE],
        build: |v| {
            Ok(Request::DeleteNetwork {
                vpc: v.text("vpc")?,
                name: v.text("name")?,
                cascade: v.yes("cascade")?,
            })
        },
        fill: None,
    },
    Form {
        title: "delete endpoint",
        fields: &[req("vpc", "the VPC"), req("name", "the endpoint")],
        build: |v| {
            Ok(Request::DeleteEndpoint {
                vpc: v.text("vpc")?,
                name: v.text("name")?,
            })
        },
        fill: None,
    },
    Form {
        title: "delete host",
        fields: &[req("name", "the host"), CASCADE],
        build: |v| {
            Ok(Request::DeleteHost {
                name: v.text("name")?,
                cascade: v.yes("cascade")?,
            })
        },
        fill: None,
    },
    Form {
        title: "delete bouncer",
        fields: &[
            req("vpc", "the VPC"),
            req("network", "the network"),
            req("host", "the bouncer"),
        ],
        build: |v| {
            Ok(Request::DeleteBouncer {
                vpc: v.text("vpc")?,
                network: v.text("network")?,
                host: v.text("host")?,
            })
        },
        fill: None,
    },
    Form {
        title: "delete divider",
        fields: &[req("vpc", "the VPC"), req("host", "the divider")],
        build: |v| {
            Ok(Request::DeleteDivider {
                vpc: v.text("vpc")?,
                host: v.text("host")?,
            })
        },
        fill: None,
    },
    Form {
        title: "add ACL rule",
        fields: &[
            req("vpc", "the VPC"),
            req(
                "direction",
                "ingress (what its endpoints receive) or egress",
            ),
            req("action", "allow or deny"),
            opt("src", "any (default), a CIDR, label:key=value or ep:NAME"),
            opt("dst", "any (default), a CIDR, label:key=value or ep:NAME"),
            opt("proto", "any (default), tcp, udp, icmp, sctp or a number"),
            opt("port", "destination port or range, e.g. 80 or 8000-8100"),
            opt("at", "position among the direction's rules (default: last)"),
            CUT,
        ],
        build: |v| {
            Ok(Request::AddAclRule {
                vpc: v.text("vpc")?,
                rule: mizar_db::AclRule {
                    direction: direction(v)?,
                    action: v.parse("action")?,
                    src: any_or(v, "src")?,
                    dst: any_or(v, "dst")?,
                    proto: any_or(v, "proto")?,
                    ports: v.parse_optional("port")?,
                },
                position: v.parse_optional("at")?,
                cut: v.yes("cut")?,
            })
        },
        fill: None,
    },
    Form {
        title: "delete ACL rule",
        fields: &[
            req("vpc", "the VPC"),
            req("direction", "ingress or egress"),
            req("position", "its position (mizar acl show)"),
            CUT,
        ],
        build: |v| {
            Ok(Request::DeleteAclRule {
                vpc: v.text("vpc")?,
                direction: direction(v)?,
                position: v.parse("position")?,
                cut: v.yes("cut")?,
            })
        },
        fill: None,
    },
    Form {
        title: "ACL default",
        fields: &[
            req("vpc", "the VPC"),
            req("direction", "ingress or egress"),
            req("action", "allow or deny: what matches no rule"),
            CUT,
        ],
        build: |v| {
            Ok(Request::SetAclDefault {
                vpc: v.text("vpc")?,
                direction: direction(v)?,
                action: v.parse("action")?,
                cut: v.yes("cut")?,
            })
        },
        fill: None,
    },
    Form {
        title: "clear ACL",
        fields: &[req("vpc", "the VPC: its traffic is no longer filtered")],
        build: |v| {
            Ok(Request::ClearAcl {
                vpc: v.text("vpc")?,
            })
        },
        fill: None,
    },
    Form {
        title: "set rate limit",
        fields: &[
            req("vpc", "the VPC"),
            opt(
                "endpoint",
                "one endpoint of it (default: the VPC as a whole)",
            ),
            req("direction", "ingress or egress"),
            opt("packets", "packets per second"),
            opt("burst-packets", "default: one second's worth"),
            opt("bytes", "bytes per second"),
            opt("burst-bytes", "default: one second's worth"),
        ],
        build: |v| {
            Ok(Request::SetRateLimit(mizar_db::RateLimit {
                vpc: v.text("vpc")?,
                endpoint: v.optional("endpoint")?,
                direction: direction(v)?,
                packets: v.parse_optional("packets")?,
                burst_packets: v.parse_optional("burst-packets")?,
                bytes: v.parse_optional("bytes")?,
                burst_bytes: v.parse_optional("burst-bytes")?,
            }))
        },
        fill: None,
    },
    Form {
        title: "delete rate limit",
        fields: &[
            req("vpc", "the VPC"),
            opt("endpoint", "the endpoint (default: the VPC's rule)"),
            req("direction", "ingress or egress"),
        ],
        build: |v| {
            Ok(Request::DeleteRateLimit {
                vpc: v.text("vpc")?,
                endpoint: v.optional("endpoint")?,
                direction: direction(v)?,
            })
        },
        fill: None,
    },
    Form {
        title: "ddos block",
        fields: &[
            req("cidr", "the source range to drop, e.g. 203.0.113.0/24"),
            opt("vpc", "only in this VPC (default: every VPC)"),
        ],
        build: |v| {
            Ok(Request::AddDdosBlock {
                vpc: every_vpc(v)?,
                cidr: v.parse("cidr")?,
            })
        },
        fill: None,
    },
    Form {
        title: "ddos unblock",
        fields: &[
            req("cidr", "the blocked range"),
            opt("vpc", "its VPC (default: the block for every VPC)"),
        ],
        build: |v| {
            Ok(Request::DeleteDdosBlock {
                vpc: every_vpc(v)?,
                cidr: v.parse("cidr")?,
            })
        },
        fill: None,
    },
    Form {
        title: "ddos rate threshold",
        fields: &[
            req("packets", "packets one source may send per window"),
            opt(
                "window-ms",
                "the window in ms, 10 to 3600000 (default 1000)",
            ),
            opt("vpc", "for this VPC (default: every VPC without its own)"),
        ],
        build: |v| {
            Ok(Request::SetDdosLimit {
                vpc: every_vpc(v)?,
                packets: v.parse("packets")?,
                window_ms: ms(v, "window-ms")?,
            })
        },
        fill: None,
    },
    Form {
        title: "ddos SYN threshold",
        fields: &[
            req(
                "syns",
                "new TCP connections one destination may receive per window",
            ),
            opt(
                "window-ms",
                "the window in ms, 10 to 3600000 (default 1000)",
            ),
            opt("vpc", "for this VPC (default: every VPC without its own)"),
        ],
        build: |v| {
            Ok(Request::SetDdosSynLimit {
                vpc: every_vpc(v)?,
                syns: v.parse("syns")?,
                window_ms: ms(v, "window-ms")?,
            })
        },
        fill: None,
    },
    Form {
        title: "chain add (VPC/ep)",
        fields: &[
            req("vpc", "the VPC"),
            opt(
                "endpoint",
                "one of its endpoints (default: the VPC's own chain)",
            ),
            req("stage", "tx, redirect, scaled-ep or egress"),
            req("function", "see mizar fn list"),
            opt("at", "its position, from 1 (default: the end)"),
        ],
        build: |v| {
            let edit = mizar_db::ChainEdit::Add {
                function: v.text("function")?,
                at: v.parse_optional("at")?,
            };
            chain_edit(v, edit)
        },
        fill: None,
    },
    Form {
        title: "chain del (VPC/ep)",
        fields: &[
            req("vpc", "the VPC"),
            opt(
                "endpoint",
                "one of its endpoints (default: the VPC's own chain)",
            ),
            req("stage", "tx, redirect, scaled-ep or egress"),
            req("position", "its position (mizar chain show --vpc)"),
        ],
        build: |v| {
            let edit = mizar_db::ChainEdit::Remove {
                position: v.parse("position")?,
            };
            chain_edit(v, edit)
        },
        fill: None,
    },
];

/// A form being filled in.
#[derive(Debug)]
struct Open {
    form: usize,
    values: Vec<String>,
    field: usize,
    error: Option<String>,
    /// A delete waiting for y/n.
    confirm: Option<Request>,
}

#[derive(Debug, Default)]
pub struct ManageView {
    cursor: Cursor,
    open: Option<Open>,
}

impl ManageView {
    /// A change form whose fields after the keys are all empty.
    fn unfilled(open: &Open) -> bool {
        FORMS[open.form]
            .fill
            .is_some_and(|(keys, _)| open.values[keys..].iter().all(|v| v.trim().is_empty()))
    }

    /// Fills a change form's fields after its keys with what the object is now, when they
    /// are all empty (what was typed there is kept). True when it filled them.
    fn fill(open: &mut Open, cx: &Context) -> bool {
        let form = &FORMS[open.form];
        let Some((keys, fill)) = form.fill else {
            return false;
        };
        if !Self::unfilled(open) {
            return false;
        }
        let Some(sample) = cx.model.latest() else {
            open.error = Some("no sample of the store yet: wait a moment".into());
            return false;
        };
        let values = Values {
            fields: form.fields,
            values: &open.values,
        };
        match fill(&sample.topology, &values) {
            Ok(now) => {
                for (slot, value) in open.values[keys..].iter_mut().zip(now) {
                    *slot = value;
                }
                open.error = None;
                open.field = keys;
                true
            }
            Err(e) => {
                open.error = Some(e);
                false
            }
        }
    }

    /// Submits the open form, closing it when a request goes out.
    fn submit_open(&mut self) -> Option<Action> {
        let action = Self::submit(self.open.as_mut()?);
        if action.is_some() {
            self.open = None;
        }
        action
    }

    fn submit(open: &mut Open) -> Option<Action> {
        let form = &FORMS[open.form];
        let values = Values {
            fields: form.fields,
            values: &open.values,
        };
        match (form.build)(&values) {
            Err(e) => {
                open.error = Some(e);
                None
            }
            Ok(request) if request.removes() => {
                open.error = None;
                open.confirm = Some(request);
                None
            }
            Ok(request) => Some(Action::Change(request)),
        }
    }
}

impl View for ManageView {
    fn title(&self) -> &'static str {
        "Manage"
    }

    fn keys(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("↑↓ / j k", "choose what to do"),
            ("Enter", "open its form; in a form: submit"),
            ("Tab ↓ / Shift-Tab ↑", "in a form: next / previous field"),
            ("Tab on a name", "change forms: fill in what it is now"),
            ("y / n", "confirm or cancel a delete"),
            ("Esc", "close the form, nothing changed"),
        ]
    }

    fn takes_text(&self) -> bool {
        self.open.is_some()
    }

    fn edit(&mut self, form: &str, keys: &[String], cx: &Context) -> bool {
        let Some(index) = FORMS.iter().position(|f| f.title == form) else {
            return false;
        };
        let mut values = vec![String::new(); FORMS[index].fields.len()];
        for (slot, key) in values.iter_mut().zip(keys) {
            slot.clone_from(key);
        }
        let mut open = Open {
            form: index,
            values,
            field: keys.len().saturating_sub(1),
            error: None,
            confirm: None,
        };
        Self::fill(&mut open, cx);
        self.cursor.selected = index;
        self.open = Some(open);
        true
    }

    fn handle_key(&mut self, key: KeyEvent, cx: &Context) -> Option<Action> {
        let Some(open) = &mut self.open else {
            if move_cursor(&mut self.cursor, key, FORMS.len(), FORMS.len()) {
                return None;
            }
            if key.code == KeyCode::Enter {
                let form = &FORMS[self.cursor.selected];
                let this_host = cx.model.latest().and_then(|s| s.host.clone());
                let values = form
                    .fields
                    .iter()
                    .map(|f| match (f.label, &this_host) {
                        ("host", Some(h)) if form.title == "add endpoint" => h.clone(),
                        _ => String::new(),
                    })
                    .collect();
                self.open = Some(Open {
                    form: self.cursor.selected,
                    values,
                    field: 0,
                    error: None,
                    confirm: None,
                });
            }
            return None;
        };
        if let Some(request) = open.confirm.take() {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.open = None;
                    Some(Action::Change(request))
                }
                _ => {
                    open.error = Some("not deleted".into());
                    None
                }
            };
        }
        let fields = FORMS[open.form].fields.len();
        let last_key = FORMS[open.form].fill.map(|(keys, _)| keys - 1);
        match key.code {
            KeyCode::Esc => self.open = None,
            KeyCode::Enter if last_key.is_some_and(|k| open.field <= k) && Self::unfilled(open) => {
                // Enter on the object's name fetches it rather than submitting empty fields.
                Self::fill(open, cx);
            }
            KeyCode::Tab | KeyCode::Down => {
                // Leaving a change form's name fills in the rest and lands on the first of it.
                let filled = last_key == Some(open.field) && Self::fill(open, cx);
                if !filled {
                    open.field = (open.field + 1) % fields;
                }
            }
            KeyCode::BackTab | KeyCode::Up => open.field = (open.field + fields - 1) % fields,
            KeyCode::Backspace => {
                open.values[open.field].pop();
            }
            KeyCode::Char(c) => open.values[open.field].push(c),
            KeyCode::Enter => return self.submit_open(),
            _ => {}
        }
        None
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, cx: &Context) {
        let t = cx.theme;
        let [list_area, form_area] =
            Layout::horizontal([Constraint::Length(22), Constraint::Min(30)]).areas(area);
        let lines: Vec<Line> = FORMS
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let line = Line::from(format!(" {}", f.title));
                if i == self.cursor.selected {
                    line.style(t.selected())
                } else {
                    line
                }
            })
            .collect();
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::bordered().title(Span::styled(" change ", t.title()))),
            list_area,
        );
        let form = &FORMS[self.open.as_ref().map_or(self.cursor.selected, |o| o.form)];
        let mut lines = Vec::new();
        for (i, field) in form.fields.iter().enumerate() {
            let (value, active) = match &self.open {
                Some(o) => (o.values[i].as_str(), o.field == i),
                None => ("", false),
            };
            let label = format!(
                "{:>10}{} ",
                field.label,
                if field.optional { " " } else { "*" }
            );
            let mut spans = vec![Span::styled(label, t.header())];
            if active {
                spans.push(Span::styled(value.to_owned(), t.selected()));
                spans.push(Span::styled("█", t.dim()));
            } else {
                spans.push(Span::raw(value.to_owned()));
            }
            if value.is_empty() {
                spans.push(Span::styled(format!("  {}", field.hint), t.dim()));
            }
            lines.push(Line::from(spans));
        }
        lines.push(Line::from(""));
        match &self.open {
            None => lines.push(Line::from(Span::styled(
                "Enter opens this form; * is required",
                t.dim(),
            ))),
            Some(o) => {
                if let Some(request) = &o.confirm {
                    lines.push(Line::from(Span::styled(
                        format!("{request}? y to confirm, any other key cancels"),
                        t.warn(),
                    )));
                } else {
                    lines.push(Line::from(Span::styled(
                        "Enter submits · Tab next field · Esc closes, nothing changed",
                        t.dim(),
                    )));
                }
                if let Some(e) = &o.error {
                    lines.push(Line::from(Span::styled(e.clone(), t.bad())));
                }
            }
        }
        frame.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::bordered().title(Span::styled(format!(" {} ", form.title), t.title())),
            ),
            form_area,
        );
    }
}
