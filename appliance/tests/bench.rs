//! `mizar bench` against the real kernel, in quick mode: every path is configured right (its
//! verdict and reason on every repetition) and yields a figure. Checks behaviour, not speed:
//! no figure is compared with a threshold here.

use mizar::bench::{self, BenchOptions, PATHS};

#[test]
fn quick_bench_measures_every_path_on_its_path() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads XDP programs into the kernel: run it as root (CI does)"
    );
    let options = BenchOptions::quick();
    let report = bench::run(&options).unwrap_or_else(|err| panic!("mizar bench --quick: {err}"));

    assert_eq!(report.floor_samples_ns.len(), options.runs as usize);
    // The floor is the cheapest subject: a quick run's few repetitions can measure 0 ns once
    // the fixed cost is taken off (CI did, on a loaded host). The kernel's own figure for it
    // (whole ns per repetition) is never 0; ours must be a figure.
    assert!(
        report.floor_kernel_samples_ns.iter().all(|n| *n > 0.0),
        "floor (kernel): {:?}",
        report.floor_kernel_samples_ns
    );
    assert!(
        report
            .floor_samples_ns
            .iter()
            .all(|n| n.is_finite() && *n >= 0.0),
        "floor: {:?}",
        report.floor_samples_ns
    );
    let measured: Vec<_> = report.paths.iter().map(|p| p.path).collect();
    assert_eq!(measured, PATHS, "every path, in table order");
    for result in &report.paths {
        let path = result.path;
        let name = format!("{} {}", path.program().name(), path.label());
        assert_eq!(result.verdict, Some(path.verdict()), "{name}: verdict");
        assert_eq!(
            result.counted,
            u64::from(options.repeat) * u64::from(options.runs),
            "{name}: every repetition counted as {}",
            path.reason_name()
        );
        assert_eq!(result.samples_ns.len(), options.runs as usize, "{name}");
        assert_eq!(
            result.kernel_samples_ns.len(),
            options.runs as usize,
            "{name}"
        );
        // A figure per run; a quick run's repetitions are few, so one run of a cheap subject
        // may come out at 0 (the fixed cost taken off is itself measured): not all of them.
        let figures = |ns: &[f64]| {
            ns.iter().all(|n| n.is_finite() && *n >= 0.0) && ns.iter().any(|n| *n > 0.0)
        };
        assert!(
            figures(&result.samples_ns),
            "{name}: {:?}",
            result.samples_ns
        );
        assert_eq!(
            result.wrapper_samples_ns.is_some(),
            path.wrapped(),
            "{name}: rewriting paths go through the wrapper"
        );
        if let Some(wrapper) = &result.wrapper_samples_ns {
            assert!(figures(wrapper), "{name}: {wrapper:?}");
        }
    }

    // The chains: every length of no-op functions and each function alone, with figures.
    let chains: Vec<(&str, usize, String)> = report
        .chains
        .iter()
        .map(|c| {
            (
                c.function,
                c.functions,
                c.acl.map(|a| a.label()).unwrap_or_default(),
            )
        })
        .collect();
    let plain = |f, n| (f, n, String::new());
    let acl = |case: &str| ("acl", 1, case.to_owned());
    assert_eq!(
        chains,
        [
            plain("count", 0),
            plain("count", 1),
            plain("count", 2),
            plain("count", 4),
            plain("count", 8),
            plain("ddos", 1),
            plain("ratelimit", 1),
            plain("tap", 1),
            acl("1 rule, flow hit"),
            acl("1 rule, judged"),
            acl("100 rules, judged"),
            acl("10000 rules, judged"),
        ]
    );
    assert!(report.acl_scale().is_some(), "the acl's scaling is judged");
    for c in &report.chains {
        assert_eq!(
            c.samples_ns.len(),
            options.runs as usize,
            "{}x{}",
            c.function,
            c.functions
        );
    }

    let table = report.to_string();
    let json = report.to_json();
    for path in PATHS {
        assert!(table.contains(path.label()), "table lacks {}", path.label());
        assert!(json.contains(path.id()), "JSON lacks {}", path.id());
    }
    // The instance's pins are gone.
    let leftovers: Vec<_> = std::fs::read_dir(bench::BENCH_BPFFS)
        .expect("the bench bpffs")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| {
            n.to_string_lossy()
                .starts_with(&format!("{}-", std::process::id()))
        })
        .collect();
    assert!(leftovers.is_empty(), "pins left behind: {leftovers:?}");
}

/// `mizar bench --live --quick` through the binary: every frame the generator sends comes back
/// through the attached program (the command fails otherwise, and when a transit path does not
/// count its reason once per frame), each subject gets a rate, and the namespace goes.
#[test]
fn live_bench_forwards_every_frame_through_the_attached_programs() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test attaches XDP programs to veths in a namespace it makes: run it as root (CI does)"
    );
    let state = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mizar"))
        .args(["bench", "--live", "--quick", "--json"])
        .env("MIZAR_STATE_DIR", state.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mizar bench --live --quick: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = report["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["transit.bouncer", "transit.divider"], "{report}");
    for subject in std::iter::once(&report["floor"]).chain(report["paths"].as_array().unwrap()) {
        assert!(subject["pps"].as_f64().unwrap() > 0.0, "{subject}");
        assert_eq!(
            subject["attach_mode"], "native",
            "veth runs XDP in the driver: {subject}"
        );
    }
    assert_eq!(report["floor"]["ratio"], 1.0);
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(
        !namespaces.contains("mzbench-live-"),
        "the benchmark's namespace is left: {namespaces}"
    );

    // Bad input changes nothing and says what to do.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mizar"))
        .args(["bench", "--frames", "10"])
        .env("MIZAR_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--live"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
