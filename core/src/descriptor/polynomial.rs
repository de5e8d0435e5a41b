//! Polynomial (compact) symmetry functions, n2p2 types 20–25 (Bircher et al., Mach. Learn.: Sci.
//! Technol. 2, 035026 (2021)). With C the group's compact function on the radial window
//! (r_l, r_c) and A the symmetric compact function on the angular window (θ_left, θ_right):
//!
//! - type 20, radial: Σ_j C(r_ij), j of species e1;
//! - type 21, narrow angular: Σ_{j<k} C(r_ij) C(r_ik) C(r_jk) A(θ_ijk), pairs of species {e1, e2};
//! - type 22, wide angular: Σ_{j<k} C(r_ij) C(r_ik) A(θ_ijk);
//! - types 23, 24, 25: 20, 21, 22 over all neighbours (pairs), × Z_j (Z_j Z_k).
//!
//! θ_ijk = acos(cos θ_ijk) in radians. C vanishes outside (r_l, r_c), which gives n2p2's
//! conditions r_l < r_ij, r_ik < r_c and (type 21) max(r_l, 0) < r_jk < r_c; A vanishes outside
//! (θ_left, θ_right). The polynomial kinds ignore the cutoff function (`cutoff_type`): the
//! compact functions are their own cutoff. The asymmetric subtypes (`p2a`, …) change the radial
//! factors only; A always uses the symmetric core, as n2p2 does (see [`super::compact`]).
//!
//! Every function carries its own r_l and angular window (parameter lanes r_l, θ_left, θ_right),
//! so C and A are evaluated per function inside the pair loop; the geometry (distances, cos θ,
//! acos) is computed once per pair for the whole group.

use super::angular::{add, for_each_triplet, Sums};
use super::compact::Window;
use super::{radial_blocks, GradSink, Group};
use crate::math::Real;
use crate::neighbors::Lanes;

/// Adds the values of a radial polynomial group (types 20, 23) into `acc`; `comp` is scratch
/// of the group's size (see [`Sums`]).
pub(crate) fn radial_values<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    acc: &mut [T],
    comp: &mut [T],
) {
    let Some(c) = g.compact else { return };
    let core = c.core.cutoff_kind();
    let rc = g.cutoff.rc();
    let rl = g.lane(0);
    let mut sums = Sums::new(acc, comp);
    for (range, w) in radial_blocks(g, nb, zs) {
        for &r in nb.r.get(range).unwrap_or(&[]) {
            if r >= rc {
                continue;
            }
            for ((a, cp), &l) in sums.lanes().zip(rl) {
                add(a, cp, w * Window::new(l, rc).eval(core, c.asymmetric, r).0);
            }
        }
    }
}

/// Back-propagates multipliers `m` through a radial polynomial group into `sink`.
pub(crate) fn radial_backprop<T: Real, S: GradSink<T>>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    m: &[T],
    sink: &mut S,
) {
    let Some(c) = g.compact else { return };
    let core = c.core.cutoff_kind();
    let rc = g.cutoff.rc();
    let rl = g.lane(0);
    for (range, w) in radial_blocks(g, nb, zs) {
        for j in range {
            let Some((d, r)) = nb.get(j) else { continue };
            if r >= rc {
                continue;
            }
            let inv = T::ONE / r;
            sink.pair_begin(j, [d[0] * inv, d[1] * inv, d[2] * inv]);
            for (s, (&l, &mult)) in rl.iter().zip(m).enumerate() {
                let dc = Window::new(l, rc).eval(core, c.asymmetric, r).1;
                sink.pair_term(s, mult * w * dc);
            }
            sink.pair_end();
        }
    }
}

/// θ = acos(cos θ) and 1/sin θ for a pair, or `None` for |cos θ| ≥ 1.
///
/// Guard, as in n2p2: collinear pairs (|cos θ| ≥ 1, also through rounding) are skipped, because
/// dθ/dcos θ = −1/sin θ diverges there. A is zero at θ = 0 and π for every window inside
/// [0, π], so this loses nothing; for windows centred at 0 or π it follows n2p2 exactly.
#[inline(always)]
fn angle<T: Real>(cos: T) -> Option<(T, T)> {
    if cos.abs() >= T::ONE {
        return None;
    }
    // 1 − cos² as (1 − c)(1 + c): accurate near |c| = 1.
    let sin = ((T::ONE - cos) * (T::ONE + cos)).sqrt();
    Some((cos.acos(), T::ONE / sin))
}

/// Adds the values of an angular polynomial group (types 21, 22, 24, 25) into `acc`; `comp` is
/// scratch of the group's size (see [`Sums`]).
pub(crate) fn angular_values<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    acc: &mut [T],
    comp: &mut [T],
) {
    let Some(c) = g.compact else { return };
    let (core, asym) = (c.core.cutoff_kind(), c.asymmetric);
    let narrow = g.kind.is_narrow();
    let rc = g.cutoff.rc();
    let (rl, left, right) = (g.lane(0), g.lane(1), g.lane(2));
    let mut sums = Sums::new(acc, comp);
    for_each_triplet(g, nb, zs, |t, rjk, w| {
        let Some((theta, _)) = angle(t.cos) else {
            return;
        };
        let lanes = rl.iter().zip(left).zip(right);
        for ((a, cp), ((&l, &al), &ar)) in sums.lanes().zip(lanes) {
            let radial = Window::new(l, rc);
            let cj = radial.eval(core, asym, t.rij).0;
            let ck = radial.eval(core, asym, t.rik).0;
            let cjk = if narrow {
                radial.eval(core, asym, rjk).0
            } else {
                T::ONE
            };
            let ang = Window::new(al, ar).eval(core, false, theta).0;
            add(a, cp, w * cj * ck * cjk * ang);
        }
    });
}

/// Back-propagates multipliers `m` through an angular polynomial group into `sink`.
pub(crate) fn angular_backprop<T: Real, S: GradSink<T>>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    m: &[T],
    sink: &mut S,
) {
    let Some(c) = g.compact else { return };
    let (core, asym) = (c.core.cutoff_kind(), c.asymmetric);
    let narrow = g.kind.is_narrow();
    let rc = g.cutoff.rc();
    let (rl, left, right) = (g.lane(0), g.lane(1), g.lane(2));
    for_each_triplet(g, nb, zs, |t, rjk, w| {
        let Some((theta, inv_sin)) = angle(t.cos) else {
            return;
        };
        sink.triplet_begin(t);
        let lanes = rl.iter().zip(left).zip(right).zip(m);
        for (s, (((&l, &al), &ar), &mult)) in lanes.enumerate() {
            let radial = Window::new(l, rc);
            let (cj, dcj) = radial.eval(core, asym, t.rij);
            let (ck, dck) = radial.eval(core, asym, t.rik);
            let (cjk, dcjk) = if narrow {
                radial.eval(core, asym, rjk)
            } else {
                (T::ONE, T::ZERO)
            };
            let (ang, dang) = Window::new(al, ar).eval(core, false, theta);
            let p = mult * w;
            let pa = p * ang;
            // dA/dcos θ = A′(θ) · dθ/dcos θ = −A′(θ)/sin θ.
            sink.triplet_term(
                s,
                [
                    pa * dcj * ck * cjk,
                    pa * cj * dck * cjk,
                    pa * cj * ck * dcjk,
                    -p * cj * ck * cjk * dang * inv_sin,
                ],
            );
        }
        sink.triplet_end();
    });
}
