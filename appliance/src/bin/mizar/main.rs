//! `mizar`: the appliance's command line.

use std::{io::IsTerminal as _, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use mizar::bench::{self, BenchOptions};
use tracing_subscriber::EnvFilter;

/// Mizar appliance: a multi-tenant VPC transit node on an XDP data plane.
#[derive(Debug, Parser)]
#[command(name = "mizar", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure ns/packet of every pipeline path with BPF_PROG_TEST_RUN, beside a floor program
    /// (swap MACs, XDP_TX) measured in the same run. Needs root (loads BPF programs); attaches
    /// nothing to any interface.
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Repetitions per measurement (the kernel reports their average). At least 1000000 unless
    /// --quick [default: 1000000, or 10000 with --quick]
    #[arg(long, value_name = "N")]
    repeat: Option<u32>,
    /// Measurements per path; the median is reported [default: 5, or 3 with --quick]
    #[arg(long, value_name = "K")]
    runs: Option<u32>,
    /// A smoke run: every path is checked, timings are short and not worth recording
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of a table
    #[arg(long)]
    json: bool,
}

impl BenchArgs {
    fn options(&self) -> BenchOptions {
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mizar: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Bench(args) => {
            let options = args.options();
            options.validate()?;
            let report = bench::run(&options).context("benchmark failed")?;
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_defaults_follow_quick() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Bench(args) => args.options(),
        };
        assert_eq!(parse(&["mizar", "bench"]), BenchOptions::default());
        let quick = parse(&["mizar", "bench", "--quick", "--runs", "1"]);
        assert_eq!(quick.repeat, BenchOptions::quick().repeat);
        assert_eq!(quick.runs, 1);
        assert!(quick.quick);
        // Validation happens in the library: a short run without --quick is refused there.
        let short = parse(&["mizar", "bench", "--repeat", "1000"]);
        assert!(short.validate().is_err());
    }
}
