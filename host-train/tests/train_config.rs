//! Training configuration and data: every shipped example parses and builds a valid model;
//! typos and bad values are errors naming the field, the file and the line; the split is
//! deterministic, disjoint and complete; reference energies by least squares are exact; bad
//! data (no forces with the force loss on, unknown elements, empty splits, NaN, no energy)
//! fail with messages naming file and frame.
//!
//! Reference data: `$MLFF_REFDATA` (default `../shared/data` relative to the workspace root);
//! tests that need it print a message and pass when it is missing, unless
//! `MLFF_REQUIRE_REFDATA=1`.

use std::path::{Path, PathBuf};

use mlff_train::random::{random_model, SplitMix64};
use mlff_train::spec::{KindSpec, ModelSpec};
use mlff_train::structure::Structure;
use mlff_train::train::config::{RadialMode, TrainConfig};
use mlff_train::train::data::{
    least_squares_min_norm, load_splits, reference_energies, split_indices, Dataset, Requirements,
    Sample,
};
use mlff_train::writer::{write_blob, Precision};

mod common;
use common::Scratch;
use common::{refdata, workspace_root};

fn tmpdir(name: &str) -> Scratch {
    Scratch::new("trainconfig", name)
}

fn example(name: &str) -> PathBuf {
    workspace_root().join("examples").join(name)
}

/// A minimal valid configuration with `extra` appended (TOML tables after `[model]`).
fn minimal(extra: &str) -> String {
    format!(
        "[data]\nfiles = [\"a.extxyz\"]\n\n[model]\nelements = [\"H\", \"O\"]\ncutoff = 5.0\n\
         [model.descriptors.generated]\nradial = 4\n{extra}"
    )
}

fn parse_err(text: &str) -> String {
    format!(
        "{:#}",
        TrainConfig::parse(text, "bad.toml").expect_err("should fail")
    )
}

/// Checks that a model built from the configuration passes every blob check.
fn builds(cfg: &TrainConfig) -> ModelSpec {
    let set = cfg.descriptor_set().unwrap();
    let spec = random_model(&set, 7);
    spec.check().unwrap();
    write_blob(&spec, Precision::F64).unwrap();
    spec
}

#[test]
fn every_shipped_example_parses_and_builds() {
    let mut seen = 0;
    for entry in std::fs::read_dir(workspace_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        seen += 1;
        let mut cfg =
            TrainConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        // Relative paths are resolved against the file's directory.
        assert!(cfg.data.files[0].starts_with(path.parent().unwrap()));
        if let Some(nn) = &mut cfg.model.descriptors.n2p2_input {
            assert!(nn.ends_with("n2p2-train/H2O_RPBE-D3/input.nn"));
            match refdata("n2p2-train/H2O_RPBE-D3/input.nn") {
                Some(p) => *nn = p,
                None => continue,
            }
        }
        let spec = builds(&cfg);
        assert_eq!(spec.species.len(), cfg.model.elements.len());
    }
    assert!(seen >= 5, "only {seen} example configurations");
}

#[test]
fn ethanol_example_has_the_documented_layout() {
    let cfg = TrainConfig::load(&example("ethanol.toml")).unwrap();
    assert_eq!(cfg.species(), ["H", "C", "O"]);
    let set = cfg.descriptor_set().unwrap();
    assert_eq!(set.hidden, [25, 25]);
    // 8 radial × 3 elements + 6 pairs × 2 η × 2 ζ × 2 λ.
    for d in &set.descriptors {
        assert_eq!(d.len(), 24 + 48);
        let g2: Vec<_> = d.iter().filter(|d| d.kind == KindSpec::G2).collect();
        assert_eq!(g2.len(), 24);
        assert_eq!((g2[0].rs, g2[7].rs), (0.7, 4.5));
        let dr: f64 = (4.5 - 0.7) / 7.0;
        assert!((g2[0].eta - 1.0 / (2.0 * dr * dr)).abs() < 1e-12);
        assert!(d.iter().all(|d| d.rc == 4.5));
    }
    assert_eq!(cfg.output_dir(), PathBuf::from("runs/ethanol"));
    let f = cfg.fractions();
    assert_eq!((f.train, f.validation, f.test), (0.8, 0.1, 0.1));
    let sched = cfg.optimizer.schedule();
    assert!(sched.check().is_ok(), "{sched:?}");
}

#[test]
fn unknown_fields_are_errors_naming_field_file_and_line() {
    let text = minimal("\n[training]\nepochs = 3\nbatch_sise = 4\n");
    let e = parse_err(&text);
    assert!(e.contains("bad.toml:12:1"), "{e}");
    assert!(e.contains("batch_sise"), "{e}");
    assert!(e.contains("batch_size"), "the valid names are listed: {e}");

    // Deep in a nested table, and in the top level.
    let e = parse_err(&minimal("radial_modes = \"shifted\"\n"));
    assert!(
        e.contains("bad.toml:9:1") && e.contains("radial_modes"),
        "{e}"
    );
    let e = parse_err(&format!("{}\n[outptu]\ndir = \"x\"\n", minimal("")));
    assert!(e.contains("outptu"), "{e}");

    // Through `load`: the file's path.
    let d = tmpdir("typo");
    let p = d.join("typo.toml");
    std::fs::write(&p, minimal("\n[loss]\nforce_wieght = 1\n")).unwrap();
    let e = format!("{:#}", TrainConfig::load(&p).unwrap_err());
    assert!(e.contains(&format!("{}:11:1", p.display())), "{e}");
    assert!(e.contains("force_wieght"), "{e}");
}

#[test]
fn bad_values_are_clear_errors() {
    let cases: &[(&str, &[&str])] = &[
        (
            "\n[data.split]\ntrain = 0.5\nvalidation = 0.1\ntest = 0.1\n",
            &["bad.toml:11:1", "data.split.train", "sum to 1"],
        ),
        (
            "\n[training]\nbatch_size = 0\n",
            &["bad.toml:11:1", "training.batch_size", "at least 1"],
        ),
        ("\n[training]\nepochs = 0\n", &["training.epochs"]),
        (
            "\n[loss]\nenergy_weight = 0\nforce_weight = 0\n",
            &["loss.energy_weight", "nothing to fit"],
        ),
        (
            "\n[loss]\nforce_weight = -1\n",
            &["loss.force_weight", ">= 0"],
        ),
        (
            "\n[optimizer]\nlearning_rate = 1e-7\n",
            &["min_learning_rate", "learning_rate = 0.0000001"],
        ),
        (
            "\n[optimizer.schedule]\nkind = \"plateau\"\ndecay = 1.0\n",
            &["optimizer.schedule.decay", "(0, 1)"],
        ),
        ("r_upper = 6.0\n", &["r_upper", "cutoff"]),
        ("lambda = [1, 0]\n", &["lambda", "1 or -1"]),
        ("zeta = [0.5]\n", &["zeta", ">= 1"]),
        (
            "radial_mode = \"centred\"\nr_lower = 0\n",
            &["r_lower", "> 0 for centred"],
        ),
        (
            "\n[training]\nearly_stopping_patience = 5\n[data.split]\nvalidation = 0\n",
            &["early_stopping_patience", "needs a validation set"],
        ),
    ];
    for (extra, needles) in cases {
        let e = parse_err(&minimal(extra));
        for n in *needles {
            assert!(e.contains(n), "{extra:?}: missing {n:?} in: {e}");
        }
    }

    // Unknown names of enumerations are listed by serde with the valid ones.
    let e = parse_err(&minimal("").replace("cutoff = 5.0", "cutoff = 5.0\nactivation = \"tahn\""));
    assert!(
        e.contains("tahn") && e.contains("tanh") && e.contains("bad.toml:7"),
        "{e}"
    );

    // Elements: unknown symbol, duplicate.
    let e = parse_err(&minimal("").replace("[\"H\", \"O\"]", "[\"H\", \"Xx\"]"));
    assert!(e.contains("model.elements") && e.contains("\"Xx\""), "{e}");
    let e = parse_err(&minimal("").replace("[\"H\", \"O\"]", "[\"H\", \"H\"]"));
    assert!(e.contains("listed twice"), "{e}");

    // Descriptor sources: none, two.
    let none = "[data]\nfiles = [\"a.xyz\"]\n[model]\nelements = [\"H\"]\ncutoff = 4\n\
                [model.descriptors]\n";
    assert!(parse_err(none).contains("give one of"));
    let two = format!("{none}n2p2_input = \"input.nn\"\n[model.descriptors.generated]\n");
    assert!(parse_err(&two).contains("only one of"));

    // Units of extended XYZ cannot be changed.
    let e = parse_err(&minimal("").replace(
        "files = [\"a.extxyz\"]",
        "files = [\"a.extxyz\"]\nlength_unit = \"bohr\"",
    ));
    assert!(
        e.contains("bad.toml:3:1") && e.contains("only to n2p2 .data"),
        "{e}"
    );

    // Files: extension, none.
    let e = parse_err(&minimal("").replace("a.extxyz", "a.csv"));
    assert!(e.contains("a.csv") && e.contains(".extxyz"), "{e}");
    let e = parse_err(&minimal("").replace("[\"a.extxyz\"]", "[]"));
    assert!(e.contains("data.files"), "{e}");

    // Validation given twice.
    let e = parse_err(&minimal("").replace(
        "files = [\"a.extxyz\"]",
        "files = [\"a.extxyz\"]\nvalidation_files = [\"v.extxyz\"]\nsplit = { validation = 0.2 }",
    ));
    assert!(e.contains("either as files or as a fraction"), "{e}");

    // Missing required field: serde names it.
    let e = parse_err(
        "[data]\nfiles = [\"a.xyz\"]\n[model]\ncutoff = 4\n[model.descriptors.generated]\n",
    );
    assert!(e.contains("elements"), "{e}");
}

#[test]
fn explicit_lists_and_defaults() {
    let text = "[data]\nfiles = [\"a.xyz\"]\nvalidation_files = [\"v.xyz\"]\n\
        [model]\nelements = [\"O\", \"H\"]\ncutoff = 4.0\nhidden = [5]\nactivation = \"softplus\"\n\
        [[model.descriptors.list]]\nelement = \"H\"\nkind = \"g2\"\nneighbors = [\"O\"]\neta = 0.5\nrs = 1.0\n\
        [[model.descriptors.list]]\nelement = \"O\"\nkind = \"g4\"\nneighbors = [\"H\", \"H\"]\neta = 0.01\nzeta = 2\nlambda = -1\nrc = 3.0\n\
        [[model.descriptors.list]]\nelement = \"O\"\nkind = \"g2\"\nneighbors = [\"O\"]\neta = 0.1\n";
    let cfg = TrainConfig::parse(text, "list.toml").unwrap();
    // Validation given as files: its fraction defaults to 0, test stays 0.1.
    let f = cfg.fractions();
    assert_eq!((f.train, f.validation, f.test), (0.9, 0.0, 0.1));
    assert!(cfg.has_validation());
    let set = cfg.descriptor_set().unwrap();
    assert_eq!(set.symbols, ["H", "O"], "species by atomic number");
    assert_eq!(set.descriptors[0].len(), 1);
    assert_eq!(set.descriptors[1].len(), 2);
    let g4 = &set.descriptors[1][0];
    assert_eq!(
        (g4.kind, g4.e1, g4.e2, g4.rc, g4.lambda),
        (KindSpec::G4, 0, 0, 3.0, -1.0)
    );
    assert_eq!(set.descriptors[0][0].e1, 1);
    assert_eq!(set.descriptors[0][0].rc, 4.0, "rc defaults to model.cutoff");
    builds(&cfg);

    let wrong = text.replace("neighbors = [\"H\", \"H\"]", "neighbors = [\"H\"]");
    let cfg = TrainConfig::parse(&wrong, "list.toml").unwrap();
    let e = format!("{:#}", cfg.descriptor_set().unwrap_err());
    assert!(
        e.contains("list[1]") && e.contains("needs 2 neighbour"),
        "{e}"
    );
    let missing = text.replace("element = \"H\"", "element = \"C\"");
    let cfg = TrainConfig::parse(&missing, "list.toml").unwrap();
    let e = format!("{:#}", cfg.descriptor_set().unwrap_err());
    assert!(
        e.contains("\"C\"") && e.contains("not in model.elements"),
        "{e}"
    );

    // Defaults of a minimal file.
    let cfg = TrainConfig::parse(&minimal(""), "m.toml").unwrap();
    assert_eq!(cfg.training.epochs, 100);
    assert_eq!(cfg.training.batch_size, 32);
    assert_eq!(cfg.loss.energy_weight, 1.0);
    assert_eq!(cfg.split_seed(), cfg.training.seed);
    let g = cfg.model.descriptors.generated.as_ref().unwrap();
    assert_eq!(g.radial_mode, RadialMode::Shifted);
    let set = cfg.descriptor_set().unwrap();
    assert_eq!(set.hidden, [25, 25]);
    // 4 radial × 2 elements + 3 pairs × 2 η × 2 ζ × 2 λ.
    assert_eq!(set.descriptors[0].len(), 8 + 24);
}

#[test]
fn n2p2_descriptor_sets_are_read_in_their_unit() {
    let Some(nn) = refdata("n2p2-train/H2O_RPBE-D3/input.nn") else {
        return;
    };
    let text = format!(
        "[data]\nfiles = [\"input.data\"]\n[model]\nelements = [\"O\", \"H\"]\n\
         [model.descriptors]\nn2p2_input = {:?}\nlength_unit = \"bohr\"\n",
        nn.display().to_string()
    );
    let cfg = TrainConfig::parse(&text, "w.toml").unwrap();
    let set = cfg.descriptor_set().unwrap();
    assert_eq!(set.symbols, ["H", "O"]);
    assert_eq!(set.hidden, [25, 25]);
    let rc = set.descriptors[0][0].rc;
    assert!((rc - 12.0 * mlff_train::n2p2::BOHR).abs() < 1e-9, "rc {rc}");
    // A stated cutoff must agree; other widths override the file's.
    let wrong = text.replace("[model.descriptors]", "cutoff = 12.0\n[model.descriptors]");
    let e = format!(
        "{:#}",
        TrainConfig::parse(&wrong, "w.toml")
            .unwrap()
            .descriptor_set()
            .unwrap_err()
    );
    assert!(e.contains("model.cutoff = 12") && e.contains("6.35"), "{e}");
    let wider = text.replace(
        "[model.descriptors]",
        "hidden = [10, 10, 10]\n[model.descriptors]",
    );
    let set = TrainConfig::parse(&wider, "w.toml")
        .unwrap()
        .descriptor_set()
        .unwrap();
    assert_eq!((set.hidden.len(), set.activations.len()), (3, 4));
    let bad = text.replace("[\"O\", \"H\"]", "[\"O\", \"H\", \"C\"]");
    let e = format!(
        "{:#}",
        TrainConfig::parse(&bad, "w.toml")
            .unwrap()
            .descriptor_set()
            .unwrap_err()
    );
    assert!(e.contains("differ"), "{e}");
}

#[test]
fn split_is_deterministic_disjoint_and_complete() {
    for n in [1usize, 2, 7, 10, 100, 2400] {
        let a = split_indices(n, 0.1, 0.15, 42);
        let b = split_indices(n, 0.1, 0.15, 42);
        assert_eq!(a, b, "same seed, same split");
        assert_eq!(a.test.len(), (0.15 * n as f64).round() as usize);
        assert_eq!(a.validation.len(), (0.1 * n as f64).round() as usize);
        let mut all: Vec<usize> = a
            .train
            .iter()
            .chain(&a.validation)
            .chain(&a.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "disjoint and complete");
        for set in [&a.train, &a.validation, &a.test] {
            assert!(set.windows(2).all(|w| w[0] < w[1]), "sorted");
        }
    }
    let a = split_indices(1000, 0.1, 0.1, 1);
    let b = split_indices(1000, 0.1, 0.1, 2);
    assert_ne!(a.test, b.test, "another seed, another split");
    // The same seed picks the same test set whatever the validation fraction.
    assert_eq!(split_indices(1000, 0.2, 0.1, 1).test, a.test);
    // Not simply the first or last structures.
    assert!(a.test.first() < Some(&100) && a.test.last() > Some(&900));
}

fn structure(symbols: &[&str], energy: f64) -> Sample {
    let n = symbols.len();
    Sample {
        structure: Structure {
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            positions: (0..n).map(|i| [i as f64 * 1.5, 0.0, 0.0]).collect(),
            forces: vec![[0.0; 3]; n],
            energy: Some(energy),
            ..Structure::default()
        },
        pbc: [false; 3],
        file: 0,
        frame: 1,
    }
}

#[test]
fn reference_energies_recover_per_element_energies() {
    let elements: Vec<String> = ["H", "C", "O"].iter().map(|s| s.to_string()).collect();
    let eps = [-13.6, -1029.8, -2040.1];
    let mut rng = SplitMix64::new(5);
    let mut ds = Dataset {
        files: vec![PathBuf::from("synthetic")],
        samples: Vec::new(),
    };
    for _ in 0..50 {
        let counts = [
            1 + rng.next_u64() % 12,
            rng.next_u64() % 9,
            rng.next_u64() % 5,
        ];
        let mut syms = Vec::new();
        for (k, &c) in counts.iter().enumerate() {
            syms.extend(std::iter::repeat_n(elements[k].as_str(), c as usize));
        }
        let e: f64 = counts.iter().zip(eps).map(|(&c, e)| c as f64 * e).sum();
        ds.samples.push(structure(&syms, e));
    }
    let fit = reference_energies(&ds, &elements).unwrap();
    assert_eq!(fit.rank, 3);
    for (got, want) in fit.energies.iter().zip(eps) {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
    assert!(fit.rmse_per_atom < 1e-9);

    // One composition only (an MD run): the minimum-norm solution, ε ∝ composition, which
    // reproduces the energies.
    let mut md = ds.clone();
    md.samples = (0..10)
        .map(|k| {
            structure(
                &["C", "C", "O", "H", "H", "H", "H", "H", "H"],
                -300.0 - 0.01 * k as f64,
            )
        })
        .collect();
    let fit = reference_energies(&md, &elements).unwrap();
    assert_eq!(fit.rank, 1);
    let mean = -300.045;
    let c = [6.0, 2.0, 1.0];
    let norm2: f64 = c.iter().map(|x| x * x).sum();
    for (got, ck) in fit.energies.iter().zip(c) {
        assert!((got - mean * ck / norm2).abs() < 1e-9, "{got}");
    }
    // Water: H always twice O; rank 1 of 2.
    let (x, rank) = least_squares_min_norm(&[vec![2.0, 1.0], vec![4.0, 2.0]], &[-3.0, -6.0], 2);
    assert_eq!(rank, 1);
    assert!(
        (x[0] - (-1.2)).abs() < 1e-12 && (x[1] - (-0.6)).abs() < 1e-12,
        "{x:?}"
    );

    // An element that never occurs cannot be fitted.
    let mut no_o = ds.clone();
    no_o.samples
        .retain(|s| !s.structure.symbols.iter().any(|e| e == "O"));
    let e = format!("{:#}", reference_energies(&no_o, &elements).unwrap_err());
    assert!(
        e.contains("element O") && e.contains("no training structure"),
        "{e}"
    );
}

const FRAME_NO_FORCES: &str = "2\nProperties=species:S:1:pos:R:3 energy=-1.5 pbc=\"F F F\"\n\
    O 0 0 0\nH 0.96 0 0\n";
const FRAME: &str = "2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc=\"F F F\"\n\
    O 0 0 0 0.1 0 0\nH 0.96 0 0 -0.1 0 0\n";

/// Writes `frames` to `dir/name` and a configuration training on it with `extra` settings.
fn setup(dir: &Path, name: &str, frames: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join(name), frames).unwrap();
    let cfg = format!(
        "[data]\nfiles = [\"{name}\"]\n{extra}\n[model]\nelements = [\"H\", \"O\"]\ncutoff = 4.0\n\
         [model.descriptors.generated]\nradial = 3\n"
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, cfg).unwrap();
    p
}

fn load_err(p: &Path) -> String {
    let cfg = TrainConfig::load(p).unwrap();
    format!("{:#}", load_splits(&cfg).expect_err("should fail"))
}

#[test]
fn bad_data_fails_with_file_and_frame() {
    let d = tmpdir("baddata");
    let ten = |f: &str| f.repeat(10);

    // No forces while the force loss is on; fine with force_weight = 0.
    let p = setup(&d, "nof.extxyz", &ten(FRAME_NO_FORCES), "");
    let e = load_err(&p);
    assert!(
        e.contains("nof.extxyz:1: frame 1") && e.contains("no forces"),
        "{e}"
    );
    assert!(e.contains("force_weight"), "{e}");
    let p = std::fs::read_to_string(&p).unwrap() + "[loss]\nforce_weight = 0\n";
    std::fs::write(d.join("ok.toml"), p).unwrap();
    let s = load_splits(&TrainConfig::load(&d.join("ok.toml")).unwrap()).unwrap();
    assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (8, 1, 1));

    // An element the model does not know, in frame 4 (line 13).
    let mut frames: Vec<String> = (0..10).map(|_| FRAME.to_string()).collect();
    frames[3] = FRAME.replace("H 0.96", "C 0.96");
    let p = setup(&d, "elem.extxyz", &frames.concat(), "");
    let e = load_err(&p);
    assert!(
        e.contains("elem.extxyz:13: frame 4") && e.contains("element C"),
        "{e}"
    );

    // No energy.
    let mut frames: Vec<String> = (0..10).map(|_| FRAME.to_string()).collect();
    frames[1] = FRAME.replace(" energy=-1.5", "");
    let p = setup(&d, "noe.extxyz", &frames.concat(), "");
    let e = load_err(&p);
    assert!(
        e.contains("noe.extxyz:5: frame 2") && e.contains("no energy"),
        "{e}"
    );

    // NaN: the reader rejects it with file and line.
    let mut frames: Vec<String> = (0..10).map(|_| FRAME.to_string()).collect();
    frames[2] = FRAME.replace("-0.1 0 0", "nan 0 0");
    let p = setup(&d, "nan.extxyz", &frames.concat(), "");
    let e = load_err(&p);
    assert!(
        e.contains("nan.extxyz:12") && e.contains("not finite"),
        "{e}"
    );
    let mut frames: Vec<String> = (0..10).map(|_| FRAME.to_string()).collect();
    frames[2] = FRAME.replace("energy=-1.5", "energy=nan");
    let p = setup(&d, "nane.extxyz", &frames.concat(), "");
    let e = load_err(&p);
    assert!(e.contains("nane.extxyz") && e.contains("energy"), "{e}");

    // Empty splits: 3 structures cannot give a 10 % test set; an empty file.
    let p = setup(&d, "three.extxyz", &FRAME.repeat(3), "");
    let e = load_err(&p);
    assert!(
        e.contains("set is empty") && e.contains("3 structures"),
        "{e}"
    );
    let p = setup(&d, "empty.extxyz", "", "");
    let e = load_err(&p);
    assert!(e.contains("empty.extxyz: no structures"), "{e}");
    let p = setup(
        &d,
        "all.extxyz",
        &ten(FRAME),
        "split = { train = 0.0, validation = 0.5, test = 0.5 }",
    );
    let cfg = format!("{:#}", TrainConfig::load(&p).unwrap_err());
    assert!(cfg.contains("training fraction must be positive"), "{cfg}");

    // A missing file.
    let p = setup(&d, "x.extxyz", FRAME, "");
    std::fs::remove_file(d.join("x.extxyz")).unwrap();
    let e = load_err(&p);
    assert!(e.contains("x.extxyz"), "{e}");
}

#[test]
fn n2p2_data_is_converted_and_explicit_sets_are_read() {
    let d = tmpdir("n2p2data");
    let data = "begin\nlattice 10 0 0\nlattice 0 10 0\nlattice 0 0 10\n\
        atom 0 0 0 O 0 0 0.1 0 0\natom 1.8 0 0 H 0 0 -0.1 0 0\natom 0 1.8 0 H 0 0 0 0 0\n\
        energy -76.0\ncharge 0\nend\n";
    std::fs::write(d.join("w.data"), data.repeat(10)).unwrap();
    std::fs::write(d.join("v.data"), data.repeat(2)).unwrap();
    let cfg = "[data]\nfiles = [\"w.data\"]\ntest_files = [\"v.data\"]\nlength_unit = \"bohr\"\n\
        energy_unit = \"hartree\"\nsplit = { validation = 0.2 }\n[model]\nelements = [\"H\", \"O\"]\n\
        cutoff = 4.0\n[model.descriptors.generated]\n";
    std::fs::write(d.join("w.toml"), cfg).unwrap();
    let s = load_splits(&TrainConfig::load(&d.join("w.toml")).unwrap()).unwrap();
    assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (8, 2, 2));
    let st = &s.train.samples[0].structure;
    let bohr = mlff_train::n2p2::BOHR;
    let hartree = mlff_train::n2p2::HARTREE;
    assert!((st.positions[1][0] - 1.8 * bohr).abs() < 1e-12);
    assert!((st.energy.unwrap() + 76.0 * hartree).abs() < 1e-9);
    assert!((st.forces[0][0] - 0.1 * hartree / bohr).abs() < 1e-12);
    assert_eq!(s.train.samples[0].pbc, [true; 3]);
    assert!(
        s.test.origin(1).ends_with("v.data frame 2"),
        "{}",
        s.test.origin(1)
    );
    let req = Requirements {
        elements: vec!["H".into()],
        ..Requirements::default()
    };
    let e = format!(
        "{:#}",
        Dataset::read(&[d.join("w.data")], 1.0, 1.0, &req).unwrap_err()
    );
    assert!(
        e.contains("w.data: structure 1") && e.contains("element O"),
        "{e}"
    );
}

#[test]
fn shipped_examples_load_their_data() {
    // The README's small set is in the repository.
    let cfg = TrainConfig::load(&example("ethanol_small.toml")).unwrap();
    let s = load_splits(&cfg).unwrap();
    assert_eq!(
        (s.train.len(), s.validation.len(), s.test.len()),
        (160, 20, 20)
    );
    assert!(s
        .train
        .samples
        .iter()
        .all(|x| x.structure.forces.len() == 9));
    let fit = reference_energies(&s.train, &cfg.species()).unwrap();
    assert_eq!(fit.rank, 1, "one composition");
    // The shipped slice is the first 200 frames of the reference file, verbatim.
    if let Some(full) = refdata("gfn2/ethanol_gfn2_train.extxyz") {
        let small = std::fs::read_to_string(example("ethanol_small.extxyz")).unwrap();
        let full = std::fs::read_to_string(full).unwrap();
        assert!(full.starts_with(&small));
        assert_eq!(small.lines().count(), 200 * 11);
    }

    // The examples over reference data, read from $MLFF_REFDATA.
    for (toml, rel, n) in [
        ("ethanol.toml", "gfn2/ethanol_gfn2_train.extxyz", 2400),
        ("cu_emt.toml", "emt/cu_emt_train.extxyz", 1200),
        ("h2o_n2p2.toml", "n2p2-train/H2O_RPBE-D3/input.data", 20),
    ] {
        let Some(path) = refdata(rel) else { continue };
        let mut cfg = TrainConfig::load(&example(toml)).unwrap();
        cfg.data.files = vec![path];
        if let Some(nn) = &mut cfg.model.descriptors.n2p2_input {
            let Some(p) = refdata("n2p2-train/H2O_RPBE-D3/input.nn") else {
                continue;
            };
            *nn = p;
        }
        let s = load_splits(&cfg).unwrap();
        assert_eq!(
            s.train.len() + s.validation.len() + s.test.len(),
            n,
            "{toml}"
        );
        let fit = reference_energies(&s.train, &cfg.species()).unwrap();
        assert!(fit.energies.iter().all(|e| e.is_finite()), "{toml}");
        if toml == "cu_emt.toml" {
            assert!(s.train.samples.iter().all(|x| x.pbc == [true; 3]));
        }
        if toml == "h2o_n2p2.toml" {
            // Water in eV: about −2080 eV per molecule (RPBE total energies in Hartree).
            let st = &s.train.samples[0].structure;
            let per_molecule = st.energy.unwrap() / (st.symbols.len() as f64 / 3.0);
            assert!((-2100.0..-2000.0).contains(&per_molecule), "{per_molecule}");
            builds(&cfg);
        }
    }
}
