//! `crisp-conformance`: runs the CRI conformance suite, or a benchmark, against any CRI socket.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crisp_conformance::bench::floor::FloorConfig;
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
    /// Time workloads against a CRI endpoint, or two: every workload, in one report, unless one
    /// is named.
    Bench(BenchCommand),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchCommand {
    #[command(subcommand)]
    workload: Option<Workload>,
    #[command(flatten)]
    all: AllArgs,
}

#[derive(Subcommand)]
enum Workload {
    /// Pods one at a time, each with a `sleep` container, through their whole life: every step
    /// timed, and the RSS of the per-pod process that keeps it (crisp-monitor, containerd-shim).
    Sequential(SequentialArgs),
    /// Pods with a started container, all asked for at once: the wall time and pods/s.
    Burst(BurstArgs),
    /// Pods held at once: the daemon's RSS and CPU, each pod's overhead, list latencies.
    Density(DensityArgs),
    /// Pods held while readers call the read RPCs and churners run pods through their life:
    /// each RPC's latencies, every error, the daemon's RSS, fds and threads before, during, after.
    Load(LoadArgs),
    /// Cold pulls of the lab's multi-layer image: removed before each pull.
    Pull(PullArgs),
    /// Pods with a running container made directly, with no daemon (netns, CNI ADD, the OCI
    /// runtime), one at a time: the floor a runtime's pods compare to. As root.
    Floor(FloorCommand),
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

/// Where a workload runs, and where its results go.
#[derive(Args)]
struct TargetArgs {
    /// The socket to measure.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// A second socket, measured with the same workload in the same run and compared to it.
    #[arg(long, value_name = "ENDPOINT")]
    compare: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Every workload in one report: what `bench` does without a workload.
#[derive(Args)]
struct AllArgs {
    #[command(flatten)]
    targets: TargetArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Sequential pods, cold pulls and floor pods, per endpoint.
    #[arg(long, default_value = "10")]
    count: NonZeroUsize,
    /// Pods in a burst.
    #[arg(long, value_name = "P", default_value = "10")]
    burst: NonZeroUsize,
    /// Pods held at once.
    #[arg(long, value_name = "D", default_value = "20")]
    density: NonZeroUsize,
    /// Leave out the floor (which needs root, a CNI network and an OCI runtime).
    #[arg(long, conflicts_with_all = ["cni_conf_dir", "cni_bin_dirs", "runtime"])]
    no_floor: bool,
    #[command(flatten)]
    floor: FloorArgs,
}

#[derive(Args)]
struct SequentialArgs {
    #[command(flatten)]
    targets: TargetArgs,
    /// Pods per endpoint, besides one untimed warm-up pod.
    #[arg(long, visible_alias = "iterations", default_value = "10")]
    count: NonZeroUsize,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct BurstArgs {
    #[command(flatten)]
    targets: TargetArgs,
    /// Pods in a burst.
    #[arg(long, default_value = "10")]
    pods: NonZeroUsize,
    /// Bursts per endpoint, the endpoints' order rotated each round.
    #[arg(long, default_value = "1")]
    rounds: NonZeroUsize,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct DensityArgs {
    #[command(flatten)]
    targets: TargetArgs,
    /// Pods held at once.
    #[arg(long, default_value = "20")]
    pods: NonZeroUsize,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct LoadArgs {
    /// The socket to load.
    #[arg(long, default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Pods held through the load.
    #[arg(long, default_value = "100")]
    pods: usize,
    /// Running containers in each held pod.
    #[arg(long, default_value = "2")]
    containers: NonZeroUsize,
    /// Clients calling the read RPCs in a loop.
    #[arg(long, default_value = "10")]
    readers: usize,
    /// Clients running pods through their whole life, one after another.
    #[arg(long, default_value = "5")]
    churners: usize,
    /// How long the load lasts, in seconds.
    #[arg(long, default_value = "60")]
    seconds: u64,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct PullArgs {
    #[command(flatten)]
    targets: TargetArgs,
    /// Pulls per endpoint.
    #[arg(long, default_value = "5")]
    iterations: NonZeroUsize,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
struct FloorCommand {
    /// Pods, besides one untimed warm-up pod.
    #[arg(long, visible_alias = "iterations", default_value = "10")]
    count: NonZeroUsize,
    #[command(flatten)]
    floor: FloorArgs,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// How the floor makes its pods, wherever it runs.
#[derive(Args)]
struct FloorArgs {
    /// The CNI network is this dir's first network file by name, as crisp picks it.
    #[arg(long, value_name = "DIR", default_value_os_t = FloorConfig::default().cni_conf_dir)]
    cni_conf_dir: PathBuf,
    /// Where CNI plugins are looked for, in order (repeatable).
    #[arg(long = "cni-bin-dir", value_name = "DIR", default_values_os_t = FloorConfig::default().cni_bin_dirs)]
    cni_bin_dirs: Vec<PathBuf>,
    /// The OCI runtime, with runc's command line.
    #[arg(long, value_name = "PATH", default_value_os_t = FloorConfig::default().runtime)]
    runtime: PathBuf,
}

impl FloorArgs {
    fn config(&self) -> FloorConfig {
        FloorConfig {
            cni_conf_dir: self.cni_conf_dir.clone(),
            cni_bin_dirs: self.cni_bin_dirs.clone(),
            runtime: self.runtime.clone(),
            ..FloorConfig::default()
        }
    }
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
    let Some(Command::Bench(bench)) = cli.command else { return run_suite(cli.suite).await };
    match bench.workload {
        None => bench_all(bench.all).await,
        Some(Workload::Sequential(args)) => {
            let targets = targets(&args.targets).await?;
            let (images, _lab) = test_images(&args.registry, false).await?;
            report(&args.targets, bench::sequential::run(&targets, &images, args.count).await?)
        }
        Some(Workload::Burst(args)) => {
            let targets = targets(&args.targets).await?;
            let (images, _lab) = test_images(&args.registry, false).await?;
            report(&args.targets, bench::burst::run(&targets, &images, args.pods, args.rounds).await?)
        }
        Some(Workload::Density(args)) => {
            let targets = targets(&args.targets).await?;
            let (images, _lab) = test_images(&args.registry, false).await?;
            report(&args.targets, bench::density::run(&targets, &images, args.pods).await?)
        }
        Some(Workload::Load(args)) => {
            let endpoint = Endpoint::parse(&args.endpoint)?;
            let target = Target { client: CriClient::connect(&endpoint, &endpoint).await?, endpoint };
            let (images, _lab) = test_images(&args.registry, false).await?;
            let config = bench::load::LoadConfig {
                pods: args.pods,
                containers: args.containers,
                readers: args.readers,
                churners: args.churners,
                duration: Duration::from_secs(args.seconds),
                tolerate_unavailable: false,
            };
            let report = bench::load::run(&target, &images, &config).await?;
            print!("{report}");
            write_json(args.json.as_deref(), &report)?;
            // The load must pass without an error: one is a failure of the runtime.
            Ok(if report.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Some(Workload::Pull(args)) => {
            let targets = targets(&args.targets).await?;
            let (images, _lab) = test_images(&args.registry, false).await?;
            report(&args.targets, bench::pull::run(&targets, &images, args.iterations).await?)
        }
        Some(Workload::Floor(args)) => {
            let report = bench::floor::run(&args.floor.config(), args.count).await?;
            print!("{report}");
            write_json(args.json.as_deref(), &report)?;
            Ok(ExitCode::SUCCESS)
        }
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

/// Every workload in turn, each section printed as soon as it is done, then the targets.
async fn bench_all(args: AllArgs) -> anyhow::Result<ExitCode> {
    let targets = targets(&args.targets).await?;
    let (images, _lab) = test_images(&args.registry, false).await?;
    let sequential = bench::sequential::run(&targets, &images, args.count).await?;
    println!("{sequential}");
    let burst = bench::burst::run(&targets, &images, args.burst, NonZeroUsize::MIN).await?;
    println!("{burst}");
    let density = bench::density::run(&targets, &images, args.density).await?;
    println!("{density}");
    let pull = bench::pull::run(&targets, &images, args.count).await?;
    println!("{pull}");
    let floor = match args.no_floor {
        true => None,
        false => {
            let floor = bench::floor::run(&args.floor.config(), args.count)
                .await
                .context("the floor (--no-floor leaves it out)")?;
            println!("{floor}");
            Some(floor)
        }
    };
    let all = bench::AllReport::new(sequential, burst, density, pull, floor);
    print!("{}", all.targets_table());
    write_json(args.targets.json.as_deref(), &all)?;
    Ok(ExitCode::SUCCESS)
}

fn report(args: &TargetArgs, report: impl Serialize + std::fmt::Display) -> anyhow::Result<ExitCode> {
    print!("{report}");
    write_json(args.json.as_deref(), &report)?;
    Ok(ExitCode::SUCCESS)
}

/// The endpoint to measure, and the one to compare it with.
async fn targets(args: &TargetArgs) -> anyhow::Result<Vec<Target>> {
    let mut targets = Vec::new();
    for endpoint in [Some(args.endpoint.as_str()), args.compare.as_deref()].into_iter().flatten() {
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

    /// The workload `bench` parsed into; panics on a parse error or without a workload.
    fn workload(args: &[&str]) -> Workload {
        let all = [&["bench"], args].concat();
        let Some(Command::Bench(bench)) = parse(&all).unwrap().command else { panic!("not bench") };
        bench.workload.expect("a workload")
    }

    #[test]
    fn bench_without_a_workload_runs_them_all() {
        let cli = parse(&[
            "bench",
            "--compare",
            "unix:///b.sock",
            "--count",
            "3",
            "--burst",
            "4",
            "--density",
            "5",
            "--test-registry",
            "127.0.0.1:5000",
            "--json",
            "/tmp/r.json",
        ])
        .unwrap();
        let Some(Command::Bench(BenchCommand { workload: None, all })) = cli.command else { panic!("not bench") };
        assert_eq!(all.targets.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(all.targets.compare.as_deref(), Some("unix:///b.sock"));
        assert_eq!(all.targets.json.as_deref(), Some(Path::new("/tmp/r.json")));
        assert_eq!((all.count.get(), all.burst.get(), all.density.get()), (3, 4, 5));
        assert_eq!(all.registry.test_registry.as_deref(), Some("127.0.0.1:5000"));

        let Some(Command::Bench(defaults)) = parse(&["bench"]).unwrap().command else { panic!("not bench") };
        assert!(defaults.workload.is_none());
        assert_eq!((defaults.all.count.get(), defaults.all.burst.get(), defaults.all.density.get()), (10, 10, 20));
        assert!(!defaults.all.no_floor);
        assert_eq!(defaults.all.floor.config().runtime, FloorConfig::default().runtime);
        assert!(parse(&["bench", "--density", "0"]).is_err());

        let Some(Command::Bench(floor)) =
            parse(&["bench", "--cni-conf-dir", "/n", "--cni-bin-dir", "/b", "--runtime", "/crun"]).unwrap().command
        else {
            panic!("not bench")
        };
        let config = floor.all.floor.config();
        assert_eq!((config.cni_conf_dir, config.cni_bin_dirs), ("/n".into(), vec!["/b".into()]));
        assert_eq!(config.runtime, Path::new("/crun"));
        let Some(Command::Bench(no_floor)) = parse(&["bench", "--no-floor"]).unwrap().command else { panic!() };
        assert!(no_floor.all.no_floor);
        assert!(parse(&["bench", "--no-floor", "--runtime", "/crun"]).is_err());
        // The all-in-one's options belong to it, not to a workload named after them.
        assert!(parse(&["bench", "--count", "3", "pull"]).is_err());
        assert!(parse(&["bench", "runp"]).is_err());
        assert!(parse(&["bench", "containers"]).is_err());
    }

    #[test]
    fn bench_sequential() {
        let Workload::Sequential(args) = workload(&["sequential", "--count", "3", "--compare", "unix:///b.sock"])
        else {
            panic!("not sequential")
        };
        assert_eq!(args.targets.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(args.targets.compare.as_deref(), Some("unix:///b.sock"));
        assert_eq!(args.count.get(), 3);
        let Workload::Sequential(args) = workload(&["sequential", "--iterations", "4"]) else { panic!() };
        assert_eq!(args.count.get(), 4);
        let Workload::Sequential(args) = workload(&["sequential"]) else { panic!() };
        assert_eq!(args.count.get(), 10);
        assert!(parse(&["bench", "sequential", "--count", "0"]).is_err());
    }

    #[test]
    fn bench_burst_and_density() {
        let Workload::Burst(args) = workload(&["burst", "--pods", "5", "--rounds", "3"]) else { panic!("not burst") };
        assert_eq!((args.pods.get(), args.rounds.get()), (5, 3));
        let Workload::Burst(args) = workload(&["burst"]) else { panic!("not burst") };
        assert_eq!((args.pods.get(), args.rounds.get()), (10, 1));
        let Workload::Density(args) = workload(&["density", "--test-registry", "127.0.0.1:5000"]) else {
            panic!("not density")
        };
        assert_eq!(args.pods.get(), 20);
        assert_eq!(args.registry.test_registry.as_deref(), Some("127.0.0.1:5000"));
        assert!(parse(&["bench", "density", "--burst", "3"]).is_err());
    }

    #[test]
    fn bench_pull() {
        let Workload::Pull(args) = workload(&["pull", "--compare", "unix:///b.sock", "--iterations", "3"]) else {
            panic!("not pull")
        };
        assert_eq!(args.targets.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(args.targets.compare.as_deref(), Some("unix:///b.sock"));
        assert_eq!(args.iterations.get(), 3);
        assert!(args.registry.test_registry.is_none());
        let Workload::Pull(args) = workload(&["pull"]) else { panic!("not pull") };
        assert_eq!(args.iterations.get(), 5);
        assert!(parse(&["bench", "pull", "--iterations", "0"]).is_err());
        assert!(parse(&["--endpoint", "/run/x.sock", "bench", "pull"]).is_err());
    }

    #[test]
    fn bench_floor() {
        let Workload::Floor(defaults) = workload(&["floor"]) else { panic!("not floor") };
        assert_eq!(defaults.count.get(), 10);
        assert_eq!(defaults.json, None);
        let (config, expected) = (defaults.floor.config(), FloorConfig::default());
        assert_eq!(config.cni_conf_dir, expected.cni_conf_dir);
        assert_eq!(config.cni_bin_dirs, expected.cni_bin_dirs);
        assert_eq!(config.runtime, expected.runtime);

        let Workload::Floor(args) = workload(&[
            "floor",
            "--count",
            "2",
            "--cni-conf-dir",
            "/tmp/net.d",
            "--cni-bin-dir",
            "/a",
            "--cni-bin-dir",
            "/b",
            "--runtime",
            "/usr/bin/crun",
            "--json",
            "/tmp/f.json",
        ]) else {
            panic!("not floor")
        };
        assert_eq!(args.count.get(), 2);
        let config = args.floor.config();
        assert_eq!(config.cni_conf_dir, Path::new("/tmp/net.d"));
        assert_eq!(config.cni_bin_dirs, [Path::new("/a"), Path::new("/b")]);
        assert_eq!(config.runtime, Path::new("/usr/bin/crun"));
        assert_eq!(args.json.as_deref(), Some(Path::new("/tmp/f.json")));
        assert!(parse(&["bench", "floor", "--count", "0"]).is_err());
        assert!(parse(&["bench", "floor", "--endpoint", "/run/x.sock"]).is_err());
    }
}
