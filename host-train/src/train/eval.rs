//! Model evaluation: predictions against reference energies and forces, error metrics, parity
//! plots and error histograms (`mlff eval`, and the test-set report of `mlff train`).
//!
//! # Metrics (eV, Å)
//!
//! | key | what |
//! |---|---|
//! | `energy.mae_per_atom`, `energy.rmse_per_atom` | of (E_pred − E_ref)/N over structures |
//! | `energy.mae`, `energy.rmse` | of E_pred − E_ref over structures (total energies) |
//! | `energy.r2` | R² = 1 − Σ(E_pred − E_ref)² / Σ(E_ref − mean E_ref)², on **total** energies |
//! | `energy.r2_per_atom` | the same on energies per atom |
//! | `forces.mae`, `forces.rmse`, `forces.r2` | over every Cartesian force component |
//! | `per_element.X.forces` | the same over the components of the atoms of element X |
//!
//! Structures without a reference energy (forces) are left out of the energy (force) metrics;
//! `count` says how many entered. A statistic with nothing to average, or R² of a reference
//! without variance, is `null`.
//!
//! # Plots
//!
//! [`Comparison::write_plots`] writes four PNGs: `parity_energy.png` (per atom),
//! `parity_forces.png` (components, coloured by element), `errors_energy.png` and
//! `errors_forces.png` (histograms in meV/atom and meV/Å). Each is rendered to memory with
//! plotters' bitmap backend and only then written (to a temporary file beside the target,
//! renamed into place). Plotters is built without its font features (they need system font
//! libraries or shipped font files): labels are drawn with a 5×7 pixel font written for this
//! module ([`FONT`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use plotters::backend::DrawingBackend;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::predict::Predictor;
use crate::writer::Precision;

use super::data::{read_any, Dataset};

/// One structure's energy: reference and prediction (eV).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnergyPoint {
    /// Atoms in the structure.
    pub atoms: usize,
    /// Reference energy.
    pub reference: f64,
    /// Predicted energy.
    pub predicted: f64,
}

/// One force component: reference and prediction (eV/Å).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForcePoint {
    /// Species index of the atom (into [`Comparison::elements`]).
    pub element: usize,
    /// Reference component.
    pub reference: f64,
    /// Predicted component.
    pub predicted: f64,
}

/// Predictions beside references, the raw material of metrics and plots.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Element symbols in the model's species order.
    pub elements: Vec<String>,
    /// Structures compared.
    pub structures: usize,
    /// Atoms compared.
    pub atoms: usize,
    /// Structures with a reference energy.
    pub energies: Vec<EnergyPoint>,
    /// Every force component of the structures with reference forces.
    pub forces: Vec<ForcePoint>,
}

/// Error statistics of one quantity.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ErrorStats {
    /// Values compared.
    pub count: usize,
    /// Mean absolute error.
    pub mae: Option<f64>,
    /// Root-mean-square error.
    pub rmse: Option<f64>,
    /// Largest absolute error.
    pub max_abs: Option<f64>,
    /// Coefficient of determination 1 − SS_res/SS_tot (`None` without variance).
    pub r2: Option<f64>,
}

impl ErrorStats {
    /// Statistics of (reference, predicted) pairs.
    pub fn from_pairs(pairs: impl Iterator<Item = (f64, f64)> + Clone) -> ErrorStats {
        let (mut n, mut abs, mut sq, mut max, mut sum) = (0usize, 0.0, 0.0, 0.0f64, 0.0);
        for (r, p) in pairs.clone() {
            let e = p - r;
            n += 1;
            abs += e.abs();
            sq += e * e;
            max = max.max(e.abs());
            sum += r;
        }
        if n == 0 {
            return ErrorStats::default();
        }
        let mean = sum / n as f64;
        let tot: f64 = pairs.map(|(r, _)| (r - mean) * (r - mean)).sum();
        ErrorStats {
            count: n,
            mae: Some(abs / n as f64),
            rmse: Some((sq / n as f64).sqrt()),
            max_abs: Some(max),
            r2: (tot > 0.0).then(|| 1.0 - sq / tot),
        }
    }
}

/// Energy metrics (eV, eV/atom). R² is on total energies (`r2_per_atom` on energies per
/// atom).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EnergyMetrics {
    /// Structures with a reference energy.
    pub count: usize,
    /// MAE of the energy per atom.
    pub mae_per_atom: Option<f64>,
    /// RMSE of the energy per atom.
    pub rmse_per_atom: Option<f64>,
    /// Largest absolute error of the energy per atom.
    pub max_abs_per_atom: Option<f64>,
    /// R² of the energy per atom.
    pub r2_per_atom: Option<f64>,
    /// MAE of the total energy.
    pub mae: Option<f64>,
    /// RMSE of the total energy.
    pub rmse: Option<f64>,
    /// Largest absolute error of the total energy.
    pub max_abs: Option<f64>,
    /// R² of the total energy.
    pub r2: Option<f64>,
}

/// Per-element metrics.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ElementMetrics {
    /// Atoms of this element with reference forces.
    pub atoms: usize,
    /// Force-component statistics of these atoms (eV/Å).
    pub forces: ErrorStats,
}

/// Everything `mlff eval --json` prints and `metrics.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Structures evaluated.
    pub structures: usize,
    /// Atoms evaluated.
    pub atoms: usize,
    /// Energy errors.
    pub energy: EnergyMetrics,
    /// Force-component errors over all atoms (eV/Å).
    pub forces: ErrorStats,
    /// Force errors by element of the atom.
    pub per_element: BTreeMap<String, ElementMetrics>,
}

impl Comparison {
    /// The metrics (see the module docs).
    pub fn metrics(&self) -> Metrics {
        let per_atom = self
            .energies
            .iter()
            .map(|e| (e.reference / e.atoms as f64, e.predicted / e.atoms as f64));
        let total = self.energies.iter().map(|e| (e.reference, e.predicted));
        let (pa, tot) = (
            ErrorStats::from_pairs(per_atom),
            ErrorStats::from_pairs(total),
        );
        let energy = EnergyMetrics {
            count: tot.count,
            mae_per_atom: pa.mae,
            rmse_per_atom: pa.rmse,
            max_abs_per_atom: pa.max_abs,
            r2_per_atom: pa.r2,
            mae: tot.mae,
            rmse: tot.rmse,
            max_abs: tot.max_abs,
            r2: tot.r2,
        };
        let forces = ErrorStats::from_pairs(self.forces.iter().map(|f| (f.reference, f.predicted)));
        let per_element = self
            .elements
            .iter()
            .enumerate()
            .map(|(k, sym)| {
                let pairs = self
                    .forces
                    .iter()
                    .filter(move |f| f.element == k)
                    .map(|f| (f.reference, f.predicted));
                let forces = ErrorStats::from_pairs(pairs);
                (
                    sym.clone(),
                    ElementMetrics {
                        atoms: forces.count / 3,
                        forces,
                    },
                )
            })
            .collect();
        Metrics {
            structures: self.structures,
            atoms: self.atoms,
            energy,
            forces,
            per_element,
        }
    }
}

/// Predicts every structure of `data` with `predictor` (structures in parallel on `threads`
/// threads, default all cores; each structure on one thread, so results do not depend on the
/// count) and pairs the predictions with the references. Errors name the file and frame.
pub fn compare(
    predictor: &Predictor,
    data: &Dataset,
    precision: Precision,
    threads: Option<usize>,
) -> Result<Comparison> {
    use rayon::prelude::*;
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = threads {
        if t == 0 {
            bail!("threads must be at least 1");
        }
        pool = pool.num_threads(t);
    }
    let pool = pool.build()?;
    let samples = &data.samples;
    let predictions = pool.install(|| {
        samples
            .par_iter()
            .enumerate()
            .map(|(i, s)| {
                predictor
                    .predict_pbc(&s.structure, s.pbc, precision)
                    .with_context(|| data.origin(i))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let elements = predictor.symbols().to_vec();
    let mut cmp = Comparison {
        elements,
        structures: samples.len(),
        ..Comparison::default()
    };
    for (s, p) in samples.iter().zip(&predictions) {
        let st = &s.structure;
        cmp.atoms += st.symbols.len();
        if let Some(e) = st.energy {
            cmp.energies.push(EnergyPoint {
                atoms: st.symbols.len(),
                reference: e,
                predicted: p.energy,
            });
        }
        if st.forces.len() == st.symbols.len() {
            for ((sym, fr), fp) in st.symbols.iter().zip(&st.forces).zip(&p.forces) {
                let element = cmp
                    .elements
                    .iter()
                    .position(|x| x == sym)
                    .ok_or_else(|| anyhow!("element {sym} is not in the model"))?;
                for (r, q) in fr.iter().zip(fp) {
                    cmp.forces.push(ForcePoint {
                        element,
                        reference: *r,
                        predicted: *q,
                    });
                }
            }
        }
    }
    Ok(cmp)
}

/// [`compare`] and its [`Comparison::metrics`].
pub fn evaluate(
    predictor: &Predictor,
    data: &Dataset,
    precision: Precision,
    threads: Option<usize>,
) -> Result<Metrics> {
    Ok(compare(predictor, data, precision, threads)?.metrics())
}

/// Options of [`eval_command`].
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Write the PNG plots and `metrics.json` into this directory (created if needed).
    pub plots: Option<PathBuf>,
    /// Print the metrics as JSON instead of a table.
    pub json: bool,
    /// Compute precision.
    pub precision: Precision,
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Length unit of n2p2 `.data` inputs, in Å.
    pub length_unit: f64,
    /// Energy unit of n2p2 `.data` inputs, in eV.
    pub energy_unit: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            plots: None,
            json: false,
            precision: Precision::F64,
            threads: None,
            length_unit: 1.0,
            energy_unit: 1.0,
        }
    }
}

/// `mlff eval -m MODEL -d DATA… [--plots DIR] [--json]`: evaluates the blob `model` on the
/// structures of `data`, prints the metrics (JSON or a table) and, with `plots`, writes the
/// plots and `metrics.json`. Nothing is written unless every prediction succeeded.
pub fn eval_command(model: &Path, data: &[PathBuf], opts: &EvalOptions) -> Result<Metrics> {
    if data.is_empty() {
        bail!("give at least one data file");
    }
    let bytes = std::fs::read(model).with_context(|| format!("cannot read {}", model.display()))?;
    let predictor = Predictor::new(&bytes).with_context(|| model.display().to_string())?;
    let ds = read_any(data, opts.length_unit, opts.energy_unit)?;
    let cmp = compare(&predictor, &ds, opts.precision, opts.threads).with_context(|| {
        format!(
            "evaluating {} on {}",
            model.display(),
            data.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let metrics = cmp.metrics();
    if let Some(dir) = &opts.plots {
        cmp.write_plots(dir)?;
        write_metrics_json(&dir.join("metrics.json"), &metrics)?;
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        print!("{}", metrics.table());
    }
    Ok(metrics)
}

/// Writes `metrics` as pretty JSON to `path`, atomically.
pub fn write_metrics_json(path: &Path, metrics: &Metrics) -> Result<()> {
    let mut text = serde_json::to_string_pretty(metrics)?;
    text.push('\n');
    crate::io::write_atomic(path, text.as_bytes())
}

/// `x` in milli-units with 3 significant decimals, or `-`.
fn milli(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{:.3}", 1e3 * v))
}

fn plain(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.5}"))
}

impl Metrics {
    /// A human-readable table (meV, meV/atom, meV/Å).
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let e = &self.energy;
        let f = &self.forces;
        let _ = writeln!(s, "{} structures, {} atoms", self.structures, self.atoms);
        let _ = writeln!(
            s,
            "energy ({} structures): MAE {} meV/atom, RMSE {} meV/atom; total MAE {} meV, RMSE {} meV, R² {}",
            e.count,
            milli(e.mae_per_atom),
            milli(e.rmse_per_atom),
            milli(e.mae),
            milli(e.rmse),
            plain(e.r2)
        );
        let _ = writeln!(
            s,
            "forces ({} components): MAE {} meV/Å, RMSE {} meV/Å, R² {}",
            f.count,
            milli(f.mae),
            milli(f.rmse),
            plain(f.r2)
        );
        for (sym, m) in &self.per_element {
            let _ = writeln!(
                s,
                "  {sym:<2} ({} atoms): MAE {} meV/Å, RMSE {} meV/Å, R² {}",
                m.atoms,
                milli(m.forces.mae),
                milli(m.forces.rmse),
                plain(m.forces.r2)
            );
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Plots

/// Colours of the elements, in species order (cycled).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
const GRID: RGBColor = RGBColor(225, 225, 225);
const INK: RGBColor = RGBColor(30, 30, 30);

/// Plot size in pixels.
const PARITY_SIZE: (u32, u32) = (720, 720);
const HIST_SIZE: (u32, u32) = (820, 560);
/// Left, right, top, bottom margins of the plotting area.
const MARGINS: (i32, i32, i32, i32) = (130, 30, 60, 80);

impl Comparison {
    /// Writes the parity plots and error histograms into `dir` (created if needed; see the
    /// module docs) and returns the files written. Plots without data are skipped.
    pub fn write_plots(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut written = Vec::new();
        let m = self.metrics();
        // One parity plot and one error histogram per quantity.
        let mut plot = |q: Quantity<'_>| -> Result<()> {
            let labels = (
                format!("reference ({})", q.unit),
                format!("predicted ({})", q.unit),
            );
            let img = parity(
                q.title, &labels.0, &labels.1, &q.points, q.elements, &q.notes,
            )?;
            let path = dir.join(format!("parity_{}.png", q.key));
            save_png(&path, &img, PARITY_SIZE)?;
            written.push(path);
            let errs: Vec<(f64, usize)> =
                q.points.iter().map(|p| (1e3 * (p.1 - p.0), p.2)).collect();
            let axis = format!("predicted - reference (m{})", q.unit);
            let img = histogram(q.error_title, &axis, &errs, q.elements)?;
            let path = dir.join(format!("errors_{}.png", q.key));
            save_png(&path, &img, HIST_SIZE)?;
            written.push(path);
            Ok(())
        };
        if !self.energies.is_empty() {
            let e = &m.energy;
            plot(Quantity {
                key: "energy",
                title: "Energy per atom",
                error_title: "Energy error per atom",
                unit: "eV/atom",
                points: self
                    .energies
                    .iter()
                    .map(|e| {
                        (
                            e.reference / e.atoms as f64,
                            e.predicted / e.atoms as f64,
                            0,
                        )
                    })
                    .collect(),
                elements: &[],
                notes: vec![
                    format!("N = {}", e.count),
                    format!("MAE  {} meV/atom", milli(e.mae_per_atom)),
                    format!("RMSE {} meV/atom", milli(e.rmse_per_atom)),
                    format!("R² (total E) {}", plain(e.r2)),
                ],
            })?;
        }
        if !self.forces.is_empty() {
            let f = &m.forces;
            plot(Quantity {
                key: "forces",
                title: "Force components",
                error_title: "Force component error",
                unit: "eV/Å",
                points: self
                    .forces
                    .iter()
                    .map(|f| (f.reference, f.predicted, f.element))
                    .collect(),
                elements: &self.elements,
                notes: vec![
                    format!("N = {} components", f.count),
                    format!("MAE  {} meV/Å", milli(f.mae)),
                    format!("RMSE {} meV/Å", milli(f.rmse)),
                    format!("R² {}", plain(f.r2)),
                ],
            })?;
        }
        Ok(written)
    }
}

/// One quantity to plot: (reference, predicted, element) points and the text around them.
struct Quantity<'a> {
    key: &'static str,
    title: &'static str,
    error_title: &'static str,
    unit: &'static str,
    points: Vec<(f64, f64, usize)>,
    elements: &'a [String],
    notes: Vec<String>,
}

/// Writes an RGB image to `path` as PNG: through a temporary file beside it, synced, then
/// renamed, so that `path` is either absent, the old file or the complete new one.
fn save_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    // The encoder picks the format from the extension: keep `.png` last.
    let tmp = path.with_file_name(format!(".{name}.tmp{}.png", std::process::id()));
    let result = (|| -> Result<()> {
        {
            let mut b = BitMapBackend::new(&tmp, (w, h));
            b.blit_bitmap((0, 0), (w, h), rgb)
                .map_err(|e| anyhow!("{e:?}"))?;
            b.present().map_err(|e| anyhow!("{e:?}"))?;
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Maps plotters' drawing errors (whose backend error borrows nothing but is not `Sync`) into
/// anyhow.
fn de<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot drawing failed: {e:?}")
}

/// "Nice" tick positions (1, 2, 2.5, 5 × 10ᵏ) covering [lo, hi], about `target` of them, and
/// the decimals to print them with.
fn ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, usize) {
    let span = (hi - lo).abs().max(1e-12);
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let mut dec = (-step.log10().floor()).max(0.0) as usize;
    if (step / 10f64.powi(-(dec as i32)) - 2.5).abs() < 1e-9 {
        dec += 1;
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let v = (first..=last).map(|k| k as f64 * step).collect();
    (v, dec)
}

/// Renders a parity plot: points (reference, predicted, element), the diagonal, grid and
/// labels; `legend` names the elements (no legend when empty or one element).
fn parity(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    pts: &[(f64, f64, usize)],
    legend: &[String],
    notes: &[String],
) -> Result<Vec<u8>> {
    let (w, h) = PARITY_SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let (lo, hi) = pts
            .iter()
            .flat_map(|p| [p.0, p.1])
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
        let pad = ((hi - lo) * 0.05).max(1e-6 * lo.abs().max(1.0));
        let (lo, hi) = (lo - pad, hi + pad);
        let (l, r, t, b) = MARGINS;
        let chart = ChartBuilder::on(&root)
            .margin_left(l)
            .margin_right(r)
            .margin_top(t)
            .margin_bottom(b)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(de)?;
        let (tv, dec) = ticks(lo, hi, 6);
        axes(&root, &chart, &tv, &tv, dec, dec)?;
        let mut chart = chart;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(lo, lo), (hi, hi)],
                INK.stroke_width(1),
            )))
            .map_err(de)?;
        let alpha = if pts.len() > 20_000 { 0.25 } else { 0.6 };
        let radius = if pts.len() > 20_000 { 2 } else { 3 };
        chart
            .draw_series(
                pts.iter().map(|&(x, y, e)| {
                    Circle::new((x, y), radius, PALETTE[e % 8].mix(alpha).filled())
                }),
            )
            .map_err(de)?;
        labels(&root, title, xlabel, ylabel)?;
        let ((px0, _), (py0, _)) = range(&chart);
        for (k, n) in notes.iter().enumerate() {
            text(
                &root,
                n,
                (px0 + 12, py0 + 12 + 20 * k as i32),
                2,
                INK,
                Align::Left,
            )?;
        }
        if legend.len() > 1 {
            let ((_, px1), (_, py1)) = range(&chart);
            for (k, sym) in legend.iter().enumerate() {
                let y = py1 - 20 * (legend.len() - k) as i32 - 6;
                let c = PALETTE[k % 8];
                root.draw(&Rectangle::new(
                    [(px1 - 70, y), (px1 - 58, y + 12)],
                    c.filled(),
                ))
                .map_err(de)?;
                text(&root, sym, (px1 - 50, y), 2, INK, Align::Left)?;
            }
        }
        root.present().map_err(de)?;
    }
    Ok(buf)
}

/// Renders a histogram of errors (value, element), 60 bins over ±the 99.5th percentile of
/// |error|; with more than one element in `legend`, each element's counts are drawn as an
/// outline over the total.
fn histogram(
    title: &str,
    xlabel: &str,
    errs: &[(f64, usize)],
    legend: &[String],
) -> Result<Vec<u8>> {
    const BINS: usize = 60;
    let (w, h) = HIST_SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let mut abs: Vec<f64> = errs.iter().map(|e| e.0.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let q = abs
            .get(((abs.len() as f64 * 0.995) as usize).min(abs.len().saturating_sub(1)))
            .copied()
            .unwrap_or(1.0);
        // A perfect model (all errors 0) still gets a visible range.
        let half = if q > 0.0 { q * 1.05 } else { 1e-3 };
        let width = 2.0 * half / BINS as f64;
        let n_el = legend.len().max(1);
        let mut counts = vec![vec![0usize; BINS]; n_el + 1];
        let mut outside = 0usize;
        for &(e, el) in errs {
            let k = ((e + half) / width).floor();
            if k < 0.0 || k >= BINS as f64 {
                outside += 1;
                continue;
            }
            counts[0][k as usize] += 1;
            if el < n_el {
                counts[el + 1][k as usize] += 1;
            }
        }
        let top = counts[0].iter().copied().max().unwrap_or(1).max(1) as f64 * 1.08;
        let (l, r, t, b) = MARGINS;
        let mut chart = ChartBuilder::on(&root)
            .margin_left(l)
            .margin_right(r)
            .margin_top(t)
            .margin_bottom(b)
            .build_cartesian_2d(-half..half, 0.0..top)
            .map_err(de)?;
        let (tx, dx) = ticks(-half, half, 8);
        // Counts are whole numbers: no ticks between them.
        let (mut ty, _) = ticks(0.0, top, 6);
        ty.retain(|v| v.fract() == 0.0);
        axes(&root, &chart, &tx, &ty, dx, 0)?;
        chart
            .draw_series(
                counts[0]
                    .iter()
                    .enumerate()
                    .filter(|c| *c.1 > 0)
                    .map(|(k, &c)| {
                        let x0 = -half + k as f64 * width;
                        Rectangle::new(
                            [(x0, 0.0), (x0 + width, c as f64)],
                            RGBColor(160, 180, 205).filled(),
                        )
                    }),
            )
            .map_err(de)?;
        if legend.len() > 1 {
            for (el, c) in counts.iter().enumerate().skip(1) {
                let mut path = vec![(-half, 0.0)];
                for (k, &n) in c.iter().enumerate() {
                    let x0 = -half + k as f64 * width;
                    path.push((x0, n as f64));
                    path.push((x0 + width, n as f64));
                }
                path.push((half, 0.0));
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        path,
                        PALETTE[(el - 1) % 8].stroke_width(2),
                    )))
                    .map_err(de)?;
            }
        }
        labels(&root, title, xlabel, "count")?;
        let ((px0, px1), (py0, _)) = range(&chart);
        let n = errs.len().max(1) as f64;
        let mean = errs.iter().map(|e| e.0).sum::<f64>() / n;
        let sd = (errs.iter().map(|e| (e.0 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let mut notes = vec![
            format!("N = {}", errs.len()),
            format!("mean {}", number(mean, 3)),
            format!("std  {}", number(sd, 3)),
        ];
        if outside > 0 {
            notes.push(format!("{outside} outside the range"));
        }
        for (k, s) in notes.iter().enumerate() {
            text(
                &root,
                s,
                (px0 + 12, py0 + 12 + 20 * k as i32),
                2,
                INK,
                Align::Left,
            )?;
        }
        if legend.len() > 1 {
            for (k, sym) in legend.iter().enumerate() {
                let y = py0 + 12 + 20 * k as i32;
                let c = PALETTE[k % 8];
                root.draw(&Rectangle::new(
                    [(px1 - 70, y + 5), (px1 - 56, y + 8)],
                    c.filled(),
                ))
                .map_err(de)?;
                text(&root, sym, (px1 - 50, y), 2, INK, Align::Left)?;
            }
        }
        root.present().map_err(de)?;
    }
    Ok(buf)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Pixel ranges (x, y) of the chart's plotting area.
fn range(chart: &Chart) -> ((i32, i32), (i32, i32)) {
    let (x, y) = chart.plotting_area().get_pixel_range();
    ((x.start, x.end), (y.start, y.end))
}

/// Grid lines, frame, ticks and tick labels.
fn axes(
    root: &Area,
    chart: &Chart,
    xt: &[f64],
    yt: &[f64],
    xdec: usize,
    ydec: usize,
) -> Result<()> {
    let ((x0, x1), (y0, y1)) = range(chart);
    for &v in xt {
        let (px, _) = chart.backend_coord(&(v, 0.0));
        root.draw(&PathElement::new(
            vec![(px, y0), (px, y1)],
            GRID.stroke_width(1),
        ))
        .map_err(de)?;
        root.draw(&PathElement::new(
            vec![(px, y1), (px, y1 + 6)],
            INK.stroke_width(1),
        ))
        .map_err(de)?;
        text(root, &number(v, xdec), (px, y1 + 12), 2, INK, Align::Center)?;
    }
    for &v in yt {
        let (_, py) = chart.backend_coord(&(0.0, v));
        root.draw(&PathElement::new(
            vec![(x0, py), (x1, py)],
            GRID.stroke_width(1),
        ))
        .map_err(de)?;
        root.draw(&PathElement::new(
            vec![(x0 - 6, py), (x0, py)],
            INK.stroke_width(1),
        ))
        .map_err(de)?;
        text(
            root,
            &number(v, ydec),
            (x0 - 10, py - 7),
            2,
            INK,
            Align::Right,
        )?;
    }
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], INK.stroke_width(1)))
        .map_err(de)?;
    Ok(())
}

/// `v` with `dec` decimals, without a negative zero.
fn number(v: f64, dec: usize) -> String {
    let s = format!("{v:.dec$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// Title (top), x label (bottom) and y label (left, reading upwards).
fn labels(root: &Area, title: &str, xlabel: &str, ylabel: &str) -> Result<()> {
    let (w, h) = root.dim_in_pixel();
    let (l, r, _, _) = MARGINS;
    let cx = l + (w as i32 - l - r) / 2;
    text(root, title, (cx, 18), 3, INK, Align::Center)?;
    text(root, xlabel, (cx, h as i32 - 36), 2, INK, Align::Center)?;
    let (_, _, t, b) = MARGINS;
    let cy = t + (h as i32 - t - b) / 2;
    vertical_text(root, ylabel, (8, cy), 2, INK)?;
    Ok(())
}

/// Horizontal alignment of [`text`].
#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Center,
    Right,
}

/// Width in pixels of `s` at `scale` (6 font units per character, less the last gap).
fn text_width(s: &str, scale: i32) -> i32 {
    (6 * s.chars().count() as i32 - 1).max(0) * scale
}

/// Draws `s` with its top edge at `y`, aligned at `x`, each font pixel a `scale`² square.
fn text(
    root: &Area,
    s: &str,
    (x, y): (i32, i32),
    scale: i32,
    color: RGBColor,
    align: Align,
) -> Result<()> {
    let x0 = match align {
        Align::Left => x,
        Align::Center => x - text_width(s, scale) / 2,
        Align::Right => x - text_width(s, scale),
    };
    for (i, ch) in s.chars().enumerate() {
        let rows = glyph(ch);
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5 {
                if bits & (0x10 >> c) != 0 {
                    let px = x0 + (6 * i as i32 + c) * scale;
                    let py = y + (r as i32 + drop_rows(ch)) * scale;
                    root.draw(&Rectangle::new(
                        [(px, py), (px + scale, py + scale)],
                        color.filled(),
                    ))
                    .map_err(de)?;
                }
            }
        }
    }
    Ok(())
}

/// Draws `s` rotated a quarter turn anticlockwise (reading upwards), its left edge at `x`,
/// centred on `y`.
fn vertical_text(
    root: &Area,
    s: &str,
    (x, y): (i32, i32),
    scale: i32,
    color: RGBColor,
) -> Result<()> {
    let bottom = y + text_width(s, scale) / 2;
    for (i, ch) in s.chars().enumerate() {
        for (r, bits) in glyph(ch).iter().enumerate() {
            for c in 0..5 {
                if bits & (0x10 >> c) != 0 {
                    let u = 6 * i as i32 + c;
                    let px = x + (r as i32 + drop_rows(ch)) * scale;
                    let py = bottom - (u + 1) * scale;
                    root.draw(&Rectangle::new(
                        [(px, py), (px + scale, py + scale)],
                        color.filled(),
                    ))
                    .map_err(de)?;
                }
            }
        }
    }
    Ok(())
}

/// Letters drawn two rows (`DESCENT`) below the others.
pub const DESCENDERS: &str = "gpqy";
/// Rows the [`DESCENDERS`] are lowered by.
const DESCENT: i32 = 2;

/// Font rows `ch` is drawn below the top of the line.
fn drop_rows(ch: char) -> i32 {
    if DESCENDERS.contains(ch) {
        DESCENT
    } else {
        0
    }
}

/// The rows of `ch` in [`FONT`] (a box for characters it lacks).
fn glyph(ch: char) -> [u8; 7] {
    FONT.iter()
        .find(|g| g.0 == ch)
        .map_or([0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F], |g| g.1)
}

/// A 5×7 pixel font, written for this module: seven rows per character, top to bottom, the
/// five low bits of each row left (0x10) to right (0x01). ASCII letters, digits, the
/// punctuation of labels and numbers, `Å` and `²`. The letters with descenders
/// ([`DESCENDERS`]) start at the x-height and are drawn two rows lower.
pub const FONT: &[(char, [u8; 7])] = &[
    (' ', [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]),
    ('0', [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E]),
    ('1', [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    ('2', [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F]),
    ('3', [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E]),
    ('4', [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02]),
    ('5', [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E]),
    ('6', [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E]),
    ('7', [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08]),
    ('8', [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E]),
    ('9', [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C]),
    ('A', [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11]),
    ('B', [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E]),
    ('C', [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E]),
    ('D', [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C]),
    ('E', [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F]),
    ('F', [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10]),
    ('G', [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F]),
    ('H', [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11]),
    ('I', [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    ('J', [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C]),
    ('K', [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11]),
    ('L', [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F]),
    ('M', [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11]),
    ('N', [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11]),
    ('O', [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E]),
    ('P', [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10]),
    ('Q', [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D]),
    ('R', [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11]),
    ('S', [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E]),
    ('T', [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    ('U', [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E]),
    ('V', [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04]),
    ('W', [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A]),
    ('X', [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11]),
    ('Y', [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04]),
    ('Z', [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F]),
    ('a', [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F]),
    ('b', [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E]),
    ('c', [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E]),
    ('d', [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F]),
    ('e', [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E]),
    ('f', [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08]),
    ('g', [0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E]),
    ('h', [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11]),
    ('i', [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E]),
    ('j', [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C]),
    ('k', [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12]),
    ('l', [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    ('m', [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11]),
    ('n', [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11]),
    ('o', [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E]),
    ('p', [0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10]),
    ('q', [0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01]),
    ('r', [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10]),
    ('s', [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E]),
    ('t', [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06]),
    ('u', [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D]),
    ('v', [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04]),
    ('w', [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A]),
    ('x', [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11]),
    ('y', [0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E]),
    ('z', [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F]),
    ('.', [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C]),
    (',', [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08]),
    ('-', [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00]),
    ('+', [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00]),
    ('(', [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02]),
    (')', [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08]),
    ('[', [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E]),
    (']', [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E]),
    ('/', [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00]),
    ('=', [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00]),
    (':', [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00]),
    ('%', [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03]),
    ('_', [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F]),
    ('|', [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    ('Å', [0x04, 0x0A, 0x04, 0x0E, 0x11, 0x1F, 0x11]),
    ('²', [0x0C, 0x02, 0x04, 0x08, 0x0E, 0x00, 0x00]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        let (t, d) = ticks(-0.93, 1.2, 6);
        assert_eq!(t, vec![-0.5, 0.0, 0.5, 1.0]);
        assert_eq!(d, 1);
        let (t, d) = ticks(0.0, 10.0, 4);
        assert_eq!((t.len(), d), (5, 1));
        assert_eq!(number(-0.0, 2), "0.00");
    }

    #[test]
    fn font_has_unique_glyphs() {
        for (i, g) in FONT.iter().enumerate() {
            assert!(FONT[..i].iter().all(|h| h.0 != g.0), "{:?} twice", g.0);
            assert!(g.1.iter().all(|r| *r < 0x20), "{:?} wider than 5", g.0);
        }
    }
}
