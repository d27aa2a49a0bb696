//! `dnsload` command: parse flags, run, print. Exit code 2 for bad input (flags,
//! query file, pattern), 1 for failures while running, 3 when a `--fail-if`
//! condition held.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use dnsload::config::{Args, Config, ConfigError};
use dnsload::run::RunError;
use dnsload::{gate, report, run};

/// Exit code of a run that finished but met a `--fail-if` condition.
const EXIT_GATE: u8 = 3;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "campaign") {
        return dnsload::campaign::main(std::env::args_os().skip(2));
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "merge") {
        return dnsload::merge::main(std::env::args_os().skip(2));
    }
    let args = Args::parse();
    match try_main(args) {
        Ok(tripped) if tripped.is_empty() => ExitCode::SUCCESS,
        Ok(tripped) => {
            for t in tripped {
                eprintln!("dnsload: --fail-if: {t}");
            }
            ExitCode::from(EXIT_GATE)
        }
        Err(err) => {
            eprintln!("dnsload: error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

fn exit_code(err: &anyhow::Error) -> u8 {
    let bad_input = err.downcast_ref::<ConfigError>().is_some()
        || matches!(
            err.downcast_ref::<RunError>(),
            Some(RunError::Queries(_) | RunError::Replay(_))
        );
    if bad_input {
        2
    } else {
        1
    }
}

fn try_main(args: Args) -> anyhow::Result<Vec<gate::Tripped>> {
    let config = Config::from_args(args)?;
    if let (Some(dir), Some(model)) = (&config.write_zones, &config.pods) {
        for (origin, path) in dnsload::pods::write_zones(model, dir)
            .map_err(|e| anyhow::anyhow!("--write-zones {}: {e}", dir.display()))?
        {
            println!("{origin} {}", path.display());
        }
        return Ok(Vec::new());
    }
    let quiet = config.quiet;
    let interrupt = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupt))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&interrupt))?;
    let mut progress = |s: &dnsload::stats::SecondStats| {
        if !quiet {
            eprintln!("{}", report::progress_line(s));
        }
    };
    let result = run::run(config, &interrupt, &mut progress)?;
    print!("{}", report::summary_text(&result));
    report::write_outputs(&result)?;
    Ok(gate::check(&result.config.gates, &report::figures(&result)))
}
