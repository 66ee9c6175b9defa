//! The interface ioctls the lab needs, on the calling thread's network namespace: offload
//! features through the legacy ethtool commands (what `ethtool -K <if> gro on` and `tx off`
//! amount to, without the binary) and the hardware address.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::{Feature, MacAddr};

/// `struct ethtool_value` (linux/ethtool.h).
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

// linux/ethtool.h: the one-feature commands. The kernel maps each to its feature bits
// (ethtool_get_feature_mask): TXCSUM to every transmit checksum kind, GRO to NETIF_F_GRO.
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETHTOOL_SGRO: u32 = 0x2c;

/// Whether `feature` is on for `ifname`.
pub(super) fn get(ifname: &str, feature: Feature) -> io::Result<bool> {
    let cmd = match feature {
        Feature::Gro => ETHTOOL_GGRO,
        Feature::TxChecksum => ETHTOOL_GTXCSUM,
    };
    let mut value = EthtoolValue { cmd, data: 0 };
    ethtool(ifname, &mut value)?;
    Ok(value.data != 0)
}

/// Turns `feature` on or off for `ifname` (the kernel may refuse silently: check with [`get`]).
pub(super) fn set(ifname: &str, feature: Feature, on: bool) -> io::Result<()> {
    let cmd = match feature {
        Feature::Gro => ETHTOOL_SGRO,
        Feature::TxChecksum => ETHTOOL_STXCSUM,
    };
    let mut value = EthtoolValue {
        cmd,
        data: u32::from(on),
    };
    ethtool(ifname, &mut value)
}

/// The MAC address of `ifname`.
pub(super) fn hardware_address(ifname: &str) -> io::Result<MacAddr> {
    let mut req = ifreq(ifname)?;
    ioctl(libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled the union's hardware-address member.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(MacAddr(std::array::from_fn(|i| data[i] as u8)))
}

fn ethtool(ifname: &str, value: &mut EthtoolValue) -> io::Result<()> {
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_data = std::ptr::from_mut(value).cast();
    ioctl(libc::SIOCETHTOOL, &mut req)
}

fn ifreq(ifname: &str) -> io::Result<libc::ifreq> {
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ifname:?} is not an interface name"),
        ));
    }
    // SAFETY: ifreq is plain data (a name array and a union of integers, pointers and
    // sockaddrs), for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// Issues an interface ioctl on a socket of the calling thread's network namespace (the
/// namespace a socket is created in is the one its ioctls look interfaces up in).
fn ioctl(request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket(2) returned a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` is a valid ifreq for `request`; a pointer it carries (SIOCETHTOOL's
    // ethtool_value) points to a live struct of the layout the command expects.
    let ret = unsafe { libc::ioctl(socket.as_raw_fd(), request, std::ptr::from_mut(req)) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
