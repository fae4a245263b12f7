//! PyTorch's CPU random streams, reproduced, so that a seed means the same run as in PyTorch.
//!
//! A PyTorch fine-tuning script seeded with `torch.manual_seed(s)` draws, in order, the fresh
//! weights of the heads a checkpoint lacks (`normal_(0, initializer_range)`), then one Bernoulli
//! draw per element of every dropout in every training forward pass; its data order is
//! `torch.randperm(n, generator)` from a generator of its own. With [`TorchGenerator`] installed as
//! this thread's default ([`install`]), opf draws the same numbers in the same order:
//!
//! - [`dropout`] replaces burn's `Dropout::forward`: the mask of `bernoulli_(1 - p)` scaled by
//!   `1 / (1 - p)` in f32, as `at::native::dropout` (`aten/src/ATen/native/Dropout.cpp`,
//!   `_dropout_impl`) computes it, over the tensor in row-major order;
//! - the layout tables initialise a head missing from a checkpoint with
//!   [`TorchGenerator::normal`] (HF `_init_weights`: `normal_(0, std)` on the `(out, in)` weight,
//!   zero bias), in table order;
//! - the trainer shuffles with [`TorchGenerator::randperm`].
//!
//! The generator is `at::CPUGeneratorImpl` (`aten/src/ATen/CPUGeneratorImpl.cpp`): a 32-bit
//! Mersenne Twister seeded with the low 32 bits of the seed (`at::mt19937`). The transformations
//! follow `aten/src/ATen/core/DistributionsHelper.h` and `aten/src/ATen/native/cpu/
//! DistributionTemplates.h` of PyTorch 2.9: Bernoulli is `uniform64 < p` with 53-bit uniforms
//! (`bernoulli_kernel`, the path PyTorch takes on CPUs other than Intel's, where it uses MKL
//! streams instead), `normal_` on 16 or more contiguous floats is the vectorised Box–Muller fill
//! (`normal_fill`), `randperm` is the Fisher–Yates shuffle of `randperm_cpu`. Checked against
//! torch 2.9.0 (`scripts/gen_torch_rng.py`): identical permutations and masks, normal values
//! within 2e-8 of values ~0.02, a few f32 ulps (PyTorch's vectorised `log`/`sin`/`cos` differ
//! from Rust's in the last bits).

use std::cell::RefCell;

use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};

/// Words of Mersenne Twister state.
const N: usize = 624;
/// The twist offset.
const M: usize = 397;

/// PyTorch's CPU generator: `torch.Generator().manual_seed(seed)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GeneratorState", into = "GeneratorState")]
pub struct TorchGenerator {
    state: Box<[u32; N]>,
    /// Next word of `state` to temper; `N` means twist first.
    index: usize,
}

/// The serialized form: the 624 state words and the position in them.
#[derive(Serialize, Deserialize)]
struct GeneratorState {
    state: Vec<u32>,
    index: usize,
}

impl TryFrom<GeneratorState> for TorchGenerator {
    type Error = String;

    fn try_from(s: GeneratorState) -> Result<Self, String> {
        let len = s.state.len();
        let state: Box<[u32; N]> = s
            .state
            .into_boxed_slice()
            .try_into()
            .map_err(|_| format!("Mersenne Twister state has {len} words, expected {N}"))?;
        if s.index > N {
            return Err(format!("Mersenne Twister index {} > {N}", s.index));
        }
        Ok(Self {
            state,
            index: s.index,
        })
    }
}

impl From<TorchGenerator> for GeneratorState {
    fn from(g: TorchGenerator) -> Self {
        Self {
            state: g.state.to_vec(),
            index: g.index,
        }
    }
}

impl TorchGenerator {
    /// `torch.manual_seed(seed)`: the Mersenne Twister initialised with `seed as u32`
    /// (`at::mt19937::init_with_uint32`).
    pub fn new(seed: u64) -> Self {
        let mut state = Box::new([0u32; N]);
        state[0] = seed as u32;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: N }
    }

    /// The Mersenne Twister's state transition (`at::mt19937::next_state`), in three loops
    /// instead of indices modulo `N`.
    fn twist(&mut self) {
        let mt = &mut self.state;
        let mix = |upper: u32, lower: u32, far: u32| {
            let y = (upper & 0x8000_0000) | (lower & 0x7fff_ffff);
            far ^ (y >> 1) ^ (0u32.wrapping_sub(y & 1) & 0x9908_b0df)
        };
        for i in 0..N - M {
            mt[i] = mix(mt[i], mt[i + 1], mt[i + M]);
        }
        for i in N - M..N - 1 {
            mt[i] = mix(mt[i], mt[i + 1], mt[i + M - N]);
        }
        mt[N - 1] = mix(mt[N - 1], mt[0], mt[M - 1]);
        self.index = 0;
    }

    /// `CPUGeneratorImpl::random`: the next 32-bit output.
    #[inline]
    pub fn random(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let y = self.state[self.index];
        self.index += 1;
        temper(y)
    }

    /// `CPUGeneratorImpl::random64`: two outputs, the first in the high half.
    pub fn random64(&mut self) -> u64 {
        let hi = self.random() as u64;
        let lo = self.random() as u64;
        (hi << 32) | lo
    }

    /// `uniform_real_distribution<float>(0, 1)`: 24 bits of `random`, in `[0, 1)`.
    fn uniform_f32(&mut self) -> f32 {
        (self.random() & ((1 << 24) - 1)) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// `torch.empty(n).normal_(mean, std)` for `n >= 16` float32 elements (the vectorised
    /// `normal_fill`: all uniforms first, then Box–Muller on blocks of 16, the last block redrawn
    /// when 16 does not divide `n`). `None` for `n < 16`, where PyTorch takes a scalar path this
    /// type does not reproduce.
    pub fn normal(&mut self, n: usize, mean: f32, std: f32) -> Option<Vec<f32>> {
        if n < 16 {
            return None;
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for start in (0..n - 15).step_by(16) {
            box_muller_16(&mut data[start..start + 16], mean, std);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut data[n - 16..];
            for x in tail.iter_mut() {
                *x = self.uniform_f32();
            }
            box_muller_16(tail, mean, std);
        }
        Some(data)
    }

    /// `torch.randperm(n, generator=g)` (`randperm_cpu`): Fisher–Yates, position `i` swapped with
    /// `i + random() % (n - i)` (`random64` for `n` of `u32::MAX / 20` or more).
    pub fn randperm(&mut self, n: usize) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..n).collect();
        let small = (n as u64) < u64::from(u32::MAX / 20);
        for i in 0..n.saturating_sub(1) {
            let left = (n - i) as u64;
            let z = if small {
                u64::from(self.random()) % left
            } else {
                self.random64() % left
            };
            perm.swap(i, i + z as usize);
        }
        perm
    }

    /// The multiplier of `dropout(x, p)` for `n` elements: `bernoulli_(1 - p)` (kept when the
    /// 53-bit uniform of `uniform_real_distribution<double>` is below `1 - p`), divided by `1 - p`
    /// in f32.
    ///
    /// The uniform is `x·2⁻⁵³` for the low 53 bits `x` of `random64`, so `u < keep` is the integer
    /// test `x < ⌈keep·2⁵³⌉` (`keep·2⁵³` is exact in f64). The draws are taken a twisted block at a
    /// time, each pair of state words tempered in one loop the compiler vectorises (~4 ns per
    /// element here, against ~13 one `random64` at a time).
    pub fn dropout_noise(&mut self, n: usize, p: f64) -> Vec<f32> {
        let keep = 1.0 - p;
        let scale = 1.0f32 / keep as f32;
        let threshold = (keep * (1u64 << 53) as f64).ceil() as u64;
        let draw = |x: u64| {
            if x & ((1 << 53) - 1) < threshold {
                scale
            } else {
                0.0
            }
        };
        let mut out = vec![0.0f32; n];
        let mut done = 0;
        while done < n {
            if self.index >= N {
                self.twist();
            }
            let pairs = ((N - self.index) / 2).min(n - done);
            if pairs == 0 {
                // One word left in the block: the pair straddles the next twist.
                out[done] = draw(self.random64());
                done += 1;
                continue;
            }
            let words = &self.state[self.index..self.index + 2 * pairs];
            for (o, w) in out[done..done + pairs]
                .iter_mut()
                .zip(words.chunks_exact(2))
            {
                *o = draw((u64::from(temper(w[0])) << 32) | u64::from(temper(w[1])));
            }
            self.index += 2 * pairs;
            done += pairs;
        }
        out
    }
}

/// The Mersenne Twister's output transformation of one state word.
#[inline]
fn temper(mut y: u32) -> u32 {
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c_5680;
    y ^= (y << 15) & 0xefc6_0000;
    y ^ (y >> 18)
}

/// `normal_fill_16`: Box–Muller on `[u; 16]`, pairing element `j` with `j + 8`, in f32.
fn box_muller_16(data: &mut [f32], mean: f32, std: f32) {
    for j in 0..8 {
        let u1 = 1.0 - data[j];
        let u2 = data[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f32::consts::PI * u2;
        data[j] = radius * theta.cos() * std + mean;
        data[j + 8] = radius * theta.sin() * std + mean;
    }
}

thread_local! {
    static DEFAULT: RefCell<Option<TorchGenerator>> = const { RefCell::new(None) };
}

/// Restores the previous default generator of this thread when dropped.
#[must_use = "the generator is uninstalled when the guard drops"]
#[derive(Debug)]
pub struct Installed {
    previous: Option<TorchGenerator>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        DEFAULT.with(|d| *d.borrow_mut() = previous);
    }
}

/// Makes `generator` this thread's default, PyTorch's global generator (`None`: burn's random
/// streams, the default) until the guard drops.
pub fn install(generator: Option<TorchGenerator>) -> Installed {
    let previous = DEFAULT.with(|d| std::mem::replace(&mut *d.borrow_mut(), generator));
    Installed { previous }
}

/// A copy of this thread's default generator in its current state (for checkpoints).
pub fn current() -> Option<TorchGenerator> {
    DEFAULT.with(|d| d.borrow().clone())
}

fn with_default<R>(f: impl FnOnce(&mut TorchGenerator) -> R) -> Option<R> {
    DEFAULT.with(|d| d.borrow_mut().as_mut().map(f))
}

/// `layer.forward(input)`, its mask drawn from the installed [`TorchGenerator`] when there is one
/// (PyTorch's `dropout`, see the module docs), from burn's backend generator otherwise: `input`
/// times [`dropout_noise`]. The identity where burn's is: in evaluation (no autodiff device or a
/// frozen layer) or for `p = 0`.
///
/// # Shapes
///
/// - input: `[..., any]`
/// - output: same as input
pub fn dropout<const D: usize>(layer: &Dropout, input: Tensor<D>) -> Tensor<D> {
    match dropout_noise(layer, &input) {
        Some(noise) => input * noise,
        None => input,
    }
}

/// The multiplier [`dropout`] applies to a tensor like `like`: the keep mask scaled by
/// `1 / (1 - p)`, in `like`'s dtype, off the autodiff graph. `None` where dropout is the identity.
/// With a [`TorchGenerator`] installed the mask is PyTorch's; otherwise it is burn's
/// `Dropout::forward`'s (`random_like(Bernoulli(1 - p))`, the product scaled by `1 / (1 - p)`:
/// `x · m · s` equals `x · (m · s)` for `m` in {0, 1}).
///
/// # Shapes
///
/// - like, output: `[..., any]`
pub fn dropout_noise<const D: usize>(layer: &Dropout, like: &Tensor<D>) -> Option<Tensor<D>> {
    if !layer.training.is_enabled() || !like.device().is_autodiff() || layer.prob == 0.0 {
        return None;
    }
    let shape = like.shape();
    let keep = 1.0 - layer.prob;
    let noise = match with_default(|g| g.dropout_noise(shape.num_elements(), layer.prob)) {
        Some(noise) => Tensor::<D>::from_data(TensorData::new(noise, shape), &like.device()),
        None => return Some(like.random_like(Distribution::Bernoulli(keep)) * (1.0 / keep)),
    };
    Some(if noise.dtype() == like.dtype() {
        noise
    } else {
        noise.cast(like.dtype())
    })
}

/// A fresh `(out, in)` weight drawn as PyTorch's `normal_(0, std)` from the installed generator,
/// row-major; `None` without one (or below 16 elements, see [`TorchGenerator::normal`]).
pub(crate) fn normal_weight(d_output: usize, d_input: usize, std: f64) -> Option<Vec<f32>> {
    with_default(|g| g.normal(d_output * d_input, 0.0, std as f32)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;

    /// Draws of torch 2.9.0, written by `scripts/gen_torch_rng.py`.
    #[derive(Deserialize)]
    struct Fixture {
        randperm_seed: u64,
        randperm: Vec<usize>,
        normal_seed: u64,
        normal_n: usize,
        normal_std: f32,
        normal: Vec<f32>,
        /// After `normal`, on the same generator: `bernoulli_(keep)` of `bernoulli_n` elements,
        /// then `randint(0, 2**31)`: the next `random64` modulo 2³¹.
        bernoulli_keep: f64,
        bernoulli_n: usize,
        bernoulli: String,
        next_u32: u32,
        /// `dropout(ones(dropout_n), dropout_p)` with a generator seeded `dropout_seed`.
        dropout_seed: u64,
        dropout_p: f64,
        dropout: Vec<f32>,
    }

    fn fixture() -> Fixture {
        serde_json::from_str(include_str!("../tests/fixtures/torch_rng.json")).unwrap()
    }

    #[test]
    fn mersenne_twister_matches_the_reference_sequence() {
        // std::mt19937 with the default seed 5489: the 10000th output is 4123659995 (C++11
        // [rand.predef]).
        let mut g = TorchGenerator::new(5489);
        let last = (0..10_000).map(|_| g.random()).last().unwrap();
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn randperm_matches_torch() {
        let f = fixture();
        let perm = TorchGenerator::new(f.randperm_seed).randperm(f.randperm.len());
        assert_eq!(perm, f.randperm);
    }

    #[test]
    fn normal_bernoulli_and_the_stream_position_match_torch() {
        let f = fixture();
        let mut g = TorchGenerator::new(f.normal_seed);
        let normal = g.normal(f.normal_n, 0.0, f.normal_std).unwrap();
        // f32: PyTorch's vectorised log/sin/cos against Rust's, a few ulps of values ~0.02-0.08.
        for (i, (a, b)) in normal.iter().zip(&f.normal).enumerate() {
            assert!((a - b).abs() <= 2e-8, "normal[{i}]: {a} vs torch {b}");
        }
        let mask: String = g
            .dropout_noise(f.bernoulli_n, 1.0 - f.bernoulli_keep)
            .iter()
            .map(|&x| if x > 0.0 { '1' } else { '0' })
            .collect();
        assert_eq!(mask, f.bernoulli);
        assert_eq!(g.random64() % (1 << 31), u64::from(f.next_u32));
    }

    /// The block-wise mask equals the definition (`uniform64 < keep`, one `random64` per element)
    /// from every parity of the stream position and across twists, and leaves the stream where
    /// the definition does.
    #[test]
    fn dropout_noise_blocks_equal_the_element_wise_definition() {
        for skip in 0..3 {
            let mut fast = TorchGenerator::new(5);
            for _ in 0..skip {
                fast.random();
            }
            let mut slow = fast.clone();
            let noise = fast.dropout_noise(1500, 0.25);
            let want: Vec<f32> = (0..1500)
                .map(|_| {
                    let u = (slow.random64() & ((1 << 53) - 1)) as f64 / (1u64 << 53) as f64;
                    if u < 0.75 { 1.0 / 0.75f32 } else { 0.0 }
                })
                .collect();
            assert_eq!(noise, want, "skip {skip}");
            assert_eq!(fast, slow, "skip {skip}");
        }
    }

    #[test]
    fn normal_tail_and_short_tensors() {
        // 20 elements: one block of 16, then the last 16 redrawn and transformed again, so the
        // first 4 keep the first block's values.
        let mut a = TorchGenerator::new(3);
        let mut b = a.clone();
        let twenty = a.normal(20, 0.0, 1.0).unwrap();
        let sixteen = b.normal(16, 0.0, 1.0).unwrap();
        assert_eq!(twenty[..4], sixteen[..4]);
        assert!(twenty.iter().all(|x| x.is_finite()));
        assert_eq!(TorchGenerator::new(3).normal(15, 0.0, 1.0), None);
    }

    #[test]
    fn dropout_draws_from_the_installed_generator_like_torch() {
        let f = fixture();
        let device = Device::default().autodiff();
        let layer = DropoutConfig::new(f.dropout_p).init();
        let ones = || Tensor::<1>::ones([f.dropout.len()], &device);
        let out = {
            let _g = install(Some(TorchGenerator::new(f.dropout_seed)));
            dropout(&layer, ones())
        };
        let got: Vec<f32> = out.into_data().try_to_vec().unwrap();
        assert_eq!(got, f.dropout, "torch's values, bit for bit");
        assert_eq!(current(), None, "the guard uninstalls");
        // Evaluation (no autodiff) is the identity and draws nothing.
        let _g = install(Some(TorchGenerator::new(1)));
        let plain = Tensor::<1>::ones([4], &Device::default());
        let same: Vec<f32> = dropout(&layer, plain).into_data().try_to_vec().unwrap();
        assert_eq!(same, vec![1.0; 4]);
        assert_eq!(current(), Some(TorchGenerator::new(1)));
    }

    #[test]
    fn state_round_trips_through_json_and_rejects_bad_states() {
        let mut g = TorchGenerator::new(42);
        g.randperm(1000);
        let json = serde_json::to_string(&g).unwrap();
        let mut back: TorchGenerator = serde_json::from_str(&json).unwrap();
        assert_eq!(back.random(), g.random());
        let short = r#"{"state":[1,2,3],"index":0}"#;
        let err = serde_json::from_str::<TorchGenerator>(short).unwrap_err();
        assert!(err.to_string().contains("3 words"), "{err}");
        let mut words = vec![0u32; N];
        words[0] = 1;
        let bad_index = serde_json::json!({"state": words, "index": 625}).to_string();
        assert!(serde_json::from_str::<TorchGenerator>(&bad_index).is_err());
    }
}
