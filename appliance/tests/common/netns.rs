//! Network namespaces for the kernel tests: the lab library's ([`mizar::lab`]), named
//! `mzt-<pid>-<n>-…` so that what a killed test process left behind is removed on the next run,
//! with conveniences that panic instead of returning errors.
//!
//! Everything a test builds lives inside namespaces it created; nothing here touches the root
//! namespace's interfaces, addresses or routes.

use std::{
    path::Path,
    process::Output,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use mizar::lab::{self, Lab, MacAddr, NetNsGuard, NsJoinHandle, PassLink, PassProgram};

/// Prefix of every namespace and lab the tests create: `<prefix>-<pid>-<n>[-<role>]`.
const PREFIX: &str = "mzt";

/// Fails with a message naming the Debian package when a command the tests need is missing.
pub fn require_tools(tools: &[(&str, &str)]) {
    lab::require_tools(tools).unwrap_or_else(|err| panic!("{err}"));
}

/// A name prefix no other namespace or lab of any test process has: `mzt-<pid>-<n>`. The first
/// call of a process removes what test processes that no longer exist left behind.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(remove_stale);
    format!(
        "{PREFIX}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace owned by the test: deleted, with its interfaces, when dropped. Derefs to
/// the library's [`lab::NetNs`]; the methods here panic where the library's return errors.
pub struct NetNs {
    inner: lab::NetNs,
    /// `mz_pass` attachments, detached when the namespace goes.
    pass: Mutex<Vec<PassLink>>,
}

impl std::ops::Deref for NetNs {
    type Target = lab::NetNs;

    fn deref(&self) -> &lab::NetNs {
        &self.inner
    }
}

impl NetNs {
    /// Creates `mzt-<pid>-<n>-<role>`.
    pub fn new(role: &str) -> Self {
        let name = format!("{}-{role}", unique_prefix());
        let inner = lab::NetNs::create(&name).unwrap_or_else(|err| panic!("{err}"));
        Self {
            inner,
            pass: Mutex::new(Vec::new()),
        }
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> String {
        self.inner.ip(args).unwrap_or_else(|err| panic!("{err}"))
    }

    /// `ip netns exec <ns> <program> <args>`, panicking on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        self.inner
            .exec(program, args)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> NetNsGuard {
        self.inner.enter().unwrap_or_else(|err| panic!("{err}"))
    }

    /// Runs `f` on a new thread inside this namespace (sockets it opens live there).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> NsJoinHandle<T> {
        self.inner.spawn(f).unwrap_or_else(|err| panic!("{err}"))
    }

    pub fn ifindex(&self, ifname: &str) -> u32 {
        self.inner
            .ifindex(ifname)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Lets XDP redirect into the veth whose peer is `ifname` ([`lab::NetNs::enable_gro`]).
    pub fn enable_gro(&self, ifname: &str) {
        self.inner
            .enable_gro(ifname)
            .unwrap_or_else(|err| panic!("{err}"));
    }

    /// Makes the stack finish L4 checksums before a frame leaves `ifname`
    /// ([`lab::NetNs::disable_tx_checksum`]).
    pub fn disable_tx_checksum(&self, ifname: &str) {
        self.inner
            .disable_tx_checksum(ifname)
            .unwrap_or_else(|err| panic!("{err}"));
    }

    /// Attaches `mz_pass` to `ifname` until the namespace is dropped: a veth whose peer XDP_TXes
    /// must have one (ebpf/c/pass.c).
    pub fn attach_xdp_pass(&self, ifname: &str) {
        let link = PassProgram::load()
            .and_then(|mut pass| pass.attach(&self.inner, ifname))
            .unwrap_or_else(|err| panic!("{err}"));
        self.pass
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(link);
    }
}

/// Test conveniences for any namespace of the library, a lab's too.
pub trait NetNsExt {
    /// `ip netns exec <ns> <program> <args>`, whatever its exit status.
    fn try_exec(&self, program: &str, args: &[&str]) -> Output;
    /// The namespace's UDP InCsumErrors: datagrams its stack dropped for a bad checksum.
    fn udp_checksum_errors(&self) -> u64;
    /// An interface statistic from /sys/class/net (as seen inside the namespace).
    fn link_stat(&self, ifname: &str, stat: &str) -> u64;
}

impl NetNsExt for lab::NetNs {
    fn try_exec(&self, program: &str, args: &[&str]) -> Output {
        self.output(program, args)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    fn udp_checksum_errors(&self) -> u64 {
        let snmp = self
            .exec("cat", &["/proc/net/snmp"])
            .unwrap_or_else(|err| panic!("{err}"));
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
            panic!("no Udp lines in /proc/net/snmp of {}", self.name());
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == "InCsumErrors")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or_else(|| panic!("no Udp InCsumErrors in /proc/net/snmp of {}", self.name()))
    }

    fn link_stat(&self, ifname: &str, stat: &str) -> u64 {
        let path = format!("/sys/class/net/{ifname}/statistics/{stat}");
        let text = self
            .exec("cat", &[&path])
            .unwrap_or_else(|err| panic!("{err}"));
        text.trim()
            .parse()
            .unwrap_or_else(|err| panic!("{path} in {}: {text:?}: {err}", self.name()))
    }
}

/// Creates a veth pair, `a_name` in `a` and `b_name` in `b`, both up; a MAC given is set.
pub fn veth_pair(
    a: &lab::NetNs,
    a_name: &str,
    a_mac: Option<MacAddr>,
    b: &lab::NetNs,
    b_name: &str,
    b_mac: Option<MacAddr>,
) {
    lab::veth_pair(a, a_name, a_mac, b, b_name, b_mac).unwrap_or_else(|err| panic!("{err}"));
}

/// Removes the namespaces, labs and lab pins of test processes that were killed before their
/// guards ran.
fn remove_stale() {
    let pin_names = std::fs::read_dir(lab::DEFAULT_PIN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let namespaces = lab::list_namespaces().unwrap_or_default();
    let mut dead: Vec<u32> = namespaces
        .into_iter()
        .chain(pin_names)
        .filter_map(|name| {
            name.strip_prefix(&format!("{PREFIX}-"))?
                .split('-')
                .next()?
                .parse::<u32>()
                .ok()
        })
        .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    dead.sort_unstable();
    dead.dedup();
    for pid in dead {
        if let Err(err) = Lab::remove_by_prefix(&format!("{PREFIX}-{pid}")) {
            eprintln!("cannot remove what test process {pid} left: {err}");
        }
    }
}
