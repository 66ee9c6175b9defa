//! The Mizar appliance: loads and configures the XDP data plane, and (in later issues) the config
//! store, reconcile loop, dashboard and captures.

pub mod bench;
pub mod dataplane;
pub mod lab;
pub mod packet;
