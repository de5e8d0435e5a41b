//! f32-native `exp`, `sin`, `cos` and `tanh`: libm's f32 versions compute in f64 internally,
//! which on an f32-only FPU (Cortex-M4F) or a soft-float core is software double arithmetic
//! (FIRMWARE.md measures ~11× the instructions). These work in f32 throughout, on every target,
//! so host and firmware compute the same bits.
//!
//! Maximum errors, checked against f64 references by the tests below over the ranges stated:
//! | function | range | maximum error |
//! |---|---|---|
//! | [`exp`] | −87.3 ≤ x ≤ 88.7 (0 below, +∞ above) | 2.5e−7 relative |
//! | [`sin`], [`cos`] | \|x\| ≤ 100 | 2.5e−7 absolute; 2.5e−7 relative for \|x\| ≤ π/4 |
//! | [`tanh`] | all x | 5e−7 relative |
//!
//! Methods: Cody–Waite range reduction (k·ln 2, k·π/2 with the constant split in parts so that
//! k·part is exact), then Taylor polynomials of degree high enough that truncation is below
//! half an ulp on the reduced interval, evaluated by Horner's rule.
// Bit-level construction of 2^k needs integer arithmetic on exponents; the casts below are on
// values already clamped to their ranges.
#![allow(clippy::cast_possible_truncation)]

const LOG2E: f32 = core::f32::consts::LOG2_E;
/// ln 2 split so that k·LN2_HI is exact for |k| < 2^11.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// 1.5·2^23: adding it rounds an f32 of magnitude < 2^22 to an integer (ties to even), which
/// then sits in the low mantissa bits.
const SHIFT: f32 = 12_582_912.0;

/// e^x, without branches (so that loops over lanes of it vectorise).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Range clamp first: NaN passes through `clamp` and the polynomial, and the selects below
    // give the limits outside the range.
    let (t, p) = reduced(x.clamp(-87.5, 88.72));
    // k = round(x·log2 e) as an integer, read from the mantissa of t; 2^k in two factors so that
    // k = 128 (x close to the overflow threshold) is representable.
    let k = (t.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let y = p * pow2(k >> 1) * pow2(k - (k >> 1));
    // Below −87.3 the result is subnormal (< 1.2e−38): returned as 0.
    let y = if x < -87.3 { 0.0 } else { y };
    if x > 88.72 {
        f32::INFINITY
    } else {
        y
    }
}

/// e^x for x ≤ 0 (positive x count as 0): [`exp`] without its overflow side, the same bits.
/// Here −126 ≤ k ≤ 0, so 2^k is one normal factor and p·2^k is rounded once, as [`exp`]'s
/// two-factor product is.
#[inline(always)]
pub fn exp_nonpos(x: f32) -> f32 {
    let (t, p) = reduced(x.clamp(-87.5, 0.0));
    let k = (t.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    let y = p * pow2(k);
    if x < -87.3 {
        0.0
    } else {
        y
    }
}

/// The reduction of clamped x = k·ln 2 + r and the polynomial e^r: (t, e^r), with k in the
/// low mantissa bits of t.
#[inline(always)]
fn reduced(xc: f32) -> (f32, f32) {
    let t = xc * LOG2E + SHIFT;
    let k = t - SHIFT;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    // |r| ≤ 0.347: degree 7 leaves a truncation error below 6e−9.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    (t, p)
}

/// 2^k for −126 ≤ k ≤ 127 (`exp` passes −63 ≤ k ≤ 64 after its range clamp, `exp_nonpos`
/// −126 ≤ k ≤ 0; other k, from a NaN argument, give some finite factor of the NaN polynomial).
#[inline(always)]
fn pow2(k: i32) -> f32 {
    f32::from_bits((k.wrapping_add(127) as u32) << 23)
}

/// 1/√x for positive normal x: a bit-level seed (relative error below 3.5 %), then three Newton
/// steps y ← y(3/2 − x·y²/2); within 2 ulp.
#[inline(always)]
pub fn recip_sqrt(x: f32) -> f32 {
    let mut y = f32::from_bits(0x5f37_5a86u32.wrapping_sub(x.to_bits() >> 1));
    let h = 0.5 * x;
    for _ in 0..3 {
        y = y * (1.5 - h * y * y);
    }
    y
}

/// Round to nearest (ties away from zero), for |x| < 2^22.
#[inline(always)]
fn round(x: f32) -> f32 {
    let t = (x.abs() + 0.5) as i32 as f32;
    if x < 0.0 {
        -t
    } else {
        t
    }
}

/// π/2 split in three parts (Cody–Waite) so that k·part is exact for moderate k.
const PIO2_1: f32 = 1.570_312_5;
const PIO2_2: f32 = 4.837_513e-4;
const PIO2_3: f32 = 7.549_79e-8;
const TWO_OVER_PI: f32 = core::f32::consts::FRAC_2_PI;

/// (sin r, cos r) for |r| ≤ π/4.
#[inline(always)]
fn sincos_kernel(r: f32) -> (f32, f32) {
    let r2 = r * r;
    let s = r
        * (1.0
            + r2 * (-1.0 / 6.0
                + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362_880.0)))));
    let c = 1.0
        + r2 * (-0.5
            + r2 * (1.0 / 24.0
                + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40_320.0 + r2 * (-1.0 / 3_628_800.0)))));
    (s, c)
}

/// (sin x, cos x).
#[inline]
pub fn sin_cos(x: f32) -> (f32, f32) {
    if !x.is_finite() {
        return (f32::NAN, f32::NAN);
    }
    // Beyond |x| ~ 2^20 the reduction loses all precision; such arguments do not occur in
    // cutoffs (|x| ≤ π) and are meaningless for an activation, so they are clamped.
    let k = round((x * TWO_OVER_PI).clamp(-1_048_576.0, 1_048_576.0));
    let r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let (s, c) = sincos_kernel(r);
    match (k as i32) & 3 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// (sin x, cos x) for 0 ≤ x ≤ π/2, straight from Taylor polynomials without range reduction
/// (the cosine cutoff's argument lies there): half the work of [`sin_cos`]. The first omitted
/// terms, x¹⁵/15! and x¹⁴/14! at x = π/2, are 6.7e−10 and 6.4e−9; sin keeps its relative
/// accuracy as x → 0 (x·P(x²)). Error against f64 libm tested below (≤ 2.5e−7 absolute, sin
/// ≤ 2.5e−7 relative).
#[inline(always)]
pub fn sin_cos_quadrant(x: f32) -> (f32, f32) {
    let x2 = x * x;
    let s = x
        * (1.0
            + x2 * (-1.0 / 6.0
                + x2 * (1.0 / 120.0
                    + x2 * (-1.0 / 5040.0
                        + x2 * (1.0 / 362_880.0
                            + x2 * (-1.0 / 39_916_800.0 + x2 * (1.0 / 6_227_020_800.0)))))));
    let c = 1.0
        + x2 * (-0.5
            + x2 * (1.0 / 24.0
                + x2 * (-1.0 / 720.0
                    + x2 * (1.0 / 40_320.0
                        + x2 * (-1.0 / 3_628_800.0 + x2 * (1.0 / 479_001_600.0))))));
    (s, c)
}

/// sin x.
#[inline]
pub fn sin(x: f32) -> f32 {
    sin_cos(x).0
}

/// cos x.
#[inline]
pub fn cos(x: f32) -> f32 {
    sin_cos(x).1
}

/// tanh x.
#[inline]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    if a.is_nan() {
        return x;
    }
    let t = if a > 9.1 {
        1.0
    } else if a < 0.3 {
        // Odd Taylor series; the first omitted term is below 2e−9 relative here.
        let a2 = a * a;
        a * (1.0
            + a2 * (-1.0 / 3.0
                + a2 * (2.0 / 15.0
                    + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0 + a2 * (-1382.0 / 155_925.0))))))
    } else {
        1.0 - 2.0 / (exp(2.0 * a) + 1.0)
    };
    if x < 0.0 {
        -t
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f32, b: f64) -> f64 {
        (f64::from(a) - b).abs() / b.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn recip_sqrt_error_table() {
        let mut worst: f64 = 0.0;
        let mut x = 1e-6f32;
        while x < 1e6 {
            worst = worst.max(rel(recip_sqrt(x), 1.0 / libm::sqrt(f64::from(x))));
            x *= 1.000_37;
        }
        assert!(worst <= 2.4e-7, "recip_sqrt: {worst:e}");
    }

    #[test]
    fn exp_error_table() {
        let mut worst: f64 = 0.0;
        for i in -87_300..=88_700 {
            let x = i as f32 * 1e-3;
            worst = worst.max(rel(exp(x), libm::exp(f64::from(x))));
        }
        assert!(worst <= 2.5e-7, "exp: {worst:e}");
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn exp_nonpos_is_exp_bit_for_bit() {
        let same = |x: f32| exp_nonpos(x).to_bits() == exp(x).to_bits();
        let mut x = -90.0f32;
        while x <= 0.0 {
            assert!(same(x), "x = {x}");
            x += 0.000_37;
        }
        let specials = [
            0.0,
            -0.0,
            -1e-30,
            -87.29,
            -87.3,
            -87.31,
            -87.5,
            -1e30,
            -f32::INFINITY,
        ];
        for x in specials {
            assert!(same(x), "x = {x}");
        }
        assert_eq!(exp_nonpos(3.0), 1.0);
        assert!(exp_nonpos(f32::NAN).is_nan());
    }

    #[test]
    fn sin_cos_error_table() {
        let (mut abs_worst, mut rel_worst): (f64, f64) = (0.0, 0.0);
        for i in -100_000..=100_000 {
            let x = i as f32 * 1e-3;
            let (s, c) = sin_cos(x);
            let xd = f64::from(x);
            abs_worst = abs_worst
                .max((f64::from(s) - libm::sin(xd)).abs())
                .max((f64::from(c) - libm::cos(xd)).abs());
            if x.abs() <= core::f32::consts::FRAC_PI_4 && x != 0.0 {
                rel_worst = rel_worst.max(rel(s, libm::sin(xd)));
            }
        }
        assert!(abs_worst <= 2.5e-7, "sin/cos absolute: {abs_worst:e}");
        assert!(rel_worst <= 2.5e-7, "sin relative: {rel_worst:e}");
        assert!(sin(f32::INFINITY).is_nan());
    }

    #[test]
    fn sin_cos_quadrant_error_table() {
        let (mut abs_worst, mut rel_worst): (f64, f64) = (0.0, 0.0);
        for i in 0..=200_000 {
            let x = (i as f64 / 200_000.0 * core::f64::consts::FRAC_PI_2) as f32;
            let (s, c) = sin_cos_quadrant(x);
            let xd = f64::from(x);
            abs_worst = abs_worst
                .max((f64::from(s) - libm::sin(xd)).abs())
                .max((f64::from(c) - libm::cos(xd)).abs());
            if x != 0.0 {
                rel_worst = rel_worst.max(rel(s, libm::sin(xd)));
            }
        }
        assert!(abs_worst <= 2.5e-7, "sin/cos absolute: {abs_worst:e}");
        assert!(rel_worst <= 2.5e-7, "sin relative: {rel_worst:e}");
    }

    #[test]
    fn tanh_error_table() {
        let mut worst: f64 = 0.0;
        for i in -12_000..=12_000 {
            let x = i as f32 * 1e-3;
            if x != 0.0 {
                worst = worst.max(rel(tanh(x), libm::tanh(f64::from(x))));
            }
        }
        assert!(worst <= 5e-7, "tanh: {worst:e}");
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
    }
}
