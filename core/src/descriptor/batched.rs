//! Batched kernels for the Gaussian kinds (n2p2 types 2, 3, 9, 12 and 13): neighbours, and
//! neighbour pairs, in batches of `W` contiguous lanes (`[T; W]` arrays that LLVM maps onto SIMD
//! registers), with no branches inside a batch. [`super::radial`] and [`super::angular`] are their
//! plain reference twins: they handle what these do not (non-integer ζ, very large groups) and the
//! tests check both against each other for every batch width.
//!
//! The angular sums factorise. With h_c(r) = w·f_c(r)·exp(−η_c (r − r_s,c)²) for each distinct
//! (η, r_s) "channel" c of a group (w = 1, or Z for the element-weighted kind),
//!
//! ```text
//! G4_s = 2^(1−ζ) Σ_{j<k} (1 + λ cos θ)^ζ · h_c(r_ij) · h_c(r_ik) · h_c,jk(r_jk)
//! ```
//!
//! where h_c,jk = f_c(r_jk)·exp(−η_c (r_jk − r_s,c)²) (1 for the wide kind). h_c and its
//! derivative are computed once per neighbour; a pair only needs its r_jk factor (one
//! exponential per channel, and none for the wide kind) and one product per function. The force
//! pass contracts the functions first: per channel, Q_c = Σ_{s∈c} m_s P_s(cos θ) and
//! Q′_c = Σ_{s∈c} m_s P′_s(cos θ), so the gradient of a pair costs a handful of products per channel
//! whatever the number of functions.
//!
//! Summation order is fixed by `W` alone (lane l sums the pairs k ≡ l mod `W` of each row, lanes
//! are added in order at the end), so results do not depend on the instruction set the code is
//! compiled for.
// Lane arrays are `[T; W]` indexed by `l < W` in loops over the array itself, where the bound is
// static; every index that depends on data goes through `get`. The no-panic link check
// (core/no-panic-check) proves that no bounds-check panic survives.
#![allow(clippy::indexing_slicing)]

use super::angular::add;
use super::{DescriptorKind, Group};
use crate::cutoff::Cutoff;
use crate::math::Real;
use crate::neighbors::{Lanes, WorkLanes, MAX_SPECIES};

/// Lanes per batch: 8 on hosts with SIMD units (x86-64, AArch64), 1 on the scalar cores of
/// microcontrollers, where padding lanes would be wasted work.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub const LANES: usize = 8;
/// Lanes per batch: 8 on hosts with SIMD units (x86-64, AArch64), 1 on the scalar cores of
/// microcontrollers, where padding lanes would be wasted work.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const LANES: usize = 1;

/// Most functions in a group the batched kernels take (larger groups use the reference kernels).
pub const MAX_FUNCTIONS: usize = 32;
/// Most distinct (η, r_s) channels in an angular group the batched kernels take.
pub const MAX_CHANNELS: usize = 8;
/// Largest (integer) ζ the batched kernels take.
pub const MAX_ZETA: u32 = 64;

/// Reals per neighbour slot of the batched kernels' cache: the unit vector and 1/r, and (h_c, h_c′)
/// for each of `max_channels` channels, for [`CHANNEL_SETS`] channel sets.
pub const fn slot_reals(max_channels: usize) -> usize {
    4 + 2 * CHANNEL_SETS * max_channels
}

/// Channel sets the slot cache keeps (see [`ChannelMemo`]): on hosts the set in use and the one
/// before it; on 1-lane targets only the set in use (their models, small and with wide groups,
/// gain nothing from a spare: the M4F demo ran 4 % more instructions with one).
pub const CHANNEL_SETS: usize = if LANES > 1 { 2 } else { 1 };

/// The channel count the kernels are instantiated for, for a group of `channels` channels.
const fn instantiated(channels: usize) -> usize {
    if channels <= 1 {
        1
    } else if LANES == 1 || channels > 4 {
        MAX_CHANNELS
    } else if channels == 0 {
        1
    } else {
        channels
    }
}

/// Reals of a pair cache (the per-atom store of r_jk factors) that holds every neighbour pair
/// of `neighbors` slots (with the padding of partly filled batches, for up to two rows per
/// slot) for a model with `max_channels` channels: 1 + 2·NC reals per pair; on 1-lane targets
/// also the radial records, at most `max_features` reals per slot (wide groups on the moment
/// path take 10 reals per channel instead of their pairs). Pairs beyond the cache are
/// recomputed in the force pass, so a smaller cache is correct, only slower.
pub const fn pair_cache_reals(neighbors: usize, max_channels: usize, max_features: usize) -> usize {
    // 1-lane targets: radial records, and a pair count per group.
    let radial = if LANES == 1 {
        (neighbors + 1) * max_features
    } else {
        0
    };
    if max_channels == 0 {
        return radial;
    }
    let pairs = neighbors * neighbors.saturating_sub(1) / 2 + 2 * neighbors * (LANES - 1);
    let nc = if LANES == 1 {
        max_channels
    } else {
        instantiated(max_channels)
    };
    // One-channel groups on 1-lane targets store a `RECORD` per pair instead.
    let per_pair = if LANES == 1 && 1 + 2 * nc < RECORD {
        RECORD
    } else {
        1 + 2 * nc
    };
    pairs * per_pair + radial
}

/// Channels a kernel instantiated for `NC` works on: `NC` on hosts (a constant, so the channel
/// loops unroll), the plan's own count on microcontrollers, whose single `MAX_CHANNELS`
/// instantiation would otherwise do the work of every padding channel (an r_jk exponential per
/// pair each) and store it in the pair cache.
#[inline(always)]
fn live<T, const NC: usize>(plan: &Plan<T>) -> usize {
    if LANES == 1 {
        plan.channels.min(NC)
    } else {
        NC
    }
}

/// `[T; W]` from a per-lane expression (`T` and `W` are the parameters of the calling kernel).
/// A plain loop rather than `core::array::from_fn`, whose closure LLVM does not always inline
/// (and then cannot vectorise).
macro_rules! lanes {
    ($l:ident => $e:expr) => {{
        let mut out = [T::ZERO; W];
        for ($l, o) in out.iter_mut().enumerate() {
            *o = $e;
        }
        out
    }};
}

/// `[[T; W]; N]` from a per-row lane array expression.
macro_rules! rows {
    ($n:expr, $c:ident => $e:expr) => {{
        let mut out = [[T::ZERO; W]; $n];
        for ($c, o) in out.iter_mut().enumerate() {
            *o = $e;
        }
        out
    }};
}

mod narrow;
mod poly;

/// What the batched kernels need to know about a group, decoded once per group and call.
#[derive(Clone, Copy)]
pub(crate) struct Plan<T> {
    n: usize,
    channels: usize,
    /// Channel of each function (angular kinds; < `MAX_CHANNELS`).
    chan: [u8; MAX_FUNCTIONS],
    eta: [T; MAX_CHANNELS],
    rs: [T; MAX_CHANNELS],
    /// ζ of each function (≤ `MAX_ZETA`).
    zeta: [u8; MAX_FUNCTIONS],
    /// Bit s set: λ_s = −1 (else +1). Bytes and bits keep the plan, built per group and pass,
    /// small: on a microcontroller building and moving it was a tenth of an evaluation.
    negative: u32,
    /// When every channel has the same r_s and η_c = n_c·η_0 with η_0 the smallest η and small
    /// integers n_c (as in most published parameter sets: 0.01, 0.03, 0.07, …), the r_jk
    /// exponentials of a pair are powers of one: exp(−η_c x²) = exp(−η_0 x²)^n_c. Then this
    /// holds n_c per channel (0 otherwise).
    power: [u8; MAX_CHANNELS],
    eta0: T,
    /// A wide group whose functions all have ζ = 1: summed through per-species moments
    /// ([`wide_values`]) in O(neighbours) instead of over pairs.
    moments: bool,
}

/// Largest n_c of the shared-exponential path: b^n carries up to about n ulp of relative error
/// (≤ 64 ulp ≈ 1.4e−14 in f64; 32 ulp ≈ 2e−6 in f32).
const fn max_power<T: Real>() -> u32 {
    if T::BYTES < 8 {
        32
    } else {
        64
    }
}

impl<T: Real> Plan<T> {
    /// An empty plan, to be filled by [`Plan::build`].
    pub fn empty() -> Self {
        Plan {
            n: 0,
            channels: 0,
            chan: [0; MAX_FUNCTIONS],
            eta: [T::ZERO; MAX_CHANNELS],
            rs: [T::ZERO; MAX_CHANNELS],
            zeta: [1; MAX_FUNCTIONS],
            negative: 0,
            power: [0; MAX_CHANNELS],
            eta0: T::ZERO,
            moments: false,
        }
    }

    /// The plan of `g`, or `None` when the batched kernels do not take it.
    pub fn new(g: &Group<'_, T>) -> Option<Self> {
        let mut p = Self::empty();
        p.build(g).then_some(p)
    }

    /// Whether the batched kernels take radial group `g` (they need no plan for it).
    pub fn takes_radial(g: &Group<'_, T>) -> bool {
        g.n <= MAX_FUNCTIONS
    }

    /// Overwrites `self` with the plan of `g` in place (a group's plan is built per group and
    /// pass: on a microcontroller, building a fresh one and moving it through an `Option` cost
    /// a tenth of an evaluation). False when the batched kernels do not take `g`; the plan is
    /// then unusable.
    pub fn build(&mut self, g: &Group<'_, T>) -> bool {
        use DescriptorKind::*;
        if g.n > MAX_FUNCTIONS {
            return false;
        }
        // η and r_s beyond `channels` keep stale values: nothing reads them.
        let p = self;
        p.n = g.n;
        p.channels = 0;
        p.negative = 0;
        p.power = [0; MAX_CHANNELS];
        p.eta0 = T::ZERO;
        p.moments = false;
        match g.kind {
            Radial | RadialWeighted => {
                p.chan = [0; MAX_FUNCTIONS];
                p.zeta = [1; MAX_FUNCTIONS];
                true
            }
            AngularNarrow | AngularWide | AngularNarrowWeighted => {
                let (eta, rs, zeta, lambda) = (g.lane(0), g.lane(1), g.lane(2), g.lane(3));
                let params = eta.iter().zip(rs).zip(zeta).zip(lambda);
                let slots = p.chan.iter_mut().zip(p.zeta.iter_mut());
                for (s, ((((&e, &r0), &z), &l), (ch, zs))) in params.zip(slots).enumerate() {
                    // Compared in T: on an f32-only FPU f64 comparisons are library calls.
                    // ζ is an integer in 1..=MAX_ZETA: it converts to u32 and back unchanged.
                    let in_range = z >= T::ONE && z <= T::from_usize(MAX_ZETA as usize);
                    let zi = if in_range { z.to_u32() } else { 0 };
                    if !in_range || T::from_usize(zi as usize) != z || (l != T::ONE && l != -T::ONE)
                    {
                        return false;
                    }
                    let mut known = p.eta.iter().zip(&p.rs).take(p.channels);
                    *ch = match known.position(|(&a, &b)| a == e && b == r0) {
                        Some(c) => c as u8,
                        None => {
                            let c = p.channels;
                            match (p.eta.get_mut(c), p.rs.get_mut(c)) {
                                (Some(a), Some(b)) => (*a, *b) = (e, r0),
                                _ => return false,
                            }
                            p.channels += 1;
                            c as u8
                        }
                    };
                    *zs = zi as u8;
                    p.negative |= u32::from(l < T::ZERO) << s;
                }
                p.moments = g.kind == AngularWide && p.zeta.iter().take(p.n).all(|&z| z == 1);
                // One instantiation only on microcontrollers without the feature (flash); the
                // moment path takes any number of channels.
                if LANES == 1 && !cfg!(feature = "multi-channel") && p.channels > 1 && !p.moments {
                    return false;
                }
                if !p.moments {
                    p.find_powers();
                }
                true
            }
            _ => false,
        }
    }

    /// Sets `power` and `eta0` when the channels' exponentials are integer powers of one (see
    /// `power`): η_c = n_c·η_0 to within 4 ulp of η_c, n_c ≤ [`max_power`].
    fn find_powers(&mut self) {
        let eta = self.eta.get(..self.channels).unwrap_or(&[]);
        let rs = self.rs.get(..self.channels).unwrap_or(&[]);
        let eta0 = eta
            .iter()
            .copied()
            .fold(T::ZERO, |a, e| if a == T::ZERO || e < a { e } else { a });
        let same_rs = rs.iter().all(|&r| Some(&r) == rs.first());
        if !same_rs || eta0 <= T::ZERO || self.channels < 2 {
            return;
        }
        let mut power = [0u8; MAX_CHANNELS];
        for (p, &e) in power.iter_mut().zip(eta) {
            let ratio = (e / eta0).to_f64();
            let n = libm::round(ratio);
            let ulp = e.to_f64().abs() * if T::BYTES < 8 { 1.2e-7 } else { 2.3e-16 };
            if n < 1.0
                || n > f64::from(max_power::<T>())
                || (e.to_f64() - n * eta0.to_f64()).abs() > 4.0 * ulp
            {
                return;
            }
            *p = n as u8;
        }
        self.power = power;
        self.eta0 = eta0;
    }

    /// Multiplies each of `v` (one per function) by its prefactor 2^(1−ζ), exact by repeated
    /// halving (ζ is an integer here; no `powf`, no floor).
    pub fn scale_by_prefactors(&self, v: &mut [T]) {
        for (x, &z) in v.iter_mut().zip(&self.zeta).take(self.n) {
            if z > 1 {
                *x *= T::HALF.powu(u32::from(z) - 1);
            }
        }
    }

    /// Distinct (η, r_s) channels (0 for the radial kinds).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Function `s`: (channel, ζ, λ).
    #[inline(always)]
    fn function(&self, s: usize) -> (usize, u32, T) {
        (
            usize::from(self.chan.get(s).copied().unwrap_or(0)),
            u32::from(self.zeta.get(s).copied().unwrap_or(1)),
            if (self.negative >> s) & 1 == 1 {
                -T::ONE
            } else {
                T::ONE
            },
        )
    }
}

/// Part `i` (`cap` long) of the slot cache.
#[inline(always)]
fn part<T>(slots: &[T], i: usize, cap: usize) -> &[T] {
    slots.get(i * cap..(i + 1) * cap).unwrap_or(&[])
}

/// Lanes `k..k + W` of `s`; lanes at or beyond `end` (or outside `s`) read `fill`. Reads the
/// whole batch and masks it with a select when the slice extends that far (the neighbour lanes
/// have capacity beyond the last neighbour, so this is the common case even for the last batch
/// of a row); lane by lane only at the very end of the slice.
#[inline(always)]
fn load<T: Real, const W: usize>(s: &[T], k: usize, end: usize, fill: T) -> [T; W] {
    match s.get(k..k + W).and_then(|c| <[T; W]>::try_from(c).ok()) {
        Some(a) if k + W <= end => a,
        Some(a) => lanes!(l => if k + l < end { a[l] } else { fill }),
        None => lanes!(l => if k + l < end { s.get(k + l).copied().unwrap_or(fill) } else { fill }),
    }
}

/// Lanes `k..k + W` of `s` without a mask (lanes beyond `s` read zero), for fields whose lanes
/// at or beyond a block's end are neutralised by others (see [`narrow`]).
#[inline(always)]
fn load_raw<T: Real, const W: usize>(s: &[T], k: usize) -> [T; W] {
    match s.get(k..k + W).and_then(|c| <[T; W]>::try_from(c).ok()) {
        Some(a) => a,
        None => lanes!(l => s.get(k + l).copied().unwrap_or(T::ZERO)),
    }
}

/// Writes `v` into lanes `k..k + W` of `s`, lanes below `end` only.
#[inline(always)]
fn store<T: Real, const W: usize>(s: &mut [T], k: usize, end: usize, v: [T; W]) {
    match s.get_mut(k..k + W) {
        Some(c) if k + W <= end => c.copy_from_slice(&v),
        Some(c) => {
            for (l, (x, y)) in c.iter_mut().zip(v).enumerate() {
                *x = if k + l < end { y } else { *x };
            }
        }
        None => {
            let n = end.saturating_sub(k).min(W);
            let tail = s.get_mut(k..).unwrap_or(&mut []);
            tail.iter_mut().zip(v).take(n).for_each(|(a, b)| *a = b);
        }
    }
}

/// Adds `v` into lanes `k..k + W` of `s`, lanes below `end` only.
#[inline(always)]
fn add_lanes<T: Real, const W: usize>(s: &mut [T], k: usize, end: usize, v: [T; W]) {
    match s.get_mut(k..k + W) {
        Some(c) if k + W <= end => c.iter_mut().zip(v).for_each(|(a, b)| *a += b),
        Some(c) => {
            for (l, (x, y)) in c.iter_mut().zip(v).enumerate() {
                *x += if k + l < end { y } else { T::ZERO };
            }
        }
        None => {
            let n = end.saturating_sub(k).min(W);
            let tail = s.get_mut(k..).unwrap_or(&mut []);
            tail.iter_mut().zip(v).take(n).for_each(|(a, b)| *a += b);
        }
    }
}

/// b^n per lane by repeated squaring (the exponent is the same for every lane).
#[inline(always)]
fn powu<T: Real, const W: usize>(b: [T; W], mut n: u32) -> [T; W] {
    // The common exponents without the loop, with the loop's products in its order (1·b = b).
    // n = 2, 4, 6 on hosts only: on one lane they cost flash (232 B on the M4F demo, 640–768 B
    // on RV32) for fewer than 0.2 % of its instructions.
    if n == 0 {
        return [T::ONE; W];
    }
    if n == 1 {
        return b;
    }
    if W > 1 {
        let sq = |x: [T; W]| lanes!(l => x[l] * x[l]);
        match n {
            2 => return sq(b),
            4 => return sq(sq(b)),
            6 => {
                let b2 = sq(b);
                let b4 = sq(b2);
                return lanes!(l => b2[l] * b4[l]);
            }
            _ => {}
        }
    }
    let mut acc = [T::ONE; W];
    let mut b = b;
    while n > 0 {
        if n & 1 == 1 {
            acc = lanes!(l => acc[l] * b[l]);
        }
        n >>= 1;
        if n > 0 {
            b = lanes!(l => b[l] * b[l]);
        }
    }
    acc
}

/// Per-lane sums (compensated in f32, see [`super::angular::Sums`]) for each function.
struct LaneSums<T, const W: usize> {
    sum: [[T; W]; MAX_FUNCTIONS],
    comp: [[T; W]; MAX_FUNCTIONS],
}

impl<T: Real, const W: usize> LaneSums<T, W> {
    fn new() -> Self {
        LaneSums {
            sum: [[T::ZERO; W]; MAX_FUNCTIONS],
            comp: [[T::ZERO; W]; MAX_FUNCTIONS],
        }
    }

    #[inline(always)]
    fn add(&mut self, s: usize, v: [T; W]) {
        if let (Some(a), Some(c)) = (self.sum.get_mut(s), self.comp.get_mut(s)) {
            for ((a, c), v) in a.iter_mut().zip(c.iter_mut()).zip(v) {
                add(a, c, v);
            }
        }
    }

    /// Adds the lane totals, in lane order, into `acc`.
    fn reduce(&self, acc: &mut [T]) {
        for ((a, s), c) in acc.iter_mut().zip(&self.sum).zip(&self.comp) {
            let mut t = T::ZERO;
            for (&x, &y) in s.iter().zip(c) {
                t += x - y;
            }
            *a += t;
        }
    }
}

/// Number of neighbours in `nb` (the end of the last species block).
#[inline(always)]
fn total<T: Real>(nb: &Lanes<'_, T>) -> usize {
    nb.range(MAX_SPECIES - 1).end
}

/// Fills the geometry part of the slot cache: unit vectors d/r and 1/r of every neighbour.
pub(crate) fn fill_geometry<T: Real>(nb: &Lanes<'_, T>, slots: &mut [T]) {
    let cap = nb.r.len();
    let n = total(nb);
    let (u, _) = crate::neighbors::split(slots, 4 * cap);
    let (ux, rest) = crate::neighbors::split(u, cap);
    let (uy, rest) = crate::neighbors::split(rest, cap);
    let (uz, inv) = crate::neighbors::split(rest, cap);
    let out = ux
        .iter_mut()
        .zip(uy.iter_mut())
        .zip(uz.iter_mut())
        .zip(inv.iter_mut());
    let src = nb
        .dx
        .iter()
        .zip(nb.dy.iter())
        .zip(nb.dz.iter())
        .zip(nb.r.iter());
    for ((((ux, uy), uz), iv), (((&x, &y), &z), &r)) in out.zip(src).take(n) {
        let i = T::ONE / r;
        *ux = x * i;
        *uy = y * i;
        *uz = z * i;
        *iv = i;
    }
}

/// The species blocks a group reads, with their weights: (e1[, e2]) with weight 1, or every
/// species s < `zs.len()` with weight Z_s for the element-weighted kinds.
#[inline(always)]
fn blocks<'z, T: Real>(g: &Group<'_, T>, zs: &'z [T]) -> impl Iterator<Item = (usize, T)> + 'z {
    let weighted = g.kind.is_weighted();
    let (e1, e2) = (g.e1, g.e2);
    let n = if weighted { zs.len() } else { 2 };
    (0..n).filter_map(move |i| {
        if weighted {
            Some((i, zs.get(i).copied().unwrap_or(T::ZERO)))
        } else if i == 0 {
            Some((e1, T::ONE))
        } else if e2 != e1 {
            Some((e2, T::ONE))
        } else {
            None
        }
    })
}

/// What the channel part of the slot cache holds for the current atom. On hosts
/// ([`CHANNEL_SETS`] = 2) the part has two halves: the set in use (read by the kernels) and a
/// spare that keeps the set used before it; on 1-lane targets only the set in use.
/// Each holds the factors of the species blocks in `blocks` (bit e: species e), computed with
/// its cutoff, weighting and channels. Groups that share them (typically every angular group of
/// a species) and the force pass reuse the factors instead of recomputing a cutoff and an
/// exponential per neighbour, channel, group and pass; the values are the same either way.
/// With two channel sets per atom (n2p2's water model: two η sets per central species), the
/// force pass finds both computed and swaps them instead of computing both again.
#[derive(Clone, Copy)]
pub(crate) struct ChannelMemo<T> {
    /// `sets[0]` is in use; `sets[1]` (hosts only) is the spare.
    sets: [ChannelSet<T>; CHANNEL_SETS],
}

/// One channel set of [`ChannelMemo`]: what it was computed with and for which blocks.
#[derive(Clone, Copy)]
struct ChannelSet<T> {
    blocks: u32,
    cutoff: Option<Cutoff<T>>,
    weighted: bool,
    channels: usize,
    eta: [T; MAX_CHANNELS],
    rs: [T; MAX_CHANNELS],
}

impl<T: Real> ChannelSet<T> {
    const EMPTY: Self = ChannelSet {
        blocks: 0,
        cutoff: None,
        weighted: false,
        channels: 0,
        eta: [T::ZERO; MAX_CHANNELS],
        rs: [T::ZERO; MAX_CHANNELS],
    };

    /// Computed as group `g` with plan `plan` needs (blocks aside). Only the plan's channels
    /// are compared (beyond them a plan holds stale values).
    #[inline(always)]
    fn serves(&self, g: &Group<'_, T>, plan: &Plan<T>) -> bool {
        let nc = plan.channels.min(MAX_CHANNELS);
        self.cutoff == Some(g.cutoff)
            && self.weighted == g.kind.is_weighted()
            && self.channels == plan.channels
            && self.eta.get(..nc) == plan.eta.get(..nc)
            && self.rs.get(..nc) == plan.rs.get(..nc)
    }
}

impl<T: Real> ChannelMemo<T> {
    /// Nothing cached (a new neighbour set).
    pub fn empty() -> Self {
        ChannelMemo {
            sets: [ChannelSet::EMPTY; CHANNEL_SETS],
        }
    }
}

/// Exchanges the in-use and spare halves of the slot cache's channel part (`chans`, parts of
/// `cap` reals: `2·half` in use, then `2·half` spare), for the channels either half holds and
/// the first `n` slots. Slot caches without a spare half (`chans` shorter) are left alone.
fn swap_channel_halves<T>(chans: &mut [T], cap: usize, half: usize, channels: usize, n: usize) {
    let (held, spare) = crate::neighbors::split(chans, 2 * half * cap);
    let parts = 2 * channels.min(half);
    for (a, b) in held
        .chunks_mut(cap.max(1))
        .zip(spare.chunks_mut(cap.max(1)))
        .take(parts)
    {
        let n = n.min(a.len()).min(b.len());
        if let (Some(a), Some(b)) = (a.get_mut(..n), b.get_mut(..n)) {
            a.swap_with_slice(b);
        }
    }
}

/// Fills (h_c, h_c′) of every channel for the slots of the group's blocks that `memo` does not
/// already hold.
fn fill_channels<T: Real, const W: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &mut [T],
    memo: &mut ChannelMemo<T>,
) {
    let cap = nb.r.len();
    let rc = g.cutoff.rc();
    let (_, chans) = crate::neighbors::split(slots, 4 * cap);
    // Channels per set of the channel part (the model's most, see `slot_reals`).
    let half = (chans.len() / cap.max(1)) / (2 * CHANNEL_SETS);
    let weighted = g.kind.is_weighted();
    let serves = |m: &ChannelMemo<T>| m.sets.first().is_some_and(|s| s.serves(g, plan));
    let mut same = serves(memo);
    if !same && CHANNEL_SETS > 1 {
        // The set in use goes to the spare half; the spare comes back when it is the one
        // wanted, and is dropped otherwise.
        let channels = memo.sets.iter().map(|s| s.channels).max().unwrap_or(0);
        swap_channel_halves(chans, cap, half, channels, total(nb));
        memo.sets.rotate_left(1);
        same = serves(memo);
    }
    let Some(memo) = memo.sets.first_mut() else {
        return;
    };
    if !same {
        *memo = ChannelSet {
            blocks: 0,
            cutoff: Some(g.cutoff),
            weighted,
            channels: plan.channels,
            eta: plan.eta,
            rs: plan.rs,
        };
    }
    let bit = |e: usize| {
        u32::try_from(e)
            .ok()
            .and_then(|e| 1u32.checked_shl(e))
            .unwrap_or(0)
    };
    if same && !weighted {
        // The common case (every angular group of the atom after the first, and the force
        // pass): both blocks held.
        let (b1, b2) = (bit(g.e1), bit(g.e2));
        if b1 != 0 && b2 != 0 && memo.blocks & (b1 | b2) == b1 | b2 {
            return;
        }
    }
    for (e, w) in blocks(g, zs) {
        // Species beyond the mask's 32 bits are always recomputed.
        let bit = bit(e);
        if memo.blocks & bit != 0 {
            continue;
        }
        memo.blocks |= bit;
        let range = nb.range(e);
        let mut k = range.start;
        while k < range.end {
            let r = load::<T, W>(nb.r, k, range.end, rc);
            let (f, df) = g.cutoff.eval_lanes(r);
            let params = plan.eta.iter().zip(&plan.rs).take(plan.channels);
            for (c, (&eta, &r0)) in params.enumerate() {
                let x: [T; W] = lanes!(l => r[l] - r0);
                let ex: [T; W] = lanes!(l => (-eta * x[l] * x[l]).exp_nonpos() * w);
                let h = lanes!(l => f[l] * ex[l]);
                let dh = lanes!(l => ex[l] * (df[l] - T::TWO * eta * x[l] * f[l]));
                let base = 2 * c * cap;
                store(
                    chans.get_mut(base..base + cap).unwrap_or(&mut []),
                    k,
                    range.end,
                    h,
                );
                let base = base + cap;
                store(
                    chans.get_mut(base..base + cap).unwrap_or(&mut []),
                    k,
                    range.end,
                    dh,
                );
            }
            k += W;
        }
    }
}

/// Per-pair factors kept between the value pass and the force pass of one atom, so that the
/// force pass does not recompute r_jk, its cutoff and its exponentials. Batches are stored in
/// visiting order, `W·(1 + 2·NC)` reals each (1/r_jk, then h_jk and h′_jk per channel), while they
/// fit; the force pass recomputes the batches that did not fit, with the same code, so the
/// results do not depend on the cache size. Wide groups on the moment path ([`wide_values`])
/// keep their moments here too, 10 reals per channel.
pub(crate) struct PairCache<'c, T> {
    buf: &'c mut [T],
    cursor: usize,
    /// End of the stored batches.
    filled: usize,
    /// Value pass (store) or force pass (read).
    fill: bool,
    /// What the slot cache's channel part holds.
    memo: ChannelMemo<T>,
}

impl<'c, T: Real> PairCache<'c, T> {
    /// A cache for the value pass of an atom.
    pub fn for_values(buf: &'c mut [T]) -> Self {
        PairCache {
            buf,
            cursor: 0,
            filled: 0,
            fill: true,
            memo: ChannelMemo::empty(),
        }
    }

    /// A cache for the force pass after a value pass that stored up to `filled` and left the
    /// slot cache's channel part as `memo` says.
    pub fn for_forces(buf: &'c mut [T], filled: usize, memo: ChannelMemo<T>) -> Self {
        PairCache {
            buf,
            cursor: 0,
            filled,
            fill: false,
            memo,
        }
    }

    /// End of the stored batches (after the value pass).
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// What the slot cache's channel part holds (after the value pass).
    pub fn memo(&self) -> ChannelMemo<T> {
        self.memo
    }

    /// The pass's next record of `size` reals; the cursor moves past it either way, so both
    /// passes count records alike.
    #[inline(always)]
    fn next(&mut self, size: usize) -> Record<'_, T> {
        let at = self.cursor;
        self.cursor = at + size;
        if self.fill {
            match self.buf.get_mut(at..at + size) {
                Some(s) => {
                    self.filled = at + size;
                    Record::Fill(s)
                }
                None => Record::Missing,
            }
        } else if at + size <= self.filled {
            self.buf
                .get(at..at + size)
                .map_or(Record::Missing, Record::Stored)
        } else {
            Record::Missing
        }
    }
}

/// A record of the [`PairCache`] as [`PairCache::next`] hands it out.
enum Record<'b, T> {
    /// Force pass: what the value pass stored.
    Stored(&'b [T]),
    /// Value pass: room for the record, counted as stored (fill all of it).
    Fill(&'b mut [T]),
    /// Beyond the cache: the value pass stores nothing, the force pass recomputes.
    Missing,
}

/// The central-atom side of a pair row: neighbour j.
struct Row<T, const NC: usize> {
    j: usize,
    u: [T; 3],
    inv_r: T,
    h: [T; NC],
    dh: [T; NC],
}

/// A batch of pairs (j, k..k + W): geometry and the per-channel factors.
struct Batch<T, const W: usize, const NC: usize> {
    k: usize,
    end: usize,
    cos: [T; W],
    u: [[T; W]; 3],
    inv_r: [T; W],
    /// Unit vector j→k (narrow kinds).
    ujk: [[T; W]; 3],
    h: [[T; W]; NC],
    dh: [[T; W]; NC],
    hjk: [[T; W]; NC],
    dhjk: [[T; W]; NC],
}

/// r_jk² of each lane of a batch from its j→k vectors.
#[inline(always)]
fn squared_norms<T: Real, const W: usize>(djk: &[[T; W]; 3]) -> [T; W] {
    lanes!(l => djk[0][l] * djk[0][l] + djk[1][l] * djk[1][l] + djk[2][l] * djk[2][l])
}

/// The r_jk factors of a batch of the narrow kinds: 1/r_jk, and h_jk, h′_jk per channel.
#[inline(always)]
fn jk_factors<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    djk: &[[T; W]; 3],
) -> ([T; W], [[T; W]; NC], [[T; W]; NC]) {
    jk_factors_r2(g, plan, squared_norms(djk))
}

/// [`jk_factors`] from r_jk² (when the caller already has it).
#[inline(always)]
fn jk_factors_r2<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    r2: [T; W],
) -> ([T; W], [[T; W]; NC], [[T; W]; NC]) {
    let jk = Jk::<T, W>::new(g, plan, r2);
    let mut hjk = [[T::ZERO; W]; NC];
    let mut dhjk = [[T::ZERO; W]; NC];
    let out = hjk.iter_mut().zip(dhjk.iter_mut());
    for (c, (h, dh)) in out.enumerate().take(live::<T, NC>(plan)) {
        (*h, *dh) = jk.channel(plan, c);
    }
    (jk.ir, hjk, dhjk)
}

/// The r_jk part shared by the channels of a batch of the narrow kinds: r_jk, 1/r_jk, the
/// cutoff f and f′, and (when the plan's exponentials are powers of one) x = r_jk − r_s and
/// b = exp(−η₀ x²).
struct Jk<T, const W: usize> {
    r: [T; W],
    ir: [T; W],
    f: [T; W],
    df: [T; W],
    x: [T; W],
    b: [T; W],
}

impl<T: Real, const W: usize> Jk<T, W> {
    #[inline(always)]
    fn new(g: &Group<'_, T>, plan: &Plan<T>, r2: [T; W]) -> Self {
        // With several lanes, 1/r by Newton's iteration and r = r²·(1/r), which vectorise; with
        // one lane (microcontrollers, whose FPUs have a square root), √ and a division.
        let (r, ir): ([T; W], [T; W]) = if W > 1 {
            let ir = lanes!(l => r2[l].recip_sqrt());
            (lanes!(l => r2[l] * ir[l]), ir)
        } else {
            let r = lanes!(l => r2[l].sqrt());
            (r, lanes!(l => T::ONE / r[l]))
        };
        let (f, df) = g.cutoff.eval_lanes(r);
        let (mut x, mut b) = ([T::ZERO; W], [T::ZERO; W]);
        if plan.eta0 > T::ZERO {
            // exp(−η_c x²) = b^n_c with b = exp(−η_0 x²): one exponential and a few products.
            let r0 = plan.rs[0];
            x = lanes!(l => r[l] - r0);
            b = lanes!(l => (-plan.eta0 * x[l] * x[l]).exp_nonpos());
        }
        Jk { r, ir, f, df, x, b }
    }

    /// (h_jk, h′_jk) of channel c.
    #[inline(always)]
    fn channel(&self, plan: &Plan<T>, c: usize) -> ([T; W], [T; W]) {
        let (f, df) = (&self.f, &self.df);
        let eta = plan.eta.get(c).copied().unwrap_or(T::ZERO);
        let (x, ex) = if plan.eta0 > T::ZERO {
            let n = plan.power.get(c).copied().unwrap_or(0);
            (self.x, powu(self.b, u32::from(n)))
        } else {
            let r0 = plan.rs.get(c).copied().unwrap_or(T::ZERO);
            let x: [T; W] = lanes!(l => self.r[l] - r0);
            (x, lanes!(l => (-eta * x[l] * x[l]).exp_nonpos()))
        };
        let h = lanes!(l => f[l] * ex[l]);
        let dh = lanes!(l => ex[l] * (df[l] - T::TWO * eta * x[l] * f[l]));
        (h, dh)
    }
}

/// The slot cache seen by the pair walks: unit-vector components and 1/r of every slot, and
/// (h_c, h_c′) of the plan's channels; channels beyond them (when `NC` is larger) read as empty
/// slices, hence zeros.
#[derive(Clone, Copy)]
struct SlotView<'s, T, const NC: usize> {
    u: [&'s [T]; 3],
    inv: &'s [T],
    h: [&'s [T]; NC],
    dh: [&'s [T]; NC],
}

impl<'s, T: Real, const NC: usize> SlotView<'s, T, NC> {
    #[inline(always)]
    fn new(slots: &'s [T], cap: usize, channels: usize) -> Self {
        let chan = |c: usize, i: usize| {
            if c < channels {
                part(slots, 4 + 2 * c + i, cap)
            } else {
                &[]
            }
        };
        SlotView {
            u: [
                part(slots, 0, cap),
                part(slots, 1, cap),
                part(slots, 2, cap),
            ],
            inv: part(slots, 3, cap),
            h: core::array::from_fn(|c| chan(c, 0)),
            dh: core::array::from_fn(|c| chan(c, 1)),
        }
    }
}

/// The rows of a pair walk (`W` > 1): each neighbour j of the group's pair blocks within the
/// cutoff, with its d_ij and the k range it pairs with (k > j within one block).
#[inline(always)]
fn for_each_row<T: Real, const NC: usize>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    view: &SlotView<'_, T, NC>,
    mut visit: impl FnMut(&Row<T, NC>, [T; 3], core::ops::Range<usize>),
) {
    let rc = g.cutoff.rc();
    let SlotView { u, inv, h, dh } = view;
    let at = |s: &[T], i: usize| s.get(i).copied().unwrap_or(T::ZERO);
    let weighted = g.kind.is_weighted();
    let species = if weighted { zs.len() } else { 1 };
    for a in 0..species {
        for b in a..species {
            let (a, b) = if weighted { (a, b) } else { (g.e1, g.e2) };
            let (ra, rb) = (nb.range(a), nb.range(b));
            for j in ra {
                if at(nb.r, j) >= rc {
                    continue;
                }
                let row = Row {
                    j,
                    u: u.map(|s| at(s, j)),
                    inv_r: at(inv, j),
                    h: h.map(|s| at(s, j)),
                    dh: dh.map(|s| at(s, j)),
                };
                let dj = [at(nb.dx, j), at(nb.dy, j), at(nb.dz, j)];
                let first = if a == b { j + 1 } else { rb.start };
                visit(&row, dj, first..rb.end);
            }
            if !weighted {
                return;
            }
        }
    }
}

/// Visits the group's neighbour pairs in batches of `W`: the pairs (j of species a, k of species
/// b) over the group's pair blocks, k > j within one block, j within the group's cutoff. Lanes
/// beyond a block read zero factors, so they contribute nothing. `NC` ≥ the plan's channels.
/// With several lanes, for the wide kinds only (the narrow ones have [`narrow`]).
#[inline(always)]
fn for_each_batch<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    mut visit: impl FnMut(&Row<T, NC>, &Batch<T, W, NC>),
) {
    if W == 1 {
        return for_each_pair::<T, W, NC>(g, plan, nb, zs, slots, cache, visit);
    }
    let view = SlotView::<T, NC>::new(slots, nb.r.len(), plan.channels);
    let nc = live::<T, NC>(plan);
    for_each_row(g, nb, zs, &view, |row, _, ks| {
        let SlotView { u, inv, h, dh } = &view;
        let end = ks.end;
        for k in ks.step_by(W) {
            let uk = rows!(3, c => load::<T, W>(u[c], k, end, T::ZERO));
            let cos = lanes!(l => row.u[0] * uk[0][l] + row.u[1] * uk[1][l] + row.u[2] * uk[2][l]);
            let mut batch = Batch {
                k,
                end,
                cos,
                u: uk,
                inv_r: load(inv, k, end, T::ZERO),
                ujk: [[T::ZERO; W]; 3],
                h: [[T::ZERO; W]; NC],
                dh: [[T::ZERO; W]; NC],
                hjk: [[T::ONE; W]; NC],
                dhjk: [[T::ZERO; W]; NC],
            };
            let hs = batch
                .h
                .iter_mut()
                .zip(batch.dh.iter_mut())
                .zip(h.iter().zip(dh));
            for ((bh, bdh), (h, dh)) in hs.take(nc) {
                *bh = load(h, k, end, T::ZERO);
                *bdh = load(dh, k, end, T::ZERO);
            }
            visit(row, &batch);
        }
    });
}

/// [`for_each_batch`] for one lane (`W` = 1, microcontrollers): the same pairs in the same
/// order with the same arithmetic, without the lane scaffolding. Each pair block's slices are
/// cut once per row to the row's k range, so the pair loop reads them without masks or bounds
/// checks, and a batch is built from its final values instead of zeros.
#[inline(always)]
fn for_each_pair<'s, T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'s, T>,
    zs: &[T],
    slots: &'s [T],
    cache: &mut PairCache<'_, T>,
    mut visit: impl FnMut(&Row<T, NC>, &Batch<T, W, NC>),
) {
    let cap = nb.r.len();
    let rc = g.cutoff.rc();
    let narrow = g.kind.is_narrow();
    let SlotView { u, inv, h, dh } = SlotView::<T, NC>::new(slots, cap, plan.channels);
    let [u0, u1, u2] = u;
    let nc = live::<T, NC>(plan);
    let at = |s: &[T], i: usize| s.get(i).copied().unwrap_or(T::ZERO);
    let weighted = g.kind.is_weighted();
    let species = if weighted { zs.len() } else { 1 };
    let size = 1 + 2 * nc;
    for a in 0..species {
        for b in a..species {
            let (a, b) = if weighted { (a, b) } else { (g.e1, g.e2) };
            let (ra, rb) = (nb.range(a), nb.range(b));
            // Block b's slices, cut once; k = rb.start + i.
            // Each of them exactly n long (the slot cache and the lanes hold every neighbour),
            // which lets the pair loop index them without bounds checks.
            let n = rb.len();
            let get = |s: &'s [T]| s.get(rb.clone());
            let (Some(x0), Some(x1), Some(x2), Some(xi)) = (get(u0), get(u1), get(u2), get(inv))
            else {
                continue;
            };
            let (Some(dx), Some(dy), Some(dz)) = (get(nb.dx), get(nb.dy), get(nb.dz)) else {
                continue;
            };
            let cut = |s| cut(s, &rb);
            let (hk, dhk) = (h.map(cut), dh.map(cut));
            for j in ra {
                if at(nb.r, j) >= rc {
                    continue;
                }
                let row = Row {
                    j,
                    u: [at(u0, j), at(u1, j), at(u2, j)],
                    inv_r: at(inv, j),
                    h: h.map(|s| at(s, j)),
                    dh: dh.map(|s| at(s, j)),
                };
                let dj = [at(nb.dx, j), at(nb.dy, j), at(nb.dz, j)];
                let first = if a == b {
                    (j + 1).saturating_sub(rb.start)
                } else {
                    0
                };
                for i in first..n {
                    let k = rb.start + i;
                    let uk = [x0[i], x1[i], x2[i]];
                    let cos = row.u[0] * uk[0] + row.u[1] * uk[1] + row.u[2] * uk[2];
                    let mut bh = [[T::ZERO; W]; NC];
                    let mut bdh = [[T::ZERO; W]; NC];
                    let hs = bh.iter_mut().zip(bdh.iter_mut()).zip(hk.iter().zip(&dhk));
                    for ((bh, bdh), (hk, dhk)) in hs.take(nc) {
                        *bh = [at(hk, i); W];
                        *bdh = [at(dhk, i); W];
                    }
                    let mut batch = Batch {
                        k,
                        end: rb.end,
                        cos: [cos; W],
                        u: uk.map(|x| [x; W]),
                        inv_r: [xi[i]; W],
                        ujk: [[T::ZERO; W]; 3],
                        h: bh,
                        dh: bdh,
                        hjk: [[T::ONE; W]; NC],
                        dhjk: [[T::ZERO; W]; NC],
                    };
                    if narrow {
                        let djk = [[dx[i] - dj[0]; W], [dy[i] - dj[1]; W], [dz[i] - dj[2]; W]];
                        let ir = match cache.next(size) {
                            Record::Stored(s) => {
                                let out = batch.hjk.iter_mut().zip(batch.dhjk.iter_mut());
                                for (c, (x, y)) in out.enumerate().take(nc) {
                                    *x = [at(s, 1 + 2 * c); W];
                                    *y = [at(s, 2 + 2 * c); W];
                                }
                                [at(s, 0); W]
                            }
                            rec => {
                                let (ir, hjk, dhjk) = jk_factors::<T, W, NC>(g, plan, &djk);
                                (batch.hjk, batch.dhjk) = (hjk, dhjk);
                                if let Record::Fill(s) = rec {
                                    let mut o = s.iter_mut();
                                    if let Some(x) = o.next() {
                                        *x = ir[0];
                                    }
                                    for (h, dh) in hjk.iter().zip(&dhjk).take(nc) {
                                        if let (Some(x), Some(y)) = (o.next(), o.next()) {
                                            (*x, *y) = (h[0], dh[0]);
                                        }
                                    }
                                }
                                ir
                            }
                        };
                        batch.ujk = rows!(3, c => lanes!(l => djk[c][l] * ir[l]));
                    }
                    visit(&row, &batch);
                }
            }
            if !weighted {
                return;
            }
        }
    }
}

/// `s[ks]` when it is that long, else empty.
#[inline(always)]
fn cut<'s, T>(s: &'s [T], ks: &core::ops::Range<usize>) -> &'s [T] {
    match s.get(ks.clone()) {
        Some(x) if x.len() == ks.len() => x,
        _ => &[],
    }
}

/// Calls `$f::<T, W, NC>` with NC the smallest supported channel count ≥ the plan's: one
/// instantiation per count on hosts; on microcontrollers one for a single channel and one
/// (`MAX_CHANNELS`, feature `multi-channel`) for the rest, where flash matters more than the
/// unused lanes.
macro_rules! by_channels {
    ($plan:expr, $f:ident($($arg:expr),*)) => {
        match instantiated($plan.channels) {
            1 => $f::<T, W, 1>($($arg),*),
            2 => $f::<T, W, 2>($($arg),*),
            3 => $f::<T, W, 3>($($arg),*),
            4 => $f::<T, W, 4>($($arg),*),
            // Plans with several channels are not built then (`Plan::build`).
            _ if LANES == 1 && !cfg!(feature = "multi-channel") => $f::<T, W, 1>($($arg),*),
            _ => $f::<T, W, MAX_CHANNELS>($($arg),*),
        }
    };
}

/// Adds the values of angular group `g` (without the 2^(1−ζ) prefactor) into `acc`; `comp`
/// (≥ `g.n` long) is scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn angular_values<T: Real, const W: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &mut [T],
    cache: &mut PairCache<'_, T>,
    acc: &mut [T],
    comp: &mut [T],
) {
    fill_channels::<T, W>(g, plan, nb, zs, slots, &mut cache.memo);
    if plan.moments {
        return wide_values(g, plan, nb, slots, cache, acc);
    }
    by_channels!(
        plan,
        angular_values_nc(g, plan, nb, zs, slots, cache, acc, comp)
    );
}

#[allow(clippy::too_many_arguments)]
fn angular_values_nc<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    acc: &mut [T],
    comp: &mut [T],
) {
    if W == 1 && NC == 1 {
        return angular_values_single(g, plan, nb, zs, slots, cache, acc, comp);
    }
    if W == 1 {
        return angular_values_one::<T, W, NC>(g, plan, nb, zs, slots, cache, acc, comp);
    }
    if g.kind.is_narrow() {
        return narrow::values::<T, W, NC>(g, plan, nb, zs, slots, cache, acc);
    }
    let mut sums = LaneSums::<T, W>::new();
    for_each_batch::<T, W, NC>(g, plan, nb, zs, slots, cache, |row, b| {
        let nc = live::<T, NC>(plan);
        let mut hh = [[T::ZERO; W]; NC];
        for (c, o) in hh.iter_mut().enumerate().take(nc) {
            *o = lanes!(l => row.h[c] * b.h[c][l] * b.hjk[c][l]);
        }
        for s in 0..plan.n {
            let (c, zeta, lambda) = plan.function(s);
            let base = lanes!(l => (T::ONE + lambda * b.cos[l]).max(T::ZERO));
            let p = powu(base, zeta);
            let hc = hh.get(c).copied().unwrap_or([T::ZERO; W]);
            sums.add(s, lanes!(l => p[l] * hc[l]));
        }
    });
    sums.reduce(acc);
}

/// [`angular_values_nc`] for one lane (`W` = 1): the same arithmetic in the same order on
/// scalars (lane 0 of each batch), summed straight into `acc` with the compensations in `comp`
/// (clearing local arrays of `MAX_FUNCTIONS` cost more than the sums on a microcontroller).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn angular_values_one<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    acc: &mut [T],
    comp: &mut [T],
) {
    let n = plan.n.min(MAX_FUNCTIONS);
    let nc = live::<T, NC>(plan);
    let (sum, comp) = sums_in(acc, comp, n);
    for_each_batch::<T, W, NC>(g, plan, nb, zs, slots, cache, |row, b| {
        let cos = b.cos[0];
        let mut hh = [T::ZERO; NC];
        for (c, o) in hh.iter_mut().enumerate().take(nc) {
            *o = row.h[c] * b.h[c][0] * b.hjk[c][0];
        }
        let sums = sum.iter_mut().zip(comp.iter_mut());
        for (s, (sm, cm)) in sums.enumerate().take(n) {
            let (c, zeta, lambda) = plan.function(s);
            let p = angular_term(cos, zeta, lambda);
            add(sm, cm, p * hh.get(c).copied().unwrap_or(T::ZERO));
        }
    });
    finish_sums(sum, comp);
}

/// The first `n` of `acc` as compensated sums, with their compensations (cleared) in `comp`.
#[inline(always)]
fn sums_in<'x, T: Real>(
    acc: &'x mut [T],
    comp: &'x mut [T],
    n: usize,
) -> (&'x mut [T], &'x mut [T]) {
    let n = n.min(acc.len()).min(comp.len());
    let (sum, comp) = (&mut acc[..n], &mut comp[..n]);
    comp.iter_mut().for_each(|c| *c = T::ZERO);
    (sum, comp)
}

/// Applies the compensations of [`sums_in`].
#[inline(always)]
fn finish_sums<T: Real>(sum: &mut [T], comp: &[T]) {
    for (s, &c) in sum.iter_mut().zip(comp) {
        *s -= c;
    }
}

/// Reals of the moments of one channel of a wide group in the pair cache: (S, V, Q) of e1, then
/// of e2.
const MOMENT_REALS: usize = 10;

/// Sums of one species block for one channel c of a wide group: S = Σ_j h_j, V = Σ_j h_j u_j
/// (u_j the unit vector i→j) and Q = Σ_j h_j².
#[derive(Clone, Copy)]
struct Moments<T> {
    s: T,
    v: [T; 3],
    q: T,
}

impl<T: Real> Moments<T> {
    /// The moments of the slots `range` for channel `c` of the slot cache. Out of line, as
    /// [`wide_scatter`]: one copy of each keeps the moment path at ~1 KB of flash on a
    /// microcontroller.
    #[inline(never)]
    fn of(slots: &[T], cap: usize, c: usize, range: &core::ops::Range<usize>) -> Self {
        let mut m = Moments {
            s: T::ZERO,
            v: [T::ZERO; 3],
            q: T::ZERO,
        };
        let h = cut(part(slots, 4 + 2 * c, cap), range);
        let (ux, uy, uz) = (
            cut(part(slots, 0, cap), range),
            cut(part(slots, 1, cap), range),
            cut(part(slots, 2, cap), range),
        );
        for (((&h, &x), &y), &z) in h.iter().zip(ux).zip(uy).zip(uz) {
            m.s += h;
            m.v[0] += h * x;
            m.v[1] += h * y;
            m.v[2] += h * z;
            m.q += h * h;
        }
        m
    }

    fn dot(&self, o: &Self) -> T {
        self.v[0] * o.v[0] + self.v[1] * o.v[1] + self.v[2] * o.v[2]
    }

    /// The moments of the group's blocks e1 and e2 for channel `c` (the same twice when
    /// e1 = e2). The value pass stores them in the pair cache ([`MOMENT_REALS`] reals, while
    /// they fit) and the force pass reads them back, as the pair kernels do with their r_jk
    /// factors.
    #[inline(never)]
    fn of_group(
        g: &Group<'_, T>,
        nb: &Lanes<'_, T>,
        slots: &[T],
        c: usize,
        cache: &mut PairCache<'_, T>,
    ) -> (Self, Self) {
        let rec = cache.next(MOMENT_REALS);
        if let Record::Stored(&[s, x, y, z, q, s2, x2, y2, z2, q2]) = rec {
            let a = Moments { s, v: [x, y, z], q };
            let (s, v, q) = (s2, [x2, y2, z2], q2);
            return (a, Moments { s, v, q });
        }
        let cap = nb.r.len();
        let a = Self::of(slots, cap, c, &nb.range(g.e1));
        let b = if g.e1 == g.e2 {
            a
        } else {
            Self::of(slots, cap, c, &nb.range(g.e2))
        };
        if let Record::Fill(x) = rec {
            let [ax, ay, az] = a.v;
            let [bx, by, bz] = b.v;
            x.copy_from_slice(&[a.s, ax, ay, az, a.q, b.s, bx, by, bz, b.q]);
        }
        (a, b)
    }
}

/// Wide groups (n2p2 type 9) whose functions all have ζ = 1 need no pair loop. With the
/// [`Moments`] of the group's species blocks (per channel; u_j·u_j = 1),
///
/// ```text
/// Σ_{j∈e1, k∈e2} (1 + λ cos θ_jik) h_j h_k = S₁S₂ + λ V₁·V₂                 (e1 ≠ e2)
/// Σ_{j<k, both ∈ e} (1 + λ cos θ_jik) h_j h_k = ½(S² − Q) + ½λ(|V|² − Q)    (e1 = e2)
/// ```
///
/// the same sums as the pair kernels up to rounding, in O(neighbours) instead of O(neighbours²)
/// (the idea of moment-tensor descriptors; with ζ > 1 the moments would be tensors of rank ζ).
/// The prefactor 2^(1−ζ) is 1. Adds the values into `acc`.
fn wide_values<T: Real>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    acc: &mut [T],
) {
    for c in 0..plan.channels.min(MAX_CHANNELS) {
        let (a, b) = Moments::of_group(g, nb, slots, c, cache);
        let (base, cross) = if g.e1 == g.e2 {
            (T::HALF * (a.s * a.s - a.q), T::HALF * (a.dot(&a) - a.q))
        } else {
            (a.s * b.s, a.dot(&b))
        };
        for (s, x) in acc.iter_mut().enumerate().take(plan.n) {
            let (cs, _, lambda) = plan.function(s);
            if cs == c {
                *x += base + lambda * cross;
            }
        }
    }
}

/// Gradients of [`wide_values`]: with multipliers m_s, M₀ = Σ_{s∈c} m_s and M₁ = Σ_{s∈c} m_s λ_s
/// per channel, neighbour j of block e1 (partner sums S′, V′ of block e2, or of the same block
/// without j) gets
///
/// ```text
/// ∂/∂d_j = [M₀ S′ h′_j + M₁ (h′_j − h_j/r_j)(u_j·V′)] u_j + M₁ (h_j/r_j) V′
/// ```
///
/// (V′ − (u_j·V′) u_j does not depend on whether j's own term is in V′). Adds into `work`.
fn wide_forces<T: Real>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    m: &[T],
    work: &mut WorkLanes<'_, T>,
) {
    let cap = nb.r.len();
    let (r1, r2) = (nb.range(g.e1), nb.range(g.e2));
    for c in 0..plan.channels.min(MAX_CHANNELS) {
        let (mut m0, mut m1) = (T::ZERO, T::ZERO);
        for (s, &ms) in m.iter().enumerate().take(plan.n) {
            let (cs, _, lambda) = plan.function(s);
            if cs == c {
                m0 += ms;
                m1 += ms * lambda;
            }
        }
        let (a, b) = Moments::of_group(g, nb, slots, c, cache);
        if g.e1 == g.e2 {
            wide_scatter(slots, cap, c, &r1, &a, true, (m0, m1), work);
        } else {
            wide_scatter(slots, cap, c, &r1, &b, false, (m0, m1), work);
            wide_scatter(slots, cap, c, &r2, &a, false, (m0, m1), work);
        }
    }
}

/// The gradient of [`wide_forces`] for the slots `range`, partner sums `o` (which hold each
/// slot's own term when `same`).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn wide_scatter<T: Real>(
    slots: &[T],
    cap: usize,
    c: usize,
    range: &core::ops::Range<usize>,
    o: &Moments<T>,
    same: bool,
    (m0, m1): (T, T),
    work: &mut WorkLanes<'_, T>,
) {
    let h = cut(part(slots, 4 + 2 * c, cap), range);
    let dh = cut(part(slots, 5 + 2 * c, cap), range);
    let (ux, uy, uz, inv) = (
        cut(part(slots, 0, cap), range),
        cut(part(slots, 1, cap), range),
        cut(part(slots, 2, cap), range),
        cut(part(slots, 3, cap), range),
    );
    let gx = work.gx.get_mut(range.clone()).unwrap_or(&mut []);
    let gy = work.gy.get_mut(range.clone()).unwrap_or(&mut []);
    let gz = work.gz.get_mut(range.clone()).unwrap_or(&mut []);
    let inputs = h.iter().zip(dh).zip(inv).zip(ux.iter().zip(uy).zip(uz));
    let outputs = gx.iter_mut().zip(gy.iter_mut()).zip(gz.iter_mut());
    for ((((&h, &dh), &ir), ((&x0, &y0), &z0)), ((x, y), z)) in inputs.zip(outputs) {
        let u = [x0, y0, z0];
        let p = u[0] * o.v[0] + u[1] * o.v[1] + u[2] * o.v[2];
        // Without j's own term: S′ = S − h_j, u_j·V′ = u_j·V − h_j.
        let (s_o, p_o) = if same { (o.s - h, p - h) } else { (o.s, p) };
        let hr = h * ir;
        let radial = m0 * s_o * dh + m1 * (dh * p_o - hr * p);
        let tangent = m1 * hr;
        *x += radial * u[0] + tangent * o.v[0];
        *y += radial * u[1] + tangent * o.v[1];
        *z += radial * u[2] + tangent * o.v[2];
    }
}

/// Back-propagates multipliers `m` (prefactors included) of angular group `g` into the
/// neighbour gradient lanes of `work` (the force path: Σ_s m_s ∂G_s/∂d).
#[allow(clippy::too_many_arguments)]
pub(crate) fn angular_forces<T: Real, const W: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &mut [T],
    cache: &mut PairCache<'_, T>,
    m: &[T],
    work: &mut WorkLanes<'_, T>,
) {
    fill_channels::<T, W>(g, plan, nb, zs, slots, &mut cache.memo);
    if plan.moments {
        return wide_forces(g, plan, nb, slots, cache, m, work);
    }
    by_channels!(
        plan,
        angular_forces_nc(g, plan, nb, zs, slots, cache, m, work)
    );
}

#[allow(clippy::too_many_arguments)]
fn angular_forces_nc<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    m: &[T],
    work: &mut WorkLanes<'_, T>,
) {
    if W == 1 && NC == 1 {
        return angular_forces_single(g, plan, nb, zs, slots, cache, m, work);
    }
    if W == 1 {
        return angular_forces_one::<T, W, NC>(g, plan, nb, zs, slots, cache, m, work);
    }
    if g.kind.is_narrow() {
        return narrow::forces::<T, W, NC>(g, plan, nb, zs, slots, cache, m, work);
    }
    // Q_c = Σ m_s P_s and Q′_c = Σ m_s P′_s over the functions of channel c, as one polynomial
    // in cos θ per channel (see `poly::Poly`).
    let poly = poly::Poly::new(plan, live::<T, NC>(plan), m);
    for_each_batch::<T, W, NC>(g, plan, nb, zs, slots, cache, |row, b| {
        let mut a = [[T::ZERO; W]; 4];
        for c in 0..live::<T, NC>(plan) {
            let (hj, dhj) = (row.h[c], row.dh[c]);
            let (q, qp) = &poly.eval(c, &b.cos);
            let (hk, dhk, hjk, dhjk) = (&b.h[c], &b.dh[c], &b.hjk[c], &b.dhjk[c]);
            a[0] = lanes!(l => a[0][l] + q[l] * dhj * hk[l] * hjk[l]);
            a[1] = lanes!(l => a[1][l] + q[l] * hj * dhk[l] * hjk[l]);
            a[2] = lanes!(l => a[2][l] + q[l] * hj * hk[l] * dhjk[l]);
            a[3] = lanes!(l => a[3][l] + qp[l] * hj * hk[l] * hjk[l]);
        }
        let [a_ij, a_ik, a_jk, a_c] = a;
        let cj: [T; W] = lanes!(l => a_c[l] * row.inv_r);
        let ck: [T; W] = lanes!(l => a_c[l] * b.inv_r[l]);
        // ∂cos/∂d_ij = (u_k − cos u_j)/r_ij; ∂r_jk/∂d_ij = −u_jk; ∂r_jk/∂d_ik = u_jk.
        let gj: [[T; W]; 3] = rows!(3, x => lanes!(l => a_ij[l] * row.u[x] - a_jk[l] * b.ujk[x][l]
            + cj[l] * (b.u[x][l] - b.cos[l] * row.u[x])));
        let gk: [[T; W]; 3] = rows!(3, x => lanes!(l => a_ik[l] * b.u[x][l] + a_jk[l] * b.ujk[x][l]
            + ck[l] * (row.u[x] - b.cos[l] * b.u[x][l])));
        for (lane, (gjx, gkx)) in [&mut *work.gx, &mut *work.gy, &mut *work.gz]
            .into_iter()
            .zip(gj.iter().zip(gk))
        {
            if let Some(x) = lane.get_mut(row.j) {
                let mut t = T::ZERO;
                for &v in gjx {
                    t += v;
                }
                *x += t;
            }
            add_lanes(lane, b.k, b.end, gkx);
        }
    });
}

/// [`angular_forces_nc`] for one lane (`W` = 1): the same arithmetic in the same order on
/// scalars (lane 0 of each batch), with the three gradient components written straight into
/// their lanes instead of through lane arrays and masked stores.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn angular_forces_one<T: Real, const W: usize, const NC: usize>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    m: &[T],
    work: &mut WorkLanes<'_, T>,
) {
    let n = plan.n.min(MAX_FUNCTIONS).min(m.len());
    let nc = live::<T, NC>(plan);
    let (gx, gy, gz) = (&mut *work.gx, &mut *work.gy, &mut *work.gz);
    for_each_batch::<T, W, NC>(g, plan, nb, zs, slots, cache, |row, b| {
        let cos = b.cos[0];
        // Q_c = Σ m_s P_s and Q′_c = Σ m_s P′_s over the functions of channel c.
        let mut q = [T::ZERO; NC];
        let mut qp = [T::ZERO; NC];
        for (s, &ms) in m.iter().enumerate().take(n) {
            let (c, zeta, lambda) = plan.function(s);
            let scale = ms * T::from_usize(zeta as usize) * lambda;
            if let (Some(q), Some(qp)) = (q.get_mut(c), qp.get_mut(c)) {
                let (a, b) = force_terms(cos, zeta, lambda, ms, scale);
                *q += a;
                *qp += b;
            }
        }
        let (mut a_ij, mut a_ik, mut a_jk, mut a_c) = (T::ZERO, T::ZERO, T::ZERO, T::ZERO);
        for c in 0..nc.min(NC) {
            let (hj, dhj) = (row.h[c], row.dh[c]);
            let (q, qp) = (q[c], qp[c]);
            let (hk, dhk, hjk, dhjk) = (b.h[c][0], b.dh[c][0], b.hjk[c][0], b.dhjk[c][0]);
            a_ij += q * dhj * hk * hjk;
            a_ik += q * hj * dhk * hjk;
            a_jk += q * hj * hk * dhjk;
            a_c += qp * hj * hk * hjk;
        }
        let cj = a_c * row.inv_r;
        let ck = a_c * b.inv_r[0];
        // ∂cos/∂d_ij = (u_k − cos u_j)/r_ij; ∂r_jk/∂d_ij = −u_jk; ∂r_jk/∂d_ik = u_jk.
        let (uj, uk, ujk) = (row.u, [b.u[0][0], b.u[1][0], b.u[2][0]], b.ujk);
        let gj = |x: usize| a_ij * uj[x] - a_jk * ujk[x][0] + cj * (uk[x] - cos * uj[x]);
        let gk = |x: usize| a_ik * uk[x] + a_jk * ujk[x][0] + ck * (uj[x] - cos * uk[x]);
        // Written out per component: loops over three lanes do not unroll at opt-level "s".
        if let (Some(x), Some(y), Some(z)) =
            (gx.get_mut(row.j), gy.get_mut(row.j), gz.get_mut(row.j))
        {
            *x += T::ZERO + gj(0);
            *y += T::ZERO + gj(1);
            *z += T::ZERO + gj(2);
        }
        if let (Some(x), Some(y), Some(z)) = (gx.get_mut(b.k), gy.get_mut(b.k), gz.get_mut(b.k)) {
            *x += gk(0);
            *y += gk(1);
            *z += gk(2);
        }
    });
}

/// Reals of a pair record of the one-channel single-lane kernels: j and k (as reals, exact
/// below 2^24), cos θ_jik, h = h_j h_k h_jk, the vectors A_j, B_j, A_k, B_k of
/// [`pair_record`], and one real of force-pass scratch.
pub(crate) const RECORD: usize = 17;
/// Positions in a record: cos θ, h (q in the force pass), and q′ (force pass).
const R_COS: usize = 2;
const R_H: usize = 3;
const R_QP: usize = 16;

/// One neighbour's share of a pair record: unit vector, 1/r, h and h′ of the group's channel.
#[derive(Clone, Copy)]
struct Side<T> {
    u: [T; 3],
    inv: T,
    h: T,
    dh: T,
}

/// Writes the record of pair (j, k) of a one-channel group into `out`. With h = h_j h_k h_jk,
/// the gradients of Σ_s m_s P_s(cos θ)·h are q·A + q′·B with q = Σ_s m_s P_s and
/// q′ = Σ_s m_s P′_s: A_j = h_j′h_k h_jk u_j − h_j h_k h_jk′ u_jk, B_j = h (u_k − cos θ u_j)/r_ij,
/// A_k = h_j h_k′h_jk u_k + h_j h_k h_jk′ u_jk, B_k = h (u_j − cos θ u_k)/r_ik (u_jk and h_jk′
/// zero for the wide kinds). The value pass stores records; the force pass only combines them.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pair_record<T: Real>(
    (j, sj): (usize, &Side<T>),
    (k, sk): (usize, &Side<T>),
    cos: T,
    (hjk, dhjk, ujk): (T, T, [T; 3]),
    out: &mut [T; RECORD],
) {
    let (uj, uk) = (sj.u, sk.u);
    let hh = sj.h * sk.h * hjk;
    let (aj, ak, ajk) = (sj.dh * sk.h * hjk, sj.h * sk.dh * hjk, sj.h * sk.h * dhjk);
    let (bj, bk) = (hh * sj.inv, hh * sk.inv);
    *out = [
        T::from_usize(j),
        T::from_usize(k),
        cos,
        hh,
        aj * uj[0] - ajk * ujk[0],
        aj * uj[1] - ajk * ujk[1],
        aj * uj[2] - ajk * ujk[2],
        bj * (uk[0] - cos * uj[0]),
        bj * (uk[1] - cos * uj[1]),
        bj * (uk[2] - cos * uj[2]),
        ak * uk[0] + ajk * ujk[0],
        ak * uk[1] + ajk * ujk[1],
        ak * uk[2] + ajk * ujk[2],
        bk * (uj[0] - cos * uk[0]),
        bk * (uj[1] - cos * uk[1]),
        bk * (uj[2] - cos * uk[2]),
        T::ZERO,
    ];
}

/// The pair walk of the one-channel single-lane kernels: the pairs of [`for_each_pair`] in its
/// order, each made into a [`pair_record`]. From pair `skip` + 1 on, a record goes into `cache`
/// at its cursor when `store` is set and it fits (the stored records are then a prefix from
/// `body`), else to `spill` with the stored prefix. Returns (pairs, stored).
///
/// Written for microcontrollers: each block of k neighbours is cut once into exact slices and
/// zipped, the row's neighbour j held in registers, and nothing but the record is built per
/// pair (the generic walk's lane structures cost ~200 instructions a pair there).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn walk_records<'s, T: Real>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'s, T>,
    zs: &[T],
    slots: &'s [T],
    cache: &mut PairCache<'_, T>,
    (store, skip, body): (bool, usize, usize),
    mut spill: impl FnMut(&[T; RECORD], &[T]),
) -> (usize, usize) {
    let cap = nb.r.len();
    let rc = g.cutoff.rc();
    let narrow = g.kind.is_narrow();
    let SlotView { u, inv, h, dh } = SlotView::<T, 1>::new(slots, cap, plan.channels);
    let [u0, u1, u2] = u;
    let (h0, dh0) = (h[0], dh[0]);
    let weighted = g.kind.is_weighted();
    let species = if weighted { zs.len() } else { 1 };
    let (mut pairs, mut stored) = (0usize, 0usize);
    for a in 0..species {
        for b in a..species {
            let (a, b) = if weighted { (a, b) } else { (g.e1, g.e2) };
            let (ra, rb) = (nb.range(a), nb.range(b));
            // The k block cut once into slices of exactly `len` (checked once), which the pair
            // loop indexes without checks. Rows are short on a molecule (~1.3 pairs each for
            // ethanol), so per-row work counts as much as per-pair work.
            let c = |s: &'s [T]| s.get(rb.clone());
            let (Some(kx), Some(ky), Some(kz), Some(ki)) = (c(u0), c(u1), c(u2), c(inv)) else {
                continue;
            };
            let (Some(kh), Some(kdh)) = (c(h0), c(dh0)) else {
                continue;
            };
            let (Some(dx), Some(dy), Some(dz)) = (c(nb.dx), c(nb.dy), c(nb.dz)) else {
                continue;
            };
            let len = rb.len();
            // The j block likewise.
            let cj = |s: &'s [T]| s.get(ra.clone());
            let (Some(jx), Some(jy), Some(jz), Some(ji)) = (cj(u0), cj(u1), cj(u2), cj(inv)) else {
                continue;
            };
            let (Some(jh), Some(jdh), Some(jr)) = (cj(h0), cj(dh0), cj(nb.r)) else {
                continue;
            };
            let (Some(ex), Some(ey), Some(ez)) = (cj(nb.dx), cj(nb.dy), cj(nb.dz)) else {
                continue;
            };
            for (jj, j) in ra.clone().enumerate() {
                let (Some(&rj), Some(&xj), Some(&yj), Some(&zj)) =
                    (jr.get(jj), ex.get(jj), ey.get(jj), ez.get(jj))
                else {
                    break;
                };
                let (Some(&a0), Some(&a1), Some(&a2), Some(&aj)) =
                    (jx.get(jj), jy.get(jj), jz.get(jj), ji.get(jj))
                else {
                    break;
                };
                let (Some(&hj), Some(&dhj)) = (jh.get(jj), jdh.get(jj)) else {
                    break;
                };
                let sj = Side {
                    u: [a0, a1, a2],
                    inv: aj,
                    h: hj,
                    dh: dhj,
                };
                if rj >= rc {
                    continue;
                }
                let first = if a == b {
                    (j + 1).saturating_sub(rb.start)
                } else {
                    0
                };
                for i in first..len {
                    let k = rb.start + i;
                    let (Some(&ux), Some(&uy), Some(&uz), Some(&ik)) =
                        (kx.get(i), ky.get(i), kz.get(i), ki.get(i))
                    else {
                        break;
                    };
                    let (Some(&hk), Some(&dhk)) = (kh.get(i), kdh.get(i)) else {
                        break;
                    };
                    let (Some(&x), Some(&y), Some(&z)) = (dx.get(i), dy.get(i), dz.get(i)) else {
                        break;
                    };
                    pairs += 1;
                    if pairs <= skip {
                        continue;
                    }
                    let sk = Side {
                        u: [ux, uy, uz],
                        inv: ik,
                        h: hk,
                        dh: dhk,
                    };
                    let cos = sj.u[0] * ux + sj.u[1] * uy + sj.u[2] * uz;
                    let jk = if narrow {
                        let djk = [[x - xj], [y - yj], [z - zj]];
                        let (ir, hjk, dhjk) = jk_factors::<T, 1, 1>(g, plan, &djk);
                        let ujk = [djk[0][0] * ir[0], djk[1][0] * ir[0], djk[2][0] * ir[0]];
                        (hjk[0][0], dhjk[0][0], ujk)
                    } else {
                        (T::ONE, T::ZERO, [T::ZERO; 3])
                    };
                    let at_c = cache.cursor;
                    cache.cursor = at_c + RECORD;
                    let slot = match cache.buf.get_mut(at_c..at_c + RECORD) {
                        Some(s) if store && stored + skip + 1 == pairs => {
                            <&mut [T; RECORD]>::try_from(s).ok()
                        }
                        _ => None,
                    };
                    if let Some(out) = slot {
                        pair_record((j, &sj), (k, &sk), cos, jk, out);
                        cache.filled = at_c + RECORD;
                        stored += 1;
                    } else {
                        let mut rec = [T::ZERO; RECORD];
                        pair_record((j, &sj), (k, &sk), cos, jk, &mut rec);
                        let prefix = cache.buf.get(body..body + stored * RECORD);
                        spill(&rec, prefix.unwrap_or(&[]));
                    }
                }
            }
            if !weighted {
                return (pairs, stored);
            }
        }
    }
    (pairs, stored)
}

/// P_s(cos θ) = max(1 + λ cos θ, 0)^ζ of one function.
#[inline(always)]
fn angular_term<T: Real>(cos: T, zeta: u32, lambda: T) -> T {
    let base = (T::ONE + lambda * cos).max(T::ZERO);
    powu::<T, 1>([base], zeta)[0]
}

/// Adds P_s(cos)·h of every record to the sums, function by function (the function's
/// parameters and its sum stay in registers over the pairs).
#[inline(always)]
fn values_from_records<T: Real>(plan: &Plan<T>, records: &[T], sum: &mut [T], comp: &mut [T]) {
    for (s, (sm, cm)) in sum.iter_mut().zip(comp.iter_mut()).enumerate() {
        let (_, zeta, lambda) = plan.function(s);
        let (mut a, mut c) = (*sm, *cm);
        for r in records.chunks_exact(RECORD) {
            if let (Some(&cos), Some(&h)) = (r.get(R_COS), r.get(R_H)) {
                add(&mut a, &mut c, angular_term(cos, zeta, lambda) * h);
            }
        }
        (*sm, *cm) = (a, c);
    }
}

/// [`angular_values_nc`] for one lane and one channel (microcontrollers): [`walk_records`]
/// stores the group's pair count and a record per pair in `cache` while they fit; the sums
/// are then taken over the records function by function. Pairs whose records do not fit are
/// summed as they come, after the stored ones, so every sum adds the pairs in walk order
/// either way and the result does not depend on the cache size. The force pass
/// ([`angular_forces_single`]) combines the records instead of walking the geometry again.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn angular_values_single<T: Real>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    acc: &mut [T],
    comp: &mut [T],
) {
    let n = plan.n.min(MAX_FUNCTIONS);
    let (sum, comp) = sums_in(acc, comp, n);
    let head = cache.cursor;
    let body = head + 1;
    cache.cursor = body;
    let mut summed = false;
    let fill = cache.fill;
    let (count, stored) = walk_records(
        g,
        plan,
        nb,
        zs,
        slots,
        cache,
        (fill, 0, body),
        |rec, prefix| {
            if !summed {
                values_from_records(plan, prefix, sum, comp);
                summed = true;
            }
            for (s, (sm, cm)) in sum.iter_mut().zip(comp.iter_mut()).enumerate() {
                let (_, zeta, lambda) = plan.function(s);
                add(sm, cm, angular_term(rec[R_COS], zeta, lambda) * rec[R_H]);
            }
        },
    );
    if !summed {
        let records = cache.buf.get(body..body + stored * RECORD);
        values_from_records(plan, records.unwrap_or(&[]), sum, comp);
    }
    if let (true, Some(x)) = (fill, cache.buf.get_mut(head)) {
        *x = T::from_usize(count);
        cache.filled = cache.filled.max(head + 1);
    }
    finish_sums(sum, comp);
}

/// One function's contributions to q and q′ at cos θ: m_s·base^(ζ−1)·base and, where the pair
/// is not clipped, (m_s ζ λ)·base^(ζ−1).
#[inline(always)]
fn force_terms<T: Real>(cos: T, zeta: u32, lambda: T, ms: T, scale: T) -> (T, T) {
    let raw = T::ONE + lambda * cos;
    let base = raw.max(T::ZERO);
    let pm1 = powu::<T, 1>([base], zeta - 1)[0];
    (
        ms * pm1 * base,
        if raw > T::ZERO { scale * pm1 } else { T::ZERO },
    )
}

/// Adds q·A + q′·B of a record to the gradient lanes of its j and k.
#[inline(always)]
fn scatter_record<T: Real>(work: &mut WorkLanes<'_, T>, rec: &[T; RECORD], q: T, qp: T) {
    let (j, k) = (rec[0].to_u32() as usize, rec[1].to_u32() as usize);
    let (gx, gy, gz) = (&mut *work.gx, &mut *work.gy, &mut *work.gz);
    if let (Some(x), Some(y), Some(z)) = (gx.get_mut(j), gy.get_mut(j), gz.get_mut(j)) {
        *x += q * rec[4] + qp * rec[7];
        *y += q * rec[5] + qp * rec[8];
        *z += q * rec[6] + qp * rec[9];
    }
    if let (Some(x), Some(y), Some(z)) = (gx.get_mut(k), gy.get_mut(k), gz.get_mut(k)) {
        *x += q * rec[10] + qp * rec[13];
        *y += q * rec[11] + qp * rec[14];
        *z += q * rec[12] + qp * rec[15];
    }
}

/// [`angular_forces_nc`] for one lane and one channel: q and q′ of every stored record,
/// function by function, then the gradients q·A + q′·B in pair order; pairs whose records did
/// not fit are recomputed afterwards by the value pass's walk and record code, so the result
/// does not depend on the cache size.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn angular_forces_single<T: Real>(
    g: &Group<'_, T>,
    plan: &Plan<T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    cache: &mut PairCache<'_, T>,
    m: &[T],
    work: &mut WorkLanes<'_, T>,
) {
    let n = plan.n.min(MAX_FUNCTIONS).min(m.len());
    let head = cache.cursor;
    let body = head + 1;
    // The group's pair count, when the value pass stored it.
    let count = match cache.buf.get(head) {
        Some(&c) if !cache.fill && head < cache.filled => Some(c.to_u32() as usize),
        _ => None,
    };
    let stored = match count {
        Some(c) => (cache.filled.saturating_sub(body) / RECORD).min(c),
        None => 0,
    };
    let records = cache
        .buf
        .get_mut(body..body + stored * RECORD)
        .unwrap_or(&mut []);
    // q over the h slot (no longer needed), q′ in the scratch slot; each summed over s in order.
    for r in records.chunks_exact_mut(RECORD) {
        if let Ok(r) = <&mut [T; RECORD]>::try_from(r) {
            (r[R_H], r[R_QP]) = (T::ZERO, T::ZERO);
        }
    }
    for (s, &ms) in m.iter().enumerate().take(n) {
        let (_, zeta, lambda) = plan.function(s);
        let scale = ms * T::from_usize(zeta as usize) * lambda;
        for r in records.chunks_exact_mut(RECORD) {
            if let Ok(r) = <&mut [T; RECORD]>::try_from(r) {
                let (a, b) = force_terms(r[R_COS], zeta, lambda, ms, scale);
                r[R_H] += a;
                r[R_QP] += b;
            }
        }
    }
    for r in records.chunks_exact(RECORD) {
        if let Ok(rec) = <&[T; RECORD]>::try_from(r) {
            scatter_record(work, rec, rec[R_H], rec[R_QP]);
        }
    }
    let mut seen = stored;
    if count != Some(stored) {
        // The rest, recomputed by the value pass's walk and record code.
        let (pairs, _) = walk_records(
            g,
            plan,
            nb,
            zs,
            slots,
            cache,
            (false, stored, body),
            |rec, _| {
                let (mut q, mut qp) = (T::ZERO, T::ZERO);
                for (s, &ms) in m.iter().enumerate().take(n) {
                    let (_, zeta, lambda) = plan.function(s);
                    let scale = ms * T::from_usize(zeta as usize) * lambda;
                    let (a, b) = force_terms(rec[R_COS], zeta, lambda, ms, scale);
                    q += a;
                    qp += b;
                }
                scatter_record(work, rec, q, qp);
            },
        );
        seen = pairs;
    }
    cache.cursor = body + seen * RECORD;
}

/// Adds the values of radial group `g` into `acc`; `comp` (≥ `g.n` long) is scratch. With one
/// lane, also stores each neighbour's force factors in `cache` (see [`radial_values_one`]).
pub(crate) fn radial_values<T: Real, const W: usize>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    acc: &mut [T],
    comp: &mut [T],
    cache: &mut PairCache<'_, T>,
) {
    if W == 1 {
        return radial_values_one(g, nb, zs, acc, comp, cache);
    }
    let rc = g.cutoff.rc();
    let (eta, rs) = (g.lane(0), g.lane(1));
    let mut sums = LaneSums::<T, W>::new();
    for (e, w) in blocks(g, zs) {
        let range = nb.range(e);
        let mut k = range.start;
        while k < range.end {
            let r = load::<T, W>(nb.r, k, range.end, rc);
            let (f, _) = g.cutoff.eval_lanes(r);
            let fw: [T; W] = lanes!(l => f[l] * w);
            for (s, (&e, &r0)) in eta.iter().zip(rs).enumerate() {
                sums.add(
                    s,
                    lanes!(l => (-e * (r[l] - r0) * (r[l] - r0)).exp_nonpos() * fw[l]),
                );
            }
            k += W;
        }
    }
    sums.reduce(acc);
}

/// Back-propagates multipliers `m` of radial group `g` into the neighbour gradient lanes.
pub(crate) fn radial_forces<T: Real, const W: usize>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    slots: &[T],
    m: &[T],
    work: &mut WorkLanes<'_, T>,
    cache: &mut PairCache<'_, T>,
) {
    if W == 1 {
        return radial_forces_one(g, nb, zs, slots, m, work, cache);
    }
    let cap = nb.r.len();
    let rc = g.cutoff.rc();
    let (eta, rs) = (g.lane(0), g.lane(1));
    let u = [
        part(slots, 0, cap),
        part(slots, 1, cap),
        part(slots, 2, cap),
    ];
    for (e, w) in blocks(g, zs) {
        let range = nb.range(e);
        let mut k = range.start;
        while k < range.end {
            let r = load::<T, W>(nb.r, k, range.end, rc);
            let (f, df) = g.cutoff.eval_lanes(r);
            let mut coef = [T::ZERO; W];
            for ((&e, &r0), &ms) in eta.iter().zip(rs).zip(m) {
                let mw = ms * w;
                coef = lanes!(l => {
                    let x = r[l] - r0;
                    coef[l] + mw * (-e * x * x).exp_nonpos() * (df[l] - T::TWO * e * x * f[l])
                });
            }
            for (lane, u) in [&mut *work.gx, &mut *work.gy, &mut *work.gz]
                .into_iter()
                .zip(u)
            {
                let uk = load::<T, W>(u, k, range.end, T::ZERO);
                add_lanes(lane, k, range.end, lanes!(l => coef[l] * uk[l]));
            }
            k += W;
        }
    }
}

/// [`radial_values`] for one lane (`W` = 1): the same arithmetic in the same order, each block
/// walked as a slice (no lane masks, no bounds checks per neighbour or function). Each
/// neighbour's factors t_s = e^(−η_s x²)·(f_c′ − 2η_s x f_c) go to `cache` (a record of `g.n`
/// reals, while it fits), so that the force pass needs neither the cutoff nor the exponentials
/// again; [`radial_forces_one`] computes the same t_s where the cache ran out.
fn radial_values_one<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    zs: &[T],
    acc: &mut [T],
    comp: &mut [T],
    cache: &mut PairCache<'_, T>,
) {
    let (eta, rs) = (g.lane(0), g.lane(1));
    let (sum, comp) = sums_in(acc, comp, g.n);
    let size = g.n;
    for (e, w) in blocks(g, zs) {
        for &r in nb.r.get(nb.range(e)).unwrap_or(&[]) {
            let (f, df) = g.cutoff.eval_lanes([r]);
            let (f, df) = (f[0], df[0]);
            let fw = f * w;
            let record = match cache.next(size) {
                Record::Fill(s) => s,
                _ => &mut [],
            };
            let mut out = record.iter_mut();
            let terms = eta.iter().zip(rs).zip(sum.iter_mut().zip(comp.iter_mut()));
            for ((&e, &r0), (s, c)) in terms {
                let x = r - r0;
                let ex = (-e * x * x).exp_nonpos();
                add(s, c, ex * fw);
                if let Some(t) = out.next() {
                    *t = ex * (df - T::TWO * e * x * f);
                }
            }
        }
    }
    finish_sums(sum, comp);
}

/// [`radial_forces`] for one lane (`W` = 1): the same arithmetic in the same order, each block
/// walked as zipped slices, with the factors the value pass left in `cache`.
fn radial_forces_one<'s, T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'s, T>,
    zs: &[T],
    slots: &'s [T],
    m: &[T],
    work: &mut WorkLanes<'_, T>,
    cache: &mut PairCache<'_, T>,
) {
    let cap = nb.r.len();
    let (eta, rs) = (g.lane(0), g.lane(1));
    let size = g.n;
    for (e, w) in blocks(g, zs) {
        let range = nb.range(e);
        let get = |s: &'s [T]| s.get(range.clone()).unwrap_or(&[]);
        let (r, ux, uy, uz) = (
            get(nb.r),
            get(part(slots, 0, cap)),
            get(part(slots, 1, cap)),
            get(part(slots, 2, cap)),
        );
        let gx = work.gx.get_mut(range.clone()).unwrap_or(&mut []);
        let gy = work.gy.get_mut(range.clone()).unwrap_or(&mut []);
        let gz = work.gz.get_mut(range.clone()).unwrap_or(&mut []);
        let geo = r.iter().zip(ux).zip(uy).zip(uz);
        let out = gx.iter_mut().zip(gy.iter_mut()).zip(gz.iter_mut());
        for ((((&r, &ux), &uy), &uz), ((gx, gy), gz)) in geo.zip(out) {
            let mut coef = T::ZERO;
            match cache.next(size) {
                Record::Stored(record) => {
                    for (&t, &ms) in record.iter().zip(m) {
                        coef += ms * w * t;
                    }
                }
                _ => {
                    let (f, df) = g.cutoff.eval_lanes([r]);
                    let (f, df) = (f[0], df[0]);
                    for ((&e, &r0), &ms) in eta.iter().zip(rs).zip(m) {
                        let x = r - r0;
                        let t = (-e * x * x).exp_nonpos() * (df - T::TWO * e * x * f);
                        coef += ms * w * t;
                    }
                }
            }
            *gx += coef * ux;
            *gy += coef * uy;
            *gz += coef * uz;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The batched kernels against their reference twins ([`super::super::radial`],
    //! [`super::super::angular`]), for several batch widths, both precisions, every Gaussian
    //! kind and every cutoff function.
    use super::*;
    use crate::cutoff::{Cutoff, CutoffKind};
    use crate::descriptor::{backprop, WeightedSink};
    use crate::neighbors::NeighborSet;

    /// A small deterministic generator (tests only).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The (η, r_s) channels of the test groups.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Channels {
        /// Three, with two r_s.
        Three,
        /// Three with one r_s and η in ratios 1 : 3 : 7 (the shared-exponential path).
        Shared,
        /// One (the one-channel single-lane kernels, with pair records, at W = 1).
        One,
    }

    /// The ζ of the test groups' functions (function s has the (s mod 4)-th).
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Zetas {
        /// 1, 2, 4, 16: with three channels, polynomials of degree 16, 2 and 4 in the force
        /// passes (`poly::Poly`).
        Low,
        /// 1, 2, 6, 24: degrees 24 (the general Horner loop), 2 and 6.
        High,
        /// All 1 (the moment path of the wide kind; degree 1).
        One,
    }

    /// Parameter lanes (η, r_s, ζ, λ) of `n` functions.
    fn params<T: Real>(n: usize, angular: bool, channels: Channels, zetas: Zetas) -> [Vec<T>; 4] {
        let (eta, rs) = match channels {
            Channels::Three => ([0.01, 0.3, 0.07], [0.0, 0.0, 1.1]),
            Channels::Shared => ([0.01, 0.03, 0.07], [0.0; 3]),
            Channels::One => ([0.03; 3], [0.0; 3]),
        };
        let zeta = match zetas {
            Zetas::Low => [1.0, 2.0, 4.0, 16.0],
            Zetas::High => [1.0, 2.0, 6.0, 24.0],
            Zetas::One => [1.0; 4],
        };
        let f = |x: f64| T::from_f64(x);
        [
            (0..n).map(|s| f(eta[s % 3])).collect(),
            (0..n).map(|s| f(rs[s % 3])).collect(),
            (0..n)
                .map(|s| f(if angular { zeta[s % 4] } else { 0.0 }))
                .collect(),
            (0..n)
                .map(|s| f(if s % 2 == 0 { 1.0 } else { -1.0 }))
                .collect(),
        ]
    }

    /// Neighbour slots of the fixtures below.
    const CAP: usize = 48;

    /// 40 neighbours of three species, some beyond the 4.5 Å group cutoff, in `reals`/`idx`
    /// (12·CAP and 3·CAP long).
    fn neighbours<'w, T: Real>(
        seed: u64,
        reals: &'w mut [T],
        idx: &'w mut [u32],
    ) -> NeighborSet<'w, T> {
        let mut rng = Lcg(seed);
        let mut nb = NeighborSet::new(CAP, reals, idx).unwrap();
        for i in 0..40u32 {
            let d: [f64; 3] = core::array::from_fn(|_| 2.0 * rng.next() - 1.0);
            let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
            let len = 0.8 + 4.4 * rng.next();
            let d = d.map(|x| T::from_f64(x / r * len));
            assert!(nb.push((i % 3) as u8, i, d));
        }
        nb.finish();
        nb
    }

    fn check<T: Real, const W: usize>(tol_v: f64, tol_g: f64) {
        let (mut reals, mut idx) = (vec![T::ZERO; 12 * CAP], vec![0u32; 3 * CAP]);
        let mut nb = neighbours::<T>(7, &mut reals, &mut idx);
        let zs = [T::ONE, T::from_f64(6.0), T::from_f64(8.0)];
        let mut slots = vec![T::ZERO; slot_reals(MAX_CHANNELS) * CAP];
        let mut pairs = vec![T::ZERO; pair_cache_reals(CAP, MAX_CHANNELS, 64)];
        let n = 7;
        let index: Vec<u8> = (0..n as u32).flat_map(|s| s.to_le_bytes()).collect();
        // Multipliers whose sums over each λ do not cancel (with one channel and ζ = 1 the
        // functions differ only in λ).
        let m: Vec<T> = (0..n).map(|s| T::from_f64(0.35 - 0.1 * s as f64)).collect();
        use DescriptorKind::*;
        let kinds = [
            Radial,
            RadialWeighted,
            AngularNarrow,
            AngularWide,
            AngularNarrowWeighted,
        ];
        let modes = [Channels::Three, Channels::Shared, Channels::One];
        // (One channel means identical radial functions, whose m-weighted gradients cancel.)
        let cases = kinds
            .into_iter()
            .flat_map(|k| modes.map(|c| (k, c)))
            .filter(|(k, c)| k.is_angular() || *c != Channels::One)
            .flat_map(|(k, c)| [Zetas::Low, Zetas::High, Zetas::One].map(|z| (k, c, z)))
            .filter(|(k, _, z)| k.is_angular() || *z == Zetas::Low);
        for (kind, channels, zetas) in cases {
            let shared = channels == Channels::Shared;
            let p = params::<T>(n, kind.is_angular(), channels, zetas);
            let lanes: Vec<T> = p.iter().take(kind.n_params()).flatten().copied().collect();
            for ck in CutoffKind::ALL {
                for (e1, e2) in [(0, 0), (1, 2), (2, 2)] {
                    let g = Group {
                        kind,
                        cutoff: Cutoff::new(ck, T::from_f64(4.5), T::from_f64(0.2)),
                        compact: None,
                        e1,
                        e2: if kind.is_angular() { e2 } else { e1 },
                        n,
                        params: &lanes,
                        out: &index,
                    };
                    let plan = Plan::new(&g).unwrap();
                    assert_eq!(
                        plan.eta0 > T::ZERO,
                        shared && kind.is_angular() && !plan.moments
                    );
                    assert_eq!(plan.moments, kind == AngularWide && zetas == Zetas::One);
                    let what = format!("{kind:?} {ck:?} ({e1}, {e2}) W {W} {channels:?} {zetas:?}");
                    let (lanes_nb, mut work) = nb.lanes();
                    // Values.
                    let (mut want, mut got) = (vec![T::ZERO; n], vec![T::ZERO; n]);
                    let mut comp = vec![T::ZERO; n];
                    fill_geometry(&lanes_nb, &mut slots);
                    let mut cache = PairCache::for_values(&mut pairs);
                    if kind.is_angular() {
                        crate::descriptor::angular::values(
                            &g, &lanes_nb, &mut work, &zs, &mut want, &mut comp,
                        );
                        angular_values::<T, W>(
                            &g, &plan, &lanes_nb, &zs, &mut slots, &mut cache, &mut got, &mut comp,
                        );
                    } else {
                        crate::descriptor::radial::values(&g, &lanes_nb, &zs, &mut want, &mut comp);
                        radial_values::<T, W>(&g, &lanes_nb, &zs, &mut got, &mut comp, &mut cache);
                    }
                    let filled = cache.filled();
                    let scale = want.iter().fold(1e-30, |a, x| a.max(x.to_f64().abs()));
                    for (s, (a, b)) in got.iter().zip(&want).enumerate() {
                        let err = (a.to_f64() - b.to_f64()).abs() / scale;
                        assert!(err <= tol_v, "{what} value {s}: {a} vs {b}");
                    }
                    assert!(want.iter().any(|x| x.to_f64() != 0.0), "{what}: all zero");
                    // Forces: the reference sink, the batched kernel with the pair cache, and
                    // the batched kernel recomputing every pair (bit-identical to the cached).
                    let mut run = |batched: bool, filled: usize| -> Vec<T> {
                        for l in [&mut *work.gx, &mut *work.gy, &mut *work.gz] {
                            l.iter_mut().for_each(|x| *x = T::ZERO);
                        }
                        if batched {
                            let mut cache =
                                PairCache::for_forces(&mut pairs, filled, ChannelMemo::empty());
                            if kind.is_angular() {
                                angular_forces::<T, W>(
                                    &g, &plan, &lanes_nb, &zs, &mut slots, &mut cache, &m,
                                    &mut work,
                                );
                            } else {
                                radial_forces::<T, W>(
                                    &g, &lanes_nb, &zs, &slots, &m, &mut work, &mut cache,
                                );
                            }
                        } else {
                            let WorkLanes {
                                gx,
                                gy,
                                gz,
                                fc,
                                dfc,
                            } = &mut work;
                            let mut sink = WeightedSink::new(gx, gy, gz);
                            let mut c = WorkLanes {
                                gx: &mut [],
                                gy: &mut [],
                                gz: &mut [],
                                fc,
                                dfc,
                            };
                            backprop(&g, &lanes_nb, &mut c, &zs, &m, &mut sink);
                        }
                        [&*work.gx, &*work.gy, &*work.gz]
                            .iter()
                            .flat_map(|l| l.to_vec())
                            .collect()
                    };
                    let want = run(false, 0);
                    let cached = run(true, filled);
                    let fresh = run(true, 0);
                    let part = run(true, filled / 2);
                    assert_eq!(cached, fresh, "{what}: cached and recomputed differ");
                    assert_eq!(cached, part, "{what}: cached and half-cached differ");
                    let scale = want.iter().fold(1e-30, |a, x| a.max(x.to_f64().abs()));
                    assert!(scale > 1e-6, "{what}: gradients cancel ({scale})");
                    for (k, (a, b)) in cached.iter().zip(&want).enumerate() {
                        let err = (a.to_f64() - b.to_f64()).abs() / scale;
                        assert!(err <= tol_g, "{what} gradient {k}: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// `powu` against plain binary exponentiation from 1 (the products in the same order):
    /// the same bits for every exponent up to 64.
    #[test]
    fn powu_is_binary_exponentiation() {
        fn plain(b: f64, mut n: u32) -> f64 {
            let (mut acc, mut b) = (1.0, b);
            while n > 0 {
                if n & 1 == 1 {
                    acc *= b;
                }
                n >>= 1;
                b *= b;
            }
            acc
        }
        let bases = [0.0, 1e-3, 0.37, 0.999_999_9, 1.0, 1.3, 1.999, 2.0];
        for n in 0..=64 {
            let got = powu::<f64, 8>(bases, n);
            for (&b, g) in bases.iter().zip(got) {
                assert_eq!(g.to_bits(), plain(b, n).to_bits(), "{b}^{n}");
            }
        }
    }

    /// Groups with different channel sets, in turn (A, B, A, B), share one slot cache: the
    /// value pass computes each set once and keeps the other in the spare half, the force pass
    /// finds both there (`ChannelMemo`). Values and gradients are the bits of running each
    /// group with nothing kept.
    fn channel_sets_in_turn<T: Real, const W: usize>() {
        let (mut reals, mut idx) = (vec![T::ZERO; 12 * CAP], vec![0u32; 3 * CAP]);
        let mut nb = neighbours::<T>(11, &mut reals, &mut idx);
        let zs = [T::ONE, T::from_f64(6.0), T::from_f64(8.0)];
        let n = 7;
        let index: Vec<u8> = (0..n as u32).flat_map(|s| s.to_le_bytes()).collect();
        let m: Vec<T> = (0..n).map(|s| T::from_f64(0.35 - 0.1 * s as f64)).collect();
        let lanes = |c: Channels| -> Vec<T> {
            let p = params::<T>(n, true, c, Zetas::Low);
            p.iter().take(4).flatten().copied().collect()
        };
        let (three, shared) = (lanes(Channels::Three), lanes(Channels::Shared));
        let a = Group {
            kind: DescriptorKind::AngularNarrow,
            cutoff: Cutoff::new(CutoffKind::Cos, T::from_f64(4.5), T::from_f64(0.2)),
            compact: None,
            e1: 1,
            e2: 2,
            n,
            params: &three,
            out: &index,
        };
        let b = Group {
            e1: 0,
            e2: 1,
            params: &shared,
            ..a
        };
        let groups = [a, b, a, b];
        let plans: Vec<Plan<T>> = groups.iter().map(|g| Plan::new(g).unwrap()).collect();
        // Returns each group's values and the summed gradients, as bits.
        let mut run = |kept: bool| -> Vec<u64> {
            let (lanes_nb, mut work) = nb.lanes();
            for l in [&mut *work.gx, &mut *work.gy, &mut *work.gz] {
                l.iter_mut().for_each(|x| *x = T::ZERO);
            }
            let mut slots = vec![T::ZERO; slot_reals(MAX_CHANNELS) * CAP];
            let mut pairs = vec![T::ZERO; 4 * pair_cache_reals(CAP, MAX_CHANNELS, 64)];
            fill_geometry(&lanes_nb, &mut slots);
            let mut bits = Vec::new();
            let mut cache = PairCache::for_values(&mut pairs);
            for (g, plan) in groups.iter().zip(&plans) {
                if !kept {
                    cache.memo = ChannelMemo::empty();
                }
                let (mut acc, mut comp) = (vec![T::ZERO; n], vec![T::ZERO; n]);
                angular_values::<T, W>(
                    g, plan, &lanes_nb, &zs, &mut slots, &mut cache, &mut acc, &mut comp,
                );
                bits.extend(acc.iter().map(|x| x.to_f64().to_bits()));
            }
            let (filled, memo) = (cache.filled(), cache.memo());
            let mut cache = PairCache::for_forces(&mut pairs, filled, memo);
            for (g, plan) in groups.iter().zip(&plans) {
                if !kept {
                    cache.memo = ChannelMemo::empty();
                }
                angular_forces::<T, W>(
                    g, plan, &lanes_nb, &zs, &mut slots, &mut cache, &m, &mut work,
                );
            }
            for l in [&*work.gx, &*work.gy, &*work.gz] {
                bits.extend(l.iter().map(|x| x.to_f64().to_bits()));
            }
            bits
        };
        let (kept, fresh) = (run(true), run(false));
        assert!(kept.iter().any(|&b| f64::from_bits(b) != 0.0));
        assert_eq!(kept, fresh);
    }

    #[test]
    fn channel_sets_in_turn_f64() {
        channel_sets_in_turn::<f64, 8>();
        channel_sets_in_turn::<f64, 1>();
    }

    #[test]
    fn channel_sets_in_turn_f32() {
        channel_sets_in_turn::<f32, 8>();
        channel_sets_in_turn::<f32, 1>();
    }

    macro_rules! twins {
        ($($name:ident: $t:ty, $w:expr, $tv:expr, $tg:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    check::<$t, $w>($tv, $tg);
                }
            )*
        };
    }

    twins! {
        f64_one_lane: f64, 1, 1e-13, 1e-12;
        f64_three_lanes: f64, 3, 1e-13, 1e-12;
        f64_eight_lanes: f64, 8, 1e-13, 1e-12;
        f32_one_lane: f32, 1, 2e-6, 2e-5;
        f32_eight_lanes: f32, 8, 2e-6, 2e-5;
    }
}
