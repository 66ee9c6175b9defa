//! Sending crafted frames out of an interface with an `AF_PACKET` socket: the frame leaves the
//! interface as if a program had transmitted it, so the peer of a veth receives it (and runs
//! its XDP program on it). Used where XDP live-frame mode (BPF_F_TEST_XDP_LIVE_FRAMES) is not
//! available: some kernels refuse it (EPERM) even to root.

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

/// A packet socket bound to one interface of the calling thread's network namespace.
pub struct FrameInjector {
    fd: OwnedFd,
    ifindex: u32,
}

/// Frames per `sendmmsg` call.
const BATCH: usize = 64;

impl FrameInjector {
    /// Opens the socket on `ifindex` (in the namespace of the calling thread). It receives
    /// nothing: protocol 0.
    pub fn new(ifindex: u32) -> io::Result<Self> {
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        // SAFETY: sockaddr_ll is plain data; zeroes then the fields bind needs.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: bind with a sockaddr_ll of its own size.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        // Straight to the driver: no queueing discipline to hold or reorder frames.
        let one: libc::c_int = 1;
        // SAFETY: PACKET_QDISC_BYPASS takes an int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as u32,
            );
        }
        Ok(Self { fd, ifindex })
    }

    /// Sends `frame` once.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.send_repeated(frame, 1)
    }

    /// Sends `frame` `count` times, in batches.
    pub fn send_repeated(&self, frame: &[u8], count: u64) -> io::Result<()> {
        let mut iov = libc::iovec {
            iov_base: frame.as_ptr().cast_mut().cast(),
            iov_len: frame.len(),
        };
        // SAFETY: mmsghdr is plain data; each points at the one iovec, which outlives the calls.
        let mut messages: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|_| {
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = &raw mut iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut left = count;
        while left > 0 {
            let n = left.min(BATCH as u64) as usize;
            // SAFETY: `messages` holds `n` initialised headers whose buffers are live.
            let sent =
                unsafe { libc::sendmmsg(self.fd.as_raw_fd(), messages.as_mut_ptr(), n as u32, 0) };
            if sent < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ENOBUFS) {
                    std::thread::yield_now();
                    continue;
                }
                return Err(err);
            }
            left -= sent as u64;
        }
        Ok(())
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}
