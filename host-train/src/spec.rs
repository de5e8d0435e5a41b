//! A model in host memory: everything a blob holds, in plain serde-able form. The trainer and
//! the importers build a [`ModelSpec`]; [`crate::writer::write_blob`] turns it into a blob.

use anyhow::{bail, Result};
use mlff_core::descriptor::compact::{CompactCore, CompactKind};
use mlff_core::{Activation, CutoffKind, DescriptorKind};
use serde::{Deserialize, Serialize};

/// A whole potential.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Species in index order.
    pub species: Vec<SpeciesSpec>,
    /// E_i = energy_scale · NN_i + energy_shift + reference energy (eV).
    #[serde(default = "one")]
    pub energy_scale: f64,
    /// See `energy_scale` (eV).
    #[serde(default)]
    pub energy_shift: f64,
    /// How features were scaled (informational).
    #[serde(default)]
    pub scaling_mode: ScalingSpec,
    /// The source model's length unit in Å (1 for Å, 0.529… for Bohr).
    #[serde(default = "one")]
    pub source_length_unit: f64,
    /// The source model's energy unit in eV.
    #[serde(default = "one")]
    pub source_energy_unit: f64,
    /// Free provenance text stored in the blob.
    #[serde(default)]
    pub text: String,
}

fn one() -> f64 {
    1.0
}

/// Feature scaling mode names (see `mlff_core::blob::ScalingMode`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScalingSpec {
    /// No scaling.
    #[default]
    None,
    /// Min–max to [Smin, Smax].
    MinMax,
    /// Subtract the mean.
    Center,
    /// Subtract the mean, divide by the range.
    CenterRange,
    /// Subtract the mean, divide by the standard deviation.
    Sigma,
}

impl ScalingSpec {
    /// The blob code.
    pub fn code(self) -> u32 {
        match self {
            ScalingSpec::None => 0,
            ScalingSpec::MinMax => 1,
            ScalingSpec::Center => 2,
            ScalingSpec::CenterRange => 3,
            ScalingSpec::Sigma => 4,
        }
    }
}

/// One element: descriptors (in feature order), their scaling, its network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpeciesSpec {
    /// Element symbol.
    pub symbol: String,
    /// Atomic number.
    pub z: u8,
    /// Energy added per atom of this species (eV).
    #[serde(default)]
    pub reference_energy: f64,
    /// Symmetry functions in feature order.
    pub descriptors: Vec<DescriptorSpec>,
    /// Per-feature affine scaling (empty: identity).
    #[serde(default)]
    pub scaling: Vec<Affine>,
    /// Layers, input to output.
    pub layers: Vec<LayerSpec>,
}

/// One symmetry function. Lengths in Å, η in Å⁻², angles in degrees (as n2p2 writes them).
///
/// Which fields a kind reads (the others are ignored, and the writer does not store them):
///
/// | kinds (n2p2 type) | fields |
/// |---|---|
/// | `g2` (2) | e1, eta, rs, rc, cutoff, alpha |
/// | `g4`, `g5` (3, 9) | e1, e2, eta, rs, zeta, lambda, rc, cutoff, alpha |
/// | `weighted_radial` (12) | eta, rs, rc, cutoff, alpha |
/// | `weighted_narrow` (13) | eta, rs, zeta, lambda, rc, cutoff, alpha |
/// | `poly_radial` (20) | e1, rl, rc, subtype, asymmetric |
/// | `poly_narrow`, `poly_wide` (21, 22) | e1, e2, rl, rc, angle_left, angle_right, subtype, asymmetric |
/// | `weighted_poly_radial` (23) | rl, rc, subtype, asymmetric |
/// | `weighted_poly_narrow`, `weighted_poly_wide` (24, 25) | rl, rc, angle_left, angle_right, subtype, asymmetric |
///
/// `cutoff` and `eta` are required by the file format for every kind (use any valid value for
/// the polynomial kinds, e.g. [`DescriptorSpec::default`]'s). An importer fills a polynomial
/// function as `DescriptorSpec { kind, e1, e2, rl, rc, angle_left, angle_right, subtype,
/// asymmetric, ..Default::default() }`, with [`KindSpec::from_n2p2_type`] and
/// [`CompactSpec::from_n2p2`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DescriptorSpec {
    /// The kind.
    pub kind: KindSpec,
    /// Neighbour species index (radial) or first of the pair (angular); unused by the
    /// element-weighted kinds.
    pub e1: usize,
    /// Second neighbour species (angular; ignored for radial and element-weighted kinds).
    #[serde(default)]
    pub e2: usize,
    /// Gaussian width η (Å⁻²).
    pub eta: f64,
    /// Shift r_s (Å).
    #[serde(default)]
    pub rs: f64,
    /// Angular exponent ζ ≥ 1.
    #[serde(default = "one")]
    pub zeta: f64,
    /// λ = ±1.
    #[serde(default = "one")]
    pub lambda: f64,
    /// Cutoff radius (Å); for the polynomial kinds the right end of the radial window.
    pub rc: f64,
    /// Cutoff function (ignored by the polynomial kinds, whose compact functions are their own
    /// cutoff; n2p2's `cutoff_type` does not apply to them either).
    pub cutoff: CutoffSpec,
    /// Inner cutoff fraction alpha ∈ [0, 1) (ignored by the polynomial kinds).
    #[serde(default)]
    pub alpha: f64,
    /// Polynomial kinds: left end r_l of the radial window (r_l, r_c), Å; may be negative.
    #[serde(default)]
    pub rl: f64,
    /// Polynomial angular kinds: left end of the angular window, degrees.
    #[serde(default)]
    pub angle_left: f64,
    /// Polynomial angular kinds: right end of the angular window, degrees.
    #[serde(default = "one_eighty")]
    pub angle_right: f64,
    /// Polynomial kinds: the core of the compact function.
    #[serde(default)]
    pub subtype: CompactSpec,
    /// Polynomial kinds: the asymmetric radial variant (n2p2's trailing `a`, e.g. `p2a`).
    #[serde(default)]
    pub asymmetric: bool,
}

fn one_eighty() -> f64 {
    180.0
}

impl Default for DescriptorSpec {
    /// A G2 on species 0 with every optional field at its serde default; `rc` is 0 and must be
    /// set.
    fn default() -> Self {
        DescriptorSpec {
            kind: KindSpec::G2,
            e1: 0,
            e2: 0,
            eta: 0.0,
            rs: 0.0,
            zeta: 1.0,
            lambda: 1.0,
            rc: 0.0,
            cutoff: CutoffSpec::Cos,
            alpha: 0.0,
            rl: 0.0,
            angle_left: 0.0,
            angle_right: 180.0,
            subtype: CompactSpec::default(),
            asymmetric: false,
        }
    }
}

impl DescriptorSpec {
    /// The compact-function subtype of a polynomial kind.
    pub fn compact(&self) -> CompactKind {
        CompactKind {
            core: self.subtype.core(),
            asymmetric: self.asymmetric,
        }
    }
}

/// Descriptor kinds by name (n2p2 type numbers in the docs and in [`KindSpec::n2p2_type`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KindSpec {
    /// Radial G2 (n2p2 type 2).
    G2,
    /// Narrow angular G4 (n2p2 type 3).
    G4,
    /// Wide angular G5 (n2p2 type 9).
    G5,
    /// Element-weighted radial, Σ_j Z_j exp(−η(r−r_s)²) f_c (n2p2 type 12).
    WeightedRadial,
    /// Element-weighted narrow angular, G4 over all pairs × Z_j Z_k (n2p2 type 13).
    WeightedNarrow,
    /// Polynomial radial, Σ_j C(r_ij) (n2p2 type 20).
    PolyRadial,
    /// Polynomial narrow angular, Σ C(r_ij) C(r_ik) C(r_jk) A(θ) (n2p2 type 21).
    PolyNarrow,
    /// Polynomial wide angular, Σ C(r_ij) C(r_ik) A(θ) (n2p2 type 22).
    PolyWide,
    /// Element-weighted polynomial radial (n2p2 type 23).
    WeightedPolyRadial,
    /// Element-weighted polynomial narrow angular (n2p2 type 24).
    WeightedPolyNarrow,
    /// Element-weighted polynomial wide angular (n2p2 type 25).
    WeightedPolyWide,
}

impl KindSpec {
    /// All kinds, in n2p2 type order.
    pub const ALL: [KindSpec; 11] = [
        KindSpec::G2,
        KindSpec::G4,
        KindSpec::G5,
        KindSpec::WeightedRadial,
        KindSpec::WeightedNarrow,
        KindSpec::PolyRadial,
        KindSpec::PolyNarrow,
        KindSpec::PolyWide,
        KindSpec::WeightedPolyRadial,
        KindSpec::WeightedPolyNarrow,
        KindSpec::WeightedPolyWide,
    ];

    /// The core's kind.
    pub fn core(self) -> DescriptorKind {
        match self {
            KindSpec::G2 => DescriptorKind::Radial,
            KindSpec::G4 => DescriptorKind::AngularNarrow,
            KindSpec::G5 => DescriptorKind::AngularWide,
            KindSpec::WeightedRadial => DescriptorKind::RadialWeighted,
            KindSpec::WeightedNarrow => DescriptorKind::AngularNarrowWeighted,
            KindSpec::PolyRadial => DescriptorKind::PolyRadial,
            KindSpec::PolyNarrow => DescriptorKind::PolyAngularNarrow,
            KindSpec::PolyWide => DescriptorKind::PolyAngularWide,
            KindSpec::WeightedPolyRadial => DescriptorKind::PolyRadialWeighted,
            KindSpec::WeightedPolyNarrow => DescriptorKind::PolyAngularNarrowWeighted,
            KindSpec::WeightedPolyWide => DescriptorKind::PolyAngularWideWeighted,
        }
    }

    /// n2p2's symmetry-function type number (the blob's kind code).
    pub fn n2p2_type(self) -> u8 {
        self.core().code()
    }

    /// The kind of n2p2 type `t` (2, 3, 9, 12, 13, 20–25).
    pub fn from_n2p2_type(t: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| u32::from(k.n2p2_type()) == t)
    }

    /// Three-body kind.
    pub fn is_angular(self) -> bool {
        self.core().is_angular()
    }

    /// Element-weighted kind (no neighbour species).
    pub fn is_weighted(self) -> bool {
        self.core().is_weighted()
    }

    /// Polynomial (compact-function) kind.
    pub fn is_polynomial(self) -> bool {
        self.core().is_polynomial()
    }
}

/// Core functions of the polynomial kinds' compact functions (n2p2's subtype letters).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CompactSpec {
    /// `p1`: (2x − 3)x² + 1.
    P1,
    /// `p2`: ((15 − 6x)x − 10)x³ + 1 (n2p2's default core).
    #[default]
    P2,
    /// `p3`: (x(x(20x − 70) + 84) − 35)x⁴ + 1.
    P3,
    /// `p4`: (x(x((315 − 70x)x − 540) + 420) − 126)x⁵ + 1.
    P4,
    /// `e`: exp(1 − 1/(1 − x²)).
    E,
}

impl CompactSpec {
    /// All subtypes.
    pub const ALL: [CompactSpec; 5] = [
        CompactSpec::P1,
        CompactSpec::P2,
        CompactSpec::P3,
        CompactSpec::P4,
        CompactSpec::E,
    ];

    /// The core's compact core.
    pub fn core(self) -> CompactCore {
        match self {
            CompactSpec::P1 => CompactCore::Poly1,
            CompactSpec::P2 => CompactCore::Poly2,
            CompactSpec::P3 => CompactCore::Poly3,
            CompactSpec::P4 => CompactCore::Poly4,
            CompactSpec::E => CompactCore::Exp,
        }
    }

    /// Parses an n2p2 subtype token into (core, asymmetric): `p1`…`p4`, `p1a`…`p4a`, `e`.
    ///
    /// n2p2 (v2.x, `SymFncBaseComp::setCompactFunction`) honours the trailing `a` only after
    /// `p1`…`p4`; any token starting with `e` selects the symmetric exponential, so `ea` gives
    /// `(E, false)` here too, to reproduce what n2p2 computes for such a model.
    pub fn from_n2p2(token: &str) -> Option<(CompactSpec, bool)> {
        Some(match token {
            "p1" => (CompactSpec::P1, false),
            "p2" => (CompactSpec::P2, false),
            "p3" => (CompactSpec::P3, false),
            "p4" => (CompactSpec::P4, false),
            "p1a" => (CompactSpec::P1, true),
            "p2a" => (CompactSpec::P2, true),
            "p3a" => (CompactSpec::P3, true),
            "p4a" => (CompactSpec::P4, true),
            "e" | "ea" => (CompactSpec::E, false),
            _ => return None,
        })
    }

    /// n2p2's token for this core, with the asymmetric suffix.
    pub fn n2p2_name(self, asymmetric: bool) -> String {
        let base = match self {
            CompactSpec::P1 => "p1",
            CompactSpec::P2 => "p2",
            CompactSpec::P3 => "p3",
            CompactSpec::P4 => "p4",
            CompactSpec::E => "e",
        };
        if asymmetric {
            format!("{base}a")
        } else {
            base.to_string()
        }
    }
}

/// Cutoff functions by name (n2p2 codes in the core's [`CutoffKind`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum CutoffSpec {
    /// f = 1.
    Hard,
    /// Cosine.
    Cos,
    /// tanh³, unnormalised.
    TanhU,
    /// tanh³, normalised.
    Tanh,
    /// Exponential.
    Exp,
    /// Polynomials 1–4.
    Poly1,
    /// See `Poly1`.
    Poly2,
    /// See `Poly1`.
    Poly3,
    /// See `Poly1`.
    Poly4,
}

impl CutoffSpec {
    /// All names, in n2p2 code order.
    pub const ALL: [CutoffSpec; 9] = [
        CutoffSpec::Hard,
        CutoffSpec::Cos,
        CutoffSpec::TanhU,
        CutoffSpec::Tanh,
        CutoffSpec::Exp,
        CutoffSpec::Poly1,
        CutoffSpec::Poly2,
        CutoffSpec::Poly3,
        CutoffSpec::Poly4,
    ];

    /// The core's kind.
    pub fn core(self) -> CutoffKind {
        let i = Self::ALL.iter().position(|&c| c == self).unwrap_or(0);
        CutoffKind::ALL[i]
    }
}

/// Per-feature scaling G_s = (G − sub)·mul + add.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Affine {
    /// Subtracted.
    pub sub: f64,
    /// Multiplier.
    pub mul: f64,
    /// Added.
    pub add: f64,
}

impl Affine {
    /// G_s = G.
    pub const IDENTITY: Affine = Affine {
        sub: 0.0,
        mul: 1.0,
        add: 0.0,
    };
}

/// Activation names.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ActivationSpec {
    /// x.
    Linear,
    /// tanh.
    Tanh,
    /// 1/(1+e^−x).
    Logistic,
    /// ln(1+e^x).
    Softplus,
    /// ln(1+e^x) − ln 2.
    ShiftedSoftplus,
    /// x·logistic(x).
    Silu,
    /// max(x, 0).
    Relu,
    /// exp(−x²/2).
    Gaussian,
    /// cos x.
    Cos,
    /// 1 − logistic.
    RevLogistic,
    /// exp(−x).
    ExpNeg,
    /// x².
    Square,
}

impl ActivationSpec {
    /// All names, in core code order.
    pub const ALL: [ActivationSpec; 12] = [
        ActivationSpec::Linear,
        ActivationSpec::Tanh,
        ActivationSpec::Logistic,
        ActivationSpec::Softplus,
        ActivationSpec::ShiftedSoftplus,
        ActivationSpec::Silu,
        ActivationSpec::Relu,
        ActivationSpec::Gaussian,
        ActivationSpec::Cos,
        ActivationSpec::RevLogistic,
        ActivationSpec::ExpNeg,
        ActivationSpec::Square,
    ];

    /// The core's activation.
    pub fn core(self) -> Activation {
        let i = Self::ALL.iter().position(|&c| c == self).unwrap_or(0);
        Activation::ALL[i]
    }
}

/// One dense layer: y = f(s(W x + b)), W row-major `n_out × n_in`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Input width.
    pub n_in: usize,
    /// Output width.
    pub n_out: usize,
    /// Activation.
    pub activation: ActivationSpec,
    /// Divide the pre-activation by `n_in` (n2p2 `normalize_nodes`).
    #[serde(default)]
    pub normalize: bool,
    /// Row-major weights.
    pub weights: Vec<f64>,
    /// Biases.
    pub biases: Vec<f64>,
}

impl DescriptorSpec {
    /// Checks the fields this kind reads against what the blob validation accepts, for a model
    /// of `n_species` species.
    pub fn check(&self, n_species: usize) -> Result<()> {
        let kind = self.kind;
        if !kind.is_weighted()
            && (self.e1 >= n_species || (kind.is_angular() && self.e2 >= n_species))
        {
            bail!("neighbour species out of range");
        }
        if !(self.rc.is_finite() && self.rc > 0.0) {
            bail!("bad cutoff rc={}", self.rc);
        }
        if kind.is_polynomial() {
            if !(self.rl.is_finite() && self.rl < self.rc) {
                bail!("need rl < rc, have rl={} rc={}", self.rl, self.rc);
            }
            if kind.is_angular() {
                let (l, r) = (self.angle_left, self.angle_right);
                if !(l.is_finite() && r.is_finite() && l < r && r - l <= 360.0) {
                    bail!("bad angle window [{l}, {r}] (need left < right, width <= 360 degrees)");
                }
                // n2p2's rule: outside [0, 180] only when centred at 0 (or 180), so that the
                // angular function is even, hence smooth, at θ = 0 (or 180 degrees).
                let centre = 0.5 * (l + r);
                if (l < 0.0 && centre != 0.0) || (r > 180.0 && centre != 180.0) {
                    bail!(
                        "angle window [{l}, {r}] leaves [0, 180] degrees but is not centred at 0 or 180"
                    );
                }
            }
            return Ok(());
        }
        if !(0.0..1.0).contains(&self.alpha) {
            bail!("bad cutoff rc={} alpha={}", self.rc, self.alpha);
        }
        if !(self.eta.is_finite() && self.eta >= 0.0 && self.rs.is_finite()) {
            bail!("bad eta/rs");
        }
        let lambda_ok = self.lambda == 1.0 || self.lambda == -1.0;
        if kind.is_angular() && !(self.zeta.is_finite() && self.zeta >= 1.0 && lambda_ok) {
            bail!("need zeta >= 1 and lambda = ±1");
        }
        Ok(())
    }
}

impl ModelSpec {
    /// The largest descriptor cutoff (Å).
    pub fn cutoff(&self) -> f64 {
        self.species
            .iter()
            .flat_map(|s| s.descriptors.iter().map(|d| d.rc))
            .fold(0.0, f64::max)
    }

    /// Index of the species with atomic number `z`.
    pub fn species_index(&self, z: u8) -> Option<usize> {
        self.species.iter().position(|s| s.z == z)
    }

    /// Index of the species with symbol `symbol`.
    pub fn species_by_symbol(&self, symbol: &str) -> Option<usize> {
        self.species.iter().position(|s| s.symbol == symbol)
    }

    /// Checks everything the blob validation would, with messages naming species, feature and
    /// layer.
    pub fn check(&self) -> Result<()> {
        let n = self.species.len();
        if n == 0 || n > mlff_core::neighbors::MAX_SPECIES {
            bail!(
                "model must have 1 to {} species, has {n}",
                mlff_core::neighbors::MAX_SPECIES
            );
        }
        for (what, x) in [
            ("energy_scale", self.energy_scale),
            ("energy_shift", self.energy_shift),
            ("source_length_unit", self.source_length_unit),
            ("source_energy_unit", self.source_energy_unit),
        ] {
            if !x.is_finite() {
                bail!("{what} is not finite");
            }
        }
        if self.source_length_unit <= 0.0 || self.source_energy_unit <= 0.0 {
            bail!("source units must be positive");
        }
        for (i, s) in self.species.iter().enumerate() {
            if self.species[..i].iter().any(|o| o.z == s.z) {
                bail!("species {} (Z={}) appears twice", s.symbol, s.z);
            }
            if s.z == 0 || s.z > 118 {
                bail!("species {}: atomic number {} is not 1..=118", s.symbol, s.z);
            }
            if !s.reference_energy.is_finite() {
                bail!("species {}: reference energy is not finite", s.symbol);
            }
            let bad_scaling = s
                .scaling
                .iter()
                .position(|a| !(a.sub.is_finite() && a.mul.is_finite() && a.add.is_finite()));
            if let Some(f) = bad_scaling {
                bail!("species {} feature {f}: scaling is not finite", s.symbol);
            }
            if s.layers.len() > mlff_core::blob::MAX_LAYERS {
                bail!(
                    "species {}: {} layers (at most {})",
                    s.symbol,
                    s.layers.len(),
                    mlff_core::blob::MAX_LAYERS
                );
            }
            if s.descriptors.is_empty() {
                bail!("species {} has no descriptors", s.symbol);
            }
            if !s.scaling.is_empty() && s.scaling.len() != s.descriptors.len() {
                bail!(
                    "species {}: {} scaling rows for {} descriptors",
                    s.symbol,
                    s.scaling.len(),
                    s.descriptors.len()
                );
            }
            for (f, d) in s.descriptors.iter().enumerate() {
                d.check(n)
                    .map_err(|e| anyhow::anyhow!("species {} descriptor {f}: {e}", s.symbol))?;
            }
            let mut width = s.descriptors.len();
            for (l, layer) in s.layers.iter().enumerate() {
                if layer.n_in != width || layer.n_out == 0 {
                    bail!(
                        "species {} layer {l}: input width {} != {width}",
                        s.symbol,
                        layer.n_in
                    );
                }
                if layer.weights.len() != layer.n_in * layer.n_out
                    || layer.biases.len() != layer.n_out
                {
                    bail!("species {} layer {l}: weight or bias count wrong", s.symbol);
                }
                if !layer
                    .weights
                    .iter()
                    .chain(&layer.biases)
                    .all(|x| x.is_finite())
                {
                    bail!("species {} layer {l}: weights are not all finite", s.symbol);
                }
                width = layer.n_out;
            }
            if s.layers.is_empty() || width != 1 {
                bail!("species {}: network must end in one output", s.symbol);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_specs_parse_and_new_kinds_round_trip() {
        let old = r#"{"kind":"g2","e1":0,"eta":0.5,"rc":4.0,"cutoff":"cos"}"#;
        let d: DescriptorSpec = serde_json::from_str(old).unwrap();
        assert_eq!((d.rl, d.angle_left, d.angle_right), (0.0, 0.0, 180.0));
        assert_eq!((d.subtype, d.asymmetric), (CompactSpec::P2, false));
        let poly = DescriptorSpec {
            kind: KindSpec::WeightedPolyNarrow,
            rl: -1.0,
            rc: 5.0,
            angle_left: -45.0,
            angle_right: 45.0,
            subtype: CompactSpec::E,
            asymmetric: true,
            ..Default::default()
        };
        let json = serde_json::to_string(&poly).unwrap();
        assert!(json.contains(r#""kind":"weighted_poly_narrow""#), "{json}");
        assert!(json.contains(r#""subtype":"e""#), "{json}");
        assert_eq!(serde_json::from_str::<DescriptorSpec>(&json).unwrap(), poly);
        assert!(poly.check(1).is_ok());
    }
}
