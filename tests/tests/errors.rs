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

#[test]
fn chunk_api_errors_are_named() {
    use mlff_core::chunk::chunk_count;
    use mlff_core::{CellListSize, ChunkForces, ChunkForcesSize, ChunkOutputs};
    let b = blob(&default_model(), Precision::F64);
    let model = Model::<f64>::from_blob(b.bytes()).unwrap();
    let s = triclinic(40, 6.0, 9);
    let n = s.pos.len();
    let sys = System {
        positions: &s.pos,
        species: &s.species,
        cell: s.cell,
    };
    let size = CellListSize::new(model.n_species(), n);
    let (mut cr, mut ci) = (vec![0.0; size.reals], vec![0u32; size.indices]);
    // Storage too small for the cell list.
    assert!(matches!(
        model.cell_list(&sys, &mut cr, &mut ci[..size.indices - 1]),
        Err(ComputeError::BufferTooSmall { .. })
    ));
    let cells = model.cell_list(&sys, &mut cr, &mut ci).unwrap();
    let nb = 256;
    let ws_size = WorkspaceSize::per_thread(&model.dims(), nb);
    let (mut wr, mut wi) = (vec![0.0; ws_size.reals], vec![0u32; ws_size.indices]);
    let mut ws = Workspace::new(&model, 0, nb, &mut wr, &mut wi).unwrap();
    let rec = ChunkForcesSize::new(nb);
    let (mut rr, mut ri) = (vec![0.0; rec.reals], vec![0u32; rec.indices]);
    let mut forces = ChunkForces::new(nb, &mut rr, &mut ri).unwrap();
    let mut run =
        |sys: &System<'_, f64>, chunk: usize, e: &mut [f64], f: &mut ChunkForces<'_, f64>| {
            let mut out = ChunkOutputs {
                energies: Some(e),
                forces: Some(f),
            };
            model.compute_chunk(sys, &cells, &mut ws, chunk, &mut out, &mut ())
        };
    let mut e = vec![0.0; 32];
    assert!(run(&sys, 0, &mut e, &mut forces).is_ok());
    // Past the last chunk.
    assert_eq!(
        run(&sys, chunk_count(n), &mut e, &mut forces),
        Err(ComputeError::LengthMismatch {
            what: "chunk",
            expected: chunk_count(n),
            got: chunk_count(n)
        })
    );
    // Energies of the wrong length for the chunk.
    assert!(matches!(
        run(&sys, 0, &mut e[..31], &mut forces),
        Err(ComputeError::LengthMismatch {
            what: "chunk energies",
            ..
        })
    ));
    // A system other than the cell list's.
    let short = System {
        positions: &s.pos[..n - 1],
        species: &s.species[..n - 1],
        cell: s.cell,
    };
    assert!(matches!(
        run(&short, 0, &mut e, &mut forces),
        Err(ComputeError::LengthMismatch {
            what: "cell list atoms",
            ..
        })
    ));
    // A force record with fewer slots per atom than the workspace.
    let small = ChunkForcesSize::new(8);
    let (mut sr, mut si) = (vec![0.0; small.reals], vec![0u32; small.indices]);
    let mut few = ChunkForces::new(8, &mut sr, &mut si).unwrap();
    assert!(matches!(
        run(&sys, 0, &mut e, &mut few),
        Err(ComputeError::BufferTooSmall { .. })
    ));
    assert!(matches!(
        ChunkForces::<f64>::new(8, &mut sr[..1], &mut si),
        Err(ComputeError::BufferTooSmall { .. })
    ));
    // Applying a record to a force array too short for its atoms.
    assert!(matches!(
        forces.apply(&mut [[0.0; 3]; 3]),
        Err(ComputeError::LengthMismatch { .. })
    ));
}
