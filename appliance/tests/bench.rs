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
    assert!(report.floor_ns() > 0.0, "floor: {}", report.floor_ns());
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
        assert!(
            result.samples_ns.iter().all(|ns| *ns > 0.0),
            "{name}: {:?}",
            result.samples_ns
        );
        assert_eq!(
            result.wrapper_samples_ns.is_some(),
            path.wrapped(),
            "{name}: rewriting paths go through the wrapper"
        );
        if let Some(wrapper) = &result.wrapper_samples_ns {
            assert!(wrapper.iter().all(|ns| *ns > 0.0), "{name}: {wrapper:?}");
        }
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
