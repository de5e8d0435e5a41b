//! Branch-free f64 `exp` for the descriptor kernels: libm's `exp` is an out-of-line call with
//! branches, which stops LLVM from vectorising a loop over neighbour lanes. This one is
//! straight-line code (range clamp, selects for the limits) and inlines into such loops.
//!
//! Maximum error, checked against `libm::exp` by the tests below: 2 ulp (about 4.4e−16
//! relative) for −708 ≤ x ≤ 709.78; 0 below −708 (where e^x < 3.4e−308), +∞ above.
//!
//! Method: Cody–Waite reduction x = k·ln 2 + r, |r| ≤ ln 2 / 2, with ln 2 split in two parts so
//! that k·LN2_HI is exact; the Taylor polynomial of degree 13 (truncation below 5e−18 relative)
//! by Estrin's scheme; 2^k built in the exponent field.
// Bit-level construction of 2^k needs integer arithmetic on exponents; the casts are on values
// already clamped to their ranges.
#![allow(clippy::cast_possible_truncation)]

const LOG2E: f64 = core::f64::consts::LOG2_E;
/// ln 2 split so that k·LN2_HI is exact for |k| < 2^20 (the low 32 bits of LN2_HI are zero).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
/// ln 2 − LN2_HI.
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// 1.5·2^52: adding it rounds an f64 of magnitude < 2^51 to an integer (ties to even), which
/// then sits in the low mantissa bits.
const SHIFT: f64 = 6_755_399_441_055_744.0;

/// e^x, without branches.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    let (t, p) = reduced(x.clamp(-708.0, 709.78));
    // k as an integer, from the mantissa of t; 2^k in two factors so that k = 1024 (x close to
    // the overflow threshold) is representable.
    let k = (t.to_bits() as i64).wrapping_sub(SHIFT.to_bits() as i64);
    let y = p * pow2(k >> 1) * pow2(k - (k >> 1));
    let y = if x < -708.0 { 0.0 } else { y };
    if x > 709.78 {
        f64::INFINITY
    } else {
        y
    }
}

/// e^x for x ≤ 0 (positive x count as 0): [`exp`] without its overflow side, the same bits.
/// Here −1021 ≤ k ≤ 0, so 2^k is one normal factor and p·2^k (p ≥ 0.7) is exact and normal,
/// as [`exp`]'s two-factor product is.
#[inline(always)]
pub fn exp_nonpos(x: f64) -> f64 {
    let (t, p) = reduced(x.clamp(-708.0, 0.0));
    let k = (t.to_bits() as i64).wrapping_sub(SHIFT.to_bits() as i64);
    let y = p * pow2(k);
    if x < -708.0 {
        0.0
    } else {
        y
    }
}

/// tanh x, the networks' activation, without branches (so a layer's neurons can share vector
/// lanes; libm's `tanh` is an out-of-line call through `expm1`): Lambert's convergent
/// ([`crate::cutoff::tanh_unit`]) for |x| ≤ 1, and 1 − 2/(e^{2|x|} + 1) beyond, where the
/// subtracted term is below 0.24, so nothing cancels; the sign of x put back by its bit (tanh
/// is odd; −0 stays −0). Within 2 ulp of libm's (tested below); NaN gives NaN, ±∞ gives ±1.
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    let near = crate::cutoff::tanh_unit(a.min(1.0));
    let far = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    let t = if a <= 1.0 { near } else { far };
    f64::from_bits(t.to_bits() | (x.to_bits() & SIGN))
}

/// The sign bit of an f64.
const SIGN: u64 = 1 << 63;

/// The reduction of clamped x = k·ln 2 + r and the polynomial e^r: (t, e^r), with k in the
/// low mantissa bits of t.
#[inline(always)]
fn reduced(xc: f64) -> (f64, f64) {
    let t = xc * LOG2E + SHIFT;
    let k = t - SHIFT;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    const C: [f64; 14] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    // Estrin's scheme: the same polynomial as Horner's rule with a dependency chain of depth
    // log₂ 14 instead of 13, so that the independent exponentials of a batch overlap.
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13] = C;
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let p01 = c0 + c1 * r;
    let p23 = c2 + c3 * r;
    let p45 = c4 + c5 * r;
    let p67 = c6 + c7 * r;
    let p89 = c8 + c9 * r;
    let p1011 = c10 + c11 * r;
    let p1213 = c12 + c13 * r;
    let p03 = p01 + p23 * r2;
    let p47 = p45 + p67 * r2;
    let p811 = p89 + p1011 * r2;
    let p07 = p03 + p47 * r4;
    let p813 = p811 + p1213 * r4;
    (t, p07 + p813 * r8)
}

/// 2^k for −1022 ≤ k ≤ 1023 (`exp` passes −511 ≤ k ≤ 512 after its range clamp, `exp_nonpos`
/// −1021 ≤ k ≤ 0; other k, from a NaN argument, give some factor of the NaN polynomial).
#[inline(always)]
fn pow2(k: i64) -> f64 {
    f64::from_bits((k.wrapping_add(1023) as u64) << 52)
}

/// 1/√x for positive normal x: a bit-level seed (relative error below 3.5 %), then four Newton
/// steps y ← y(3/2 − x·y²/2), each squaring the error; within 3 ulp.
#[inline(always)]
pub fn recip_sqrt(x: f64) -> f64 {
    let mut y = f64::from_bits(0x5fe6_eb50_c7b5_37a9u64.wrapping_sub(x.to_bits() >> 1));
    let h = 0.5 * x;
    for _ in 0..4 {
        y = y * (1.5 - h * y * y);
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Error in units of the last place of the correctly rounded value (libm's `exp` is within
    /// 1 ulp of it; the bound below includes that).
    fn ulps(a: f64, b: f64) -> f64 {
        let ulp = f64::from_bits(b.to_bits() + 1) - b;
        (a - b).abs() / ulp
    }

    #[test]
    fn recip_sqrt_error_table() {
        let mut worst: f64 = 0.0;
        let mut x = 1e-6;
        while x < 1e6 {
            let want = 1.0 / libm::sqrt(x);
            worst = worst.max(ulps(recip_sqrt(x), want));
            x *= 1.000_37;
        }
        assert!(worst <= 3.0, "recip_sqrt: {worst} ulp");
    }

    #[test]
    fn tanh_error_table() {
        let mut worst: f64 = 0.0;
        // Finely through the switch at |x| = 1, coarsely out to where tanh rounds to 1.
        for i in -400_000..=400_000 {
            let x = i as f64 * 5e-6;
            worst = worst.max(ulps(tanh(x).abs(), libm::tanh(x).abs()));
        }
        let mut x = 1e-300;
        while x < 40.0 {
            worst = worst.max(ulps(tanh(x), libm::tanh(x)));
            x *= 1.001_3;
        }
        assert!(worst <= 2.0, "tanh: {worst} ulp");
        assert_eq!(tanh(0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(tanh(-3.0), -tanh(3.0));
        assert_eq!(tanh(f64::INFINITY), 1.0);
        assert_eq!(tanh(f64::NEG_INFINITY), -1.0);
        assert_eq!(tanh(1e300), 1.0);
        assert!(tanh(f64::NAN).is_nan());
    }

    #[test]
    fn exp_error_table() {
        let mut worst: f64 = 0.0;
        let mut x = -708.0;
        while x <= 709.78 {
            worst = worst.max(ulps(exp(x), libm::exp(x)));
            x += 0.000_913;
        }
        for i in -100_000..=100_000 {
            let x = i as f64 * 1e-5;
            worst = worst.max(ulps(exp(x), libm::exp(x)));
        }
        assert!(worst <= 2.0, "exp: {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-708.5), 0.0);
        assert_eq!(exp(-1e300), 0.0);
        assert_eq!(exp(710.0), f64::INFINITY);
        assert!(exp(709.78).is_finite());
        assert!(exp(f64::NAN).is_nan());
    }

    #[test]
    fn exp_nonpos_is_exp_bit_for_bit() {
        let same = |x: f64| exp_nonpos(x).to_bits() == exp(x).to_bits();
        let mut x = -710.0;
        while x <= 0.0 {
            assert!(same(x), "x = {x}");
            x += 0.000_731;
        }
        for x in [
            0.0,
            -0.0,
            -1e-300,
            -707.9999,
            -708.0,
            -708.0001,
            -1e300,
            -f64::INFINITY,
        ] {
            assert!(same(x), "x = {x}");
        }
        assert_eq!(exp_nonpos(3.0), 1.0);
        assert!(exp_nonpos(f64::NAN).is_nan());
    }
}
