//! The typed API: adds, gets, lists, deletes, and every validation rule with its message.

mod common;

use std::net::Ipv4Addr;

use common::{assert_err, base_store, blue_ep, mac, net};
use mizar_db::{
    Action, Endpoint, EndpointKind, Host, Kind, MAX_BOUNCERS, MacAddr, Network, Store, StoreError,
    Vpc,
};

fn host(name: &str, ip: &str) -> Host {
    Host {
        name: name.into(),
        ip: ip.parse().unwrap(),
        mac: mac(1),
        interface: None,
    }
}

#[test]
fn adds_gets_and_lists_in_name_order() {
    let mut store = Store::open_in_memory().unwrap();
    store.add_host(&host("zeta", "192.168.1.9")).unwrap();
    store.add_host(&host("alpha", "192.168.1.1")).unwrap();
    store.set_this_host("alpha", "eth1").unwrap();
    store
        .add_vpc(&Vpc {
            name: "blue".into(),
            vni: 7,
            cidr: net("10.0.0.0/16"),
        })
        .unwrap();
    store
        .add_network(&Network::new("blue", "web", net("10.0.1.0/24")))
        .unwrap();
    store
        .add_network(&Network::new("blue", "app", net("10.0.2.0/24")))
        .unwrap();
    store.add_bouncer("blue", "web", "zeta").unwrap();
    store.add_bouncer("blue", "web", "alpha").unwrap();
    store.add_divider("blue", "alpha").unwrap();
    let mut ep = blue_ep("b", "10.0.1.20");
    ep.host = "zeta".into();
    store.add_endpoint(&ep).unwrap();
    store
        .add_endpoint(&blue_ep("a", "10.0.1.21").with_host("zeta"))
        .unwrap();

    let names = |v: Vec<String>| v.join(",");
    assert_eq!(
        names(store.hosts().unwrap().into_iter().map(|h| h.name).collect()),
        "alpha,zeta"
    );
    let this = store.this_host().unwrap().unwrap();
    assert_eq!(
        (this.name.as_str(), this.interface.as_deref()),
        ("alpha", Some("eth1"))
    );
    assert_eq!(
        names(
            store
                .networks(Some("blue"))
                .unwrap()
                .into_iter()
                .map(|n| n.name)
                .collect()
        ),
        "app,web"
    );
    assert_eq!(
        store.network("blue", "web").unwrap().gateway,
        Ipv4Addr::new(10, 0, 1, 1)
    );
    assert_eq!(
        names(
            store
                .bouncers(Some(("blue", "web")))
                .unwrap()
                .into_iter()
                .map(|b| b.host)
                .collect()
        ),
        "alpha,zeta"
    );
    assert_eq!(store.dividers(None).unwrap()[0].host, "alpha");
    assert_eq!(
        names(
            store
                .endpoints(Some("blue"))
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect()
        ),
        "a,b"
    );
    let got = store.endpoint("blue", "b").unwrap();
    assert_eq!(got, ep);
    assert_eq!(store.vpc("blue").unwrap().vni, 7);
    assert_eq!(
        store.host("zeta").unwrap().ip,
        Ipv4Addr::new(192, 168, 1, 9)
    );
    assert_eq!(
        store
            .network_for("blue", "10.0.2.9".parse().unwrap())
            .unwrap()
            .name,
        "app"
    );
}

trait WithHost {
    fn with_host(self, host: &str) -> Self;
}

impl WithHost for Endpoint {
    fn with_host(mut self, host: &str) -> Self {
        self.host = host.into();
        self
    }
}

#[test]
fn same_ip_in_two_vpcs_is_fine_twice_in_one_is_not() {
    let mut store = base_store();
    // The fixture already has 10.0.1.10 in blue and in red.
    let blue = store.endpoint("blue", "web1").unwrap();
    let red = store.endpoint("red", "web1").unwrap();
    assert_eq!(blue.ip, red.ip);

    // A third VPC on the same CIDR, same IP again: fine.
    store
        .add_vpc(&Vpc {
            name: "green".into(),
            vni: 300,
            cidr: net("10.0.0.0/16"),
        })
        .unwrap();
    store
        .add_network(&Network::new("green", "web", net("10.0.1.0/24")))
        .unwrap();
    let mut green = blue_ep("web1", "10.0.1.10");
    green.vpc = "green".into();
    store.add_endpoint(&green).unwrap();

    // Twice in one VPC: refused, through the API and through a document.
    assert_err(
        store.add_endpoint(&blue_ep("web9", "10.0.1.10")),
        &[
            r#"IP 10.0.1.10 of endpoint "web9" is already used by endpoint "web1" in VPC "blue""#,
            "the same IP in another VPC is fine",
        ],
    );
    let mut doc = store.export().unwrap();
    doc.vpcs[0].networks[1].endpoints[0].ip = "10.0.1.11".parse().unwrap(); // web1 onto web2's
    assert_err(
        store.apply(&doc, false),
        &[
            "IP 10.0.1.11 of endpoint",
            "is already used by endpoint",
            r#"in VPC "blue""#,
        ],
    );
}

/// One row per rule: the operation, and what its message must say (the problem and the fix).
#[test]
fn every_rule_has_a_message_naming_the_problem_and_the_fix() {
    type Op = fn(&mut Store) -> Result<(), StoreError>;
    let cases: &[(&str, Op, &[&str])] = &[
        (
            "VNI zero",
            |s| {
                s.add_vpc(&Vpc {
                    name: "x".into(),
                    vni: 0,
                    cidr: net("10.9.0.0/16"),
                })
            },
            &[
                r#"VNI 0 of VPC "x" is out of range"#,
                "pick one from 1 to 16777215",
            ],
        ),
        (
            "VNI past 24 bits",
            |s| {
                s.add_vpc(&Vpc {
                    name: "x".into(),
                    vni: 1 << 24,
                    cidr: net("10.9.0.0/16"),
                })
            },
            &["VNI 16777216", "pick one from 1 to 16777215"],
        ),
        (
            "VNI taken",
            |s| {
                s.add_vpc(&Vpc {
                    name: "x".into(),
                    vni: 100,
                    cidr: net("10.9.0.0/16"),
                })
            },
            &[
                r#"VNI 100 of VPC "x" is already used by VPC "blue""#,
                "its own VNI",
            ],
        ),
        (
            "VPC name taken",
            |s| {
                s.add_vpc(&Vpc {
                    name: "blue".into(),
                    vni: 9,
                    cidr: net("10.9.0.0/16"),
                })
            },
            &[r#"VPC "blue" already exists"#, "pick another name"],
        ),
        (
            "VPC CIDR with host bits",
            |s| {
                s.add_vpc(&Vpc {
                    name: "x".into(),
                    vni: 9,
                    cidr: net("10.9.0.1/16"),
                })
            },
            &[
                r#"CIDR 10.9.0.1/16 of VPC "x" has host bits set"#,
                "10.9.0.0/16",
            ],
        ),
        (
            "invalid VPC name",
            |s| {
                s.add_vpc(&Vpc {
                    name: "-x".into(),
                    vni: 9,
                    cidr: net("10.9.0.0/16"),
                })
            },
            &[
                r#"VPC name "-x" is not valid"#,
                "starting with a letter or digit",
            ],
        ),
        (
            "name with a space",
            |s| {
                s.add_vpc(&Vpc {
                    name: "a b".into(),
                    vni: 9,
                    cidr: net("10.9.0.0/16"),
                })
            },
            &[r#"VPC name "a b" is not valid"#, "letters, digits"],
        ),
        (
            "network CIDR with host bits (the 10.0.0.1/24 typo)",
            |s| s.add_network(&Network::new("blue", "n", net("10.0.3.1/24"))),
            &[
                r#"CIDR 10.0.3.1/24 of network "n" in VPC "blue" has host bits set"#,
                "write the network address: 10.0.3.0/24",
            ],
        ),
        (
            "network too small",
            |s| s.add_network(&Network::new("blue", "n", net("10.0.3.0/31"))),
            &["10.0.3.0/31", "no room for a gateway", "/30 or shorter"],
        ),
        (
            "network outside its VPC",
            |s| s.add_network(&Network::new("blue", "n", net("10.1.0.0/24"))),
            &[
                r#"network "n" (10.1.0.0/24) is outside its VPC "blue" (10.0.0.0/16)"#,
                "choose a CIDR inside 10.0.0.0/16, or widen the VPC",
            ],
        ),
        (
            "network overlapping a sibling",
            |s| s.add_network(&Network::new("blue", "n", net("10.0.1.128/25"))),
            &[
                r#"overlaps network "web" (10.0.1.0/24) in VPC "blue""#,
                "choose a free CIDR",
            ],
        ),
        (
            "network name taken in its VPC",
            |s| s.add_network(&Network::new("blue", "web", net("10.0.3.0/24"))),
            &[r#"network "web" in VPC "blue" already exists"#],
        ),
        (
            "gateway outside the network",
            |s| {
                let mut n = Network::new("blue", "n", net("10.0.3.0/24"));
                n.gateway = "10.0.9.1".parse().unwrap();
                s.add_network(&n)
            },
            &[
                "gateway 10.0.9.1",
                "is outside the network",
                "such as 10.0.3.1",
            ],
        ),
        (
            "gateway on the broadcast address",
            |s| {
                let mut n = Network::new("blue", "n", net("10.0.3.0/24"));
                n.gateway = "10.0.3.255".parse().unwrap();
                s.add_network(&n)
            },
            &["gateway 10.0.3.255", "broadcast address"],
        ),
        (
            "unknown VPC",
            |s| s.add_network(&Network::new("green", "n", net("10.0.3.0/24"))),
            &[
                r#"unknown VPC "green""#,
                "known: blue, red",
                "add it with mizar vpc add",
            ],
        ),
        (
            "endpoint IP in a sibling network",
            |s| s.add_endpoint(&blue_ep("e", "10.0.2.50")),
            &[
                r#"IP 10.0.2.50 of endpoint "e" is outside its network "web" (10.0.1.0/24)"#,
                r#"it belongs in network "db" (10.0.2.0/24)"#,
            ],
        ),
        (
            "endpoint IP in no network",
            |s| s.add_endpoint(&blue_ep("e", "10.0.9.4")),
            &[r#"no network of VPC "blue" contains it"#, "mizar net add"],
        ),
        (
            "no network for an IP",
            |s| s.network_for("blue", "10.9.0.4".parse().unwrap()).map(drop),
            &[r#"VPC "blue" has no network containing 10.9.0.4; add one with mizar net add"#],
        ),
        (
            "endpoint on the gateway",
            |s| s.add_endpoint(&blue_ep("e", "10.0.1.1")),
            &[
                "IP 10.0.1.1 of endpoint \"e\" is the gateway",
                "pick another address",
            ],
        ),
        (
            "endpoint on the network address",
            |s| s.add_endpoint(&blue_ep("e", "10.0.1.0")),
            &["is the network address"],
        ),
        (
            "endpoint name taken in its VPC",
            |s| s.add_endpoint(&blue_ep("web1", "10.0.1.50")),
            &[r#"endpoint "web1" in VPC "blue" already exists"#],
        ),
        (
            "multicast MAC",
            |s| {
                let mut e = blue_ep("e", "10.0.1.50");
                e.mac = "01:00:5e:00:00:01".parse().unwrap();
                s.add_endpoint(&e)
            },
            &[
                r#"MAC 01:00:5e:00:00:01 of endpoint "e" in VPC "blue" is a multicast address"#,
                "need a unicast MAC",
            ],
        ),
        (
            "broadcast MAC",
            |s| {
                let mut e = blue_ep("e", "10.0.1.50");
                e.mac = MacAddr([0xff; 6]);
                s.add_endpoint(&e)
            },
            &["is the broadcast address", "unicast"],
        ),
        (
            "zero MAC",
            |s| {
                let mut h = host("h9", "192.168.50.9");
                h.mac = MacAddr([0; 6]);
                s.add_host(&h)
            },
            &[r#"MAC 00:00:00:00:00:00 of host "h9" is all zeros"#],
        ),
        (
            "malformed MAC",
            |s| {
                let mac: MacAddr = "02:00:00:00:00".parse()?;
                s.add_host(&Host {
                    mac,
                    ..host("h9", "192.168.50.9")
                })
            },
            &[
                r#""02:00:00:00:00" is not a MAC address"#,
                "02:00:00:00:00:01",
            ],
        ),
        (
            "unknown network",
            |s| {
                s.add_endpoint(&Endpoint {
                    network: "dbx".into(),
                    ..blue_ep("e", "10.0.1.50")
                })
            },
            &[
                r#"unknown network "dbx" in VPC "blue""#,
                "known: db, web",
                "mizar net add",
            ],
        ),
        (
            "unknown host of an endpoint",
            |s| s.add_endpoint(&blue_ep("e", "10.0.1.50").with_host("h9")),
            &[
                r#"unknown host "h9""#,
                "known: gw1, h2, h3",
                "add it with mizar host add",
            ],
        ),
        (
            "unknown host as bouncer",
            |s| s.add_bouncer("blue", "web", "h9"),
            &[
                r#"unknown host "h9" (bouncer of network "web" in VPC "blue")"#,
                "mizar host add",
            ],
        ),
        (
            "bouncer twice",
            |s| s.add_bouncer("blue", "web", "h2"),
            &[r#"bouncer "h2" of network "web" in VPC "blue" already exists"#],
        ),
        (
            "divider twice",
            |s| s.add_divider("blue", "gw1"),
            &[r#"divider "gw1" of VPC "blue" already exists"#],
        ),
        (
            "unknown backend",
            |s| {
                let mut e = blue_ep("lb2", "10.0.1.50");
                e.kind = EndpointKind::Scaled;
                e.backends = vec!["nope".into()];
                s.add_endpoint(&e)
            },
            &[r#"unknown endpoint "nope" in VPC "blue" (backend of scaled endpoint "lb2")"#],
        ),
        (
            "scaled backend",
            |s| {
                let mut e = blue_ep("lb2", "10.0.1.50");
                e.kind = EndpointKind::Scaled;
                e.backends = vec!["lb".into()];
                s.add_endpoint(&e)
            },
            &[
                r#"backend "lb" of scaled endpoint "lb2""#,
                "is itself scaled",
            ],
        ),
        (
            "backends on a simple endpoint",
            |s| {
                s.add_endpoint(&Endpoint {
                    backends: vec!["web1".into()],
                    ..blue_ep("e", "10.0.1.50")
                })
            },
            &["is of type simple, but only scaled endpoints have backends"],
        ),
        (
            "bypass-decap on a simple endpoint",
            |s| {
                s.add_endpoint(&Endpoint {
                    bypass_decap: true,
                    ..blue_ep("e", "10.0.1.50")
                })
            },
            &["only function endpoints can bypass decapsulation"],
        ),
        (
            "local endpoint without veth",
            |s| s.add_endpoint(&blue_ep("e", "10.0.1.50").with_host("gw1")),
            &[
                r#"is hosted on this host ("gw1") but names no veth"#,
                "--veth",
            ],
        ),
        (
            "scaled endpoint with a veth",
            |s| {
                let mut e = blue_ep("lb2", "10.0.1.50");
                e.kind = EndpointKind::Scaled;
                e.veth = Some("v0".into());
                s.add_endpoint(&e)
            },
            &["has no veth of its own; drop the veth"],
        ),
        (
            "veth taken on its host",
            |s| {
                let mut e = blue_ep("e", "10.0.1.50").with_host("gw1");
                e.veth = Some("veth-web2".into());
                s.add_endpoint(&e)
            },
            &[r#"veth "veth-web2" on host "gw1" already carries endpoint "web2""#],
        ),
        (
            "veth name too long",
            |s| {
                let mut e = blue_ep("e", "10.0.1.50");
                e.veth = Some("a-very-long-veth-name".into());
                s.add_endpoint(&e)
            },
            &["is not valid: it is longer than 15 characters"],
        ),
        (
            "host IP taken",
            |s| s.add_host(&host("h9", "192.168.50.2")),
            &[r#"underlay IP 192.168.50.2 of host "h9" already belongs to host "h2""#],
        ),
        (
            "loopback host IP",
            |s| s.add_host(&host("h9", "127.0.0.1")),
            &[
                "is a loopback address",
                "the address the host's underlay interface carries",
            ],
        ),
        (
            "bad underlay interface",
            |s| s.set_this_host("h2", "eth/0"),
            &[r#"interface name "eth/0" of host "h2" is not valid"#],
        ),
        (
            "this host with endpoints lacking a veth",
            |s| s.set_this_host("h2", "eth0"),
            &[r#"endpoint "web1" in VPC "blue" is hosted on this host ("h2") but names no veth"#],
        ),
    ];
    for (what, op, parts) in cases {
        let mut store = base_store();
        let before = store.snapshot().unwrap();
        let err = op(&mut store).expect_err(what);
        let message = err.to_string();
        for part in *parts {
            assert!(
                message.contains(part),
                "{what}: {message:?}\n  lacks {part:?}"
            );
        }
        assert_eq!(
            store.snapshot().unwrap(),
            before,
            "{what}: the store changed"
        );
    }
}

#[test]
fn too_many_bouncers() {
    let mut store = base_store();
    for i in 0..MAX_BOUNCERS {
        let name = format!("b{i}");
        store
            .add_host(&host(&name, &format!("192.168.60.{i}")))
            .unwrap();
        if i < MAX_BOUNCERS - 2 {
            store.add_bouncer("blue", "web", &name).unwrap(); // web already has gw1 and h2
        }
    }
    let last = format!("b{}", MAX_BOUNCERS - 2);
    assert_err(
        store.add_bouncer("blue", "web", &last),
        &[
            r#"network "web" in VPC "blue" would have 17 bouncers"#,
            "at most 16",
        ],
    );
}

#[test]
fn deletes_are_refused_while_in_use_and_cascade_only_when_asked() {
    let mut store = base_store();
    let before = store.snapshot().unwrap();

    let refusals: &[(&str, Result<_, StoreError>, &[&str])] = &[
        (
            "VPC with networks",
            store.delete_vpc("blue", false),
            &[
                r#"VPC "blue" is still used by networks db, web (with 5 endpoints)"#,
                "--cascade",
            ],
        ),
        (
            "network with endpoints",
            store.delete_network("blue", "db", false),
            &[r#"network "db" in VPC "blue" is still used by endpoints blue/db1, blue/fw"#],
        ),
        (
            "host with roles",
            store.delete_host("h2", false),
            &[
                r#"host "h2" is still used by bouncer assignments of networks blue/web"#,
                "endpoints blue/web1",
            ],
        ),
        (
            "endpoint serving as a backend",
            store.delete_endpoint("blue", "web1", false),
            &[r#"endpoint "web1" in VPC "blue" is still used by scaled endpoints lb"#],
        ),
    ];
    for (what, result, parts) in refusals {
        let message = result.as_ref().expect_err(what).to_string();
        for part in *parts {
            assert!(
                message.contains(part),
                "{what}: {message:?}\n  lacks {part:?}"
            );
        }
    }
    assert_eq!(store.snapshot().unwrap(), before);

    // Unknown names say what exists.
    assert_err(
        store.delete_vpc("green", true),
        &[r#"unknown VPC "green""#, "known: blue, red"],
    );
    assert_err(
        store.delete_endpoint("blue", "nope", true),
        &[
            r#"unknown endpoint "nope" in VPC "blue""#,
            "known: db1, fw, lb, web1, web2",
        ],
    );
    assert_err(
        store.delete_bouncer("blue", "web", "h3"),
        &[
            r#"unknown bouncer "h3" of network "web" in VPC "blue""#,
            "known: gw1, h2",
        ],
    );

    // Cascades, each reporting what went with it.
    let report = store.delete_endpoint("blue", "web1", true).unwrap();
    assert_eq!(report.count(Kind::Endpoint, Action::Delete), 1);
    assert_eq!(report.count(Kind::Endpoint, Action::Update), 1, "{report}");
    assert_eq!(store.endpoint("blue", "lb").unwrap().backends, ["web2"]);

    let report = store.delete_host("h3", true).unwrap();
    assert_eq!(report.count(Kind::Endpoint, Action::Delete), 2, "{report}"); // blue/db1, red/web1
    assert_eq!(report.count(Kind::Bouncer, Action::Delete), 2); // blue/db, red/web
    assert_eq!(report.count(Kind::Divider, Action::Delete), 1); // red
    assert!(store.host("h3").is_err());

    let report = store.delete_vpc("blue", true).unwrap();
    assert_eq!(report.count(Kind::Network, Action::Delete), 2, "{report}");
    assert_eq!(report.count(Kind::Endpoint, Action::Delete), 3, "{report}");
    assert_eq!(report.count(Kind::Endpoint, Action::Update), 0, "{report}");
    assert_eq!(report.count(Kind::Vpc, Action::Delete), 1);
    assert_eq!(store.vpcs().unwrap().len(), 1);
    assert!(store.endpoints(Some("red")).unwrap().is_empty());
    assert_eq!(store.dividers(None).unwrap().len(), 1); // red:gw1

    // Leaves and plain deletes.
    store.delete_divider("red", "gw1").unwrap();
    store.delete_bouncer("red", "web", "h3").unwrap_err(); // went with h3
    store.delete_network("red", "web", false).unwrap();
    store.delete_vpc("red", false).unwrap();
    store.delete_host("h2", false).unwrap();
    assert_eq!(store.hosts().unwrap().len(), 1);
    let report = store.delete_host("gw1", false).unwrap();
    assert_eq!(report.count(Kind::ThisHost, Action::Delete), 1, "{report}");
    assert_eq!(store.this_host().unwrap(), None);
}

#[test]
fn deleted_objects_leave_no_dangling_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mizar.db");
    let mut store = Store::open(&path).unwrap();
    store.apply(&common::base_doc(), false).unwrap();
    store.delete_network("blue", "web", true).unwrap();
    store.delete_host("h3", true).unwrap();

    let raw = rusqlite::Connection::open(&path).unwrap();
    let dangling: i64 = raw
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(dangling, 0);
    let backends: i64 = raw
        .query_row("SELECT count(*) FROM endpoint_backends", [], |r| r.get(0))
        .unwrap();
    assert_eq!(backends, 0);
}

#[test]
fn moving_this_host_keeps_one() {
    let mut store = base_store();
    store.add_host(&host("h9", "192.168.50.9")).unwrap();
    store.set_this_host("h9", "ens3").unwrap();
    let this = store.this_host().unwrap().unwrap();
    assert_eq!(this.name, "h9");
    let doc = store.snapshot().unwrap();
    assert_eq!(doc.this_host.as_deref(), Some("h9"));
    assert_eq!(doc.host("gw1").unwrap().interface.as_deref(), Some("eth0"));
    let roles = doc.roles("gw1");
    assert_eq!(roles.divider_of, ["blue", "red"]);
    assert!(roles.is_bouncer());
    assert_eq!(roles.endpoints.len(), 3);
}

#[test]
fn the_namespace_of_a_plumbed_endpoint_is_kept_with_it_and_goes_with_it() {
    let mut store = base_store();
    let mut ep = blue_ep("web9", "10.0.1.90");
    assert_err(
        store.add_endpoint_in_netns(&ep, "web9"),
        &["names no veth", "--veth"],
    );
    assert!(
        store.endpoint("blue", "web9").is_err(),
        "a refused add wrote"
    );
    ep.veth = Some("vweb9".into());
    store.add_endpoint_in_netns(&ep, "web9").unwrap();
    assert_eq!(
        store.endpoint_netns("blue", "web9").unwrap().as_deref(),
        Some("web9")
    );
    // Same name in another VPC: a different endpoint, no namespace.
    assert_eq!(store.endpoint_netns("red", "web9").unwrap(), None);
    let plain = blue_ep("web8", "10.0.1.80");
    store.add_endpoint(&plain).unwrap();
    assert_eq!(store.endpoint_netns("blue", "web8").unwrap(), None);
    store.delete_endpoint("blue", "web9", false).unwrap();
    assert_eq!(store.endpoint_netns("blue", "web9").unwrap(), None);
    // A new endpoint of that name does not inherit the old one's namespace.
    store.add_endpoint(&ep).unwrap();
    assert_eq!(store.endpoint_netns("blue", "web9").unwrap(), None);
}
