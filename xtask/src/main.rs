//! `cargo xtask <task>`: project automation. Each task lives in its own module.

mod bench;
mod bench_train;
mod glue;
mod gpu_bundle;
mod test;

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
    /// Fine-tune on a GLUE task with the task's config from configs/ (the main job).
    Glue(glue::GlueTask),
    /// Build `dist/gpu-bench/` (opf with the CUDA backend + scripts/gpu-bench) for a GPU machine.
    GpuBundle,
    /// The test command (README, `.ci/run`): workspace tests, GPU backends compiled, backend
    /// parity on wgpu where Vulkan is installed.
    Test,
    /// Benchmarks against the Python references in ../shared/reference.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    // The workspace root: xtask lives one level below it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf();
    match Cli::parse().command {
        Command::Glue(task) => glue::run(&root, task),
        Command::Bench(command) => bench::run(command),
        Command::GpuBundle => gpu_bundle::run(&root),
        Command::Test => test::run(&root),
    }
}
