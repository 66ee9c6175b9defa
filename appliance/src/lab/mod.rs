//! Labs in network namespaces, shared by the kernel tests and `mizar demo`: simulated hosts on a
//! bridged underlay, endpoints behind veths into their hosts, with the settings the data plane
//! needs on the receiving ends of its veths (DESIGN.md, pitfalls).
//!
//! ```text
//!                 <prefix>-switch: br0
//!        ┌─────────────┴─────────────┐
//!     p-<host>                    p-<host>        bridge ports, each running mz_pass
//!        │ veth                      │
//!       ul0  <prefix>-<host>        ul0  ...      underlay address; the data plane's transit
//!     v-<ep> ...                                  host-side endpoint veths; egress goes here
//!        │ veth
//!      eth0  <prefix>-<ep>                        endpoint address and MAC, mz_pass, GRO on,
//!                                                 transmit checksum offload off
//! ```
//!
//! Everything lives in namespaces the lab creates: nothing touches the root namespace's
//! interfaces, addresses or routes. [`Lab`] removes its namespaces and pins when dropped (or
//! [`Lab::down`]); [`Lab::keep`] leaves them for a later [`Lab::remove_by_prefix`], which also
//! cleans up after a process that died before it could.

mod ethtool;
mod inject;
mod netns;
mod pass;
mod spec;
mod topology;

use std::{io, path::PathBuf, process::ExitStatus};

pub use inject::FrameInjector;
pub use netns::{
    Feature, IFNAME_MAX, NETNS_DIR, NetNs, NetNsGuard, NsJoinHandle, delete_namespace,
    list_namespaces, require_tools, run, veth_pair,
};
pub use pass::{PassLink, PassProgram};
pub use spec::{
    BRIDGE, DEFAULT_ENDPOINT_MTU, DEFAULT_PIN_ROOT, DEFAULT_UNDERLAY_MTU, ENDPOINT_IFNAME,
    EndpointSpec, HostSpec, Ipv4Net, LabSpec, NAME_MAX, UNDERLAY_IFNAME, host_ifname, switch_port,
};
pub use topology::{Lab, LabEndpoint, LabHost, Leftovers};

use crate::dataplane::DataplaneError;

/// A MAC address.
pub use mizar_db::MacAddr;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("invalid lab: {0}")]
    Spec(String),
    #[error(
        "network namespace {namespace:?} does not exist (no {NETNS_DIR}/{namespace}): create it \
         with `ip netns add {namespace}`, or name one `ip netns list` shows"
    )]
    NoNamespace { namespace: String },
    #[error(
        "`{tool}` is not installed: install the Debian package {package} (scripts/setup-debian.sh does)"
    )]
    MissingTool { tool: String, package: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: ExitStatus,
        output: String,
    },
    #[error("cannot enter network namespace {namespace}: {source} (labs need root)")]
    Enter {
        namespace: String,
        source: io::Error,
    },
    #[error("cannot start a thread in network namespace {namespace}: {source}")]
    Thread {
        namespace: String,
        source: io::Error,
    },
    #[error("cannot write {path} in network namespace {namespace}: {source}")]
    Sysctl {
        namespace: String,
        path: String,
        source: io::Error,
    },
    #[error("cannot list the network namespaces in {NETNS_DIR}: {source}")]
    ListNamespaces { source: io::Error },
    #[error("{ifname} in network namespace {namespace}: {what}: {source}")]
    Interface {
        namespace: String,
        ifname: String,
        what: &'static str,
        source: io::Error,
    },
    #[error(
        "{ifname} in network namespace {namespace}: {feature} did not turn {}",
        if *wanted { "on" } else { "off" }
    )]
    FeatureRefused {
        namespace: String,
        ifname: String,
        feature: &'static str,
        wanted: bool,
    },
    #[error(
        "cannot load the mz_pass XDP object: {0} (the kernel needs BPF and BTF support; run as root)"
    )]
    LoadPass(Box<aya::EbpfError>),
    #[error("the mz_pass object has no program {program}")]
    MissingPassProgram { program: &'static str },
    #[error("mz_pass: {0}")]
    PassProgram(Box<aya::programs::ProgramError>),
    #[error(
        "cannot attach mz_pass natively to {ifname} in network namespace {namespace}: {} \
         (it must run in the driver; a veth refuses native XDP while its peer's MTU exceeds \
         about 3500 bytes)",
        with_causes(source.as_ref())
    )]
    AttachPass {
        namespace: String,
        ifname: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error(
        "mz_pass on {ifname} in network namespace {namespace}: {reason} (a kernel without BPF links, before 5.9?)"
    )]
    PassLink {
        namespace: String,
        ifname: String,
        reason: String,
    },
    #[error("cannot pin the {what} at {path}: {reason}")]
    Pin {
        what: String,
        path: PathBuf,
        reason: String,
    },
    #[error("lab pin directory {path}: {source}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(
        "a lab named {prefix} exists already ({}): remove it first (`mizar demo --down`, or Lab::remove_by_prefix)",
        found.describe()
    )]
    Exists { prefix: String, found: Leftovers },
    #[error("could not remove all of lab {prefix}: {}", failures.join("; "))]
    Cleanup {
        prefix: String,
        failures: Vec<String>,
    },
}

/// An error and its causes, `outer: inner: innermost` (aya's syscall errors keep the errno in
/// their source).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        text += &format!(": {inner}");
        cause = inner.source();
    }
    text
}
