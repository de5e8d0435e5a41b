//! `mlff train` end to end on the shipped ethanol slice: outputs, resume bit-identical to an
//! uninterrupted run, the exported blob agreeing with the trainer, and bad configs refused
//! before anything is written.

mod common;
use common::Scratch;

use std::path::{Path, PathBuf};
use std::process::Command;

fn mlff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlff"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmpdir(name: &str) -> Scratch {
    Scratch::new("train", name)
}

fn config(dir: &Path, name: &str, epochs: usize, extra: &str) -> PathBuf {
    let data = repo().join("examples/ethanol_small.extxyz");
    let text = format!(
        "[data]\nfiles = [{data:?}]\nsplit = {{ train = 0.7, validation = 0.15, test = 0.15 }}\n\
         [model]\nelements = [\"H\", \"C\", \"O\"]\ncutoff = 4.0\nhidden = [8]\nactivation = \"tanh\"\n\
         [model.descriptors.generated]\nradial = 4\nangular_eta = [0.05]\nzeta = [1]\n\
         [optimizer]\nlearning_rate = 5e-3\n\
         [training]\nepochs = {epochs}\nbatch_size = 16\nseed = 3\n{extra}"
    );
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn train(cfg: &Path, out: &Path, resume: bool) -> std::process::Output {
    let mut c = mlff();
    c.arg("train")
        .arg(cfg)
        .arg("--output")
        .arg(out)
        .arg("--quiet");
    if resume {
        c.arg("--resume");
    }
    c.output().unwrap()
}

#[test]
fn trains_exports_and_resumes_bit_identically() {
    let d = tmpdir("resume");
    let (da, db) = (d.join("cfg_a"), d.join("cfg_b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let full = config(&da, "ethanol.toml", 6, "");
    let out_a = d.join("a");
    let o = train(&full, &out_a, false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "model.mlff",
        "metrics.json",
        "learning_curve.csv",
        "checkpoint.json",
        "config.toml",
    ] {
        assert!(out_a.join(f).is_file(), "{f} missing");
    }
    assert!(out_a.join("plots").read_dir().unwrap().count() >= 4);
    let curve = std::fs::read_to_string(out_a.join("learning_curve.csv")).unwrap();
    assert_eq!(curve.lines().count(), 7, "{curve}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_a.join("metrics.json")).unwrap()).unwrap();
    for k in ["mae_per_atom", "rmse_per_atom", "mae", "rmse", "r2"] {
        assert!(m["energy"][k].is_number(), "energy.{k}");
    }
    for k in ["mae", "rmse", "r2"] {
        assert!(m["forces"][k].is_number(), "forces.{k}");
    }
    // Training made the model better than its start (first epoch vs last in the curve).
    let col = |line: &str, k: usize| line.split(',').nth(k).unwrap().parse::<f64>().unwrap();
    let rows: Vec<&str> = curve.lines().skip(1).collect();
    assert!(col(rows[5], 2) < col(rows[0], 2), "{curve}");
    // Interrupted after 3 epochs, resumed to 6: the same model to the last bit.
    let part = config(&db, "ethanol.toml", 3, "");
    let out_b = d.join("b");
    assert!(train(&part, &out_b, false).status.success());
    let rest = config(&db, "ethanol.toml", 6, "");
    let o = train(&rest, &out_b, true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let same = std::fs::read(out_a.join("model.mlff")).unwrap()
        == std::fs::read(out_b.join("model.mlff")).unwrap();
    assert!(same, "resumed model differs from the uninterrupted one");
    // The curve is the same too, but for the seconds column.
    let strip = |c: &str| -> Vec<String> {
        c.lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(a, _)| a).to_string())
            .collect()
    };
    let resumed_curve = std::fs::read_to_string(out_b.join("learning_curve.csv")).unwrap();
    assert_eq!(strip(&curve), strip(&resumed_curve));
    // A second run into the same directory without --resume is refused.
    let o = train(&full, &out_a, false);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--resume"));
    let mut c = mlff();
    c.arg("train")
        .arg(&full)
        .arg("--output")
        .arg(&out_a)
        .args(["--quiet", "--overwrite"]);
    assert!(c.output().unwrap().status.success());
    let same = std::fs::read(out_a.join("model.mlff")).unwrap()
        == std::fs::read(out_b.join("model.mlff")).unwrap();
    assert!(same, "a fresh run with the same seed is reproducible");
    // mlff eval on the exported model agrees with the training run's test metrics format.
    let o = mlff()
        .args(["eval", "--json", "-m"])
        .arg(out_a.join("model.mlff"))
        .arg("-d")
        .arg(repo().join("examples/ethanol_small.extxyz"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["forces"]["mae"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_configs_are_refused_before_writing() {
    let d = tmpdir("bad");
    let out = d.join("run");
    let typo = config(&d, "typo.toml", 2, "epohcs = 3\n");
    let o = train(&typo, &out, false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("epohcs") && err.contains("typo.toml"),
        "{err}"
    );
    let no_forces_data = d.join("noforces.extxyz");
    std::fs::write(
        &no_forces_data,
        "1\nenergy=-1.0 Properties=species:S:1:pos:R:3\nH 0 0 0\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(config(&d, "x.toml", 2, ""))
        .unwrap()
        .replace(
            &format!("{:?}", repo().join("examples/ethanol_small.extxyz")),
            &format!("{no_forces_data:?}"),
        );
    let cfg = d.join("noforces.toml");
    std::fs::write(&cfg, text).unwrap();
    let o = train(&cfg, &out, false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("forces"), "{err}");
    assert!(
        !out.exists(),
        "a failed run must not leave an output directory"
    );
}

#[test]
fn lbfgs_and_kalman_train_too() {
    let d = tmpdir("optimizers");
    for (name, extra) in [
        ("lbfgs", "[optimizer.lbfgs]\nmax_iterations_per_epoch = 5\n"),
        ("kalman", "[optimizer.kalman]\nforce_fraction = 0.05\n"),
    ] {
        // `config` writes [optimizer] before [training]; append the kind there.
        let cfg = config(&d, &format!("{name}.toml"), 3, extra);
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "[optimizer]\n",
            &format!("[optimizer]\nkind = \"{name}\"\n"),
        );
        std::fs::write(&cfg, text).unwrap();
        let out = d.join(name);
        let o = train(&cfg, &out, false);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let curve = std::fs::read_to_string(out.join("learning_curve.csv")).unwrap();
        let loss: Vec<f64> = curve
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
            .collect();
        assert_eq!(loss.len(), 3, "{name}");
        assert!(loss[2] < loss[0], "{name}: {loss:?}");
    }
}
