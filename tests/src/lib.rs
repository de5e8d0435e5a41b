//! Shared support for the cross-crate tests: model builders, core evaluation helpers, and a
//! deliberately naive reference evaluator (brute-force periodic images, formulas written
//! straight from `../shared/N2P2-FORMAT.md`) that the core is checked against.

use mlff_core::{Cell, Model, Outputs, Real, Results, System, Workspace, WorkspaceSize};
use mlff_train::io::AlignedBlob;
use mlff_train::random::{random_layer, SplitMix64};
use mlff_train::spec::*;
use mlff_train::writer::{write_blob, Precision};

/// Tolerances used across the tests, in one table.
pub mod tol {
    /// Forces vs central differences of the energy (relative to the largest force component).
    pub const FD_FORCE: f64 = 1e-6;
    /// Virial vs finite strain (relative to the largest virial component).
    pub const FD_VIRIAL: f64 = 1e-6;
    /// Invariances and supercells (relative energy).
    pub const INVARIANCE: f64 = 1e-10;
    /// Core vs reference evaluator, f64 (relative energy).
    pub const REFERENCE: f64 = 1e-12;
    /// f32 vs f64: per-atom energy (eV) and force (relative to force RMS).
    pub const F32_ATOM_ENERGY: f64 = 2e-5;
    /// See [`F32_ATOM_ENERGY`].
    pub const F32_FORCE_REL: f64 = 1e-4;
}

/// A structure for the tests: positions (Å), species indices, optional cell.
#[derive(Clone, Debug)]
pub struct Sys {
    /// Positions.
    pub pos: Vec<[f64; 3]>,
    /// Species indices.
    pub species: Vec<u8>,
    /// Cell.
    pub cell: Option<Cell<f64>>,
}

/// Core results in f64.
#[derive(Clone, Debug)]
pub struct Eval {
    /// Total energy.
    pub energy: f64,
    /// Per-atom energies.
    pub energies: Vec<f64>,
    /// Forces.
    pub forces: Vec<[f64; 3]>,
    /// Virial.
    pub virial: [[f64; 3]; 3],
}

/// A two-species (H, O) model whose descriptors cover `kinds` with cutoff `cutoff` (alpha
/// `alpha`), hidden activation `act`, random weights from `seed`; polynomial kinds use the
/// symmetric `p2` compact function.
pub fn model(
    kinds: &[KindSpec],
    cutoff: CutoffSpec,
    alpha: f64,
    act: ActivationSpec,
    seed: u64,
) -> ModelSpec {
    model_with(kinds, cutoff, alpha, (CompactSpec::P2, false), act, seed)
}

/// As [`model`], with the compact-function subtype (core, asymmetric) of the polynomial kinds.
///
/// Polynomial functions per neighbour species (pair): radial windows (0, r_c), (1.2, r_c),
/// (−1, r_c) and (0.5, r_c − 1); angular ones combine r_l ∈ {0, 1, −0.5, 0.3, 0.2} with angular
/// windows [0°, 180°], [30°, 120°], [90°, 180°], the windows centred at 0° and 180°
/// [−60°, 60°] and [120°, 240°], and a second cutoff (r_c − 0.7, [45°, 135°]).
/// Element-weighted features get their scaling divided by Z_max (radial) or Z_max²
/// (angular), Z_max = 8, to keep the network inputs of order one.
pub fn model_with(
    kinds: &[KindSpec],
    cutoff: CutoffSpec,
    alpha: f64,
    compact: (CompactSpec, bool),
    act: ActivationSpec,
    seed: u64,
) -> ModelSpec {
    let mut rng = SplitMix64::new(seed);
    let rc = 4.2;
    let mut species = Vec::new();
    for (sym, z) in [("H", 1u8), ("O", 8u8)] {
        let mut d = Vec::new();
        let base = DescriptorSpec {
            cutoff,
            alpha,
            subtype: compact.0,
            asymmetric: compact.1,
            ..DescriptorSpec::default()
        };
        let mut add = |kind, e1, e2, eta: f64, rs: f64, zeta: f64, lambda: f64, rc: f64| {
            d.push(DescriptorSpec {
                kind,
                e1,
                e2,
                eta,
                rs,
                zeta,
                lambda,
                rc,
                ..base
            })
        };
        let mut poly = Vec::new();
        let mut add_poly = |kind, e1, e2, rl: f64, rc: f64, angles: (f64, f64)| {
            poly.push(DescriptorSpec {
                kind,
                e1,
                e2,
                rl,
                rc,
                angle_left: angles.0,
                angle_right: angles.1,
                ..base
            })
        };
        for &kind in kinds {
            let weighted = kind.is_weighted();
            let singles: &[usize] = if weighted { &[0] } else { &[0, 1] };
            let pairs: &[(usize, usize)] = if weighted {
                &[(0, 0)]
            } else {
                &[(0, 0), (0, 1), (1, 1)]
            };
            match kind {
                KindSpec::WeightedRadial => {
                    add(kind, 0, 0, 0.5, 0.0, 1.0, 1.0, rc);
                    add(kind, 0, 0, 1.5, 1.1, 1.0, 1.0, rc);
                    add(kind, 0, 0, 0.8, 0.9, 1.0, 1.0, rc - 1.0);
                }
                KindSpec::WeightedNarrow => {
                    add(kind, 0, 0, 0.2, 0.0, 1.0, 1.0, rc);
                    add(kind, 0, 0, 0.1, 0.5, 2.5, -1.0, rc);
                    add(kind, 0, 0, 0.05, 0.0, 4.0, 1.0, rc - 0.7);
                }
                KindSpec::PolyRadial | KindSpec::WeightedPolyRadial => {
                    for &e in singles {
                        add_poly(kind, e, 0, 0.0, rc, (0.0, 180.0));
                        add_poly(kind, e, 0, 1.2, rc, (0.0, 180.0));
                        add_poly(kind, e, 0, -1.0, rc, (0.0, 180.0));
                        add_poly(kind, e, 0, 0.5, rc - 1.0, (0.0, 180.0));
                    }
                }
                KindSpec::PolyNarrow
                | KindSpec::PolyWide
                | KindSpec::WeightedPolyNarrow
                | KindSpec::WeightedPolyWide => {
                    for &(a, b) in pairs {
                        add_poly(kind, a, b, 0.0, rc, (0.0, 180.0));
                        add_poly(kind, b, a, 1.0, rc, (30.0, 120.0));
                        add_poly(kind, a, b, -0.5, rc, (90.0, 180.0));
                        add_poly(kind, a, b, 0.3, rc, (-60.0, 60.0));
                        add_poly(kind, a, b, 0.2, rc, (120.0, 240.0));
                        add_poly(kind, a, b, 0.0, rc - 0.7, (45.0, 135.0));
                    }
                }
                KindSpec::G2 => {
                    for e in 0..2 {
                        add(kind, e, 0, 0.5, 0.0, 1.0, 1.0, rc);
                        add(kind, e, 0, 1.5, 1.1, 1.0, 1.0, rc);
                        // A shorter cutoff in the same model: a second group.
                        add(kind, e, 0, 0.8, 0.9, 1.0, 1.0, rc - 1.0);
                    }
                }
                KindSpec::G4 | KindSpec::G5 => {
                    for (a, b) in [(0, 0), (0, 1), (1, 1)] {
                        add(kind, a, b, 0.2, 0.0, 1.0, 1.0, rc);
                        add(kind, a, b, 0.1, 0.5, 2.5, -1.0, rc);
                        add(kind, b, a, 0.05, 0.0, 4.0, 1.0, rc - 0.7);
                        // Only ζ = 1, with a cutoff of its own: a group of its own with two
                        // channels (for G5 the core's moment path, which takes no pair loop).
                        add(kind, a, b, 0.3, 0.0, 1.0, 1.0, rc - 0.3);
                        add(kind, a, b, 0.3, 0.0, 1.0, -1.0, rc - 0.3);
                        add(kind, a, b, 0.08, 0.4, 1.0, 1.0, rc - 0.3);
                    }
                }
            }
        }
        d.append(&mut poly);
        let nf = d.len();
        let scaling = d
            .iter()
            .map(|f| {
                let zmax: f64 = match (f.kind.is_weighted(), f.kind.is_angular()) {
                    (false, _) => 1.0,
                    (true, false) => 8.0,
                    (true, true) => 64.0,
                };
                Affine {
                    sub: rng.uniform() * 0.3,
                    mul: (0.5 + rng.uniform()) / zmax,
                    add: rng.symmetric(0.2),
                }
            })
            .collect();
        let layers = vec![
            random_layer(nf, 7, act, &mut rng),
            random_layer(7, 5, act, &mut rng),
            random_layer(5, 1, ActivationSpec::Linear, &mut rng),
        ];
        species.push(SpeciesSpec {
            symbol: sym.into(),
            z,
            reference_energy: rng.symmetric(3.0),
            descriptors: d,
            scaling,
            layers,
        });
    }
    ModelSpec {
        species,
        energy_scale: 0.7,
        energy_shift: -0.3,
        scaling_mode: ScalingSpec::CenterRange,
        source_length_unit: 1.0,
        source_energy_unit: 1.0,
        text: "test model".into(),
    }
}

/// The default test model: all descriptor kinds, cosine cutoff, tanh.
pub fn default_model() -> ModelSpec {
    model(
        &[KindSpec::G2, KindSpec::G4, KindSpec::G5],
        CutoffSpec::Cos,
        0.0,
        ActivationSpec::Tanh,
        11,
    )
}

/// Blob bytes of `spec`, aligned.
pub fn blob(spec: &ModelSpec, p: Precision) -> AlignedBlob {
    AlignedBlob::new(&write_blob(spec, p).expect("write blob"))
}

/// Runs the core in precision `T` on `s` (zero-copy when possible).
pub fn eval_core<T: Real>(bytes: &[u8], s: &Sys) -> Result<Eval, String> {
    eval_core_in::<T>(bytes, s, T::ZERO)
}

/// [`eval_core`] with a workspace whose reals start out as `fill` (as a reused buffer may).
pub fn eval_core_in<T: Real>(bytes: &[u8], s: &Sys, fill: T) -> Result<Eval, String> {
    let mut storage: Vec<T> = Vec::new();
    let model = match Model::<T>::from_blob(bytes) {
        Ok(m) => m,
        Err(_) => {
            storage.resize(
                Model::<T>::reals_needed(bytes).map_err(|e| e.to_string())?,
                T::ZERO,
            );
            Model::<T>::from_blob_in(bytes, &mut storage).map_err(|e| e.to_string())?
        }
    };
    let n = s.pos.len();
    let cap = 4096;
    let size = WorkspaceSize::new(&model.dims(), n, cap);
    let mut reals = vec![fill; size.reals];
    let mut idx = vec![0u32; size.indices];
    let mut ws = Workspace::new(&model, n, cap, &mut reals, &mut idx).map_err(|e| e.to_string())?;
    let pos: Vec<[T; 3]> = s.pos.iter().map(|p| p.map(T::from_f64)).collect();
    let cell = s.cell.map(|c| Cell {
        vectors: c.vectors.map(|v| v.map(T::from_f64)),
        pbc: c.pbc,
    });
    let mut forces = vec![[T::ZERO; 3]; n];
    let mut energies = vec![0.0f64; n];
    let sys = System {
        positions: &pos,
        species: &s.species,
        cell,
    };
    let r: Results = model
        .compute(
            &sys,
            &mut ws,
            &mut Outputs {
                forces: Some(&mut forces),
                energies: Some(&mut energies),
            },
        )
        .map_err(|e| e.to_string())?;
    Ok(Eval {
        energy: r.energy,
        energies,
        forces: forces.iter().map(|f| f.map(|x| x.to_f64())).collect(),
        virial: r.virial,
    })
}

/// f64 core energy only.
pub fn energy(bytes: &[u8], s: &Sys) -> f64 {
    eval_core::<f64>(bytes, s).expect("core evaluation").energy
}

/// A random molecule-like cluster of `n` atoms (minimum distance 0.9 Å) in a box of edge `l`.
pub fn cluster(n: usize, l: f64, seed: u64) -> Sys {
    let mut rng = SplitMix64::new(seed);
    let mut pos: Vec<[f64; 3]> = Vec::new();
    while pos.len() < n {
        let p = [rng.uniform() * l, rng.uniform() * l, rng.uniform() * l];
        if pos.iter().all(|q| dist(p, *q) > 0.9) {
            pos.push(p);
        }
    }
    let species = (0..n).map(|i| u8::from(i % 3 == 0)).collect();
    Sys {
        pos,
        species,
        cell: None,
    }
}

/// A random periodic triclinic cell (edges ~`l`, smaller than 2·rc when l < 8.4) with `n` atoms.
pub fn triclinic(n: usize, l: f64, seed: u64) -> Sys {
    let mut s = cluster(n, l * 0.9, seed);
    let cell = Cell::periodic([
        [l, 0.0, 0.0],
        [0.31 * l, 0.93 * l, 0.0],
        [-0.2 * l, 0.17 * l, 1.05 * l],
    ]);
    // Keep minimum image distances sane by rejecting overlaps through the cell.
    s.cell = Some(cell);
    s
}

/// Distance of two points.
pub fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn cutoff_ref(kind: CutoffSpec, alpha: f64, rc: f64, r: f64) -> f64 {
    if r >= rc {
        return 0.0;
    }
    let rci = alpha * rc;
    let x = (r - rci) / (rc - rci);
    let shaped = |f: &dyn Fn(f64) -> f64| if r < rci { 1.0 } else { f(x) };
    match kind {
        CutoffSpec::Hard => 1.0,
        CutoffSpec::Cos => shaped(&|x| 0.5 * ((std::f64::consts::PI * x).cos() + 1.0)),
        CutoffSpec::TanhU => (1.0 - r / rc).tanh().powi(3),
        CutoffSpec::Tanh => (1.0 - r / rc).tanh().powi(3) / 1f64.tanh().powi(3),
        CutoffSpec::Exp => shaped(&|x| (1.0 - 1.0 / (1.0 - x * x)).exp()),
        CutoffSpec::Poly1 => shaped(&|x| (2.0 * x - 3.0) * x * x + 1.0),
        CutoffSpec::Poly2 => shaped(&|x| ((15.0 - 6.0 * x) * x - 10.0) * x.powi(3) + 1.0),
        CutoffSpec::Poly3 => {
            shaped(&|x| (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x.powi(4) + 1.0)
        }
        CutoffSpec::Poly4 => shaped(&|x| {
            (x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x.powi(5) + 1.0
        }),
    }
}

fn act_ref(a: ActivationSpec, x: f64) -> f64 {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    match a {
        ActivationSpec::Linear => x,
        ActivationSpec::Tanh => x.tanh(),
        ActivationSpec::Logistic => sig(x),
        ActivationSpec::Softplus => (1.0 + x.exp()).ln(),
        ActivationSpec::ShiftedSoftplus => (1.0 + x.exp()).ln() - 2f64.ln(),
        ActivationSpec::Silu => x * sig(x),
        ActivationSpec::Relu => x.max(0.0),
        ActivationSpec::Gaussian => (-0.5 * x * x).exp(),
        ActivationSpec::Cos => x.cos(),
        ActivationSpec::RevLogistic => 1.0 - sig(x),
        ActivationSpec::ExpNeg => (-x).exp(),
        ActivationSpec::Square => x * x,
    }
}

/// All neighbours (species, atom index, displacement) of every atom by brute force over
/// periodic images.
pub fn brute_neighbors(s: &Sys, rc: f64) -> Vec<Vec<(usize, usize, [f64; 3])>> {
    let (vecs, pbc) = match s.cell {
        Some(c) => (c.vectors, c.pbc),
        None => (
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            [false; 3],
        ),
    };
    // Image range: rc over the plane spacing, plus the spread of the atoms.
    let vol = |a: [f64; 3], b: [f64; 3], c: [f64; 3]| {
        a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0])
    };
    let v = vol(vecs[0], vecs[1], vecs[2]).abs();
    let reach: Vec<i64> = (0..3)
        .map(|k| {
            if !pbc[k] {
                return 0;
            }
            let (b, c) = (vecs[(k + 1) % 3], vecs[(k + 2) % 3]);
            let cr = [
                b[1] * c[2] - b[2] * c[1],
                b[2] * c[0] - b[0] * c[2],
                b[0] * c[1] - b[1] * c[0],
            ];
            let h = v / (cr[0] * cr[0] + cr[1] * cr[1] + cr[2] * cr[2]).sqrt();
            (rc / h).ceil() as i64 + 2
        })
        .collect();
    let mut out = vec![Vec::new(); s.pos.len()];
    for (i, pi) in s.pos.iter().enumerate() {
        for (j, pj) in s.pos.iter().enumerate() {
            for a in -reach[0]..=reach[0] {
                for b in -reach[1]..=reach[1] {
                    for c in -reach[2]..=reach[2] {
                        let sh: Vec<f64> = (0..3)
                            .map(|x| {
                                a as f64 * vecs[0][x]
                                    + b as f64 * vecs[1][x]
                                    + c as f64 * vecs[2][x]
                            })
                            .collect();
                        let d = [
                            pj[0] + sh[0] - pi[0],
                            pj[1] + sh[1] - pi[1],
                            pj[2] + sh[2] - pi[2],
                        ];
                        let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                        if r > 0.0 && r <= rc {
                            out[i].push((usize::from(s.species[j]), j, d));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The core functions of the compact functions as `../shared/N2P2-FORMAT.md` writes them
/// (expanded), for [`compact_core_ref`]'s self-check.
pub fn compact_core_expanded(sub: CompactSpec, x: f64) -> f64 {
    match sub {
        CompactSpec::P1 => (2.0 * x - 3.0) * x * x + 1.0,
        CompactSpec::P2 => ((15.0 - 6.0 * x) * x - 10.0) * x.powi(3) + 1.0,
        CompactSpec::P3 => (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x.powi(4) + 1.0,
        CompactSpec::P4 => {
            (x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x.powi(5) + 1.0
        }
        CompactSpec::E => (1.0 - 1.0 / (1.0 - x * x)).exp(),
    }
}

/// The same cores factored at x = 1, (1 − x)^k·p(x): identical polynomials (checked against
/// [`compact_core_expanded`] in the tests), but without the expanded forms' cancellation, whose
/// absolute error (up to ~1e-13 for p4) would swamp a 1e-12 comparison of summed features.
pub fn compact_core_ref(sub: CompactSpec, x: f64) -> f64 {
    let y = 1.0 - x;
    match sub {
        CompactSpec::P1 => y * y * (1.0 + 2.0 * x),
        CompactSpec::P2 => y.powi(3) * (1.0 + 3.0 * x + 6.0 * x * x),
        CompactSpec::P3 => y.powi(4) * (1.0 + 4.0 * x + 10.0 * x * x + 20.0 * x.powi(3)),
        CompactSpec::P4 => {
            y.powi(5) * (1.0 + 5.0 * x + 15.0 * x * x + 35.0 * x.powi(3) + 70.0 * x.powi(4))
        }
        CompactSpec::E => (1.0 - 1.0 / (1.0 - x * x)).exp(),
    }
}

/// C(a; left, right): centre (left + right)/2, w = (right − left)/2, x = |a − centre|/w; core(x),
/// or core((2 − x)x) when `asymmetric`; 0 for x ≥ 1.
pub fn compact_ref(sub: CompactSpec, asymmetric: bool, left: f64, right: f64, a: f64) -> f64 {
    let centre = (left + right) / 2.0;
    let w = (right - left) / 2.0;
    let x = (a - centre).abs() / w;
    if x >= 1.0 {
        return 0.0;
    }
    compact_core_ref(sub, if asymmetric { (2.0 - x) * x } else { x })
}

/// Raw descriptors of every atom by the reference formulas.
pub fn reference_descriptors(spec: &ModelSpec, s: &Sys) -> Vec<Vec<f64>> {
    let nbs = brute_neighbors(s, spec.cutoff());
    let norm = |d: [f64; 3]| (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    let z = |e: usize| f64::from(spec.species[e].z);
    nbs.iter()
        .zip(&s.species)
        .map(|(nb, &sp)| {
            spec.species[usize::from(sp)]
                .descriptors
                .iter()
                .map(|d| {
                    let fc = |r: f64| cutoff_ref(d.cutoff, d.alpha, d.rc, r);
                    let gauss = |r: f64| (-d.eta * (r - d.rs).powi(2)).exp();
                    // Polynomial kinds: radial compact function on (rl, rc) (with the subtype's
                    // asymmetry), angular one on the window in radians (always symmetric).
                    let crad = |r: f64| compact_ref(d.subtype, d.asymmetric, d.rl, d.rc, r);
                    let (al, ar) = (
                        d.angle_left * std::f64::consts::PI / 180.0,
                        d.angle_right * std::f64::consts::PI / 180.0,
                    );
                    let cang = |t: f64| compact_ref(d.subtype, false, al, ar, t);
                    let weighted = d.kind.is_weighted();
                    if !d.kind.is_angular() {
                        let mut g = 0.0;
                        for &(e, _, v) in nb {
                            if !weighted && e != d.e1 {
                                continue;
                            }
                            let r = norm(v);
                            let w = if weighted { z(e) } else { 1.0 };
                            if d.kind.is_polynomial() {
                                if d.rl < r && r < d.rc {
                                    g += w * crad(r);
                                }
                            } else if r < d.rc {
                                g += w * gauss(r) * fc(r);
                            }
                        }
                        return g;
                    }
                    let narrow = matches!(
                        d.kind,
                        KindSpec::G4
                            | KindSpec::WeightedNarrow
                            | KindSpec::PolyNarrow
                            | KindSpec::WeightedPolyNarrow
                    );
                    let mut g = 0.0;
                    for j in 0..nb.len() {
                        for k in j + 1..nb.len() {
                            let (ej, _, vj) = nb[j];
                            let (ek, _, vk) = nb[k];
                            let pair_ok = (ej == d.e1 && ek == d.e2) || (ej == d.e2 && ek == d.e1);
                            if !weighted && !pair_ok {
                                continue;
                            }
                            let w = if weighted { z(ej) * z(ek) } else { 1.0 };
                            let (rij, rik) = (norm(vj), norm(vk));
                            let rjk = norm([vk[0] - vj[0], vk[1] - vj[1], vk[2] - vj[2]]);
                            let cos = (vj[0] * vk[0] + vj[1] * vk[1] + vj[2] * vk[2]) / (rij * rik);
                            if rij >= d.rc || rik >= d.rc || (narrow && rjk >= d.rc) {
                                continue;
                            }
                            if d.kind.is_polynomial() {
                                if rij <= d.rl || rik <= d.rl {
                                    continue;
                                }
                                if narrow && rjk <= d.rl.max(0.0) {
                                    continue;
                                }
                                if cos.abs() >= 1.0 {
                                    continue;
                                }
                                let theta = cos.acos();
                                if theta < al || theta > ar {
                                    continue;
                                }
                                let mut t = w * crad(rij) * crad(rik) * cang(theta);
                                if narrow {
                                    t *= crad(rjk);
                                }
                                g += t;
                            } else {
                                let base = 1.0 + d.lambda * cos;
                                let p = if base > 0.0 { base.powf(d.zeta) } else { 0.0 };
                                let mut t = w * p * gauss(rij) * gauss(rik) * fc(rij) * fc(rik);
                                if narrow {
                                    t *= gauss(rjk) * fc(rjk);
                                }
                                g += t;
                            }
                        }
                    }
                    if d.kind.is_polynomial() {
                        g
                    } else {
                        2f64.powf(1.0 - d.zeta) * g
                    }
                })
                .collect()
        })
        .collect()
}

/// Total and per-atom energies by the reference evaluator.
pub fn reference_energy(spec: &ModelSpec, s: &Sys) -> (f64, Vec<f64>) {
    let g = reference_descriptors(spec, s);
    let per: Vec<f64> = g
        .iter()
        .zip(&s.species)
        .map(|(g, &sp)| {
            let sp = &spec.species[usize::from(sp)];
            let mut y: Vec<f64> = g
                .iter()
                .enumerate()
                .map(|(f, &x)| {
                    let a = sp.scaling.get(f).copied().unwrap_or(Affine::IDENTITY);
                    (x - a.sub) * a.mul + a.add
                })
                .collect();
            for l in &sp.layers {
                let s = if l.normalize {
                    1.0 / l.n_in as f64
                } else {
                    1.0
                };
                y = (0..l.n_out)
                    .map(|o| {
                        let z: f64 = l.biases[o]
                            + (0..l.n_in)
                                .map(|i| l.weights[o * l.n_in + i] * y[i])
                                .sum::<f64>();
                        act_ref(l.activation, z * s)
                    })
                    .collect();
            }
            spec.energy_scale * y[0] + spec.energy_shift + sp.reference_energy
        })
        .collect();
    (per.iter().sum(), per)
}

/// Max |F − F_fd| / max |F| over all components.
pub fn force_error(spec: &ModelSpec, s: &Sys) -> f64 {
    let b = blob(spec, Precision::F64);
    let e = eval_core::<f64>(b.bytes(), s).unwrap();
    let h = 1e-5;
    let mut worst: f64 = 0.0;
    let fmax = e
        .forces
        .iter()
        .flatten()
        .fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(fmax > 1e-3, "forces too small to test: {fmax}");
    for i in 0..s.pos.len() {
        for c in 0..3 {
            let mut p = s.clone();
            p.pos[i][c] += h;
            let ep = energy(b.bytes(), &p);
            p.pos[i][c] -= 2.0 * h;
            let em = energy(b.bytes(), &p);
            let fd = -(ep - em) / (2.0 * h);
            worst = worst.max((fd - e.forces[i][c]).abs());
        }
    }
    worst / fmax
}

/// Applies x → (I + ε)x to positions and cell vectors, ε = δ e_a e_bᵀ.
pub fn strained(s: &Sys, a: usize, b: usize, delta: f64) -> Sys {
    let mut t = s.clone();
    let apply = |v: &mut [f64; 3]| v[a] += delta * v[b];
    t.pos.iter_mut().for_each(apply);
    if let Some(c) = &mut t.cell {
        c.vectors.iter_mut().for_each(apply);
    }
    t
}

/// Max |W − W_fd| / max |W|.
pub fn virial_error(spec: &ModelSpec, s: &Sys) -> f64 {
    let b = blob(spec, Precision::F64);
    let e = eval_core::<f64>(b.bytes(), s).unwrap();
    let h = 1e-6;
    let wmax = e
        .virial
        .iter()
        .flatten()
        .fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(wmax > 1e-3, "virial too small to test: {wmax}");
    let mut worst: f64 = 0.0;
    for a in 0..3 {
        for c in 0..3 {
            let ep = energy(b.bytes(), &strained(s, a, c, h));
            let em = energy(b.bytes(), &strained(s, a, c, -h));
            let fd = -(ep - em) / (2.0 * h);
            worst = worst.max((fd - e.virial[a][c]).abs());
        }
    }
    worst / wmax
}

/// Raw descriptors of each atom via the core's per-atom API.
pub fn core_descriptors(bytes: &[u8], s: &Sys) -> Vec<Vec<f64>> {
    let model = Model::<f64>::from_blob(bytes).unwrap();
    let size = WorkspaceSize::new(&model.dims(), s.pos.len(), 512);
    let (mut r, mut i) = (vec![0.0; size.reals], vec![0u32; size.indices]);
    let mut ws = Workspace::new(&model, s.pos.len(), 512, &mut r, &mut i).unwrap();
    let sys = System {
        positions: &s.pos,
        species: &s.species,
        cell: s.cell,
    };
    let mut out = Vec::new();
    model
        .for_each_atom(&sys, &mut ws, |a| -> Result<(), mlff_core::ComputeError> {
            out.push(a.descriptors()?.to_vec());
            Ok(())
        })
        .unwrap();
    out
}
