//! Cutoff functions f_c(r) and their derivatives, with n2p2's codes and its inner radius
//! `alpha` (r_ci = alpha·rc): for the codes that use it, f_c = 1 for r < r_ci and the shaped
//! part runs over x = (r − r_ci)/(rc − r_ci) ∈ [0, 1).
//!
//! Every function here returns `(f_c, df_c/dr)` for 0 ≤ r ≤ rc, with (0, 0) at rc for every kind
//! but the hard one; beyond rc callers either skip the neighbour (as n2p2 does) or use
//! [`Cutoff::eval_lanes`], which masks those lanes to (0, 0).

use crate::math::Real;

/// The kind of cutoff function (n2p2's `cutoff_type` codes as discriminants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CutoffKind {
    /// 0 — hard: f_c = 1.
    Hard = 0,
    /// 1 — ½(cos πx + 1).
    Cos = 1,
    /// 2 — tanh³(1 − r/rc), unnormalised (f_c(0) ≈ 0.4417; alpha ignored).
    TanhU = 2,
    /// 3 — tanh³(1 − r/rc)/tanh³(1) (alpha ignored).
    Tanh = 3,
    /// 4 — exp(1 − 1/(1 − x²)).
    Exp = 4,
    /// 5 — (2x − 3)x² + 1.
    Poly1 = 5,
    /// 6 — ((15 − 6x)x − 10)x³ + 1.
    Poly2 = 6,
    /// 7 — (x(x(20x − 70) + 84) − 35)x⁴ + 1.
    Poly3 = 7,
    /// 8 — (x(x((315 − 70x)x − 540) + 420) − 126)x⁵ + 1.
    Poly4 = 8,
}

impl CutoffKind {
    /// All kinds, in code order.
    pub const ALL: [CutoffKind; 9] = [
        CutoffKind::Hard,
        CutoffKind::Cos,
        CutoffKind::TanhU,
        CutoffKind::Tanh,
        CutoffKind::Exp,
        CutoffKind::Poly1,
        CutoffKind::Poly2,
        CutoffKind::Poly3,
        CutoffKind::Poly4,
    ];

    /// The kind with n2p2 code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// n2p2's code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A cutoff function with its radius and inner radius, prepared for evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cutoff<T> {
    kind: CutoffKind,
    rc: T,
    /// Inner radius r_ci = alpha·rc.
    rci: T,
    /// 1/(rc − r_ci).
    inv_width: T,
    /// 1/rc.
    inv_rc: T,
}

impl<T: Real> Cutoff<T> {
    /// Prepares kind `kind` with radius `rc` > 0 and `alpha` ∈ [0, 1) (validated at blob load).
    pub fn new(kind: CutoffKind, rc: T, alpha: T) -> Self {
        let rci = alpha * rc;
        Cutoff {
            kind,
            rc,
            rci,
            inv_width: T::ONE / (rc - rci),
            inv_rc: T::ONE / rc,
        }
    }

    /// The cutoff radius.
    #[inline(always)]
    pub fn rc(&self) -> T {
        self.rc
    }

    /// `(f_c(r), df_c/dr)` for 0 ≤ r ≤ rc (both 0 at rc, except for the hard kind). Straight-line
    /// code for every kind but `Cos` (whose `sin` is a libm call in f64), so that it vectorises
    /// inside loops over neighbour lanes.
    #[inline(always)]
    pub fn eval(&self, r: T) -> (T, T) {
        // Numerical guard, used by every kind below: the distance to the cutoff, rc − r, is exact
        // near rc (Sterbenz), whereas 1 − r/rc or 1 − x loses the relative accuracy of f_c
        // exactly where f_c is small. All forms are written in it so that f32 keeps ~1e-7
        // relative accuracy up to the cutoff.
        let gap = self.rc - r;
        match self.kind {
            CutoffKind::Hard => (T::ONE, T::ZERO),
            CutoffKind::TanhU => tanh_cubed(gap * self.inv_rc, self.inv_rc, T::ONE),
            // 1/tanh³(1), computed in f64 and rounded once.
            CutoffKind::Tanh => {
                tanh_cubed(gap * self.inv_rc, self.inv_rc, T::from_f64(INV_TANH1_CUBED))
            }
            _ => {
                // Inside r_ci the shaped part is evaluated at x = 0 and replaced by (1, 0).
                let x = ((r - self.rci) * self.inv_width).max(T::ZERO);
                let y = (gap * self.inv_width).min(T::ONE);
                let (f, dfdx) = shaped_xy(self.kind, x, y);
                let inner = r < self.rci;
                (
                    if inner { T::ONE } else { f },
                    if inner {
                        T::ZERO
                    } else {
                        dfdx * self.inv_width
                    },
                )
            }
        }
    }

    /// [`Cutoff::eval`] over `W` lanes, with the kind dispatched once outside the lane loop; lanes
    /// at or beyond rc give (0, 0) (also for the hard kind).
    #[inline(always)]
    pub fn eval_lanes<const W: usize>(&self, r: [T; W]) -> ([T; W], [T; W]) {
        let rc = self.rc;
        let mut f = [T::ZERO; W];
        let mut d = [T::ZERO; W];
        if W == 1 {
            // Scalar cores (batched::LANES = 1): one out-of-line call instead of the kind match
            // with every kind's code inlined at each call site (flash); same arithmetic.
            for ((f, d), &r) in f.iter_mut().zip(d.iter_mut()).zip(r.iter()) {
                (*f, *d) = self.eval_masked(r);
            }
            return (f, d);
        }
        macro_rules! each {
            ($kind:expr) => {{
                let c = Cutoff {
                    kind: $kind,
                    ..*self
                };
                for ((f, d), &r) in f.iter_mut().zip(d.iter_mut()).zip(r.iter()) {
                    let (a, b) = c.eval(r.min(rc));
                    let inside = r < rc;
                    *f = if inside { a } else { T::ZERO };
                    *d = if inside { b } else { T::ZERO };
                }
            }};
        }
        match self.kind {
            CutoffKind::Hard => each!(CutoffKind::Hard),
            CutoffKind::Cos => each!(CutoffKind::Cos),
            CutoffKind::TanhU => each!(CutoffKind::TanhU),
            CutoffKind::Tanh => each!(CutoffKind::Tanh),
            CutoffKind::Exp => each!(CutoffKind::Exp),
            CutoffKind::Poly1 => each!(CutoffKind::Poly1),
            CutoffKind::Poly2 => each!(CutoffKind::Poly2),
            CutoffKind::Poly3 => each!(CutoffKind::Poly3),
            CutoffKind::Poly4 => each!(CutoffKind::Poly4),
        }
        (f, d)
    }

    /// [`Cutoff::eval`] of one lane as [`Cutoff::eval_lanes`] computes it ((0, 0) at or beyond
    /// rc), out of line.
    #[inline(never)]
    fn eval_masked(&self, r: T) -> (T, T) {
        let (a, b) = self.eval(r.min(self.rc));
        if r < self.rc {
            (a, b)
        } else {
            (T::ZERO, T::ZERO)
        }
    }
}

/// 1/tanh(1)³ = ((e² + 1)/(e² − 1))³, the normalisation n2p2 uses.
const INV_TANH1_CUBED: f64 = 2.263_753_795_225_351;

/// tanh(u) for 0 ≤ u ≤ 1 without branches or exponentials: a convergent of Lambert's continued
/// fraction tanh u = u/(1 + u²/(3 + u²/(5 + …))), u·N(u²)/D(u²), evaluated as
/// u + u³·E(u²)/D(u²) with E = (N − D)/u² so that the rounding errors of the rational part
/// shrink with it (exact rational coefficients, rounded to `T`). Truncated after the 8th level
/// in f64 (D of degree 4: below 3e−17 relative on [0, 1]) and the 5th in f32 (degree 3: below
/// 5e−10). Within 1.3 ulp of the correctly rounded tanh (checked against 40-digit values when
/// written; `tanh_unit_error` below checks 2 ulp against libm's). One division and no
/// exponential; every term is positive on [0, 1], so nothing cancels near u = 0.
#[inline(always)]
pub(crate) fn tanh_unit<T: Real>(u: T) -> T {
    let c = T::from_f64;
    let s = u * u;
    let (e, d) = if T::BYTES < 8 {
        (
            c(-1.0 / 3.0) + s * (c(-1.0 / 55.0) + s * c(-1.0 / 10_395.0)),
            T::ONE + s * (c(5.0 / 11.0) + s * (c(2.0 / 99.0) + s * c(1.0 / 10_395.0))),
        )
    } else {
        (
            c(-1.0 / 3.0)
                + s * (c(-2.0 / 85.0) + s * (c(-2.0 / 5_355.0) + s * c(-4.0 / 3_132_675.0))),
            T::ONE
                + s * (c(8.0 / 17.0)
                    + s * (c(7.0 / 255.0) + s * (c(4.0 / 9_945.0) + s * c(1.0 / 765_765.0)))),
        )
    };
    u + u * s * e / d
}

/// tanh³(u) with u = 1 − r/rc, and its derivative in r.
#[inline(always)]
fn tanh_cubed<T: Real>(u: T, inv_rc: T, norm: T) -> (T, T) {
    let t = tanh_unit(u);
    let t2 = t * t;
    // d/dr tanh³(1 − r/rc) = 3 tanh² (1 − tanh²) · (−1/rc)
    let three = T::from_f64(3.0);
    (norm * t2 * t, -norm * three * t2 * (T::ONE - t2) * inv_rc)
}

/// The shaped part f(x), df/dx for x ∈ [0, 1) (see [`shaped_xy`]; computes 1 − x itself).
#[inline(always)]
pub fn shaped<T: Real>(kind: CutoffKind, x: T) -> (T, T) {
    shaped_xy(kind, x, T::ONE - x)
}

/// The shaped part f(x), df/dx for x ∈ [0, 1), given y = 1 − x computed accurately by the
/// caller. The polynomials are the smoothstep forms factored at x = 1 (same values as the
/// expanded forms in the kind docs, e.g. POLY2 = (1 − x)³(1 + 3x + 6x²)), so that they keep
/// their relative accuracy as f → 0.
#[inline(always)]
pub fn shaped_xy<T: Real>(kind: CutoffKind, x: T, y: T) -> (T, T) {
    let c = T::from_f64;
    match kind {
        CutoffKind::Cos => {
            // ½(cos πx + 1) = sin²(πy/2); derivative −(π/2) sin(πx) = −(π/2) sin(πy)
            // = −π s c with (s, c) = (sin, cos)(πy/2): one range reduction.
            // (π/2)·y ∈ [0, π/2]: no range reduction needed.
            let (s, c) = (T::HALF * T::PI * y).sin_cos_quadrant();
            (s * s, -T::PI * s * c)
        }
        CutoffKind::Exp => {
            let q = y * (T::ONE + x); // 1 − x², accurate near x = 1
            let f = (T::ONE - T::ONE / q).exp_nonpos();
            // Guard: as x → 1 the exponent → −∞ and f underflows to 0 while 1/q² overflows;
            // select the exact limit (0, 0) instead of 0·∞ = NaN.
            let d = -T::TWO * x / (q * q) * f;
            (f, if f == T::ZERO { T::ZERO } else { d })
        }
        CutoffKind::Poly1 => (y * y * (T::ONE + T::TWO * x), -c(6.0) * x * y),
        CutoffKind::Poly2 => {
            let (x2, y2) = (x * x, y * y);
            (
                y2 * y * (T::ONE + c(3.0) * x + c(6.0) * x2),
                -c(30.0) * x2 * y2,
            )
        }
        CutoffKind::Poly3 => {
            let (x3, y3) = (x * x * x, y * y * y);
            let p = T::ONE + x * (c(4.0) + x * (c(10.0) + c(20.0) * x));
            (y3 * y * p, -c(140.0) * x3 * y3)
        }
        CutoffKind::Poly4 => {
            let (x2, y2) = (x * x, y * y);
            let (x4, y4) = (x2 * x2, y2 * y2);
            let p = T::ONE + x * (c(5.0) + x * (c(15.0) + x * (c(35.0) + c(70.0) * x)));
            (y4 * y * p, -c(630.0) * x4 * y4)
        }
        // Hard and the tanh kinds are handled by the caller.
        CutoffKind::Hard | CutoffKind::TanhU | CutoffKind::Tanh => (T::ONE, T::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_unit_error() {
        let ulps64 = |a: f64, b: f64| (a - b).abs() / (f64::from_bits(b.to_bits() + 1) - b);
        let ulps32 = |a: f32, b: f32| (a - b).abs() / (f32::from_bits(b.to_bits() + 1) - b);
        let (mut w64, mut w32) = (0.0f64, 0.0f32);
        for i in 1..=200_000 {
            let u = f64::from(i) / 200_000.0;
            w64 = w64.max(ulps64(tanh_unit(u), libm::tanh(u)));
            let u = u as f32;
            w32 = w32.max(ulps32(tanh_unit(u), libm::tanhf(u)));
        }
        // Against libm, itself within 1 ulp of the correctly rounded value.
        assert!(w64 <= 2.0, "f64: {w64} ulp");
        assert!(w32 <= 2.0, "f32: {w32} ulp");
        assert_eq!(tanh_unit(0.0f64), 0.0);
        assert_eq!(tanh_unit(0.0f32), 0.0);
    }

    #[test]
    fn inv_tanh1_cubed_constant() {
        let t = libm::tanh(1.0f64);
        assert!((INV_TANH1_CUBED - 1.0 / (t * t * t)).abs() < 1e-15);
    }

    #[test]
    fn derivative_matches_finite_difference_and_edges() {
        for kind in CutoffKind::ALL {
            for alpha in [0.0, 0.3] {
                let c = Cutoff::<f64>::new(kind, 5.0, alpha);
                let (f0, _) = c.eval(0.0);
                assert!(f0 > 0.0 && f0 <= 1.0, "{kind:?} f(0) = {f0}");
                // Vanishes at rc (except hard), values continuous towards rc.
                let (fe, _) = c.eval(5.0 - 1e-9);
                if kind != CutoffKind::Hard {
                    assert!(fe.abs() < 1e-6, "{kind:?} f(rc-) = {fe}");
                }
                for i in 1..200 {
                    let r = 5.0 * i as f64 / 200.0;
                    let h = 1e-6;
                    let (fp, _) = c.eval(r + h);
                    let (fm, _) = c.eval(r - h);
                    let (_, d) = c.eval(r);
                    let fd = (fp - fm) / (2.0 * h);
                    // Cos with alpha has a kink at r_ci only in the second derivative.
                    assert!(
                        (fd - d).abs() < 1e-6,
                        "{kind:?} alpha {alpha} r {r}: {fd} vs {d}"
                    );
                }
            }
        }
    }

    #[test]
    fn factored_polynomials_equal_the_expanded_forms() {
        for i in 0..=100 {
            let x = i as f64 / 100.0;
            let expanded = [
                (2.0 * x - 3.0) * x * x + 1.0,
                ((15.0 - 6.0 * x) * x - 10.0) * x * x * x + 1.0,
                (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x.powi(4) + 1.0,
                (x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x.powi(5) + 1.0,
            ];
            let kinds = [
                CutoffKind::Poly1,
                CutoffKind::Poly2,
                CutoffKind::Poly3,
                CutoffKind::Poly4,
            ];
            for (k, e) in kinds.iter().zip(expanded) {
                assert!((shaped(*k, x).0 - e).abs() < 1e-13, "{k:?} at {x}");
            }
            let cos = 0.5 * ((core::f64::consts::PI * x).cos() + 1.0);
            assert!((shaped(CutoffKind::Cos, x).0 - cos).abs() < 1e-15);
        }
    }

    #[test]
    fn f32_keeps_relative_accuracy_near_the_cutoff() {
        // Relative error of f32 against f64 where f_c is small (the last 5 % before rc).
        for kind in CutoffKind::ALL {
            let (c32, c64) = (
                Cutoff::<f32>::new(kind, 6.0, 0.0),
                Cutoff::<f64>::new(kind, 6.0, 0.0),
            );
            for i in 0..50 {
                let r = 5.7 + 0.006 * i as f64;
                let (a, b) = (
                    f64::from(c32.eval(r as f32).0),
                    c64.eval(f64::from(r as f32)).0,
                );
                if b > 1e-30 {
                    // exp(−u) in f32 carries u·ε relative error (the exponential kind).
                    let tol = 1e-6 * b * (1.0 + b.ln().abs());
                    assert!((a - b).abs() <= tol, "{kind:?} r {r}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn codes_round_trip() {
        for k in CutoffKind::ALL {
            assert_eq!(CutoffKind::from_code(k.code()), Some(k));
        }
        assert_eq!(CutoffKind::from_code(9), None);
    }
}
