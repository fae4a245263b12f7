//! Learning-rate schedule: linear warmup then linear decay to zero, as
//! `transformers.get_linear_schedule_with_warmup` (used by `trainer_bert.py:700-710`).

/// Linear warmup/decay over `total_steps` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinearSchedule {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Warmup steps.
    pub warmup_steps: usize,
    /// Total optimizer steps.
    pub total_steps: usize,
}

impl LinearSchedule {
    /// Warmup from an explicit step count, or from a ratio of the total
    /// (`math.ceil(total * ratio)`, HF `TrainingArguments.get_warmup_steps`) when `warmup_steps` is 0.
    pub fn new(base_lr: f64, warmup_steps: usize, warmup_ratio: f64, total_steps: usize) -> Self {
        let warmup_steps = if warmup_steps > 0 {
            warmup_steps
        } else {
            (total_steps as f64 * warmup_ratio).ceil() as usize
        };
        Self {
            base_lr,
            warmup_steps,
            total_steps,
        }
    }

    /// Learning rate used by optimizer step `step` (0-based; HF calls `scheduler.step()` after
    /// each optimizer step, so step 0 runs at factor 0 when there is warmup).
    pub fn lr(&self, step: usize) -> f64 {
        let factor = if step < self.warmup_steps {
            step as f64 / self.warmup_steps.max(1) as f64
        } else {
            let rest = self.total_steps.saturating_sub(step) as f64;
            (rest / self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64).max(0.0)
        };
        self.base_lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §8 item 14: HF formula at 0, warmup−1, warmup and total; the MRPC case where the 345
    /// total steps never leave the 500-step warmup, peaking at 345/500 × 2e-5 = 1.38e-5.
    #[test]
    fn matches_hf_formula() {
        let s = LinearSchedule::new(1e-3, 10, 0.0, 100);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(9) - 9e-4).abs() < 1e-15);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15);
        assert!((s.lr(55) - 0.5e-3).abs() < 1e-15);
        assert_eq!(s.lr(100), 0.0);
        assert_eq!(s.lr(150), 0.0);

        let mrpc = LinearSchedule::new(2e-5, 500, 0.0, 345);
        assert!((mrpc.lr(345) - 1.38e-5).abs() < 1e-18);
        assert!((mrpc.lr(344) - 344.0 / 500.0 * 2e-5).abs() < 1e-18);
    }

    #[test]
    fn warmup_ratio_rounds_up() {
        // HF: ceil(345 * 0.1) = 35.
        assert_eq!(LinearSchedule::new(2e-5, 0, 0.1, 345).warmup_steps, 35);
        assert_eq!(LinearSchedule::new(2e-5, 7, 0.1, 345).warmup_steps, 7);
    }
}
