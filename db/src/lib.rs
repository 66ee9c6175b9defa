//! The config store (SQLite through rusqlite): domain types, validation, schema and migrations,
//! declarative import and export. It is the truth the kernel maps are rebuilt from.
//!
//! - [`Store`] opens (or creates) the database and offers typed add/delete/list/get per noun,
//!   [`Store::snapshot`] for reconcile, and [`Store::apply`] / [`Store::export`] for the
//!   declarative [`Topology`] document (YAML or JSON).
//! - Every write validates in Rust first and fails with a [`StoreError`] naming the problem
//!   and the fix; SQL constraints back the rules up.
//! - The schema is migrated forward on open ([`SCHEMA_VERSION`]); a database from a newer
//!   mizar is refused untouched.

mod apply;
mod error;
mod model;
mod schema;
mod state;
mod store;
mod validate;

pub use apply::{Action, ApplyReport, Change};
pub use error::{Kind, Names, Problems, StoreError};
pub use model::{
    Endpoint, EndpointKind, EndpointSpec, Host, HostRoles, MacAddr, Network, NetworkSpec, Topology,
    Vpc, VpcSpec, default_gateway,
};
pub use schema::SCHEMA_VERSION;
pub use store::{Bouncer, Divider, Store};
pub use validate::{MAX_BOUNCERS, MAX_DIVIDERS, MAX_PREFIX, MAX_VNI};

pub use ipnet::Ipv4Net;
