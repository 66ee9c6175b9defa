//! Captures: packets tapped at pipeline stages, written as pcapng (one interface description
//! block per tap point, named after it) or classic pcap, that Wireshark and tshark read.
//!
//! Each record keeps what a tap saw: the frame (Geneve frames whole, so outer and inner headers
//! dissect), its timestamp in nanoseconds, the packet id that follows one packet through the
//! pipeline (pcapng `epb_packetid`), the XDP verdict where one is known (`epb_verdict` of type
//! eBPF XDP, which Wireshark shows as `frame.verdict.ebpf_xdp`, as xdpdump writes it), and a
//! comment naming stage, reason, VNI and VPC. Classic pcap keeps the frames and timestamps only
//! (one link type, no per-record options), for tools that read nothing newer.

use std::{borrow::Cow, io::Write, time::Duration};

use pcap_file::{
    DataLink, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgWriter, RawBlock,
        blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
    },
};

/// pcapng block type and option codes of the Enhanced Packet Block. pcap-file 2 writes no
/// packet id or verdict option, so the writer encodes that block itself (in native byte
/// order, as pcap-file's section header declares).
const EPB_TYPE: u32 = 6;
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const EPB_PACKETID: u16 = 5;
const EPB_VERDICT: u16 = 7;
/// `epb_verdict`'s first octet: the verdict is a Linux eBPF XDP action (then 8 octets).
const VERDICT_TYPE_EBPF_XDP: u8 = 2;
/// Classic pcap's header snap length (tcpdump's default).
const PCAP_SNAPLEN: u32 = 262_144;
/// `if_tsresol`: timestamps in nanoseconds (pcap-file writes them so).
const TSRESOL_NS: u8 = 9;

/// The file formats a capture is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// pcapng: tap points as interfaces, verdicts, packet ids and comments.
    #[default]
    PcapNg,
    /// Classic pcap (nanosecond timestamps): frames only.
    Pcap,
}

/// One packet as a tap saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRecord {
    /// The tap point: an index into the points the writer was made with.
    pub point: u32,
    /// Since the Unix epoch.
    pub timestamp_ns: u64,
    /// The same for every record of one packet, whatever the point.
    pub packet_id: u64,
    /// The XDP action at this point, where one is known (XDP_DROP is 1, XDP_PASS 2, ...).
    pub verdict: Option<u32>,
    /// What the point knows: stage, reason, VNI, VPC.
    pub comment: Option<String>,
    /// The frame's bytes as captured (up to the snap length).
    pub data: Vec<u8>,
    /// The frame's length on the wire (at least `data.len()`).
    pub original_len: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("a record names tap point {point}, but the capture has {points}")]
    UnknownPoint { point: u32, points: usize },
    #[error("writing the capture: {0}")]
    Write(#[from] pcap_file::PcapError),
}

/// What a writer has written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    pub records: u64,
    pub bytes: u64,
}

enum Inner<W: Write> {
    PcapNg(PcapNgWriter<W>),
    Pcap(PcapWriter<W>),
}

/// Writes tap records to `W` as pcapng or pcap.
pub struct CaptureWriter<W: Write> {
    inner: Inner<W>,
    points: usize,
    snaplen: u32,
    written: Written,
}

impl<W: Write> CaptureWriter<W> {
    /// Starts a capture of the tap points `points` (pcapng: one interface each, in order),
    /// frames cut at `snaplen` bytes.
    pub fn new(
        writer: W,
        format: Format,
        points: &[String],
        snaplen: u32,
    ) -> Result<Self, CaptureError> {
        let inner = match format {
            Format::PcapNg => Inner::PcapNg(PcapNgWriter::new(writer)?),
            // The header's snap length is the largest frame (as tcpdump writes it): readers
            // such as pcap-file refuse a record whose wire length exceeds it.
            Format::Pcap => Inner::Pcap(PcapWriter::with_header(
                writer,
                PcapHeader {
                    snaplen: PCAP_SNAPLEN,
                    datalink: DataLink::ETHERNET,
                    ts_resolution: TsResolution::NanoSecond,
                    ..PcapHeader::default()
                },
            )?),
        };
        let mut w = Self {
            inner,
            points: 0,
            snaplen,
            written: Written::default(),
        };
        for name in points {
            w.add_interface(name)?;
        }
        Ok(w)
    }

    /// Adds a tap point (pcapng: its interface description block, which may come after
    /// records of other points); returns its index for [`TapRecord::point`].
    pub fn add_interface(&mut self, name: &str) -> Result<u32, CaptureError> {
        if let Inner::PcapNg(w) = &mut self.inner {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: self.snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                    InterfaceDescriptionOption::IfTsResol(TSRESOL_NS),
                ],
            })?;
        }
        self.points += 1;
        Ok(self.points as u32 - 1)
    }

    pub fn write(&mut self, record: &TapRecord) -> Result<(), CaptureError> {
        if record.point as usize >= self.points {
            return Err(CaptureError::UnknownPoint {
                point: record.point,
                points: self.points,
            });
        }
        let timestamp = Duration::from_nanos(record.timestamp_ns);
        let original_len = record.original_len.max(record.data.len() as u32);
        let record = &TapRecord {
            data: record.data[..record.data.len().min(self.snaplen as usize)].to_vec(),
            ..record.clone()
        };
        let bytes = match &mut self.inner {
            Inner::PcapNg(w) => {
                let body = epb_body(record, original_len);
                let len = 12 + body.len() as u32;
                w.write_raw_block(&RawBlock {
                    type_: EPB_TYPE,
                    initial_len: len,
                    body: Cow::Owned(body),
                    trailer_len: len,
                })?
            }
            Inner::Pcap(w) => {
                w.write_packet(&PcapPacket::new(timestamp, original_len, &record.data))?
            }
        };
        self.written.records += 1;
        self.written.bytes += bytes as u64;
        Ok(())
    }

    pub fn written(&self) -> Written {
        self.written
    }

    /// The underlying writer (flush it to be sure every record reached it).
    pub fn into_inner(self) -> W {
        match self.inner {
            Inner::PcapNg(w) => w.into_inner(),
            Inner::Pcap(w) => w.into_writer(),
        }
    }
}

/// Appends a pcapng option: code, length, value padded to 4 octets.
fn push_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend(code.to_ne_bytes());
    out.extend((value.len() as u16).to_ne_bytes());
    out.extend(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// An Enhanced Packet Block's body: interface, timestamp (ns: the interfaces' if_tsresol),
/// lengths, the frame padded to 4 octets, then the options.
fn epb_body(record: &TapRecord, original_len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + record.data.len() + 64);
    out.extend(record.point.to_ne_bytes());
    out.extend(((record.timestamp_ns >> 32) as u32).to_ne_bytes());
    out.extend((record.timestamp_ns as u32).to_ne_bytes());
    out.extend((record.data.len() as u32).to_ne_bytes());
    out.extend(original_len.to_ne_bytes());
    out.extend(&record.data);
    out.resize(out.len().next_multiple_of(4), 0);
    push_option(&mut out, EPB_PACKETID, &record.packet_id.to_ne_bytes());
    if let Some(v) = record.verdict {
        let mut verdict = vec![VERDICT_TYPE_EBPF_XDP];
        verdict.extend(u64::from(v).to_ne_bytes());
        push_option(&mut out, EPB_VERDICT, &verdict);
    }
    if let Some(comment) = &record.comment {
        push_option(&mut out, OPT_COMMENT, comment.as_bytes());
    }
    push_option(&mut out, OPT_ENDOFOPT, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::{
        pcap::PcapReader,
        pcapng::{
            Block, PcapNgReader,
            blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
        },
    };

    fn points() -> Vec<String> {
        ["ul0:transit:entry", "ul0:ON_XDP_REDIRECT:acl:after"]
            .map(str::to_owned)
            .to_vec()
    }

    fn record(point: u32, id: u64, verdict: Option<u32>) -> TapRecord {
        TapRecord {
            point,
            timestamp_ns: 1_765_000_000_123_456_789 + id,
            packet_id: id,
            verdict,
            comment: Some(format!(
                "stage ON_XDP_REDIRECT reason deliver_local vni 100 vpc blue #{id}"
            )),
            data: vec![0xab; 60],
            original_len: 1400,
        }
    }

    #[test]
    fn pcapng_has_an_interface_per_point_and_every_records_options() {
        let mut w = CaptureWriter::new(Vec::new(), Format::PcapNg, &points(), 256).unwrap();
        w.write(&record(0, 7, None)).unwrap();
        w.write(&record(1, 7, Some(1))).unwrap();
        let err = w.write(&record(2, 8, None)).unwrap_err().to_string();
        assert!(err.contains("tap point 2, but the capture has 2"), "{err}");
        // A point first seen after records of others: its interface comes when it does.
        assert_eq!(w.add_interface("veth-a:egress:entry").unwrap(), 2);
        w.write(&record(2, 8, None)).unwrap();
        assert_eq!(w.written().records, 3);
        let bytes = w.into_inner();

        let mut reader = PcapNgReader::new(bytes.as_slice()).unwrap();
        let mut names = Vec::new();
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => {
                    assert_eq!(idb.linktype, DataLink::ETHERNET);
                    assert_eq!(idb.snaplen, 256);
                    assert!(
                        idb.options
                            .contains(&InterfaceDescriptionOption::IfTsResol(9))
                    );
                    for o in &idb.options {
                        if let InterfaceDescriptionOption::IfName(n) = o {
                            names.push(n.to_string());
                        }
                    }
                }
                Block::EnhancedPacket(epb) => packets.push(epb.into_owned()),
                _ => {}
            }
        }
        let mut wanted = points();
        wanted.push("veth-a:egress:entry".to_owned());
        assert_eq!(names, wanted);
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[2].interface_id, 2);
        let (entry, after) = (&packets[0], &packets[1]);
        assert_eq!((entry.interface_id, after.interface_id), (0, 1));
        assert_eq!(entry.timestamp.as_nanos(), 1_765_000_000_123_456_796);
        assert_eq!((entry.original_len, entry.data.len()), (1400, 60));
        let option = |epb: &EnhancedPacketBlock, code: u16| {
            epb.options.iter().find_map(|o| match o {
                EnhancedPacketOption::Unknown(u) if u.code == code => Some(u.value.to_vec()),
                _ => None,
            })
        };
        assert_eq!(
            option(entry, EPB_PACKETID),
            Some(7u64.to_ne_bytes().to_vec())
        );
        assert_eq!(
            option(entry, EPB_VERDICT),
            None,
            "no verdict known at entry"
        );
        let mut verdict = vec![VERDICT_TYPE_EBPF_XDP];
        verdict.extend(1u64.to_ne_bytes());
        assert_eq!(option(after, EPB_VERDICT), Some(verdict));
        assert!(after.options.iter().any(|o| matches!(
            o,
            EnhancedPacketOption::Comment(c) if c.contains("vpc blue")
        )));
    }

    #[test]
    fn classic_pcap_keeps_frames_and_nanosecond_timestamps() {
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, &points(), 128).unwrap();
        w.write(&record(1, 3, Some(2))).unwrap();
        let bytes = w.into_inner();
        let mut reader = PcapReader::new(bytes.as_slice()).unwrap();
        let header = reader.header();
        assert_eq!(
            (header.datalink, header.ts_resolution, header.snaplen),
            (DataLink::ETHERNET, TsResolution::NanoSecond, PCAP_SNAPLEN)
        );
        let packet = reader.next_packet().unwrap().unwrap();
        assert_eq!(packet.timestamp.as_nanos(), 1_765_000_000_123_456_792);
        assert_eq!((packet.orig_len, packet.data.len()), (1400, 60));
        // A frame longer than the snap length is cut to it.
        let mut w = CaptureWriter::new(Vec::new(), Format::Pcap, &points(), 32).unwrap();
        w.write(&record(0, 4, None)).unwrap();
        let bytes = w.into_inner();
        let mut reader = PcapReader::new(bytes.as_slice()).unwrap();
        let packet = reader.next_packet().unwrap().unwrap();
        assert_eq!((packet.orig_len, packet.data.len()), (1400, 32));
        assert!(reader.next_packet().is_none());
    }
}
