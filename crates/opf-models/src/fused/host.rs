//! What the burn-flex kernels here share: a branch-free `exp` and contiguous views of tensors.

use burn::backend::flex::FlexTensor;
use std::borrow::Cow;

/// `eˣ` for `x ≤ 0` (Cephes `expf`); `0` below `−87` (true value < 1.7e-38).
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    // Adding 1.5·2²³ rounds x·log₂e to the nearest integer n, left in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    // A comparison, not `max`, so that NaN propagates.
    let xc = if x < -87.0 { -87.0 } else { x };
    let v = xc.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = v - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    let p = P[1..].iter().fold(P[0], |acc, &c| acc.mul_add(r, c));
    let er = p.mul_add(r * r, r + 1.0);
    // 2ⁿ: n (two's complement in the low 22 bits of v) shifted into the exponent field.
    let scale = f32::from_bits((v.to_bits() << 23).wrapping_add(127 << 23));
    if x < -87.0 { 0.0 } else { er * scale }
}

/// The tensor itself when its f32 elements are one contiguous run, else a contiguous copy.
pub(super) fn contiguous(tensor: &FlexTensor) -> Cow<'_, FlexTensor> {
    match tensor.as_slice::<f32>() {
        Some(_) => Cow::Borrowed(tensor),
        None => Cow::Owned(tensor.to_contiguous()),
    }
}

/// The elements of a contiguous f32 tensor in row-major order.
pub(super) fn elements(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("a contiguous f32 tensor")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `exp` against the standard library's on its whole domain here, `[−87, 0]`, within 2 ulp,
    /// and 0 below.
    #[test]
    fn exp_nonpositive_is_within_two_ulp() {
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let (ours, std) = (exp_nonpositive(x), x.exp());
            let ulp = (ours.to_bits() as i64 - std.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) = {ours}, std {std}");
        }
        assert_eq!(exp_nonpositive(-87.5), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }
}
