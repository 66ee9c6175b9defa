//! How long the store takes to apply a large document, and what a no-op apply, a snapshot and
//! single-object changes cost at that size. A measurement, not a test: it checks that each
//! step did what it should, and prints the times.
//!
//! ```sh
//! cargo run --release -p mizar-db --example bulk_apply            # 1,000 10,000 100,000
//! cargo run --release -p mizar-db --example bulk_apply -- 5000     # sizes of your choice
//! ```

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use mizar_db::{
    Endpoint, EndpointKind, EndpointSpec, Host, MacAddr, NetworkSpec, Store, Topology, VpcSpec,
};

/// Endpoints per network (a /18 holds 16,382).
const PER_NETWORK: usize = 10_000;
const REMOTE_HOSTS: u32 = 31;

fn endpoint_ip(i: usize) -> Ipv4Addr {
    let network = (i / PER_NETWORK) as u32;
    let offset = (i % PER_NETWORK) as u32 + 10;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (network << 14) + offset)
}

fn document(endpoints: usize) -> Topology {
    let mut hosts = vec![Host {
        name: "gw1".into(),
        ip: Ipv4Addr::new(192, 168, 0, 1),
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
        interface: Some("eth0".into()),
    }];
    for h in 1..=REMOTE_HOSTS {
        hosts.push(Host {
            name: format!("h{h}"),
            ip: Ipv4Addr::new(192, 168, 0, 1 + h as u8),
            mac: MacAddr([2, 0, 0, 0, 1, h as u8]),
            interface: None,
        });
    }
    let networks = endpoints.div_ceil(PER_NETWORK);
    let mut vpc = VpcSpec {
        name: "bulk".into(),
        vni: 4242,
        cidr: "10.0.0.0/8".parse().unwrap(),
        dividers: vec!["gw1".into()],
        networks: (0..networks)
            .map(|n| NetworkSpec {
                name: format!("n{n}"),
                cidr: format!(
                    "{}/18",
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + ((n as u32) << 14))
                )
                .parse()
                .unwrap(),
                gateway: None,
                bouncers: vec!["h1".into(), "h2".into()],
                endpoints: Vec::new(),
            })
            .collect(),
    };
    for i in 0..endpoints {
        let [_, a, b, c] = (i as u32).to_be_bytes();
        // One in a hundred lives here (behind a veth), one in a thousand is scaled over the two
        // endpoints before it, the rest are spread over the remote hosts.
        let (kind, host, veth, backends) = if i % 1000 == 999 {
            let backends = vec![format!("ep{}", i - 1), format!("ep{}", i - 2)];
            (EndpointKind::Scaled, "gw1".to_owned(), None, backends)
        } else if i % 100 == 0 {
            (
                EndpointKind::Simple,
                "gw1".to_owned(),
                Some(format!("v{i}")),
                vec![],
            )
        } else {
            let host = format!("h{}", 1 + i as u32 % REMOTE_HOSTS);
            (EndpointKind::Simple, host, None, vec![])
        };
        vpc.networks[i / PER_NETWORK].endpoints.push(EndpointSpec {
            labels: Vec::new(),
            name: format!("ep{i}"),
            ip: endpoint_ip(i),
            mac: MacAddr([2, 1, 0, a, b, c]),
            kind,
            bypass_decap: false,
            host,
            veth,
            backends,
            netns: None,
        });
    }
    Topology {
        scoped_chains: Vec::new(),
        acls: None,
        this_host: Some("gw1".into()),
        hosts,
        vpcs: vec![vpc],
        chains: Vec::new(),
        ddos: None,
        rate_limits: None,
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let sizes: Vec<usize> = match std::env::args().skip(1).map(|a| a.parse()).collect() {
        Ok(sizes) if !Vec::<usize>::is_empty(&sizes) => sizes,
        Ok(_) => vec![1_000, 10_000, 100_000],
        Err(err) => panic!("sizes are numbers of endpoints: {err}"),
    };
    println!(
        "{:>8} | {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9} {:>9}",
        "eps",
        "to YAML",
        "from YAML",
        "apply",
        "re-apply",
        "snapshot",
        "1st add",
        "ep add",
        "ep del",
        "1 change"
    );
    for n in sizes {
        let doc = document(n);
        let (yaml, to_yaml) = timed(|| doc.to_yaml().unwrap());
        let (parsed, from_yaml) = timed(|| Topology::from_yaml(&yaml).unwrap());
        assert_eq!(parsed, doc);

        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("mizar.db")).unwrap();
        let (report, apply) = timed(|| store.apply(&parsed, true).unwrap());
        assert_eq!(
            report.len(),
            1 + 32 + 1 + 1 + 3 * doc.vpcs[0].networks.len() + n
        );

        let (again, reapply) = timed(|| store.apply(&parsed, true).unwrap());
        assert!(again.is_empty(), "{again}");

        let (snapshot, snap) = timed(|| store.snapshot().unwrap());
        assert_eq!(snapshot.endpoints().count(), n);

        let ep = Endpoint {
            kind: EndpointKind::Simple,
            veth: Some("v-extra".into()),
            ..Endpoint::simple(
                "bulk",
                "n0",
                "extra",
                Ipv4Addr::new(10, 0, 63, 250),
                MacAddr([2, 9, 9, 9, 9, 9]),
                "gw1",
            )
        };
        // The first write after the bulk load pays a one-off cost; the second one is typical.
        let ((), first_add) = timed(|| store.add_endpoint(&ep).unwrap());
        store.delete_endpoint("bulk", "extra", false).unwrap();
        let ((), add) = timed(|| store.add_endpoint(&ep).unwrap());
        let (deleted, del) = timed(|| store.delete_endpoint("bulk", "extra", false).unwrap());
        assert_eq!(deleted.len(), 1);

        let mut changed = parsed.clone();
        changed.vpcs[0].networks[0].endpoints[1].mac = MacAddr([2, 8, 8, 8, 8, 8]);
        let (one, one_change) = timed(|| store.apply(&changed, false).unwrap());
        assert_eq!(one.len(), 1, "{one}");

        println!(
            "{n:>8} | {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9} {:>9}",
            ms(to_yaml),
            ms(from_yaml),
            ms(apply),
            ms(reapply),
            ms(snap),
            ms(first_add),
            ms(add),
            ms(del),
            ms(one_change)
        );
    }
}
