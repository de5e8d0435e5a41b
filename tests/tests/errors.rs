//! Bad inputs to the compute path: each gets its named error.

use mlff_core::{Cell, ComputeError, Model, Outputs, System, Workspace, WorkspaceSize};
use mlff_tests::*;
use mlff_train::writer::Precision;

#[test]
fn bad_inputs_get_named_errors() {
    let b = blob(&default_model(), Precision::F64);
    let model = Model::<f64>::from_blob(b.bytes()).unwrap();
    let run =
        |pos: &[[f64; 3]], species: &[u8], cell: Option<Cell<f64>>, atoms: usize, nb: usize| {
            let size = WorkspaceSize::new(&model.dims(), atoms, nb);
            let (mut r, mut i) = (vec![0.0; size.reals], vec![0u32; size.indices]);
            let mut ws = Workspace::new(&model, atoms, nb, &mut r, &mut i)?;
            let mut f = vec![[0.0; 3]; pos.len()];
            let sys = System {
                positions: pos,
                species,
                cell,
            };
            model
                .compute(
                    &sys,
                    &mut ws,
                    &mut Outputs {
                        forces: Some(&mut f),
                        energies: None,
                    },
                )
                .map(|r| r.energy)
        };
    let s = cluster(9, 3.6, 3);
    assert!(run(&s.pos, &s.species, None, 9, 64).is_ok());
    // Neighbour capacity: names the first atom that does not fit.
    assert!(matches!(
        run(&s.pos, &s.species, None, 9, 2),
        Err(ComputeError::NeighborOverflow { capacity: 2, .. })
    ));
    assert_eq!(
        run(&s.pos, &s.species, None, 5, 64),
        Err(ComputeError::TooManyAtoms {
            atoms: 9,
            capacity: 5
        })
    );
    assert_eq!(
        run(&s.pos, &s.species[..8], None, 9, 64),
        Err(ComputeError::LengthMismatch {
            what: "species",
            expected: 9,
            got: 8
        })
    );
    let mut sp = s.species.clone();
    sp[4] = 7;
    assert_eq!(
        run(&s.pos, &sp, None, 9, 64),
        Err(ComputeError::UnknownSpecies {
            atom: 4,
            species: 7
        })
    );
    let mut p = s.pos.clone();
    p[3][1] = f64::NAN;
    assert_eq!(
        run(&p, &s.species, None, 9, 64),
        Err(ComputeError::NonFinitePosition { atom: 3 })
    );
    let mut p = s.pos.clone();
    p[6] = p[2];
    assert_eq!(
        run(&p, &s.species, None, 9, 64),
        Err(ComputeError::OverlappingAtoms { i: 2, j: 6 })
    );
    // An atom on top of another one's periodic image.
    let cell = Cell::orthorhombic(5.0, 5.0, 5.0);
    let q = [[0.5, 0.5, 0.5], [5.5, 0.5, 0.5]];
    assert!(matches!(
        run(&q, &[0, 1], Some(cell), 2, 64),
        Err(ComputeError::OverlappingAtoms { .. })
    ));
    let flat = Cell::periodic([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]);
    assert_eq!(
        run(&s.pos, &s.species, Some(flat), 9, 64),
        Err(ComputeError::InvalidCell)
    );
    // Below the minimal size (without the optional pair cache) the workspace is refused.
    let size = WorkspaceSize::minimal(&model.dims(), 9, 64);
    let (mut r, mut i) = (vec![0.0; size.reals - 1], vec![0u32; size.indices]);
    assert!(matches!(
        Workspace::new(&model, 9, 64, &mut r, &mut i).err(),
        Some(ComputeError::BufferTooSmall {
            what: "workspace reals",
            ..
        })
    ));
    // Messages name what went wrong.
    let msg = ComputeError::NeighborOverflow {
        atom: 12,
        capacity: 64,
    }
    .to_string();
    assert!(msg.contains("atom 12") && msg.contains("64"), "{msg}");
}
