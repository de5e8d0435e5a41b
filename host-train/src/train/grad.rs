//! The training mathematics: energy and force loss of a structure and its exact gradient with
//! respect to the network parameters, in f64.
//!
//! # The loss
//!
//! For one structure of N atoms with reference energy E_ref and reference forces F_ref,
//!
//! ```text
//! L = w_E · ((E − E_ref) / N)²  +  w_F · (1 / 3N) · Σ_j |F_j − F_ref,j|²
//! ```
//!
//! The energy error is taken per atom, so structures of different size weigh alike; the force
//! term is the mean squared force component. A term whose reference is missing (no energy, no
//! forces in the structure) or whose weight is zero is left out. A batch of B structures
//! averages: L_B = (1/B) Σ_s L_s ([`loss_and_gradient_batch`]).
//!
//! # The model
//!
//! Atom i of species s has scaled features x_i = G_s,i (fixed by the descriptor set and the
//! scaling; nothing here trains them) and energy E_i = a·NN_s(x_i) + b + e_ref,s, with
//! a = `energy_scale`, b = `energy_shift`. Layer l of NN maps y_{l−1} to
//! y_l = f_l(z_l), z_l = σ_l (W_l y_{l−1} + b_l), σ_l = 1/n_in for `normalize` layers and 1
//! otherwise, y_0 = x; NN = y_L (one output). The parameters θ are all W_l and b_l of every
//! species, laid out flat by [`ParamLayout`]. Forces are F_j = −Σ_i J_ijᵀ g_i with
//! g_i = ∂E_i/∂x_i (an nf-vector) and J_ij = ∂x_i/∂r_j (nf × 3), which [`StructureCache`]
//! stores once: it does not depend on θ.
//!
//! # The gradient
//!
//! L depends on θ through E = Σ_i E_i and through the g_i. With c_E = ∂L/∂E =
//! 2 w_E (E − E_ref)/N² and the residuals R_j = F_j − F_ref,j,
//!
//! ```text
//! v_i = ∂L/∂g_i = −(2 w_F / 3N) · Σ_j J_ij R_j          (an nf-vector per atom)
//! ∂L/∂θ = Σ_i [ c_E · ∂E_i/∂θ + v_i · ∂g_i/∂θ ] = Σ_i ∂Φ_i/∂θ,  Φ_i = c_E·E_i + v_i·g_i,
//! ```
//!
//! where c_E and v_i are held fixed when differentiating Φ_i (they are the adjoints of E and
//! g_i). Now v_i·g_i = a · d/dε NN(x_i + ε v_i) at ε = 0 is a directional derivative of the
//! network, computed by forward-mode tangents (a dot marks the tangent):
//!
//! ```text
//! ẏ_0 = v_i,   ż_l = σ_l W_l ẏ_{l−1}   (no bias),   ẏ_l = f_l'(z_l) ⊙ ż_l,   v_i·g_i = a·ẏ_L.
//! ```
//!
//! Φ_i = a·(c_E·y_L + ẏ_L) + const is then an ordinary function of θ through this
//! tangent-augmented forward pass, and one reverse pass gives ∂Φ_i/∂θ. Seeds: ȳ_L = a·c_E,
//! ẏ̄_L = a (a bar marks the adjoint). Through y_l = f(z_l) and ẏ_l = f'(z_l) ż_l:
//!
//! ```text
//! z̄_l = ȳ_l ⊙ f'(z_l) + ẏ̄_l ⊙ f''(z_l) ⊙ ż_l          ż̄_l = ẏ̄_l ⊙ f'(z_l)
//! ```
//!
//! and through z_l = σ(W y_{l−1} + b), ż_l = σ W ẏ_{l−1}:
//!
//! ```text
//! ∂Φ/∂W_l += σ (z̄_l y_{l−1}ᵀ + ż̄_l ẏ_{l−1}ᵀ),   ∂Φ/∂b_l += σ z̄_l,
//! ȳ_{l−1} = σ W_lᵀ z̄_l,   ẏ̄_{l−1} = σ W_lᵀ ż̄_l.
//! ```
//!
//! Without a force term ẏ̄ ≡ 0 and this is plain back-propagation of c_E·E_i. The cost per
//! structure is one forward and backward pass (E, g_i, F), one sparse product with the cached
//! Jacobian (v_i), and one tangent forward plus reverse pass per atom: about three times
//! the work of an energy-and-forces evaluation of the networks, plus two sweeps over the
//! Jacobian. f'' comes from [`Activation::eval2`].
//!
//! The network arithmetic follows `mlff_core::mlp::Layer::forward` operation by operation, so
//! energies equal the core's bit for bit (given the same features) and forces agree to
//! rounding (the descriptor chain rule sums in another order).
//!
//! # Memory
//!
//! A [`StructureCache`] stores per atom its scaled features (8 bytes each) and, per distinct
//! atom j it depends on (itself and its neighbours, periodic images of one atom merged), the
//! non-zero rows of ∂G_s/∂r_j: 4 bytes (feature index) + 24 bytes (three f64) per row, plus
//! 8 bytes per (i, j) block. Rows are only those features of i that atom j's species can reach
//! (a G2 on species O has no row for a neighbour H), so with S species about 2/(S + 1) of the
//! angular and 1/S of the radial features appear per neighbour. Measured: the 192-atom
//! water box (`examples/water64.data`), 6 Å cutoff (~90 neighbours), 48 features per element
//! (12 G2, 36 G4): 503 496 rows, 14.3 MB, i.e. 75 kB per atom (a dense per-neighbour-slot
//! Jacobian would be ~20 MB, and f32 is not an option: the gradient must stay exact). Building
//! it takes about 1.5 times a force evaluation by the core (release build); the loss and its
//! gradient then take ~5 ms for that box. [`CacheBuilder::estimate_bytes`] gives an upper
//! bound from the neighbour lists alone, before any Jacobian is computed, so a trainer can
//! refuse a dataset that will not fit.

use std::ops::Range;

use anyhow::{anyhow, bail, Context, Result};
use mlff_core::{Activation, ComputeError, Model, System, Workspace, WorkspaceSize};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::io::AlignedBlob;
use crate::random::{neighbor_capacity, system_arrays};
use crate::spec::{Affine, ModelSpec};
use crate::structure::Structure;
use crate::writer::{write_blob, Precision};

/// Weights w_E and w_F of the loss terms (see the module documentation).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossWeights {
    /// w_E, multiplies the squared per-atom energy error (eV⁻²·eV² = 1).
    pub energy: f64,
    /// w_F, multiplies the mean squared force component error.
    pub force: f64,
}

// ---------------------------------------------------------------------------------------------
// Parameter layout
// ---------------------------------------------------------------------------------------------

/// Where one layer's parameters sit in the flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerSlots {
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
    /// Offset of the row-major `n_out × n_in` weights.
    pub weights: usize,
    /// Offset of the `n_out` biases (right after the weights).
    pub biases: usize,
}

impl LayerSlots {
    /// The weights' index range.
    pub fn weight_range(&self) -> Range<usize> {
        self.weights..self.weights + self.n_in * self.n_out
    }

    /// The biases' index range.
    pub fn bias_range(&self) -> Range<usize> {
        self.biases..self.biases + self.n_out
    }
}

/// The flat parameter vector: species in order, within a species its layers from input to
/// output, within a layer the row-major weights (`W[o·n_in + i]`) then the biases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamLayout {
    species: Vec<Vec<LayerSlots>>,
    len: usize,
}

impl ParamLayout {
    /// The layout of `spec`'s networks (their shapes only; `spec` should pass
    /// [`ModelSpec::check`]).
    pub fn new(spec: &ModelSpec) -> Self {
        let mut off = 0;
        let species = spec
            .species
            .iter()
            .map(|s| {
                s.layers
                    .iter()
                    .map(|l| {
                        let slots = LayerSlots {
                            n_in: l.n_in,
                            n_out: l.n_out,
                            weights: off,
                            biases: off + l.n_in * l.n_out,
                        };
                        off = slots.biases + l.n_out;
                        slots
                    })
                    .collect()
            })
            .collect();
        ParamLayout { species, len: off }
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No parameters at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The layers of species `s` (empty when out of range).
    pub fn layers(&self, s: usize) -> &[LayerSlots] {
        self.species.get(s).map_or(&[], |v| v.as_slice())
    }
}

/// The parameters of `spec` as one flat vector ([`ParamLayout`] order).
pub fn params_from_spec(spec: &ModelSpec) -> Vec<f64> {
    spec.species
        .iter()
        .flat_map(|s| &s.layers)
        .flat_map(|l| l.weights.iter().chain(&l.biases))
        .copied()
        .collect()
}

/// A copy of `spec` with its weights and biases taken from `params` ([`ParamLayout`] order).
///
/// # Panics
/// If `params` does not have [`ParamLayout::len`] entries, or a layer's weight or bias vector
/// does not match its `n_in`/`n_out` (a spec that fails [`ModelSpec::check`]).
pub fn spec_with_params(spec: &ModelSpec, params: &[f64]) -> ModelSpec {
    let layout = ParamLayout::new(spec);
    assert_eq!(
        params.len(),
        layout.len(),
        "parameter vector has {} entries, the model {}",
        params.len(),
        layout.len()
    );
    let mut out = spec.clone();
    for (s, slots) in out.species.iter_mut().zip(&layout.species) {
        for (l, sl) in s.layers.iter_mut().zip(slots) {
            l.weights.copy_from_slice(&params[sl.weight_range()]);
            l.biases.copy_from_slice(&params[sl.bias_range()]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Structure cache
// ---------------------------------------------------------------------------------------------

/// Everything the loss needs of one structure, computed once with `mlff-core` in f64: per atom
/// its species, scaled features G_s and the sparse Jacobian ∂G_s/∂r_j, plus the references.
///
/// Valid for every model that shares the descriptor set and the scaling of the spec it was
/// built from (the weights may differ); the loss functions check the feature counts only.
#[derive(Clone, Debug, PartialEq)]
pub struct StructureCache {
    n_atoms: usize,
    energy: Option<f64>,
    forces: Option<Vec<[f64; 3]>>,
    /// Features of each species of the spec it was built for.
    n_features: Vec<usize>,
    species: Vec<u8>,
    /// Atom i's features are `features[feature_start[i]..feature_start[i + 1]]`.
    feature_start: Vec<u32>,
    features: Vec<f64>,
    /// Atom i's blocks are `block_start[i]..block_start[i + 1]`; the first is atom i itself.
    block_start: Vec<u32>,
    /// The atom j of each block.
    block_atom: Vec<u32>,
    /// Block b's rows are `row_start[b]..row_start[b + 1]`.
    row_start: Vec<u32>,
    /// Feature index f of each row.
    row_feature: Vec<u32>,
    /// ∂G_s,f/∂r_j of each row.
    row_value: Vec<[f64; 3]>,
}

/// The rows of ∂G_s,i/∂r_j for one atom pair (i, j): `values[k]` is the derivative of feature
/// `features[k]` of atom i with respect to the position of atom j; absent features are zero.
#[derive(Clone, Copy, Debug)]
pub struct JacobianBlock<'a> {
    /// The atom j.
    pub atom: usize,
    /// Feature indices of atom i.
    pub features: &'a [u32],
    /// ∂G_s,f/∂r_j (eV-free units of G per Å).
    pub values: &'a [[f64; 3]],
}

/// Heap and inline bytes of a cache with these counts (the formula behind
/// [`StructureCache::bytes`] and [`CacheBuilder::estimate_bytes`]).
fn cache_bytes(
    n_atoms: usize,
    n_species: usize,
    n_features: usize,
    n_blocks: usize,
    n_rows: usize,
    forces: bool,
) -> usize {
    std::mem::size_of::<StructureCache>()
        + n_species * std::mem::size_of::<usize>()
        + n_atoms // species
        + 2 * 4 * (n_atoms + 1) // feature_start, block_start
        + 8 * n_features
        + 4 * n_blocks // block_atom
        + 4 * (n_blocks + 1) // row_start
        + (4 + 24) * n_rows
        + if forces { 24 * n_atoms } else { 0 }
}

impl StructureCache {
    /// Builds the cache of `s` for `spec` (see [`CacheBuilder`] to build many).
    pub fn new(spec: &ModelSpec, s: &Structure) -> Result<Self> {
        CacheBuilder::new(spec)?.build(s)
    }

    /// Atoms.
    pub fn n_atoms(&self) -> usize {
        self.n_atoms
    }

    /// The reference energy (eV), if the structure had one.
    pub fn energy_ref(&self) -> Option<f64> {
        self.energy
    }

    /// The reference forces (eV/Å), if the structure had them.
    pub fn forces_ref(&self) -> Option<&[[f64; 3]]> {
        self.forces.as_deref()
    }

    /// Species index of each atom.
    pub fn species(&self) -> &[u8] {
        &self.species
    }

    /// Features per species of the model the cache was built for.
    pub fn n_features(&self) -> &[usize] {
        &self.n_features
    }

    /// Scaled features G_s of atom `i`.
    ///
    /// # Panics
    /// If `i` is not below [`StructureCache::n_atoms`].
    pub fn features(&self, i: usize) -> &[f64] {
        &self.features[self.feature_range(i)]
    }

    fn feature_range(&self, i: usize) -> Range<usize> {
        self.feature_start[i] as usize..self.feature_start[i + 1] as usize
    }

    /// The Jacobian blocks of atom `i`: atom i itself first, then each distinct atom whose
    /// position its features depend on.
    ///
    /// # Panics
    /// If `i` is not below [`StructureCache::n_atoms`].
    pub fn blocks(&self, i: usize) -> impl Iterator<Item = JacobianBlock<'_>> + '_ {
        let range = self.block_start[i] as usize..self.block_start[i + 1] as usize;
        range.map(move |b| {
            let rows = self.row_start[b] as usize..self.row_start[b + 1] as usize;
            JacobianBlock {
                atom: self.block_atom[b] as usize,
                features: &self.row_feature[rows.clone()],
                values: &self.row_value[rows],
            }
        })
    }

    /// Stored Jacobian rows (each 28 bytes).
    pub fn jacobian_rows(&self) -> usize {
        self.row_value.len()
    }

    /// Bytes this cache occupies (inline and heap, by the lengths of its arrays).
    pub fn bytes(&self) -> usize {
        cache_bytes(
            self.n_atoms,
            self.n_features.len(),
            self.features.len(),
            self.block_atom.len(),
            self.row_value.len(),
            self.forces.is_some(),
        )
    }
}

/// Builds [`StructureCache`]s for one model: holds the blob and the scaling. `Sync`, so one
/// builder serves many threads.
pub struct CacheBuilder {
    spec: ModelSpec,
    blob: AlignedBlob,
    /// Per species, the affine rows with identity filled in.
    scaling: Vec<Vec<Affine>>,
    /// `reach[a][e]`: features of species a that a neighbour of species e can change.
    reach: Vec<Vec<usize>>,
    cutoff: f64,
}

/// `u32` for a cache index (a structure whose cache would need more is refused).
fn index32(x: usize) -> Result<u32> {
    u32::try_from(x).map_err(|_| anyhow!("structure too large for a training cache"))
}

/// The neighbour-capacity retry loop shared by the cache builder and the estimate: runs `f`
/// with growing capacity while it reports `NeighborOverflow`.
fn with_capacity<R>(s: &Structure, rc: f64, mut f: impl FnMut(usize) -> Result<R>) -> Result<R> {
    let mut cap = neighbor_capacity(s, rc).max(16);
    loop {
        match f(cap) {
            Err(e)
                if cap < 1 << 20
                    && matches!(
                        e.downcast_ref::<ComputeError>(),
                        Some(ComputeError::NeighborOverflow { .. })
                    ) =>
            {
                cap *= 2;
            }
            r => return r,
        }
    }
}

impl CacheBuilder {
    /// A builder for `spec` (checked and compiled to an f64 blob once).
    pub fn new(spec: &ModelSpec) -> Result<Self> {
        let blob = write_blob(spec, Precision::F64)?;
        let n = spec.species.len();
        let scaling = spec
            .species
            .iter()
            .map(|s| {
                (0..s.descriptors.len())
                    .map(|f| s.scaling.get(f).copied().unwrap_or(Affine::IDENTITY))
                    .collect()
            })
            .collect();
        let reach = spec
            .species
            .iter()
            .map(|s| {
                (0..n)
                    .map(|e| {
                        s.descriptors
                            .iter()
                            .filter(|d| {
                                d.kind.is_weighted()
                                    || d.e1 == e
                                    || (d.kind.is_angular() && d.e2 == e)
                            })
                            .count()
                    })
                    .collect()
            })
            .collect();
        Ok(CacheBuilder {
            spec: spec.clone(),
            blob: AlignedBlob::new(&blob),
            scaling,
            reach,
            cutoff: spec.cutoff(),
        })
    }

    fn model(&self) -> Result<Model<'_, f64>> {
        Model::<f64>::from_blob(self.blob.bytes()).map_err(|e| anyhow!("{e}"))
    }

    /// Checks the references of `s` and maps it to core arrays.
    fn arrays(&self, s: &Structure) -> Result<crate::random::SystemArrays> {
        let arrays = system_arrays(&self.spec, s)?;
        let n = arrays.0.len();
        if n == 0 {
            bail!("structure has no atoms");
        }
        if !s.forces.is_empty() && s.forces.len() != n {
            bail!("{} reference forces for {n} atoms", s.forces.len());
        }
        Ok(arrays)
    }

    /// Computes the cache of `s` (in Å and eV; elements must be the model's).
    pub fn build(&self, s: &Structure) -> Result<StructureCache> {
        let model = self.model()?;
        let (pos, species, cell) = self.arrays(s)?;
        let system = System {
            positions: &pos,
            species: &species,
            cell,
        };
        let mut cache = with_capacity(s, self.cutoff, |cap| self.try_build(&model, &system, cap))?;
        cache.energy = s.energy;
        cache.forces = (!s.forces.is_empty()).then(|| s.forces.clone());
        Ok(cache)
    }

    fn try_build(
        &self,
        model: &Model<'_, f64>,
        system: &System<'_, f64>,
        cap: usize,
    ) -> Result<StructureCache> {
        let n = system.positions.len();
        let size = WorkspaceSize::new(&model.dims(), n, cap);
        let mut reals = vec![0.0; size.reals];
        let mut idx = vec![0u32; size.indices];
        let mut ws = Workspace::new(model, n, cap, &mut reals, &mut idx)?;
        let max_nf = model.dims().max_features;
        let mut c = StructureCache {
            n_atoms: n,
            energy: None,
            forces: None,
            n_features: self.scaling.iter().map(Vec::len).collect(),
            species: Vec::with_capacity(n),
            feature_start: vec![0],
            features: Vec::new(),
            block_start: vec![0],
            block_atom: Vec::new(),
            row_start: vec![0],
            row_feature: Vec::new(),
            row_value: Vec::new(),
        };
        // Scratch: the core's dense Jacobian of one atom; atom j → its block + 1; the block of
        // each neighbour slot; the dense sum of each block.
        let mut jac = vec![0.0; max_nf * cap * 3];
        let mut block_of = vec![0u32; n];
        let mut slot_block: Vec<usize> = Vec::new();
        let mut dense: Vec<f64> = Vec::new();
        model.for_each_atom(system, &mut ws, |atom| -> Result<()> {
            let i = atom.index;
            let sp = usize::from(atom.species);
            let aff = &self.scaling[sp];
            let g = atom.descriptors()?;
            let nf = g.len();
            // The core's scaling, same operations: G_s = (G − sub)·mul + add.
            c.features
                .extend(g.iter().zip(aff).map(|(&g, a)| (g - a.sub) * a.mul + a.add));
            c.feature_start.push(index32(c.features.len())?);
            c.species.push(atom.species);
            atom.jacobian(&mut jac)?;
            let nb = atom.neighbors();
            let slots = nb.len();
            // The core's layout: jac[(f·capacity + k)·3 + c].
            let stride = nb.capacity();
            // Blocks: atom i first, then each distinct atom in slot order (images merged).
            let first = c.block_atom.len();
            c.block_atom.push(index32(i)?);
            block_of[i] = 1;
            slot_block.clear();
            for k in 0..slots {
                let j = nb.atom_index(k).unwrap_or(0) as usize;
                if block_of[j] == 0 {
                    c.block_atom.push(index32(j)?);
                    block_of[j] = index32(c.block_atom.len() - first)?;
                }
                slot_block.push(block_of[j] as usize - 1);
            }
            let n_blocks = c.block_atom.len() - first;
            // d_k = r_j − r_i: ∂/∂r_j = Σ_{k → j} ∂/∂d_k, ∂/∂r_i = −Σ_k ∂/∂d_k.
            dense.clear();
            dense.resize(n_blocks * nf * 3, 0.0);
            for f in 0..nf {
                let row = &jac[f * stride * 3..(f * stride + slots) * 3];
                for (d, &b) in row.chunks_exact(3).zip(&slot_block) {
                    for (c, &x) in d.iter().enumerate() {
                        dense[(b * nf + f) * 3 + c] += x;
                        dense[f * 3 + c] -= x;
                    }
                }
            }
            // Keep the non-zero rows, times the scaling factor: ∂G_s/∂r = mul·∂G/∂r.
            for block in dense.chunks_exact(nf * 3) {
                for (f, (d, a)) in block.chunks_exact(3).zip(aff).enumerate() {
                    let v = [d[0] * a.mul, d[1] * a.mul, d[2] * a.mul];
                    if v != [0.0; 3] {
                        c.row_feature.push(index32(f)?);
                        c.row_value.push(v);
                    }
                }
                c.row_start.push(index32(c.row_value.len())?);
            }
            for &j in &c.block_atom[first..] {
                block_of[j as usize] = 0;
            }
            c.block_start.push(index32(c.block_atom.len())?);
            Ok(())
        })?;
        c.species.shrink_to_fit();
        c.feature_start.shrink_to_fit();
        c.block_start.shrink_to_fit();
        c.features.shrink_to_fit();
        c.block_atom.shrink_to_fit();
        c.row_start.shrink_to_fit();
        c.row_feature.shrink_to_fit();
        c.row_value.shrink_to_fit();
        Ok(c)
    }

    /// An upper bound of [`StructureCache::bytes`] for `s`, from its neighbour lists alone
    /// (cheap: no descriptor or Jacobian is computed). Rows are bounded by the features of
    /// atom i that atom j's species can reach; the actual cache drops rows that happen to be
    /// exactly zero (e.g. an angular function with no partner of the second species).
    pub fn estimate_bytes(&self, s: &Structure) -> Result<usize> {
        let model = self.model()?;
        let (pos, species, cell) = self.arrays(s)?;
        let n = pos.len();
        let system = System {
            positions: &pos,
            species: &species,
            cell,
        };
        let (blocks, rows) = with_capacity(s, self.cutoff, |cap| {
            let size = WorkspaceSize::new(&model.dims(), n, cap);
            let mut reals = vec![0.0; size.reals];
            let mut idx = vec![0u32; size.indices];
            let mut ws = Workspace::new(&model, n, cap, &mut reals, &mut idx)?;
            let mut seen = vec![false; n];
            let mut list = Vec::new();
            let (mut blocks, mut rows) = (0usize, 0usize);
            model.for_each_atom(&system, &mut ws, |atom| -> Result<()> {
                let i = atom.index;
                let si = usize::from(atom.species);
                let nb = atom.neighbors();
                rows += self.scaling[si].len();
                blocks += 1;
                seen[i] = true;
                list.clear();
                list.push(i);
                for k in 0..nb.len() {
                    let j = nb.atom_index(k).unwrap_or(0) as usize;
                    if !seen[j] {
                        seen[j] = true;
                        list.push(j);
                        blocks += 1;
                        rows += self.reach[si][usize::from(species[j])];
                    }
                }
                list.iter().for_each(|&j| seen[j] = false);
                Ok(())
            })?;
            Ok((blocks, rows))
        })?;
        let n_features = species
            .iter()
            .map(|&s| self.scaling[usize::from(s)].len())
            .sum();
        Ok(cache_bytes(
            n,
            self.scaling.len(),
            n_features,
            blocks,
            rows,
            !s.forces.is_empty(),
        ))
    }
}

/// Caches of `structures` for `spec`, built in parallel (each independently, so the result
/// does not depend on the thread count). Errors name the structure's index.
pub fn build_caches(spec: &ModelSpec, structures: &[Structure]) -> Result<Vec<StructureCache>> {
    let builder = CacheBuilder::new(spec)?;
    structures
        .par_iter()
        .enumerate()
        .map(|(k, s)| builder.build(s).with_context(|| format!("structure {k}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The networks in f64
// ---------------------------------------------------------------------------------------------

/// One layer: its parameter offsets and where its outputs sit in an atom's activation row.
struct NetLayer {
    n_in: usize,
    n_out: usize,
    act: Activation,
    scale: f64,
    w: usize,
    b: usize,
    /// Offset of this layer's outputs in the atom's concatenated outputs.
    out: usize,
}

struct SpeciesNet {
    layers: Vec<NetLayer>,
    n_features: usize,
    /// Sum of the layers' widths.
    width: usize,
    e_ref: f64,
}

/// The networks of a spec, bound to a parameter vector.
struct Net<'p> {
    species: Vec<SpeciesNet>,
    params: &'p [f64],
    a: f64,
    b: f64,
    /// Widest layer, inputs included.
    max_width: usize,
}

impl<'p> Net<'p> {
    /// # Panics
    /// If `params` does not fit `spec`.
    fn new(spec: &ModelSpec, params: &'p [f64]) -> Self {
        let layout = ParamLayout::new(spec);
        assert_eq!(
            params.len(),
            layout.len(),
            "parameter vector has {} entries, the model {}",
            params.len(),
            layout.len()
        );
        let mut max_width = 0;
        let species = spec
            .species
            .iter()
            .zip(&layout.species)
            .map(|(s, slots)| {
                let mut out = 0;
                let layers = s
                    .layers
                    .iter()
                    .zip(slots)
                    .map(|(l, sl)| {
                        max_width = max_width.max(l.n_in).max(l.n_out);
                        let layer = NetLayer {
                            n_in: l.n_in,
                            n_out: l.n_out,
                            act: l.activation.core(),
                            // As the core: T::ONE / T::from_usize(n_in).
                            scale: if l.normalize {
                                1.0 / l.n_in as f64
                            } else {
                                1.0
                            },
                            w: sl.weights,
                            b: sl.biases,
                            out,
                        };
                        out += l.n_out;
                        layer
                    })
                    .collect();
                SpeciesNet {
                    layers,
                    n_features: s.descriptors.len(),
                    width: out,
                    e_ref: s.reference_energy,
                }
            })
            .collect();
        Net {
            species,
            params,
            a: spec.energy_scale,
            b: spec.energy_shift,
            max_width,
        }
    }

    /// # Panics
    /// If the cache was built for a model with other feature counts.
    fn check(&self, cache: &StructureCache) {
        let nf: Vec<usize> = self.species.iter().map(|s| s.n_features).collect();
        assert_eq!(
            nf, cache.n_features,
            "structure cache was built for a model with other features per species"
        );
    }

    fn weights(&self, l: &NetLayer) -> &'p [f64] {
        &self.params[l.w..l.w + l.n_in * l.n_out]
    }

    fn biases(&self, l: &NetLayer) -> &'p [f64] {
        &self.params[l.b..l.b + l.n_out]
    }
}

/// The forward pass of one structure: per-atom layer outputs and activation derivatives,
/// the energy and (when asked) g_i = ∂E_i/∂G_s.
struct Forward {
    energy: f64,
    /// Atom i's outputs, f' and f'' are at `act_start[i]..` (its species' width).
    act_start: Vec<usize>,
    y: Vec<f64>,
    d1: Vec<f64>,
    /// f'' (empty unless asked).
    d2: Vec<f64>,
    /// g_i at the cache's feature offsets (empty unless asked).
    g: Vec<f64>,
}

fn forward(net: &Net<'_>, cache: &StructureCache, gradient: bool, second: bool) -> Forward {
    net.check(cache);
    let total: usize = cache
        .species
        .iter()
        .map(|&s| net.species[usize::from(s)].width)
        .sum();
    let mut fw = Forward {
        energy: 0.0,
        act_start: Vec::with_capacity(cache.n_atoms + 1),
        y: vec![0.0; total],
        d1: vec![0.0; total],
        d2: if second { vec![0.0; total] } else { Vec::new() },
        g: if gradient {
            vec![0.0; cache.features.len()]
        } else {
            Vec::new()
        },
    };
    let mut b1 = vec![0.0; net.max_width];
    let mut b2 = vec![0.0; net.max_width];
    let mut start = 0;
    for (i, &s) in cache.species.iter().enumerate() {
        let sn = &net.species[usize::from(s)];
        fw.act_start.push(start);
        let end = start + sn.width;
        let x = cache.features(i);
        let y = &mut fw.y[start..end];
        let d1 = &mut fw.d1[start..end];
        let mut d2 = if second {
            Some(&mut fw.d2[start..end])
        } else {
            None
        };
        let mut prev = 0..0;
        for l in &sn.layers {
            let (done, rest) = y.split_at_mut(l.out);
            let input: &[f64] = if l.out == 0 { x } else { &done[prev.clone()] };
            let rows = net.weights(l).chunks_exact(l.n_in.max(1));
            for (o, (row, &b)) in rows.zip(net.biases(l)).enumerate() {
                // As mlff_core::mlp::Layer::forward: acc = b + Σ w·x in input order, then ·s.
                let mut acc = b;
                for (&w, &xi) in row.iter().zip(input) {
                    acc += w * xi;
                }
                let z = acc * l.scale;
                let (f, df) = match d2.as_deref_mut() {
                    Some(d2) => {
                        let (f, df, ddf) = l.act.eval2(z);
                        d2[l.out + o] = ddf;
                        (f, df)
                    }
                    None => l.act.eval(z),
                };
                rest[o] = f;
                d1[l.out + o] = df;
            }
            prev = l.out..l.out + l.n_out;
        }
        let nn = y[prev.start];
        // As the core: a·NN + b + e_ref, summed over atoms in order.
        fw.energy += net.a * nn + net.b + sn.e_ref;
        if gradient {
            // The core's backward: seed a, dy·f'·s, then dx = Σ_o w·(dy·f'·s) in row order.
            let (mut cur, mut next) = (&mut b1, &mut b2);
            cur[0] = net.a;
            for l in sn.layers.iter().rev() {
                let dx = &mut next[..l.n_in];
                dx.iter_mut().for_each(|d| *d = 0.0);
                let rows = net.weights(l).chunks_exact(l.n_in.max(1));
                let dy = cur[..l.n_out].iter_mut();
                for ((row, g), &df) in rows.zip(dy).zip(&d1[l.out..l.out + l.n_out]) {
                    *g = *g * df * l.scale;
                    let gz = *g;
                    for (d, &w) in dx.iter_mut().zip(row) {
                        *d += w * gz;
                    }
                }
                std::mem::swap(&mut cur, &mut next);
            }
            let r = cache.feature_range(i);
            let n = r.len();
            fw.g[r].copy_from_slice(&cur[..n]);
        }
        start = end;
    }
    fw.act_start.push(start);
    fw
}

/// F_j = −Σ_i Σ_f g_i,f ∂G_s,i,f/∂r_j.
fn forces_from(cache: &StructureCache, g: &[f64]) -> Vec<[f64; 3]> {
    let mut forces = vec![[0.0; 3]; cache.n_atoms];
    for i in 0..cache.n_atoms {
        let gi = &g[cache.feature_range(i)];
        for block in cache.blocks(i) {
            let mut acc = [0.0; 3];
            for (&f, v) in block.features.iter().zip(block.values) {
                let m = gi[f as usize];
                acc.iter_mut().zip(v).for_each(|(a, &x)| *a += m * x);
            }
            forces[block.atom]
                .iter_mut()
                .zip(acc)
                .for_each(|(f, a)| *f -= a);
        }
    }
    forces
}

/// Scratch of the per-atom reverse pass.
struct Reverse {
    /// Tangents ż of every layer, concatenated as the outputs.
    zdot: Vec<f64>,
    /// Tangents ẏ of every layer.
    ydot: Vec<f64>,
    /// Adjoints ȳ, ẏ̄ of the current layer's outputs, and of its inputs.
    ybar: Vec<f64>,
    tbar: Vec<f64>,
    ybar_in: Vec<f64>,
    tbar_in: Vec<f64>,
    /// σ·z̄ and σ·ż̄ of the current layer.
    zs: Vec<f64>,
    zds: Vec<f64>,
}

impl Reverse {
    fn new(net: &Net<'_>) -> Self {
        let widest = net.species.iter().map(|s| s.width).max().unwrap_or(0);
        let w = net.max_width;
        Reverse {
            zdot: vec![0.0; widest],
            ydot: vec![0.0; widest],
            ybar: vec![0.0; w],
            tbar: vec![0.0; w],
            ybar_in: vec![0.0; w],
            tbar_in: vec![0.0; w],
            zs: vec![0.0; w],
            zds: vec![0.0; w],
        }
    }
}

/// Adds ∂Φ_i/∂θ of atom `i` to `grad` (see the module documentation): Φ_i = c_E·E_i + v·g_i,
/// `v = None` for no force term.
#[allow(clippy::too_many_arguments)]
fn reverse_atom(
    net: &Net<'_>,
    fw: &Forward,
    cache: &StructureCache,
    i: usize,
    c_e: f64,
    v: Option<&[f64]>,
    rv: &mut Reverse,
    grad: &mut [f64],
) {
    let sn = &net.species[usize::from(cache.species[i])];
    let act = fw.act_start[i]..fw.act_start[i + 1];
    let (y, d1) = (&fw.y[act.clone()], &fw.d1[act.clone()]);
    let d2: &[f64] = if v.is_some() { &fw.d2[act] } else { &[] };
    let x = cache.features(i);
    // Tangent forward: ż_l = σ W ẏ_{l−1}, ẏ_l = f'(z_l) ż_l, ẏ_0 = v.
    if let Some(v) = v {
        for l in &sn.layers {
            let (done, rest) = rv.ydot.split_at_mut(l.out);
            let input: &[f64] = if l.out == 0 {
                v
            } else {
                &done[l.out - l.n_in..]
            };
            let rows = net.weights(l).chunks_exact(l.n_in.max(1));
            for (o, row) in rows.enumerate() {
                let mut acc = 0.0;
                for (&w, &t) in row.iter().zip(input) {
                    acc += w * t;
                }
                let zd = acc * l.scale;
                rv.zdot[l.out + o] = zd;
                rest[o] = d1[l.out + o] * zd;
            }
        }
    }
    // Reverse: seeds ȳ_L = a·c_E, ẏ̄_L = a.
    rv.ybar[0] = net.a * c_e;
    rv.tbar[0] = if v.is_some() { net.a } else { 0.0 };
    for l in sn.layers.iter().rev() {
        for o in 0..l.n_out {
            let k = l.out + o;
            let mut zbar = rv.ybar[o] * d1[k];
            if v.is_some() {
                zbar += rv.tbar[o] * d2[k] * rv.zdot[k];
                rv.zds[o] = l.scale * (rv.tbar[o] * d1[k]);
            }
            rv.zs[o] = l.scale * zbar;
        }
        let (y_in, t_in): (&[f64], &[f64]) = if l.out == 0 {
            (x, v.unwrap_or(&[]))
        } else {
            let r = l.out - l.n_in..l.out;
            (&y[r.clone()], &rv.ydot[r])
        };
        let gw = &mut grad[l.w..l.w + l.n_in * l.n_out];
        for (o, row) in gw.chunks_exact_mut(l.n_in).enumerate() {
            let zs = rv.zs[o];
            for (gr, &yi) in row.iter_mut().zip(y_in) {
                *gr += zs * yi;
            }
            if v.is_some() {
                let zds = rv.zds[o];
                for (gr, &ti) in row.iter_mut().zip(t_in) {
                    *gr += zds * ti;
                }
            }
        }
        for (gb, &zs) in grad[l.b..l.b + l.n_out].iter_mut().zip(&rv.zs) {
            *gb += zs;
        }
        if l.out == 0 {
            break;
        }
        // ȳ_{l−1} = σWᵀz̄, ẏ̄_{l−1} = σWᵀż̄ (σ already in zs, zds).
        let ybar_in = &mut rv.ybar_in[..l.n_in];
        let tbar_in = &mut rv.tbar_in[..l.n_in];
        ybar_in.iter_mut().for_each(|x| *x = 0.0);
        tbar_in.iter_mut().for_each(|x| *x = 0.0);
        let rows = net.weights(l).chunks_exact(l.n_in.max(1));
        for (o, row) in rows.enumerate() {
            let zs = rv.zs[o];
            for (b, &w) in ybar_in.iter_mut().zip(row) {
                *b += w * zs;
            }
            if v.is_some() {
                let zds = rv.zds[o];
                for (b, &w) in tbar_in.iter_mut().zip(row) {
                    *b += w * zds;
                }
            }
        }
        std::mem::swap(&mut rv.ybar, &mut rv.ybar_in);
        std::mem::swap(&mut rv.tbar, &mut rv.tbar_in);
    }
}

/// The loss of one structure, and (with `grad`) its gradient added to `grad`.
fn accumulate(
    net: &Net<'_>,
    cache: &StructureCache,
    w: LossWeights,
    grad: Option<&mut [f64]>,
) -> f64 {
    let n = cache.n_atoms as f64;
    let energy_ref = cache.energy.filter(|_| w.energy != 0.0);
    let forces_ref = cache.forces.as_deref().filter(|_| w.force != 0.0);
    let force_term = forces_ref.is_some();
    let want_grad = grad.is_some();
    let fw = forward(net, cache, force_term, force_term && want_grad);
    let mut loss = 0.0;
    let mut c_e = 0.0;
    if let Some(e_ref) = energy_ref {
        let de = (fw.energy - e_ref) / n;
        loss += w.energy * de * de;
        c_e = 2.0 * w.energy * de / n;
    }
    let mut v = Vec::new();
    if let Some(f_ref) = forces_ref {
        let forces = forces_from(cache, &fw.g);
        let residual: Vec<[f64; 3]> = forces
            .iter()
            .zip(f_ref)
            .map(|(f, r)| [f[0] - r[0], f[1] - r[1], f[2] - r[2]])
            .collect();
        let sq: f64 = residual.iter().flatten().map(|r| r * r).sum();
        loss += w.force / (3.0 * n) * sq;
        if want_grad {
            // v_i,f = −(2 w_F / 3N) Σ_j ∂G_s,i,f/∂r_j · R_j.
            let c = -2.0 * w.force / (3.0 * n);
            v = vec![0.0; cache.features.len()];
            for i in 0..cache.n_atoms {
                let vi = &mut v[cache.feature_range(i)];
                for block in cache.blocks(i) {
                    let r = residual[block.atom];
                    for (&f, d) in block.features.iter().zip(block.values) {
                        vi[f as usize] += c * (d[0] * r[0] + d[1] * r[1] + d[2] * r[2]);
                    }
                }
            }
        }
    }
    if let Some(grad) = grad {
        if energy_ref.is_some() || force_term {
            let mut rv = Reverse::new(net);
            for i in 0..cache.n_atoms {
                let vi = force_term.then(|| &v[cache.feature_range(i)]);
                reverse_atom(net, &fw, cache, i, c_e, vi, &mut rv, grad);
            }
        }
    }
    loss
}

/// Total energy (eV) and forces (eV/Å) of the cached structure under `spec`'s networks with
/// parameters `params` ([`ParamLayout`] order). Agrees with `mlff-core` on the blob of
/// `spec_with_params(spec, params)`: the energy bit for bit, forces to rounding.
///
/// # Panics
/// If `params` does not fit `spec`, or the cache was built for other feature counts.
pub fn energy_forces(
    spec: &ModelSpec,
    params: &[f64],
    cache: &StructureCache,
) -> (f64, Vec<[f64; 3]>) {
    let net = Net::new(spec, params);
    let fw = forward(&net, cache, true, false);
    (fw.energy, forces_from(cache, &fw.g))
}

/// The loss of one structure (module documentation), without its gradient.
///
/// # Panics
/// As [`energy_forces`].
pub fn loss(spec: &ModelSpec, params: &[f64], cache: &StructureCache, w: LossWeights) -> f64 {
    accumulate(&Net::new(spec, params), cache, w, None)
}

/// The loss of one structure and its exact gradient with respect to `params`.
///
/// # Panics
/// As [`energy_forces`].
pub fn loss_and_gradient(
    spec: &ModelSpec,
    params: &[f64],
    cache: &StructureCache,
    w: LossWeights,
) -> (f64, Vec<f64>) {
    let net = Net::new(spec, params);
    let mut grad = vec![0.0; params.len()];
    let loss = accumulate(&net, cache, w, Some(&mut grad));
    (loss, grad)
}

/// Structures per parallel work item of the batch functions. Fixed, so that the summation
/// order, hence the result to the last bit, does not depend on the thread count.
pub const BATCH_CHUNK: usize = 4;

/// Runs `f` over fixed chunks of `caches` in parallel and sums the per-chunk results in chunk
/// order.
fn batch(
    net: &Net<'_>,
    caches: &[&StructureCache],
    w: LossWeights,
    gradient: bool,
) -> (f64, Vec<f64>) {
    let p = if gradient { net.params.len() } else { 0 };
    let parts: Vec<(f64, Vec<f64>)> = caches
        .par_chunks(BATCH_CHUNK)
        .map(|chunk| {
            let mut g = vec![0.0; p];
            let mut l = 0.0;
            for c in chunk {
                l += accumulate(net, c, w, gradient.then_some(g.as_mut_slice()));
            }
            (l, g)
        })
        .collect();
    let mut loss = 0.0;
    let mut grad = vec![0.0; p];
    for (l, g) in parts {
        loss += l;
        grad.iter_mut().zip(g).for_each(|(a, b)| *a += b);
    }
    let scale = 1.0 / caches.len().max(1) as f64;
    grad.iter_mut().for_each(|g| *g *= scale);
    (loss * scale, grad)
}

/// The mean loss over `caches`, L_B = (1/B) Σ_s L_s, and its gradient. Structures are
/// processed in parallel in fixed chunks of [`BATCH_CHUNK`] and reduced in order, so the
/// result is bit-identical for any number of threads. An empty batch gives zero.
///
/// # Panics
/// As [`energy_forces`].
pub fn loss_and_gradient_batch(
    spec: &ModelSpec,
    params: &[f64],
    caches: &[&StructureCache],
    w: LossWeights,
) -> (f64, Vec<f64>) {
    batch(&Net::new(spec, params), caches, w, true)
}

/// The mean loss over `caches`, without gradient (as [`loss_and_gradient_batch`]).
///
/// # Panics
/// As [`energy_forces`].
pub fn loss_batch(
    spec: &ModelSpec,
    params: &[f64],
    caches: &[&StructureCache],
    w: LossWeights,
) -> f64 {
    batch(&Net::new(spec, params), caches, w, false).0
}

// ---------------------------------------------------------------------------------------------
// Jacobian rows of single observations (the Kalman filter's H)
// ---------------------------------------------------------------------------------------------

/// The total energy E (eV) of the cached structure and its gradient ∂E/∂θ with respect to
/// `params`: one row of the observation Jacobian (a Kalman energy update uses E/N and
/// (∂E/∂θ)/N).
///
/// The module's reverse pass with c_E = 1 and no force term (Φ_i = E_i): one forward and one
/// backward pass per atom.
///
/// # Panics
/// As [`energy_forces`].
pub fn energy_jacobian(
    spec: &ModelSpec,
    params: &[f64],
    cache: &StructureCache,
) -> (f64, Vec<f64>) {
    let net = Net::new(spec, params);
    let fw = forward(&net, cache, false, false);
    let mut grad = vec![0.0; params.len()];
    let mut rv = Reverse::new(&net);
    for i in 0..cache.n_atoms {
        reverse_atom(&net, &fw, cache, i, 1.0, None, &mut rv, &mut grad);
    }
    (fw.energy, grad)
}

/// The force component F_j,c (eV/Å) on atom `atom` (j) along axis `component` (c: 0 = x,
/// 1 = y, 2 = z) and its gradient ∂F_j,c/∂θ: one row of the observation Jacobian.
///
/// F_j,c = −Σ_i Σ_f g_i,f ∂G_s,i,f/∂r_j,c is linear in the g_i, so it is Σ_i v_i·g_i with
/// v_i,f = −∂G_s,i,f/∂r_j,c, and its gradient is the force-loss machinery of the module
/// documentation with c_E = 0 and these v_i: one tangent forward and reverse pass for each atom
/// i whose features depend on r_j (atom j and its neighbours), none for the others.
///
/// # Panics
/// If `atom` is not below [`StructureCache::n_atoms`] or `component` is not below 3, and as
/// [`energy_forces`].
pub fn force_jacobian(
    spec: &ModelSpec,
    params: &[f64],
    cache: &StructureCache,
    atom: usize,
    component: usize,
) -> (f64, Vec<f64>) {
    assert!(
        atom < cache.n_atoms && component < 3,
        "force component ({atom}, {component}) of a structure with {} atoms",
        cache.n_atoms
    );
    let net = Net::new(spec, params);
    let fw = forward(&net, cache, true, true);
    let mut grad = vec![0.0; params.len()];
    let mut rv = Reverse::new(&net);
    let mut v = Vec::new();
    let mut force = 0.0;
    for i in 0..cache.n_atoms {
        let range = cache.feature_range(i);
        v.clear();
        v.resize(range.len(), 0.0);
        let mut depends = false;
        // Periodic images of atom j are merged into one block, so there is at most one.
        for block in cache.blocks(i).filter(|b| b.atom == atom) {
            depends = true;
            for (&f, d) in block.features.iter().zip(block.values) {
                v[f as usize] -= d[component];
            }
        }
        if !depends {
            continue;
        }
        force += v.iter().zip(&fw.g[range]).map(|(a, b)| a * b).sum::<f64>();
        reverse_atom(&net, &fw, cache, i, 0.0, Some(&v), &mut rv, &mut grad);
    }
    (force, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{generated_set, random_model};
    use crate::spec::ActivationSpec;

    #[test]
    fn params_round_trip_through_the_spec() {
        let set = generated_set(&["H", "O"], 4.0, 2, 1, &[4, 3], ActivationSpec::Tanh).unwrap();
        let spec = random_model(&set, 7);
        let p = params_from_spec(&spec);
        let layout = ParamLayout::new(&spec);
        assert_eq!(p.len(), layout.len());
        let last = layout.layers(1).last().unwrap();
        assert_eq!(last.bias_range().end, p.len());
        assert_eq!(p[last.biases], spec.species[1].layers[2].biases[0]);
        let q: Vec<f64> = p.iter().map(|x| x * 2.0).collect();
        let spec2 = spec_with_params(&spec, &q);
        assert_eq!(params_from_spec(&spec2), q);
        assert_eq!(spec2.species[0].layers[0].weights[0], 2.0 * p[0]);
    }
}
