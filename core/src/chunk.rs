//! A fixed partition of the atoms into chunks, for results that do not depend on how many
//! threads compute them.
//!
//! Floating-point addition is not associative, so per-thread partial sums make the energy,
//! forces and virial depend on the thread count. Instead the atoms, in the cell list's
//! visiting order ([`crate::CellList::visit`]: bin after bin, a fixed function of the system,
//! so that consecutive atoms share their neighbour data), are cut into chunks of
//! [`CHUNK_ATOMS`] (the last one shorter) whatever the thread count: chunk c holds the atoms
//! at visiting positions [`chunk_range`]`(c, n)`. Each chunk is computed on its own by
//! [`crate::Model::compute_chunk`] (per-atom energies in visiting order, the chunk's virial in
//! its [`crate::Results`], forces as a [`ChunkForces`] record), and the caller combines the
//! chunks **in chunk order**: forces with [`ChunkForces::apply`], virials with
//! [`crate::Results::accumulate`]; the total energy is the sum of the per-atom energies
//! (put back at their atom index, [`ChunkForces::atom_indices`]) in atom order, as
//! [`crate::Model::compute`] forms it when it returns per-atom energies. Any number of
//! threads, computing any chunks in any order, then gives the same bits as
//! [`crate::Model::compute`], which walks the same chunks in order on one thread. (Adding the
//! chunks' energies with `accumulate` is just as independent of the thread count, but rounds
//! differently.)
//!
//! A [`ChunkForces`] record holds ∂E_i/∂d_ij for every neighbour of every atom of the chunk:
//! per neighbour slot 3 reals and 1 `u32`, per atom 3 reals and 2 `u32`
//! (sizes in [`ChunkForcesSize`]).

use crate::error::ComputeError;
use crate::math::Real;
use crate::model::Results;
use crate::neighbors::{split, NeighborSet};

/// Atoms per chunk of the fixed partition (the last chunk holds the remainder).
pub const CHUNK_ATOMS: usize = 32;

/// Number of chunks of a system of `atoms` atoms.
pub const fn chunk_count(atoms: usize) -> usize {
    atoms.div_ceil(CHUNK_ATOMS)
}

/// Visiting positions ([`crate::CellList::visit`]) of chunk `chunk` of a system of `atoms`
/// atoms (empty past the end).
pub fn chunk_range(chunk: usize, atoms: usize) -> core::ops::Range<usize> {
    let a = chunk.saturating_mul(CHUNK_ATOMS).min(atoms);
    a..a.saturating_add(CHUNK_ATOMS).min(atoms)
}

impl Results {
    /// Adds `other` (energy and virial) to `self`; combine chunk results in chunk order.
    pub fn accumulate(&mut self, other: &Results) {
        self.energy += other.energy;
        for (a, b) in self
            .virial
            .iter_mut()
            .flatten()
            .zip(other.virial.iter().flatten())
        {
            *a += b;
        }
    }
}

/// Slice lengths of a [`ChunkForces`] for `neighbors` slots per atom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkForcesSize {
    /// Neighbour slots per atom.
    pub neighbors: usize,
    /// Length of the real slice.
    pub reals: usize,
    /// Length of the `u32` slice.
    pub indices: usize,
}

impl ChunkForcesSize {
    /// Sizes for chunks of [`CHUNK_ATOMS`] atoms with up to `neighbors` neighbours each.
    pub const fn new(neighbors: usize) -> Self {
        let slots = CHUNK_ATOMS * neighbors;
        ChunkForcesSize {
            neighbors,
            reals: 3 * slots + 3 * CHUNK_ATOMS,
            indices: slots + 2 * CHUNK_ATOMS,
        }
    }

    /// Total bytes for reals of `real_bytes` each plus the indices.
    pub const fn bytes(&self, real_bytes: usize) -> usize {
        self.reals * real_bytes + 4 * self.indices
    }
}

/// The force contributions of one chunk, recorded by [`crate::Model::compute_chunk`] and added
/// to a force array by [`ChunkForces::apply`] (in chunk order for reproducible bits).
pub struct ChunkForces<'w, T> {
    /// ∂E_i/∂d_ij, 3 per recorded neighbour, atoms one after another.
    g: &'w mut [T],
    /// Neighbour atom j of each recorded neighbour.
    j: &'w mut [u32],
    /// Σ_j ∂E_i/∂d_ij of each atom i of the chunk (the force on i from its own energy).
    fi: &'w mut [T],
    /// Recorded neighbours of each atom of the chunk.
    count: &'w mut [u32],
    /// Index of each atom of the chunk.
    atom: &'w mut [u32],
    /// Per-atom neighbour capacity.
    neighbors: usize,
    /// Visiting position of the chunk's first atom, and atoms recorded.
    first: usize,
    atoms: usize,
    /// Neighbours recorded in all.
    slots: usize,
}

impl<'w, T: Real> ChunkForces<'w, T> {
    /// A record over caller storage (lengths from [`ChunkForcesSize::new`]).
    pub fn new(
        neighbors: usize,
        reals: &'w mut [T],
        indices: &'w mut [u32],
    ) -> Result<Self, ComputeError> {
        let size = ChunkForcesSize::new(neighbors);
        let too_small = |what, needed, got| ComputeError::BufferTooSmall { what, needed, got };
        if reals.len() < size.reals {
            return Err(too_small("chunk force reals", size.reals, reals.len()));
        }
        if indices.len() < size.indices {
            return Err(too_small(
                "chunk force indices",
                size.indices,
                indices.len(),
            ));
        }
        let slots = CHUNK_ATOMS * neighbors;
        let (g, rest) = split(reals, 3 * slots);
        let (fi, _) = split(rest, 3 * CHUNK_ATOMS);
        let (j, rest) = split(indices, slots);
        let (count, rest) = split(rest, CHUNK_ATOMS);
        let (atom, _) = split(rest, CHUNK_ATOMS);
        Ok(ChunkForces {
            g,
            j,
            fi,
            count,
            atom,
            neighbors,
            first: 0,
            atoms: 0,
            slots: 0,
        })
    }

    /// Neighbour slots per atom.
    pub fn neighbors(&self) -> usize {
        self.neighbors
    }

    /// Visiting positions of the atoms recorded (the chunk's [`chunk_range`] after
    /// [`crate::Model::compute_chunk`]).
    pub fn atoms(&self) -> core::ops::Range<usize> {
        self.first..self.first + self.atoms
    }

    /// Indices of the atoms recorded, in visiting order.
    pub fn atom_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.atom.iter().take(self.atoms).map(|&a| a as usize)
    }

    /// Forgets everything and starts a chunk at visiting position `first`.
    pub(crate) fn reset(&mut self, first: usize) {
        self.first = first;
        self.atoms = 0;
        self.slots = 0;
    }

    /// Adds the recorded forces to `forces` (one per atom of the system): F_j −= ∂E_i/∂d_ij
    /// for each neighbour in order, then F_i += Σ_j ∂E_i/∂d_ij, atom after atom — the same
    /// operations in the same order as [`crate::Model::compute`].
    pub fn apply(&self, forces: &mut [[T; 3]]) -> Result<(), ComputeError> {
        let end = self.first + self.atoms;
        if end > forces.len() {
            return Err(ComputeError::LengthMismatch {
                what: "forces",
                expected: end,
                got: forces.len(),
            });
        }
        let mut at = 0usize;
        let per_atom = self
            .count
            .iter()
            .zip(self.fi.chunks_exact(3))
            .zip(self.atom.iter());
        for ((&count, fi), &i) in per_atom.take(self.atoms) {
            let count = count as usize;
            let js = self.j.get(at..at + count).unwrap_or(&[]);
            let gs = self.g.get(3 * at..3 * (at + count)).unwrap_or(&[]);
            for (&j, g) in js.iter().zip(gs.chunks_exact(3)) {
                if let Some(fj) = forces.get_mut(j as usize) {
                    fj.iter_mut().zip(g).for_each(|(f, &x)| *f -= x);
                }
            }
            if let Some(f) = forces.get_mut(i as usize) {
                f.iter_mut().zip(fi).for_each(|(f, &x)| *f += x);
            }
            at += count;
        }
        Ok(())
    }
}

/// Where [`crate::Model`]'s per-atom loop puts the neighbour gradients of atom `i`.
pub(crate) trait ForceSink<T> {
    /// Takes the gradients of atom `i` (its neighbour set after back-propagation).
    fn atom(&mut self, i: usize, nb: &NeighborSet<'_, T>) -> Result<(), ComputeError>;
}

/// Scatters straight into a force array (one thread, atoms in order).
pub(crate) struct Direct<'o, T>(pub &'o mut [[T; 3]]);

impl<T: Real> ForceSink<T> for Direct<'_, T> {
    #[inline]
    fn atom(&mut self, i: usize, nb: &NeighborSet<'_, T>) -> Result<(), ComputeError> {
        let forces = &mut *self.0;
        // Lanes cut once (so that the optimiser drops the checks below) and components written
        // out (per-slot accessors and loops over three cost several times the arithmetic on a
        // microcontroller); same operations in the same order.
        let n = nb.len();
        let (Some(gx), Some(gy), Some(gz)) = (nb.gx.get(..n), nb.gy.get(..n), nb.gz.get(..n))
        else {
            return Ok(());
        };
        let Some(index) = nb.index.get(..n) else {
            return Ok(());
        };
        let (mut fx, mut fy, mut fz) = (T::ZERO, T::ZERO, T::ZERO);
        for k in 0..n {
            let (Some(&a), Some(&b), Some(&c), Some(&j)) =
                (gx.get(k), gy.get(k), gz.get(k), index.get(k))
            else {
                break;
            };
            if let Some(fj) = forces.get_mut(j as usize) {
                *fj = [fj[0] - a, fj[1] - b, fj[2] - c];
            }
            (fx, fy, fz) = (fx + a, fy + b, fz + c);
        }
        if let Some(f) = forces.get_mut(i) {
            *f = [f[0] + fx, f[1] + fy, f[2] + fz];
        }
        Ok(())
    }
}

impl<T: Real> ForceSink<T> for ChunkForces<'_, T> {
    /// Records atom `i`, the chunk's next in visiting order.
    #[inline]
    fn atom(&mut self, i: usize, nb: &NeighborSet<'_, T>) -> Result<(), ComputeError> {
        let n = nb.len();
        let at = self.slots;
        let (Some(js), Some(gs), Some(fi), Some(count), Some(atom)) = (
            self.j.get_mut(at..at + n),
            self.g.get_mut(3 * at..3 * (at + n)),
            self.fi.get_mut(3 * self.atoms..3 * self.atoms + 3),
            self.count.get_mut(self.atoms),
            self.atom.get_mut(self.atoms),
        ) else {
            return Err(ComputeError::BufferTooSmall {
                what: "chunk forces",
                needed: CHUNK_ATOMS * n,
                got: self.j.len(),
            });
        };
        let mut sum = [T::ZERO; 3];
        for (k, (j, g)) in js.iter_mut().zip(gs.chunks_exact_mut(3)).enumerate() {
            let gk = nb.gradient(k);
            *j = nb.atom_index(k).unwrap_or(0);
            g.copy_from_slice(&gk);
            sum.iter_mut().zip(gk).for_each(|(f, x)| *f += x);
        }
        fi.copy_from_slice(&sum);
        *count = n as u32;
        *atom = i as u32;
        self.atoms += 1;
        self.slots += n;
        Ok(())
    }
}
