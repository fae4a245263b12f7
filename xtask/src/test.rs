//! `cargo xtask test`: the project's test command (README, `.ci/run`).
//!
//! 1. `cargo test --workspace`: every test, on the default CPU backend.
//! 2. `cargo check -p opf-cli --features wgpu,cuda`: the GPU backends compile (no CUDA toolkit or
//!    GPU needed). It runs with `DOCS_RS=1`: cubecl-cuda 0.11 depends on cubecl-llvm, whose build
//!    script (tracel-llvm-bundler) downloads an LLVM bundle unless `DOCS_RS` is set; a type check
//!    needs no LLVM, a real CUDA build (`cargo xtask gpu-bundle`) does, once, online.
//! 3. With `OPF_WGPU_PARITY=1` and a Vulkan driver installed (Mesa's software one on a CPU
//!    machine), the backend parity test (`opf-models/tests/backends.rs`) on wgpu; it builds the
//!    whole wgpu stack (about 20 minutes on 2 cores), so it is opt-in; otherwise skipped with a
//!    message.
//! 4. `cargo check -p opf-cli --features tch` when LibTorch is configured (`LIBTORCH` or
//!    `LIBTORCH_USE_PYTORCH=1`, see README), else skipped with a message.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    cargo_env(root, args, &[])
}

fn cargo_env(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("xtask test: cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .current_dir(root)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Whether a Vulkan ICD (driver manifest) is installed.
fn vulkan_present() -> bool {
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .any(|mut entries| entries.next().is_some())
}

/// Runs the task.
pub fn run(root: &Path) -> Result<()> {
    cargo(root, &["test", "--workspace"])?;
    cargo_env(
        root,
        &["check", "-p", "opf-cli", "--features", "wgpu,cuda"],
        &[("DOCS_RS", "1")],
    )?;
    let wgpu_parity = std::env::var("OPF_WGPU_PARITY").is_ok_and(|v| v == "1");
    if wgpu_parity && vulkan_present() {
        cargo(
            root,
            &[
                "test",
                "-p",
                "opf-models",
                "--features",
                "wgpu",
                "--test",
                "backends",
                "--",
                "--nocapture",
            ],
        )?;
    } else {
        println!(
            "xtask test: wgpu parity skipped: {} (run it with OPF_WGPU_PARITY=1 and a Vulkan \
             driver: apt-get install mesa-vulkan-drivers libvulkan1)",
            if wgpu_parity {
                "no Vulkan driver"
            } else {
                "OPF_WGPU_PARITY is not 1"
            }
        );
    }
    let libtorch = std::env::var_os("LIBTORCH").is_some()
        || std::env::var("LIBTORCH_USE_PYTORCH").is_ok_and(|v| v == "1");
    if libtorch {
        cargo(root, &["check", "-p", "opf-cli", "--features", "tch"])?;
    } else {
        println!(
            "xtask test: tch skipped: LibTorch not configured (set LIBTORCH_USE_PYTORCH=1 with \
             PyTorch 2.9.0 importable, or LIBTORCH; see README)"
        );
    }
    Ok(())
}
