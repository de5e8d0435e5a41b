//! The training configuration: one TOML file, read with `toml` + serde, documented field by
//! field in `docs/config.md`.
//!
//! Every table denies unknown fields, so a typo is an error that names the field, the file and
//! the line and column. [`TrainConfig::load`] parses, resolves relative paths against the
//! directory of the file, and checks the values ([`TrainConfig::validate`]); a value that parses
//! but makes no sense (fractions that do not sum to 1, a zero batch size, an unknown element) is
//! reported with the file and, when the key can be found in the text, its line and column.
//!
//! Species are always ordered by atomic number (as n2p2 orders them), whatever the order of
//! `model.elements`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::n2p2::{DescriptorSet, BOHR, HARTREE};
use crate::spec::{ActivationSpec, CompactSpec, CutoffSpec, DescriptorSpec, KindSpec};
use crate::writer::Precision;

use super::grad::LossWeights;
use super::optim::{Adam, Kalman, KalmanSettings, Lbfgs, LbfgsSettings, Schedule};

/// A whole training run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// What to train on and how to split it.
    pub data: DataConfig,
    /// Elements, descriptors and networks.
    pub model: ModelConfig,
    /// Loss weights.
    #[serde(default)]
    pub loss: LossConfig,
    /// Optimiser and learning-rate schedule.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Epochs, batches, early stopping, threads, seed.
    #[serde(default)]
    pub training: TrainingConfig,
    /// Where results go.
    #[serde(default)]
    pub output: OutputConfig,
    /// The file this configuration was read from (set by [`TrainConfig::load`]).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[data]`: the structures.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Structure files (`.extxyz`/`.xyz`: extended XYZ in Å and eV; `.data`: n2p2
    /// `input.data` in `length_unit`/`energy_unit`). Split into train/validation/test by
    /// structure according to `split`.
    pub files: Vec<PathBuf>,
    /// Explicit validation files (instead of a validation fraction of `files`).
    #[serde(default)]
    pub validation_files: Vec<PathBuf>,
    /// Explicit test files (instead of a test fraction of `files`).
    #[serde(default)]
    pub test_files: Vec<PathBuf>,
    /// Length unit of `.data` files.
    #[serde(default)]
    pub length_unit: LengthUnit,
    /// Energy unit of `.data` files.
    #[serde(default)]
    pub energy_unit: EnergyUnit,
    /// Fractions of `files` per set.
    #[serde(default)]
    pub split: SplitConfig,
    /// Seed of the split (default: `training.seed`).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// `[data.split]`: fractions of `data.files` (by structure). Defaults: validation 0.1 and
/// test 0.1 unless given as files (then 0), train the rest.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Training fraction (default: 1 − validation − test).
    #[serde(default)]
    pub train: Option<f64>,
    /// Validation fraction.
    #[serde(default)]
    pub validation: Option<f64>,
    /// Test fraction.
    #[serde(default)]
    pub test: Option<f64>,
}

/// The split fractions after defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fractions {
    /// Training.
    pub train: f64,
    /// Validation.
    pub validation: f64,
    /// Test.
    pub test: f64,
}

/// Length units of input files.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    /// Å.
    #[default]
    Angstrom,
    /// Bohr (CODATA 2018, 0.529177210903 Å).
    Bohr,
}

impl LengthUnit {
    /// The unit in Å.
    pub fn angstrom(self) -> f64 {
        match self {
            LengthUnit::Angstrom => 1.0,
            LengthUnit::Bohr => BOHR,
        }
    }
}

/// Energy units of input files.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EnergyUnit {
    /// eV.
    #[default]
    #[serde(alias = "eV")]
    Ev,
    /// Hartree (CODATA 2018, 27.211386245988 eV).
    Hartree,
}

impl EnergyUnit {
    /// The unit in eV.
    pub fn ev(self) -> f64 {
        match self {
            EnergyUnit::Ev => 1.0,
            EnergyUnit::Hartree => HARTREE,
        }
    }
}

/// `[model]`: elements, descriptors, networks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Element symbols (species are ordered by atomic number, whatever the order here).
    pub elements: Vec<String>,
    /// Cutoff radius, Å. Required for generated and listed descriptors (the default `rc` of
    /// listed ones); with `n2p2_input` optional, and if given it must equal the file's.
    #[serde(default)]
    pub cutoff: Option<f64>,
    /// The descriptor set: exactly one of `generated`, `n2p2_input`, `list`.
    pub descriptors: DescriptorsConfig,
    /// Hidden layer widths (default `[25, 25]`, or `input.nn`'s with `n2p2_input`).
    #[serde(default)]
    pub hidden: Option<Vec<usize>>,
    /// Hidden activation (default `tanh`, or `input.nn`'s with `n2p2_input`); the output
    /// layer is linear.
    #[serde(default)]
    pub activation: Option<ActivationSpec>,
}

/// `[model.descriptors]`: exactly one of the three sources.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DescriptorsConfig {
    /// An n2p2-style generated set.
    #[serde(default)]
    pub generated: Option<GeneratedDescriptors>,
    /// The symmetry functions of an n2p2 `input.nn` (types 2, 3, 9, 12, 13, 20–25).
    #[serde(default)]
    pub n2p2_input: Option<PathBuf>,
    /// Length unit of `n2p2_input` (default angstrom).
    #[serde(default)]
    pub length_unit: Option<LengthUnit>,
    /// An explicit list.
    #[serde(default)]
    pub list: Option<Vec<ExplicitDescriptor>>,
}

/// Radial grids of the generated set (Gastegger et al., J. Chem. Phys. 148, 241709 (2018), as
/// n2p2's `sfparamgen` implements them), over r_k = `r_lower` + k·Δ, k = 0…n−1,
/// Δ = (`r_upper` − `r_lower`)/(n − 1).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RadialMode {
    /// r_s = r_k, η = 1/(2Δ²): Gaussians of equal width shifted along the grid.
    #[default]
    Shifted,
    /// r_s = 0, η = 1/(2 r_k²): Gaussians centred on the atom, of growing width.
    #[serde(alias = "centered")]
    Centred,
}

/// The angular kind of the generated set.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AngularKind {
    /// G4 (n2p2 type 3): includes the j–k distance.
    #[default]
    Narrow,
    /// G5 (n2p2 type 9).
    Wide,
}

/// `[model.descriptors.generated]`: per centre element, `radial` G2 per neighbour element and
/// one angular function per unordered neighbour pair × `angular_eta` × `zeta` × `lambda`
/// (r_s = 0), all with cutoff `model.cutoff`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GeneratedDescriptors {
    /// Radial functions per neighbour element (0: none).
    #[serde(default = "default_radial")]
    pub radial: usize,
    /// Radial grid.
    #[serde(default)]
    pub radial_mode: RadialMode,
    /// First grid point, Å (must be > 0 for `centred`).
    #[serde(default = "default_r_lower")]
    pub r_lower: f64,
    /// Last grid point, Å (default: the cutoff).
    #[serde(default)]
    pub r_upper: Option<f64>,
    /// Angular kind.
    #[serde(default)]
    pub angular_kind: AngularKind,
    /// η of the angular functions, Å⁻² (empty: no angular functions).
    #[serde(default = "default_angular_eta")]
    pub angular_eta: Vec<f64>,
    /// ζ values (≥ 1).
    #[serde(default = "default_zeta")]
    pub zeta: Vec<f64>,
    /// λ values (±1).
    #[serde(default = "default_lambda")]
    pub lambda: Vec<f64>,
    /// Cutoff function.
    #[serde(default = "default_cutoff_function")]
    pub cutoff_function: CutoffSpec,
    /// Inner cutoff fraction α ∈ [0, 1) of the cutoff function.
    #[serde(default)]
    pub alpha: f64,
}

fn default_radial() -> usize {
    8
}
fn default_r_lower() -> f64 {
    0.5
}
fn default_angular_eta() -> Vec<f64> {
    vec![0.01, 0.1]
}
fn default_zeta() -> Vec<f64> {
    vec![1.0, 4.0]
}
fn default_lambda() -> Vec<f64> {
    vec![1.0, -1.0]
}
fn default_cutoff_function() -> CutoffSpec {
    CutoffSpec::Cos
}
fn one() -> f64 {
    1.0
}
fn one_eighty() -> f64 {
    180.0
}

impl Default for GeneratedDescriptors {
    fn default() -> Self {
        GeneratedDescriptors {
            radial: default_radial(),
            radial_mode: RadialMode::default(),
            r_lower: default_r_lower(),
            r_upper: None,
            angular_kind: AngularKind::default(),
            angular_eta: default_angular_eta(),
            zeta: default_zeta(),
            lambda: default_lambda(),
            cutoff_function: default_cutoff_function(),
            alpha: 0.0,
        }
    }
}

/// `[[model.descriptors.list]]`: one symmetry function, with element symbols instead of
/// species indices. Lengths in Å, η in Å⁻², angles in degrees; the fields a kind reads are
/// those of [`DescriptorSpec`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExplicitDescriptor {
    /// Centre element.
    pub element: String,
    /// Kind (`g2`, `g4`, `g5`, `weighted_radial`, … as in [`KindSpec`]).
    pub kind: KindSpec,
    /// Neighbour elements: one for radial kinds, two for angular kinds, none for the
    /// element-weighted kinds.
    #[serde(default)]
    pub neighbors: Vec<String>,
    /// η, Å⁻².
    #[serde(default)]
    pub eta: f64,
    /// r_s, Å.
    #[serde(default)]
    pub rs: f64,
    /// ζ.
    #[serde(default = "one")]
    pub zeta: f64,
    /// λ.
    #[serde(default = "one")]
    pub lambda: f64,
    /// Cutoff radius, Å (default `model.cutoff`).
    #[serde(default)]
    pub rc: Option<f64>,
    /// Cutoff function.
    #[serde(default = "default_cutoff_function")]
    pub cutoff: CutoffSpec,
    /// Inner cutoff fraction.
    #[serde(default)]
    pub alpha: f64,
    /// Polynomial kinds: left end of the radial window, Å.
    #[serde(default)]
    pub rl: f64,
    /// Polynomial angular kinds: left end of the angular window, degrees.
    #[serde(default)]
    pub angle_left: f64,
    /// Polynomial angular kinds: right end of the angular window, degrees.
    #[serde(default = "one_eighty")]
    pub angle_right: f64,
    /// Polynomial kinds: compact-function core.
    #[serde(default)]
    pub subtype: CompactSpec,
    /// Polynomial kinds: asymmetric variant.
    #[serde(default)]
    pub asymmetric: bool,
}

/// `[loss]`: per structure of N atoms, L = energy_weight · ((E − E_ref)/N)² plus
/// force_weight · (1/3N) Σ_j |F_j − F_ref,j|² (eV, Å), averaged over a batch (see
/// [`super::grad`]).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// Weight of the per-atom energy term (≥ 0).
    #[serde(default = "one")]
    pub energy_weight: f64,
    /// Weight of the force-component term (≥ 0; 0 trains on energies only and then the data
    /// need no forces).
    #[serde(default = "one")]
    pub force_weight: f64,
}

impl LossConfig {
    /// The weights in the form of the gradient module.
    pub fn weights(&self) -> LossWeights {
        LossWeights {
            energy: self.energy_weight,
            force: self.force_weight,
        }
    }
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            energy_weight: 1.0,
            force_weight: 1.0,
        }
    }
}

/// Optimiser kinds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (Kingma & Ba 2015), mini-batches of `training.batch_size` structures.
    #[default]
    Adam,
    /// Full-batch L-BFGS with a strong Wolfe line search (`[optimizer.lbfgs]`); ignores
    /// `training.batch_size` and the learning rate.
    Lbfgs,
    /// n2p2's global extended Kalman filter (`[optimizer.kalman]`): one update per energy or
    /// force-component observation; ignores `training.batch_size` and the learning rate.
    Kalman,
}

/// `[optimizer]`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Which optimiser.
    #[serde(default)]
    pub kind: OptimizerKind,
    /// Initial learning rate (Adam's step size α).
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Adam β₁.
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    /// Adam β₂.
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    /// Adam ε.
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// `[optimizer.lbfgs]`: constants of `kind = "lbfgs"` (defaults: [`LbfgsSettings`]).
    #[serde(default)]
    pub lbfgs: LbfgsSettings,
    /// `[optimizer.kalman]`: constants of `kind = "kalman"` (defaults: n2p2's,
    /// [`KalmanSettings`]).
    #[serde(default)]
    pub kalman: KalmanSettings,
}

fn default_learning_rate() -> f64 {
    1e-3
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_epsilon() -> f64 {
    1e-8
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::default(),
            learning_rate: default_learning_rate(),
            beta1: default_beta1(),
            beta2: default_beta2(),
            epsilon: default_epsilon(),
            schedule: ScheduleConfig::default(),
            lbfgs: LbfgsSettings::default(),
            kalman: KalmanSettings::default(),
        }
    }
}

impl OptimizerConfig {
    /// Fresh Adam state for `n_params` parameters with the configured constants.
    pub fn adam(&self, n_params: usize) -> Adam {
        let mut a = Adam::new(n_params);
        a.beta1 = self.beta1;
        a.beta2 = self.beta2;
        a.epsilon = self.epsilon;
        a
    }

    /// Fresh L-BFGS state for `n_params` parameters with the configured constants.
    pub fn lbfgs(&self, n_params: usize) -> Result<Lbfgs> {
        Lbfgs::new(n_params, self.lbfgs)
    }

    /// A fresh Kalman filter for `n_params` parameters with the configured constants, its
    /// annealing clock set to `updates_per_epoch` (see [`Kalman::expected_updates`]).
    ///
    /// # Errors
    /// More than `optimizer.kalman.max_parameters` parameters: the covariance needs n²·8 bytes
    /// (the message says how many). Only here is the parameter count known, so this is where
    /// a too-large model is refused, before any training.
    pub fn kalman(&self, n_params: usize, updates_per_epoch: u64) -> Result<Kalman> {
        Kalman::new(n_params, self.kalman, updates_per_epoch)
            .map_err(|e| anyhow!("`optimizer.kalman`: {e}"))
    }

    /// The learning-rate schedule of the optimiser module.
    pub fn schedule(&self) -> Schedule {
        let lr = self.learning_rate;
        let sc = &self.schedule;
        let min_lr = sc.min_learning_rate;
        match sc.kind {
            ScheduleKind::Constant => Schedule::Constant { lr },
            ScheduleKind::Exponential => Schedule::Exponential {
                lr,
                gamma: sc.decay(),
                min_lr,
            },
            ScheduleKind::Plateau => Schedule::Plateau {
                lr,
                factor: sc.decay(),
                patience: sc.patience,
                threshold: sc.threshold,
                min_lr,
            },
        }
    }
}

/// Schedule kinds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// The learning rate stays.
    #[default]
    Constant,
    /// × `decay` after every epoch, down to `min_learning_rate`.
    Exponential,
    /// × `decay` when the validation loss (training loss without a validation set) has not
    /// improved for more than `patience` epochs, down to `min_learning_rate`.
    Plateau,
}

/// `[optimizer.schedule]`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Kind.
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Factor: per epoch for `exponential`, in (0, 1] (default 0.99); per reduction for
    /// `plateau`, in (0, 1) (default 0.5).
    #[serde(default)]
    pub decay: Option<f64>,
    /// Plateau: epochs without improvement tolerated before a reduction.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Plateau: relative improvement that counts (0: any decrease).
    #[serde(default)]
    pub threshold: f64,
    /// Floor of the learning rate (at most `learning_rate`).
    #[serde(default = "default_min_lr")]
    pub min_learning_rate: f64,
}

fn default_patience() -> usize {
    10
}
fn default_min_lr() -> f64 {
    1e-6
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            kind: ScheduleKind::default(),
            decay: None,
            patience: default_patience(),
            threshold: 0.0,
            min_learning_rate: default_min_lr(),
        }
    }
}

impl ScheduleConfig {
    /// The decay factor after defaults.
    pub fn decay(&self) -> f64 {
        self.decay.unwrap_or(match self.kind {
            ScheduleKind::Exponential => 0.99,
            _ => 0.5,
        })
    }
}

/// `[training]`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Passes over the training set.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Structures per optimiser step (Adam, Kalman).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Stop when the validation loss has not improved for this many epochs (needs a
    /// validation set; absent: never stop early). The best model is kept.
    #[serde(default)]
    pub early_stopping_patience: Option<usize>,
    /// Worker threads (default: all cores). Results depend only on the seed and this number.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Seed of the weight initialisation and batch order (and of the split unless
    /// `data.seed`).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Write a checkpoint every this many epochs (absent: none).
    #[serde(default)]
    pub checkpoint_every: Option<usize>,
}

fn default_epochs() -> usize {
    100
}
fn default_batch_size() -> usize {
    32
}
fn default_seed() -> u64 {
    1
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: default_epochs(),
            batch_size: default_batch_size(),
            early_stopping_patience: None,
            threads: None,
            seed: default_seed(),
            checkpoint_every: None,
        }
    }
}

/// `[output]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Output directory (default `runs/<config file stem>` in the current directory); the
    /// command line's `--output` wins.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Real precision of the written blob.
    #[serde(default = "default_precision")]
    pub precision: Precision,
    /// Write parity plots and error histograms of the test set.
    #[serde(default = "default_true")]
    pub plots: bool,
}

fn default_precision() -> Precision {
    Precision::F64
}
fn default_true() -> bool {
    true
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: None,
            precision: default_precision(),
            plots: true,
        }
    }
}

/// A problem with a value: where it is (`section`, `key`) and what is wrong.
struct Problem {
    section: &'static str,
    key: String,
    message: String,
}

impl TrainConfig {
    /// Reads, parses and checks `path`; relative paths in the file are resolved against the
    /// file's directory. Errors name the file and, where known, line and column.
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut cfg = Self::parse(&text, &path.display().to_string())?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses and checks TOML `text`; `name` stands for the file in errors. Paths stay as
    /// written.
    pub fn parse(text: &str, name: &str) -> Result<TrainConfig> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end().to_string();
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    let src = text.lines().nth(line - 1).unwrap_or("");
                    anyhow!("{name}:{line}:{col}: {msg}\n  | {src}")
                }
                None => anyhow!("{name}: {msg}"),
            }
        })?;
        if let Some(p) = cfg.problems().into_iter().next() {
            // Not found as `key = …` (an inline table): point at the enclosing key instead.
            let found = locate(text, p.section, &p.key).or_else(|| {
                let (parent, last) = p.section.rsplit_once('.').unwrap_or(("", p.section));
                locate(text, parent, last)
            });
            let at = match found {
                Some((line, col)) => format!("{name}:{line}:{col}"),
                None => name.to_string(),
            };
            let key = if p.section.is_empty() {
                p.key.clone()
            } else {
                format!("{}.{}", p.section, p.key)
            };
            bail!("{at}: `{key}`: {}", p.message);
        }
        Ok(cfg)
    }

    /// Checks the values (the first problem is the error).
    pub fn validate(&self) -> Result<()> {
        match self.problems().into_iter().next() {
            Some(p) => bail!("`{}.{}`: {}", p.section, p.key, p.message),
            None => Ok(()),
        }
    }

    /// Makes every relative path in the configuration relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let d = &mut self.data;
        d.files
            .iter_mut()
            .chain(&mut d.validation_files)
            .chain(&mut d.test_files)
            .for_each(fix);
        if let Some(p) = &mut self.model.descriptors.n2p2_input {
            fix(p);
        }
        if let Some(p) = &mut self.output.dir {
            fix(p);
        }
    }

    /// The output directory: `output.dir`, else `runs/<stem of the config file>`.
    pub fn output_dir(&self) -> PathBuf {
        if let Some(d) = &self.output.dir {
            return d.clone();
        }
        let stem = self
            .source
            .as_deref()
            .and_then(Path::file_stem)
            .map_or_else(|| "train".to_string(), |s| s.to_string_lossy().into_owned());
        Path::new("runs").join(stem)
    }

    /// The seed of the split.
    pub fn split_seed(&self) -> u64 {
        self.data.seed.unwrap_or(self.training.seed)
    }

    /// The split fractions after defaults (validated by [`TrainConfig::validate`]).
    pub fn fractions(&self) -> Fractions {
        let d = &self.data;
        let validation = d
            .split
            .validation
            .unwrap_or(if d.validation_files.is_empty() {
                0.1
            } else {
                0.0
            });
        let test = d
            .split
            .test
            .unwrap_or(if d.test_files.is_empty() { 0.1 } else { 0.0 });
        let train = d.split.train.unwrap_or(1.0 - validation - test);
        Fractions {
            train,
            validation,
            test,
        }
    }

    /// Whether there is a validation set (a fraction > 0 or files).
    pub fn has_validation(&self) -> bool {
        self.fractions().validation > 0.0 || !self.data.validation_files.is_empty()
    }

    /// The element symbols in species order (by atomic number). Unknown symbols are left out
    /// (validation reports them).
    pub fn species(&self) -> Vec<String> {
        let mut z: Vec<(u8, &String)> = self
            .model
            .elements
            .iter()
            .filter_map(|s| crate::elements::atomic_number(s).map(|z| (z, s)))
            .collect();
        z.sort();
        z.dedup();
        z.into_iter().map(|(_, s)| s.clone()).collect()
    }

    /// The hidden widths after defaults (`input.nn`'s with `n2p2_input`, else `[25, 25]`).
    fn hidden_or(&self, from_file: Option<&[usize]>) -> Vec<usize> {
        match (&self.model.hidden, from_file) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) => h.to_vec(),
            (None, None) => vec![25, 25],
        }
    }

    /// The descriptor set and network shape the model is built from: generated, read from
    /// `input.nn`, or listed, species by atomic number.
    pub fn descriptor_set(&self) -> Result<DescriptorSet> {
        self.validate()?;
        let m = &self.model;
        let d = &m.descriptors;
        let species = self.species();
        if let Some(path) = &d.n2p2_input {
            let unit = d.length_unit.unwrap_or_default();
            let mut set = crate::n2p2::read_input_nn(path, unit.angstrom())?;
            if set.symbols != species {
                bail!(
                    "model.elements {:?} differ from the elements {:?} of {}",
                    species,
                    set.symbols,
                    path.display()
                );
            }
            let rc = set
                .descriptors
                .iter()
                .flatten()
                .map(|d| d.rc)
                .fold(0.0, f64::max);
            if let Some(c) = m.cutoff {
                if (c - rc).abs() > 1e-6 * rc.max(1.0) {
                    bail!(
                        "model.cutoff = {c} Å, but the largest cutoff in {} is {rc} Å \
                         (with length_unit = {:?})",
                        path.display(),
                        unit
                    );
                }
            }
            let hidden = self.hidden_or(Some(&set.hidden));
            if let Some(act) = m.activation {
                set.activations = hidden_activations(hidden.len(), act);
            } else if hidden.len() != set.hidden.len() {
                let act = set
                    .activations
                    .first()
                    .copied()
                    .unwrap_or(ActivationSpec::Tanh);
                set.activations = hidden_activations(hidden.len(), act);
            }
            set.hidden = hidden;
            return Ok(set);
        }
        let rc = m
            .cutoff
            .ok_or_else(|| anyhow!("model.cutoff is required"))?;
        let hidden = self.hidden_or(None);
        let act = m.activation.unwrap_or(ActivationSpec::Tanh);
        let descriptors = if let Some(g) = &d.generated {
            generate(&species, rc, g)
        } else {
            let list = d.list.as_deref().unwrap_or(&[]);
            listed(&species, rc, list)?
        };
        Ok(DescriptorSet {
            z: species
                .iter()
                .filter_map(|s| crate::elements::atomic_number(s))
                .collect(),
            symbols: species,
            descriptors,
            activations: hidden_activations(hidden.len(), act),
            hidden,
            normalize: false,
        })
    }

    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |section: &'static str, key: &str, message: String| {
            out.push(Problem {
                section,
                key: key.to_string(),
                message,
            })
        };
        let pos = |x: f64| x.is_finite() && x > 0.0;

        // [data]
        let d = &self.data;
        if d.files.is_empty() {
            bad("data", "files", "give at least one structure file".into());
        }
        for (key, list) in [
            ("files", &d.files),
            ("validation_files", &d.validation_files),
            ("test_files", &d.test_files),
        ] {
            for f in list {
                if file_kind(f).is_none() {
                    bad(
                        "data",
                        key,
                        format!(
                            "{}: unknown extension (expected .extxyz, .xyz or .data)",
                            f.display()
                        ),
                    );
                }
            }
        }
        let any_data = d
            .files
            .iter()
            .chain(&d.validation_files)
            .chain(&d.test_files)
            .any(|f| file_kind(f) == Some(true));
        if !any_data {
            if d.length_unit != LengthUnit::Angstrom {
                bad(
                    "data",
                    "length_unit",
                    "applies only to n2p2 .data files (extended XYZ is in Å)".into(),
                );
            }
            if d.energy_unit != EnergyUnit::Ev {
                bad(
                    "data",
                    "energy_unit",
                    "applies only to n2p2 .data files (extended XYZ is in eV)".into(),
                );
            }
        }
        let s = d.split;
        for (key, v) in [
            ("train", s.train),
            ("validation", s.validation),
            ("test", s.test),
        ] {
            if let Some(x) = v {
                if !(x.is_finite() && (0.0..=1.0).contains(&x)) {
                    bad(
                        "data.split",
                        key,
                        format!("{x} is not a fraction in [0, 1]"),
                    );
                }
            }
        }
        if !d.validation_files.is_empty() && s.validation.is_some_and(|x| x > 0.0) {
            bad(
                "data.split",
                "validation",
                "the validation set is given as data.validation_files; \
                 give it either as files or as a fraction, not both"
                    .into(),
            );
        }
        if !d.test_files.is_empty() && s.test.is_some_and(|x| x > 0.0) {
            bad(
                "data.split",
                "test",
                "the test set is given as data.test_files; \
                 give it either as files or as a fraction, not both"
                    .into(),
            );
        }
        let f = self.fractions();
        let sum = f.train + f.validation + f.test;
        if (sum - 1.0).abs() > 1e-9 {
            let key = if s.train.is_some() { "train" } else { "test" };
            bad(
                "data.split",
                key,
                format!(
                    "fractions train {} + validation {} + test {} = {sum}, must sum to 1",
                    f.train, f.validation, f.test
                ),
            );
        } else if f.train <= 0.0 {
            bad(
                "data.split",
                "train",
                "the training fraction must be positive".into(),
            );
        }

        // [model]
        let m = &self.model;
        if m.elements.is_empty() {
            bad("model", "elements", "give at least one element".into());
        }
        for (i, e) in m.elements.iter().enumerate() {
            if crate::elements::atomic_number(e).is_none() {
                bad(
                    "model",
                    "elements",
                    format!(
                        "unknown element {e:?} (symbols are case-sensitive: \"Cu\", not \"CU\")"
                    ),
                );
            } else if m.elements[..i].contains(e) {
                bad("model", "elements", format!("element {e} is listed twice"));
            }
        }
        let max_species = mlff_core::neighbors::MAX_SPECIES;
        if m.elements.len() > max_species {
            bad(
                "model",
                "elements",
                format!("{} elements, at most {max_species}", m.elements.len()),
            );
        }
        if let Some(c) = m.cutoff {
            if !pos(c) {
                bad(
                    "model",
                    "cutoff",
                    format!("{c} is not a positive length (Å)"),
                );
            }
        }
        if let Some(h) = &m.hidden {
            if h.contains(&0) {
                bad("model", "hidden", "layer widths must be at least 1".into());
            }
            if h.len() + 1 > mlff_core::blob::MAX_LAYERS {
                bad(
                    "model",
                    "hidden",
                    format!(
                        "{} hidden layers, at most {}",
                        h.len(),
                        mlff_core::blob::MAX_LAYERS - 1
                    ),
                );
            }
        }
        let ds = &m.descriptors;
        let sources = [
            ds.generated.is_some(),
            ds.n2p2_input.is_some(),
            ds.list.is_some(),
        ];
        match sources.iter().filter(|&&x| x).count() {
            1 => {}
            0 => bad(
                "model",
                "descriptors",
                "give one of `generated`, `n2p2_input`, `list`".into(),
            ),
            _ => bad(
                "model",
                "descriptors",
                "give only one of `generated`, `n2p2_input`, `list`".into(),
            ),
        }
        if ds.length_unit.is_some() && ds.n2p2_input.is_none() {
            bad(
                "model.descriptors",
                "length_unit",
                "applies only to `n2p2_input` (generated and listed descriptors are in Å)".into(),
            );
        }
        if ds.n2p2_input.is_none() && m.cutoff.is_none() {
            bad(
                "model",
                "cutoff",
                "missing: the cutoff radius in Å (required unless descriptors come from n2p2_input)"
                    .into(),
            );
        }
        if let (Some(g), Some(rc)) = (&ds.generated, m.cutoff.filter(|&c| pos(c))) {
            let sec = "model.descriptors.generated";
            let upper = g.r_upper.unwrap_or(rc);
            let lower_ok = match g.radial_mode {
                RadialMode::Shifted => g.r_lower.is_finite() && g.r_lower >= 0.0,
                RadialMode::Centred => pos(g.r_lower),
            };
            if !lower_ok {
                bad(
                    sec,
                    "r_lower",
                    format!(
                        "{} must be {} (Å)",
                        g.r_lower,
                        if g.radial_mode == RadialMode::Centred {
                            "> 0 for centred grids"
                        } else {
                            ">= 0"
                        }
                    ),
                );
            } else if !(upper.is_finite() && upper > g.r_lower && upper <= rc) {
                bad(
                    sec,
                    "r_upper",
                    format!(
                        "need r_lower < r_upper <= cutoff, have {} < {upper} <= {rc}",
                        g.r_lower
                    ),
                );
            }
            if g.radial == 0 && g.angular_eta.is_empty() {
                bad(
                    sec,
                    "radial",
                    "no radial and no angular functions: nothing to describe atoms with".into(),
                );
            }
            if g.angular_eta.iter().any(|&e| !(e.is_finite() && e >= 0.0)) {
                bad(sec, "angular_eta", "η must be finite and >= 0 (Å⁻²)".into());
            }
            if !g.angular_eta.is_empty() && (g.zeta.is_empty() || g.lambda.is_empty()) {
                bad(
                    sec,
                    "zeta",
                    "angular functions need at least one zeta and one lambda".into(),
                );
            }
            if g.zeta.iter().any(|&z| !(z.is_finite() && z >= 1.0)) {
                bad(sec, "zeta", "ζ must be >= 1".into());
            }
            if g.lambda.iter().any(|&l| l != 1.0 && l != -1.0) {
                bad(sec, "lambda", "λ must be 1 or -1".into());
            }
            if !(0.0..1.0).contains(&g.alpha) {
                bad(sec, "alpha", format!("{} is not in [0, 1)", g.alpha));
            }
        }

        // [loss]
        let l = self.loss;
        for (key, w) in [
            ("energy_weight", l.energy_weight),
            ("force_weight", l.force_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                bad("loss", key, format!("{w} must be finite and >= 0"));
            }
        }
        if l.energy_weight == 0.0 && l.force_weight == 0.0 {
            bad(
                "loss",
                "energy_weight",
                "energy_weight and force_weight are both 0: nothing to fit".into(),
            );
        }

        // [optimizer]
        let o = self.optimizer;
        if !pos(o.learning_rate) {
            bad(
                "optimizer",
                "learning_rate",
                format!("{} must be positive", o.learning_rate),
            );
        }
        for (key, b) in [("beta1", o.beta1), ("beta2", o.beta2)] {
            if !(0.0..1.0).contains(&b) {
                bad("optimizer", key, format!("{b} is not in [0, 1)"));
            }
        }
        if !pos(o.epsilon) {
            bad(
                "optimizer",
                "epsilon",
                format!("{} must be positive", o.epsilon),
            );
        }
        let lb = o.lbfgs;
        for (key, x) in [
            ("memory", lb.memory),
            ("max_iterations_per_epoch", lb.max_iterations_per_epoch),
            ("max_evaluations", lb.max_evaluations),
        ] {
            if x == 0 {
                bad("optimizer.lbfgs", key, "must be at least 1".into());
            }
        }
        if !(lb.gradient_tolerance.is_finite() && lb.gradient_tolerance >= 0.0) {
            bad(
                "optimizer.lbfgs",
                "gradient_tolerance",
                format!("{} must be finite and >= 0", lb.gradient_tolerance),
            );
        }
        if !(0.0 < lb.c1 && lb.c1 < lb.c2 && lb.c2 < 1.0) {
            bad(
                "optimizer.lbfgs",
                "c2",
                format!("need 0 < c1 < c2 < 1, have c1 = {}, c2 = {}", lb.c1, lb.c2),
            );
        }
        let k = o.kalman;
        let nonneg = |x: f64| x.is_finite() && x >= 0.0;
        let unit = |x: f64| x > 0.0 && x <= 1.0;
        let fraction = |x: f64| (0.0..=1.0).contains(&x);
        for (key, x, ok, want) in [
            ("epsilon", k.epsilon, pos(k.epsilon), "> 0"),
            ("q0", k.q0, nonneg(k.q0), ">= 0"),
            ("q_tau", k.q_tau, nonneg(k.q_tau), ">= 0"),
            ("q_min", k.q_min, nonneg(k.q_min), ">= 0"),
            ("eta", k.eta, pos(k.eta), "> 0"),
            ("eta_tau", k.eta_tau, nonneg(k.eta_tau), ">= 0"),
            (
                "eta_max",
                k.eta_max,
                pos(k.eta_max) && k.eta_max >= k.eta,
                ">= eta",
            ),
            ("lambda", k.lambda, unit(k.lambda), "in (0, 1]"),
            ("nu", k.nu, unit(k.nu), "in (0, 1]"),
            (
                "energy_fraction",
                k.energy_fraction,
                fraction(k.energy_fraction),
                "in [0, 1]",
            ),
            (
                "force_fraction",
                k.force_fraction,
                fraction(k.force_fraction),
                "in [0, 1]",
            ),
            ("force_weight", k.force_weight, pos(k.force_weight), "> 0"),
        ] {
            if !ok {
                bad("optimizer.kalman", key, format!("{x} must be {want}"));
            }
        }
        if o.kind == OptimizerKind::Kalman && k.energy_fraction == 0.0 && k.force_fraction == 0.0 {
            bad(
                "optimizer.kalman",
                "energy_fraction",
                "energy_fraction and force_fraction are both 0: no updates".into(),
            );
        }
        let sc = o.schedule;
        if let Some(x) = sc.decay {
            let ok = match sc.kind {
                ScheduleKind::Plateau => x > 0.0 && x < 1.0,
                _ => x > 0.0 && x <= 1.0,
            };
            if !ok {
                let range = if sc.kind == ScheduleKind::Plateau {
                    "(0, 1)"
                } else {
                    "(0, 1]"
                };
                bad(
                    "optimizer.schedule",
                    "decay",
                    format!("{x} is not in {range}"),
                );
            }
        }
        if !(0.0..1.0).contains(&sc.threshold) {
            bad(
                "optimizer.schedule",
                "threshold",
                format!("{} is not in [0, 1)", sc.threshold),
            );
        }
        if sc.patience == 0 {
            bad(
                "optimizer.schedule",
                "patience",
                "must be at least 1".into(),
            );
        }
        if !(sc.min_learning_rate.is_finite()
            && sc.min_learning_rate >= 0.0
            && sc.min_learning_rate <= o.learning_rate)
        {
            bad(
                "optimizer.schedule",
                "min_learning_rate",
                format!(
                    "{} must be in [0, learning_rate = {}]",
                    sc.min_learning_rate, o.learning_rate
                ),
            );
        }

        // [training]
        let t = self.training;
        if t.epochs == 0 {
            bad("training", "epochs", "must be at least 1".into());
        }
        if t.batch_size == 0 {
            bad("training", "batch_size", "must be at least 1".into());
        }
        if t.threads == Some(0) {
            bad("training", "threads", "must be at least 1".into());
        }
        if t.checkpoint_every == Some(0) {
            bad(
                "training",
                "checkpoint_every",
                "must be at least 1 (leave it out for no checkpoints)".into(),
            );
        }
        match t.early_stopping_patience {
            Some(0) => bad(
                "training",
                "early_stopping_patience",
                "must be at least 1 (leave it out to train all epochs)".into(),
            ),
            Some(_) if !self.has_validation() => bad(
                "training",
                "early_stopping_patience",
                "early stopping needs a validation set (data.split.validation > 0 or \
                 data.validation_files)"
                    .into(),
            ),
            _ => {}
        }
        out
    }
}

/// Activations of `n` hidden layers of `act` and a linear output.
fn hidden_activations(n: usize, act: ActivationSpec) -> Vec<ActivationSpec> {
    std::iter::repeat_n(act, n)
        .chain([ActivationSpec::Linear])
        .collect()
}

/// What a structure file is, by extension: `Some(true)` for n2p2 `.data`, `Some(false)` for
/// extended XYZ, `None` otherwise.
pub fn file_kind(path: &Path) -> Option<bool> {
    match path.extension()?.to_str()? {
        "data" => Some(true),
        "extxyz" | "xyz" => Some(false),
        _ => None,
    }
}

/// (r_s, η) of the radial grid (module docs of [`RadialMode`]).
pub fn radial_grid(mode: RadialMode, n: usize, r_lower: f64, r_upper: f64) -> Vec<(f64, f64)> {
    let dr = (r_upper - r_lower) / n.saturating_sub(1).max(1) as f64;
    (0..n)
        .map(|k| {
            let r = r_lower + k as f64 * dr;
            match mode {
                RadialMode::Shifted => (r, 1.0 / (2.0 * dr * dr)),
                RadialMode::Centred => (0.0, 1.0 / (2.0 * r * r)),
            }
        })
        .collect()
}

/// The generated descriptors of every species in `species` (by atomic number): radial by
/// neighbour species then grid point; angular by neighbour pair (a ≤ b), η, ζ, λ.
pub fn generate(species: &[String], rc: f64, g: &GeneratedDescriptors) -> Vec<Vec<DescriptorSpec>> {
    let n = species.len();
    let grid = radial_grid(g.radial_mode, g.radial, g.r_lower, g.r_upper.unwrap_or(rc));
    let base = DescriptorSpec {
        rc,
        cutoff: g.cutoff_function,
        alpha: g.alpha,
        ..Default::default()
    };
    let angular = match g.angular_kind {
        AngularKind::Narrow => KindSpec::G4,
        AngularKind::Wide => KindSpec::G5,
    };
    let mut one = Vec::new();
    for e in 0..n {
        for &(rs, eta) in &grid {
            one.push(DescriptorSpec {
                kind: KindSpec::G2,
                e1: e,
                eta,
                rs,
                ..base
            });
        }
    }
    for a in 0..n {
        for b in a..n {
            for &eta in &g.angular_eta {
                for &zeta in &g.zeta {
                    for &lambda in &g.lambda {
                        one.push(DescriptorSpec {
                            kind: angular,
                            e1: a,
                            e2: b,
                            eta,
                            zeta,
                            lambda,
                            ..base
                        });
                    }
                }
            }
        }
    }
    vec![one; n]
}

/// The listed descriptors, per species.
fn listed(
    species: &[String],
    rc: f64,
    list: &[ExplicitDescriptor],
) -> Result<Vec<Vec<DescriptorSpec>>> {
    let index = |sym: &str, k: usize| -> Result<usize> {
        species.iter().position(|s| s == sym).ok_or_else(|| {
            anyhow!(
                "model.descriptors.list[{k}]: element {sym:?} is not in model.elements {species:?}"
            )
        })
    };
    let mut per = vec![Vec::new(); species.len()];
    for (k, x) in list.iter().enumerate() {
        let centre = index(&x.element, k)?;
        let kind = x.kind;
        let need = if kind.is_weighted() {
            0
        } else if kind.is_angular() {
            2
        } else {
            1
        };
        if x.neighbors.len() != need {
            bail!(
                "model.descriptors.list[{k}]: kind {kind:?} needs {need} neighbour element(s), \
                 `neighbors` has {}",
                x.neighbors.len()
            );
        }
        let mut nb = x
            .neighbors
            .iter()
            .map(|s| index(s, k))
            .collect::<Result<Vec<_>>>()?;
        nb.sort_unstable();
        let d = DescriptorSpec {
            kind,
            e1: nb.first().copied().unwrap_or(0),
            e2: nb.get(1).copied().unwrap_or(0),
            eta: x.eta,
            rs: x.rs,
            zeta: x.zeta,
            lambda: x.lambda,
            rc: x.rc.unwrap_or(rc),
            cutoff: x.cutoff,
            alpha: x.alpha,
            rl: x.rl,
            angle_left: x.angle_left,
            angle_right: x.angle_right,
            subtype: x.subtype,
            asymmetric: x.asymmetric,
        };
        d.check(species.len())
            .with_context(|| format!("model.descriptors.list[{k}]"))?;
        per[centre].push(d);
    }
    if let Some(s) = per.iter().position(Vec::is_empty) {
        bail!(
            "model.descriptors.list: element {} has no descriptors",
            species[s]
        );
    }
    Ok(per)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// Finds `key` of table `section` (dotted, e.g. `data.split`) in TOML `text`: as
/// `key = …` under `[section]`, as `last.key = …` under the parent table, or as the table
/// header `[section.key]` itself. A heuristic for error messages: inline tables are not
/// searched.
fn locate(text: &str, section: &str, key: &str) -> Option<(usize, usize)> {
    let full = if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    };
    let norm = |s: &str| -> String {
        s.split('.')
            .map(|p| p.trim().trim_matches('"').trim_matches('\''))
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim_start();
        let indent = raw.len() - t.len();
        if t.starts_with('[') {
            let name = t.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or("");
            table = norm(name);
            if table == full {
                return Some((i + 1, indent + 1));
            }
            continue;
        }
        if t.starts_with('#') {
            continue;
        }
        let Some(eq) = t.find('=') else { continue };
        let k = norm(&t[..eq]);
        let path = if table.is_empty() {
            k
        } else {
            format!("{table}.{k}")
        };
        if path == full {
            return Some((i + 1, raw[..indent].chars().count() + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_finds_keys_and_tables() {
        let t = "[data]\nfiles = [\"a.xyz\"]\n[data.split]\n  test = 2\n[training]\nepochs=0\n";
        assert_eq!(locate(t, "data.split", "test"), Some((4, 3)));
        assert_eq!(locate(t, "training", "epochs"), Some((6, 1)));
        assert_eq!(locate(t, "data", "split"), Some((3, 1)));
        assert_eq!(locate(t, "model", "cutoff"), None);
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn radial_grids_follow_sfparamgen() {
        let s = radial_grid(RadialMode::Shifted, 5, 1.0, 5.0);
        assert_eq!(s[0], (1.0, 0.5));
        assert_eq!(s[4], (5.0, 0.5));
        let c = radial_grid(RadialMode::Centred, 3, 1.0, 3.0);
        assert_eq!(c, vec![(0.0, 0.5), (0.0, 0.125), (0.0, 1.0 / 18.0)]);
    }
}
