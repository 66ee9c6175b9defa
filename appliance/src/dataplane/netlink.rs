//! What the kernel says is attached to an interface (RTM_GETLINK, IFLA_XDP): the mode and the
//! program, so that `status` reports the kernel's truth, not a record of what was once done.

use netlink_packet_core::{
    NLA_TYPE_MASK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, Parseable, parse_string,
};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkMessage, LinkMessageBuffer, LinkXdp, XdpAttached},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::AttachMode;

/// From the kernel's UAPI (linux/rtnetlink.h, linux/if_link.h).
const RTM_NEWLINK: u16 = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_XDP: u16 = 43;

/// The XDP attachment of interface `ifindex`: its mode and program id; None when none.
pub fn xdp_attachment(ifindex: u32) -> std::io::Result<Option<(AttachMode, u32)>> {
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    let found = get_links(link, NLM_F_REQUEST)?;
    Ok(found.first().map(|l| (l.mode, l.prog_id)))
}

/// An interface with an XDP program attached, as one dump of every link reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpLink {
    pub ifindex: u32,
    pub ifname: String,
    pub mode: AttachMode,
    pub prog_id: u32,
}

/// Every interface of this namespace with an XDP program attached, in one RTM_GETLINK dump:
/// what `status` and the dashboard read, so that a host with a thousand endpoint veths asks
/// the kernel once, not once per veth.
pub fn xdp_attachments() -> std::io::Result<Vec<XdpLink>> {
    get_links(LinkMessage::default(), NLM_F_REQUEST | NLM_F_DUMP)
}

/// Sends RTM_GETLINK for `link` with `flags` and returns the links with XDP attached among the
/// replies: one for a single interface, every one until NLMSG_DONE for a dump.
fn get_links(link: LinkMessage, flags: u16) -> std::io::Result<Vec<XdpLink>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(link)),
    );
    request.finalize();
    let mut buf = vec![0; request.header.length as usize];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let dump = flags & NLM_F_DUMP != 0;
    let invalid = |err: String| std::io::Error::new(std::io::ErrorKind::InvalidData, err);
    let mut found = Vec::new();
    loop {
        let (reply, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < reply.len() {
            let message =
                NetlinkBuffer::new_checked(&reply[offset..]).map_err(|e| invalid(e.to_string()))?;
            let length = message.length() as usize;
            match message.message_type() {
                NLMSG_DONE => return Ok(found),
                NLMSG_ERROR => {
                    let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(
                        &reply[offset..offset + length],
                    )
                    .map_err(|e| invalid(e.to_string()))?;
                    if let NetlinkPayload::Error(err) = parsed.payload {
                        return Err(err.to_io());
                    }
                }
                RTM_NEWLINK => {
                    found.extend(xdp_link(message.payload()).map_err(invalid)?);
                    if !dump {
                        return Ok(found);
                    }
                }
                other => return Err(invalid(format!("unexpected netlink message type {other}"))),
            }
            if length == 0 {
                return Err(invalid("a netlink message of length 0".into()));
            }
            // Messages are aligned to 4 bytes within a datagram.
            offset += length.next_multiple_of(4);
        }
    }
}

/// The XDP attachment one RTM_NEWLINK payload reports, reading only its name and XDP
/// attributes: a full parse of every attribute of every link (statistics, link info) costs
/// about 50 µs a link, which a thousand endpoint veths turn into 50 ms a sample.
fn xdp_link(payload: &[u8]) -> Result<Option<XdpLink>, String> {
    let link = LinkMessageBuffer::new_checked(payload).map_err(|e| e.to_string())?;
    let mut ifname = String::new();
    let mut xdp = None;
    for nla in link.attributes() {
        let nla = nla.map_err(|e| e.to_string())?;
        match nla.kind() & NLA_TYPE_MASK {
            IFLA_IFNAME => ifname = parse_string(nla.value()).map_err(|e| e.to_string())?,
            IFLA_XDP => {
                let mut mode = None;
                let mut prog_id = 0;
                for inner in NlasIterator::new(nla.value()) {
                    let inner = inner.map_err(|e| e.to_string())?;
                    match LinkXdp::parse(&inner).map_err(|e| e.to_string())? {
                        LinkXdp::Attached(XdpAttached::Driver) => mode = Some(AttachMode::Native),
                        LinkXdp::Attached(XdpAttached::SocketBuffer) => {
                            mode = Some(AttachMode::Generic)
                        }
                        LinkXdp::ProgId(id) => prog_id = id,
                        _ => {}
                    }
                }
                xdp = mode.map(|mode| (mode, prog_id));
            }
            _ => {}
        }
    }
    Ok(xdp.map(|(mode, prog_id)| XdpLink {
        ifindex: link.link_index(),
        ifname,
        mode,
        prog_id,
    }))
}
