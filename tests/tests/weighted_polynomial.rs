//! The element-weighted (n2p2 types 12, 13) and polynomial (types 20–25) symmetry functions:
//! core against the naive reference evaluator, forces and virial against finite differences,
//! for every compact-function subtype (p1…p4, e; symmetric and asymmetric), the blob's
//! validation of their parameters, and the spec's checks and names.

use mlff_core::blob::{self, BlobError, HEADER_LEN};
use mlff_core::descriptor::compact::{CompactCore, CompactKind};
use mlff_core::{DescriptorKind, Model};
use mlff_tests::*;
use mlff_train::spec::{ActivationSpec, CompactSpec, CutoffSpec, DescriptorSpec, KindSpec};
use mlff_train::writer::{reseal, write_blob, Precision};

/// The kinds this file is about.
const NEW_KINDS: [KindSpec; 8] = [
    KindSpec::WeightedRadial,
    KindSpec::WeightedNarrow,
    KindSpec::PolyRadial,
    KindSpec::PolyNarrow,
    KindSpec::PolyWide,
    KindSpec::WeightedPolyRadial,
    KindSpec::WeightedPolyNarrow,
    KindSpec::WeightedPolyWide,
];

/// Every compact-function subtype: five cores, symmetric and asymmetric.
fn subtypes() -> Vec<(CompactSpec, bool)> {
    CompactSpec::ALL
        .iter()
        .flat_map(|&c| [(c, false), (c, true)])
        .collect()
}

fn spec_for(sub: (CompactSpec, bool), seed: u64) -> mlff_train::spec::ModelSpec {
    model_with(
        &NEW_KINDS,
        CutoffSpec::Poly2,
        0.2,
        sub,
        ActivationSpec::Tanh,
        seed,
    )
}

#[test]
fn reference_cores_are_the_documented_polynomials() {
    for sub in CompactSpec::ALL {
        for i in 0..=1000 {
            let x = i as f64 / 1000.0;
            let (a, b) = (compact_core_ref(sub, x), compact_core_expanded(sub, x));
            assert!((a - b).abs() <= 1e-13, "{sub:?} {x}: {a} vs {b}");
        }
        assert_eq!(compact_core_ref(sub, 0.0), 1.0);
    }
}

#[test]
fn descriptors_and_energies_match_the_reference_for_every_subtype() {
    let systems = [cluster(9, 3.6, 3), triclinic(7, 4.3, 5)];
    for sub in subtypes() {
        let spec = spec_for(sub, 31);
        let b = blob(&spec, Precision::F64);
        for s in &systems {
            let got = core_descriptors(b.bytes(), s);
            let want = reference_descriptors(&spec, s);
            let mut nonzero = 0;
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.len(), w.len());
                for (f, (x, y)) in g.iter().zip(w).enumerate() {
                    assert!(
                        (x - y).abs() <= tol::REFERENCE * y.abs().max(1.0),
                        "{sub:?} feature {f}: {x} vs {y}"
                    );
                    nonzero += usize::from(*y != 0.0);
                }
            }
            // The windows are chosen so that nearly every function sees some neighbours.
            let total: usize = want.iter().map(Vec::len).sum();
            assert!(nonzero * 10 >= total * 8, "{sub:?}: {nonzero} of {total}");
            let e = eval_core::<f64>(b.bytes(), s).unwrap();
            let (ref_e, _) = reference_energy(&spec, s);
            assert!((e.energy - ref_e).abs() <= tol::REFERENCE * ref_e.abs().max(1.0));
        }
    }
}

#[test]
fn forces_and_virial_match_finite_differences_for_every_subtype() {
    for (k, sub) in subtypes().into_iter().enumerate() {
        let spec = spec_for(sub, 40 + k as u64);
        for (name, s) in [
            ("open cluster", cluster(9, 3.6, 3)),
            ("triclinic cell < 2 rc", triclinic(7, 4.3, 5)),
        ] {
            let (ef, ew) = (force_error(&spec, &s), virial_error(&spec, &s));
            eprintln!("{sub:?} {name}: forces {ef:.1e}, virial {ew:.1e}");
            assert!(ef <= tol::FD_FORCE, "{sub:?} {name}: forces {ef:.2e}");
            assert!(ew <= tol::FD_VIRIAL, "{sub:?} {name}: virial {ew:.2e}");
        }
    }
}

#[test]
fn each_kind_alone_has_exact_forces() {
    // One kind per model, so that no kind's error hides behind another's larger forces.
    for kind in NEW_KINDS {
        let spec = model_with(
            &[kind],
            CutoffSpec::Cos,
            0.0,
            (CompactSpec::P3, true),
            ActivationSpec::Silu,
            7,
        );
        let s = triclinic(7, 4.3, 5);
        let err = force_error(&spec, &s);
        assert!(err <= tol::FD_FORCE, "{kind:?}: forces {err:.2e}");
        let err = virial_error(&spec, &s);
        assert!(err <= tol::FD_VIRIAL, "{kind:?}: virial {err:.2e}");
    }
}

#[test]
fn invariances_cutoff_edge_isolated_atom_and_f32() {
    let spec = spec_for((CompactSpec::E, false), 5);
    let b64 = blob(&spec, Precision::F64);
    let s = cluster(9, 3.6, 3);
    let e0 = eval_core::<f64>(b64.bytes(), &s).unwrap();
    // Rotation about z by 1 rad and a translation.
    let (c, si) = (1f64.cos(), 1f64.sin());
    let mut r = s.clone();
    r.pos
        .iter_mut()
        .for_each(|p| *p = [c * p[0] - si * p[1] + 0.3, si * p[0] + c * p[1] - 2.0, p[2]]);
    let er = eval_core::<f64>(b64.bytes(), &r).unwrap();
    assert!((er.energy - e0.energy).abs() <= tol::INVARIANCE * e0.energy.abs());
    // Permutation.
    let mut p = s.clone();
    p.pos.reverse();
    p.species.reverse();
    let ep = eval_core::<f64>(b64.bytes(), &p).unwrap();
    assert!((ep.energy - e0.energy).abs() <= tol::INVARIANCE * e0.energy.abs());
    // An isolated atom has zero descriptors and zero force.
    let lone = Sys {
        pos: vec![[1.0, 2.0, 3.0]],
        species: vec![1],
        cell: None,
    };
    assert!(core_descriptors(b64.bytes(), &lone)[0]
        .iter()
        .all(|&x| x == 0.0));
    // A pair at and around the cutoff: nothing at rc and beyond, continuous just inside.
    let rc = spec.cutoff();
    let at = |r: f64| Sys {
        pos: vec![[0.0; 3], [r, 0.0, 0.0]],
        species: vec![0, 1],
        cell: None,
    };
    let zero = core_descriptors(b64.bytes(), &at(50.0));
    assert_eq!(core_descriptors(b64.bytes(), &at(rc)), zero);
    let inside = core_descriptors(b64.bytes(), &at(rc - 1e-6));
    for (g, z) in inside[0].iter().zip(&zero[0]) {
        assert!(g.is_finite() && *g >= 0.0 && (g - z).abs() < 1e-9, "{g}");
    }
    // f32 against f64.
    let b32 = blob(&spec, Precision::F32);
    let e32 = eval_core::<f32>(b32.bytes(), &s).unwrap();
    let rms = (e0.forces.iter().flatten().map(|x| x * x).sum::<f64>() / 27.0).sqrt();
    for (a, b) in e0.energies.iter().zip(&e32.energies) {
        assert!((a - b).abs() <= tol::F32_ATOM_ENERGY, "{a} vs {b}");
    }
    for (a, b) in e0.forces.iter().flatten().zip(e32.forces.iter().flatten()) {
        assert!(
            (a - b).abs() <= tol::F32_FORCE_REL * rms.max(1.0),
            "{a} vs {b}"
        );
    }
}

/// Group records of a blob: (record byte offset, kind code, n, r0).
fn groups(b: &[u8]) -> Vec<(usize, u8, usize, usize)> {
    let n = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
    let mut grps = (0, 0);
    let mut modl = 0;
    for e in b[HEADER_LEN..HEADER_LEN + 16 * n].chunks(16) {
        let off = u32::from_le_bytes(e[4..8].try_into().unwrap()) as usize;
        let len = u32::from_le_bytes(e[8..12].try_into().unwrap()) as usize;
        if e[..4] == blob::tag::GROUPS {
            grps = (off, len);
        }
        if e[..4] == blob::tag::MODEL {
            modl = off;
        }
    }
    let n_groups = u32::from_le_bytes(b[modl + 4..modl + 8].try_into().unwrap()) as usize;
    assert_eq!(n_groups * 24, grps.1);
    (0..n_groups)
        .map(|g| {
            let o = grps.0 + 24 * g;
            let u = |k: usize| u32::from_le_bytes(b[o + k..o + k + 4].try_into().unwrap()) as usize;
            (o, b[o], u(4), u(8))
        })
        .collect()
}

fn load(bytes: &[u8]) -> Result<(), BlobError> {
    let mut storage = vec![0.0f64; Model::<f64>::reals_needed(bytes)?];
    Model::<f64>::from_blob_in(bytes, &mut storage).map(|_| ())
}

#[test]
fn bad_parameters_in_the_blob_get_named_errors() {
    let b = write_blob(&spec_for((CompactSpec::P2, true), 3), Precision::F64).unwrap();
    assert_eq!(load(&b), Ok(()));
    let gs = groups(&b);
    let real = {
        let n = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
        b[HEADER_LEN..HEADER_LEN + 16 * n]
            .chunks(16)
            .find(|e| e[..4] == blob::tag::REALS)
            .map(|e| u32::from_le_bytes(e[4..8].try_into().unwrap()) as usize)
            .unwrap()
    };
    let first = |code: u8| {
        gs.iter()
            .enumerate()
            .find(|(_, g)| g.1 == code)
            .map(|(i, g)| (i, *g))
            .unwrap()
    };
    let get = |c: &[u8], k: usize| {
        f64::from_le_bytes(c[real + 8 * k..real + 8 * k + 8].try_into().unwrap())
    };
    let put = |c: &mut Vec<u8>, k: usize, x: f64| {
        c[real + 8 * k..real + 8 * k + 8].copy_from_slice(&x.to_le_bytes())
    };
    let check = |edit: &dyn Fn(&mut Vec<u8>), want: Result<(), BlobError>, name: &str| {
        let mut c = b.clone();
        edit(&mut c);
        reseal(&mut c);
        assert_eq!(load(&c), want, "{name}");
    };
    let invalid = |what, index| Err(BlobError::InvalidValue { what, index });
    // Lane k, function s of a group: REAL[r0 + 2 + k·n + s].
    for code in [20u8, 23] {
        let (gi, (_, _, _n, r0)) = first(code);
        let rc = get(&b, r0);
        check(&|c| put(c, r0 + 2, rc), invalid("rl", gi), "rl = rc");
        check(&|c| put(c, r0 + 2, rc + 1.0), invalid("rl", gi), "rl > rc");
        check(&|c| put(c, r0 + 2, -100.0), Ok(()), "rl very negative");
    }
    for code in [21u8, 22, 24, 25] {
        let (gi, (_, _, n, r0)) = first(code);
        let (l, r) = (r0 + 2 + n, r0 + 2 + 2 * n);
        let window = |a: f64, z: f64| {
            move |c: &mut Vec<u8>| {
                put(c, l, a);
                put(c, r, z);
            }
        };
        let pi = std::f64::consts::PI;
        check(
            &window(1.0, 1.0),
            invalid("angle window", gi),
            "empty window",
        );
        check(
            &window(2.0, 1.0),
            invalid("angle window", gi),
            "reversed window",
        );
        check(
            &window(-3.3, 3.3),
            invalid("angle window", gi),
            "wider than 2π",
        );
        check(
            &window(-0.5, 1.0),
            invalid("angle left", gi),
            "below 0, not centred",
        );
        check(
            &window(2.0, 3.5),
            invalid("angle right", gi),
            "above π, not centred",
        );
        check(&window(-1.0, 1.0), Ok(()), "centred at 0");
        check(&window(pi - 0.7, pi + 0.7), Ok(()), "centred at π");
        check(&window(0.0, pi), Ok(()), "the full range");
        check(
            &window(f64::NAN, 1.0),
            invalid("descriptor parameters", gi),
            "NaN",
        );
    }
    // Cutoff byte: compact codes for the polynomial kinds, cutoff codes for the others.
    let (gi20, (o20, ..)) = first(20);
    let _ = gi20;
    for bad in [0x06u8, 0x11, 0x13, 0x19, 0x56, 0xFF] {
        check(
            &|c| c[o20 + 1] = bad,
            Err(BlobError::UnknownCode {
                what: "compact function",
                code: bad.into(),
            }),
            "compact code",
        );
    }
    check(&|c| c[o20 + 1] = 0x14, Ok(()), "e");
    let (_, (o12, ..)) = first(12);
    check(
        &|c| c[o12 + 1] = 0x16,
        Err(BlobError::UnknownCode {
            what: "cutoff function",
            code: 0x16,
        }),
        "cutoff code",
    );
    // Neighbour species: ignored by the element-weighted kinds, checked for the others.
    check(&|c| c[o12 + 2] = 200, Ok(()), "weighted e1");
    let (g21, (o21, ..)) = first(21);
    check(
        &|c| c[o21 + 3] = 2,
        Err(BlobError::ShapeMismatch {
            what: "group species",
            index: g21,
        }),
        "poly e2",
    );
    check(
        &|c| c[o20 + 2] = 2,
        Err(BlobError::ShapeMismatch {
            what: "group species",
            index: gi20,
        }),
        "poly e1",
    );
    // The Gaussian parameters of the element-weighted Gaussian kinds.
    let (g12, (_, _, _, r12)) = first(12);
    check(&|c| put(c, r12 + 2, -0.1), invalid("eta", g12), "eta");
    let (g13, (_, _, n13, r13)) = first(13);
    check(
        &|c| put(c, r13 + 2 + 2 * n13, 0.5),
        invalid("zeta", g13),
        "zeta",
    );
    check(
        &|c| put(c, r13 + 2 + 3 * n13, 0.0),
        invalid("lambda", g13),
        "lambda",
    );
}

#[test]
fn writer_groups_by_kind_subtype_and_cutoff_and_writes_radians() {
    let spec = spec_for((CompactSpec::P4, false), 1);
    let b = write_blob(&spec, Precision::F64).unwrap();
    let gs = groups(&b);
    // Per species: 12: 2 groups (two rc), 13: 2, 20: 2 neighbour species × 2 rc, 21 and 22:
    // 3 pairs × 2 rc, 23: 2 rc, 24 and 25: 2 rc each.
    let per_species = 2 + 2 + 4 + 6 + 6 + 2 + 2 + 2;
    assert_eq!(gs.len(), 2 * per_species);
    let sections = blob::parse(&b).unwrap();
    for &(o, code, ..) in &gs {
        let kind = DescriptorKind::from_code(code).unwrap();
        let rec = &sections.bytes[o..o + 24];
        if kind.is_polynomial() {
            assert_eq!(
                CompactKind::from_code(rec[1]),
                Some(CompactKind {
                    core: CompactCore::Poly4,
                    asymmetric: false
                })
            );
        }
        if kind.is_weighted() {
            assert_eq!((rec[2], rec[3]), (0xFF, 0xFF));
        }
    }
    // A different subtype splits a group; angles are stored in radians.
    let mut s2 = spec.clone();
    let f = s2.species[0]
        .descriptors
        .iter()
        .position(|d| d.kind == KindSpec::PolyWide && d.angle_left == 30.0)
        .unwrap();
    s2.species[0].descriptors[f].subtype = CompactSpec::P1;
    let b2 = write_blob(&s2, Precision::F64).unwrap();
    assert_eq!(groups(&b2).len(), gs.len() + 1);
    let m = Model::<f64>::from_blob(mlff_train::io::AlignedBlob::new(&b).bytes())
        .map(|m| m.n_features(0))
        .unwrap();
    assert_eq!(m, Some(spec.species[0].descriptors.len()));
    let reals: Vec<f64> = sections
        .reals
        .chunks(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let rad = 120.0 * std::f64::consts::PI / 180.0;
    assert!(reals.contains(&rad) && !reals.contains(&120.0));
}

#[test]
fn spec_checks_and_names() {
    let good = spec_for((CompactSpec::P2, false), 2);
    assert!(good.check().is_ok());
    let find = |kind: KindSpec| {
        good.species[1]
            .descriptors
            .iter()
            .position(|d| d.kind == kind)
            .unwrap()
    };
    type Edit = fn(&mut DescriptorSpec);
    let cases: [(KindSpec, Edit, &str); 7] = [
        (KindSpec::PolyRadial, |d| d.rl = d.rc, "rl < rc"),
        (KindSpec::PolyWide, |d| d.angle_left = 200.0, "angle window"),
        (
            KindSpec::PolyNarrow,
            |d| d.angle_left = -10.0,
            "not centred",
        ),
        (
            KindSpec::WeightedPolyWide,
            |d| d.angle_right = 190.0,
            "not centred",
        ),
        (
            KindSpec::WeightedPolyNarrow,
            |d| d.angle_right = f64::NAN,
            "angle window",
        ),
        (KindSpec::PolyNarrow, |d| d.e2 = 2, "out of range"),
        (KindSpec::WeightedNarrow, |d| d.zeta = 0.5, "zeta"),
    ];
    for (kind, edit, want) in cases {
        let mut s = good.clone();
        edit(&mut s.species[1].descriptors[find(kind)]);
        let e = s.check().unwrap_err().to_string();
        assert!(
            e.contains("species O descriptor") && e.contains(want),
            "{kind:?}: {e}"
        );
    }
    // Ignored fields are not checked: species of element-weighted kinds, cutoff alpha of the
    // polynomial kinds.
    let mut s = good.clone();
    s.species[1].descriptors[find(KindSpec::WeightedPolyRadial)].e1 = 99;
    s.species[1].descriptors[find(KindSpec::PolyRadial)].alpha = 7.0;
    assert!(s.check().is_ok());
    assert!(write_blob(&s, Precision::F32).is_ok());
    // Centred windows are accepted (n2p2's rule).
    let mut s = good.clone();
    let d = &mut s.species[1].descriptors[find(KindSpec::PolyWide)];
    (d.angle_left, d.angle_right) = (-90.0, 90.0);
    assert!(s.check().is_ok());

    // Names: n2p2 type numbers and subtype tokens.
    for k in KindSpec::ALL {
        assert_eq!(KindSpec::from_n2p2_type(u32::from(k.n2p2_type())), Some(k));
    }
    assert_eq!(KindSpec::from_n2p2_type(21), Some(KindSpec::PolyNarrow));
    assert_eq!(KindSpec::from_n2p2_type(4), None);
    assert_eq!(CompactSpec::from_n2p2("p2a"), Some((CompactSpec::P2, true)));
    assert_eq!(CompactSpec::from_n2p2("p4"), Some((CompactSpec::P4, false)));
    assert_eq!(CompactSpec::from_n2p2("e"), Some((CompactSpec::E, false)));
    assert_eq!(CompactSpec::from_n2p2("ea"), Some((CompactSpec::E, false)));
    assert_eq!(CompactSpec::from_n2p2("p5"), None);
    assert_eq!(CompactSpec::P3.n2p2_name(true), "p3a");
}

#[test]
fn random_damage_to_new_kinds_never_panics() {
    // Damage aimed at the group records and reals of a blob with every new kind, resealed so
    // that it reaches validation; whatever validates must compute without panicking.
    use mlff_train::random::SplitMix64;
    let b = write_blob(&spec_for((CompactSpec::E, true), 9), Precision::F64).unwrap();
    let sections = blob::parse(&b).unwrap();
    let offset = |s: &[u8]| s.as_ptr() as usize - sections.bytes.as_ptr() as usize;
    let targets = [
        (offset(sections.groups), sections.groups.len()),
        (offset(sections.reals), sections.reals.len()),
    ];
    let s = cluster(6, 3.0, 1);
    let mut rng = SplitMix64::new(5);
    let (mut loaded, mut rejected) = (0, 0);
    for _ in 0..600 {
        let mut c = b.clone();
        let (start, len) = targets[(rng.next_u64() % 2) as usize];
        for _ in 0..1 + rng.next_u64() % 3 {
            let i = start + (rng.next_u64() as usize) % len;
            c[i] = rng.next_u64() as u8;
        }
        reseal(&mut c);
        let a = mlff_train::io::AlignedBlob::new(&c);
        match Model::<f64>::from_blob(a.bytes()) {
            Ok(_) => {
                loaded += 1;
                let _ = eval_core::<f64>(a.bytes(), &s);
                let _ = eval_core::<f32>(a.bytes(), &s);
            }
            Err(_) => rejected += 1,
        }
    }
    assert!(
        loaded > 0 && rejected > 0,
        "{loaded} loaded, {rejected} rejected"
    );
}
