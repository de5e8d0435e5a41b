//! Models with generated descriptor sets and seeded random weights: the stand-in for a trained
//! model in benchmarks, the demo and tests, until training lands. Feature scaling can be fitted
//! to real structures so the random network sees inputs of order one.

use anyhow::Result;
use mlff_core::{Model, System, Workspace, WorkspaceSize};

use crate::n2p2::DescriptorSet;
use crate::spec::{ActivationSpec, Affine, CutoffSpec, DescriptorSpec, KindSpec, LayerSpec};
use crate::spec::{ModelSpec, ScalingSpec, SpeciesSpec};
use crate::structure::Structure;

/// SplitMix64: a tiny, well-studied seeded generator (Steele et al. 2014). Written here so that
/// models are reproducible from a seed without pinning a `rand` version's stream.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [−a, a).
    pub fn symmetric(&mut self, a: f64) -> f64 {
        (2.0 * self.uniform() - 1.0) * a
    }
}

/// A layer with Glorot-uniform weights and small random biases.
pub fn random_layer(
    n_in: usize,
    n_out: usize,
    activation: ActivationSpec,
    rng: &mut SplitMix64,
) -> LayerSpec {
    let a = (6.0 / (n_in + n_out) as f64).sqrt();
    LayerSpec {
        n_in,
        n_out,
        activation,
        normalize: false,
        weights: (0..n_in * n_out).map(|_| rng.symmetric(a)).collect(),
        biases: (0..n_out).map(|_| rng.symmetric(0.1)).collect(),
    }
}

/// A model over `set` with random weights (seeded), identity scaling, zero reference energies.
pub fn random_model(set: &DescriptorSet, seed: u64) -> ModelSpec {
    let mut rng = SplitMix64::new(seed);
    let species = set
        .symbols
        .iter()
        .zip(&set.z)
        .zip(&set.descriptors)
        .map(|((sym, &z), desc)| {
            let mut width = desc.len();
            let mut layers = Vec::new();
            for (&h, &act) in set.hidden.iter().zip(&set.activations) {
                layers.push(random_layer(width, h, act, &mut rng));
                width = h;
            }
            let out_act = set
                .activations
                .last()
                .copied()
                .unwrap_or(ActivationSpec::Linear);
            layers.push(random_layer(width, 1, out_act, &mut rng));
            for l in &mut layers {
                l.normalize = set.normalize;
            }
            SpeciesSpec {
                symbol: sym.clone(),
                z,
                reference_energy: 0.0,
                descriptors: desc.clone(),
                scaling: Vec::new(),
                layers,
            }
        })
        .collect();
    ModelSpec {
        species,
        energy_scale: 1.0,
        energy_shift: 0.0,
        scaling_mode: ScalingSpec::None,
        source_length_unit: 1.0,
        source_energy_unit: 1.0,
        text: format!("random weights, seed {seed}"),
    }
}

/// An n2p2-style generated descriptor set: per neighbour species `n_radial` G2 functions on a
/// shifted grid r_s ∈ [0.5 Å, rc) with η = 1/(2Δ²); per species pair G4 functions with
/// ζ ∈ {1, 2, 4, …} (`n_zeta` values), λ = ±1 and two widths.
pub fn generated_set(
    symbols: &[&str],
    rc: f64,
    n_radial: usize,
    n_zeta: usize,
    hidden: &[usize],
    activation: ActivationSpec,
) -> Result<DescriptorSet> {
    let mut z: Vec<(u8, String)> = Vec::new();
    for s in symbols {
        let zz = crate::elements::atomic_number(s)
            .ok_or_else(|| anyhow::anyhow!("unknown element {s:?}"))?;
        z.push((zz, s.to_string()));
    }
    z.sort();
    z.dedup();
    let n = z.len();
    let cut = |kind, e1, e2, eta, rs, zeta, lambda| DescriptorSpec {
        kind,
        e1,
        e2,
        eta,
        rs,
        zeta,
        lambda,
        rc,
        cutoff: CutoffSpec::Cos,
        alpha: 0.0,
        ..Default::default()
    };
    let r0 = 0.5;
    let step = (rc - r0) / n_radial.max(1) as f64;
    let eta_r = 1.0 / (2.0 * step * step);
    let mut per = Vec::new();
    for _centre in 0..n {
        let mut d = Vec::new();
        for e in 0..n {
            for k in 0..n_radial {
                d.push(cut(
                    KindSpec::G2,
                    e,
                    0,
                    eta_r,
                    r0 + k as f64 * step,
                    1.0,
                    1.0,
                ));
            }
        }
        for a in 0..n {
            for b in a..n {
                for eta in [0.01, 0.1] {
                    for k in 0..n_zeta {
                        for lambda in [1.0, -1.0] {
                            d.push(cut(
                                KindSpec::G4,
                                a,
                                b,
                                eta,
                                0.0,
                                f64::from(1u32 << k),
                                lambda,
                            ));
                        }
                    }
                }
            }
        }
        per.push(d);
    }
    Ok(DescriptorSet {
        symbols: z.iter().map(|(_, s)| s.clone()).collect(),
        z: z.iter().map(|(z, _)| *z).collect(),
        descriptors: per,
        hidden: hidden.to_vec(),
        activations: std::iter::repeat_n(activation, hidden.len())
            .chain([ActivationSpec::Linear])
            .collect(),
        normalize: false,
    })
}

/// Positions, species indices and optional cell of a structure, ready for the core.
pub type SystemArrays = (Vec<[f64; 3]>, Vec<u8>, Option<mlff_core::Cell<f64>>);

/// Core-ready arrays for a structure: positions, species indices of `spec`, optional cell.
pub fn system_arrays(spec: &ModelSpec, s: &Structure) -> Result<SystemArrays> {
    let mut species = Vec::with_capacity(s.symbols.len());
    for (i, sym) in s.symbols.iter().enumerate() {
        let k = spec
            .species_by_symbol(sym)
            .ok_or_else(|| anyhow::anyhow!("atom {i}: element {sym} is not in the model"))?;
        species.push(k as u8);
    }
    Ok((
        s.positions.clone(),
        species,
        s.lattice.map(|vectors| mlff_core::Cell {
            vectors,
            pbc: s.pbc(),
        }),
    ))
}

/// Neighbour slots that are surely enough for `s` with cutoff `rc`: the count of the most
/// crowded atom plus a margin, found by a brute-force-free estimate from the density.
pub fn neighbor_capacity(s: &Structure, rc: f64) -> usize {
    let n = s.positions.len().max(1);
    let volume = match s.lattice {
        Some(l) => {
            let c = [
                l[1][1] * l[2][2] - l[1][2] * l[2][1],
                l[1][2] * l[2][0] - l[1][0] * l[2][2],
                l[1][0] * l[2][1] - l[1][1] * l[2][0],
            ];
            (l[0][0] * c[0] + l[0][1] * c[1] + l[0][2] * c[2]).abs()
        }
        None => 0.0,
    };
    let sphere = 4.0 / 3.0 * std::f64::consts::PI * rc.powi(3);
    let est = if volume > 0.0 {
        (n as f64 * sphere / volume * 1.5) as usize + 64
    } else {
        n
    };
    // Open systems: every other atom may be a neighbour. Periodic: density estimate with margin
    // (compute reports NeighborOverflow if an atom is more crowded; callers then retry larger).
    if volume > 0.0 {
        est
    } else {
        n + 16
    }
}

/// Fits centre+range scaling (n2p2 `scale_symmetry_functions` + `center_symmetry_functions`,
/// Smin = −1, Smax = 1... here: (G − mean)/(max − min)) from the features of `structures`.
pub fn fit_scaling(spec: &mut ModelSpec, structures: &[Structure]) -> Result<()> {
    let blob = crate::writer::write_blob(spec, crate::writer::Precision::F64)?;
    let aligned = crate::io::AlignedBlob::new(&blob);
    let model = Model::<f64>::from_blob(aligned.bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ns = spec.species.len();
    let mut stats: Vec<Vec<(f64, f64, f64, usize)>> = spec
        .species
        .iter()
        .map(|s| vec![(f64::INFINITY, f64::NEG_INFINITY, 0.0, 0); s.descriptors.len()])
        .collect();
    for s in structures {
        let (pos, species, cell) = system_arrays(spec, s)?;
        let cap = neighbor_capacity(s, spec.cutoff());
        let size = WorkspaceSize::new(&model.dims(), pos.len(), cap);
        let mut reals = vec![0.0; size.reals];
        let mut idx = vec![0u32; size.indices];
        let mut ws = Workspace::new(&model, pos.len(), cap, &mut reals, &mut idx)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let system = System {
            positions: &pos,
            species: &species,
            cell,
        };
        model
            .for_each_atom(
                &system,
                &mut ws,
                |atom| -> Result<(), mlff_core::ComputeError> {
                    let sp = usize::from(atom.species);
                    let g = atom.descriptors()?;
                    for (st, &x) in stats[sp].iter_mut().zip(g) {
                        st.0 = st.0.min(x);
                        st.1 = st.1.max(x);
                        st.2 += x;
                        st.3 += 1;
                    }
                    Ok(())
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    for (sp, st) in spec.species.iter_mut().zip(&stats).take(ns) {
        sp.scaling = st
            .iter()
            .map(|&(lo, hi, sum, n)| {
                let mean = if n > 0 { sum / n as f64 } else { 0.0 };
                let range = hi - lo;
                Affine {
                    sub: mean,
                    // A function that never varied in the data (or never occurred) is centred only.
                    mul: if range > 1e-12 { 1.0 / range } else { 1.0 },
                    add: 0.0,
                }
            })
            .collect();
    }
    spec.scaling_mode = ScalingSpec::CenterRange;
    Ok(())
}
