//! Caller-provided memory for one computation. The core never allocates: the caller hands in one
//! slice of reals and one of `u32` indices, sized by [`WorkspaceSize::new`], and the workspace
//! carves them up.
//!
//! Bytes needed (R = size of a real: 8 for f64, 4 for f32; N atoms, S species, M neighbour slots
//! per atom, F = most features of a species, W = most neurons of a layer, S' = most neurons of a
//! network):
//!
//! | what | reals | `u32` |
//! |---|---|---|
//! | per atom: cell list (wrapped positions in bin order; atom of each slot, slot of each atom) | 3 | 2 |
//! | per atom: bin keys (species × bin, at most S·N + 27 keys) | — | S |
//! | per neighbour slot (geometry, gradient, cutoff cache, staging) | 12 | 3 |
//! | per neighbour slot: batched kernels' cache (unit vector, 1/r; h_c, h_c′ per channel, C = most channels of a group, for K channel sets: on hosts the set in use and the one before it, K = 2; on 1-lane targets K = 1) | 4 + 2KC | — |
//! | per model (features, scaled, dE/dG, three group lanes; activations and derivatives; two back-prop rows) | 6F + 2S' + 2W | — |
//! | optional pair cache ([`WorkspaceSize::new`] only; none with [`WorkspaceSize::minimal`]) | (M(M−1)/2 + 2M·(LANES−1))·(1 + 2C') | — |
//! | optional candidates of a bin ([`WorkspaceSize::with_candidates`], in [`WorkspaceSize::per_thread`]), per neighbour slot | 3·4 | 4 |
//!
//! (C' = C rounded up to the channel count the kernels are compiled for: C itself up to 4, else
//! 8; on 1-lane targets, C. On 1-lane targets the cache also holds the radial force factors,
//! (M + 1)·F reals, and a one-channel angular group stores a 17-real record per pair instead of
//! 1 + 2C': for the firmware's ethanol model, M = 8 and F = 24, 692 reals. Wide groups whose
//! functions all have ζ = 1 keep 10 reals per channel there instead of per-pair factors.) So for
//! n2p2's water model (S = 2, C = 4) f64 needs 24 + 8 + 8 = 40 bytes per atom and
//! (12 + 20)·8 + 12 = 268 bytes per neighbour slot, plus the pair cache, 9 reals per neighbour
//! pair (about 1.6 MiB per thread for 200 slots); f32 needs 28 and 140, and half the pair
//! cache. The candidate storage adds 112 bytes per neighbour slot in f64 and 64 in f32
//! (25 KiB per thread for 224 slots). The full descriptor Jacobian dG/dr is never stored by
//! [`crate::Model::compute`]. Forces and per-atom energies are the caller's output slices.
//!
//! Threads: the cell list can live apart from the per-thread part ([`crate::CellListSize`],
//! [`crate::Model::cell_list`]); then each thread needs a workspace for 0 atoms
//! ([`WorkspaceSize::per_thread`]: the neighbour slots, the per-model part and the candidates)
//! and, for forces, a [`crate::ChunkForces`] record (per slot 3 reals and 1 `u32` for each of
//! the [`crate::chunk::CHUNK_ATOMS`] atoms of a chunk, per atom 3 reals and 2 `u32`).

use crate::descriptor::batched::{pair_cache_reals, slot_reals, ChannelMemo};
use crate::error::ComputeError;
use crate::math::Real;
use crate::model::{Model, ModelDims};
use crate::neighbors::{split, Candidates, CellList, CellListSize, NeighborSet, Visited};
use crate::neighbors::{CANDIDATES_PER_SLOT, CANDIDATE_REALS, NEIGHBOR_INDICES, NEIGHBOR_REALS};

/// Extra bin keys allowed beyond one per atom and species (a small system still gets a 3×3×3
/// grid).
pub const EXTRA_CELLS: usize = 27;

/// Slice lengths a [`Workspace`] needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkspaceSize {
    /// Atoms the workspace holds.
    pub atoms: usize,
    /// Neighbour slots per atom.
    pub neighbors: usize,
    /// Length of the real slice.
    pub reals: usize,
    /// Length of the `u32` slice.
    pub indices: usize,
}

impl WorkspaceSize {
    /// Sizes for a model with dimensions `dims`, `atoms` atoms and `neighbors` slots per atom.
    pub const fn new(dims: &ModelDims, atoms: usize, neighbors: usize) -> Self {
        let minimal = Self::minimal(dims, atoms, neighbors);
        WorkspaceSize {
            reals: minimal.reals
                + pair_cache_reals(neighbors, dims.max_channels, dims.max_features),
            ..minimal
        }
    }

    /// Like [`WorkspaceSize::new`] without the pair cache: the force pass recomputes the r_jk
    /// factors of the narrow angular functions (same results, more arithmetic, much less memory
    /// for large neighbour capacities). Reals beyond this size given to [`Workspace::new`] become
    /// the pair cache.
    pub const fn minimal(dims: &ModelDims, atoms: usize, neighbors: usize) -> Self {
        let per_model = 6 * dims.max_features + 2 * dims.max_network + 2 * dims.max_width;
        let per_slot = NEIGHBOR_REALS + slot_reals(dims.max_channels);
        let cells = CellListSize::new(dims.n_species, atoms);
        WorkspaceSize {
            atoms,
            neighbors,
            reals: cells.reals + per_slot * neighbors + per_model,
            indices: cells.indices + NEIGHBOR_INDICES * neighbors,
        }
    }

    /// Sizes of a per-thread workspace (no cell list of its own) for
    /// [`crate::Model::compute_chunk`]: `new(dims, 0, neighbors).with_candidates()`.
    pub const fn per_thread(dims: &ModelDims, neighbors: usize) -> Self {
        Self::new(dims, 0, neighbors).with_candidates()
    }

    /// This size plus storage for the candidates of a bin ([`CANDIDATES_PER_SLOT`] per
    /// neighbour slot, each 3 reals and 1 `u32`): the atoms of one bin, visited one after
    /// another, then scan one gathered list instead of searching the cell list each (same
    /// results, a faster neighbour search). [`Workspace::new`] carves it when the index slice
    /// is long enough for it.
    pub const fn with_candidates(self) -> Self {
        let slots = CANDIDATES_PER_SLOT * self.neighbors;
        WorkspaceSize {
            reals: self.reals + CANDIDATE_REALS * slots,
            indices: self.indices + slots,
            ..self
        }
    }

    /// Total bytes for reals of `real_bytes` each plus the indices.
    pub const fn bytes(&self, real_bytes: usize) -> usize {
        self.reals * real_bytes + 4 * self.indices
    }
}

/// Per-atom scratch of the network and descriptor stages.
pub(crate) struct AtomScratch<'w, T> {
    /// Raw features G.
    pub g: &'w mut [T],
    /// Scaled features (network input).
    pub gs: &'w mut [T],
    /// dE/dG (raw features).
    pub dedg: &'w mut [T],
    /// Per-group value accumulators.
    pub acc: &'w mut [T],
    /// Per-group multipliers (back-propagation) or prefactors.
    pub mult: &'w mut [T],
    /// Per-group partial sums of one neighbour row (angular values).
    pub row: &'w mut [T],
    /// Layer outputs, concatenated.
    pub y: &'w mut [T],
    /// Activation derivatives, concatenated.
    pub deriv: &'w mut [T],
    /// Back-propagation rows.
    pub b1: &'w mut [T],
    pub b2: &'w mut [T],
    /// The batched kernels' per-neighbour cache (unit vectors, 1/r, channel factors).
    pub slots: &'w mut [T],
    /// The pair cache between value and force pass, and how much of it the last value pass
    /// filled.
    pub pairs: &'w mut [T],
    pub pairs_filled: usize,
    /// What the slot cache's channel factors hold after the value pass.
    pub channels: ChannelMemo<T>,
}

/// Caller memory for [`Model::compute`] and the per-atom calls.
pub struct Workspace<'w, T> {
    pub(crate) atoms: usize,
    /// Cell-list storage ([`CellListSize`]).
    pub(crate) cell_reals: &'w mut [T],
    pub(crate) cell_indices: &'w mut [u32],
    pub(crate) neighbors: NeighborSet<'w, T>,
    pub(crate) scratch: AtomScratch<'w, T>,
    /// The gathered candidates of a bin (empty without [`WorkspaceSize::with_candidates`]).
    pub(crate) candidates: Candidates<'w, T>,
}

impl<'w, T: Real> Workspace<'w, T> {
    /// Carves a workspace for `model`, `atoms` atoms and `neighbors` slots per atom out of
    /// `reals` and `indices` (lengths from [`WorkspaceSize::new`]; longer slices are fine).
    pub fn new(
        model: &Model<'_, T>,
        atoms: usize,
        neighbors: usize,
        reals: &'w mut [T],
        indices: &'w mut [u32],
    ) -> Result<Self, ComputeError> {
        let dims = model.dims();
        let size = WorkspaceSize::minimal(&dims, atoms, neighbors);
        if reals.len() < size.reals {
            return Err(ComputeError::BufferTooSmall {
                what: "workspace reals",
                needed: size.reals,
                got: reals.len(),
            });
        }
        if indices.len() < size.indices {
            return Err(ComputeError::BufferTooSmall {
                what: "workspace indices",
                needed: size.indices,
                got: indices.len(),
            });
        }
        let cells = CellListSize::new(dims.n_species, atoms);
        let (cell_reals, rest) = split(reals, cells.reals);
        let (nreals, rest) = split(rest, NEIGHBOR_REALS * neighbors);
        let f = dims.max_features;
        let (g, rest) = split(rest, f);
        let (gs, rest) = split(rest, f);
        let (dedg, rest) = split(rest, f);
        let (acc, rest) = split(rest, f);
        let (mult, rest) = split(rest, f);
        let (row, rest) = split(rest, f);
        let (y, rest) = split(rest, dims.max_network);
        let (deriv, rest) = split(rest, dims.max_network);
        let (b1, rest) = split(rest, dims.max_width);
        let (b2, rest) = split(rest, dims.max_width);
        let (slots, tail) = split(rest, slot_reals(dims.max_channels) * neighbors);
        // The caller's memory may hold anything (NaN, huge values from an earlier use). The
        // batched kernels read the neighbour and slot lanes a little past what an atom wrote
        // (lanes past a block's end, multiplied by exact zeros), so those lanes must be finite:
        // zeroed here, and the core only ever writes finite values into them. The cell list,
        // candidates and pair cache are always written before they are read.
        let per_atom = [
            &mut *nreals,
            &mut *g,
            &mut *gs,
            &mut *dedg,
            &mut *acc,
            &mut *mult,
            &mut *row,
            &mut *y,
            &mut *deriv,
            &mut *b1,
            &mut *b2,
            &mut *slots,
        ];
        for part in per_atom {
            part.fill(T::ZERO);
        }
        let (cell_indices, rest) = split(indices, cells.indices);
        let (nidx, cidx) = split(rest, NEIGHBOR_INDICES * neighbors);
        // Candidate storage only when the index slice holds it (`with_candidates`); its reals
        // come before the pair cache, which takes the rest.
        let cand_slots = CANDIDATES_PER_SLOT * neighbors;
        let cand_reals = CANDIDATE_REALS * cand_slots;
        let with = neighbors > 0 && cidx.len() >= cand_slots && tail.len() >= cand_reals;
        let (creals, pairs) = split(tail, if with { cand_reals } else { 0 });
        let cidx = if with { cidx } else { &mut [] };
        Ok(Workspace {
            atoms,
            cell_reals,
            cell_indices,
            neighbors: NeighborSet::new(neighbors, nreals, nidx)?,
            scratch: AtomScratch {
                g,
                gs,
                dedg,
                acc,
                mult,
                row,
                y,
                deriv,
                b1,
                b2,
                slots,
                pairs,
                pairs_filled: 0,
                channels: ChannelMemo::empty(),
            },
            candidates: Candidates::new(cand_slots, creals, cidx),
        })
    }

    /// Atoms this workspace holds.
    pub fn atoms(&self) -> usize {
        self.atoms
    }

    /// The neighbour set, for callers that supply their own neighbour list (e.g. an MD engine
    /// with ghost atoms) before [`Model::atom`] and [`crate::model::AtomView::energy`].
    pub fn neighbors_mut(&mut self) -> &mut NeighborSet<'w, T> {
        &mut self.neighbors
    }

    /// The neighbour set of the last evaluated atom.
    pub fn neighbors(&self) -> &NeighborSet<'w, T> {
        &self.neighbors
    }

    /// Searches the neighbours of the atoms at visiting positions `positions` of `cells`
    /// ([`CellList::visit`]), in that order, as [`Model::compute`] does: the candidates of a
    /// bin are gathered once for all its atoms (with [`WorkspaceSize::with_candidates`];
    /// otherwise each atom is searched on its own). Calls `f` with each atom and its neighbour
    /// set: the same neighbours, in the same order and with the same bits, as
    /// [`CellList::neighbors_of`]. Stops at the first error (too many neighbours for the set,
    /// overlapping atoms).
    ///
    /// [`CellList::visit`]: crate::CellList::visit
    /// [`CellList::neighbors_of`]: crate::CellList::neighbors_of
    pub fn for_each_neighborhood(
        &mut self,
        cells: &CellList<'_, T>,
        positions: core::ops::Range<usize>,
        mut f: impl FnMut(Visited, &NeighborSet<'w, T>),
    ) -> Result<(), ComputeError> {
        // `cells` may differ from the list of an earlier call.
        self.candidates.forget();
        for at in cells.visit(positions) {
            cells.neighbors_at(at, &mut self.neighbors, &mut self.candidates)?;
            f(at, &self.neighbors);
        }
        Ok(())
    }

    /// Raw features of the last evaluated atom (its species' `n_features` leading values).
    pub fn features(&self) -> &[T] {
        self.scratch.g
    }

    /// dE/dG of the last atom evaluated with gradients.
    pub fn energy_gradient(&self) -> &[T] {
        self.scratch.dedg
    }
}
