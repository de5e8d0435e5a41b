//! The n2p2 importer on synthetic and damaged inputs: every supported symmetry-function type
//! parses and loads; each kind of damage is an error naming file, line and field.

use std::path::Path;

mod common;
use common::{refdata, Scratch};

use mlff_train::n2p2::{import, parse_input_nn_full, Units};
use mlff_train::spec::KindSpec;
use mlff_train::writer::{write_blob, Precision};

const ALL_TYPES: &str = "\
number_of_elements 2
elements O H          # file order is not index order: H (Z=1) is species 0
cutoff_type 6 0.1
scale_symmetry_functions
center_symmetry_functions
scale_min_short -1.0
scale_max_short 1.0
global_hidden_layers_short 1
global_nodes_short 3
global_activation_short t l
atom_energy H -0.5
atom_energy O -75.0
symfunction_short H 2 O 0.5 1.0 5.0
symfunction_short H 3 O H 0.1 -1 2.0 5.0
symfunction_short H 9 H H 0.1 1 1.0 5.0 0.5
symfunction_short H 12 0.3 0.0 5.0
symfunction_short H 13 0.2 0.0 1 2.0 5.0
symfunction_short H 20 O 0.5 4.5 p2
symfunction_short H 20 O 0.5 4.5 p2a
symfunction_short H 21 O H 0.0 4.0 30.0 150.0 p3
symfunction_short H 22 H H 0.0 4.0 0.0 180.0 e
symfunction_short H 23 0.5 4.0 p1
symfunction_short H 24 0.0 4.0 60.0 120.0 p4
symfunction_short H 25 0.0 4.0 0.0 90.0 p2a
symfunction_short O 2 H 0.5 1.0 5.0
";

#[test]
fn every_type_parses_sorts_and_loads() {
    let nn = parse_input_nn_full(ALL_TYPES, "input.nn", 1.0).unwrap();
    assert_eq!(nn.set.symbols, ["H", "O"]);
    assert_eq!(nn.atom_energy, [-0.5, -75.0]);
    let kinds: Vec<KindSpec> = nn.set.descriptors[0].iter().map(|d| d.kind).collect();
    // n2p2's order: by type, then per-type keys ("p2" < "p2a").
    use KindSpec::*;
    assert_eq!(
        kinds,
        [
            G2,
            G4,
            G5,
            WeightedRadial,
            WeightedNarrow,
            PolyRadial,
            PolyRadial,
            PolyNarrow,
            PolyWide,
            WeightedPolyRadial,
            WeightedPolyNarrow,
            WeightedPolyWide
        ]
    );
    assert!(!nn.set.descriptors[0][5].asymmetric && nn.set.descriptors[0][6].asymmetric);
    // Bohr conversion applies to lengths and η.
    let bohr = parse_input_nn_full(ALL_TYPES, "input.nn", 0.5).unwrap();
    let (d1, d2) = (&nn.set.descriptors[0][0], &bohr.set.descriptors[0][0]);
    assert_eq!(
        (d2.rc, d2.rs, d2.eta),
        (d1.rc * 0.5, d1.rs * 0.5, d1.eta / 0.25)
    );
    assert_eq!(
        bohr.set.descriptors[0][5].rl,
        nn.set.descriptors[0][5].rl * 0.5
    );
    // A random-weight model over this set writes a blob the core accepts.
    let spec = mlff_train::random::random_model(&nn.set, 1);
    assert!(write_blob(&spec, Precision::F64).is_ok());
}

fn err(text: &str) -> String {
    format!(
        "{:#}",
        parse_input_nn_full(text, "input.nn", 1.0).unwrap_err()
    )
}

#[test]
fn bad_input_nn_names_line_and_field() {
    let e = err(&ALL_TYPES
        .replace("nnp_type", "x")
        .replace("cutoff_type 6 0.1", "cutoff_type 6 0.1\nnnp_type 4G-HDNNP"));
    assert!(e.contains("input.nn:4") && e.contains("4G-HDNNP"), "{e}");
    let e = err(&ALL_TYPES.replace(
        "global_nodes_short 3",
        "global_nodes_short 3\nglobal_nodes_short 4",
    ));
    assert!(e.contains("input.nn:10") && e.contains("repeated"), "{e}");
    let e = err(&ALL_TYPES.replace("H 2 O 0.5 1.0 5.0", "H 2 O 0.5 x 5.0"));
    assert!(e.contains("input.nn:13") && e.contains("`rs`"), "{e}");
    let e = err(&ALL_TYPES.replace("H 20 O 0.5 4.5 p2a", "H 20 O 0.5 4.5 q7"));
    assert!(e.contains("input.nn:19") && e.contains("subtype"), "{e}");
    let e = err(&ALL_TYPES.replace("H 3 O H 0.1 -1", "H 3 O H 0.1 -2"));
    assert!(e.contains("input.nn:14") && e.contains("lambda"), "{e}");
    let e = err(&ALL_TYPES.replace("symfunction_short H 2 O", "symfunction_short H 7 O"));
    assert!(e.contains("input.nn:13") && e.contains("\"7\""), "{e}");
    let e = err(&ALL_TYPES.replace("global_activation_short t l", "global_activation_short t"));
    assert!(e.contains("activation"), "{e}");
    let e = err(&ALL_TYPES.replace("symfunction_short H 2 O", "symfunction_short H 2 Xe"));
    assert!(e.contains("input.nn:13") && e.contains("Xe"), "{e}");
    let e = err(&ALL_TYPES
        .replace("element_nodes", "")
        .replace("elements O H", "elements O H\nelement_nodes_short H 1 4"));
    assert!(
        e.contains("element_nodes_short") && e.contains("input.nn:3"),
        "{e}"
    );
}

/// A copy of the Cu2S model in a fresh temporary directory.
fn copy_model(name: &str) -> Option<Scratch> {
    let src = refdata("n2p2/Cu2S_PBE/input.nn")?.parent()?.to_path_buf();
    let dst = Scratch::new("import", name);
    for f in [
        "input.nn",
        "scaling.data",
        "weights.016.data",
        "weights.029.data",
    ] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    Some(dst)
}

fn edit(path: &Path, f: impl Fn(String) -> String) {
    let t = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(t)).unwrap();
}

const EV: Units = Units {
    length: 1.0,
    energy: 1.0,
};

#[test]
fn damaged_model_files_are_named() {
    let Some(d) = copy_model("damaged") else {
        return;
    };
    assert!(import(&d, EV).is_ok());
    let msg = |d: &Path| format!("{:#}", import(d, EV).unwrap_err());
    // Missing weights file.
    std::fs::rename(d.join("weights.029.data"), d.join("w.bak")).unwrap();
    let e = msg(&d);
    assert!(e.contains("weights.029.data"), "{e}");
    std::fs::rename(d.join("w.bak"), d.join("weights.029.data")).unwrap();
    // Wrong weight count: drop the last line.
    edit(&d.join("weights.016.data"), |t| {
        let mut l: Vec<&str> = t.lines().collect();
        l.pop();
        l.join("\n")
    });
    let e = msg(&d);
    assert!(
        e.contains("weights.016.data") && e.contains("weights, but"),
        "{e}"
    );
    let Some(d) = copy_model("scaling") else {
        return;
    };
    // Scaling rows missing: drop the last row.
    edit(&d.join("scaling.data"), |t| {
        let mut l: Vec<&str> = t.lines().collect();
        l.pop();
        l.join("\n")
    });
    let e = msg(&d);
    assert!(
        e.contains("scaling.data") && e.contains("scaling rows"),
        "{e}"
    );
    // A non-numeric weight: named with its line.
    let Some(d) = copy_model("nonnum") else {
        return;
    };
    edit(&d.join("weights.029.data"), |t| t.replacen("E-", "Q-", 1));
    let e = msg(&d);
    assert!(
        e.contains("weights.029.data:") && e.contains("not a number"),
        "{e}"
    );
}
