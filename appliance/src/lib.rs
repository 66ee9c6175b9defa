//! The Mizar appliance: loads and configures the XDP data plane from the config store, and (in
//! later issues) the dashboard and captures.

pub mod bench;
pub mod dashboard;
pub mod dataplane;
pub mod demo;
pub mod fabric;
pub mod fuzz;
pub mod lab;
pub mod packet;
