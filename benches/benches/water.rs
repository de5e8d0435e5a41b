//! Energy + forces of a periodic water box through `mlff-core`, in f64 and f32, and the
//! neighbour search alone.
//!
//! Model: n2p2's trained `H2O_RPBE-D3` water model, imported as `mlff import-n2p2` does (H 27 / O
//! 30 symmetry functions of types 2 and 3, cutoff 12 Bohr = 6.35 Å, 25-25-1 tanh networks, its
//! own weights and scaling). Structures: n2p2's 1080-atom box and, with `MLFF_BENCH_8640=1`, its
//! 8640-atom box (Bohr in the files, converted to Å). The large box is opt-in because criterion's
//! minimum of ten samples at several seconds per call would take the run past three minutes.
//! `compute` times `Model::compute` (cell list, neighbours, descriptors, networks, forces and
//! virial); `neighbors` times the cell list and every atom's neighbour search and nothing else,
//! in the visiting order and with the shared bin candidates of `Model::compute` and `mlff bench`
//! (`Model::cell_list`, `Workspace::for_each_neighborhood`). Workspaces are allocated outside
//! the loop.
//!
//! Reference data: `$MLFF_REFDATA` (default `../shared/data` relative to the workspace root; a
//! relative value is resolved against the workspace root too, since `cargo bench` runs in the
//! package directory). When the files are missing the benchmark says so and measures nothing,
//! unless `MLFF_REQUIRE_REFDATA=1`, when it panics.
//!
//! ```text
//! cargo bench -p mlff-benches                       # 1080 atoms, f64 and f32
//! MLFF_BENCH_8640=1 cargo bench -p mlff-benches     # also 8640 atoms (minutes)
//! cargo bench -p mlff-benches -- water_1080/f32     # one benchmark
//! cargo bench -p mlff-benches -- neighbors          # the neighbour search only
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use mlff_core::{Cell, CellListSize, ComputeError, Model, Outputs, Real, System};
use mlff_core::{Workspace, WorkspaceSize};
use mlff_train::n2p2::{import, Units, BOHR, HARTREE};
use mlff_train::random::neighbor_capacity;
use mlff_train::structure::{read_input_data, Structure};
use mlff_train::writer::{write_blob, Precision};

/// Samples per benchmark (criterion's minimum): one `compute` of a box takes up to seconds.
const SAMPLES: usize = 10;
/// Measurement time per benchmark while `SAMPLES` calls fit in it; slower calls get one call
/// per sample.
const MEASUREMENT: Duration = Duration::from_secs(5);

/// Model directory and structure files, relative to the reference-data directory.
const MODEL_DIR: &str = "n2p2/H2O_RPBE-D3";
const INPUT_NN: &str = "n2p2/H2O_RPBE-D3/input.nn";
const BOX_1080: &str = "n2p2/H2O_RPBE-D3/input.data";
const BOX_8640: &str = "n2p2/H2O_RPBE-D3_8640/input.data";

/// The workspace root: this package lives in `<root>/benches`.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The reference-data directory (see the module docs).
fn refdata_dir() -> PathBuf {
    let dir = std::env::var_os("MLFF_REFDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"));
    if dir.is_absolute() {
        dir
    } else {
        workspace_root().join(dir)
    }
}

/// Reports missing reference data: a skip normally, a panic under `MLFF_REQUIRE_REFDATA=1`.
fn missing(what: &Path) {
    let msg = format!(
        "water bench: reference data not found: {} (set MLFF_REFDATA to the directory that \
         holds n2p2/H2O_RPBE-D3)",
        what.display()
    );
    if std::env::var("MLFF_REQUIRE_REFDATA").is_ok_and(|v| v == "1") {
        panic!("{msg}; MLFF_REQUIRE_REFDATA=1 forbids skipping");
    }
    eprintln!("{msg}; skipping");
}

/// Reads the single structure of an n2p2 `input.data` file and converts Bohr to Å.
fn read_box(path: &Path) -> Structure {
    let mut all = read_input_data(path).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(all.len(), 1, "{}: expected one structure", path.display());
    let mut s = all.remove(0);
    s.convert_units(BOHR, 1.0);
    s
}

fn water(c: &mut Criterion) {
    let data = refdata_dir();
    let input_nn = data.join(INPUT_NN);
    let small = data.join(BOX_1080);
    for p in [&input_nn, &small] {
        if !p.is_file() {
            missing(p);
            return;
        }
    }
    let units = Units {
        length: BOHR,
        energy: HARTREE,
    };
    let spec = import(&data.join(MODEL_DIR), units).unwrap_or_else(|e| panic!("{e:#}"));
    let mut boxes = vec![("water_1080", read_box(&small))];
    if std::env::var("MLFF_BENCH_8640").is_ok_and(|v| v == "1") {
        let large = data.join(BOX_8640);
        if large.is_file() {
            boxes.push(("water_8640", read_box(&large)));
        } else {
            missing(&large);
        }
    }

    let blob = |p| {
        let bytes = write_blob(&spec, p).unwrap_or_else(|e| panic!("{e:#}"));
        mlff_train::io::AlignedBlob::new(&bytes)
    };
    let blob64 = blob(Precision::F64);
    let blob32 = blob(Precision::F32);

    for (name, s) in &boxes {
        let mut group = c.benchmark_group(*name);
        group
            .throughput(Throughput::Elements(s.positions.len() as u64))
            .sample_size(SAMPLES)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1));
        bench_precision::<f64>(&mut group, "f64", blob64.bytes(), s);
        bench_precision::<f32>(&mut group, "f32", blob32.bytes(), s);
        group.finish();
        let mut group = c.benchmark_group(format!("{name}_neighbors"));
        group
            .throughput(Throughput::Elements(s.positions.len() as u64))
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        bench_neighbors::<f64>(&mut group, "f64", blob64.bytes(), s);
        bench_neighbors::<f32>(&mut group, "f32", blob32.bytes(), s);
        group.finish();
    }
}

/// Times `Model::<T>::compute` (energy + forces + virial) of `s` under the model in `blob`.
fn bench_precision<T: Real>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    blob: &[u8],
    s: &Structure,
) {
    let model = Model::<T>::from_blob(blob).unwrap_or_else(|e| panic!("{id} blob: {e}"));
    let (positions, species, cell) = system_of::<T>(&model, s);
    let system = System {
        positions: &positions,
        species: &species,
        cell,
    };
    let n = positions.len();
    let mut forces = vec![[T::ZERO; 3]; n];

    // Size the workspace from the density estimate; grow it if an atom is more crowded. This
    // first call doubles as the warm-up, the sanity check and the time estimate for criterion.
    let mut cap = neighbor_capacity(s, model.cutoff().to_f64());
    let (mut reals, mut idx, one_call) = loop {
        let size = WorkspaceSize::new(&model.dims(), n, cap);
        let mut reals = vec![T::ZERO; size.reals];
        let mut idx = vec![0u32; size.indices];
        let mut ws = Workspace::new(&model, n, cap, &mut reals, &mut idx)
            .unwrap_or_else(|e| panic!("{id} workspace: {e}"));
        let mut out = Outputs {
            forces: Some(&mut forces),
            energies: None,
        };
        let start = Instant::now();
        match model.compute(&system, &mut ws, &mut out) {
            Ok(r) => {
                let one_call = start.elapsed();
                assert!(r.energy.is_finite(), "{id}: energy {}", r.energy);
                let net = forces.iter().fold([0.0f64; 3], |acc, f| {
                    [0, 1, 2].map(|k| acc[k] + f[k].to_f64())
                });
                assert!(
                    forces.iter().flatten().all(|x| x.to_f64().is_finite()),
                    "{id}: non-finite force"
                );
                eprintln!(
                    "{id}: {n} atoms, {cap} neighbour slots, E = {:.6} eV, net force {:.2e} eV/Å, \
                     first call {:.3} s",
                    r.energy,
                    net.iter().map(|x| x.abs()).fold(0.0, f64::max),
                    one_call.as_secs_f64()
                );
                break (reals, idx, one_call);
            }
            Err(ComputeError::NeighborOverflow { .. }) if cap < 1 << 16 => cap *= 2,
            Err(e) => panic!("{id}: {e}"),
        }
    };
    let mut ws = Workspace::new(&model, n, cap, &mut reals, &mut idx)
        .unwrap_or_else(|e| panic!("{id} workspace: {e}"));

    // Flat sampling runs ceil(target / samples / call) calls per sample. When `SAMPLES` calls
    // take longer than `MEASUREMENT`, ask for half of that time so that rounding up gives one
    // call per sample, never two (criterion then warns that it cannot fit the target: expected).
    let all_samples = one_call.mul_f64(SAMPLES as f64);
    if all_samples > MEASUREMENT {
        eprintln!(
            "{id}: one call per sample, about {:.0} s; criterion's \"unable to complete\" \
             warning below is expected",
            all_samples.as_secs_f64()
        );
        group.measurement_time(all_samples / 2);
    } else {
        group.measurement_time(MEASUREMENT);
    }
    group.bench_function(id, |b| {
        b.iter(|| {
            let mut out = Outputs {
                forces: Some(&mut forces),
                energies: None,
            };
            model
                .compute(&system, &mut ws, &mut out)
                .unwrap_or_else(|e| panic!("{id}: {e}"))
        })
    });
}

/// Times building the cell list of `s` and collecting every atom's neighbours.
fn bench_neighbors<T: Real>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    blob: &[u8],
    s: &Structure,
) {
    let model = Model::<T>::from_blob(blob).unwrap_or_else(|e| panic!("{id} blob: {e}"));
    let (positions, species, cell) = system_of::<T>(&model, s);
    let system = System {
        positions: &positions,
        species: &species,
        cell,
    };
    let n = positions.len();
    let size = CellListSize::new(model.n_species(), n);
    let (mut cr, mut ci) = (vec![T::ZERO; size.reals], vec![0u32; size.indices]);
    let cap = 2 * neighbor_capacity(s, model.cutoff().to_f64());
    // The neighbour set and the bin candidates, without the descriptor scratch's pair cache.
    let size = WorkspaceSize::minimal(&model.dims(), 0, cap).with_candidates();
    let (mut wr, mut wi) = (vec![T::ZERO; size.reals], vec![0u32; size.indices]);
    let mut ws = Workspace::new(&model, 0, cap, &mut wr, &mut wi)
        .unwrap_or_else(|e| panic!("{id} workspace: {e}"));
    group.bench_function(id, |b| {
        b.iter(|| {
            let cells = model
                .cell_list(&system, &mut cr, &mut ci)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            let mut total = 0usize;
            ws.for_each_neighborhood(&cells, 0..n, |_, set| total += set.len())
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            total
        })
    });
}

/// Positions, species indices and cell of `s` in `T` for `model`.
fn system_of<T: Real>(
    model: &Model<'_, T>,
    s: &Structure,
) -> (Vec<[T; 3]>, Vec<u8>, Option<Cell<T>>) {
    let species: Vec<u8> = s
        .symbols
        .iter()
        .map(|sym| {
            mlff_train::elements::atomic_number(sym)
                .and_then(|z| model.species_index(z))
                .unwrap_or_else(|| panic!("element {sym} is not in the model"))
        })
        .collect();
    let positions: Vec<[T; 3]> = s.positions.iter().map(|p| p.map(T::from_f64)).collect();
    let lattice = s.lattice.expect("the water boxes are periodic");
    let cell = Some(Cell::periodic(lattice.map(|v| v.map(T::from_f64))));
    (positions, species, cell)
}

criterion_group!(benches, water);
criterion_main!(benches);
