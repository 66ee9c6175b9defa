//! `mizar demo`: a self-contained fabric in network namespaces, each simulated host running its
//! own `mizar` instance, configured through the command line exactly as an operator would
//! (`mizar init`, `mizar apply -f`, `mizar up` inside the host's namespace).
//!
//! ```text
//!                         <prefix>-switch: br0, underlay 192.168.100.0/24
//!      ┌──────────────────────┬──────────────┴───────┬──────────────────────┐
//!   edge .1                 h1 .2                  h2 .3                  h3 .4
//!   divides blue and red    bounces blue/db        end host               end host
//!   bounces blue/web and    and red/db
//!   red/web
//!   b-web3 r-db1            b-web2                 b-web1 b-web4 r-web2   b-db1 r-web1
//! ```
//!
//! Two tenants, blue (VNI 100) and red (VNI 200), use the same address space 10.0.0.0/16, each
//! with the networks web (10.0.1.0/24) and db (10.0.2.0/24). The same addresses live in both,
//! on different hosts: 10.0.1.10 is b-web1 on h2 and r-web1 on h3, 10.0.1.11 is b-web2 on h1 and
//! r-web2 on h2, 10.0.2.10 is b-db1 on h3 and r-db1 on the edge. The edge gateway is the
//! appliance's main use: divider and bouncer at once, with endpoints of its own.
//!
//! Every host gets the same topology document ([`DemoSpec::document`]): the store of each holds
//! the whole fabric, and each host's data plane takes from it what its roles need.
//!
//! Everything is named after a prefix (default [`DEFAULT_PREFIX`]): namespaces `<prefix>-…`,
//! pins under `/run/mizar-lab/<prefix>`, stores under `/run/mizar-demo/<prefix>`, so that
//! `mizar demo --down` ([`remove`]) finds and removes all of it, also after a crash.

mod traffic;

use std::{
    fmt::Write as _,
    fs, io,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use mizar_db::{
    EndpointKind, EndpointSpec as StoreEndpoint, Host, Ipv4Net, MacAddr, NetworkSpec, StoreError,
    Topology, VpcSpec,
};

pub use traffic::{
    Capture, Exchange, Frame, Server, TrafficError, ping, tcp_echo_server, tcp_exchange,
    udp_echo_server, udp_exchange,
};

use crate::lab::{
    EndpointSpec as LabEndpoint, HostSpec, Lab, LabError, LabSpec, Leftovers, NetNs,
    UNDERLAY_IFNAME, host_ifname,
};

/// The prefix of everything `mizar demo` makes, unless told otherwise.
pub const DEFAULT_PREFIX: &str = "mzdemo";
/// Where the demo's instances keep their stores, one directory per prefix (the pin root is a
/// bpffs, which holds no regular files).
pub const STATE_ROOT: &str = "/run/mizar-demo";
/// The underlay, inside the demo's namespaces only.
pub const UNDERLAY: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 100, 0), 24);
/// The port the demo's (and the tests') UDP echo servers listen on.
pub const UDP_PORT: u16 = 9000;
/// The port of the TCP echo servers.
pub const TCP_PORT: u16 = 9001;

/// `mizar demo`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Remove the demo instead: every namespace, link, pin and store it made (also what a
    /// crashed run left)
    #[arg(long)]
    pub down: bool,
    /// Name prefix of everything the demo makes: namespaces <PREFIX>-…, pins under
    /// /run/mizar-lab/<PREFIX>, stores under /run/mizar-demo/<PREFIX>
    #[arg(long, default_value = DEFAULT_PREFIX, value_name = "PREFIX")]
    pub prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    #[error("the demo topology: {0}")]
    Topology(#[from] StoreError),
    #[error("mizar demo needs root (it creates network namespaces and loads XDP programs)")]
    NotRoot,
    #[error(
        "a demo named {prefix} exists already ({found}): remove it first with `mizar demo --down{}`",
        prefix_flag(prefix)
    )]
    Exists { prefix: String, found: String },
    #[error("cannot find the mizar binary to run in the hosts' namespaces: {0}")]
    CurrentExe(io::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` in the namespace of host {host} failed ({status}): {output}")]
    Mizar {
        host: String,
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error(
        "not all of the demo's traffic got through: {0}; the lab is kept for inspection \
         (`mizar demo --down` removes it)"
    )]
    Lost(String),
}

fn prefix_flag(prefix: &str) -> String {
    if prefix == DEFAULT_PREFIX {
        String::new()
    } else {
        format!(" --prefix {prefix}")
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One host of the demo fabric and what it does.
struct HostPlan {
    name: &'static str,
    last_octet: u8,
    role: &'static str,
}

const HOSTS: [HostPlan; 4] = [
    HostPlan {
        name: "edge",
        last_octet: 1,
        role: "edge gateway: divides blue and red, bounces their web networks, hosts endpoints",
    },
    HostPlan {
        name: "h1",
        last_octet: 2,
        role: "end host, second bouncer: bounces the db networks",
    },
    HostPlan {
        name: "h2",
        last_octet: 3,
        role: "end host",
    },
    HostPlan {
        name: "h3",
        last_octet: 4,
        role: "end host",
    },
];

const VPCS: [(&str, u32); 2] = [("blue", 100), ("red", 200)];

/// (network, third octet of its /24, bouncers).
const NETWORKS: [(&str, u8, &[&str]); 2] = [("web", 1, &["edge"]), ("db", 2, &["h1"])];

/// (name, VPC, network, address, host).
const ENDPOINTS: [(&str, &str, &str, [u8; 4], &str); 8] = [
    ("b-web1", "blue", "web", [10, 0, 1, 10], "h2"),
    ("b-web2", "blue", "web", [10, 0, 1, 11], "h1"),
    ("b-web3", "blue", "web", [10, 0, 1, 12], "edge"),
    ("b-web4", "blue", "web", [10, 0, 1, 13], "h2"),
    ("b-db1", "blue", "db", [10, 0, 2, 10], "h3"),
    ("r-web1", "red", "web", [10, 0, 1, 10], "h3"),
    ("r-web2", "red", "web", [10, 0, 1, 11], "h2"),
    ("r-db1", "red", "db", [10, 0, 2, 10], "edge"),
];

/// The VPCs' address space (both use it).
fn vpc_cidr() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 16).expect("a valid prefix length")
}

fn network_cidr(third_octet: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 0, third_octet, 0), 24).expect("a valid prefix length")
}

/// An endpoint's MAC: `02:ee:<VNI>:<address>`, unique in the demo.
fn endpoint_mac(vni: u32, ip: Ipv4Addr) -> MacAddr {
    let [_, _, c, d] = ip.octets();
    MacAddr([0x02, 0xee, (vni >> 8) as u8, vni as u8, c, d])
}

/// The demo fabric: its lab (namespaces, veths) and the topology document every host applies.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    pub lab: LabSpec,
    /// The document each host applies (no `this-host`: `mizar init` sets that on each).
    pub topology: Topology,
    /// Where the hosts' stores go, one directory per host.
    pub state_root: PathBuf,
}

impl DemoSpec {
    /// The demo fabric, its names beginning with `prefix`.
    pub fn new(prefix: &str) -> Self {
        let mut lab = LabSpec::new(prefix, UNDERLAY);
        let mut hosts = Vec::new();
        for plan in &HOSTS {
            let [a, b, c, _] = UNDERLAY.addr().octets();
            let host = HostSpec::new(plan.name, Ipv4Addr::new(a, b, c, plan.last_octet));
            hosts.push(Host {
                name: plan.name.to_owned(),
                ip: host.ip,
                mac: host.underlay_mac(),
                // Every host's entry names its interface, so that one document fits all.
                interface: Some(UNDERLAY_IFNAME.to_owned()),
            });
            lab.hosts.push(host);
        }
        let mut vpcs = Vec::new();
        for (vpc, vni) in VPCS {
            let mut networks = Vec::new();
            for (network, octet, bouncers) in NETWORKS {
                let cidr = network_cidr(octet);
                let mut endpoints = Vec::new();
                for (name, ep_vpc, ep_network, ip, host) in ENDPOINTS {
                    if ep_vpc != vpc || ep_network != network {
                        continue;
                    }
                    let ip = Ipv4Addr::from(ip);
                    let mac = endpoint_mac(vni, ip);
                    endpoints.push(StoreEndpoint {
                        labels: Vec::new(),
                        name: name.to_owned(),
                        ip,
                        mac,
                        kind: EndpointKind::Simple,
                        bypass_decap: false,
                        host: host.to_owned(),
                        veth: Some(host_ifname(name)),
                        backends: Vec::new(),
                        netns: None,
                    });
                    let gateway = mizar_db::default_gateway(cidr);
                    lab.endpoints.push(
                        LabEndpoint::new(
                            name,
                            host,
                            vni,
                            Ipv4Net::new_assert(ip, cidr.prefix_len()),
                            mac,
                        )
                        .with_gateway(gateway),
                    );
                }
                networks.push(NetworkSpec {
                    name: network.to_owned(),
                    cidr,
                    gateway: None,
                    bouncers: bouncers.iter().map(|b| (*b).to_owned()).collect(),
                    endpoints,
                });
            }
            vpcs.push(VpcSpec {
                name: vpc.to_owned(),
                vni,
                cidr: vpc_cidr(),
                dividers: vec!["edge".to_owned()],
                networks,
            });
        }
        Self {
            lab,
            topology: Topology {
                scoped_chains: Vec::new(),
                acls: None,
                this_host: None,
                hosts,
                vpcs,
                chains: Vec::new(),
                ddos: None,
                rate_limits: None,
            },
            state_root: Path::new(STATE_ROOT).join(prefix),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.lab.prefix
    }

    /// The hosts of the fabric (a lab may have more, e.g. a test's intruder).
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.topology.hosts.iter()
    }

    /// The store directory of host `host`'s instance.
    pub fn state_dir(&self, host: &str) -> PathBuf {
        self.state_root.join(host)
    }

    /// The pin directory of host `host`'s instance (inside the lab's, so the lab's removal
    /// takes its maps and links along).
    pub fn pin_dir(&self, host: &str) -> PathBuf {
        self.lab.instance_pin_dir(host)
    }

    /// Where the document is written for the hosts to apply.
    pub fn document_path(&self) -> PathBuf {
        self.state_root.join("topology.yaml")
    }

    /// The topology document, as every host applies it.
    pub fn document(&self) -> Result<String, DemoError> {
        Ok(self.topology.to_yaml()?)
    }

    /// An endpoint of the document: its VPC's VNI, its address and its host.
    pub fn endpoint(&self, name: &str) -> Option<DemoEndpoint> {
        self.topology
            .endpoints()
            .find(|(_, _, ep)| ep.name == name)
            .map(|(vpc, net, ep)| DemoEndpoint {
                name: ep.name.clone(),
                vpc: vpc.name.clone(),
                vni: vpc.vni,
                network: net.name.clone(),
                ip: ep.ip,
                mac: ep.mac,
                host: ep.host.clone(),
                veth: ep.veth.clone().unwrap_or_default(),
            })
    }

    /// `ip netns exec <host's namespace> <mizar> --state-dir … --pin-dir …`: append the
    /// subcommand and its arguments.
    pub fn mizar_command(&self, mizar: &Path, host: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.lab.namespace(host)])
            .arg(mizar)
            .arg("--state-dir")
            .arg(self.state_dir(host))
            .arg("--pin-dir")
            .arg(self.pin_dir(host));
        die_with_parent(&mut cmd);
        cmd
    }

    /// What exists of a demo with this spec's prefix: namespaces, and pin and store
    /// directories (both in `pin_dirs`).
    pub fn find(&self) -> Result<Leftovers, DemoError> {
        let mut found = Lab::find(self.prefix(), &self.lab.pin_root)?;
        if self.state_root.exists() {
            found.pin_dirs.push(self.state_root.clone());
        }
        Ok(found)
    }
}

/// An endpoint of the demo, as the tests and the printout need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoEndpoint {
    pub name: String,
    pub vpc: String,
    pub vni: u32,
    pub network: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub host: String,
    /// Its host-side veth.
    pub veth: String,
}

/// A built demo: the lab, and an instance of `mizar` on each host, up. Dropping it removes all
/// of it (namespaces, links, pins, stores), unless [`Demo::keep`] was called.
pub struct Demo {
    spec: DemoSpec,
    mizar: PathBuf,
    lab: Option<Lab>,
}

impl Demo {
    /// Builds the lab of `spec` and configures every host of its document by running `mizar`
    /// (`init`, `apply -f`, `up`) in the host's namespace. Refuses to build over anything of a
    /// demo with the same prefix. On failure, what was made is removed.
    pub fn build(spec: DemoSpec, mizar: &Path) -> Result<Self, DemoError> {
        let demo = Self::build_lab(spec, mizar)?;
        for host in demo.spec.topology.hosts.clone() {
            demo.configure(&host)?;
        }
        Ok(demo)
    }

    /// Builds the lab of `spec` and writes the document, configuring no host: [`Demo::init`],
    /// [`Demo::apply`] and [`Demo::up`] (or [`Demo::mizar`]) do that.
    pub fn build_lab(spec: DemoSpec, mizar: &Path) -> Result<Self, DemoError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(DemoError::NotRoot);
        }
        let found = spec.find()?;
        if !found.is_empty() {
            return Err(DemoError::Exists {
                prefix: spec.prefix().to_owned(),
                found: describe(&found),
            });
        }
        fs::create_dir_all(&spec.state_root).map_err(io_error(&spec.state_root))?;
        // From here on, returning early drops `demo`, which removes what exists so far.
        let mut demo = Self {
            spec,
            mizar: mizar.to_owned(),
            lab: None,
        };
        let path = demo.spec.document_path();
        fs::write(&path, demo.spec.document()?).map_err(io_error(&path))?;
        demo.lab = Some(Lab::build(&demo.spec.lab)?);
        Ok(demo)
    }

    fn configure(&self, host: &Host) -> Result<(), DemoError> {
        self.init(&host.name)?;
        self.apply(&host.name)?;
        self.up(&host.name)?;
        Ok(())
    }

    /// `mizar init` on `host`, with its name, address and MAC from the document.
    pub fn init(&self, host: &str) -> Result<String, DemoError> {
        let entry = self
            .spec
            .topology
            .host(host)
            .unwrap_or_else(|| panic!("{host} is not a host of the demo"));
        let (ip, mac) = (entry.ip.to_string(), entry.mac.to_string());
        self.mizar_ok(
            host,
            &[
                "init",
                "--name",
                host,
                "--ip",
                &ip,
                "--mac",
                &mac,
                "--interface",
                UNDERLAY_IFNAME,
            ],
        )
    }

    /// `mizar apply -f <the document>` on `host`.
    pub fn apply(&self, host: &str) -> Result<String, DemoError> {
        let path = self.spec.document_path();
        self.mizar_ok(host, &["apply", "-f", &path.to_string_lossy()])
    }

    /// `mizar up` on `host`.
    pub fn up(&self, host: &str) -> Result<String, DemoError> {
        self.mizar_ok(host, &["up"])
    }

    pub fn spec(&self) -> &DemoSpec {
        &self.spec
    }

    pub fn lab(&self) -> &Lab {
        self.lab
            .as_ref()
            .expect("a demo has its lab until it is taken down")
    }

    /// The namespace of an endpoint or host of the lab.
    pub fn ns(&self, name: &str) -> &NetNs {
        let lab = self.lab();
        lab.endpoint(name)
            .map(|e| &e.ns)
            .or_else(|| lab.host(name).map(|h| &h.ns))
            .unwrap_or_else(|| panic!("{name} is no endpoint or host of the demo"))
    }

    /// An endpoint of the document (panics for a name it does not have).
    pub fn endpoint(&self, name: &str) -> DemoEndpoint {
        self.spec
            .endpoint(name)
            .unwrap_or_else(|| panic!("{name} is no endpoint of the demo"))
    }

    /// Runs `mizar <args>` on `host` (in its namespace, with its state and pin directories),
    /// whatever its exit status.
    pub fn mizar(&self, host: &str, args: &[&str]) -> Result<Output, DemoError> {
        let mut cmd = self.spec.mizar_command(&self.mizar, host);
        cmd.args(args).stdin(std::process::Stdio::null());
        cmd.output().map_err(|source| DemoError::Spawn {
            command: format!("mizar {}", args.join(" ")),
            source,
        })
    }

    /// Runs `mizar <args>` on `host`; its standard output, or an error with what it said.
    pub fn mizar_ok(&self, host: &str, args: &[&str]) -> Result<String, DemoError> {
        let out = self.mizar(host, args)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            return Err(DemoError::Mizar {
                host: host.to_owned(),
                command: format!("mizar {}", args.join(" ")),
                status: out.status,
                output: [stdout.trim(), stderr.trim()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n"),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Leaves everything in place for a later [`remove`] (`mizar demo --down`).
    pub fn keep(mut self) {
        if let Some(lab) = self.lab.take() {
            lab.keep();
        }
        self.spec.state_root = PathBuf::new();
    }

    /// Removes everything the demo made, reporting what could not be removed.
    pub fn down(mut self) -> Result<(), DemoError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), DemoError> {
        let lab = self.lab.take().map(Lab::down).transpose();
        let root = std::mem::take(&mut self.spec.state_root);
        let state = remove_dir(&root);
        lab?;
        state
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            tracing::warn!(%err, "cannot remove the whole demo");
        }
    }
}

/// A demo killed half-way must not leave a `mizar` running in a host namespace: it would
/// recreate pins after `mizar demo --down` removed them. The kernel kills the child when the
/// demo goes (`PR_SET_PDEATHSIG`), and a child whose demo is already gone does not start.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (prctl, getppid) and allocates nothing on success.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other(
                    "the demo that started this command is gone",
                ));
            }
            Ok(())
        });
    }
}

fn remove_dir(dir: &Path) -> Result<(), DemoError> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    match fs::remove_dir_all(dir) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(DemoError::Io {
            path: dir.to_owned(),
            source: err,
        }),
        _ => Ok(()),
    }
}

/// "namespaces a, b; directories /x, /y": what [`DemoSpec::find`] or [`remove`] found (their
/// `pin_dirs` hold the stores' directories too).
fn describe(found: &Leftovers) -> String {
    let mut parts = Vec::new();
    if !found.namespaces.is_empty() {
        parts.push(format!("namespaces {}", found.namespaces.join(", ")));
    }
    if !found.pin_dirs.is_empty() {
        let dirs: Vec<String> = found
            .pin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        parts.push(format!("directories {}", dirs.join(", ")));
    }
    parts.join("; ")
}

/// Removes every namespace, pin and store of the demo `prefix` (and of demos `<prefix>-…`):
/// what `mizar demo --down` does. Returns what was removed.
pub fn remove(prefix: &str) -> Result<Leftovers, DemoError> {
    let mut removed = Lab::remove_by_prefix(prefix)?;
    let root = Path::new(STATE_ROOT);
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries.flatten().collect(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(DemoError::Io {
                path: root.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'));
        if ours {
            remove_dir(&entry.path())?;
            removed.pin_dirs.push(entry.path());
        }
    }
    Ok(removed)
}

/// A flow the demo sends: from an endpoint to an address of its VPC.
struct Flow {
    from: &'static str,
    to: &'static str,
    what: &'static str,
}

const FLOWS: [Flow; 6] = [
    Flow {
        from: "b-web1",
        to: "b-db1",
        what: "blue, h2 → h3: to the divider (edge), its db bouncer (h1), then h3",
    },
    Flow {
        from: "b-web1",
        to: "b-web2",
        what: "blue, h2 → h1: through the web bouncer (edge)",
    },
    Flow {
        from: "b-web1",
        to: "b-web3",
        what: "blue, h2 → edge: to an endpoint of the edge gateway",
    },
    Flow {
        from: "b-web1",
        to: "b-web4",
        what: "blue, both on h2: straight from veth to veth",
    },
    Flow {
        from: "r-web1",
        to: "r-web2",
        what: "red, h3 → h2: the same addresses as blue's b-web1 and b-web2, other hosts",
    },
    Flow {
        from: "r-web1",
        to: "r-db1",
        what: "red, h3 → edge: through the divider, which hosts it",
    },
];

const WAIT: Duration = Duration::from_secs(2);
const UDP_SIZES: [usize; 3] = [64, 512, 1300];

/// Sends the demo's traffic (ping and UDP echo for each flow, and one ping that must stay
/// unanswered: red asking for an address only blue has), describing it on `out`. Returns the
/// flows that did not get through.
pub fn exercise(demo: &Demo, out: &mut String) -> Result<Vec<String>, DemoError> {
    let mut lost = Vec::new();
    for flow in &FLOWS {
        let (from, to) = (demo.endpoint(flow.from), demo.endpoint(flow.to));
        let server = udp_echo_server(
            demo.ns(&to.name),
            SocketAddrV4::new(to.ip, UDP_PORT),
            UDP_SIZES.len(),
            WAIT,
        )?;
        let pinged = ping(demo.ns(&from.name), to.ip, 3, WAIT)?;
        let udp = udp_exchange(
            demo.ns(&from.name),
            SocketAddrV4::new(to.ip, UDP_PORT),
            &UDP_SIZES,
            WAIT,
        )?;
        server.join()?;
        let _ = writeln!(
            out,
            "  {:<7} {:<10} → {:<7} {:<10}  ping {pinged}  UDP {udp}   {}",
            from.name, from.ip, to.name, to.ip, flow.what
        );
        if !pinged.all_answered() || !udp.all_answered() {
            lost.push(format!("{} → {}", from.name, to.name));
        }
    }
    // 10.0.1.13 exists in blue only: from red, nothing answers.
    let (from, only_blue) = (demo.endpoint("r-web1"), demo.endpoint("b-web4"));
    let pinged = ping(demo.ns(&from.name), only_blue.ip, 1, Duration::from_secs(1))?;
    let _ = writeln!(
        out,
        "  {:<7} {:<10} → {:<18}  ping {pinged}   red has no {}: unanswered, as it must be",
        from.name, from.ip, only_blue.ip, only_blue.ip
    );
    if !pinged.none_answered() {
        lost.push(format!(
            "{} reached {} of another VPC",
            from.name, only_blue.ip
        ));
    }
    Ok(lost)
}

/// `mizar demo [--down]`.
pub fn run(args: &DemoArgs) -> Result<(), DemoError> {
    if args.down {
        let removed = remove(&args.prefix)?;
        if removed.is_empty() {
            println!("no demo named {} to remove", args.prefix);
        } else {
            println!("removed {}", describe(&removed));
        }
        return Ok(());
    }
    let mizar = std::env::current_exe().map_err(DemoError::CurrentExe)?;
    let spec = DemoSpec::new(&args.prefix);
    println!(
        "building demo {}: {} hosts on an underlay, VPCs blue (VNI 100) and red (VNI 200), both 10.0.0.0/16",
        args.prefix,
        spec.topology.hosts.len(),
    );
    let demo = Demo::build(spec, &mizar)?;
    let spec = demo.spec();
    let mut out = String::new();
    for plan in &HOSTS {
        let ns = spec.lab.namespace(plan.name);
        let endpoints: Vec<String> = spec
            .topology
            .endpoints()
            .filter(|(_, _, ep)| ep.host == plan.name)
            .map(|(vpc, _, ep)| format!("{} ({} {})", ep.name, vpc.name, ep.ip))
            .collect();
        let _ = writeln!(
            out,
            "  {:<5} {ns:<14} {}\n        {}; endpoints: {}",
            plan.name,
            spec.topology
                .host(plan.name)
                .map(|h| h.ip.to_string())
                .unwrap_or_default(),
            plan.role,
            endpoints.join(", ")
        );
    }
    println!(
        "each host runs its own mizar (init, apply -f {}, up):\n{out}",
        spec.document_path().display()
    );

    println!("traffic from the endpoints' namespaces (answered/sent):");
    let mut out = String::new();
    let lost = exercise(&demo, &mut out);
    print!("{out}");
    let lost = lost?;

    for host in spec.topology.hosts.iter() {
        println!("\n── mizar status on {} ──", host.name);
        match demo.mizar_ok(&host.name, &["status"]) {
            Ok(status) => print!("{status}"),
            Err(err) => println!("{err}"),
        }
    }

    let exe = mizar.display();
    let edge = "edge";
    println!(
        "\nthe demo stays up. Look around:\n  \
         ip netns exec {ns} {exe} --state-dir {state} --pin-dir {pins} status\n  \
         (the same for any host: {hosts}; any mizar command works there: ep list, export, ...)\n  \
         ip netns exec {ns} {exe} --state-dir {state} --pin-dir {pins} tui   (the dashboard; on any host)\n  \
         ip netns exec {prefix}-b-web1 ping 10.0.2.10\n  \
         ip netns exec {ns} tcpdump -ni {ul} udp port 6081\n\
         remove it with:\n  {exe} demo --down{flag}",
        ns = spec.lab.namespace(edge),
        state = spec.state_dir(edge).display(),
        pins = spec.pin_dir(edge).display(),
        hosts = spec
            .topology
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        prefix = args.prefix,
        ul = UNDERLAY_IFNAME,
        flag = prefix_flag(&args.prefix),
    );
    demo.keep();
    if !lost.is_empty() {
        return Err(DemoError::Lost(lost.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_spec_is_a_valid_lab_and_a_valid_document() {
        let spec = DemoSpec::new("mzx");
        spec.lab.validate().unwrap();
        let mut store = mizar_db::Store::open_in_memory().unwrap();
        store.apply(&spec.topology, false).unwrap();
        assert_eq!(
            Topology::from_yaml(&spec.document().unwrap()).unwrap(),
            spec.topology
        );
        // Every endpoint of the document is an endpoint of the lab, on the same host, behind
        // the veth the document names.
        for (vpc, _, ep) in spec.topology.endpoints() {
            let lab_ep = spec
                .lab
                .endpoints
                .iter()
                .find(|e| e.name == ep.name)
                .unwrap();
            assert_eq!(lab_ep.host, ep.host);
            assert_eq!(lab_ep.vni, vpc.vni);
            assert_eq!(lab_ep.ip.addr(), ep.ip);
            assert_eq!(lab_ep.mac, ep.mac);
            assert_eq!(ep.veth.as_deref(), Some(host_ifname(&ep.name).as_str()));
        }
        assert_eq!(spec.state_dir("h1"), Path::new("/run/mizar-demo/mzx/h1"));
        assert_eq!(
            spec.pin_dir("h1"),
            Path::new("/run/mizar-lab/mzx/instance-h1")
        );
    }

    #[test]
    fn the_demo_has_what_the_issue_asks() {
        let spec = DemoSpec::new("mzx");
        let t = &spec.topology;
        assert!(t.hosts.len() >= 3);
        let edge = t.roles("edge");
        assert_eq!(edge.divider_of, ["blue", "red"]);
        assert!(edge.is_bouncer() && !edge.endpoints.is_empty());
        let bouncers: Vec<String> = t
            .hosts
            .iter()
            .filter(|h| t.roles(&h.name).is_bouncer())
            .map(|h| h.name.clone())
            .collect();
        assert!(bouncers.len() >= 2, "{bouncers:?}");
        assert_eq!(t.vpcs[0].cidr, t.vpcs[1].cidr);
        // Addresses shared by both VPCs, on different hosts.
        let blue = spec.endpoint("b-web1").unwrap();
        let red = spec.endpoint("r-web1").unwrap();
        assert_eq!(blue.ip, red.ip);
        assert_ne!(blue.host, red.host);
        assert_ne!(blue.vni, red.vni);
    }
}
