//! n2p2's extended Kalman filter ([`Kalman`]) and the Jacobian rows it needs: energy and force
//! Jacobians against central finite differences, the filter against exact least squares on a
//! linear problem, a checkpoint that resumes bit for bit, and a student network fitted to a
//! random teacher (the setup of `train_grad.rs`).

use mlff_train::predict::Predictor;
use mlff_train::random::{fit_scaling, generated_set, random_model, SplitMix64};
use mlff_train::spec::{ActivationSpec, ModelSpec};
use mlff_train::structure::Structure;
use mlff_train::train::grad::{
    build_caches, energy_forces, energy_jacobian, force_jacobian, params_from_spec, StructureCache,
};
use mlff_train::train::optim::{Kalman, KalmanSettings, KalmanType, Observation};
use mlff_train::writer::{write_blob, Precision};

/// Tolerances, in one place.
mod common;
use common::*;

mod tol {
    /// Jacobian vs. five-point central differences, relative to the component...
    pub const JAC_REL: f64 = 1e-6;
    /// ...with this floor relative to the largest component of the row.
    pub const JAC_FLOOR: f64 = 1e-8;
    /// The finite-difference step (as train_grad.rs).
    pub const FD_STEP: f64 = 3e-3;
    /// The filter on a linear problem vs. the exact least-squares solution.
    pub const LINEAR: f64 = 1e-6;
    /// Teacher-student: energy and force RMSE must fall at least by this factor.
    pub const FIT_FACTOR: f64 = 5.0;
}

fn model(act: ActivationSpec, seed: u64) -> ModelSpec {
    let set = generated_set(&["H", "O"], RC, 2, 1, &[6, 5], act).unwrap();
    let mut spec = random_model(&set, seed);
    fit_scaling(&mut spec, &[cluster(0, 8, 0.0, 1), small_cell()]).unwrap();
    spec.energy_scale = 0.8;
    spec.energy_shift = -0.05;
    spec.species[0].reference_energy = -0.4;
    spec.species[1].reference_energy = -2.1;
    spec
}

/// Five-point central difference of `f` at 0.
fn derivative(f: impl Fn(f64) -> f64, h: f64) -> f64 {
    (8.0 * (f(h) - f(-h)) - (f(2.0 * h) - f(-2.0 * h))) / (12.0 * h)
}

/// Checks the row `row` of the observation `value(params)` against finite differences on
/// every third parameter and the last ten.
fn check_row(p: &[f64], row: &[f64], value: impl Fn(&[f64]) -> f64, what: &str) {
    let rmax = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(rmax > 0.0, "{what}: zero row");
    let sample = (0..p.len()).step_by(3).chain(p.len() - 10..p.len());
    for k in sample {
        let at = |t: f64| {
            let mut q = p.to_vec();
            q[k] += t;
            value(&q)
        };
        let fd = derivative(at, tol::FD_STEP);
        let allowed = tol::JAC_REL * row[k].abs() + tol::JAC_FLOOR * rmax;
        assert!(
            (fd - row[k]).abs() <= allowed,
            "{what}: parameter {k}: analytic {} vs finite difference {fd}",
            row[k]
        );
    }
}

#[test]
fn jacobian_rows_match_finite_differences() {
    for (act, seed) in [(ActivationSpec::Tanh, 3), (ActivationSpec::Softplus, 4)] {
        let spec = model(act, seed);
        let p = params_from_spec(&spec);
        let systems = [cluster(3, 3, 0.1, 5), small_cell()];
        let caches = build_caches(&spec, &systems).unwrap();
        for (s, cache) in systems.iter().zip(&caches) {
            let (e, f) = energy_forces(&spec, &p, cache);
            let (e1, row) = energy_jacobian(&spec, &p, cache);
            assert_eq!(e1.to_bits(), e.to_bits());
            let what = format!("{act:?} {}: energy", s.comment);
            check_row(&p, &row, |q| energy_forces(&spec, q, cache).0, &what);
            let fmax = f.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
            for (atom, component) in [(0, 0), (1, 2), (4, 1), (5, 0)] {
                let (fc, row) = force_jacobian(&spec, &p, cache, atom, component);
                assert!(
                    (fc - f[atom][component]).abs() <= 1e-12 * fmax,
                    "force {fc} vs {}",
                    f[atom][component]
                );
                let what = format!("{act:?} {}: F[{atom}][{component}]", s.comment);
                check_row(
                    &p,
                    &row,
                    |q| energy_forces(&spec, q, cache).1[atom][component],
                    &what,
                );
            }
        }
    }
}

/// Observations y = a·x of a linear model with known a: with q = 0 and constant η the
/// standard filter is recursive least squares with prior θ ~ N(0, I/ε), so it must recover a.
#[test]
fn kalman_solves_a_linear_problem() {
    let n = 6;
    let truth: Vec<f64> = (0..n).map(|k| 0.5 - 0.3 * k as f64).collect();
    let mut rng = SplitMix64::new(7);
    for (kind, group) in [
        (KalmanType::Standard, 1),
        (KalmanType::Standard, 3),
        (KalmanType::FadingMemory, 1),
        (KalmanType::FadingMemory, 4),
    ] {
        let settings = KalmanSettings {
            kind,
            epsilon: 1e-6,
            q0: 0.0,
            q_min: 0.0,
            eta: 1e6,
            eta_max: 1e6,
            ..KalmanSettings::default()
        };
        let mut kf = Kalman::new(n, settings, 10).unwrap();
        let mut theta = vec![0.0; n];
        for _ in 0..40 {
            let h: Vec<f64> = (0..group * n).map(|_| rng.symmetric(1.0)).collect();
            let xi: Vec<f64> = h
                .chunks_exact(n)
                .map(|row| {
                    let y: f64 = row.iter().zip(&truth).map(|(a, b)| a * b).sum();
                    let pred: f64 = row.iter().zip(&theta).map(|(a, b)| a * b).sum();
                    y - pred
                })
                .collect();
            kf.update(&mut theta, &h, &xi).unwrap();
        }
        let err = theta
            .iter()
            .zip(&truth)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < tol::LINEAR, "{kind:?} groups of {group}: error {err}");
        // P stays exactly symmetric.
        let pm = kf.covariance();
        for i in 0..n {
            for j in 0..i {
                assert_eq!(pm[i * n + j].to_bits(), pm[j * n + i].to_bits());
            }
        }
        assert_eq!(kf.updates(), 40);
    }
}

#[test]
fn kalman_annealing_and_limits() {
    let s = KalmanSettings::default();
    let mut kf = Kalman::new(3, s, 4).unwrap();
    assert_eq!(kf.q(), 0.01);
    assert_eq!(kf.eta(), 0.01);
    let mut theta = vec![0.0; 3];
    for _ in 0..4 {
        kf.update(&mut theta, &[1.0, 0.0, 0.0], &[0.1]).unwrap();
    }
    // One epoch: q and η one order of magnitude (2.302 ≈ ln 10) down and up.
    assert!((kf.q() / 1e-3 - 1.0).abs() < 1e-3, "{}", kf.q());
    assert!((kf.eta() / 0.1 - 1.0).abs() < 1e-3, "{}", kf.eta());
    assert!((kf.lambda() - (1.0 - 0.04 * 0.99871f64.powi(4))).abs() < 1e-15);
    // Bounds after many epochs.
    kf.set_updates_per_epoch(1);
    for _ in 0..20 {
        kf.update(&mut theta, &[0.0, 1.0, 0.0], &[0.0]).unwrap();
    }
    assert_eq!(kf.q(), 1e-6);
    assert_eq!(kf.eta(), 1.0);
    // Refusals: too many parameters (with the memory), bad constants, bad lengths.
    let err = Kalman::new(20_001, s, 1).unwrap_err().to_string();
    assert!(
        err.contains("3.20 GB") && err.contains("max_parameters"),
        "{err}"
    );
    let bad = KalmanSettings {
        nu: 1.5,
        ..KalmanSettings::default()
    };
    assert!(Kalman::new(3, bad, 1)
        .unwrap_err()
        .to_string()
        .contains("nu"));
    assert!(kf.update(&mut theta, &[1.0, 0.0], &[0.1]).is_err());
    assert!(kf
        .update(&mut theta, &[f64::NAN, 0.0, 0.0], &[0.1])
        .is_err());
    assert_eq!(Kalman::memory_bytes(1000), 8_000_000);
    assert_eq!(Kalman::expected_updates(&s, [100, 200]), 6);
}

/// RMSE of the energy per atom and of the force components over `caches`.
fn rmse(spec: &ModelSpec, p: &[f64], caches: &[StructureCache]) -> (f64, f64) {
    let (mut se, mut sf, mut nf) = (0.0, 0.0, 0usize);
    for c in caches {
        let (e, f) = energy_forces(spec, p, c);
        let n = c.n_atoms() as f64;
        se += ((e - c.energy_ref().unwrap()) / n).powi(2);
        for (a, b) in f
            .iter()
            .flatten()
            .zip(c.forces_ref().unwrap().iter().flatten())
        {
            sf += (a - b).powi(2);
            nf += 1;
        }
    }
    ((se / caches.len() as f64).sqrt(), (sf / nf as f64).sqrt())
}

#[test]
fn kalman_fits_a_student_to_a_teacher() {
    let teacher = model(ActivationSpec::Tanh, 1);
    let predictor = Predictor::new(&write_blob(&teacher, Precision::F64).unwrap()).unwrap();
    let structures: Vec<Structure> = (0..8)
        .map(|k| {
            let mut s = cluster(8 * k, 4, 0.2, 300 + k as u64);
            let p = predictor.predict(&s, Precision::F64).unwrap();
            s.energy = Some(p.energy);
            s.forces = p.forces;
            s
        })
        .collect();
    let mut student = model(ActivationSpec::Tanh, 2);
    for (s, t) in student.species.iter_mut().zip(&teacher.species) {
        s.scaling = t.scaling.clone();
    }
    let caches = build_caches(&student, &structures).unwrap();
    let mut p = params_from_spec(&student);
    let (e0, f0) = rmse(&student, &p, &caches);
    // n2p2's constants, but a larger force fraction: 12-atom structures would otherwise see
    // almost no force updates.
    let settings = KalmanSettings {
        force_fraction: 0.1,
        ..KalmanSettings::default()
    };
    let per_epoch = Kalman::expected_updates(&settings, caches.iter().map(|c| c.n_atoms()));
    let mut kf = Kalman::new(p.len(), settings, per_epoch).unwrap();
    let mut rng = SplitMix64::new(42);
    let epochs = 5;
    let mut curve = Vec::new();
    for epoch in 0..epochs {
        let mut order: Vec<usize> = (0..caches.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            kf.train_structure(&student, &mut p, &caches[i], &mut rng)
                .unwrap();
        }
        let (e, f) = rmse(&student, &p, &caches);
        curve.push(format!("epoch {}: E {e:.2e} F {f:.2e}", epoch + 1));
    }
    let (e1, f1) = rmse(&student, &p, &caches);
    eprintln!(
        "teacher-student Kalman ({} parameters, {} updates, {per_epoch} per epoch): \
         energy RMSE {e0:.3e} -> {e1:.3e} eV/atom, force RMSE {f0:.3e} -> {f1:.3e} eV/Å\n  {}",
        p.len(),
        kf.updates(),
        curve.join("\n  ")
    );
    assert!(e1 < e0 / tol::FIT_FACTOR, "energy RMSE {e0} -> {e1}");
    assert!(f1 < f0 / tol::FIT_FACTOR, "force RMSE {f0} -> {f1}");

    // A checkpoint resumes bit for bit.
    let json = serde_json::to_string(&kf).unwrap();
    let mut kf2: Kalman = serde_json::from_str(&json).unwrap();
    assert_eq!(kf2, kf);
    let (mut p1, mut p2) = (p.clone(), p.clone());
    let (mut r1, mut r2) = (SplitMix64::new(5), SplitMix64::new(5));
    for c in &caches[..2] {
        kf.train_structure(&student, &mut p1, c, &mut r1).unwrap();
        kf2.train_structure(&student, &mut p2, c, &mut r2).unwrap();
    }
    assert_eq!(kf2, kf);
    assert_eq!(
        p1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        p2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // No reference, no update.
    let bare = Structure {
        energy: None,
        forces: Vec::new(),
        ..structures[0].clone()
    };
    let bare = build_caches(&student, &[bare]).unwrap().remove(0);
    let before = kf.updates();
    assert_eq!(
        kf.observe(&student, &mut p1, &bare, Observation::Energy)
            .unwrap(),
        None
    );
    assert_eq!(kf.updates(), before);
}

#[test]
fn kalman_and_lbfgs_configuration() {
    use mlff_train::train::config::{OptimizerKind, TrainConfig};
    let base =
        "[data]\nfiles = [\"a.extxyz\"]\n\n[model]\nelements = [\"H\", \"O\"]\ncutoff = 5.0\n\
                [model.descriptors.generated]\nradial = 4\n";
    let text = format!(
        "{base}\n[optimizer]\nkind = \"kalman\"\n[optimizer.kalman]\ntype = \"fading_memory\"\n\
         force_fraction = 0.05\n"
    );
    let cfg = TrainConfig::parse(&text, "k.toml").unwrap();
    assert_eq!(cfg.optimizer.kind, OptimizerKind::Kalman);
    assert_eq!(cfg.optimizer.kalman.kind, KalmanType::FadingMemory);
    assert_eq!(cfg.optimizer.kalman.force_fraction, 0.05);
    assert_eq!(cfg.optimizer.kalman.nu, 0.99871);
    assert!(cfg.optimizer.kalman(100, 10).is_ok());
    let err = format!("{:#}", cfg.optimizer.kalman(30_000, 10).unwrap_err());
    assert!(
        err.contains("optimizer.kalman") && err.contains("7.20 GB"),
        "{err}"
    );
    let text = format!("{base}\n[optimizer]\nkind = \"lbfgs\"\n[optimizer.lbfgs]\nmemory = 5\n");
    let cfg = TrainConfig::parse(&text, "l.toml").unwrap();
    assert_eq!(cfg.optimizer.lbfgs(7).unwrap().settings.memory, 5);
    for (extra, want) in [
        ("[optimizer.kalman]\nnu = 1.5\n", "`optimizer.kalman.nu`"),
        ("[optimizer.kalman]\nlamda = 0.9\n", "lamda"),
        (
            "[optimizer.lbfgs]\nmemory = 0\n",
            "`optimizer.lbfgs.memory`",
        ),
    ] {
        let err = format!(
            "{:#}",
            TrainConfig::parse(&format!("{base}{extra}"), "bad.toml").unwrap_err()
        );
        assert!(err.contains(want) && err.contains("bad.toml:"), "{err}");
    }
}
