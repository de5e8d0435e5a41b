//! The training mathematics against independent references: the loss gradient against central
//! finite differences of the loss, energies and forces against `mlff-core` (through
//! `Predictor`), thread-count independence of the batch gradient, and Adam fitting a student
//! network to a random teacher.

use mlff_train::predict::Predictor;
use mlff_train::random::{fit_scaling, generated_set, random_model, SplitMix64};
use mlff_train::spec::{ActivationSpec, CutoffSpec, DescriptorSpec, KindSpec, ModelSpec};
use mlff_train::structure::Structure;
use mlff_train::train::grad::{
    build_caches, energy_forces, loss, loss_and_gradient, loss_and_gradient_batch, loss_batch,
    params_from_spec, spec_with_params, CacheBuilder, LossWeights, StructureCache,
};
use mlff_train::train::optim::{Adam, LearningRate, Schedule};
use mlff_train::writer::{write_blob, Precision};

/// Tolerances, in one place.
mod common;
use common::*;

mod tol {
    /// Analytic gradient vs. five-point central differences, relative to the component...
    pub const GRAD_REL: f64 = 1e-6;
    /// ...with this floor relative to the largest gradient component...
    pub const GRAD_FLOOR: f64 = 1e-9;
    /// ...and this one, in units of the difference quotient's rounding error ε·L/h (a
    /// component far below it cannot be resolved by finite differences at all).
    pub const FD_ROUNDING: f64 = 16.0;
    /// The finite-difference step: the five-point stencil's truncation error (~h⁴) and its
    /// rounding error (~1e-16·L/h) are both below 1e-13 here; 1e-4 is already rounding-bound.
    pub const FD_STEP: f64 = 3e-3;
    /// Forces vs. the core, relative to the largest force (the chain rule sums in another
    /// order; energies must agree bit for bit).
    pub const FORCE_REL: f64 = 1e-12;
}

/// Arbitrary references, far enough from any model that every residual is of order one.
fn with_references(mut s: Structure, seed: u64) -> Structure {
    let mut rng = SplitMix64::new(seed);
    s.energy = Some(-1.5 * s.positions.len() as f64 + rng.symmetric(1.0));
    s.forces = (0..s.positions.len())
        .map(|_| [rng.symmetric(1.0), rng.symmetric(1.0), rng.symmetric(1.0)])
        .collect();
    s
}

/// A 2-species model (H, O) with G2, G4 and G5 functions, random weights, fitted scaling,
/// non-trivial energy scale, shift and reference energies.
fn model(act: ActivationSpec, normalize: bool, seed: u64) -> ModelSpec {
    let mut set = generated_set(&["H", "O"], RC, 2, 1, &[6, 5], act).unwrap();
    for d in &mut set.descriptors {
        for (e1, e2) in [(0, 0), (0, 1), (1, 1)] {
            d.push(DescriptorSpec {
                kind: KindSpec::G5,
                e1,
                e2,
                eta: 0.05,
                zeta: 2.0,
                lambda: -1.0,
                rc: 3.5,
                cutoff: CutoffSpec::Poly2,
                ..Default::default()
            });
        }
    }
    set.normalize = normalize;
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

/// Checks the gradient of `cache`'s loss against finite differences on a sample of
/// parameters (every output-layer parameter and a stride through the rest); returns the
/// largest fraction of the tolerance used.
fn check_gradient(spec: &ModelSpec, cache: &StructureCache, w: LossWeights, what: &str) -> f64 {
    let p = params_from_spec(spec);
    let (l0, g) = loss_and_gradient(spec, &p, cache, w);
    assert_eq!(l0, loss(spec, &p, cache, w), "{what}: loss differs");
    assert!(l0 > 1e-3, "{what}: loss {l0} too small to test");
    let gmax = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let n0 = spec.species[0]
        .layers
        .iter()
        .map(|l| l.weights.len() + l.biases.len())
        .sum::<usize>();
    let last0 = n0 - 6..n0;
    let last1 = p.len() - 6..p.len();
    let sample: Vec<usize> = (0..p.len()).step_by(7).chain(last0).chain(last1).collect();
    let rounding = tol::FD_ROUNDING * f64::EPSILON * l0 / tol::FD_STEP;
    let mut worst = 0.0f64;
    for &k in &sample {
        let at = |t: f64| {
            let mut q = p.clone();
            q[k] += t;
            loss(spec, &q, cache, w)
        };
        let fd = derivative(at, tol::FD_STEP);
        let err = (fd - g[k]).abs();
        let allowed = tol::GRAD_REL * g[k].abs() + tol::GRAD_FLOOR * gmax + rounding;
        assert!(
            err <= allowed,
            "{what}: parameter {k}: analytic {} vs finite difference {fd} (loss {l0})",
            g[k]
        );
        worst = worst.max(err / allowed);
    }
    worst
}

#[test]
fn loss_gradient_matches_finite_differences() {
    let systems = [
        with_references(cluster(0, 3, 0.1, 3), 5),
        with_references(small_cell(), 6),
    ];
    let weights = [
        LossWeights {
            energy: 1.0,
            force: 0.0,
        },
        LossWeights {
            energy: 0.0,
            force: 1.0,
        },
        LossWeights {
            energy: 0.7,
            force: 3.0,
        },
    ];
    let cases = [
        (ActivationSpec::Tanh, false),
        (ActivationSpec::Softplus, false),
        (ActivationSpec::ShiftedSoftplus, false),
        (ActivationSpec::Silu, false),
        (ActivationSpec::Logistic, false),
        (ActivationSpec::Tanh, true),
        (ActivationSpec::Gaussian, true),
    ];
    let mut worst = 0.0f64;
    for (k, &(act, normalize)) in cases.iter().enumerate() {
        let spec = model(act, normalize, 100 + k as u64);
        let caches = build_caches(&spec, &systems).unwrap();
        for (s, cache) in systems.iter().zip(&caches) {
            for w in weights {
                let what = format!("{act:?} normalize={normalize} {} {w:?}", s.comment);
                worst = worst.max(check_gradient(&spec, cache, w, &what));
            }
        }
    }
    eprintln!("gradient vs finite differences: at most {worst:.2} of the tolerance");
}

#[test]
fn energy_and_forces_agree_with_the_core() {
    for (act, normalize) in [
        (ActivationSpec::Tanh, false),
        (ActivationSpec::Silu, true),
        (ActivationSpec::ShiftedSoftplus, false),
    ] {
        let spec = model(act, normalize, 7);
        let p = params_from_spec(&spec);
        assert_eq!(spec_with_params(&spec, &p), spec);
        let predictor = Predictor::new(&write_blob(&spec, Precision::F64).unwrap()).unwrap();
        let builder = CacheBuilder::new(&spec).unwrap();
        for s in [cluster(2, 5, 0.1, 9), small_cell(), water64()] {
            let cache = builder.build(&s).unwrap();
            let est = builder.estimate_bytes(&s).unwrap();
            assert!(
                est >= cache.bytes(),
                "{}: estimate {est} < {}",
                s.comment,
                cache.bytes()
            );
            let (e, f) = energy_forces(&spec, &p, &cache);
            let want = predictor.predict(&s, Precision::F64).unwrap();
            assert_eq!(
                e.to_bits(),
                want.energy.to_bits(),
                "{act:?} {}: energy {e} vs core {}",
                s.comment,
                want.energy
            );
            let fmax = want
                .forces
                .iter()
                .flatten()
                .fold(0.0f64, |m, x| m.max(x.abs()));
            let dmax = f
                .iter()
                .flatten()
                .zip(want.forces.iter().flatten())
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                dmax <= tol::FORCE_REL * fmax,
                "{act:?} {}: forces differ by {dmax:e} (max force {fmax})",
                s.comment
            );
            if s.positions.len() == 192 && act == ActivationSpec::Tanh {
                let nf: usize = cache.n_features().iter().sum::<usize>() / 2;
                eprintln!(
                    "water64, rc {RC} Å, {nf} features: cache {} bytes ({} rows), estimate {est}, \
                     max force deviation {:.1e} relative",
                    cache.bytes(),
                    cache.jacobian_rows(),
                    dmax / fmax
                );
            }
        }
    }
}

#[test]
fn open_axes_are_open_in_the_training_cache() {
    // The thin triclinic cell with its third axis open (a slab, extended XYZ pbc="T T F"): the
    // cache sees no images across that axis, as the core does, and differs from the periodic
    // cell (atoms see images within the cutoff across it).
    let spec = model(ActivationSpec::Tanh, false, 7);
    let p = params_from_spec(&spec);
    let predictor = Predictor::new(&write_blob(&spec, Precision::F64).unwrap()).unwrap();
    let builder = CacheBuilder::new(&spec).unwrap();
    let bulk = small_cell();
    let slab = Structure {
        open: [false, false, true],
        ..bulk.clone()
    };
    assert_eq!(slab.pbc(), [true, true, false]);
    let (e_slab, _) = energy_forces(&spec, &p, &builder.build(&slab).unwrap());
    let (e_bulk, _) = energy_forces(&spec, &p, &builder.build(&bulk).unwrap());
    let want = predictor.predict(&slab, Precision::F64).unwrap().energy;
    assert_eq!(
        e_slab.to_bits(),
        want.to_bits(),
        "slab {e_slab} vs core {want}"
    );
    let direct = predictor
        .predict_pbc(&bulk, [true, true, false], Precision::F64)
        .unwrap()
        .energy;
    assert_eq!(e_slab.to_bits(), direct.to_bits());
    assert!(
        (e_slab - e_bulk).abs() > 1e-6,
        "slab and bulk agree: {e_slab} vs {e_bulk}"
    );
}

#[test]
fn batch_gradient_is_independent_of_the_thread_count() {
    let spec = model(ActivationSpec::Softplus, false, 21);
    let mut structures: Vec<Structure> = (0..10)
        .map(|k| with_references(cluster(5 * k, 2 + k % 4, 0.1, k as u64), 40 + k as u64))
        .collect();
    structures.push(with_references(small_cell(), 99));
    let caches = build_caches(&spec, &structures).unwrap();
    let refs: Vec<&StructureCache> = caches.iter().collect();
    let p = params_from_spec(&spec);
    let w = LossWeights {
        energy: 1.0,
        force: 2.0,
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| loss_and_gradient_batch(&spec, &p, &refs, w))
    };
    let bits = |(l, g): (f64, Vec<f64>)| {
        let mut v = vec![l.to_bits()];
        v.extend(g.iter().map(|x| x.to_bits()));
        v
    };
    let one = run(1);
    assert_eq!(bits(one.clone()), bits(run(2)));
    assert_eq!(bits(one.clone()), bits(run(3)));
    // The batch is the mean of the structures.
    let (mut l, mut g) = (0.0, vec![0.0; p.len()]);
    for c in &caches {
        let (lc, gc) = loss_and_gradient(&spec, &p, c, w);
        l += lc / caches.len() as f64;
        g.iter_mut()
            .zip(gc)
            .for_each(|(a, b)| *a += b / caches.len() as f64);
    }
    assert!((one.0 - l).abs() <= 1e-14 * l);
    let gmax = g.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (a, b) in one.1.iter().zip(&g) {
        assert!((a - b).abs() <= 1e-13 * gmax);
    }
    assert_eq!(one.0, loss_batch(&spec, &p, &refs, w));
}

#[test]
fn adam_fits_a_student_to_a_teacher() {
    let teacher = model(ActivationSpec::Tanh, false, 1);
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
    // Same descriptors and scaling, other random weights.
    let mut student = model(ActivationSpec::Tanh, false, 2);
    for (s, t) in student.species.iter_mut().zip(&teacher.species) {
        s.scaling = t.scaling.clone();
    }
    assert_ne!(params_from_spec(&student), params_from_spec(&teacher));
    let caches = build_caches(&student, &structures).unwrap();
    let refs: Vec<&StructureCache> = caches.iter().collect();
    let w = LossWeights {
        energy: 1.0,
        force: 1.0,
    };
    let mut p = params_from_spec(&student);
    let mut adam = Adam::new(p.len());
    let mut lr = LearningRate::new(Schedule::Exponential {
        lr: 1e-2,
        gamma: 0.99,
        min_lr: 1e-4,
    })
    .unwrap();
    let (first, _) = loss_and_gradient_batch(&student, &p, &refs, w);
    let mut last = first;
    for _ in 0..300 {
        let (l, g) = loss_and_gradient_batch(&student, &p, &refs, w);
        adam.step(&mut p, &g, lr.lr());
        lr.end_epoch(l);
        last = l;
    }
    let fin = loss_batch(&student, &p, &refs, w);
    eprintln!("teacher-student: loss {first:.3e} -> {fin:.3e} (last step {last:.3e})");
    assert!(fin < first / 100.0, "loss {first} -> {fin}");
}
