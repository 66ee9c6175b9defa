//! Crafting and parsing the frames the data plane handles: inner Ethernet/IPv4 frames (UDP or
//! ICMP echo), the Geneve tunnel around them, and the way back from tunnel bytes to fields.
//!
//! Used by the kernel tests (crafted packets in, bytes checked out) and by the benchmark (the
//! packet of each pipeline path). Ethernet, IPv4, UDP and ICMP come from `etherparse`, with real
//! checksums; the Geneve header and its TLV options are written by hand, and every field can be
//! set to a wrong value on purpose (IHL, fragments, Geneve version, protocol type, option lengths,
//! UDP length) to build the malformed-packet table.
//!
//! ```
//! use mizar::packet::{InnerFrame, Tunnel, parse_tunnel};
//!
//! let inner = InnerFrame::udp([10, 0, 0, 2].into(), [10, 0, 0, 3].into(), 1000, 2000, b"hi").build();
//! let frame = Tunnel::new([192, 168, 0, 1].into(), [192, 168, 0, 2].into(), 42).build(&inner);
//! let parsed = parse_tunnel(&frame).unwrap();
//! assert_eq!(parsed.vni, 42);
//! assert_eq!(parsed.source_host(), Some([192, 168, 0, 1].into()));
//! assert_eq!(parsed.inner, inner);
//! assert!(parsed.ipv4_checksum_ok);
//! ```

use std::net::Ipv4Addr;

use etherparse::{
    EtherType, Ethernet2Header, IcmpEchoHeader, Icmpv4Header, Icmpv4Type, IpFragOffset, IpNumber,
    Ipv4Header, Ipv4Options, TcpHeader, UdpHeader,
};
use mizar_ebpf::abi;

/// An Ethernet address.
pub use mizar_db::MacAddr;

pub const ETH_HEADER_LEN: usize = 14;
pub const IPV4_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;
pub const GENEVE_HEADER_LEN: usize = 8;
/// An option's own header (class, type, length), before its data.
pub const GENEVE_OPTION_HEADER_LEN: usize = 4;

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_VLAN: u16 = 0x8100;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Geneve protocol type of an Ethernet payload (transparent Ethernet bridging).
pub const ETH_P_TEB: u16 = abi::MZ_ETH_P_TEB as u16;
pub const GENEVE_PORT: u16 = abi::MZ_GENEVE_PORT as u16;
/// Mizar's Geneve option class, and its source-host option type.
pub const OPT_CLASS_MIZAR: u16 = abi::MZ_GENEVE_OPT_CLASS as u16;
pub const OPT_TYPE_SOURCE_HOST: u8 = abi::MZ_GENEVE_OPT_SOURCE_HOST as u8;
/// Type bit of a critical option: a receiver that does not know the option must drop the packet.
pub const OPT_TYPE_CRITICAL: u8 = abi::MZ_GENEVE_OPT_CRITICAL as u8;

/// Source MAC of inner frames unless set: a locally administered address no test assigns.
pub const DEFAULT_INNER_SRC_MAC: MacAddr = MacAddr([0x02, 0xee, 0x00, 0x00, 0x00, 0x01]);
/// Destination MAC of inner frames unless set (the transit rewrites it on local delivery).
pub const DEFAULT_INNER_DST_MAC: MacAddr = MacAddr([0x02, 0xee, 0x00, 0x00, 0x00, 0x02]);
pub const DEFAULT_OUTER_SRC_MAC: MacAddr = MacAddr([0x02, 0xaa, 0x00, 0x00, 0x00, 0x01]);
pub const DEFAULT_OUTER_DST_MAC: MacAddr = MacAddr([0x02, 0xaa, 0x00, 0x00, 0x00, 0x02]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error(
        "frame truncated: the {what} needs {needed} bytes at offset {offset}, the frame has {len}"
    )]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("not a Geneve tunnel frame: {0}")]
    NotGeneve(String),
}

fn take<'a>(
    frame: &'a [u8],
    offset: usize,
    needed: usize,
    what: &'static str,
) -> Result<&'a [u8], PacketError> {
    frame
        .get(offset..offset + needed)
        .ok_or(PacketError::Truncated {
            what,
            offset,
            needed,
            len: frame.len(),
        })
}

fn ethernet(src: MacAddr, dst: MacAddr, ether_type: u16) -> [u8; ETH_HEADER_LEN] {
    Ethernet2Header {
        source: src.0,
        destination: dst.0,
        ether_type: EtherType(ether_type),
    }
    .to_bytes()
}

/// The transport inside an inner frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4 {
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: Vec<u8>,
    },
    /// An ICMP echo request.
    IcmpEcho { id: u16, seq: u16, payload: Vec<u8> },
    /// A TCP segment without payload, with the flags given.
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: TcpFlags,
    },
}

/// TCP flags of a test segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpFlags {
    pub const SYN: Self = Self {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    pub const SYN_ACK: Self = Self {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
    };
    pub const ACK: Self = Self {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
}

/// An endpoint's frame: Ethernet + IPv4 + UDP or ICMP echo, all checksums valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerFrame {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub ttl: u8,
    pub l4: L4,
}

impl InnerFrame {
    pub fn udp(
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
    ) -> Self {
        Self {
            src_mac: DEFAULT_INNER_SRC_MAC,
            dst_mac: DEFAULT_INNER_DST_MAC,
            src_ip,
            dst_ip,
            ttl: 64,
            l4: L4::Udp {
                src_port,
                dst_port,
                payload: payload.to_vec(),
            },
        }
    }

    pub fn icmp_echo(
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        id: u16,
        seq: u16,
        payload: &[u8],
    ) -> Self {
        Self {
            l4: L4::IcmpEcho {
                id,
                seq,
                payload: payload.to_vec(),
            },
            ..Self::udp(src_ip, dst_ip, 0, 0, &[])
        }
    }

    pub fn tcp(
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        flags: TcpFlags,
    ) -> Self {
        Self {
            l4: L4::Tcp {
                src_port,
                dst_port,
                flags,
            },
            ..Self::udp(src_ip, dst_ip, 0, 0, &[])
        }
    }

    /// Sets the Ethernet addresses.
    pub fn macs(mut self, src: MacAddr, dst: MacAddr) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let (protocol, l4): (IpNumber, Vec<u8>) = match &self.l4 {
            L4::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                let udp = UdpHeader::with_ipv4_checksum(
                    *src_port,
                    *dst_port,
                    &self.ipv4(IpNumber::UDP, UDP_HEADER_LEN + payload.len()),
                    payload,
                )
                .expect("an inner UDP payload fits in a datagram");
                (IpNumber::UDP, [&udp.to_bytes()[..], payload].concat())
            }
            L4::IcmpEcho { id, seq, payload } => {
                let icmp = Icmpv4Header::with_checksum(
                    Icmpv4Type::EchoRequest(IcmpEchoHeader { id: *id, seq: *seq }),
                    payload,
                );
                (IpNumber::ICMP, [&icmp.to_bytes()[..], payload].concat())
            }
            L4::Tcp {
                src_port,
                dst_port,
                flags,
            } => {
                let mut tcp = TcpHeader::new(*src_port, *dst_port, 1, 64240);
                tcp.syn = flags.syn;
                tcp.ack = flags.ack;
                tcp.fin = flags.fin;
                tcp.rst = flags.rst;
                tcp.checksum = tcp
                    .calc_checksum_ipv4(&self.ipv4(IpNumber::TCP, tcp.header_len()), &[])
                    .expect("a TCP header fits");
                (IpNumber::TCP, tcp.to_bytes().to_vec())
            }
        };
        let ip = self.ipv4(protocol, l4.len());
        let mut frame = Vec::with_capacity(ETH_HEADER_LEN + ip.header_len() + l4.len());
        frame.extend_from_slice(&ethernet(self.src_mac, self.dst_mac, ETH_P_IPV4));
        frame.extend_from_slice(&ip.to_bytes());
        frame.extend_from_slice(&l4);
        frame
    }

    fn ipv4(&self, protocol: IpNumber, payload_len: usize) -> Ipv4Header {
        let payload_len = u16::try_from(payload_len).expect("an inner payload fits in IPv4");
        let mut ip = Ipv4Header::new(
            payload_len,
            self.ttl,
            protocol,
            self.src_ip.octets(),
            self.dst_ip.octets(),
        )
        .expect("an inner payload fits in IPv4");
        ip.header_checksum = ip.calc_header_checksum();
        ip
    }
}

/// An ARP request (who has `target_ip`? tell `sender_ip`), broadcast.
pub fn arp_request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    let mut frame = ethernet(sender_mac, MacAddr([0xff; 6]), ETH_P_ARP).to_vec();
    frame.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    frame.extend_from_slice(&sender_mac.0);
    frame.extend_from_slice(&sender_ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target_ip.octets());
    frame
}

/// One Geneve option (a TLV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneveOption {
    pub class: u16,
    /// The type byte, critical bit ([`OPT_TYPE_CRITICAL`]) included.
    pub kind: u8,
    /// A multiple of 4 bytes, at most 124.
    pub data: Vec<u8>,
    /// Written into the 5-bit length field (in 4-byte words) instead of the data's length:
    /// for options whose length runs past the option area or the packet.
    pub length_override: Option<u8>,
}

impl GeneveOption {
    /// # Panics
    /// If `data` is not a whole number of 4-byte words up to 31 of them (what the length
    /// field can express); use [`GeneveOption::length_override`] or raw option bytes to lie.
    pub fn new(class: u16, kind: u8, data: &[u8]) -> Self {
        assert!(
            data.len().is_multiple_of(4) && data.len() <= 31 * 4,
            "Geneve option data must be 0 to 31 four-byte words, not {} bytes",
            data.len()
        );
        Self {
            class,
            kind,
            data: data.to_vec(),
            length_override: None,
        }
    }

    /// Mizar's source-host option: the underlay address of the sending endpoint's host.
    pub fn source_host(host: Ipv4Addr) -> Self {
        Self::new(OPT_CLASS_MIZAR, OPT_TYPE_SOURCE_HOST, &host.octets())
    }

    pub fn is_critical(&self) -> bool {
        self.kind & OPT_TYPE_CRITICAL != 0
    }

    /// The host this option names, if it is a well-formed source-host option.
    pub fn as_source_host(&self) -> Option<Ipv4Addr> {
        let data: [u8; 4] = self.data.as_slice().try_into().ok()?;
        (self.class == OPT_CLASS_MIZAR && self.kind == OPT_TYPE_SOURCE_HOST)
            .then(|| Ipv4Addr::from(data))
    }

    /// Bytes this option occupies as written (header and data).
    pub fn encoded_len(&self) -> usize {
        GENEVE_OPTION_HEADER_LEN + self.data.len()
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        let words = self.length_override.unwrap_or((self.data.len() / 4) as u8);
        out.extend_from_slice(&self.class.to_be_bytes());
        out.push(self.kind);
        out.push(words & 0x1f);
        out.extend_from_slice(&self.data);
    }
}

/// The outer headers of a Geneve tunnel packet: Ethernet, IPv4, UDP, Geneve and its options.
/// [`Tunnel::new`] gives a well-formed packet; every public field can then be bent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    /// The outer EtherType (IPv4 unless set otherwise).
    pub ether_type: u16,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub ttl: u8,
    pub identification: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units (13 bits).
    pub fragment_offset: u16,
    /// The outer IPv4 protocol (UDP unless set otherwise).
    pub ip_protocol: u8,
    /// IPv4 options: up to 40 bytes, padded here to a multiple of 4 (IHL grows with them).
    pub ip_options: Vec<u8>,
    /// Written into the IHL field instead of the header's real length in words.
    pub ihl_override: Option<u8>,
    /// Written into the IPv4 total length instead of the real length.
    pub total_len_override: Option<u16>,
    pub src_port: u16,
    pub dst_port: u16,
    /// Written into the UDP length instead of the real length.
    pub udp_len_override: Option<u16>,
    /// Compute the outer UDP checksum (false: zero, as Mizar sends and RFC 8926 allows).
    pub udp_checksum: bool,
    /// Geneve version (2 bits); 0 is the only one defined.
    pub geneve_version: u8,
    /// Geneve O (control packet) and C (critical options present) flags.
    pub oam: bool,
    pub critical: bool,
    /// Geneve protocol type of the payload ([`ETH_P_TEB`] unless set otherwise).
    pub protocol: u16,
    pub vni: u32,
    pub options: Vec<GeneveOption>,
    /// Written instead of `options` (any bytes, even a partial TLV).
    pub raw_options: Option<Vec<u8>>,
    /// Written into the 6-bit option length field (4-byte words) instead of the real length.
    pub opt_len_override: Option<u8>,
}

impl Tunnel {
    /// A well-formed tunnel packet from `src_ip` to `dst_ip` carrying Mizar's source-host option
    /// naming `src_ip`.
    pub fn new(src_ip: Ipv4Addr, dst_ip: Ipv4Addr, vni: u32) -> Self {
        Self {
            src_mac: DEFAULT_OUTER_SRC_MAC,
            dst_mac: DEFAULT_OUTER_DST_MAC,
            ether_type: ETH_P_IPV4,
            src_ip,
            dst_ip,
            ttl: 64,
            identification: 0,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            ip_protocol: IpNumber::UDP.0,
            ip_options: Vec::new(),
            ihl_override: None,
            total_len_override: None,
            src_port: 50000,
            dst_port: GENEVE_PORT,
            udp_len_override: None,
            udp_checksum: false,
            geneve_version: 0,
            oam: false,
            critical: false,
            protocol: ETH_P_TEB,
            vni,
            options: vec![GeneveOption::source_host(src_ip)],
            raw_options: None,
            opt_len_override: None,
        }
    }

    pub fn macs(mut self, src: MacAddr, dst: MacAddr) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Replaces the Geneve options.
    pub fn options(mut self, options: Vec<GeneveOption>) -> Self {
        self.options = options;
        self
    }

    /// The Geneve option bytes as they will be written.
    pub fn option_bytes(&self) -> Vec<u8> {
        match &self.raw_options {
            Some(raw) => raw.clone(),
            None => {
                let mut out = Vec::new();
                for opt in &self.options {
                    opt.write(&mut out);
                }
                out
            }
        }
    }

    /// The Geneve header and its options.
    pub fn geneve_bytes(&self) -> Vec<u8> {
        let options = self.option_bytes();
        let words = self
            .opt_len_override
            .unwrap_or_else(|| u8::try_from(options.len().div_ceil(4)).unwrap_or(u8::MAX));
        let mut out = Vec::with_capacity(GENEVE_HEADER_LEN + options.len());
        out.push((self.geneve_version & 0x3) << 6 | (words & 0x3f));
        out.push(u8::from(self.oam) << 7 | u8::from(self.critical) << 6);
        out.extend_from_slice(&self.protocol.to_be_bytes());
        out.extend_from_slice(&self.vni.to_be_bytes()[1..]);
        out.push(0);
        out.extend_from_slice(&options);
        out
    }

    /// The whole frame around `inner` (an Ethernet frame, or any bytes).
    pub fn build(&self, inner: &[u8]) -> Vec<u8> {
        let mut udp_payload = self.geneve_bytes();
        udp_payload.extend_from_slice(inner);
        let udp_len = UDP_HEADER_LEN + udp_payload.len();

        let mut ip_options = self.ip_options.clone();
        ip_options.resize(ip_options.len().next_multiple_of(4), 0);
        let mut ip = Ipv4Header {
            total_len: 0,
            identification: self.identification,
            dont_fragment: self.dont_fragment,
            more_fragments: self.more_fragments,
            fragment_offset: IpFragOffset::try_new(self.fragment_offset & 0x1fff)
                .expect("masked to 13 bits"),
            time_to_live: self.ttl,
            protocol: IpNumber(self.ip_protocol),
            source: self.src_ip.octets(),
            destination: self.dst_ip.octets(),
            options: Ipv4Options::try_from(&ip_options[..])
                .expect("IPv4 options are at most 40 bytes"),
            ..Default::default()
        };
        let total_len = ip.header_len() + udp_len;
        ip.total_len = self
            .total_len_override
            .unwrap_or_else(|| u16::try_from(total_len).expect("the packet fits in IPv4"));

        let udp_len_field = self
            .udp_len_override
            .unwrap_or_else(|| u16::try_from(udp_len).expect("checked by IPv4"));
        let mut udp = UdpHeader {
            source_port: self.src_port,
            destination_port: self.dst_port,
            length: udp_len_field,
            checksum: 0,
        };
        if self.udp_checksum {
            udp.checksum = udp
                .calc_checksum_ipv4(&ip, &udp_payload)
                .expect("the datagram fits");
        }

        let mut ip_bytes = ip.to_bytes().to_vec();
        if let Some(ihl) = self.ihl_override {
            ip_bytes[0] = 0x40 | (ihl & 0x0f);
        }
        set_ipv4_checksum(&mut ip_bytes);

        let mut frame = Vec::with_capacity(ETH_HEADER_LEN + ip_bytes.len() + udp_len);
        frame.extend_from_slice(&ethernet(self.src_mac, self.dst_mac, self.ether_type));
        frame.extend_from_slice(&ip_bytes);
        frame.extend_from_slice(&udp.to_bytes());
        frame.extend_from_slice(&udp_payload);
        frame
    }
}

/// The Internet checksum (RFC 1071) of `bytes`, as it is written into a header.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Recomputes the checksum of the IPv4 header `header` (all of it: options included).
pub fn set_ipv4_checksum(header: &mut [u8]) {
    header[10..12].copy_from_slice(&[0, 0]);
    let check = internet_checksum(header);
    header[10..12].copy_from_slice(&check.to_be_bytes());
}

/// Whether an IPv4 header (options included) carries a valid checksum.
pub fn ipv4_checksum_ok(header: &[u8]) -> bool {
    internet_checksum(header) == 0
}

/// Cuts `frame` (Ethernet + IPv4 + UDP + ...) to `len` bytes and keeps it self-consistent where
/// its headers are whole: the IPv4 total length and the UDP length shrink to what is left and the
/// IPv4 checksum is recomputed. So the frame is truncated at a header boundary, not just short of
/// what its IPv4 header claims.
pub fn truncate_consistently(frame: &[u8], len: usize) -> Vec<u8> {
    let mut out = frame[..len.min(frame.len())].to_vec();
    let ip_start = ETH_HEADER_LEN;
    if out.len() < ip_start + IPV4_HEADER_LEN {
        return out;
    }
    let ihl = usize::from(out[ip_start] & 0x0f) * 4;
    if ihl < IPV4_HEADER_LEN || out.len() < ip_start + ihl {
        return out;
    }
    let ip_len = out.len() - ip_start;
    out[ip_start + 2..ip_start + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    set_ipv4_checksum(&mut out[ip_start..ip_start + ihl]);
    let udp_start = ip_start + ihl;
    if out.len() >= udp_start + UDP_HEADER_LEN {
        let udp_len = (out.len() - udp_start) as u16;
        out[udp_start + 4..udp_start + 6].copy_from_slice(&udp_len.to_be_bytes());
    }
    out
}

/// A Geneve tunnel frame taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedTunnel {
    pub eth: Ethernet2Header,
    /// The outer IPv4 header, options included.
    pub ip: Ipv4Header,
    /// The outer IPv4 header's bytes as received.
    pub ip_header: Vec<u8>,
    pub ipv4_checksum_ok: bool,
    pub udp: UdpHeader,
    pub geneve_version: u8,
    pub oam: bool,
    pub critical: bool,
    pub protocol: u16,
    pub vni: u32,
    pub options: Vec<GeneveOption>,
    /// Everything after the options: the inner Ethernet frame.
    pub inner: Vec<u8>,
    /// Offset of the inner frame in the tunnel frame (the bytes a decapsulation strips).
    pub inner_offset: usize,
}

impl ParsedTunnel {
    /// The host named by the first source-host option.
    pub fn source_host(&self) -> Option<Ipv4Addr> {
        self.options.iter().find_map(GeneveOption::as_source_host)
    }

    pub fn src_ip(&self) -> Ipv4Addr {
        self.ip.source.into()
    }

    pub fn dst_ip(&self) -> Ipv4Addr {
        self.ip.destination.into()
    }
}

/// Takes a Geneve tunnel frame apart (Ethernet + IPv4 + UDP to 6081 + Geneve + options). Does
/// not judge the values (a bad checksum is reported in `ipv4_checksum_ok`, a wrong version in
/// `geneve_version`); fails only where the structure itself is missing.
pub fn parse_tunnel(frame: &[u8]) -> Result<ParsedTunnel, PacketError> {
    let (eth, _) = Ethernet2Header::from_slice(frame).map_err(|_| PacketError::Truncated {
        what: "outer Ethernet header",
        offset: 0,
        needed: ETH_HEADER_LEN,
        len: frame.len(),
    })?;
    if eth.ether_type != EtherType::IPV4 {
        return Err(PacketError::NotGeneve(format!(
            "EtherType {:#06x} is not IPv4",
            eth.ether_type.0
        )));
    }
    let ip_start = ETH_HEADER_LEN;
    let first = take(frame, ip_start, 1, "outer IPv4 header")?[0];
    let ihl = usize::from(first & 0x0f) * 4;
    let ip_header = take(
        frame,
        ip_start,
        ihl.max(IPV4_HEADER_LEN),
        "outer IPv4 header",
    )?;
    let (ip, _) = Ipv4Header::from_slice(ip_header)
        .map_err(|err| PacketError::NotGeneve(format!("outer IPv4 header: {err}")))?;
    if ip.protocol != IpNumber::UDP {
        return Err(PacketError::NotGeneve(format!(
            "IP protocol {} is not UDP",
            ip.protocol.0
        )));
    }
    let udp_start = ip_start + ihl;
    let (udp, _) = UdpHeader::from_slice(take(frame, udp_start, UDP_HEADER_LEN, "UDP header")?)
        .expect("8 bytes taken");
    if udp.destination_port != GENEVE_PORT {
        return Err(PacketError::NotGeneve(format!(
            "UDP port {} is not Geneve's",
            udp.destination_port
        )));
    }
    let geneve_start = udp_start + UDP_HEADER_LEN;
    let g = take(frame, geneve_start, GENEVE_HEADER_LEN, "Geneve header")?;
    let options_len = usize::from(g[0] & 0x3f) * 4;
    let options_start = geneve_start + GENEVE_HEADER_LEN;
    let options_area = take(frame, options_start, options_len, "Geneve options")?;
    let mut options = Vec::new();
    let mut off = 0;
    while off < options_len {
        let h = take(
            options_area,
            off,
            GENEVE_OPTION_HEADER_LEN,
            "Geneve option header",
        )?;
        let data_len = usize::from(h[3] & 0x1f) * 4;
        let data = take(
            options_area,
            off + GENEVE_OPTION_HEADER_LEN,
            data_len,
            "Geneve option data",
        )?;
        options.push(GeneveOption {
            class: u16::from_be_bytes([h[0], h[1]]),
            kind: h[2],
            data: data.to_vec(),
            length_override: None,
        });
        off += GENEVE_OPTION_HEADER_LEN + data_len;
    }
    let inner_offset = options_start + options_len;
    Ok(ParsedTunnel {
        eth,
        ip,
        ip_header: ip_header.to_vec(),
        ipv4_checksum_ok: ipv4_checksum_ok(ip_header),
        udp,
        geneve_version: g[0] >> 6,
        oam: g[1] & 0x80 != 0,
        critical: g[1] & 0x40 != 0,
        protocol: u16::from_be_bytes([g[2], g[3]]),
        vni: u32::from_be_bytes([0, g[4], g[5], g[6]]),
        options,
        inner: frame[inner_offset..].to_vec(),
        inner_offset,
    })
}

/// An inner frame taken apart (what an endpoint receives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedInner {
    pub eth: Ethernet2Header,
    pub ip: Ipv4Header,
    pub ipv4_checksum_ok: bool,
    /// The IPv4 payload (the UDP or ICMP message), as long as the IPv4 total length says.
    pub payload: Vec<u8>,
}

/// Takes an Ethernet + IPv4 frame apart.
pub fn parse_inner(frame: &[u8]) -> Result<ParsedInner, PacketError> {
    let (eth, rest) = Ethernet2Header::from_slice(frame).map_err(|_| PacketError::Truncated {
        what: "inner Ethernet header",
        offset: 0,
        needed: ETH_HEADER_LEN,
        len: frame.len(),
    })?;
    if eth.ether_type != EtherType::IPV4 {
        return Err(PacketError::NotGeneve(format!(
            "inner EtherType {:#06x} is not IPv4",
            eth.ether_type.0
        )));
    }
    let (ip, _) = Ipv4Header::from_slice(rest).map_err(|_| PacketError::Truncated {
        what: "inner IPv4 header",
        offset: ETH_HEADER_LEN,
        needed: IPV4_HEADER_LEN,
        len: frame.len(),
    })?;
    let header_len = ip.header_len();
    let payload = take(
        rest,
        header_len,
        usize::from(ip.total_len).saturating_sub(header_len),
        "inner IPv4 payload",
    )?;
    Ok(ParsedInner {
        ipv4_checksum_ok: ipv4_checksum_ok(&rest[..header_len]),
        eth,
        ip,
        payload: payload.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn inner() -> InnerFrame {
        InnerFrame::udp(ip("10.0.0.2"), ip("10.0.0.3"), 1234, 5678, b"hello, vpc")
    }

    #[test]
    fn inner_udp_frame_has_valid_checksums() {
        let frame = inner().build();
        assert_eq!(frame.len(), 14 + 20 + 8 + 10);
        let sliced = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ipv4)) = &sliced.net else {
            panic!("not IPv4: {sliced:?}")
        };
        assert_eq!(ipv4.header().source_addr(), ip("10.0.0.2"));
        let Some(etherparse::TransportSlice::Udp(udp)) = &sliced.transport else {
            panic!("not UDP")
        };
        assert_eq!(udp.destination_port(), 5678);
        let expected = udp
            .to_header()
            .calc_checksum_ipv4(&ipv4.header().to_header(), udp.payload())
            .unwrap();
        assert_eq!(udp.checksum(), expected);
        assert_ne!(udp.checksum(), 0);
        let parsed = parse_inner(&frame).unwrap();
        assert!(parsed.ipv4_checksum_ok);
        assert_eq!(parsed.eth.destination, DEFAULT_INNER_DST_MAC.0);
        assert_eq!(&parsed.payload[8..], b"hello, vpc");
    }

    #[test]
    fn inner_icmp_echo_frame() {
        let frame = InnerFrame::icmp_echo(ip("10.0.0.2"), ip("10.0.0.3"), 7, 1, b"ping")
            .macs(MacAddr([1; 6]), MacAddr([2; 6]))
            .build();
        let parsed = parse_inner(&frame).unwrap();
        assert_eq!(parsed.ip.protocol, IpNumber::ICMP);
        assert_eq!(parsed.eth.source, [1; 6]);
        assert_eq!(parsed.payload[0], 8, "echo request");
        assert_eq!(internet_checksum(&parsed.payload), 0, "ICMP checksum valid");
    }

    #[test]
    fn tunnel_round_trip() {
        let inner = inner().build();
        let tunnel = Tunnel::new(ip("192.168.1.1"), ip("192.168.1.2"), 0x12_3456).options(vec![
            GeneveOption::new(0x0104, 0x01, &[]),
            GeneveOption::source_host(ip("192.168.1.9")),
            GeneveOption::new(0xffff, 0x7f, &[1, 2, 3, 4, 5, 6, 7, 8]),
        ]);
        let frame = tunnel.build(&inner);
        assert_eq!(frame.len(), 14 + 20 + 8 + 8 + 4 + 8 + 12 + inner.len());
        let parsed = parse_tunnel(&frame).unwrap();
        assert!(parsed.ipv4_checksum_ok);
        assert_eq!(parsed.src_ip(), ip("192.168.1.1"));
        assert_eq!(parsed.dst_ip(), ip("192.168.1.2"));
        assert_eq!(parsed.ip.time_to_live, 64);
        assert_eq!(usize::from(parsed.ip.total_len), frame.len() - 14);
        assert_eq!(usize::from(parsed.udp.length), frame.len() - 34);
        assert_eq!(parsed.udp.destination_port, GENEVE_PORT);
        assert_eq!(parsed.udp.checksum, 0);
        assert_eq!(parsed.geneve_version, 0);
        assert_eq!(parsed.protocol, ETH_P_TEB);
        assert_eq!(parsed.vni, 0x12_3456);
        assert_eq!(parsed.options, tunnel.options);
        assert_eq!(parsed.source_host(), Some(ip("192.168.1.9")));
        assert_eq!(parsed.inner, inner);
        assert_eq!(parsed.inner_offset, frame.len() - inner.len());
    }

    #[test]
    fn default_tunnel_is_what_egress_sends() {
        let frame = Tunnel::new(ip("192.168.1.1"), ip("192.168.1.2"), 7).build(&inner().build());
        // Geneve: version 0, 2 words of options, no flags, TEB, VNI 7.
        assert_eq!(&frame[42..50], &[0x02, 0x00, 0x65, 0x58, 0, 0, 7, 0]);
        // Source-host option: class 0x0111, type 0x48, 1 word, the host.
        assert_eq!(&frame[50..58], &[0x01, 0x11, 0x48, 0x01, 192, 168, 1, 1]);
        assert_eq!(
            frame.len() - inner().build().len(),
            abi::MZ_ENCAP_OVERHEAD as usize
        );
    }

    #[test]
    fn udp_checksum_when_asked() {
        let mut tunnel = Tunnel::new(ip("192.168.1.1"), ip("192.168.1.2"), 7);
        tunnel.udp_checksum = true;
        let frame = tunnel.build(&inner().build());
        let parsed = parse_tunnel(&frame).unwrap();
        let expected = parsed
            .udp
            .calc_checksum_ipv4(&parsed.ip, &frame[42..])
            .unwrap();
        assert_ne!(parsed.udp.checksum, 0);
        assert_eq!(parsed.udp.checksum, expected);
    }

    #[test]
    fn knobs_bend_the_fields() {
        let mut tunnel = Tunnel::new(ip("192.168.1.1"), ip("192.168.1.2"), 7);
        tunnel.ttl = 1;
        tunnel.ip_options = vec![0x01, 0x01, 0x01]; // three NOPs, padded to a word
        tunnel.more_fragments = true;
        tunnel.fragment_offset = 5;
        tunnel.geneve_version = 2;
        tunnel.protocol = 0x0800;
        tunnel.critical = true;
        let frame = tunnel.build(&inner().build());
        let parsed = parse_tunnel(&frame).unwrap();
        assert!(parsed.ipv4_checksum_ok);
        assert_eq!(parsed.ip.ihl(), 6);
        assert_eq!(parsed.ip.options.as_slice(), &[1, 1, 1, 0]);
        assert_eq!(parsed.ip.time_to_live, 1);
        assert!(parsed.ip.more_fragments);
        assert_eq!(parsed.ip.fragment_offset.value(), 5);
        assert_eq!(parsed.geneve_version, 2);
        assert_eq!(parsed.protocol, 0x0800);
        assert!(parsed.critical);
        assert_eq!(parsed.inner, inner().build());

        let mut tunnel = Tunnel::new(ip("192.168.1.1"), ip("192.168.1.2"), 7);
        tunnel.ihl_override = Some(4);
        tunnel.udp_len_override = Some(9);
        tunnel.opt_len_override = Some(5);
        let frame = tunnel.build(&[]);
        assert_eq!(frame[14], 0x44);
        assert!(ipv4_checksum_ok(&frame[14..34]));
        assert_eq!(&frame[38..40], &9u16.to_be_bytes());
        assert_eq!(frame[42], 5);
    }

    #[test]
    fn option_length_override_and_raw_options() {
        let mut opt = GeneveOption::source_host(ip("1.2.3.4"));
        opt.length_override = Some(3);
        let mut bytes = Vec::new();
        opt.write(&mut bytes);
        assert_eq!(bytes, [0x01, 0x11, 0x48, 0x03, 1, 2, 3, 4]);
        // The parser refuses an option running past the area.
        let frame = Tunnel::new(ip("1.1.1.1"), ip("2.2.2.2"), 1)
            .options(vec![opt])
            .build(&[]);
        assert!(matches!(
            parse_tunnel(&frame),
            Err(PacketError::Truncated {
                what: "Geneve option data",
                ..
            })
        ));

        let mut tunnel = Tunnel::new(ip("1.1.1.1"), ip("2.2.2.2"), 1);
        tunnel.raw_options = Some(vec![0xde, 0xad]);
        let frame = tunnel.build(&[]);
        assert_eq!(frame[42] & 0x3f, 1, "rounded up to a word");
        assert_eq!(&frame[50..], &[0xde, 0xad]);
    }

    #[test]
    fn consistent_truncation() {
        let frame = Tunnel::new(ip("1.1.1.1"), ip("2.2.2.2"), 1).build(&inner().build());
        let cut = truncate_consistently(&frame, 46);
        assert_eq!(cut.len(), 46);
        assert_eq!(u16::from_be_bytes([cut[16], cut[17]]), 32);
        assert!(ipv4_checksum_ok(&cut[14..34]));
        assert_eq!(u16::from_be_bytes([cut[38], cut[39]]), 12);
        assert!(matches!(
            parse_tunnel(&cut),
            Err(PacketError::Truncated {
                what: "Geneve header",
                ..
            })
        ));
        // Inside the IPv4 header nothing can be kept consistent: just cut.
        assert_eq!(truncate_consistently(&frame, 20), frame[..20]);
    }

    #[test]
    fn arp_request_layout() {
        let frame = arp_request(MacAddr([2; 6]), ip("10.0.0.2"), ip("10.0.0.1"));
        assert_eq!(frame.len(), 42);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[20..22], &[0, 1]);
        assert_eq!(&frame[38..42], &[10, 0, 0, 1]);
    }

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071 style example: a header from the wild.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        set_ipv4_checksum(&mut h);
        assert_eq!(&h[10..12], &[0xb8, 0x61]);
        assert!(ipv4_checksum_ok(&h));
        h[8] -= 1;
        assert!(!ipv4_checksum_ok(&h));
    }
}
