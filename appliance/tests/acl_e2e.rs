//! The acl function end to end through the real `mizar` binary on the demo fabric: rules set
//! with `mizar acl` on a live host let one TCP port through and not another, in both
//! directions, and the replies of allowed connections pass on their tracked flow although the
//! other direction's default denies. Another VPC on the same host is not filtered. Needs root,
//! BPF and iproute2; fails (never skips) without them; the fabric goes away when the test ends.

mod common;

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use common::netns::unique_prefix;
use mizar::demo::{Demo, DemoSpec, ping};

const MIZAR: &str = env!("CARGO_BIN_EXE_mizar");

/// Accepts connections on `ports` in `ns` for `for_how_long`; returns how many each took.
fn listen(
    fabric: &Demo,
    ns: &str,
    ports: &'static [u16],
    for_how_long: Duration,
) -> mizar::lab::NsJoinHandle<std::io::Result<Vec<usize>>> {
    fabric
        .ns(ns)
        .spawn(move || -> std::io::Result<Vec<usize>> {
            let listeners = ports
                .iter()
                .map(|p| {
                    let l = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, *p))?;
                    l.set_nonblocking(true)?;
                    Ok(l)
                })
                .collect::<std::io::Result<Vec<_>>>()?;
            let mut accepted = vec![0; ports.len()];
            let start = Instant::now();
            while start.elapsed() < for_how_long {
                for (i, l) in listeners.iter().enumerate() {
                    if l.accept().is_ok() {
                        accepted[i] += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(accepted)
        })
        .unwrap()
}

/// Whether a TCP connection from `ns` to `to` completes within a second and a half.
fn connects(fabric: &Demo, ns: &str, to: SocketAddrV4) -> bool {
    fabric
        .ns(ns)
        .spawn(move || {
            TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_millis(1500)).is_ok()
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn an_acl_lets_one_port_through_and_not_another_both_ways_and_replies_pass() {
    common::require_root();
    let fabric = Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    // h3 hosts b-db1 (blue) and r-web1 (red); b-web2 (blue) lives on h1.
    let host = fabric.endpoint("b-db1").host;
    let db = fabric.endpoint("b-db1").ip;
    let web = fabric.endpoint("b-web2").ip;
    let ok = |args: &[&str]| fabric.mizar_ok(&host, args).unwrap();
    ok(&["chain", "add", "--stage", "redirect", "acl"]);
    ok(&["chain", "add", "--stage", "egress", "acl"]);
    // Ingress: only 8080 to b-db1; egress: only 7070. Everything else denied both ways.
    ok(&[
        "acl",
        "add",
        "blue",
        "allow",
        "--direction",
        "ingress",
        "--dst",
        "ep:b-db1",
        "--proto",
        "tcp",
        "--port",
        "8080",
    ]);
    ok(&[
        "acl",
        "add",
        "blue",
        "allow",
        "--direction",
        "egress",
        "--proto",
        "tcp",
        "--port",
        "7070",
    ]);
    ok(&["acl", "default", "blue", "deny", "--direction", "ingress"]);
    ok(&["acl", "default", "blue", "deny", "--direction", "egress"]);

    // Bad input: refused with the fix, nothing changed.
    let before = ok(&["acl", "show", "--json"]);
    for (args, wanted) in [
        (
            vec![
                "acl",
                "add",
                "blue",
                "allow",
                "--direction",
                "ingress",
                "--src",
                "10.0.0.300/8",
            ],
            "not an IPv4 CIDR",
        ),
        (
            vec![
                "acl",
                "add",
                "blue",
                "allow",
                "--direction",
                "ingress",
                "--proto",
                "icmp",
                "--port",
                "80",
            ],
            "ports need a protocol with ports",
        ),
        (
            vec!["acl", "add", "green", "deny", "--direction", "ingress"],
            "unknown VPC \"green\"",
        ),
        (
            vec![
                "acl",
                "add",
                "blue",
                "deny",
                "--direction",
                "ingress",
                "--src",
                "label:role=nope",
            ],
            "has the label",
        ),
        (
            vec!["acl", "del", "blue", "5", "--direction", "egress"],
            "have no position 5",
        ),
    ] {
        let out = fabric.mizar(&host, &args).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(wanted),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(ok(&["acl", "show", "--json"]), before);

    let listening = listen(&fabric, "b-db1", &[8080, 9090], Duration::from_secs(8));
    let web_listening = listen(&fabric, "b-web2", &[7070, 6060], Duration::from_secs(8));
    std::thread::sleep(Duration::from_millis(300));
    let results = [
        connects(&fabric, "b-web2", SocketAddrV4::new(db, 8080)),
        connects(&fabric, "b-web2", SocketAddrV4::new(db, 9090)),
        connects(&fabric, "b-db1", SocketAddrV4::new(web, 7070)),
        connects(&fabric, "b-db1", SocketAddrV4::new(web, 6060)),
    ];
    println!("b-web2 -> b-db1:8080, :9090; b-db1 -> b-web2:7070, :6060 connected: {results:?}");
    assert_eq!(
        results,
        [true, false, true, false],
        "allowed ports connect (their replies pass on the flow), the others do not"
    );
    assert_eq!(listening.join().unwrap().unwrap(), [1, 0]);
    assert_eq!(web_listening.join().unwrap().unwrap(), [1, 0]);

    // Red lives on the same host and has no ACL.
    let red = ping(
        fabric.ns("r-web2"),
        fabric.endpoint("r-web1").ip,
        2,
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(red.all_answered(), "red is not filtered: {red}");

    let shown: serde_json::Value = serde_json::from_str(&ok(&["acl", "show", "--json"])).unwrap();
    let acl = &shown["acls"][0];
    assert_eq!(acl["vpc"], "blue", "{shown}");
    assert!(acl["flows"].as_u64().unwrap() >= 2, "{shown}");
    for rule in acl["rules"].as_array().unwrap() {
        assert!(
            rule["hits"].as_u64().unwrap() >= 1,
            "each rule opened its flow: {shown}"
        );
    }
    assert!(
        shown["dropped"]["denied_by_default"].as_u64().unwrap() >= 2,
        "{shown}"
    );
    let text = ok(&["acl", "show", "--vpc", "blue"]);
    assert!(
        text.contains("ingress default deny") && text.contains("ep:b-db1"),
        "{text}"
    );
    let exported = ok(&["export"]);
    assert!(
        exported.contains("acls:") && exported.contains("ingress-default: deny"),
        "{exported}"
    );

    // Clearing the ACL lets 9090 through.
    ok(&["acl", "clear", "blue"]);
    let listening = listen(&fabric, "b-db1", &[9090], Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(300));
    assert!(connects(&fabric, "b-web2", SocketAddrV4::new(db, 9090)));
    assert_eq!(listening.join().unwrap().unwrap(), [1]);
}
