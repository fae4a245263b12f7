//! `opf`: the OPF command-line tool. Each subcommand lives in its own module.

mod arch;
mod backend;
mod bench;
mod export;
mod glue;
mod hub;
mod mpo;

use clap::{Parser, Subcommand};

/// Over-parameterized fine-tuning (OPF, ACL 2023) in Rust.
#[derive(Debug, Parser)]
#[command(name = "opf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fine-tune on a GLUE task (dense or OPF), evaluate, predict and export.
    Glue(Box<glue::GlueCmd>),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Export a run's checkpoint as a Hugging Face model directory, MPO layers merged back.
    Export(export::ExportCmd),
    /// MPO (matrix product operator) tools.
    #[command(subcommand)]
    Mpo(mpo::MpoCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Fine-tuning step and inference time, dense and OPF, on random weights and fixed batches.
    Steps(bench::StepsCmd),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Glue(command) => glue::run(*command),
        Command::Bench(BenchCommand::Steps(command)) => bench::steps(command),
        Command::Export(command) => export::run(command),
        Command::Mpo(command) => mpo::run(command),
    }
}
