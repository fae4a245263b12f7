//! Named shape presets: the original code's and the paper's factorisations, plus generic families.

use std::fmt;
use std::str::FromStr;

use crate::{MpoError, MpoShape, parse_factors};

/// A named rule mapping a weight's `(out_features, in_features)` to an [`MpoShape`].
///
/// Stable string names (`FromStr` / `Display`):
///
/// | name | shapes |
/// |---|---|
/// | `bert15` | released BERT code, 15 cores (`trainer_bert.py:111-118`): 768 = `[32,1×13,24]`, 3072 = `[64,1×13,48]`, BERT-small 512 = `[32,1×13,16]`, 2048 = `[32,1×12,2,32]` |
/// | `paper11` | paper Table 4, 11 cores: 768 = `[32,1×9,24]`, 3072 = `[64,1×9,48]`, 1024 = `[32,1×9,32]`, 4096 = `[64,1×9,64]` (attention assumed square, spec §1.8) |
/// | `bart7` | BART code, 7 cores, d_model 768 only (`trainer_bart.py:104-108`) |
/// | `t5` | T5-base code, 5 cores (`modeling_t5_utils.py:194,254`) |
/// | `svd` | paper Table 4 OPF-SVD, 2 cores: `[a,b] × [c,d]`; square matrices use `[a,b] × [b,a]` |
/// | `opf:N` | [`MpoShape::opf_family`]: `[a,1,…,1,b]` with `N` cores, any dims |
/// | `balanced:N` | [`MpoShape::balanced`]: `N` balanced factors, any dims |
///
/// `bert15`, `paper11`, `bart7` and `t5` fail with [`MpoError::UnsupportedDims`] outside their
/// tables. For 768×768, `t5` gives the q/k/v shape; the original's `o` uses the swapped pair
/// ([`MpoShape::transposed`]), which has the same ranks and parameter count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// The released BERT code's 15-core shapes.
    Bert15,
    /// The paper's 11-core shapes.
    Paper11,
    /// The BART code's 7-core shapes.
    Bart7,
    /// The T5 code's 5-core shapes.
    T5,
    /// The paper's 2-core OPF-SVD shapes.
    Svd,
    /// `[a, 1, …, 1, b]` with this many cores.
    Opf(usize),
    /// Balanced factorisation into this many cores.
    Balanced(usize),
}

impl Preset {
    /// The shape for a weight with `out_features` rows and `in_features` columns ((out, in) view).
    pub fn shape(&self, out_features: usize, in_features: usize) -> Result<MpoShape, MpoError> {
        let (rows, cols) = (out_features, in_features);
        let found = match self {
            Preset::Bert15 => per_dim(
                rows,
                cols,
                &[
                    (768, "32,1x13,24"),
                    (3072, "64,1x13,48"),
                    (512, "32,1x13,16"),
                    (2048, "32,1x12,2,32"),
                ],
            ),
            Preset::Paper11 => per_dim(
                rows,
                cols,
                &[
                    (768, "32,1x9,24"),
                    (3072, "64,1x9,48"),
                    (1024, "32,1x9,32"),
                    (4096, "64,1x9,64"),
                ],
            ),
            Preset::Bart7 => per_pair(
                rows,
                cols,
                &[
                    (768, 768, "3,4,1,1,4,4,4", "4,4,1,1,4,4,3"),
                    (3072, 768, "8,4,1,1,4,4,6", "3,4,1,1,4,4,4"),
                ],
            ),
            Preset::T5 => per_pair(
                rows,
                cols,
                &[
                    (768, 768, "3,4,4,4,4", "4,4,4,4,3"),
                    (3072, 768, "4,4,8,6,4", "3,4,4,4,4"),
                ],
            ),
            Preset::Svd => {
                let s = MpoShape::opf_family(rows, cols, 2)?;
                let mut j = s.col_factors().to_vec();
                if rows == cols {
                    j.reverse();
                }
                Some(MpoShape::new(s.row_factors().to_vec(), j)?)
            }
            Preset::Opf(n) if *n >= 2 => Some(MpoShape::opf_family(rows, cols, *n)?),
            Preset::Balanced(n) if *n >= 1 => Some(MpoShape::balanced(rows, cols, *n)?),
            Preset::Opf(_) | Preset::Balanced(_) => None,
        };
        found.ok_or_else(|| MpoError::UnsupportedDims {
            preset: self.to_string(),
            rows,
            cols,
        })
    }
}

/// Each dimension looked up on its own (the BERT code's `input768_size` etc.).
fn per_dim(rows: usize, cols: usize, table: &[(usize, &str)]) -> Option<MpoShape> {
    let lookup = |d: usize| table.iter().find(|e| e.0 == d).map(|e| factors(e.1));
    MpoShape::new(lookup(rows)?, lookup(cols)?).ok()
}

/// Whole `(rows, cols)` pairs; the transposed matrix gets the swapped pair (FFN_2 from FFN_1).
fn per_pair(rows: usize, cols: usize, table: &[(usize, usize, &str, &str)]) -> Option<MpoShape> {
    table.iter().find_map(|&(r, c, i, j)| {
        if (r, c) == (rows, cols) {
            MpoShape::new(factors(i), factors(j)).ok()
        } else if (c, r) == (rows, cols) {
            MpoShape::new(factors(j), factors(i)).ok()
        } else {
            None
        }
    })
}

/// A factor list from the tables above, which are known to parse.
fn factors(text: &str) -> Vec<usize> {
    parse_factors(text).unwrap_or_default()
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preset::Bert15 => f.write_str("bert15"),
            Preset::Paper11 => f.write_str("paper11"),
            Preset::Bart7 => f.write_str("bart7"),
            Preset::T5 => f.write_str("t5"),
            Preset::Svd => f.write_str("svd"),
            Preset::Opf(n) => write!(f, "opf:{n}"),
            Preset::Balanced(n) => write!(f, "balanced:{n}"),
        }
    }
}

impl FromStr for Preset {
    type Err = MpoError;

    fn from_str(name: &str) -> Result<Self, MpoError> {
        let unknown = || MpoError::UnknownPreset(name.to_string());
        let count = |n: &str| n.parse::<usize>().map_err(|_| unknown());
        match name.split_once(':') {
            None => match name {
                "bert15" => Ok(Preset::Bert15),
                "paper11" => Ok(Preset::Paper11),
                "bart7" => Ok(Preset::Bart7),
                "t5" => Ok(Preset::T5),
                "svd" => Ok(Preset::Svd),
                _ => Err(unknown()),
            },
            Some(("opf", n)) => Ok(Preset::Opf(count(n)?)),
            Some(("balanced", n)) => Ok(Preset::Balanced(count(n)?)),
            Some(_) => Err(unknown()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(preset: &str, rows: usize, cols: usize) -> (Vec<usize>, usize) {
        let s = preset.parse::<Preset>().unwrap().shape(rows, cols).unwrap();
        let r = s.full_ranks();
        let p = s.param_count(&r);
        (r, p)
    }

    fn repeated(inner: &[usize], n: usize) -> Vec<usize> {
        let mut out = vec![1];
        out.extend(inner.iter().copied().cycle().take(n));
        out.push(1);
        out
    }

    /// Spec §8.1 ranks and §8.2 parameter counts (§1.8 table).
    #[test]
    fn ranks_and_params_match_the_spec_table() {
        assert_eq!(
            counts("bert15", 768, 768),
            (repeated(&[576], 14), 5_234_688)
        );
        assert_eq!(
            counts("bert15", 3072, 768),
            (repeated(&[1152], 14), 20_938_752)
        );
        assert_eq!(
            counts("bert15", 768, 3072),
            (repeated(&[1152], 14), 20_938_752)
        );
        assert_eq!(
            counts("bert15", 512, 512),
            (repeated(&[256], 14), 1_179_648)
        );
        let mut small_ffn = repeated(&[1024], 14);
        small_ffn[14] = 512;
        assert_eq!(counts("bert15", 2048, 512), (small_ffn, 14_942_208));
        assert_eq!(
            counts("paper11", 768, 768),
            (repeated(&[576], 10), 3_907_584)
        );
        assert_eq!(
            counts("paper11", 3072, 768),
            (repeated(&[1152], 10), 15_630_336)
        );
        assert_eq!(counts("paper11", 4096, 1024).1, 46_137_344);
        assert_eq!(counts("paper11", 1024, 1024).1, 11_534_336);
        assert_eq!(
            counts("t5", 768, 768),
            (vec![1, 12, 192, 192, 12, 1], 663_840)
        );
        assert_eq!(
            counts("t5", 3072, 768),
            (vec![1, 12, 192, 384, 16, 1], 2_544_016)
        );
        assert_eq!(
            counts("bart7", 768, 768),
            (vec![1, 12, 192, 192, 192, 192, 12, 1], 737_568)
        );
        assert_eq!(
            counts("bart7", 3072, 768),
            (vec![1, 24, 384, 384, 384, 384, 24, 1], 2_950_272)
        );
        assert_eq!(counts("svd", 3072, 768), (vec![1, 1152, 1], 3_686_400));
        assert_eq!(counts("svd", 768, 768), (vec![1, 768, 1], 1_179_648));
        assert_eq!(counts("opf:2", 768, 768), (vec![1, 576, 1], 921_600));
        assert_eq!(counts("opf:2", 4096, 1024), (vec![1, 2048, 1], 8_388_608));
    }

    #[test]
    fn generic_families_match_the_code_presets() {
        for (rows, cols) in [(768, 768), (3072, 768), (768, 3072)] {
            assert_eq!(
                Preset::Opf(15).shape(rows, cols),
                Preset::Bert15.shape(rows, cols)
            );
            assert_eq!(
                Preset::Opf(11).shape(rows, cols),
                Preset::Paper11.shape(rows, cols)
            );
        }
        assert_eq!(
            Preset::Balanced(5).shape(768, 768),
            Preset::T5.shape(768, 768)
        );
    }

    #[test]
    fn names_round_trip_and_errors() {
        for name in [
            "bert15",
            "paper11",
            "bart7",
            "t5",
            "svd",
            "opf:7",
            "balanced:4",
        ] {
            assert_eq!(name.parse::<Preset>().unwrap().to_string(), name);
        }
        assert_eq!(
            "bert16".parse::<Preset>(),
            Err(MpoError::UnknownPreset("bert16".into()))
        );
        assert!("opf:x".parse::<Preset>().is_err());
        assert_eq!(
            Preset::T5.shape(1024, 1024),
            Err(MpoError::UnsupportedDims {
                preset: "t5".into(),
                rows: 1024,
                cols: 1024
            })
        );
        assert!(Preset::Bert15.shape(768, 1000).is_err());
        assert!(Preset::Opf(1).shape(768, 768).is_err());
        let t5_wo = Preset::T5.shape(768, 3072).unwrap();
        assert_eq!(t5_wo, Preset::T5.shape(3072, 768).unwrap().transposed());
    }
}
