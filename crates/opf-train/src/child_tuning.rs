//! ChildTuning-D gradient masking (Xu et al., EMNLP 2021), the mode the released OPF optimizer
//! `ChildTuningAdamW` carries (`compress_tools/ChildTuningOptimizer.py:56-59`; spec §2.4).
//!
//! Before training, one pass over the training data (dropout on, no optimizer step) sums for
//! every parameter of the encoder layers (names containing `layers`, as the original's `'layer' in
//! name`; T5's are `blocks`) the squared gradient, each tensor's gradient first clipped to norm `max_grad_norm`, over
//! the number of batches (`compress_tools/ChildTuningD.py`, `calculate_fisher`). The elements
//! whose Fisher value reaches the `(1 − reserve_p)` percentile over all of them form the child
//! network; during training the other elements' gradients are zeroed before clipping and the
//! optimizer step. Parameters outside the encoder layers (embeddings, pooler, head) and MPO cores
//! added later are not masked. In the released OPF code the mask is all ones (a no-op): this is
//! the real ChildTuning-D, an option.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Tensor};
use opf_glue::{Batches, Features, Order};

use crate::{RoundHook, TaskModel, TrainError, batch_tensors};

/// The masked parameters: id and shape of the float parameters of rank 1 and 2 whose record path
/// contains `layers` (BERT, BART) or `blocks` (T5).
fn layer_params<M: Module>(model: &M) -> Vec<(ParamId, Vec<usize>)> {
    #[derive(Default)]
    struct Visit {
        path: Vec<String>,
        found: Vec<(ParamId, Vec<usize>)>,
    }
    impl ModuleVisitor for Visit {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if (D == 1 || D == 2) && self.path.iter().any(|p| p == "layers" || p == "blocks") {
                self.found
                    .push((param.id, param.lazy_shape().dims::<D>().to_vec()));
            }
        }
    }
    let mut v = Visit::default();
    model.visit(&mut v);
    v.found
}

/// Per-parameter keep masks (`true` = the gradient passes).
#[derive(Debug, Clone, Default)]
pub struct ChildTuningMasks {
    rank1: HashMap<ParamId, Tensor<1, Bool>>,
    rank2: HashMap<ParamId, Tensor<2, Bool>>,
    kept: usize,
    total: usize,
}

impl ChildTuningMasks {
    /// The ChildTuning-D Fisher pass over `train` (batch `batch_size`, shuffled with `seed`) on
    /// an autodiff `device`, keeping the top `reserve_p` fraction of the encoder-layer elements.
    ///
    /// # Errors
    ///
    /// [`TrainError::InvalidArgs`] unless `0 < reserve_p ≤ 1`; data errors of the pass.
    #[allow(clippy::too_many_arguments)]
    pub fn fisher<M: TaskModel>(
        model: &M,
        train: &[Features],
        batch_size: usize,
        pad_id: i64,
        seed: u64,
        reserve_p: f64,
        max_grad_norm: f64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        if !(reserve_p > 0.0 && reserve_p <= 1.0) {
            return Err(TrainError::InvalidArgs(format!(
                "ChildTuning-D reserve_p must be in (0, 1], got {reserve_p}"
            )));
        }
        let params = layer_params(model);
        let mut fisher: HashMap<ParamId, Vec<f64>> = HashMap::new();
        let order = Order::Shuffled {
            seed,
            epoch: u64::MAX - 1,
        };
        let batches: Vec<_> = Batches::new(train, batch_size, pad_id, order)?.collect();
        let n = batches.len() as f64;
        for (k, batch) in batches.iter().enumerate() {
            device.seed(seed.wrapping_add(u64::MAX / 3).wrapping_add(k as u64));
            let labels = batch.labels.as_ref().ok_or(TrainError::MissingLabels)?;
            let loss = model.loss(batch_tensors(batch, device), labels, device);
            let grads = GradientsParams::from_grads(loss.backward(), model);
            for (id, shape) in &params {
                let id = *id;
                let data = match shape.len() {
                    1 => grads.get::<1>(id).map(Tensor::into_data),
                    _ => grads.get::<2>(id).map(Tensor::into_data),
                };
                let Some(data) = data else { continue };
                let g = data.convert::<f64>().try_to_vec::<f64>().expect("f64 data");
                // torch.nn.utils.clip_grad_norm_(params, max_grad_norm), per tensor.
                let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
                let scale = (max_grad_norm / (norm + 1e-6)).min(1.0);
                let acc = fisher.entry(id).or_insert_with(|| vec![0.0; g.len()]);
                for (a, x) in acc.iter_mut().zip(&g) {
                    *a += (x * scale).powi(2) / n;
                }
            }
        }
        let mut all: Vec<f64> = fisher.values().flatten().copied().collect();
        if all.is_empty() {
            return Ok(Self::default());
        }
        all.sort_by(f64::total_cmp);
        let polar = percentile(&all, (1.0 - reserve_p) * 100.0);
        let mut masks = Self {
            total: all.len(),
            ..Self::default()
        };
        let inner = device.clone().inner();
        for (id, shape) in params {
            let Some(values) = fisher.get(&id) else {
                continue;
            };
            let keep: Vec<bool> = values.iter().map(|&v| v >= polar).collect();
            masks.kept += keep.iter().filter(|&&k| k).count();
            let rank = shape.len();
            let data = burn::tensor::TensorData::new(keep, shape);
            if rank == 1 {
                masks.rank1.insert(id, Tensor::from_data(data, &inner));
            } else {
                masks.rank2.insert(id, Tensor::from_data(data, &inner));
            }
        }
        Ok(masks)
    }

    /// Elements kept and elements masked in all, for the log.
    pub fn counts(&self) -> (usize, usize) {
        (self.kept, self.total)
    }

    /// Zeroes the masked-out gradient elements.
    pub fn apply(&self, grads: &mut GradientsParams) {
        for (id, mask) in &self.rank1 {
            if let Some(g) = grads.remove::<1>(*id) {
                grads.register(*id, g.mask_fill(mask.clone().bool_not(), 0.0));
            }
        }
        for (id, mask) in &self.rank2 {
            if let Some(g) = grads.remove::<2>(*id) {
                grads.register(*id, g.mask_fill(mask.clone().bool_not(), 0.0));
            }
        }
    }
}

/// numpy's `percentile` (linear interpolation) of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    match sorted.get(lo + 1) {
        Some(&hi) => sorted[lo] + frac * (hi - sorted[lo]),
        None => sorted[lo],
    }
}

/// A [`RoundHook`] that runs `inner` and masks the gradients after it (ChildTuning-D).
pub struct ChildTuningD<'a, M> {
    /// The hook wrapped (selection rounds, or [`NoRounds`](crate::NoRounds)).
    pub inner: &'a mut dyn RoundHook<M>,
    /// The masks.
    pub masks: ChildTuningMasks,
}

impl<M> RoundHook<M> for ChildTuningD<'_, M> {
    fn at_epoch_start(&mut self, epoch: usize, model: M) -> Result<M, TrainError> {
        self.inner.at_epoch_start(epoch, model)
    }

    fn after_backward(&mut self, model: &M, grads: &mut GradientsParams) -> Result<(), TrainError> {
        self.inner.after_backward(model, grads)?;
        self.masks.apply(grads);
        Ok(())
    }

    fn after_step(&mut self, step: usize, model: M) -> Result<M, TrainError> {
        self.inner.after_step(step, model)
    }

    fn save_state(&self) -> Option<serde_json::Value> {
        self.inner.save_state()
    }

    fn restore_state(&mut self, state: serde_json::Value) -> Result<(), TrainError> {
        self.inner.restore_state(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        // np.percentile([1, 2, 3, 4, 10], q) for q = 0, 30, 50, 90, 100.
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        for (q, want) in [
            (0.0, 1.0),
            (30.0, 2.2),
            (50.0, 3.0),
            (90.0, 7.6),
            (100.0, 10.0),
        ] {
            assert!((percentile(&v, q) - want).abs() < 1e-12, "q {q}");
        }
    }
}
