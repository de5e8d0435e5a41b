//! A model in host memory: everything a blob holds, in plain serde-able form. The trainer and
//! the importers build a [`ModelSpec`]; [`crate::writer::write_blob`] turns it into a blob.

use anyhow::{bail, Result};
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

/// One symmetry function. Lengths in Å, η in Å⁻².
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DescriptorSpec {
    /// `g2`, `g4` (narrow, n2p2 type 3) or `g5` (wide, n2p2 type 9).
    pub kind: KindSpec,
    /// Neighbour species index (radial) or first of the pair (angular).
    pub e1: usize,
    /// Second neighbour species (angular; ignored for radial).
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
    /// Cutoff radius (Å).
    pub rc: f64,
    /// Cutoff function.
    pub cutoff: CutoffSpec,
    /// Inner cutoff fraction alpha ∈ [0, 1).
    #[serde(default)]
    pub alpha: f64,
}

/// Descriptor kinds by name.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KindSpec {
    /// Radial G2.
    G2,
    /// Narrow angular G4.
    G4,
    /// Wide angular G5.
    G5,
}

impl KindSpec {
    /// The core's kind.
    pub fn core(self) -> DescriptorKind {
        match self {
            KindSpec::G2 => DescriptorKind::Radial,
            KindSpec::G4 => DescriptorKind::AngularNarrow,
            KindSpec::G5 => DescriptorKind::AngularWide,
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
                let angular = d.kind != KindSpec::G2;
                if d.e1 >= n || (angular && d.e2 >= n) {
                    bail!(
                        "species {} descriptor {f}: neighbour species out of range",
                        s.symbol
                    );
                }
                if !(d.rc.is_finite() && d.rc > 0.0 && (0.0..1.0).contains(&d.alpha)) {
                    bail!(
                        "species {} descriptor {f}: bad cutoff rc={} alpha={}",
                        s.symbol,
                        d.rc,
                        d.alpha
                    );
                }
                if !(d.eta.is_finite() && d.eta >= 0.0 && d.rs.is_finite()) {
                    bail!("species {} descriptor {f}: bad eta/rs", s.symbol);
                }
                if angular && !(d.zeta >= 1.0 && (d.lambda == 1.0 || d.lambda == -1.0)) {
                    bail!(
                        "species {} descriptor {f}: need zeta >= 1 and lambda = ±1",
                        s.symbol
                    );
                }
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
