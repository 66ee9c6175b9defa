//! The `mizar` binary's store commands, completions and man pages (no kernel needed: the data
//! plane is down, so changes stop at the store).

use std::process::{Command, Output};

struct Mizar {
    state: tempfile::TempDir,
}

impl Mizar {
    fn new() -> Self {
        Self {
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mizar"))
            .args(args)
            .env("MIZAR_STATE_DIR", self.state.path())
            .env("MIZAR_PIN_DIR", self.state.path().join("no-bpffs-needed"))
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mizar {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], message: &str) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mizar {args:?} should fail");
        assert!(stderr.contains(message), "mizar {args:?}: {stderr}");
    }
}

fn fabric() -> Mizar {
    let m = Mizar::new();
    m.ok(&[
        "init",
        "--name",
        "gw1",
        "--ip",
        "192.168.50.1",
        "--mac",
        "02:00:c0:a8:32:01",
        "--interface",
        "ul0",
    ]);
    m.ok(&[
        "host",
        "add",
        "h2",
        "--ip",
        "192.168.50.2",
        "--mac",
        "02:00:c0:a8:32:02",
    ]);
    for (vpc, vni) in [("blue", "100"), ("red", "200")] {
        m.ok(&["vpc", "add", vpc, "--vni", vni, "--cidr", "10.0.0.0/16"]);
        m.ok(&["net", "add", vpc, "web", "--cidr", "10.0.1.0/24"]);
        m.ok(&["bouncer", "add", vpc, "web", "gw1"]);
        m.ok(&["divider", "add", vpc, "gw1"]);
        // The same address in both VPCs: that is the point.
        m.ok(&[
            "ep",
            "add",
            vpc,
            "web1",
            "--ip",
            "10.0.1.10",
            "--mac",
            "02:00:0a:00:01:0a",
            "--host",
            "h2",
        ]);
    }
    m
}

#[test]
fn lists_come_as_tables_and_as_json() {
    let m = fabric();
    let table = m.ok(&["ep", "list"]);
    assert!(table.starts_with("VPC"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.contains("10.0.1.10")).count(),
        2,
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&m.ok(&["ep", "list", "--json"])).unwrap();
    let vpcs: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["vpc"].as_str().unwrap())
        .collect();
    assert_eq!(vpcs, ["blue", "red"]);
    let vpc: serde_json::Value =
        serde_json::from_str(&m.ok(&["vpc", "show", "red", "--json"])).unwrap();
    assert_eq!(vpc["vni"], 200);
    let status = m.ok(&["status"]);
    assert!(
        status.contains("2 hosts, 2 VPCs, 2 networks, 2 endpoints"),
        "{status}"
    );
    assert!(status.contains("data plane: down"), "{status}");
}

#[test]
fn export_round_trips_through_apply_and_apply_is_idempotent() {
    let m = fabric();
    let exported = m.ok(&["export"]);
    let file = m.state.path().join("topology.yaml");
    std::fs::write(&file, &exported).unwrap();
    let again = m.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(again.contains("0 created, 0 changed, 0 removed"), "{again}");

    // A fresh store takes the document whole; with --prune, what it lacks goes.
    let other = Mizar::new();
    other.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(other.ok(&["export"]), exported);
    let json = m.ok(&["export", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut doc = doc;
    doc["vpcs"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v["name"] == "blue");
    let pruned = m.state.path().join("blue-only.json");
    std::fs::write(&pruned, doc.to_string()).unwrap();
    let report = other.ok(&["apply", "-f", pruned.to_str().unwrap(), "--prune"]);
    assert!(report.contains("removed"), "{report}");
    assert!(!other.ok(&["vpc", "list"]).contains("red"));
}

#[test]
fn bad_input_is_refused_with_the_fix_and_changes_nothing() {
    let m = fabric();
    let before = m.ok(&["export"]);
    m.fails(
        &[
            "vpc",
            "add",
            "green",
            "--vni",
            "100",
            "--cidr",
            "10.1.0.0/16",
        ],
        "give each VPC its own VNI",
    );
    m.fails(
        &[
            "vpc",
            "add",
            "green",
            "--vni",
            "16777216",
            "--cidr",
            "10.1.0.0/16",
        ],
        "pick one from 1 to 16777215",
    );
    m.fails(
        &["vpc", "add", "green", "--vni", "7", "--cidr", "10.1.0.0/33"],
        "/33 is not an IPv4 prefix length: use 0 to 32",
    );
    m.fails(
        &["net", "add", "blue", "db", "--cidr", "10.0.1.1/24"],
        "write the network address: 10.0.1.0/24",
    );
    m.fails(
        &["net", "add", "nope", "db", "--cidr", "10.0.2.0/24"],
        "nope",
    );
    m.fails(
        &[
            "ep",
            "add",
            "blue",
            "web2",
            "--ip",
            "10.0.1.10",
            "--mac",
            "02:00:00:00:00:02",
            "--host",
            "h2",
        ],
        "10.0.1.10",
    );
    m.fails(
        &[
            "ep",
            "add",
            "blue",
            "x",
            "--ip",
            "10.9.0.4",
            "--mac",
            "02:00:00:00:00:03",
            "--host",
            "h2",
        ],
        "add one with mizar net add",
    );
    m.fails(
        &[
            "ep",
            "add",
            "blue",
            "x",
            "--ip",
            "10.0.1.20",
            "--mac",
            "01:00:5e:00:00:01",
            "--host",
            "h2",
        ],
        "is a multicast address; hosts and endpoints need a unicast MAC",
    );
    m.fails(
        &["host", "del", "h2"],
        "still used by endpoints blue/web1, red/web1; delete those first, or delete with --cascade",
    );
    let bad = m.state.path().join("bad.yaml");
    std::fs::write(&bad, "vpcs: [ {name: x, vni: 5, cidr: nonsense} ]").unwrap();
    m.fails(&["apply", "-f", bad.to_str().unwrap()], "bad.yaml");
    assert_eq!(m.ok(&["export"]), before, "nothing changed");
}

#[test]
fn commands_without_a_store_say_how_to_make_one() {
    Mizar::new().fails(&["vpc", "list"], "run `mizar init` first");
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definitions() {
    let m = Mizar::new();
    let bash = m.ok(&["completions", "bash"]);
    assert!(
        bash.contains("mizar") && bash.contains("bouncer"),
        "bash completions name the nouns"
    );
    let out = m.state.path().join("man");
    m.ok(&["man", "--out", out.to_str().unwrap()]);
    let page = std::fs::read_to_string(out.join("mizar.1")).unwrap();
    assert!(page.contains("mizar") && page.contains("apply"), "{page}");
    assert!(out.join("mizar-ep.1").exists(), "one page per subcommand");
}

#[test]
fn concurrent_commands_lose_no_update() {
    let m = fabric();
    let state = m.state.path().to_owned();
    // Two writers at once, twenty endpoints each: every one of them must land.
    let writers: Vec<_> = (0..2u8)
        .map(|w| {
            let state = state.clone();
            std::thread::spawn(move || {
                for i in 0..20u8 {
                    let ip = format!("10.0.1.{}", 100 + w * 20 + i);
                    let mac = format!("02:00:00:00:{w:02x}:{i:02x}");
                    let name = format!("w{w}-{i}");
                    let out = Command::new(env!("CARGO_BIN_EXE_mizar"))
                        .args([
                            "ep", "add", "blue", &name, "--ip", &ip, "--mac", &mac, "--host", "h2",
                        ])
                        .env("MIZAR_STATE_DIR", &state)
                        .env("MIZAR_PIN_DIR", state.join("no-bpffs-needed"))
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let list: serde_json::Value =
        serde_json::from_str(&m.ok(&["ep", "list", "--vpc", "blue", "--json"])).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1 + 40,
        "every endpoint of both writers landed"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // `mizar ... | head -1`: the write after the reader left must not panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mizar"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn init_again_changes_nothing_and_another_name_is_refused() {
    let m = fabric();
    let init = |name: &str| {
        vec![
            "init".to_owned(),
            "--name".into(),
            name.into(),
            "--ip".into(),
            "192.168.50.1".into(),
            "--mac".into(),
            "02:00:c0:a8:32:01".into(),
            "--interface".into(),
            "ul0".into(),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let before = m.ok(&["export"]);
    let again = m.ok(&args(&init("gw1")));
    assert!(again.contains("nothing changed"), "{again}");
    m.fails(
        &args(&init("other")),
        "already belongs to host gw1, not other",
    );
    let mut moved = init("gw1");
    moved[4] = "192.168.50.9".into();
    m.fails(&args(&moved), "change it with `mizar apply`");
    assert_eq!(m.ok(&["export"]), before, "nothing changed");
}

#[test]
fn a_document_that_would_tear_this_host_down_needs_a_flag() {
    let m = fabric();
    let before = m.ok(&["export"]);
    let empty = m.state.path().join("empty.yaml");
    std::fs::write(&empty, "{}\n").unwrap();
    let empty = empty.to_str().unwrap();
    m.fails(
        &["apply", "--prune", "-f", empty],
        "this change removes this host (gw1) from the store; if that is meant, pass --allow-teardown",
    );
    assert_eq!(m.ok(&["export"]), before, "nothing changed");

    // A dry run says what would go and changes nothing.
    let dry = m.ok(&[
        "apply",
        "--prune",
        "--dry-run",
        "--allow-teardown",
        "-f",
        empty,
    ]);
    assert!(dry.starts_with("dry run, nothing changed"), "{dry}");
    assert!(dry.contains("- endpoint red/web1"), "{dry}");
    assert!(dry.contains("- this host gw1"), "{dry}");
    assert!(dry.contains("the data plane is down"), "{dry}");
    assert_eq!(m.ok(&["export"]), before, "nothing changed");

    m.ok(&["apply", "--prune", "--allow-teardown", "-f", empty]);
    assert_eq!(m.ok(&["export"]).trim(), "{}");
}

#[test]
fn the_data_plane_rules_hold_while_it_is_down() {
    let m = fabric();
    let before = m.ok(&["export"]);
    // An endpoint of this host behind its underlay interface could never work: refused now,
    // not at the next `up`.
    m.fails(
        &[
            "ep",
            "add",
            "blue",
            "web2",
            "--ip",
            "10.0.1.11",
            "--mac",
            "02:00:0a:00:01:0b",
            "--host",
            "gw1",
            "--veth",
            "ul0",
        ],
        "is this host's underlay interface; give the endpoint a veth of its own",
    );
    // Two endpoints of one VPC with one MAC.
    m.fails(
        &[
            "ep",
            "add",
            "blue",
            "web2",
            "--ip",
            "10.0.1.11",
            "--mac",
            "02:00:0a:00:01:0a",
            "--host",
            "h2",
        ],
        "MAC 02:00:0a:00:01:0a of endpoint \"web2\" is already used by endpoint \"web1\"",
    );
    assert_eq!(m.ok(&["export"]), before, "nothing changed");
}

#[test]
fn set_changes_what_is_given_and_keeps_the_rest() {
    let m = fabric();
    let said = m.ok(&["host", "set", "h2", "--ip", "192.168.50.22"]);
    assert!(said.contains("host h2 changed"), "{said}");
    let h2: serde_json::Value =
        serde_json::from_str(&m.ok(&["host", "show", "h2", "--json"])).unwrap();
    assert_eq!(h2["ip"], "192.168.50.22");
    assert_eq!(h2["mac"], "02:00:c0:a8:32:02", "the MAC stays");

    // Set to what it is: said so, nothing written.
    let same = m.ok(&["vpc", "set", "blue", "--vni", "100"]);
    assert!(same.contains("unchanged"), "{same}");

    m.ok(&["net", "add", "blue", "db", "--cidr", "10.0.2.0/24"]);
    m.ok(&["net", "set", "blue", "db", "--cidr", "10.0.3.0/24"]);
    let db: serde_json::Value =
        serde_json::from_str(&m.ok(&["net", "show", "blue", "db", "--json"])).unwrap();
    assert_eq!(db["cidr"], "10.0.3.0/24");
    assert_eq!(
        db["gateway"], "10.0.3.1",
        "a default gateway follows the prefix"
    );

    // A new address moves the endpoint to the network that holds it.
    m.ok(&[
        "ep", "set", "blue", "web1", "--ip", "10.0.3.7", "--veth", "v-web1",
    ]);
    let ep: serde_json::Value =
        serde_json::from_str(&m.ok(&["ep", "show", "blue", "web1", "--json"])).unwrap();
    assert_eq!(ep["ip"], "10.0.3.7");
    assert_eq!(ep["network"], "db");
    assert_eq!(ep["veth"], "v-web1");
    assert_eq!(ep["mac"], "02:00:0a:00:01:0a", "the MAC stays");
    m.ok(&["ep", "set", "blue", "web1", "--no-veth"]);
    let ep: serde_json::Value =
        serde_json::from_str(&m.ok(&["ep", "show", "blue", "web1", "--json"])).unwrap();
    assert!(ep["veth"].is_null(), "{ep}");
    let red: serde_json::Value =
        serde_json::from_str(&m.ok(&["ep", "show", "red", "web1", "--json"])).unwrap();
    assert_eq!(
        red["ip"], "10.0.1.10",
        "red's endpoint of the same name is untouched"
    );

    let before = m.ok(&["export"]);
    m.fails(
        &["vpc", "set", "blue", "--vni", "200"],
        "give each VPC its own VNI",
    );
    m.fails(
        &["vpc", "set", "blue", "--cidr", "10.1.0.0/16"],
        "10.1.0.0/16",
    );
    m.fails(
        &["net", "set", "blue", "web", "--cidr", "10.0.3.0/24"],
        "10.0.3.0/24",
    );
    m.fails(
        &["net", "set", "blue", "web", "--gateway", "10.9.9.9"],
        "10.9.9.9",
    );
    m.fails(
        &["ep", "set", "blue", "web1", "--ip", "10.9.0.1"],
        "add a network with mizar net add",
    );
    m.fails(&["ep", "set", "blue", "web1", "--host", "nohost"], "nohost");
    m.fails(
        &["ep", "set", "blue", "web1", "--mac", "01:00:5e:00:00:01"],
        "unicast MAC",
    );
    m.fails(
        &["ep", "set", "blue", "ghost", "--mac", "02:00:00:00:00:09"],
        "ghost",
    );
    m.fails(
        &["host", "set", "h2", "--ip", "192.168.50.1"],
        "192.168.50.1",
    );
    m.fails(&["host", "set", "h2"], "--ip");
    m.fails(
        &["ep", "set", "blue", "web1", "--veth", "a", "--no-veth"],
        "--no-veth",
    );
    assert_eq!(m.ok(&["export"]), before, "nothing changed");
}
