//! Mixed precision (issue 7 item 2): the tiny random BERT, BART and T5 fixtures under a bf16 or
//! f16 [`Precision::autocast`] guard agree with their f32 forward pass to half precision, dense
//! and over-parameterized (both MPO forward modes), and the guard changes no parameter dtype.
//!
//! Error measure: relative Frobenius error ‖half − f32‖ / ‖f32‖, accumulated in f64. bf16's
//! 8-bit significand rounds each operand by up to 2⁻⁹ ≈ 2e-3, f16's 11-bit one by 2⁻¹² ≈ 2.4e-4;
//! the errors of the products add up over the layers. Measured on burn-flex (CPU), bf16 / f16:
//!
//! | output                              | bf16    | f16     |
//! |-------------------------------------|---------|---------|
//! | BERT last hidden state              | 1.01e-2 | 1.21e-3 |
//! | BERT logits                         | 3.40e-3 | 3.26e-4 |
//! | MPO BERT logits (dense MPO forward) | 7.65e-3 | 7.06e-4 |
//! | MPO BERT hidden (factorised)        | 9.61e-3 | 1.77e-3 |
//! | BART logits                         | 9.86e-3 | 6.13e-4 |
//! | T5 LM logits                        | 4.68e-2 | 5.24e-3 |
//! | T5 (gated) LM logits                | 7.21e-2 | 1.03e-2 |
//!
//! Bounds: BERT and BART [`BF16_TOLERANCE`] 2e-2 and [`F16_TOLERANCE`] 5e-3. The random T5
//! fixtures are worse conditioned (T5's unscaled `N(0, 1)` embedding and attention without
//! `1/√d` give sharp softmaxes that amplify any rounding), so T5 gets [`T5_BF16_TOLERANCE`]
//! 1.5e-1 and [`T5_F16_TOLERANCE`] 2e-2. In every case the f16 error is 5–16× smaller than the
//! bf16 one (checked: more than 3×), about the ratio of their rounding units (8×): the deviations
//! are rounding, not a wrong computation.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::DType;
use mpo_core::Preset;
use opf_models::{
    BartForSequenceClassification, BertForSequenceClassification, CoreTraining, ForwardMode,
    Precision, T5ForConditionalGeneration,
};

/// Relative Frobenius error allowed for bf16 products.
const BF16_TOLERANCE: f64 = 2e-2;
/// Relative Frobenius error allowed for f16 products.
const F16_TOLERANCE: f64 = 5e-3;
/// The BERT and BART bounds, `(bf16, f16)`.
const BERT_BOUNDS: (f64, f64) = (BF16_TOLERANCE, F16_TOLERANCE);
/// Relative Frobenius error allowed for bf16 products in the random T5 fixtures.
const T5_BF16_TOLERANCE: f64 = 1.5e-1;
/// Relative Frobenius error allowed for f16 products in the random T5 fixtures.
const T5_F16_TOLERANCE: f64 = 2e-2;

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    assert_eq!(t.dtype(), DType::F32, "outputs come back in f32");
    t.into_data().try_into_vec::<f32>().expect("f32 data")
}

/// ‖a − b‖_F / ‖b‖_F, accumulated in f64.
fn rel_err<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (to_vec(a), to_vec(b));
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(&b) {
        num += (f64::from(*x) - f64::from(*y)).powi(2);
        den += f64::from(*y).powi(2);
    }
    assert!(den > 0.0, "reference is zero");
    (num / den).sqrt()
}

/// Runs `forward` in f32 and under bf16 and f16, and checks the relative errors against
/// `(bf16, f16)` bounds, and that f16 (3 more significand bits) is more than 3× closer.
fn check_halves<const D: usize>(
    what: &str,
    (bf16_bound, f16_bound): (f64, f64),
    forward: impl Fn() -> Tensor<D>,
) {
    let reference = forward();
    let error = |precision: Precision, bound: f64| {
        let _guard = precision.autocast();
        let err = rel_err(forward(), reference.clone());
        println!("{what}: {precision} relative error {err:.2e} (bound {bound:.1e})");
        assert!(err < bound, "{what} {precision}: {err:.3e}");
        // Not bit-identical: the products really ran in half precision.
        assert!(
            err > 0.0,
            "{what} {precision}: no rounding, autocast not applied"
        );
        err
    };
    let bf16 = error(Precision::Bf16, bf16_bound);
    let f16 = error(Precision::F16, f16_bound);
    assert!(f16 * 3.0 < bf16, "{what}: f16 {f16:.3e} vs bf16 {bf16:.3e}");
}

/// Asserts every float parameter of `module` is f32.
fn assert_params_f32<M: Module>(module: &M) {
    struct Dtypes(Vec<DType>);
    impl ModuleVisitor for Dtypes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().dtype());
        }
    }
    let mut d = Dtypes(Vec::new());
    module.visit(&mut d);
    assert!(!d.0.is_empty());
    assert!(d.0.iter().all(|&t| t == DType::F32), "{:?}", d.0);
}

fn tiny_bert() -> BertForSequenceClassification {
    let device = Device::flex();
    device.seed(11);
    BertForSequenceClassification::load(common::tiny_dir(), None, None, &device)
        .expect("tiny BERT loads")
        .0
}

#[test]
fn bert_forward_in_half_precision_matches_f32() {
    let model = tiny_bert();
    let fixture = common::read_json("tiny-bert.json");
    let (ids, types, mask) = common::inputs(&fixture, &Device::flex());
    check_halves("BERT last hidden state", BERT_BOUNDS, || {
        model
            .bert
            .forward(ids.clone(), types.clone(), mask.clone())
            .last_hidden_state
    });
    check_halves("BERT logits", BERT_BOUNDS, || {
        model.forward(ids.clone(), types.clone(), mask.clone())
    });
    assert_params_f32(&model);
}

/// Over-parameterized: the cores are contracted in f32, only the activation products in half.
/// The tiny batch (3 × 8 rows) takes the dense MPO forward; one row takes the factorised one.
#[test]
fn mpo_bert_forward_in_half_precision_matches_f32() {
    let mut model = tiny_bert();
    let paths = model.bert.linear_paths();
    model
        .bert
        .over_parameterize(&paths, &Preset::Opf(3), CoreTraining::All)
        .unwrap();
    let fixture = common::read_json("tiny-bert.json");
    let (ids, types, mask) = common::inputs(&fixture, &Device::flex());
    check_halves("MPO BERT logits, batch", BERT_BOUNDS, || {
        model.forward(ids.clone(), types.clone(), mask.clone())
    });
    let one = |t: &Tensor<2, Int>| t.clone().slice([0..1, 0..1]);
    let modes: Vec<ForwardMode> = paths
        .iter()
        .map(|&p| match model.bert.linear(p) {
            opf_models::ProjLinear::Mpo(mpo) => mpo.forward_mode(1),
            opf_models::ProjLinear::Dense(_) => unreachable!("all factored"),
        })
        .collect();
    assert!(modes.contains(&ForwardMode::Factorised), "{modes:?}");
    check_halves("MPO BERT hidden state, one token", BERT_BOUNDS, || {
        model
            .bert
            .forward(one(&ids), one(&types), one(&mask))
            .last_hidden_state
    });
    assert_params_f32(&model);
}

#[test]
fn bart_forward_in_half_precision_matches_f32() {
    let device = Device::flex();
    let model = BartForSequenceClassification::load(common::tiny_bart_dir(), None, None, &device)
        .expect("tiny BART loads")
        .0;
    let fixture = common::read_json("tiny-bart.json");
    let ids = common::int_tensor(&fixture["input_ids"], &device);
    let mask = common::int_tensor(&fixture["attention_mask"], &device);
    check_halves("BART logits", BERT_BOUNDS, || {
        model.forward(ids.clone(), mask.clone()).unwrap()
    });
}

/// T5 also runs its tied language-model head (`[d_model, vocab]`) in half.
#[test]
fn t5_forward_in_half_precision_matches_f32() {
    let device = Device::flex();
    for name in ["tiny-t5", "tiny-t5-gated"] {
        let model = T5ForConditionalGeneration::load(common::fixtures().join(name), None, &device)
            .unwrap_or_else(|err| panic!("{name}: {err}"))
            .0;
        let fixture = common::read_json(&format!("{name}.json"));
        let ids = common::int_tensor(&fixture["input_ids"], &device);
        let mask = common::int_tensor(&fixture["attention_mask"], &device);
        let decoder = common::int_tensor(&fixture["decoder_input_ids"], &device);
        check_halves(
            &format!("{name} LM logits"),
            (T5_BF16_TOLERANCE, T5_F16_TOLERANCE),
            || model.forward(ids.clone(), mask.clone(), decoder.clone()),
        );
    }
}
