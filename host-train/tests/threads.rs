//! Threaded prediction gives the same bits for every thread count (1, 2, 3, 7), in f64 and
//! f32, on a periodic water box under n2p2's water model — and the same bits as the core's
//! single-threaded `Model::compute`.

mod common;

use mlff_core::chunk::{chunk_count, chunk_range};
use mlff_core::{Cell, ChunkForces, ChunkForcesSize, ChunkOutputs, Model, Outputs, Real};
use mlff_core::{CellListSize, Results, System, Workspace, WorkspaceSize};
use mlff_train::n2p2::{import, Units, BOHR, HARTREE};
use mlff_train::predict::{Prediction, Predictor};
use mlff_train::structure::Structure;
use mlff_train::writer::{write_blob, Precision};

/// Every number of a prediction as raw bits.
fn bits(p: &Prediction) -> Vec<u64> {
    let mut v = vec![p.energy.to_bits()];
    v.extend(p.energies.iter().map(|x| x.to_bits()));
    v.extend(p.forces.iter().flatten().map(|x| x.to_bits()));
    v.extend(p.virial.iter().flatten().map(|x| x.to_bits()));
    v
}

/// n2p2's water model and the 192-atom demo box doubled along a (384 atoms: 12 chunks, so one
/// thread walks two waves and more threads one). The box (12.42 Å, or 24.84 × 12.42 × 12.42 Å)
/// is thinner than twice the 6.35 Å cutoff, so images of atoms are neighbours too.
fn setup() -> Option<(mlff_train::spec::ModelSpec, Structure)> {
    let input_nn = common::refdata("n2p2/H2O_RPBE-D3/input.nn")?;
    let units = Units {
        length: BOHR,
        energy: HARTREE,
    };
    let spec = import(input_nn.parent()?, units).unwrap();
    let s = common::water64().replicate([2, 1, 1]).unwrap();
    assert!(chunk_count(s.positions.len()) > mlff_train::predict::CHUNKS_PER_THREAD);
    Some((spec, s))
}

#[test]
fn thread_count_does_not_change_a_bit() {
    let Some((spec, s)) = setup() else { return };
    for precision in [Precision::F64, Precision::F32] {
        let p = Predictor::new(&write_blob(&spec, precision).unwrap()).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| p.run_timed(&s, [true; 3], precision, threads, 1))
                .unwrap()
                .prediction
        };
        let one = run(1);
        assert!(one.energy.is_finite() && one.forces.iter().flatten().any(|&f| f != 0.0));
        for threads in [2, 3, 7] {
            assert!(
                bits(&run(threads)) == bits(&one),
                "{precision:?}: {threads} threads differ from 1"
            );
        }
        // The core's own single-threaded path walks the same chunks in the same order.
        let core = match precision {
            Precision::F64 => core_compute::<f64>(&p, &s),
            Precision::F32 => core_compute::<f32>(&p, &s),
        };
        assert!(
            bits(&core) == bits(&one),
            "{precision:?}: Model::compute differs from the threaded host"
        );
    }
}

/// The reduction order matters at all (so the test above can fail): the chunks combined in
/// reverse order give other bits.
#[test]
fn chunk_order_is_what_fixes_the_bits() {
    let Some((spec, s)) = setup() else { return };
    let p = Predictor::new(&write_blob(&spec, Precision::F32).unwrap()).unwrap();
    let model = Model::<f32>::from_blob(p.bytes()).unwrap();
    let (positions, species, cell) = system_of::<f32>(&p, &s);
    let system = System {
        positions: &positions,
        species: &species,
        cell,
    };
    let n = positions.len();
    let size = CellListSize::new(model.n_species(), n);
    let (mut cr, mut ci) = (vec![0.0f32; size.reals], vec![0u32; size.indices]);
    let cells = model.cell_list(&system, &mut cr, &mut ci).unwrap();
    let cap = 512;
    let ws_size = WorkspaceSize::per_thread(&model.dims(), cap);
    let (mut wr, mut wi) = (vec![0.0f32; ws_size.reals], vec![0u32; ws_size.indices]);
    let mut ws = Workspace::new(&model, 0, cap, &mut wr, &mut wi).unwrap();
    let rec_size = ChunkForcesSize::new(cap);
    let combine = |order: &mut dyn Iterator<Item = usize>, ws: &mut Workspace<'_, f32>| {
        let (mut rr, mut ri) = (vec![0.0f32; rec_size.reals], vec![0u32; rec_size.indices]);
        let mut forces = vec![[0.0f32; 3]; n];
        let mut total = Results::default();
        for chunk in order {
            let mut rec = ChunkForces::new(cap, &mut rr, &mut ri).unwrap();
            let mut e = vec![0.0; chunk_range(chunk, n).len()];
            let mut out = ChunkOutputs {
                energies: Some(&mut e),
                forces: Some(&mut rec),
            };
            let r = model
                .compute_chunk(&system, &cells, ws, chunk, &mut out, &mut ())
                .unwrap();
            assert_eq!(rec.atoms(), chunk_range(chunk, n));
            total.accumulate(&r);
            rec.apply(&mut forces).unwrap();
        }
        (total, forces)
    };
    let chunks = chunk_count(n);
    let (fwd, f_fwd) = combine(&mut (0..chunks), &mut ws);
    let (rev, f_rev) = combine(&mut (0..chunks).rev(), &mut ws);
    let close =
        fwd.energy == rev.energy || (fwd.energy - rev.energy).abs() < 1e-9 * fwd.energy.abs();
    assert!(close, "same sum up to rounding");
    let force_bits = |f: &[[f32; 3]]| f.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_ne!(force_bits(&f_fwd), force_bits(&f_rev));
}

/// Positions, species and cell of `s` in `T` for the model of `p`.
fn system_of<T: Real>(p: &Predictor, s: &Structure) -> (Vec<[T; 3]>, Vec<u8>, Option<Cell<T>>) {
    let positions = s.positions.iter().map(|q| q.map(T::from_f64)).collect();
    let species = s
        .symbols
        .iter()
        .map(|x| p.symbols().iter().position(|y| y == x).unwrap() as u8)
        .collect();
    let cell = s
        .lattice
        .map(|l| Cell::periodic(l.map(|v| v.map(T::from_f64))));
    (positions, species, cell)
}

/// `Model::compute` of `s` in `T`, as a prediction (stress left out).
fn core_compute<T: Real>(p: &Predictor, s: &Structure) -> Prediction {
    let model = Model::<T>::from_blob(p.bytes()).unwrap();
    let (positions, species, cell) = system_of::<T>(p, s);
    let system = System {
        positions: &positions,
        species: &species,
        cell,
    };
    let n = positions.len();
    let cap = 512;
    let size = WorkspaceSize::new(&model.dims(), n, cap);
    let (mut r, mut i) = (vec![T::ZERO; size.reals], vec![0u32; size.indices]);
    let mut ws = Workspace::new(&model, n, cap, &mut r, &mut i).unwrap();
    let mut forces = vec![[T::ZERO; 3]; n];
    let mut energies = vec![0.0; n];
    let res = model
        .compute(
            &system,
            &mut ws,
            &mut Outputs {
                forces: Some(&mut forces),
                energies: Some(&mut energies),
            },
        )
        .unwrap();
    Prediction {
        energy: res.energy,
        energies,
        forces: forces.iter().map(|f| f.map(|x| x.to_f64())).collect(),
        virial: res.virial,
        stress: None,
    }
}
