//! Host-side prediction through `mlff-core`: owns the aligned blob and the workspace memory.

use anyhow::{anyhow, Result};
use std::time::Instant;

use mlff_core::WorkspaceSize;
use mlff_core::{Cell, ComputeError, Model, Outputs, Probe, Real, Stage, System, Workspace};

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

    /// Predicts `s` in `precision` (periodic in all directions when it has a lattice).
    pub fn predict(&self, s: &Structure, precision: Precision) -> Result<Prediction> {
        self.predict_pbc(s, [s.lattice.is_some(); 3], precision)
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
        Ok(self.run::<T>(s, pbc, 1, 1)?.0)
    }

    /// Computes `s` `repeat` times on `threads` threads (contiguous atom ranges, one per
    /// thread, reduced in range order: deterministic for a given thread count) and returns the
    /// prediction with the timing of every run. Set-up (workspaces, outputs) is not timed.
    pub fn run_timed(
        &self,
        s: &Structure,
        pbc: [bool; 3],
        precision: Precision,
        threads: usize,
        repeat: usize,
    ) -> Result<(Prediction, Vec<RunTiming>)> {
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
    ) -> Result<(Prediction, Vec<RunTiming>)> {
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
        let threads = threads.clamp(1, n.max(1));
        let ranges: Vec<std::ops::Range<usize>> = (0..threads)
            .map(|t| n * t / threads..n * (t + 1) / threads)
            .collect();
        let mut cap = crate::random::neighbor_capacity(s, model.cutoff().to_f64()).max(16);
        'grow: loop {
            let size = WorkspaceSize::new(&model.dims(), n, cap);
            let mut buffers: Vec<Buffers<T>> = ranges
                .iter()
                .map(|_| Buffers {
                    reals: vec![T::ZERO; size.reals],
                    idx: vec![0u32; size.indices],
                    forces: vec![[T::ZERO; 3]; n],
                    energies: vec![0.0f64; n],
                })
                .collect();
            let mut timings = Vec::with_capacity(repeat);
            let mut results = Vec::new();
            for _ in 0..repeat.max(1) {
                let start = Instant::now();
                results = buffers
                    .par_iter_mut()
                    .zip(ranges.par_iter())
                    .map(|(b, range)| {
                        let mut ws = Workspace::new(&model, n, cap, &mut b.reals, &mut b.idx)?;
                        let mut out = Outputs {
                            forces: Some(&mut b.forces),
                            energies: Some(&mut b.energies),
                        };
                        let mut timer = StageTimer::default();
                        let r = model.compute_with(
                            &system,
                            &mut ws,
                            &mut out,
                            range.clone(),
                            &mut timer,
                        )?;
                        Ok((r, timer.seconds))
                    })
                    .collect::<Vec<Result<_, ComputeError>>>();
                let wall = start.elapsed().as_secs_f64();
                let mut stages = [0.0; 4];
                for r in &results {
                    match r {
                        Ok((_, st)) => stages.iter_mut().zip(st).for_each(|(a, b)| *a += b),
                        // The density estimate was too low for this structure: grow and retry.
                        Err(ComputeError::NeighborOverflow { .. }) if cap < 1 << 20 => {
                            cap *= 2;
                            continue 'grow;
                        }
                        Err(e) => return Err(anyhow!("{e}")),
                    }
                }
                timings.push(RunTiming {
                    seconds: wall,
                    stages,
                });
            }
            // Reduce in range order (deterministic for a given thread count).
            let mut energy = 0.0;
            let mut virial = [[0.0; 3]; 3];
            for (r, _) in results.into_iter().flatten() {
                energy += r.energy;
                for (v, w) in virial.iter_mut().flatten().zip(r.virial.iter().flatten()) {
                    *v += w;
                }
            }
            let mut forces = vec![[0.0f64; 3]; n];
            let mut energies = vec![0.0f64; n];
            for b in &buffers {
                for (f, g) in forces.iter_mut().zip(&b.forces) {
                    f.iter_mut().zip(g).for_each(|(x, y)| *x += y.to_f64());
                }
                energies
                    .iter_mut()
                    .zip(&b.energies)
                    .for_each(|(x, y)| *x += y);
            }
            let stress = s.lattice.filter(|_| pbc == [true; 3]).map(|l| {
                let r = mlff_core::Results { energy, virial };
                r.stress(Cell::periodic(l).volume().abs())
            });
            let p = Prediction {
                energy,
                energies,
                forces,
                virial,
                stress,
            };
            return Ok((p, timings));
        }
    }
}

/// Per-thread memory of [`Predictor::run_timed`].
struct Buffers<T> {
    reals: Vec<T>,
    idx: Vec<u32>,
    forces: Vec<[T; 3]>,
    energies: Vec<f64>,
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
