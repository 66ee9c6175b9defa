//! The config store (SQLite through rusqlite): domain types, validation, schema and migrations,
//! declarative import and export. It is the truth the kernel maps are rebuilt from.
//!
//! - [`Store::open`] opens (or creates, with its directory) the database, in WAL mode with
//!   foreign keys on, and migrates it forward ([`SCHEMA_VERSION`]); a database written by a
//!   newer mizar is refused and left untouched.
//! - Typed add/delete/list/get per noun: hosts (and [`Store::set_this_host`]), VPCs, networks,
//!   bouncers, dividers, endpoints. Deletes are refused while something uses the object, or
//!   cascade when asked, and report what went.
//! - [`Store::snapshot`] returns everything as a [`Topology`] in name order, for reconcile.
//! - [`Store::apply`] makes the store what a [`Topology`] document (YAML or JSON) says, in one
//!   transaction, all or nothing; [`Store::export`] gives a document that applies back
//!   unchanged; [`Store::plan`] tells what an apply would change.
//!
//! Every write validates in Rust first and fails with a [`StoreError`] naming the problem and
//! the fix; SQL constraints back the rules up. Every write is one IMMEDIATE transaction, so
//! concurrent `mizar` commands are serialised and none loses another's update.
//!
//! Identity is by name: hosts and VPCs are named uniquely; networks and endpoints uniquely
//! within their VPC (two tenants may both have a network "web" and an endpoint "db1" at the
//! same address). The rules themselves are listed in the `validate` module's source.
//!
//! Applying a document: each object it lists is created or brought to exactly what it says
//! (an omitted optional field takes its default, e.g. the gateway becomes the network's first
//! address). Without `prune` nothing is removed, not even from a list: bouncers, dividers and
//! backends the document does not name stay. With `prune`, whatever it does not list goes.
//! `this-host`, when omitted, leaves this host as it is.
//!
//! ```
//! use mizar_db::{Store, Topology};
//!
//! let doc = Topology::from_yaml(
//!     r#"
//! this-host: gw1
//! hosts:
//!   - { name: gw1, ip: 192.168.50.1, mac: "02:00:00:00:00:01", interface: eth0 }
//! vpcs:
//!   - name: blue
//!     vni: 100
//!     cidr: 10.0.0.0/16
//!     networks:
//!       - name: web
//!         cidr: 10.0.1.0/24
//!         bouncers: [gw1]
//!         endpoints:
//!           - { name: web1, ip: 10.0.1.10, mac: "02:00:00:00:01:0a", host: gw1, veth: veth1 }
//! "#,
//! )?;
//! let mut store = Store::open_in_memory()?;
//! assert_eq!(store.apply(&doc, false)?.len(), 6);
//! assert!(store.apply(&doc, false)?.is_empty()); // idempotent
//!
//! let err = store.network_for("blue", "10.9.0.4".parse().unwrap()).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     r#"VPC "blue" has no network containing 10.9.0.4; add one with mizar net add"#
//! );
//! # Ok::<(), mizar_db::StoreError>(())
//! ```

mod acl;
mod apply;
mod chains;
mod ddos;
mod error;
mod functions;
mod model;
mod proposal;
mod ratelimit;
mod request;
mod schema;
mod state;
mod store;
mod validate;

pub use acl::{
    Acl, AclAction, AclAddr, AclProto, AclRule, AclRuleRow, AclState, MAX_ACL_RULES, PortRange,
};
pub use apply::{Action, ApplyReport, Change};
pub use chains::{
    BUILTIN_FUNCTIONS, CHAIN_STAGES, ChainEdit, ChainLinkRow, ChainSpec, MAX_CHAIN,
    MAX_FN_INSTANCES, SCOPED_STAGES, ScopedChainLinkRow, ScopedChainSpec, parse_stage, scope_words,
};
pub use ddos::{DdosBlock, DdosConfig, DdosLimit, DdosSynLimit, MAX_DDOS_BLOCKS, Threshold};
pub use error::{Kind, Names, Problems, StoreError};
pub use functions::{FN_PROGRAM_SLOTS, LoadedFunction, MAX_LOADED_FUNCTIONS};
pub use ipnet::Ipv4Net;
pub use model::{
    Endpoint, EndpointKind, EndpointSpec, Host, HostRoles, MacAddr, Network, NetworkSpec, Topology,
    Vpc, VpcSpec, default_gateway, parse_cidr, sorted_labels,
};
pub use proposal::{EndpointChange, Proposal};
pub use ratelimit::{Direction, MAX_RATE_LIMITS, RateLimit};
pub use request::{Request, chain_outcome, scoped_chain_outcome};
pub use schema::SCHEMA_VERSION;
pub use store::{Bouncer, CommitGuard, Divider, Refusal, Store};
pub use validate::{MAX_BOUNCERS, MAX_DIVIDERS, MAX_ENDPOINTS, MAX_PREFIX, MAX_VNI};
