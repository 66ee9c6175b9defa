//! bpffs: the appliance pins under a per-instance directory and mounts bpffs there when the
//! machine has none (these machines do not mount it at boot).

use std::path::{Path, PathBuf};

use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};

use super::DataplaneError;

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}

/// Makes `dir` a directory on a bpffs: kept as is when it (or a parent) already is one,
/// otherwise a bpffs is mounted on it.
/// A refusal leaves no directory behind that this call created.
pub fn ensure_bpffs(dir: &Path) -> Result<(), DataplaneError> {
    // The directories this call creates, deepest first, to take back if it fails.
    let created: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.exists())
        .map(Path::to_owned)
        .collect();
    let result = mount_unless_bpffs(dir);
    if result.is_err() {
        for made in &created {
            let _ = std::fs::remove_dir(made);
        }
    }
    result
}

fn mount_unless_bpffs(dir: &Path) -> Result<(), DataplaneError> {
    std::fs::create_dir_all(dir).map_err(|source| DataplaneError::PinDir {
        path: dir.to_owned(),
        source,
    })?;
    if is_bpffs(dir) {
        return Ok(());
    }
    // `ip netns exec` runs commands in a private mount namespace: a bpffs mounted there, and
    // every pin in it, vanishes when the command exits, and the data plane with it.
    if in_private_mount_namespace() {
        return Err(DataplaneError::PrivateMountNamespace {
            path: dir.to_owned(),
        });
    }
    mount(
        Some("bpf"),
        dir,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|errno| DataplaneError::MountBpffs {
        path: dir.to_owned(),
        source: std::io::Error::from(errno),
    })
}

/// Whether this process runs in a mount namespace that one of its ancestors does not share, as
/// under `ip netns exec` (which unshares it before running the command): a mount made here
/// dies with the namespace. Ancestors are compared rather than PID 1, whose namespace link a
/// sandboxed init may not let even root read (seen on this machine).
fn in_private_mount_namespace() -> bool {
    let ns_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let Some(mine) = std::fs::read_link("/proc/self/ns/mnt").ok() else {
        return false;
    };
    let mut pid = std::os::unix::process::parent_id();
    // Bounded: process trees are shallow, and a loop in a racing /proc must not hang us.
    for _ in 0..64 {
        if pid == 0 {
            break;
        }
        match ns_of(pid) {
            Some(theirs) if theirs != mine => return true,
            Some(_) => {}
            None => break,
        }
        if pid == 1 {
            break;
        }
        pid = match parent_of(pid) {
            Some(parent) => parent,
            None => break,
        };
    }
    false
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
}

/// Where each kind of pin lives under an instance's pin directory.
#[derive(Debug, Clone)]
pub struct PinLayout {
    pub root: PathBuf,
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn maps(&self) -> PathBuf {
        self.root.join("maps")
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.maps().join(name)
    }

    pub fn links(&self) -> PathBuf {
        self.root.join("links")
    }

    pub fn link(&self, role: &str, ifname: &str) -> PathBuf {
        self.links().join(format!("{role}@{ifname}"))
    }

    /// The programs the last load verified, pinned so that attaching one to a new interface
    /// (an endpoint's veth, on `ep add`) need not load and verify it again.
    pub fn programs(&self) -> PathBuf {
        self.root.join("programs")
    }

    pub fn program(&self, role: &str) -> PathBuf {
        self.programs().join(role)
    }
}
