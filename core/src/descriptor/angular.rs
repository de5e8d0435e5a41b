//! Angular symmetry functions over unordered neighbour pairs (j, k) of the group's two species:
//!
//! - G4, narrow (n2p2 type 3): 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ
//!   exp(−η[(r_ij−r_s)² + (r_ik−r_s)² + (r_jk−r_s)²]) f_c(r_ij) f_c(r_ik) f_c(r_jk), with r_jk < rc;
//! - G5, wide (n2p2 type 9): the same without any r_jk factor or condition.
//!
//! ζ is real (≥ 1, checked at load) and λ = ±1; a pair with 1 + λ cos θ ≤ 0 contributes 0.
//! The prefactor 2^(1−ζ) is applied once per function, not per pair.

use super::{GradSink, Group, Triplet};
use crate::descriptor::DescriptorKind;
use crate::math::Real;
use crate::neighbors::{Lanes, WorkLanes};

/// (1 + λc)^(ζ−1) for base = 1 + λc > 0, by repeated multiplication when ζ − 1 is a small
/// integer (exact and cheap), else through `powf`.
#[inline(always)]
fn pow_zeta_m1<T: Real>(base: T, zeta: T) -> T {
    let zm1 = zeta - T::ONE;
    let n = zm1.to_f64();
    if zm1 == zm1.floor() && n <= 32.0 {
        base.powu(n as u32)
    } else {
        base.powf(zm1)
    }
}

/// 2^(1−ζ) for each function of the group, written into `pref`.
pub(crate) fn prefactors<T: Real>(g: &Group<'_, T>, pref: &mut [T]) {
    for (p, &z) in pref.iter_mut().zip(g.lane(2)) {
        *p = T::TWO.powf(T::ONE - z);
    }
}

/// Fills the cutoff cache for the slots of the group's species.
fn cache_cutoffs<T: Real>(g: &Group<'_, T>, nb: &Lanes<'_, T>, work: &mut WorkLanes<'_, T>) {
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
    fill(nb.range(g.e1));
    if g.e2 != g.e1 {
        fill(nb.range(g.e2));
    }
}

/// Visits each unordered neighbour pair (j, k) of the group's species with both r < rc (and,
/// for the narrow kind, r_jk < rc), passing the geometry and the cutoff products.
#[inline(always)]
fn for_each_triplet<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    fc: &[T],
    dfc: &[T],
    mut visit: impl FnMut(&Triplet<T>, T, [T; 3], [T; 3]),
) {
    let rc = g.cutoff.rc();
    let narrow = g.kind == DescriptorKind::AngularNarrow;
    let r1 = nb.range(g.e1);
    let r2 = nb.range(g.e2);
    let same = g.e1 == g.e2;
    for j in r1 {
        let Some((dj, rij)) = nb.get(j) else { continue };
        if rij >= rc {
            continue;
        }
        let (fj, dfj) = (
            fc.get(j).copied().unwrap_or(T::ZERO),
            dfc.get(j).copied().unwrap_or(T::ZERO),
        );
        let k0 = if same { j + 1 } else { r2.start };
        for k in k0..r2.end {
            let Some((dk, rik)) = nb.get(k) else { continue };
            if rik >= rc {
                continue;
            }
            let (fk, dfk) = (
                fc.get(k).copied().unwrap_or(T::ZERO),
                dfc.get(k).copied().unwrap_or(T::ZERO),
            );
            let djk = [dk[0] - dj[0], dk[1] - dj[1], dk[2] - dj[2]];
            let (rjk, fjk, dfjk, ujk) = if narrow {
                let rjk = (djk[0] * djk[0] + djk[1] * djk[1] + djk[2] * djk[2]).sqrt();
                if rjk >= rc {
                    continue;
                }
                let (f, df) = g.cutoff.eval(rjk);
                // rjk > 0: two distinct neighbour slots never coincide (overlaps are rejected).
                let inv = T::ONE / rjk;
                (rjk, f, df, [djk[0] * inv, djk[1] * inv, djk[2] * inv])
            } else {
                (T::ZERO, T::ONE, T::ZERO, [T::ZERO; 3])
            };
            let (ij, ik) = (T::ONE / rij, T::ONE / rik);
            let uj = [dj[0] * ij, dj[1] * ij, dj[2] * ij];
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
            visit(&tri, rjk, [fj, fk, fjk], [dfj, dfk, dfjk]);
        }
    }
}

/// Adds the group's values (without the 2^(1−ζ) prefactor) into `acc`.
pub(crate) fn values<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    work: &mut WorkLanes<'_, T>,
    acc: &mut [T],
) {
    cache_cutoffs(g, nb, work);
    let (eta, rs, zeta, lambda) = (g.lane(0), g.lane(1), g.lane(2), g.lane(3));
    for_each_triplet(g, nb, work.fc, work.dfc, |t, rjk, f, _| {
        let fprod = f[0] * f[1] * f[2];
        let lanes = eta.iter().zip(rs).zip(zeta).zip(lambda);
        for (a, (((&e, &r0), &z), &l)) in acc.iter_mut().zip(lanes) {
            let base = T::ONE + l * t.cos;
            if base <= T::ZERO {
                continue;
            }
            let (xj, xk) = (t.rij - r0, t.rik - r0);
            let mut q = xj * xj + xk * xk;
            if g.kind == DescriptorKind::AngularNarrow {
                let xjk = rjk - r0;
                q += xjk * xjk;
            }
            *a += pow_zeta_m1(base, z) * base * (-e * q).exp() * fprod;
        }
    });
}

/// Back-propagates multipliers `m` (one per function, prefactor included) into `sink`.
pub(crate) fn backprop<T: Real, S: GradSink<T>>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    work: &mut WorkLanes<'_, T>,
    m: &[T],
    sink: &mut S,
) {
    cache_cutoffs(g, nb, work);
    let narrow = g.kind == DescriptorKind::AngularNarrow;
    let (eta, rs, zeta, lambda) = (g.lane(0), g.lane(1), g.lane(2), g.lane(3));
    for_each_triplet(g, nb, work.fc, work.dfc, |t, rjk, f, df| {
        sink.triplet_begin(t);
        let lanes = eta.iter().zip(rs).zip(zeta).zip(lambda).zip(m);
        for (s, ((((&e, &r0), &z), &l), &w)) in lanes.enumerate() {
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
            let ex = w * (-e * q).exp();
            let p = pm1 * base * ex; // m · P · exp
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
