//! Network namespaces: created with `ip netns add` (so `ip netns exec` and `ip -n` reach them),
//! deleted with every interface inside when their [`NetNs`] drops, entered per thread with
//! `setns` like aya's `NetNsGuard`.
//!
//! Nothing here touches the root namespace's interfaces, addresses or routes: veth pairs are
//! created inside a namespace and their peer moved straight into another.

use std::{
    fs::File,
    io,
    os::fd::AsFd,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Mutex, mpsc},
    thread::JoinHandle,
};

use nix::sched::{CloneFlags, setns};

use super::{LabError, MacAddr, ethtool};

/// Where `ip netns` keeps its namespaces (bind mounts of `/proc/<pid>/ns/net`).
pub const NETNS_DIR: &str = "/run/netns";

/// Debian packages of the commands the lab runs, for the "install it" message.
const PACKAGES: &[(&str, &str)] = &[("ip", "iproute2"), ("ethtool", "ethtool")];

/// A network namespace this process created: deleted, with its interfaces (and so both ends of
/// every veth with one end here, and the XDP programs attached to them), when dropped, unless
/// [`NetNs::keep`] hands it over.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    owned: bool,
}

impl NetNs {
    /// Creates the namespace `name` (an error if it exists), with `lo` up and IPv6 off (no
    /// router solicitations or DAD in counters and captures).
    pub fn create(name: &str) -> Result<Self, LabError> {
        validate_name("namespace", name, usize::MAX)?;
        {
            // The first `ip netns add` on a machine makes /run/netns a shared mount: keep
            // threads of this process from racing on it.
            static CREATE: Mutex<()> = Mutex::new(());
            let _one_at_a_time = CREATE.lock().unwrap_or_else(|e| e.into_inner());
            run("ip", &["netns", "add", name])?;
        }
        let ns = Self {
            name: name.to_owned(),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        {
            // /proc/sys/net belongs to the calling thread's namespace; a kernel without IPv6 has
            // nothing to turn off.
            let _inside = ns.enter()?;
            for scope in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{scope}/disable_ipv6");
                if Path::new(&path).exists() {
                    std::fs::write(&path, "1").map_err(|source| LabError::Sysctl {
                        namespace: name.to_owned(),
                        path: path.clone(),
                        source,
                    })?;
                }
            }
        }
        Ok(ns)
    }

    /// A handle on the existing namespace `name` (of `ip netns`), which stays when this drops:
    /// for namespaces someone else made (a container's).
    pub fn existing(name: &str) -> Result<Self, LabError> {
        validate_name("namespace", name, usize::MAX)?;
        if !Path::new(NETNS_DIR).join(name).exists() {
            return Err(LabError::NoNamespace {
                namespace: name.to_owned(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            owned: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's file, which `setns` and `ip netns` use.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// `ip -n <ns> <args>`; its standard output.
    pub fn ip(&self, args: &[&str]) -> Result<String, LabError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`, which also mounts a
    /// /sys of the namespace for it).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `program` inside the namespace; its standard output, or an error with its standard
    /// error when it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, LabError> {
        let mut cmd = self.command(program);
        cmd.args(args);
        checked(&mut cmd, &describe(program, args))
    }

    /// Runs `program` inside the namespace, whatever its exit status (an error only when it
    /// cannot be started).
    pub fn output(&self, program: &str, args: &[&str]) -> Result<Output, LabError> {
        let mut cmd = self.command(program);
        cmd.args(args);
        output(&mut cmd, &describe(program, args))
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetNsGuard, LabError> {
        NetNsGuard::enter(&self.name)
    }

    /// Runs `f` on a new thread inside this namespace (sockets it opens live there). Returns
    /// once the thread is inside, or the error that kept it out (then `f` never runs).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<NsJoinHandle<T>, LabError> {
        let name = self.name.clone();
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn(move || {
                let guard = match NetNsGuard::enter(&name) {
                    Ok(guard) => guard,
                    Err(err) => {
                        let _ = entered_tx.send(Err(err));
                        return None;
                    }
                };
                let _ = entered_tx.send(Ok(()));
                let result = f();
                drop(guard);
                Some(result)
            })
            .map_err(|source| LabError::Thread {
                namespace: self.name.clone(),
                source,
            })?;
        match entered.recv() {
            Ok(Ok(())) => Ok(NsJoinHandle(handle)),
            Ok(Err(err)) => {
                let _ = handle.join();
                Err(err)
            }
            // The thread died before saying: join to pass its panic on.
            Err(mpsc::RecvError) => match handle.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(_) => unreachable!("the thread always reports before it returns"),
            },
        }
    }

    /// The index of `ifname` in this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32, LabError> {
        let _inside = self.enter()?;
        nix::net::if_::if_nametoindex(ifname).map_err(|errno| LabError::Interface {
            namespace: self.name.clone(),
            ifname: ifname.to_owned(),
            what: "index",
            source: errno.into(),
        })
    }

    /// The MAC address of `ifname`.
    pub fn mac(&self, ifname: &str) -> Result<MacAddr, LabError> {
        let _inside = self.enter()?;
        ethtool::hardware_address(ifname)
            .map_err(|source| self.interface_error(ifname, "MAC address", source))
    }

    /// Whether an offload `feature` of `ifname` is on (the ethtool ioctl; no `ethtool` needed).
    pub fn feature(&self, ifname: &str, feature: Feature) -> Result<bool, LabError> {
        let _inside = self.enter()?;
        ethtool::get(ifname, feature)
            .map_err(|source| self.interface_error(ifname, feature.name(), source))
    }

    /// Turns an offload `feature` of `ifname` on or off, and checks that it took.
    pub fn set_feature(&self, ifname: &str, feature: Feature, on: bool) -> Result<(), LabError> {
        let _inside = self.enter()?;
        ethtool::set(ifname, feature, on)
            .map_err(|source| self.interface_error(ifname, feature.name(), source))?;
        let now = ethtool::get(ifname, feature)
            .map_err(|source| self.interface_error(ifname, feature.name(), source))?;
        if now != on {
            return Err(LabError::FeatureRefused {
                namespace: self.name.clone(),
                ifname: ifname.to_owned(),
                feature: feature.name(),
                wanted: on,
            });
        }
        Ok(())
    }

    /// Lets XDP redirect into the veth whose peer is `ifname`: veth drops frames redirected to
    /// it unless the receiving end runs XDP or GRO (DESIGN.md, pitfalls). Not enough for XDP_TX:
    /// that needs an XDP program on `ifname` ([`super::PassProgram`]).
    pub fn enable_gro(&self, ifname: &str) -> Result<(), LabError> {
        self.set_feature(ifname, Feature::Gro, true)
    }

    /// Makes the stack finish L4 checksums before a frame leaves `ifname`: the egress XDP program
    /// on the peer forwards frames as they are (DESIGN.md, checksum offload).
    pub fn disable_tx_checksum(&self, ifname: &str) -> Result<(), LabError> {
        self.set_feature(ifname, Feature::TxChecksum, false)
    }

    /// Leaves the namespace in place when this drops; returns its name.
    pub fn keep(mut self) -> String {
        self.owned = false;
        std::mem::take(&mut self.name)
    }

    /// Deletes the namespace now, reporting failure (dropping does the same, silently).
    pub fn delete(mut self) -> Result<(), LabError> {
        self.owned = false;
        delete_namespace(&self.name)
    }

    fn interface_error(&self, ifname: &str, what: &'static str, source: io::Error) -> LabError {
        LabError::Interface {
            namespace: self.name.clone(),
            ifname: ifname.to_owned(),
            what,
            source,
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.owned
            && let Err(err) = delete_namespace(&self.name)
        {
            tracing::warn!(namespace = %self.name, %err, "cannot delete the network namespace");
        }
    }
}

/// A thread running inside a namespace ([`NetNs::spawn`]).
#[derive(Debug)]
pub struct NsJoinHandle<T>(JoinHandle<Option<T>>);

impl<T> NsJoinHandle<T> {
    /// Waits for the thread; its result, or its panic.
    pub fn join(self) -> std::thread::Result<T> {
        self.0
            .join()
            .map(|result| result.expect("the thread entered the namespace, so it ran f"))
    }
}

/// An offload feature set through the ethtool ioctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Generic receive offload (`ethtool -K <if> gro`).
    Gro,
    /// Transmit checksum offload, every kind (`ethtool -K <if> tx`).
    TxChecksum,
}

impl Feature {
    /// The name `ethtool -k` shows.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gro => "generic-receive-offload",
            Self::TxChecksum => "tx-checksumming",
        }
    }
}

/// Deletes the namespace `name` (`ip netns del`): its interfaces go with it.
pub fn delete_namespace(name: &str) -> Result<(), LabError> {
    run("ip", &["netns", "del", name]).map(drop)
}

/// Every namespace `ip netns` knows, by name.
pub fn list_namespaces() -> Result<Vec<String>, LabError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(LabError::ListNamespaces { source });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Creates a veth pair, `a_name` in `a` and `b_name` in `b`, both up; a MAC given is set. The
/// pair is made inside `a` and its peer moved to `b` at once: it never exists in the root
/// namespace.
pub fn veth_pair(
    a: &NetNs,
    a_name: &str,
    a_mac: Option<MacAddr>,
    b: &NetNs,
    b_name: &str,
    b_mac: Option<MacAddr>,
) -> Result<(), LabError> {
    validate_name("interface", a_name, IFNAME_MAX)?;
    validate_name("interface", b_name, IFNAME_MAX)?;
    let (a_mac, b_mac) = (a_mac.map(|m| m.to_string()), b_mac.map(|m| m.to_string()));
    let mut args = vec!["link", "add", a_name];
    if let Some(mac) = &a_mac {
        args.extend(["address", mac]);
    }
    args.extend(["type", "veth", "peer", "name", b_name]);
    if let Some(mac) = &b_mac {
        args.extend(["address", mac]);
    }
    args.extend(["netns", b.name()]);
    a.ip(&args)?;
    a.ip(&["link", "set", a_name, "up"])?;
    b.ip(&["link", "set", b_name, "up"])?;
    Ok(())
}

/// The calling thread's network namespace is another until this drops.
#[derive(Debug)]
pub struct NetNsGuard {
    previous: File,
}

impl NetNsGuard {
    /// Moves the calling thread into the namespace `name` (of `ip netns`).
    pub fn enter(name: &str) -> Result<Self, LabError> {
        let enter_error = |source: io::Error| LabError::Enter {
            namespace: name.to_owned(),
            source,
        };
        let previous = File::open("/proc/thread-self/ns/net").map_err(enter_error)?;
        let target = File::open(Path::new(NETNS_DIR).join(name)).map_err(enter_error)?;
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|errno| enter_error(errno.into()))?;
        Ok(Self { previous })
    }
}

impl Drop for NetNsGuard {
    fn drop(&mut self) {
        if let Err(err) = setns(self.previous.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Going on in the wrong namespace could touch another namespace's interfaces.
            eprintln!("cannot return to the previous network namespace: {err}; aborting");
            std::process::abort();
        }
    }
}

/// Fails naming the Debian package when a command is missing from PATH (and the sbin dirs).
pub fn require_tools(tools: &[(&str, &str)]) -> Result<(), LabError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .collect();
    for (tool, package) in tools {
        if !dirs.iter().any(|dir| dir.join(tool).is_file()) {
            return Err(LabError::MissingTool {
                tool: (*tool).to_owned(),
                package: (*package).to_owned(),
            });
        }
    }
    Ok(())
}

/// Runs a command; its standard output, or an error with its standard error when it fails.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    checked(&mut cmd, &describe(program, args))
}

fn output(cmd: &mut Command, description: &str) -> Result<Output, LabError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null()).output().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            let package = PACKAGES
                .iter()
                .find(|(tool, _)| *tool == program)
                .map_or("that provides it", |(_, package)| package);
            LabError::MissingTool {
                tool: program,
                package: package.to_owned(),
            }
        } else {
            LabError::Spawn {
                command: description.to_owned(),
                source,
            }
        }
    })
}

fn checked(cmd: &mut Command, description: &str) -> Result<String, LabError> {
    let out = output(cmd, description)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        return Err(LabError::Command {
            command: description.to_owned(),
            status: out.status,
            output: if stderr.trim().is_empty() {
                stdout.trim().to_owned()
            } else {
                stderr.trim().to_owned()
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The longest interface name Linux takes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Names become namespace names, interface names and pin file names: letters, digits, `-`, `_`
/// and `.` only, and not `.` or `..`.
pub(super) fn validate_name(what: &str, name: &str, max: usize) -> Result<(), LabError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || !ok_chars || name == "." || name == ".." {
        return Err(LabError::Spec(format!(
            "the {what} name {name:?} must be letters, digits, '-', '_' or '.'"
        )));
    }
    if name.len() > max {
        return Err(LabError::Spec(format!(
            "the {what} name {name:?} is longer than {max} characters"
        )));
    }
    Ok(())
}
