//! Matrix → MPO: the left-to-right TT-SVD sweep (spec §1.4) and the symmetric gauge (spec §1.5).
//!
//! Sites with `i_k = j_k = 1` strictly between non-trivial sites do not change the cut, so the
//! sweep runs on the shape without them and identities are inserted afterwards. For OPF's
//! `[a, 1, …, 1, b]` shapes this turns the original's `n - 1` SVDs (plus `2(n - 1)` more for the
//! gauge) into one SVD of the reshaped `(a·c) × (b·d)` matrix.

use std::sync::Arc;

use rayon::prelude::*;

use crate::linalg::{Left, matmul_rm, scale_cols_in_place, svd};
use crate::mpo::{flat_index, interleave_offsets};
use crate::{Core, Mpo, MpoError, MpoShape, Orientation, Truncation};

/// Which of the equivalent core sets to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gauge {
    /// Plain TT-SVD output: cores `0..n-1` left-orthonormal, the last core carries the norm
    /// (`get_tensor_set`, `Matrix2MPO.py:58-85`).
    LeftOrthonormal,
    /// The original's bi-canonical gauge (`mpo_canonical`, `Matrix2MPO.py:86-156`): at every bond
    /// `b` the left block and the right block both have Gram matrix `diag(λ_b)`, with `λ_b` the
    /// cut's singular values, descending. Bond indices with `λ = 0` get zero entries instead of
    /// the original's division by zero.
    #[default]
    Symmetric,
}

/// Options of [`decompose`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecomposeOptions {
    /// Rank selection; lossless by default.
    pub truncation: Truncation,
    /// Gauge of the returned cores; symmetric by default, as OPF uses.
    pub gauge: Gauge,
}

/// Decomposes a row-major `(rows, cols)` matrix (for a weight: the (out, in) view) into an MPO.
///
/// Computes in `f64` whatever the input type. See [`decompose_weight`] for weights stored
/// `(in, out)`.
pub fn decompose<T: Copy + Into<f64>>(
    matrix: &[T],
    shape: &MpoShape,
    options: &DecomposeOptions,
) -> Result<Mpo, MpoError> {
    decompose_weight(matrix, Orientation::OutIn, shape, options)
}

/// Decomposes a weight buffer stored in `orientation`; `shape` always factorises the (out, in)
/// view, so `shape.rows()` is `out_features` (spec §1.1).
pub fn decompose_weight<T: Copy + Into<f64>>(
    weight: &[T],
    orientation: Orientation,
    shape: &MpoShape,
    options: &DecomposeOptions,
) -> Result<Mpo, MpoError> {
    let (rows, cols) = (shape.rows(), shape.cols());
    if weight.len() != rows * cols {
        return Err(MpoError::BufferLength {
            rows,
            cols,
            expected: rows * cols,
            got: weight.len(),
        });
    }
    let caps = shape.max_ranks(&options.truncation)?;

    let max_abs = max_abs_finite(weight)?;
    // Outside 2^±400 the Gram matrices could overflow or underflow (at 1e±160 the SVD did not
    // converge; at 1e-300 it came back silently wrong), so the decomposition then runs on the
    // matrix scaled by 2^-e, its largest entry in [1/2, 2). `e` is even, so scaling back is
    // exact, the symmetric gauge's √(2^e) included.
    let exponent = if max_abs == 0.0 || (2f64.powi(-400)..=2f64.powi(400)).contains(&max_abs) {
        0
    } else {
        2 * (max_abs.log2() / 2.0).round() as i32
    };
    let (row_off, col_off) = interleave_offsets(shape);
    let mut tensor = vec![0.0; rows * cols];
    for (r, &ro) in row_off.iter().enumerate() {
        for (c, &co) in col_off.iter().enumerate() {
            let x: f64 = weight[flat_index(orientation, rows, cols, r, c)].into();
            tensor[ro + co] = if exponent == 0 {
                x
            } else {
                times_pow2(x, -exponent)
            };
        }
    }

    let sizes = shape.site_sizes();
    let kept = kept_sites(&sizes);
    let q: Vec<usize> = kept.iter().map(|&k| sizes[k]).collect();
    let reduced_caps: Vec<usize> = (0..=kept.len())
        .map(|m| match m {
            0 => 1,
            m if m == kept.len() => 1,
            m => caps[kept[m]],
        })
        .collect();
    let delta = match options.truncation {
        Truncation::RelativeError(eps) => {
            let norm = sum_of_squares(&tensor).sqrt();
            Some(eps / ((kept.len() - 1).max(1) as f64).sqrt() * norm)
        }
        _ => None,
    };

    let sweep = left_sweep(tensor, &q, &reduced_caps, delta)?;
    let error_bound = times_pow2(sweep.discarded2.sqrt(), exponent);
    let mut reduced = match options.gauge {
        Gauge::LeftOrthonormal => sweep.into_left_orthonormal(&q),
        Gauge::Symmetric => symmetric_gauge(sweep, &q)?,
    };
    reduced.scale_back(exponent);
    Ok(expand(shape, &kept, reduced, error_bound))
}

/// `x · 2^e`, exact unless the result overflows or underflows (two factors, each a normal
/// number, so `e` may span the whole exponent range).
fn times_pow2(x: f64, e: i32) -> f64 {
    let half = e / 2;
    x * 2f64.powi(half) * 2f64.powi(e - half)
}

/// Site indices the sweep runs on: every site except trivial (`i·j = 1`) ones strictly between
/// the first and last non-trivial site. Such a site leaves the cut unchanged, so its bond rank
/// equals its neighbour's and its core is an identity.
fn kept_sites(sizes: &[usize]) -> Vec<usize> {
    let first = sizes.iter().position(|&p| p > 1);
    let last = sizes.iter().rposition(|&p| p > 1);
    (0..sizes.len())
        .filter(|&k| match (first, last) {
            (Some(f), Some(l)) => sizes[k] > 1 || k < f || k > l,
            _ => true,
        })
        .collect()
}

/// Result of the left-to-right sweep on the reduced sites.
struct Sweep {
    /// Left-orthonormal cores `0..m-1`, row-major `(r_k·q_k) × r_{k+1}` (some maybe unformed).
    left: Vec<Left>,
    /// Bond ranks `r_0..r_m`.
    ranks: Vec<usize>,
    /// Singular values and `Vᵀ` rows of the last SVD, so the last core is `diag(s) Vᵀ`; `None`
    /// for one site, whose core is `rest`.
    last: Option<(Vec<f64>, Vec<f64>)>,
    /// The whole tensor when there is one site (no SVD ran), otherwise empty.
    rest: Vec<f64>,
    /// Sum of the squared discarded singular values.
    discarded2: f64,
}

impl Sweep {
    /// The cores of the left-orthonormal form: the `A_k`, then `diag(s) Vᵀ` (or the tensor).
    fn into_left_orthonormal(self, q: &[usize]) -> Reduced {
        let ranks = &self.ranks;
        let mut cores: Vec<Vec<f64>> = (self.left.into_iter().enumerate())
            .map(|(k, a)| a.into_dense(ranks[k] * q[k], ranks[k + 1]))
            .collect();
        cores.push(match self.last {
            Some((s, mut vt)) => {
                scale_rows_in_place(&mut vt, &s);
                vt
            }
            None => self.rest,
        });
        Reduced {
            cores,
            ranks: self.ranks,
            spectra: None,
        }
    }
}

/// Finished cores on the reduced sites.
struct Reduced {
    /// Row-major core data, `(r_k, q_k, r_{k+1})`.
    cores: Vec<Vec<f64>>,
    /// Bond ranks `r_0..r_m`.
    ranks: Vec<usize>,
    /// Bond spectra, entry `b` for bond `b` (entry 0 unused), with the symmetric gauge.
    spectra: Option<Vec<Vec<f64>>>,
}

impl Reduced {
    /// From the cores of `2^-e A` to those of `A`: every bond spectrum times `2^e`. With the
    /// symmetric gauge (`√λ` on both sides of every bond) the two end cores take `2^(e/2)` each
    /// and the inner ones are unchanged; in the left-orthonormal form the last core takes `2^e`.
    fn scale_back(&mut self, exponent: i32) {
        if exponent == 0 {
            return;
        }
        let scale =
            |core: &mut Vec<f64>, e: i32| core.iter_mut().for_each(|x| *x = times_pow2(*x, e));
        let m = self.cores.len();
        match &mut self.spectra {
            Some(spectra) if m > 1 => {
                spectra
                    .iter_mut()
                    .flatten()
                    .for_each(|x| *x = times_pow2(*x, exponent));
                scale(&mut self.cores[0], exponent / 2);
                scale(&mut self.cores[m - 1], exponent / 2);
            }
            _ => scale(&mut self.cores[m - 1], exponent),
        }
    }
}

/// TT-SVD (`Matrix2MPO.py:58-85`; tensorly `tensor_train`): reshape the remainder to
/// `(r_k·q_k, -1)`, thin SVD, keep `U` as core `k`, carry `diag(s) Vᵀ` to the right.
fn left_sweep(
    mut rest: Vec<f64>,
    q: &[usize],
    caps: &[usize],
    delta: Option<f64>,
) -> Result<Sweep, MpoError> {
    let m = q.len();
    let mut ranks = vec![1; m + 1];
    let (mut left, mut discarded2) = (Vec::new(), 0.0);
    let mut last: Option<(Vec<f64>, Vec<f64>)> = None;
    for k in 0..m - 1 {
        if let Some((s, mut vt)) = last.take() {
            scale_rows_in_place(&mut vt, &s);
            rest = vt;
        }
        let nrows = ranks[k] * q[k];
        let ncols = rest.len() / nrows;
        let cap = caps[k + 1];
        let svd = svd(std::mem::take(&mut rest), nrows, ncols, |s| match delta {
            Some(d) => rank_for_tolerance(s, d),
            None => cap.min(s.len()),
        })?;
        let r = svd.vt.len() / ncols;
        discarded2 += svd.s[r..].iter().map(|x| x * x).sum::<f64>();
        left.push(svd.u);
        let mut s = svd.s;
        s.truncate(r);
        ranks[k + 1] = r;
        last = Some((s, svd.vt));
    }
    Ok(Sweep {
        left,
        ranks,
        last,
        rest,
        discarded2,
    })
}

/// The largest `|x|`, or [`MpoError::NonFinite`] for the first entry that is not finite.
///
/// One pass over eight lanes: `x · 0` is `0` for finite `x` and NaN otherwise, so a NaN sum flags
/// the input; only then is the offending index searched for.
fn max_abs_finite<T: Copy + Into<f64>>(x: &[T]) -> Result<f64, MpoError> {
    let (mut max, mut poison) = ([0.0_f64; 8], [0.0_f64; 8]);
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..8 {
            let v: f64 = chunk[l].into();
            max[l] = max[l].max(v.abs());
            poison[l] += v * 0.0;
        }
    }
    let poisoned = poison.iter().sum::<f64>().is_nan();
    if poisoned || tail.iter().any(|&v| !v.into().is_finite()) {
        let index = x.iter().position(|&v| !v.into().is_finite()).unwrap_or(0);
        return Err(MpoError::NonFinite { index });
    }
    let tail_max = tail.iter().fold(0.0_f64, |m, &v| m.max(v.into().abs()));
    Ok(max.iter().fold(tail_max, |m, &v| m.max(v)))
}

/// `Σ x²` in `f64`, over eight partial sums so the additions do not wait on each other.
fn sum_of_squares(x: &[f64]) -> f64 {
    let mut acc = [0.0; 8];
    let chunks = x.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|v| v * v).sum();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v * v;
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// The smallest rank `r >= 1` whose discarded tail `√(Σ_{k>=r} s_k²)` is at most `delta`.
fn rank_for_tolerance(s: &[f64], delta: f64) -> usize {
    let (mut r, mut tail2) = (s.len(), 0.0);
    while r > 1 && tail2 + s[r - 1] * s[r - 1] <= delta * delta {
        tail2 += s[r - 1] * s[r - 1];
        r -= 1;
    }
    r
}

/// Symmetric gauge by a right-to-left SVD sweep over the left-orthonormal cores `A_k`.
///
/// At bond `b` the sweep gives the cut's SVD, with left factor `L_b U_b` (`L_b`: product of the
/// `A_k`) and right factor `B'_b B'_{b+1}…`. In these bases `A'_k = U_kᵀ A_k U_{k+1}` and `B'_k`
/// satisfy `A'_k diag(λ_{k+1}) = diag(λ_k) B'_k` (both are `λ_k Γ_k λ_{k+1}` in Vidal's
/// notation), and the wanted core is `G_k = √λ_k Γ_k √λ_{k+1}`. Each entry is taken from
/// whichever of `A'`, `B'` needs division by the larger `√λ`, so the factor is
/// `√(λ_small / λ_large) <= 1`: no overflow, no NaN, and zero where both `λ` are zero. The
/// original instead multiplies by `λ^{-1/2}` (`gauge_aux_p_q`, `Matrix2MPO.py:130-148`).
fn symmetric_gauge(sweep: Sweep, q: &[usize]) -> Result<Reduced, MpoError> {
    let m = q.len();
    let Some((s_last, vt_last)) = sweep.last else {
        return Ok(Reduced {
            cores: vec![sweep.rest],
            ranks: sweep.ranks,
            spectra: Some(Vec::new()),
        });
    };
    let old = sweep.ranks;
    let mut left = sweep.left;
    let mut ranks = old.clone();
    let mut lam = vec![Vec::new(); m];
    let mut u: Vec<Option<Vec<f64>>> = vec![None; m + 1];
    let mut bp = vec![Vec::new(); m];
    // `A_k U_{k+1}`, formed by the sweep and needed again for the core.
    let mut left_u: Vec<Option<Vec<f64>>> = vec![None; m - 1];
    lam[m - 1] = s_last;
    bp[m - 1] = vt_last;
    // Two sites (every OPF `[a, 1, …, 1, b]` shape) need no sweep: the one SVD is the cut's.
    let mut cur = Vec::new();
    if m > 2 {
        let a = std::mem::replace(&mut left[m - 2], Left::Dense(Vec::new()));
        let a = a.into_dense(old[m - 2] * q[m - 2], old[m - 1]);
        cur = scale_cols(&a, &lam[m - 1]);
        left[m - 2] = Left::Dense(a);
    }
    for k in (1..m - 1).rev() {
        let ncols = q[k] * ranks[k + 1];
        let svd = svd(std::mem::take(&mut cur), old[k], ncols, |s| s.len())?;
        ranks[k] = svd.s.len();
        let u_k = svd.u.into_dense(old[k], ranks[k]);
        let a_u = left[k - 1].matmul(old[k - 1] * q[k - 1], old[k], &u_k, ranks[k]);
        cur = scale_cols(&a_u, &svd.s);
        left_u[k - 1] = Some(a_u);
        lam[k] = svd.s;
        bp[k] = svd.vt;
        u[k] = Some(u_k);
    }

    let mut cores = Vec::with_capacity(m);
    for (k, (a, a_u)) in left.into_iter().zip(left_u).enumerate() {
        let rows = old[k] * q[k];
        // A'_k = U_kᵀ A_k U_{k+1}, as (r_k × q_k·r_{k+1}); `A_k U_{k+1}` is the sweep's.
        let mut a = match a_u {
            Some(a_u) => a_u,
            // Two sites: the first core is `U √λ`, one product when `U` is unformed.
            None if k == 0 => {
                cores.push(a.scale_cols(rows, &sqrt_all(&lam[1])));
                continue;
            }
            None => a.into_dense(rows, old[k + 1]),
        };
        if let Some(u_k) = &u[k] {
            let ut = transpose(u_k, old[k], ranks[k]);
            a = matmul_rm(&ut, ranks[k], old[k], &a, q[k] * ranks[k + 1]);
        }
        let g = if k == 0 {
            scale_cols_in_place(&mut a, &sqrt_all(&lam[1]));
            a
        } else {
            mix(&a, &bp[k], &lam[k], &lam[k + 1])
        };
        cores.push(g);
    }
    let mut last = std::mem::take(&mut bp[m - 1]);
    scale_rows_in_place(&mut last, &sqrt_all(&lam[m - 1]));
    cores.push(last);
    Ok(Reduced {
        cores,
        ranks,
        spectra: Some(lam),
    })
}

/// `G[α, x, β] = √λ_α Γ[α, x, β] √λ_β` from `a = λ_α Γ` and `b = Γ λ_β` (see [`symmetric_gauge`]).
///
/// The weights depend on `(α, β)` only, so they are formed once per row `α` and the loop over
/// `x` is a vectorizable multiply-add; rows run in parallel.
fn mix(a: &[f64], b: &[f64], lam_l: &[f64], lam_r: &[f64]) -> Vec<f64> {
    let row_len = a.len() / lam_l.len();
    let mut out = vec![0.0; a.len()];
    out.par_chunks_mut(row_len)
        .zip(a.par_chunks(row_len).zip(b.par_chunks(row_len)))
        .zip(lam_l.par_iter())
        .for_each(|((out, (a, b)), &l)| {
            // (weight of a, weight of b): one of them zero.
            let (wa, wb): (Vec<f64>, Vec<f64>) = lam_r
                .iter()
                .map(|&r| {
                    if l >= r && l > 0.0 {
                        ((r / l).sqrt(), 0.0)
                    } else if r > l {
                        (0.0, (l / r).sqrt())
                    } else {
                        (0.0, 0.0)
                    }
                })
                .unzip();
            let rr = lam_r.len();
            let rows = out
                .chunks_exact_mut(rr)
                .zip(a.chunks_exact(rr).zip(b.chunks_exact(rr)));
            for (out, (a, b)) in rows {
                for (beta, o) in out.iter_mut().enumerate() {
                    *o = a[beta] * wa[beta] + b[beta] * wb[beta];
                }
            }
        });
    out
}

/// Puts the reduced cores back on the full site list, with identities on the skipped sites.
fn expand(shape: &MpoShape, kept: &[usize], reduced: Reduced, error_bound: f64) -> Mpo {
    let n = shape.n_cores();
    // Reduced bond index of every full bond: the number of kept sites left of it.
    let bond_map: Vec<usize> = (0..=n)
        .map(|b| kept.iter().take_while(|&&k| k < b).count())
        .collect();
    let ranks: Vec<usize> = bond_map.iter().map(|&m| reduced.ranks[m]).collect();
    // The identities of a 15-core OPF shape would be ~140 MB for an FFN matrix: one shared
    // buffer per rank instead.
    let mut identities: Vec<(usize, Arc<Vec<f64>>)> = Vec::new();
    let mut reduced_cores = reduced.cores.into_iter();
    let cores = (0..n)
        .map(|k| {
            let dims = [
                ranks[k],
                shape.row_factors()[k],
                shape.col_factors()[k],
                ranks[k + 1],
            ];
            let data = if kept.contains(&k) {
                Arc::new(reduced_cores.next().unwrap_or_default())
            } else {
                let r = ranks[k];
                match identities.iter().find(|(rank, _)| *rank == r) {
                    Some((_, data)) => Arc::clone(data),
                    None => {
                        let data = Arc::new(identity(r));
                        identities.push((r, Arc::clone(&data)));
                        data
                    }
                }
            };
            Core { dims, data }
        })
        .collect();
    let spectra = reduced
        .spectra
        .map(|lam| (1..n).map(|b| lam[bond_map[b]].clone()).collect());
    Mpo {
        shape: shape.clone(),
        ranks,
        cores,
        spectra,
        error_bound,
    }
}

fn identity(r: usize) -> Vec<f64> {
    let mut data = vec![0.0; r * r];
    data.iter_mut().step_by(r + 1).for_each(|x| *x = 1.0);
    data
}

/// `A ← diag(s) A` for a row-major `A` with `s.len()` rows.
fn scale_rows_in_place(a: &mut [f64], s: &[f64]) {
    let ncols = a.len() / s.len();
    a.chunks_exact_mut(ncols)
        .zip(s)
        .for_each(|(row, &f)| row.iter_mut().for_each(|x| *x *= f));
}

/// `A · diag(s)` for a row-major `A` with `s.len()` columns.
fn scale_cols(a: &[f64], s: &[f64]) -> Vec<f64> {
    let mut out = a.to_vec();
    scale_cols_in_place(&mut out, s);
    out
}

fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    (0..n)
        .flat_map(|c| (0..m).map(move |r| a[r * n + c]))
        .collect()
}

fn sqrt_all(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v.sqrt()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::singular_values;
    use crate::testutil::{abs_err, block_grams, cut_matrix, gaussian, naive_dense, rel_err};
    use crate::{Preset, parse_factors};

    /// f64 round trip, spec §8.3 (reference 6.6e-15…2.4e-14).
    const F64_ROUND_TRIP: f64 = 1e-12;
    /// f32 storage round trip, spec §8.3 (reference 0.8e-6…1.8e-6).
    const F32_ROUND_TRIP: f64 = 1e-5;
    /// Spectra against an independent SVD of each cut, relative to λ_max, spec §8.4.
    const SPECTRUM: f64 = 1e-8;
    /// Gram(block) = diag(λ), relative to λ_max, spec §8.5.
    const GRAM: f64 = 1e-9;

    fn shape(i: &str, j: &str) -> MpoShape {
        MpoShape::new(parse_factors(i).unwrap(), parse_factors(j).unwrap()).unwrap()
    }

    fn symmetric() -> DecomposeOptions {
        DecomposeOptions::default()
    }

    fn left_orthonormal() -> DecomposeOptions {
        DecomposeOptions {
            gauge: Gauge::LeftOrthonormal,
            ..Default::default()
        }
    }

    fn truncated(truncation: Truncation, gauge: Gauge) -> DecomposeOptions {
        DecomposeOptions { truncation, gauge }
    }

    /// f64 error of the cores, and f32 error of the cores rounded to f32, against `w`.
    fn round_trip_errors(mpo: &Mpo, w: &[f64], orientation: Orientation) -> (f64, f64) {
        let e64 = rel_err(&mpo.to_weight(orientation), w);
        let cores32 = mpo
            .cores()
            .iter()
            .map(|c| Core::new(c.dims(), c.to_f32().into_iter().map(f64::from).collect()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let mpo32 = Mpo::from_cores(mpo.shape().clone(), cores32).unwrap();
        let w32: Vec<f64> = mpo32
            .to_weight_f32(orientation)
            .into_iter()
            .map(f64::from)
            .collect();
        (e64, rel_err(&w32, w))
    }

    /// Every preset of spec §1.8, both gauges' worth of checks: lossless in f64 and in f32
    /// storage (spec §8.3), including 3072×768 stored both ways and its transpose.
    #[test]
    fn presets_round_trip_lossless_in_f64_and_f32() {
        let cases = [
            ("t5", 768, 768),
            ("t5", 3072, 768),
            ("t5", 768, 3072),
            ("bart7", 768, 768),
            ("bart7", 3072, 768),
            ("bert15", 768, 768),
            ("bert15", 3072, 768),
            ("paper11", 3072, 768),
            ("svd", 768, 768),
        ];
        for (seed, (preset, rows, cols)) in cases.into_iter().enumerate() {
            let shape = preset.parse::<Preset>().unwrap().shape(rows, cols).unwrap();
            // f32-representable entries, so the same buffer is an exact f32 and f64 input.
            let w: Vec<f64> = gaussian(rows * cols, seed as u64)
                .into_iter()
                .map(|x| f64::from(x as f32))
                .collect();
            let w32: Vec<f32> = w.iter().map(|&x| x as f32).collect();
            let orientations: &[Orientation] = if (preset, rows) == ("bert15", 3072) {
                &[Orientation::OutIn, Orientation::InOut]
            } else {
                &[Orientation::OutIn]
            };
            for &o in orientations {
                let stored: Vec<f32> = match o {
                    Orientation::OutIn => w32.clone(),
                    Orientation::InOut => (0..rows * cols)
                        .map(|k| w32[(k % rows) * cols + k / rows])
                        .collect(),
                };
                let mpo = decompose_weight(&stored, o, &shape, &symmetric()).unwrap();
                assert_eq!(mpo.ranks(), shape.full_ranks(), "{preset} {rows}x{cols}");
                let stored64: Vec<f64> = stored.iter().map(|&x| f64::from(x)).collect();
                let (e64, e32) = round_trip_errors(&mpo, &stored64, o);
                assert!(
                    e64 < F64_ROUND_TRIP,
                    "{preset} {rows}x{cols} {o:?}: f64 {e64:.2e}"
                );
                assert!(
                    e32 < F32_ROUND_TRIP,
                    "{preset} {rows}x{cols} {o:?}: f32 {e32:.2e}"
                );
            }
        }
    }

    #[test]
    fn toy_fixture_both_gauges() {
        let s = shape("2,3,4,5", "4,5,6,7");
        let w = gaussian(s.dense_params(), 7);
        for opts in [symmetric(), left_orthonormal()] {
            let mpo = decompose(&w, &s, &opts).unwrap();
            assert_eq!(mpo.ranks(), [1, 8, 120, 35, 1]);
            assert_eq!(mpo.param_count(), 116_489);
            assert!(rel_err(&mpo.to_dense(), &w) < F64_ROUND_TRIP);
            assert_eq!(mpo.error_bound(), 0.0);
        }
    }

    /// λ_b equals the singular values of each cut (spec §8.4), and both blocks at every bond have
    /// Gram matrix diag(λ_b) (spec §8.5). The BART shape covers the skipped trivial sites.
    #[test]
    fn spectra_and_gram_property() {
        let cases = [
            shape("2,3,4,5", "4,5,6,7"),
            shape("3,4,1,1,4,4,4", "4,4,1,1,4,4,3"),
            shape("1,4,1,3,1", "1,2,1,5,1"),
        ];
        for (seed, s) in cases.iter().enumerate() {
            let w = gaussian(s.dense_params(), 100 + seed as u64);
            let mpo = decompose(&w, s, &symmetric()).unwrap();
            let spectra = mpo.spectra().unwrap();
            let (left, right) = block_grams(&mpo);
            for b in 1..s.n_cores() {
                let lam = &spectra[b - 1];
                let (cut, m, n) = cut_matrix(&w, s, b);
                let sv = singular_values(&cut, m, n);
                assert_eq!(lam.len(), mpo.ranks()[b]);
                assert!(
                    lam.windows(2).all(|p| p[0] >= p[1]),
                    "bond {b} not descending"
                );
                let scale = sv[0];
                for (l, x) in lam.iter().zip(&sv) {
                    assert!((l - x).abs() <= SPECTRUM * scale, "bond {b}: {l} vs {x}");
                }
                let r = lam.len();
                for (name, g) in [("left", &left[b - 1]), ("right", &right[b - 1])] {
                    for x in 0..r {
                        for y in 0..r {
                            let want = if x == y { lam[x] } else { 0.0 };
                            let got = g[x * r + y];
                            assert!(
                                (got - want).abs() <= GRAM * scale,
                                "{s:?} bond {b} {name} Gram[{x},{y}] = {got}, want {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Spec §8.6 on the toy fixture: rank caps 60 / 30 / 10 give the published ranks and counts.
    /// The sweep's error equals its own bound `√(Σ discarded σ²)` (the discarded parts are
    /// orthogonal), and is at most the bound from the cut spectra `√(Σ_b Σ_{k>r_b} λ_{b,k}²)`
    /// (paper Theorem 1): equal with only bond 2 cut (cap 60), strictly below with two (30, 10).
    #[test]
    fn truncation_error_and_bound() {
        let s = shape("2,3,4,5", "4,5,6,7");
        let w = gaussian(s.dense_params(), 11);
        let cut_spectra: Vec<Vec<f64>> = (1..4)
            .map(|b| {
                let (cut, m, n) = cut_matrix(&w, &s, b);
                singular_values(&cut, m, n)
            })
            .collect();
        for gauge in [Gauge::Symmetric, Gauge::LeftOrthonormal] {
            for (cap, ranks, params) in [
                (60, [1, 8, 60, 35, 1], 58_889),
                (30, [1, 8, 30, 30, 1], 26_314),
                (10, [1, 8, 10, 10, 1], 4_014),
            ] {
                let mpo = decompose(&w, &s, &truncated(Truncation::MaxRank(cap), gauge)).unwrap();
                assert_eq!(mpo.ranks(), ranks);
                assert_eq!(mpo.param_count(), params);
                let err = abs_err(&mpo.to_dense(), &w);
                let sweep_bound = mpo.error_bound();
                assert!((err - sweep_bound).abs() <= 1e-9 * sweep_bound, "cap {cap}");
                let theorem_bound = cut_spectra
                    .iter()
                    .enumerate()
                    .map(|(b, sv)| sv[ranks[b + 1]..].iter().map(|x| x * x).sum::<f64>())
                    .sum::<f64>()
                    .sqrt();
                if cap == 60 {
                    let rel = (err - theorem_bound).abs() / theorem_bound;
                    assert!(rel <= 1e-9, "cap 60: {err} != {theorem_bound}");
                } else {
                    assert!(err < theorem_bound, "cap {cap}: {err} >= {theorem_bound}");
                }
            }
        }
    }

    #[test]
    fn relative_error_tolerance() {
        let s = shape("2,3,4,5", "4,5,6,7");
        let w = gaussian(s.dense_params(), 12);
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        for eps in [0.0, 0.05, 0.3, 0.9] {
            for gauge in [Gauge::Symmetric, Gauge::LeftOrthonormal] {
                let opts = truncated(Truncation::RelativeError(eps), gauge);
                let mpo = decompose(&w, &s, &opts).unwrap();
                let err = abs_err(&mpo.to_dense(), &w);
                assert!(mpo.error_bound() <= eps * norm * (1.0 + 1e-12));
                assert!(
                    err <= mpo.error_bound() * (1.0 + 1e-9) + 1e-12 * norm,
                    "eps {eps}"
                );
                if eps == 0.0 {
                    assert_eq!(mpo.ranks(), s.full_ranks());
                } else if eps >= 0.3 {
                    assert!(mpo.param_count() < 116_489, "eps {eps} did not truncate");
                }
            }
        }
    }

    /// Spec §8.7: entry `(r, c)` of a matrix encoding its own index comes back in place, and
    /// the cores of the worked example contract to `T[a1,b1,a2,b2] = W[a1·3 + a2, b1·5 + b2]`.
    #[test]
    fn row_major_layout() {
        let s = shape("2,3", "4,5");
        let w: Vec<f64> = (0..6)
            .flat_map(|r| (0..20).map(move |c| (100 * r + c) as f64))
            .collect();
        let mpo = decompose(&w, &s, &left_orthonormal()).unwrap();
        let (c0, c1) = (&mpo.cores()[0], &mpo.cores()[1]);
        assert_eq!((c0.dims(), c1.dims()), ([1, 2, 4, 8], [8, 3, 5, 1]));
        for (a1, b1, a2, b2) in (0..2).flat_map(|a1| {
            (0..4).flat_map(move |b1| {
                (0..3).flat_map(move |a2| (0..5).map(move |b2| (a1, b1, a2, b2)))
            })
        }) {
            let t: f64 = (0..8)
                .map(|r| c0.data()[(a1 * 4 + b1) * 8 + r] * c1.data()[(r * 3 + a2) * 5 + b2])
                .sum();
            let want = w[(a1 * 3 + a2) * 20 + b1 * 5 + b2];
            assert!(
                (t - want).abs() <= 1e-10 * 520.0,
                "T[{a1},{b1},{a2},{b2}] = {t}"
            );
        }
        let big = shape("3,1,4,1,2", "2,1,3,1,5");
        let w: Vec<f64> = (0..24)
            .flat_map(|r| (0..30).map(move |c| (1000 * r + c) as f64))
            .collect();
        let mpo = decompose(&w, &big, &symmetric()).unwrap();
        for (got, want) in mpo.to_dense().iter().zip(&w) {
            assert!((got - want).abs() <= 1e-9 * 23_029.0, "{got} vs {want}");
        }
        assert!(rel_err(&naive_dense(&mpo), &w) < F64_ROUND_TRIP);
    }

    /// Any finite magnitude decomposes like unit scale: the same ranks, spectra and error bound
    /// times the scale (within 1e-12 relative), reconstruction within the f64 round-trip
    /// tolerance, in both gauges and with a relative-error truncation. Without the
    /// power-of-two rescaling, 1e±160 and 1e300 failed (the Gram matrix overflowed or
    /// underflowed) and 1e-300 came back 53 % off.
    #[test]
    fn extreme_magnitudes_decompose_like_unit_scale() {
        let (rows, cols) = (768, 768);
        let base = gaussian(rows * cols, 3);
        for preset in ["bert15", "t5"] {
            let shape = preset.parse::<Preset>().unwrap().shape(rows, cols).unwrap();
            for options in [
                symmetric(),
                left_orthonormal(),
                truncated(Truncation::RelativeError(0.3), Gauge::Symmetric),
            ] {
                let unit = decompose(&base, &shape, &options).unwrap();
                for scale in [1e300, 1e160, 1e-160, 1e-300] {
                    let w: Vec<f64> = base.iter().map(|x| x * scale).collect();
                    let mpo = decompose(&w, &shape, &options).unwrap();
                    assert_eq!(mpo.ranks(), unit.ranks(), "{preset} {scale:e}");
                    let rel = |x: f64, y: f64| (x - y * scale).abs() / (y.abs() * scale);
                    assert!(
                        rel(mpo.error_bound(), unit.error_bound()) <= 1e-12
                            || unit.error_bound() == 0.0
                    );
                    if let (Some(a), Some(b)) = (mpo.spectra(), unit.spectra()) {
                        for (la, lb) in a.iter().flatten().zip(b.iter().flatten()) {
                            assert!((la - lb * scale).abs() <= 1e-12 * b[0][0] * scale);
                        }
                    }
                    let back: Vec<f64> = mpo.to_dense().iter().map(|x| x / scale).collect();
                    let limit = match options.truncation {
                        Truncation::None => F64_ROUND_TRIP,
                        _ => 0.31,
                    };
                    assert!(rel_err(&back, &base) <= limit, "{preset} {scale:e}");
                }
            }
        }
    }

    /// Spec §8.8: the original's gauge gives NaN here; ours gives finite cores that reconstruct.
    #[test]
    fn zero_and_rank_deficient_matrices_are_finite() {
        let s = shape("2,3,1,4", "4,5,1,2");
        let zero = vec![0.0; s.dense_params()];
        // Kronecker product: the cut after site 1 has rank 1 although its full rank is 8.
        let (a, b) = (gaussian(8, 1), gaussian(120, 2));
        let kron: Vec<f64> = (0..s.rows())
            .flat_map(|r| (0..s.cols()).map(move |c| (r, c)))
            .map(|(r, c)| a[(r / 12) * 4 + c / 10] * b[(r % 12) * 10 + c % 10])
            .collect();
        for (name, w) in [("zero", &zero), ("kron", &kron)] {
            for opts in [symmetric(), left_orthonormal()] {
                let mpo = decompose(w, &s, &opts).unwrap();
                assert_eq!(mpo.ranks(), s.full_ranks(), "{name}");
                assert!(
                    mpo.cores()
                        .iter()
                        .all(|c| c.data().iter().all(|x| x.is_finite()))
                );
                let back = mpo.to_dense();
                let scale = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1.0);
                assert!(
                    abs_err(&back, w) <= F64_ROUND_TRIP * scale,
                    "{name} {opts:?}"
                );
            }
        }
        let mpo = decompose(&kron, &s, &symmetric()).unwrap();
        let lam = &mpo.spectra().unwrap()[0];
        assert!(
            lam[1] <= 1e-12 * lam[0],
            "cut 1 should have rank 1: {lam:?}"
        );
        let (left, right) = block_grams(&mpo);
        for g in [&left[0], &right[0]] {
            for x in 0..8 {
                for y in 0..8 {
                    let want = if x == y { lam[x] } else { 0.0 };
                    assert!((g[x * 8 + y] - want).abs() <= GRAM * lam[0]);
                }
            }
        }
    }

    #[test]
    fn input_errors() {
        let s = shape("2,3", "4,5");
        assert_eq!(
            decompose(&[0.0f32; 7], &s, &symmetric()),
            Err(MpoError::BufferLength {
                rows: 6,
                cols: 20,
                expected: 120,
                got: 7
            })
        );
        let mut w = vec![1.0; 120];
        w[17] = f64::NAN;
        assert_eq!(
            decompose(&w, &s, &symmetric()),
            Err(MpoError::NonFinite { index: 17 })
        );
    }

    /// The identity cores of a `[a, 1, …, 1, b]` shape are exact identities sharing one buffer.
    #[test]
    fn identity_cores_share_one_buffer() {
        let s = shape("4,1,1,1,3", "2,1,1,1,5");
        let w = gaussian(12 * 10, 7);
        for opts in [symmetric(), left_orthonormal()] {
            let mpo = decompose(&w, &s, &opts).unwrap();
            let middle = &mpo.cores()[1..4];
            let r = mpo.ranks()[1];
            assert_eq!(r, 8);
            for core in middle {
                assert_eq!(core.dims(), [r, 1, 1, r]);
                assert_eq!(core.data().as_ptr(), middle[0].data().as_ptr());
            }
            let eye: Vec<f64> = (0..r * r).map(|k| f64::from(k / r == k % r)).collect();
            assert_eq!(middle[0].data(), eye.as_slice());
            assert!(rel_err(&mpo.to_dense(), &w) < 1e-13);
        }
    }

    /// A random MPO of known ranks is recovered exactly by a decomposition capped at those ranks.
    #[test]
    fn recovers_known_rank_mpo() {
        let s = shape("2,3,2", "3,2,2");
        let ranks = [1, 2, 3, 1];
        let cores = (0..3)
            .map(|k| {
                let dims = [
                    ranks[k],
                    s.row_factors()[k],
                    s.col_factors()[k],
                    ranks[k + 1],
                ];
                Core::new(dims, gaussian(dims.iter().product(), 40 + k as u64)).unwrap()
            })
            .collect();
        let w = Mpo::from_cores(s.clone(), cores).unwrap().to_dense();
        let opts = truncated(Truncation::PerBond(vec![2, 3]), Gauge::Symmetric);
        let mpo = decompose(&w, &s, &opts).unwrap();
        assert_eq!(mpo.ranks(), ranks);
        assert!(rel_err(&mpo.to_dense(), &w) < F64_ROUND_TRIP);
        assert!(mpo.error_bound() < 1e-12 * w.iter().map(|x| x.abs()).sum::<f64>());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn small_shape() -> impl Strategy<Value = MpoShape> {
            (1usize..=4)
                .prop_flat_map(|n| {
                    (
                        proptest::collection::vec(1usize..=3, n),
                        proptest::collection::vec(1usize..=3, n),
                    )
                })
                .prop_map(|(i, j)| MpoShape::new(i, j).unwrap())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn lossless_gauged_and_bounded(s in small_shape(), seed in 0u64..1000, cap in 1usize..6) {
                let w = gaussian(s.dense_params(), seed);
                let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
                let mpo = decompose(&w, &s, &symmetric()).unwrap();
                prop_assert_eq!(mpo.ranks(), s.full_ranks());
                prop_assert!(rel_err(&mpo.to_dense(), &w) < 1e-10);
                prop_assert!(rel_err(&naive_dense(&mpo), &w) < 1e-10);
                let (left, right) = block_grams(&mpo);
                for (b, lam) in mpo.spectra().unwrap().iter().enumerate() {
                    let r = lam.len();
                    for x in 0..r {
                        prop_assert!((left[b][x * r + x] - lam[x]).abs() <= GRAM * norm);
                        prop_assert!((right[b][x * r + x] - lam[x]).abs() <= GRAM * norm);
                    }
                }
                for gauge in [Gauge::Symmetric, Gauge::LeftOrthonormal] {
                    let t = decompose(&w, &s, &truncated(Truncation::MaxRank(cap), gauge)).unwrap();
                    prop_assert_eq!(t.ranks(), s.max_ranks(&Truncation::MaxRank(cap)).unwrap());
                    for (k, core) in t.cores().iter().enumerate() {
                        let [r0, i, j, r1] = core.dims();
                        prop_assert_eq!([r0, r1], [t.ranks()[k], t.ranks()[k + 1]]);
                        prop_assert_eq!([i, j], [s.row_factors()[k], s.col_factors()[k]]);
                    }
                    let err = abs_err(&t.to_dense(), &w);
                    prop_assert!(err <= t.error_bound() * (1.0 + 1e-9) + 1e-12 * norm);
                }
            }
        }
    }
}
