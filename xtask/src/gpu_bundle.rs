//! `cargo xtask gpu-bundle`: builds the `opf` binary with the CubeCL CUDA backend on this
//! machine (no CUDA toolkit needed: the driver and NVRTC are loaded at run time), strips it and
//! puts it with `scripts/gpu-bench/` into `dist/gpu-bench/`, a folder that runs on a GPU machine
//! with no cargo and no internet: `dist/gpu-bench/run.sh`. The build machine needs internet once:
//! cubecl-cuda 0.11 links cubecl-llvm, whose build script downloads an LLVM bundle.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// What may travel to the GPU machine.
const MAX_BYTES: u64 = 64 << 20;

/// Runs the task.
pub fn run(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "-p",
            "opf-cli",
            "--no-default-features",
            "--features",
            "cuda",
        ])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building opf with --features cuda failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join("opf");
    let out = root.join("dist").join("gpu-bench");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let dest = out.join("opf-cuda");
    std::fs::copy(&binary, &dest)
        .with_context(|| format!("copying {} to {}", binary.display(), dest.display()))?;
    // Debug info is most of the file; the benchmark needs none of it.
    match Command::new("strip").arg(&dest).status() {
        Ok(s) if s.success() => {}
        _ => eprintln!("warning: `strip` unavailable or failed; the bundle keeps its debug info"),
    }
    for f in ["run.sh", "torch_steps.py"] {
        let src = root.join("scripts").join("gpu-bench").join(f);
        std::fs::copy(&src, out.join(f)).with_context(|| format!("copying {}", src.display()))?;
    }
    let size: u64 = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{}: opf-cuda, run.sh, torch_steps.py ({:.1} MiB)\non the GPU machine: {}/run.sh {}",
        out.display(),
        size as f64 / (1 << 20) as f64,
        out.display(),
        out.display()
    );
    if size > MAX_BYTES {
        bail!("the bundle is {size} bytes, over the 64 MiB a GPU machine accepts");
    }
    Ok(())
}
