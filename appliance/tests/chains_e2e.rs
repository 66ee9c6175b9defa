//! Function chains end to end through the real `mizar` binary on the demo fabric: `mizar chain`
//! changes a stage's chain on a live host while a steady UDP stream crosses it, and no packet is
//! lost or runs half of one generation and half of another. Needs root, BPF and iproute2; fails
//! (never skips) without them; the fabric goes away when the test ends.

mod common;

use std::{
    collections::BTreeSet,
    net::{SocketAddrV4, UdpSocket},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::netns::unique_prefix;
use mizar::demo::{Demo, DemoSpec, ping};

const MIZAR: &str = env!("CARGO_BIN_EXE_mizar");
const PORT: u16 = 7100;
/// The least the stream carries while the chain changes.
const STREAM_MIN: u64 = 100_000;
/// Chain changes made while it flows.
const CHANGES: usize = 100;

/// The tests here count packets against rates and losses: one fabric at a time, so that three
/// demo fabrics sharing two cores do not drop what a test counts.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn show(fabric: &Demo, host: &str) -> Vec<serde_json::Value> {
    let out = fabric
        .mizar_ok(host, &["chain", "show", "--stage", "redirect", "--json"])
        .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|err| panic!("chain show --json: {err}: {out}"))
}

#[test]
fn a_chain_changed_a_hundred_times_under_a_stream_loses_nothing_and_runs_whole_generations() {
    common::require_root();
    let _one = one_at_a_time();
    let fabric = Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    // b-web2 (h1) → b-web1 (h2): every datagram is delivered on h2 through ON_XDP_REDIRECT.
    let host = fabric.endpoint("b-web1").host;
    let to = SocketAddrV4::new(fabric.endpoint("b-web1").ip, PORT);

    let refused = fabric
        .mizar(&host, &["chain", "add", "--stage", "redirect", "nat"])
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("unknown function \"nat\"") && stderr.contains("mizar fn list"),
        "{stderr}"
    );
    fabric
        .mizar_ok(
            &host,
            &["chain", "set", "--stage", "redirect", "count", "count"],
        )
        .unwrap();
    let fn_list = fabric.mizar_ok(&host, &["fn", "list"]).unwrap();
    assert!(
        fn_list.contains("ON_XDP_REDIRECT#1,ON_XDP_REDIRECT#2"),
        "{fn_list}"
    );

    let receiver = fabric
        .ns("b-web1")
        .spawn(move || -> std::io::Result<BTreeSet<u64>> {
            let socket = UdpSocket::bind(to)?;
            socket.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut seen = BTreeSet::new();
            let mut buf = [0u8; 64];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) if n >= 8 => {
                        seen.insert(u64::from_be_bytes(buf[..8].try_into().unwrap()));
                    }
                    Ok(_) => {}
                    Err(_) => return Ok(seen),
                }
            }
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let sender = fabric
        .ns("b-web2")
        .spawn(move || -> std::io::Result<u64> {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            let mut seq = 0u64;
            // Bursts of 20 a millisecond: well below what the path carries, so a loss is the
            // chain's, not a full queue's.
            while seq < STREAM_MIN || !stopping.load(Ordering::Acquire) {
                for _ in 0..20 {
                    socket.send_to(&seq.to_be_bytes(), to)?;
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(seq)
        })
        .unwrap();

    // Reorder, empty and refill the chain while the stream flows.
    let started = Instant::now();
    for change in 0..CHANGES {
        let args: &[&str] = match change % 10 {
            8 => &["chain", "set", "--stage", "redirect"],
            9 => &["chain", "set", "--stage", "redirect", "count", "count"],
            _ => &["chain", "move", "--stage", "redirect", "1", "2"],
        };
        fabric.mizar_ok(&host, args).unwrap();
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Release);
    let sent = sender.join().unwrap().unwrap();
    let seen = receiver.join().unwrap().unwrap();
    let lost = sent - seen.len() as u64;
    println!(
        "{CHANGES} chain changes in {took:?} while {sent} datagrams crossed the chain: {} \
         received, {lost} lost",
        seen.len()
    );
    assert_eq!(lost, 0, "no datagram may be lost while the chain changes");
    assert_eq!(seen.last().copied(), Some(sent - 1));

    // The last refill's two functions each saw every packet since: a packet that ran half of
    // one generation (one function twice, or one of them only) would make them differ.
    let chain = show(&fabric, &host);
    assert_eq!(chain.len(), 2, "{chain:?}");
    let packets: Vec<u64> = chain
        .iter()
        .map(|f| f["packets"].as_u64().unwrap())
        .collect();
    assert!(packets[0] > 0, "the functions saw the stream: {chain:?}");
    assert_eq!(packets[0], packets[1], "whole generations only: {chain:?}");
    assert_eq!(
        chain
            .iter()
            .map(|f| f["dropped"].as_u64().unwrap())
            .sum::<u64>(),
        0
    );

    // Status-level view: `chain show` without --json prints the table.
    let table = fabric.mizar_ok(&host, &["chain", "show"]).unwrap();
    assert!(
        table.contains("ON_XDP_REDIRECT") && table.contains("count"),
        "{table}"
    );
    // The topology document carries the chains: export writes them, apply makes them run.
    let exported = fabric.mizar_ok(&host, &["export"]).unwrap();
    assert!(
        exported.contains("chains:") && exported.contains("stage: ON_XDP_REDIRECT"),
        "{exported}"
    );
    let doc = std::env::temp_dir().join(format!("mizar-chains-{}.yaml", std::process::id()));
    let three = exported.replace(
        "functions:\n  - count\n  - count",
        "functions:\n  - count\n  - count\n  - count",
    );
    assert_ne!(
        three, exported,
        "the document's chain is edited: {exported}"
    );
    std::fs::write(&doc, &three).unwrap();
    let applied = fabric
        .mizar_ok(&host, &["apply", "-f", doc.to_str().unwrap()])
        .unwrap();
    assert!(
        applied.contains("function chains: 1 stage(s) published"),
        "{applied}"
    );
    assert_eq!(
        show(&fabric, &host).len(),
        3,
        "apply published the document's chain"
    );
    let status: serde_json::Value =
        serde_json::from_str(&fabric.mizar_ok(&host, &["status", "--json"]).unwrap()).unwrap();
    assert_eq!(
        status["functions"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    assert!(
        status["warnings"].as_array().is_some_and(Vec::is_empty),
        "the chain runs what the store holds: {status}"
    );
    std::fs::remove_file(&doc).unwrap();

    fabric
        .mizar_ok(&host, &["chain", "set", "--stage", "redirect"])
        .unwrap();
    assert!(show(&fabric, &host).is_empty());
}

/// The ddos function on a live host through the binary: blue's block on one source address
/// drops blue's packets from it and not red's from the same address; a threshold lets the first
/// packets of a burst through and drops the rest; `ddos show` counts both reasons.
#[test]
fn the_ddos_function_blocks_and_limits_one_vpcs_sources_on_a_live_host() {
    common::require_root();
    let _one = one_at_a_time();
    let fabric = Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    // h3 hosts b-db1 (blue) and r-web1 (red); b-web2 (blue, on h1) and r-web2 (red, on h2)
    // both have the address 10.0.1.11.
    let host = fabric.endpoint("b-db1").host;
    assert_eq!(fabric.endpoint("r-web1").host, host);
    let wait = Duration::from_secs(2);
    let b_db1 = fabric.endpoint("b-db1").ip;
    let r_web1 = fabric.endpoint("r-web1").ip;
    assert!(
        ping(fabric.ns("b-web2"), b_db1, 2, wait)
            .unwrap()
            .all_answered()
    );

    fabric
        .mizar_ok(&host, &["chain", "add", "--stage", "redirect", "ddos"])
        .unwrap();
    fabric
        .mizar_ok(
            &host,
            &["ddos", "block", "add", "10.0.1.11/32", "--vpc", "blue"],
        )
        .unwrap();
    let refused = fabric
        .mizar(
            &host,
            &["ddos", "block", "add", "10.0.1.11/32", "--vpc", "green"],
        )
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown VPC \"green\""));

    let blocked = ping(fabric.ns("b-web2"), b_db1, 3, Duration::from_millis(700)).unwrap();
    assert!(
        blocked.none_answered(),
        "blue's 10.0.1.11 is blocked: {blocked}"
    );
    let red = ping(fabric.ns("r-web2"), r_web1, 3, wait).unwrap();
    assert!(
        red.all_answered(),
        "red's 10.0.1.11 is another tenant: {red}"
    );

    fabric
        .mizar_ok(
            &host,
            &["ddos", "block", "del", "10.0.1.11/32", "--vpc", "blue"],
        )
        .unwrap();
    assert!(
        ping(fabric.ns("b-web2"), b_db1, 2, wait)
            .unwrap()
            .all_answered()
    );

    // Red: 3 packets a minute per source. A burst of 8 echo requests: 3 delivered.
    fabric
        .mizar_ok(
            &host,
            &[
                "ddos",
                "limit",
                "set",
                "--packets",
                "3",
                "--window",
                "60s",
                "--vpc",
                "red",
            ],
        )
        .unwrap();
    let burst = ping(fabric.ns("r-web2"), r_web1, 8, Duration::from_millis(700)).unwrap();
    assert_eq!(burst.answered, 3, "3 per window get through: {burst}");
    // Blue has no threshold.
    assert!(
        ping(fabric.ns("b-web2"), b_db1, 8, wait)
            .unwrap()
            .all_answered()
    );

    let shown: serde_json::Value =
        serde_json::from_str(&fabric.mizar_ok(&host, &["ddos", "show", "--json"]).unwrap())
            .unwrap();
    assert_eq!(shown["dropped"]["blocked"], 3, "{shown}");
    assert_eq!(shown["dropped"]["rate"], 5, "{shown}");
    assert_eq!(shown["placed"][0], "ON_XDP_REDIRECT#1", "{shown}");
    let function: serde_json::Value = serde_json::from_str(
        &fabric
            .mizar_ok(&host, &["fn", "show", "ddos", "--json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        function["placed"][0]["stage"], "ON_XDP_REDIRECT",
        "{function}"
    );
    assert_eq!(function["placed"][0]["drops"]["blocked"], 3, "{function}");
    assert_eq!(
        function["placed"][0]["dropped"], 8,
        "blocked and rate: {function}"
    );
    let unknown = fabric.mizar(&host, &["fn", "show", "nat"]).unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown function \"nat\""));

    // The configuration goes through the topology document and back.
    let exported = fabric.mizar_ok(&host, &["export"]).unwrap();
    assert!(
        exported.contains("ddos:") && exported.contains("window-ms: 60000"),
        "{exported}"
    );

    // At ON_EGRESS, on the sender's own host, before encapsulation: blue's 10.0.1.11 (b-web2,
    // on h1) may not send at all; nothing of it reaches the underlay.
    let sender_host = fabric.endpoint("b-web2").host;
    fabric
        .mizar_ok(&sender_host, &["chain", "add", "--stage", "egress", "ddos"])
        .unwrap();
    fabric
        .mizar_ok(
            &sender_host,
            &["ddos", "block", "add", "10.0.1.11/32", "--vpc", "blue"],
        )
        .unwrap();
    let muted = ping(fabric.ns("b-web2"), b_db1, 3, Duration::from_millis(700)).unwrap();
    assert!(muted.none_answered(), "{muted}");
    let shown: serde_json::Value = serde_json::from_str(
        &fabric
            .mizar_ok(&sender_host, &["ddos", "show", "--json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(shown["placed"][0], "ON_EGRESS#1", "{shown}");
    assert_eq!(shown["dropped"]["blocked"], 3, "{shown}");
    fabric
        .mizar_ok(&sender_host, &["chain", "set", "--stage", "egress"])
        .unwrap();
    assert!(
        ping(fabric.ns("b-web2"), b_db1, 2, wait)
            .unwrap()
            .all_answered()
    );
}

/// The ratelimit function through the binary: a UDP flood at an endpoint is cut to its ingress
/// rate (within 10% of burst + rate x duration), while its other traffic budget is its own.
#[test]
fn a_rate_limit_caps_a_udp_flood_within_ten_percent() {
    common::require_root();
    let _one = one_at_a_time();
    let fabric = Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    let host = fabric.endpoint("b-db1").host;
    let to = SocketAddrV4::new(fabric.endpoint("b-db1").ip, PORT);
    const RATE: u64 = 500;
    fabric
        .mizar_ok(&host, &["chain", "add", "--stage", "redirect", "ratelimit"])
        .unwrap();
    fabric
        .mizar_ok(
            &host,
            &[
                "ratelimit",
                "set",
                "blue",
                "--ep",
                "b-db1",
                "--direction",
                "ingress",
                "--packets",
                &RATE.to_string(),
            ],
        )
        .unwrap();
    let refused = fabric
        .mizar(
            &host,
            &["ratelimit", "set", "blue", "--direction", "ingress"],
        )
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs --packets or --bytes"));

    let receiver = fabric
        .ns("b-db1")
        .spawn(move || -> std::io::Result<u64> {
            let socket = UdpSocket::bind(to)?;
            socket.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut got = 0;
            let mut buf = [0u8; 64];
            while socket.recv(&mut buf).is_ok() {
                got += 1;
            }
            Ok(got)
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let sender = fabric
        .ns("b-web2")
        .spawn(move || -> std::io::Result<(u64, Duration)> {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            let started = Instant::now();
            let mut sent = 0u64;
            // About 5,000 datagrams a second for 3 seconds: ten times the rate.
            while started.elapsed() < Duration::from_secs(3) {
                for _ in 0..5 {
                    socket.send_to(&sent.to_be_bytes(), to)?;
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok((sent, started.elapsed()))
        })
        .unwrap();
    let (sent, took) = sender.join().unwrap().unwrap();
    let got = receiver.join().unwrap().unwrap();
    // The bucket starts full (a burst of one second's worth), then refills at the rate.
    let expected = RATE as f64 * (1.0 + took.as_secs_f64());
    println!("{sent} datagrams in {took:?} at {RATE}/s: {got} delivered, {expected:.0} expected");
    assert!(
        sent as f64 > 3.0 * expected,
        "the flood must exceed the rate: {sent}"
    );
    assert!(
        (got as f64 - expected).abs() / expected < 0.10,
        "{got} delivered, {expected:.0} expected (within 10%)"
    );
    let shown: serde_json::Value = serde_json::from_str(
        &fabric
            .mizar_ok(&host, &["ratelimit", "show", "--json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        shown["dropped"]["endpoint_packets"].as_u64(),
        Some(sent - got),
        "every datagram not delivered was dropped by the limit: {shown}"
    );
    let exported = fabric.mizar_ok(&host, &["export"]).unwrap();
    assert!(
        exported.contains("rate-limits:") && exported.contains("direction: ingress"),
        "{exported}"
    );
}

/// Sends `count` TCP SYNs from the namespace's own address to `to` through a raw socket (new
/// source ports, no handshake ever finished): a SYN flood.
fn syn_flood(src: std::net::Ipv4Addr, to: SocketAddrV4, count: u16) -> std::io::Result<u16> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(to.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let mut sent = 0;
    for i in 0..count {
        let mut tcp = etherparse::TcpHeader::new(20000 + i, to.port(), u32::from(i), 1024);
        tcp.syn = true;
        tcp.checksum = tcp
            .calc_checksum_ipv4_raw(src.octets(), to.ip().octets(), &[])
            .expect("a bare header");
        let bytes = tcp.to_bytes();
        // SAFETY: the buffer and address outlive the call.
        let n = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        sent += 1;
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(sent)
}

#[test]
fn a_syn_flood_from_one_source_is_cut_while_an_established_client_keeps_connecting() {
    common::require_root();
    let _one = one_at_a_time();
    let fabric = Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    // b-db1 on h3 is attacked by b-web2 (h1); b-web1 (h2) is its regular client.
    let host = fabric.endpoint("b-db1").host;
    let db = fabric.endpoint("b-db1").ip;
    let flooder = fabric.endpoint("b-web2").ip;
    let service = SocketAddrV4::new(db, 8080);
    fabric
        .mizar_ok(&host, &["chain", "add", "--stage", "redirect", "ddos"])
        .unwrap();
    fabric
        .mizar_ok(
            &host,
            &[
                "ddos", "syn", "set", "--syns", "20", "--window", "1s", "--vpc", "blue",
            ],
        )
        .unwrap();
    let refused = fabric
        .mizar(
            &host,
            &["ddos", "syn", "set", "--syns", "0", "--vpc", "blue"],
        )
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at least 1 SYN"));

    let accepted = fabric
        .ns("b-db1")
        .spawn(move || -> std::io::Result<usize> {
            let listener = std::net::TcpListener::bind(SocketAddrV4::new(
                std::net::Ipv4Addr::UNSPECIFIED,
                8080,
            ))?;
            listener.set_nonblocking(true)?;
            let (mut n, start) = (0, Instant::now());
            while start.elapsed() < Duration::from_secs(8) {
                if listener.accept().is_ok() {
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(n)
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let connect = move || {
        std::net::TcpStream::connect_timeout(&service.into(), Duration::from_secs(2)).is_ok()
    };
    // The client connects once before the flood: its handshake makes it established.
    assert!(fabric.ns("b-web1").spawn(connect).unwrap().join().unwrap());
    let flood = fabric
        .ns("b-web2")
        .spawn(move || syn_flood(flooder, SocketAddrV4::new(db, 9999), 3000))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let during: Vec<bool> = (0..5)
        .map(|_| fabric.ns("b-web1").spawn(connect).unwrap().join().unwrap())
        .collect();
    let sent = flood.join().unwrap().unwrap();
    assert_eq!(accepted.join().unwrap().unwrap(), 6);
    let shown: serde_json::Value =
        serde_json::from_str(&fabric.mizar_ok(&host, &["ddos", "show", "--json"]).unwrap())
            .unwrap();
    let cut = shown["dropped"]["syn_flood"].as_u64().unwrap();
    println!("{sent} SYNs flooded at 20/s allowed: {cut} dropped; the client connected {during:?}");
    assert!(
        during.iter().all(|c| *c),
        "the established client keeps connecting: {during:?}"
    );
    assert!(
        cut >= u64::from(sent) * 9 / 10,
        "most of the flood is cut: {cut} of {sent}"
    );
    assert_eq!(shown["syn-limits"][0]["syns"], 20, "{shown}");
}

#[test]
fn an_endpoints_chain_acts_on_its_packets_only_and_chain_show_gives_the_effective_chain() {
    common::require_root();
    let _one = one_at_a_time();
    let fabric = Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    // h3 hosts b-db1 (blue) and r-web1 (red); the pingers b-web2 and r-web2 share 10.0.1.11.
    let host = fabric.endpoint("b-db1").host;
    let wait = Duration::from_secs(2);
    let b_db1 = fabric.endpoint("b-db1").ip;
    let r_web1 = fabric.endpoint("r-web1").ip;
    let ok = |args: &[&str]| fabric.mizar_ok(&host, args).unwrap();
    ok(&["chain", "add", "--stage", "redirect", "count"]);
    ok(&[
        "chain", "add", "--stage", "redirect", "--vpc", "blue", "count",
    ]);
    ok(&[
        "chain", "add", "--stage", "redirect", "--vpc", "blue", "--ep", "b-db1", "ddos",
    ]);
    ok(&["ddos", "block", "add", "10.0.1.11/32", "--vpc", "blue"]);

    let blocked = ping(fabric.ns("b-web2"), b_db1, 3, Duration::from_millis(700)).unwrap();
    assert!(
        blocked.none_answered(),
        "b-db1's chain drops blue's 10.0.1.11: {blocked}"
    );
    let red = ping(fabric.ns("r-web2"), r_web1, 3, wait).unwrap();
    assert!(
        red.all_answered(),
        "red's endpoint has no such chain: {red}"
    );

    let shown: Vec<serde_json::Value> = serde_json::from_str(&ok(&[
        "chain", "show", "--stage", "redirect", "--vpc", "blue", "--ep", "b-db1", "--json",
    ]))
    .unwrap();
    let order: Vec<(String, u64, String)> = shown
        .iter()
        .map(|f| {
            (
                f["scope"].as_str().unwrap().to_owned(),
                f["position"].as_u64().unwrap(),
                f["function"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("host".to_owned(), 1, "count".to_owned()),
            ("vpc:blue".to_owned(), 2, "count".to_owned()),
            ("ep:blue/b-db1".to_owned(), 3, "ddos".to_owned()),
        ],
        "host, then VPC, then endpoint"
    );
    assert!(shown[2]["dropped"].as_u64().unwrap() >= 3, "{shown:?}");

    // The budget: 15 more on the host would make 18 for b-db1's packets; a stage before the
    // VPC is known takes no VPC chain.
    let sixteen: Vec<&str> = ["chain", "set", "--stage", "redirect"]
        .into_iter()
        .chain(["count"; 16])
        .collect();
    for (args, wanted) in [
        (sixteen, "more than the 16 a packet's chain holds"),
        (
            vec!["chain", "add", "--stage", "pass", "--vpc", "blue", "count"],
            "cannot sit at ON_XDP_PASS",
        ),
        (
            vec![
                "chain", "add", "--stage", "redirect", "--vpc", "blue", "--ep", "nope", "count",
            ],
            "unknown endpoint \"nope\"",
        ),
    ] {
        let out = fabric.mizar(&host, &args).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(wanted),
            "{args:?}: {stderr}"
        );
    }
    let exported = ok(&["export"]);
    assert!(
        exported.contains("scoped-chains:") && exported.contains("endpoint: b-db1"),
        "{exported}"
    );

    // Disabled, the endpoint's function keeps its place and counters but acts no more.
    ok(&[
        "chain", "disable", "--stage", "redirect", "--vpc", "blue", "--ep", "b-db1", "1",
    ]);
    assert!(
        ping(fabric.ns("b-web2"), b_db1, 2, wait)
            .unwrap()
            .all_answered(),
        "the disabled ddos drops nothing"
    );
    let shown = ok(&["chain", "show", "--vpc", "blue", "--ep", "b-db1"]);
    assert!(shown.contains("ddos (disabled)"), "{shown}");
    assert!(
        ok(&["export"]).contains("disabled:"),
        "the document says so"
    );
    ok(&[
        "chain", "enable", "--stage", "redirect", "--vpc", "blue", "--ep", "b-db1", "1",
    ]);
    let again = ping(fabric.ns("b-web2"), b_db1, 2, Duration::from_millis(700)).unwrap();
    assert!(again.none_answered(), "enabled again: {again}");
    ok(&[
        "chain", "del", "--stage", "redirect", "--vpc", "blue", "--ep", "b-db1", "1",
    ]);
    assert!(
        ping(fabric.ns("b-web2"), b_db1, 2, wait)
            .unwrap()
            .all_answered(),
        "the endpoint's chain is gone"
    );
}

/// Datagrams from `from`'s namespace to `to`: how many of `count` arrive.
fn udp_through(fabric: &Demo, from: &str, to_ns: &str, to: SocketAddrV4, count: u64) -> u64 {
    let receiver = fabric
        .ns(to_ns)
        .spawn(move || -> std::io::Result<u64> {
            let socket = UdpSocket::bind(to)?;
            socket.set_read_timeout(Some(Duration::from_millis(700)))?;
            let (mut got, mut buf) = (0, [0u8; 16]);
            while socket.recv(&mut buf).is_ok() {
                got += 1;
            }
            Ok(got)
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    fabric
        .ns(from)
        .spawn(move || -> std::io::Result<()> {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            for i in 0..count {
                socket.send_to(&i.to_be_bytes(), to)?;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    receiver.join().unwrap().unwrap()
}

#[test]
fn a_users_function_is_verified_loaded_placed_reloaded_by_up_and_unloaded() {
    common::require_root();
    let _one = one_at_a_time();
    let fabric = Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    let host = fabric.endpoint("b-db1").host;
    let db = fabric.endpoint("b-db1").ip;
    let ok = |args: &[&str]| fabric.mizar_ok(&host, args).unwrap();
    let dir = std::env::temp_dir().join(format!("mizar-fn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("port_drop.o");
    let broken = dir.join("out_of_bounds.o");
    std::fs::write(&good, mizar_ebpf::EXAMPLE_FUNCTION_OBJECT).unwrap();
    std::fs::write(&broken, mizar_ebpf::EXAMPLE_BROKEN_FUNCTION_OBJECT).unwrap();
    let programs = fabric.spec().pin_dir(&host).join("programs");

    // Refused objects change nothing: one the verifier rejects, one that is no object, a
    // built-in name.
    let before = ok(&["fn", "list", "--json"]);
    for (args, wanted) in [
        (
            vec!["fn", "load", broken.to_str().unwrap(), "--name", "broken"],
            "verifier rejects out_of_bounds",
        ),
        (
            vec!["fn", "load", "/etc/hostname", "--name", "text"],
            "not an ELF object",
        ),
        (
            vec!["fn", "load", good.to_str().unwrap(), "--name", "acl"],
            "is a built-in function",
        ),
    ] {
        let out = fabric.mizar(&host, &args).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(wanted),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(ok(&["fn", "list", "--json"]), before);
    assert!(!programs.join("fn-broken").exists());

    let loaded = ok(&[
        "fn",
        "load",
        good.to_str().unwrap(),
        "--name",
        "port-drop",
        "--reasons",
        "blocked_port",
    ]);
    assert!(loaded.contains("verified by the kernel"), "{loaded}");
    assert!(
        programs.join("fn-port-drop").exists(),
        "pinned where chains find it"
    );
    // Placed in b-db1's own chain (a scoped chain: the shared program slots).
    ok(&[
        "chain",
        "add",
        "--stage",
        "redirect",
        "--vpc",
        "blue",
        "--ep",
        "b-db1",
        "port-drop",
    ]);
    let mut ports: aya::maps::HashMap<_, u16, u8> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(
            aya::maps::MapData::from_pin(fabric.spec().pin_dir(&host).join("maps/port_drop_ports"))
                .unwrap(),
        ))
        .unwrap();
    ports
        .insert(u16::from_ne_bytes(7100u16.to_be_bytes()), 1, 0)
        .unwrap();
    let blocked = udp_through(&fabric, "b-web2", "b-db1", SocketAddrV4::new(db, 7100), 20);
    let open = udp_through(&fabric, "b-web2", "b-db1", SocketAddrV4::new(db, 7101), 20);
    println!("port 7100: {blocked} of 20 delivered; port 7101: {open} of 20");
    assert_eq!((blocked, open), (0, 20));
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["fn", "show", "port-drop", "--json"])).unwrap();
    assert_eq!(shown["kind"], "loaded", "{shown}");
    assert_eq!(shown["placed"][0]["drops"]["blocked_port"], 20, "{shown}");

    // `up` loads it again from the store; the chain keeps dropping.
    ok(&["up"]);
    assert_eq!(
        udp_through(&fabric, "b-web2", "b-db1", SocketAddrV4::new(db, 7100), 10),
        0,
        "after up"
    );

    let refused = fabric.mizar(&host, &["fn", "unload", "port-drop"]).unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("endpoint b-db1 of VPC blue at ON_XDP_REDIRECT"),
        "{stderr}"
    );
    ok(&[
        "chain", "del", "--stage", "redirect", "--vpc", "blue", "--ep", "b-db1", "1",
    ]);
    ok(&["fn", "unload", "port-drop"]);
    assert!(!programs.join("fn-port-drop").exists());
    assert_eq!(
        udp_through(&fabric, "b-web2", "b-db1", SocketAddrV4::new(db, 7100), 10),
        10
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
