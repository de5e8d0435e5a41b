//! Atom-centred symmetry functions (ACSF), evaluated in **groups**: all functions of one central
//! species that share a kind, neighbour species, cutoff radius and cutoff (or compact) function. A
//! group runs one neighbour (or neighbour-pair) loop for all its functions, with the cutoff
//! factors computed once per neighbour and the parameters stored as structure-of-arrays lanes
//! (`eta[n]`, `rs[n]`, …), so the inner loop runs over contiguous lanes.
//!
//! Kinds (n2p2 type numbers as codes; `../shared/N2P2-FORMAT.md` has the exact maths):
//! - [`radial`]: G2 = Σ_j exp(−η(r_ij − r_s)²) f_c(r_ij) (Behler, J. Chem. Phys. 134, 074106
//!   (2011)), and its element-weighted twin (type 12, Gastegger et al., J. Chem. Phys. 148,
//!   241709 (2018)) with a factor Z_j over all neighbours;
//! - [`angular`]: G4 (narrow, type 3), G5 (wide, type 9) and the element-weighted narrow kind
//!   (type 13, × Z_j Z_k over all neighbour pairs);
//! - [`polynomial`]: the compact polynomial functions of Bircher et al., Mach. Learn.: Sci.
//!   Technol. 2, 035026 (2021): radial (20), narrow (21) and wide (22) angular, and their
//!   element-weighted twins (23, 24, 25), built from the compact functions of [`compact`].
//!
//! "Element-weighted" kinds have no neighbour species: they sum over every neighbour (pair) and
//! weigh each by the atomic number(s) of its species. The kernels walk the species' slot ranges
//! in turn with one weight per range (per pair of ranges), so the inner loops stay branch-free.
//!
//! The feature-vector layout is described in [`layout`].

pub mod angular;
pub mod batched;
pub mod compact;
pub mod layout;
#[cfg(feature = "polynomial")]
pub mod polynomial;
pub mod radial;

use crate::bytes::{u32_at, u8_at};
use crate::cutoff::{Cutoff, CutoffKind};
use crate::math::Real;
use crate::neighbors::{Lanes, WorkLanes};
use compact::CompactKind;

/// Kinds of symmetry function (n2p2 type numbers as codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[doc(alias = "symfunction_short")]
pub enum DescriptorKind {
    /// G2 radial, n2p2 type 2. Parameters: η, r_s.
    #[doc(alias = "G2")]
    Radial = 2,
    /// G4 narrow angular, n2p2 type 3. Parameters: η, r_s, ζ, λ.
    #[doc(alias = "G4")]
    AngularNarrow = 3,
    /// G5 wide angular, n2p2 type 9. Parameters: η, r_s, ζ, λ.
    #[doc(alias = "G5")]
    AngularWide = 9,
    /// Element-weighted radial, n2p2 type 12: Σ_j Z_j exp(−η(r_ij − r_s)²) f_c(r_ij) over all
    /// neighbours. Parameters: η, r_s.
    #[doc(alias = "wACSF")]
    RadialWeighted = 12,
    /// Element-weighted narrow angular, n2p2 type 13: G4 over all neighbour pairs, × Z_j Z_k.
    /// Parameters: η, r_s, ζ, λ.
    AngularNarrowWeighted = 13,
    /// Polynomial radial, n2p2 type 20: Σ_j C(r_ij; r_l, r_c), j of species e1.
    /// Parameter: r_l.
    PolyRadial = 20,
    /// Polynomial narrow angular, n2p2 type 21: Σ_{j<k} C(r_ij) C(r_ik) C(r_jk) A(θ_ijk).
    /// Parameters: r_l, θ_left, θ_right (radians).
    PolyAngularNarrow = 21,
    /// Polynomial wide angular, n2p2 type 22: Σ_{j<k} C(r_ij) C(r_ik) A(θ_ijk).
    /// Parameters: r_l, θ_left, θ_right (radians).
    PolyAngularWide = 22,
    /// Element-weighted polynomial radial, n2p2 type 23: Σ_j Z_j C(r_ij) over all neighbours.
    /// Parameter: r_l.
    PolyRadialWeighted = 23,
    /// Element-weighted polynomial narrow angular, n2p2 type 24: type 21 over all neighbour
    /// pairs, × Z_j Z_k. Parameters: r_l, θ_left, θ_right (radians).
    PolyAngularNarrowWeighted = 24,
    /// Element-weighted polynomial wide angular, n2p2 type 25: type 22 over all neighbour pairs,
    /// × Z_j Z_k. Parameters: r_l, θ_left, θ_right (radians).
    PolyAngularWideWeighted = 25,
}

impl DescriptorKind {
    /// All kinds, in code order.
    pub const ALL: [DescriptorKind; 11] = [
        DescriptorKind::Radial,
        DescriptorKind::AngularNarrow,
        DescriptorKind::AngularWide,
        DescriptorKind::RadialWeighted,
        DescriptorKind::AngularNarrowWeighted,
        DescriptorKind::PolyRadial,
        DescriptorKind::PolyAngularNarrow,
        DescriptorKind::PolyAngularWide,
        DescriptorKind::PolyRadialWeighted,
        DescriptorKind::PolyAngularNarrowWeighted,
        DescriptorKind::PolyAngularWideWeighted,
    ];

    /// The kind with code `code`.
    /// Without the `polynomial` feature (on by default) the polynomial kinds 20–25 are not
    /// compiled in and their codes are unknown, so a blob that uses them fails to load with
    /// `UnknownCode` instead of linking ~20 KB of kernels into firmware that does not need them.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.code() == code)
            .filter(|k| cfg!(feature = "polynomial") || !k.is_polynomial())
    }

    /// The code (n2p2 type number).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Parameter lanes per function in the blob: η, r_s [, ζ, λ] for the Gaussian kinds;
    /// r_l [, θ_left, θ_right] for the polynomial kinds.
    pub fn n_params(self) -> usize {
        use DescriptorKind::*;
        match self {
            Radial | RadialWeighted => 2,
            AngularNarrow | AngularWide | AngularNarrowWeighted => 4,
            PolyRadial | PolyRadialWeighted => 1,
            PolyAngularNarrow
            | PolyAngularWide
            | PolyAngularNarrowWeighted
            | PolyAngularWideWeighted => 3,
        }
    }

    /// True for the three-body kinds (sums over neighbour pairs).
    pub fn is_angular(self) -> bool {
        use DescriptorKind::*;
        !matches!(
            self,
            Radial | RadialWeighted | PolyRadial | PolyRadialWeighted
        )
    }

    /// True for the element-weighted kinds (12, 13, 23, 24, 25): no neighbour species, every
    /// neighbour weighted by its atomic number.
    pub fn is_weighted(self) -> bool {
        use DescriptorKind::*;
        matches!(
            self,
            RadialWeighted
                | AngularNarrowWeighted
                | PolyRadialWeighted
                | PolyAngularNarrowWeighted
                | PolyAngularWideWeighted
        )
    }

    /// True for the polynomial kinds (20–25): compact functions instead of the cutoff function
    /// (the group's cutoff byte holds a [`CompactKind`] code).
    pub fn is_polynomial(self) -> bool {
        self.code() >= 20
    }

    /// True for the narrow angular kinds (3, 13, 21, 24), which include the r_jk factor and need
    /// r_jk < r_c.
    pub fn is_narrow(self) -> bool {
        use DescriptorKind::*;
        matches!(
            self,
            AngularNarrow | AngularNarrowWeighted | PolyAngularNarrow | PolyAngularNarrowWeighted
        )
    }

    /// True for the kinds with ζ and the prefactor 2^(1−ζ) (3, 9, 13).
    pub fn has_zeta(self) -> bool {
        self.is_angular() && !self.is_polynomial()
    }
}

/// Size of a group record in the blob's `GRPS` section.
pub const GROUP_RECORD: usize = 24;

/// One group viewed in place (decoded from a validated blob).
#[derive(Clone, Copy)]
pub(crate) struct Group<'a, T> {
    pub kind: DescriptorKind,
    /// The cutoff function (Gaussian kinds); for the polynomial kinds only its radius is used.
    pub cutoff: Cutoff<T>,
    /// The compact-function subtype (polynomial kinds only).
    #[cfg_attr(not(feature = "polynomial"), allow(dead_code))]
    pub compact: Option<CompactKind>,
    /// Neighbour species (first and second; the second equals the first for radial kinds;
    /// unused by the element-weighted kinds).
    pub e1: usize,
    pub e2: usize,
    /// Functions in the group.
    pub n: usize,
    /// Parameter lanes, `n_params × n`.
    pub params: &'a [T],
    /// Feature index of each function: `n` little-endian `u32`.
    pub out: &'a [u8],
}

impl<'a, T: Real> Group<'a, T> {
    /// Decodes group record `g` of the `GRPS` section; `None` if out of range or malformed.
    /// Inlined: returned through an `Option` (and a `Result`), the record was copied twice by
    /// `memcpy`, which cost more than decoding it on a microcontroller.
    #[inline(always)]
    pub fn decode(groups: &[u8], index: &'a [u8], reals: &'a [T], g: usize) -> Option<Self> {
        let base = g.checked_mul(GROUP_RECORD)?;
        let kind = DescriptorKind::from_code(u8_at(groups, base)?)?;
        let code = u8_at(groups, base + 1)?;
        let (cutoff_kind, compact) = if kind.is_polynomial() {
            (CutoffKind::Hard, Some(CompactKind::from_code(code)?))
        } else {
            (CutoffKind::from_code(code)?, None)
        };
        let e1 = usize::from(u8_at(groups, base + 2)?);
        let e2 = usize::from(u8_at(groups, base + 3)?);
        let n = u32_at(groups, base + 4)? as usize;
        let r0 = u32_at(groups, base + 8)? as usize;
        let i0 = u32_at(groups, base + 12)? as usize;
        let head = reals.get(r0..r0.checked_add(2)?)?;
        let (rc, alpha) = (*head.first()?, *head.get(1)?);
        let p0 = r0 + 2;
        let params = reals.get(p0..p0.checked_add(n.checked_mul(kind.n_params())?)?)?;
        let out = index.get(i0.checked_mul(4)?..i0.checked_add(n)?.checked_mul(4)?)?;
        Some(Group {
            kind,
            cutoff: Cutoff::new(cutoff_kind, rc, alpha),
            compact,
            e1,
            e2: if kind.is_angular() { e2 } else { e1 },
            n,
            params,
            out,
        })
    }

    /// Parameter lane `k` (`n` values).
    #[inline(always)]
    pub fn lane(&self, k: usize) -> &'a [T] {
        let a = k * self.n;
        self.params.get(a..a + self.n).unwrap_or(&[])
    }

    /// Feature index of function `s`.
    #[inline(always)]
    pub fn feature(&self, s: usize) -> usize {
        u32_at(self.out, 4 * s).unwrap_or(0) as usize
    }
}

/// The neighbour-slot blocks a radial group sums over, each with its weight: the slots of its
/// neighbour species with weight 1, or, for the element-weighted kinds, the slots of every
/// species s < `zs.len()` with weight Z_s = `zs[s]`. Slots of species the model does not know
/// (an external neighbour list may hold them) are never visited.
#[inline(always)]
pub(crate) fn radial_blocks<'x, T: Real>(
    g: &Group<'_, T>,
    nb: &'x Lanes<'_, T>,
    zs: &'x [T],
) -> impl Iterator<Item = (core::ops::Range<usize>, T)> + 'x {
    let weighted = g.kind.is_weighted();
    let (lo, hi) = if weighted {
        (0, zs.len())
    } else {
        (g.e1, g.e1.saturating_add(1))
    };
    (lo..hi).map(move |e| {
        let w = if weighted {
            zs.get(e).copied().unwrap_or(T::ZERO)
        } else {
            T::ONE
        };
        (nb.range(e), w)
    })
}

/// Per-function multipliers applied after the sum: 2^(1−ζ) for the kinds with ζ, 1 otherwise.
pub(crate) fn prefactors<T: Real>(g: &Group<'_, T>, out: &mut [T]) {
    if g.kind.has_zeta() {
        angular::prefactors(g, out);
    } else {
        out.iter_mut().for_each(|m| *m = T::ONE);
    }
}

/// Adds the values of group `g` (prefactors included) into `acc` (one per function). `zs` holds
/// the atomic number of each species of the model; `row` is scratch of the group's size;
/// `slots` is the batched kernels' neighbour cache, with its geometry part filled by
/// [`batched::fill_geometry`] for this neighbour set; `plan` is the group's plan when the
/// batched kernels take it ([`batched::Plan::build`]; angular kinds only, radial ones need none);
/// `cache` is the atom's pair cache, filled here for the force pass ([`forces`]).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(
    not(any(feature = "reference-fallback", feature = "polynomial")),
    allow(unused_variables)
)]
pub(crate) fn values<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    work: &mut WorkLanes<'_, T>,
    zs: &[T],
    acc: &mut [T],
    row: &mut [T],
    slots: &mut [T],
    cache: &mut batched::PairCache<'_, T>,
    plan: Option<&batched::Plan<T>>,
) {
    const W: usize = batched::LANES;
    match (g.kind.is_polynomial(), g.kind.is_angular()) {
        #[cfg(feature = "polynomial")]
        (true, true) => polynomial::angular_values(g, nb, zs, acc, row),
        #[cfg(feature = "polynomial")]
        (true, false) => polynomial::radial_values(g, nb, zs, acc, row),
        #[cfg(not(feature = "polynomial"))]
        (true, _) => {}
        (false, true) => {
            if let Some(plan) = plan {
                batched::angular_values::<T, W>(g, plan, nb, zs, slots, cache, acc, row);
                plan.scale_by_prefactors(acc);
            } else {
                // Rejected at load without the fallback (`Model::validate_groups`).
                #[cfg(feature = "reference-fallback")]
                {
                    angular::values(g, nb, work, zs, acc, row);
                    angular::scale_by_prefactors(g, acc);
                }
            }
        }
        (false, false) => {
            if batched::Plan::takes_radial(g) {
                batched::radial_values::<T, W>(g, nb, zs, acc, row, cache);
            } else {
                #[cfg(feature = "reference-fallback")]
                radial::values(g, nb, zs, acc, row);
            }
        }
    }
}

/// The force path: adds Σ_s m_s ∂G_s/∂d_j of group `g` into the gradient lanes of `work`, with
/// `m` the multipliers of the functions without their prefactors (multiplied in here, in place),
/// through the batched kernels where they apply (`slots` as for [`values`]; `cache` holds what
/// the value pass stored; `plan` as for [`values`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forces<T: Real>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    work: &mut WorkLanes<'_, T>,
    zs: &[T],
    m: &mut [T],
    slots: &mut [T],
    cache: &mut batched::PairCache<'_, T>,
    plan: Option<&batched::Plan<T>>,
) {
    const W: usize = batched::LANES;
    if !g.kind.is_polynomial() {
        if g.kind.is_angular() {
            if let Some(plan) = plan {
                plan.scale_by_prefactors(m);
                batched::angular_forces::<T, W>(g, plan, nb, zs, slots, cache, m, work);
                return;
            }
        } else if batched::Plan::takes_radial(g) {
            batched::radial_forces::<T, W>(g, nb, zs, slots, m, work, cache);
            return;
        }
        if !cfg!(feature = "reference-fallback") {
            // Rejected at load without the fallback (`Model::validate_groups`).
            return;
        }
        #[cfg(feature = "reference-fallback")]
        if g.kind.has_zeta() {
            angular::scale_by_prefactors(g, m);
        }
    }
    let WorkLanes {
        gx,
        gy,
        gz,
        fc,
        dfc,
    } = work;
    let mut sink = WeightedSink::new(gx, gy, gz);
    let mut cache = WorkLanes {
        gx: &mut [],
        gy: &mut [],
        gz: &mut [],
        fc,
        dfc,
    };
    backprop(g, nb, &mut cache, zs, m, &mut sink);
}

/// Back-propagates multipliers `m` (one per function, prefactors included; see
/// [`prefactors`]) through group `g` into `sink`.
pub(crate) fn backprop<T: Real, S: GradSink<T>>(
    g: &Group<'_, T>,
    nb: &Lanes<'_, T>,
    work: &mut WorkLanes<'_, T>,
    zs: &[T],
    m: &[T],
    sink: &mut S,
) {
    match (g.kind.is_polynomial(), g.kind.is_angular()) {
        #[cfg(feature = "polynomial")]
        (true, true) => polynomial::angular_backprop(g, nb, zs, m, sink),
        #[cfg(feature = "polynomial")]
        (true, false) => polynomial::radial_backprop(g, nb, zs, m, sink),
        #[cfg(not(feature = "polynomial"))]
        (true, _) => {}
        (false, true) => angular::backprop(g, nb, work, zs, m, sink),
        (false, false) => radial::backprop(g, nb, zs, m, sink),
    }
}

/// Receives the derivatives of a group's functions during back-propagation. A kernel calls
/// `*_begin` once per pair/triplet, `*_term` once per function with the partial derivatives
/// already multiplied by that function's multiplier m_s, then `*_end`.
pub(crate) trait GradSink<T: Real> {
    fn pair_begin(&mut self, j: usize, unit: [T; 3]);
    /// `dv` = m_s · ∂v_s/∂r_ij.
    fn pair_term(&mut self, s: usize, dv: T);
    fn pair_end(&mut self);
    fn triplet_begin(&mut self, geom: &Triplet<T>);
    /// `a` = m_s · (∂v/∂r_ij, ∂v/∂r_ik, ∂v/∂r_jk, ∂v/∂cos θ).
    fn triplet_term(&mut self, s: usize, a: [T; 4]);
    fn triplet_end(&mut self);
}

/// Geometry of a neighbour pair (j, k) of a central atom i, with d = r_neighbour − r_i.
#[derive(Clone, Copy, Default)]
pub(crate) struct Triplet<T> {
    pub j: usize,
    pub k: usize,
    /// Unit vectors i→j, i→k, j→k.
    pub uj: [T; 3],
    pub uk: [T; 3],
    pub ujk: [T; 3],
    pub rij: T,
    pub rik: T,
    pub cos: T,
}

impl<T: Real> Triplet<T> {
    /// Gradients with respect to d_ij and d_ik of a function of (r_ij, r_ik, r_jk, cos θ) whose
    /// partial derivatives are `a`.
    #[inline(always)]
    pub fn gradients(&self, a: [T; 4]) -> ([T; 3], [T; 3]) {
        let [a_ij, a_ik, a_jk, a_c] = a;
        let cj = a_c / self.rij;
        let ck = a_c / self.rik;
        let (uj, uk, ujk, cos) = (self.uj, self.uk, self.ujk, self.cos);
        // ∂cos/∂d_ij = (u_k − cos u_j)/r_ij; ∂r_jk/∂d_ij = −u_jk; ∂r_jk/∂d_ik = u_jk.
        let gj = core::array::from_fn(|c| {
            let (j, k, jk) = (at(uj, c), at(uk, c), at(ujk, c));
            a_ij * j - a_jk * jk + cj * (k - cos * j)
        });
        let gk = core::array::from_fn(|c| {
            let (j, k, jk) = (at(uj, c), at(uk, c), at(ujk, c));
            a_ik * k + a_jk * jk + ck * (j - cos * k)
        });
        (gj, gk)
    }
}

/// Component `c` of a 3-vector (zero out of range; callers pass 0..3).
#[inline(always)]
fn at<T: Real>(v: [T; 3], c: usize) -> T {
    v.get(c).copied().unwrap_or(T::ZERO)
}

/// Accumulates Σ_s m_s ∂v_s into the neighbour gradient lanes (the force path).
pub(crate) struct WeightedSink<'s, T> {
    pub gx: &'s mut [T],
    pub gy: &'s mut [T],
    pub gz: &'s mut [T],
    pub sum: T,
    pub a: [T; 4],
    pub j: usize,
    pub unit: [T; 3],
    pub tri: Triplet<T>,
}

impl<'s, T: Real> WeightedSink<'s, T> {
    pub fn new(gx: &'s mut [T], gy: &'s mut [T], gz: &'s mut [T]) -> Self {
        WeightedSink {
            gx,
            gy,
            gz,
            sum: T::ZERO,
            a: [T::ZERO; 4],
            j: 0,
            unit: [T::ZERO; 3],
            tri: Triplet::default(),
        }
    }

    #[inline(always)]
    fn add(&mut self, j: usize, g: [T; 3]) {
        if let (Some(x), Some(y), Some(z)) =
            (self.gx.get_mut(j), self.gy.get_mut(j), self.gz.get_mut(j))
        {
            *x += g[0];
            *y += g[1];
            *z += g[2];
        }
    }
}

impl<T: Real> GradSink<T> for WeightedSink<'_, T> {
    #[inline(always)]
    fn pair_begin(&mut self, j: usize, unit: [T; 3]) {
        self.j = j;
        self.unit = unit;
        self.sum = T::ZERO;
    }
    #[inline(always)]
    fn pair_term(&mut self, _s: usize, dv: T) {
        self.sum += dv;
    }
    #[inline(always)]
    fn pair_end(&mut self) {
        let (s, u) = (self.sum, self.unit);
        self.add(self.j, [s * u[0], s * u[1], s * u[2]]);
    }
    #[inline(always)]
    fn triplet_begin(&mut self, geom: &Triplet<T>) {
        self.tri = *geom;
        self.a = [T::ZERO; 4];
    }
    #[inline(always)]
    fn triplet_term(&mut self, _s: usize, a: [T; 4]) {
        for (acc, x) in self.a.iter_mut().zip(a) {
            *acc += x;
        }
    }
    #[inline(always)]
    fn triplet_end(&mut self) {
        let (gj, gk) = self.tri.gradients(self.a);
        self.add(self.tri.j, gj);
        self.add(self.tri.k, gk);
    }
}

/// Writes the full Jacobian ∂G_f/∂d_j into `out[(f·capacity + j)·3 + c]` (the training path).
pub(crate) struct JacobianSink<'s, 'g, T> {
    pub out: &'s mut [T],
    pub capacity: usize,
    pub group: &'s Group<'g, T>,
    pub j: usize,
    pub unit: [T; 3],
    pub tri: Triplet<T>,
}

impl<T: Real> JacobianSink<'_, '_, T> {
    #[inline(always)]
    fn add(&mut self, s: usize, j: usize, g: [T; 3]) {
        let f = self.group.feature(s);
        let base = (f * self.capacity + j) * 3;
        if let Some(o) = self.out.get_mut(base..base + 3) {
            for (x, y) in o.iter_mut().zip(g) {
                *x += y;
            }
        }
    }
}

impl<T: Real> GradSink<T> for JacobianSink<'_, '_, T> {
    fn pair_begin(&mut self, j: usize, unit: [T; 3]) {
        self.j = j;
        self.unit = unit;
    }
    fn pair_term(&mut self, s: usize, dv: T) {
        let u = self.unit;
        self.add(s, self.j, [dv * u[0], dv * u[1], dv * u[2]]);
    }
    fn pair_end(&mut self) {}
    fn triplet_begin(&mut self, geom: &Triplet<T>) {
        self.tri = *geom;
    }
    fn triplet_term(&mut self, s: usize, a: [T; 4]) {
        let (gj, gk) = self.tri.gradients(a);
        let (j, k) = (self.tri.j, self.tri.k);
        self.add(s, j, gj);
        self.add(s, k, gk);
    }
    fn triplet_end(&mut self) {}
}
