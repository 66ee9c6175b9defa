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
        ensure_bpffs(&root).expect("mount bpffs for the tests");
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

/// These tests exercise the real kernel; they must not pass by skipping.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test loads XDP programs into the kernel: run it as root (CI does)"
    );
}
