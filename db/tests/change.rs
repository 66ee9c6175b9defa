//! Changes in place (`mizar … set`, the dashboard's change forms): an existing object brought
//! to what the request says, validated against the whole configuration it would leave, and a
//! refused change leaves the store as it was.

mod common;

use common::{assert_err, base_store, blue_ep};
use mizar_db::{EndpointKind, Host, Network, Request, Store, Vpc};

fn snapshot(store: &Store) -> String {
    store.export().unwrap().to_yaml().unwrap()
}

#[test]
fn changes_bring_each_kind_to_what_was_asked() {
    let mut store = base_store();

    let mut h2 = store.host("h2").unwrap();
    h2.ip = "192.168.50.22".parse().unwrap();
    h2.mac = "02:00:c0:a8:32:22".parse().unwrap();
    assert_eq!(
        store.make(&Request::ChangeHost(h2.clone())).unwrap(),
        "host h2 changed"
    );
    assert_eq!(store.host("h2").unwrap(), h2);
    // Everything that named it still does.
    assert_eq!(store.endpoint("blue", "web1").unwrap().host, "h2");
    assert_eq!(
        store.make(&Request::ChangeHost(h2)).unwrap(),
        "host h2 unchanged"
    );

    let mut blue = store.vpc("blue").unwrap();
    blue.vni = 101;
    assert_eq!(
        store.make(&Request::ChangeVpc(blue.clone())).unwrap(),
        "VPC blue changed"
    );
    assert_eq!(store.vpc("blue").unwrap().vni, 101);
    assert_eq!(store.networks(Some("blue")).unwrap().len(), 2);
    assert_eq!(store.dividers(Some("blue")).unwrap().len(), 1);

    let mut web = store.network("blue", "web").unwrap();
    web.cidr = "10.0.0.0/23".parse().unwrap();
    web.gateway = "10.0.0.1".parse().unwrap();
    assert_eq!(
        store.make(&Request::ChangeNetwork(web.clone())).unwrap(),
        "network blue/web changed"
    );
    assert_eq!(store.network("blue", "web").unwrap(), web);
    assert_eq!(store.bouncers(Some(("blue", "web"))).unwrap().len(), 2);
    assert_eq!(store.endpoints(Some("blue")).unwrap().len(), 5);

    let mut web2 = store.endpoint("blue", "web2").unwrap();
    web2.ip = "10.0.0.50".parse().unwrap();
    web2.veth = Some("veth-web2b".into());
    assert_eq!(
        store.make(&Request::ChangeEndpoint(web2.clone())).unwrap(),
        "endpoint blue/web2 changed"
    );
    assert_eq!(store.endpoint("blue", "web2").unwrap(), web2);
    // Still a backend of the scaled endpoint that listed it.
    assert!(
        store
            .endpoint("blue", "lb")
            .unwrap()
            .backends
            .contains(&"web2".to_owned())
    );

    // No network given: the one containing the new address.
    let mut web1 = store.endpoint("blue", "web1").unwrap();
    web1.ip = "10.0.2.77".parse().unwrap();
    web1.network = String::new();
    store.make(&Request::ChangeEndpoint(web1)).unwrap();
    assert_eq!(store.endpoint("blue", "web1").unwrap().network, "db");

    // A scaled endpoint's backends are replaced, not merged (as apply would).
    let mut lb = store.endpoint("blue", "lb").unwrap();
    lb.backends = vec!["web1".into()];
    store.make(&Request::ChangeEndpoint(lb)).unwrap();
    assert_eq!(store.endpoint("blue", "lb").unwrap().backends, ["web1"]);
}

#[test]
fn a_refused_change_names_the_problem_and_the_fix_and_changes_nothing() {
    let mut store = base_store();
    let before = snapshot(&store);
    let host = |name: &str, ip: &str| Host {
        name: name.into(),
        ip: ip.parse().unwrap(),
        mac: "02:00:00:00:00:09".parse().unwrap(),
        interface: None,
    };
    let blue = |vni, cidr: &str| Vpc {
        name: "blue".into(),
        vni,
        cidr: cidr.parse().unwrap(),
    };
    let mut moved = store.endpoint("blue", "web1").unwrap();
    moved.ip = "10.0.1.11".parse().unwrap(); // web2's
    let mut kind = store.endpoint("blue", "web1").unwrap();
    kind.kind = EndpointKind::Scaled;
    let mut self_backend = store.endpoint("blue", "lb").unwrap();
    self_backend.backends.push("lb".into());
    let mut local_without_veth = store.endpoint("blue", "web2").unwrap();
    local_without_veth.veth = None;
    let cases: Vec<(Request, &[&str])> = vec![
        (
            Request::ChangeHost(host("nope", "192.168.50.9")),
            &[r#"host "nope""#, "mizar host add"],
        ),
        (
            Request::ChangeHost(host("h2", "192.168.50.3")),
            &["192.168.50.3", "h3"],
        ),
        (
            Request::ChangeVpc(blue(200, "10.0.0.0/16")),
            &["VNI 200", "red"],
        ),
        (
            Request::ChangeVpc(blue(100, "10.0.1.0/24")),
            &["10.0.2.0/24", "outside"],
        ),
        (
            Request::ChangeVpc(blue(0, "10.0.0.0/16")),
            &["VNI 0", "1 to 16777215"],
        ),
        (
            Request::ChangeNetwork(Network::new("blue", "web", "10.0.1.0/28".parse().unwrap())),
            &["outside its network", "10.0.1.0/28", "pick an address"],
        ),
        (
            Request::ChangeNetwork(Network::new("blue", "nope", "10.0.9.0/24".parse().unwrap())),
            &[r#"network "nope""#, "mizar net add"],
        ),
        (
            Request::ChangeEndpoint(blue_ep("nope", "10.0.1.77")),
            &[r#"endpoint "nope""#, "mizar ep list"],
        ),
        (Request::ChangeEndpoint(moved), &["10.0.1.11", "web2"]),
        (Request::ChangeEndpoint(kind), &["web1", "backend"]),
        (Request::ChangeEndpoint(self_backend), &["lb"]),
        (
            Request::ChangeEndpoint(local_without_veth),
            &["web2", "--veth"],
        ),
    ];
    for (request, says) in cases {
        let what = request.to_string();
        let err = store.make(&request).map(drop);
        assert_err(err, says);
        assert_eq!(snapshot(&store), before, "{what} changed the store");
    }
}

#[test]
fn a_plumbed_endpoint_keeps_its_namespace_through_a_change_and_cannot_move() {
    let mut store = base_store();
    let mut ep = blue_ep("web9", "10.0.1.90");
    ep.host = "gw1".into();
    ep.veth = Some("vweb9".into());
    store.add_endpoint_in_netns(&ep, "ns9").unwrap();
    ep.mac = "02:00:0a:00:01:99".parse().unwrap();
    store.make(&Request::ChangeEndpoint(ep.clone())).unwrap();
    assert_eq!(store.endpoint("blue", "web9").unwrap().mac, ep.mac);
    assert_eq!(
        store.endpoint_netns("blue", "web9").unwrap().as_deref(),
        Some("ns9")
    );
    let mut moved = ep.clone();
    moved.veth = Some("vweb9b".into());
    assert_err(
        store.make(&Request::ChangeEndpoint(moved)).map(drop),
        &["ns9", "mizar ep del", "add it again"],
    );
    assert_eq!(store.endpoint("blue", "web9").unwrap(), ep);
    // An apply that rewrites the endpoint keeps the record too.
    let mut doc = store.export().unwrap();
    let spec = doc
        .vpcs
        .iter_mut()
        .flat_map(|v| v.networks.iter_mut())
        .flat_map(|n| n.endpoints.iter_mut())
        .find(|e| e.name == "web9")
        .unwrap();
    spec.mac = "02:00:0a:00:01:98".parse().unwrap();
    store.apply(&doc, false).unwrap();
    assert_eq!(
        store.endpoint_netns("blue", "web9").unwrap().as_deref(),
        Some("ns9")
    );
}
