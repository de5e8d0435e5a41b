//! The narrow angular kinds (n2p2 types 3 and 13) on hosts (`W` > 1 lanes): the pairs of
//! [`super::for_each_row`] in batches of `W`, their r_jk factors ([`super::Jk`]) stored in the
//! pair cache by the value pass and read back by the force pass, the same sums as the one-lane
//! kernels and the plain reference twins up to rounding (tested against both by the twin tests
//! of [`super`]): both passes expand (1 + λ cos θ)^ζ in powers of cos θ, the value pass for
//! channels with ζ ≤ [`MOMENT_DEGREE`] (moments), the force pass always ([`Poly`]).
//!
//! They are organised for registers. A generic walk that builds a whole batch (u_k, 1/r_k, h_k,
//! h′_k, h_jk, h′_jk for every channel) before its visitor runs holds ~50 vectors with four
//! channels, most of which the compiler spills to the stack and reloads (callgrind on the water
//! model: ~1 500 instructions per batch of 8 pairs in the force pass, a quarter of them stack
//! moves). Here each pass loads what it needs where it needs it, one channel at a time, with
//! the group's functions visited channel by channel so that a channel's weights stay in
//! registers.

use super::poly::{binomial_terms, Poly};
use super::{
    for_each_row, live, load_raw, powu, squared_norms, Jk, LaneSums, PairCache, Plan, Record, Row,
    SlotView, MAX_CHANNELS, MAX_FUNCTIONS,
};
use crate::descriptor::Group;
use crate::math::Real;
use crate::neighbors::{Lanes, WorkLanes};

/// The group's functions in channel order (ascending s within a channel, so every per-channel
/// sum adds its terms in the order of the generic kernels).
struct Functions<T> {
    /// Function index s of each entry.
    s: [u8; MAX_FUNCTIONS],
    zeta: [u32; MAX_FUNCTIONS],
    lambda: [T; MAX_FUNCTIONS],
    /// End of channel c's entries.
    end: [usize; MAX_CHANNELS],
    /// Largest ζ of channel c's functions.
    deg: [u32; MAX_CHANNELS],
    /// Whether channel c's values come from its moments ([`MOMENT_DEGREE`]): ζ small enough,
    /// and more than one function or ζ = 1 (one function with a higher power costs less on
    /// its own: 2ζ + 1 operations per pair for its moments against 4 + about log₂ ζ). Not for
    /// a channel without functions (padding up to `NC`).
    moments: [bool; MAX_CHANNELS],
}

impl<T: Real> Functions<T> {
    fn new(plan: &Plan<T>, channels: usize) -> Self {
        let mut f = Functions {
            s: [0; MAX_FUNCTIONS],
            zeta: [1; MAX_FUNCTIONS],
            lambda: [T::ONE; MAX_FUNCTIONS],
            end: [0; MAX_CHANNELS],
            deg: [0; MAX_CHANNELS],
            moments: [false; MAX_CHANNELS],
        };
        let n = plan.n.min(MAX_FUNCTIONS);
        let mut i = 0;
        for (c, end) in f.end.iter_mut().enumerate().take(channels) {
            for s in 0..n {
                let (cs, zeta, lambda) = plan.function(s);
                if cs != c {
                    continue;
                }
                if let (Some(x), Some(z), Some(l)) =
                    (f.s.get_mut(i), f.zeta.get_mut(i), f.lambda.get_mut(i))
                {
                    // s < MAX_FUNCTIONS = 32 fits a byte.
                    *x = s as u8;
                    (*z, *l) = (zeta, lambda);
                    i += 1;
                    if let Some(d) = f.deg.get_mut(c) {
                        *d = (*d).max(zeta);
                    }
                }
            }
            *end = i;
        }
        for c in 0..channels.min(MAX_CHANNELS) {
            let deg = f.deg.get(c).copied().unwrap_or(u32::MAX) as usize;
            let n = f.of(c).len();
            if let Some(m) = f.moments.get_mut(c) {
                *m = deg <= MOMENT_DEGREE && n > 0 && (deg <= 1 || n > 1);
            }
        }
        f
    }

    /// Whether channel c's values come from its moments (see `moments`).
    #[inline(always)]
    fn by_moments(&self, c: usize) -> bool {
        self.moments.get(c).copied().unwrap_or(false)
    }

    /// Entries of channel c.
    #[inline(always)]
    fn of(&self, c: usize) -> core::ops::Range<usize> {
        let start = if c == 0 {
            0
        } else {
            self.end.get(c - 1).copied().unwrap_or(0)
        };
        start..self.end.get(c).copied().unwrap_or(start).max(start)
    }
}

/// What a pass does with the batches of the walk.
trait Visit<T, const W: usize, const NC: usize> {
    /// The pairs (j, k..k + W), lanes at or beyond `end` excluded; `djk` the j→k vectors and `r2`
    /// their squared lengths (lanes at or beyond `end` set beyond the cutoff).
    ///
    /// The neighbour-k data of a batch is loaded without a mask: lanes at or beyond `end` read
    /// the next block's (or unused, zeroed or earlier-written, always finite) slots, and every
    /// term they enter is multiplied by their h_jk or h′_jk, which are exactly 0 there; their
    /// gradients on k are not stored.
    fn batch(&mut self, row: &Row<T, NC>, k: usize, end: usize, djk: &[[T; W]; 3], r2: [T; W]);
    /// Before the batches of row j.
    fn row_start(&mut self, _row: &Row<T, NC>) {}
    /// After the batches of row j.
    fn row_end(&mut self, _row: &Row<T, NC>) {}
}

/// The pair walk of the narrow kinds: the rows of [`super::for_each_row`], batches of `W` k,
/// batches whose pairs all have r_jk ≥ r_c skipped.
#[inline(always)]
fn walk<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    view: &SlotView<'_, T, NC>,
    v: &mut impl Visit<T, W, NC>,
) {
    let rc = g.cutoff.rc();
    // r_jk² at or beyond this adds exactly nothing (h_jk = h′_jk = 0): the margin covers lanes
    // whose r_jk = r_jk²·(1/r_jk) rounds below r_c in `Jk::new`.
    let skip_r2 = rc * rc * T::from_f64(1.0 + 1e-5);
    let d = [nb.dx, nb.dy, nb.dz];
    for_each_row(g, nb, zs, view, |row, dj, ks| {
        v.row_start(row);
        let end = ks.end;
        for k in ks.step_by(W) {
            let dk = rows!(3, c => load_raw::<T, W>(d[c], k));
            let djk = rows!(3, c => lanes!(l => dk[c][l] - dj[c]));
            let r2 = squared_norms(&djk);
            // A batch whose pairs all have r_jk ≥ r_c adds exactly zero: both passes skip it
            // on the same bits, and it takes no cache slot. With neighbours in cell-list order,
            // ~15 % of the batches on n2p2's water box.
            // (Lanes at or beyond `end`, only in a row's last batch, are set beyond the cutoff.)
            let masked: [T; W] = if k + W <= end {
                r2
            } else {
                lanes!(l => if k + l < end { r2[l] } else { skip_r2 })
            };
            // `|` rather than `||` or a minimum: one vector compare and mask test.
            let near = masked.iter().fold(false, |any, &x| any | (x < skip_r2));
            if near {
                v.batch(row, k, end, &djk, masked);
            }
        }
        v.row_end(row);
    });
}

/// Lanes `i·W..(i + 1)·W` of a pair-cache record.
#[inline(always)]
fn part<T: Real, const W: usize>(rec: &[T], i: usize) -> [T; W] {
    rec.get(i * W..(i + 1) * W)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([T::ZERO; W])
}

/// Stores lane block `i` of a flat cache record (a record too short for it is left alone).
#[inline(always)]
fn put<T: Real, const W: usize>(rec: &mut [T], i: usize, v: [T; W]) {
    if let Some(s) = rec.get_mut(i * W..(i + 1) * W) {
        s.copy_from_slice(&v);
    }
}

/// cos θ_jik and the u_k of a batch.
#[inline(always)]
fn cos<T: Real, const W: usize, const NC: usize>(
    view: &SlotView<'_, T, NC>,
    row: &Row<T, NC>,
    k: usize,
) -> ([T; W], [[T; W]; 3]) {
    let uk = rows!(3, c => load_raw::<T, W>(view.u[c], k));
    let cos = lanes!(l => row.u[0] * uk[0][l] + row.u[1] * uk[1][l] + row.u[2] * uk[2][l]);
    (cos, uk)
}

/// Highest ζ of a channel whose values the value pass takes from moments: per channel c the
/// sums M_c,n = Σ h_j h_k h_jk cosⁿθ (n ≤ the channel's largest ζ), and at the end each
/// function's value Σ_n C(ζ, n) λⁿ M_c,n. Per pair a multiplication and a sum per power
/// instead of a power and a sum per function. The binomial terms cancel by at most
/// C(4, 2) = 6 (λ = −1), a few ulp; larger ζ (C(16, 8) = 12 870) take the direct powers.
const MOMENT_DEGREE: usize = 4;

/// Per-lane compensated sums of M_c,n (see [`MOMENT_DEGREE`]) for `NC` channels.
struct Moments<T, const W: usize, const NC: usize> {
    sum: [[[T; W]; MOMENT_DEGREE + 1]; NC],
    comp: [[[T; W]; MOMENT_DEGREE + 1]; NC],
}

impl<T: Real, const W: usize, const NC: usize> Moments<T, W, NC> {
    fn new() -> Self {
        Moments {
            sum: [[[T::ZERO; W]; MOMENT_DEGREE + 1]; NC],
            comp: [[[T::ZERO; W]; MOMENT_DEGREE + 1]; NC],
        }
    }

    /// Adds hh·cosⁿ for n = 0..=deg to channel c's sums.
    #[inline(always)]
    fn add(&mut self, c: usize, deg: u32, hh: [T; W], cos: &[T; W]) {
        let (Some(sum), Some(comp)) = (self.sum.get_mut(c), self.comp.get_mut(c)) else {
            return;
        };
        let mut t = hh;
        for (n, (s, k)) in sum.iter_mut().zip(comp.iter_mut()).enumerate() {
            if n > deg as usize {
                break;
            }
            if n > 0 {
                t = lanes!(l => t[l] * cos[l]);
            }
            for ((s, k), v) in s.iter_mut().zip(k.iter_mut()).zip(t) {
                super::add(s, k, v);
            }
        }
    }

    /// Adds to `acc` each moment channel's function values Σ_n C(ζ, n) λⁿ M_c,n.
    fn reduce(&self, fns: &Functions<T>, acc: &mut [T]) {
        for (c, (sum, comp)) in self.sum.iter().zip(&self.comp).enumerate() {
            if !fns.by_moments(c) {
                continue;
            }
            let mut m = [T::ZERO; MOMENT_DEGREE + 1];
            for ((m, s), k) in m.iter_mut().zip(sum).zip(comp) {
                for (&x, &y) in s.iter().zip(k) {
                    *m += x - y;
                }
            }
            for i in fns.of(c) {
                let s = usize::from(fns.s.get(i).copied().unwrap_or(0));
                let zeta = fns.zeta.get(i).copied().unwrap_or(1) as usize;
                let lambda = fns.lambda.get(i).copied().unwrap_or(T::ONE);
                let mut v = T::ZERO;
                for (&mn, b) in m.iter().zip(binomial_terms(zeta, lambda)) {
                    v += b * mn;
                }
                if let Some(a) = acc.get_mut(s) {
                    *a += v;
                }
            }
        }
    }
}

/// The value pass.
struct Values<'a, 'c, 's, T, const W: usize, const NC: usize> {
    g: &'a Group<'a, T>,
    plan: &'a Plan<T>,
    fns: Functions<T>,
    slots: SlotView<'s, T, NC>,
    cache: &'a mut PairCache<'c, T>,
    sums: LaneSums<T, W>,
    moments: Moments<T, W, NC>,
}

impl<T: Real, const W: usize, const NC: usize> Visit<T, W, NC> for Values<'_, '_, '_, T, W, NC> {
    #[inline(always)]
    fn batch(&mut self, row: &Row<T, NC>, k: usize, _end: usize, _djk: &[[T; W]; 3], r2: [T; W]) {
        let (g, plan) = (self.g, self.plan);
        let rec = match self.cache.next(W * (1 + 2 * NC)) {
            Record::Fill(s) => s,
            _ => &mut [],
        };
        let jk = Jk::<T, W>::new(g, plan, r2);
        put(rec, 0, jk.ir);
        let (cos, _) = cos::<T, W, NC>(&self.slots, row, k);
        for c in 0..NC {
            let (hjk, dhjk) = jk.channel(plan, c);
            put(rec, 1 + 2 * c, hjk);
            put(rec, 2 + 2 * c, dhjk);
            let hk = load_raw::<T, W>(self.slots.h[c], k);
            let hh = lanes!(l => row.h[c] * hk[l] * hjk[l]);
            if self.fns.by_moments(c) {
                let deg = self.fns.deg.get(c).copied().unwrap_or(0);
                self.moments.add(c, deg, hh, &cos);
                continue;
            }
            for i in self.fns.of(c) {
                let s = usize::from(self.fns.s.get(i).copied().unwrap_or(0));
                let zeta = self.fns.zeta.get(i).copied().unwrap_or(1);
                let lambda = self.fns.lambda.get(i).copied().unwrap_or(T::ONE);
                let base = lanes!(l => (T::ONE + lambda * cos[l]).max(T::ZERO));
                let p = powu(base, zeta);
                self.sums.add(s, lanes!(l => p[l] * hh[l]));
            }
        }
    }
}

/// Adds the values of narrow group `g` into `acc` (see [`super::angular_values`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn values<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    acc: &mut [T],
) {
    let view = SlotView::<T, NC>::new(slots, nb.r.len(), plan.channels);
    let mut v = Values::<T, W, NC> {
        g,
        plan,
        fns: Functions::new(plan, live::<T, NC>(plan)),
        slots: view,
        cache,
        sums: LaneSums::new(),
        moments: Moments::new(),
    };
    walk::<T, W, NC>(g, nb, zs, &view, &mut v);
    v.sums.reduce(acc);
    v.moments.reduce(&v.fns, acc);
}

/// The force pass.
struct Forces<'a, 'c, 's, 'w, T, const W: usize, const NC: usize> {
    g: &'a Group<'a, T>,
    plan: &'a Plan<T>,
    poly: Poly<T>,
    slots: SlotView<'s, T, NC>,
    cache: &'a mut PairCache<'c, T>,
    work: &'a mut WorkLanes<'w, T>,
    /// The gradient on neighbour j of the current row, kept here between its batches (nothing
    /// else writes j's lanes meanwhile: k ≠ j), so that the batches' sums do not wait for each
    /// other through memory. The same additions in the same order as straight into the lanes.
    gj_row: [T; 3],
}

impl<T: Real, const W: usize, const NC: usize> Visit<T, W, NC>
    for Forces<'_, '_, '_, '_, T, W, NC>
{
    #[inline(always)]
    fn batch(&mut self, row: &Row<T, NC>, k: usize, end: usize, djk: &[[T; W]; 3], r2: [T; W]) {
        let (g, plan) = (self.g, self.plan);
        let stored = match self.cache.next(W * (1 + 2 * NC)) {
            Record::Stored(s) => Some(s),
            _ => None,
        };
        // Pairs beyond the cache: their factors recomputed as the value pass computed them.
        let fresh = if stored.is_none() {
            Some(Jk::<T, W>::new(g, plan, r2))
        } else {
            None
        };
        let ir = match (stored, &fresh) {
            (Some(rec), _) => part(rec, 0),
            (None, Some(jk)) => jk.ir,
            (None, None) => [T::ZERO; W],
        };
        let (cos, uk) = cos::<T, W, NC>(&self.slots, row, k);
        // Per channel: Q_c = Σ m_s P_s and Q′_c = Σ m_s P′_s over its functions, and the four
        // sums over channels of the gradient.
        let mut a = [[T::ZERO; W]; 4];
        for c in 0..NC {
            let (hjk, dhjk) = match (stored, &fresh) {
                (Some(rec), _) => (part(rec, 1 + 2 * c), part(rec, 2 + 2 * c)),
                (None, Some(jk)) => jk.channel(plan, c),
                (None, None) => ([T::ZERO; W], [T::ZERO; W]),
            };
            let (q, qp) = self.poly.eval(c, &cos);
            let (hj, dhj) = (row.h[c], row.dh[c]);
            let hk = load_raw::<T, W>(self.slots.h[c], k);
            let dhk = load_raw::<T, W>(self.slots.dh[c], k);
            a[0] = lanes!(l => a[0][l] + q[l] * dhj * hk[l] * hjk[l]);
            a[1] = lanes!(l => a[1][l] + q[l] * hj * dhk[l] * hjk[l]);
            a[2] = lanes!(l => a[2][l] + q[l] * hj * hk[l] * dhjk[l]);
            a[3] = lanes!(l => a[3][l] + qp[l] * hj * hk[l] * hjk[l]);
        }
        let [a_ij, a_ik, a_jk, a_c] = a;
        let inv_k = load_raw::<T, W>(self.slots.inv, k);
        let cj: [T; W] = lanes!(l => a_c[l] * row.inv_r);
        let ck: [T; W] = lanes!(l => a_c[l] * inv_k[l]);
        let ujk = rows!(3, c => lanes!(l => djk[c][l] * ir[l]));
        // ∂cos/∂d_ij = (u_k − cos u_j)/r_ij; ∂r_jk/∂d_ij = −u_jk; ∂r_jk/∂d_ik = u_jk.
        let gj: [[T; W]; 3] = rows!(3, x => lanes!(l => a_ij[l] * row.u[x] - a_jk[l] * ujk[x][l]
            + cj[l] * (uk[x][l] - cos[l] * row.u[x])));
        let gk: [[T; W]; 3] = rows!(3, x => lanes!(l => a_ik[l] * uk[x][l] + a_jk[l] * ujk[x][l]
            + ck[l] * (row.u[x] - cos[l] * uk[x][l])));
        let work = &mut *self.work;
        for ((lane, acc), (gjx, gkx)) in [&mut *work.gx, &mut *work.gy, &mut *work.gz]
            .into_iter()
            .zip(self.gj_row.iter_mut())
            .zip(gj.iter().zip(gk))
        {
            let mut t = T::ZERO;
            for &v in gjx {
                t += v;
            }
            *acc += t;
            super::add_lanes(lane, k, end, gkx);
        }
    }

    #[inline(always)]
    fn row_start(&mut self, row: &Row<T, NC>) {
        let w = &*self.work;
        let at = |s: &[T]| s.get(row.j).copied().unwrap_or(T::ZERO);
        self.gj_row = [at(w.gx), at(w.gy), at(w.gz)];
    }

    #[inline(always)]
    fn row_end(&mut self, row: &Row<T, NC>) {
        let w = &mut *self.work;
        for (lane, &v) in [&mut *w.gx, &mut *w.gy, &mut *w.gz]
            .into_iter()
            .zip(&self.gj_row)
        {
            if let Some(x) = lane.get_mut(row.j) {
                *x = v;
            }
        }
    }
}

/// Adds the gradients of narrow group `g`, weighted by `m` (dE/dG per function), into `work`
/// (see [`super::angular_forces`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn forces<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    m: &[T],
    work: &mut WorkLanes<'_, T>,
) {
    let view = SlotView::<T, NC>::new(slots, nb.r.len(), plan.channels);
    let mut v = Forces::<T, W, NC> {
        g,
        plan,
        poly: Poly::new(plan, live::<T, NC>(plan), m),
        slots: view,
        cache,
        work,
        gj_row: [T::ZERO; 3],
    };
    walk::<T, W, NC>(g, nb, zs, &view, &mut v);
}
