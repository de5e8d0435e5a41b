//! Training data: reading the configured files (streamed, checked as they are read), the
//! seeded split by structure, and per-element reference energies by least squares.
//!
//! Units: extended XYZ files are in Å and eV (ASE's convention); n2p2 `.data` files are
//! converted from `data.length_unit`/`data.energy_unit`. Non-finite numbers are rejected by the
//! readers themselves ([`crate::extxyz`], [`crate::structure`]) with file and line; the checks
//! here add what training needs: every element known to the model, an energy on every
//! structure, forces when the force loss is on.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use crate::extxyz::ExtxyzReader;
use crate::random::SplitMix64;
use crate::structure::{InputDataReader, Structure};

use super::config::{file_kind, TrainConfig};

/// One structure with its periodicity and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Symbols, positions (Å), lattice, forces (eV/Å), energy (eV).
    pub structure: Structure,
    /// Periodicity along the lattice vectors (all false without a lattice).
    pub pbc: [bool; 3],
    /// Index into [`Dataset::files`].
    pub file: usize,
    /// 1-based frame number in that file.
    pub frame: usize,
}

/// Structures read from a list of files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// The files, as given.
    pub files: Vec<PathBuf>,
    /// The structures, in file order (or in the order a subset picked them).
    pub samples: Vec<Sample>,
}

/// What every structure must satisfy; checked while reading.
#[derive(Clone, Debug, Default)]
pub struct Requirements {
    /// Allowed element symbols (empty: any).
    pub elements: Vec<String>,
    /// Every structure must have a reference energy.
    pub energy: bool,
    /// Every structure must have reference forces.
    pub forces: bool,
}

impl Dataset {
    /// Reads every structure of `files` (extended XYZ, or n2p2 `.data` in `length_unit` Å and
    /// `energy_unit` eV), streaming, checking `req` on each as it is read. Errors name the
    /// file and the frame (and the line for extended XYZ).
    pub fn read(
        files: &[PathBuf],
        length_unit: f64,
        energy_unit: f64,
        req: &Requirements,
    ) -> Result<Dataset> {
        let mut ds = Dataset {
            files: files.to_vec(),
            samples: Vec::new(),
        };
        for (fi, path) in files.iter().enumerate() {
            let before = ds.samples.len();
            let name = path.display().to_string();
            match file_kind(path) {
                Some(true) => {
                    for (k, s) in InputDataReader::open(path)?.enumerate() {
                        let mut s = s?;
                        s.convert_units(length_unit, energy_unit);
                        let at = format!("{name}: structure {}", k + 1);
                        let pbc = s.pbc();
                        check(&s, req, &at)?;
                        ds.samples.push(Sample {
                            structure: s,
                            pbc,
                            file: fi,
                            frame: k + 1,
                        });
                    }
                }
                Some(false) => {
                    let mut reader = ExtxyzReader::open(path)?;
                    let mut k = 0;
                    while let Some(f) = reader.next() {
                        let f = f?;
                        k += 1;
                        // The reader stands on the frame's last line; its count line is
                        // natoms + 1 lines above.
                        let start = reader.line().saturating_sub(f.natoms() + 1);
                        let at = format!("{name}:{start}: frame {k}");
                        check(&f.structure, req, &at)?;
                        ds.samples.push(Sample {
                            structure: f.structure,
                            pbc: f.pbc,
                            file: fi,
                            frame: k,
                        });
                    }
                }
                None => bail!("{name}: unknown extension (expected .extxyz, .xyz or .data)"),
            }
            if ds.samples.len() == before {
                bail!("{name}: no structures");
            }
        }
        Ok(ds)
    }

    /// Number of structures.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No structures.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Total number of atoms.
    pub fn atoms(&self) -> usize {
        self.samples.iter().map(|s| s.structure.symbols.len()).sum()
    }

    /// The structures.
    pub fn structures(&self) -> impl Iterator<Item = &Structure> {
        self.samples.iter().map(|s| &s.structure)
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            files: self.files.clone(),
            samples: indices.iter().map(|&i| self.samples[i].clone()).collect(),
        }
    }

    /// Where sample `i` came from, e.g. `data/train.extxyz frame 12`.
    pub fn origin(&self, i: usize) -> String {
        let s = &self.samples[i];
        format!("{} frame {}", self.files[s.file].display(), s.frame)
    }
}

/// Checks one structure against `req`; `at` names it.
fn check(s: &Structure, req: &Requirements, at: &str) -> Result<()> {
    if s.symbols.is_empty() {
        bail!("{at}: structure has no atoms");
    }
    if !req.elements.is_empty() {
        if let Some(sym) = s.symbols.iter().find(|e| !req.elements.contains(e)) {
            bail!(
                "{at}: element {sym} is not in model.elements {:?}",
                req.elements
            );
        }
    }
    match s.energy {
        None if req.energy => bail!("{at}: no energy (training needs a reference energy)"),
        // The readers reject non-finite numbers; a unit conversion could still overflow.
        Some(e) if !e.is_finite() => bail!("{at}: energy is not finite ({e})"),
        _ => {}
    }
    if req.forces && s.forces.len() != s.symbols.len() {
        bail!(
            "{at}: no forces, but loss.force_weight > 0 (set it to 0 to train on energies \
             only)"
        );
    }
    let finite = |v: &[f64; 3]| v.iter().all(|x| x.is_finite());
    if !s.positions.iter().all(finite) || !s.forces.iter().all(finite) {
        bail!("{at}: positions or forces are not finite");
    }
    Ok(())
}

/// Indices of the three sets, each sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitIndices {
    /// Training.
    pub train: Vec<usize>,
    /// Validation.
    pub validation: Vec<usize>,
    /// Test.
    pub test: Vec<usize>,
}

/// Splits `0..n` by structure: a Fisher–Yates shuffle with [`SplitMix64`] seeded by `seed`,
/// then the first round(test·n) indices are the test set, the next round(validation·n) the
/// validation set, the rest the training set; each sorted. Depends only on `n`, the
/// fractions and the seed.
pub fn split_indices(n: usize, validation: f64, test: f64, seed: u64) -> SplitIndices {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        // Modulo bias is below 2⁻⁴⁰ for any realistic n.
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let count = |f: f64| ((f * n as f64).round() as usize).min(n);
    let n_test = count(test);
    let n_val = count(validation).min(n - n_test);
    let mut take = |k: usize| -> Vec<usize> {
        let mut v: Vec<usize> = order.drain(..k).collect();
        v.sort_unstable();
        v
    };
    let test = take(n_test);
    let validation = take(n_val);
    let mut train = order;
    train.sort_unstable();
    SplitIndices {
        train,
        validation,
        test,
    }
}

/// The three sets of a run.
#[derive(Clone, Debug, Default)]
pub struct Splits {
    /// Training set.
    pub train: Dataset,
    /// Validation set (may be empty when the configuration has none).
    pub validation: Dataset,
    /// Test set (may be empty when the configuration sets its fraction to 0).
    pub test: Dataset,
}

/// Reads the configured files with the configured checks and splits them. Empty sets that
/// the configuration asks for are errors.
pub fn load_splits(cfg: &TrainConfig) -> Result<Splits> {
    cfg.validate()?;
    let d = &cfg.data;
    let req = Requirements {
        elements: cfg.species(),
        energy: true,
        forces: cfg.loss.force_weight > 0.0,
    };
    let (lu, eu) = (d.length_unit.angstrom(), d.energy_unit.ev());
    let pool = Dataset::read(&d.files, lu, eu, &req)?;
    let f = cfg.fractions();
    let idx = split_indices(pool.len(), f.validation, f.test, cfg.split_seed());
    let empty = |what: &str, frac: f64| {
        anyhow!(
            "the {what} set is empty: {} structures in data.files, {what} fraction {frac} \
             (give more data or a larger fraction)",
            pool.len()
        )
    };
    if idx.train.is_empty() {
        return Err(empty("training", f.train));
    }
    if f.validation > 0.0 && idx.validation.is_empty() {
        return Err(empty("validation", f.validation));
    }
    if f.test > 0.0 && idx.test.is_empty() {
        return Err(empty("test", f.test));
    }
    let explicit = |files: &[PathBuf]| -> Result<Option<Dataset>> {
        if files.is_empty() {
            Ok(None)
        } else {
            Dataset::read(files, lu, eu, &req).map(Some)
        }
    };
    let validation = explicit(&d.validation_files)?.unwrap_or_else(|| pool.subset(&idx.validation));
    let test = explicit(&d.test_files)?.unwrap_or_else(|| pool.subset(&idx.test));
    Ok(Splits {
        train: pool.subset(&idx.train),
        validation,
        test,
    })
}

/// Per-element reference energies fitted to a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceFit {
    /// ε_e per element, eV, in the order of the `elements` given.
    pub energies: Vec<f64>,
    /// Rank of the composition matrix (fewer than the elements: see
    /// [`reference_energies`]).
    pub rank: usize,
    /// RMSE per atom of E − Σ n_e ε_e over the dataset, eV.
    pub rmse_per_atom: f64,
}

/// Fits E_s ≈ Σ_e n_{s,e} ε_e by least squares over the structures of `ds` (counts n of
/// `elements`).
///
/// The normal equations (NᵀN) ε = NᵀE are solved through the eigen-decomposition of the small
/// symmetric matrix NᵀN (cyclic Jacobi): ε = Σ_k (v_kᵀ NᵀE / d_k) v_k over eigenvalues
/// d_k > 1e-10 · d_max. With full rank this is the exact least-squares solution. When counts do
/// not vary independently — every structure of water has two H per O, every frame of an MD
/// run the same composition — the data cannot tell the elements apart and the solution is not
/// unique; the pseudo-inverse then gives the minimum-norm solution (for one fixed composition:
/// ε proportional to the composition vector), which fits the data as well as any other. An
/// element listed but absent from every structure is an error.
pub fn reference_energies(ds: &Dataset, elements: &[String]) -> Result<ReferenceFit> {
    let n = elements.len();
    let mut rows = Vec::with_capacity(ds.len());
    let mut rhs = Vec::with_capacity(ds.len());
    for (i, s) in ds.samples.iter().enumerate() {
        let mut c = vec![0.0; n];
        for sym in &s.structure.symbols {
            let e = elements
                .iter()
                .position(|x| x == sym)
                .ok_or_else(|| anyhow!("{}: element {sym} is not in {elements:?}", ds.origin(i)))?;
            c[e] += 1.0;
        }
        let e = s
            .structure
            .energy
            .with_context(|| format!("{}: no energy", ds.origin(i)))?;
        rows.push(c);
        rhs.push(e);
    }
    for (e, sym) in elements.iter().enumerate() {
        if rows.iter().all(|r| r[e] == 0.0) {
            bail!("element {sym} is in model.elements but in no training structure");
        }
    }
    let (energies, rank) = least_squares_min_norm(&rows, &rhs, n);
    let mut sq = 0.0;
    for (r, &e) in rows.iter().zip(&rhs) {
        let fit: f64 = r.iter().zip(&energies).map(|(a, b)| a * b).sum();
        let atoms: f64 = r.iter().sum();
        sq += ((e - fit) / atoms).powi(2);
    }
    Ok(ReferenceFit {
        energies,
        rank,
        rmse_per_atom: (sq / rows.len().max(1) as f64).sqrt(),
    })
}

/// Minimum-norm least-squares solution x of A x ≈ b (A given by `rows` of length `n`) and the
/// numerical rank of A; see [`reference_energies`].
pub fn least_squares_min_norm(rows: &[Vec<f64>], b: &[f64], n: usize) -> (Vec<f64>, usize) {
    let mut m = vec![vec![0.0; n]; n];
    let mut v = vec![0.0; n];
    for (r, &y) in rows.iter().zip(b) {
        for i in 0..n {
            v[i] += r[i] * y;
            for j in 0..n {
                m[i][j] += r[i] * r[j];
            }
        }
    }
    let (d, vecs) = jacobi_eigen(m);
    let dmax = d.iter().copied().fold(0.0, f64::max);
    let mut x = vec![0.0; n];
    let mut rank = 0;
    for (k, &dk) in d.iter().enumerate() {
        // Directions the data do not determine (tiny eigenvalues) get no component.
        if dk <= 1e-10 * dmax || dk <= 0.0 {
            continue;
        }
        rank += 1;
        let proj: f64 = (0..n).map(|i| vecs[i][k] * v[i]).sum::<f64>() / dk;
        for i in 0..n {
            x[i] += proj * vecs[i][k];
        }
    }
    (x, rank)
}

/// Eigenvalues and eigenvectors (columns of the second result) of the symmetric matrix `a`
/// by the cyclic Jacobi method (Golub & Van Loan §8.5): converges quadratically, exact to
/// rounding for the small matrices here (at most 16 × 16).
fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    let norm: f64 = a.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q] == 0.0 {
                    continue;
                }
                // Rotation that zeroes a[p][q]: t = tan θ, the smaller root for stability.
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                // (f64::signum(0.0) is 1: a 45° rotation when the diagonal entries are equal.)
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                // Rows p < q, borrowed apart.
                let (head, tail) = a.split_at_mut(q);
                for (x, y) in head[p].iter_mut().zip(tail[0].iter_mut()) {
                    let (apk, aqk) = (*x, *y);
                    *x = c * apk - s * aqk;
                    *y = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

/// Reads structure files for evaluation: no requirements beyond the readers' own checks.
pub fn read_any(files: &[PathBuf], length_unit: f64, energy_unit: f64) -> Result<Dataset> {
    Dataset::read(files, length_unit, energy_unit, &Requirements::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises() {
        let a = vec![
            vec![4.0, 1.0, 2.0],
            vec![1.0, 3.0, 0.5],
            vec![2.0, 0.5, 5.0],
        ];
        let (d, v) = jacobi_eigen(a.clone());
        for k in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i][j] * v[j][k]).sum();
                assert!((av - d[k] * v[i][k]).abs() < 1e-12);
            }
        }
    }
}
