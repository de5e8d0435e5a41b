//! Shared set-up of the training tests: small water structures cut from `examples/water64.data`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mlff_train::random::SplitMix64;
use mlff_train::structure::{read_input_data, Structure};

/// Cutoff of the test models (Å).
pub const RC: f64 = 4.0;

pub fn water64() -> Structure {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/water64.data");
    read_input_data(std::path::Path::new(path))
        .unwrap()
        .remove(0)
}

/// Molecules `first..first + count` of water64 as an open cluster, jittered by `jitter` Å.
pub fn cluster(first: usize, count: usize, jitter: f64, seed: u64) -> Structure {
    let w = water64();
    let mut rng = SplitMix64::new(seed);
    let atoms = 3 * first..3 * (first + count);
    Structure {
        comment: format!("water molecules {first}..{}", first + count),
        lattice: None,
        symbols: w.symbols[atoms.clone()].to_vec(),
        positions: w.positions[atoms]
            .iter()
            .map(|p| p.map(|x| x + rng.symmetric(jitter)))
            .collect(),
        forces: Vec::new(),
        energy: None,
        open: [false; 3],
    }
}

/// Two water molecules in a small triclinic cell (thinner than 2·RC: atoms see many images of
/// each other and of themselves).
pub fn small_cell() -> Structure {
    let mut s = cluster(0, 2, 0.05, 11);
    s.lattice = Some([[4.3, 0.0, 0.0], [0.6, 4.1, 0.0], [-0.4, 0.3, 4.9]]);
    s.comment = "two water molecules, triclinic cell".into();
    s
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The reference file `rel`, or `None` (after a message) when the data are not there.
pub fn refdata(rel: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MLFF_REFDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"));
    let dir = if dir.is_absolute() {
        dir
    } else {
        workspace_root().join(dir)
    };
    let path = dir.join(rel);
    if path.is_file() {
        return Some(path);
    }
    let msg = format!("reference data not found: {}", path.display());
    if std::env::var("MLFF_REQUIRE_REFDATA").is_ok_and(|v| v == "1") {
        panic!("{msg}; MLFF_REQUIRE_REFDATA=1 forbids skipping");
    }
    eprintln!("{msg}; skipping");
    None
}

/// A fresh scratch directory under the system's temporary directory, named after the test
/// (`mlff-{prefix}-{name}-{pid}`), removed when the test passes and kept when it fails (its
/// files are then what to look at).
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(prefix: &str, name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("mlff-{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
