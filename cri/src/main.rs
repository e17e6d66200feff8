//! `crisp`: the CRI daemon's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crisp_cri::config::{self, Config};

/// How long blocking tasks get after the server has drained.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(name = "crisp", version, about = "A container runtime serving the Kubernetes CRI")]
struct Cli {
    /// The configuration file; `crisp.d/*.toml` beside it are read after it.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the effective configuration (defaults, file and drop-ins merged) as TOML.
    Config,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (path, required) = match cli.config {
        Some(path) => (path, true),
        None => (PathBuf::from(config::DEFAULT_PATH), false),
    };
    let config = match config::load(&path, required) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("crisp: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Config) => print_config(&config),
        None => run(config),
    }
}

fn print_config(config: &Config) -> ExitCode {
    match toml::to_string_pretty(config) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crisp: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

const IDLE_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

fn run(config: Config) -> ExitCode {
    // Idle blocking threads leave after 2 s, not tokio's 10: the periodic blocking work (the exit
    // scan, stats) wakes the idle ones in turn, so with 10 s each is woken before it times out
    // and a load's peak of threads would stay for the daemon's life.
    let built =
        tokio::runtime::Builder::new_multi_thread().enable_all().thread_keep_alive(IDLE_THREAD_KEEP_ALIVE).build();
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("crisp: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let traces = match runtime.block_on(async { crisp_cri::telemetry::provider(&config.tracing) }) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("crisp: configuration: tracing.endpoint {:?}: {e}", config.tracing.endpoint);
            return ExitCode::from(2);
        }
    };
    crisp_cri::logging::init(&config.server, traces.as_ref());
    let result = runtime.block_on(crisp_cri::server::run(config));
    // While the runtime still runs: the exporter's gRPC channel lives on it.
    if let Some(Err(e)) = traces.map(|provider| provider.shutdown()) {
        tracing::warn!("flushing traces: {e}");
    }
    // Blocking work still running (an unpack) must not hold the exit: what it leaves is
    // cleaned at the next start.
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
