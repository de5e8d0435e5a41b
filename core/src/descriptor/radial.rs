//! Radial symmetry functions with a Gaussian and a cutoff function:
//!
//! - G2 (n2p2 type 2): G_i = Σ_j exp(−η (r_ij − r_s)²) f_c(r_ij), over neighbours j of one
//!   species with r_ij < r_c;
//! - element-weighted (n2p2 type 12): G_i = Σ_j Z_j exp(−η (r_ij − r_s)²) f_c(r_ij), over all
//!   neighbours with r_ij < r_c, Z_j the atomic number of j's species.
//!
//! dG/dr_ij = w_j exp(−η (r_ij − r_s)²) [f_c′(r_ij) − 2η (r_ij − r_s) f_c(r_ij)], w_j = 1 or Z_j.

use super::angular::{add, Sums};
use super::{radial_blocks, GradSink, Group};
use crate::math::Real;
use crate::neighbors::Lanes;

/// Adds the group's values into `acc` (one lane per function).
// Without `reference-fallback` only the tests (reference twins of the batched kernels) use it.
#[cfg_attr(not(feature = "reference-fallback"), allow(dead_code))]
#[inline]
pub(crate) fn values<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    acc: &mut [T],
    comp: &mut [T],
) {
    let (eta, rs) = (g.lane(0), g.lane(1));
    let rc = g.cutoff.rc();
    let mut sums = Sums::new(acc, comp);
    for (range, w) in radial_blocks(g, nb, zs) {
        for &r in nb.r.get(range).unwrap_or(&[]) {
            // Strict cutoff as in n2p2: a neighbour at exactly rc contributes nothing.
            if r >= rc {
                continue;
            }
            let fc = g.cutoff.eval(r).0 * w;
            for ((a, c), (&e, &s)) in sums.lanes().zip(eta.iter().zip(rs)) {
                let d = r - s;
                add(a, c, (-e * d * d).exp() * fc);
            }
        }
    }
}

/// Back-propagates multipliers `m` (one per function) through the group into `sink`.
#[inline]
pub(crate) fn backprop<T: Real, S: GradSink<T>>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    m: &[T],
    sink: &mut S,
) {
    let (eta, rs) = (g.lane(0), g.lane(1));
    let rc = g.cutoff.rc();
    for (range, w) in radial_blocks(g, nb, zs) {
        for j in range {
            let Some((d, r)) = nb.get(j) else { continue };
            if r >= rc {
                continue;
            }
            let (fc, dfc) = g.cutoff.eval(r);
            let (fc, dfc) = (fc * w, dfc * w);
            let inv = T::ONE / r;
            sink.pair_begin(j, [d[0] * inv, d[1] * inv, d[2] * inv]);
            for (s, ((&e, &r0), &mult)) in eta.iter().zip(rs).zip(m).enumerate() {
                let x = r - r0;
                let ex = (-e * x * x).exp();
                sink.pair_term(s, mult * ex * (dfc - T::TWO * e * x * fc));
            }
            sink.pair_end();
        }
    }
}
