//! Shared fixtures for the kernel tests. They need root and BPF: without them they fail loudly.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixtures"
)]

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

use mizar::dataplane::{Dataplane, PinLayout, ensure_bpffs, remove_all_pins};

pub mod demo;
pub mod netns;

/// Where the tests pin: a bpffs under /run (outside /sys, so `ip netns exec` sees it too).
pub const TEST_BPFFS: &str = "/run/mizar-tests";

/// A data plane loaded under its own pin directory, removed (maps and links) when dropped.
pub struct TestInstance {
    pub dataplane: Dataplane,
    pub dir: PathBuf,
}

impl TestInstance {
    pub fn new(name: &str) -> Self {
        require_root();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = PathBuf::from(TEST_BPFFS);
        ensure_test_bpffs();
        let dir = root.join(format!(
            "{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = remove_all_pins(&PinLayout::new(&dir));
        let dataplane = Dataplane::load(&dir)
            .unwrap_or_else(|err| panic!("load the data plane under {}: {err}", dir.display()));
        Self { dataplane, dir }
    }
}

impl Drop for TestInstance {
    fn drop(&mut self) {
        let _ = remove_all_pins(&PinLayout::new(&self.dir));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Mounts the tests' bpffs if needed and, once per process, removes what killed test
/// processes left there.
pub fn ensure_test_bpffs() {
    let root = PathBuf::from(TEST_BPFFS);
    ensure_bpffs(&root).expect("mount bpffs for the tests");
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(|| remove_stale_instances(&root));
}

/// Removes pin directories (`<name>-<pid>-<n>`) of test processes that no longer exist, killed
/// before their `TestInstance` was dropped.
fn remove_stale_instances(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplit('-');
        let (Some(n), Some(pid)) = (parts.next(), parts.next()) else {
            continue;
        };
        let (Ok(_), Ok(pid)) = (n.parse::<u32>(), pid.parse::<u32>()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = remove_all_pins(&PinLayout::new(entry.path()));
                let _ = std::fs::remove_dir(entry.path());
            } else {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// These tests exercise the real kernel; they must not pass by skipping.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads XDP programs into the kernel: run it as root (CI does)"
    );
}
