//! The angular force passes' channel polynomials on hosts (`W` > 1): the narrow kinds'
//! ([`super::narrow`]) and the wide kinds' with mixed ζ ([`super::angular_forces`]).

use super::{Plan, MAX_CHANNELS, MAX_FUNCTIONS, MAX_ZETA};
use crate::math::Real;

/// Degree + 1 of the force pass's channel polynomials at most.
const MAX_TERMS: usize = MAX_ZETA as usize + 1;

/// The force passes' angular factors as polynomials in cos θ, one per channel:
/// Q_c(x) = Σ_{s∈c} m_s (1 + λ_s x)^ζ_s = Σ_n q_c,n xⁿ, with q_c,n = Σ_s m_s C(ζ_s, n) λ_sⁿ, and
/// its derivative Q′_c. A pair then costs one Horner evaluation per channel (four steps for the
/// water model's ζ ≤ 4) instead of a power and four products per function.
///
/// Rounding: Horner's rule on the expanded form errs by at most about ε Σ_n |q_c,n| |x|ⁿ ≤
/// ε Σ_s |m_s| (1 + |x|)^ζ_s, the bound of summing the functions' terms one by one, whose largest
/// term is |m_s| (1 + |x|)^ζ_s. The functions' clip at 1 + λx < 0 is left out: with λ = ±1 it
/// only acts on cos θ rounded beyond ±1, where the terms are of order ε, and where cos θ = −λ
/// exactly (j and k opposite) the gradient of cos θ is zero.
pub(super) struct Poly<T> {
    /// Degree of each channel's polynomial (its largest ζ; 0 for channels without functions).
    deg: [usize; MAX_CHANNELS],
    coef: [[T; MAX_TERMS]; MAX_CHANNELS],
}

impl<T: Real> Poly<T> {
    /// The polynomials of `plan`'s functions weighted by `m` (dE/dG per function), channels
    /// below `channels`.
    pub(super) fn new(plan: &Plan<T>, channels: usize, m: &[T]) -> Self {
        let mut p = Poly {
            deg: [0; MAX_CHANNELS],
            coef: [[T::ZERO; MAX_TERMS]; MAX_CHANNELS],
        };
        for (s, &ms) in m.iter().enumerate().take(plan.n.min(MAX_FUNCTIONS)) {
            let (c, zeta, lambda) = plan.function(s);
            if c >= channels {
                continue;
            }
            let (Some(deg), Some(coef)) = (p.deg.get_mut(c), p.coef.get_mut(c)) else {
                continue;
            };
            let zeta = (zeta as usize).min(MAX_TERMS - 1);
            *deg = (*deg).max(zeta);
            for (q, t) in coef.iter_mut().zip(binomial_terms(zeta, lambda)) {
                *q += ms * t;
            }
        }
        p
    }

    /// (Q_c(x), Q′_c(x)) per lane, by Horner's rule on both at once, with a constant number of
    /// steps (so that they unroll) for degrees up to 16: 1, 2 and 4 exactly, 3 in 4 steps, 5–8 in
    /// 8, 9–16 in 16. The extra leading steps run on zero coefficients and give exactly zero, so
    /// the result has the bits of the degree's own steps (up to the sign of a zero polynomial).
    /// Higher degrees take the loop. On n2p2's Cu2S model (ζ = 6) the 8 unrolled steps ran 4.6 %
    /// (f64) and 8 % (f32) fewer instructions in all than the loop's 6.
    #[inline(always)]
    pub(super) fn eval<const W: usize>(&self, c: usize, x: &[T; W]) -> ([T; W], [T; W]) {
        let (Some(&deg), Some(coef)) = (self.deg.get(c), self.coef.get(c)) else {
            return ([T::ZERO; W], [T::ZERO; W]);
        };
        match deg {
            0 | 1 => horner(coef, x, 1),
            2 => horner(coef, x, 2),
            3 | 4 => horner(coef, x, 4),
            5..=8 => horner(coef, x, 8),
            9..=16 => horner(coef, x, 16),
            _ => horner(coef, x, deg),
        }
    }
}

/// The coefficients C(ζ, n) λⁿ of (1 + λx)^ζ = Σ_n C(ζ, n) λⁿ xⁿ, n = 0..=ζ, for λ = ±1.
/// The binomials by C(ζ, n + 1) = C(ζ, n) (ζ − n) / (n + 1) in f64: exact for the ζ of
/// published models, within a few ulp up to ζ = 64.
pub(super) fn binomial_terms<T: Real>(zeta: usize, lambda: T) -> impl Iterator<Item = T> {
    let (mut b, mut sign) = (1.0f64, T::ONE);
    (0..=zeta).map(move |n| {
        let t = sign * T::from_f64(b);
        b = b * (zeta - n) as f64 / (n + 1) as f64;
        sign *= lambda;
        t
    })
}

/// Horner's rule for a polynomial of degree `deg` and its derivative.
#[inline(always)]
fn horner<T: Real, const W: usize>(
    coef: &[T; MAX_TERMS],
    x: &[T; W],
    deg: usize,
) -> ([T; W], [T; W]) {
    let at = |n: usize| coef.get(n).copied().unwrap_or(T::ZERO);
    let mut q = [at(deg); W];
    let mut dq = [T::ZERO; W];
    for n in (0..deg).rev() {
        dq = lanes!(l => dq[l] * x[l] + q[l]);
        q = lanes!(l => q[l] * x[l] + at(n));
    }
    (q, dq)
}
