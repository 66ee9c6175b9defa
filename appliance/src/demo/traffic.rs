//! Traffic between endpoints, from real sockets opened inside their namespaces: ICMP echo (a raw
//! socket: no `ping` binary needed), UDP and TCP echo exchanges, and a capture of what arrives on
//! an interface (an `AF_PACKET` socket: no `tcpdump` needed). Used by `mizar demo` and the
//! end-to-end tests.

use std::{
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU16, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use nix::sys::{
    socket::{
        AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recvfrom,
        sendto, setsockopt, socket, sockopt,
    },
    time::{TimeVal, TimeValLike as _},
};

use crate::lab::{LabError, NetNs, NsJoinHandle};

/// What went wrong with a traffic helper (the namespace could not be entered, a socket failed).
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("{what} in network namespace {namespace}: {source}")]
    Io {
        namespace: String,
        what: String,
        source: io::Error,
    },
    #[error("{what} in network namespace {namespace} did not start within {waited:?}")]
    NotStarted {
        namespace: String,
        what: String,
        waited: Duration,
    },
}

fn io_error(ns: &str, what: impl Into<String>) -> impl FnOnce(io::Error) -> TrafficError {
    let (namespace, what) = (ns.to_owned(), what.into());
    move |source| TrafficError::Io {
        namespace,
        what,
        source,
    }
}

/// How an exchange went: how many probes were sent and how many came back intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub sent: u32,
    pub answered: u32,
}

impl Exchange {
    pub fn all_answered(self) -> bool {
        self.answered == self.sent
    }

    pub fn none_answered(self) -> bool {
        self.answered == 0
    }
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.answered, self.sent)
    }
}

/// The echo identifiers of concurrent pings must differ: a raw ICMP socket sees every reply.
fn next_echo_id() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    (std::process::id() as u16).wrapping_add(NEXT.fetch_add(0x101, Ordering::Relaxed))
}

/// The Internet checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![8, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend((0..56u8).map(|i| i.wrapping_mul(7)));
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// Whether `packet` (IPv4 header included, as a raw socket hands it) is the echo reply from
/// `from` to the request `id`/`seq`, intact.
fn is_echo_reply(packet: &[u8], from: Ipv4Addr, id: u16, seq: u16) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if packet.len() < ihl + 8 || packet[12..16] != from.octets() {
        return false;
    }
    let icmp = &packet[ihl..];
    icmp[0] == 0
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
        && icmp[8..] == echo_request(id, seq)[8..]
        && checksum(icmp) == 0
}

/// Sends `count` ICMP echo requests from the namespace `ns` to `to`, one after the other, each
/// waiting up to `wait` for its reply.
pub fn ping(
    ns: &NetNs,
    to: Ipv4Addr,
    count: u32,
    wait: Duration,
) -> Result<Exchange, TrafficError> {
    let name = ns.name().to_owned();
    let handle = ns.spawn(move || -> io::Result<Exchange> {
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Icmp,
        )?;
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(20))?;
        let id = next_echo_id();
        let dest = SockaddrIn::from(SocketAddrV4::new(to, 0));
        let mut answered = 0;
        let mut buf = [0u8; 2048];
        for seq in 0..count {
            let seq = seq as u16;
            sendto(
                fd.as_raw_fd(),
                &echo_request(id, seq),
                &dest,
                MsgFlags::empty(),
            )?;
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                match recvfrom::<SockaddrIn>(fd.as_raw_fd(), &mut buf) {
                    Ok((len, _)) if is_echo_reply(&buf[..len], to, id, seq) => {
                        answered += 1;
                        break;
                    }
                    Ok(_) => {}
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    Err(errno) => return Err(errno.into()),
                }
            }
        }
        Ok(Exchange {
            sent: count,
            answered,
        })
    })?;
    join(handle, &name, format!("ping {to}"))
}

fn join<T>(handle: NsJoinHandle<io::Result<T>>, ns: &str, what: String) -> Result<T, TrafficError> {
    match handle.join() {
        Ok(result) => result.map_err(io_error(ns, what)),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The bytes a probe of `len` bytes carries: recognisable, and different for each probe.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seed) as u8)
        .collect()
}

/// A server inside an endpoint's namespace, answering until it has served what it expects or
/// stays idle too long; joining it yields how much it served.
pub struct Server {
    handle: NsJoinHandle<io::Result<usize>>,
    namespace: String,
    what: String,
}

impl Server {
    /// Waits for the server; how many datagrams (UDP) or bytes (TCP) it echoed.
    pub fn join(self) -> Result<usize, TrafficError> {
        join(self.handle, &self.namespace, self.what)
    }
}

fn start_server(
    ns: &NetNs,
    what: String,
    serve: impl FnOnce(mpsc::Sender<()>) -> io::Result<usize> + Send + 'static,
) -> Result<Server, TrafficError> {
    let (ready, listening) = mpsc::channel();
    let handle = ns.spawn(move || serve(ready))?;
    let waited = Duration::from_secs(5);
    if listening.recv_timeout(waited).is_err() {
        // It failed before listening: its error says why.
        join(handle, ns.name(), what.clone())?;
        return Err(TrafficError::NotStarted {
            namespace: ns.name().to_owned(),
            what,
            waited,
        });
    }
    Ok(Server {
        handle,
        namespace: ns.name().to_owned(),
        what,
    })
}

/// Starts a UDP echo server on `addr` in `ns`: it echoes up to `expect` datagrams, and stops
/// early once no datagram came for `idle`. Returns once it listens.
pub fn udp_echo_server(
    ns: &NetNs,
    addr: SocketAddrV4,
    expect: usize,
    idle: Duration,
) -> Result<Server, TrafficError> {
    start_server(ns, format!("UDP echo server on {addr}"), move |ready| {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(idle))?;
        let _ = ready.send(());
        let mut buf = [0u8; 65536];
        let mut echoed = 0;
        while echoed < expect {
            let (len, peer) = match socket.recv_from(&mut buf) {
                Ok(received) => received,
                Err(err) if is_timeout(&err) => break,
                Err(err) => return Err(err),
            };
            socket.send_to(&buf[..len], peer)?;
            echoed += 1;
        }
        Ok(echoed)
    })
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends one datagram of each size in `sizes` from a socket in `ns` to `to`, each waiting up to
/// `wait` for its echo; a probe is answered when its echo comes back byte for byte.
pub fn udp_exchange(
    ns: &NetNs,
    to: SocketAddrV4,
    sizes: &[usize],
    wait: Duration,
) -> Result<Exchange, TrafficError> {
    let sizes = sizes.to_vec();
    let name = ns.name().to_owned();
    let handle = ns.spawn(move || -> io::Result<Exchange> {
        let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        socket.connect(to)?;
        let mut answered = 0;
        let mut buf = [0u8; 65536];
        for (i, &size) in sizes.iter().enumerate() {
            let probe = pattern(size, i);
            socket.send(&probe)?;
            let deadline = Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                socket.set_read_timeout(Some(left))?;
                match socket.recv(&mut buf) {
                    Ok(len) if buf[..len] == probe[..] => {
                        answered += 1;
                        break;
                    }
                    Ok(_) => {} // a late echo of an earlier probe
                    Err(err) if is_timeout(&err) => break,
                    // An ICMP error (port unreachable) surfaces on a connected socket.
                    Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(Exchange {
            sent: sizes.len() as u32,
            answered,
        })
    })?;
    join(handle, &name, format!("UDP exchange with {to}"))
}

/// Starts a TCP echo server on `addr` in `ns`: it accepts one connection (waiting up to `idle`)
/// and echoes what it reads until the peer closes its side. Returns once it listens.
pub fn tcp_echo_server(
    ns: &NetNs,
    addr: SocketAddrV4,
    idle: Duration,
) -> Result<Server, TrafficError> {
    start_server(ns, format!("TCP echo server on {addr}"), move |ready| {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let _ = ready.send(());
        let deadline = Instant::now() + idle;
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(err) if is_timeout(&err) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) if is_timeout(&err) => return Ok(0),
                Err(err) => return Err(err),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(idle))?;
        let mut echoed = 0;
        let mut buf = [0u8; 16384];
        loop {
            let len = stream.read(&mut buf)?;
            if len == 0 {
                break;
            }
            stream.write_all(&buf[..len])?;
            echoed += len;
        }
        Ok(echoed)
    })
}

/// Connects from `ns` to a TCP echo server at `to` (waiting up to `wait`), sends `len` bytes,
/// closes its sending side and reads the echo back. True when the whole echo came back intact.
pub fn tcp_exchange(
    ns: &NetNs,
    to: SocketAddrV4,
    len: usize,
    wait: Duration,
) -> Result<bool, TrafficError> {
    let name = ns.name().to_owned();
    let handle = ns.spawn(move || -> io::Result<bool> {
        let mut stream = match TcpStream::connect_timeout(&to.into(), wait) {
            Ok(stream) => stream,
            Err(err) if is_timeout(&err) || err.kind() == io::ErrorKind::ConnectionRefused => {
                return Ok(false);
            }
            Err(err) => return Err(err),
        };
        stream.set_read_timeout(Some(wait))?;
        stream.set_write_timeout(Some(wait))?;
        let data = pattern(len, 0x5a);
        // Write and read at once: the echo would fill both sides' buffers otherwise.
        let mut writer = stream.try_clone()?;
        let sent = data.clone();
        let sender = std::thread::spawn(move || -> io::Result<()> {
            writer.write_all(&sent)?;
            writer.shutdown(std::net::Shutdown::Write)
        });
        let mut echo = Vec::with_capacity(len);
        let read = stream.read_to_end(&mut echo);
        let wrote = sender
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        match (read, wrote) {
            (Ok(_), Ok(())) => Ok(echo == data),
            (Err(err), _) | (_, Err(err)) if is_timeout(&err) => Ok(false),
            (Err(err), _) | (_, Err(err)) => Err(err),
        }
    })?;
    join(handle, &name, format!("TCP exchange with {to}"))
}

/// A frame a [`Capture`] saw arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
}

impl Frame {
    /// "02:..:.. > 02:..:.. type 0x0800, 98 bytes": enough to tell what leaked where.
    pub fn summary(&self) -> String {
        let b = &self.bytes;
        if b.len() < 14 {
            return format!("{} bytes", b.len());
        }
        format!(
            "{} > {} type 0x{:04x}, {} bytes",
            crate::lab::MacAddr(b[6..12].try_into().expect("6 bytes")),
            crate::lab::MacAddr(b[0..6].try_into().expect("6 bytes")),
            u16::from_be_bytes([b[12], b[13]]),
            b.len()
        )
    }
}

/// A capture of every frame arriving on an interface of a namespace (an `AF_PACKET` socket, as
/// tcpdump uses), until [`Capture::stop`].
pub struct Capture {
    stop: Arc<AtomicBool>,
    handle: NsJoinHandle<io::Result<Vec<Frame>>>,
    namespace: String,
    what: String,
}

/// `PACKET_OUTGOING`: a frame this host sent, looped back to packet sockets.
const PACKET_OUTGOING: u8 = 4;

impl Capture {
    /// Starts capturing on `ifname` in `ns`; returns once the socket is open.
    pub fn start(ns: &NetNs, ifname: &str) -> Result<Self, TrafficError> {
        let ifindex = ns.ifindex(ifname)? as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let (ready, open) = mpsc::channel();
        let handle = ns.spawn(move || -> io::Result<Vec<Frame>> {
            let fd: OwnedFd = socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::EthAll,
            )?;
            setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(50))?;
            let _ = ready.send(());
            let mut frames = Vec::new();
            let mut buf = [0u8; 65536];
            // Frames already queued when stop is set are still read: drain, then stop.
            loop {
                let stopping = stopped.load(Ordering::Acquire);
                match recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
                    Ok((len, Some(from)))
                        if from.ifindex() == ifindex && from.pkttype() != PACKET_OUTGOING =>
                    {
                        frames.push(Frame {
                            bytes: buf[..len].to_vec(),
                        });
                    }
                    Ok(_) => {}
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                        if stopping {
                            return Ok(frames);
                        }
                    }
                    Err(errno) => return Err(errno.into()),
                }
            }
        })?;
        let what = format!("capture on {ifname}");
        if open.recv_timeout(Duration::from_secs(5)).is_err() {
            join(handle, ns.name(), what.clone())?;
            return Err(TrafficError::NotStarted {
                namespace: ns.name().to_owned(),
                what,
                waited: Duration::from_secs(5),
            });
        }
        Ok(Self {
            stop,
            handle,
            namespace: ns.name().to_owned(),
            what,
        })
    }

    /// Stops capturing; every frame that arrived meanwhile.
    pub fn stop(self) -> Result<Vec<Frame>, TrafficError> {
        self.stop.store(true, Ordering::Release);
        join(self.handle, &self.namespace, self.what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum_and_replies_are_recognised() {
        let request = echo_request(0x1234, 7);
        assert_eq!(checksum(&request), 0);
        // The reply a kernel sends: type 0, the rest echoed, checksum redone, behind an IPv4
        // header from the pinged address.
        let mut reply = request.clone();
        reply[0] = 0;
        reply[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&reply);
        reply[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut packet = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 1, 11, 10, 0, 1, 10,
        ];
        packet.extend_from_slice(&reply);
        let from = Ipv4Addr::new(10, 0, 1, 11);
        assert!(is_echo_reply(&packet, from, 0x1234, 7));
        assert!(!is_echo_reply(&packet, from, 0x1234, 8), "another sequence");
        assert!(!is_echo_reply(&packet, from, 0x1235, 7), "another ping");
        assert!(!is_echo_reply(
            &packet,
            Ipv4Addr::new(10, 0, 1, 12),
            0x1234,
            7
        ));
        let mut request_seen = packet.clone();
        request_seen[20] = 8;
        assert!(!is_echo_reply(&request_seen, from, 0x1234, 7), "a request");
        let mut damaged = packet.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(
            !is_echo_reply(&damaged, from, 0x1234, 7),
            "a damaged payload"
        );
        assert!(!is_echo_reply(&packet[..24], from, 0x1234, 7), "truncated");
    }

    #[test]
    fn checksum_of_odd_lengths() {
        assert_eq!(checksum(&[0xff]), !0xff00);
        assert_eq!(checksum(&[]), 0xffff);
    }
}
