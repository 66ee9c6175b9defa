//! Replacing the program behind a pinned XDP link in place (BPF_LINK_UPDATE): the interface
//! never goes without a program, not even for one packet, and the link keeps its mode. aya can
//! update a link only by taking it over, which means unpinning it first (`PinnedLink::unpin`):
//! a crash before it is pinned again would detach the program. So the two commands are made
//! here, on the pin itself.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

// include/uapi/linux/bpf.h, enum bpf_cmd.
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_UPDATE: libc::c_long = 29;

/// The `obj_get` member of `union bpf_attr` (the kernel takes a prefix of the union, the size
/// given, and checks that the rest it knows of is zero).
#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// The `link_update` member of `union bpf_attr`.
#[repr(C)]
struct LinkUpdate {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised prefix of `union bpf_attr` for `cmd`, and its size
    // is passed with it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// Makes the link pinned at `pin` run `program` from now on (atomically: packets see the old
/// program or the new one). The pin stays where it is throughout.
pub(super) fn replace_program(pin: &Path, program: impl AsFd) -> io::Result<()> {
    let path = CString::new(pin.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the pin path"))?;
    let get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    let fd = bpf(BPF_OBJ_GET, &get)?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let update = LinkUpdate {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: program.as_fd().as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    bpf(BPF_LINK_UPDATE, &update)?;
    Ok(())
}
