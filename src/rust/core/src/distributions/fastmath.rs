//! Exponential and logarithm as plain arithmetic, so that loops over genes vectorise (libm's
//! expf/log1pf are scalar calls and were half of the likelihood's time). f32 versions are
//! accurate to a few ulp; f64 uses the standard library (tests run the kernel in f64).

use num_traits::Float;

/// The float operations the likelihood kernel needs, fast where it matters.
pub trait KernelFloat: Float + Send + Sync + 'static {
    fn fast_exp(self) -> Self;
    /// Natural log of a positive, finite number.
    fn fast_ln(self) -> Self;
}

impl KernelFloat for f64 {
    #[inline(always)]
    fn fast_exp(self) -> Self {
        self.exp()
    }
    #[inline(always)]
    fn fast_ln(self) -> Self {
        self.ln()
    }
}

impl KernelFloat for f32 {
    #[inline(always)]
    fn fast_exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn fast_ln(self) -> Self {
        ln_f32(self)
    }
}

/// e^x: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n from the exponent
/// bits. Inputs are clamped to the finite range of f32 (below -87 the result is ~0).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The integer n sits in the low mantissa bits of `shifted`: integer arithmetic, no
    // float-to-int cast (Rust's saturating cast does not vectorise).
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// e^x in double precision as plain arithmetic (so that loops of it vectorise; libm's exp is a
/// call per value): x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor polynomial of degree 13
/// (truncation below 1e-17 relative), 2^n from the exponent bits, in two factors below -708 so
/// that subnormal results come out as libm's do. About 2 ulp; 0 below -745.2, capped at e^709.
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding and subtracting 1.5 * 2^52 rounds to the nearest integer without a call.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // 2^-64: the second factor of 2^n for subnormal results.
    const TINY: f64 = 5.421_010_862_427_522e-20;
    let vanishes = x < -745.2;
    let subnormal = x < -708.0;
    let x = x.clamp(-745.2, 709.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let n_bits = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(if subnormal { 64 } else { 0 });
    let value = p * f64::from_bits(n_bits.wrapping_add(1023) << 52);
    if vanishes {
        0.0
    } else if subnormal {
        value * TINY
    } else {
        value
    }
}

/// `exp_f64` of every value in place, four lanes at a time where AVX2 is available.
pub fn exp_f64_in_place(xs: &mut [f64]) {
    map_in_place(xs, exp_f64);
}

/// `exp_f32` of every value in place, eight lanes at a time where AVX2 is available.
pub fn exp_f32_in_place(xs: &mut [f32]) {
    map_in_place(xs, exp_f32);
}

/// Applies the plain-arithmetic `f` to every value in place, compiled for AVX2 and FMA where
/// the processor has them (the baseline target has 128-bit vectors only).
#[inline(always)]
fn map_in_place<T: Copy>(xs: &mut [T], f: impl Fn(T) -> T + Copy) {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2_fma() {
        // SAFETY: AVX2 and FMA are available (checked above).
        unsafe { map_in_place_avx2(xs, f) };
        return;
    }
    xs.iter_mut().for_each(|x| *x = f(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_in_place_avx2<T: Copy>(xs: &mut [T], f: impl Fn(T) -> T + Copy) {
    xs.iter_mut().for_each(|x| *x = f(*x));
}

/// ln x for finite x > 0: x = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) with
/// s = (m - 1) / (m + 1), |s| < 0.172, by its odd series to s^11.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    const LN2: f32 = std::f32::consts::LN_2;
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series =
        1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 / 11.0))));
    e as f32 * LN2 + 2.0 * s * series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut worst = 0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let exact = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - exact).abs() / exact);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!(exp_f32(-200.0) < 1e-37 && exp_f32(-200.0) >= 0.0);
        assert!(exp_f32(200.0).is_finite());
        let mut xs: Vec<f32> = (0..41).map(|i| -40.0 + i as f32).collect();
        let expected: Vec<f32> = xs.iter().map(|&x| exp_f32(x)).collect();
        exp_f32_in_place(&mut xs);
        assert_eq!(xs, expected);
    }

    #[test]
    fn exp_f64_is_accurate_over_its_range() {
        let mut worst = 0f64;
        let mut x = -707.9f64;
        while x < 709.0 {
            let exact = x.exp();
            worst = worst.max((exp_f64(x) - exact).abs() / exact);
            x += 0.0137;
        }
        assert!(worst < 1e-15, "worst relative error {worst}");
        assert_eq!(exp_f64(0.0), 1.0);
        // Subnormal results within a few units of the last place, as libm gives them.
        for x in [-710.0f64, -730.5, -744.0] {
            assert!(
                (exp_f64(x) - x.exp()).abs() <= 4.0 * 4.9e-324 + 1e-15 * x.exp(),
                "{x}"
            );
            assert!(exp_f64(x) > 0.0);
        }
        assert_eq!(exp_f64(-1e6), 0.0);
        assert!(exp_f64(1e6).is_finite());
        let mut xs: Vec<f64> = (0..37).map(|i| -3.0 + 0.21 * i as f64).collect();
        let expected: Vec<f64> = xs.iter().map(|&x| exp_f64(x)).collect();
        exp_f64_in_place(&mut xs);
        for (a, b) in xs.iter().zip(&expected) {
            assert!((a - b).abs() <= 2e-16 * b, "{a} vs {b}");
        }
    }

    #[test]
    fn ln_is_accurate_over_many_decades() {
        let mut worst = 0f64;
        let mut x = 1e-30f64;
        while x < 1e30 {
            let xf = x as f32;
            let exact = (xf as f64).ln();
            worst = worst.max(((ln_f32(xf) as f64) - exact).abs() / exact.abs().max(1.0));
            x *= 1.0173;
        }
        assert!(worst < 5e-7, "worst error {worst}");
        assert_eq!(ln_f32(1.0), 0.0);
    }
}
