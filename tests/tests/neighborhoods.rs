//! `Workspace::for_each_neighborhood`: the bin-ordered search of `Model::compute`, public, gives
//! every atom the neighbour set of the atom-by-atom search, bit for bit.

use mlff_core::{Cell, CellList, CellListSize, ComputeError, Model, NeighborSet, System};
use mlff_core::{Workspace, WorkspaceSize};
use mlff_tests::*;
use mlff_train::writer::Precision;

/// (species, atom index, displacement and distance bits) of every neighbour, in order.
fn listing(set: &NeighborSet<'_, f64>) -> Vec<(usize, u32, [u64; 4])> {
    let mut v = Vec::new();
    for e in 0..mlff_core::neighbors::MAX_SPECIES {
        for k in set.species_range(e) {
            let d = set.displacement(k).map(f64::to_bits);
            let r = set.distance(k).to_bits();
            v.push((e, set.atom_index(k).unwrap(), [d[0], d[1], d[2], r]));
        }
    }
    v
}

/// `f` of the cell list of `s` for `model`.
fn with_cells<R>(model: &Model<'_, f64>, s: &Sys, f: impl FnOnce(&CellList<'_, f64>) -> R) -> R {
    let sys = System {
        positions: &s.pos,
        species: &s.species,
        cell: s.cell,
    };
    let size = CellListSize::new(model.n_species(), s.pos.len());
    let (mut cr, mut ci) = (vec![0.0; size.reals], vec![0u32; size.indices]);
    f(&model.cell_list(&sys, &mut cr, &mut ci).unwrap())
}

#[test]
fn bin_ordered_search_matches_atom_by_atom() {
    let b = blob(&default_model(), Precision::F64);
    let model = Model::<f64>::from_blob(b.bytes()).unwrap();
    let dims = model.dims();
    let nb = 256;
    let (mut or, mut oi) = (vec![0.0; 12 * nb], vec![0u32; 3 * nb]);
    let mut other = NeighborSet::new(nb, &mut or, &mut oi).unwrap();
    // With candidate storage (bins share one gathering) and without (atom by atom).
    for size in [
        WorkspaceSize::per_thread(&dims, nb),
        WorkspaceSize::new(&dims, 0, nb),
    ] {
        let (mut wr, mut wi) = (vec![0.0; size.reals], vec![0u32; size.indices]);
        let mut ws = Workspace::new(&model, 0, nb, &mut wr, &mut wi).unwrap();
        // Two systems through the same workspace: the second call must not reuse the first
        // list's candidates (same grid, moved atoms).
        let first = triclinic(60, 11.0, 3);
        let mut moved = first.clone();
        for p in moved.pos.iter_mut() {
            p[0] += 0.37;
            p[2] -= 0.21;
        }
        let cube = Sys {
            cell: Some(Cell::orthorhombic(11.0, 11.0, 11.0)),
            ..cluster(60, 10.5, 5)
        };
        for s in [&first, &moved, &cube] {
            let n = s.pos.len();
            with_cells(&model, s, |cells| {
                let mut seen = vec![0usize; n];
                let mut found = 0usize;
                ws.for_each_neighborhood(cells, 0..n, |at, set| {
                    seen[at.atom] += 1;
                    found += set.len();
                    cells.neighbors_of(at.atom, &mut other).unwrap();
                    assert_eq!(listing(set), listing(&other), "atom {}", at.atom);
                })
                .unwrap();
                assert!(seen.iter().all(|&c| c == 1), "every atom once");
                assert!(found > 10 * n, "neighbours found: {found}");
                // A part of the visiting order: those positions only.
                let mut part = 0;
                ws.for_each_neighborhood(cells, 7..19, |_, _| part += 1)
                    .unwrap();
                assert_eq!(part, 12);
                // Leave the first bin gathered: the next system starts there.
                ws.for_each_neighborhood(cells, 0..1, |_, _| ()).unwrap();
            });
        }
    }
}

#[test]
fn bin_ordered_search_reports_overflow() {
    let b = blob(&default_model(), Precision::F64);
    let model = Model::<f64>::from_blob(b.bytes()).unwrap();
    let nb = 4;
    let size = WorkspaceSize::per_thread(&model.dims(), nb);
    let (mut wr, mut wi) = (vec![0.0; size.reals], vec![0u32; size.indices]);
    let mut ws = Workspace::new(&model, 0, nb, &mut wr, &mut wi).unwrap();
    let s = triclinic(60, 11.0, 3);
    let mut calls = 0;
    let r = with_cells(&model, &s, |cells| {
        ws.for_each_neighborhood(cells, 0..s.pos.len(), |_, _| calls += 1)
    });
    assert!(
        matches!(r, Err(ComputeError::NeighborOverflow { capacity: 4, .. })),
        "{r:?}"
    );
    assert_eq!(calls, 0);
}
