//! Host-side prediction through `mlff-core`: owns the aligned blob and the workspace memory.

use anyhow::{anyhow, Result};
use mlff_core::{Cell, ComputeError, Model, Outputs, Real, System, Workspace, WorkspaceSize};

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
        let mut cap = crate::random::neighbor_capacity(s, model.cutoff().to_f64()).max(16);
        loop {
            let size = WorkspaceSize::new(&model.dims(), n, cap);
            let mut reals = vec![T::ZERO; size.reals];
            let mut idx = vec![0u32; size.indices];
            let mut ws =
                Workspace::new(&model, n, cap, &mut reals, &mut idx).map_err(|e| anyhow!("{e}"))?;
            let mut forces = vec![[T::ZERO; 3]; n];
            let mut energies = vec![0.0f64; n];
            let system = System {
                positions: &positions,
                species: &species,
                cell,
            };
            let mut out = Outputs {
                forces: Some(&mut forces),
                energies: Some(&mut energies),
            };
            match model.compute(&system, &mut ws, &mut out) {
                Ok(r) => {
                    let stress = s
                        .lattice
                        .filter(|_| pbc == [true; 3])
                        .map(|l| r.stress(Cell::periodic(l).volume().abs()));
                    return Ok(Prediction {
                        energy: r.energy,
                        energies,
                        forces: forces.iter().map(|f| f.map(|x| x.to_f64())).collect(),
                        virial: r.virial,
                        stress,
                    });
                }
                // The density estimate was too low for this structure: grow and retry.
                Err(ComputeError::NeighborOverflow { .. }) if cap < 1 << 20 => cap *= 2,
                Err(e) => return Err(anyhow!("{e}")),
            }
        }
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
