//! Full-batch L-BFGS ([`Lbfgs`]): the Rosenbrock function (2-D and 10-D), a checkpoint that
//! resumes bit for bit, and a student network fitted to a random teacher (the setup of
//! `train_grad.rs`).

use mlff_train::predict::Predictor;
use mlff_train::random::{fit_scaling, generated_set, random_model};
use mlff_train::spec::{ActivationSpec, ModelSpec};
use mlff_train::structure::Structure;
use mlff_train::train::grad::{
    build_caches, loss_and_gradient_batch, loss_batch, params_from_spec, LossWeights,
    StructureCache,
};
use mlff_train::train::optim::{Lbfgs, LbfgsSettings, LbfgsStatus};
use mlff_train::writer::{write_blob, Precision};

/// Tolerances, in one place.
mod common;
use common::*;

mod tol {
    /// Distance of the Rosenbrock solution from (1, …, 1).
    pub const ROSENBROCK_X: f64 = 1e-6;
    /// Iterations allowed on Rosenbrock (Nocedal & Wright report ~35 for 2-D from (−1.2, 1)).
    pub const ROSENBROCK_ITERATIONS: usize = 200;
    /// Teacher-student: the loss must fall by this factor...
    pub const FIT_FACTOR: f64 = 100.0;
    /// ...within this many iterations.
    pub const FIT_ITERATIONS: usize = 100;
}

/// Extended Rosenbrock: Σ_k 100 (x_{2k+1} − x_{2k}²)² + (1 − x_{2k})², minimum 0 at (1, …, 1).
fn rosenbrock(x: &[f64]) -> (f64, Vec<f64>) {
    let mut f = 0.0;
    let mut g = vec![0.0; x.len()];
    for k in (0..x.len()).step_by(2) {
        let (a, b) = (x[k], x[k + 1]);
        let t = b - a * a;
        f += 100.0 * t * t + (1.0 - a) * (1.0 - a);
        g[k] += -400.0 * t * a - 2.0 * (1.0 - a);
        g[k + 1] += 200.0 * t;
    }
    (f, g)
}

fn minimise(x0: &[f64], settings: LbfgsSettings, max: usize) -> (Vec<f64>, Lbfgs) {
    let mut x = x0.to_vec();
    let mut opt = Lbfgs::new(x.len(), settings).unwrap();
    for _ in 0..max {
        if opt.is_done() {
            break;
        }
        opt.step(&mut x, rosenbrock).unwrap();
    }
    (x, opt)
}

#[test]
fn lbfgs_minimises_rosenbrock() {
    let settings = LbfgsSettings {
        gradient_tolerance: 1e-10,
        ..LbfgsSettings::default()
    };
    let x0: Vec<f64> = [-1.2, 1.0].repeat(5);
    for start in [&x0[..2], &x0[..]] {
        let (x, opt) = minimise(start, settings, tol::ROSENBROCK_ITERATIONS);
        let err = x.iter().fold(0.0f64, |m, v| m.max((v - 1.0).abs()));
        eprintln!(
            "Rosenbrock {}-D: {:?} after {} iterations, {} evaluations, |x − 1| = {err:.1e}",
            start.len(),
            opt.status(),
            opt.iterations(),
            opt.evaluations()
        );
        assert_eq!(opt.status(), LbfgsStatus::Converged);
        assert!(err < tol::ROSENBROCK_X, "{x:?}");
        assert!(opt.pairs() <= settings.memory);
    }
    // A converged run stays put.
    let (mut x, mut opt) = minimise(&x0[..2], settings, tol::ROSENBROCK_ITERATIONS);
    let before = x.clone();
    let f = opt.step(&mut x, rosenbrock).unwrap();
    assert_eq!(x, before);
    assert_eq!(f, rosenbrock(&x).0);
}

#[test]
fn lbfgs_survives_bad_points_and_bad_input() {
    // A loss that is infinite beyond |x| > 2: the line search must back off.
    let walled = |x: &[f64]| {
        if x.iter().any(|v| v.abs() > 2.0) {
            (f64::INFINITY, vec![f64::NAN; x.len()])
        } else {
            rosenbrock(x)
        }
    };
    let mut x = vec![-1.2, 1.0];
    let mut opt = Lbfgs::new(2, LbfgsSettings::default()).unwrap();
    for _ in 0..200 {
        if opt.is_done() {
            break;
        }
        opt.step(&mut x, walled).unwrap();
    }
    assert!(
        (x[0] - 1.0).abs() < 1e-5 && (x[1] - 1.0).abs() < 1e-5,
        "{x:?}"
    );
    // Wrong lengths and a non-finite start are errors, not panics.
    let mut opt = Lbfgs::new(3, LbfgsSettings::default()).unwrap();
    assert!(opt.step(&mut [0.0, 0.0], rosenbrock).is_err());
    let mut opt = Lbfgs::new(2, LbfgsSettings::default()).unwrap();
    assert!(opt
        .step(&mut [0.0, 0.0], |_: &[f64]| (f64::NAN, vec![0.0; 2]))
        .is_err());
    assert!(Lbfgs::new(
        2,
        LbfgsSettings {
            memory: 0,
            ..LbfgsSettings::default()
        }
    )
    .is_err());
    assert!(LbfgsSettings {
        c1: 0.9,
        c2: 0.1,
        ..LbfgsSettings::default()
    }
    .check()
    .is_err());
}

#[test]
fn lbfgs_checkpoint_resumes_bit_for_bit() {
    let run = |steps: usize, opt: &mut Lbfgs, x: &mut Vec<f64>| {
        for _ in 0..steps {
            opt.step(x, rosenbrock).unwrap();
        }
    };
    let x0: Vec<f64> = [-1.2, 1.0, 0.3, -0.4].to_vec();
    let settings = LbfgsSettings {
        memory: 3,
        ..LbfgsSettings::default()
    };
    let (mut a, mut x) = (Lbfgs::new(4, settings).unwrap(), x0.clone());
    run(15, &mut a, &mut x);
    let (mut b, mut y) = (Lbfgs::new(4, settings).unwrap(), x0);
    run(6, &mut b, &mut y);
    let json = serde_json::to_string(&b).unwrap();
    let mut b: Lbfgs = serde_json::from_str(&json).unwrap();
    run(9, &mut b, &mut y);
    assert_eq!(a, b);
    assert_eq!(
        x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(b.pairs(), 3);
}

// --- teacher-student, as in train_grad.rs ---------------------------------------------------

fn model(seed: u64) -> ModelSpec {
    let set = generated_set(&["H", "O"], RC, 2, 1, &[6, 5], ActivationSpec::Tanh).unwrap();
    let mut spec = random_model(&set, seed);
    fit_scaling(&mut spec, &[cluster(0, 8, 0.0, 1)]).unwrap();
    spec.energy_scale = 0.8;
    spec.energy_shift = -0.05;
    spec.species[0].reference_energy = -0.4;
    spec.species[1].reference_energy = -2.1;
    spec
}

#[test]
fn lbfgs_fits_a_student_to_a_teacher() {
    let teacher = model(1);
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
    let mut student = model(2);
    for (s, t) in student.species.iter_mut().zip(&teacher.species) {
        s.scaling = t.scaling.clone();
    }
    let caches = build_caches(&student, &structures).unwrap();
    let refs: Vec<&StructureCache> = caches.iter().collect();
    let w = LossWeights {
        energy: 1.0,
        force: 1.0,
    };
    let mut p = params_from_spec(&student);
    let first = loss_batch(&student, &p, &refs, w);
    let mut opt = Lbfgs::new(p.len(), LbfgsSettings::default()).unwrap();
    let mut fin = first;
    let mut iterations = 0;
    while iterations < tol::FIT_ITERATIONS && fin > first / tol::FIT_FACTOR {
        let before = fin;
        fin = opt
            .step(&mut p, |q| loss_and_gradient_batch(&student, q, &refs, w))
            .unwrap();
        assert!(fin <= before, "L-BFGS increased the loss {before} -> {fin}");
        iterations += 1;
    }
    assert_eq!(fin, loss_batch(&student, &p, &refs, w));
    eprintln!(
        "teacher-student L-BFGS: loss {first:.3e} -> {fin:.3e} in {iterations} iterations, \
         {} evaluations ({} parameters)",
        opt.evaluations(),
        p.len()
    );
    assert!(
        fin <= first / tol::FIT_FACTOR,
        "loss {first} -> {fin} in {iterations} iterations"
    );
}
