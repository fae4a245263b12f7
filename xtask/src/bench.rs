//! `cargo xtask bench mpo`: the Rust MPO decomposition (`mpo-core`'s `mpo_bench` example, built in
//! the release profile: the dev profile's debug assertions slow faer down by ~1.5×) against `../shared/reference/mpo_numpy.py` on identical
//! matrices: numpy saves each input with `--save-matrix` and the Rust side loads that `.npy`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use clap::{Args, Subcommand};
use serde_json::Value;

/// Cargo arguments selecting the timed example. Release: the dev profile keeps debug assertions
/// on, and faer checks a lot of them.
const MPO_BENCH: [&str; 5] = ["--release", "-p", "mpo-core", "--example", "mpo_bench"];

/// `cargo xtask bench …` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Rust `mpo_core::decompose` vs the numpy reference, same matrices, same thread count.
    Mpo(MpoArgs),
    /// MiniLM-L6 MRPC training/evaluation throughput: opf dense and OPF vs PyTorch.
    Train(crate::bench_train::TrainArgs),
}

/// Arguments of `cargo xtask bench mpo`.
#[derive(Debug, Args)]
pub struct MpoArgs {
    /// Comma-separated presets of mpo_numpy.py (its --list shows them).
    #[arg(
        long,
        default_value = "toy,t5-attn,t5-ffn,bart-ffn,bert15-attn,bert15-ffn"
    )]
    cases: String,
    /// f64 or f32.
    #[arg(long, default_value = "f64")]
    dtype: String,
    /// Compare the plain TT-SVD sweep instead of sweep + symmetric gauge.
    #[arg(long)]
    no_gauge: bool,
    /// Timed repetitions of the Rust decomposition (median reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Timed repetitions of numpy (median reported); bert15-ffn takes minutes per repetition.
    #[arg(long, default_value_t = 1)]
    numpy_reps: usize,
    /// Threads for both sides (RAYON_NUM_THREADS, OPENBLAS/OMP/MKL_NUM_THREADS); default: all CPUs.
    #[arg(long)]
    threads: Option<usize>,
}

/// Runs a `cargo xtask bench` subcommand.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Mpo(args) => bench_mpo(&args),
        BenchCommand::Train(args) => crate::bench_train::run(&args),
    }
}

fn bench_mpo(args: &MpoArgs) -> anyhow::Result<()> {
    ensure!(
        args.dtype == "f64" || args.dtype == "f32",
        "--dtype must be f64 or f32"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has a parent directory")?
        .to_path_buf();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        bail!(
            "no Python venv at {}: create it with `python3 -m venv .venv && .venv/bin/pip install numpy threadpoolctl`",
            python.display()
        );
    }
    let script = root.join("../shared/reference/mpo_numpy.py");
    if !script.exists() {
        bail!("numpy reference not found at {}", script.display());
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let work = root.join("target/xtask-bench-mpo");
    std::fs::create_dir_all(&work)?;

    let status = Command::new(env!("CARGO"))
        .args(["build", "-q"])
        .args(MPO_BENCH)
        .current_dir(&root)
        .status()?;
    ensure!(status.success(), "building the mpo_bench example failed");

    let gauge = if args.no_gauge { "plain" } else { "gauge" };
    println!(
        "bench mpo | dtype {} | {} | threads {threads} (Rust rayon, numpy BLAS) | rust reps {} | numpy reps {} | {} CPUs",
        args.dtype,
        if args.no_gauge {
            "TT-SVD sweep only"
        } else {
            "sweep + symmetric gauge"
        },
        args.reps,
        args.numpy_reps,
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
    );
    println!(
        "{:<12} {:>9} {:>3} {:>11} {:>11} {:>9} {:>10} {:>10} {:>7}  load 1m (start/numpy/rust)",
        "case", "shape", "n", "rust_s", "numpy_s", "speedup", "rust_err", "numpy_err", "params",
    );
    for case in args
        .cases
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        let load_start = loadavg();
        let numpy = run_numpy(&python, &script, &work, case, args, threads)?;
        let load_numpy = loadavg();
        let rust = run_rust(&root, &numpy, gauge, args.reps, threads)?;
        let load_rust = loadavg();
        let rust_s = rust["decompose_s"]["median"]
            .as_f64()
            .context("rust median")?;
        let numpy_s = numpy.decompose_s;
        let same = rust["params"].as_u64() == Some(numpy.params);
        println!(
            "{:<12} {:>9} {:>3} {:>11.4} {:>11.4} {:>8.1}x {:>10.2e} {:>10.2e} {:>7}  {:.2}/{:.2}/{:.2}",
            case,
            format!("{}x{}", numpy.rows, numpy.cols),
            numpy.n_cores,
            rust_s,
            numpy_s,
            numpy_s / rust_s,
            rust["rel_fro_error"].as_f64().unwrap_or(f64::NAN),
            numpy.rel_err,
            if same { "same" } else { "DIFFER" },
            load_start,
            load_numpy,
            load_rust,
        );
    }
    Ok(())
}

/// What the bench needs from one mpo_numpy.py result.
struct NumpyCase {
    rows: usize,
    cols: usize,
    n_cores: usize,
    i: String,
    j: String,
    npy: PathBuf,
    params: u64,
    decompose_s: f64,
    rel_err: f64,
}

fn run_numpy(
    python: &Path,
    script: &Path,
    work: &Path,
    case: &str,
    args: &MpoArgs,
    threads: usize,
) -> anyhow::Result<NumpyCase> {
    let json = work.join(format!("{case}_{}.json", args.dtype));
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args([
            "--preset",
            case,
            "--dtype",
            &args.dtype,
            "--skip-gauge-checks",
        ])
        .args(["--reps", &args.numpy_reps.to_string()])
        .arg("--json")
        .arg(&json)
        .arg("--save-matrix")
        .arg(work);
    if !args.no_gauge {
        cmd.arg("--gauge");
    }
    for var in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
        cmd.env(var, threads.to_string());
    }
    let out = cmd.output().context("running mpo_numpy.py")?;
    ensure!(
        out.status.success(),
        "mpo_numpy.py --preset {case} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let r = &v["results"][0];
    let usize_of = |key: &str| {
        r[key]
            .as_u64()
            .map(|x| x as usize)
            .with_context(|| format!("{key} in {}", json.display()))
    };
    let list = |key: &str| -> anyhow::Result<String> {
        let items = r[key].as_array().with_context(|| format!("{key} list"))?;
        Ok(items
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(","))
    };
    let (rows, cols) = (usize_of("rows")?, usize_of("cols")?);
    Ok(NumpyCase {
        rows,
        cols,
        n_cores: usize_of("n_cores")?,
        i: list("i")?,
        j: list("j")?,
        npy: work.join(format!(
            "{case}_{rows}x{cols}_seed{}_{}.npy",
            usize_of("seed")?,
            args.dtype
        )),
        params: usize_of("params")? as u64,
        decompose_s: r["decompose_s"]["median"]
            .as_f64()
            .context("numpy median")?,
        rel_err: r["rel_fro_error"].as_f64().context("numpy error")?,
    })
}

fn run_rust(
    root: &Path,
    numpy: &NumpyCase,
    gauge: &str,
    reps: usize,
    threads: usize,
) -> anyhow::Result<Value> {
    let out = Command::new(env!("CARGO"))
        .args(["run", "-q"])
        .args(MPO_BENCH)
        .arg("--")
        .arg(&numpy.npy)
        .args([numpy.i.as_str(), numpy.j.as_str(), gauge, &reps.to_string()])
        .env("RAYON_NUM_THREADS", threads.to_string())
        .current_dir(root)
        .output()
        .context("running the mpo_bench example")?;
    ensure!(
        out.status.success(),
        "mpo_bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The 1-minute load average, or NaN where /proc/loadavg is unavailable.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}
