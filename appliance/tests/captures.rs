//! Capture files as Wireshark's tools read them: records of one Geneve packet seen at two tap
//! points, written as pcapng, read back by tshark (installed by scripts/setup-debian.sh), from a
//! file and from a pipe: one interface per tap point, the XDP verdict, the packet id, the
//! comment, and the outer and inner headers dissected. Fails, never skips, without tshark.

use std::{
    io::Write,
    net::Ipv4Addr,
    process::{Command, Stdio},
};

use mizar::packet::{InnerFrame, Tunnel};
use mizar_captures::{CaptureWriter, Format, TapRecord};

const FIELDS: &[&str] = &[
    "frame.interface_name",
    "frame.verdict.ebpf_xdp",
    "frame.packet_id",
    "geneve.vni",
    "ip.src",
    "udp.dstport",
    "frame.comment",
];

fn capture() -> Vec<u8> {
    let inner = InnerFrame::udp(
        Ipv4Addr::new(10, 0, 1, 11),
        Ipv4Addr::new(10, 0, 2, 10),
        40000,
        7100,
        b"tapped",
    )
    .build();
    let frame = Tunnel::new(
        Ipv4Addr::new(192, 168, 0, 2),
        Ipv4Addr::new(192, 168, 0, 1),
        100,
    )
    .build(&inner);
    let points = ["ul0:transit:entry", "ul0:ON_XDP_REDIRECT:acl:after"].map(str::to_owned);
    let mut w = CaptureWriter::new(Vec::new(), Format::PcapNg, &points, 1500).unwrap();
    for (point, verdict, comment) in [
        (0, None, "transit entry"),
        (
            1,
            Some(1),
            "stage ON_XDP_REDIRECT reason denied_by_rule vni 100 vpc blue",
        ),
    ] {
        w.write(&TapRecord {
            point,
            timestamp_ns: 1_765_000_000_000_000_000 + u64::from(point),
            packet_id: 42,
            verdict,
            comment: Some(comment.to_owned()),
            data: frame.clone(),
            original_len: frame.len() as u32,
        })
        .unwrap();
    }
    w.into_inner()
}

/// tshark's fields for each frame of `input` (a path, or "-" with `stdin`).
fn tshark(input: &str, stdin: Option<&[u8]>) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r", input, "-T", "fields", "-E", "separator=|"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark (scripts/setup-debian.sh installs it)");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

#[test]
fn tshark_reads_tap_points_verdicts_packet_ids_and_both_headers() {
    let bytes = capture();
    let path = std::env::temp_dir().join(format!("mizar-capture-{}.pcapng", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let from_file = tshark(path.to_str().unwrap(), None);
    std::fs::remove_file(&path).unwrap();
    let expected = |name: &str, verdict: &str, comment: &str| -> Vec<String> {
        [
            name,
            verdict,
            "42",
            "0x000064", // the VNI, 100: tshark prints it in hex
            "192.168.0.2,10.0.1.11",
            "6081,7100",
            comment,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    assert_eq!(
        from_file,
        [
            expected("ul0:transit:entry", "", "transit entry"),
            expected(
                "ul0:ON_XDP_REDIRECT:acl:after",
                "1",
                "stage ON_XDP_REDIRECT reason denied_by_rule vni 100 vpc blue"
            ),
        ]
    );
    // `mizar capture -w - | tshark -r -` reads the same from a pipe.
    assert_eq!(tshark("-", Some(&bytes)), from_file);
}

/// `mizar capture` on a live host of the demo fabric: taps before a function and at the
/// stage's decision, a VPC filter, tshark reading the file; the store's chain runs again after.
#[test]
fn a_capture_through_the_binary_taps_two_points_of_one_vpc_and_leaves_the_chain_as_it_was() {
    use mizar::demo::{Demo, DemoSpec};
    use std::{path::Path, time::Duration};
    const MIZAR: &str = env!("CARGO_BIN_EXE_mizar");
    let root = nix_root();
    assert!(root, "needs root (CI runs the tests as root)");
    let fabric = Demo::build(
        DemoSpec::new(&format!("cap{}", std::process::id() % 10_000)),
        Path::new(MIZAR),
    )
    .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    let host = fabric.endpoint("b-db1").host;
    fabric
        .mizar_ok(&host, &["chain", "add", "--stage", "redirect", "count"])
        .unwrap();
    let dir = std::env::temp_dir().join(format!("mizar-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("blue.pcapng");

    // A point around a function that is not there: refused, no file, nothing placed.
    let bad = dir.join("bad.pcapng");
    refused(
        &fabric,
        &host,
        &["--at", "redirect:2:after", "-w", bad.to_str().unwrap()],
        &["no function 2"],
    );
    refused(
        &fabric,
        &host,
        &[
            "--at",
            "redirect",
            "--snaplen",
            "5",
            "-w",
            bad.to_str().unwrap(),
        ],
        &["5 is not in 14..=2048"],
    );
    assert!(!bad.exists());

    let capture = start_capture(
        &fabric,
        &host,
        &[
            "--at",
            "redirect:1:before,redirect",
            "--vpc",
            "blue",
            "--count",
            "6",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    // Red shares the host and the addresses' shape: filtered out by --vpc.
    red_answers(&fabric);
    blue_answers(&fabric, 3);
    let out = capture.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{summary}");
    assert!(summary.contains("6 packets captured"), "{summary}");

    let fields = |f: &[&str]| -> Vec<String> {
        let mut cmd = Command::new("tshark");
        cmd.args([
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-E",
            "separator=|",
        ]);
        for x in f {
            cmd.args(["-e", x]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let rows = fields(&[
        "frame.interface_name",
        "frame.verdict.ebpf_xdp",
        "geneve.vni",
        "icmp.type",
        "frame.packet_id",
    ]);
    println!("{}", rows.join("\n"));
    assert_eq!(rows.len(), 6, "{rows:?}");
    for pair in rows.chunks(2) {
        let a: Vec<&str> = pair[0].split('|').collect();
        let b: Vec<&str> = pair[1].split('|').collect();
        assert!(a[0].ends_with(":ON_XDP_REDIRECT:count:before"), "{a:?}");
        assert!(b[0].ends_with(":ON_XDP_REDIRECT"), "{b:?}");
        assert_eq!(
            (a[1], a[2], a[3]),
            ("4", "0x000064", "8"),
            "redirect, blue, echo request"
        );
        assert_eq!(a[4], b[4], "one packet, one id at both points");
    }
    // The store's chain runs again: count only, and status warns of nothing.
    let shown: serde_json::Value = serde_json::from_str(
        &fabric
            .mizar_ok(&host, &["chain", "show", "--stage", "redirect", "--json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{shown}");
    let status: serde_json::Value =
        serde_json::from_str(&fabric.mizar_ok(&host, &["status", "--json"]).unwrap()).unwrap();
    assert!(
        status["warnings"].as_array().is_some_and(Vec::is_empty),
        "{status}"
    );

    // Ctrl-C ends a capture cleanly: its summary, a whole file, nothing left tapping.
    let interrupted = dir.join("interrupted.pcapng");
    let ctrl_c = start_capture(
        &fabric,
        &host,
        &[
            "--at",
            "transit:entry,transit:verdict",
            "-w",
            interrupted.to_str().unwrap(),
        ],
    );
    blue_answers(&fabric, 2);
    // SAFETY: kill sends a signal to the capture process this test spawned.
    assert_eq!(unsafe { libc::kill(ctrl_c.id() as i32, libc::SIGINT) }, 0);
    let out = ctrl_c.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && summary.contains("packets captured"),
        "{summary}"
    );
    let read = Command::new("tshark")
        .args([
            "-r",
            interrupted.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
        ])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success() && names.lines().any(|l| l.ends_with(":transit:entry")),
        "tshark reads the interrupted capture: {summary} {names} {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let status = fabric.mizar_ok(&host, &["status", "--json"]).unwrap();
    assert!(!status.contains("a capture taps"), "{status}");

    // A capture that dies leaves its taps: status names them, the next capture removes them.
    let mut dying = fabric
        .spec()
        .mizar_command(Path::new(MIZAR), &host)
        .args([
            "capture",
            "--at",
            "redirect,transit:entry",
            "--duration",
            "60s",
            "-w",
        ])
        .arg(dir.join("dying.pcapng"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    dying.kill().unwrap();
    dying.wait().unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&fabric.mizar_ok(&host, &["status", "--json"]).unwrap()).unwrap();
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains("tap(s) of a capture run at ON_XDP_REDIRECT")
            && warnings.contains("a capture taps transit:entry"),
        "{warnings}"
    );
    fabric
        .mizar_ok(
            &host,
            &[
                "capture",
                "--at",
                "tx",
                "--duration",
                "1s",
                "-w",
                dir.join("next.pcapng").to_str().unwrap(),
            ],
        )
        .unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&fabric.mizar_ok(&host, &["status", "--json"]).unwrap()).unwrap();
    assert!(
        status["warnings"].as_array().is_some_and(Vec::is_empty),
        "the next capture removed the dead one's taps: {status}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A packet an ACL drops, followed through the pipeline by its id: at transit's entry, before
/// the ACL, and at transit's verdict (a drop naming the ACL and its reason), never after the
/// ACL; the drops the verdict tap saw are the ACL's drop counter; the filter (an expression)
/// leaves red's traffic and blue's other traffic out.
#[test]
fn a_packet_an_acl_drops_is_seen_before_it_and_at_the_drop_with_its_reason_and_not_after() {
    use mizar::demo::{Demo, DemoSpec, ping};
    use std::{collections::BTreeMap, path::Path, time::Duration};
    const MIZAR: &str = env!("CARGO_BIN_EXE_mizar");
    assert!(nix_root(), "needs root (CI runs the tests as root)");
    let fabric = Demo::build(
        DemoSpec::new(&format!("acap{}", std::process::id() % 10_000)),
        Path::new(MIZAR),
    )
    .unwrap_or_else(|err| panic!("build the fabric: {err}"));
    let host = fabric.endpoint("b-db1").host;
    let ok = |args: &[&str]| fabric.mizar_ok(&host, args).unwrap();
    ok(&["chain", "add", "--stage", "redirect", "acl"]);
    ok(&[
        "acl",
        "add",
        "blue",
        "deny",
        "--direction",
        "ingress",
        "--proto",
        "icmp",
    ]);
    let dir = std::env::temp_dir().join(format!("mizar-acap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("acl.pcapng");

    // A filter that does not parse: refused before anything, saying where.
    refused(
        &fabric,
        &host,
        &[
            "--at",
            "transit:entry",
            "--filter",
            "vpc blue and icmpp",
            "-w",
            file.to_str().unwrap(),
        ],
        &["column 14", "\"icmpp\""],
    );
    assert!(!file.exists());
    // A file that cannot be written: refused before anything is attached.
    refused(
        &fabric,
        &host,
        &["--at", "transit:entry", "-w", "/nonexistent-dir/acl.pcapng"],
        &["cannot write /nonexistent-dir/acl.pcapng"],
    );
    let status = fabric.mizar_ok(&host, &["status", "--json"]).unwrap();
    assert!(
        !status.contains("a capture taps"),
        "nothing placed: {status}"
    );

    const PINGS: usize = 3;
    let count = (3 * PINGS).to_string();
    let capture = start_capture(
        &fabric,
        &host,
        &[
            "--at",
            "transit:entry,redirect:1:before,redirect:1:after,transit:verdict",
            "--filter",
            "vpc blue and icmp and not outer tcp",
            "--count",
            &count,
            "-w",
            file.to_str().unwrap(),
        ],
    );
    red_answers(&fabric);
    let blue = ping(
        fabric.ns("b-web2"),
        fabric.endpoint("b-db1").ip,
        PINGS as u32,
        Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(blue.answered, 0, "the ACL denies ICMP to blue: {blue}");
    let out = capture.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{summary}");
    assert!(
        summary.contains(&format!("{} packets captured", 3 * PINGS)),
        "{summary}"
    );

    let tshark_out = Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args(["-e", "frame.interface_name", "-e", "frame.verdict.ebpf_xdp"])
        .args([
            "-e",
            "frame.packet_id",
            "-e",
            "frame.comment",
            "-e",
            "icmp.type",
        ])
        .output()
        .unwrap();
    assert!(tshark_out.status.success());
    let text = String::from_utf8(tshark_out.stdout).unwrap();
    println!("{text}");
    let mut packets: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<String> = line.split('|').map(str::to_owned).collect();
        packets.entry(f[2].clone()).or_default().push(f);
    }
    assert_eq!(packets.len(), PINGS, "one id per packet: {text}");
    for (id, seen) in &packets {
        let points: Vec<&str> = seen
            .iter()
            .map(|f| f[0].split_once(':').map_or("", |(_ifname, point)| point))
            .collect();
        assert_eq!(
            points,
            [
                "transit:entry",
                "ON_XDP_REDIRECT:acl:before",
                "transit:verdict"
            ],
            "packet {id}: before the ACL and at the drop, never after it: {seen:?}"
        );
        assert_eq!(seen[0][1], "", "no verdict yet at the entry");
        assert_eq!(seen[1][1], "4", "before the ACL, the pipeline delivers");
        assert_eq!(seen[2][1], "1", "the verdict: dropped");
        assert!(
            seen[2][3].contains("dropped by acl: denied_by_rule")
                && seen[2][3].contains("vpc blue"),
            "{seen:?}"
        );
        assert!(seen.iter().all(|f| f[4] == "8"), "echo requests: {seen:?}");
    }
    // The drops the verdict tap saw are the ACL's count of them.
    let shown: serde_json::Value = serde_json::from_str(&ok(&["acl", "show", "--json"])).unwrap();
    assert_eq!(
        shown["dropped"]["denied_by_rule"].as_u64(),
        Some(PINGS as u64),
        "{shown}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `mizar capture ARGS --duration 20s` on `host`, its summary on a pipe; returns once the
/// capture has had time to place its taps.
fn start_capture(fabric: &mizar::demo::Demo, host: &str, args: &[&str]) -> std::process::Child {
    let child = fabric
        .spec()
        .mizar_command(std::path::Path::new(env!("CARGO_BIN_EXE_mizar")), host)
        .arg("capture")
        .args(args)
        .args(["--duration", "20s"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child
}

/// Blue's pings from b-web2 to b-db1 are all answered: capturing never holds packets up.
fn blue_answers(fabric: &mizar::demo::Demo, count: u32) {
    let blue = mizar::demo::ping(
        fabric.ns("b-web2"),
        fabric.endpoint("b-db1").ip,
        count,
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    assert!(
        blue.all_answered(),
        "capturing never holds packets up: {blue}"
    );
}

/// Red's pings (no ACL, no filter of red in these captures) are all answered.
fn red_answers(fabric: &mizar::demo::Demo) {
    let red = mizar::demo::ping(
        fabric.ns("r-web2"),
        fabric.endpoint("r-web1").ip,
        2,
        std::time::Duration::from_secs(2),
    )
    .unwrap();
    assert!(red.all_answered(), "{red}");
}

/// `mizar capture ARGS` on `host` is refused (a non-zero exit) with an error holding each of
/// `wanted`.
fn refused(fabric: &mizar::demo::Demo, host: &str, args: &[&str], wanted: &[&str]) {
    let out = fabric.mizar(host, &[&["capture"], args].concat()).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && wanted.iter().all(|w| stderr.contains(w)),
        "{args:?}: {stderr}"
    );
}

fn nix_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
