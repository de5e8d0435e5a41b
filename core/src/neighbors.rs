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

/// A cell list over caller storage.
pub(crate) struct CellList<'w, T> {
    /// Wrapped positions, 3 per atom.
    pub pos: &'w mut [T],
    /// Cell of each atom.
    pub cell_of: &'w mut [u32],
    /// Atoms sorted by cell.
    pub order: &'w mut [u32],
    /// `cell_start[c]..cell_start[c+1]` index `order`.
    pub cell_start: &'w mut [u32],
    /// Grid shape.
    pub n: [usize; 3],
    /// Search reach (cells) per axis.
    pub reach: [usize; 3],
    /// Lattice (or identity) vectors and periodicity.
    pub frame: Cell<T>,
    /// Fractional origin and inverse bin width per axis (fractional units).
    origin: [T; 3],
    inv_bin: [T; 3],
    recip: [[T; 3]; 3],
    rc2: T,
}

impl<'w, T: Real> CellList<'w, T> {
    /// Bins `positions` into at most `cell_start.len() − 1` cells of size ≥ `rc` where possible.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        positions: &[[T; 3]],
        cell: Option<&Cell<T>>,
        rc: T,
        pos: &'w mut [T],
        cell_of: &'w mut [u32],
        order: &'w mut [u32],
        cell_start: &'w mut [u32],
    ) -> Result<Self, ComputeError> {
        let z = T::ZERO;
        let frame = match cell {
            Some(c) => *c,
            None => Cell {
                vectors: [[T::ONE, z, z], [z, T::ONE, z], [z, z, T::ONE]],
                pbc: [false; 3],
            },
        };
        let recip = frame.reciprocal()?;
        let n_atoms = positions.len();
        // Fractional coordinates: wrap periodic axes into [0, 1), find the extent of open axes.
        let inf = T::from_f64(f64::INFINITY);
        let mut lo = frame.pbc.map(|p| if p { T::ZERO } else { inf });
        let mut hi = frame.pbc.map(|p| if p { T::ONE } else { -inf });
        for (atom, (p, w)) in positions.iter().zip(pos.chunks_exact_mut(3)).enumerate() {
            if !p.iter().all(|x| x.is_finite()) {
                return Err(ComputeError::NonFinitePosition { atom });
            }
            let mut wrapped = *p;
            let axes = recip.iter().zip(frame.vectors.iter()).zip(frame.pbc);
            for (((rk, vk), periodic), (l, h)) in axes.zip(lo.iter_mut().zip(hi.iter_mut())) {
                let s = dot(*rk, *p);
                if periodic {
                    let f = s.floor();
                    wrapped
                        .iter_mut()
                        .zip(vk)
                        .for_each(|(wc, &vc)| *wc -= f * vc);
                } else {
                    *l = l.min(s);
                    *h = h.max(s);
                }
            }
            w.copy_from_slice(&wrapped);
        }
        if n_atoms == 0 {
            lo = [T::ZERO; 3];
            hi = [T::ZERO; 3];
        }
        // Real-space extent of each axis: fractional span × plane spacing.
        let width: [T; 3] = core::array::from_fn(|k| {
            let (rk, l, h) = (axis_of(&recip, k), at3(&lo, k), at3(&hi, k));
            (h - l) / dot(rk, rk).sqrt()
        });
        // Grid: bins at least rc wide where the extent allows.
        let cap = cell_start.len().saturating_sub(1).max(1);
        let mut n = width.map(|w| {
            let cells = (w / rc).floor().to_f64();
            if cells >= 1.0 {
                cells.min(1e6) as usize
            } else {
                1
            }
        });
        while n.iter().product::<usize>() > cap && n != [1, 1, 1] {
            if let Some(big) = n.iter_mut().max_by_key(|x| **x) {
                *big = big.div_ceil(2).max(1);
            }
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
        let reach: [usize; 3] = core::array::from_fn(|k| {
            let nk = n.get(k).copied().unwrap_or(1);
            let periodic = frame.pbc.get(k).copied().unwrap_or(false);
            let bin_width = at3(&width, k) / T::from_usize(nk);
            if bin_width > T::ZERO {
                // ceil(rc / bin width) through the math facade: −floor(−x).
                let m = (-(-(rc / bin_width)).floor()).to_f64();
                let m = if m.is_finite() {
                    m.min(1e6) as usize
                } else {
                    1
                };
                if periodic {
                    m.max(1)
                } else {
                    m.min(nk - 1)
                }
            } else {
                usize::from(periodic)
            }
        });
        let n_cells = n[0] * n[1] * n[2];
        if cell_start.len() < n_cells + 1 {
            return Err(ComputeError::BufferTooSmall {
                what: "cells",
                needed: n_cells + 1,
                got: cell_start.len(),
            });
        }
        let mut list = CellList {
            pos,
            cell_of,
            order,
            cell_start,
            n,
            reach,
            frame,
            origin: lo,
            inv_bin,
            recip,
            rc2: rc * rc,
        };
        list.bin(n_atoms);
        Ok(list)
    }

    /// Cell coordinates of a wrapped position.
    #[inline]
    fn coords(&self, p: [T; 3]) -> [usize; 3] {
        core::array::from_fn(|k| {
            let s =
                (dot(axis_of(&self.recip, k), p) - at3(&self.origin, k)) * at3(&self.inv_bin, k);
            let f = s.floor().to_f64();
            let top = self.n.get(k).copied().unwrap_or(1) - 1;
            // Rounding can put a wrapped coordinate at exactly 1.0 (or the top of an open axis):
            // clamp into the grid.
            if f > 0.0 {
                (f as usize).min(top)
            } else {
                0
            }
        })
    }

    fn bin(&mut self, n_atoms: usize) {
        for c in self.cell_start.iter_mut() {
            *c = 0;
        }
        for atom in 0..n_atoms {
            let p = self.wrapped(atom);
            let [a, b, c] = self.coords(p);
            let id = (a * self.n[1] + b) * self.n[2] + c;
            if let Some(slot) = self.cell_of.get_mut(atom) {
                *slot = id as u32;
            }
            if let Some(cnt) = self.cell_start.get_mut(id + 1) {
                *cnt += 1;
            }
        }
        // Exclusive prefix sum: cell_start[c] = first slot of cell c.
        let mut acc = 0u32;
        for c in self.cell_start.iter_mut() {
            acc += *c;
            *c = acc;
        }
        // Place atoms in order, advancing each cell's cursor; afterwards cell_start[c] holds the
        // end of cell c, i.e. the start of c + 1.
        for atom in 0..n_atoms {
            let id = self.cell_of.get(atom).copied().unwrap_or(0) as usize;
            if let Some(cursor) = self.cell_start.get_mut(id) {
                let p = *cursor as usize;
                *cursor += 1;
                if let Some(o) = self.order.get_mut(p) {
                    *o = atom as u32;
                }
            }
        }
        // Shift right by one so that cell_start[c] is the start of c again.
        let mut prev = 0u32;
        for c in self.cell_start.iter_mut() {
            core::mem::swap(c, &mut prev);
        }
    }

    #[inline(always)]
    fn wrapped(&self, atom: usize) -> [T; 3] {
        let b = 3 * atom;
        match self.pos.get(b..b + 3) {
            Some(&[x, y, z]) => [x, y, z],
            _ => [T::ZERO; 3],
        }
    }

    /// Collects the neighbours of `atom` (species from `species`) into `set` and sorts them.
    pub fn neighbors_of(
        &self,
        atom: usize,
        species: &[u8],
        set: &mut NeighborSet<'_, T>,
    ) -> Result<(), ComputeError> {
        set.clear();
        let pi = self.wrapped(atom);
        let [ca, cb, cc] = self.coords(pi);
        let [na, nb, nc] = self.n;
        let [ra, rb, rc_] = self.reach;
        let v = self.frame.vectors;
        for oa in -(ra as isize)..=(ra as isize) {
            let Some((a, sa)) = self.axis(0, ca, oa, na) else {
                continue;
            };
            for ob in -(rb as isize)..=(rb as isize) {
                let Some((b, sb)) = self.axis(1, cb, ob, nb) else {
                    continue;
                };
                for oc in -(rc_ as isize)..=(rc_ as isize) {
                    let Some((c, sc)) = self.axis(2, cc, oc, nc) else {
                        continue;
                    };
                    let [va, vb, vc] = v;
                    let shift: [T; 3] = core::array::from_fn(|x| {
                        sa * at3(&va, x) + sb * at3(&vb, x) + sc * at3(&vc, x)
                    });
                    let zero_shift = sa == T::ZERO && sb == T::ZERO && sc == T::ZERO;
                    let id = (a * nb + b) * nc + c;
                    let lo = self.cell_start.get(id).copied().unwrap_or(0) as usize;
                    let hi = self.cell_start.get(id + 1).copied().unwrap_or(0) as usize;
                    for &j in self.order.get(lo..hi).unwrap_or(&[]) {
                        let pj = self.wrapped(j as usize);
                        // Numerical guard: (r_j − r_i) first, then the image shift. When the
                        // image is a neighbour the two nearly cancel, which is exact (Sterbenz),
                        // so only one rounding of size ~ulp(cell) remains instead of three.
                        let d = [
                            (pj[0] - pi[0]) + shift[0],
                            (pj[1] - pi[1]) + shift[1],
                            (pj[2] - pi[2]) + shift[2],
                        ];
                        let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
                        if r2 > self.rc2 {
                            continue;
                        }
                        if r2 == T::ZERO {
                            if j as usize == atom && zero_shift {
                                continue;
                            }
                            return Err(ComputeError::OverlappingAtoms {
                                i: atom,
                                j: j as usize,
                            });
                        }
                        let sj = species.get(j as usize).copied().unwrap_or(0);
                        if !set.push(sj, j, d) {
                            return Err(ComputeError::NeighborOverflow {
                                atom,
                                capacity: set.capacity(),
                            });
                        }
                    }
                }
            }
        }
        set.finish();
        Ok(())
    }

    /// Maps cell coordinate `c + off` on axis `k` to (cell, image shift), or `None` outside an
    /// open axis.
    #[inline(always)]
    fn axis(&self, k: usize, c: usize, off: isize, n: usize) -> Option<(usize, T)> {
        let t = c as isize + off;
        // n ≥ 1 by construction; `max` lets the optimiser drop the divide-by-zero panic path.
        let n = (n as isize).max(1);
        if self.frame.pbc.get(k).copied().unwrap_or(false) {
            let wrapped = t.rem_euclid(n);
            let shift = t.div_euclid(n);
            Some((wrapped as usize, T::from_f64(shift as f64)))
        } else if (0..n).contains(&t) {
            Some((t as usize, T::ZERO))
        } else {
            None
        }
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
