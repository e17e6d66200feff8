//! `crisp-conformance`: runs the CRI conformance suite against any CRI socket.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crisp_conformance::client::{CriClient, Endpoint};
use crisp_conformance::suite::{self, Selection};

#[derive(Parser)]
#[command(name = "crisp-conformance", version, about = "CRI conformance suite for any CRI runtime")]
struct Cli {
    /// The runtime service's socket, e.g. unix:///run/crisp/crisp.sock.
    #[arg(long, default_value = "unix:///run/crisp/crisp.sock")]
    endpoint: String,
    /// The image service's socket, when not the runtime's.
    #[arg(long)]
    image_endpoint: Option<String>,
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

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crisp-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.list {
        for case in suite::cases() {
            println!("{}", case.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = Endpoint::parse(&cli.endpoint)?;
    let image = cli.image_endpoint.as_deref().map(Endpoint::parse).transpose()?.unwrap_or_else(|| runtime.clone());
    let mut client = CriClient::connect(&runtime, &image).await?;
    let selection = Selection { focus: cli.focus, skip: cli.skip };
    let report = suite::run(&mut client, &selection, |outcome| println!("{outcome}")).await;
    println!("{}", report.summary());
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
