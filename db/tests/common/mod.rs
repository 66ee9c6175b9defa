//! A small fabric used by every test: three hosts, two VPCs on the same CIDR ("blue" and
//! "red"), endpoints with the same IP in both.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the fixture"
)]

use mizar_db::{Endpoint, Ipv4Net, MacAddr, Store, StoreError, Topology};

pub const BASE: &str = r#"
this-host: gw1
hosts:
  - { name: gw1, ip: 192.168.50.1, mac: "02:00:c0:a8:32:01", interface: eth0 }
  - { name: h2,  ip: 192.168.50.2, mac: "02:00:c0:a8:32:02" }
  - { name: h3,  ip: 192.168.50.3, mac: "02:00:c0:a8:32:03" }
vpcs:
  - name: blue
    vni: 100
    cidr: 10.0.0.0/16
    dividers: [gw1]
    networks:
      - name: web
        cidr: 10.0.1.0/24
        bouncers: [gw1, h2]
        endpoints:
          - { name: web1, ip: 10.0.1.10, mac: "02:00:0a:00:01:0a", host: h2 }
          - { name: web2, ip: 10.0.1.11, mac: "02:00:0a:00:01:0b", host: gw1, veth: veth-web2 }
          - name: lb
            ip: 10.0.1.100
            mac: "02:00:0a:00:01:64"
            type: scaled
            host: gw1
            backends: [web1, web2]
      - name: db
        cidr: 10.0.2.0/24
        gateway: 10.0.2.254
        bouncers: [h3]
        endpoints:
          - { name: db1, ip: 10.0.2.10, mac: "02:00:0a:00:02:0a", host: h3 }
          - name: fw
            ip: 10.0.2.20
            mac: "02:00:0a:00:02:14"
            type: function
            bypass-decap: true
            host: gw1
            veth: veth-fw
  - name: red
    vni: 200
    cidr: 10.0.0.0/16
    dividers: [gw1, h3]
    networks:
      - name: web
        cidr: 10.0.1.0/24
        bouncers: [h3]
        endpoints:
          # The same IP and MAC as blue's web1: another tenant, another address space.
          - { name: web1, ip: 10.0.1.10, mac: "02:00:0a:00:01:0a", host: h3 }
"#;

pub fn base_doc() -> Topology {
    Topology::from_yaml(BASE).expect("the fixture parses")
}

pub fn base_store() -> Store {
    let mut store = Store::open_in_memory().unwrap();
    store.apply(&base_doc(), false).unwrap();
    store
}

pub fn mac(last: u16) -> MacAddr {
    let [a, b] = last.to_be_bytes();
    MacAddr([0x02, 0, 0, 0, a, b])
}

pub fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

/// A simple endpoint of blue/web hosted on h2.
/// An endpoint of blue/web; its MAC follows its address (a VPC's MACs are unique).
pub fn blue_ep(name: &str, ip: &str) -> Endpoint {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let [_, _, c, d] = ip.octets();
    Endpoint::simple(
        "blue",
        "web",
        name,
        ip,
        mac(u16::from_be_bytes([c, d])),
        "h2",
    )
}

/// Asserts that `result` failed with a message containing every one of `parts`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(result: Result<T, StoreError>, parts: &[&str]) -> StoreError {
    let err = result.expect_err("expected an error");
    let message = err.to_string();
    for part in parts {
        assert!(message.contains(part), "{message:?}\n  lacks {part:?}");
    }
    err
}
