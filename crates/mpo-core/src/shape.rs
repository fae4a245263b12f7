//! MPO shapes: the factorisation of a matrix's rows and columns, bond ranks and parameter counts.

use crate::MpoError;

/// How the bond ranks of a decomposition are chosen.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Truncation {
    /// Lossless: every bond keeps its full rank (spec §1.3). OPF's `truncate_num = 10000` is this.
    #[default]
    None,
    /// `r_b = min(cap, full r_b)` on every inner bond: the original `truncate_num`
    /// (`Matrix2MPO.py:28-56`).
    MaxRank(usize),
    /// One cap per inner bond `1..n` (length `n - 1`), clamped to the full ranks and made
    /// consistent (`r_b <= r_{b-1}·i·j` and `r_b <= i·j·r_{b+1}`).
    PerBond(Vec<usize>),
    /// Relative Frobenius error `eps` (TT-SVD, Oseledets 2011; t3f/tntorch `epsilon`): every bond
    /// drops the longest singular-value tail whose norm is at most `eps / sqrt(B) · ‖W‖_F`, with `B`
    /// the number of distinct cuts, so `‖W − Ŵ‖_F <= eps · ‖W‖_F`.
    RelativeError(f64),
}

/// Row and column factorisation of an `(I, J)` matrix into `n` cores (spec §1.1).
///
/// The row factors `i_k` split the rows, which for a weight in (out, in) storage are
/// `out_features`, exactly as the original's "mpo_input_shape". Core `k` has dimensions
/// `(r_k, i_k, j_k, r_{k+1})` with `r_0 = r_n = 1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpoShape {
    row_factors: Vec<usize>,
    col_factors: Vec<usize>,
}

impl MpoShape {
    /// A shape from its row factors (`i_k`, out_features side) and column factors (`j_k`).
    ///
    /// Errors: empty lists, lists of different length, or a zero factor.
    pub fn new(row_factors: Vec<usize>, col_factors: Vec<usize>) -> Result<Self, MpoError> {
        if row_factors.is_empty() && col_factors.is_empty() {
            return Err(MpoError::EmptyShape);
        }
        if row_factors.len() != col_factors.len() {
            return Err(MpoError::FactorCountMismatch {
                rows: row_factors.len(),
                cols: col_factors.len(),
            });
        }
        for (side, factors) in [("row", &row_factors), ("column", &col_factors)] {
            if let Some(index) = factors.iter().position(|&f| f == 0) {
                return Err(MpoError::ZeroFactor { side, index });
            }
        }
        Ok(Self {
            row_factors,
            col_factors,
        })
    }

    /// Like [`MpoShape::new`], and also checks that the factors multiply to `rows × cols`.
    pub fn for_matrix(
        rows: usize,
        cols: usize,
        row_factors: Vec<usize>,
        col_factors: Vec<usize>,
    ) -> Result<Self, MpoError> {
        let shape = Self::new(row_factors, col_factors)?;
        for (side, expected, product) in
            [("row", rows, shape.rows()), ("column", cols, shape.cols())]
        {
            if expected != product {
                return Err(MpoError::DimMismatch {
                    side,
                    expected,
                    product,
                });
            }
        }
        Ok(shape)
    }

    /// The OPF family `[a, 1, …, 1, b] × [c, 1, …, 1, d]` with `n` cores, each dimension split as
    /// evenly as its divisors allow (`a >= b`, `a` the smallest divisor `>= √dim`).
    ///
    /// `n = 15` gives the released BERT code's shapes (`trainer_bert.py:111-112`), `n = 11` the
    /// paper's (Table 4), `n = 2` OPF-SVD. `n = 1` is the dense matrix as a single core.
    pub fn opf_family(rows: usize, cols: usize, n: usize) -> Result<Self, MpoError> {
        Self::for_matrix(rows, cols, opf_factors(rows, n), opf_factors(cols, n))
    }

    /// A balanced `n`-core shape: each dimension's prime factors are spread over `n` factors as
    /// evenly as possible (largest prime first, into the smallest bin). Row factors ascend and
    /// column factors descend, so the products `i_k·j_k` stay level (as in the T5 attention shape
    /// `[3,4,4,4,4] × [4,4,4,4,3]`, `modeling_t5_utils.py:254`).
    pub fn balanced(rows: usize, cols: usize, n: usize) -> Result<Self, MpoError> {
        let mut col_factors = balanced_factors(cols, n);
        col_factors.reverse();
        Self::for_matrix(rows, cols, balanced_factors(rows, n), col_factors)
    }

    /// Row factors `i_k` (out_features side).
    pub fn row_factors(&self) -> &[usize] {
        &self.row_factors
    }

    /// Column factors `j_k` (in_features side).
    pub fn col_factors(&self) -> &[usize] {
        &self.col_factors
    }

    /// Number of cores `n`.
    pub fn n_cores(&self) -> usize {
        self.row_factors.len()
    }

    /// Matrix rows `I = ∏ i_k`.
    pub fn rows(&self) -> usize {
        self.row_factors.iter().product()
    }

    /// Matrix columns `J = ∏ j_k`.
    pub fn cols(&self) -> usize {
        self.col_factors.iter().product()
    }

    /// Parameters of the dense matrix, `I·J`.
    pub fn dense_params(&self) -> usize {
        self.rows() * self.cols()
    }

    /// The shape of the transposed matrix (row and column factors swapped).
    pub fn transposed(&self) -> Self {
        Self {
            row_factors: self.col_factors.clone(),
            col_factors: self.row_factors.clone(),
        }
    }

    /// `i_k · j_k` for every site.
    pub(crate) fn site_sizes(&self) -> Vec<usize> {
        self.row_factors
            .iter()
            .zip(&self.col_factors)
            .map(|(i, j)| i * j)
            .collect()
    }

    /// Untruncated bond ranks `r_0..r_n`: `r_s = min(∏_{k<s} i_k j_k, ∏_{k>=s} i_k j_k)`,
    /// `r_0 = r_n = 1` (spec §1.3, `Matrix2MPO.py:28-56`).
    pub fn full_ranks(&self) -> Vec<usize> {
        let p = self.site_sizes();
        let n = p.len();
        let mut ranks = vec![1; n + 1];
        for (s, rank) in ranks.iter_mut().enumerate().take(n).skip(1) {
            let left: usize = p[..s].iter().product();
            let right: usize = p[s..].iter().product();
            *rank = left.min(right);
        }
        ranks
    }

    /// The bond ranks `r_0..r_n` a decomposition with `truncation` will have. For
    /// [`Truncation::RelativeError`] the ranks depend on the data, and this returns their upper
    /// bound, the full ranks.
    ///
    /// Caps are clamped to the full ranks and made consistent in one forward and one backward
    /// pass (`r_b <= r_{b-1}·i_{b-1}·j_{b-1}`, `r_b <= i_b·j_b·r_{b+1}`). For a single
    /// [`Truncation::MaxRank`] this is exactly the original's `min(truncate_num, full rank)`.
    pub fn max_ranks(&self, truncation: &Truncation) -> Result<Vec<usize>, MpoError> {
        let n = self.n_cores();
        let mut ranks = self.full_ranks();
        let caps: Vec<usize> = match truncation {
            Truncation::None => return Ok(ranks),
            Truncation::RelativeError(eps) if eps.is_finite() && *eps >= 0.0 => return Ok(ranks),
            Truncation::RelativeError(eps) => return Err(MpoError::BadTolerance(*eps)),
            Truncation::MaxRank(cap) => vec![*cap; n - 1],
            Truncation::PerBond(caps) if caps.len() != n - 1 => {
                return Err(MpoError::BondCount {
                    expected: n - 1,
                    got: caps.len(),
                });
            }
            Truncation::PerBond(caps) => caps.clone(),
        };
        if let Some(b) = caps.iter().position(|&c| c == 0) {
            return Err(MpoError::ZeroRank { bond: b + 1 });
        }
        let p = self.site_sizes();
        for b in 1..n {
            ranks[b] = ranks[b].min(caps[b - 1]).min(ranks[b - 1] * p[b - 1]);
        }
        for b in (1..n).rev() {
            ranks[b] = ranks[b].min(p[b] * ranks[b + 1]);
        }
        Ok(ranks)
    }

    /// `N_MPO = Σ_k r_k · i_k · j_k · r_{k+1}` (spec §1.8, `Matrix2MPO.py:236-246`).
    ///
    /// # Panics
    /// If `ranks` does not have `n + 1` entries.
    #[track_caller]
    pub fn param_count(&self, ranks: &[usize]) -> usize {
        assert_eq!(ranks.len(), self.n_cores() + 1, "ranks need n + 1 entries");
        self.site_sizes()
            .iter()
            .enumerate()
            .map(|(k, p)| ranks[k] * p * ranks[k + 1])
            .sum()
    }
}

/// Parses a factor list such as `"64,1x13,48"` (`VxC` = `C` copies of `V`), the notation of the
/// spec and of `mpo_numpy.py`.
pub fn parse_factors(text: &str) -> Result<Vec<usize>, MpoError> {
    let bad = || MpoError::BadFactorList(text.to_string());
    let mut out = Vec::new();
    for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        match token.to_ascii_lowercase().split_once('x') {
            Some((value, count)) => {
                let value: usize = value.trim().parse().map_err(|_| bad())?;
                let count: usize = count.trim().parse().map_err(|_| bad())?;
                out.extend(std::iter::repeat_n(value, count));
            }
            None => out.push(token.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() || out.contains(&0) {
        return Err(bad());
    }
    Ok(out)
}

/// `[a, 1^(n-2), b]` with `a·b = dim`, `a` the smallest divisor `>= √dim`.
fn opf_factors(dim: usize, n: usize) -> Vec<usize> {
    match n {
        0 => Vec::new(),
        1 => vec![dim],
        _ => {
            let a = (1..=dim)
                .find(|a| dim.is_multiple_of(*a) && a * a >= dim)
                .unwrap_or(dim);
            let mut f = vec![1; n];
            f[0] = a;
            f[n - 1] = dim / a.max(1);
            f
        }
    }
}

/// `n` factors of `dim`, ascending: primes (largest first) go into the currently smallest bin.
fn balanced_factors(dim: usize, n: usize) -> Vec<usize> {
    let mut primes = Vec::new();
    let (mut rest, mut d) = (dim, 2);
    while d * d <= rest {
        while rest.is_multiple_of(d) {
            primes.push(d);
            rest /= d;
        }
        d += 1;
    }
    if rest > 1 {
        primes.push(rest);
    }
    let mut bins = vec![1; n];
    for p in primes.into_iter().rev() {
        if let Some(smallest) = bins.iter_mut().min() {
            *smallest *= p;
        }
    }
    bins.sort_unstable();
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(i: &str, j: &str) -> MpoShape {
        MpoShape::new(parse_factors(i).unwrap(), parse_factors(j).unwrap()).unwrap()
    }

    #[test]
    fn toy_ranks_and_params_spec_8_1_and_8_2() {
        let s = shape("2,3,4,5", "4,5,6,7");
        assert_eq!(s.full_ranks(), [1, 8, 120, 35, 1]);
        assert_eq!(s.param_count(&s.full_ranks()), 116_489);
        for (cap, ranks, params) in [
            (60, [1, 8, 60, 35, 1], 58_889),
            (30, [1, 8, 30, 30, 1], 26_314),
            (10, [1, 8, 10, 10, 1], 4_014),
        ] {
            let r = s.max_ranks(&Truncation::MaxRank(cap)).unwrap();
            assert_eq!(r, ranks, "cap {cap}");
            assert_eq!(s.param_count(&r), params, "cap {cap}");
        }
    }

    #[test]
    fn per_bond_caps_are_clamped_consistently() {
        let s = shape("2,1,1,3", "2,1,1,3");
        // Bonds 1..3 are the same cut; the smallest cap wins for all of them.
        let r = s.max_ranks(&Truncation::PerBond(vec![3, 2, 4])).unwrap();
        assert_eq!(r, [1, 2, 2, 2, 1]);
        let t = shape("2,2,2", "1,1,1");
        // Bond 2 capped at 1 forces bond 1 <= i_1·j_1·1 = 2.
        assert_eq!(
            t.max_ranks(&Truncation::PerBond(vec![4, 1])).unwrap(),
            [1, 2, 1, 1]
        );
    }

    #[test]
    fn validation_errors_carry_data() {
        assert_eq!(MpoShape::new(vec![], vec![]), Err(MpoError::EmptyShape));
        assert_eq!(
            MpoShape::new(vec![2, 3], vec![4]),
            Err(MpoError::FactorCountMismatch { rows: 2, cols: 1 })
        );
        assert_eq!(
            MpoShape::new(vec![2, 0], vec![4, 1]),
            Err(MpoError::ZeroFactor {
                side: "row",
                index: 1
            })
        );
        assert_eq!(
            MpoShape::for_matrix(6, 21, vec![2, 3], vec![4, 5]),
            Err(MpoError::DimMismatch {
                side: "column",
                expected: 21,
                product: 20
            })
        );
        let s = shape("2,3", "4,5");
        assert_eq!(
            s.max_ranks(&Truncation::PerBond(vec![1, 2])),
            Err(MpoError::BondCount {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            s.max_ranks(&Truncation::MaxRank(0)),
            Err(MpoError::ZeroRank { bond: 1 })
        );
        assert_eq!(
            s.max_ranks(&Truncation::RelativeError(-1.0)),
            Err(MpoError::BadTolerance(-1.0))
        );
        assert!(matches!(
            parse_factors("3,x"),
            Err(MpoError::BadFactorList(_))
        ));
    }

    #[test]
    fn parse_factors_expands_runs() {
        assert_eq!(parse_factors("64,1x3,48").unwrap(), [64, 1, 1, 1, 48]);
        assert_eq!(parse_factors(" 4, 4 ,8").unwrap(), [4, 4, 8]);
        assert!(parse_factors("4,0").is_err());
    }

    #[test]
    fn generic_constructors() {
        let s = MpoShape::opf_family(3072, 768, 15).unwrap();
        assert_eq!(s, shape("64,1x13,48", "32,1x13,24"));
        let b = MpoShape::balanced(768, 768, 5).unwrap();
        assert_eq!(b, shape("3,4,4,4,4", "4,4,4,4,3"));
        let p = MpoShape::balanced(30522, 768, 4).unwrap();
        assert_eq!((p.rows(), p.cols(), p.n_cores()), (30522, 768, 4));
        assert_eq!(
            MpoShape::opf_family(7, 5, 3).unwrap(),
            shape("7,1,1", "5,1,1")
        );
        assert_eq!(s.transposed(), shape("32,1x13,24", "64,1x13,48"));
    }
}
