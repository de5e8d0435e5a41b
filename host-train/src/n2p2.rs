//! Reading n2p2 `input.nn` descriptor sets and network shapes (types 2, 3, 9).
//!
//! This is the part of the n2p2 importer the benchmarks need today: the full importer (all SF
//! types, scaling.data, weights files) builds on it. Maths and ordering rules:
//! `../shared/N2P2-FORMAT.md`.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::spec::{ActivationSpec, CutoffSpec, DescriptorSpec, KindSpec};

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

fn activation(letter: &str) -> Option<ActivationSpec> {
    let a = mlff_core::Activation::from_n2p2_letter(letter.chars().next()?)?;
    ActivationSpec::ALL.iter().copied().find(|s| s.core() == a)
}

/// Parses `input.nn` text; `length` converts its lengths to Å (1 for Å, [`BOHR`] for Bohr).
pub fn parse_input_nn(text: &str, file: &str, length: f64) -> Result<DescriptorSet> {
    let mut symbols: Vec<String> = Vec::new();
    let mut cutoff = (CutoffSpec::Hard, 0.0);
    let mut raw_sf: Vec<(usize, Vec<String>)> = Vec::new();
    let mut hidden = Vec::new();
    let mut acts = Vec::new();
    let mut normalize = false;
    for (k, raw) in text.lines().enumerate() {
        let line = k + 1;
        let content = raw.split(['#', '!']).next().unwrap_or("");
        let tok: Vec<&str> = content.split_whitespace().collect();
        let Some((&key, args)) = tok.split_first() else {
            continue;
        };
        let at = || format!("{file}:{line}");
        match key {
            "elements" => symbols = args.iter().map(|s| s.to_string()).collect(),
            "cutoff_type" => {
                let code: usize = args
                    .first()
                    .and_then(|c| c.parse().ok())
                    .with_context(|| format!("{}: cutoff_type needs an integer", at()))?;
                let kind = *CutoffSpec::ALL
                    .get(code)
                    .with_context(|| format!("{}: unknown cutoff_type {code}", at()))?;
                let alpha = match args.get(1) {
                    Some(a) => a
                        .parse()
                        .with_context(|| format!("{}: cutoff alpha {a:?} is not a number", at()))?,
                    None => 0.0,
                };
                cutoff = (kind, alpha);
            }
            "symfunction_short" | "symfunction" => {
                raw_sf.push((line, args.iter().map(|s| s.to_string()).collect()))
            }
            "global_nodes_short" => {
                hidden = args
                    .iter()
                    .map(|a| a.parse())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("{}: global_nodes_short", at()))?
            }
            "global_activation_short" => {
                acts = args
                    .iter()
                    .map(|a| {
                        activation(a).with_context(|| format!("{}: unknown activation {a:?}", at()))
                    })
                    .collect::<Result<_>>()?
            }
            "normalize_nodes" => normalize = true,
            "nnp_type" if args.first().is_some_and(|t| *t != "2G-HDNNP" && *t != "2") => {
                bail!(
                    "{}: nnp_type {} is not supported (short-range 2G-HDNNP only)",
                    at(),
                    args[0]
                )
            }
            _ => {}
        }
    }
    if symbols.is_empty() {
        bail!("{file}: no `elements` line");
    }
    // Species index = rank by atomic number.
    let mut z: Vec<(u8, String)> = Vec::new();
    for s in &symbols {
        let zz = crate::elements::atomic_number(s)
            .with_context(|| format!("{file}: unknown element {s:?}"))?;
        z.push((zz, s.clone()));
    }
    z.sort();
    let index_of = |s: &str, line: usize| {
        z.iter()
            .position(|(_, sym)| sym == s)
            .with_context(|| format!("{file}:{line}: element {s:?} not in `elements`"))
    };
    let mut per: Vec<Vec<(Vec<f64>, DescriptorSpec)>> = vec![Vec::new(); z.len()];
    for (line, a) in &raw_sf {
        let line = *line;
        let f = |i: usize, name: &str| -> Result<f64> {
            let t = a
                .get(i)
                .with_context(|| format!("{file}:{line}: missing `{name}`"))?;
            t.parse()
                .with_context(|| format!("{file}:{line}: `{name}` is not a number: {t:?}"))
        };
        let centre = index_of(a.first().map(String::as_str).unwrap_or(""), line)?;
        let ty = a.get(1).map(String::as_str).unwrap_or("");
        let (key, d) = match ty {
            "2" => {
                let e1 = index_of(a.get(2).map(String::as_str).unwrap_or(""), line)?;
                let (eta, rs, rc) = (f(3, "eta")?, f(4, "rs")?, f(5, "rc")?);
                let d = DescriptorSpec {
                    kind: KindSpec::G2,
                    e1,
                    e2: 0,
                    eta: eta / (length * length),
                    rs: rs * length,
                    zeta: 1.0,
                    lambda: 1.0,
                    rc: rc * length,
                    cutoff: cutoff.0,
                    alpha: cutoff.1,
                };
                (vec![2.0, rc, eta, rs, e1 as f64], d)
            }
            "3" | "9" => {
                let e1 = index_of(a.get(2).map(String::as_str).unwrap_or(""), line)?;
                let e2 = index_of(a.get(3).map(String::as_str).unwrap_or(""), line)?;
                let (e1, e2) = (e1.min(e2), e1.max(e2));
                let (eta, lambda, zeta, rc) = (f(4, "eta")?, f(5, "lambda")?, f(6, "zeta")?, f(7, "rc")?);
                let rs = if a.len() > 8 { f(8, "rs")? } else { 0.0 };
                let kind = if ty == "3" { KindSpec::G4 } else { KindSpec::G5 };
                let d = DescriptorSpec {
                    kind,
                    e1,
                    e2,
                    eta: eta / (length * length),
                    rs: rs * length,
                    zeta,
                    lambda,
                    rc: rc * length,
                    cutoff: cutoff.0,
                    alpha: cutoff.1,
                };
                let t: f64 = ty.parse().unwrap_or(3.0);
                (vec![t, rc, eta, rs, zeta, lambda, e1 as f64, e2 as f64], d)
            }
            other => bail!(
                "{file}:{line}: symmetry function type {other:?} is not supported yet (types 2, 3, 9)"
            ),
        };
        per[centre].push((key, d));
    }
    let mut descriptors = Vec::new();
    for (s, mut list) in per.into_iter().enumerate() {
        if list.is_empty() {
            bail!("{file}: element {} has no symmetry functions", z[s].1);
        }
        list.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        descriptors.push(list.into_iter().map(|(_, d)| d).collect());
    }
    if acts.len() != hidden.len() + 1 {
        bail!(
            "{file}: {} activations for {} hidden layers (need one more, for the output)",
            acts.len(),
            hidden.len()
        );
    }
    Ok(DescriptorSet {
        symbols: z.iter().map(|(_, s)| s.clone()).collect(),
        z: z.iter().map(|(z, _)| *z).collect(),
        descriptors,
        hidden,
        activations: acts,
        normalize,
    })
}

/// Reads an `input.nn` file (see [`parse_input_nn`]).
pub fn read_input_nn(path: &Path, length: f64) -> Result<DescriptorSet> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_input_nn(&text, &path.display().to_string(), length)
}
