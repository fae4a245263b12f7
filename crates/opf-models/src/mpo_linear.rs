//! A Linear layer whose weight is a matrix product operator (MPO, tensor-train matrix): OPF's
//! over-parameterization (spec §2.3; OPF `compress_tools/MPOtorch.py` `LinearDecomMPO`).
//!
//! The weight is never stored densely while training: every forward contracts the cores into the
//! `(out, in)` matrix (as `LinearDecomMPO.forward`, `MPOtorch.py:138-149`), so gradients reach
//! every core through the contraction. [`MpoLinear::merge`] contracts once more and returns a plain
//! [`Linear`] with the original architecture.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use crate::ModelError;
use crate::precision;

/// Which cores train (spec §1.9; OPF trains all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoreTraining {
    /// Every core trains (OPF as intended).
    #[default]
    All,
    /// Only the central core `(n−1)/2` trains (`CT_learn`, `MPOtorch.py:161-164`).
    Central,
    /// Every core but the central one trains (MPOP's `tensor_learn`, `MPOtorch.py:157-159`).
    Auxiliary,
    /// No core trains: the released code's behaviour (spec §2.4), biases still train.
    Frozen,
}

impl std::str::FromStr for CoreTraining {
    type Err = String;

    /// Parses `all`, `central`, `auxiliary` or `frozen`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(CoreTraining::All),
            "central" => Ok(CoreTraining::Central),
            "auxiliary" => Ok(CoreTraining::Auxiliary),
            "frozen" => Ok(CoreTraining::Frozen),
            _ => Err(format!(
                "unknown core training {s:?}: expected all, central, auxiliary or frozen"
            )),
        }
    }
}

/// How [`MpoLinear::forward`] computes `x Wᵀ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// Contract the cores into `W`, then one matmul (the original's semantics).
    Dense,
    /// Apply the cores to the activations one by one.
    Factorised,
}

/// Linear layer `y = x Wᵀ + b` with `W` (out, in) = contraction of MPO cores.
#[derive(Module, Debug)]
pub struct MpoLinear {
    /// Cores `(r_{k-1}, i_k, j_k, r_k)`, `i` factorising out_features and `j` in_features.
    pub cores: Vec<Param<Tensor<4>>>,
    /// Bias `[out]`, reused from the replaced layer.
    pub bias: Option<Param<Tensor<1>>>,
}

impl MpoLinear {
    /// Builds the layer from an mpo-core decomposition of the `(out, in)` weight; cores are stored
    /// in f32 and train according to `training`.
    pub fn from_mpo(
        mpo: &mpo_core::Mpo,
        bias: Option<Param<Tensor<1>>>,
        training: CoreTraining,
        device: &Device,
    ) -> Self {
        let n = mpo.cores().len();
        let central = (n - 1) / 2;
        let cores = mpo
            .cores()
            .iter()
            .enumerate()
            .map(|(k, core)| {
                let t = Tensor::<4>::from_data(TensorData::new(core.to_f32(), core.dims()), device);
                let trains = match training {
                    CoreTraining::All => true,
                    CoreTraining::Central => k == central,
                    CoreTraining::Auxiliary => k != central,
                    CoreTraining::Frozen => false,
                };
                Param::from_tensor(t).set_require_grad(trains)
            })
            .collect();
        Self { cores, bias }
    }

    /// Number of cores.
    pub fn num_cores(&self) -> usize {
        self.cores.len()
    }

    /// `(out_features, in_features)`.
    pub fn dims(&self) -> (usize, usize) {
        self.cores.iter().fold((1, 1), |(o, i), c| {
            let [_, d_out, d_in, _] = c.lazy_shape().dims();
            (o * d_out, i * d_in)
        })
    }

    /// Contracts the cores into the `(out, in)` weight, left to right (`Matrix2MPO.py:214-234`).
    ///
    /// The running product is kept as `(rows so far, cols so far, bond)`, so the interleaved
    /// `(i_1, j_1, …, i_n, j_n)` order never needs a rank-2n tensor: each step multiplies by the
    /// next core and moves its `i_k` axis next to the rows.
    pub fn weight(&self) -> Tensor<2> {
        let first = self.cores[0].val();
        let [_, i0, j0, r0] = first.shape().dims();
        let mut t: Tensor<3> = first.reshape([i0, j0, r0]);
        for core in &self.cores[1..] {
            let core = core.val();
            let [r, i, j, r_next] = core.shape().dims();
            let [a, b, _] = t.shape().dims();
            let prod = t
                .reshape([a * b, r])
                .matmul(core.reshape([r, i * j * r_next]));
            t = prod
                .reshape([a, b, i, j * r_next])
                .swap_dims(1, 2)
                .reshape([a * i, b * j, r_next]);
        }
        let [a, b, _] = t.shape().dims();
        t.reshape([a, b])
    }

    /// Applies the layer, by whichever of the two equal computations needs fewer multiply-adds
    /// for this many rows ([`MpoLinear::forward_mode`]).
    ///
    /// Under a half-precision [`crate::Autocast`] guard the products with the activations run in
    /// that precision (the dense mode's `x Wᵀ`, each GEMM of the factorised mode); the core
    /// contraction into `W` stays in f32, as do the cores themselves.
    ///
    /// # Shapes
    /// - input: `[..., in_features]`
    /// - output: `[..., out_features]`
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let dims = input.dims();
        let rows = dims[..D - 1].iter().product();
        let (d_out, _) = self.dims();
        let out = match self.forward_mode(rows) {
            ForwardMode::Dense => precision::linear(input, self.weight().transpose(), None),
            ForwardMode::Factorised => {
                precision::on_rows(input, d_out, |x| self.apply_factorised(x))
            }
        };
        match &self.bias {
            Some(b) => out + b.val().unsqueeze::<D>(),
            None => out,
        }
    }

    /// Multiply-adds of the two forward computations for `rows` input rows: `(dense, factorised)`.
    /// Dense contracts the cores into `W` (as the original, `MPOtorch.py:145`) and does one GEMM;
    /// factorised applies the cores to the activations one at a time.
    pub fn forward_flops(&self, rows: usize) -> (usize, usize) {
        let (d_out, d_in) = self.dims();
        let dims: Vec<[usize; 4]> = self.cores.iter().map(|c| c.lazy_shape().dims()).collect();
        let (mut a, mut b, mut contraction) = (1usize, 1usize, 0usize);
        for (k, &[r, i, j, r_next]) in dims.iter().enumerate() {
            if k > 0 {
                contraction += a * b * r * i * j * r_next;
            }
            a *= i;
            b *= j;
        }
        let dense = contraction + rows * d_in * d_out;
        let (mut rows_done, mut cols_left, mut factorised) = (rows, d_in, 0usize);
        for &[r, i, j, r_next] in &dims {
            cols_left /= j;
            factorised += rows_done * cols_left * r * j * i * r_next;
            rows_done *= i;
        }
        (dense, factorised)
    }

    /// The cheaper computation for `rows` input rows.
    pub fn forward_mode(&self, rows: usize) -> ForwardMode {
        let (dense, factorised) = self.forward_flops(rows);
        if factorised < dense {
            ForwardMode::Factorised
        } else {
            ForwardMode::Dense
        }
    }

    /// `x Wᵀ` without forming `W`: core k maps `(rows·i_<k, r_{k-1}·j_k, j_>k)` to
    /// `(rows·i_≤k, r_k·j_{k+1}, j_>k+1)`, contracting the bond and `j_k` in one GEMM.
    ///
    /// # Shapes
    /// - input: `[rows, in_features]`
    /// - output: `[rows, out_features]`
    pub fn apply_factorised(&self, input: Tensor<2>) -> Tensor<2> {
        let [rows, d_in] = input.dims();
        let first_j = self.cores[0].lazy_shape().dims::<4>()[2];
        // (A, B, C) = (rows · i_<k, r_{k-1} · j_k, j_>k); r_0 = 1.
        let mut t: Tensor<3> = input.reshape([rows, first_j, d_in / first_j]);
        let n = self.cores.len();
        for (k, core) in self.cores.iter().enumerate() {
            let core = core.val();
            let [r, i, j, r_next] = core.dims();
            let [a, _, c] = t.dims();
            // G as (r·j, i·r_next).
            let g = core.swap_dims(1, 2).reshape([r * j, i * r_next]);
            let y = precision::matmul(t.swap_dims(1, 2).reshape([a * c, r * j]), g)
                .reshape([a, c, i, r_next]);
            // → (a, i, r_next, c) → next layout.
            let y = y.swap_dims(1, 2).swap_dims(2, 3);
            t = if k + 1 < n {
                let next_j = self.cores[k + 1].lazy_shape().dims::<4>()[2];
                y.reshape([a * i, r_next * next_j, c / next_j])
            } else {
                y.reshape([a * i, r_next, c])
            };
        }
        let [a, _, _] = t.dims();
        t.reshape([rows, a / rows])
    }

    /// Total parameters in the cores.
    pub fn core_params(&self) -> usize {
        self.cores
            .iter()
            .map(|c| c.lazy_shape().dims::<4>().iter().product::<usize>())
            .sum()
    }

    /// A layer of zero cores with the given `(r_{k-1}, i_k, j_k, r_k)` dims (and a zero bias of
    /// length `out` if `bias`), to be filled from a checkpoint.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidConfig`] unless the dims form an MPO: at least one core, outer bonds
    /// 1, neighbouring bonds equal, no zero dim.
    pub fn zeros(dims: &[[usize; 4]], bias: bool, device: &Device) -> Result<Self, ModelError> {
        let chained = dims.windows(2).all(|w| w[0][3] == w[1][0]);
        let valid = !dims.is_empty()
            && dims[0][0] == 1
            && dims[dims.len() - 1][3] == 1
            && chained
            && dims.iter().flatten().all(|&d| d > 0);
        if !valid {
            return Err(ModelError::InvalidConfig(format!(
                "core dims {dims:?} do not form an MPO"
            )));
        }
        let out: usize = dims.iter().map(|d| d[1]).product();
        Ok(Self {
            cores: dims
                .iter()
                .map(|&d| Param::from_tensor(Tensor::zeros(d, device)))
                .collect(),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([out], device))),
        })
    }

    /// Contracts the cores into a plain [`Linear`] (burn layout, weight `(in, out)`), detached from
    /// the graph: the merged model has the original architecture and parameter count.
    pub fn merge(&self) -> Linear {
        // Materialise the contraction (a chain of reshaped views) as one contiguous (out, in)
        // buffer, then take the (in, out) view: the layout of a Linear loaded from a checkpoint,
        // so the merged layer runs exactly as fast as the original one.
        let w = self.weight().detach();
        let device = w.device();
        let w = Tensor::<2>::from_data(w.into_data(), &device).transpose();
        Linear {
            weight: Param::from_tensor(w),
            bias: self
                .bias
                .as_ref()
                .map(|b| Param::from_tensor(b.val().detach())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    /// ‖a − b‖_F / ‖b‖_F, the relative error the spec's tolerances refer to.
    fn rel_err<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
        let num = (a - b.clone()).square().sum().into_scalar::<f64>().sqrt();
        num / b.square().sum().into_scalar::<f64>().sqrt()
    }

    fn dense_out_in(linear: &Linear) -> Vec<f64> {
        linear
            .weight
            .val()
            .transpose()
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("f64")
    }

    fn mpo_of(linear: &Linear, rows: Vec<usize>, cols: Vec<usize>) -> mpo_core::Mpo {
        let shape = mpo_core::MpoShape::new(rows, cols).expect("valid shape");
        mpo_core::decompose(
            &dense_out_in(linear),
            &shape,
            &mpo_core::DecomposeOptions::default(),
        )
        .expect("decomposes")
    }

    /// Spec §8 item 7: the MPO layer built from a Linear's weight reproduces the Linear (f32, 1e-5
    /// relative), with the first factor list applied to out_features.
    #[test]
    fn equals_dense_layer_before_training() {
        let device = Device::flex();
        device.seed(7);
        for (rows, cols) in [
            (vec![2, 3, 2], vec![2, 2, 3]),
            (vec![4, 1, 1, 3], vec![2, 1, 1, 4]),
            (vec![12], vec![8]),
        ] {
            let (out, inp) = (rows.iter().product(), cols.iter().product());
            let dense = LinearConfig::new(inp, out).init(&device);
            let mpo = MpoLinear::from_mpo(
                &mpo_of(&dense, rows, cols),
                dense.bias.clone(),
                CoreTraining::All,
                &device,
            );
            assert_eq!(mpo.dims(), (out, inp));
            let x = Tensor::<3>::random([2, 5, inp], Distribution::Normal(0.0, 1.0), &device);
            let want = dense.forward(x.clone());
            let got = mpo.forward(x);
            assert!(rel_err(got, want) < 1e-5);
            assert!(rel_err(mpo.merge().weight.val(), dense.weight.val()) < 1e-5);
        }
    }

    /// The factorised forward equals contract-then-matmul (f32, 1e-5 relative), and the mode
    /// choice follows the multiply-add counts.
    #[test]
    fn factorised_forward_equals_dense_forward() {
        let device = Device::flex();
        device.seed(11);
        for (rows, cols) in [
            (vec![2, 3, 2], vec![2, 2, 3]),
            (vec![4, 1, 1, 3], vec![2, 1, 1, 4]),
            (vec![12], vec![8]),
            (vec![3, 4], vec![5, 2]),
        ] {
            let (out, inp) = (rows.iter().product(), cols.iter().product());
            let dense = LinearConfig::new(inp, out).init(&device);
            let mpo = MpoLinear::from_mpo(
                &mpo_of(&dense, rows, cols),
                None,
                CoreTraining::All,
                &device,
            );
            let x = Tensor::<2>::random([7, inp], Distribution::Normal(0.0, 1.0), &device);
            let via_w = x.clone().matmul(mpo.weight().transpose());
            assert!(rel_err(mpo.apply_factorised(x), via_w) < 1e-5);
        }
        // One row through a wide [a,1,1,b] MPO: factorised is cheaper; many rows: dense.
        let dense = LinearConfig::new(64, 64).init(&device);
        let mpo = MpoLinear::from_mpo(
            &mpo_of(&dense, vec![8, 1, 1, 8], vec![8, 1, 1, 8]),
            None,
            CoreTraining::All,
            &device,
        );
        let (d1, f1) = mpo.forward_flops(1);
        assert!(f1 < d1, "{f1} < {d1}");
        assert_eq!(mpo.forward_mode(1), ForwardMode::Factorised);
        assert_eq!(mpo.forward_mode(4096), ForwardMode::Dense);
        // Both modes through `forward` give the dense layer's output.
        for rows in [1, 4096] {
            let x = Tensor::<2>::random([rows, 64], Distribution::Normal(0.0, 1.0), &device);
            assert!(rel_err(mpo.forward(x.clone()), x.matmul(dense.weight.val())) < 1e-5);
        }
    }

    #[test]
    fn training_modes_set_require_grad() {
        let device = Device::flex().autodiff();
        let dense = LinearConfig::new(8, 8).init(&device);
        let mpo = mpo_of(&dense, vec![2, 2, 2], vec![2, 2, 2]);
        let flags = |t: CoreTraining| -> Vec<bool> {
            MpoLinear::from_mpo(&mpo, None, t, &device)
                .cores
                .iter()
                .map(|c| c.is_require_grad())
                .collect()
        };
        assert_eq!(flags(CoreTraining::All), vec![true, true, true]);
        assert_eq!(flags(CoreTraining::Central), vec![false, true, false]);
        assert_eq!(flags(CoreTraining::Auxiliary), vec![true, false, true]);
        assert_eq!(flags(CoreTraining::Frozen), vec![false, false, false]);
    }
}
