//! What each command does: validate and write the store in one transaction, then bring the
//! kernel to what the store implies (when the data plane is up), then say what happened.

use std::{collections::BTreeMap, fmt::Write as _, io::Read as _, process::ExitCode};

use anyhow::Context as _;
use clap::CommandFactory as _;
use mizar::{
    bench,
    fabric::{ChangeOptions, Changed, EndpointWithCounters, FunctionStatus, Instance, SyncReport},
};
use mizar_db::{ChainEdit, Endpoint, Host, Network, Request, StoreError, Topology, Vpc};
use serde::Serialize;

use crate::cli::{
    AclCommand, BouncerCommand, ChainCommand, Cli, Command, DdosBlockCommand, DdosCommand,
    DdosLimitCommand, DdosSynCommand, DividerCommand, EpCommand, FnCommand, Format, HostCommand,
    NetCommand, OutputArgs, RatelimitCommand, VpcCommand,
};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let instance = Instance {
        state_dir: cli.state_dir,
        pin_dir: cli.pin_dir,
    };
    match cli.command {
        Command::Demo(args) => mizar::demo::run(&args)?,
        Command::Tui(args) => {
            use std::io::IsTerminal as _;
            if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "mizar tui draws on a terminal, and stdin or stdout is not one: run it in a \
                     terminal (over SSH: ssh -t); for scripts use mizar status --json"
                );
            }
            let options = mizar_tui::RunOptions {
                period: args.period,
                theme: mizar_tui::Theme::from_env(),
            };
            let source_instance = instance.clone();
            mizar_tui::run(
                move || mizar::dashboard::FabricSource::new(source_instance),
                options,
            )
            .context("the dashboard's terminal failed")?;
        }
        Command::Metrics(args) => {
            mizar::metrics::serve(instance.clone(), args.listen, args.period, |bound| {
                use std::io::Write as _;
                println!(
                    "mizar metrics: serving http://{bound}/metrics (a sample every {:?}); \
                     Ctrl-C or SIGTERM stops",
                    args.period
                );
                let _ = std::io::stdout().flush();
            })?;
        }
        Command::Bench(args) if args.live => {
            let report = bench::live::run(&args.live_options()).context("live benchmark failed")?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
        }
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
        Command::Init(args) => init(&instance, &args)?,
        Command::Up => {
            let _lock = instance.lock()?;
            let store = instance.existing_store()?;
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
        Command::Fn(cmd) => function(&instance, cmd)?,
        Command::Chain(cmd) => chain(&instance, cmd)?,
        Command::Ddos(cmd) => ddos(&instance, cmd)?,
        Command::Ratelimit(cmd) => ratelimit(&instance, cmd)?,
        Command::Acl(cmd) => acl(&instance, cmd)?,
        Command::Capture(args) => capture(&instance, args)?,
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
            let options = ChangeOptions {
                create_store: true,
                dry_run: args.dry_run,
                allow_teardown: args.allow_teardown,
            };
            let changed = instance.apply(&doc, args.prune, options);
            progress.finish();
            let changed = changed?;
            // A dry run lists every object; a real apply says how many.
            let what = if args.dry_run {
                changed.outcome.to_string()
            } else {
                changed.outcome.summary()
            };
            report_change(&changed, what);
        }
        Command::Export(args) => {
            let store = instance.existing_store()?;
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

/// A request through the library's one change path (the dashboard's too); prints what the
/// store and the data plane did.
fn make(instance: &Instance, request: Request) -> anyhow::Result<()> {
    let changed = instance.make(&request)?;
    report_change(&changed, changed.outcome.clone());
    Ok(())
}

fn report_change<T>(changed: &Changed<T>, what: String) {
    if changed.dry_run {
        println!("dry run, nothing changed; the store would change:\n{what}");
        match &changed.dataplane {
            Some(report) => println!("the data plane would change: {}", report.maps),
            None => println!("the data plane is down: its maps would not change"),
        }
        if let Some(report) = &changed.dataplane {
            print_waiting(report);
        }
        return;
    }
    println!("{what}");
    if let Some(report) = &changed.dataplane {
        print_sync(report);
    }
}

fn print_waiting(report: &SyncReport) {
    for waiting in &report.waiting {
        eprintln!("warning: {waiting}");
    }
}

fn print_sync(report: &SyncReport) {
    for a in &report.attached {
        println!("{} attached to {} ({} XDP)", a.role, a.ifname, a.mode);
    }
    for (role, ifname) in &report.detached {
        println!("{role} detached from {ifname}");
    }
    println!("data plane: {}", report.maps);
    if report.chains_published > 0 {
        println!(
            "function chains: {} stage(s) published as a new generation",
            report.chains_published
        );
    }
    print_waiting(report);
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
        } => make(
            instance,
            Request::AddHost(Host {
                name,
                ip,
                mac,
                interface,
            }),
        ),
        // Naming the host is explicit enough to remove this one (the data plane must be down
        // for that: the change path refuses it while up).
        HostCommand::Del { name, cascade } => make(instance, Request::DeleteHost { name, cascade }),
        HostCommand::Set {
            name,
            ip,
            mac,
            interface,
        } => {
            let mut host = instance.existing_store()?.host(&name)?;
            host.ip = ip.unwrap_or(host.ip);
            host.mac = mac.unwrap_or(host.mac);
            host.interface = interface.or(host.interface);
            make(instance, Request::ChangeHost(host))
        }
        HostCommand::List(output) => {
            let store = instance.existing_store()?;
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
            show(&instance.existing_store()?.host(&name)?, &output)
        }
    }
}

fn vpc(instance: &Instance, cmd: VpcCommand) -> anyhow::Result<()> {
    match cmd {
        VpcCommand::Add { name, vni, cidr } => {
            make(instance, Request::AddVpc(Vpc { name, vni, cidr }))
        }
        VpcCommand::Del { name, cascade } => make(instance, Request::DeleteVpc { name, cascade }),
        VpcCommand::Set { name, vni, cidr } => {
            let mut vpc = instance.existing_store()?.vpc(&name)?;
            vpc.vni = vni.unwrap_or(vpc.vni);
            vpc.cidr = cidr.unwrap_or(vpc.cidr);
            make(instance, Request::ChangeVpc(vpc))
        }
        VpcCommand::List(output) => list(
            &instance.existing_store()?.vpcs()?,
            &output,
            &["NAME", "VNI", "CIDR"],
            |v| vec![v.name.clone(), v.vni.to_string(), v.cidr.to_string()],
        ),
        VpcCommand::Show { name, output } => show(&instance.existing_store()?.vpc(&name)?, &output),
    }
}

fn net(instance: &Instance, cmd: NetCommand) -> anyhow::Result<()> {
    match cmd {
        NetCommand::Add {
            vpc,
            name,
            cidr,
            gateway,
        } => {
            let mut net = Network::new(vpc, name, cidr);
            if let Some(gateway) = gateway {
                net.gateway = gateway;
            }
            make(instance, Request::AddNetwork(net))
        }
        NetCommand::Del { vpc, name, cascade } => {
            make(instance, Request::DeleteNetwork { vpc, name, cascade })
        }
        NetCommand::Set {
            vpc,
            name,
            cidr,
            gateway,
        } => {
            let mut net = instance.existing_store()?.network(&vpc, &name)?;
            if let Some(cidr) = cidr {
                // A default gateway stays the default of the new prefix.
                if net.gateway == mizar_db::default_gateway(net.cidr) {
                    net.gateway = mizar_db::default_gateway(cidr);
                }
                net.cidr = cidr;
            }
            net.gateway = gateway.unwrap_or(net.gateway);
            make(instance, Request::ChangeNetwork(net))
        }
        NetCommand::List { vpc, output } => {
            let store = instance.existing_store()?;
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
            show(&instance.existing_store()?.network(&vpc, &name)?, &output)
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
            netns,
            kind,
            bypass_decap,
            backends,
            labels,
        } => {
            let mut ep = Endpoint::simple(vpc, network.unwrap_or_default(), name, ip, mac, host);
            ep.kind = kind;
            ep.bypass_decap = bypass_decap;
            ep.veth = veth;
            ep.backends = backends;
            ep.labels = mizar_db::sorted_labels(&labels);
            make(
                instance,
                Request::AddEndpoint {
                    endpoint: ep,
                    netns,
                },
            )
        }
        EpCommand::Del { vpc, name } => make(instance, Request::DeleteEndpoint { vpc, name }),
        EpCommand::Set {
            vpc,
            name,
            ip,
            mac,
            host,
            network,
            veth,
            no_veth,
            kind,
            bypass_decap,
            backends,
            no_backends,
            labels,
            no_labels,
        } => {
            let mut ep = instance.existing_store()?.endpoint(&vpc, &name)?;
            if let Some(ip) = ip {
                ep.ip = ip;
                ep.network = String::new(); // the one containing it, unless given
            }
            ep.network = network.unwrap_or(ep.network);
            ep.mac = mac.unwrap_or(ep.mac);
            ep.host = host.unwrap_or(ep.host);
            if no_veth {
                ep.veth = None;
            }
            ep.veth = veth.or(ep.veth);
            ep.kind = kind.unwrap_or(ep.kind);
            ep.bypass_decap = bypass_decap.unwrap_or(ep.bypass_decap);
            if no_backends {
                ep.backends.clear();
            }
            if !backends.is_empty() {
                ep.backends = backends;
            }
            if no_labels {
                ep.labels.clear();
            }
            if !labels.is_empty() {
                ep.labels = mizar_db::sorted_labels(&labels);
            }
            make(instance, Request::ChangeEndpoint(ep))
        }
        EpCommand::List { vpc, output } => {
            let store = instance.existing_store()?;
            let endpoints = instance.endpoints_with_counters(&store, vpc.as_deref())?;
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
            show(&instance.existing_store()?.endpoint(&vpc, &name)?, &output)
        }
    }
}

fn bouncer(instance: &Instance, cmd: BouncerCommand) -> anyhow::Result<()> {
    match cmd {
        BouncerCommand::Add { vpc, network, host } => {
            make(instance, Request::AddBouncer { vpc, network, host })
        }
        BouncerCommand::Del { vpc, network, host } => {
            make(instance, Request::DeleteBouncer { vpc, network, host })
        }
        BouncerCommand::List {
            vpc,
            network,
            output,
        } => {
            let store = instance.existing_store()?;
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
        DividerCommand::Add { vpc, host } => make(instance, Request::AddDivider { vpc, host }),
        DividerCommand::Del { vpc, host } => make(instance, Request::DeleteDivider { vpc, host }),
        DividerCommand::List { vpc, output } => list(
            &instance.existing_store()?.dividers(vpc.as_deref())?,
            &output,
            &["VPC", "HOST"],
            |d| vec![d.vpc.clone(), d.host.clone()],
        ),
    }
}

fn function(instance: &Instance, cmd: FnCommand) -> anyhow::Result<()> {
    let output = match cmd {
        FnCommand::List(output) => output,
        FnCommand::Show { name, output } => return function_show(instance, &name, &output),
        FnCommand::Load {
            file,
            name,
            program,
            reasons,
            replace,
        } => {
            let object =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let f =
                instance.load_function(&name, &object, program.as_deref(), &reasons, replace)?;
            println!(
                "function {} loaded from {} (program {}, {} bytes, verified by the kernel); \
                 place it with `mizar chain add --stage STAGE {}`",
                f.name,
                file.display(),
                f.program,
                f.object_bytes,
                f.name
            );
            return Ok(());
        }
        FnCommand::Unload { name } => {
            let f = instance.unload_function(&name)?;
            println!("function {} unloaded", f.name);
            return Ok(());
        }
    };
    /// A function and where this host's chains place it.
    #[derive(serde::Serialize)]
    struct Listed {
        name: String,
        kind: &'static str,
        description: String,
        drop_reasons: Vec<String>,
        placed: Vec<String>,
    }
    let store = instance.existing_store()?;
    let chains = store.chains(None)?;
    let placed = |name: &str| -> Vec<String> {
        chains
            .iter()
            .flat_map(|(stage, links)| {
                links
                    .iter()
                    .filter(|l| l.function == name)
                    .map(move |l| format!("{stage}#{}", l.position))
            })
            .collect()
    };
    let mut rows: Vec<Listed> = mizar_ebpf::BUILTIN_FUNCTIONS
        .iter()
        .map(|f| Listed {
            name: f.name.to_owned(),
            kind: "built-in",
            description: f.description.to_owned(),
            drop_reasons: f.drop_reasons.iter().map(|r| (*r).to_owned()).collect(),
            placed: placed(f.name),
        })
        .collect();
    rows.extend(store.loaded_functions()?.into_iter().map(|f| Listed {
        placed: placed(&f.name),
        description: format!(
            "program {} loaded from an object of {} bytes",
            f.program, f.object_bytes
        ),
        name: f.name,
        kind: "loaded",
        drop_reasons: f.drop_reasons,
    }));
    list(
        &rows,
        &output,
        &["FUNCTION", "KIND", "PLACED", "DESCRIPTION"],
        |r| {
            vec![
                r.name.clone(),
                r.kind.to_owned(),
                if r.placed.is_empty() {
                    "-".to_owned()
                } else {
                    r.placed.join(",")
                },
                r.description.clone(),
            ]
        },
    )
}

fn function_show(instance: &Instance, name: &str, output: &OutputArgs) -> anyhow::Result<()> {
    let store = instance.existing_store()?;
    let loaded = store.loaded_functions()?;
    /// What `fn show` tells of a function, built-in or loaded.
    struct Shown {
        name: String,
        program: String,
        description: String,
        drop_reasons: Vec<String>,
    }
    let f = match (
        mizar_ebpf::builtin_function(name),
        loaded.iter().find(|f| f.name == name),
    ) {
        (Some(f), _) => Shown {
            name: f.name.to_owned(),
            program: f.program.to_owned(),
            description: f.description.to_owned(),
            drop_reasons: f.drop_reasons.iter().map(|r| (*r).to_owned()).collect(),
        },
        (None, Some(l)) => Shown {
            name: l.name.clone(),
            program: l.program.clone(),
            description: format!(
                "loaded from a user's object of {} bytes (mizar fn load)",
                l.object_bytes
            ),
            drop_reasons: l.drop_reasons.clone(),
        },
        (None, None) => {
            let mut known: Vec<String> = mizar_db::BUILTIN_FUNCTIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            known.extend(loaded.iter().map(|f| f.name.clone()));
            anyhow::bail!(
                "unknown function {name:?}; functions: {} (see `mizar fn list`)",
                known.join(", ")
            );
        }
    };
    let kind = if mizar_ebpf::builtin_function(name).is_some() {
        "built-in"
    } else {
        "loaded"
    };
    let mut placed = FunctionStatus::of(&instance.chain_status(&store)?);
    placed.retain(|p| p.function == name);
    if output.json {
        return print_json(&serde_json::json!({
            "name": f.name,
            "kind": kind,
            "program": f.program,
            "description": f.description,
            "drop_reasons": f.drop_reasons,
            "placed": placed,
        }));
    }
    println!("{}: {}", f.name, f.description);
    if !f.drop_reasons.is_empty() {
        println!("drops with: {}", f.drop_reasons.join(", "));
    }
    if placed.is_empty() {
        println!("placed nowhere: `mizar chain add --stage STAGE {}`", f.name);
    } else {
        print!("{}", function_table(&placed));
    }
    Ok(())
}

fn chain(instance: &Instance, cmd: ChainCommand) -> anyhow::Result<()> {
    let (stage, edit) = match cmd {
        ChainCommand::Show {
            stage,
            vpc,
            endpoint,
            output,
        } => {
            return chain_show(
                instance,
                stage,
                vpc.as_deref(),
                endpoint.as_deref(),
                &output,
            );
        }
        ChainCommand::Set { stage, functions } => (stage, ChainEdit::Set(functions)),
        ChainCommand::Add {
            stage,
            function,
            at,
        } => (stage, ChainEdit::Add { function, at }),
        ChainCommand::Del { stage, position } => (stage, ChainEdit::Remove { position }),
        ChainCommand::Move { stage, from, to } => (stage, ChainEdit::Move { from, to }),
        ChainCommand::Disable { stage, position } => (
            stage,
            ChainEdit::Enable {
                position,
                enabled: false,
            },
        ),
        ChainCommand::Enable { stage, position } => (
            stage,
            ChainEdit::Enable {
                position,
                enabled: true,
            },
        ),
    };
    let request = match stage.vpc {
        Some(vpc) => Request::EditScopedChain {
            vpc,
            endpoint: stage.endpoint,
            stage: stage.stage,
            edit,
        },
        None => Request::EditChain {
            host: stage.host,
            stage: stage.stage,
            edit,
        },
    };
    println!("{}", instance.make(&request)?.outcome);
    Ok(())
}

fn ddos(instance: &Instance, cmd: DdosCommand) -> anyhow::Result<()> {
    let request = match cmd {
        DdosCommand::Show(output) => return ddos_show(instance, &output),
        DdosCommand::Block(DdosBlockCommand::Add { cidr, vpc }) => {
            Request::AddDdosBlock { vpc, cidr }
        }
        DdosCommand::Block(DdosBlockCommand::Del { cidr, vpc }) => {
            Request::DeleteDdosBlock { vpc, cidr }
        }
        DdosCommand::Limit(DdosLimitCommand::Set {
            packets,
            window,
            vpc,
        }) => Request::SetDdosLimit {
            vpc,
            packets,
            window_ms: window.as_millis() as u64,
        },
        DdosCommand::Limit(DdosLimitCommand::Del { vpc }) => Request::DeleteDdosLimit { vpc },
        DdosCommand::Syn(DdosSynCommand::Set { syns, window, vpc }) => Request::SetDdosSynLimit {
            vpc,
            syns,
            window_ms: window.as_millis() as u64,
        },
        DdosCommand::Syn(DdosSynCommand::Del { vpc }) => Request::DeleteDdosSynLimit { vpc },
    };
    println!("{}", instance.make(&request)?.outcome);
    Ok(())
}

fn ratelimit(instance: &Instance, cmd: RatelimitCommand) -> anyhow::Result<()> {
    let request = match cmd {
        RatelimitCommand::Show(output) => return ratelimit_show(instance, &output),
        RatelimitCommand::Set {
            vpc,
            endpoint,
            direction,
            packets,
            burst_packets,
            bytes,
            burst_bytes,
        } => Request::SetRateLimit(mizar_db::RateLimit {
            vpc,
            endpoint,
            direction,
            packets,
            burst_packets,
            bytes,
            burst_bytes,
        }),
        RatelimitCommand::Del {
            vpc,
            endpoint,
            direction,
        } => Request::DeleteRateLimit {
            vpc,
            endpoint,
            direction,
        },
    };
    println!("{}", instance.make(&request)?.outcome);
    Ok(())
}

/// Set by SIGINT and SIGTERM: the capture ends cleanly, with its summary and a whole file.
static CAPTURE_STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn stop_capture(_: libc::c_int) {
    CAPTURE_STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn capture(instance: &Instance, args: crate::cli::CaptureArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let options = mizar::capture::CaptureOptions {
        points: args.at.clone(),
        filter: capture_filter(&args),
        snaplen: args.snaplen,
        sample_every: args.sample,
        count: args.count,
        duration: args.duration,
        format: if args.pcap {
            mizar_captures::Format::Pcap
        } else {
            mizar_captures::Format::PcapNg
        },
        describe: false,
    };
    // Bad filters are refused before a file is created: --filter alone first, so that the
    // error's column is in the expression as the user wrote it.
    if let Some(f) = &args.filter {
        mizar::capture::filter::parse(f).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    mizar::capture::compile_filter(&instance.existing_store()?, &options.filter)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            stop_capture as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            stop_capture as *const () as libc::sighandler_t,
        );
    }
    let show = std::io::stderr().is_terminal();
    let progress = |p: mizar::capture::Progress<'_>| {
        if let (true, mizar::capture::Progress::Count(n)) = (show, p) {
            eprint!("\rcaptured {n}");
        }
    };
    let (summary, place) = match args.file.as_deref() {
        Some(p) if p.as_os_str() == "-" => {
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            let summary = instance.capture(&options, out, &CAPTURE_STOP, progress)?;
            (summary, "standard output".to_owned())
        }
        given => {
            let (file, path) = instance
                .capture_file(given, options.format)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let result = instance.capture(
                &options,
                std::io::BufWriter::new(file),
                &CAPTURE_STOP,
                progress,
            );
            match result {
                Ok(summary) => (summary, path.display().to_string()),
                Err(err) => {
                    // Nothing captured: no file left behind.
                    let _ = std::fs::remove_file(&path);
                    return Err(err.into());
                }
            }
        }
    };
    if show {
        eprintln!();
    }
    eprintln!("{summary}; written to {place}");
    Ok(())
}

/// The capture's filter: --filter, and the shorthand options, each one more condition.
fn capture_filter(args: &crate::cli::CaptureArgs) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &args.filter
        && !f.trim().is_empty()
    {
        parts.push(format!("({f})"));
    }
    if let Some(vpc) = &args.vpc {
        parts.push(format!("vpc {vpc}"));
    }
    if let Some(src) = &args.src {
        parts.push(format!("src net {src}"));
    }
    if let Some(dst) = &args.dst {
        parts.push(format!("dst net {dst}"));
    }
    if let Some(proto) = &args.proto {
        parts.push(format!("proto {proto}"));
    }
    if let Some(port) = args.port {
        parts.push(format!("port {port}"));
    }
    if let Some(reason) = &args.reason {
        parts.push(format!("reason {reason}"));
    }
    if args.drops {
        parts.push("drop".to_owned());
    }
    parts.join(" and ")
}

fn acl(instance: &Instance, cmd: AclCommand) -> anyhow::Result<()> {
    let request = match cmd {
        AclCommand::Show { vpc, output } => return acl_show(instance, vpc.as_deref(), &output),
        AclCommand::Add {
            vpc,
            action,
            direction,
            src,
            dst,
            proto,
            port,
            at,
            cut,
        } => Request::AddAclRule {
            vpc,
            rule: mizar_db::AclRule {
                direction,
                action,
                src,
                dst,
                proto,
                ports: port,
            },
            position: at,
            cut,
        },
        AclCommand::Del {
            vpc,
            position,
            direction,
            cut,
        } => Request::DeleteAclRule {
            vpc,
            direction,
            position,
            cut,
        },
        AclCommand::Default {
            vpc,
            action,
            direction,
            cut,
        } => Request::SetAclDefault {
            vpc,
            direction,
            action,
            cut,
        },
        AclCommand::Clear { vpc } => Request::ClearAcl { vpc },
    };
    println!("{}", instance.make(&request)?.outcome);
    Ok(())
}

fn acl_show(instance: &Instance, vpc: Option<&str>, output: &OutputArgs) -> anyhow::Result<()> {
    let store = instance.existing_store()?;
    let mut acls = store.acls()?;
    if let Some(name) = vpc {
        store.vpc(name)?;
        acls.retain(|a| a.vpc == name);
    }
    let counters = instance.acl_counters()?;
    let vnis: BTreeMap<String, u32> = store.vpcs()?.into_iter().map(|v| (v.name, v.vni)).collect();
    let (placed, dropped) = function_drops(instance, &store, "acl")?;
    let hits = |id: u32| {
        counters
            .as_ref()
            .map(|(h, _)| h.get(&id).copied().unwrap_or(0))
    };
    let flows = |vpc: &str| {
        counters
            .as_ref()
            .map(|(_, f)| vnis.get(vpc).and_then(|v| f.get(v)).copied().unwrap_or(0))
    };
    if output.json {
        let acls: Vec<serde_json::Value> = acls
            .iter()
            .map(|a| {
                let rules: Vec<serde_json::Value> = a
                    .rules
                    .iter()
                    .map(|r| {
                        let mut v = serde_json::to_value(r).unwrap_or_default();
                        v["hits"] = serde_json::json!(hits(r.id));
                        v
                    })
                    .collect();
                serde_json::json!({
                    "vpc": a.vpc,
                    "ingress-default": a.ingress_default,
                    "egress-default": a.egress_default,
                    "epoch": a.epoch,
                    "flows": flows(&a.vpc),
                    "rules": rules,
                })
            })
            .collect();
        return print_json(&serde_json::json!({
            "acls": acls,
            "placed": placed,
            "dropped": dropped,
        }));
    }
    if acls.is_empty() {
        println!(
            "no ACL{}; add a rule with `mizar acl add VPC allow --direction ingress --proto tcp \
             --port 80`",
            vpc.map(|v| format!(" for VPC {v}")).unwrap_or_default()
        );
    }
    let count = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
    for a in &acls {
        println!(
            "VPC {}: ingress default {}, egress default {}, {} flows tracked",
            a.vpc,
            a.ingress_default,
            a.egress_default,
            count(flows(&a.vpc))
        );
        let rows: Vec<Vec<String>> = a
            .rules
            .iter()
            .map(|r| {
                vec![
                    r.rule.direction.to_string(),
                    r.position.to_string(),
                    r.rule.action.to_string(),
                    r.rule.src.to_string(),
                    r.rule.dst.to_string(),
                    r.rule.proto.to_string(),
                    r.rule.ports.map_or("-".to_owned(), |p| p.to_string()),
                    count(hits(r.id)),
                ]
            })
            .collect();
        if !rows.is_empty() {
            print!(
                "{}",
                table(
                    &[
                        "DIRECTION",
                        "#",
                        "ACTION",
                        "SRC",
                        "DST",
                        "PROTO",
                        "PORTS",
                        "HITS"
                    ],
                    &rows
                )
            );
        }
    }
    if !acls.is_empty() {
        print_placement(
            "acl",
            "`mizar chain add --stage redirect acl` for ingress, `--stage egress acl` for egress",
            &placed,
            &dropped,
        );
    }
    Ok(())
}

/// Where a function is placed ("STAGE#POSITION") and what it dropped there, by reason, summed.
fn function_drops(
    instance: &Instance,
    store: &mizar_db::Store,
    function: &str,
) -> anyhow::Result<(Vec<String>, BTreeMap<String, u64>)> {
    let mut placed = Vec::new();
    let mut dropped: BTreeMap<String, u64> = mizar_ebpf::builtin_function(function)
        .map(|f| f.drop_reasons)
        .unwrap_or_default()
        .iter()
        .map(|r| ((*r).to_owned(), 0))
        .collect();
    for f in FunctionStatus::of(&instance.chain_status(store)?) {
        if f.function != function {
            continue;
        }
        placed.push(match f.scope.as_str() {
            "host" => format!("{}#{}", f.stage, f.position),
            scope => format!("{}#{} ({scope})", f.stage, f.position),
        });
        for (reason, n) in f.drops.into_iter().flatten() {
            *dropped.entry(reason).or_default() += n;
        }
    }
    Ok((placed, dropped))
}

fn ratelimit_show(instance: &Instance, output: &OutputArgs) -> anyhow::Result<()> {
    let store = instance.existing_store()?;
    let rules = store.rate_limits()?;
    let (placed, dropped) = function_drops(instance, &store, "ratelimit")?;
    if output.json {
        return print_json(&serde_json::json!({
            "rules": rules,
            "placed": placed,
            "dropped": dropped,
        }));
    }
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            vec![
                r.vpc.clone(),
                r.endpoint
                    .clone()
                    .unwrap_or_else(|| "(whole VPC)".to_owned()),
                r.direction.to_string(),
                opt(r.packets),
                opt(r.burst_packets),
                opt(r.bytes),
                opt(r.burst_bytes),
            ]
        })
        .collect();
    if rows.is_empty() {
        println!(
            "no rate limit; add one with `mizar ratelimit set VPC --direction ingress --packets N`"
        );
    } else {
        print!(
            "{}",
            table(
                &[
                    "VPC",
                    "ENDPOINT",
                    "DIRECTION",
                    "PKTS/S",
                    "BURST",
                    "BYTES/S",
                    "BURST"
                ],
                &rows
            )
        );
    }
    print_placement(
        "ratelimit",
        "`mizar chain add --stage redirect ratelimit` for ingress, `--stage egress` for egress",
        &placed,
        &dropped,
    );
    Ok(())
}

/// Where a function with rules is placed and what it dropped, or how to place it.
fn print_placement(function: &str, how: &str, placed: &[String], dropped: &BTreeMap<String, u64>) {
    if placed.is_empty() {
        println!("the {function} function is in no chain: it acts once placed ({how})");
    } else {
        let counts: Vec<String> = dropped.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!(
            "placed at {}; dropped: {}",
            placed.join(", "),
            counts.join(", ")
        );
    }
}

fn ddos_show(instance: &Instance, output: &OutputArgs) -> anyhow::Result<()> {
    let store = instance.existing_store()?;
    let config = store.ddos()?;
    let (placed, dropped) = function_drops(instance, &store, "ddos")?;
    if output.json {
        return print_json(&serde_json::json!({
            "blocks": config.blocks,
            "limits": config.limits,
            "syn-limits": config.syn_limits,
            "placed": placed,
            "dropped": dropped,
        }));
    }
    let every = |vpc: &Option<String>| vpc.clone().unwrap_or_else(|| "(every VPC)".to_owned());
    let rows: Vec<Vec<String>> = config
        .blocks
        .iter()
        .map(|b| vec!["block".to_owned(), every(&b.vpc), b.cidr.to_string()])
        .chain(config.limits.iter().map(|l| {
            vec![
                "limit".to_owned(),
                every(&l.vpc),
                format!("{} packets per {} ms per source", l.packets, l.window_ms),
            ]
        }))
        .chain(config.syn_limits.iter().map(|l| {
            vec![
                "syn".to_owned(),
                every(&l.vpc),
                format!(
                    "{} new TCP connections per {} ms per destination, then established sources only",
                    l.syns, l.window_ms
                ),
            ]
        }))
        .collect();
    if rows.is_empty() {
        println!("no block and no threshold; add one with `mizar ddos block add CIDR`");
    } else {
        print!("{}", table(&["RULE", "VPC", ""], &rows));
    }
    print_placement(
        "ddos",
        "`mizar chain add --stage redirect ddos`",
        &placed,
        &dropped,
    );
    Ok(())
}

fn chain_show(
    instance: &Instance,
    stage: Option<String>,
    vpc: Option<&str>,
    endpoint: Option<&str>,
    output: &OutputArgs,
) -> anyhow::Result<()> {
    let only = stage.as_deref().map(mizar_db::parse_stage).transpose()?;
    let store = instance.existing_store()?;
    if let Some(vpc) = vpc {
        store.vpc(vpc)?;
        if let Some(ep) = endpoint {
            store.endpoint(vpc, ep)?;
        }
    }
    let mut rows = FunctionStatus::of(&instance.chain_status(&store)?);
    rows.retain(|f| only.is_none_or(|o| o == f.stage));
    if let Some(vpc) = vpc {
        let vpc_scope = format!("vpc:{vpc}");
        let ep_prefix = format!("ep:{vpc}/");
        rows.retain(|f| {
            f.scope == "host"
                || f.scope == vpc_scope
                || match endpoint {
                    Some(ep) => f.scope == format!("{ep_prefix}{ep}"),
                    None => f.scope.starts_with(&ep_prefix),
                }
        });
        if endpoint.is_some() {
            // The effective chain: where a packet's VPC is not known, the host's only.
            rows.retain(|f| {
                f.scope == "host" || mizar_db::SCOPED_STAGES.contains(&f.stage.as_str())
            });
            // Positions as the packet meets them.
            let mut at: std::collections::BTreeMap<String, usize> = Default::default();
            for f in &mut rows {
                let n = at.entry(f.stage.clone()).or_default();
                *n += 1;
                f.position = *n;
            }
        }
    }
    if output.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no function in any chain; add one with `mizar chain add --stage STAGE FUNCTION`");
        return Ok(());
    }
    print!("{}", function_table(&rows));
    Ok(())
}

/// The functions as `chain show` and `status` print them.
fn function_table(functions: &[FunctionStatus]) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            vec![
                f.stage.clone(),
                f.scope.clone(),
                f.position.to_string(),
                if f.enabled {
                    f.function.clone()
                } else {
                    format!("{} (disabled)", f.function)
                },
                f.instance.to_string(),
                opt(f.packets),
                opt(f.dropped),
                opt(f.changed),
                f.ns_per_packet
                    .map_or("-".to_owned(), |n| format!("{n:.1}")),
            ]
        })
        .collect();
    table(
        &[
            "STAGE", "SCOPE", "#", "FUNCTION", "INSTANCE", "PACKETS", "DROPPED", "CHANGED",
            "NS/PKT",
        ],
        &rows,
    )
}

fn status(instance: &Instance, output: &OutputArgs) -> anyhow::Result<()> {
    let status = instance.status(&instance.existing_store()?)?;
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
        status.store
    );
    if !status.up {
        let _ = writeln!(out, "data plane: down (mizar up attaches it)");
        print!("{out}");
        return Ok(());
    }
    let sync = match &status.drift {
        Some(drift) if !drift.in_sync => "maps BEHIND the store: run mizar up",
        _ => "maps match the store",
    };
    let _ = writeln!(out, "data plane: up, {sync} ({})", status.pin_dir);
    for a in &status.attached {
        let _ = writeln!(out, "  {} on {}: {} XDP", a.role, a.interface, a.mode);
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
    if !status.functions.is_empty() {
        let _ = write!(out, "\n{}", function_table(&status.functions));
    }
    if !status.warnings.is_empty() {
        out.push('\n');
    }
    for warning in &status.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    print!("{out}");
    Ok(())
}

/// `init`: this store becomes this host's. Run again with the same arguments it changes nothing;
/// a store that already belongs to another host, or this host described otherwise, is refused.
fn init(instance: &Instance, args: &crate::cli::InitArgs) -> anyhow::Result<()> {
    let wanted = Host {
        name: args.name.clone(),
        ip: args.ip,
        mac: args.mac,
        interface: Some(args.interface.clone()),
    };
    let options = ChangeOptions {
        create_store: true,
        ..ChangeOptions::default()
    };
    let store_path = instance.store_path();
    let changed = instance.change(options, |store| {
        if let Some(me) = store.this_host()? {
            if me == wanted {
                return Ok(format!(
                    "store {} already belongs to host {}: nothing changed",
                    store_path.display(),
                    me.name
                ));
            }
            return Err(StoreError::Refused(
                if me.name == wanted.name {
                    format!(
                        "this store's host {} is {} {} on {}, not {} {} on {}; change it with \
                         `mizar apply` (export, edit, apply)",
                        me.name,
                        me.ip,
                        me.mac,
                        me.interface.as_deref().unwrap_or("no interface"),
                        wanted.ip,
                        wanted.mac,
                        args.interface
                    )
                } else {
                    format!(
                        "the store {} already belongs to host {}, not {}: another host needs \
                         its own store (--state-dir, MIZAR_STATE_DIR) and pins (--pin-dir)",
                        store_path.display(),
                        me.name,
                        wanted.name
                    )
                }
                .into(),
            ));
        }
        // A host added before `init` (host add) becomes this host when it is the same.
        match store.host(&wanted.name) {
            Ok(existing) if existing.ip == wanted.ip && existing.mac == wanted.mac => {}
            Ok(_) | Err(_) => store.add_host(&wanted)?,
        }
        store.set_this_host(&wanted.name, &args.interface)?;
        Ok(format!(
            "store {} ready; this host is {}",
            store_path.display(),
            wanted.name
        ))
    })?;
    report_change(&changed, changed.outcome.clone());
    Ok(())
}
