//! Captures: packets tapped at pipeline stages, written as pcap/pcapng (one interface block per
//! tap point) that Wireshark and tshark read.
//!
//! Empty until the captures issue lands.
