//! What each command does: validate and write the store in one transaction, then bring the
//! kernel to what the store implies (when the data plane is up), then say what happened.

use std::{fmt::Write as _, io::Read as _, process::ExitCode};

use anyhow::{Context as _, bail};
use clap::CommandFactory as _;
use mizar::{
    bench,
    dataplane::Stage,
    fabric::{Instance, SyncReport},
};
use mizar_db::{Endpoint, Host, Network, Store, Topology, Vpc};
use serde::Serialize;

use crate::cli::{
    BouncerCommand, Cli, Command, DividerCommand, EpCommand, Format, HostCommand, NetCommand,
    OutputArgs, VpcCommand,
};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let instance = Instance {
        state_dir: cli.state_dir,
        pin_dir: cli.pin_dir,
    };
    match cli.command {
        Command::Demo(args) => mizar::demo::run(&args)?,
        Command::Bench(args) => {
            let options = args.options();
            options.validate()?;
            let report = bench::run(&options).context("benchmark failed")?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
        }
        Command::Fuzz(args) => {
            let report = mizar::fuzz::run(args.packets, args.seed).context("fuzzing failed")?;
            print!("{report}");
            if report.violation_count > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mizar", &mut std::io::stdout());
        }
        Command::Man { out } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            clap_mangen::generate_to(Cli::command(), &out)
                .with_context(|| format!("cannot write man pages into {}", out.display()))?;
        }
        Command::Init(args) => {
            let _lock = instance.lock()?;
            let mut store = instance.open_store()?;
            store.add_host(&Host {
                name: args.name.clone(),
                ip: args.ip,
                mac: args.mac,
                interface: Some(args.interface.clone()),
            })?;
            store.set_this_host(&args.name, &args.interface)?;
            println!(
                "store {} ready; this host is {}",
                instance.store_path().display(),
                args.name
            );
        }
        Command::Up => {
            let _lock = instance.lock()?;
            let store = existing_store(&instance)?;
            let report = instance.up(&store)?;
            print_sync(&report);
        }
        Command::Down => {
            let _lock = instance.lock()?;
            instance.down()?;
            println!("data plane down (the store is kept; `mizar up` restores it)");
        }
        Command::Status(output) => status(&instance, &output)?,
        Command::Host(cmd) => host(&instance, cmd)?,
        Command::Vpc(cmd) => vpc(&instance, cmd)?,
        Command::Net(cmd) => net(&instance, cmd)?,
        Command::Ep(cmd) => ep(&instance, cmd)?,
        Command::Bouncer(cmd) => bouncer(&instance, cmd)?,
        Command::Divider(cmd) => divider(&instance, cmd)?,
        Command::Apply(args) => {
            let text = if args.file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("cannot read standard input")?;
                text
            } else {
                std::fs::read_to_string(&args.file)
                    .with_context(|| format!("cannot read {}", args.file.display()))?
            };
            let progress = Progress::start("reading the topology");
            let doc = parse_document(&text)
                .with_context(|| format!("{} is not a valid topology", args.file.display()))?;
            let objects =
                doc.hosts.len() + doc.vpcs.len() + doc.networks().count() + doc.endpoints().count();
            progress.phase(&format!(
                "checking and writing {objects} objects to the store"
            ));
            // A document describes the whole fabric: it may start a store from nothing.
            change_creating(&instance, |store| {
                instance.check_interfaces(store, &doc)?;
                let report = store.apply(&doc, args.prune)?;
                progress.phase("bringing the data plane to the store");
                Ok(report.summary())
            })?;
            progress.finish();
        }
        Command::Export(args) => {
            let store = existing_store(&instance)?;
            let doc = store.export()?;
            match args.format {
                Format::Yaml => print!("{}", doc.to_yaml()?),
                Format::Json => println!("{}", doc.to_json()?),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A spinner naming the phase of a long command, on a terminal only (scripts see nothing).
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn start(phase: &str) -> Self {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        bar.set_message(phase.to_owned());
        Self(Some(bar))
    }

    fn phase(&self, phase: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(phase.to_owned());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// JSON starts with `{`; anything else is taken as YAML (a superset of JSON anyway).
fn parse_document(text: &str) -> anyhow::Result<Topology> {
    Ok(if text.trim_start().starts_with('{') {
        Topology::from_json(text)?
    } else {
        Topology::from_yaml(text)?
    })
}

fn existing_store(instance: &Instance) -> anyhow::Result<Store> {
    if !instance.store_path().exists() {
        bail!(
            "no store at {}: run `mizar init` first (or point --state-dir / MIZAR_STATE_DIR at one)",
            instance.store_path().display()
        );
    }
    Ok(instance.open_store()?)
}

/// A change: one store transaction (inside `write`), then the kernel brought to the store.
/// The whole command holds the instance lock, so two commands never interleave their syncs.
fn change(
    instance: &Instance,
    write: impl FnOnce(&mut Store) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let _lock = instance.lock()?;
    let store = existing_store(instance)?;
    change_store(instance, store, write)
}

/// A change that may be the first: the store is created when missing.
fn change_creating(
    instance: &Instance,
    write: impl FnOnce(&mut Store) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let _lock = instance.lock()?;
    let store = instance.open_store()?;
    change_store(instance, store, write)
}

fn change_store(
    instance: &Instance,
    mut store: Store,
    write: impl FnOnce(&mut Store) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let what = write(&mut store)?;
    println!("{what}");
    if let Some(report) = instance.sync(&store).context(
        "the store changed, but the data plane could not follow; fix the cause and run `mizar up`",
    )? {
        print_sync(&report);
    }
    Ok(())
}

fn print_sync(report: &SyncReport) {
    for a in &report.attached {
        println!("{} attached to {} ({} XDP)", a.role, a.ifname, a.mode);
    }
    for (role, ifname) in &report.detached {
        println!("{role} detached from {ifname}");
    }
    println!("data plane: {}", report.maps);
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Aligned columns, a header line first.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

fn list<T: Serialize>(
    items: &[T],
    output: &OutputArgs,
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    if output.json {
        return print_json(&items);
    }
    print!(
        "{}",
        table(headers, &items.iter().map(row).collect::<Vec<_>>())
    );
    Ok(())
}

fn show<T: Serialize>(item: &T, output: &OutputArgs) -> anyhow::Result<()> {
    if output.json {
        return print_json(item);
    }
    print!("{}", serde_norway::to_string(item)?);
    Ok(())
}

fn host(instance: &Instance, cmd: HostCommand) -> anyhow::Result<()> {
    match cmd {
        HostCommand::Add {
            name,
            ip,
            mac,
            interface,
        } => change(instance, |s| {
            let host = Host {
                name: name.clone(),
                ip,
                mac,
                interface,
            };
            // This host's underlay interface must exist before the store names it.
            let doc = Topology {
                hosts: vec![host.clone()],
                ..Topology::default()
            };
            instance.check_interfaces(s, &doc)?;
            s.add_host(&host)?;
            Ok(format!("host {name} added"))
        }),
        HostCommand::Del { name, cascade } => {
            change(instance, |s| Ok(s.delete_host(&name, cascade)?.summary()))
        }
        HostCommand::List(output) => {
            let store = existing_store(instance)?;
            let me = store.this_host()?.map(|h| h.name);
            list(
                &store.hosts()?,
                &output,
                &["NAME", "IP", "MAC", "INTERFACE", ""],
                |h| {
                    vec![
                        h.name.clone(),
                        h.ip.to_string(),
                        h.mac.to_string(),
                        h.interface.clone().unwrap_or_default(),
                        if me.as_deref() == Some(h.name.as_str()) {
                            "(this host)".into()
                        } else {
                            String::new()
                        },
                    ]
                },
            )
        }
        HostCommand::Show { name, output } => {
            show(&existing_store(instance)?.host(&name)?, &output)
        }
    }
}

fn vpc(instance: &Instance, cmd: VpcCommand) -> anyhow::Result<()> {
    match cmd {
        VpcCommand::Add { name, vni, cidr } => change(instance, |s| {
            s.add_vpc(&Vpc {
                name: name.clone(),
                vni,
                cidr,
            })?;
            Ok(format!("VPC {name} added (VNI {vni})"))
        }),
        VpcCommand::Del { name, cascade } => {
            change(instance, |s| Ok(s.delete_vpc(&name, cascade)?.summary()))
        }
        VpcCommand::List(output) => list(
            &existing_store(instance)?.vpcs()?,
            &output,
            &["NAME", "VNI", "CIDR"],
            |v| vec![v.name.clone(), v.vni.to_string(), v.cidr.to_string()],
        ),
        VpcCommand::Show { name, output } => show(&existing_store(instance)?.vpc(&name)?, &output),
    }
}

fn net(instance: &Instance, cmd: NetCommand) -> anyhow::Result<()> {
    match cmd {
        NetCommand::Add {
            vpc,
            name,
            cidr,
            gateway,
        } => change(instance, |s| {
            let mut net = Network::new(vpc.clone(), name.clone(), cidr);
            if let Some(gateway) = gateway {
                net.gateway = gateway;
            }
            s.add_network(&net)?;
            Ok(format!("network {name} ({cidr}) added to VPC {vpc}"))
        }),
        NetCommand::Del { vpc, name, cascade } => change(instance, |s| {
            Ok(s.delete_network(&vpc, &name, cascade)?.summary())
        }),
        NetCommand::List { vpc, output } => {
            let store = existing_store(instance)?;
            list(
                &store.networks(vpc.as_deref())?,
                &output,
                &["VPC", "NAME", "CIDR", "GATEWAY"],
                |n| {
                    vec![
                        n.vpc.clone(),
                        n.name.clone(),
                        n.cidr.to_string(),
                        n.gateway.to_string(),
                    ]
                },
            )
        }
        NetCommand::Show { vpc, name, output } => {
            show(&existing_store(instance)?.network(&vpc, &name)?, &output)
        }
    }
}

fn ep(instance: &Instance, cmd: EpCommand) -> anyhow::Result<()> {
    match cmd {
        EpCommand::Add {
            vpc,
            name,
            ip,
            mac,
            host,
            network,
            veth,
            kind,
            bypass_decap,
            backends,
        } => change(instance, |s| {
            let network = match network {
                Some(network) => network,
                None => s.network_for(&vpc, ip)?.name,
            };
            let mut ep =
                Endpoint::simple(vpc.clone(), network.clone(), name.clone(), ip, mac, host);
            ep.kind = kind.into();
            ep.bypass_decap = bypass_decap;
            ep.veth = veth;
            ep.backends = backends;
            instance.check_endpoint(s, &ep)?;
            s.add_endpoint(&ep)?;
            Ok(format!(
                "endpoint {name} ({ip}) added to network {network} of VPC {vpc}"
            ))
        }),
        EpCommand::Del { vpc, name } => change(instance, |s| {
            Ok(s.delete_endpoint(&vpc, &name, false)?.summary())
        }),
        EpCommand::List { vpc, output } => {
            let store = existing_store(instance)?;
            let vnis: std::collections::BTreeMap<String, u32> =
                store.vpcs()?.into_iter().map(|v| (v.name, v.vni)).collect();
            // With the data plane up, the endpoints hosted here show their counters.
            let maps = instance.maps()?;
            let mut endpoints = Vec::new();
            for endpoint in store.endpoints(vpc.as_deref())? {
                let counters = match (&maps, vnis.get(&endpoint.vpc)) {
                    (Some(maps), Some(vni)) => maps.endpoint_stats(*vni, endpoint.ip)?,
                    _ => None,
                };
                endpoints.push(EndpointWithCounters { endpoint, counters });
            }
            let count = |c: Option<u64>| c.map(|n| n.to_string()).unwrap_or_default();
            list(
                &endpoints,
                &output,
                &[
                    "VPC", "NETWORK", "NAME", "IP", "MAC", "TYPE", "HOST", "VETH", "RX PKTS",
                    "TX PKTS",
                ],
                |EndpointWithCounters {
                     endpoint: e,
                     counters,
                 }| {
                    vec![
                        e.vpc.clone(),
                        e.network.clone(),
                        e.name.clone(),
                        e.ip.to_string(),
                        e.mac.to_string(),
                        format!(
                            "{}{}",
                            e.kind.as_str(),
                            if e.bypass_decap { " bypass-decap" } else { "" }
                        ),
                        e.host.clone(),
                        e.veth.clone().unwrap_or_default(),
                        count(counters.map(|c| c.rx_packets)),
                        count(counters.map(|c| c.tx_packets)),
                    ]
                },
            )
        }
        EpCommand::Show { vpc, name, output } => {
            show(&existing_store(instance)?.endpoint(&vpc, &name)?, &output)
        }
    }
}

fn bouncer(instance: &Instance, cmd: BouncerCommand) -> anyhow::Result<()> {
    match cmd {
        BouncerCommand::Add { vpc, network, host } => change(instance, |s| {
            s.add_bouncer(&vpc, &network, &host)?;
            Ok(format!("{host} now bounces network {network} of VPC {vpc}"))
        }),
        BouncerCommand::Del { vpc, network, host } => change(instance, |s| {
            s.delete_bouncer(&vpc, &network, &host)?;
            Ok(format!(
                "{host} no longer bounces network {network} of VPC {vpc}"
            ))
        }),
        BouncerCommand::List {
            vpc,
            network,
            output,
        } => {
            let store = existing_store(instance)?;
            let filter = vpc.as_deref().zip(network.as_deref());
            let mut bouncers = store.bouncers(filter)?;
            if let (Some(vpc), None) = (&vpc, &network) {
                bouncers.retain(|b| &b.vpc == vpc);
            }
            list(&bouncers, &output, &["VPC", "NETWORK", "HOST"], |b| {
                vec![b.vpc.clone(), b.network.clone(), b.host.clone()]
            })
        }
    }
}

fn divider(instance: &Instance, cmd: DividerCommand) -> anyhow::Result<()> {
    match cmd {
        DividerCommand::Add { vpc, host } => change(instance, |s| {
            s.add_divider(&vpc, &host)?;
            Ok(format!("{host} now divides VPC {vpc}"))
        }),
        DividerCommand::Del { vpc, host } => change(instance, |s| {
            s.delete_divider(&vpc, &host)?;
            Ok(format!("{host} no longer divides VPC {vpc}"))
        }),
        DividerCommand::List { vpc, output } => list(
            &existing_store(instance)?.dividers(vpc.as_deref())?,
            &output,
            &["VPC", "HOST"],
            |d| vec![d.vpc.clone(), d.host.clone()],
        ),
    }
}

/// An endpoint as `ep list` shows it: what the store holds, and its data-plane counters when
/// it is hosted here and the data plane is up.
#[derive(Serialize)]
struct EndpointWithCounters {
    #[serde(flatten)]
    endpoint: Endpoint,
    counters: Option<mizar::dataplane::EndpointStats>,
}

#[derive(Serialize)]
struct Status {
    this_host: Option<String>,
    up: bool,
    attached: Vec<AttachedStatus>,
    counts: Counts,
    counters: Vec<CounterStatus>,
    stages: Vec<CounterStatus>,
}

#[derive(Serialize)]
struct AttachedStatus {
    role: String,
    interface: String,
    mode: String,
}

#[derive(Serialize)]
struct Counts {
    hosts: usize,
    vpcs: usize,
    networks: usize,
    endpoints: usize,
}

#[derive(Serialize)]
struct CounterStatus {
    name: String,
    packets: u64,
    bytes: u64,
    description: String,
}

fn status(instance: &Instance, output: &OutputArgs) -> anyhow::Result<()> {
    let store = existing_store(instance)?;
    let topology = store.snapshot()?;
    let mut status = Status {
        this_host: topology.this_host.clone(),
        up: instance.is_up(),
        attached: instance
            .attachments()
            .into_iter()
            .map(|a| AttachedStatus {
                role: a.role.to_owned(),
                interface: a.ifname,
                mode: a.mode.to_string(),
            })
            .collect(),
        counts: Counts {
            hosts: topology.hosts.len(),
            vpcs: topology.vpcs.len(),
            networks: topology.networks().count(),
            endpoints: topology.endpoints().count(),
        },
        counters: Vec::new(),
        stages: Vec::new(),
    };
    if let Some(maps) = instance.maps()? {
        let counters = maps.counters()?;
        status.counters = counters
            .nonzero_reasons()
            .map(|(info, v)| CounterStatus {
                name: info.name.to_owned(),
                packets: v.packets,
                bytes: v.bytes,
                description: info.description.to_owned(),
            })
            .collect();
        status.stages = mizar::dataplane::STAGES
            .iter()
            .map(|stage: &Stage| {
                let v = counters.stage(*stage);
                CounterStatus {
                    name: stage.name().to_owned(),
                    packets: v.packets,
                    bytes: v.bytes,
                    description: String::new(),
                }
            })
            .collect();
    }
    if output.json {
        return print_json(&status);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "this host: {}",
        status
            .this_host
            .as_deref()
            .unwrap_or("(not set: run mizar init)")
    );
    let _ = writeln!(
        out,
        "store: {} hosts, {} VPCs, {} networks, {} endpoints ({})",
        status.counts.hosts,
        status.counts.vpcs,
        status.counts.networks,
        status.counts.endpoints,
        instance.store_path().display()
    );
    if !status.up {
        let _ = writeln!(out, "data plane: down (mizar up attaches it)");
        print!("{out}");
        return Ok(());
    }
    let _ = writeln!(out, "data plane: up ({})", instance.pin_dir.display());
    for a in &status.attached {
        let note = if a.mode == "generic" {
            "  (the driver refused native XDP: slower)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {} on {}: {} XDP{note}", a.role, a.interface, a.mode);
    }
    let rows: Vec<Vec<String>> = status
        .stages
        .iter()
        .map(|c| vec![c.name.clone(), c.packets.to_string(), c.bytes.to_string()])
        .collect();
    let _ = write!(out, "\n{}", table(&["STAGE", "PACKETS", "BYTES"], &rows));
    let rows: Vec<Vec<String>> = status
        .counters
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.packets.to_string(),
                c.bytes.to_string(),
                c.description.clone(),
            ]
        })
        .collect();
    let _ = write!(
        out,
        "\n{}",
        table(&["REASON", "PACKETS", "BYTES", ""], &rows)
    );
    if status.counters.iter().any(|c| c.name == "egress_drop_mtu") {
        let _ = writeln!(
            out,
            "\nwarning: frames too big for the underlay once encapsulated were dropped (egress_drop_mtu): \
             an endpoint's MTU must be at most the underlay MTU minus {} (the outer headers and \
             the endpoint's own Ethernet header): raise the underlay MTU or lower the endpoints'",
            mizar_ebpf::abi::MZ_ENCAP_OVERHEAD
        );
    }
    print!("{out}");
    Ok(())
}
