//! What the kernel says is attached to an interface (RTM_GETLINK, IFLA_XDP): the mode and the
//! program, so that `status` reports the kernel's truth, not a record of what was once done.

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::AttachMode;

/// The XDP attachment of interface `ifindex`: its mode and program id; None when none.
pub fn xdp_attachment(ifindex: u32) -> std::io::Result<Option<(AttachMode, u32)>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut link = LinkMessage::default();
    link.header.index = ifindex;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(link)),
    );
    request.finalize();
    let mut buf = vec![0; request.header.length as usize];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let (reply, _) = socket.recv_from_full()?;
    let invalid = |err: String| std::io::Error::new(std::io::ErrorKind::InvalidData, err);
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .map_err(|err| invalid(err.to_string()))?;
    let link = match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => link,
        NetlinkPayload::Error(err) => return Err(err.to_io()),
        other => return Err(invalid(format!("unexpected reply {other:?}"))),
    };
    let mut mode = None;
    let mut prog_id = 0;
    for attr in link.attributes {
        let LinkAttribute::Xdp(xdp) = attr else {
            continue;
        };
        for x in xdp {
            match x {
                LinkXdp::Attached(XdpAttached::Driver) => mode = Some(AttachMode::Native),
                LinkXdp::Attached(XdpAttached::SocketBuffer) => mode = Some(AttachMode::Generic),
                LinkXdp::ProgId(id) => prog_id = id,
                _ => {}
            }
        }
    }
    Ok(mode.map(|mode| (mode, prog_id)))
}
