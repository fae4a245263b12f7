//! `cargo xtask <task>`: project automation. Each task lives in its own module.

mod bench;

use clap::{Parser, Subcommand};

/// Project automation for the opf workspace.
#[derive(Debug, Parser)]
#[command(name = "xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmarks against the Python references in ../shared/reference.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Bench(command) => bench::run(command),
    }
}
