//! The command line: nouns and verbs a network engineer can guess. Completions and the man page
//! are generated from these definitions (`mizar completions`, `mizar man`).

use std::{net::Ipv4Addr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use mizar::bench::{BenchOptions, live::LiveOptions};
use mizar_db::{EndpointKind, Ipv4Net, MacAddr};

/// Mizar appliance: a multi-tenant VPC transit node on an XDP data plane.
#[derive(Debug, Parser)]
#[command(name = "mizar", version, about, propagate_version = true)]
pub struct Cli {
    /// Where this instance keeps its store (mizar.db)
    #[arg(
        long,
        global = true,
        env = "MIZAR_STATE_DIR",
        default_value = "/var/lib/mizar",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
    /// bpffs directory for this instance's pinned maps and links (bpffs is mounted there if needed)
    #[arg(
        long,
        global = true,
        env = "MIZAR_PIN_DIR",
        default_value = "/sys/fs/bpf/mizar",
        value_name = "DIR"
    )]
    pub pin_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store and say which host this is
    Init(InitArgs),
    /// Attach the data plane and write everything the store holds into it
    Up,
    /// Detach the data plane and remove its pins; the store is kept, `up` rebuilds the same state
    Down,
    /// What is attached (native or generic XDP), the store's contents and the counters
    Status(OutputArgs),
    /// Underlay hosts (this one included)
    #[command(subcommand)]
    Host(HostCommand),
    /// VPCs: tenant networks, each with its own VNI
    #[command(subcommand)]
    Vpc(VpcCommand),
    /// Networks (subnets) of a VPC
    #[command(subcommand)]
    Net(NetCommand),
    /// Endpoints of a VPC
    #[command(subcommand)]
    Ep(EpCommand),
    /// Bouncers of a network: hosts that know where each of its endpoints lives
    #[command(subcommand)]
    Bouncer(BouncerCommand),
    /// Dividers of a VPC: hosts that spread its traffic over its networks' bouncers
    #[command(subcommand)]
    Divider(DividerCommand),
    /// Network functions: the built-in ones, and where they are placed
    #[command(subcommand)]
    Fn(FnCommand),
    /// Function chains at the pipeline's stages (ON_XDP_TX, ON_XDP_PASS, ON_XDP_REDIRECT,
    /// ON_XDP_DROP, ON_XDP_SCALED_EP, and ON_EGRESS on the sending side): the functions a packet
    /// meets there, in order, before the pipeline's decision is applied. A change runs as a
    /// whole new generation: every packet meets the old chain or the new one, never a mix
    #[command(subcommand)]
    Chain(ChainCommand),
    /// The ddos function's configuration: source ranges to drop and per-source packet-rate
    /// thresholds, per VPC or for every VPC. It acts where `ddos` is in a chain (`mizar chain
    /// add --stage redirect ddos`)
    #[command(subcommand)]
    Ddos(DdosCommand),
    /// The ratelimit function's rules: per VPC or per endpoint, per direction, packets and/or
    /// bytes per second with a burst. Ingress acts where `ratelimit` is at ON_XDP_REDIRECT,
    /// egress where it is at ON_EGRESS (`mizar chain add --stage egress ratelimit`)
    #[command(subcommand)]
    Ratelimit(RatelimitCommand),
    /// Capture packets at tap points of this host's pipeline into pcapng (one interface per
    /// tap point; the XDP verdict, a packet id that follows a packet from point to point, and
    /// a comment with stage, reason, VNI and VPC, and the function that dropped it) or pcap.
    /// Points: transit:entry, transit:verdict, egress:entry, egress:verdict, a stage's decision
    /// (redirect) or a place around one of its functions (redirect:1:before,
    /// redirect:1:after). The --filter expression (tcpdump-style) runs in the kernel before
    /// anything is copied; taps run for the capture only, outside the store
    Capture(CaptureArgs),
    /// The acl function's rules: per VPC and direction, in order, first match wins, else the
    /// VPC's default. Stateful: the replies of an allowed flow pass without a rule. Ingress
    /// acts where `acl` is at a transit stage (ON_XDP_REDIRECT: what endpoints here receive),
    /// egress where it is at ON_EGRESS (what they send). A VPC without an ACL is not filtered
    #[command(subcommand)]
    Acl(AclCommand),
    /// Make the store match a YAML or JSON topology (idempotent)
    Apply(ApplyArgs),
    /// Print the store as a topology document that `apply` takes back
    Export(ExportArgs),
    /// Print shell completions
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (mizar.1 and one per subcommand) into a directory
    Man {
        /// Where to write them
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Measure ns/packet of every pipeline path with BPF_PROG_TEST_RUN, beside a floor program
    /// (swap MACs, XDP_TX) measured in the same run. Needs root (loads BPF programs); attaches
    /// nothing to any interface.
    Bench(BenchArgs),
    /// Property-fuzz the data plane: random and mutated packets of every pipeline path through
    /// the real programs (BPF_PROG_TEST_RUN), each result checked (no packet reaches another
    /// VPC, none is sent outside the topology, reasons agree with verdicts). Needs root;
    /// attaches nothing to any interface. Exits 1 on any violation
    Fuzz(FuzzArgs),
    /// Build a self-contained demo fabric in network namespaces (4 hosts, each running its own
    /// mizar; two VPCs sharing 10.0.0.0/16), send traffic and show the counters; --down removes it
    Demo(mizar::demo::DemoArgs),
    /// The dashboard: the pipeline stage by stage (rates, drop reasons, history), the
    /// endpoints (sort, filter), the topology, and forms that change the fabric through the
    /// same change path as these commands. Keys: Tab or 1-5 switch views, ? lists every key,
    /// q quits. Without root, or with the data plane down, it shows the store alone
    Tui(TuiArgs),
    /// Serve Prometheus metrics over HTTP at /metrics, from the dashboard's sampler: packets
    /// and bytes per pipeline stage and per verdict reason, per endpoint hosted here, the
    /// attach mode of every XDP program, and the store's object counts (OpenMetrics when the
    /// scraper asks for it, else the 0.0.4 text format). Runs until SIGTERM or Ctrl-C; the
    /// package's mizar-metrics.service runs it (off by default)
    Metrics(MetricsArgs),
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Address and port to listen on. Loopback by default: the metrics name tenants and their
    /// addresses, so expose them beyond this host on purpose (0.0.0.0:9830, [::]:9830)
    #[arg(long, env = "MIZAR_METRICS_LISTEN", default_value = mizar::metrics::DEFAULT_LISTEN,
          value_parser = parse_listen, value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// How often the counters are read: 1s, 500ms, 2.5s, ... (at least 50ms)
    #[arg(long, env = "MIZAR_METRICS_PERIOD", default_value = "1s", value_parser = parse_period,
          value_name = "PERIOD")]
    pub period: std::time::Duration,
}

fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not an address and port: write it as 127.0.0.1:9830, 0.0.0.0:9830 or \
             [::1]:9830"
        )
    })
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// How often the counters are read: 1s, 500ms, 2.5s, ... (at least 50ms)
    #[arg(long, default_value = "1s", value_parser = parse_period, value_name = "PERIOD")]
    pub period: std::time::Duration,
}

/// "1s", "500ms", "2.5s", or plain seconds, between 50 ms and an hour (a sampling period).
fn parse_period(text: &str) -> Result<std::time::Duration, String> {
    let period = parse_duration(text)?;
    if !(0.05..=3600.0).contains(&period.as_secs_f64()) {
        return Err(format!(
            "{text} is out of range: the period must be between 50ms and 3600s"
        ));
    }
    Ok(period)
}

/// "1s", "500ms", "2.5s", or plain seconds (what the value is for checks its range).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let seconds = number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| v * scale)
        .filter(|v| *v >= 0.0)
        .ok_or_else(|| format!("{text:?} is not a duration: write it as 1s, 500ms or 2.5s"))?;
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// This host's name in the fabric
    #[arg(long)]
    pub name: String,
    /// Its underlay IPv4 address (Geneve goes to and comes from it)
    #[arg(long)]
    pub ip: Ipv4Addr,
    /// The MAC of its underlay interface
    #[arg(long)]
    pub mac: MacAddr,
    /// Its underlay interface (where the transit program attaches)
    #[arg(long)]
    pub interface: String,
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Add a host of the underlay
    Add {
        /// Its name in the fabric
        name: String,
        /// Its underlay IPv4 address (tunnel packets go to it and are accepted from it)
        #[arg(long)]
        ip: Ipv4Addr,
        /// The MAC frames to it are sent to (its own, or the underlay next hop's)
        #[arg(long)]
        mac: MacAddr,
        /// Its underlay interface (required for this host)
        #[arg(long)]
        interface: Option<String>,
    },
    /// Delete a host; refused while it is used, unless --cascade
    Del {
        name: String,
        /// Also delete its endpoints and its bouncer and divider assignments
        #[arg(long)]
        cascade: bool,
    },
    /// Change a host: what is given changes, the rest stays
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Set {
        name: String,
        /// Its new underlay IPv4 address
        #[arg(long, group = "change")]
        ip: Option<Ipv4Addr>,
        /// The new MAC frames to it are sent to
        #[arg(long, group = "change")]
        mac: Option<MacAddr>,
        /// Its new underlay interface
        #[arg(long, group = "change")]
        interface: Option<String>,
    },
    /// List the hosts
    List(OutputArgs),
    /// Show one host
    Show {
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum VpcCommand {
    /// Add a VPC
    Add {
        /// Its name (unique)
        name: String,
        /// Its Geneve VNI, 1 to 16777215
        #[arg(long)]
        vni: u32,
        /// The address space its networks are carved from
        #[arg(long, value_parser = mizar_db::parse_cidr)]
        cidr: Ipv4Net,
    },
    /// Delete a VPC; refused while it has networks or endpoints, unless --cascade
    Del {
        name: String,
        /// Also delete its networks, endpoints, bouncers and dividers
        #[arg(long)]
        cascade: bool,
    },
    /// Change a VPC: what is given changes, the rest stays (a new VNI retags all its traffic)
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Set {
        name: String,
        /// Its new Geneve VNI, 1 to 16777215, unique in the fabric
        #[arg(long, group = "change")]
        vni: Option<u32>,
        /// Its new address space, still containing every network
        #[arg(long, group = "change", value_parser = mizar_db::parse_cidr)]
        cidr: Option<Ipv4Net>,
    },
    /// List the VPCs
    List(OutputArgs),
    /// Show one VPC
    Show {
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Add a network
    Add {
        /// The VPC it belongs to
        vpc: String,
        /// Its name (unique within the VPC)
        name: String,
        /// Its prefix, inside the VPC's CIDR and overlapping none of its other networks
        #[arg(long, value_parser = mizar_db::parse_cidr)]
        cidr: Ipv4Net,
        /// Defaults to the network's first address
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
    },
    /// Delete a network; refused while it has endpoints, unless --cascade
    Del {
        vpc: String,
        name: String,
        /// Also delete its endpoints and bouncer assignments
        #[arg(long)]
        cascade: bool,
    },
    /// Change a network: what is given changes, the rest stays
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Set {
        vpc: String,
        name: String,
        /// Its new prefix, still containing its endpoints' addresses
        #[arg(long, group = "change", value_parser = mizar_db::parse_cidr)]
        cidr: Option<Ipv4Net>,
        /// Its new gateway; a gateway that was the old prefix's first address follows --cidr
        #[arg(long, group = "change")]
        gateway: Option<Ipv4Addr>,
    },
    /// List the networks
    List {
        /// Only those of this VPC
        #[arg(long)]
        vpc: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one network
    Show {
        vpc: String,
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// Endpoint kinds as the store names them (one enum: the store's), offered for completion.
fn endpoint_kind_parser() -> impl clap::builder::TypedValueParser<Value = EndpointKind> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(EndpointKind::ALL.map(EndpointKind::as_str)).map(
        |kind| {
            kind.parse::<EndpointKind>()
                .expect("one of the possible values")
        },
    )
}

#[derive(Debug, Subcommand)]
pub enum EpCommand {
    /// Add an endpoint (a VM's or container's interface in a VPC)
    Add {
        /// The VPC it belongs to
        vpc: String,
        /// Its name (unique within the VPC)
        name: String,
        /// Its address, inside one of the VPC's networks
        #[arg(long)]
        ip: Ipv4Addr,
        /// Its MAC (unicast; unique within the VPC)
        #[arg(long)]
        mac: MacAddr,
        /// The host it lives on
        #[arg(long)]
        host: String,
        /// Its network; found from the address when omitted
        #[arg(long)]
        network: Option<String>,
        /// Its host-side veth (required when it lives on this host)
        #[arg(long)]
        veth: Option<String>,
        /// Make the veth pair: the host end named by --veth, the other end moved into this
        /// network namespace (of `ip netns`) as eth0, with the endpoint's address, MAC and a
        /// default route via its network's gateway, an MTU that leaves room for the
        /// encapsulation, transmit checksum offload off and GRO on; `ep del` removes the pair
        #[arg(long, value_name = "NS", requires = "veth")]
        netns: Option<String>,
        /// What it is: a simple endpoint, a scaled one (served by --backend endpoints), a host
        /// endpoint or a network function
        #[arg(long = "type", value_parser = endpoint_kind_parser(), default_value = "simple")]
        kind: EndpointKind,
        /// Deliver the tunnel packet as is (network functions)
        #[arg(long)]
        bypass_decap: bool,
        /// For scaled endpoints: names of the endpoints serving it
        #[arg(long = "backend")]
        backends: Vec<String>,
        /// A key=value label (repeat it): the groups ACL rules name (label:key=value)
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Delete an endpoint (and the veth pair `ep add --netns` made for it)
    Del {
        /// The VPC it belongs to
        vpc: String,
        /// Its name
        name: String,
    },
    /// Change an endpoint: what is given changes, the rest stays (moving it between hosts or
    /// veths included; an endpoint plumbed with --netns stays where it was plumbed)
    #[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
    Set {
        /// The VPC it belongs to
        vpc: String,
        /// Its name
        name: String,
        /// Its new address; its network follows unless --network is given
        #[arg(long, group = "change")]
        ip: Option<Ipv4Addr>,
        /// Its new MAC (unicast; unique within the VPC)
        #[arg(long, group = "change")]
        mac: Option<MacAddr>,
        /// The host it now lives on
        #[arg(long, group = "change")]
        host: Option<String>,
        /// Its network
        #[arg(long, group = "change")]
        network: Option<String>,
        /// Its new host-side veth
        #[arg(long, group = "change", conflicts_with = "no_veth")]
        veth: Option<String>,
        /// It has no veth any more (it lives on another host, or is scaled)
        #[arg(long, group = "change")]
        no_veth: bool,
        /// What it now is
        #[arg(long = "type", group = "change", value_parser = endpoint_kind_parser())]
        kind: Option<EndpointKind>,
        /// Deliver the tunnel packet as is (network functions): true or false
        #[arg(long, group = "change", value_name = "BOOL")]
        bypass_decap: Option<bool>,
        /// For scaled endpoints: the endpoints serving it, replacing the list (repeat it)
        #[arg(long = "backend", group = "change", conflicts_with = "no_backends")]
        backends: Vec<String>,
        /// It has no backends any more
        #[arg(long, group = "change")]
        no_backends: bool,
        /// Its labels, replacing the list (repeat it)
        #[arg(
            long = "label",
            value_name = "KEY=VALUE",
            group = "change",
            conflicts_with = "no_labels"
        )]
        labels: Vec<String>,
        /// It has no labels any more
        #[arg(long, group = "change")]
        no_labels: bool,
    },
    /// List the endpoints, with their counters when hosted here and the data plane is up
    List {
        /// Only those of this VPC
        #[arg(long)]
        vpc: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show one endpoint
    Show {
        vpc: String,
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BouncerCommand {
    /// Make a host a bouncer of a network
    Add {
        vpc: String,
        network: String,
        host: String,
    },
    /// Stop a host bouncing a network
    Del {
        vpc: String,
        network: String,
        host: String,
    },
    /// List the bouncers
    List {
        /// Only those of this VPC
        #[arg(long)]
        vpc: Option<String>,
        /// Only those of this network (of --vpc)
        #[arg(long, requires = "vpc")]
        network: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DividerCommand {
    /// Make a host a divider of a VPC
    Add { vpc: String, host: String },
    /// Stop a host dividing a VPC
    Del { vpc: String, host: String },
    /// List the dividers
    List {
        /// Only those of this VPC
        #[arg(long)]
        vpc: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum FnCommand {
    /// The functions chains can hold, what each does, and where each is placed
    List(OutputArgs),
    /// One function: what it does, the reasons it drops with, and where it is placed with
    /// its counters
    Show {
        /// The function (see `mizar fn list`)
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Load a function from an XDP object built against ebpf/include (see
    /// ebpf/examples/port_drop.c): the kernel verifies it first, and a refused object changes
    /// nothing. The object is kept in the store: `up` loads it again
    Load {
        /// The object file (clang -O2 -g -target bpf -I ebpf/include -c f.c -o f.o)
        file: PathBuf,
        /// Its name in chains (letters, digits, '.', '_', '-'; not a built-in one)
        #[arg(long)]
        name: String,
        /// Its XDP program, when the object has several
        #[arg(long)]
        program: Option<String>,
        /// Names of its drop reasons 0, 1, ... (comma-separated), as counters show them
        #[arg(long, value_delimiter = ',')]
        reasons: Vec<String>,
        /// Replace the loaded function of that name: the chains holding it run the new
        /// program, each as a whole new generation
        #[arg(long)]
        replace: bool,
    },
    /// Unload a function no chain holds
    Unload {
        /// The loaded function
        name: String,
    },
}

/// The stage a chain command works on, and whose.
#[derive(Debug, Args)]
pub struct StageArg {
    /// The stage: ON_XDP_TX, ON_XDP_PASS, ON_XDP_REDIRECT, ON_XDP_DROP, ON_XDP_SCALED_EP
    /// (transit's), or ON_EGRESS (the endpoint-egress program's, before encapsulation); also
    /// tx, pass, redirect, drop, scaled-ep, egress
    #[arg(long, short)]
    pub stage: String,
    /// Another host's chain (recorded for it; its own mizar runs it); default: this host's
    #[arg(long, conflicts_with = "vpc")]
    pub host: Option<String>,
    /// A VPC's chain (on every host, after the host's; at tx, redirect, scaled-ep, egress)
    #[arg(long)]
    pub vpc: Option<String>,
    /// An endpoint's chain (after its VPC's): the packets it receives at transit's stages, the
    /// ones it sends at egress
    #[arg(long = "ep", value_name = "ENDPOINT", requires = "vpc")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Every stage's chain (or one stage's) with each function's packets, drops and ns/packet;
    /// with --vpc, the host's and that VPC's; with --ep too, the chain that endpoint's packets
    /// run, in order (the host's, its VPC's, its own)
    Show {
        /// Only this stage
        #[arg(long, short)]
        stage: Option<String>,
        /// The host's chains and this VPC's (its own and its endpoints')
        #[arg(long)]
        vpc: Option<String>,
        /// The effective chain of this endpoint of --vpc
        #[arg(long = "ep", value_name = "ENDPOINT", requires = "vpc")]
        endpoint: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Replace a stage's whole chain (no function names: empty it)
    Set {
        #[command(flatten)]
        stage: StageArg,
        /// The functions, in order (see `mizar fn list`)
        functions: Vec<String>,
    },
    /// Put a function in a stage's chain
    Add {
        #[command(flatten)]
        stage: StageArg,
        /// The function (see `mizar fn list`)
        function: String,
        /// Its position, from 1 (default: the end)
        #[arg(long, value_name = "POSITION")]
        at: Option<usize>,
    },
    /// Take the function at a position out of a stage's chain
    Del {
        #[command(flatten)]
        stage: StageArg,
        /// Its position, as `mizar chain show` prints it
        position: usize,
    },
    /// Disable the function at a position: it keeps its place and counters, packets skip it
    Disable {
        #[command(flatten)]
        stage: StageArg,
        /// Its position, as `mizar chain show` prints it
        position: usize,
    },
    /// Enable a disabled function again
    Enable {
        #[command(flatten)]
        stage: StageArg,
        /// Its position, as `mizar chain show` prints it
        position: usize,
    },
    /// Move the function at one position to another
    Move {
        #[command(flatten)]
        stage: StageArg,
        /// Its position now
        from: usize,
        /// Its position after the move
        to: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum DdosCommand {
    /// The blocks and thresholds, and what the function dropped for each reason
    Show(OutputArgs),
    /// Source ranges whose packets the function drops
    #[command(subcommand)]
    Block(DdosBlockCommand),
    /// Per-source packet-rate thresholds: above one, a source's packets are dropped until its
    /// window ends
    #[command(subcommand)]
    Limit(DdosLimitCommand),
    /// The SYN-flood guard: above SYNS new TCP connections per window to one destination, SYNs
    /// from sources without an established connection to it are dropped until the window ends
    #[command(subcommand)]
    Syn(DdosSynCommand),
}

#[derive(Debug, Subcommand)]
pub enum DdosSynCommand {
    /// At most SYNS new connections per window to any one destination, then only sources that
    /// completed a handshake with it in the last 10 minutes
    Set {
        /// New TCP connections (SYNs) a destination may receive per window
        #[arg(long)]
        syns: u64,
        /// The window: 1s, 100ms, ... (10 ms to 1 hour)
        #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "WINDOW")]
        window: std::time::Duration,
        /// For this VPC (default: for every VPC without its own)
        #[arg(long)]
        vpc: Option<String>,
    },
    /// Remove a SYN threshold
    Del {
        /// The VPC whose threshold goes (default: the one for every VPC)
        #[arg(long)]
        vpc: Option<String>,
    },
}

const CAPTURE_FILTER_HELP: &str = "\
Filter expressions (--filter), evaluated in the kernel before anything is copied:
  expr      := term (or term)*        (|| too)
  term      := factor (and factor)*   (&& too)
  factor    := not factor | ( expr ) | primitive        (! too)
  primitive := [outer] [src|dst] host ADDR | [outer] [src|dst] net CIDR
             | [outer] [src|dst] port N[-M] | portrange N-M
             | [outer] proto tcp|udp|icmp|sctp|N | tcp | udp | icmp
             | vni N | vpc NAME | ep VPC/NAME
             | verdict aborted|drop|pass|tx|redirect | drop | pass | tx | redirect
             | reason NAME | stage STAGE | fn-drop | geneve
             | len <|<=|>|>=|=|!= N | less N | greater N
             | tcp-flags syn,ack,fin,rst,psh,urg | icmp-type N
Without `outer`, addresses, ports and protocols are the tenant's packet: a Geneve frame's inner
packet, else the frame's own; `outer` is the frame's own IPv4 header (the underlay's). At an
entry point there is no verdict, reason or stage yet. At most 32 tests (host, net and port
without src/dst count two).

Examples:
  mizar capture --at transit:entry,transit:verdict -f 'vpc blue and icmp' -c 20
  mizar capture --at transit:verdict -f 'drop and not outer net 10.1.0.0/16' -w - | tshark -r -
  mizar capture --at redirect:1:before,redirect:1:after -f 'ep blue/web1 and tcp port 443'";

#[derive(Debug, Args)]
#[command(after_long_help = CAPTURE_FILTER_HELP)]
pub struct CaptureArgs {
    /// Tap points, comma-separated: transit:entry, transit:verdict, egress:entry,
    /// egress:verdict, STAGE (its decision), STAGE:N:before, STAGE:N:after
    #[arg(long, value_delimiter = ',', required = true, value_name = "POINT")]
    pub at: Vec<mizar::capture::TapPoint>,
    /// Only packets this expression matches, evaluated in the kernel: tcpdump-style
    /// primitives (host, net, port, proto, tcp, udp, icmp, vpc, ep, vni, verdict, drop, reason,
    /// stage, fn-drop, geneve, len, ...) with and, or, not and parentheses; `outer` applies a
    /// primitive to the underlay header (see mizar-capture(1))
    #[arg(long, short = 'f', value_name = "EXPR")]
    pub filter: Option<String>,
    /// Record one matching packet in N (per CPU)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: u32,
    /// Only packets of this VPC
    #[arg(long)]
    pub vpc: Option<String>,
    /// Only packets whose inner source is in this CIDR
    #[arg(long, value_parser = mizar_db::parse_cidr)]
    pub src: Option<mizar_db::Ipv4Net>,
    /// Only packets whose inner destination is in this CIDR
    #[arg(long, value_parser = mizar_db::parse_cidr)]
    pub dst: Option<mizar_db::Ipv4Net>,
    /// Only this inner protocol: tcp, udp, icmp, sctp or a number
    #[arg(long)]
    pub proto: Option<mizar_db::AclProto>,
    /// Only packets to or from this inner TCP or UDP port
    #[arg(long)]
    pub port: Option<u16>,
    /// Only packets whose decision has this reason (see mizar status: deliver_local,
    /// drop_unknown_endpoint, ...)
    #[arg(long)]
    pub reason: Option<String>,
    /// Only packets the decision at the tap drops
    #[arg(long)]
    pub drops: bool,
    /// Bytes of each packet kept: 14 (an Ethernet header) to 2048
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(14..=2048))]
    pub snaplen: u32,
    /// Stop after this many packets
    #[arg(long, short = 'c')]
    pub count: Option<u64>,
    /// Stop after this long (10s, 500ms, ...)
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// The file (default: the state directory's captures/; - for standard output)
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Classic pcap instead of pcapng (frames and timestamps only)
    #[arg(long)]
    pub pcap: bool,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// The rules in order with the packets each decided, the defaults, the flows tracked, and
    /// what the function dropped for each reason
    Show {
        /// Only this VPC's ACL
        #[arg(long)]
        vpc: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Add a rule (last, or at --at)
    Add {
        /// The VPC
        vpc: String,
        /// allow or deny
        action: mizar_db::AclAction,
        /// ingress (what the VPC's endpoints receive) or egress (what they send)
        #[arg(long)]
        direction: mizar_db::Direction,
        /// Source: any, a CIDR, an address, label:KEY=VALUE or ep:NAME
        #[arg(long, default_value = "any")]
        src: mizar_db::AclAddr,
        /// Destination: any, a CIDR, an address, label:KEY=VALUE or ep:NAME
        #[arg(long, default_value = "any")]
        dst: mizar_db::AclAddr,
        /// any, tcp, udp, icmp, sctp or a protocol number
        #[arg(long, default_value = "any")]
        proto: mizar_db::AclProto,
        /// Destination port or range (tcp, udp, sctp): 80 or 8000-8100
        #[arg(long)]
        port: Option<mizar_db::PortRange>,
        /// Position among the VPC's rules of that direction (1: first; default: last)
        #[arg(long)]
        at: Option<u32>,
        /// Judge flows already open again by the new rules (default: the change applies to
        /// new flows)
        #[arg(long)]
        cut: bool,
    },
    /// Delete the rule at a position of a VPC's rules of one direction
    Del {
        vpc: String,
        /// Its position (see mizar acl show)
        position: u32,
        #[arg(long)]
        direction: mizar_db::Direction,
        /// Judge flows already open again by the remaining rules
        #[arg(long)]
        cut: bool,
    },
    /// What a VPC's packets that match no rule of a direction get (allow until set)
    Default {
        vpc: String,
        /// allow or deny
        action: mizar_db::AclAction,
        #[arg(long)]
        direction: mizar_db::Direction,
        /// Judge flows already open again
        #[arg(long)]
        cut: bool,
    },
    /// Remove a VPC's ACL, rules and defaults: its traffic is not filtered any more
    Clear { vpc: String },
}

#[derive(Debug, Subcommand)]
pub enum RatelimitCommand {
    /// The rules, and what the function dropped for each reason
    Show(OutputArgs),
    /// Set (add or replace) the rule of a VPC, or of one of its endpoints, for one direction
    Set {
        /// The VPC
        vpc: String,
        /// Only this endpoint of it (default: the VPC's traffic as a whole)
        #[arg(long = "ep", value_name = "ENDPOINT")]
        endpoint: Option<String>,
        /// ingress (what the endpoint receives) or egress (what it sends)
        #[arg(long)]
        direction: mizar_db::Direction,
        /// Packets per second
        #[arg(long)]
        packets: Option<u64>,
        /// Packets that may come at once (default: one second's worth)
        #[arg(long)]
        burst_packets: Option<u64>,
        /// Bytes per second
        #[arg(long)]
        bytes: Option<u64>,
        /// Bytes that may come at once (default: one second's worth)
        #[arg(long)]
        burst_bytes: Option<u64>,
    },
    /// Remove a rule
    Del {
        vpc: String,
        #[arg(long = "ep", value_name = "ENDPOINT")]
        endpoint: Option<String>,
        #[arg(long)]
        direction: mizar_db::Direction,
    },
}

#[derive(Debug, Subcommand)]
pub enum DdosBlockCommand {
    /// Drop packets from sources in CIDR
    Add {
        /// The source range, e.g. 203.0.113.0/24
        #[arg(value_parser = mizar_db::parse_cidr)]
        cidr: mizar_db::Ipv4Net,
        /// Only in this VPC (default: every VPC)
        #[arg(long)]
        vpc: Option<String>,
    },
    /// Stop dropping them
    Del {
        #[arg(value_parser = mizar_db::parse_cidr)]
        cidr: mizar_db::Ipv4Net,
        /// The VPC the block was added for (default: the one for every VPC)
        #[arg(long)]
        vpc: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DdosLimitCommand {
    /// At most PACKETS per window from any one source
    Set {
        /// Packets a source may send per window
        #[arg(long)]
        packets: u64,
        /// The window: 1s, 100ms, ... (10 ms to 1 hour)
        #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "WINDOW")]
        window: std::time::Duration,
        /// For this VPC (default: for every VPC without its own)
        #[arg(long)]
        vpc: Option<String>,
    },
    /// Remove a threshold
    Del {
        /// The VPC whose threshold goes (default: the one for every VPC)
        #[arg(long)]
        vpc: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The topology document (YAML or JSON; - for standard input)
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
    /// Also remove what the document does not list
    #[arg(long)]
    pub prune: bool,
    /// Check the document and print what would change (objects of the store, entries of the
    /// maps), changing nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Let the document remove this host or empty the store (unconfigures this node; the data
    /// plane must be down)
    #[arg(long)]
    pub allow_teardown: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The document's format
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Packets to run (the systematic mutations of every seed packet come first)
    #[arg(long, value_name = "N", default_value_t = 10_000_000)]
    pub packets: u64,
    /// Seed of the random mutations (a run is reproducible from it)
    #[arg(long, value_name = "S", default_value_t = 0x6d697a6172)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Repetitions per measurement (the kernel reports their average). At least 1000000 unless
    /// --quick [default: 1000000, or 10000 with --quick]
    #[arg(long, value_name = "N")]
    pub repeat: Option<u32>,
    /// Measurements per path; the median is reported [default: 5, or 3 with --quick]
    #[arg(long, value_name = "K")]
    pub runs: Option<u32>,
    /// A smoke run: every path is checked, timings are short and not worth recording
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Packets per second through the programs attached to a veth in a namespace of the
    /// benchmark's own (XDP live-frame mode as the generator), beside the floor program
    /// attached the same way, on one CPU
    #[arg(long, conflicts_with = "repeat")]
    pub live: bool,
    /// With --live: frames per measurement [default: 2000000, or 20000 with --quick]
    #[arg(long, value_name = "N", requires = "live")]
    pub frames: Option<u32>,
}

impl BenchArgs {
    pub fn live_options(&self) -> LiveOptions {
        let base = if self.quick {
            LiveOptions::quick()
        } else {
            LiveOptions::default()
        };
        LiveOptions {
            frames: self.frames.unwrap_or(base.frames),
            runs: self.runs.unwrap_or(base.runs),
        }
    }

    pub fn options(&self) -> BenchOptions {
        let base = if self.quick {
            BenchOptions::quick()
        } else {
            BenchOptions::default()
        };
        BenchOptions {
            repeat: self.repeat.unwrap_or(base.repeat),
            runs: self.runs.unwrap_or(base.runs),
            quick: self.quick,
        }
    }
}
