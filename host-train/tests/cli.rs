//! The `mlff` command end to end: build a model, inspect it, compute energies; bad inputs fail
//! with a message naming the file and leave nothing behind.

use std::path::PathBuf;
use std::process::Command;

fn mlff() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mlff"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mlff-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
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
        let out = mlff()
            .args(["energy", "--json", "--precision", p, "-m"])
            .arg(&model)
            .arg("-i")
            .arg(&water)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["atoms"], 192);
        v[0]["energy"].as_f64().unwrap()
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
