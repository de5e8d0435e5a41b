//! Angular symmetry functions over unordered neighbour pairs (j, k) of the group's two species:
//!
//! - G4, narrow (n2p2 type 3): 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ
//!   exp(−η[(r_ij−r_s)² + (r_ik−r_s)² + (r_jk−r_s)²]) f_c(r_ij) f_c(r_ik) f_c(r_jk), with r_jk < rc;
//! - G5, wide (n2p2 type 9): the same without any r_jk factor or condition;
//! - element-weighted narrow (n2p2 type 13): G4 over all unordered neighbour pairs regardless of
//!   species, each pair weighted by Z_j Z_k (atomic numbers of the neighbours' species).
//!
//! ζ is real (≥ 1, checked at load) and λ = ±1; a pair with 1 + λ cos θ ≤ 0 contributes 0.
//! The prefactor 2^(1−ζ) is applied once per function, not per pair.

use super::{GradSink, Group, Triplet};
use crate::math::Real;
use crate::neighbors::{Lanes, WorkLanes};

/// (1 + λc)^(ζ−1) for base = 1 + λc > 0, by repeated multiplication when ζ − 1 is a small
/// integer (exact and cheap), else through `powf`.
#[inline(always)]
fn pow_zeta_m1<T: Real>(base: T, zeta: T) -> T {
    let zm1 = zeta - T::ONE;
    // Compared and converted in T: f64 is software arithmetic on an f32-only FPU.
    if zm1 == zm1.floor() && zm1 <= T::from_usize(32) {
        base.powu(zm1.to_u32())
    } else {
        base.powf(zm1)
    }
}

/// 2^(1−ζ) = (1/2)^(ζ−1) for each function of the group, written into `pref`: exact
/// repeated halving for integer ζ (no `powf`, which is software double arithmetic on an f32-only
/// FPU), `powf` otherwise.
pub(crate) fn prefactors<T: Real>(g: &Group<'_, T>, pref: &mut [T]) {
    for (p, &z) in pref.iter_mut().zip(g.lane(2)) {
        *p = pow_zeta_m1(T::HALF, z);
    }
}

/// Multiplies each of `v` (one per function) by its prefactor 2^(1−ζ) (as [`prefactors`]).
#[cfg(feature = "reference-fallback")]
pub(crate) fn scale_by_prefactors<T: Real>(g: &Group<'_, T>, v: &mut [T]) {
    for (x, &z) in v.iter_mut().zip(g.lane(2)) {
        *x *= pow_zeta_m1(T::HALF, z);
    }
}

/// Fills the cutoff cache for the slots of the group's species (all species for the
/// element-weighted kind).
fn cache_cutoffs<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    work: &mut WorkLanes<'_, T>,
) {
    let rc = g.cutoff.rc();
    let mut fill = |range: core::ops::Range<usize>| {
        let r = nb.r.get(range.clone()).unwrap_or(&[]);
        let fc = work.fc.get_mut(range.clone()).unwrap_or(&mut []);
        let dfc = work.dfc.get_mut(range).unwrap_or(&mut []);
        for ((f, d), &x) in fc.iter_mut().zip(dfc.iter_mut()).zip(r) {
            (*f, *d) = if x < rc {
                g.cutoff.eval(x)
            } else {
                (T::ZERO, T::ZERO)
            };
        }
    };
    if g.kind.is_weighted() {
        (0..zs.len()).for_each(|e| fill(nb.range(e)));
    } else {
        fill(nb.range(g.e1));
        if g.e2 != g.e1 {
            fill(nb.range(g.e2));
        }
    }
}

/// Visits each unordered neighbour pair (j, k) of the group with both r < rc (and, for the narrow
/// kinds, r_jk < rc), passing the geometry, r_jk (narrow kinds; 0 otherwise) and the pair weight:
/// 1 for pairs of the group's species {e1, e2}, Z_j·Z_k over all pairs of known species for the
/// element-weighted kinds. Shared by the Gaussian and the polynomial angular kernels.
#[inline(always)]
pub(crate) fn for_each_triplet<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    mut visit: impl FnMut(&Triplet<T>, T, T),
) {
    if g.kind.is_weighted() {
        // Every unordered pair of species blocks (a ≤ b), with its weight Z_a·Z_b.
        for (a, &za) in zs.iter().enumerate() {
            for (b, &zb) in zs.iter().enumerate().skip(a) {
                pair_block(g, nb, a, b, za * zb, &mut visit);
            }
        }
    } else {
        pair_block(g, nb, g.e1, g.e2, T::ONE, &mut visit);
    }
}

/// The pairs (j of species e1, k of species e2), j < k when e1 = e2, for [`for_each_triplet`].
#[inline(always)]
fn pair_block<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    e1: usize,
    e2: usize,
    weight: T,
    visit: &mut impl FnMut(&Triplet<T>, T, T),
) {
    let rc = g.cutoff.rc();
    let narrow = g.kind.is_narrow();
    let r1 = nb.range(e1);
    let r2 = nb.range(e2);
    let same = e1 == e2;
    for j in r1 {
        let Some((dj, rij)) = nb.get(j) else { continue };
        if rij >= rc {
            continue;
        }
        let ij = T::ONE / rij;
        let uj = [dj[0] * ij, dj[1] * ij, dj[2] * ij];
        let k0 = if same { j + 1 } else { r2.start };
        for k in k0..r2.end {
            let Some((dk, rik)) = nb.get(k) else { continue };
            if rik >= rc {
                continue;
            }
            let (rjk, ujk) = if narrow {
                let djk = [dk[0] - dj[0], dk[1] - dj[1], dk[2] - dj[2]];
                let rjk = (djk[0] * djk[0] + djk[1] * djk[1] + djk[2] * djk[2]).sqrt();
                if rjk >= rc {
                    continue;
                }
                // rjk > 0: two distinct neighbour slots never coincide (overlaps are rejected).
                let inv = T::ONE / rjk;
                (rjk, [djk[0] * inv, djk[1] * inv, djk[2] * inv])
            } else {
                (T::ZERO, [T::ZERO; 3])
            };
            let ik = T::ONE / rik;
            let uk = [dk[0] * ik, dk[1] * ik, dk[2] * ik];
            let cos = uj[0] * uk[0] + uj[1] * uk[1] + uj[2] * uk[2];
            let tri = Triplet {
                j,
                k,
                uj,
                uk,
                ujk,
                rij,
                rik,
                cos,
            };
            visit(&tri, rjk, weight);
        }
    }
}

/// Cached (f_c, f_c′) of slot `k`.
#[inline(always)]
fn cached<T: Real>(fc: &[T], dfc: &[T], k: usize) -> (T, T) {
    (
        fc.get(k).copied().unwrap_or(T::ZERO),
        dfc.get(k).copied().unwrap_or(T::ZERO),
    )
}

/// Group sums with a compensation lane: in f32 every term goes through Kahan's compensated
/// addition, so a sum over thousands of pairs keeps f32's accuracy instead of losing digits
/// with the pair count (numerical guard: n2p2's Cu2S model in f32 has per-atom energy errors
/// of 3.5e−5 eV with plain sums, 1.2e−5 with two-level sums, below 1e−5 with these). In f64
/// the compensation is compiled out.
// Without `reference-fallback` only the tests (reference twins of the batched kernels) use it.
#[cfg_attr(not(feature = "reference-fallback"), allow(dead_code))]
pub(crate) struct Sums<'s, T> {
    acc: &'s mut [T],
    comp: &'s mut [T],
}

// Without `reference-fallback` only the tests (reference twins of the batched kernels) use it.
#[cfg_attr(not(feature = "reference-fallback"), allow(dead_code))]
impl<'s, T: Real> Sums<'s, T> {
    /// Sums into `acc`, using `comp` (same length) as the compensation lane.
    pub fn new(acc: &'s mut [T], comp: &'s mut [T]) -> Self {
        comp.iter_mut().for_each(|x| *x = T::ZERO);
        Sums { acc, comp }
    }

    /// (sum, compensation) per function, in lane order.
    #[inline(always)]
    pub fn lanes(&mut self) -> impl Iterator<Item = (&mut T, &mut T)> {
        self.acc.iter_mut().zip(self.comp.iter_mut())
    }
}

/// Adds `x` to the compensated sum (`s`, `c`).
#[inline(always)]
pub(crate) fn add<T: Real>(s: &mut T, c: &mut T, x: T) {
    if T::BYTES < 8 {
        let y = x - *c;
        let t = *s + y;
        *c = (t - *s) - y;
        *s = t;
    } else {
        *s += x;
    }
}

/// Adds the group's values (without the 2^(1−ζ) prefactor) into `acc`; `comp` is scratch of
/// the group's size (see [`Sums`]).
// Without `reference-fallback` only the tests (reference twins of the batched kernels) use it.
#[cfg_attr(not(feature = "reference-fallback"), allow(dead_code))]
pub(crate) fn values<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    work: &mut WorkLanes<'_, T>,
    zs: &[T],
    acc: &mut [T],
    comp: &mut [T],
) {
    cache_cutoffs(g, nb, zs, work);
    let (fc, dfc) = (&*work.fc, &*work.dfc);
    let narrow = g.kind.is_narrow();
    let (eta, rs, zeta, lambda) = (g.lane(0), g.lane(1), g.lane(2), g.lane(3));
    let mut sums = Sums::new(acc, comp);
    for_each_triplet(g, nb, zs, |t, rjk, w| {
        let (fj, fk) = (cached(fc, dfc, t.j).0, cached(fc, dfc, t.k).0);
        let fjk = if narrow { g.cutoff.eval(rjk).0 } else { T::ONE };
        let fprod = fj * fk * fjk * w;
        let lanes = eta.iter().zip(rs).zip(zeta).zip(lambda);
        for ((a, c), (((&e, &r0), &z), &l)) in sums.lanes().zip(lanes) {
            let base = T::ONE + l * t.cos;
            if base <= T::ZERO {
                continue;
            }
            let (xj, xk) = (t.rij - r0, t.rik - r0);
            let mut q = xj * xj + xk * xk;
            if narrow {
                let xjk = rjk - r0;
                q += xjk * xjk;
            }
            add(a, c, pow_zeta_m1(base, z) * base * (-e * q).exp() * fprod);
        }
    });
}

/// Back-propagates multipliers `m` (one per function, prefactor included) into `sink`.
pub(crate) fn backprop<T: Real, S: GradSink<T>>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    work: &mut WorkLanes<'_, T>,
    zs: &[T],
    m: &[T],
    sink: &mut S,
) {
    cache_cutoffs(g, nb, zs, work);
    let (fc, dfc) = (&*work.fc, &*work.dfc);
    let narrow = g.kind.is_narrow();
    let (eta, rs, zeta, lambda) = (g.lane(0), g.lane(1), g.lane(2), g.lane(3));
    for_each_triplet(g, nb, zs, |t, rjk, w| {
        let ((fj, dfj), (fk, dfk)) = (cached(fc, dfc, t.j), cached(fc, dfc, t.k));
        let (fjk, dfjk) = if narrow {
            g.cutoff.eval(rjk)
        } else {
            (T::ONE, T::ZERO)
        };
        let (f, df) = ([fj, fk, fjk], [dfj, dfk, dfjk]);
        sink.triplet_begin(t);
        let lanes = eta.iter().zip(rs).zip(zeta).zip(lambda).zip(m);
        for (s, ((((&e, &r0), &z), &l), &mult)) in lanes.enumerate() {
            let base = T::ONE + l * t.cos;
            if base <= T::ZERO {
                continue;
            }
            let (xj, xk) = (t.rij - r0, t.rik - r0);
            let xjk = rjk - r0;
            let mut q = xj * xj + xk * xk;
            if narrow {
                q += xjk * xjk;
            }
            let pm1 = pow_zeta_m1(base, z);
            let ex = mult * w * (-e * q).exp();
            let p = pm1 * base * ex; // m · w · P · exp
            let two_e = T::TWO * e;
            // ∂/∂r of f_c(r)·exp(−η(r−r_s)²) divided by exp: f_c′ − 2η(r − r_s) f_c.
            let dj = df[0] - two_e * xj * f[0];
            let dk = df[1] - two_e * xk * f[1];
            let a_ij = p * dj * f[1] * f[2];
            let a_ik = p * f[0] * dk * f[2];
            let a_jk = if narrow {
                p * f[0] * f[1] * (df[2] - two_e * xjk * f[2])
            } else {
                T::ZERO
            };
            let a_c = z * l * pm1 * ex * f[0] * f[1] * f[2];
            sink.triplet_term(s, [a_ij, a_ik, a_jk, a_c]);
        }
        sink.triplet_end();
    });
}
