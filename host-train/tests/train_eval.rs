//! Evaluation: metrics on a hand-made case with known MAE/RMSE/R², metrics of a real model
//! against independent predictions, PNG plots (signature, size, atomic writes) and the JSON
//! shape `mlff eval --json` and `metrics.json` promise.

mod common;
use common::Scratch;

use std::path::{Path, PathBuf};

use mlff_train::predict::Predictor;
use mlff_train::random::{fit_scaling, random_model};
use mlff_train::train::config::TrainConfig;
use mlff_train::train::data::{read_any, Dataset};
use mlff_train::train::eval::{
    compare, eval_command, evaluate, Comparison, EnergyPoint, ErrorStats, EvalOptions, ForcePoint,
};
use mlff_train::writer::{write_blob, Precision};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmpdir(name: &str) -> Scratch {
    Scratch::new("traineval", name)
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= 1e-12 * b.abs().max(1.0))
}

/// Energies of three structures and forces of two atoms, errors chosen by hand.
fn hand_made() -> Comparison {
    Comparison {
        elements: vec!["H".into(), "O".into()],
        structures: 3,
        atoms: 6,
        // Per-atom errors 0.1, −0.2, 0.3 (structures of 1, 2 and 3 atoms: total errors 0.1,
        // −0.4, 0.9); total references 1, 2, 3.
        energies: vec![
            EnergyPoint {
                atoms: 1,
                reference: 1.0,
                predicted: 1.1,
            },
            EnergyPoint {
                atoms: 2,
                reference: 2.0,
                predicted: 1.6,
            },
            EnergyPoint {
                atoms: 3,
                reference: 3.0,
                predicted: 3.9,
            },
        ],
        // H: errors +1, −1 on references 0, 2; O: error 0.5 on reference 4.
        forces: vec![
            ForcePoint {
                element: 0,
                reference: 0.0,
                predicted: 1.0,
            },
            ForcePoint {
                element: 0,
                reference: 2.0,
                predicted: 1.0,
            },
            ForcePoint {
                element: 1,
                reference: 4.0,
                predicted: 4.5,
            },
        ],
    }
}

#[test]
fn metrics_of_a_hand_made_case() {
    let m = hand_made().metrics();
    let e = &m.energy;
    assert_eq!(e.count, 3);
    assert!(close(e.mae_per_atom, 0.6 / 3.0), "{e:?}");
    assert!(close(e.rmse_per_atom, (0.14f64 / 3.0).sqrt()), "{e:?}");
    assert!(close(e.max_abs_per_atom, 0.3));
    assert!(close(e.mae, 1.4 / 3.0));
    assert!(close(e.rmse, (0.98f64 / 3.0).sqrt()));
    assert!(close(e.max_abs, 0.9));
    // R² on total energies: SS_res = 0.98, SS_tot = 2.
    assert!(close(e.r2, 1.0 - 0.98 / 2.0), "{:?}", e.r2);
    // Per atom: references 1, 1, 1 have no variance.
    assert_eq!(e.r2_per_atom, None);

    let f = &m.forces;
    assert_eq!(f.count, 3);
    assert!(close(f.mae, 2.5 / 3.0));
    assert!(close(f.rmse, (2.25f64 / 3.0).sqrt()));
    // References 0, 2, 4: mean 2, SS_tot = 8.
    assert!(close(f.r2, 1.0 - 2.25 / 8.0));
    let h = &m.per_element["H"];
    assert_eq!(h.forces.count, 2);
    assert!(close(h.forces.mae, 1.0) && close(h.forces.rmse, 1.0) && close(h.forces.r2, 0.0));
    let o = &m.per_element["O"];
    assert!(close(o.forces.mae, 0.5) && o.forces.r2.is_none());

    // Nothing to compare: counts 0, statistics null.
    let empty = ErrorStats::from_pairs(std::iter::empty());
    assert_eq!((empty.count, empty.mae, empty.r2), (0, None, None));
    let json = serde_json::to_value(Comparison::default().metrics()).unwrap();
    assert!(json["energy"]["mae_per_atom"].is_null());
    assert_eq!(json["forces"]["count"], 0);
}

#[test]
fn json_has_the_promised_keys() {
    let v = serde_json::to_value(hand_made().metrics()).unwrap();
    for k in ["mae_per_atom", "rmse_per_atom", "mae", "rmse", "r2"] {
        assert!(v["energy"][k].is_number(), "energy.{k}: {v}");
    }
    for k in ["mae", "rmse", "r2"] {
        assert!(v["forces"][k].is_number(), "forces.{k}: {v}");
    }
    assert!(v["per_element"]["H"]["forces"]["rmse"].is_number());
    assert_eq!(v["structures"], 3);
}

/// A random-weight model over the small ethanol set, scaled to it, written to `dir`.
fn ethanol_model(dir: &Path) -> (PathBuf, Dataset) {
    let cfg = TrainConfig::load(&workspace_root().join("examples/ethanol_small.toml")).unwrap();
    let set = cfg.descriptor_set().unwrap();
    let mut spec = random_model(&set, 3);
    let ds = read_any(&cfg.data.files, 1.0, 1.0).unwrap();
    let ds = ds.subset(&(0..12).collect::<Vec<_>>());
    let structures: Vec<_> = ds.structures().cloned().collect();
    fit_scaling(&mut spec, &structures).unwrap();
    // Put the energies near the references so that R² and the plots' ranges are sensible.
    spec.species[0].reference_energy = -309.5 / 9.0;
    spec.species[1].reference_energy = -309.5 / 9.0;
    spec.species[2].reference_energy = -309.5 / 9.0;
    let path = dir.join("model.mlff");
    std::fs::write(&path, write_blob(&spec, Precision::F64).unwrap()).unwrap();
    (path, ds)
}

#[test]
fn metrics_agree_with_independent_predictions() {
    let d = tmpdir("agree");
    let (model, ds) = ethanol_model(&d);
    let p = Predictor::new(&std::fs::read(&model).unwrap()).unwrap();
    let m = evaluate(&p, &ds, Precision::F64, Some(2)).unwrap();
    assert_eq!((m.structures, m.atoms), (12, 108));
    assert_eq!(m.energy.count, 12);
    assert_eq!(m.forces.count, 108 * 3);
    assert_eq!(m.per_element["H"].atoms, 72);
    assert_eq!(m.per_element["C"].atoms, 24);
    let (mut abs_e, mut sq_f) = (0.0, 0.0);
    for s in &ds.samples {
        let pr = p.predict(&s.structure, Precision::F64).unwrap();
        abs_e += (pr.energy - s.structure.energy.unwrap()).abs() / 9.0;
        for (a, b) in pr.forces.iter().zip(&s.structure.forces) {
            sq_f += (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>();
        }
    }
    assert!(close(m.energy.mae_per_atom, abs_e / 12.0));
    assert!(close(m.forces.rmse, (sq_f / 324.0).sqrt()));
    // Thread count does not change anything.
    assert_eq!(evaluate(&p, &ds, Precision::F64, Some(1)).unwrap(), m);

    // A perfect model: references replaced by its own predictions.
    let mut perfect = ds.clone();
    for s in &mut perfect.samples {
        let pr = p.predict(&s.structure, Precision::F64).unwrap();
        s.structure.energy = Some(pr.energy);
        s.structure.forces = pr.forces;
    }
    let m = evaluate(&p, &perfect, Precision::F64, None).unwrap();
    assert_eq!(m.energy.mae, Some(0.0));
    assert_eq!(m.forces.r2, Some(1.0));
    // Plots of a perfect model (zero-width error histograms) still render.
    let cmp = compare(&p, &perfect, Precision::F64, None).unwrap();
    assert_eq!(cmp.write_plots(&d.join("perfect")).unwrap().len(), 4);
}

fn same_json(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (k, v) in x {
                same_json(v, &y[k], &format!("{at}.{k}"));
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-14 * x.abs().max(1.0),
                "{at}: {x} vs {y}"
            );
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert!(
        bytes.len() > 5_000,
        "{}: {} bytes",
        path.display(),
        bytes.len()
    );
    // Width and height from the IHDR chunk.
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(w >= 600 && h >= 500, "{w}x{h}");
}

#[test]
fn eval_command_writes_plots_and_metrics() {
    let d = tmpdir("command");
    let (model, _) = ethanol_model(&d);
    let data = workspace_root().join("examples/ethanol_small.extxyz");
    let plots = d.join("plots");
    let opts = EvalOptions {
        plots: Some(plots.clone()),
        json: true,
        threads: Some(2),
        ..EvalOptions::default()
    };
    let m = eval_command(&model, std::slice::from_ref(&data), &opts).unwrap();
    assert_eq!(m.structures, 200);
    for name in [
        "parity_energy.png",
        "parity_forces.png",
        "errors_energy.png",
        "errors_forces.png",
    ] {
        assert_png(&plots.join(name));
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plots.join("metrics.json")).unwrap())
            .unwrap();
    // serde_json's default float parser may differ from the printed value in the last bit.
    same_json(&json, &serde_json::to_value(&m).unwrap(), "");
    assert!(json["energy"]["rmse_per_atom"].is_number());
    assert!(json["forces"]["r2"].is_number());
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
}

#[test]
fn eval_errors_leave_nothing_behind() {
    let d = tmpdir("errors");
    let (model, _) = ethanol_model(&d);
    let plots = d.join("plots");
    let opts = EvalOptions {
        plots: Some(plots.clone()),
        ..EvalOptions::default()
    };
    // An element the model lacks, in the last frame.
    let frame = "2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc=\"F F F\"\n\
        O 0 0 0 0 0 0\nH 0.96 0 0 0 0 0\n";
    let bad = d.join("bad.extxyz");
    std::fs::write(
        &bad,
        format!("{frame}{}", frame.replace("H 0.96", "N 0.96")),
    )
    .unwrap();
    let e = format!("{:#}", eval_command(&model, &[bad], &opts).unwrap_err());
    assert!(e.contains("element N is not in the model"), "{e}");
    assert!(e.contains("bad.extxyz frame 2"), "{e}");
    assert!(!plots.exists(), "no partial outputs");
    // Not a blob.
    let e = format!(
        "{:#}",
        eval_command(&d.join("bad.extxyz"), &[d.join("bad.extxyz")], &opts).unwrap_err()
    );
    assert!(
        e.contains("bad.extxyz") && e.contains("invalid blob"),
        "{e}"
    );
    assert!(!plots.exists());
}
