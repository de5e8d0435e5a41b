//! Invariances, supercells, agreement with the naive reference evaluator, descriptor edge cases,
//! and f32 against f64.

use mlff_core::{Cell, Model, System, Workspace, WorkspaceSize};
use mlff_tests::*;
use mlff_train::random::SplitMix64;
use mlff_train::spec::{ActivationSpec, CutoffSpec, KindSpec};
use mlff_train::writer::Precision;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn rotation(seed: u64) -> [[f64; 3]; 3] {
    let mut r = SplitMix64::new(seed);
    let (a, b, c) = (
        r.uniform() * std::f64::consts::TAU,
        r.uniform() * std::f64::consts::TAU,
        r.uniform() * std::f64::consts::TAU,
    );
    let rz = |t: f64| {
        [
            [t.cos(), -t.sin(), 0.0],
            [t.sin(), t.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ]
    };
    let rx = |t: f64| {
        [
            [1.0, 0.0, 0.0],
            [0.0, t.cos(), -t.sin()],
            [0.0, t.sin(), t.cos()],
        ]
    };
    let mul = |p: [[f64; 3]; 3], q: [[f64; 3]; 3]| {
        let mut m = [[0.0; 3]; 3];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] = (0..3).map(|k| p[i][k] * q[k][j]).sum();
            }
        }
        m
    };
    mul(rz(a), mul(rx(b), rz(c)))
}

fn rot(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
}

#[test]
fn core_matches_reference_evaluator() {
    for cutoff in CutoffSpec::ALL {
        let spec = model(
            &[KindSpec::G2, KindSpec::G4, KindSpec::G5],
            cutoff,
            0.2,
            ActivationSpec::Softplus,
            3,
        );
        let b = blob(&spec, Precision::F64);
        for s in [cluster(9, 3.6, 3), triclinic(7, 4.3, 5)] {
            let e = eval_core::<f64>(b.bytes(), &s).unwrap();
            let (want, per) = reference_energy(&spec, &s);
            assert!(
                rel(e.energy, want) <= tol::REFERENCE,
                "{cutoff:?}: {} vs {want}",
                e.energy
            );
            for (a, w) in e.energies.iter().zip(&per) {
                assert!(
                    rel(*a, *w) <= tol::REFERENCE * 10.0,
                    "{cutoff:?}: atom {a} vs {w}"
                );
            }
        }
    }
}

#[test]
fn invariant_under_translation_rotation_permutation() {
    let spec = default_model();
    let b = blob(&spec, Precision::F64);
    for s in [cluster(9, 3.6, 3), triclinic(7, 4.3, 5)] {
        let e0 = eval_core::<f64>(b.bytes(), &s).unwrap();
        // Translation (also moves atoms across periodic boundaries).
        let mut t = s.clone();
        t.pos.iter_mut().for_each(|p| {
            p[0] += 3.7;
            p[1] -= 11.2;
            p[2] += 0.05;
        });
        let et = eval_core::<f64>(b.bytes(), &t).unwrap();
        assert!(rel(et.energy, e0.energy) <= tol::INVARIANCE);
        for (f, g) in et.forces.iter().zip(&e0.forces) {
            for c in 0..3 {
                assert!((f[c] - g[c]).abs() <= 1e-9 * (1.0 + g[c].abs()));
            }
        }
        // Rotation of positions and cell; forces rotate with them.
        let m = rotation(9);
        let mut r = s.clone();
        r.pos.iter_mut().for_each(|p| *p = rot(&m, *p));
        if let Some(c) = &mut r.cell {
            c.vectors = c.vectors.map(|v| rot(&m, v));
        }
        let er = eval_core::<f64>(b.bytes(), &r).unwrap();
        assert!(
            rel(er.energy, e0.energy) <= tol::INVARIANCE,
            "{} vs {}",
            er.energy,
            e0.energy
        );
        for (f, g) in er.forces.iter().zip(&e0.forces) {
            let g = rot(&m, *g);
            for c in 0..3 {
                assert!((f[c] - g[c]).abs() <= 1e-9 * (1.0 + g[c].abs()));
            }
        }
        // Permutation: reverse the atom order (same-element atoms trade places).
        let mut p = s.clone();
        p.pos.reverse();
        p.species.reverse();
        let ep = eval_core::<f64>(b.bytes(), &p).unwrap();
        assert!(rel(ep.energy, e0.energy) <= tol::INVARIANCE);
        let n = s.pos.len();
        for i in 0..n {
            for c in 0..3 {
                let (f, g) = (ep.forces[n - 1 - i][c], e0.forces[i][c]);
                assert!((f - g).abs() <= 1e-9 * (1.0 + g.abs()));
            }
        }
    }
}

#[test]
fn supercell_energy_is_eight_times() {
    let spec = default_model();
    let b = blob(&spec, Precision::F64);
    for s in [triclinic(7, 4.3, 5), triclinic(5, 6.1, 2)] {
        let c = s.cell.unwrap();
        let mut big = Sys {
            pos: Vec::new(),
            species: Vec::new(),
            cell: None,
        };
        for i in 0..2 {
            for j in 0..2 {
                for k in 0..2 {
                    for (p, &sp) in s.pos.iter().zip(&s.species) {
                        let sh = [0, 1, 2].map(|x| {
                            i as f64 * c.vectors[0][x]
                                + j as f64 * c.vectors[1][x]
                                + k as f64 * c.vectors[2][x]
                        });
                        big.pos.push([p[0] + sh[0], p[1] + sh[1], p[2] + sh[2]]);
                        big.species.push(sp);
                    }
                }
            }
        }
        big.cell = Some(Cell::periodic(c.vectors.map(|v| v.map(|x| 2.0 * x))));
        let e1 = energy(b.bytes(), &s);
        let e8 = energy(b.bytes(), &big);
        assert!(rel(e8, 8.0 * e1) <= tol::INVARIANCE, "{e8} vs 8 × {e1}");
    }
}

#[test]
fn descriptors_match_reference_and_isolated_atom_has_zero() {
    let spec = default_model();
    let b = blob(&spec, Precision::F64);
    let s = triclinic(7, 4.3, 5);
    let got = core_descriptors(b.bytes(), &s);
    let want = reference_descriptors(&spec, &s);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.len(), w.len());
        for (x, y) in g.iter().zip(w) {
            assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
    // An isolated atom: zero descriptors, and its energy is the network at the scaled zero.
    let lone = Sys {
        pos: vec![[1.0, 2.0, 3.0]],
        species: vec![1],
        cell: None,
    };
    let g = core_descriptors(b.bytes(), &lone);
    assert!(g[0].iter().all(|&x| x == 0.0), "{:?}", g[0]);
    let (want, _) = reference_energy(&spec, &lone);
    assert!(rel(energy(b.bytes(), &lone), want) <= tol::REFERENCE);
    let e = eval_core::<f64>(b.bytes(), &lone).unwrap();
    assert_eq!(e.forces[0], [0.0; 3]);
}

#[test]
fn atoms_at_the_cutoff_edge_behave() {
    for cutoff in CutoffSpec::ALL {
        let spec = model(
            &[KindSpec::G2, KindSpec::G4, KindSpec::G5],
            cutoff,
            0.0,
            ActivationSpec::Tanh,
            4,
        );
        let rc = spec.cutoff();
        let b = blob(&spec, Precision::F64);
        let at = |r: f64| Sys {
            pos: vec![[0.0; 3], [r, 0.0, 0.0]],
            species: vec![0, 1],
            cell: None,
        };
        let g_at = core_descriptors(b.bytes(), &at(rc));
        let g_out = core_descriptors(b.bytes(), &at(rc + 1e-6));
        let g_in = core_descriptors(b.bytes(), &at(rc - 1e-6));
        let zero = core_descriptors(
            b.bytes(),
            &Sys {
                pos: vec![[0.0; 3]],
                species: vec![0],
                cell: None,
            },
        );
        // Exactly at rc and beyond: nothing (strict r < rc, as in n2p2).
        assert_eq!(g_at[0], zero[0], "{cutoff:?} at rc");
        assert_eq!(g_out[0], zero[0], "{cutoff:?} beyond rc");
        // Just inside: finite, non-negative, and (except the hard cutoff) continuous.
        assert!(g_in.iter().flatten().all(|x| x.is_finite() && *x >= 0.0));
        let e_in = eval_core::<f64>(b.bytes(), &at(rc - 1e-6)).unwrap();
        let e_at = eval_core::<f64>(b.bytes(), &at(rc)).unwrap();
        assert!(e_in.forces.iter().flatten().all(|x| x.is_finite()));
        if cutoff != CutoffSpec::Hard {
            assert!(
                (e_in.energy - e_at.energy).abs() < 1e-6,
                "{cutoff:?}: {} vs {}",
                e_in.energy,
                e_at.energy
            );
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let spec = default_model();
    let b64 = blob(&spec, Precision::F64);
    let b32 = blob(&spec, Precision::F32);
    for (name, s) in [
        ("cluster", cluster(9, 3.6, 3)),
        ("triclinic", triclinic(7, 4.3, 5)),
    ] {
        let e64 = eval_core::<f64>(b64.bytes(), &s).unwrap();
        // f32 compute from the f32 blob (zero copy) and from the f64 blob (converted copy).
        for (how, e32) in [
            ("f32 blob", eval_core::<f32>(b32.bytes(), &s).unwrap()),
            ("f64 blob", eval_core::<f32>(b64.bytes(), &s).unwrap()),
        ] {
            let de = e64
                .energies
                .iter()
                .zip(&e32.energies)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let rms = (e64.forces.iter().flatten().map(|x| x * x).sum::<f64>()
                / (3 * s.pos.len()) as f64)
                .sqrt();
            let df = e64
                .forces
                .iter()
                .flatten()
                .zip(e32.forces.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            eprintln!("f32 vs f64 ({name}, {how}): max per-atom energy diff {de:.3e} eV, max force diff {df:.3e} eV/Å (force RMS {rms:.3e})");
            assert!(de <= tol::F32_ATOM_ENERGY, "{name} {how}: {de:e}");
            assert!(
                df <= tol::F32_FORCE_REL * rms.max(1.0),
                "{name} {how}: {df:e}"
            );
        }
    }
}

#[test]
fn external_neighbor_list_with_ghosts_reproduces_compute() {
    // An MD engine (LAMMPS through KIM) hands over its own neighbour list, periodic images as
    // ghost atoms with their own indices; forces on ghosts are folded back by the engine.
    let spec = default_model();
    let b = blob(&spec, Precision::F64);
    let s = triclinic(7, 4.3, 5);
    let want = eval_core::<f64>(b.bytes(), &s).unwrap();
    let model = Model::<f64>::from_blob(b.bytes()).unwrap();
    let size = WorkspaceSize::new(&model.dims(), s.pos.len(), 1024);
    let (mut r, mut i) = (vec![0.0; size.reals], vec![0u32; size.indices]);
    let mut ws = Workspace::new(&model, s.pos.len(), 1024, &mut r, &mut i).unwrap();
    let nbs = brute_neighbors(&s, spec.cutoff());
    let mut forces = vec![[0.0f64; 3]; s.pos.len()];
    let mut total = 0.0;
    for (atom, nb) in nbs.iter().enumerate() {
        let set = ws.neighbors_mut();
        set.clear();
        for &(sp, j, d) in nb {
            assert!(set.push(sp as u8, j as u32, d));
        }
        set.finish();
        let mut view = model.atom(s.species[atom], &mut ws).unwrap();
        let e = view.energy(true).unwrap();
        assert!((e - want.energies[atom]).abs() <= 1e-12 * e.abs().max(1.0));
        total += e;
        let set = view.neighbors();
        for k in 0..set.len() {
            let g = set.gradient(k);
            let j = set.atom_index(k).unwrap() as usize;
            for c in 0..3 {
                forces[j][c] -= g[c];
                forces[atom][c] += g[c];
            }
        }
    }
    assert!(rel(total, want.energy) <= tol::REFERENCE);
    for (f, g) in forces.iter().zip(&want.forces) {
        for c in 0..3 {
            assert!(
                (f[c] - g[c]).abs() <= 1e-10 * (1.0 + g[c].abs()),
                "{f:?} vs {g:?}"
            );
        }
    }
}

#[test]
fn jacobian_contracted_with_de_dg_gives_the_forces() {
    // The training path: dG/dd per atom and dE/dG; Σ_f dE/dG_f ∂G_f/∂d_k is ∂E_i/∂d_k.
    let all_kinds = model_with(
        &KindSpec::ALL,
        CutoffSpec::Cos,
        0.0,
        (mlff_train::spec::CompactSpec::P1, true),
        ActivationSpec::Tanh,
        11,
    );
    for spec in [default_model(), all_kinds] {
        let b = blob(&spec, Precision::F64);
        let s = cluster(9, 3.6, 3);
        let model = Model::<f64>::from_blob(b.bytes()).unwrap();
        let cap = 64;
        let size = WorkspaceSize::new(&model.dims(), s.pos.len(), cap);
        let (mut r, mut i) = (vec![0.0; size.reals], vec![0u32; size.indices]);
        let mut ws = Workspace::new(&model, s.pos.len(), cap, &mut r, &mut i).unwrap();
        let sys = System {
            positions: &s.pos,
            species: &s.species,
            cell: None,
        };
        let mut jac = vec![0.0; model.dims().max_features * cap * 3];
        let mut checked = 0;
        model
            .for_each_atom(&sys, &mut ws, |a| -> Result<(), mlff_core::ComputeError> {
                a.energy(true)?;
                let dedg = a.energy_gradient().to_vec();
                a.jacobian(&mut jac)?;
                for k in 0..a.neighbors().len() {
                    let g = a.neighbors().gradient(k);
                    for c in 0..3 {
                        let v: f64 = dedg
                            .iter()
                            .enumerate()
                            .map(|(f, w)| w * jac[(f * cap + k) * 3 + c])
                            .sum();
                        assert!(
                            (v - g[c]).abs() <= 1e-12 * (1.0 + g[c].abs()),
                            "{v} vs {}",
                            g[c]
                        );
                        checked += 1;
                    }
                }
                Ok(())
            })
            .unwrap();
        assert!(checked > 50);
    }
}

#[test]
fn repeated_atom_evaluation_is_idempotent() {
    let spec = default_model();
    let b = blob(&spec, Precision::F64);
    let model = Model::<f64>::from_blob(b.bytes()).unwrap();
    let size = WorkspaceSize::new(&model.dims(), 2, 16);
    let (mut r, mut i) = (vec![0.0; size.reals], vec![0u32; size.indices]);
    let mut ws = Workspace::new(&model, 2, 16, &mut r, &mut i).unwrap();
    let set = ws.neighbors_mut();
    set.clear();
    assert!(set.push(1, 1, [1.1, 0.2, -0.3]));
    assert!(set.push(0, 2, [-0.4, 1.0, 0.5]));
    set.finish();
    let mut a = model.atom(0, &mut ws).unwrap();
    let e1 = a.energy(true).unwrap();
    let g1 = a.neighbors().gradient(0);
    let e2 = a.energy(true).unwrap();
    assert_eq!(e1, e2);
    assert_eq!(a.neighbors().gradient(0), g1);
    assert!(g1.iter().any(|&x| x != 0.0));
}

#[test]
fn atom_ranges_sum_to_the_whole() {
    use mlff_core::Outputs;
    let spec = default_model();
    let b = blob(&spec, Precision::F64);
    let s = triclinic(7, 4.3, 5);
    let want = eval_core::<f64>(b.bytes(), &s).unwrap();
    let model = Model::<f64>::from_blob(b.bytes()).unwrap();
    let n = s.pos.len();
    let size = WorkspaceSize::new(&model.dims(), n, 1024);
    let (mut r, mut i) = (vec![0.0; size.reals], vec![0u32; size.indices]);
    let mut ws = Workspace::new(&model, n, 1024, &mut r, &mut i).unwrap();
    let sys = System {
        positions: &s.pos,
        species: &s.species,
        cell: s.cell,
    };
    let (mut energy, mut forces, mut energies) = (0.0, vec![[0.0; 3]; n], vec![0.0; n]);
    let mut virial = [[0.0; 3]; 3];
    for range in [0..3, 3..3, 3..n] {
        let (mut f, mut e) = (vec![[0.0; 3]; n], vec![0.0; n]);
        let mut out = Outputs {
            forces: Some(&mut f),
            energies: Some(&mut e),
        };
        let res = model
            .compute_with(&sys, &mut ws, &mut out, range, &mut ())
            .unwrap();
        energy += res.energy;
        for a in 0..n {
            energies[a] += e[a];
            for c in 0..3 {
                forces[a][c] += f[a][c];
            }
        }
        for (v, w) in virial.iter_mut().flatten().zip(res.virial.iter().flatten()) {
            *v += w;
        }
    }
    assert!(rel(energy, want.energy) <= 1e-14);
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * (1.0 + y.abs());
    assert!(energies
        .iter()
        .zip(&want.energies)
        .all(|(x, y)| close(*x, *y)));
    let flat = |v: &[[f64; 3]]| v.iter().flatten().copied().collect::<Vec<_>>();
    assert!(flat(&forces)
        .iter()
        .zip(flat(&want.forces))
        .all(|(x, y)| close(*x, y)));
    assert!(flat(&virial)
        .iter()
        .zip(flat(&want.virial))
        .all(|(x, y)| close(*x, y)));
    let mut f = vec![[0.0; 3]; n];
    let mut out = Outputs {
        forces: Some(&mut f),
        energies: None,
    };
    assert!(model
        .compute_with(&sys, &mut ws, &mut out, 2..n + 1, &mut ())
        .is_err());
}

/// The workspace is caller memory that may hold anything from an earlier use; whatever it
/// holds (here NaN and a huge value in every real), the results are those of a zeroed one, bit
/// for bit, in both precisions. (The batched kernels read some slots past a block's end and
/// multiply them by exact zeros, which would turn NaN left in them into NaN results.)
#[test]
fn workspace_contents_do_not_leak_into_results() {
    let spec = default_model();
    let s = cluster(40, 9.0, 5);
    let bits = |e: &Eval| {
        let mut v = vec![e.energy.to_bits()];
        v.extend(e.forces.iter().flatten().map(|x| x.to_bits()));
        v.extend(e.energies.iter().map(|x| x.to_bits()));
        v
    };
    let b64 = blob(&spec, Precision::F64);
    let clean = bits(&eval_core::<f64>(b64.bytes(), &s).unwrap());
    for fill in [f64::NAN, 1e300] {
        let dirty = bits(&eval_core_in::<f64>(b64.bytes(), &s, fill).unwrap());
        assert!(clean == dirty, "f64, workspace filled with {fill}");
    }
    let b32 = blob(&spec, Precision::F32);
    let clean = bits(&eval_core::<f32>(b32.bytes(), &s).unwrap());
    for fill in [f32::NAN, 3e38] {
        let dirty = bits(&eval_core_in::<f32>(b32.bytes(), &s, fill).unwrap());
        assert!(clean == dirty, "f32, workspace filled with {fill}");
    }
}
