//! An RCU grace period from user space: when [`synchronize`] returns, every XDP program run
//! that was under way when it was called has ended, so no packet still holds a map value that
//! was removed before the call.
//!
//! The kernel offers no such call directly, but it waits for one on our behalf: updating an
//! element of a map-of-maps calls `synchronize_rcu()` before the syscall returns
//! (kernel/bpf/syscall.c, `maybe_wait_bpf_programs`), so that user space knows no program still
//! uses the old inner map. We keep a private one-slot array-of-maps and write its slot.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::OnceLock,
};

use super::DataplaneError;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// The `map_create` member of `union bpf_attr` (the fields we set; the kernel takes the
/// shorter size as zero-extended).
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
}

/// The element-access member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
pub(super) struct ElemAttr {
    pub map_fd: u32,
    pub pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

pub(super) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid prefix of union bpf_attr for `cmd`, its pointers (if any)
    // address live buffers of the sizes the map was created with.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn create(attr: &mut MapCreateAttr) -> io::Result<OwnedFd> {
    let fd = bpf(BPF_MAP_CREATE, attr)?;
    // SAFETY: BPF_MAP_CREATE returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The outer map and the inner map its slot is written with, made once per process.
struct Barrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

fn barrier() -> io::Result<&'static Barrier> {
    static BARRIER: OnceLock<Barrier> = OnceLock::new();
    if let Some(b) = BARRIER.get() {
        return Ok(b);
    }
    let inner = create(&mut MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        ..MapCreateAttr::default()
    })?;
    let outer = create(&mut MapCreateAttr {
        map_type: BPF_MAP_TYPE_ARRAY_OF_MAPS,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        inner_map_fd: inner.as_raw_fd() as u32,
        ..MapCreateAttr::default()
    })?;
    Ok(BARRIER.get_or_init(|| Barrier { outer, inner }))
}

/// Waits for an RCU grace period (see the module documentation).
pub fn synchronize() -> Result<(), DataplaneError> {
    let wait = || -> io::Result<()> {
        let b = barrier()?;
        let key = 0u32;
        let value = b.inner.as_raw_fd() as u32;
        bpf(
            BPF_MAP_UPDATE_ELEM,
            &mut ElemAttr {
                map_fd: b.outer.as_raw_fd() as u32,
                key: &raw const key as u64,
                value: &raw const value as u64,
                ..ElemAttr::default()
            },
        )?;
        Ok(())
    };
    wait().map_err(|err| {
        DataplaneError::Invalid(format!(
            "cannot wait for running XDP programs to finish (an update of a map-of-maps): {err}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root (BPF): a grace period takes a while, but it returns.
    #[test]
    fn synchronize_returns() {
        synchronize().expect("an RCU grace period through a map-of-maps update (needs root)");
        synchronize().expect("and again, with the same maps");
    }
}
