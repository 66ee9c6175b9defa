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
