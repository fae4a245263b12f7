//! Dynamic loss scaling for f16 mixed precision (`torch.cuda.amp.GradScaler` with its defaults).
//!
//! f16 gradients of a small loss underflow to zero; the trainer multiplies the loss by the scale
//! before the backward pass, divides the (f32) gradients by it afterwards ([`GradScaler::unscale`],
//! before clipping and any gradient hook), and skips the optimizer step when a gradient came out
//! infinite or NaN (the scale was too large), halving the scale. After `growth_interval`
//! consecutive good steps the scale doubles. bf16 has f32's exponent range and needs no scaler.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Dynamic loss scale and its update rule; part of the trainer state, so a resumed run continues
/// with the scale it had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradScaler {
    /// The current loss scale.
    scale: f64,
    /// Scale multiplier after `growth_interval` good steps.
    growth_factor: f64,
    /// Scale multiplier after a step with non-finite gradients.
    backoff_factor: f64,
    /// Good steps in a row before the scale grows.
    growth_interval: usize,
    /// Good steps since the last growth or backoff.
    good_steps: usize,
    /// Optimizer steps skipped so far for non-finite gradients.
    skipped_steps: usize,
}

impl Default for GradScaler {
    /// PyTorch's defaults: initial scale 2¹⁶, growth 2, backoff 0.5, interval 2000.
    fn default() -> Self {
        Self::new(65536.0, 2.0, 0.5, 2000)
    }
}

impl GradScaler {
    /// A scaler starting at `init_scale`.
    ///
    /// # Panics
    ///
    /// Panics unless `init_scale > 0`, `growth_factor > 1`, `0 < backoff_factor < 1` and
    /// `growth_interval > 0` (as `torch.cuda.amp.GradScaler` asserts).
    pub fn new(
        init_scale: f64,
        growth_factor: f64,
        backoff_factor: f64,
        growth_interval: usize,
    ) -> Self {
        assert!(init_scale > 0.0, "init_scale must be positive");
        assert!(growth_factor > 1.0, "growth_factor must be > 1");
        assert!(
            backoff_factor > 0.0 && backoff_factor < 1.0,
            "backoff_factor must be in (0, 1)"
        );
        assert!(growth_interval > 0, "growth_interval must be positive");
        Self {
            scale: init_scale,
            growth_factor,
            backoff_factor,
            growth_interval,
            good_steps: 0,
            skipped_steps: 0,
        }
    }

    /// The current loss scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Optimizer steps skipped so far for non-finite gradients.
    pub fn skipped_steps(&self) -> usize {
        self.skipped_steps
    }

    /// Divides every gradient of `module` by the scale in place and returns whether all of them
    /// are finite (one host sync). Call once per backward pass, before clipping.
    pub fn unscale<M: Module>(&self, module: &M, grads: &mut GradientsParams) -> bool {
        crate::optim::scale_grads(module, grads, 1.0 / self.scale);
        grads_finite(module, grads)
    }

    /// Updates the scale after a step: backoff (and a skipped step counted) when `finite` is
    /// false, growth after `growth_interval` finite steps in a row. Returns `finite`: whether
    /// the optimizer step should be taken.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_steps += 1;
            if self.good_steps == self.growth_interval {
                self.scale *= self.growth_factor;
                self.good_steps = 0;
            }
        } else {
            self.scale *= self.backoff_factor;
            self.good_steps = 0;
            self.skipped_steps += 1;
        }
        finite
    }
}

/// Whether every gradient of `module` in `grads` is finite, with one host sync: `g − g` is exactly
/// 0 for finite values and NaN otherwise.
pub fn grads_finite<M: Module>(module: &M, grads: &GradientsParams) -> bool {
    struct Check<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Check<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = (g.clone() - g).sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    let mut c = Check { grads, total: None };
    module.visit(&mut c);
    c.total.is_none_or(|t| t.into_scalar::<f64>() == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[test]
    fn defaults_match_pytorch() {
        let s = GradScaler::default();
        assert_eq!(s.scale(), 65536.0);
        assert_eq!(
            (s.growth_factor, s.backoff_factor, s.growth_interval),
            (2.0, 0.5, 2000)
        );
    }

    #[test]
    fn overflow_skips_and_backs_off() {
        let mut s = GradScaler::default();
        assert!(!s.update(false));
        assert_eq!(s.scale(), 32768.0);
        assert_eq!(s.skipped_steps(), 1);
        assert!(!s.update(false));
        assert_eq!(s.scale(), 16384.0);
        assert_eq!(s.skipped_steps(), 2);
    }

    #[test]
    fn grows_after_interval_good_steps_and_backoff_resets_the_count() {
        let mut s = GradScaler::new(8.0, 2.0, 0.5, 3);
        assert!(s.update(true));
        assert!(s.update(true));
        assert_eq!(s.scale(), 8.0);
        assert!(s.update(true));
        assert_eq!(s.scale(), 16.0);
        // Two good steps, an overflow, then the count starts over.
        s.update(true);
        s.update(true);
        s.update(false);
        assert_eq!(s.scale(), 8.0);
        s.update(true);
        s.update(true);
        assert_eq!(s.scale(), 8.0);
        s.update(true);
        assert_eq!(s.scale(), 16.0);
        assert_eq!(s.skipped_steps(), 1);
    }

    /// Gradients of `loss · scale` come back to the unscaled ones; an infinite one is reported.
    #[test]
    fn unscale_restores_gradients_and_detects_overflow() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let layer: Linear = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<2>::ones([2, 4], &device);
        let grads_of = |factor: f64| {
            let loss = layer.forward(x.clone()).sum().mul_scalar(factor);
            GradientsParams::from_grads(loss.backward(), &layer)
        };
        let plain = grads_of(1.0);
        let scaler = GradScaler::new(1024.0, 2.0, 0.5, 10);
        let mut scaled = grads_of(1024.0);
        assert!(scaler.unscale(&layer, &mut scaled));
        let w = layer.weight.id;
        scaled
            .get::<2>(w)
            .unwrap()
            .into_data()
            .assert_eq(&plain.get::<2>(w).unwrap().into_data(), true);

        let mut overflowed = grads_of(f64::from(f32::MAX) * 4.0);
        assert!(!scaler.unscale(&layer, &mut overflowed));
    }
}
