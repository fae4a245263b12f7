//! `opf mpo plan`: shapes, bond ranks, parameter counts and optimizer memory of MPO layers for a
//! matrix or a whole model config, without decomposing anything.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mpo_core::{MpoShape, Preset, Truncation, parse_factors};
use serde::Serialize;
use serde_json::Value;

/// `opf mpo …` subcommands.
#[derive(Debug, Subcommand)]
pub enum MpoCommand {
    /// Print MPO shapes, ranks, parameter counts and f32 Adam memory.
    Plan(PlanArgs),
}

/// Arguments of `opf mpo plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Matrix rows (out_features of the (out, in) weight).
    #[arg(long, requires = "cols", conflicts_with_all = ["shape", "config"])]
    rows: Option<usize>,
    /// Matrix columns (in_features).
    #[arg(long, requires = "rows")]
    cols: Option<usize>,
    /// Matrix size as ROWSxCOLS, e.g. 3072x768 (out x in).
    #[arg(long, conflicts_with = "config")]
    shape: Option<String>,
    /// A Hugging Face config.json (BERT-like, T5 or BART); plans every candidate matrix.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Shape preset: bert15, paper11, bart7, t5, svd, opf:N, balanced:N.
    #[arg(long, default_value = "bert15", conflicts_with_all = ["i", "j"])]
    preset: String,
    /// Explicit row factors, e.g. 64,1x13,48 (single matrix only).
    #[arg(long, requires = "j", conflicts_with = "config")]
    i: Option<String>,
    /// Explicit column factors, e.g. 32,1x13,24.
    #[arg(long, requires = "i")]
    j: Option<String>,
    /// Cap every bond rank (the original's truncate_num); lossless when absent.
    #[arg(long)]
    max_rank: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs an `opf mpo` subcommand.
pub fn run(command: MpoCommand) -> anyhow::Result<()> {
    match command {
        MpoCommand::Plan(args) => plan(&args),
    }
}

/// A group of same-shaped candidate matrices.
struct Group {
    name: &'static str,
    rows: usize,
    cols: usize,
    count: usize,
}

#[derive(Debug, Serialize)]
struct MatrixPlan {
    name: &'static str,
    rows: usize,
    cols: usize,
    count: usize,
    row_factors: Vec<usize>,
    col_factors: Vec<usize>,
    ranks: Vec<usize>,
    params: usize,
    dense_params: usize,
    x_dense: f64,
    n_add: i64,
    adam_f32_bytes: usize,
}

#[derive(Debug, Serialize)]
struct Totals {
    matrices: usize,
    params: usize,
    dense_params: usize,
    x_dense: f64,
    n_add: i64,
    adam_f32_bytes: usize,
}

#[derive(Debug, Serialize)]
struct Plan {
    preset: String,
    max_rank: Option<usize>,
    matrices: Vec<MatrixPlan>,
    total: Totals,
}

/// Params + Adam's two moments, 4 bytes each.
fn adam_f32_bytes(params: usize) -> usize {
    3 * params * 4
}

fn plan(args: &PlanArgs) -> anyhow::Result<()> {
    let groups = match (&args.config, &args.shape, args.rows.zip(args.cols)) {
        (Some(path), _, _) => config_groups(path)?,
        (None, Some(text), _) => {
            let (rows, cols) = text
                .split_once(['x', 'X'])
                .with_context(|| format!("--shape {text:?}: expected ROWSxCOLS"))?;
            vec![single(rows.trim().parse()?, cols.trim().parse()?)]
        }
        (None, None, Some((rows, cols))) => vec![single(rows, cols)],
        (None, None, None) => match (&args.i, &args.j) {
            (Some(i), Some(j)) => {
                let (i, j) = (parse_factors(i)?, parse_factors(j)?);
                vec![single(i.iter().product(), j.iter().product())]
            }
            _ => bail!("give --shape, --rows/--cols, --config, or --i/--j"),
        },
    };
    let preset: Option<Preset> = match (&args.i, &args.j) {
        (Some(_), Some(_)) => None,
        _ => Some(args.preset.parse()?),
    };
    let truncation = args.max_rank.map_or(Truncation::None, Truncation::MaxRank);

    let mut matrices = Vec::new();
    for g in &groups {
        let shape = match (&preset, &args.i, &args.j) {
            (Some(p), _, _) => p
                .shape(g.rows, g.cols)
                .with_context(|| format!("{} ({}x{})", g.name, g.rows, g.cols))?,
            (None, Some(i), Some(j)) => {
                MpoShape::for_matrix(g.rows, g.cols, parse_factors(i)?, parse_factors(j)?)?
            }
            _ => bail!("--i and --j go together"),
        };
        let ranks = shape.max_ranks(&truncation)?;
        let params = shape.param_count(&ranks);
        let dense = shape.dense_params();
        matrices.push(MatrixPlan {
            name: g.name,
            rows: g.rows,
            cols: g.cols,
            count: g.count,
            row_factors: shape.row_factors().to_vec(),
            col_factors: shape.col_factors().to_vec(),
            ranks,
            params,
            dense_params: dense,
            x_dense: params as f64 / dense as f64,
            n_add: params as i64 - dense as i64,
            adam_f32_bytes: adam_f32_bytes(params),
        });
    }
    let sum = |f: fn(&MatrixPlan) -> usize| matrices.iter().map(|m| m.count * f(m)).sum::<usize>();
    let (params, dense) = (sum(|m| m.params), sum(|m| m.dense_params));
    let total = Totals {
        matrices: sum(|_| 1),
        params,
        dense_params: dense,
        x_dense: params as f64 / dense as f64,
        n_add: params as i64 - dense as i64,
        adam_f32_bytes: adam_f32_bytes(params),
    };
    let plan = Plan {
        preset: preset.map_or_else(|| "explicit".to_string(), |p| p.to_string()),
        max_rank: args.max_rank,
        matrices,
        total,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print_table(&plan);
    }
    Ok(())
}

fn single(rows: usize, cols: usize) -> Group {
    Group {
        name: "matrix",
        rows,
        cols,
        count: 1,
    }
}

/// Candidate matrices of a config (spec §2.1): BERT Q/K/V/O, FFN_1, FFN_2 per layer; T5 and BART
/// the same per encoder layer plus self- and cross-attention in every decoder layer.
fn config_groups(path: &PathBuf) -> anyhow::Result<Vec<Group>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    let cfg: Value = serde_json::from_str(&text).with_context(|| format!("parsing {path:?}"))?;
    let get = |key: &str| cfg.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let need = |key: &str| get(key).with_context(|| format!("{path:?} has no integer {key:?}"));
    let group = |name, rows, cols, count| Group {
        name,
        rows,
        cols,
        count,
    };
    if let Some(hidden) = get("hidden_size") {
        let (ff, layers) = (need("intermediate_size")?, need("num_hidden_layers")?);
        return Ok(vec![
            group("attention", hidden, hidden, 4 * layers),
            group("ffn_1", ff, hidden, layers),
            group("ffn_2", hidden, ff, layers),
        ]);
    }
    let d = need("d_model")?;
    if let Some(enc_ff) = get("encoder_ffn_dim") {
        let (enc, dec) = (need("encoder_layers")?, need("decoder_layers")?);
        let dec_ff = get("decoder_ffn_dim").unwrap_or(enc_ff);
        let mut groups = vec![group("attention", d, d, 4 * enc + 8 * dec)];
        if enc_ff == dec_ff {
            groups.push(group("fc1", enc_ff, d, enc + dec));
            groups.push(group("fc2", d, enc_ff, enc + dec));
        } else {
            groups.push(group("encoder fc1", enc_ff, d, enc));
            groups.push(group("encoder fc2", d, enc_ff, enc));
            groups.push(group("decoder fc1", dec_ff, d, dec));
            groups.push(group("decoder fc2", d, dec_ff, dec));
        }
        return Ok(groups);
    }
    let (ff, enc) = (need("d_ff")?, need("num_layers")?);
    let dec = get("num_decoder_layers").unwrap_or(enc);
    let inner = match (get("num_heads"), get("d_kv")) {
        (Some(h), Some(kv)) => h * kv,
        _ => d,
    };
    let gated = cfg
        .get("feed_forward_proj")
        .and_then(Value::as_str)
        .is_some_and(|p| p.starts_with("gated"));
    let attention = enc + 2 * dec;
    let mut groups = if inner == d {
        vec![group("attention", d, d, 4 * attention)]
    } else {
        vec![
            group("attention q/k/v", inner, d, 3 * attention),
            group("attention o", d, inner, attention),
        ]
    };
    groups.push(group("wi", ff, d, (1 + usize::from(gated)) * (enc + dec)));
    groups.push(group("wo", d, ff, enc + dec));
    Ok(groups)
}

/// `64,1,1,1,48` → `64,1x3,48`.
fn compact(values: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut k = 0;
    while k < values.len() {
        let run = values[k..].iter().take_while(|&&v| v == values[k]).count();
        if run >= 3 {
            parts.push(format!("{}x{run}", values[k]));
        } else {
            parts.extend(values[k..k + run].iter().map(usize::to_string));
        }
        k += run;
    }
    parts.join(",")
}

fn print_table(plan: &Plan) {
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "preset {}{}",
        plan.preset,
        plan.max_rank
            .map_or(String::new(), |r| format!(", max rank {r}"))
    );
    println!(
        "{:<12} {:>10} {:>5}  {:<16} {:<16} {:<26} {:>12} {:>7} {:>12} {:>10}",
        "matrix",
        "out x in",
        "count",
        "i (rows)",
        "j (cols)",
        "ranks",
        "params",
        "x dense",
        "N_add",
        "Adam MiB"
    );
    for m in &plan.matrices {
        println!(
            "{:<12} {:>10} {:>5}  {:<16} {:<16} {:<26} {:>12} {:>7.3} {:>12} {:>10.1}",
            m.name,
            format!("{}x{}", m.rows, m.cols),
            m.count,
            compact(&m.row_factors),
            compact(&m.col_factors),
            compact(&m.ranks),
            m.params,
            m.x_dense,
            m.n_add,
            mib(m.adam_f32_bytes),
        );
    }
    let t = &plan.total;
    println!(
        "total: {} matrices, {} MPO params vs {} dense ({:.3}x, N_add {}), f32 params + Adam {:.1} MiB",
        t.matrices,
        t.params,
        t.dense_params,
        t.x_dense,
        t.n_add,
        mib(t.adam_f32_bytes)
    );
}
