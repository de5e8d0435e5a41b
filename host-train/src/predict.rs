//! Host-side prediction through `mlff-core`: owns the aligned blob and the workspace memory.

use anyhow::{anyhow, Result};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use mlff_core::chunk::{chunk_count, chunk_range, CHUNK_ATOMS};
use mlff_core::{Cell, ComputeError, Model, Probe, Real, Stage, System, Workspace};
use mlff_core::{CellListSize, ChunkForces, ChunkForcesSize, ChunkOutputs, WorkspaceSize};

use crate::io::AlignedBlob;
use crate::structure::Structure;
use crate::writer::Precision;

/// Energy, forces and virial of one structure (eV, eV/Å, eV), in f64 whatever the precision.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Total energy.
    pub energy: f64,
    /// Per-atom energies.
    pub energies: Vec<f64>,
    /// Forces.
    pub forces: Vec<[f64; 3]>,
    /// Virial W = −∂E/∂ε, 3×3.
    pub virial: [[f64; 3]; 3],
    /// ASE stress (eV/Å³, Voigt xx yy zz yz xz xy) for periodic cells.
    pub stress: Option<[f64; 6]>,
}

/// A loaded blob, ready to predict in either precision.
pub struct Predictor {
    blob: AlignedBlob,
    symbols: Vec<String>,
}

impl Predictor {
    /// Validates `bytes` with the core and keeps an aligned copy.
    pub fn new(bytes: &[u8]) -> Result<Self> {
        let blob = AlignedBlob::new(bytes);
        let n =
            Model::<f64>::reals_needed(blob.bytes()).map_err(|e| anyhow!("invalid blob: {e}"))?;
        let mut storage = vec![0.0f64; n];
        let model = Model::<f64>::from_blob_in(blob.bytes(), &mut storage)
            .map_err(|e| anyhow!("invalid blob: {e}"))?;
        let symbols = (0..model.n_species())
            .map(|s| {
                let z = model.atomic_number(s).unwrap_or(0);
                crate::elements::symbol(z).unwrap_or("?").to_string()
            })
            .collect();
        Ok(Predictor { blob, symbols })
    }

    /// Element symbols in species order.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// The blob bytes (8-byte aligned).
    pub fn bytes(&self) -> &[u8] {
        self.blob.bytes()
    }

    /// Predicts `s` in `precision` (periodic along its lattice vectors but its open axes).
    pub fn predict(&self, s: &Structure, precision: Precision) -> Result<Prediction> {
        self.predict_pbc(s, s.pbc(), precision)
    }

    /// Predicts `s` with periodicity `pbc` along its lattice vectors (ignored without one).
    /// Stress is reported only for cells periodic in all three directions, as ASE does.
    pub fn predict_pbc(
        &self,
        s: &Structure,
        pbc: [bool; 3],
        precision: Precision,
    ) -> Result<Prediction> {
        match precision {
            Precision::F64 => self.predict_in::<f64>(s, pbc),
            Precision::F32 => self.predict_in::<f32>(s, pbc),
        }
    }

    fn predict_in<T: Real>(&self, s: &Structure, pbc: [bool; 3]) -> Result<Prediction> {
        Ok(self.run::<T>(s, pbc, 1, 1)?.prediction)
    }

    /// Computes `s` `repeat` times on `threads` threads and returns the prediction with the
    /// timing of every run. Set-up (workspaces, outputs) is not timed.
    ///
    /// The cell list is built once per run and shared; the atoms, in its visiting order, are
    /// cut into the core's fixed chunks ([`mlff_core::chunk`]), computed in waves of
    /// [`CHUNKS_PER_THREAD`] chunks per thread, and combined in chunk order (per-atom energies
    /// put back at their atom index, the total summed in atom order): the results are
    /// bit-identical for every thread count, and to [`mlff_core::Model::compute`].
    pub fn run_timed(
        &self,
        s: &Structure,
        pbc: [bool; 3],
        precision: Precision,
        threads: usize,
        repeat: usize,
    ) -> Result<Timed> {
        match precision {
            Precision::F64 => self.run::<f64>(s, pbc, threads, repeat),
            Precision::F32 => self.run::<f32>(s, pbc, threads, repeat),
        }
    }

    fn run<T: Real>(
        &self,
        s: &Structure,
        pbc: [bool; 3],
        threads: usize,
        repeat: usize,
    ) -> Result<Timed> {
        use rayon::prelude::*;
        let bytes = self.blob.bytes();
        let mut storage: Vec<T> = Vec::new();
        let model = match Model::<T>::from_blob(bytes) {
            Ok(m) => m,
            Err(_) => {
                storage.resize(
                    Model::<T>::reals_needed(bytes).map_err(|e| anyhow!("{e}"))?,
                    T::ZERO,
                );
                Model::<T>::from_blob_in(bytes, &mut storage).map_err(|e| anyhow!("{e}"))?
            }
        };
        let mut species = Vec::with_capacity(s.symbols.len());
        for (i, sym) in s.symbols.iter().enumerate() {
            let k = self.symbols.iter().position(|x| x == sym).ok_or_else(|| {
                anyhow!(
                    "atom {i}: element {sym} is not in the model ({:?})",
                    self.symbols
                )
            })?;
            species.push(k as u8);
        }
        let positions: Vec<[T; 3]> = s.positions.iter().map(|p| p.map(T::from_f64)).collect();
        let cell = s.lattice.map(|l| Cell {
            vectors: l.map(|v| v.map(T::from_f64)),
            pbc,
        });
        let n = positions.len();
        let system = System {
            positions: &positions,
            species: &species,
            cell,
        };
        let chunks = chunk_count(n);
        let threads = threads.max(1);
        let wave = (CHUNKS_PER_THREAD * threads).clamp(1, chunks.max(1));
        let cells_size = CellListSize::new(model.n_species(), n);
        let mut cell_reals = vec![T::ZERO; cells_size.reals];
        let mut cell_idx = vec![0u32; cells_size.indices];
        let mut cap = crate::random::neighbor_capacity(s, model.cutoff().to_f64()).max(16);
        'grow: loop {
            let ws_size = WorkspaceSize::per_thread(&model.dims(), cap);
            let rec_size = ChunkForcesSize::new(cap);
            let mut slots: Vec<Slot<T>> = (0..wave)
                .map(|_| Slot {
                    rec_reals: vec![T::ZERO; rec_size.reals],
                    rec_idx: vec![0u32; rec_size.indices],
                    energies: vec![0.0; CHUNK_ATOMS],
                })
                .collect();
            let scratch: Vec<Mutex<Scratch<T>>> = (0..threads)
                .map(|_| {
                    Mutex::new(Scratch {
                        reals: vec![T::ZERO; ws_size.reals],
                        idx: vec![0u32; ws_size.indices],
                    })
                })
                .collect();
            let workspace_bytes = cells_size.reals * T::BYTES
                + 4 * cells_size.indices
                + threads * ws_size.bytes(T::BYTES)
                + wave * rec_size.bytes(T::BYTES);
            let mut forces = vec![[T::ZERO; 3]; n];
            let mut energies = vec![0.0f64; n];
            let mut timings = Vec::with_capacity(repeat);
            let mut total = mlff_core::Results::default();
            for _ in 0..repeat.max(1) {
                let start = Instant::now();
                let mut stages = [0.0; 4];
                let cells = model.cell_list(&system, &mut cell_reals, &mut cell_idx);
                let cells = cells.map_err(|e| anyhow!("{e}"))?;
                stages[0] += start.elapsed().as_secs_f64();
                forces.iter_mut().for_each(|f| *f = [T::ZERO; 3]);
                total = mlff_core::Results::default();
                for first in (0..chunks).step_by(wave) {
                    let ids = first..(first + wave).min(chunks);
                    let done: Vec<Result<_, ComputeError>> = slots
                        .par_iter_mut()
                        .zip(ids.into_par_iter())
                        .map(|(slot, chunk)| {
                            let Slot {
                                rec_reals,
                                rec_idx,
                                energies: e,
                            } = slot;
                            // This thread's workspace (each pool thread has its own, so the
                            // lock is never contended inside `threads`' pool; outside one,
                            // threads that share an index wait for each other).
                            let t = rayon::current_thread_index().unwrap_or(0) % scratch.len();
                            let mut guard =
                                scratch[t].lock().unwrap_or_else(PoisonError::into_inner);
                            let Scratch { reals, idx } = &mut *guard;
                            let mut ws = Workspace::new(&model, 0, cap, reals, idx)?;
                            let mut rec = ChunkForces::new(cap, rec_reals, rec_idx)?;
                            let mut timer = StageTimer::default();
                            let e = e.get_mut(..chunk_range(chunk, n).len()).unwrap_or(&mut []);
                            let mut out = ChunkOutputs {
                                energies: Some(e),
                                forces: Some(&mut rec),
                            };
                            let r = model.compute_chunk(
                                &system, &cells, &mut ws, chunk, &mut out, &mut timer,
                            )?;
                            Ok((r, timer.seconds, rec, &*e))
                        })
                        .collect();
                    // In chunk order, on this thread: the reduction does not depend on the
                    // thread count.
                    let applied = Instant::now();
                    for r in done {
                        match r {
                            Ok((r, st, rec, es)) => {
                                stages.iter_mut().zip(st).for_each(|(a, b)| *a += b);
                                total.accumulate(&r);
                                rec.apply(&mut forces).map_err(|e| anyhow!("{e}"))?;
                                // Per-atom energies back to their atoms.
                                for (&e, i) in es.iter().zip(rec.atom_indices()) {
                                    if let Some(x) = energies.get_mut(i) {
                                        *x = e;
                                    }
                                }
                            }
                            // The density estimate was too low for this structure: grow and retry.
                            Err(ComputeError::NeighborOverflow { .. }) if cap < 1 << 20 => {
                                cap *= 2;
                                continue 'grow;
                            }
                            Err(e) => return Err(anyhow!("{e}")),
                        }
                    }
                    stages[3] += applied.elapsed().as_secs_f64();
                }
                timings.push(RunTiming {
                    seconds: start.elapsed().as_secs_f64(),
                    stages,
                });
            }
            // The energy in atom order, as `Model::compute` sums it when it returns per-atom
            // energies (see `mlff_core::chunk`).
            total.energy = energies.iter().fold(0.0, |acc, e| acc + e);
            let stress = s
                .lattice
                .filter(|_| pbc == [true; 3])
                .map(|l| total.stress(Cell::periodic(l).volume().abs()));
            let prediction = Prediction {
                energy: total.energy,
                energies,
                forces: forces.iter().map(|f| f.map(|x| x.to_f64())).collect(),
                virial: total.virial,
                stress,
            };
            return Ok(Timed {
                prediction,
                runs: timings,
                workspace_bytes,
                neighbor_slots: cap,
                chunks_in_flight: wave,
            });
        }
    }
}

/// Chunks per thread computed between two ordered reductions of [`Predictor::run_timed`]: more
/// means fewer synchronisations and more record memory.
pub const CHUNKS_PER_THREAD: usize = 8;

/// Per-chunk memory of [`Predictor::run_timed`] (one per chunk of a wave): the chunk's force
/// record and energies, kept until the wave is reduced in chunk order.
struct Slot<T> {
    rec_reals: Vec<T>,
    rec_idx: Vec<u32>,
    /// Per-atom energies of the chunk, in visiting order.
    energies: Vec<f64>,
}

/// Per-thread memory of [`Predictor::run_timed`]: the core workspace, reused by every chunk the
/// thread computes. One per chunk of a wave instead (8 per thread, ~2 MiB each on the water
/// box) left each chunk to start on a workspace out of cache. The results do not depend on
/// what an earlier chunk left in it.
struct Scratch<T> {
    reals: Vec<T>,
    idx: Vec<u32>,
}

/// The outcome of [`Predictor::run_timed`].
#[derive(Clone, Debug)]
pub struct Timed {
    /// The prediction (of the last run; every run gives the same bits).
    pub prediction: Prediction,
    /// Timing of every run.
    pub runs: Vec<RunTiming>,
    /// Bytes of core workspace: the shared cell list, a workspace per thread, and a force
    /// record per chunk in flight.
    pub workspace_bytes: usize,
    /// Neighbour slots per atom that the workspaces were sized for.
    pub neighbor_slots: usize,
    /// Chunks computed per wave.
    pub chunks_in_flight: usize,
}

/// Wall time of one run and the CPU seconds of its stages summed over threads (neighbour
/// search, descriptors, network, forces).
#[derive(Clone, Copy, Debug)]
pub struct RunTiming {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Seconds per stage: neighbours, descriptors, network, forces.
    pub stages: [f64; 4],
}

/// A [`Probe`] that adds the time spent in each stage.
#[derive(Default)]
struct StageTimer {
    last: Option<(Stage, Instant)>,
    seconds: [f64; 4],
}

impl Probe for StageTimer {
    fn enter(&mut self, stage: Stage) {
        let now = Instant::now();
        if let Some((prev, t)) = self.last {
            let k = match prev {
                Stage::Neighbors => 0,
                Stage::Descriptors => 1,
                Stage::Network => 2,
                Stage::Forces | Stage::Done => 3,
            };
            self.seconds[k] += (now - t).as_secs_f64();
        }
        self.last = (stage != Stage::Done).then_some((stage, now));
    }
}

/// Reads structures by file extension: `.data` is n2p2 `input.data` (positions in
/// `length_unit` Å), anything else extended XYZ. Returns frames (n2p2 structures are wrapped).
pub fn read_frames(path: &std::path::Path, length_unit: f64) -> Result<Vec<crate::extxyz::Frame>> {
    if path.extension().is_some_and(|e| e == "data") {
        let mut v = crate::structure::read_input_data(path)?;
        Ok(v.iter_mut()
            .map(|s| {
                s.convert_units(length_unit, 1.0);
                crate::extxyz::Frame::new(s.clone())
            })
            .collect())
    } else {
        crate::extxyz::read_extxyz(path)
    }
}

/// The frame with the prediction written into it as ASE's calculator results would be:
/// `energy`, `forces`, per-atom `energies`, and `stress` for fully periodic cells.
pub fn annotate(mut frame: crate::extxyz::Frame, p: &Prediction) -> crate::extxyz::Frame {
    use crate::extxyz::{Column, ColumnData};
    frame.structure.energy = Some(p.energy);
    frame.structure.forces = p.forces.clone();
    frame.stress = p.stress;
    frame.arrays.retain(|c| c.name != "energies");
    frame.arrays.push(Column {
        name: "energies".into(),
        width: 1,
        data: ColumnData::Real(p.energies.clone()),
    });
    frame
}
