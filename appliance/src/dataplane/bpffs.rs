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
pub fn ensure_bpffs(dir: &Path) -> Result<(), DataplaneError> {
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

/// Whether this process's mount namespace is not init's. Inside `ip netns exec`, init's
/// namespace link cannot even be read (checked on this kernel): that counts as private too.
fn in_private_mount_namespace() -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link("/proc/1/ns/mnt"),
    ) {
        (Ok(mine), Ok(init)) => mine != init,
        (Ok(_), Err(_)) => true,
        (Err(_), _) => false,
    }
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
}
