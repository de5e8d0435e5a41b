//! The optimisers: Adam (Kingma & Ba 2015, Algorithm 1) with learning-rate schedules (constant,
//! exponential decay per epoch, reduce on plateau); full-batch L-BFGS with a strong Wolfe line
//! search ([`Lbfgs`]); and n2p2's global extended Kalman filter ([`Kalman`]), which updates on
//! one observation (an energy, a force component) at a time.
//!
//! Everything here is plain element-wise f64 arithmetic in a fixed order, so a run is
//! reproducible to the last bit, and every piece of state derives serde for checkpoints. The
//! moment vectors are serialised as the hexadecimal bit patterns of their f64 values
//! ([`exact`]), so a checkpoint restores them exactly whatever the format's float parser does
//! (serde_json's default parser is not guaranteed to round-trip every f64); the learning rate
//! is recomputed from integers (epoch, number of reductions) rather than stored.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::random::SplitMix64;
use crate::spec::ModelSpec;
use crate::train::grad::{energy_jacobian, force_jacobian, StructureCache};

/// Serde helpers that store f64 values exactly, as 16 hexadecimal digits of their bit pattern
/// each (a vector becomes one string). Use with `#[serde(with = "exact")]` on a `Vec<f64>`.
pub mod exact {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Write;

    /// Writes `values` as one string of 16 hex digits per value.
    pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(16 * values.len());
        for x in values {
            // Writing to a String cannot fail.
            let _ = write!(out, "{:016x}", x.to_bits());
        }
        s.serialize_str(&out)
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(D::Error::custom)
    }

    pub(super) fn parse(s: &str) -> Result<Vec<f64>, String> {
        if s.len() % 16 != 0 || !s.is_ascii() {
            return Err(format!(
                "exact f64 string must be 16 hex digits per value, has {} characters",
                s.len()
            ));
        }
        s.as_bytes()
            .chunks_exact(16)
            .map(|c| {
                let t = std::str::from_utf8(c).map_err(|e| e.to_string())?;
                u64::from_str_radix(t, 16)
                    .map(f64::from_bits)
                    .map_err(|e| format!("bad hex f64 {t:?}: {e}"))
            })
            .collect()
    }

    /// The same for an `Option<f64>` (`None` is an empty string).
    pub mod option {
        use serde::de::Error;
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `value` as 16 hex digits, or an empty string.
        pub fn serialize<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(value.as_slice(), s)
        }

        /// Reads what [`serialize`] wrote.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            let s = String::deserialize(d)?;
            let v = super::parse(&s).map_err(D::Error::custom)?;
            match v.as_slice() {
                [] => Ok(None),
                [x] => Ok(Some(*x)),
                _ => Err(D::Error::custom("expected at most one exact f64")),
            }
        }
    }
}

/// Adam's state: first and second moment estimates and the step count.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Adam {
    /// Decay of the first moment (0.9).
    pub beta1: f64,
    /// Decay of the second moment (0.999).
    pub beta2: f64,
    /// Added to √v̂ (1e-8).
    pub epsilon: f64,
    /// Steps taken.
    steps: u64,
    #[serde(with = "exact")]
    m: Vec<f64>,
    #[serde(with = "exact")]
    v: Vec<f64>,
}

impl Adam {
    /// Kingma & Ba's defaults: β1 = 0.9, β2 = 0.999, ε = 1e-8.
    pub const DEFAULT: (f64, f64, f64) = (0.9, 0.999, 1e-8);

    /// Fresh state for `n_params` parameters with the default constants.
    pub fn new(n_params: usize) -> Self {
        let (beta1, beta2, epsilon) = Self::DEFAULT;
        Adam {
            beta1,
            beta2,
            epsilon,
            steps: 0,
            m: vec![0.0; n_params],
            v: vec![0.0; n_params],
        }
    }

    /// Parameters this state is for.
    pub fn len(&self) -> usize {
        self.m.len()
    }

    /// For no parameters.
    pub fn is_empty(&self) -> bool {
        self.m.is_empty()
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One step with learning rate `lr`: t += 1, m = β1 m + (1 − β1) g, v = β2 v + (1 − β2) g²,
    /// θ −= lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε), element by element.
    ///
    /// # Panics
    /// If `params` or `grad` has another length than the state.
    pub fn step(&mut self, params: &mut [f64], grad: &[f64], lr: f64) {
        assert_eq!(params.len(), self.m.len(), "Adam: parameter count changed");
        assert_eq!(grad.len(), self.m.len(), "Adam: gradient length differs");
        self.steps += 1;
        let t = self.steps as f64;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.epsilon);
        let c1 = 1.0 - b1.powf(t);
        let c2 = 1.0 - b2.powf(t);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let m_hat = *m / c1;
            let v_hat = *v / c2;
            *p -= lr * m_hat / (v_hat.sqrt() + eps);
        }
    }
}

/// How the learning rate evolves over epochs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// `lr` throughout.
    Constant {
        /// Learning rate.
        lr: f64,
    },
    /// lr · γ^epoch (epoch counted from 0), never below `min_lr`.
    Exponential {
        /// Initial learning rate.
        lr: f64,
        /// Factor per epoch, in (0, 1].
        gamma: f64,
        /// Floor.
        #[serde(default)]
        min_lr: f64,
    },
    /// lr · factor^k after k plateaus ([`ReduceOnPlateau`]), never below `min_lr`.
    Plateau {
        /// Initial learning rate.
        lr: f64,
        /// Factor per reduction, in (0, 1).
        factor: f64,
        /// Epochs without improvement tolerated before a reduction.
        patience: usize,
        /// Relative improvement that counts (0: any decrease).
        #[serde(default)]
        threshold: f64,
        /// Floor.
        #[serde(default)]
        min_lr: f64,
    },
}

impl Schedule {
    /// Checks the constants (positive finite rates, factors in range).
    pub fn check(&self) -> Result<()> {
        let (lr, min_lr) = match *self {
            Schedule::Constant { lr } => (lr, 0.0),
            Schedule::Exponential { lr, gamma, min_lr } => {
                if !(gamma > 0.0 && gamma <= 1.0) {
                    bail!("exponential schedule: gamma must be in (0, 1], is {gamma}");
                }
                (lr, min_lr)
            }
            Schedule::Plateau {
                lr,
                factor,
                threshold,
                min_lr,
                ..
            } => {
                if !(factor > 0.0 && factor < 1.0) {
                    bail!("plateau schedule: factor must be in (0, 1), is {factor}");
                }
                if !(0.0..1.0).contains(&threshold) {
                    bail!("plateau schedule: threshold must be in [0, 1), is {threshold}");
                }
                (lr, min_lr)
            }
        };
        if !(lr.is_finite() && lr > 0.0) {
            bail!("learning rate must be positive and finite, is {lr}");
        }
        if !(0.0..=lr).contains(&min_lr) {
            bail!("min_lr must be in [0, lr], is {min_lr}");
        }
        Ok(())
    }
}

/// Reduce-on-plateau bookkeeping (lower metric is better): a metric improves when it is below
/// best − threshold·|best|; after more than `patience` epochs in a row without improvement it
/// calls for a reduction and starts counting again. A NaN metric never improves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReduceOnPlateau {
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// Relative improvement that counts.
    pub threshold: f64,
    #[serde(with = "exact::option")]
    best: Option<f64>,
    bad_epochs: usize,
    reductions: u32,
}

impl ReduceOnPlateau {
    /// Fresh bookkeeping.
    pub fn new(patience: usize, threshold: f64) -> Self {
        ReduceOnPlateau {
            patience,
            threshold,
            best: None,
            bad_epochs: 0,
            reductions: 0,
        }
    }

    /// Records an epoch's metric; `true` when the learning rate should be reduced now.
    pub fn observe(&mut self, metric: f64) -> bool {
        let improved = match self.best {
            None => !metric.is_nan(),
            Some(b) => metric < b - self.threshold * b.abs(),
        };
        if improved {
            self.best = Some(metric);
            self.bad_epochs = 0;
            return false;
        }
        self.bad_epochs += 1;
        if self.bad_epochs > self.patience {
            self.bad_epochs = 0;
            self.reductions += 1;
            true
        } else {
            false
        }
    }

    /// The best metric seen.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Reductions called for so far.
    pub fn reductions(&self) -> u32 {
        self.reductions
    }
}

/// A [`Schedule`] with its state: the current epoch and, for plateaus, the bookkeeping.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LearningRate {
    schedule: Schedule,
    epoch: u64,
    plateau: Option<ReduceOnPlateau>,
}

impl LearningRate {
    /// Starts `schedule` at epoch 0 (after [`Schedule::check`]).
    pub fn new(schedule: Schedule) -> Result<Self> {
        schedule.check()?;
        let plateau = match schedule {
            Schedule::Plateau {
                patience,
                threshold,
                ..
            } => Some(ReduceOnPlateau::new(patience, threshold)),
            _ => None,
        };
        Ok(LearningRate {
            schedule,
            epoch: 0,
            plateau,
        })
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Epochs ended so far (the current epoch's index).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The plateau bookkeeping, for a plateau schedule.
    pub fn plateau(&self) -> Option<&ReduceOnPlateau> {
        self.plateau.as_ref()
    }

    /// The learning rate of the current epoch.
    pub fn lr(&self) -> f64 {
        match self.schedule {
            Schedule::Constant { lr } => lr,
            Schedule::Exponential { lr, gamma, min_lr } => {
                (lr * gamma.powf(self.epoch as f64)).max(min_lr)
            }
            Schedule::Plateau {
                lr, factor, min_lr, ..
            } => {
                let k = self.plateau.as_ref().map_or(0, |p| p.reductions);
                (lr * factor.powf(f64::from(k))).max(min_lr)
            }
        }
    }

    /// Ends the current epoch with its metric (e.g. the validation loss; only the plateau
    /// schedule reads it) and returns the next epoch's learning rate.
    pub fn end_epoch(&mut self, metric: f64) -> f64 {
        self.epoch += 1;
        if let Some(p) = &mut self.plateau {
            p.observe(metric);
        }
        self.lr()
    }
}

// ---------------------------------------------------------------------------------------------
// L-BFGS
// ---------------------------------------------------------------------------------------------

/// Constants of [`Lbfgs`] (`[optimizer.lbfgs]` of the configuration).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LbfgsSettings {
    /// Correction pairs (s, y) kept, m (10).
    pub memory: usize,
    /// Full-batch iterations per training epoch (1: an epoch is one L-BFGS iteration).
    pub max_iterations_per_epoch: usize,
    /// Converged when ‖∇L‖₂ ≤ this (1e-10).
    pub gradient_tolerance: f64,
    /// Loss-and-gradient evaluations allowed per line search (20).
    pub max_evaluations: usize,
    /// Sufficient-decrease constant c₁ of the Wolfe conditions (1e-4).
    pub c1: f64,
    /// Curvature constant c₂ of the strong Wolfe conditions (0.9).
    pub c2: f64,
}

impl Default for LbfgsSettings {
    fn default() -> Self {
        LbfgsSettings {
            memory: 10,
            max_iterations_per_epoch: 1,
            gradient_tolerance: 1e-10,
            max_evaluations: 20,
            c1: 1e-4,
            c2: 0.9,
        }
    }
}

impl LbfgsSettings {
    /// Checks the constants: memory ≥ 1, iterations ≥ 1, evaluations ≥ 1, tolerance ≥ 0 and
    /// 0 < c₁ < c₂ < 1.
    pub fn check(&self) -> Result<()> {
        if self.memory == 0 {
            bail!("L-BFGS memory must be at least 1");
        }
        if self.max_iterations_per_epoch == 0 {
            bail!("L-BFGS max_iterations_per_epoch must be at least 1");
        }
        if self.max_evaluations == 0 {
            bail!("L-BFGS max_evaluations must be at least 1");
        }
        if !(self.gradient_tolerance.is_finite() && self.gradient_tolerance >= 0.0) {
            bail!(
                "L-BFGS gradient_tolerance must be finite and >= 0, is {}",
                self.gradient_tolerance
            );
        }
        if !(0.0 < self.c1 && self.c1 < self.c2 && self.c2 < 1.0) {
            bail!(
                "L-BFGS needs 0 < c1 < c2 < 1, has c1 = {}, c2 = {}",
                self.c1,
                self.c2
            );
        }
        Ok(())
    }
}

/// Where an [`Lbfgs`] run stands.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LbfgsStatus {
    /// Iterating.
    #[default]
    Running,
    /// ‖∇L‖₂ fell to the tolerance.
    Converged,
    /// Not even a steepest-descent line search found a lower loss (the minimum to rounding,
    /// or an evaluation budget too small): further steps change nothing.
    Stalled,
}

/// A point of a line search: step length, loss, directional derivative, gradient.
#[derive(Clone)]
struct LinePoint {
    a: f64,
    f: f64,
    d: f64,
    g: Vec<f64>,
}

/// Limited-memory BFGS (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithm 7.4
/// with 7.5), full batch and deterministic: the search direction comes from the two-loop
/// recursion over the last m pairs s_k = x_{k+1} − x_k, y_k = ∇L_{k+1} − ∇L_k with initial
/// Hessian γ I, γ = sᵀy / yᵀy of the newest pair; the step length from a line search that
/// brackets and zooms (Algorithms 3.5 and 3.6, safeguarded cubic interpolation) to a point
/// satisfying the strong Wolfe conditions
///
/// ```text
/// L(x + a p) ≤ L(x) + c₁ a ∇Lᵀp,      |∇L(x + a p)ᵀp| ≤ c₂ |∇Lᵀp|.
/// ```
///
/// When the evaluation budget runs out first, the lowest point satisfying the first
/// (sufficient decrease) is taken, and its pair is stored only if it has positive curvature
/// (sᵀy > 1e-10 · yᵀy): a bad pair would make the inverse Hessian indefinite. A non-finite loss
/// in the search counts as too long a step. When no decrease is found along the L-BFGS
/// direction the memory is cleared and steepest descent tried; when that fails too the run is
/// [`LbfgsStatus::Stalled`].
///
/// The loss and gradient of the current point are kept between steps (with the point, compared
/// bit for bit: parameters changed from outside are re-evaluated), so each iteration costs the
/// line search's evaluations only, typically one. All state derives serde ([`exact`] for the
/// vectors); a run resumed from a checkpoint continues bit for bit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lbfgs {
    /// The constants.
    pub settings: LbfgsSettings,
    n: usize,
    iterations: u64,
    evaluations: u64,
    status: LbfgsStatus,
    /// The stored s_k, oldest first, n values each.
    #[serde(with = "exact")]
    s: Vec<f64>,
    /// The stored y_k, in the order of `s`.
    #[serde(with = "exact")]
    y: Vec<f64>,
    /// The point of `f` and `g` (empty: none yet).
    #[serde(with = "exact")]
    x: Vec<f64>,
    #[serde(with = "exact::option")]
    f: Option<f64>,
    #[serde(with = "exact")]
    g: Vec<f64>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl Lbfgs {
    /// Fresh state for `n_params` parameters (after [`LbfgsSettings::check`]).
    pub fn new(n_params: usize, settings: LbfgsSettings) -> Result<Self> {
        settings.check()?;
        Ok(Lbfgs {
            settings,
            n: n_params,
            iterations: 0,
            evaluations: 0,
            status: LbfgsStatus::Running,
            s: Vec::new(),
            y: Vec::new(),
            x: Vec::new(),
            f: None,
            g: Vec::new(),
        })
    }

    /// Parameters this state is for.
    pub fn len(&self) -> usize {
        self.n
    }

    /// For no parameters.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Iterations taken (steps that moved the parameters).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// Loss-and-gradient evaluations so far.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Correction pairs stored now.
    pub fn pairs(&self) -> usize {
        self.s.len() / self.n.max(1)
    }

    /// Where the run stands.
    pub fn status(&self) -> LbfgsStatus {
        self.status
    }

    /// Converged or stalled: [`Lbfgs::step`] no longer moves the parameters.
    pub fn is_done(&self) -> bool {
        self.status != LbfgsStatus::Running
    }

    /// ‖∇L‖₂ at the current point, once evaluated.
    pub fn gradient_norm(&self) -> Option<f64> {
        self.f.map(|_| dot(&self.g, &self.g).sqrt())
    }

    /// One iteration from `params` (updated in place), `f` returning the loss and its gradient
    /// at a point; returns the loss at the new point. Does nothing but return the loss once the
    /// run is converged or stalled ([`Lbfgs::status`]).
    ///
    /// # Errors
    /// If `params` or a gradient has another length than the state, or the loss at `params`
    /// is not finite.
    pub fn step(
        &mut self,
        params: &mut [f64],
        mut f: impl FnMut(&[f64]) -> (f64, Vec<f64>),
    ) -> Result<f64> {
        if params.len() != self.n {
            bail!(
                "L-BFGS: {} parameters, the state is for {}",
                params.len(),
                self.n
            );
        }
        let f0 = match self.f {
            Some(f0) if same_bits(&self.x, params) => f0,
            _ => {
                let (f0, g0) = f(params);
                self.evaluations += 1;
                if g0.len() != self.n {
                    bail!("L-BFGS: gradient has {} entries, not {}", g0.len(), self.n);
                }
                self.x = params.to_vec();
                self.f = Some(f0);
                self.g = g0;
                f0
            }
        };
        if !f0.is_finite() || self.g.iter().any(|g| !g.is_finite()) {
            bail!("L-BFGS: the loss or its gradient is not finite ({f0})");
        }
        if self.is_done() {
            return Ok(f0);
        }
        if dot(&self.g, &self.g).sqrt() <= self.settings.gradient_tolerance {
            self.status = LbfgsStatus::Converged;
            return Ok(f0);
        }
        let mut p = self.direction();
        let mut d0 = dot(&p, &self.g);
        if !(d0 < 0.0 && d0.is_finite()) {
            // Not a descent direction (rounding in the recursion): start over.
            self.clear_memory();
            p = self.direction();
            d0 = dot(&p, &self.g);
        }
        let found = match self.line_search(params, f0, d0, &p, &mut f)? {
            Some(pt) => Some((pt, p)),
            None if self.pairs() > 0 => {
                self.clear_memory();
                let p = self.direction();
                let d0 = dot(&p, &self.g);
                self.line_search(params, f0, d0, &p, &mut f)?
                    .map(|pt| (pt, p))
            }
            None => None,
        };
        let Some((pt, p)) = found else {
            self.status = LbfgsStatus::Stalled;
            return Ok(f0);
        };
        // The new pair: s = a p, y = g_new − g.
        let s: Vec<f64> = p.iter().map(|&pi| pt.a * pi).collect();
        let y: Vec<f64> = pt.g.iter().zip(&self.g).map(|(a, b)| a - b).collect();
        let (sy, yy) = (dot(&s, &y), dot(&y, &y));
        // Curvature check: only pairs with sᵀy > 0 keep the inverse Hessian positive definite.
        if sy > 1e-10 * yy && sy.is_finite() {
            if self.pairs() == self.settings.memory {
                self.s.drain(..self.n);
                self.y.drain(..self.n);
            }
            self.s.extend_from_slice(&s);
            self.y.extend_from_slice(&y);
        }
        for (x, &si) in params.iter_mut().zip(&s) {
            *x += si;
        }
        self.x = params.to_vec();
        self.f = Some(pt.f);
        self.g = pt.g;
        self.iterations += 1;
        if dot(&self.g, &self.g).sqrt() <= self.settings.gradient_tolerance {
            self.status = LbfgsStatus::Converged;
        }
        Ok(pt.f)
    }

    fn clear_memory(&mut self) {
        self.s.clear();
        self.y.clear();
    }

    /// −H ∇L by the two-loop recursion (steepest descent without pairs).
    fn direction(&self) -> Vec<f64> {
        let n = self.n;
        let k = self.pairs();
        let mut q = self.g.clone();
        let mut alpha = vec![0.0; k];
        let mut rho = vec![0.0; k];
        for i in (0..k).rev() {
            let (s, y) = (&self.s[i * n..(i + 1) * n], &self.y[i * n..(i + 1) * n]);
            rho[i] = 1.0 / dot(y, s);
            alpha[i] = rho[i] * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(q, &y)| *q -= alpha[i] * y);
        }
        if k > 0 {
            let (s, y) = (&self.s[(k - 1) * n..], &self.y[(k - 1) * n..]);
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|q| *q *= gamma);
        }
        for i in 0..k {
            let (s, y) = (&self.s[i * n..(i + 1) * n], &self.y[i * n..(i + 1) * n]);
            let beta = rho[i] * dot(y, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(q, &s)| *q += (alpha[i] - beta) * s);
        }
        q.iter_mut().for_each(|q| *q = -*q);
        q
    }

    /// Strong Wolfe line search from `x` along `p` (Nocedal & Wright, Algorithms 3.5 and 3.6):
    /// the accepted point, or the lowest sufficient-decrease point when the budget runs out,
    /// or `None` when no point decreased the loss enough.
    fn line_search(
        &mut self,
        x: &[f64],
        f0: f64,
        d0: f64,
        p: &[f64],
        f: &mut impl FnMut(&[f64]) -> (f64, Vec<f64>),
    ) -> Result<Option<LinePoint>> {
        let LbfgsSettings {
            c1,
            c2,
            max_evaluations,
            ..
        } = self.settings;
        // First iteration (no pairs, no scale): a step of unit length, at most 1.
        let a0 = if self.pairs() == 0 {
            (1.0 / dot(p, p).sqrt()).min(1.0)
        } else {
            1.0
        };
        let n = self.n;
        let mut budget = max_evaluations;
        let mut eval = |a: f64, evaluations: &mut u64| -> Result<LinePoint> {
            let xa: Vec<f64> = x.iter().zip(p).map(|(&x, &p)| x + a * p).collect();
            let (fa, g) = f(&xa);
            *evaluations += 1;
            if g.len() != n {
                bail!("L-BFGS: gradient has {} entries, not {n}", g.len());
            }
            let d = dot(&g, p);
            Ok(LinePoint { a, f: fa, d, g })
        };
        // A non-finite loss fails the sufficient-decrease test (NaN compares false).
        let armijo = |pt: &LinePoint| pt.f <= f0 + c1 * pt.a * d0 && pt.d.is_finite();
        let wolfe = |pt: &LinePoint| pt.d.abs() <= -c2 * d0;
        let mut best: Option<LinePoint> = None;
        let keep = |pt: &LinePoint, best: &mut Option<LinePoint>| {
            if armijo(pt) && best.as_ref().is_none_or(|b| pt.f < b.f) {
                *best = Some(pt.clone());
            }
        };
        // Bracketing.
        let mut prev = LinePoint {
            a: 0.0,
            f: f0,
            d: d0,
            g: Vec::new(),
        };
        let mut a = a0;
        let (mut lo, mut hi) = loop {
            if budget == 0 {
                return Ok(best);
            }
            budget -= 1;
            let pt = eval(a, &mut self.evaluations)?;
            keep(&pt, &mut best);
            if !armijo(&pt) || (prev.a > 0.0 && pt.f >= prev.f) {
                break (prev, pt);
            }
            if wolfe(&pt) {
                return Ok(Some(pt));
            }
            if pt.d >= 0.0 {
                break (pt, prev);
            }
            prev = pt;
            a *= 2.0;
            if !a.is_finite() {
                return Ok(best);
            }
        };
        // Zoom: lo has the lowest loss so far and satisfies sufficient decrease; the
        // minimiser lies between lo and hi.
        loop {
            if budget == 0 || (hi.a - lo.a).abs() <= 1e-15 * lo.a.abs().max(hi.a.abs()) {
                return Ok(best);
            }
            budget -= 1;
            let a = zoom_trial(&lo, &hi);
            let pt = eval(a, &mut self.evaluations)?;
            keep(&pt, &mut best);
            if !armijo(&pt) || pt.f >= lo.f {
                hi = pt;
            } else {
                if wolfe(&pt) {
                    return Ok(Some(pt));
                }
                if pt.d * (hi.a - lo.a) >= 0.0 {
                    hi = lo;
                }
                lo = pt;
            }
        }
    }
}

/// The trial step between `lo` and `hi`: the minimiser of the cubic through both points'
/// values and slopes (Nocedal & Wright eq. 3.59), kept at least a tenth of the interval from
/// either end; bisection when the cubic has no minimiser or a value is not finite.
fn zoom_trial(lo: &LinePoint, hi: &LinePoint) -> f64 {
    let mid = 0.5 * (lo.a + hi.a);
    let width = (hi.a - lo.a).abs();
    let (left, right) = (lo.a.min(hi.a), lo.a.max(hi.a));
    if !(hi.f.is_finite() && hi.d.is_finite()) {
        return mid;
    }
    let d1 = lo.d + hi.d - 3.0 * (lo.f - hi.f) / (lo.a - hi.a);
    let disc = d1 * d1 - lo.d * hi.d;
    if disc.is_nan() || disc < 0.0 {
        return mid;
    }
    let d2 = (hi.a - lo.a).signum() * disc.sqrt();
    let a = hi.a - (hi.a - lo.a) * (hi.d + d2 - d1) / (hi.d - lo.d + 2.0 * d2);
    // Guard: a cubic step too close to an end (or NaN from 0/0) makes no progress.
    if a.is_finite() && a >= left + 0.1 * width && a <= right - 0.1 * width {
        a
    } else {
        mid
    }
}

// ---------------------------------------------------------------------------------------------
// Extended Kalman filter
// ---------------------------------------------------------------------------------------------

/// The variant of [`Kalman`] (n2p2's `kalman_type`).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KalmanType {
    /// n2p2's default (`kalman_type 0`): measurement noise 1/η with η annealed up towards
    /// η_max, no forgetting.
    #[default]
    Standard,
    /// Fading memory (`kalman_type 1`; Blank & Brown 1994): forgetting factor λ annealed
    /// towards 1 by λ_k = ν λ_{k−1} + 1 − ν.
    FadingMemory,
}

/// Constants of [`Kalman`] (`[optimizer.kalman]` of the configuration). Defaults are n2p2's
/// (its example `input.nn` files): ε = 0.01, q₀ = 0.01, q_τ = 2.302, q_min = 1e-6, η = 0.01,
/// η_τ = 2.302, η_max = 1; for the fading-memory variant λ = 0.96, ν = 0.99871.
///
/// Rates are per epoch, as n2p2's: after t epochs (t = updates / updates per epoch, a
/// fraction within an epoch) q = max(q₀ e^{−q_τ t}, q_min) and η = min(η₀ e^{η_τ t}, η_max), so
/// 2.302 = ln 10 is one order of magnitude per epoch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KalmanSettings {
    /// The variant.
    #[serde(rename = "type")]
    pub kind: KalmanType,
    /// Initial covariance P₀ = I/ε.
    pub epsilon: f64,
    /// Initial process noise q₀ (added to P's diagonal after each update).
    pub q0: f64,
    /// Decay rate of q per epoch.
    pub q_tau: f64,
    /// Floor of q.
    pub q_min: f64,
    /// Standard: initial η (measurement noise 1/η).
    pub eta: f64,
    /// Standard: growth rate of η per epoch.
    pub eta_tau: f64,
    /// Standard: ceiling of η.
    pub eta_max: f64,
    /// Fading memory: initial forgetting factor λ₀.
    pub lambda: f64,
    /// Fading memory: λ_k = ν λ_{k−1} + 1 − ν, per update.
    pub nu: f64,
    /// Probability that a structure's energy is used in an epoch (n2p2's
    /// `short_energy_fraction`, 1).
    pub energy_fraction: f64,
    /// Fraction of a structure's 3N force components used per epoch (n2p2's
    /// `short_force_fraction`, 0.0041 in its examples); the count per structure is rounded
    /// stochastically, so its expectation is exactly this fraction of 3N.
    pub force_fraction: f64,
    /// Force observations' error and Jacobian row are multiplied by this (n2p2's
    /// `force_weight`, 10 in its examples).
    pub force_weight: f64,
    /// The filter refuses models with more parameters: P alone takes n²·8 bytes (20 000
    /// parameters: 3.2 GB), and every update touches all of it twice.
    pub max_parameters: usize,
}

impl Default for KalmanSettings {
    fn default() -> Self {
        KalmanSettings {
            kind: KalmanType::Standard,
            epsilon: 1e-2,
            q0: 0.01,
            q_tau: 2.302,
            q_min: 1e-6,
            eta: 0.01,
            eta_tau: 2.302,
            eta_max: 1.0,
            lambda: 0.96,
            nu: 0.99871,
            energy_fraction: 1.0,
            force_fraction: 0.0041,
            force_weight: 10.0,
            max_parameters: 20_000,
        }
    }
}

impl KalmanSettings {
    /// Checks the constants (names each offending field).
    pub fn check(&self) -> Result<()> {
        let pos = |x: f64| x.is_finite() && x > 0.0;
        let nonneg = |x: f64| x.is_finite() && x >= 0.0;
        for (key, x, ok) in [
            ("epsilon", self.epsilon, pos(self.epsilon)),
            ("q0", self.q0, nonneg(self.q0)),
            ("q_tau", self.q_tau, nonneg(self.q_tau)),
            ("q_min", self.q_min, nonneg(self.q_min)),
            ("eta", self.eta, pos(self.eta)),
            ("eta_tau", self.eta_tau, nonneg(self.eta_tau)),
            (
                "eta_max",
                self.eta_max,
                pos(self.eta_max) && self.eta_max >= self.eta,
            ),
            (
                "lambda",
                self.lambda,
                self.lambda > 0.0 && self.lambda <= 1.0,
            ),
            ("nu", self.nu, self.nu > 0.0 && self.nu <= 1.0),
            (
                "energy_fraction",
                self.energy_fraction,
                (0.0..=1.0).contains(&self.energy_fraction),
            ),
            (
                "force_fraction",
                self.force_fraction,
                (0.0..=1.0).contains(&self.force_fraction),
            ),
            ("force_weight", self.force_weight, pos(self.force_weight)),
        ] {
            if !ok {
                bail!("Kalman filter: {key} = {x} is out of range");
            }
        }
        Ok(())
    }
}

/// One observation a Kalman update fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The energy per atom E/N: ξ = (E_ref − E)/N, H = (∂E/∂θ)/N.
    Energy,
    /// A force component, times [`KalmanSettings::force_weight`] w:
    /// ξ = w (F_ref,j,c − F_j,c), H = w ∂F_j,c/∂θ.
    Force {
        /// The atom j.
        atom: usize,
        /// The axis c (0 = x, 1 = y, 2 = z).
        component: usize,
    },
}

/// n2p2's global extended Kalman filter (Blank & Brown 1994; n2p2's `KalmanFilter`) over all
/// parameters θ, with covariance P (n × n, dense: n²·8 bytes). For m observations with
/// errors ξ = reference − prediction (m) and Jacobian H = ∂prediction/∂θ (m × n):
///
/// ```text
/// X = P Hᵀ,   A = H X + r I,   K = X A⁻¹,
/// θ ← θ + K ξ,   P ← (P − K Xᵀ) · s + q I,
/// ```
///
/// with r = 1/η, s = 1 for [`KalmanType::Standard`] and r = λ, s = 1/λ for
/// [`KalmanType::FadingMemory`]; q, η, λ anneal as [`KalmanSettings`] describes. The current
/// values are computed from the update count (not accumulated), so a resumed run continues
/// bit for bit. P stays exactly symmetric: K Xᵀ = X A⁻¹ Xᵀ is summed in an order symmetric in
/// its two indices. The O(n²) products run in parallel over rows of P, each row in a fixed
/// order: results do not depend on the thread count.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Kalman {
    /// The constants.
    pub settings: KalmanSettings,
    n: usize,
    updates: u64,
    /// Updates that make one epoch (for the annealing rates per epoch).
    updates_per_epoch: u64,
    /// P, row-major n × n.
    #[serde(with = "exact")]
    p: Vec<f64>,
}

/// The inverse of the symmetric positive definite m × m `a` (row-major) by Cholesky
/// factorisation, exactly symmetric; `None` when `a` is not positive definite.
fn spd_inverse(a: &[f64], m: usize) -> Option<Vec<f64>> {
    // L Lᵀ = A.
    let mut l = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..=i {
            let mut sum = a[i * m + j];
            for k in 0..j {
                sum -= l[i * m + k] * l[j * m + k];
            }
            if i == j {
                // Guard: a non-positive pivot means A is not positive definite.
                if sum.is_nan() || sum <= 0.0 {
                    return None;
                }
                l[i * m + i] = sum.sqrt();
            } else {
                l[i * m + j] = sum / l[j * m + j];
            }
        }
    }
    // A⁻¹ column by column: solve L z = e_c, Lᵀ x = z.
    let mut inv = vec![0.0; m * m];
    let mut z = vec![0.0; m];
    for c in 0..m {
        for i in 0..m {
            let mut sum = if i == c { 1.0 } else { 0.0 };
            for k in 0..i {
                sum -= l[i * m + k] * z[k];
            }
            z[i] = sum / l[i * m + i];
        }
        for i in (0..m).rev() {
            let mut sum = z[i];
            for k in i + 1..m {
                sum -= l[k * m + i] * inv[k * m + c];
            }
            inv[i * m + c] = sum / l[i * m + i];
        }
    }
    for i in 0..m {
        for j in 0..i {
            inv[j * m + i] = inv[i * m + j];
        }
    }
    Some(inv)
}

impl Kalman {
    /// P₀ = I/ε for `n_params` parameters; `updates_per_epoch` sets the time scale of the
    /// annealing (see [`Kalman::expected_updates`]).
    ///
    /// # Errors
    /// Bad settings, or more than [`KalmanSettings::max_parameters`] parameters (the message
    /// gives the memory P would need).
    pub fn new(n_params: usize, settings: KalmanSettings, updates_per_epoch: u64) -> Result<Self> {
        settings.check()?;
        if n_params > settings.max_parameters {
            bail!(
                "the Kalman filter's covariance for {n_params} parameters needs {:.2} GB \
                 (n²·8 bytes), and {n_params} is above max_parameters = {}: use a smaller \
                 network, raise max_parameters, or kind = \"adam\" / \"lbfgs\"",
                Self::memory_bytes(n_params) as f64 * 1e-9,
                settings.max_parameters
            );
        }
        let mut p = vec![0.0; n_params * n_params];
        for i in 0..n_params {
            p[i * n_params + i] = 1.0 / settings.epsilon;
        }
        Ok(Kalman {
            settings,
            n: n_params,
            updates: 0,
            updates_per_epoch: updates_per_epoch.max(1),
            p,
        })
    }

    /// Bytes of P for `n_params` parameters: n²·8.
    pub fn memory_bytes(n_params: usize) -> usize {
        n_params.saturating_mul(n_params).saturating_mul(8)
    }

    /// The expected number of updates in one epoch over structures of these atom counts:
    /// Σ_s (energy_fraction + force_fraction · 3 N_s), rounded (at least 1). Structures
    /// without references count all the same; pass only those with references if that matters.
    pub fn expected_updates(
        settings: &KalmanSettings,
        atoms: impl IntoIterator<Item = usize>,
    ) -> u64 {
        let total: f64 = atoms
            .into_iter()
            .map(|n| settings.energy_fraction + settings.force_fraction * 3.0 * n as f64)
            .sum();
        (total.round() as u64).max(1)
    }

    /// Parameters this filter is for.
    pub fn len(&self) -> usize {
        self.n
    }

    /// For no parameters.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Updates done so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The annealing's updates per epoch.
    pub fn updates_per_epoch(&self) -> u64 {
        self.updates_per_epoch
    }

    /// Changes the annealing's updates per epoch (e.g. after the training set changed).
    pub fn set_updates_per_epoch(&mut self, updates: u64) {
        self.updates_per_epoch = updates.max(1);
    }

    /// Epochs elapsed on the annealing clock.
    fn time(&self) -> f64 {
        self.updates as f64 / self.updates_per_epoch as f64
    }

    /// The process noise q of the next update.
    pub fn q(&self) -> f64 {
        let s = &self.settings;
        (s.q0 * (-s.q_tau * self.time()).exp()).max(s.q_min)
    }

    /// The standard filter's η of the next update.
    pub fn eta(&self) -> f64 {
        let s = &self.settings;
        (s.eta * (s.eta_tau * self.time()).exp()).min(s.eta_max)
    }

    /// The fading-memory filter's λ of the next update: 1 − (1 − λ₀) ν^k after k updates.
    pub fn lambda(&self) -> f64 {
        let s = &self.settings;
        1.0 - (1.0 - s.lambda) * s.nu.powf(self.updates as f64)
    }

    /// The covariance P, row-major n × n.
    pub fn covariance(&self) -> &[f64] {
        &self.p
    }

    /// One update with m = `xi.len()` observations: errors `xi` (reference − prediction) and
    /// Jacobian rows `h` (m × n, row-major), as in the type's documentation.
    ///
    /// # Errors
    /// Lengths that do not fit, a non-finite error or Jacobian, or H P Hᵀ + r I not positive
    /// definite (P has lost definiteness to rounding).
    pub fn update(&mut self, params: &mut [f64], h: &[f64], xi: &[f64]) -> Result<()> {
        use rayon::prelude::*;
        let (n, m) = (self.n, xi.len());
        if params.len() != n || h.len() != m * n {
            bail!(
                "Kalman update: {} parameters and {} Jacobian entries for a filter of {n} \
                 parameters and {m} observations",
                params.len(),
                h.len()
            );
        }
        if m == 0 {
            return Ok(());
        }
        if xi.iter().chain(h).any(|x| !x.is_finite()) {
            bail!("Kalman update: the error or the Jacobian is not finite");
        }
        let (r, scale) = match self.settings.kind {
            KalmanType::Standard => (1.0 / self.eta(), 1.0),
            KalmanType::FadingMemory => {
                let l = self.lambda();
                (l, 1.0 / l)
            }
        };
        let q = self.q();
        // X = P Hᵀ (n × m), row i from row i of P.
        let mut x = vec![0.0; n * m];
        x.par_chunks_mut(m)
            .zip(self.p.par_chunks(n.max(1)))
            .for_each(|(xr, pr)| {
                for (xk, hk) in xr.iter_mut().zip(h.chunks_exact(n)) {
                    *xk = dot(pr, hk);
                }
            });
        // A = H X + r I (m × m), symmetrised.
        let mut a = vec![0.0; m * m];
        for k in 0..m {
            for l in 0..=k {
                let hk = &h[k * n..(k + 1) * n];
                let v: f64 = hk
                    .iter()
                    .enumerate()
                    .map(|(i, &hv)| hv * x[i * m + l])
                    .sum();
                a[k * m + l] = v;
                a[l * m + k] = v;
            }
            a[k * m + k] += r;
        }
        let ainv = spd_inverse(&a, m).ok_or_else(|| {
            anyhow::anyhow!("Kalman update: H P Hᵀ + r I is not positive definite")
        })?;
        // K = X A⁻¹ (n × m); θ += K ξ.
        let mut kgain = vec![0.0; n * m];
        for i in 0..n {
            for c in 0..m {
                kgain[i * m + c] = (0..m).map(|k| x[i * m + k] * ainv[k * m + c]).sum();
            }
            params[i] += (0..m).map(|c| kgain[i * m + c] * xi[c]).sum::<f64>();
        }
        // P ← (P − X A⁻¹ Xᵀ) s + q I, the product summed symmetrically in (i, j):
        // Σ_k A⁻¹_kk X_ik X_jk + Σ_{k<l} A⁻¹_kl (X_ik X_jl + X_il X_jk).
        self.p
            .par_chunks_mut(n.max(1))
            .enumerate()
            .for_each(|(i, row)| {
                let xi_row = &x[i * m..(i + 1) * m];
                for (j, pij) in row.iter_mut().enumerate() {
                    let xj = &x[j * m..(j + 1) * m];
                    let mut sum = 0.0;
                    for k in 0..m {
                        sum += ainv[k * m + k] * (xi_row[k] * xj[k]);
                        for l in k + 1..m {
                            sum += ainv[k * m + l] * (xi_row[k] * xj[l] + xi_row[l] * xj[k]);
                        }
                    }
                    *pij = (*pij - sum) * scale;
                    if i == j {
                        *pij += q;
                    }
                }
            });
        self.updates += 1;
        Ok(())
    }

    /// The error ξ and Jacobian row of one observation of `cache` at `params`, or `None` when
    /// the structure has no such reference. Force observations carry the force weight.
    ///
    /// # Panics
    /// As [`crate::train::grad::force_jacobian`].
    pub fn observation(
        &self,
        spec: &ModelSpec,
        params: &[f64],
        cache: &StructureCache,
        obs: Observation,
    ) -> Option<(f64, Vec<f64>)> {
        match obs {
            Observation::Energy => {
                let e_ref = cache.energy_ref()?;
                let n = cache.n_atoms() as f64;
                let (e, mut h) = energy_jacobian(spec, params, cache);
                h.iter_mut().for_each(|x| *x /= n);
                Some(((e_ref - e) / n, h))
            }
            Observation::Force { atom, component } => {
                let f_ref = cache.forces_ref()?[atom][component];
                let w = self.settings.force_weight;
                let (f, mut h) = force_jacobian(spec, params, cache, atom, component);
                h.iter_mut().for_each(|x| *x *= w);
                Some((w * (f_ref - f), h))
            }
        }
    }

    /// One update with one observation of `cache`; returns its error ξ before the update, or
    /// `None` (no update) when the structure lacks the reference.
    ///
    /// # Errors
    /// As [`Kalman::update`].
    pub fn observe(
        &mut self,
        spec: &ModelSpec,
        params: &mut [f64],
        cache: &StructureCache,
        obs: Observation,
    ) -> Result<Option<f64>> {
        let Some((xi, h)) = self.observation(spec, params, cache, obs) else {
            return Ok(None);
        };
        self.update(params, &h, &[xi])?;
        Ok(Some(xi))
    }

    /// The observations of one structure for one epoch, as n2p2 picks them: its energy with
    /// probability `energy_fraction`, then `force_fraction`·3N force components (stochastic
    /// rounding) drawn without replacement. Draws from `rng` whether or not the structure has
    /// references.
    pub fn sample(&self, n_atoms: usize, rng: &mut SplitMix64) -> Vec<Observation> {
        let s = &self.settings;
        let mut out = Vec::new();
        if rng.uniform() < s.energy_fraction {
            out.push(Observation::Energy);
        }
        let want = s.force_fraction * 3.0 * n_atoms as f64;
        let mut count = want.floor() as usize;
        if rng.uniform() < want - want.floor() {
            count += 1;
        }
        let mut comps: Vec<usize> = (0..3 * n_atoms).collect();
        let count = count.min(comps.len());
        // Partial Fisher–Yates: the first `count` entries are a uniform sample.
        for k in 0..count {
            let j = k + (rng.next_u64() % (comps.len() - k) as u64) as usize;
            comps.swap(k, j);
            out.push(Observation::Force {
                atom: comps[k] / 3,
                component: comps[k] % 3,
            });
        }
        out
    }

    /// One epoch's updates on one structure: [`Kalman::sample`], then one update per
    /// observation in that order (energy first). Returns the updates done.
    ///
    /// # Errors
    /// As [`Kalman::update`].
    pub fn train_structure(
        &mut self,
        spec: &ModelSpec,
        params: &mut [f64],
        cache: &StructureCache,
        rng: &mut SplitMix64,
    ) -> Result<usize> {
        let mut done = 0;
        for obs in self.sample(cache.n_atoms(), rng) {
            if self.observe(spec, params, cache, obs)?.is_some() {
                done += 1;
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gradient of Σ c_k (x_k − k)²: an ill-conditioned quadratic.
    fn quad_grad(x: &[f64]) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(k, &v)| 2.0 * (1.0 + 10.0 * k as f64) * (v - k as f64))
            .collect()
    }

    #[test]
    fn first_step_has_the_size_of_the_learning_rate() {
        let mut adam = Adam::new(3);
        let mut p = vec![0.0, 1.0, -1.0];
        adam.step(&mut p, &[2.0, -0.5, 1e-3], 0.01);
        // m̂ = g, v̂ = g², so the step is lr·g/(|g| + ε).
        for (x, want) in p.iter().zip([-0.01, 1.01, -1.01]) {
            assert!((x - want).abs() < 1e-7, "{x} vs {want}");
        }
        assert_eq!(adam.steps(), 1);
    }

    #[test]
    fn adam_minimises_a_quadratic() {
        let mut adam = Adam::new(4);
        let mut x = vec![5.0; 4];
        for _ in 0..3000 {
            let g = quad_grad(&x);
            adam.step(&mut x, &g, 0.05);
        }
        for (k, v) in x.iter().enumerate() {
            assert!((v - k as f64).abs() < 1e-3, "{k}: {v}");
        }
    }

    #[test]
    fn checkpoint_resumes_bit_for_bit() {
        let run = |steps: usize, adam: &mut Adam, x: &mut Vec<f64>| {
            for _ in 0..steps {
                let g = quad_grad(x);
                adam.step(x, &g, 0.037);
            }
        };
        let (mut a, mut x) = (Adam::new(5), vec![0.3, -1.7, 2.9, 0.1, 1e-9]);
        run(20, &mut a, &mut x);
        let (mut b, mut y) = (Adam::new(5), vec![0.3, -1.7, 2.9, 0.1, 1e-9]);
        run(7, &mut b, &mut y);
        let json = serde_json::to_string(&b).unwrap();
        let mut b: Adam = serde_json::from_str(&json).unwrap();
        run(13, &mut b, &mut y);
        assert_eq!(a, b);
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(exact::parse("123").is_err());
        assert!(serde_json::from_str::<Adam>(&json.replace("\"m\":\"", "\"m\":\"zz")).is_err());
    }

    #[test]
    fn schedules() {
        let mut c = LearningRate::new(Schedule::Constant { lr: 0.1 }).unwrap();
        assert_eq!(c.end_epoch(1.0), 0.1);
        let mut e = LearningRate::new(Schedule::Exponential {
            lr: 1.0,
            gamma: 0.5,
            min_lr: 0.2,
        })
        .unwrap();
        assert_eq!(e.lr(), 1.0);
        assert_eq!(e.end_epoch(f64::NAN), 0.5);
        assert_eq!(e.end_epoch(0.0), 0.25);
        assert_eq!(e.end_epoch(0.0), 0.2);
        let mut p = LearningRate::new(Schedule::Plateau {
            lr: 1.0,
            factor: 0.5,
            patience: 2,
            threshold: 0.01,
            min_lr: 0.0,
        })
        .unwrap();
        // 0.5 improves; 0.499, 0.498, 0.497 are within 1 % of it: the third bad epoch reduces.
        let lrs: Vec<f64> = [1.0, 0.5, 0.499, 0.498, 0.497, 0.2, f64::NAN]
            .iter()
            .map(|&m| p.end_epoch(m))
            .collect();
        assert_eq!(lrs, [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5]);
        assert_eq!(p.plateau().unwrap().best(), Some(0.2));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<LearningRate>(&json).unwrap(), p);
        let cfg = r#"{"kind":"plateau","lr":0.001,"factor":0.3,"patience":5}"#;
        let s: Schedule = serde_json::from_str(cfg).unwrap();
        assert!(LearningRate::new(s).is_ok());
        assert!(LearningRate::new(Schedule::Constant { lr: 0.0 }).is_err());
        assert!(Schedule::Exponential {
            lr: 1.0,
            gamma: 1.5,
            min_lr: 0.0
        }
        .check()
        .is_err());
    }
}
