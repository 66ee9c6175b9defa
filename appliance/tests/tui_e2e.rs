//! `mizar tui` end to end: the real binary in tmux on a host of the demo's fabric with traffic
//! flowing, read back with capture-pane: the stage counters move, the endpoints are listed and
//! a filter narrows them, an endpoint added through the Manage form reaches the store (the CLI
//! lists it) and the maps; and the terminal is restored after q, SIGTERM and a panic.
//!
//! Needs root, BPF, iproute2, ping and tmux; fails (never skips) without them.

mod common;

use std::{
    path::Path,
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use common::{
    demo::Traffic,
    netns::{require_tools, unique_prefix},
};
use mizar::{
    dataplane::{DataplaneMaps, PinLayout},
    demo::{Demo, DemoSpec},
};

const MIZAR: &str = env!("CARGO_BIN_EXE_mizar");
/// The host the dashboard runs on: it bounces the web networks and hosts b-web3 and r-db1.
const HOST: &str = "edge";

fn fabric() -> Demo {
    common::require_root();
    require_tools(&[("tmux", "tmux"), ("ping", "iputils-ping")]);
    Demo::build(DemoSpec::new(&unique_prefix()), Path::new(MIZAR))
        .unwrap_or_else(|err| panic!("build the fabric: {err}"))
}

/// A tmux session running one shell command in a 100x30 pane; killed when dropped.
struct Tmux {
    session: String,
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Runs `command` in the pane, with `stty -a` recorded before and after it and its exit
    /// status kept; the pane stays open after it ends.
    fn start(name: &str, command: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = format!(
            "stty -a > {d}/before; {command}; echo $? > {d}/status; stty -a > {d}/after; sleep 600"
        );
        let session = format!("{name}-{}", std::process::id());
        let mut tmux = Command::new("tmux");
        tmux.args(["new-session", "-d", "-s", &session, "-x", "100", "-y", "30"]);
        for (k, v) in env {
            tmux.args(["-e", &format!("{k}={v}")]);
        }
        let out = tmux.arg(script).output().expect("run tmux");
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { session, dir }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys by tmux's names (Enter, Tab, Escape, BSpace, Down) or literal text.
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            let named = [
                "Enter", "Tab", "Escape", "BSpace", "Down", "Up", "End", "Home",
            ];
            if named.contains(key) {
                self.tmux(&["send-keys", "-t", &self.session, key]);
            } else {
                self.tmux(&["send-keys", "-t", &self.session, "-l", key]);
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    /// The screen, once `ready` holds for it (panics with the last screen after 20 s).
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited 20 s for {what}; the screen:\n{screen}"
            );
            sleep(Duration::from_millis(100));
        }
    }

    fn alternate_screen(&self) -> bool {
        self.tmux(&[
            "display-message",
            "-p",
            "-t",
            &self.session,
            "#{alternate_on}",
        ])
        .trim()
            == "1"
    }

    fn pane_pid(&self) -> u32 {
        self.tmux(&["display-message", "-p", "-t", &self.session, "#{pane_pid}"])
            .trim()
            .parse()
            .unwrap()
    }

    /// The command's exit status and whether the tty's settings after it equal those before.
    fn finished(&self) -> (String, bool) {
        let path = |f: &str| self.dir.path().join(f);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path("after").exists() {
            assert!(
                Instant::now() < deadline,
                "the command did not end; the screen:\n{}",
                self.screen()
            );
            sleep(Duration::from_millis(100));
        }
        sleep(Duration::from_millis(100));
        let read = |f: &str| std::fs::read_to_string(path(f)).unwrap();
        (
            read("status").trim().to_owned(),
            read("before") == read("after"),
        )
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .output();
    }
}

fn tui_command(demo: &Demo, extra: &str) -> String {
    let spec = demo.spec();
    format!(
        "ip netns exec {} {MIZAR} --state-dir {} --pin-dir {} tui --period 200ms {extra}",
        demo.ns(HOST).name(),
        spec.state_dir(HOST).display(),
        spec.pin_dir(HOST).display()
    )
}

/// The total of a pipeline row ("│ ├ ON_XDP_REDIRECT   40   49.9k   0   195   ▂██"): its
/// packets/s and its total.
fn row_figures(screen: &str, label: &str) -> Option<(String, String)> {
    let line = screen.lines().find(|l| l.contains(label))?;
    let fields: Vec<&str> = line
        .split_whitespace()
        .skip_while(|f| !f.contains(label))
        .collect();
    Some((fields.get(1)?.to_string(), fields.get(4)?.to_string()))
}

#[test]
fn the_dashboard_shows_the_live_pipeline_lists_filters_and_changes_the_fabric() {
    let demo = fabric();
    // b-web3 lives on edge, b-db1 on h3: edge encapsulates the requests and delivers replies.
    let _traffic = Traffic::start(&demo, "b-web3", "b-db1");
    let tui = Tmux::start("mz-tui", &tui_command(&demo, ""), &[]);

    let first = tui.wait_for("the pipeline with deliveries", |s| {
        row_figures(s, "ON_XDP_REDIRECT").is_some_and(|(rate, _)| rate != "0" && rate != "-")
    });
    assert!(tui.alternate_screen());
    assert!(first.contains("transit on ul0 (native)"), "{first}");
    assert!(first.contains("deliver_local"), "{first}");
    let (_, total_then) = row_figures(&first, "ON_XDP_REDIRECT").unwrap();
    let moved = tui.wait_for("the counters to move", |s| {
        row_figures(s, "ON_XDP_REDIRECT").is_some_and(|(_, total)| total != total_then)
    });
    println!("pipeline:\n{moved}");

    // Endpoints: all eight, then a filter narrows them.
    tui.keys(&["2"]);
    let listed = tui.wait_for("the endpoints", |s| s.contains("endpoints: 8"));
    for name in ["b-web3", "r-db1", "b-db1", "r-web2"] {
        assert!(listed.contains(name), "{name} missing:\n{listed}");
    }
    tui.keys(&["/", "r-", "Enter"]);
    let filtered = tui.wait_for("the filter", |s| s.contains("3 of 8 match"));
    assert!(!filtered.contains("b-web3"), "{filtered}");
    assert!(filtered.contains("r-web1"), "{filtered}");
    tui.keys(&["Escape"]);

    // Manage: add an endpoint through the form (on h2, so it needs no veth here).
    tui.keys(&["4", "Down", "Down", "Enter"]);
    tui.wait_for("the add-endpoint form", |s| {
        s.contains("add endpoint") && s.contains("netns")
    });
    tui.keys(&[
        "blue",
        "Tab",
        "b-web9",
        "Tab",
        "10.0.1.19",
        "Tab",
        "02:ee:00:64:01:19",
        "Tab",
    ]);
    // The host field offers this host: replace it.
    tui.keys(&["BSpace", "BSpace", "BSpace", "BSpace", "h2", "Enter"]);
    let done = tui.wait_for("the change's answer", |s| {
        s.contains("endpoint b-web9 (10.0.1.19) added to network web of VPC blue")
    });
    assert!(done.contains("data plane:"), "{done}");
    // The CLI sees it at once, and so do the maps.
    let list = demo
        .mizar_ok(HOST, &["ep", "list", "--vpc", "blue"])
        .unwrap();
    assert!(list.contains("b-web9"), "{list}");
    let maps = DataplaneMaps::open(&PinLayout::new(demo.spec().pin_dir(HOST))).unwrap();
    let state = maps.read_state().unwrap();
    assert!(
        state
            .endpoints
            .contains_key(&(100, "10.0.1.19".parse().unwrap())),
        "b-web9 is not in {HOST}'s maps"
    );
    // Changed in place through its form: the name fills in the rest, only the MAC is typed.
    let mut keys = vec!["4", "g"];
    keys.extend(["Down"; 8]);
    keys.extend(["Enter", "blue", "Tab", "b-web9", "Tab"]);
    tui.keys(&keys);
    tui.wait_for("the filled-in change form", |s| {
        s.contains("change endpoint") && s.contains("02:ee:00:64:01:19")
    });
    let mut keys = vec!["Tab"];
    keys.extend(["BSpace"; 17]);
    keys.extend(["02:ee:00:64:01:29", "Enter"]);
    tui.keys(&keys);
    tui.wait_for("the change's answer", |s| {
        s.contains("endpoint blue/b-web9 changed")
    });
    let shown = demo
        .mizar_ok(HOST, &["ep", "show", "blue", "b-web9", "--json"])
        .unwrap();
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["mac"], "02:ee:00:64:01:29");
    assert_eq!(shown["ip"], "10.0.1.19", "what was not typed stays");
    let state = maps.read_state().unwrap();
    let entry = &state.endpoints[&(100, "10.0.1.19".parse().unwrap())];
    assert_eq!(entry.mac.to_string(), "02:ee:00:64:01:29");
    // A change made by the CLI shows at the dashboard's next sample.
    demo.mizar_ok(HOST, &["ep", "del", "blue", "b-web9"])
        .unwrap();
    tui.keys(&["2"]);
    tui.wait_for("the CLI's delete", |s| {
        s.contains("endpoints: 8") && !s.contains("b-web9")
    });
    // A refused form says why, as the CLI would, and changes nothing.
    tui.keys(&[
        "4",
        "g",
        "Enter",
        "blue",
        "Tab",
        "100",
        "Tab",
        "10.9.0.0/16",
        "Enter",
    ]);
    let refused = tui.wait_for("the refusal", |s| {
        s.contains("already") || s.contains("exists")
    });
    println!("refused:\n{refused}");

    // Functions: a count function added at ON_XDP_REDIRECT (second row) runs at once and its
    // counters move with the traffic; x then y takes it out again.
    tui.keys(&["Escape", "5", "g", "Down", "a", "1"]);
    tui.wait_for("the chain's answer", |s| {
        s.contains("chain at ON_XDP_REDIRECT: count")
    });
    let counted = tui.wait_for("the function's counters", |s| {
        s.lines()
            .any(|l| l.contains("count") && l.contains("#1") && !l.contains(" - "))
    });
    println!("functions:\n{counted}");
    let chain = demo.mizar_ok(HOST, &["chain", "show", "--json"]).unwrap();
    let chain: serde_json::Value = serde_json::from_str(&chain).unwrap();
    assert_eq!(chain[0]["stage"], "ON_XDP_REDIRECT", "{chain}");
    assert!(
        chain[0]["packets"].as_u64().is_some_and(|p| p > 0),
        "{chain}"
    );
    tui.keys(&["Down", "x"]);
    tui.wait_for("the confirmation", |s| s.contains("y to confirm"));
    tui.keys(&["y"]);
    tui.wait_for("the empty chain", |s| {
        s.contains("chain at ON_XDP_REDIRECT: empty")
    });

    // Captures: blue's replies at transit's entry and verdict, five packets, listed decoded;
    // the file is pcapng that tshark reads, and no tap is left running.
    tui.keys(&["6", "e", "Tab", "vpc blue", "Tab", "5", "Enter"]);
    let captured = tui.wait_for("the capture's end", |s| s.contains("5 packets captured"));
    println!("captures:\n{captured}");
    assert!(captured.contains(":transit:entry"), "{captured}");
    assert!(captured.contains("geneve vni 100"), "{captured}");
    let file = captured
        .split_whitespace()
        .find(|w| w.ends_with(".pcapng"))
        .expect("the file's path on screen")
        .to_owned();
    let tshark = std::process::Command::new("tshark")
        .args(["-r", &file, "-T", "fields", "-e", "frame.interface_name"])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&tshark.stdout);
    assert_eq!(names.lines().count(), 5, "{names}");
    assert!(
        names
            .lines()
            .all(|l| l.ends_with(":transit:entry") || l.ends_with(":transit:verdict")),
        "{names}"
    );
    let status = demo.mizar_ok(HOST, &["status", "--json"]).unwrap();
    assert!(!status.contains("a capture taps"), "{status}");

    tui.keys(&["q"]);
    let (status, restored) = tui.finished();
    assert_eq!(status, "0");
    assert!(restored, "the tty's settings differ after q");
    assert!(!tui.alternate_screen());
}

#[test]
fn the_terminal_is_restored_after_sigterm_and_after_a_panic() {
    let demo = fabric();
    let tui = Tmux::start("mz-tui-term", &tui_command(&demo, ""), &[]);
    tui.wait_for("the dashboard", |s| s.contains("data plane up"));
    // SIGTERM to mizar itself (the pane runs sh → ip netns exec, which execs mizar).
    let pane = tui.pane_pid();
    let pids = Command::new("pgrep")
        .args(["-P", &pane.to_string()])
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&pids.stdout).trim().to_owned();
    assert!(!pid.is_empty(), "no child of the pane's shell");
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let (_, restored) = tui.finished();
    assert!(restored, "the tty's settings differ after SIGTERM");
    assert!(!tui.alternate_screen());

    let tui = Tmux::start(
        "mz-tui-panic",
        &tui_command(&demo, ""),
        &[("MIZAR_TUI_PANIC_AFTER", "5"), ("RUST_BACKTRACE", "0")],
    );
    let (status, restored) = tui.finished();
    assert_ne!(status, "0", "a panic must exit non-zero");
    assert!(restored, "the tty's settings differ after a panic");
    assert!(!tui.alternate_screen());
    let screen = tui.screen();
    assert!(
        screen.contains("panicking mid-draw"),
        "the panic message is not shown:\n{screen}"
    );
}
