//! `mlff train`: the training loop that ties the configuration, the data, the exact loss
//! gradient, the optimiser and the evaluation together.
//!
//! Outputs in the run directory, each written atomically: `model.mlff` (the blob of the best
//! validation epoch), `metrics.json` (test split), `learning_curve.csv` (one row per epoch),
//! `checkpoint.json` (everything `--resume` needs to continue bit-identically; a Ctrl-C
//! between two atomic writes leaves the previous checkpoint intact), `config.toml` (a copy)
//! and `plots/` (parity plots and error histograms of the test split).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::io::write_atomic;
use crate::predict::Predictor;
use crate::random::{fit_scaling, random_model, SplitMix64};
use crate::spec::ModelSpec;
use crate::train::config::OptimizerKind;
use crate::train::config::TrainConfig;
use crate::train::data::{load_splits, reference_energies, Dataset};
use crate::train::eval::{compare, write_metrics_json, Metrics};
use crate::train::grad::{
    energy_forces, loss_and_gradient_batch, loss_batch, params_from_spec, spec_with_params,
    CacheBuilder, LossWeights, StructureCache,
};
use crate::train::optim::{exact, Adam, Kalman, Lbfgs, LearningRate};
use crate::writer::write_blob;

/// Options of [`train_command`] from the command line.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Run directory (default: the configuration's).
    pub output: Option<PathBuf>,
    /// Continue from `checkpoint.json` in the run directory.
    pub resume: bool,
    /// Start afresh even if the run directory holds an earlier run (its files are replaced,
    /// each atomically, as the new run writes them).
    pub overwrite: bool,
    /// Hide the progress bar.
    pub quiet: bool,
}

/// Everything needed to continue a run exactly where it stopped.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    /// Epochs completed.
    epoch: usize,
    /// The model before training (descriptors, scaling, reference energies, initial weights).
    spec: ModelSpec,
    #[serde(with = "exact")]
    params: Vec<f64>,
    #[serde(with = "exact")]
    best_params: Vec<f64>,
    #[serde(with = "exact::option")]
    best_loss: Option<f64>,
    best_epoch: usize,
    optimizer: Optimizer,
    lr: LearningRate,
}

/// The optimiser and its state.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Optimizer {
    Adam(Adam),
    Lbfgs(Lbfgs),
    Kalman(Box<Kalman>),
}

/// Errors of one split, from the trainer's own evaluation.
#[derive(Clone, Copy, Debug, Default)]
struct SplitErrors {
    loss: f64,
    energy_rmse_per_atom: f64,
    force_rmse: f64,
}

/// Loss and RMSEs over `caches` with `params` (parallel over structures, ordered reduction).
fn split_errors(
    spec: &ModelSpec,
    params: &[f64],
    caches: &[StructureCache],
    w: LossWeights,
) -> SplitErrors {
    if caches.is_empty() {
        return SplitErrors::default();
    }
    let refs: Vec<&StructureCache> = caches.iter().collect();
    let loss = loss_batch(spec, params, &refs, w);
    let parts: Vec<(f64, usize, f64, usize)> = caches
        .par_iter()
        .map(|c| {
            let (e, f) = energy_forces(spec, params, c);
            let n = c.n_atoms();
            let de = c.energy_ref().map_or(0.0, |r| ((e - r) / n as f64).powi(2));
            let ne = usize::from(c.energy_ref().is_some());
            let (mut df, mut nf) = (0.0, 0);
            if let Some(fr) = c.forces_ref() {
                for (a, b) in f.iter().zip(fr) {
                    for k in 0..3 {
                        df += (a[k] - b[k]).powi(2);
                    }
                }
                nf = 3 * n;
            }
            (de, ne, df, nf)
        })
        .collect();
    let (mut se, mut ne, mut sf, mut nf) = (0.0, 0, 0.0, 0);
    for (a, b, c, d) in parts {
        se += a;
        ne += b;
        sf += c;
        nf += d;
    }
    SplitErrors {
        loss,
        energy_rmse_per_atom: (se / ne.max(1) as f64).sqrt(),
        force_rmse: (sf / nf.max(1) as f64).sqrt(),
    }
}

fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gib(b: usize) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Builds the descriptor caches of a split after checking that they fit in memory.
fn caches(builder: &CacheBuilder, ds: &Dataset, what: &str) -> Result<Vec<StructureCache>> {
    let structures: Vec<_> = ds.structures().cloned().collect();
    structures
        .par_iter()
        .enumerate()
        .map(|(k, s)| {
            builder
                .build(s)
                .with_context(|| format!("{what} structure {} ({})", k + 1, ds.origin(k)))
        })
        .collect()
}

/// The starting model: descriptors and network shape from the configuration, seeded random
/// weights, reference energies by least squares on the training split, feature scaling from it.
fn initial_model(cfg: &TrainConfig, train: &Dataset) -> Result<ModelSpec> {
    let set = cfg.descriptor_set()?;
    let mut spec = random_model(&set, cfg.training.seed);
    let fit = reference_energies(train, &cfg.species())?;
    for (s, e) in spec.species.iter_mut().zip(&fit.energies) {
        s.reference_energy = *e;
    }
    let structures: Vec<_> = train.structures().cloned().collect();
    fit_scaling(&mut spec, &structures).context("fitting feature scaling on the training split")?;
    spec.text = format!(
        "trained by mlff train from {}",
        cfg.source.as_deref().and_then(Path::file_name).map_or_else(
            || "a configuration".into(),
            |p| p.to_string_lossy().into_owned()
        )
    );
    Ok(spec)
}

/// `mlff train CONFIG [--output DIR] [--resume]`: returns the test-split metrics.
pub fn train_command(config: &Path, opts: &TrainOptions) -> Result<Metrics> {
    let cfg = TrainConfig::load(config)?;
    let dir = opts.output.clone().unwrap_or_else(|| cfg.output_dir());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.training.threads.unwrap_or(0))
        .build()?;
    pool.install(|| train_in(&cfg, config, &dir, opts))
}

fn train_in(cfg: &TrainConfig, config: &Path, dir: &Path, opts: &TrainOptions) -> Result<Metrics> {
    let splits = load_splits(cfg)?;
    let w = cfg.loss.weights();
    let ckpt_path = dir.join("checkpoint.json");
    let resumed: Option<Checkpoint> = if opts.resume {
        let text = std::fs::read_to_string(&ckpt_path)
            .with_context(|| format!("--resume: cannot read {}", ckpt_path.display()))?;
        Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a valid checkpoint", ckpt_path.display()))?,
        )
    } else {
        if ckpt_path.exists() && !opts.overwrite {
            bail!(
                "{} exists: pass --resume to continue that run, --overwrite to replace it, \
                 or choose another --output",
                ckpt_path.display()
            );
        }
        None
    };
    let spec = match &resumed {
        Some(c) => c.spec.clone(),
        None => initial_model(cfg, &splits.train)?,
    };
    // Memory: the descriptor Jacobians of every training and validation structure are cached.
    let builder = CacheBuilder::new(&spec)?;
    let mut need = 0usize;
    for ds in [&splits.train, &splits.validation] {
        for s in ds.structures() {
            need += builder.estimate_bytes(s)?;
        }
    }
    let avail = available_memory();
    eprintln!(
        "descriptor cache: {:.3} GiB for {} training + {} validation structures{}",
        gib(need),
        splits.train.len(),
        splits.validation.len(),
        avail.map_or(String::new(), |a| format!(
            " ({:.1} GiB available)",
            gib(a as usize)
        ))
    );
    if let Some(a) = avail {
        if need as f64 > 0.8 * a as f64 {
            bail!(
                "the descriptor cache needs {:.2} GiB but only {:.2} GiB of memory is available: \
                 use fewer structures, a shorter cutoff or fewer descriptors",
                gib(need),
                gib(a as usize)
            );
        }
    }
    let train = caches(&builder, &splits.train, "training")?;
    let valid = caches(&builder, &splits.validation, "validation")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if resumed.is_none() {
        let text =
            std::fs::read(config).with_context(|| format!("cannot read {}", config.display()))?;
        write_atomic(&dir.join("config.toml"), &text)?;
    }
    let n_params = params_from_spec(&spec).len();
    let mut state = match resumed {
        Some(c) => c,
        None => Checkpoint {
            epoch: 0,
            spec: spec.clone(),
            params: params_from_spec(&spec),
            best_params: params_from_spec(&spec),
            best_loss: None,
            best_epoch: 0,
            optimizer: match cfg.optimizer.kind {
                OptimizerKind::Adam => Optimizer::Adam(cfg.optimizer.adam(n_params)),
                OptimizerKind::Lbfgs => Optimizer::Lbfgs(cfg.optimizer.lbfgs(n_params)?),
                OptimizerKind::Kalman => {
                    let per_epoch = Kalman::expected_updates(
                        &cfg.optimizer.kalman,
                        train.iter().map(|c| c.n_atoms()),
                    );
                    Optimizer::Kalman(Box::new(cfg.optimizer.kalman(n_params, per_epoch)?))
                }
            },
            lr: LearningRate::new(cfg.optimizer.schedule())?,
        },
    };
    if state.params.len() != n_params {
        bail!(
            "{}: parameter count does not match the model",
            ckpt_path.display()
        );
    }
    let curve_path = dir.join("learning_curve.csv");
    let mut curve = if state.epoch == 0 {
        String::from("epoch,learning_rate,train_loss,train_energy_rmse_per_atom,train_force_rmse,validation_loss,validation_energy_rmse_per_atom,validation_force_rmse,seconds\n")
    } else {
        std::fs::read_to_string(&curve_path).unwrap_or_default()
    };
    let epochs = cfg.training.epochs;
    let bar = if opts.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(epochs as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} epoch {pos}/{len} {msg} [{elapsed}<{eta}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(state.epoch as u64);
    let batch = cfg.training.batch_size.max(1);
    let patience = cfg.training.early_stopping_patience;
    while state.epoch < epochs {
        let start = std::time::Instant::now();
        // A fresh, seeded shuffle per epoch: resuming reproduces it exactly.
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng =
            SplitMix64::new(cfg.training.seed ^ (state.epoch as u64).wrapping_mul(0x9E37_79B9));
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let lr = state.lr.lr();
        match &mut state.optimizer {
            Optimizer::Adam(adam) => {
                for chunk in order.chunks(batch) {
                    let refs: Vec<&StructureCache> = chunk.iter().map(|&i| &train[i]).collect();
                    let (_, grad) = loss_and_gradient_batch(&spec, &state.params, &refs, w);
                    adam.step(&mut state.params, &grad, lr);
                }
            }
            Optimizer::Lbfgs(opt) => {
                // Full batch: the shuffle does not matter, the learning rate is not used.
                let refs: Vec<&StructureCache> = train.iter().collect();
                for _ in 0..cfg.optimizer.lbfgs.max_iterations_per_epoch.max(1) {
                    if opt.is_done() {
                        break;
                    }
                    opt.step(&mut state.params, |q| {
                        loss_and_gradient_batch(&spec, q, &refs, w)
                    })?;
                }
            }
            Optimizer::Kalman(kf) => {
                for &i in &order {
                    kf.train_structure(&spec, &mut state.params, &train[i], &mut rng)?;
                }
            }
        }
        let tr = split_errors(&spec, &state.params, &train, w);
        let va = split_errors(&spec, &state.params, &valid, w);
        let monitored = if valid.is_empty() { tr.loss } else { va.loss };
        if !monitored.is_finite() {
            bail!(
                "epoch {}: the loss is not finite ({monitored}); lower the learning rate",
                state.epoch + 1
            );
        }
        state.epoch += 1;
        if state.best_loss.is_none_or(|b| monitored < b) {
            state.best_loss = Some(monitored);
            state.best_params = state.params.clone();
            state.best_epoch = state.epoch;
        }
        state.lr.end_epoch(monitored);
        let secs = start.elapsed().as_secs_f64();
        curve.push_str(&format!(
            "{},{:e},{:e},{:e},{:e},{:e},{:e},{:e},{:.3}\n",
            state.epoch,
            lr,
            tr.loss,
            tr.energy_rmse_per_atom,
            tr.force_rmse,
            va.loss,
            va.energy_rmse_per_atom,
            va.force_rmse,
            secs
        ));
        write_atomic(&curve_path, curve.as_bytes())?;
        if cfg
            .training
            .checkpoint_every
            .is_none_or(|k| state.epoch % k.max(1) == 0 || state.epoch == epochs)
        {
            write_atomic(&ckpt_path, serde_json::to_string(&state)?.as_bytes())?;
        }
        bar.set_position(state.epoch as u64);
        bar.set_message(format!(
            "train E {:.2} meV/atom F {:.1} meV/Å | val E {:.2} F {:.1} | lr {lr:.1e}",
            1e3 * tr.energy_rmse_per_atom,
            1e3 * tr.force_rmse,
            1e3 * va.energy_rmse_per_atom,
            1e3 * va.force_rmse
        ));
        if patience.is_some_and(|p| state.epoch - state.best_epoch >= p) {
            bar.println(format!(
                "early stop after epoch {}: no validation improvement since epoch {}",
                state.epoch, state.best_epoch
            ));
            break;
        }
    }
    write_atomic(&ckpt_path, serde_json::to_string(&state)?.as_bytes())?;
    bar.finish_and_clear();
    // Export the best epoch and check that the core predicts what the trainer computed.
    let best = spec_with_params(&spec, &state.best_params);
    let blob = write_blob(&best, cfg.output.precision)?;
    let check = write_blob(&best, crate::writer::Precision::F64)?;
    let predictor = Predictor::new(&check)?;
    for (k, c) in train.iter().enumerate().take(8) {
        let (e, _) = energy_forces(&spec, &state.best_params, c);
        let s = splits
            .train
            .structures()
            .nth(k)
            .ok_or_else(|| anyhow!("internal: structure {k}"))?;
        let p = predictor.predict(s, crate::writer::Precision::F64)?;
        if (p.energy - e).abs() > 1e-12 * e.abs().max(1.0) {
            bail!(
                "internal error: the exported model predicts {} eV where training computed {e} eV",
                p.energy
            );
        }
    }
    write_atomic(&dir.join("model.mlff"), &blob)?;
    let test = if splits.test.is_empty() {
        &splits.validation
    } else {
        &splits.test
    };
    let cmp = compare(
        &Predictor::new(&blob)?,
        test,
        cfg.output.precision,
        cfg.training.threads,
    )?;
    let metrics = cmp.metrics();
    write_metrics_json(&dir.join("metrics.json"), &metrics)?;
    if cfg.output.plots {
        cmp.write_plots(&dir.join("plots"))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "best epoch {} of {}; wrote {}\n{}",
        state.best_epoch,
        state.epoch,
        dir.join("model.mlff").display(),
        metrics.table()
    )?;
    Ok(metrics)
}
