//! `crisp-conformance`: runs the CRI conformance suite, or a benchmark, against any CRI socket.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crisp_conformance::bench::{self, Target};
use crisp_conformance::client::{CriClient, Endpoint};
use crisp_conformance::lab::Lab;
use crisp_conformance::lab::registry::DOCKER_REGISTRY;
use crisp_conformance::suite::{self, Context, Selection, TestImages};

const DEFAULT_ENDPOINT: &str = "unix:///run/crisp/crisp.sock";

#[derive(Parser)]
#[command(
    name = "crisp-conformance",
    version,
    about = "CRI conformance suite and benchmarks for any CRI runtime",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    suite: SuiteArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Time a workload against a CRI endpoint, or two.
    Bench {
        #[command(subcommand)]
        workload: Workload,
    },
}

#[derive(Subcommand)]
enum Workload {
    /// Cold pulls of the lab's multi-layer image: removed before each pull.
    Pull(PullArgs),
    /// RunPodSandbox of pods on the pod network, and apart from it StopPodSandbox and
    /// RemovePodSandbox of each.
    Runp(RunpArgs),
    /// CreateContainer and StartContainer of a `sleep` container, one pod each, and the RSS of
    /// the per-pod process that keeps it (crisp-monitor, containerd-shim).
    Containers(ContainersArgs),
}

/// Running the suite: what `crisp-conformance` does without a subcommand.
#[derive(Args)]
struct SuiteArgs {
    /// The runtime service's socket, e.g. unix:///run/crisp/crisp.sock.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// The image service's socket, when not the runtime's.
    #[arg(long)]
    image_endpoint: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The runtime resolves docker.io through the test registry, so that short names
    /// (`busybox`) can be tested; without it, their cases skip.
    #[arg(long, requires = "test_registry")]
    docker_io_mirrored: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run only cases whose name contains this (repeatable).
    #[arg(long)]
    focus: Vec<String>,
    /// Leave out cases whose name contains this (repeatable).
    #[arg(long)]
    skip: Vec<String>,
    /// List the cases' names and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Args)]
struct PullArgs {
    /// The socket to measure.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// A second socket, measured interleaved with the first and compared to it.
    #[arg(long, value_name = "ENDPOINT")]
    compare: Option<String>,
    /// Pulls per endpoint.
    #[arg(long, default_value = "5")]
    iterations: NonZeroUsize,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct RunpArgs {
    /// The socket to measure.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// A second socket, measured interleaved with the first and compared to it.
    #[arg(long, value_name = "ENDPOINT")]
    compare: Option<String>,
    /// Pods per endpoint, besides one untimed warm-up pod.
    #[arg(long, visible_alias = "iterations", default_value = "10")]
    count: NonZeroUsize,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ContainersArgs {
    /// The socket to measure.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// A second socket, measured interleaved with the first and compared to it.
    #[arg(long, value_name = "ENDPOINT")]
    compare: Option<String>,
    /// Pods (one container each) per endpoint, besides one untimed warm-up pod.
    #[arg(long, visible_alias = "iterations", default_value = "10")]
    count: NonZeroUsize,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct RegistryArgs {
    /// A running lab registry serving the lab's images over plain HTTP, e.g. `crisp-lab serve`'s
    /// 127.0.0.1:5000. Without it, a temporary one is started for the run.
    #[arg(long, value_name = "HOST:PORT")]
    test_registry: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Stopping here drops the run, and with it a lab registry it started.
    let result = tokio::select! {
        result = run(cli) => result,
        stopped = stop_signal() => stopped.and_then(|name| Err(anyhow::anyhow!("stopped by {name}"))),
    };
    result.unwrap_or_else(|e| {
        eprintln!("crisp-conformance: {e:#}");
        ExitCode::from(2)
    })
}

async fn stop_signal() -> anyhow::Result<&'static str> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run_suite(cli.suite).await,
        Some(Command::Bench { workload: Workload::Pull(args) }) => bench_pull(args).await,
        Some(Command::Bench { workload: Workload::Runp(args) }) => bench_runp(args).await,
        Some(Command::Bench { workload: Workload::Containers(args) }) => bench_containers(args).await,
    }
}

async fn run_suite(args: SuiteArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        for case in suite::cases() {
            println!("{}", case.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = Endpoint::parse(&args.endpoint)?;
    let image = args.image_endpoint.as_deref().map(Endpoint::parse).transpose()?.unwrap_or_else(|| runtime.clone());
    let client = CriClient::connect(&runtime, &image).await?;
    let (images, _lab) = test_images(&args.registry, args.docker_io_mirrored).await?;
    let mut context = Context::new(client, images);
    let selection = Selection { focus: args.focus, skip: args.skip };
    let report = suite::run(&mut context, &selection, |outcome| println!("{outcome}")).await;
    println!("{}", report.summary());
    write_json(args.json.as_deref(), &report)?;
    Ok(if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn bench_pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let targets = targets(&args.endpoint, args.compare.as_deref()).await?;
    let (images, _lab) = test_images(&args.registry, false).await?;
    let report = bench::pull::run(&targets, &images, args.iterations).await?;
    print!("{report}");
    write_json(args.json.as_deref(), &report)?;
    Ok(ExitCode::SUCCESS)
}

async fn bench_runp(args: RunpArgs) -> anyhow::Result<ExitCode> {
    let targets = targets(&args.endpoint, args.compare.as_deref()).await?;
    let report = bench::runp::run(&targets, args.count).await?;
    print!("{report}");
    write_json(args.json.as_deref(), &report)?;
    Ok(ExitCode::SUCCESS)
}

async fn bench_containers(args: ContainersArgs) -> anyhow::Result<ExitCode> {
    let targets = targets(&args.endpoint, args.compare.as_deref()).await?;
    let (images, _lab) = test_images(&args.registry, false).await?;
    let report = bench::containers::run(&targets, &images, args.count).await?;
    print!("{report}");
    write_json(args.json.as_deref(), &report)?;
    Ok(ExitCode::SUCCESS)
}

/// The endpoint to measure, and the one to compare it with.
async fn targets(endpoint: &str, compare: Option<&str>) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    for endpoint in [Some(endpoint), compare].into_iter().flatten() {
        let endpoint = Endpoint::parse(endpoint)?;
        let client = CriClient::connect(&endpoint, &endpoint).await?;
        targets.push(Target { endpoint, client });
    }
    Ok(targets)
}

/// The test images, and the lab serving them when this run started one: it must live as long
/// as the run.
async fn test_images(args: &RegistryArgs, docker_io_mirrored: bool) -> anyhow::Result<(TestImages, Option<Lab>)> {
    if let Some(registry) = &args.test_registry {
        let images = TestImages::at(registry.clone(), docker_io_mirrored)
            .await
            .with_context(|| format!("cannot use {registry} as the test registry"))?;
        return Ok((images, None));
    }
    anyhow::ensure!(
        Path::new(DOCKER_REGISTRY).exists(),
        "{DOCKER_REGISTRY} is missing: install Debian's docker-registry so that a test registry can be \
         started, or pass --test-registry HOST:PORT of a running one (crisp-lab serve)"
    );
    let lab = Lab::start().await.context("cannot start a test registry")?;
    eprintln!("test registry: {} (temporary)", lab.registry().addr());
    Ok((TestImages::from_lab(&lab, docker_io_mirrored), Some(lab)))
}

fn write_json(path: Option<&Path>, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&"crisp-conformance"].into_iter().chain(args))
    }

    #[test]
    fn no_subcommand_runs_the_suite() {
        let cli =
            parse(&["--endpoint", "/run/x.sock", "--test-registry", "127.0.0.1:5000", "--docker-io-mirrored"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.suite.endpoint, "/run/x.sock");
        assert_eq!(cli.suite.registry.test_registry.as_deref(), Some("127.0.0.1:5000"));
        assert!(cli.suite.docker_io_mirrored);
    }

    #[test]
    fn docker_io_mirrored_needs_a_known_registry() {
        assert!(parse(&["--docker-io-mirrored"]).is_err());
    }

    #[test]
    fn bench_pull() {
        let cli = parse(&["bench", "pull", "--compare", "unix:///b.sock", "--iterations", "3"]).unwrap();
        let Some(Command::Bench { workload: Workload::Pull(args) }) = cli.command else { panic!("not bench pull") };
        assert_eq!(args.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(args.compare.as_deref(), Some("unix:///b.sock"));
        assert_eq!(args.iterations.get(), 3);
        assert!(args.registry.test_registry.is_none());

        let defaults = parse(&["bench", "pull"]).unwrap();
        let Some(Command::Bench { workload: Workload::Pull(args) }) = defaults.command else {
            panic!("not bench pull")
        };
        assert_eq!(args.iterations.get(), 5);
        assert!(parse(&["bench", "pull", "--iterations", "0"]).is_err());
        assert!(parse(&["--endpoint", "/run/x.sock", "bench", "pull"]).is_err());
    }

    #[test]
    fn bench_runp() {
        let runp = |args: &[&str]| {
            let all = [&["bench", "runp"], args].concat();
            let Some(Command::Bench { workload: Workload::Runp(args) }) = parse(&all).unwrap().command else {
                panic!("not bench runp")
            };
            args
        };
        let args = runp(&["--count", "3", "--compare", "unix:///b.sock", "--json", "/tmp/r.json"]);
        assert_eq!(args.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(args.compare.as_deref(), Some("unix:///b.sock"));
        assert_eq!(args.count.get(), 3);
        assert_eq!(args.json.as_deref(), Some(Path::new("/tmp/r.json")));
        assert_eq!(runp(&[]).count.get(), 10);
        assert_eq!(runp(&["--iterations", "4"]).count.get(), 4);
        assert!(parse(&["bench", "runp", "--count", "0"]).is_err());
        assert!(parse(&["bench", "runp", "--test-registry", "127.0.0.1:5000"]).is_err());
    }

    #[test]
    fn bench_containers() {
        let cli = parse(&[
            "bench",
            "containers",
            "--count",
            "3",
            "--compare",
            "unix:///b.sock",
            "--test-registry",
            "127.0.0.1:5000",
        ])
        .unwrap();
        let Some(Command::Bench { workload: Workload::Containers(args) }) = cli.command else {
            panic!("not bench containers")
        };
        assert_eq!(args.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(args.compare.as_deref(), Some("unix:///b.sock"));
        assert_eq!(args.count.get(), 3);
        assert_eq!(args.registry.test_registry.as_deref(), Some("127.0.0.1:5000"));
        assert!(parse(&["bench", "containers", "--count", "0"]).is_err());
    }
}
