//! The `mlff` command end to end: build a model, inspect it, compute energies; bad inputs fail
//! with a message naming the file and leave nothing behind.

mod common;
use common::Scratch;

use std::path::PathBuf;
use std::process::Command;

fn mlff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlff"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmpdir(name: &str) -> Scratch {
    Scratch::new("cli", name)
}

#[test]
fn main_job_runs_and_precisions_agree() {
    let d = tmpdir("main");
    let model = d.join("model.mlff");
    let water = repo().join("examples/water64.data");
    let out = mlff()
        .args([
            "random-model",
            "--elements",
            "H,O",
            "--cutoff",
            "6",
            "--scale-from",
        ])
        .arg(&water)
        .arg("-o")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mlff()
        .arg("inspect")
        .arg(&model)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success());
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["species"][1]["symbol"], "O");
    assert_eq!(info["species"][0]["features"], 40);
    let energy = |p: &str| {
        let out_path = d.join(format!("pred-{p}.extxyz"));
        let out = mlff()
            .args(["predict", "--precision", p, "-m"])
            .arg(&model)
            .arg("-i")
            .arg(&water)
            .arg("-o")
            .arg(&out_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let frames = mlff_train::extxyz::read_extxyz(&out_path).unwrap();
        assert_eq!(frames[0].natoms(), 192);
        frames[0].structure.energy.unwrap()
    };
    let (e64, e32) = (energy("f64"), energy("f32"));
    assert!(
        e64.is_finite() && (e64 - e32).abs() < 1e-3,
        "{e64} vs {e32}"
    );
}

#[test]
fn bad_inputs_fail_cleanly() {
    let d = tmpdir("bad");
    // A corrupted blob: the checksum error is reported with the file name.
    let model = d.join("m.mlff");
    let out = mlff()
        .args([
            "random-model",
            "--elements",
            "H",
            "--radial",
            "2",
            "--zeta",
            "1",
            "-o",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&model, &bytes).unwrap();
    let out = mlff().arg("inspect").arg(&model).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("m.mlff") && err.contains("checksum"),
        "{err}"
    );
    // A malformed structure file: file and line named.
    let data = d.join("bad.data");
    std::fs::write(&data, "begin\natom 0 0 zero H 0 0 0 0 0\nend\n").unwrap();
    let out = mlff()
        .args(["random-model", "--elements", "H", "--scale-from"])
        .arg(&data)
        .arg("-o")
        .arg(d.join("x.mlff"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.data:2") && err.contains("`z`"),
        "{err}"
    );
    // Nothing half-written: the failed run left neither the output nor a temporary file.
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    // Unwritable output directory: error, no file.
    let out = mlff()
        .args(["random-model", "--elements", "H", "-o"])
        .arg(d.join("no/such/dir/m.mlff"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot create"));
}

fn random_water_model(d: &std::path::Path) -> PathBuf {
    let model = d.join("model.mlff");
    let out = mlff()
        .args([
            "random-model",
            "--elements",
            "H,O",
            "--cutoff",
            "5",
            "--radial",
            "4",
            "--zeta",
            "1",
            "--scale-from",
        ])
        .arg(repo().join("examples/water64.data"))
        .arg("-o")
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    model
}

#[test]
fn predict_writes_extxyz_and_refuses_bad_input() {
    let d = tmpdir("predict");
    let model = random_water_model(&d);
    let water = repo().join("examples/water64.data");
    let run = |input: &std::path::Path, output: &std::path::Path, extra: &[&str]| {
        mlff()
            .arg("predict")
            .arg("-m")
            .arg(&model)
            .arg("-i")
            .arg(input)
            .arg("-o")
            .arg(output)
            .args(extra)
            .output()
            .unwrap()
    };
    let out1 = d.join("p1.extxyz");
    let o = run(&water, &out1, &["--threads", "1", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["frames"], 1);
    assert_eq!(summary["atoms"], 192);
    let frames = mlff_train::extxyz::read_extxyz(&out1).unwrap();
    let f = &frames[0];
    assert_eq!(f.structure.forces.len(), 192);
    assert!(f.stress.is_some() && f.energies().is_some_and(|e| e.len() == 192));
    let sum: f64 = f.energies().unwrap().iter().sum();
    let e = f.structure.energy.unwrap();
    assert!((sum - e).abs() <= 1e-9 * e.abs().max(1.0), "{sum} vs {e}");
    // The predicted file predicts to the same values (positions survive the round trip), and the
    // thread count does not change the output.
    let out2 = d.join("p2.extxyz");
    assert!(run(&out1, &out2, &["--threads", "2"]).status.success());
    assert_eq!(std::fs::read(&out1).unwrap(), std::fs::read(&out2).unwrap());
    // A truncated extended XYZ: error with file and line, no output file, no temp file.
    let bad = d.join("bad.extxyz");
    let text = std::fs::read_to_string(&out1).unwrap();
    let cut: String = text.lines().take(100).map(|l| format!("{l}\n")).collect();
    std::fs::write(&bad, cut).unwrap();
    let out3 = d.join("p3.extxyz");
    let o = run(&bad, &out3, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("bad.extxyz"), "{err}");
    assert!(!out3.exists());
    assert!(std::fs::read_dir(&d).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));
}

#[test]
fn bench_reports_stages_as_json() {
    let d = tmpdir("bench");
    let model = random_water_model(&d);
    let o = mlff()
        .args(["bench", "--repeat", "2", "--threads", "2", "--json", "-m"])
        .arg(&model)
        .arg("-i")
        .arg(repo().join("examples/water64.data"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["atoms"], 192);
    assert_eq!(v["threads"], 2);
    assert_eq!(v["precision"], "f64");
    let total = v["us_per_atom"].as_f64().unwrap();
    assert!(total > 0.0);
    let stages: f64 = ["neighbors", "descriptors", "network", "forces"]
        .iter()
        .map(|k| v["stages"][k].as_f64().unwrap())
        .sum();
    // Stage times are CPU time over 2 threads: at most ~2× the wall time, and not nothing.
    assert!(
        stages > 0.2 * total && stages < 2.5 * total,
        "{stages} vs {total}"
    );
}
