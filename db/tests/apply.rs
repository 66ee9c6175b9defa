//! The declarative document: parsing, apply (idempotent, pruning, all-or-nothing), export.

mod common;

use common::{BASE, assert_err, base_doc, base_store};
use mizar_db::{
    Action, Endpoint, EndpointChange, EndpointKind, Kind, Proposal, Store, StoreError, Topology,
};

#[test]
fn the_hand_written_document_reads_as_meant() {
    let doc = base_doc();
    assert_eq!(doc.this_host.as_deref(), Some("gw1"));
    let blue = doc.vpc("blue").unwrap();
    assert_eq!(
        blue.networks[0].gateway(),
        "10.0.1.1".parse::<std::net::Ipv4Addr>().unwrap()
    );
    assert_eq!(
        blue.networks[1].gateway(),
        "10.0.2.254".parse::<std::net::Ipv4Addr>().unwrap()
    );
    let (_, _, lb) = doc.endpoints().find(|(_, _, e)| e.name == "lb").unwrap();
    assert_eq!(lb.kind, EndpointKind::Scaled);
    assert_eq!(lb.backends, ["web1", "web2"]);
    let (_, _, fw) = doc.endpoints().find(|(_, _, e)| e.name == "fw").unwrap();
    assert!(fw.bypass_decap);
    assert_eq!(doc.endpoints().count(), 6);
}

#[test]
fn a_typo_in_a_key_is_an_error_not_a_silent_default() {
    let text = BASE.replace("bouncers: [h3]", "bouncer: [h3]");
    let err = Topology::from_yaml(&text).unwrap_err().to_string();
    assert!(err.contains("unknown field `bouncer`"), "{err}");
    assert!(err.contains("line"), "{err}");
    let err = Topology::from_yaml(&BASE.replace("type: scaled", "type: scaleed"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("scaleed"), "{err}");
    let err = Topology::from_yaml(&BASE.replace("02:00:0a:00:02:14", "02:00:0a:00:02"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a MAC address"), "{err}");
}

#[test]
fn applying_twice_changes_nothing_the_second_time() {
    let mut store = Store::open_in_memory().unwrap();
    let first = store.apply(&base_doc(), false).unwrap();
    assert_eq!(first.count(Kind::Host, Action::Create), 3);
    assert_eq!(first.count(Kind::ThisHost, Action::Create), 1);
    assert_eq!(first.count(Kind::Vpc, Action::Create), 2);
    assert_eq!(first.count(Kind::Divider, Action::Create), 3);
    assert_eq!(first.count(Kind::Network, Action::Create), 3);
    assert_eq!(first.count(Kind::Bouncer, Action::Create), 4);
    assert_eq!(first.count(Kind::Endpoint, Action::Create), 6);
    assert_eq!(first.len(), 22, "{first}");

    let after_first = store.snapshot().unwrap();
    for prune in [false, true] {
        assert!(store.plan(&base_doc(), prune).unwrap().is_empty());
        let again = store.apply(&base_doc(), prune).unwrap();
        assert!(again.is_empty(), "prune={prune}: {again}");
        assert_eq!(again.summary(), "0 created, 0 changed, 0 removed");
    }
    assert_eq!(store.snapshot().unwrap(), after_first);
}

#[test]
fn export_round_trips_through_apply_as_yaml_and_json() {
    let store = base_store();
    let exported = store.export().unwrap();

    let yaml = exported.to_yaml().unwrap();
    let json = exported.to_json().unwrap();
    for (format, doc) in [
        ("yaml", Topology::from_yaml(&yaml).unwrap()),
        ("json", Topology::from_json(&json).unwrap()),
    ] {
        assert_eq!(doc, exported, "{format}");
        // Into a fresh store: the same state.
        let mut fresh = Store::open_in_memory().unwrap();
        fresh.apply(&doc, true).unwrap();
        assert_eq!(fresh.snapshot().unwrap(), exported, "{format}");
        // Back into the store it came from: nothing to do.
        let mut same = base_store();
        assert!(same.apply(&doc, true).unwrap().is_empty(), "{format}");
    }
    // The export spells defaults out and is in name order, whatever the input order.
    assert!(yaml.contains("gateway: 10.0.1.1"), "{yaml}");
    let blue = exported.vpc("blue").unwrap();
    let names: Vec<_> = blue.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    let names: Vec<_> = blue.networks[1]
        .endpoints
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["lb", "web1", "web2"]);
}

#[test]
fn without_prune_nothing_is_removed_with_prune_what_is_missing_goes() {
    let mut store = base_store();
    let mut doc = base_doc();
    doc.vpcs.retain(|v| v.name != "red");
    doc.vpcs[0].networks[1]
        .endpoints
        .retain(|e| e.name != "db1");
    doc.vpcs[0].networks[0].bouncers.retain(|h| h != "h2");
    doc.vpcs[0].networks[0].endpoints[2].backends = vec!["web2".into()]; // lb without web1

    let before = store.snapshot().unwrap();
    assert!(store.apply(&doc, false).unwrap().is_empty());
    assert_eq!(store.snapshot().unwrap(), before);

    let plan = store.plan(&doc, true).unwrap();
    let report = store.apply(&doc, true).unwrap();
    assert_eq!(plan, report);
    let deleted = |kind| report.count(kind, Action::Delete);
    assert_eq!(deleted(Kind::Vpc), 1, "{report}");
    assert_eq!(deleted(Kind::Network), 1); // red/web
    assert_eq!(deleted(Kind::Endpoint), 2); // blue/db1, red/web1
    assert_eq!(deleted(Kind::Bouncer), 2); // blue/web:h2, red/web:h3
    assert_eq!(deleted(Kind::Divider), 2); // red:gw1, red:h3
    assert_eq!(report.count(Kind::Endpoint, Action::Update), 1); // lb
    assert_eq!(store.endpoint("blue", "lb").unwrap().backends, ["web2"]);
    assert!(store.vpc("red").is_err());
    // Hosts stay: the document still lists them.
    assert_eq!(store.hosts().unwrap().len(), 3);
    assert_eq!(store.snapshot().unwrap().this_host.as_deref(), Some("gw1"));
}

#[test]
fn prune_refuses_to_leave_references_to_what_it_removes() {
    let mut store = base_store();
    let mut doc = base_doc();
    doc.hosts.retain(|h| h.name != "h3");
    let before = store.snapshot().unwrap();
    let err = assert_err(store.apply(&doc, true), &["problems; nothing was changed"]);
    let problems: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
    // blue/db bouncer, red divider, red/web bouncer, blue/db1 and red/web1 hosts.
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with(r#"unknown host "h3""#)),
        "{problems:#?}"
    );
    assert!(problems[0].contains("known: gw1, h2"), "{problems:#?}");
    assert_eq!(store.snapshot().unwrap(), before);
}

#[test]
fn a_bad_document_changes_nothing_and_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("mizar.db");
    let mut store = Store::open(&path).unwrap();
    store.apply(&base_doc(), false).unwrap();
    let before = store.snapshot().unwrap();

    // Good additions mixed with bad ones: a new VPC and network are fine, then a host-bits
    // CIDR, a duplicate IP, an unknown host and an unknown backend.
    let text = format!(
        "{BASE}
  - name: green
    vni: 300
    cidr: 10.0.0.0/16
    networks:
      - name: ok
        cidr: 10.0.1.0/24
        endpoints:
          - {{ name: a, ip: 10.0.1.5, mac: '02:00:00:00:00:05', host: h2 }}
          - {{ name: b, ip: 10.0.1.5, mac: '02:00:00:00:00:06', host: h2 }}
          - {{ name: c, ip: 10.0.1.7, mac: '02:00:00:00:00:07', host: h9 }}
          - {{ name: d, ip: 10.0.1.8, mac: '02:00:00:00:00:08', host: h2, type: scaled, backends: [zz] }}
      - name: typo
        cidr: 10.0.0.1/24
"
    );
    let doc = Topology::from_yaml(&text).unwrap();
    let err = store.apply(&doc, false).unwrap_err();
    let problems: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
    let expect = [
        r#"CIDR 10.0.0.1/24 of network "typo" in VPC "green" has host bits set; write the network address: 10.0.0.0/24"#,
        r#"IP 10.0.1.5 of endpoint "b" is already used by endpoint "a" in VPC "green""#,
        r#"unknown host "h9" (host of endpoint "c" in VPC "green")"#,
        r#"unknown endpoint "zz" in VPC "green" (backend of scaled endpoint "d")"#,
    ];
    for part in expect {
        assert!(
            problems.iter().any(|p| p.contains(part)),
            "{part}\n not in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
    assert!(
        err.to_string()
            .starts_with("the topology has 4 problems; nothing was changed:\n  - ")
    );

    assert_eq!(store.snapshot().unwrap(), before);
    drop(store);
    // And on disk, from a fresh connection.
    assert_eq!(Store::open(&path).unwrap().snapshot().unwrap(), before);
}

#[test]
fn documents_listing_an_object_twice_are_refused() {
    let mut store = Store::open_in_memory().unwrap();
    let text = BASE.replace(
        "  - { name: h3,",
        "  - { name: h2,  ip: 192.168.50.9, mac: \"02:00:c0:a8:32:09\" }\n  - { name: h3,",
    );
    let doc = Topology::from_yaml(&text).unwrap();
    assert_err(
        store.apply(&doc, false),
        &[r#"the document lists host "h2" more than once; merge the entries into one"#],
    );
    let text = BASE.replace("backends: [web1, web2]", "backends: [web1, web1]");
    assert_err(
        store.apply(&Topology::from_yaml(&text).unwrap(), false),
        &[r#"lists backend "web1" of endpoint "lb" in VPC "blue" more than once"#],
    );
    assert_eq!(store.snapshot().unwrap(), Topology::default());
}

#[test]
fn changes_are_applied_in_place_even_when_objects_swap_unique_values() {
    let mut store = base_store();
    let mut doc = store.export().unwrap();
    // Swap the VNIs of blue and red, the IPs of web1 and web2, the veths of web2 and fw;
    // move fw from db to web; change a gateway, a host's MAC and this host.
    doc.vpcs[0].vni = 200;
    doc.vpcs[1].vni = 100;
    let web = &mut doc.vpcs[0].networks[1];
    web.endpoints[1].ip = "10.0.1.11".parse().unwrap();
    web.endpoints[2].ip = "10.0.1.10".parse().unwrap();
    web.endpoints[2].veth = Some("veth-fw".into());
    web.gateway = Some("10.0.1.254".parse().unwrap());
    let db = &mut doc.vpcs[0].networks[0];
    let mut fw = db.endpoints.remove(1);
    fw.ip = "10.0.1.20".parse().unwrap();
    fw.veth = Some("veth-web2".into());
    doc.vpcs[0].networks[1].endpoints.push(fw);
    doc.hosts[1].mac = "02:00:00:00:aa:02".parse().unwrap();
    doc.hosts[1].interface = Some("eth9".into());
    doc.this_host = Some("h2".into());
    // h2 becomes this host, so its endpoint web1 needs a veth.
    doc.vpcs[0].networks[1].endpoints[1].veth = Some("veth-web1".into());

    let report = store.apply(&doc, false).unwrap();
    assert_eq!(report.count(Kind::Vpc, Action::Update), 2, "{report}");
    assert_eq!(report.count(Kind::Endpoint, Action::Update), 3, "{report}"); // web1, web2, fw
    assert_eq!(report.count(Kind::Network, Action::Update), 1, "{report}");
    assert_eq!(report.count(Kind::Host, Action::Update), 1, "{report}");
    assert_eq!(report.count(Kind::ThisHost, Action::Update), 1, "{report}");
    assert_eq!(report.len(), 8, "{report}");

    let after = store.export().unwrap();
    let mut expected = doc.clone();
    expected.vpcs[0].networks[1]
        .endpoints
        .sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(after, expected);
    // The scaled endpoint still lists its backends, whose rows were replaced.
    assert_eq!(
        store.endpoint("blue", "lb").unwrap().backends,
        ["web1", "web2"]
    );
    assert!(store.apply(&doc, true).unwrap().is_empty());
}

#[test]
fn an_empty_document_with_prune_empties_the_store() {
    let mut store = base_store();
    let report = store.apply(&Topology::default(), true).unwrap();
    assert_eq!(report.count(Kind::ThisHost, Action::Delete), 1, "{report}");
    assert_eq!(report.count(Kind::Host, Action::Delete), 3);
    assert_eq!(store.snapshot().unwrap(), Topology::default());
    assert!(store.apply(&Topology::default(), true).unwrap().is_empty());
}

#[test]
fn yaml_and_json_errors_are_store_errors() {
    assert!(matches!(
        Topology::from_yaml("vpcs: 3"),
        Err(StoreError::Yaml(_))
    ));
    assert!(matches!(Topology::from_json("{"), Err(StoreError::Json(_))));
}

/// The rules again, this time reached through a document: the same messages, and the store
/// unchanged. (The typed API's table is in tests/store.rs.)
#[test]
fn every_rule_holds_for_documents_too() {
    type Edit = fn(&mut Topology);
    let cases: &[(&str, Edit, &[&str])] = &[
        (
            "VNI zero",
            |d| d.vpcs[0].vni = 0,
            &[r#"VNI 0 of VPC "blue" is out of range"#],
        ),
        (
            "VNI taken",
            |d| d.vpcs[1].vni = 100,
            &[r#"VNI 100 of VPC "red" is already used by VPC "blue""#],
        ),
        (
            "VPC CIDR with host bits",
            |d| d.vpcs[0].cidr = "10.0.0.1/16".parse().unwrap(),
            &[
                "CIDR 10.0.0.1/16 of VPC \"blue\" has host bits set",
                "10.0.0.0/16",
            ],
        ),
        (
            "network CIDR with host bits",
            |d| d.vpcs[0].networks[0].cidr = "10.0.1.1/24".parse().unwrap(),
            &["write the network address: 10.0.1.0/24"],
        ),
        (
            "network outside its VPC after the VPC shrinks",
            |d| d.vpcs[0].cidr = "10.0.2.0/24".parse().unwrap(),
            &[r#"network "web" (10.0.1.0/24) is outside its VPC "blue" (10.0.2.0/24)"#],
        ),
        (
            "networks overlapping",
            |d| d.vpcs[0].networks[1].cidr = "10.0.0.0/22".parse().unwrap(),
            &[r#"overlaps network "db" (10.0.0.0/22) in VPC "blue""#],
        ),
        (
            "gateway on the network address",
            |d| d.vpcs[0].networks[0].gateway = Some("10.0.1.0".parse().unwrap()),
            &[
                "gateway 10.0.1.0",
                "the network's own address",
                "such as 10.0.1.1",
            ],
        ),
        (
            "endpoint in the wrong network",
            |d| d.vpcs[0].networks[0].endpoints[0].ip = "10.0.2.99".parse().unwrap(),
            &[r#"it belongs in network "db" (10.0.2.0/24)"#],
        ),
        (
            "endpoint on the gateway",
            |d| d.vpcs[0].networks[1].endpoints[0].ip = "10.0.2.254".parse().unwrap(),
            &["IP 10.0.2.254 of endpoint \"db1\" is the gateway"],
        ),
        (
            "multicast MAC",
            |d| d.hosts[1].mac = "33:33:00:00:00:01".parse().unwrap(),
            &[r#"MAC 33:33:00:00:00:01 of host "h2" is a multicast address"#],
        ),
        (
            "host IP taken",
            |d| d.hosts[2].ip = "192.168.50.2".parse().unwrap(),
            &[r#"underlay IP 192.168.50.2 of host "h3" already belongs to host "h2""#],
        ),
        (
            "unknown this host",
            |d| d.this_host = Some("gw9".into()),
            &[r#"unknown host "gw9" (this-host); known: gw1, h2, h3"#],
        ),
        (
            "this host without interface",
            |d| d.hosts[0].interface = None,
            &[r#"host "gw1" is this host but has no underlay interface"#],
        ),
        (
            "unknown divider",
            |d| d.vpcs[0].dividers.push("h9".into()),
            &[
                r#"unknown host "h9" (divider of VPC "blue")"#,
                "mizar host add",
            ],
        ),
        (
            "scaled backend",
            |d| {
                let lb = &mut d.vpcs[0].networks[0].endpoints[2];
                lb.backends.push("lb".into());
            },
            &[r#"backend "lb" of scaled endpoint "lb" in VPC "blue" is the endpoint itself"#],
        ),
        (
            "backends on a function",
            |d| {
                d.vpcs[0].networks[1].endpoints[1]
                    .backends
                    .push("db1".into())
            },
            &["is of type function, but only scaled endpoints have backends"],
        ),
        (
            "bypass-decap on a simple endpoint",
            |d| d.vpcs[0].networks[0].endpoints[0].bypass_decap = true,
            &["only function endpoints can bypass decapsulation"],
        ),
        (
            "local endpoint without veth",
            |d| d.vpcs[0].networks[0].endpoints[1].veth = None,
            &[r#"endpoint "web2" in VPC "blue" is hosted on this host ("gw1") but names no veth"#],
        ),
        (
            "veth on a scaled endpoint",
            |d| d.vpcs[0].networks[0].endpoints[2].veth = Some("v-lb".into()),
            &[r#"endpoint "lb" in VPC "blue" is scaled"#, "drop the veth"],
        ),
        (
            "veth used twice on one host",
            |d| d.vpcs[0].networks[1].endpoints[1].veth = Some("veth-web2".into()),
            &[r#"veth "veth-web2" on host "gw1" already carries endpoint"#],
        ),
        (
            "too many dividers",
            |d| {
                for i in 0..16 {
                    let name = format!("d{i}");
                    d.hosts.push(mizar_db::Host {
                        name: name.clone(),
                        ip: format!("192.168.70.{i}").parse().unwrap(),
                        mac: common::mac(i),
                        interface: None,
                    });
                    d.vpcs[0].dividers.push(name);
                }
            },
            &[r#"VPC "blue" would have 17 dividers, but the data plane supports at most 16"#],
        ),
        (
            "invalid endpoint name",
            |d| d.vpcs[0].networks[0].endpoints[0].name = "web 1".into(),
            &[r#"endpoint name "web 1" is not valid"#],
        ),
    ];
    for (what, edit, parts) in cases {
        let mut store = base_store();
        let before = store.snapshot().unwrap();
        let mut doc = base_doc();
        edit(&mut doc);
        for prune in [false, true] {
            let err = store.apply(&doc, prune).expect_err(what);
            let problems: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
            for part in *parts {
                assert!(
                    problems.iter().any(|p| p.contains(part)),
                    "{what}: {problems:#?}\n  lack {part:?}"
                );
            }
            assert_eq!(
                store.snapshot().unwrap(),
                before,
                "{what}: the store changed"
            );
        }
    }
}

#[test]
fn macs_may_be_written_unquoted() {
    // All-digit groups too: YAML 1.2 reads them as strings, not as base-60 numbers.
    let text = "hosts:\n  - { name: a, ip: 192.168.1.1, mac: 12:34:56:00:00:10 }\n";
    let doc = Topology::from_yaml(text).unwrap();
    assert_eq!(doc.hosts[0].mac.to_string(), "12:34:56:00:00:10");
    let yaml = doc.to_yaml().unwrap();
    assert_eq!(Topology::from_yaml(&yaml).unwrap(), doc);
}

#[test]
fn a_clash_names_the_endpoint_already_there_as_the_holder() {
    let mut store = base_store();
    // "aaa" sorts before "web1": the message must still say the newcomer is aaa.
    let mut doc = base_doc();
    let mut newcomer = doc.vpcs[0].networks[0].endpoints[0].clone();
    newcomer.name = "aaa".into();
    newcomer.mac = "02:00:0a:00:01:99".parse().unwrap();
    doc.vpcs[0].networks[0].endpoints.push(newcomer);
    assert_err(
        store.apply(&doc, false),
        &["IP 10.0.1.10 of endpoint \"aaa\" is already used by endpoint \"web1\""],
    );
}

#[test]
fn two_endpoints_of_one_vpc_cannot_share_a_mac() {
    let mut store = base_store();
    let before = store.snapshot().unwrap();
    let mut doc = base_doc();
    let mut twin = doc.vpcs[0].networks[0].endpoints[0].clone();
    twin.name = "twin".into();
    twin.ip = "10.0.1.50".parse().unwrap();
    doc.vpcs[0].networks[0].endpoints.push(twin.clone());
    assert_err(
        store.apply(&doc, false),
        &[
            "MAC 02:00:0a:00:01:0a of endpoint \"twin\" is already used by endpoint \"web1\" in \
             VPC \"blue\"",
            "its own MAC",
        ],
    );
    // The typed API too; the same MAC in another VPC (red's web1) stays fine.
    let ep = Endpoint::simple("blue", "web", "twin", twin.ip, twin.mac, "h2");
    assert_err(
        store.add_endpoint(&ep),
        &["is already used by endpoint \"web1\""],
    );
    assert_eq!(store.snapshot().unwrap(), before);
}

#[test]
fn a_bad_prefix_length_in_a_document_is_explained() {
    let err = Topology::from_yaml("vpcs:\n  - {name: green, vni: 300, cidr: 10.9.0.0/33}\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/33 is not an IPv4 prefix length: use 0 to 32"),
        "{err}"
    );
    let err = Topology::from_yaml("vpcs:\n  - {name: green, vni: 300, cidr: 10.9.0.0}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no prefix length"), "{err}");
}

#[test]
fn the_commit_guard_sees_the_result_and_its_refusal_changes_nothing() {
    use std::sync::{Arc, Mutex};
    let mut store = base_store();
    let before = store.snapshot().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    store.set_commit_guard(Box::new(move |proposal: &Proposal<'_>| {
        let count = proposal.topology()?.endpoints().count();
        log.lock().unwrap().push(count);
        if count > 6 {
            return Err(format!("{count} endpoints are too many here").into());
        }
        Ok(())
    }));
    // base has 6 endpoints: one more is refused, with the guard's reason, and nothing changes.
    let ep = Endpoint::simple(
        "blue",
        "web",
        "extra",
        "10.0.1.60".parse().unwrap(),
        "02:00:0a:00:01:3c".parse().unwrap(),
        "h2",
    );
    assert_err(
        store.add_endpoint(&ep),
        &["7 endpoints are too many here", "nothing was changed"],
    );
    assert_eq!(store.snapshot().unwrap(), before);
    // A removal passes the guard and commits.
    store.delete_endpoint("red", "web1", false).unwrap();
    assert_eq!(*seen.lock().unwrap(), [7, 5]);
    assert_eq!(store.snapshot().unwrap().endpoints().count(), 5);

    // A dry run reports what it would do, is checked by the guard, and changes nothing.
    store.set_dry_run(true);
    let report = store.apply(&Topology::default(), true).unwrap();
    assert_eq!(report.count(Kind::Host, Action::Delete), 3, "{report}");
    assert_eq!(store.snapshot().unwrap().endpoints().count(), 5);
    assert_eq!(seen.lock().unwrap().last(), Some(&0));
}

/// The guard of `store` records each endpoint change it is shown (None: a whole-state write).
fn record_changes(
    store: &mut Store,
) -> std::sync::Arc<std::sync::Mutex<Vec<Option<EndpointChange>>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    store.set_commit_guard(Box::new(move |proposal: &Proposal<'_>| {
        log.lock()
            .unwrap()
            .push(proposal.endpoint_change().cloned());
        Ok(())
    }));
    seen
}

fn names(ep: &[Endpoint]) -> Vec<String> {
    ep.iter().map(|e| format!("{}/{}", e.vpc, e.name)).collect()
}

#[test]
fn an_endpoint_change_shows_the_guard_its_neighbourhood_and_nothing_more() {
    let mut store = base_store();
    let seen = record_changes(&mut store);
    // h2 hosts web1 in blue; a second endpoint of h2 in blue's db network.
    let ep = Endpoint::simple(
        "blue",
        "db",
        "db2",
        "10.0.2.30".parse().unwrap(),
        "02:00:0a:00:02:1e".parse().unwrap(),
        "h2",
    );
    store.add_endpoint(&ep).unwrap();
    let change = seen
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .expect("an endpoint change");
    assert_eq!(change.vpc, "blue");
    assert!(change.before.is_empty());
    assert_eq!(names(&change.after), ["blue/db2"]);
    let context = &change.context;
    assert_eq!(context.this_host.as_deref(), Some("gw1"));
    assert_eq!(context.hosts.len(), 3, "every host");
    assert_eq!(context.vpcs.len(), 1, "only the endpoint's VPC");
    let blue = &context.vpcs[0];
    assert_eq!(blue.dividers, ["gw1"]);
    let nets: Vec<(&str, Vec<&str>, Vec<&str>)> = blue
        .networks
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                n.bouncers.iter().map(String::as_str).collect(),
                n.endpoints.iter().map(|e| e.name.as_str()).collect(),
            )
        })
        .collect();
    // db2 itself (which also shows that h2 hosts an endpoint of blue: web1 may show it
    // instead); fw, the endpoint this host (gw1) hosts in db2's network. Nothing else of the
    // VPC's endpoints: not web2, lb (gw1's, but in another network) nor db1 (h3's).
    assert_eq!(nets[0], ("db", vec!["h3"], vec!["db2", "fw"]));
    assert_eq!((nets[1].0, &nets[1].1), ("web", &vec!["gw1", "h2"]));
    assert!(nets[1].2.iter().all(|e| *e == "web1"), "{nets:?}");
    assert!(
        change.endpoints_at_most >= 7,
        "{}",
        change.endpoints_at_most
    );
    let mut local: Vec<String> = change
        .local_veths
        .iter()
        .map(|(v, e, veth)| format!("{v}/{e}:{veth}"))
        .collect();
    local.sort();
    assert_eq!(local, ["blue/fw:veth-fw", "blue/web2:veth-web2"]);

    // A removal: the endpoint as it was; h2 still hosts web1, and gw1 still hosts fw.
    store.delete_endpoint("blue", "db2", false).unwrap();
    let change = seen
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .expect("an endpoint change");
    assert_eq!(names(&change.before), ["blue/db2"]);
    assert_eq!(change.before[0].host, "h2");
    assert!(change.after.is_empty());
    let ctx_eps: Vec<&str> = change
        .context
        .endpoints()
        .map(|(_, _, e)| e.name.as_str())
        .collect();
    assert_eq!(ctx_eps, ["fw", "web1"], "gw1's in db, and h2's in blue");

    // The last endpoint of h3 in red: no witness is left for h3.
    store.delete_endpoint("red", "web1", false).unwrap();
    let change = seen
        .lock()
        .unwrap()
        .pop()
        .unwrap()
        .expect("an endpoint change");
    assert_eq!(change.context.endpoints().count(), 0);

    // Deleting a backend with cascade changes its scaled endpoint too: a whole-state write.
    store.delete_endpoint("blue", "web1", true).unwrap();
    assert!(seen.lock().unwrap().pop().unwrap().is_none());
    // So is everything that is not an endpoint.
    store.add_divider("blue", "h3").unwrap();
    assert!(seen.lock().unwrap().pop().unwrap().is_none());
}

#[test]
fn the_configuration_apply_hands_its_guard_is_what_the_store_then_holds() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut store = Store::open_in_memory().unwrap();
    let log = std::sync::Arc::clone(&seen);
    store.set_commit_guard(Box::new(move |proposal: &Proposal<'_>| {
        log.lock().unwrap().push(proposal.topology()?);
        Ok(())
    }));
    // From empty; then a partial document overlaid on it (no prune), written out of order,
    // with defaults left out and backends unsorted; then a pruning one.
    let mut after = Vec::new();
    store.apply(&base_doc(), false).unwrap();
    after.push(store.snapshot().unwrap());
    let overlay = Topology::from_yaml(
        "vpcs:\n- name: blue\n  vni: 100\n  cidr: 10.0.0.0/16\n  networks:\n  - name: web\n    \
         cidr: 10.0.1.0/24\n    endpoints:\n    - {name: zz, ip: 10.0.1.90, mac: '02:00:0a:00:01:5a', \
         host: h3}\n    - {name: aa, ip: 10.0.1.91, mac: '02:00:0a:00:01:5b', host: h2}\n    - \
         {name: lb2, ip: 10.0.1.92, mac: '02:00:0a:00:01:5c', type: scaled, host: gw1, backends: \
         [zz, aa, web1]}\n",
    )
    .unwrap();
    store.apply(&overlay, false).unwrap();
    after.push(store.snapshot().unwrap());
    let mut pruned = store.snapshot().unwrap();
    pruned.vpcs.retain(|v| v.name == "blue");
    store.apply(&pruned, true).unwrap();
    after.push(store.snapshot().unwrap());
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, after);
    assert!(
        seen[1].vpcs.iter().any(|v| v.name == "red"),
        "overlay keeps red"
    );
    assert_eq!(seen[1].endpoints().count(), 9);
    assert_eq!(seen[2].endpoints().count(), 8);
}

fn endpoint_spec<'a>(doc: &'a mut Topology, name: &str) -> &'a mut mizar_db::EndpointSpec {
    doc.vpcs
        .iter_mut()
        .filter(|v| v.name == "blue")
        .flat_map(|v| v.networks.iter_mut())
        .flat_map(|n| n.endpoints.iter_mut())
        .find(|e| e.name == name)
        .unwrap()
}

#[test]
fn a_document_records_the_namespace_mizar_plumbs_and_exports_it_back() {
    let mut store = base_store();
    let mut doc = store.export().unwrap();
    endpoint_spec(&mut doc, "web2").netns = Some("pod-web2".into());
    // On another host: recorded, for that host's own apply to plumb.
    endpoint_spec(&mut doc, "web1").netns = Some("pod-web1".into());
    endpoint_spec(&mut doc, "web1").veth = Some("veth-web1".into());
    let report = store.apply(&doc, true).unwrap();
    assert_eq!(report.count(Kind::Endpoint, Action::Update), 2, "{report}");
    assert_eq!(
        store.endpoint_netns("blue", "web2").unwrap().as_deref(),
        Some("pod-web2")
    );
    let exported = store.export().unwrap();
    assert_eq!(exported, doc, "export gives the document back");
    let yaml = exported.to_yaml().unwrap();
    assert!(yaml.contains("netns: pod-web2"), "{yaml}");
    assert!(store.apply(&doc, true).unwrap().is_empty(), "applied twice");

    // A document that leaves the field out keeps the pair mizar made.
    let mut without = doc.clone();
    endpoint_spec(&mut without, "web2").netns = None;
    endpoint_spec(&mut without, "web2").mac = "02:00:0a:00:01:77".parse().unwrap();
    store.apply(&without, true).unwrap();
    assert_eq!(
        store.endpoint_netns("blue", "web2").unwrap().as_deref(),
        Some("pod-web2")
    );

    // Moving a plumbed endpoint, or naming another namespace, is refused and changes nothing.
    let before = store.export().unwrap();
    for (what, change) in [
        (
            "veth",
            &(|e: &mut mizar_db::EndpointSpec| e.veth = Some("veth-other".into()))
                as &dyn Fn(&mut mizar_db::EndpointSpec),
        ),
        ("netns", &|e: &mut mizar_db::EndpointSpec| {
            e.netns = Some("pod-other".into())
        }),
    ] {
        let mut moved = before.clone();
        change(endpoint_spec(&mut moved, "web2"));
        assert_err(
            store.apply(&moved, true),
            &["pod-web2", "mizar ep del", "add it again"],
        );
        assert_eq!(store.export().unwrap(), before, "a refused {what} change");
    }

    // Removing the endpoint takes its record along.
    let mut removed = before.clone();
    for vpc in &mut removed.vpcs {
        for net in &mut vpc.networks {
            net.endpoints.retain(|e| e.name != "web2");
            for e in &mut net.endpoints {
                e.backends.retain(|b| b != "web2");
            }
        }
    }
    store.apply(&removed, true).unwrap();
    assert_eq!(store.endpoint_netns("blue", "web2").unwrap(), None);
}

#[test]
fn a_bad_namespace_in_a_document_is_refused_with_the_fix() {
    let mut store = base_store();
    let before = store.export().unwrap();
    let cases: [(&str, Option<&str>, &[&str]); 4] = [
        ("", Some("veth-web2"), &["is empty"]),
        ("../etc", Some("veth-web2"), &["is not a file name"]),
        ("pod-x", None, &["no veth", "name the host end"]),
        (
            "pod-lb",
            Some("veth-web2"),
            &["both plumbed into network namespace \"pod-lb\""],
        ),
    ];
    for (netns, veth, says) in cases {
        let mut doc = before.clone();
        let spec = endpoint_spec(&mut doc, "web2");
        spec.netns = Some(netns.to_owned());
        if veth.is_none() {
            // An endpoint of another host needs no veth, so the namespace is what lacks one.
            spec.host = "h2".into();
        }
        spec.veth = veth.map(str::to_owned);
        if netns == "pod-lb" {
            let fw = endpoint_spec(&mut doc, "fw");
            fw.netns = Some("pod-lb".into());
        }
        assert_err(store.apply(&doc, true), says);
        assert_eq!(
            store.export().unwrap(),
            before,
            "{netns:?} changed the store"
        );
    }
}

/// The endpoints of blue's network web.
fn blue_web(doc: &mut Topology) -> &mut Vec<mizar_db::EndpointSpec> {
    let web = doc.vpcs[0].networks.iter_mut().find(|n| n.name == "web");
    &mut web.unwrap().endpoints
}

#[test]
fn many_endpoints_are_written_whole_and_changed_whole() {
    // More than one statement's worth of rows (apply writes them 64 to a statement).
    let mut store = base_store();
    let mut doc = store.export().unwrap();
    let bulk = |i: u8| mizar_db::EndpointSpec {
        labels: Vec::new(),
        name: format!("bulk{i:03}"),
        ip: std::net::Ipv4Addr::new(10, 0, 1, 101 + i),
        mac: common::mac(0x1000 + u16::from(i)),
        kind: EndpointKind::Simple,
        bypass_decap: false,
        host: "h2".into(),
        veth: None,
        backends: vec![],
        netns: None,
    };
    let endpoints = blue_web(&mut doc);
    endpoints.extend((0..150).map(bulk));
    // The last one takes the first one's address: the whole apply is refused, nothing written.
    endpoints.last_mut().unwrap().ip = std::net::Ipv4Addr::new(10, 0, 1, 101);
    let before = store.export().unwrap();
    assert_err(store.apply(&doc, true), &["10.0.1.101"]);
    assert_eq!(store.export().unwrap(), before);

    let endpoints = blue_web(&mut doc);
    *endpoints.last_mut().unwrap() = bulk(149);
    endpoints.sort_by(|a, b| a.name.cmp(&b.name)); // as export lists them
    let report = store.apply(&doc, true).unwrap();
    assert_eq!(
        report.count(Kind::Endpoint, Action::Create),
        150,
        "{report}"
    );
    let mut exported = store.export().unwrap();
    assert!(
        exported == doc,
        "the export differs from the document applied"
    );
    // Changing every other one rewrites those, and only those: the last one written (the
    // largest id) among them, while a new one arrives in the same apply.
    let count = store.endpoints(Some("blue")).unwrap().len();
    for spec in exported
        .vpcs
        .iter_mut()
        .flat_map(|v| v.networks.iter_mut())
        .flat_map(|n| n.endpoints.iter_mut())
        .filter(|e| e.name.starts_with("bulk"))
        .skip(1)
        .step_by(2)
    {
        spec.mac.0[0] = 0x06;
    }
    let web = blue_web(&mut exported);
    web.push(mizar_db::EndpointSpec {
        name: "late".into(),
        ip: std::net::Ipv4Addr::new(10, 0, 1, 251),
        mac: common::mac(0x2000),
        ..bulk(0)
    });
    web.sort_by(|a, b| a.name.cmp(&b.name));
    let report = store.apply(&exported, true).unwrap();
    assert_eq!(report.count(Kind::Endpoint, Action::Update), 75, "{report}");
    assert_eq!(report.count(Kind::Endpoint, Action::Create), 1, "{report}");
    assert!(
        store.export().unwrap() == exported,
        "the changes were not all written"
    );
    assert_eq!(store.endpoints(Some("blue")).unwrap().len(), count + 1);
}
