//! Compiles the XDP programs with clang and generates the Rust side of the shared ABI header.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// Each object and the C sources it is built from (the explicit list is what rebuilds watch).
const OBJECTS: &[(&str, &str)] = &[
    ("transit", "c/transit.c"),
    ("transit_tapped", "c/transit_tapped.c"),
    ("egress", "c/egress.c"),
    ("egress_tapped", "c/egress_tapped.c"),
    ("bench", "c/bench.c"),
    ("pass", "c/pass.c"),
    ("functions", "c/functions.c"),
    // Built as a function writer would, against include/ only (the tests load them).
    ("example_port_drop", "examples/port_drop.c"),
    ("example_out_of_bounds", "examples/out_of_bounds.c"),
    ("example_to_host", "examples/to_host.c"),
];
/// Every source and header the objects are built from: cargo rebuilds when any file in them
/// changes (a header added later needs no listing).
const SOURCE_DIRS: &[&str] = &["include", "c", "examples"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    for dir in SOURCE_DIRS {
        println!("cargo:rerun-if-changed={dir}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let multiarch_include = multiarch_include_dir();
    for (name, source) in OBJECTS {
        compile_bpf(
            &clang,
            &manifest_dir,
            &manifest_dir.join(source),
            &out_dir.join(format!("{name}.o")),
            multiarch_include.as_deref(),
        );
    }

    generate_counter_table(
        &manifest_dir.join("include/mizar_abi.h"),
        &out_dir.join("counters.rs"),
    );
    generate_abi_bindings(
        &manifest_dir.join("include/mizar_abi.h"),
        &out_dir.join("abi.rs"),
        multiarch_include.as_deref(),
    );
}

/// Debian keeps `asm/types.h` under the multiarch directory, which `-target bpf` does not search.
fn multiarch_include_dir() -> Option<PathBuf> {
    let triple = match env::var("CARGO_CFG_TARGET_ARCH").ok()?.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        _ => return None,
    };
    let dir = Path::new("/usr/include").join(triple);
    dir.is_dir().then_some(dir)
}

fn compile_bpf(
    clang: &str,
    manifest_dir: &Path,
    source: &Path,
    object: &Path,
    multiarch: Option<&Path>,
) {
    let mut cmd = Command::new(clang);
    cmd.args([
        "-target",
        "bpf",
        // ALU32 and JMP32 instructions (kernel 5.1+): shorter code on the per-packet path.
        "-mcpu=v3",
        "-O2",
        "-g",
        "-Wall",
        "-Werror",
        "-std=gnu11",
    ])
    .arg("-I")
    .arg(manifest_dir.join("include"))
    .arg("-I")
    .arg(manifest_dir.join("c/include"));
    if let Some(dir) = multiarch {
        cmd.arg("-idirafter").arg(dir);
    }
    cmd.arg("-c").arg(source).arg("-o").arg(object);

    let status = match cmd.status() {
        Ok(status) => status,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{clang}` not found: the XDP programs are compiled with clang. Install the Debian \
             packages clang and libbpf-dev (scripts/setup-debian.sh does), or point CLANG at a clang binary."
        ),
        Err(err) => panic!("failed to run `{clang}`: {err}"),
    };
    assert!(
        status.success(),
        "clang failed to compile {} (see the errors above); if bpf/bpf_helpers.h is missing, install libbpf-dev",
        source.display()
    );
}

/// The layout is computed for the BPF target, so the size and offset assertions bindgen emits
/// check the Rust structs against what the programs were compiled with.
fn generate_abi_bindings(header: &Path, out: &Path, multiarch: Option<&Path>) {
    let mut builder = bindgen::Builder::default().clang_args(["-target", "bpf"]);
    if let Some(dir) = multiarch {
        builder = builder.clang_arg(format!("-idirafter{}", dir.display()));
    }
    let bindings = builder
        .header(header.to_string_lossy())
        .allowlist_type("mz_.*")
        .allowlist_var("MZ_.*")
        .allowlist_item("MZ_.*")
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_eq(true)
        .layout_tests(true)
        .use_core()
        .generate()
        .unwrap_or_else(|err| {
            panic!(
                "bindgen could not read {}: {err}; install libclang-dev (scripts/setup-debian.sh)",
                header.display()
            )
        });
    bindings.write_to_file(out).expect("write abi.rs");
}

/// Names and descriptions of the counter slots, read from `enum mz_counter` in the ABI header
/// (entries `MZ_NAME = N, /* description */`), so `mizar` can print every reason without a
/// second list to keep in step.
fn generate_counter_table(header: &Path, out: &Path) {
    let text = std::fs::read_to_string(header).expect("read the ABI header");
    let body = text
        .split("enum mz_counter {")
        .nth(1)
        .and_then(|rest| rest.split("};").next())
        .expect("enum mz_counter in the ABI header");
    let mut rows = String::new();
    for line in body.lines() {
        let line = line.trim();
        let Some((name, rest)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        let Some(value) = rest
            .split(',')
            .next()
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if matches!(name, "MZ_COUNTER_REASONS" | "MZ_STAGE_COUNTER_BASE") {
            continue;
        }
        let description = rest
            .split_once("/*")
            .and_then(|(_, c)| c.split_once("*/"))
            .map(|(c, _)| c.trim().to_owned())
            .unwrap_or_default();
        let short = name.trim_start_matches("MZ_").to_ascii_lowercase();
        rows.push_str(&format!(
            "    CounterInfo {{ slot: {value}, name: {short:?}, description: {description:?} }},\n"
        ));
    }
    std::fs::write(out, format!("/// Every reason counter, in slot order.\npub const COUNTER_INFO: &[CounterInfo] = &[\n{rows}];\n"))
        .expect("write counters.rs");
}
