//! `mizar`: the appliance's command line.

mod cli;
mod commands;

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use cli::Cli;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // `mizar status | head` must end quietly when the reader goes away, as Unix tools do; Rust
    // ignores SIGPIPE by default, which turns it into a panic on the next print.
    // SAFETY: restoring the default disposition of a signal, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if matches!(cli.command, cli::Command::Tui(_)) {
        // Log lines written under the dashboard would tear its screen.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::sink)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .init();
    }
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mizar: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

fn describe(err: &anyhow::Error) -> String {
    mizar::describe_error(err.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use mizar::bench::BenchOptions;

    #[test]
    fn a_cause_the_message_already_says_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let told = anyhow::Error::new(io).context(format!(
            "cannot create x: {}",
            std::io::Error::from(std::io::ErrorKind::NotFound)
        ));
        assert_eq!(describe(&told), "cannot create x: entity not found");
        let untold = anyhow::anyhow!("disk full").context("cannot write the store");
        assert_eq!(describe(&untold), "cannot write the store: disk full");
    }

    #[test]
    fn tui_period_parses_like_a_duration() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Tui(args)) => Ok(args.period),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(
            parse(&["mizar", "tui"]),
            Ok(std::time::Duration::from_secs(1))
        );
        assert_eq!(
            parse(&["mizar", "tui", "--period", "100ms"]),
            Ok(std::time::Duration::from_millis(100))
        );
        assert_eq!(
            parse(&["mizar", "tui", "--period", "2.5"]),
            Ok(std::time::Duration::from_millis(2500))
        );
        let err = parse(&["mizar", "tui", "--period", "10ms"]).unwrap_err();
        assert!(err.contains("between 50ms and 3600s"), "{err}");
        let err = parse(&["mizar", "tui", "--period", "fast"]).unwrap_err();
        assert!(err.contains("write it as 1s, 500ms or 2.5s"), "{err}");
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_defaults_follow_quick() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Bench(args) => args.options(),
            other => panic!("parsed as {other:?}"),
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
