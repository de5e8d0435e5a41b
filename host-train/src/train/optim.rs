//! The optimiser: Adam (Kingma & Ba 2015, Algorithm 1) and learning-rate schedules (constant,
//! exponential decay per epoch, reduce on plateau).
//!
//! Everything here is plain element-wise f64 arithmetic in a fixed order, so a run is
//! reproducible to the last bit, and every piece of state derives serde for checkpoints. The
//! moment vectors are serialised as the hexadecimal bit patterns of their f64 values
//! ([`exact`]), so a checkpoint restores them exactly whatever the format's float parser does
//! (serde_json's default parser is not guaranteed to round-trip every f64); the learning rate
//! is recomputed from integers (epoch, number of reductions) rather than stored.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

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
