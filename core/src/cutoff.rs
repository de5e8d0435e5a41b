//! Cutoff functions f_c(r) and their derivatives, with n2p2's codes and its inner radius
//! `alpha` (r_ci = alpha·rc): for the codes that use it, f_c = 1 for r < r_ci and the shaped
//! part runs over x = (r − r_ci)/(rc − r_ci) ∈ [0, 1).
//!
//! Every function here returns `(f_c, df_c/dr)` for 0 ≤ r < rc; callers never evaluate at
//! r ≥ rc (neighbours at or beyond a descriptor's cutoff are skipped, as in n2p2).

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
#[derive(Clone, Copy, Debug)]
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

    /// `(f_c(r), df_c/dr)` for 0 ≤ r < rc.
    #[inline(always)]
    pub fn eval(&self, r: T) -> (T, T) {
        match self.kind {
            CutoffKind::Hard => (T::ONE, T::ZERO),
            CutoffKind::TanhU => tanh_cubed(r, self.inv_rc, T::ONE),
            // 1/tanh³(1), computed in f64 and rounded once.
            CutoffKind::Tanh => tanh_cubed(r, self.inv_rc, T::from_f64(INV_TANH1_CUBED)),
            _ => {
                if r < self.rci {
                    return (T::ONE, T::ZERO);
                }
                let x = (r - self.rci) * self.inv_width;
                let (f, dfdx) = shaped(self.kind, x);
                (f, dfdx * self.inv_width)
            }
        }
    }
}

/// 1/tanh(1)³ = ((e² + 1)/(e² − 1))³, the normalisation n2p2 uses.
const INV_TANH1_CUBED: f64 = 2.263_753_795_225_351;

#[inline(always)]
fn tanh_cubed<T: Real>(r: T, inv_rc: T, norm: T) -> (T, T) {
    let t = (T::ONE - r * inv_rc).tanh();
    let t2 = t * t;
    // d/dr tanh³(1 − r/rc) = 3 tanh² (1 − tanh²) · (−1/rc)
    let three = T::from_f64(3.0);
    (norm * t2 * t, -norm * three * t2 * (T::ONE - t2) * inv_rc)
}

/// The shaped part f(x), df/dx for x ∈ [0, 1).
#[inline(always)]
fn shaped<T: Real>(kind: CutoffKind, x: T) -> (T, T) {
    let c = T::from_f64;
    match kind {
        CutoffKind::Cos => {
            let px = T::PI * x;
            (T::HALF * (px.cos() + T::ONE), -T::HALF * T::PI * px.sin())
        }
        CutoffKind::Exp => {
            let q = T::ONE - x * x;
            let f = (T::ONE - T::ONE / q).exp();
            // Guard: as x → 1 the exponent → −∞ and f underflows to 0 while 1/q² overflows;
            // return the exact limit (0, 0) instead of 0·∞ = NaN.
            if f == T::ZERO {
                return (T::ZERO, T::ZERO);
            }
            (f, -T::TWO * x / (q * q) * f)
        }
        CutoffKind::Poly1 => (
            (T::TWO * x - c(3.0)) * x * x + T::ONE,
            c(6.0) * x * (x - T::ONE),
        ),
        CutoffKind::Poly2 => {
            let x2 = x * x;
            let xm1 = x - T::ONE;
            (
                ((c(15.0) - c(6.0) * x) * x - c(10.0)) * x2 * x + T::ONE,
                -c(30.0) * x2 * xm1 * xm1,
            )
        }
        CutoffKind::Poly3 => {
            let x2 = x * x;
            let xm1 = x - T::ONE;
            (
                (x * (x * (c(20.0) * x - c(70.0)) + c(84.0)) - c(35.0)) * x2 * x2 + T::ONE,
                c(140.0) * x2 * x * xm1 * xm1 * xm1,
            )
        }
        CutoffKind::Poly4 => {
            let x2 = x * x;
            let x4 = x2 * x2;
            let xm1 = x - T::ONE;
            let xm1_2 = xm1 * xm1;
            (
                (x * (x * ((c(315.0) - c(70.0) * x) * x - c(540.0)) + c(420.0)) - c(126.0))
                    * x4
                    * x
                    + T::ONE,
                -c(630.0) * x4 * xm1_2 * xm1_2,
            )
        }
        // Hard and the tanh kinds are handled by the caller.
        CutoffKind::Hard | CutoffKind::TanhU | CutoffKind::Tanh => (T::ONE, T::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn codes_round_trip() {
        for k in CutoffKind::ALL {
            assert_eq!(CutoffKind::from_code(k.code()), Some(k));
        }
        assert_eq!(CutoffKind::from_code(9), None);
    }
}
