//! The n2p2 / RuNNer importer: `input.nn`, `scaling.data` and `weights.ZZZ.data` → [`ModelSpec`].
//!
//! Maths, file formats and ordering rules: `../shared/N2P2-FORMAT.md`. Units: n2p2 files carry
//! none, so the caller states the length and energy unit; conversion uses CODATA 2018
//! (1 Bohr = 0.529177210903 Å, 1 Hartree = 27.211386245988 eV). Symmetry-function values are
//! dimensionless, so `scaling.data` needs no conversion; η, r_s and r_c are converted to Å, and
//! E_i = U·(NN_i/conv_energy + mean_energy + atom_energy) becomes the blob's
//! `energy_scale = U/conv_energy`, `energy_shift = U·mean_energy`, reference energy
//! `U·atom_energy` (without normalisation: `energy_scale = U`).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::structure::num;

use crate::spec::{
    ActivationSpec, Affine, CompactSpec, CutoffSpec, DescriptorSpec, KindSpec, LayerSpec,
};
use crate::spec::{ModelSpec, ScalingSpec, SpeciesSpec};

/// Bohr in Å (CODATA 2018).
pub const BOHR: f64 = 0.529_177_210_903;
/// Hartree in eV (CODATA 2018).
pub const HARTREE: f64 = 27.211_386_245_988;

/// Descriptors and network shape read from `input.nn`.
#[derive(Clone, Debug)]
pub struct DescriptorSet {
    /// Element symbols in species-index order (n2p2: by atomic number).
    pub symbols: Vec<String>,
    /// Atomic numbers, same order.
    pub z: Vec<u8>,
    /// Per species, descriptors in n2p2's sorted (network input) order; lengths in Å.
    pub descriptors: Vec<Vec<DescriptorSpec>>,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Activations of the hidden layers and the output.
    pub activations: Vec<ActivationSpec>,
    /// `normalize_nodes` present.
    pub normalize: bool,
}

/// n2p2's energy normalisation (`mean_energy`, `conv_energy`, `conv_length`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalisation {
    /// Mean energy per atom (model energy units).
    pub mean_energy: f64,
    /// Energy conversion factor.
    pub conv_energy: f64,
    /// Length conversion factor (not needed: see the module docs).
    pub conv_length: f64,
}

/// Everything in `input.nn` that defines the potential.
#[derive(Clone, Debug)]
pub struct InputNn {
    /// Descriptors and network shape.
    pub set: DescriptorSet,
    /// `atom_energy` per species index (model energy units; 0 when absent).
    pub atom_energy: Vec<f64>,
    /// Normalisation, when all three keywords are present.
    pub normalisation: Option<Normalisation>,
    /// The scaling mode the flags select.
    pub scaling: ScalingSpec,
    /// `scale_min_short`, `scale_max_short`.
    pub smin: f64,
    /// See `smin`.
    pub smax: f64,
}

fn activation(letter: &str) -> Option<ActivationSpec> {
    let mut chars = letter.chars();
    let a = mlff_core::Activation::from_n2p2_letter(chars.next()?)?;
    if chars.next().is_some() {
        return None;
    }
    ActivationSpec::ALL.iter().copied().find(|s| s.core() == a)
}

/// Keywords that may appear more than once.
const REPEATABLE: [&str; 3] = ["symfunction_short", "symfunction", "atom_energy"];

/// Keywords of features this importer does not support (they change the potential's form).
const UNSUPPORTED: [&str; 4] = [
    "element_nodes_short",
    "electrostatic_type",
    "use_electrostatics",
    "dispersion",
];

/// Parses `input.nn` text; `file` names the source in errors and `length` converts its lengths
/// to Å (1 for Å, [`BOHR`] for Bohr).
pub fn parse_input_nn_full(text: &str, file: &str, length: f64) -> Result<InputNn> {
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut symbols: Vec<String> = Vec::new();
    let mut n_elements: Option<(usize, usize)> = None;
    let mut cutoff = (CutoffSpec::Hard, 0.0);
    let mut raw_sf: Vec<(usize, Vec<String>)> = Vec::new();
    let mut raw_atom_energy: Vec<(usize, String, f64)> = Vec::new();
    let mut hidden: Vec<usize> = Vec::new();
    let mut n_hidden: Option<(usize, usize)> = None;
    let mut acts: Vec<ActivationSpec> = Vec::new();
    let mut normalize = false;
    let (mut mean, mut conv_e, mut conv_l) = (None, None, None);
    let (mut scale, mut center, mut sigma) = (false, false, false);
    let (mut smin, mut smax) = (0.0, 1.0);
    for (k, raw) in text.lines().enumerate() {
        let line = k + 1;
        let content = raw.split(['#', '!']).next().unwrap_or("");
        let tok: Vec<&str> = content.split_whitespace().collect();
        let Some((&key, args)) = tok.split_first() else {
            continue;
        };
        let at = format!("{file}:{line}");
        if !REPEATABLE.contains(&key) {
            if let Some((_, first)) = seen.iter().find(|(k, _)| k == key) {
                bail!("{at}: keyword `{key}` repeated (first on line {first})");
            }
            seen.push((key.to_string(), line));
        }
        let number = |i: usize| num(args.get(i).copied(), file, line, key);
        let count = |i: usize| -> Result<usize> {
            let t = args
                .get(i)
                .with_context(|| format!("{at}: `{key}` needs argument {}", i + 1))?;
            t.parse()
                .with_context(|| format!("{at}: `{key}` argument {t:?} is not a count"))
        };
        match key {
            "nnp_type" => {
                let t = args.first().copied().unwrap_or("");
                if t != "2G-HDNNP" && t != "2" {
                    bail!("{at}: `nnp_type {t}` is not supported (short-range 2G-HDNNP only)");
                }
            }
            "number_of_elements" => n_elements = Some((count(0)?, line)),
            "elements" => symbols = args.iter().map(|s| s.to_string()).collect(),
            "atom_energy" => {
                let e = args
                    .first()
                    .with_context(|| format!("{at}: `atom_energy` needs an element"))?;
                raw_atom_energy.push((line, e.to_string(), number(1)?));
            }
            "mean_energy" => mean = Some(number(0)?),
            "conv_energy" => conv_e = Some(number(0)?),
            "conv_length" => conv_l = Some(number(0)?),
            "cutoff_type" => {
                let code = count(0)?;
                let kind = *CutoffSpec::ALL
                    .get(code)
                    .with_context(|| format!("{at}: unknown `cutoff_type` {code}"))?;
                let alpha = if args.len() > 1 { number(1)? } else { 0.0 };
                if !(0.0..1.0).contains(&alpha) {
                    bail!("{at}: cutoff alpha {alpha} outside [0, 1)");
                }
                cutoff = (kind, alpha);
            }
            "scale_symmetry_functions" => scale = true,
            "center_symmetry_functions" => center = true,
            "scale_symmetry_functions_sigma" => sigma = true,
            "scale_min_short" => smin = number(0)?,
            "scale_max_short" => smax = number(0)?,
            "global_hidden_layers_short" => n_hidden = Some((count(0)?, line)),
            "global_nodes_short" => {
                hidden = (0..args.len()).map(count).collect::<Result<_>>()?;
                if hidden.contains(&0) {
                    bail!("{at}: `global_nodes_short` has an empty layer");
                }
            }
            "global_activation_short" => {
                acts = args
                    .iter()
                    .map(|a| {
                        activation(a).with_context(|| format!("{at}: unknown activation {a:?}"))
                    })
                    .collect::<Result<_>>()?
            }
            "normalize_nodes" => normalize = true,
            "symfunction_short" | "symfunction" => {
                raw_sf.push((line, args.iter().map(|s| s.to_string()).collect()))
            }
            k if UNSUPPORTED.contains(&k) => {
                bail!("{at}: `{k}` is not supported by this importer")
            }
            _ => {}
        }
    }
    if symbols.is_empty() {
        bail!("{file}: no `elements` line");
    }
    if let Some((n, line)) = n_elements {
        if n != symbols.len() {
            bail!(
                "{file}:{line}: number_of_elements {n} but {} elements listed",
                symbols.len()
            );
        }
    }
    if let Some((n, line)) = n_hidden {
        if n != hidden.len() {
            bail!(
                "{file}:{line}: global_hidden_layers_short {n} but {} widths in global_nodes_short",
                hidden.len()
            );
        }
    }
    if acts.len() != hidden.len() + 1 {
        bail!(
            "{file}: global_activation_short has {} activations for {} hidden layers (need one more, for the output)",
            acts.len(),
            hidden.len()
        );
    }
    let normalisation = match (mean, conv_e, conv_l) {
        (Some(mean_energy), Some(conv_energy), Some(conv_length)) => {
            if conv_energy == 0.0 {
                bail!("{file}: conv_energy is 0");
            }
            Some(Normalisation {
                mean_energy,
                conv_energy,
                conv_length,
            })
        }
        (None, None, None) => None,
        _ => bail!("{file}: mean_energy, conv_energy and conv_length must be given together"),
    };
    let scaling = match (scale, center, sigma) {
        (false, false, false) => ScalingSpec::None,
        (true, false, false) => ScalingSpec::MinMax,
        (false, true, false) => ScalingSpec::Center,
        (true, true, false) => ScalingSpec::CenterRange,
        (false, _, true) => ScalingSpec::Sigma,
        (true, _, true) => bail!(
            "{file}: scale_symmetry_functions and scale_symmetry_functions_sigma exclude each other"
        ),
    };
    // Species index = rank by atomic number.
    let mut z: Vec<(u8, String)> = Vec::new();
    for s in &symbols {
        let zz = crate::elements::atomic_number(s)
            .with_context(|| format!("{file}: unknown element {s:?} in `elements`"))?;
        if z.iter().any(|(x, _)| *x == zz) {
            bail!("{file}: element {s} listed twice");
        }
        z.push((zz, s.clone()));
    }
    z.sort();
    let index_of = |s: &str, line: usize| {
        z.iter()
            .position(|(_, sym)| sym == s)
            .with_context(|| format!("{file}:{line}: element {s:?} not in `elements`"))
    };
    let mut atom_energy = vec![0.0; z.len()];
    for (line, e, v) in &raw_atom_energy {
        atom_energy[index_of(e, *line)?] = *v;
    }
    let mut per: Vec<Vec<(Vec<Key>, DescriptorSpec)>> = vec![Vec::new(); z.len()];
    for (line, a) in &raw_sf {
        let (centre, key, d) = parse_symfunction(a, *line, file, length, cutoff, &index_of)?;
        per[centre].push((key, d));
    }
    let mut descriptors = Vec::new();
    for (s, mut list) in per.into_iter().enumerate() {
        if list.is_empty() {
            bail!("{file}: element {} has no symmetry functions", z[s].1);
        }
        // n2p2's order (N2P2-FORMAT.md): type, then the type's parameter keys.
        list.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        descriptors.push(list.into_iter().map(|(_, d)| d).collect());
    }
    Ok(InputNn {
        set: DescriptorSet {
            symbols: z.iter().map(|(_, s)| s.clone()).collect(),
            z: z.iter().map(|(z, _)| *z).collect(),
            descriptors,
            hidden,
            activations: acts,
            normalize,
        },
        atom_energy,
        normalisation,
        scaling,
        smin,
        smax,
    })
}

/// One part of n2p2's sort key of a symmetry function.
#[derive(Clone, Debug, PartialEq, PartialOrd)]
enum Key {
    N(f64),
    S(String),
}

fn keys(v: &[f64]) -> Vec<Key> {
    v.iter().map(|&x| Key::N(x)).collect()
}

fn check_angular(lambda: f64, zeta: f64, file: &str, line: usize) -> Result<()> {
    if lambda != 1.0 && lambda != -1.0 {
        bail!("{file}:{line}: lambda must be 1 or -1, is {lambda}");
    }
    if zeta < 1.0 {
        bail!("{file}:{line}: zeta {zeta} < 1 is not supported (forces diverge at cos θ = ∓1)");
    }
    Ok(())
}

/// One `symfunction_short` line → (central species, sort key, descriptor in Å).
fn parse_symfunction(
    a: &[String],
    line: usize,
    file: &str,
    length: f64,
    cutoff: (CutoffSpec, f64),
    index_of: &dyn Fn(&str, usize) -> Result<usize>,
) -> Result<(usize, Vec<Key>, DescriptorSpec)> {
    let f = |i: usize, name: &str| num(a.get(i).map(String::as_str), file, line, name);
    let elem = |i: usize| index_of(a.get(i).map(String::as_str).unwrap_or(""), line);
    let centre = elem(0)?;
    let ty = a.get(1).map(String::as_str).unwrap_or("");
    let base = DescriptorSpec {
        kind: KindSpec::G2,
        e1: 0,
        e2: 0,
        eta: 0.0,
        rs: 0.0,
        zeta: 1.0,
        lambda: 1.0,
        rc: 0.0,
        cutoff: cutoff.0,
        alpha: cutoff.1,
        ..Default::default()
    };
    let (key, d) = match ty {
        "2" => {
            let e1 = elem(2)?;
            let (eta, rs, rc) = (f(3, "eta")?, f(4, "rs")?, f(5, "rc")?);
            let d = DescriptorSpec {
                e1,
                eta: eta / (length * length),
                rs: rs * length,
                rc: rc * length,
                ..base
            };
            (keys(&[2.0, rc, eta, rs, e1 as f64]), d)
        }
        "3" | "9" => {
            let (e1, e2) = (elem(2)?, elem(3)?);
            let (e1, e2) = (e1.min(e2), e1.max(e2));
            let (eta, lambda, zeta, rc) =
                (f(4, "eta")?, f(5, "lambda")?, f(6, "zeta")?, f(7, "rc")?);
            let rs = if a.len() > 8 { f(8, "rs")? } else { 0.0 };
            check_angular(lambda, zeta, file, line)?;
            let kind = if ty == "3" {
                KindSpec::G4
            } else {
                KindSpec::G5
            };
            let d = DescriptorSpec {
                kind,
                e1,
                e2,
                eta: eta / (length * length),
                rs: rs * length,
                zeta,
                lambda,
                rc: rc * length,
                ..base
            };
            let t: f64 = if ty == "3" { 3.0 } else { 9.0 };
            (
                keys(&[t, rc, eta, rs, zeta, lambda, e1 as f64, e2 as f64]),
                d,
            )
        }
        "12" | "13" => {
            // Element-weighted Gaussian kinds: no neighbour species.
            let weighted_narrow = ty == "13";
            let (eta, rs) = (f(2, "eta")?, f(3, "rs")?);
            let (lambda, zeta, rc) = if weighted_narrow {
                (f(4, "lambda")?, f(5, "zeta")?, f(6, "rc")?)
            } else {
                (1.0, 1.0, f(4, "rc")?)
            };
            check_angular(lambda, zeta, file, line)?;
            let d = DescriptorSpec {
                kind: if weighted_narrow {
                    KindSpec::WeightedNarrow
                } else {
                    KindSpec::WeightedRadial
                },
                eta: eta / (length * length),
                rs: rs * length,
                zeta,
                lambda,
                rc: rc * length,
                ..base
            };
            let t = if weighted_narrow { 13.0 } else { 12.0 };
            (keys(&[t, rc, eta, rs, zeta, lambda]), d)
        }
        "20" | "21" | "22" | "23" | "24" | "25" => {
            let t: u32 = ty.parse().unwrap_or(20);
            let weighted = t >= 23;
            let angular = !matches!(t, 20 | 23);
            // Tokens after the type: [e1 [e2]] rl rc [angleLeft angleRight] sub.
            let n_elem = match (weighted, angular) {
                (true, _) => 0,
                (false, false) => 1,
                (false, true) => 2,
            };
            let (mut e1, mut e2) = (0, 0);
            if n_elem >= 1 {
                e1 = elem(2)?;
                e2 = e1;
            }
            if n_elem == 2 {
                let other = elem(3)?;
                (e1, e2) = (e1.min(other), e1.max(other));
            }
            let at = 2 + n_elem;
            let (rl, rc) = (f(at, "rl")?, f(at + 1, "rc")?);
            let (left, right, sub_at) = if angular {
                (f(at + 2, "angleLeft")?, f(at + 3, "angleRight")?, at + 4)
            } else {
                (0.0, 180.0, at + 2)
            };
            let sub = a.get(sub_at).with_context(|| {
                format!("{file}:{line}: symmetry function is missing `subtype`")
            })?;
            let (subtype, asymmetric) = CompactSpec::from_n2p2(sub).with_context(|| {
                format!("{file}:{line}: unknown subtype {sub:?} (p1..p4, p1a..p4a, e)")
            })?;
            let kind = KindSpec::from_n2p2_type(t)
                .with_context(|| format!("{file}:{line}: unknown symmetry function type {t}"))?;
            let d = DescriptorSpec {
                kind,
                e1,
                e2,
                rl: rl * length,
                rc: rc * length,
                angle_left: left,
                angle_right: right,
                subtype,
                asymmetric,
                ..base
            };
            // n2p2's order: subtype (as a string), then elements, rc, rl, angles.
            let mut k = vec![Key::N(f64::from(t)), Key::S(sub.clone())];
            if n_elem >= 1 {
                k.push(Key::N(e1 as f64));
            }
            if n_elem == 2 {
                k.push(Key::N(e2 as f64));
            }
            k.extend([Key::N(rc), Key::N(rl)]);
            if angular {
                k.extend([Key::N(left), Key::N(right)]);
            }
            (k, d)
        }
        other => bail!("{file}:{line}: symmetry function type {other:?} is not supported"),
    };
    if d.rc.is_nan() || d.rc <= 0.0 || d.eta < 0.0 {
        bail!("{file}:{line}: need rc > 0 and eta >= 0");
    }
    Ok((centre, key, d))
}

/// Parses `input.nn` text for its descriptor set and network shape (see
/// [`parse_input_nn_full`]).
pub fn parse_input_nn(text: &str, file: &str, length: f64) -> Result<DescriptorSet> {
    Ok(parse_input_nn_full(text, file, length)?.set)
}

/// Reads an `input.nn` file (see [`parse_input_nn`]).
pub fn read_input_nn(path: &Path, length: f64) -> Result<DescriptorSet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_input_nn(&text, &path.display().to_string(), length)
}

/// Reads `scaling.data` rows for `counts[s]` functions per species (sorted order) and turns them
/// into affine scalings for `mode`.
pub fn parse_scaling(
    text: &str,
    file: &str,
    counts: &[usize],
    mode: ScalingSpec,
    smin: f64,
    smax: f64,
) -> Result<Vec<Vec<Affine>>> {
    let mut out: Vec<Vec<Affine>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
    let mut expect = (0usize, 0usize); // (species, function) of the next row
    let total: usize = counts.iter().sum();
    let mut rows = 0usize;
    for (k, raw) in text.lines().enumerate() {
        let line = k + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        while expect.0 < counts.len() && expect.1 >= counts[expect.0] {
            expect = (expect.0 + 1, 0);
        }
        if expect.0 >= counts.len() {
            bail!("{file}:{line}: more rows than the {total} symmetry functions of input.nn");
        }
        let tok: Vec<&str> = t.split_whitespace().collect();
        if tok.len() < 6 {
            bail!("{file}:{line}: expected 6 columns (element, index, Gmin, Gmax, Gmean, Gsigma), got {}", tok.len());
        }
        let int = |i: usize, name: &str| -> Result<usize> {
            tok[i]
                .parse()
                .with_context(|| format!("{file}:{line}: `{name}` is not an integer: {:?}", tok[i]))
        };
        let field = |i: usize, name: &str| num(tok.get(i).copied(), file, line, name);
        let (e, f) = (int(0, "element")?, int(1, "index")?);
        if (e, f) != (expect.0 + 1, expect.1 + 1) {
            bail!(
                "{file}:{line}: expected the row of element {} function {}, found element {e} function {f}",
                expect.0 + 1,
                expect.1 + 1
            );
        }
        let (gmin, gmax, gmean, gsigma) = (
            field(2, "Gmin")?,
            field(3, "Gmax")?,
            field(4, "Gmean")?,
            field(5, "Gsigma")?,
        );
        let range = gmax - gmin;
        // A function that never varied in n2p2's training data has range (or σ) 0; n2p2 would
        // divide by zero there. Its scaled value is then constant, so scale it by 0.
        let inv = |d: f64| if d != 0.0 { (smax - smin) / d } else { 0.0 };
        let a = match mode {
            ScalingSpec::None => Affine::IDENTITY,
            ScalingSpec::MinMax => Affine {
                sub: gmin,
                mul: inv(range),
                add: smin,
            },
            ScalingSpec::Center => Affine {
                sub: gmean,
                mul: 1.0,
                add: 0.0,
            },
            ScalingSpec::CenterRange => Affine {
                sub: gmean,
                mul: inv(range),
                add: smin,
            },
            ScalingSpec::Sigma => Affine {
                sub: gmean,
                mul: inv(gsigma),
                add: smin,
            },
        };
        out[expect.0].push(a);
        expect.1 += 1;
        rows += 1;
    }
    if rows != total {
        bail!("{file}: {rows} scaling rows, but input.nn defines {total} symmetry functions");
    }
    Ok(out)
}

/// Reads a `weights.ZZZ.data` file: the first column of every non-comment line.
pub fn parse_weights(text: &str, file: &str) -> Result<Vec<f64>> {
    let mut w = Vec::new();
    for (k, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let first = t.split_whitespace().next().unwrap_or("");
        let v: f64 = first
            .parse()
            .with_context(|| format!("{file}:{}: weight is not a number: {first:?}", k + 1))?;
        if !v.is_finite() {
            bail!("{file}:{}: weight is not finite", k + 1);
        }
        w.push(v);
    }
    Ok(w)
}

/// Units of an n2p2 model directory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Units {
    /// Length unit in Å.
    pub length: f64,
    /// Energy unit in eV.
    pub energy: f64,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Imports the n2p2 model in `dir` (`input.nn`, `scaling.data`, `weights.ZZZ.data`).
pub fn import(dir: &Path, units: Units) -> Result<ModelSpec> {
    let nn_path = dir.join("input.nn");
    let nn = parse_input_nn_full(
        &read(&nn_path)?,
        &nn_path.display().to_string(),
        units.length,
    )?;
    let set = &nn.set;
    let counts: Vec<usize> = set.descriptors.iter().map(Vec::len).collect();
    let sc_path = dir.join("scaling.data");
    let scaling = if nn.scaling == ScalingSpec::None && !sc_path.exists() {
        counts.iter().map(|&n| vec![Affine::IDENTITY; n]).collect()
    } else {
        parse_scaling(
            &read(&sc_path)?,
            &sc_path.display().to_string(),
            &counts,
            nn.scaling,
            nn.smin,
            nn.smax,
        )?
    };
    let (scale, shift) = match nn.normalisation {
        Some(n) => (units.energy / n.conv_energy, units.energy * n.mean_energy),
        None => (units.energy, 0.0),
    };
    let mut species = Vec::new();
    for (s, ((sym, &z), desc)) in set
        .symbols
        .iter()
        .zip(&set.z)
        .zip(&set.descriptors)
        .enumerate()
    {
        let w_path = dir.join(format!("weights.{z:03}.data"));
        let w_name = w_path.display().to_string();
        let weights = parse_weights(&read(&w_path)?, &w_name)?;
        let mut widths = vec![desc.len()];
        widths.extend(&set.hidden);
        widths.push(1);
        let needed: usize = widths.windows(2).map(|p| (p[0] + 1) * p[1]).sum();
        if weights.len() != needed {
            bail!(
                "{w_name}: {} weights, but the network {:?} of {sym} needs {needed}",
                weights.len(),
                widths
            );
        }
        let mut layers = Vec::new();
        let mut it = weights.iter().copied();
        for (l, pair) in widths.windows(2).enumerate() {
            let (n_in, n_out) = (pair[0], pair[1]);
            // n2p2 order: all weights leaving source neuron 0, then source 1, …; then biases.
            let mut w = vec![0.0; n_in * n_out];
            for i in 0..n_in {
                for o in 0..n_out {
                    w[o * n_in + i] = it.next().unwrap_or(0.0);
                }
            }
            let biases: Vec<f64> = it.by_ref().take(n_out).collect();
            layers.push(LayerSpec {
                n_in,
                n_out,
                activation: set.activations[l.min(set.activations.len() - 1)],
                normalize: set.normalize,
                weights: w,
                biases,
            });
        }
        species.push(SpeciesSpec {
            symbol: sym.clone(),
            z,
            reference_energy: units.energy * nn.atom_energy[s],
            descriptors: desc.clone(),
            scaling: scaling[s].clone(),
            layers,
        });
    }
    Ok(ModelSpec {
        species,
        energy_scale: scale,
        energy_shift: shift,
        scaling_mode: nn.scaling,
        source_length_unit: units.length,
        source_energy_unit: units.energy,
        text: format!(
            "imported from n2p2 model {} (length unit {} Å, energy unit {} eV)",
            dir.display(),
            units.length,
            units.energy
        ),
    })
}
