//! The compiled potential: a validated blob viewed in place, and the energy/forces/virial
//! computation.

use crate::blob::{self, BlobError, ScalingMode, Sections, GLOBALS, LAYER_NORMALIZE, LAYER_RECORD};
use crate::blob::{MAX_LAYERS, MODEL_LEN, SPECIES_RECORD};
use crate::bytes::{cast_reals, u32_at, u8_at};
use crate::cell::Cell;
use crate::chunk::{chunk_count, chunk_range, ChunkForces, Direct, ForceSink};
use crate::cutoff::CutoffKind;
use crate::descriptor::batched::PairCache;
use crate::descriptor::compact::{CompactKind, ANGLE_TOLERANCE};
use crate::descriptor::GROUP_RECORD;
use crate::descriptor::{self, DescriptorKind, Group, JacobianSink};
use crate::error::ComputeError;
use crate::math::Real;
use crate::mlp::{Activation, Layer};
use crate::neighbors::{Candidates, CellList, NeighborSet, MAX_SPECIES};
use crate::workspace::{AtomScratch, Workspace};

/// Stages of [`Model::compute_with`], as reported to a [`Probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Cell list and per-atom neighbour collection.
    Neighbors,
    /// Symmetry-function values.
    Descriptors,
    /// Scaling, network forward and backward (dE/dG).
    Network,
    /// Descriptor back-propagation and the force/virial scatter.
    Forces,
    /// The computation ended.
    Done,
}

/// Observes stage changes (e.g. a timer on the host or a cycle counter on a microcontroller).
/// `()` is the no-op probe; calls are inlined away.
pub trait Probe {
    /// Called when `stage` starts (and the previous one ends).
    fn enter(&mut self, stage: Stage);
}

impl Probe for () {
    #[inline(always)]
    fn enter(&mut self, _stage: Stage) {}
}

/// Sizes that determine the workspace a model needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelDims {
    /// Species in the model.
    pub n_species: usize,
    /// Most features (symmetry functions) of any species.
    pub max_features: usize,
    /// Most neurons in any layer, inputs included.
    pub max_width: usize,
    /// Most neurons (outputs of all layers) of any network.
    pub max_network: usize,
    /// Most distinct (η, r_s) channels of an angular group the batched kernels evaluate (sizes
    /// their per-neighbour cache, see [`crate::descriptor::batched::slot_reals`]).
    pub max_channels: usize,
}

/// A species record decoded from `SPEC`.
#[derive(Clone, Copy, Debug)]
struct SpeciesRec {
    z: u32,
    n_features: usize,
    group_start: usize,
    group_count: usize,
    layer_start: usize,
    layer_count: usize,
    /// Offset in the reals of [reference energy, sub[n], mul[n], add[n]].
    reals: usize,
}

impl SpeciesRec {
    fn decode(spec: &[u8], s: usize) -> Option<Self> {
        let b = s.checked_mul(SPECIES_RECORD)?;
        let f = |k: usize| u32_at(spec, b + 4 * k).map(|x| x as usize);
        Some(SpeciesRec {
            z: u32_at(spec, b)?,
            n_features: f(1)?,
            group_start: f(2)?,
            group_count: f(3)?,
            layer_start: f(4)?,
            layer_count: f(5)?,
            reals: f(6)?,
        })
    }
}

/// The system to compute: positions (Å), species indices of the model (see
/// [`Model::species_index`]), and an optional cell (`None`: open boundaries).
#[derive(Clone, Copy, Debug)]
pub struct System<'a, T> {
    /// Cartesian positions, Å.
    pub positions: &'a [[T; 3]],
    /// Species index of each atom.
    pub species: &'a [u8],
    /// The cell and its periodicity; `None` for a molecule in vacuum.
    pub cell: Option<Cell<T>>,
}

/// Caller-owned outputs. Forces are overwritten (eV/Å); per-atom energies too (eV).
pub struct Outputs<'o, T> {
    /// Forces, one per atom; `None` computes the energy only (faster, no virial).
    pub forces: Option<&'o mut [[T; 3]]>,
    /// Per-atom energies (eV, f64 in both precisions: they carry the reference energies and
    /// shift, whose size would swamp f32's resolution); `None` to skip.
    pub energies: Option<&'o mut [f64]>,
}

/// Caller-owned outputs of one chunk ([`Model::compute_chunk`]).
pub struct ChunkOutputs<'o, 'w, T> {
    /// Per-atom energies of the chunk's atoms (eV) in the chunk's visiting order (entry k
    /// is the atom at visiting position `chunk_range(chunk, n).start + k`, see
    /// [`CellList::visit`]); `None` to skip.
    pub energies: Option<&'o mut [f64]>,
    /// The chunk's force record; `None` computes energies only (no forces, no virial).
    pub forces: Option<&'o mut ChunkForces<'w, T>>,
}

/// Scalar results of [`Model::compute`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Results {
    /// Total energy, eV, accumulated in f64.
    pub energy: f64,
    /// Virial W = Σ_pairs d ⊗ f = −∂E/∂ε (eV), full 3×3, accumulated in f64; zero without forces.
    /// Sign: W = −V·σ_ASE, so ASE's stress is −W/V ([`Results::stress`]).
    pub virial: [[f64; 3]; 3],
}

impl Results {
    /// The virial in Voigt order xx, yy, zz, yz, xz, xy (ASE's order).
    pub fn virial_voigt(&self) -> [f64; 6] {
        let w = &self.virial;
        [w[0][0], w[1][1], w[2][2], w[1][2], w[0][2], w[0][1]]
    }

    /// ASE's stress σ = (1/V) ∂E/∂ε = −W/V (eV/Å³), Voigt order xx, yy, zz, yz, xz, xy.
    pub fn stress(&self, volume: f64) -> [f64; 6] {
        self.virial_voigt().map(|w| -w / volume)
    }
}

/// A compiled potential read in place from a blob.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a, T> {
    sections: Sections<'a>,
    reals: &'a [T],
    dims: ModelDims,
    cutoff: T,
    energy_scale: f64,
    energy_shift: f64,
    scaling: ScalingMode,
    source_units: [f64; 2],
    /// Atomic number of each species (zero beyond `n_species`), the weights of the
    /// element-weighted descriptor kinds.
    zs: [T; MAX_SPECIES],
}

fn shape(what: &'static str, index: usize) -> BlobError {
    BlobError::ShapeMismatch { what, index }
}

fn invalid(what: &'static str, index: usize) -> BlobError {
    BlobError::InvalidValue { what, index }
}

impl<'a, T: Real> Model<'a, T> {
    /// Loads a blob without copying: the blob must store reals of `T`'s size and start at an
    /// address aligned to it (8 bytes for f64, 4 for f32). Otherwise use
    /// [`Model::from_blob_in`].
    pub fn from_blob(bytes: &'a [u8]) -> Result<Self, BlobError> {
        let sections = blob::parse(bytes)?;
        if usize::from(sections.float_bytes) != T::BYTES {
            return Err(BlobError::PrecisionMismatch {
                blob: sections.float_bytes,
                requested: T::BYTES as u8,
            });
        }
        let reals =
            cast_reals::<T>(sections.reals).ok_or(BlobError::Misaligned { required: T::BYTES })?;
        Self::validate(sections, reals)
    }

    /// Loads a blob of any alignment and float kind by decoding its reals into `storage`
    /// (at least [`Model::reals_needed`] long); everything else is still read in place.
    pub fn from_blob_in(bytes: &'a [u8], storage: &'a mut [T]) -> Result<Self, BlobError> {
        let sections = blob::parse(bytes)?;
        let n = sections.n_reals();
        let got = storage.len();
        let dst = storage
            .get_mut(..n)
            .ok_or(BlobError::CapacityTooSmall { needed: n, got })?;
        let width = usize::from(sections.float_bytes).max(1);
        for (d, chunk) in dst.iter_mut().zip(sections.reals.chunks_exact(width)) {
            *d = T::from_le_slice(chunk).unwrap_or(T::ZERO);
        }
        Self::validate(sections, dst)
    }

    /// Reals the copying loader needs for `bytes` (after checking header and checksum).
    pub fn reals_needed(bytes: &[u8]) -> Result<usize, BlobError> {
        Ok(blob::parse(bytes)?.n_reals())
    }

    fn validate(sections: Sections<'a>, reals: &'a [T]) -> Result<Self, BlobError> {
        let m = sections.model;
        if m.len() != MODEL_LEN {
            return Err(shape("MODL length", 0));
        }
        let field = |k: usize| u32_at(m, 4 * k).unwrap_or(0) as usize;
        let (n_species, n_groups, n_layers, n_index, n_reals) =
            (field(0), field(1), field(2), field(3), field(4));
        let scaling_code = field(5) as u32;
        let globals = field(6);
        if n_species == 0 {
            return Err(shape("species count", 0));
        }
        if n_species > MAX_SPECIES {
            return Err(BlobError::TooLarge {
                what: "species",
                found: n_species,
                max: MAX_SPECIES,
            });
        }
        let count_ok = |len: usize, n: usize, rec: usize| n.checked_mul(rec) == Some(len);
        if !count_ok(sections.species.len(), n_species, SPECIES_RECORD) {
            return Err(shape("species count", 0));
        }
        if !count_ok(sections.groups.len(), n_groups, GROUP_RECORD) {
            return Err(shape("group count", 0));
        }
        if !count_ok(sections.layers.len(), n_layers, LAYER_RECORD) {
            return Err(shape("layer count", 0));
        }
        if !count_ok(sections.index.len(), n_index, 4) {
            return Err(shape("index count", 0));
        }
        if reals.len() != n_reals {
            return Err(shape("real count", 0));
        }
        let scaling = ScalingMode::from_code(scaling_code).ok_or(BlobError::UnknownCode {
            what: "scaling mode",
            code: scaling_code,
        })?;
        let all_finite = |s: &[T]| s.iter().all(|x| x.is_finite());
        let g = reals
            .get(globals..globals.saturating_add(GLOBALS))
            .ok_or(shape("globals offset", 0))?;
        if !all_finite(g) {
            return Err(invalid("globals", 0));
        }
        let gv = |k: usize| g.get(k).copied().unwrap_or(T::ZERO);
        let cutoff = gv(2);
        if cutoff <= T::ZERO || gv(3) <= T::ZERO || gv(4) <= T::ZERO {
            return Err(invalid("globals", 0));
        }
        let mut dims = ModelDims {
            n_species,
            ..ModelDims::default()
        };
        let mut zs = [0u32; MAX_SPECIES];
        for s in 0..n_species {
            let rec = SpeciesRec::decode(sections.species, s).ok_or(shape("species", s))?;
            if rec.z == 0 || rec.z > 118 || zs.iter().take(s).any(|&z| z == rec.z) {
                return Err(invalid("atomic number", s));
            }
            if let Some(z) = zs.get_mut(s) {
                *z = rec.z;
            }
            let nf = rec.n_features;
            if nf == 0 {
                return Err(shape("feature count", s));
            }
            let sr = reals
                .get(
                    rec.reals
                        ..rec
                            .reals
                            .saturating_add(nf.saturating_mul(3).saturating_add(1)),
                )
                .ok_or(shape("species reals", s))?;
            if !all_finite(sr) {
                return Err(invalid("reference energy or scaling", s));
            }
            if rec.group_start.saturating_add(rec.group_count) > n_groups {
                return Err(shape("species groups", s));
            }
            let channels = Self::validate_groups(&sections, reals, &rec, n_species, cutoff, s)?;
            dims.max_channels = dims.max_channels.max(channels);
            if rec.layer_count == 0 {
                return Err(shape("layer count", s));
            }
            if rec.layer_count > MAX_LAYERS {
                return Err(BlobError::TooLarge {
                    what: "layers",
                    found: rec.layer_count,
                    max: MAX_LAYERS,
                });
            }
            if rec.layer_start.saturating_add(rec.layer_count) > n_layers {
                return Err(shape("species layers", s));
            }
            let mut width = nf;
            let mut total = 0usize;
            dims.max_width = dims.max_width.max(nf);
            for l in rec.layer_start..rec.layer_start + rec.layer_count {
                let b = l * LAYER_RECORD;
                let n_in = u32_at(sections.layers, b).unwrap_or(0) as usize;
                let n_out = u32_at(sections.layers, b + 4).unwrap_or(0) as usize;
                let act = u8_at(sections.layers, b + 8).unwrap_or(0);
                let flags = u8_at(sections.layers, b + 9).unwrap_or(0);
                if n_in != width || n_out == 0 {
                    return Err(shape("layer width", l));
                }
                if Activation::from_code(act).is_none() {
                    return Err(BlobError::UnknownCode {
                        what: "activation",
                        code: act.into(),
                    });
                }
                if flags & !LAYER_NORMALIZE != 0 {
                    return Err(BlobError::UnknownCode {
                        what: "layer flags",
                        code: flags.into(),
                    });
                }
                let layer =
                    decode_layer(sections.layers, reals, l).ok_or(shape("layer reals", l))?;
                if !all_finite(layer.weights) || !all_finite(layer.biases) {
                    return Err(invalid("weights", l));
                }
                width = n_out;
                total = total.saturating_add(n_out);
                dims.max_width = dims.max_width.max(n_out);
            }
            if width != 1 {
                return Err(shape("network output width", s));
            }
            dims.max_features = dims.max_features.max(nf);
            dims.max_network = dims.max_network.max(total);
        }
        let model = Model {
            sections,
            reals,
            dims,
            cutoff,
            energy_scale: gv(0).to_f64(),
            energy_shift: gv(1).to_f64(),
            scaling,
            source_units: [gv(3).to_f64(), gv(4).to_f64()],
            zs: zs.map(|z| T::from_usize(z as usize)),
        };
        Ok(model)
    }

    fn validate_groups(
        sections: &Sections<'a>,
        reals: &'a [T],
        rec: &SpeciesRec,
        n_species: usize,
        cutoff: T,
        s: usize,
    ) -> Result<usize, BlobError> {
        let groups = rec.group_start..rec.group_start + rec.group_count;
        let mut channels = 0;
        for gi in groups.clone() {
            let b = gi * GROUP_RECORD;
            let code = |k| u8_at(sections.groups, b + k).unwrap_or(0);
            let kind = DescriptorKind::from_code(code(0)).ok_or(BlobError::UnknownCode {
                what: "descriptor kind",
                code: code(0).into(),
            })?;
            // The cutoff byte: a cutoff function, or the compact function of a polynomial kind.
            let (known, what) = if kind.is_polynomial() {
                (
                    CompactKind::from_code(code(1)).is_some(),
                    "compact function",
                )
            } else {
                (CutoffKind::from_code(code(1)).is_some(), "cutoff function")
            };
            if !known {
                return Err(BlobError::UnknownCode {
                    what,
                    code: code(1).into(),
                });
            }
            // Neighbour species: none for the element-weighted kinds (the bytes are ignored).
            if !kind.is_weighted()
                && (usize::from(code(2)) >= n_species
                    || (kind.is_angular() && usize::from(code(3)) >= n_species))
            {
                return Err(shape("group species", gi));
            }
            let g = Group::decode(sections.groups, sections.index, reals, gi)
                .ok_or(shape("group extent", gi))?;
            if g.n == 0 {
                return Err(shape("group size", gi));
            }
            let rc = g.cutoff.rc();
            let head = reals.get(u32_at(sections.groups, b + 8).unwrap_or(0) as usize..);
            let alpha = head.and_then(|h| h.get(1)).copied().unwrap_or(T::ONE);
            if !(rc.is_finite() && rc > T::ZERO && rc <= cutoff) {
                return Err(invalid("group cutoff radius", gi));
            }
            if !(alpha.is_finite() && alpha >= T::ZERO && alpha < T::ONE) {
                return Err(invalid("group cutoff alpha", gi));
            }
            if !g.params.iter().all(|x| x.is_finite()) {
                return Err(invalid("descriptor parameters", gi));
            }
            if kind.is_polynomial() {
                Self::validate_compact(&g, rc, gi)?;
            } else {
                if g.lane(0).iter().any(|&e| e < T::ZERO) {
                    return Err(invalid("eta", gi));
                }
                if kind.has_zeta() {
                    if g.lane(2).iter().any(|&z| z < T::ONE) {
                        return Err(invalid("zeta", gi));
                    }
                    if g.lane(3).iter().any(|&l| l != T::ONE && l != -T::ONE) {
                        return Err(invalid("lambda", gi));
                    }
                }
            }
            if (0..g.n).any(|k| g.feature(k) >= rec.n_features) {
                return Err(shape("feature index", gi));
            }
            if !kind.is_polynomial() {
                let plan = descriptor::batched::Plan::new(&g);
                // Without the fallback, `compute` has only the batched kernels for these kinds.
                if plan.is_none() && !cfg!(feature = "reference-fallback") {
                    return Err(invalid("group beyond the batched kernels", gi));
                }
                channels = plan.map_or(channels, |p| channels.max(p.channels()));
            }
        }
        // Each feature must be written by exactly one function.
        for f in 0..rec.n_features {
            let mut hits = 0usize;
            for gi in groups.clone() {
                if let Some(g) = Group::decode(sections.groups, sections.index, reals, gi) {
                    hits += (0..g.n).filter(|&k| g.feature(k) == f).count();
                }
            }
            if hits != 1 {
                return Err(shape("feature coverage", s));
            }
        }
        Ok(channels)
    }

    /// The windows of a polynomial group `g` (index `gi`): r_l < r_c for every function, and for
    /// the angular kinds θ_left < θ_right (radians) with n2p2's domain rule: the window lies in
    /// [0, π], except that it may extend below 0 if centred at 0 and above π if centred at π
    /// (A is then even about θ = 0 or π, hence smooth there), and spans at most 2π. Centres
    /// and bounds are compared with [`ANGLE_TOLERANCE`].
    fn validate_compact(g: &Group<'a, T>, rc: T, gi: usize) -> Result<(), BlobError> {
        // (All parameters are finite here.)
        if g.lane(0).iter().any(|&rl| rl >= rc) {
            return Err(invalid("rl", gi));
        }
        if !g.kind.is_angular() {
            return Ok(());
        }
        let tol = T::from_f64(ANGLE_TOLERANCE);
        for (&left, &right) in g.lane(1).iter().zip(g.lane(2)) {
            if !(left < right && right - left <= T::TWO * T::PI + tol) {
                return Err(invalid("angle window", gi));
            }
            let centre = T::HALF * (left + right);
            if left < -tol && centre.abs() > tol {
                return Err(invalid("angle left", gi));
            }
            if right > T::PI + tol && (centre - T::PI).abs() > tol {
                return Err(invalid("angle right", gi));
            }
        }
        Ok(())
    }

    /// Dimensions for sizing a [`Workspace`].
    pub fn dims(&self) -> ModelDims {
        self.dims
    }

    /// Number of species.
    pub fn n_species(&self) -> usize {
        self.dims.n_species
    }

    /// Atomic number of species `s`.
    pub fn atomic_number(&self, s: usize) -> Option<u8> {
        let z = SpeciesRec::decode(self.sections.species, s)?.z;
        u8::try_from(z).ok().filter(|_| s < self.dims.n_species)
    }

    /// The species index of atomic number `z`.
    pub fn species_index(&self, z: u8) -> Option<u8> {
        (0..self.dims.n_species)
            .find(|&s| self.atomic_number(s) == Some(z))
            .and_then(|s| u8::try_from(s).ok())
    }

    /// Features (network inputs) of species `s`.
    pub fn n_features(&self, s: usize) -> Option<usize> {
        Some(SpeciesRec::decode(self.sections.species, s)?.n_features)
    }

    /// The largest cutoff radius, Å.
    pub fn cutoff(&self) -> T {
        self.cutoff
    }

    /// Bytes per real in the blob (4 or 8).
    pub fn blob_float_bytes(&self) -> u8 {
        self.sections.float_bytes
    }

    /// The scaling mode the model was trained with (informational).
    pub fn scaling_mode(&self) -> ScalingMode {
        self.scaling
    }

    /// Units of the source model: length unit in Å and energy unit in eV (the blob itself is
    /// always in Å and eV).
    pub fn source_units(&self) -> [f64; 2] {
        self.source_units
    }

    /// The provenance text stored in the blob (may be empty).
    pub fn text(&self) -> &'a str {
        core::str::from_utf8(self.sections.text).unwrap_or("")
    }

    fn species(&self, s: usize) -> Result<SpeciesRec, ComputeError> {
        SpeciesRec::decode(self.sections.species, s)
            .filter(|_| s < self.dims.n_species)
            .ok_or(ComputeError::CorruptModel)
    }

    /// Atomic numbers of the model's species, as reals (weights of the element-weighted kinds).
    fn zs(&self) -> &[T] {
        self.zs.get(..self.dims.n_species).unwrap_or(&[])
    }

    fn group(&self, g: usize) -> Result<Group<'a, T>, ComputeError> {
        Group::decode(self.sections.groups, self.sections.index, self.reals, g)
            .ok_or(ComputeError::CorruptModel)
    }

    /// Energy, forces, virial and per-atom energies of a system.
    ///
    /// Atoms are visited in the cell list's order ([`CellList::visit`]: bin after bin, so
    /// that consecutive searches share their data). The energy is the sum of the atomic
    /// energies in atom order when `out.energies` is given (without it, in visiting order:
    /// the same up to rounding); forces and virial are summed chunk by chunk over the fixed
    /// chunks of [`crate::chunk`], so the bits equal those of [`Model::compute_chunk`] run on
    /// any number of threads and combined as [`crate::chunk`] describes.
    pub fn compute(
        &self,
        system: &System<'_, T>,
        ws: &mut Workspace<'_, T>,
        out: &mut Outputs<'_, T>,
    ) -> Result<Results, ComputeError> {
        let all = 0..system.positions.len();
        self.compute_with(system, ws, out, all, &mut ())
    }

    /// [`Model::compute`] for the atoms in `atoms` only: their energies, and the forces and
    /// virial that derive from them (forces land on every atom they act on, so `out.forces`
    /// still holds one entry per atom of the system; it is zeroed first, as are per-atom
    /// energies outside `atoms`). Summing the results of disjoint ranges that cover the system
    /// gives [`Model::compute`]'s up to rounding (bit for bit with [`Model::compute_chunk`]).
    /// `probe` is told when each stage starts (see [`Probe`]).
    pub fn compute_with(
        &self,
        system: &System<'_, T>,
        ws: &mut Workspace<'_, T>,
        out: &mut Outputs<'_, T>,
        atoms: core::ops::Range<usize>,
        probe: &mut impl Probe,
    ) -> Result<Results, ComputeError> {
        let n = system.positions.len();
        self.check_system(system, ws)?;
        let check_len = |what, got: usize| {
            if got == n {
                Ok(())
            } else {
                Err(ComputeError::LengthMismatch {
                    what,
                    expected: n,
                    got,
                })
            }
        };
        if let Some(f) = out.forces.as_deref() {
            check_len("forces", f.len())?;
        }
        if let Some(e) = out.energies.as_deref() {
            check_len("energies", e.len())?;
        }
        if atoms.start > atoms.end || atoms.end > n {
            return Err(ComputeError::LengthMismatch {
                what: "atom range end",
                expected: n,
                got: atoms.end,
            });
        }
        probe.enter(Stage::Neighbors);
        let (list, neighbors, scratch, cand) = self.split_workspace(system, ws)?;
        if let Some(f) = out.forces.as_deref_mut() {
            for v in f.iter_mut() {
                *v = [T::ZERO; 3];
            }
        }
        if let Some(e) = out.energies.as_deref_mut() {
            e.iter_mut().for_each(|x| *x = 0.0);
        }
        let mut sink = out.forces.as_deref_mut().map(Direct);
        let mut res = Results::default();
        let mut energy = 0.0;
        // Chunk by chunk over the fixed partition of the visiting order, each chunk's atoms
        // that lie in `atoms` (all of them for `compute`).
        let only = (atoms.start > 0 || atoms.end < n).then_some(atoms);
        for chunk in 0..chunk_count(n) {
            let energies = out.energies.as_deref_mut();
            let virial = self.run_atoms(
                system,
                &list,
                (neighbors, scratch, cand),
                (chunk_range(chunk, n), only.clone()),
                &mut energy,
                energies.map(|e| (e, None)),
                sink.as_mut(),
                probe,
            )?;
            res.accumulate(&Results {
                energy: 0.0,
                virial,
            });
        }
        // In atom order when the per-atom energies are at hand (zero outside `atoms`, which
        // adds nothing), as a loop over atoms would sum them.
        res.energy = match out.energies.as_deref() {
            Some(e) => e.iter().fold(0.0, |acc, x| acc + x),
            None => energy,
        };
        probe.enter(Stage::Done);
        Ok(res)
    }

    /// Bins `system` into a cell list over caller storage (lengths from
    /// [`crate::CellListSize::new`] with this model's species count), to be shared read-only
    /// by the threads that call [`Model::compute_chunk`].
    pub fn cell_list<'w>(
        &self,
        system: &System<'_, T>,
        reals: &'w mut [T],
        indices: &'w mut [u32],
    ) -> Result<CellList<'w, T>, ComputeError> {
        CellList::build(
            system.positions,
            system.species,
            self.dims.n_species,
            system.cell.as_ref(),
            self.cutoff,
            reals,
            indices,
        )
    }

    /// One chunk of the fixed partition ([`crate::chunk`]): the energy and virial of the atoms
    /// at visiting positions `chunk_range(chunk, n)` ([`CellList::visit`]), their per-atom
    /// energies into `out.energies` (one per atom of the chunk, in visiting order)
    /// and their force contributions into `out.forces` (a record to add to the forces with
    /// [`ChunkForces::apply`]). `cells` must be [`Model::cell_list`] of this same `system`;
    /// `ws` only lends its neighbour set and scratch (a [`WorkspaceSize::per_thread`]
    /// workspace is enough). Threads may compute chunks in any order; combined as
    /// [`crate::chunk`] describes (forces and virial in chunk order, the energy as the sum of
    /// the per-atom energies in atom order) they reproduce [`Model::compute`] bit for bit.
    ///
    /// [`WorkspaceSize::per_thread`]: crate::WorkspaceSize::per_thread
    pub fn compute_chunk(
        &self,
        system: &System<'_, T>,
        cells: &CellList<'_, T>,
        ws: &mut Workspace<'_, T>,
        chunk: usize,
        out: &mut ChunkOutputs<'_, '_, T>,
        probe: &mut impl Probe,
    ) -> Result<Results, ComputeError> {
        let n = system.positions.len();
        let mismatch = |what, expected, got| ComputeError::LengthMismatch {
            what,
            expected,
            got,
        };
        if cells.atoms() != n {
            return Err(mismatch("cell list atoms", n, cells.atoms()));
        }
        if system.species.len() != n {
            return Err(mismatch("species", n, system.species.len()));
        }
        let atoms = chunk_range(chunk, n);
        if atoms.is_empty() {
            return Err(mismatch("chunk", chunk_count(n), chunk));
        }
        for at in cells.visit(atoms.clone()) {
            let s = system.species.get(at.atom).copied().unwrap_or(u8::MAX);
            if usize::from(s) >= self.dims.n_species {
                return Err(ComputeError::UnknownSpecies {
                    atom: at.atom,
                    species: s,
                });
            }
        }
        if let Some(e) = out.energies.as_deref() {
            if e.len() != atoms.len() {
                return Err(mismatch("chunk energies", atoms.len(), e.len()));
            }
        }
        if let Some(f) = out.forces.as_deref_mut() {
            let need = ws.neighbors.capacity();
            if f.neighbors() < need {
                return Err(ComputeError::BufferTooSmall {
                    what: "chunk force neighbour slots",
                    needed: need,
                    got: f.neighbors(),
                });
            }
            f.reset(atoms.start);
        }
        if let Some(e) = out.energies.as_deref_mut() {
            e.iter_mut().for_each(|x| *x = 0.0);
        }
        let first = atoms.start;
        let mut energy = 0.0;
        ws.candidates.forget();
        let virial = self.run_atoms(
            system,
            cells,
            (&mut ws.neighbors, &mut ws.scratch, &mut ws.candidates),
            (atoms, None),
            &mut energy,
            out.energies.as_deref_mut().map(|e| (e, Some(first))),
            out.forces.as_deref_mut(),
            probe,
        )?;
        probe.enter(Stage::Done);
        Ok(Results { energy, virial })
    }

    /// The per-atom loop: neighbours, energy, and (with a force sink) gradients and forces
    /// of the atoms at visiting positions `positions` ([`CellList::visit`]), in that order,
    /// skipping those whose index is outside `only` (when given). Atomic energies are added
    /// to `energy` and written to `energies`: by atom index, or with `Some(first)` by
    /// visiting position less `first`. Returns the virial of these atoms, summed from zero.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn run_atoms(
        &self,
        system: &System<'_, T>,
        list: &CellList<'_, T>,
        (neighbors, scratch, cand): (
            &mut NeighborSet<'_, T>,
            &mut AtomScratch<'_, T>,
            &mut Candidates<'_, T>,
        ),
        (positions, only): (core::ops::Range<usize>, Option<core::ops::Range<usize>>),
        energy: &mut f64,
        mut energies: Option<(&mut [f64], Option<usize>)>,
        mut forces: Option<&mut impl ForceSink<T>>,
        probe: &mut impl Probe,
    ) -> Result<[[f64; 3]; 3], ComputeError> {
        let want_grad = forces.is_some();
        let mut w = [[T::ZERO; 3]; 3];
        let mut memo = GroupMemo::new();
        for (p, at) in positions.clone().zip(list.visit(positions)) {
            let i = at.atom;
            if only.as_ref().is_some_and(|r| !r.contains(&i)) {
                continue;
            }
            let Some(&si) = system.species.get(i) else {
                continue;
            };
            probe.enter(Stage::Neighbors);
            list.neighbors_at(at, neighbors, cand)?;
            let e = self.evaluate(
                usize::from(si),
                neighbors,
                scratch,
                want_grad,
                probe,
                &mut memo,
            )?;
            *energy += e;
            if let Some((es, first)) = energies.as_mut() {
                let k = first.map_or(i, |f| p.wrapping_sub(f));
                if let Some(x) = es.get_mut(k) {
                    *x = e;
                }
            }
            if let Some(sink) = forces.as_deref_mut() {
                sink.atom(i, neighbors)?;
                virial(neighbors, &mut w);
            }
        }
        Ok(w.map(|row| row.map(T::to_f64)))
    }

    /// Bins the system into the workspace's cell list; hands back the per-atom parts.
    #[allow(clippy::type_complexity)]
    fn split_workspace<'x, 'w>(
        &self,
        system: &System<'_, T>,
        ws: &'x mut Workspace<'w, T>,
    ) -> Result<
        (
            CellList<'x, T>,
            &'x mut NeighborSet<'w, T>,
            &'x mut AtomScratch<'w, T>,
            &'x mut Candidates<'w, T>,
        ),
        ComputeError,
    > {
        let Workspace {
            cell_reals,
            cell_indices,
            neighbors,
            scratch,
            candidates,
            ..
        } = ws;
        let list = self.cell_list(system, cell_reals, cell_indices)?;
        candidates.forget();
        Ok((list, neighbors, scratch, candidates))
    }

    /// Checks lengths, species and capacity of a system against a workspace.
    fn check_system(
        &self,
        system: &System<'_, T>,
        ws: &Workspace<'_, T>,
    ) -> Result<(), ComputeError> {
        let n = system.positions.len();
        if system.species.len() != n {
            return Err(ComputeError::LengthMismatch {
                what: "species",
                expected: n,
                got: system.species.len(),
            });
        }
        if n > ws.atoms {
            return Err(ComputeError::TooManyAtoms {
                atoms: n,
                capacity: ws.atoms,
            });
        }
        for (atom, &s) in system.species.iter().enumerate() {
            if usize::from(s) >= self.dims.n_species {
                return Err(ComputeError::UnknownSpecies { atom, species: s });
            }
        }
        Ok(())
    }

    /// Visits every atom of `system` with its neighbours found, for per-atom work beyond
    /// energy and forces: descriptors, their Jacobian (training), per-atom gradients.
    pub fn for_each_atom<E: From<ComputeError>>(
        &self,
        system: &System<'_, T>,
        ws: &mut Workspace<'_, T>,
        mut visit: impl FnMut(&mut AtomView<'_, '_, 'a, T>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.check_system(system, ws)?;
        let (list, neighbors, scratch, _) = self.split_workspace(system, ws)?;
        for (i, &si) in system.species.iter().enumerate() {
            list.neighbors_of(i, neighbors)?;
            let mut view = AtomView {
                model: self,
                nb: neighbors,
                sc: scratch,
                index: i,
                species: si,
            };
            visit(&mut view)?;
        }
        Ok(())
    }

    /// A view of the atom whose neighbours the caller has put in `ws.neighbors_mut()` (for MD
    /// engines that bring their own neighbour list, ghost atoms included).
    pub fn atom<'x, 'w>(
        &'x self,
        species: u8,
        ws: &'x mut Workspace<'w, T>,
    ) -> Result<AtomView<'x, 'w, 'a, T>, ComputeError> {
        if usize::from(species) >= self.dims.n_species {
            return Err(ComputeError::UnknownSpecies { atom: 0, species });
        }
        Ok(AtomView {
            model: self,
            nb: &mut ws.neighbors,
            sc: &mut ws.scratch,
            index: 0,
            species,
        })
    }

    /// Full descriptor Jacobian of one atom (see [`AtomView::jacobian`]).
    fn jacobian(
        &self,
        species: u8,
        nb: &mut NeighborSet<'_, T>,
        sc: &mut AtomScratch<'_, T>,
        out: &mut [T],
    ) -> Result<(), ComputeError> {
        let rec = self.species(usize::from(species))?;
        let cap = nb.capacity();
        let needed = rec.n_features * cap * 3;
        if out.len() < needed {
            return Err(ComputeError::BufferTooSmall {
                what: "jacobian",
                needed,
                got: out.len(),
            });
        }
        for v in out.iter_mut() {
            *v = T::ZERO;
        }
        let (lanes, mut work) = nb.lanes();
        for gi in rec.group_start..rec.group_start + rec.group_count {
            let g = self.group(gi)?;
            let mult = sc.mult.get_mut(..g.n).ok_or(ComputeError::CorruptModel)?;
            descriptor::prefactors(&g, mult);
            let mut sink = JacobianSink {
                out: &mut *out,
                capacity: cap,
                group: &g,
                j: 0,
                unit: [T::ZERO; 3],
                tri: Default::default(),
            };
            descriptor::backprop(&g, &lanes, &mut work, self.zs(), mult, &mut sink);
        }
        Ok(())
    }

    /// Raw features of one atom into `scratch.g`.
    fn features(
        &self,
        rec: &SpeciesRec,
        nb: &mut NeighborSet<'_, T>,
        sc: &mut AtomScratch<'_, T>,
        memo: &mut GroupMemo<'a, T>,
    ) -> Result<(), ComputeError> {
        let g_out =
            sc.g.get_mut(..rec.n_features)
                .ok_or(ComputeError::CorruptModel)?;
        g_out.iter_mut().for_each(|x| *x = T::ZERO);
        let (lanes, mut work) = nb.lanes();
        descriptor::batched::fill_geometry(&lanes, sc.slots);
        let mut cache = PairCache::for_values(sc.pairs);
        for (i, gi) in (rec.group_start..rec.group_start + rec.group_count).enumerate() {
            let (g, plan) = memo.get(self, i, gi)?;
            let acc = sc.acc.get_mut(..g.n).ok_or(ComputeError::CorruptModel)?;
            acc.iter_mut().for_each(|x| *x = T::ZERO);
            let row = sc.row.get_mut(..g.n).ok_or(ComputeError::CorruptModel)?;
            descriptor::values(
                g,
                &lanes,
                &mut work,
                self.zs(),
                acc,
                row,
                sc.slots,
                &mut cache,
                plan,
            );
            for (s, &v) in acc.iter().enumerate() {
                if let Some(x) = g_out.get_mut(g.feature(s)) {
                    *x += v;
                }
            }
        }
        sc.pairs_filled = cache.filled();
        sc.channels = cache.memo();
        Ok(())
    }

    /// The per-atom pipeline: features → scaling → network (→ dE/dG → neighbour gradients).
    fn evaluate(
        &self,
        species: usize,
        nb: &mut NeighborSet<'_, T>,
        sc: &mut AtomScratch<'_, T>,
        want_grad: bool,
        probe: &mut impl Probe,
        memo: &mut GroupMemo<'a, T>,
    ) -> Result<f64, ComputeError> {
        let rec = self.species(species)?;
        let nf = rec.n_features;
        probe.enter(Stage::Descriptors);
        self.features(&rec, nb, sc, memo)?;
        probe.enter(Stage::Network);
        // Scaling: G_s = (G − sub)·mul + add, with [e_ref, sub[nf], mul[nf], add[nf]] in reals.
        let sr = self
            .reals
            .get(rec.reals..rec.reals + 1 + 3 * nf)
            .ok_or(ComputeError::CorruptModel)?;
        let (e_ref, rest) = sr.split_first().ok_or(ComputeError::CorruptModel)?;
        let (sub, rest) = rest
            .split_at_checked(nf)
            .ok_or(ComputeError::CorruptModel)?;
        let (mul, add) = rest
            .split_at_checked(nf)
            .ok_or(ComputeError::CorruptModel)?;
        for ((((gs, &g), &a), &m), &c) in
            sc.gs.iter_mut().zip(sc.g.iter()).zip(sub).zip(mul).zip(add)
        {
            *gs = (g - a) * m + c;
        }
        // Forward.
        let mut off = 0usize;
        let mut prev_off = 0usize;
        for (k, l) in (rec.layer_start..rec.layer_start + rec.layer_count).enumerate() {
            let layer = decode_layer(self.sections.layers, self.reals, l)
                .ok_or(ComputeError::CorruptModel)?;
            let (done, rest) =
                sc.y.split_at_mut_checked(off)
                    .ok_or(ComputeError::CorruptModel)?;
            let input: &[T] = if k == 0 {
                sc.gs.get(..nf).unwrap_or(&[])
            } else {
                done.get(prev_off..).unwrap_or(&[])
            };
            let outp = rest
                .get_mut(..layer.n_out)
                .ok_or(ComputeError::CorruptModel)?;
            let der = sc
                .deriv
                .get_mut(off..off + layer.n_out)
                .ok_or(ComputeError::CorruptModel)?;
            layer.forward(input, outp, der);
            prev_off = off;
            off += layer.n_out;
        }
        let nn =
            sc.y.get(prev_off)
                .copied()
                .ok_or(ComputeError::CorruptModel)?;
        let energy = self.energy_scale * nn.to_f64() + self.energy_shift + e_ref.to_f64();
        if !want_grad {
            return Ok(energy);
        }
        // Backward: seed dE/dy_out = energy scale, walk the layers in reverse.
        let (mut cur, mut next) = (&mut *sc.b1, &mut *sc.b2);
        if let Some(c) = cur.first_mut() {
            *c = T::from_f64(self.energy_scale);
        }
        let mut end = off;
        for l in (rec.layer_start..rec.layer_start + rec.layer_count).rev() {
            let layer = decode_layer(self.sections.layers, self.reals, l)
                .ok_or(ComputeError::CorruptModel)?;
            let start = end - layer.n_out;
            let der = sc.deriv.get(start..end).ok_or(ComputeError::CorruptModel)?;
            let dy = cur
                .get_mut(..layer.n_out)
                .ok_or(ComputeError::CorruptModel)?;
            let dx = next
                .get_mut(..layer.n_in)
                .ok_or(ComputeError::CorruptModel)?;
            layer.backward(dy, der, dx);
            core::mem::swap(&mut cur, &mut next);
            end = start;
        }
        // `cur` now holds dE/dG_s; chain through the scaling.
        for ((d, &g), &m) in sc.dedg.iter_mut().zip(cur.iter()).zip(mul) {
            *d = g * m;
        }
        probe.enter(Stage::Forces);
        let n_nb = nb.len();
        let (lanes, mut work) = nb.lanes();
        // Start from zero on every call, so repeated evaluations of one neighbour set agree.
        for g in [&mut *work.gx, &mut *work.gy, &mut *work.gz] {
            g.iter_mut().take(n_nb).for_each(|x| *x = T::ZERO);
        }
        let mut cache = PairCache::for_forces(sc.pairs, sc.pairs_filled, sc.channels);
        for (i, gi) in (rec.group_start..rec.group_start + rec.group_count).enumerate() {
            let (g, plan) = memo.get(self, i, gi)?;
            let mult = sc.mult.get_mut(..g.n).ok_or(ComputeError::CorruptModel)?;
            // dE/dG of each function; `forces` multiplies the prefactors in.
            for (s, m) in mult.iter_mut().enumerate() {
                *m = sc.dedg.get(g.feature(s)).copied().unwrap_or(T::ZERO);
            }
            descriptor::forces(
                g,
                &lanes,
                &mut work,
                self.zs(),
                mult,
                sc.slots,
                &mut cache,
                plan,
            );
        }
        Ok(energy)
    }
}

/// One atom with its neighbours found: per-atom descriptors, Jacobian and energy.
pub struct AtomView<'x, 'w, 'a, T> {
    model: &'x Model<'a, T>,
    nb: &'x mut NeighborSet<'w, T>,
    sc: &'x mut AtomScratch<'w, T>,
    /// Index of the atom in the system (0 for [`Model::atom`]).
    pub index: usize,
    /// Its species index.
    pub species: u8,
}

impl<'w, 'a, T: Real> AtomView<'_, 'w, 'a, T> {
    /// The neighbours (sorted by species; after [`AtomView::energy`] with gradients, their
    /// gradient lanes hold ∂E_i/∂d_j).
    pub fn neighbors(&self) -> &NeighborSet<'w, T> {
        self.nb
    }

    /// Raw descriptors G of this atom (its species' feature vector).
    pub fn descriptors(&mut self) -> Result<&[T], ComputeError> {
        let rec = self.model.species(usize::from(self.species))?;
        let memo = &mut GroupMemo::new();
        self.model.features(&rec, self.nb, self.sc, memo)?;
        Ok(self.sc.g.get(..rec.n_features).unwrap_or(&[]))
    }

    /// The atomic energy E_i (eV). With `gradient`, also dE_i/dG (see
    /// [`AtomView::energy_gradient`]) and ∂E_i/∂d_j in the neighbour gradient lanes: the force on
    /// neighbour atom j is −∂E_i/∂d_j and on the central atom +Σ_j ∂E_i/∂d_j.
    pub fn energy(&mut self, gradient: bool) -> Result<f64, ComputeError> {
        self.model.evaluate(
            usize::from(self.species),
            self.nb,
            self.sc,
            gradient,
            &mut (),
            &mut GroupMemo::new(),
        )
    }

    /// dE_i/dG (raw features) from the last [`AtomView::energy`] with gradients.
    pub fn energy_gradient(&self) -> &[T] {
        let nf = self
            .model
            .n_features(usize::from(self.species))
            .unwrap_or(0);
        self.sc.dedg.get(..nf).unwrap_or(&[])
    }

    /// The descriptor Jacobian ∂G_f/∂d_k: `out[(f·capacity + k)·3 + c]` with `capacity` the
    /// neighbour slots of the workspace, k the neighbour slot and c the Cartesian component.
    /// `out` must hold `n_features × capacity × 3` reals; it is overwritten.
    pub fn jacobian(&mut self, out: &mut [T]) -> Result<(), ComputeError> {
        self.model.jacobian(self.species, self.nb, self.sc, out)
    }
}

/// Groups of a species kept decoded and planned (later ones are decoded per pass). About 220
/// bytes each on a 32-bit target: the firmware's stack high-water mark grows by ~4.4 KB.
const GROUP_MEMO: usize = 10;

/// Decoded groups and their batched-kernel plans, reused by both passes of an atom and by
/// consecutive atoms of one species (on a microcontroller, decoding and planning every group
/// twice per atom cost ~7 % of an evaluation). Slot i holds group `group_start + i` of the
/// species last evaluated; a slot is rebuilt when it holds another group.
pub(crate) struct GroupMemo<'a, T> {
    slots: [MemoSlot<'a, T>; GROUP_MEMO],
    /// For the groups beyond the slots.
    spare: MemoSlot<'a, T>,
}

/// A group index, the group, its plan and whether the batched kernels take it with that plan
/// (false for the radial kinds, which need none). Rebuilt field by field in place: moving a
/// whole slot (~250 bytes) through an `Option` cost more than decoding the group.
#[derive(Clone, Copy)]
struct MemoSlot<'a, T> {
    index: usize,
    group: Option<Group<'a, T>>,
    plan: descriptor::batched::Plan<T>,
    planned: bool,
}

impl<T: Real> MemoSlot<'_, T> {
    #[inline(always)]
    fn empty() -> Self {
        MemoSlot {
            index: usize::MAX,
            group: None,
            plan: descriptor::batched::Plan::empty(),
            planned: false,
        }
    }
}

impl<'a, T: Real> GroupMemo<'a, T> {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        GroupMemo {
            slots: [MemoSlot::empty(); GROUP_MEMO],
            spare: MemoSlot::empty(),
        }
    }

    /// Group `gi` (the species' `i`-th) and its plan (see [`descriptor::values`]), decoded and
    /// planned unless slot `i` already holds them.
    #[allow(clippy::type_complexity)]
    fn get(
        &mut self,
        model: &Model<'a, T>,
        i: usize,
        gi: usize,
    ) -> Result<(&Group<'a, T>, Option<&descriptor::batched::Plan<T>>), ComputeError> {
        let slot = match self.slots.get_mut(i) {
            Some(s) => s,
            None => &mut self.spare,
        };
        if slot.index != gi || slot.group.is_none() {
            slot.index = usize::MAX;
            let g = slot.group.insert(model.group(gi)?);
            slot.planned = g.kind.is_angular() && !g.kind.is_polynomial() && slot.plan.build(g);
            slot.index = gi;
        }
        match &slot.group {
            Some(g) => Ok((g, slot.planned.then_some(&slot.plan))),
            None => Err(ComputeError::CorruptModel),
        }
    }
}

/// Layer `l` viewed in place.
fn decode_layer<'a, T: Real>(layers: &[u8], reals: &'a [T], l: usize) -> Option<Layer<'a, T>> {
    let b = l.checked_mul(LAYER_RECORD)?;
    let n_in = u32_at(layers, b)? as usize;
    let n_out = u32_at(layers, b + 4)? as usize;
    let activation = Activation::from_code(u8_at(layers, b + 8)?)?;
    let flags = u8_at(layers, b + 9)?;
    let off = u32_at(layers, b + 12)? as usize;
    let nw = n_in.checked_mul(n_out)?;
    let weights = reals.get(off..off.checked_add(nw)?)?;
    let biases = reals.get(off + nw..(off + nw).checked_add(n_out)?)?;
    let scale = if flags & LAYER_NORMALIZE != 0 {
        T::ONE / T::from_usize(n_in)
    } else {
        T::ONE
    };
    Some(Layer {
        n_in,
        n_out,
        activation,
        scale,
        weights,
        biases,
    })
}

/// One atom's share of the virial: W −= d_j ⊗ g_j over its neighbours, summed in `T` (the
/// callers' atom ranges are chunks of at most [`crate::chunk::CHUNK_ATOMS`] atoms or, on a
/// microcontroller, one small molecule; on an f32-only FPU f64 arithmetic is software double
/// precision, ~100 instructions an addition).
fn virial<T: Real>(nb: &NeighborSet<'_, T>, w: &mut [[T; 3]; 3]) {
    // Lanes cut to the neighbour count once (so that the optimiser drops the checks below),
    // the sums in locals: per-slot accessors cost ~17 instructions a product on a
    // microcontroller.
    let n = nb.len();
    let (Some(dx), Some(dy), Some(dz)) = (nb.dx.get(..n), nb.dy.get(..n), nb.dz.get(..n)) else {
        return;
    };
    let (Some(gx), Some(gy), Some(gz)) = (nb.gx.get(..n), nb.gy.get(..n), nb.gz.get(..n)) else {
        return;
    };
    let [[mut xx, mut xy, mut xz], [mut yx, mut yy, mut yz], [mut zx, mut zy, mut zz]] = *w;
    // Written out: loops over three do not unroll at opt-level "s".
    for k in 0..n {
        let (Some(&x), Some(&y), Some(&z)) = (dx.get(k), dy.get(k), dz.get(k)) else {
            break;
        };
        let (Some(&a), Some(&b), Some(&c)) = (gx.get(k), gy.get(k), gz.get(k)) else {
            break;
        };
        (xx, xy, xz) = (xx - x * a, xy - x * b, xz - x * c);
        (yx, yy, yz) = (yx - y * a, yy - y * b, yz - y * c);
        (zx, zy, zz) = (zx - z * a, zy - z * b, zz - z * c);
    }
    *w = [[xx, xy, xz], [yx, yy, yz], [zx, zy, zz]];
}
