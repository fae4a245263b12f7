//! Times `decompose` on a matrix saved by `mpo_numpy.py --save-matrix`, for `cargo xtask bench mpo`.
//!
//! Usage: `mpo_bench <matrix.npy> <row factors> <col factors> <gauge|plain> <reps>`, e.g.
//! `mpo_bench t5.npy 4,4,8,6,4 3,4,4,4,4 gauge 3`. Prints one JSON object on stdout.

use std::time::Instant;

use mpo_core::{DecomposeOptions, Gauge, MpoShape, decompose, parse_factors};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, i, j, gauge, reps] = args.as_slice() else {
        return Err(
            "usage: mpo_bench <matrix.npy> <row factors> <col factors> <gauge|plain> <reps>".into(),
        );
    };
    let Npy {
        rows,
        cols,
        data,
        dtype,
    } = read_npy(&std::fs::read(path)?)?;
    let shape = MpoShape::for_matrix(rows, cols, parse_factors(i)?, parse_factors(j)?)?;
    let options = DecomposeOptions {
        gauge: match gauge.as_str() {
            "gauge" => Gauge::Symmetric,
            "plain" => Gauge::LeftOrthonormal,
            other => return Err(format!("gauge must be `gauge` or `plain`, got {other:?}").into()),
        },
        ..Default::default()
    };
    let reps: usize = reps.parse()?;
    let mut times = Vec::with_capacity(reps);
    let mut mpo = None;
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        // An f32 matrix is decomposed from its f32 values, as the original does for OPF.
        let result = match dtype {
            Dtype::F32 => {
                let w32: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                decompose(&w32, &shape, &options)?
            }
            Dtype::F64 => decompose(&data, &shape, &options)?,
        };
        times.push(start.elapsed().as_secs_f64());
        mpo = Some(result);
    }
    let mpo = mpo.ok_or("no repetition ran")?;
    let start = Instant::now();
    let back = mpo.to_dense();
    let reconstruct_s = start.elapsed().as_secs_f64();
    let diff: f64 = back.iter().zip(&data).map(|(a, b)| (a - b) * (a - b)).sum();
    let norm: f64 = data.iter().map(|b| b * b).sum();
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"decompose_s\": {{\"median\": {}, \"min\": {}, \"max\": {}}}, \"reconstruct_s\": {}, \
         \"rel_fro_error\": {:e}, \"params\": {}, \"ranks\": {:?}, \"threads\": {}}}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        reconstruct_s,
        (diff / norm).sqrt(),
        mpo.param_count(),
        mpo.ranks(),
        rayon::current_num_threads(),
    );
    Ok(())
}

/// A 2-D `.npy` array, values widened to `f64`.
struct Npy {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
    dtype: Dtype,
}

enum Dtype {
    F32,
    F64,
}

/// Minimal `.npy` reader: little-endian `f4`/`f8`, C order, 2-D.
fn read_npy(bytes: &[u8]) -> Result<Npy, Box<dyn std::error::Error>> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an .npy file".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len])?;
    if header.contains("'fortran_order': True") {
        return Err("fortran-order .npy is not supported".into());
    }
    let dtype = if header.contains("'<f8'") {
        Dtype::F64
    } else if header.contains("'<f4'") {
        Dtype::F32
    } else {
        return Err(format!("unsupported dtype in header {header}").into());
    };
    let dims: Vec<usize> = header
        .split_once("'shape': (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .ok_or("no shape in header")?
        .0
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(format!("expected a 2-D array, got shape {dims:?}").into());
    };
    let body = &bytes[start + header_len..];
    let data: Vec<f64> = match dtype {
        Dtype::F64 => body
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect(),
        Dtype::F32 => body
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or_default())))
            .collect(),
    };
    if data.len() != rows * cols {
        return Err(format!("{} values for shape {rows}x{cols}", data.len()).into());
    }
    Ok(Npy {
        rows,
        cols,
        data,
        dtype,
    })
}
