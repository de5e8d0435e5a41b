//! Neighbour search: an O(N) cell list over fractional coordinates, for open, periodic
//! (orthorhombic or triclinic) and mixed boundaries, and the per-atom [`NeighborSet`] that the
//! descriptors read.
//!
//! Every atom **and periodic image** within the cutoff is a neighbour, images of the central atom
//! itself included (0 < r ≤ rc). Cells thinner than the cutoff are searched over as many images as
//! needed, so a cell smaller than 2·rc (even smaller than rc) is handled exactly.
//!
//! The [`CellList`] sorts the atoms by (species, bin) with bins about rc/2 wide and stores their
//! wrapped positions structure-of-arrays in that order. An atom's search visits the bin rows its
//! cutoff sphere reaches (rows and row ends beyond the cutoff pruned when the cell is
//! orthogonal), each row of one species a contiguous span scanned branch-free, so neighbours
//! come out already grouped by species: no per-neighbour sort.
//!
//! Memory (caller-provided, see [`crate::Workspace`] and [`CellListSize`]): per atom 3 reals
//! (wrapped positions) and 2 + S indices (slot maps; bin keys for S species); per neighbour
//! slot, see [`NeighborSet`].

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

/// The atom whose neighbours are searched: index and wrapped position.
struct Centre<T> {
    atom: usize,
    pos: [T; 3],
}

/// Bins per axis that [`CellList::list_rows`] tabulates (a search box wider than that only
/// occurs in cells much thinner than the cutoff).
const AXIS_BINS: usize = 12;

/// One axis of an atom's search box: bins `lo..lo + len` (unwrapped), each with its bin in
/// the grid, periodic image, and squared slab gap to the atom.
struct AxisTable<T> {
    lo: isize,
    len: usize,
    bin: [isize; AXIS_BINS],
    image: [isize; AXIS_BINS],
    gap2: [T; AXIS_BINS],
}

/// One row of bins to scan: a and b fixed (`cell` = first bin of the row), c over `lo..=hi`
/// (unwrapped), with the a/b part of the periodic image shift.
struct Row<T> {
    cell: usize,
    lo: isize,
    hi: isize,
    shift: [T; 3],
    unshifted: bool,
}

/// Bin `t` of an axis of `n ≥ 1` bins as (bin in 0..n, periodic image); inside the grid, the
/// common case, without a division.
#[inline(always)]
fn wrap_index(t: isize, n: isize) -> (isize, isize) {
    if (0..n).contains(&t) {
        (t, 0)
    } else {
        let n = n.max(1);
        (t.rem_euclid(n), t.div_euclid(n))
    }
}

/// ⌊x⌋ as an integer (saturating), without a libm call: this runs per bin row.
#[inline(always)]
fn floor_isize<T: Real>(x: T) -> isize {
    let t = x.trunc_isize();
    // Truncation is toward zero (saturating; NaN gives 0): step down for negatives. In `T`, not
    // f64, which an f32-only FPU does in software. Exact: |x| ≥ 2^24 (f32) is an integer.
    if T::from_isize(t) > x {
        t - 1
    } else {
        t
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
    /// Real-space width of a bin per axis (zero on a flat open axis).
    width: [T; 3],
    /// Lattice vectors mutually orthogonal: the slab distances along the three axes then add
    /// in squares, which prunes bin rows outside the cutoff sphere.
    orthogonal: bool,
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
        let width: [T; 3] = core::array::from_fn(|k| {
            let per_length = at3(&norm, k) * at3(&inv_bin, k);
            if per_length > T::ZERO {
                T::ONE / per_length
            } else {
                T::ZERO
            }
        });
        // Orthogonal within rounding: |a·b| ≤ 10⁻¹² |a||b| for each pair.
        let [va, vb, vc] = frame.vectors;
        let orthogonal = [(va, vb), (vb, vc), (vc, va)].iter().all(|&(u, v)| {
            let tol = T::from_f64(1e-12) * (dot(u, u) * dot(v, v)).sqrt();
            dot(u, v).abs() <= tol
        });
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
            width,
            orthogonal,
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
            let f = floor_isize(at3(&s, k));
            let top = self.n.get(k).copied().unwrap_or(1).saturating_sub(1);
            // Rounding can put a wrapped coordinate at exactly 1.0 (or the top of an open axis):
            // clamp into the grid.
            usize::try_from(f).unwrap_or(0).min(top)
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
        let pos = [
            self.x.get(me).copied().unwrap_or(T::ZERO),
            self.y.get(me).copied().unwrap_or(T::ZERO),
            self.z.get(me).copied().unwrap_or(T::ZERO),
        ];
        let s = self.bin_coords(pos);
        let centre = Centre { atom, pos };
        let capacity = set.capacity();
        let NeighborSet {
            dx,
            dy,
            dz,
            r,
            index,
            tmp_d,
            tmp_index,
            tmp_species,
            ..
        } = set;
        // The bin spans to visit are the same for every species: list them once, in the
        // staging lanes (unused by this path). A search box too large for them (cells much
        // thinner than the cutoff) walks the rows again for each species instead.
        let listed = self.list_segments((&s, &s), tmp_d, tmp_index, tmp_species);
        let mut out = Out { dx, dy, dz, index };
        let bins = self.n.iter().product::<usize>();
        let mut len = 0usize;
        let mut start = [0usize; MAX_SPECIES + 1];
        for (e, first) in start.iter_mut().enumerate().skip(1) {
            if e <= self.n_species {
                let key0 = (e - 1) * bins;
                let mut visit = |bin: usize, count: usize, shift: [T; 3], unshifted: bool| {
                    let seg = Segment {
                        key: key0 + bin,
                        count,
                        shift,
                        unshifted,
                    };
                    self.scan(&seg, &centre, &mut out, &mut len)?;
                    if len > capacity {
                        return Err(ComputeError::NeighborOverflow { atom, capacity });
                    }
                    Ok(())
                };
                if let Some(n) = listed {
                    let lanes = tmp_d
                        .chunks_exact(3)
                        .zip(tmp_index.iter())
                        .zip(tmp_species.iter());
                    for ((d, &bin), &meta) in lanes.take(n) {
                        let shift = match d {
                            [x, y, z] => [*x, *y, *z],
                            _ => [T::ZERO; 3],
                        };
                        let (count, unshifted) = unpack(meta);
                        visit(bin as usize, count, shift, unshifted)?;
                    }
                } else {
                    for row in self.rows(&s) {
                        self.row_segments(&row, &mut visit)?;
                    }
                }
            }
            *first = len;
        }
        // Distances, in one pass over the kept neighbours.
        let lanes = out.dx.iter().zip(out.dy.iter()).zip(out.dz.iter());
        for (r, ((&x, &y), &z)) in r.iter_mut().zip(lanes).take(len) {
            *r = (x * x + y * y + z * z).sqrt();
        }
        set.len = len;
        set.start = start;
        Ok(())
    }

    /// Bins in the grid.
    #[inline(always)]
    fn bins(&self) -> usize {
        self.n.iter().product::<usize>().max(1)
    }

    /// Atoms (of every species) in bins `0..bin`: the visiting position of the first atom of
    /// `bin` ([`CellList::visit`]).
    #[inline]
    fn atoms_before(&self, bin: usize) -> usize {
        let bins = self.bins();
        (0..self.n_species)
            .map(|e| {
                let first = self.start.get(e * bins).copied().unwrap_or(0);
                let at = self.start.get(e * bins + bin).copied().unwrap_or(first);
                at.saturating_sub(first) as usize
            })
            .sum()
    }

    /// The atoms at visiting positions `range`, in that order, with their slots and bins.
    ///
    /// The visiting order is a fixed function of the system: bin after bin (in grid order,
    /// the c index fastest), within a bin species after species, within those atom index
    /// order. Consecutive atoms are spatial neighbours, so their searches read the same part
    /// of the cell list, and the atoms of one bin share one gathered candidate list
    /// (see [`CANDIDATES_PER_SLOT`]). [`crate::Model::compute`] and the chunks of [`crate::chunk`] visit
    /// atoms in this order.
    pub fn visit(&self, range: core::ops::Range<usize>) -> Visit<'_, 'w, T> {
        let bins = self.bins();
        let p = range.start.min(self.atoms());
        let left = range.end.min(self.atoms()).saturating_sub(p);
        // The bin holding position p: the last bin with atoms_before(bin) ≤ p (the first
        // such bins may be empty).
        let mut lo = 0usize;
        let mut hi = bins;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.atoms_before(mid) <= p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut v = Visit {
            list: self,
            bin: lo,
            species: 0,
            slot: 0,
            end: 0,
            left,
        };
        v.enter_key();
        // Skip the atoms of the bin before p, species by species.
        let mut skip = p.saturating_sub(self.atoms_before(lo));
        while skip > 0 && v.species < self.n_species {
            let here = v.end - v.slot;
            if skip < here {
                v.slot += skip;
                skip = 0;
            } else {
                skip -= here;
                v.species += 1;
                v.enter_key();
            }
        }
        v
    }

    /// Gathers into `cand` the candidates of every atom of `bin`: each atom (and periodic
    /// image) of the bins that the cutoff sphere of any point of the bin reaches, as position
    /// and image shift, grouped by species and within a species in the order that
    /// [`CellList::neighbors_of`] visits them. Returns `false` (nothing usable gathered) when
    /// they do not fit, or the search box needs more bins than the tables hold; the caller then
    /// searches atom by atom.
    fn gather(
        &self,
        bin: usize,
        cand: &mut Candidates<'_, T>,
        (shift, first, meta): (&mut [T], &mut [u32], &mut [u32]),
    ) -> bool {
        cand.bin = bin;
        cand.ok = false;
        let [_, nb, nc] = self.n;
        // (checked: a zero divisor cannot occur, but the optimiser cannot see it.)
        let row = bin.checked_div(nc).unwrap_or(0);
        let coords = [
            row.checked_div(nb).unwrap_or(0),
            row.checked_rem(nb).unwrap_or(0),
            bin.checked_rem(nc).unwrap_or(0),
        ];
        // The bin [k, k + 1) per axis, widened by the slack so that an atom whose bin
        // coordinate was rounded onto the bin's edge (or clamped into it) lies inside.
        let slack = T::from_f64(RANGE_SLACK);
        let lo = coords.map(|c| T::from_usize(c) - slack);
        let hi = coords.map(|c| T::from_usize(c) + T::ONE + slack);
        let Some(spans) = self.list_segments((&lo, &hi), shift, first, meta) else {
            return false;
        };
        let bins = self.bins();
        let cap = cand.j.len();
        let mut len = 0usize;
        for e in 0..self.n_species {
            if let Some(s) = cand.start.get_mut(e) {
                *s = len;
            }
            let lanes = shift.chunks_exact(3).zip(first.iter()).zip(meta.iter());
            for ((d, &b), &m) in lanes.take(spans) {
                let (count, _) = unpack(m);
                let key = e * bins + b as usize;
                let a = self.start.get(key).copied().unwrap_or(0) as usize;
                let z = self.start.get(key + count).copied().unwrap_or(0) as usize;
                let n = z.saturating_sub(a);
                if len + n > cap || !self.copy_images(a..z, cand, len, d) {
                    return false;
                }
                len += n;
            }
        }
        for e in self.n_species..=MAX_SPECIES {
            if let Some(s) = cand.start.get_mut(e) {
                *s = len;
            }
        }
        cand.ok = true;
        true
    }

    /// Copies the cell-list slots `span` into the candidate lanes from `at` on: image positions
    /// r_j + `shift` (rounded as [`CellList::scan`] rounds them) and atom indices. A span holds
    /// a few atoms (~4 on n2p2's water box), so it is copied in whole blocks of
    /// [`SCAN_BLOCK`] where both sides have room: a block's lanes past the span's end are
    /// written too, and are overwritten by the next span or lie past the last candidate
    /// (never read). `false` when the lanes are too short.
    #[inline(always)]
    fn copy_images(
        &self,
        span: core::ops::Range<usize>,
        cand: &mut Candidates<'_, T>,
        at: usize,
        shift: &[T],
    ) -> bool {
        let sh = match shift {
            [x, y, z] => [*x, *y, *z],
            _ => [T::ZERO; 3],
        };
        let n = span.len();
        let mut o = 0usize;
        while o < n {
            let (a, to) = (span.start + o, at + o);
            let src = (
                block(self.x, a),
                block(self.y, a),
                block(self.z, a),
                block(self.atom, a),
            );
            let dst = (
                block_mut(cand.x, to),
                block_mut(cand.y, to),
                block_mut(cand.z, to),
                block_mut(cand.j, to),
            );
            if let (
                (Some(sx), Some(sy), Some(sz), Some(sj)),
                (Some(dx), Some(dy), Some(dz), Some(dj)),
            ) = (src, dst)
            {
                // (By value: the compiler cannot tell that the lanes do not overlap the cell
                // list, and copied element by element.)
                *dx = sx.map(|x| x + sh[0]);
                *dy = sy.map(|y| y + sh[1]);
                *dz = sz.map(|z| z + sh[2]);
                *dj = *sj;
                o += SCAN_BLOCK;
                continue;
            }
            // Near the end of the cell list or of the lanes: one at a time.
            for (a, to) in (span.start + o..span.end).zip(at + o..) {
                let src = (
                    self.x.get(a),
                    self.y.get(a),
                    self.z.get(a),
                    self.atom.get(a),
                );
                let dst = (
                    cand.x.get_mut(to),
                    cand.y.get_mut(to),
                    cand.z.get_mut(to),
                    cand.j.get_mut(to),
                );
                let (
                    (Some(&x), Some(&y), Some(&z), Some(&j)),
                    (Some(ox), Some(oy), Some(oz), Some(oj)),
                ) = (src, dst)
                else {
                    return false;
                };
                (*ox, *oy, *oz, *oj) = (x + sh[0], y + sh[1], z + sh[2], j);
            }
            break;
        }
        true
    }

    /// Collects the neighbours of the atom at `at` (from [`CellList::visit`]) into `set`:
    /// the same neighbours, in the same order and with the same bits, as
    /// [`CellList::neighbors_of`]. The candidates of its bin are gathered into `cand` unless
    /// it holds them already (it is reset by [`Candidates::forget`]); atoms of one bin visited
    /// one after another then share one gathering. Without candidate storage, or when a bin's
    /// candidates do not fit, the atom is searched on its own.
    pub(crate) fn neighbors_at(
        &self,
        at: Visited,
        set: &mut NeighborSet<'_, T>,
        cand: &mut Candidates<'_, T>,
    ) -> Result<(), ComputeError> {
        if cand.j.is_empty() || !cfg!(feature = "bin-candidates") {
            return self.neighbors_of(at.atom, set);
        }
        if cand.bin != at.bin {
            let staging = (&mut *set.tmp_d, &mut *set.tmp_index, &mut *set.tmp_species);
            self.gather(at.bin, cand, staging);
        }
        if !cand.ok {
            return self.neighbors_of(at.atom, set);
        }
        set.clear();
        let pos = [
            self.x.get(at.slot).copied().unwrap_or(T::ZERO),
            self.y.get(at.slot).copied().unwrap_or(T::ZERO),
            self.z.get(at.slot).copied().unwrap_or(T::ZERO),
        ];
        let capacity = set.capacity();
        let own = at.atom as u32;
        let rc2 = self.rc2;
        let mut len = 0usize;
        let mut start = [0usize; MAX_SPECIES + 1];
        let mut from = 0usize;
        // The scan records only which candidates are kept (their positions in `cand`, in the
        // staging lane `tmp_index`, unused on this path); the kept ones' displacements,
        // distances and atom indices are then filled in one pass. About three candidates in
        // four are dropped.
        let picks = &mut *set.tmp_index;
        for (e, first) in start.iter_mut().enumerate().skip(1).take(self.n_species) {
            let to = cand.start.get(e).copied().unwrap_or(from).max(from);
            let span = from..to;
            from = to;
            let xs = cand.x.get(span.clone()).unwrap_or(&[]);
            let ys = cand.y.get(span.clone()).unwrap_or(&[]);
            let zs = cand.z.get(span.clone()).unwrap_or(&[]);
            let js = cand.j.get(span.clone()).unwrap_or(&[]);
            // Chunks of `SCAN_CHUNK` candidates: first a flag byte per candidate (a plain loop
            // over the lanes, which the compiler vectorises whole), then the flags eight at a
            // time as one word, the kept lanes' positions packed by table: one block store,
            // no branch.
            let chunks = xs
                .chunks(SCAN_CHUNK)
                .zip(ys.chunks(SCAN_CHUNK))
                .zip(zs.chunks(SCAN_CHUNK))
                .zip(js.chunks(SCAN_CHUNK));
            for ((((cx, cy), cz), cj), c0) in chunks.zip(span.step_by(SCAN_CHUNK)) {
                let mut flags = [0u8; SCAN_CHUNK];
                for (((f, &x), &y), &z) in flags.iter_mut().zip(cx).zip(cy).zip(cz) {
                    // As in `scan`: the image position (gathered) less the centre.
                    let (dx, dy, dz) = (x - pos[0], y - pos[1], z - pos[2]);
                    let r2 = dx * dx + dy * dy + dz * dz;
                    *f = u8::from(kept(r2, rc2)) | u8::from(r2 == T::ZERO) << 1;
                }
                let words = flags.chunks_exact(SCAN_BLOCK).zip(cj.chunks(SCAN_BLOCK));
                for ((w, bj), c) in words.zip((c0 as u32..).step_by(SCAN_BLOCK)) {
                    let word = u64::from_le_bytes(w.try_into().unwrap_or([0; SCAN_BLOCK]));
                    // Zero distance: only the central atom itself (an image of it is a
                    // lattice vector away). One well-predicted test per block.
                    if word & ZERO_FLAGS != 0 {
                        for (&f, &j) in w.iter().zip(bj) {
                            if f & 2 != 0 && j != own {
                                return Err(ComputeError::OverlappingAtoms {
                                    i: at.atom,
                                    j: j as usize,
                                });
                            }
                        }
                    }
                    let mask = lane_mask(word);
                    if let Some(out) = block_mut(picks, len) {
                        let lanes = PACKED_LANES.get(mask as usize).copied().unwrap_or(0);
                        for (o, b) in out.iter_mut().zip(lanes.to_le_bytes()) {
                            *o = c + u32::from(b);
                        }
                        len += mask.count_ones() as usize;
                    } else {
                        // Near (or past) the capacity: one at a time, counting past it.
                        for (l, &f) in (0u32..).zip(w) {
                            if let Some(o) = picks.get_mut(len) {
                                *o = c + l;
                            }
                            len += usize::from(f & 1);
                        }
                    }
                }
            }
            if len > capacity {
                return Err(ComputeError::NeighborOverflow {
                    atom: at.atom,
                    capacity,
                });
            }
            *first = len;
        }
        // Species the model does not have: empty ranges at the end.
        for first in start.iter_mut().skip(self.n_species + 1) {
            *first = len;
        }
        let slots = set
            .dx
            .iter_mut()
            .zip(set.dy.iter_mut())
            .zip(set.dz.iter_mut())
            .zip(set.r.iter_mut())
            .zip(set.index.iter_mut())
            .zip(picks.iter())
            .take(len);
        for (((((ox, oy), oz), or), oi), &c) in slots {
            let c = c as usize;
            let (Some(&x), Some(&y), Some(&z), Some(&j)) =
                (cand.x.get(c), cand.y.get(c), cand.z.get(c), cand.j.get(c))
            else {
                continue;
            };
            // The scan's displacement, again (same bits), and its length.
            let (dx, dy, dz) = (x - pos[0], y - pos[1], z - pos[2]);
            (*ox, *oy, *oz, *oi) = (dx, dy, dz, j);
            *or = (dx * dx + dy * dy + dz * dz).sqrt();
        }
        set.len = len;
        set.start = start;
        Ok(())
    }

    /// Fills `t` with axis `k`'s bins to visit for atoms at bin coordinates in the box
    /// `[s.0, s.1]` (one point for one atom), with their periodic images and squared slab
    /// gaps; `None` when there are more than [`AXIS_BINS`]. In place: returned by value, the
    /// ~150-byte table was copied by `memcpy` (on a microcontroller a tenth of the neighbour
    /// search).
    #[inline(always)]
    fn axis_table(&self, k: usize, s: (&[T; 3], &[T; 3]), t: &mut AxisTable<T>) -> Option<()> {
        let reach = at3(&self.reach, k);
        let (lo, _) = self.bin_range(k, at3(s.0, k), reach);
        let (_, hi) = self.bin_range(k, at3(s.1, k), reach);
        let len = usize::try_from(hi - lo + 1).unwrap_or(0);
        if len > AXIS_BINS {
            return None;
        }
        let n = self.n.get(k).copied().unwrap_or(1).max(1) as isize;
        (t.lo, t.len) = (lo, len);
        let entries = t
            .bin
            .iter_mut()
            .zip(t.image.iter_mut())
            .zip(t.gap2.iter_mut());
        for (tk, ((bin, image), gap2)) in (lo..=hi).zip(entries) {
            (*bin, *image) = wrap_index(tk, n);
            *gap2 = self.slab_gap2(k, tk, s);
        }
        Some(())
    }

    /// The spans of [`CellList::rows`] (see [`CellList::row_segments`]) into the lanes
    /// `shift` (3 per span), `bin` (first bin) and `meta` (bins and the unshifted flag,
    /// [`pack`]), from per-axis tables (no division, each gap computed once), for atoms at
    /// bin coordinates in the box `[s.0, s.1]` (for one atom, `(&s, &s)`). `None` when a table
    /// or the lanes are too short.
    #[inline(always)]
    fn list_segments(
        &self,
        s: (&[T; 3], &[T; 3]),
        shift: &mut [T],
        bin: &mut [u32],
        meta: &mut [u32],
    ) -> Option<usize> {
        let empty = || AxisTable {
            lo: 0,
            len: 0,
            bin: [0; AXIS_BINS],
            image: [0; AXIS_BINS],
            gap2: [T::ZERO; AXIS_BINS],
        };
        let (mut ta, mut tb, mut tc) = (empty(), empty(), empty());
        self.axis_table(0, s, &mut ta)?;
        self.axis_table(1, s, &mut tb)?;
        self.axis_table(2, s, &mut tc)?;
        let [_, nb, nc] = self.n.map(|v| v.max(1));
        let [va, vb, _] = self.frame.vectors;
        let gc = tc.gap2.get(..tc.len).unwrap_or(&[]);
        let mut n = 0usize;
        let mut full = false;
        let a_rows = ta.bin.iter().zip(&ta.image).zip(&ta.gap2).take(ta.len);
        for ((&a, &ma), &ga) in a_rows {
            if ga > self.rc2 {
                continue;
            }
            let fa = T::from_isize(ma);
            let b_rows = tb.bin.iter().zip(&tb.image).zip(&tb.gap2).take(tb.len);
            for ((&b, &mb), &gb) in b_rows {
                let dab2 = ga + gb;
                if dab2 > self.rc2 {
                    continue;
                }
                // Trim the row's ends to the bins the sphere reaches at this (a, b) gap.
                let rest = self.rc2 - dab2;
                let lo = gc.iter().take_while(|&&g| g > rest).count();
                let hi = gc.len() - gc.iter().rev().take_while(|&&g| g > rest).count();
                if lo >= hi {
                    continue;
                }
                let fb = T::from_isize(mb);
                let row = Row {
                    cell: (a as usize * nb + b as usize) * nc,
                    lo: tc.lo + lo as isize,
                    hi: tc.lo + hi as isize - 1,
                    shift: core::array::from_fn(|x| fa * at3(&va, x) + fb * at3(&vb, x)),
                    unshifted: ma == 0 && mb == 0,
                };
                let _ = self.row_segments(&row, |first, count, sh, unshifted| {
                    let slots = (
                        shift.get_mut(3 * n..3 * n + 3),
                        bin.get_mut(n),
                        meta.get_mut(n),
                    );
                    if let (Some(d), Some(b), Some(m)) = slots {
                        d.copy_from_slice(&sh);
                        *b = first as u32;
                        *m = pack(count, unshifted);
                        n += 1;
                    } else {
                        full = true;
                    }
                    Ok::<(), ()>(())
                });
            }
        }
        (!full).then_some(n)
    }

    /// The bin rows (fixed a and b bins, a range of c bins) that an atom at bin coordinates
    /// `s` must visit: its search box, less the rows and row ends that lie beyond the cutoff
    /// when the axes are orthogonal.
    fn rows<'s>(&'s self, s: &'s [T; 3]) -> impl Iterator<Item = Row<T>> + 's {
        let range = |k| self.bin_range(k, at3(s, k), at3(&self.reach, k));
        let ((la, ha), (lb, hb), (lc, hc)) = (range(0), range(1), range(2));
        let [na, nb, nc] = self.n.map(|v| v.max(1) as isize);
        let [va, vb, _] = self.frame.vectors;
        (la..=ha).flat_map(move |ta| {
            let (a, ma) = wrap_index(ta, na);
            let da2 = self.slab_gap2(0, ta, (s, s));
            (lb..=hb).filter_map(move |tb| {
                let (b, mb) = wrap_index(tb, nb);
                let dab2 = da2 + self.slab_gap2(1, tb, (s, s));
                let rest = self.rc2 - dab2;
                // Trim the row's ends to the bins the sphere reaches at this (a, b) gap.
                let (mut lo, mut hi) = (lc, hc);
                while lo <= hi && self.slab_gap2(2, lo, (s, s)) > rest {
                    lo += 1;
                }
                while hi >= lo && self.slab_gap2(2, hi, (s, s)) > rest {
                    hi -= 1;
                }
                if dab2 > self.rc2 || lo > hi {
                    return None;
                }
                let (fa, fb) = (T::from_isize(ma), T::from_isize(mb));
                Some(Row {
                    cell: ((a * nb + b) * nc) as usize,
                    lo,
                    hi,
                    shift: core::array::from_fn(|x| fa * at3(&va, x) + fb * at3(&vb, x)),
                    unshifted: ma == 0 && mb == 0,
                })
            })
        })
    }

    /// Bins (unwrapped on periodic axes, clamped into the grid on open ones) that axis `k`
    /// must visit for an atom at bin coordinate `s` and a reach of `reach` bins.
    #[inline(always)]
    fn bin_range(&self, k: usize, s: T, reach: T) -> (isize, isize) {
        let lo = floor_isize(s - reach);
        let hi = floor_isize(s + reach);
        if self.frame.pbc.get(k).copied().unwrap_or(false) {
            (lo, hi)
        } else {
            // (max/min rather than clamp: clamp panics on an empty interval, which n ≥ 1 rules
            // out but the optimiser cannot see.)
            let top = (self.n.get(k).copied().unwrap_or(1) as isize - 1).max(0);
            (lo.max(0).min(top), hi.max(0).min(top))
        }
    }

    /// Squared real-space gap along axis `k` between bin coordinates in `[s.0, s.1]` (one
    /// point for one atom) and bin `t` (less the slack), when the axes are orthogonal; zero
    /// otherwise (no pruning).
    #[inline(always)]
    fn slab_gap2(&self, k: usize, t: isize, s: (&[T; 3], &[T; 3])) -> T {
        if !self.orthogonal {
            return T::ZERO;
        }
        let (lo, hi, tk) = (at3(s.0, k), at3(s.1, k), T::from_isize(t));
        let gap = (tk - hi).max(lo - (tk + T::ONE)) - T::from_f64(RANGE_SLACK);
        let d = gap.max(T::ZERO) * at3(&self.width, k);
        d * d
    }

    /// Splits a row into spans of consecutive bins, one per periodic image along c, and
    /// calls `f(first bin, bins, image shift, unshifted)` for each.
    #[inline(always)]
    fn row_segments<E>(
        &self,
        row: &Row<T>,
        mut f: impl FnMut(usize, usize, [T; 3], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        let nc = self.n.get(2).copied().unwrap_or(1).max(1) as isize;
        let vc = axis_of(&self.frame.vectors, 2);
        let mut tc = row.lo;
        while tc <= row.hi {
            let (c0, mc) = wrap_index(tc, nc);
            let t_end = row.hi.min(tc + (nc - 1 - c0));
            let count = (t_end - tc + 1) as usize;
            tc = t_end + 1;
            let fc = T::from_isize(mc);
            let shift: [T; 3] = core::array::from_fn(|x| at3(&row.shift, x) + fc * at3(&vc, x));
            f(
                row.cell + c0 as usize,
                count,
                shift,
                row.unshifted && mc == 0,
            )?;
        }
        Ok(())
    }

    /// Appends the atoms of `seg` within the cutoff of the centre to `out` at `*len`,
    /// counting past the capacity without writing (the caller reports the overflow). Errors
    /// on a zero-distance pair other than the central atom in its own image.
    #[inline(always)]
    fn scan(
        &self,
        seg: &Segment<T>,
        centre: &Centre<T>,
        out: &mut Out<'_, T>,
        len: &mut usize,
    ) -> Result<(), ComputeError> {
        let lo = self.start.get(seg.key).copied().unwrap_or(0) as usize;
        let hi = self.start.get(seg.key + seg.count).copied().unwrap_or(0) as usize;
        let span = lo..hi.max(lo);
        let xs = self.x.get(span.clone()).unwrap_or(&[]);
        let ys = self.y.get(span.clone()).unwrap_or(&[]);
        let zs = self.z.get(span.clone()).unwrap_or(&[]);
        let ids = self.atom.get(span).unwrap_or(&[]);
        let (pi, shift, rc2) = (centre.pos, seg.shift, self.rc2);
        // The central atom itself is skipped only in its unshifted image.
        let own = if seg.unshifted {
            centre.atom as u32
        } else {
            u32::MAX
        };
        let mut k = *len;
        for (((&xj, &yj), &zj), &j) in xs.iter().zip(ys).zip(zs).zip(ids) {
            // Numerical guard: the image position r_j + shift first, then the difference.
            // When the image is a neighbour, r_j and −shift nearly cancel, which is exact
            // (Sterbenz) in the common case, so one rounding of size ~ulp(cell) remains. The
            // gathered candidates of `neighbors_at` hold r_j + shift: same bits.
            let dx = (xj + shift[0]) - pi[0];
            let dy = (yj + shift[1]) - pi[1];
            let dz = (zj + shift[2]) - pi[2];
            let r2 = dx * dx + dy * dy + dz * dz;
            // Zero distance: only the central atom in its own image (a well-predicted branch).
            if r2 == T::ZERO && j != own {
                *len = k;
                return Err(ComputeError::OverlappingAtoms {
                    i: centre.atom,
                    j: j as usize,
                });
            }
            // Written unconditionally, kept (k advanced) only within the cutoff and off the
            // central atom: no unpredictable branch. Past the capacity k keeps counting and
            // nothing is written.
            if let (Some(ox), Some(oy), Some(oz), Some(oi)) = (
                out.dx.get_mut(k),
                out.dy.get_mut(k),
                out.dz.get_mut(k),
                out.index.get_mut(k),
            ) {
                (*ox, *oy, *oz, *oi) = (dx, dy, dz, j);
            }
            k += usize::from(kept(r2, rc2));
        }
        *len = k;
        Ok(())
    }
}

/// Candidates per block of [`CellList::neighbors_at`]'s scan (a power of two).
const SCAN_BLOCK: usize = 8;

/// For each mask of kept lanes of a scan block, the kept lane numbers in order, one per
/// byte (little-endian; the bytes past the count are zero). A left-pack by table, as SIMD
/// filters do without a compress instruction.
// (Indexing in a constant is evaluated by the compiler: out of bounds would not compile.)
#[allow(clippy::indexing_slicing)]
const PACKED_LANES: [u64; 1 << SCAN_BLOCK] = {
    let mut table = [0u64; 1 << SCAN_BLOCK];
    let mut mask = 0;
    while mask < table.len() {
        let (mut packed, mut kept, mut lane) = (0u64, 0, 0);
        while lane < SCAN_BLOCK {
            if mask >> lane & 1 == 1 {
                packed |= (lane as u64) << (8 * kept);
                kept += 1;
            }
            lane += 1;
        }
        table[mask] = packed;
        mask += 1;
    }
    table
};
const _: () = assert!(
    SCAN_BLOCK <= 8,
    "PACKED_LANES holds 8 lane numbers per mask"
);

/// Lanes `at..at + SCAN_BLOCK` of `v` as a mutable array (`None` when `v` is shorter).
#[inline(always)]
fn block_mut<X>(v: &mut [X], at: usize) -> Option<&mut [X; SCAN_BLOCK]> {
    v.get_mut(at..at + SCAN_BLOCK)
        .and_then(|w| <&mut [X; SCAN_BLOCK]>::try_from(w).ok())
}

/// Lanes `at..at + SCAN_BLOCK` of `v` as an array (`None` when `v` is shorter).
#[inline(always)]
fn block<X>(v: &[X], at: usize) -> Option<&[X; SCAN_BLOCK]> {
    v.get(at..at + SCAN_BLOCK)
        .and_then(|w| <&[X; SCAN_BLOCK]>::try_from(w).ok())
}

/// Candidates per chunk of [`CellList::neighbors_at`]'s scan (a multiple of [`SCAN_BLOCK`]).
const SCAN_CHUNK: usize = 64;
const _: () = assert!(SCAN_CHUNK % SCAN_BLOCK == 0);

/// The zero-distance flags (bit 1) of a word of eight scan flag bytes.
const ZERO_FLAGS: u64 = 0x0202_0202_0202_0202;

/// The kept flags (bit 0) of a word of eight scan flag bytes, byte l's as bit l: gathered
/// into the top byte by one multiplication (byte l of the multiplier is 2^(7 − l); the
/// partial products do not overlap).
#[inline(always)]
fn lane_mask(word: u64) -> u32 {
    ((word & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
}

/// Whether a candidate at squared distance `r2` is a neighbour: within the cutoff and not the
/// central atom itself (zero distance; other zero distances are errors, reported first).
#[inline(always)]
fn kept<T: Real>(r2: T, rc2: T) -> bool {
    r2 <= rc2 && r2 > T::ZERO
}

/// An atom as [`CellList::visit`] yields it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visited {
    /// Atom index.
    pub atom: usize,
    /// Its slot in the cell list.
    pub slot: usize,
    /// Its bin.
    pub bin: usize,
}

/// Iterator of [`CellList::visit`].
pub struct Visit<'l, 'w, T> {
    list: &'l CellList<'w, T>,
    bin: usize,
    species: usize,
    slot: usize,
    end: usize,
    left: usize,
}

impl<T> Visit<'_, '_, T> {
    /// Points `slot..end` at the atoms of the current (species, bin) key.
    fn enter_key(&mut self) {
        let bins = self.list.n.iter().product::<usize>().max(1);
        let key = self.species * bins + self.bin;
        let at = |k: usize| self.list.start.get(k).copied().unwrap_or(0) as usize;
        self.slot = at(key);
        self.end = at(key + 1).max(self.slot);
    }
}

impl<T> Iterator for Visit<'_, '_, T> {
    type Item = Visited;

    fn next(&mut self) -> Option<Visited> {
        if self.left == 0 {
            return None;
        }
        let bins = self.list.n.iter().product::<usize>().max(1);
        while self.slot >= self.end {
            self.species += 1;
            if self.species >= self.list.n_species {
                self.species = 0;
                self.bin += 1;
                if self.bin >= bins {
                    self.left = 0;
                    return None;
                }
            }
            self.enter_key();
        }
        let slot = self.slot;
        self.slot += 1;
        self.left -= 1;
        let atom = self.list.atom.get(slot).copied().unwrap_or(0) as usize;
        Some(Visited {
            atom,
            slot,
            bin: self.bin,
        })
    }
}

/// Candidate slots per neighbour slot of the storage for the candidate lists of a bin that
/// [`crate::WorkspaceSize::per_thread`] provides: the candidates of a bin (bins about rc/2
/// wide) are about 5× an atom's neighbours, and the neighbour capacity has its own margin.
pub const CANDIDATES_PER_SLOT: usize = 4;

/// Reals per candidate slot (image position).
pub(crate) const CANDIDATE_REALS: usize = 3;

/// The candidates of the bin being visited, gathered once and scanned by each of its atoms
/// ([`CellList::neighbors_at`]): image positions r_j + shift, structure-of-arrays, with
/// the atom each is an image of; grouped by species. Optional: with no storage every atom is
/// searched on its own, with the same results.
pub(crate) struct Candidates<'w, T> {
    x: &'w mut [T],
    y: &'w mut [T],
    z: &'w mut [T],
    j: &'w mut [u32],
    /// `start[e]..start[e + 1]` are the candidates of species e.
    start: [usize; MAX_SPECIES + 1],
    /// The bin gathered (`usize::MAX`: none) and whether the gathering succeeded.
    bin: usize,
    ok: bool,
}

impl<'w, T: Real> Candidates<'w, T> {
    /// Storage for `capacity` candidates out of `reals` (3 per candidate) and `indices` (1
    /// per candidate); fewer when the slices are shorter.
    pub(crate) fn new(capacity: usize, reals: &'w mut [T], indices: &'w mut [u32]) -> Self {
        let capacity = capacity
            .min(reals.len() / CANDIDATE_REALS)
            .min(indices.len());
        let (x, rest) = split(reals, capacity);
        let (y, rest) = split(rest, capacity);
        let (z, _) = split(rest, capacity);
        let (j, _) = split(indices, capacity);
        Candidates {
            x,
            y,
            z,
            j,
            start: [0; MAX_SPECIES + 1],
            bin: usize::MAX,
            ok: false,
        }
    }

    /// Forgets the gathered bin (call whenever the cell list may have changed).
    pub(crate) fn forget(&mut self) {
        self.bin = usize::MAX;
        self.ok = false;
    }
}

/// Bins of a span and its unshifted flag in one `u32` (the top bit is the flag).
#[inline(always)]
fn pack(count: usize, unshifted: bool) -> u32 {
    (count as u32 & 0x7fff_ffff) | (u32::from(unshifted) << 31)
}

/// Inverse of [`pack`].
#[inline(always)]
fn unpack(meta: u32) -> (usize, bool) {
    ((meta & 0x7fff_ffff) as usize, meta >> 31 == 1)
}

/// Consecutive bins `key..key + count` (keys of one species) with one image shift.
struct Segment<T> {
    key: usize,
    count: usize,
    shift: [T; 3],
    unshifted: bool,
}

/// The lanes [`CellList::scan`] writes.
struct Out<'a, T> {
    dx: &'a mut [T],
    dy: &'a mut [T],
    dz: &'a mut [T],
    index: &'a mut [u32],
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) for positions.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// All (j, image) pairs within `rc` of atom i by brute force over images, as sorted
    /// (species, j, rounded displacement) keys.
    fn brute(
        pos: &[[f64; 3]],
        species: &[u8],
        cell: Option<&Cell<f64>>,
        rc: f64,
        i: usize,
    ) -> Vec<(u8, u32, [i64; 3])> {
        let (v, pbc) = cell.map_or(([[0.0; 3]; 3], [false; 3]), |c| (c.vectors, c.pbc));
        let m = |k: usize| if pbc[k] { 12i64 } else { 0 };
        let mut out = Vec::new();
        for (j, pj) in pos.iter().enumerate() {
            for a in -m(0)..=m(0) {
                for b in -m(1)..=m(1) {
                    for c in -m(2)..=m(2) {
                        let d: [f64; 3] = core::array::from_fn(|x| {
                            pj[x] - pos[i][x]
                                + a as f64 * v[0][x]
                                + b as f64 * v[1][x]
                                + c as f64 * v[2][x]
                        });
                        let r2 = dot(d, d);
                        if r2 > 0.0 && r2 <= rc * rc {
                            out.push((species[j], j as u32, d.map(|x| (x * 1e6).round() as i64)));
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The cell list finds exactly the brute-force neighbours, grouped by species, with the
    /// right distances, for every atom — whichever path (tables or the per-species fallback
    /// for cells much thinner than the cutoff) the search takes.
    fn check(pos: &[[f64; 3]], species: &[u8], cell: Option<Cell<f64>>, rc: f64) {
        let n = pos.len();
        let size = CellListSize::new(3, n);
        let (mut r, mut idx) = (vec![0.0; size.reals], vec![0u32; size.indices]);
        let list = CellList::build(pos, species, 3, cell.as_ref(), rc, &mut r, &mut idx).unwrap();
        let cap = 4096;
        let (mut nr, mut ni) = (vec![0.0; 12 * cap], vec![0u32; 3 * cap]);
        let mut set = NeighborSet::new(cap, &mut nr, &mut ni).unwrap();
        for i in 0..n {
            list.neighbors_of(i, &mut set).unwrap();
            let mut got = Vec::new();
            for e in 0..MAX_SPECIES {
                for k in set.species_range(e) {
                    let d = set.displacement(k);
                    let j = set.atom_index(k).unwrap();
                    assert_eq!(species[j as usize] as usize, e, "atom {i}: species block");
                    assert!((set.distance(k) - dot(d, d).sqrt()).abs() < 1e-12);
                    got.push((e as u8, j, d.map(|x| (x * 1e6).round() as i64)));
                }
            }
            assert_eq!(set.len(), got.len());
            got.sort();
            assert_eq!(got, brute(pos, species, cell.as_ref(), rc, i), "atom {i}");
        }
        // In visiting order with gathered candidates (ample, and too few for any bin): the
        // same neighbours in the same order with the same bits as the atom-by-atom search.
        let bits = |s: &NeighborSet<'_, f64>| {
            let mut v = Vec::new();
            for e in 0..MAX_SPECIES {
                v.push(s.species_range(e).len() as u64);
                for k in s.species_range(e) {
                    v.extend(s.displacement(k).map(f64::to_bits));
                    v.push(s.distance(k).to_bits());
                    v.push(u64::from(s.atom_index(k).unwrap()));
                }
            }
            v
        };
        let (mut nr2, mut ni2) = (vec![0.0; 12 * cap], vec![0u32; 3 * cap]);
        let mut other = NeighborSet::new(cap, &mut nr2, &mut ni2).unwrap();
        for slots in [4 * cap, 3] {
            let (mut cr, mut ci) = (vec![0.0; 3 * slots], vec![0u32; slots]);
            let mut cand = Candidates::new(slots, &mut cr, &mut ci);
            let mut seen = vec![false; n];
            for (p, at) in list.visit(0..n).enumerate() {
                assert_eq!(list.visit(p..n).next(), Some(at), "visit from {p}");
                seen[at.atom] = true;
                list.neighbors_at(at, &mut set, &mut cand).unwrap();
                list.neighbors_of(at.atom, &mut other).unwrap();
                assert_eq!(bits(&set), bits(&other), "atom {}", at.atom);
            }
            assert!(seen.iter().all(|&s| s), "every atom visited once");
            assert_eq!(list.visit(0..n).count(), n);
        }
        // A neighbour set just large enough: the scan's last blocks take the one-at-a-time
        // path near its capacity, with the same results.
        let most = (0..n)
            .map(|i| {
                list.neighbors_of(i, &mut other).unwrap();
                other.len()
            })
            .max()
            .unwrap_or(0);
        let (mut nr3, mut ni3) = (vec![0.0; 12 * most], vec![0u32; 3 * most]);
        let mut tight = NeighborSet::new(most, &mut nr3, &mut ni3).unwrap();
        let (mut cr, mut ci) = (vec![0.0; 3 * 4 * cap], vec![0u32; 4 * cap]);
        let mut cand = Candidates::new(4 * cap, &mut cr, &mut ci);
        for at in list.visit(0..n) {
            list.neighbors_at(at, &mut tight, &mut cand).unwrap();
            list.neighbors_of(at.atom, &mut other).unwrap();
            assert_eq!(bits(&tight), bits(&other), "atom {} (tight)", at.atom);
        }
    }

    fn random(n: usize, box_: [f64; 3], seed: u64) -> (Vec<[f64; 3]>, Vec<u8>) {
        let mut g = Rng(seed);
        let pos = (0..n)
            .map(|_| box_.map(|l| (g.next() * 1.4 - 0.2) * l))
            .collect();
        let species = (0..n).map(|_| (g.next() * 3.0) as u8 % 3).collect();
        (pos, species)
    }

    #[test]
    fn cell_list_matches_brute_force() {
        let (pos, sp) = random(60, [9.0, 8.0, 10.0], 7);
        // Open boundaries.
        check(&pos, &sp, None, 3.1);
        // Periodic orthorhombic, cell larger and smaller than 2·rc.
        check(&pos, &sp, Some(Cell::orthorhombic(9.0, 8.0, 10.0)), 3.1);
        check(&pos, &sp, Some(Cell::orthorhombic(9.0, 8.0, 10.0)), 5.5);
        // Mixed boundaries.
        let mut mixed = Cell::orthorhombic(9.0, 8.0, 10.0);
        mixed.pbc = [true, false, true];
        check(&pos, &sp, Some(mixed), 4.0);
        // Triclinic (no row pruning), with a cell thinner than the cutoff.
        let tri = Cell::periodic([[9.0, 0.0, 0.0], [2.5, 8.0, 0.0], [-1.5, 1.0, 10.0]]);
        check(&pos, &sp, Some(tri), 3.1);
        check(&pos, &sp, Some(tri), 7.0);
        // A tiny cell: the search box spans more bins than the tables hold.
        let (pos, sp) = random(3, [1.1, 1.0, 1.2], 11);
        check(&pos, &sp, Some(Cell::orthorhombic(1.1, 1.0, 1.2)), 6.5);
    }

    #[test]
    fn tiny_cell_takes_the_fallback_path() {
        // The tiny cell of `cell_list_matches_brute_force` searches more bins per axis than
        // the tables hold, so that test covers the per-species fallback; a normal cell does not.
        let spans = |pos: &[[f64; 3]], sp: &[u8], cell: Cell<f64>, rc: f64| {
            let size = CellListSize::new(3, pos.len());
            let (mut r, mut idx) = (vec![0.0; size.reals], vec![0u32; size.indices]);
            let list = CellList::build(pos, sp, 3, Some(&cell), rc, &mut r, &mut idx).unwrap();
            let s = list.bin_coords(list.wrap(pos[0]));
            let (mut d, mut b, mut m) = (vec![0.0; 3 * 256], vec![0u32; 256], vec![0u32; 256]);
            list.list_segments((&s, &s), &mut d, &mut b, &mut m)
        };
        let (pos, sp) = random(3, [1.1, 1.0, 1.2], 11);
        assert_eq!(
            spans(&pos, &sp, Cell::orthorhombic(1.1, 1.0, 1.2), 6.5),
            None
        );
        let (pos, sp) = random(60, [9.0, 8.0, 10.0], 7);
        assert!(spans(&pos, &sp, Cell::orthorhombic(9.0, 8.0, 10.0), 3.1).is_some());
    }

    #[test]
    fn packed_lanes_list_the_kept_lanes_in_order() {
        for (mask, packed) in PACKED_LANES.iter().enumerate() {
            let want: Vec<u8> = (0..SCAN_BLOCK as u8)
                .filter(|l| mask >> l & 1 == 1)
                .collect();
            let bytes = packed.to_le_bytes();
            assert_eq!(&bytes[..want.len()], &want[..], "mask {mask:#010b}");
            assert!(
                bytes[want.len()..].iter().all(|&b| b == 0),
                "mask {mask:#010b}"
            );
        }
    }

    #[test]
    fn lane_mask_gathers_the_kept_flags() {
        for mask in 0u32..1 << SCAN_BLOCK {
            for zeros in [0u8, 0b1010_0110, 0xff] {
                let mut bytes = [0u8; SCAN_BLOCK];
                for (l, b) in bytes.iter_mut().enumerate() {
                    *b = (mask >> l & 1) as u8 | (zeros >> l & 1) << 1;
                }
                let word = u64::from_le_bytes(bytes);
                assert_eq!(
                    lane_mask(word),
                    mask,
                    "mask {mask:#010b}, zeros {zeros:#010b}"
                );
                assert_eq!(word & ZERO_FLAGS != 0, zeros != 0);
            }
        }
    }

    #[test]
    fn overflow_and_overlap_are_reported() {
        let (pos, sp) = random(40, [6.0, 6.0, 6.0], 3);
        let size = CellListSize::new(3, pos.len());
        let (mut r, mut idx) = (vec![0.0; size.reals], vec![0u32; size.indices]);
        let cell = Cell::orthorhombic(6.0, 6.0, 6.0);
        let list = CellList::build(&pos, &sp, 3, Some(&cell), 4.0, &mut r, &mut idx).unwrap();
        let (mut nr, mut ni) = (vec![0.0; 12 * 8], vec![0u32; 3 * 8]);
        let mut set = NeighborSet::new(8, &mut nr, &mut ni).unwrap();
        assert_eq!(
            list.neighbors_of(5, &mut set),
            Err(ComputeError::NeighborOverflow {
                atom: 5,
                capacity: 8
            })
        );
        let (mut cr, mut ci) = (vec![0.0; 3 * 2048], vec![0u32; 2048]);
        let mut cand = Candidates::new(2048, &mut cr, &mut ci);
        let at = list.visit(0..pos.len()).find(|a| a.atom == 5).unwrap();
        assert_eq!(
            list.neighbors_at(at, &mut set, &mut cand),
            Err(ComputeError::NeighborOverflow {
                atom: 5,
                capacity: 8
            })
        );
        let mut pos = pos;
        pos[9] = pos[4];
        let list = CellList::build(&pos, &sp, 3, Some(&cell), 4.0, &mut r, &mut idx).unwrap();
        let (mut nr, mut ni) = (vec![0.0; 12 * 512], vec![0u32; 3 * 512]);
        let mut set = NeighborSet::new(512, &mut nr, &mut ni).unwrap();
        assert_eq!(
            list.neighbors_of(4, &mut set),
            Err(ComputeError::OverlappingAtoms { i: 4, j: 9 })
        );
        // The same through the gathered candidates of the atom's bin.
        let (mut cr, mut ci) = (vec![0.0; 3 * 2048], vec![0u32; 2048]);
        let mut cand = Candidates::new(2048, &mut cr, &mut ci);
        let at = list.visit(0..pos.len()).find(|a| a.atom == 4).unwrap();
        assert_eq!(
            list.neighbors_at(at, &mut set, &mut cand),
            Err(ComputeError::OverlappingAtoms { i: 4, j: 9 })
        );
        // Too little storage is named, not truncated.
        assert!(matches!(
            CellList::build(&pos, &sp, 3, Some(&cell), 4.0, &mut r[..5], &mut idx),
            Err(ComputeError::BufferTooSmall { .. })
        ));
    }
}
