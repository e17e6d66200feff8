//! Runs a long-lived test lab: a registry at a fixed address serving every lab image, until
//! SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use crisp_conformance::lab::Lab;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(name = "crisp-lab", version, about = "crisp's test lab: a local registry serving the test images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a registry, push every lab image to it, print `ready`, and serve until signalled.
    Serve {
        /// Where the registry listens.
        #[arg(long, default_value = "127.0.0.1:5000")]
        addr: SocketAddr,
        /// Holds the registry's config, log and storage; kept across runs.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { addr, dir } => serve(addr, &dir).await,
    }
}

async fn serve(addr: SocketAddr, dir: &Path) -> anyhow::Result<()> {
    // Listening before starting anything, so that a signal during start-up still stops the
    // registry cleanly instead of killing this process and orphaning it.
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;

    let lab = tokio::select! {
        lab = Lab::serve_at(addr, dir) => lab.with_context(|| format!("cannot serve the lab at {addr}"))?,
        _ = terminate.recv() => return Ok(()),
        _ = interrupt.recv() => return Ok(()),
    };
    for pushed in lab.images().values() {
        println!("pushed {} {}", pushed.reference, pushed.digest);
    }
    println!("ready");

    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    drop(lab);
    Ok(())
}
