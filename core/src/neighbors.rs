//! Neighbour search: an O(N) cell list over fractional coordinates, for open, periodic
//! (orthorhombic or triclinic) and mixed boundaries, and the per-atom [`NeighborSet`] that the
//! descriptors read.
//!
//! Every atom **and periodic image** within the cutoff is a neighbour, images of the central atom
//! itself included (0 < r ≤ rc). Cells thinner than the cutoff are searched over as many images as
//! needed, so a cell smaller than 2·rc (even smaller than rc) is handled exactly.
//!
//! Memory (caller-provided, see [`crate::Workspace`]): per atom 3 reals (wrapped positions) and
//! 2 indices (cell, order), plus one index per cell; per neighbour slot, see [`NeighborSet`].

use crate::cell::{dot, Cell};
use crate::error::ComputeError;
use crate::math::Real;
use crate::workspace::EXTRA_CELLS;

/// Most species a model may have (bounds the per-element ranges of a [`NeighborSet`]).
pub const MAX_SPECIES: usize = 16;

/// The neighbours of one central atom, sorted by species, as structure-of-arrays lanes:
/// displacement d = r_j − r_i (components and length) and the index of the atom it is an image
/// of. The gradient lanes `gx, gy, gz` receive ∂E_i/∂d during back-propagation.
///
/// Fill with [`NeighborSet::clear`], [`NeighborSet::push`] and [`NeighborSet::finish`]; an MD
/// engine with its own neighbour list (ghost atoms included) can fill it directly.
/// Memory per neighbour slot: 12 reals and 3 `u32`.
pub struct NeighborSet<'w, T> {
    pub(crate) dx: &'w mut [T],
    pub(crate) dy: &'w mut [T],
    pub(crate) dz: &'w mut [T],
    pub(crate) r: &'w mut [T],
    pub(crate) gx: &'w mut [T],
    pub(crate) gy: &'w mut [T],
    pub(crate) gz: &'w mut [T],
    /// Per-neighbour cutoff value and derivative of the group being evaluated.
    pub(crate) fc: &'w mut [T],
    pub(crate) dfc: &'w mut [T],
    pub(crate) index: &'w mut [u32],
    // Unsorted staging lanes filled by `push`.
    tmp_d: &'w mut [T],
    tmp_index: &'w mut [u32],
    tmp_species: &'w mut [u32],
    len: usize,
    /// `start[e]..start[e+1]` are the neighbours of species e after `finish`.
    start: [usize; MAX_SPECIES + 1],
}

/// Reals per neighbour slot.
pub(crate) const NEIGHBOR_REALS: usize = 12;
/// `u32` indices per neighbour slot.
pub(crate) const NEIGHBOR_INDICES: usize = 3;

impl<'w, T: Real> NeighborSet<'w, T> {
    /// Builds a set over caller storage: `reals` of `12·capacity`, `indices` of `3·capacity`.
    pub fn new(
        capacity: usize,
        reals: &'w mut [T],
        indices: &'w mut [u32],
    ) -> Result<Self, ComputeError> {
        let need_r = capacity.saturating_mul(NEIGHBOR_REALS);
        let need_i = capacity.saturating_mul(NEIGHBOR_INDICES);
        let too_small = |what, needed, got| ComputeError::BufferTooSmall { what, needed, got };
        if reals.len() < need_r {
            return Err(too_small("neighbour reals", need_r, reals.len()));
        }
        if indices.len() < need_i {
            return Err(too_small("neighbour indices", need_i, indices.len()));
        }
        let (dx, rest) = split(reals, capacity);
        let (dy, rest) = split(rest, capacity);
        let (dz, rest) = split(rest, capacity);
        let (r, rest) = split(rest, capacity);
        let (gx, rest) = split(rest, capacity);
        let (gy, rest) = split(rest, capacity);
        let (gz, rest) = split(rest, capacity);
        let (fc, rest) = split(rest, capacity);
        let (dfc, rest) = split(rest, capacity);
        let (tmp_d, _) = split(rest, capacity.saturating_mul(3));
        let (index, rest) = split(indices, capacity);
        let (tmp_index, rest) = split(rest, capacity);
        let (tmp_species, _) = split(rest, capacity);
        Ok(NeighborSet {
            dx,
            dy,
            dz,
            r,
            gx,
            gy,
            gz,
            fc,
            dfc,
            index,
            tmp_d,
            tmp_index,
            tmp_species,
            len: 0,
            start: [0; MAX_SPECIES + 1],
        })
    }

    /// Slots available.
    pub fn capacity(&self) -> usize {
        self.index.len()
    }

    /// Number of neighbours.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no neighbours.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets all neighbours.
    pub fn clear(&mut self) {
        self.len = 0;
        self.start = [0; MAX_SPECIES + 1];
    }

    /// Stages neighbour `index` of species `species` at displacement `d` = r_j − r_i.
    /// Returns `false` (and stores nothing) when the set is full or `species ≥ MAX_SPECIES`.
    #[inline]
    pub fn push(&mut self, species: u8, index: u32, d: [T; 3]) -> bool {
        let n = self.len;
        if usize::from(species) >= MAX_SPECIES {
            return false;
        }
        let (Some(ti), Some(ts), Some(td)) = (
            self.tmp_index.get_mut(n),
            self.tmp_species.get_mut(n),
            self.tmp_d.get_mut(3 * n..3 * n + 3),
        ) else {
            return false;
        };
        *ti = index;
        *ts = u32::from(species);
        td.copy_from_slice(&d);
        self.len = n + 1;
        true
    }

    /// Sorts the staged neighbours by species (stable) into the lanes and computes distances.
    pub fn finish(&mut self) {
        let n = self.len;
        let mut count = [0usize; MAX_SPECIES + 1];
        for &s in self.tmp_species.iter().take(n) {
            if let Some(c) = count.get_mut(s as usize + 1) {
                *c += 1;
            }
        }
        for e in 0..MAX_SPECIES {
            let prev = count.get(e).copied().unwrap_or(0);
            if let Some(c) = count.get_mut(e + 1) {
                *c += prev;
            }
        }
        self.start = count;
        let mut next = count;
        let staged = self
            .tmp_species
            .iter()
            .zip(self.tmp_index.iter())
            .zip(self.tmp_d.chunks_exact(3))
            .take(n);
        for ((&s, &idx), d) in staged {
            let Some(slot) = next.get_mut(s as usize) else {
                continue;
            };
            let p = *slot;
            *slot += 1;
            if let ([x, y, z], Some(ox), Some(oy), Some(oz), Some(or), Some(oi)) = (
                d,
                self.dx.get_mut(p),
                self.dy.get_mut(p),
                self.dz.get_mut(p),
                self.r.get_mut(p),
                self.index.get_mut(p),
            ) {
                *ox = *x;
                *oy = *y;
                *oz = *z;
                *or = (*x * *x + *y * *y + *z * *z).sqrt();
                *oi = idx;
            }
        }
    }

    /// The slot range of species `e` (empty when none or out of range).
    #[inline(always)]
    pub fn species_range(&self, e: usize) -> core::ops::Range<usize> {
        let a = self.start.get(e).copied().unwrap_or(0);
        let b = self.start.get(e + 1).copied().unwrap_or(a);
        a..b.max(a)
    }

    /// Displacement of slot `k` (zeros when out of range).
    #[inline(always)]
    pub fn displacement(&self, k: usize) -> [T; 3] {
        [
            self.dx.get(k).copied().unwrap_or(T::ZERO),
            self.dy.get(k).copied().unwrap_or(T::ZERO),
            self.dz.get(k).copied().unwrap_or(T::ZERO),
        ]
    }

    /// Distance of slot `k` (zero when out of range).
    #[inline(always)]
    pub fn distance(&self, k: usize) -> T {
        self.r.get(k).copied().unwrap_or(T::ZERO)
    }

    /// Atom index of slot `k`.
    pub fn atom_index(&self, k: usize) -> Option<u32> {
        self.index.get(k).copied()
    }

    /// ∂E_i/∂d of slot `k` after back-propagation.
    pub fn gradient(&self, k: usize) -> [T; 3] {
        [
            self.gx.get(k).copied().unwrap_or(T::ZERO),
            self.gy.get(k).copied().unwrap_or(T::ZERO),
            self.gz.get(k).copied().unwrap_or(T::ZERO),
        ]
    }
}

/// Component `k` of a 3-array (zero out of range; callers pass 0..3).
#[inline(always)]
fn at3<T: Real>(v: &[T; 3], k: usize) -> T {
    v.get(k).copied().unwrap_or(T::ZERO)
}

/// Row `k` of a 3×3 matrix (zeros out of range).
#[inline(always)]
fn axis_of<T: Real>(m: &[[T; 3]; 3], k: usize) -> [T; 3] {
    m.get(k).copied().unwrap_or([T::ZERO; 3])
}

/// Splits `n` elements off the front (all of `s` when shorter).
#[inline]
pub(crate) fn split<X>(s: &mut [X], n: usize) -> (&mut [X], &mut [X]) {
    let n = n.min(s.len());
    s.split_at_mut_checked(n).unwrap_or_default()
}

/// Bins per cutoff radius along each axis: bins about rc/2 wide, so the search box of an atom
/// spans 4–5 bins per axis (≈ 3.4 rc³ of candidates instead of 27 rc³ with rc-wide cells).
const BINS_PER_CUTOFF: usize = 2;

/// Slack, in bins, on each side of an atom's search range. Fractional coordinates carry a few
/// ulp of rounding (and an atom wrapped to exactly 1.0 is clamped into the top bin), so a bin
/// that the exact arithmetic would just reach must not be skipped; 10⁻³ bin is far above that
/// rounding and costs nothing measurable.
const RANGE_SLACK: f64 = 1e-3;

/// Slice lengths of a [`CellList`]'s storage for `atoms` atoms of `n_species` species.
///
/// Per atom: 3 reals (wrapped positions in bin order) and 2 `u32` (atom of each slot, slot of
/// each atom); per bin key (species × bin, at most `n_species · atoms + EXTRA_CELLS`): 1 `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellListSize {
    /// Atoms the storage holds.
    pub atoms: usize,
    /// Length of the real slice.
    pub reals: usize,
    /// Length of the `u32` slice.
    pub indices: usize,
}

impl CellListSize {
    /// Sizes for `atoms` atoms of `n_species` species (0 counts as 1).
    pub const fn new(n_species: usize, atoms: usize) -> Self {
        let s = if n_species == 0 { 1 } else { n_species };
        CellListSize {
            atoms,
            reals: 3 * atoms,
            indices: 2 * atoms + s * atoms + EXTRA_CELLS + 1,
        }
    }
}

/// A cell list: atoms binned by (species, bin) with their wrapped positions stored
/// structure-of-arrays in that order, so that the candidates of one species in a row of
/// consecutive bins are one contiguous span. Built once per configuration (by
/// [`crate::Model::cell_list`] or inside [`crate::Model::compute`]); read-only afterwards, so
/// several threads may search it at once, each with its own [`NeighborSet`].
///
/// Bins are about rc/2 wide (fewer when the storage allows fewer bins); each atom searches
/// only the bins its cutoff sphere's bounding box (in fractional coordinates) reaches, through
/// as many periodic images as needed — cells thinner than the cutoff included. Neighbours come
/// out grouped by species; within a species, by bin row and then by atom index: deterministic,
/// whatever thread asks.
pub struct CellList<'w, T> {
    x: &'w mut [T],
    y: &'w mut [T],
    z: &'w mut [T],
    /// Atom of each slot.
    atom: &'w mut [u32],
    /// Slot of each atom.
    slot: &'w mut [u32],
    /// `start[k]..start[k + 1]` are the slots of key k = species · bins + bin.
    start: &'w mut [u32],
    /// Grid shape.
    n: [usize; 3],
    n_species: usize,
    frame: Cell<T>,
    recip: [[T; 3]; 3],
    /// Fractional origin and bins per fractional unit, per axis.
    origin: [T; 3],
    inv_bin: [T; 3],
    /// Search radius in bins (slack included), per axis.
    reach: [T; 3],
    rc2: T,
}

impl<'w, T: Real> CellList<'w, T> {
    /// Bins `positions` (species `species`, each `< n_species`) for cutoff `rc` into `reals`
    /// and `indices` (lengths from [`CellListSize::new`]; longer is fine: more bins allowed).
    pub(crate) fn build(
        positions: &[[T; 3]],
        species: &[u8],
        n_species: usize,
        cell: Option<&Cell<T>>,
        rc: T,
        reals: &'w mut [T],
        indices: &'w mut [u32],
    ) -> Result<Self, ComputeError> {
        let n_atoms = positions.len();
        if species.len() != n_atoms {
            return Err(ComputeError::LengthMismatch {
                what: "species",
                expected: n_atoms,
                got: species.len(),
            });
        }
        let n_species = n_species.clamp(1, MAX_SPECIES);
        let need = CellListSize::new(n_species, n_atoms);
        let too_small = |what, needed, got| ComputeError::BufferTooSmall { what, needed, got };
        if reals.len() < need.reals {
            return Err(too_small("cell list reals", need.reals, reals.len()));
        }
        if indices.len() < need.indices {
            return Err(too_small("cell list indices", need.indices, indices.len()));
        }
        let z = T::ZERO;
        let frame = match cell {
            Some(c) => *c,
            None => Cell {
                vectors: [[T::ONE, z, z], [z, T::ONE, z], [z, z, T::ONE]],
                pbc: [false; 3],
            },
        };
        let recip = frame.reciprocal()?;
        // Fractional extent: [0, 1) on periodic axes, the atoms' span on open ones.
        let inf = T::from_f64(f64::INFINITY);
        let mut lo = frame.pbc.map(|p| if p { T::ZERO } else { inf });
        let mut hi = frame.pbc.map(|p| if p { T::ONE } else { -inf });
        for (atom, (p, &s)) in positions.iter().zip(species).enumerate() {
            if !p.iter().all(|x| x.is_finite()) {
                return Err(ComputeError::NonFinitePosition { atom });
            }
            if usize::from(s) >= n_species {
                return Err(ComputeError::UnknownSpecies { atom, species: s });
            }
            let axes = recip.iter().zip(frame.pbc);
            for ((rk, periodic), (l, h)) in axes.zip(lo.iter_mut().zip(hi.iter_mut())) {
                if !periodic {
                    let s = dot(*rk, *p);
                    *l = l.min(s);
                    *h = h.max(s);
                }
            }
        }
        if n_atoms == 0 {
            lo = [T::ZERO; 3];
            hi = [T::ZERO; 3];
        }
        // Grid: bins at least rc / BINS_PER_CUTOFF wide where the extent allows, coarsened
        // (largest axis halved) until every (species, bin) key has a `start` entry.
        let norm: [T; 3] = core::array::from_fn(|k| {
            let rk = axis_of(&recip, k);
            dot(rk, rk).sqrt()
        });
        let (reals_pos, _) = split(reals, 3 * n_atoms);
        let (x, rest) = split(reals_pos, n_atoms);
        let (y, z_) = split(rest, n_atoms);
        let (atom, rest) = split(indices, n_atoms);
        let (slot, start) = split(rest, n_atoms);
        let max_keys = start.len().saturating_sub(1).max(1);
        let bins_per = T::from_usize(BINS_PER_CUTOFF);
        let mut n: [usize; 3] = core::array::from_fn(|k| {
            // Real-space width of axis k: fractional span × plane spacing.
            let width = (at3(&hi, k) - at3(&lo, k)) / at3(&norm, k);
            let bins = (width * bins_per / rc).floor().to_f64();
            if bins >= 1.0 {
                (bins.min(max_keys as f64)) as usize
            } else {
                1
            }
        });
        let keys = |n: &[usize; 3]| {
            n.iter()
                .fold(n_species, |acc: usize, &v| acc.saturating_mul(v))
        };
        while keys(&n) > max_keys && n != [1, 1, 1] {
            if let Some(big) = n.iter_mut().max_by_key(|v| **v) {
                *big = big.div_ceil(2).max(1);
            }
        }
        let n_keys = keys(&n);
        if n_keys > max_keys {
            return Err(too_small("cell list indices", need.indices, n_keys + 1));
        }
        let inv_bin: [T; 3] = core::array::from_fn(|k| {
            let span = at3(&hi, k) - at3(&lo, k);
            let nk = T::from_usize(n.get(k).copied().unwrap_or(1));
            if span > T::ZERO {
                nk / span
            } else {
                T::ZERO
            }
        });
        let slack = T::from_f64(RANGE_SLACK);
        let reach: [T; 3] = core::array::from_fn(|k| rc * at3(&norm, k) * at3(&inv_bin, k) + slack);
        let mut list = CellList {
            x,
            y,
            z: z_,
            atom,
            slot,
            start,
            n,
            n_species,
            frame,
            recip,
            origin: lo,
            inv_bin,
            reach,
            rc2: rc * rc,
        };
        list.bin(positions, species, n_keys);
        Ok(list)
    }

    /// Atoms in the list.
    pub fn atoms(&self) -> usize {
        self.slot.len()
    }

    /// Grid shape (bins along a, b, c).
    pub fn grid(&self) -> [usize; 3] {
        self.n
    }

    /// `p` with periodic axes wrapped into the cell (fractional coordinate in [0, 1)).
    #[inline(always)]
    fn wrap(&self, p: [T; 3]) -> [T; 3] {
        let mut w = p;
        let axes = self.recip.iter().zip(self.frame.vectors.iter());
        for ((rk, vk), periodic) in axes.zip(self.frame.pbc) {
            if periodic {
                let f = dot(*rk, p).floor();
                w.iter_mut().zip(vk).for_each(|(wc, &vc)| *wc -= f * vc);
            }
        }
        w
    }

    /// Continuous bin coordinates of a wrapped position (bin k holds [k, k + 1)).
    #[inline(always)]
    fn bin_coords(&self, p: [T; 3]) -> [T; 3] {
        core::array::from_fn(|k| {
            (dot(axis_of(&self.recip, k), p) - at3(&self.origin, k)) * at3(&self.inv_bin, k)
        })
    }

    /// Bin index of a wrapped position.
    #[inline(always)]
    fn bin_of(&self, p: [T; 3]) -> usize {
        let s = self.bin_coords(p);
        let [a, b, c]: [usize; 3] = core::array::from_fn(|k| {
            let f = at3(&s, k).floor().to_f64();
            let top = self.n.get(k).copied().unwrap_or(1).saturating_sub(1);
            // Rounding can put a wrapped coordinate at exactly 1.0 (or the top of an open axis):
            // clamp into the grid.
            if f > 0.0 {
                (f as usize).min(top)
            } else {
                0
            }
        });
        let [_, nb, nc] = self.n;
        (a * nb + b) * nc + c
    }

    /// Counting sort of the atoms by key = species · bins + bin.
    fn bin(&mut self, positions: &[[T; 3]], species: &[u8], n_keys: usize) {
        let bins = self.n.iter().product::<usize>();
        let start = self.start.get_mut(..n_keys + 1).unwrap_or(&mut []);
        start.iter_mut().for_each(|c| *c = 0);
        for (atom, (p, &s)) in positions.iter().zip(species).enumerate() {
            let key = usize::from(s) * bins + self.bin_of(self.wrap(*p));
            if let Some(k) = self.slot.get_mut(atom) {
                *k = key as u32;
            }
            if let Some(cnt) = self.start.get_mut(key + 1) {
                *cnt += 1;
            }
        }
        // Prefix sum: start[k] = first slot of key k.
        let mut acc = 0u32;
        for c in self.start.iter_mut().take(n_keys + 1) {
            acc += *c;
            *c = acc;
        }
        // Place the atoms in index order, advancing each key's cursor; afterwards start[k]
        // holds the end of key k, i.e. the start of k + 1.
        for (atom, p) in positions.iter().enumerate() {
            let w = self.wrap(*p);
            let Some(key) = self.slot.get(atom).map(|&k| k as usize) else {
                continue;
            };
            let Some(cursor) = self.start.get_mut(key) else {
                continue;
            };
            let at = *cursor as usize;
            *cursor += 1;
            if let Some(s) = self.slot.get_mut(atom) {
                *s = at as u32;
            }
            let dst = (
                self.atom.get_mut(at),
                self.x.get_mut(at),
                self.y.get_mut(at),
                self.z.get_mut(at),
            );
            if let (Some(a), Some(x), Some(y), Some(z)) = dst {
                *a = atom as u32;
                [*x, *y, *z] = w;
            }
        }
        // Shift right by one so that start[k] is the start of k again.
        let mut prev = 0u32;
        for c in self.start.iter_mut().take(n_keys + 1) {
            core::mem::swap(c, &mut prev);
        }
    }

    /// Collects the neighbours of `atom` into `set`, grouped by species, with distances.
    pub fn neighbors_of(
        &self,
        atom: usize,
        set: &mut NeighborSet<'_, T>,
    ) -> Result<(), ComputeError> {
        set.clear();
        let Some(&me) = self.slot.get(atom) else {
            return Err(ComputeError::LengthMismatch {
                what: "atom index",
                expected: self.atoms(),
                got: atom,
            });
        };
        let me = me as usize;
        let pi = [
            self.x.get(me).copied().unwrap_or(T::ZERO),
            self.y.get(me).copied().unwrap_or(T::ZERO),
            self.z.get(me).copied().unwrap_or(T::ZERO),
        ];
        // The range of bins (unwrapped: periodic images lie outside 0..n) each axis must visit.
        let s = self.bin_coords(pi);
        let range: [(isize, isize); 3] = core::array::from_fn(|k| {
            let (sk, rk) = (at3(&s, k), at3(&self.reach, k));
            let lo = (sk - rk).floor().to_f64() as isize;
            let hi = (sk + rk).floor().to_f64() as isize;
            if self.frame.pbc.get(k).copied().unwrap_or(false) {
                (lo, hi)
            } else {
                let top = self.n.get(k).copied().unwrap_or(1) as isize - 1;
                (lo.clamp(0, top), hi.clamp(0, top))
            }
        });
        let [(la, ha), (lb, hb), (lc, hc)] = range;
        let [na, nb, nc] = self.n.map(|v| v.max(1) as isize);
        let bins = (na * nb * nc) as usize;
        let [va, vb, vc] = self.frame.vectors;
        let capacity = set.capacity();
        let mut len = 0usize;
        let mut start = [0usize; MAX_SPECIES + 1];
        for (e, first) in start.iter_mut().enumerate().skip(1) {
            if e > self.n_species {
                *first = len;
                continue;
            }
            let key0 = (e - 1) * bins;
            for ta in la..=ha {
                let (a, ma) = (ta.rem_euclid(na), ta.div_euclid(na));
                for tb in lb..=hb {
                    let (b, mb) = (tb.rem_euclid(nb), tb.div_euclid(nb));
                    let row = key0 + ((a * nb + b) * nc) as usize;
                    let (fa, fb) = (T::from_f64(ma as f64), T::from_f64(mb as f64));
                    let row_shift: [T; 3] =
                        core::array::from_fn(|x| fa * at3(&va, x) + fb * at3(&vb, x));
                    // Consecutive bins of the row, one span per periodic image along c.
                    let mut tc = lc;
                    while tc <= hc {
                        let (c0, mc) = (tc.rem_euclid(nc), tc.div_euclid(nc));
                        let t_end = hc.min(tc + (nc - 1 - c0));
                        let c1 = c0 + (t_end - tc);
                        tc = t_end + 1;
                        let fc = T::from_f64(mc as f64);
                        let shift: [T; 3] =
                            core::array::from_fn(|x| at3(&row_shift, x) + fc * at3(&vc, x));
                        let lo = self.start.get(row + c0 as usize).copied().unwrap_or(0);
                        let hi = self.start.get(row + c1 as usize + 1).copied().unwrap_or(0);
                        let span = lo as usize..(hi as usize).max(lo as usize);
                        // The central atom itself is skipped only in its unshifted image.
                        let own = if ma == 0 && mb == 0 && mc == 0 {
                            atom as u32
                        } else {
                            u32::MAX
                        };
                        if let Some(j) = self.scan(span, pi, shift, own, set, &mut len) {
                            return Err(ComputeError::OverlappingAtoms {
                                i: atom,
                                j: j as usize,
                            });
                        }
                        if len > capacity {
                            return Err(ComputeError::NeighborOverflow { atom, capacity });
                        }
                    }
                }
            }
            *first = len;
        }
        // Distances, in one pass over the kept neighbours.
        let lanes = set.dx.iter().zip(set.dy.iter()).zip(set.dz.iter());
        for (r, ((&x, &y), &z)) in set.r.iter_mut().zip(lanes).take(len) {
            *r = (x * x + y * y + z * z).sqrt();
        }
        set.len = len;
        set.start = start;
        Ok(())
    }

    /// Appends the atoms of slots `span` within the cutoff of `pi` (image shift `shift`) to
    /// `set` at `*len`, counting past the capacity without writing (the caller reports the
    /// overflow). Returns the atom of a zero-distance candidate other than `own`.
    #[inline(always)]
    fn scan(
        &self,
        span: core::ops::Range<usize>,
        pi: [T; 3],
        shift: [T; 3],
        own: u32,
        set: &mut NeighborSet<'_, T>,
        len: &mut usize,
    ) -> Option<u32> {
        let xs = self.x.get(span.clone()).unwrap_or(&[]);
        let ys = self.y.get(span.clone()).unwrap_or(&[]);
        let zs = self.z.get(span.clone()).unwrap_or(&[]);
        let ids = self.atom.get(span).unwrap_or(&[]);
        let rc2 = self.rc2;
        let mut k = *len;
        for (((&xj, &yj), &zj), &j) in xs.iter().zip(ys).zip(zs).zip(ids) {
            // Numerical guard: (r_j − r_i) first, then the image shift. When the image is a
            // neighbour the two nearly cancel, which is exact (Sterbenz), so only one rounding
            // of size ~ulp(cell) remains instead of three.
            let dx = (xj - pi[0]) + shift[0];
            let dy = (yj - pi[1]) + shift[1];
            let dz = (zj - pi[2]) + shift[2];
            let r2 = dx * dx + dy * dy + dz * dz;
            if r2 == T::ZERO && j != own {
                *len = k;
                return Some(j);
            }
            // Written unconditionally, kept (k advanced) only within the cutoff and off the
            // central atom: no unpredictable branch.
            if let (Some(ox), Some(oy), Some(oz), Some(oi)) = (
                set.dx.get_mut(k),
                set.dy.get_mut(k),
                set.dz.get_mut(k),
                set.index.get_mut(k),
            ) {
                *ox = dx;
                *oy = dy;
                *oz = dz;
                *oi = j;
            }
            k += usize::from(r2 <= rc2 && r2 > T::ZERO);
        }
        *len = k;
        None
    }
}

/// Read-only view of a finished [`NeighborSet`]'s geometry lanes.
#[derive(Clone, Copy)]
pub(crate) struct Lanes<'a, T> {
    pub dx: &'a [T],
    pub dy: &'a [T],
    pub dz: &'a [T],
    pub r: &'a [T],
    pub start: [usize; MAX_SPECIES + 1],
}

impl<T: Real> Lanes<'_, T> {
    /// The slot range of species `e` (empty when out of range).
    #[inline(always)]
    pub fn range(&self, e: usize) -> core::ops::Range<usize> {
        let a = self.start.get(e).copied().unwrap_or(0);
        let b = self.start.get(e + 1).copied().unwrap_or(a);
        a..b.max(a)
    }

    /// Displacement and distance of slot `k`.
    #[inline(always)]
    pub fn get(&self, k: usize) -> Option<([T; 3], T)> {
        Some((
            [*self.dx.get(k)?, *self.dy.get(k)?, *self.dz.get(k)?],
            *self.r.get(k)?,
        ))
    }
}

/// Mutable lanes used during evaluation: gradient accumulators and the per-group cutoff cache.
pub(crate) struct WorkLanes<'a, T> {
    pub gx: &'a mut [T],
    pub gy: &'a mut [T],
    pub gz: &'a mut [T],
    pub fc: &'a mut [T],
    pub dfc: &'a mut [T],
}

impl<T: Real> NeighborSet<'_, T> {
    /// Splits into the geometry view and the work lanes.
    pub(crate) fn lanes(&mut self) -> (Lanes<'_, T>, WorkLanes<'_, T>) {
        (
            Lanes {
                dx: self.dx,
                dy: self.dy,
                dz: self.dz,
                r: self.r,
                start: self.start,
            },
            WorkLanes {
                gx: self.gx,
                gy: self.gy,
                gz: self.gz,
                fc: self.fc,
                dfc: self.dfc,
            },
        )
    }
}
