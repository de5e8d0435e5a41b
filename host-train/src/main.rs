//! The `mlff` command.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mlff_core::Model;
use mlff_train::io::{write_atomic, AlignedBlob};
use mlff_train::n2p2::{self, BOHR};
use mlff_train::predict::Predictor;
use mlff_train::random::{fit_scaling, generated_set, random_model};
use mlff_train::spec::{ActivationSpec, ModelSpec};
use mlff_train::structure::read_input_data;
use mlff_train::writer::{write_blob, Precision};

#[derive(Parser)]
#[command(
    name = "mlff",
    version,
    about = "Machine-learning force fields: Behler-Parrinello ACSF + MLP potentials"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LengthUnit {
    Angstrom,
    Bohr,
}

impl LengthUnit {
    fn angstrom(self) -> f64 {
        match self {
            LengthUnit::Angstrom => 1.0,
            LengthUnit::Bohr => BOHR,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum EnergyUnit {
    Ev,
    Hartree,
}

impl EnergyUnit {
    fn ev(self) -> f64 {
        match self {
            EnergyUnit::Ev => 1.0,
            EnergyUnit::Hartree => n2p2::HARTREE,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a potential from a TOML configuration (docs/config.md; examples/*.toml).
    ///
    /// Writes model.mlff, metrics.json (test split), learning_curve.csv, checkpoint.json and
    /// plots/ into the run directory.
    ///
    /// Example: mlff train examples/ethanol_small.toml --output runs/ethanol_small
    Train {
        /// The configuration.
        config: PathBuf,
        /// Run directory (default: output.dir of the configuration, else `runs/<config name>`).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Continue from the run directory's checkpoint.json.
        #[arg(long, conflicts_with = "overwrite")]
        resume: bool,
        /// Replace an earlier run in the run directory.
        #[arg(long)]
        overwrite: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Errors of a model on labelled structures: MAE, RMSE, R² for energies and forces.
    ///
    /// Example: mlff eval -m runs/ethanol_small/model.mlff -d examples/ethanol_small.extxyz --plots eval --json
    Eval {
        /// The blob.
        #[arg(short, long)]
        model: PathBuf,
        /// Labelled structures (.extxyz/.xyz or n2p2 .data); repeat for several files.
        #[arg(short, long, required = true)]
        data: Vec<PathBuf>,
        /// Write parity plots, error histograms and metrics.json here.
        #[arg(long)]
        plots: Option<PathBuf>,
        /// Length unit of n2p2 .data inputs.
        #[arg(long, value_enum, default_value = "angstrom")]
        length_unit: LengthUnit,
        /// Energy unit of n2p2 .data inputs.
        #[arg(long, value_enum, default_value = "ev")]
        energy_unit: EnergyUnit,
        /// Compute precision.
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
        /// Worker threads.
        #[arg(long)]
        threads: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import an n2p2 / RuNNer model directory (input.nn, scaling.data, weights.ZZZ.data).
    ///
    /// n2p2 files carry no units: state them. Conversion uses CODATA 2018
    /// (1 Bohr = 0.529177210903 Å, 1 Hartree = 27.211386245988 eV).
    ///
    /// Example: mlff import-n2p2 path/to/H2O_RPBE-D3 --length-unit bohr --energy-unit hartree -o water.mlff
    ImportN2p2 {
        /// The n2p2 model directory.
        dir: PathBuf,
        /// Output blob.
        #[arg(short, long)]
        output: PathBuf,
        /// Length unit of the model files.
        #[arg(long, value_enum)]
        length_unit: LengthUnit,
        /// Energy unit of the model files.
        #[arg(long, value_enum)]
        energy_unit: EnergyUnit,
        /// Real precision stored in the blob.
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
    },
    /// Validate a blob and print what it holds.
    ///
    /// Example: mlff inspect model.mlff --json
    Inspect {
        /// The blob.
        model: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a model with random weights (for benchmarks and the demo, until training lands).
    ///
    /// Example: mlff random-model --elements H,O --cutoff 6 --scale-from examples/water64.data -o model.mlff
    RandomModel {
        /// Take descriptors and network shape from an n2p2 input.nn (types 2, 3, 9).
        #[arg(long, conflicts_with = "elements")]
        n2p2_input: Option<PathBuf>,
        /// Length unit of --n2p2-input.
        #[arg(long, value_enum, default_value = "angstrom")]
        length_unit: LengthUnit,
        /// Generate an n2p2-style descriptor set for these elements (comma-separated).
        #[arg(long, value_delimiter = ',')]
        elements: Vec<String>,
        /// Cutoff radius for the generated set (Å).
        #[arg(long, default_value_t = 6.0)]
        cutoff: f64,
        /// Radial functions per neighbour element.
        #[arg(long, default_value_t = 8)]
        radial: usize,
        /// ζ values (1, 2, 4, ...) per angular set.
        #[arg(long, default_value_t = 2)]
        zeta: usize,
        /// Hidden layer widths.
        #[arg(long, value_delimiter = ',', default_value = "25,25")]
        hidden: Vec<usize>,
        /// Hidden activation of the generated set.
        #[arg(long, value_enum, default_value = "tanh")]
        activation: Act,
        /// Fit centre+range feature scaling to these structures (n2p2 input.data, Å).
        #[arg(long)]
        scale_from: Option<PathBuf>,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Real precision stored in the blob.
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
        /// Output blob.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Predict energy, forces, per-atom energies and stress for every frame of a file.
    ///
    /// Input: extended XYZ (.extxyz/.xyz, as ASE writes it) or n2p2 input.data (.data). Output:
    /// extended XYZ with `energy` (info), `forces` and `energies` (columns) and `stress` (info,
    /// fully periodic cells only), in eV and Å, one frame per input frame.
    ///
    /// Example: mlff predict -m water.mlff -i traj.extxyz -o predicted.extxyz --precision f32 --threads 2
    Predict {
        /// The blob.
        #[arg(short, long)]
        model: PathBuf,
        /// Structures (.extxyz, .xyz or n2p2 .data).
        #[arg(short, long)]
        input: PathBuf,
        /// Output extended XYZ (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Length unit of an n2p2 .data input.
        #[arg(long, value_enum, default_value = "angstrom")]
        length_unit: LengthUnit,
        /// Compute precision.
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
        /// Worker threads (frames are computed in parallel; results do not depend on it).
        #[arg(long)]
        threads: Option<usize>,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Time energy+forces of one structure: total and per stage, median of --repeat runs.
    ///
    /// Stages: neighbour search (cell list + per-atom lists), descriptors, network (forward and
    /// dE/dG), forces (descriptor back-propagation, force records and their ordered
    /// reduction); per-stage figures are CPU time summed over threads. Also reports the core
    /// workspace (shared cell list + per-chunk buffers) and the process's peak resident memory.
    /// Uses the first frame of the input, optionally replicated (as LAMMPS's `replicate`) to
    /// time larger systems; benches/scaling.sh runs the size series. Results are bit-identical
    /// for any --threads.
    ///
    /// Example: mlff bench -m water.mlff -i box.data --length-unit bohr --precision f32 --repeat 5 --json
    ///
    /// Example: mlff bench -m water.mlff -i box.data --length-unit bohr --replicate 2,2,3 --threads 2
    Bench {
        /// The blob.
        #[arg(short, long)]
        model: PathBuf,
        /// Structure (.extxyz, .xyz or n2p2 .data; the first frame is used).
        #[arg(short, long)]
        input: PathBuf,
        /// Length unit of an n2p2 .data input.
        #[arg(long, value_enum, default_value = "angstrom")]
        length_unit: LengthUnit,
        /// Compute precision.
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
        /// Threads (fixed chunks of atoms shared out among them; same bits for any count).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed runs (after one untimed warm-up run).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Replicate the (periodic) structure NX×NY×NZ times before timing, e.g. 2,2,3.
        #[arg(long, value_parser = parse_replicate, default_value = "1,1,1")]
        replicate: [usize; 3],
        /// Print JSON.
        #[arg(long, conflicts_with = "row")]
        json: bool,
        /// Print one Markdown table row instead (atoms, precision, threads, µs/atom, the four
        /// stages, workspace MiB, peak RSS MiB), for benches/scaling.sh.
        #[arg(long)]
        row: bool,
        /// Also write the JSON report to this file.
        #[arg(long)]
        json_file: Option<PathBuf>,
    },
}

/// Parses `NX,NY,NZ` (each at least 1).
fn parse_replicate(s: &str) -> Result<[usize; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [a, b, c] = parts[..] else {
        return Err(format!("expected NX,NY,NZ, got {s:?}"));
    };
    let n = |t: &str| match t.parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!("replication counts are integers ≥ 1, got {t:?}")),
    };
    Ok([n(a)?, n(b)?, n(c)?])
}

#[derive(Clone, Copy, ValueEnum)]
enum Act {
    Tanh,
    Softplus,
    ShiftedSoftplus,
    Silu,
    Logistic,
}

impl Act {
    fn spec(self) -> ActivationSpec {
        match self {
            Act::Tanh => ActivationSpec::Tanh,
            Act::Softplus => ActivationSpec::Softplus,
            Act::ShiftedSoftplus => ActivationSpec::ShiftedSoftplus,
            Act::Silu => ActivationSpec::Silu,
            Act::Logistic => ActivationSpec::Logistic,
        }
    }
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json } => inspect(&model, json),
        Command::Train {
            config,
            output,
            resume,
            overwrite,
            quiet,
        } => {
            let opts = mlff_train::train::run::TrainOptions {
                output,
                resume,
                overwrite,
                quiet,
            };
            mlff_train::train::run::train_command(&config, &opts).map(|_| ())
        }
        Command::Eval {
            model,
            data,
            plots,
            length_unit,
            energy_unit,
            precision,
            threads,
            json,
        } => {
            let opts = mlff_train::train::eval::EvalOptions {
                plots,
                json,
                precision,
                threads,
                length_unit: length_unit.angstrom(),
                energy_unit: energy_unit.ev(),
            };
            mlff_train::train::eval::eval_command(&model, &data, &opts).map(|_| ())
        }
        Command::ImportN2p2 {
            dir,
            output,
            length_unit,
            energy_unit,
            precision,
        } => {
            let units = n2p2::Units {
                length: length_unit.angstrom(),
                energy: energy_unit.ev(),
            };
            let spec = n2p2::import(&dir, units)
                .with_context(|| format!("importing n2p2 model {}", dir.display()))?;
            export(&spec, precision, &output)
        }
        Command::RandomModel {
            n2p2_input,
            length_unit,
            elements,
            cutoff,
            radial,
            zeta,
            hidden,
            activation,
            scale_from,
            seed,
            precision,
            output,
        } => {
            let set = match n2p2_input {
                Some(p) => n2p2::read_input_nn(&p, length_unit.angstrom())?,
                None => {
                    if elements.is_empty() {
                        bail!("give --elements (e.g. --elements H,O) or --n2p2-input");
                    }
                    let e: Vec<&str> = elements.iter().map(String::as_str).collect();
                    generated_set(&e, cutoff, radial, zeta, &hidden, activation.spec())?
                }
            };
            let mut spec = random_model(&set, seed);
            if let Some(p) = scale_from {
                let structures = read_input_data(&p)?;
                fit_scaling(&mut spec, &structures)
                    .with_context(|| format!("fitting scaling to {}", p.display()))?;
            }
            export(&spec, precision, &output)
        }
        Command::Predict {
            model,
            input,
            output,
            length_unit,
            precision,
            threads,
            json,
        } => predict(
            &model,
            &input,
            &output,
            length_unit.angstrom(),
            precision,
            threads,
            json,
        ),
        Command::Bench {
            model,
            input,
            length_unit,
            precision,
            threads,
            repeat,
            replicate,
            json,
            row,
            json_file,
        } => bench(
            &model,
            &input,
            length_unit.angstrom(),
            precision,
            threads,
            repeat,
            replicate,
            if row {
                BenchOutput::Row
            } else if json {
                BenchOutput::Json
            } else {
                BenchOutput::Text
            },
            json_file.as_deref(),
        ),
    }
}

/// Writes `spec` as a blob to `output` (atomically) and says what was written.
fn export(spec: &ModelSpec, precision: Precision, output: &std::path::Path) -> Result<()> {
    let blob = write_blob(spec, precision)?;
    write_atomic(output, &blob)?;
    let features: Vec<usize> = spec.species.iter().map(|s| s.descriptors.len()).collect();
    println!(
        "wrote {} ({} bytes): {} species, features {features:?}, cutoff {:.4} Å",
        output.display(),
        blob.len(),
        spec.species.len(),
        spec.cutoff()
    );
    Ok(())
}

fn inspect(path: &std::path::Path, json: bool) -> Result<()> {
    let blob = AlignedBlob::read(path)?;
    let n = Model::<f64>::reals_needed(blob.bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut storage = vec![0.0; n];
    let m = Model::<f64>::from_blob_in(blob.bytes(), &mut storage)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let species: Vec<_> = (0..m.n_species())
        .map(|s| {
            let z = m.atomic_number(s).unwrap_or(0);
            serde_json::json!({
                "symbol": mlff_train::elements::symbol(z).unwrap_or("?"),
                "z": z,
                "features": m.n_features(s).unwrap_or(0),
            })
        })
        .collect();
    let dims = m.dims();
    let info = serde_json::json!({
        "file": path.display().to_string(),
        "bytes": blob.bytes().len(),
        "real_bytes": m.blob_float_bytes(),
        "cutoff_angstrom": m.cutoff(),
        "species": species,
        "max_features": dims.max_features,
        "max_layer_width": dims.max_width,
        "scaling": format!("{:?}", m.scaling_mode()),
        "text": m.text(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!(
            "{}: valid mlff blob, {} bytes, {}-byte reals",
            path.display(),
            blob.bytes().len(),
            m.blob_float_bytes()
        );
        println!(
            "  cutoff {:.4} Å, scaling {:?}",
            m.cutoff(),
            m.scaling_mode()
        );
        for s in &species {
            println!(
                "  {} (Z={}): {} features",
                s["symbol"].as_str().unwrap_or("?"),
                s["z"],
                s["features"]
            );
        }
        if !m.text().is_empty() {
            println!("  {}", m.text());
        }
    }
    Ok(())
}

fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(rayon::ThreadPoolBuilder::new().num_threads(n).build()?)
}

fn predict(
    model: &std::path::Path,
    input: &std::path::Path,
    output: &std::path::Path,
    length_unit: f64,
    precision: Precision,
    threads: Option<usize>,
    json: bool,
) -> Result<()> {
    use mlff_train::extxyz::{write_frame, ExtxyzReader, Frame};
    use mlff_train::predict::{annotate, read_frames};
    use rayon::prelude::*;

    let bytes = std::fs::read(model).with_context(|| format!("cannot read {}", model.display()))?;
    let p = Predictor::new(&bytes).with_context(|| model.display().to_string())?;
    let pool = thread_pool(threads)?;
    // Extended XYZ is streamed in batches; n2p2 files are small and read whole.
    let mut source: Box<dyn Iterator<Item = Result<Frame>>> =
        if input.extension().is_some_and(|e| e == "data") {
            Box::new(read_frames(input, length_unit)?.into_iter().map(Ok))
        } else {
            Box::new(ExtxyzReader::open(input)?)
        };
    let mut out = mlff_train::io::AtomicFile::create(output)?;
    let bar = indicatif::ProgressBar::new_spinner()
        .with_message(format!("predicting {}", input.display()));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg}: {pos} frames, {per_sec} [{elapsed}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let start = std::time::Instant::now();
    let (mut frames, mut atoms) = (0usize, 0usize);
    loop {
        let batch: Vec<Frame> = source.by_ref().take(256).collect::<Result<_>>()?;
        if batch.is_empty() {
            break;
        }
        let first = frames;
        let done: Vec<Frame> = pool.install(|| {
            batch
                .into_par_iter()
                .enumerate()
                .map(|(k, f)| {
                    let r = p
                        .predict_pbc(&f.structure, f.pbc, precision)
                        .with_context(|| format!("{}: frame {}", input.display(), first + k + 1))?;
                    Ok(annotate(f, &r))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for f in &done {
            write_frame(out.writer(), f)?;
            atoms += f.natoms();
        }
        frames += done.len();
        bar.set_position(frames as u64);
    }
    bar.finish_and_clear();
    if frames == 0 {
        bail!("{}: no structures", input.display());
    }
    out.commit()?;
    let seconds = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "model": model.display().to_string(),
        "input": input.display().to_string(),
        "output": output.display().to_string(),
        "frames": frames,
        "atoms": atoms,
        "precision": format!("{precision:?}").to_lowercase(),
        "threads": pool.current_num_threads(),
        "seconds": seconds,
        "us_per_atom": seconds * 1e6 / atoms.max(1) as f64,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "wrote {} ({frames} frames, {atoms} atoms) in {seconds:.2} s",
            output.display()
        );
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), bytes; `None` elsewhere.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How `mlff bench` reports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BenchOutput {
    Text,
    Json,
    Row,
}

#[allow(clippy::too_many_arguments)]
fn bench(
    model: &std::path::Path,
    input: &std::path::Path,
    length_unit: f64,
    precision: Precision,
    threads: usize,
    repeat: usize,
    replicate: [usize; 3],
    output: BenchOutput,
    json_file: Option<&std::path::Path>,
) -> Result<()> {
    if threads == 0 || repeat == 0 {
        bail!("--threads and --repeat must be at least 1");
    }
    let bytes = std::fs::read(model).with_context(|| format!("cannot read {}", model.display()))?;
    let p = Predictor::new(&bytes).with_context(|| model.display().to_string())?;
    let mut frame = mlff_train::predict::read_frames(input, length_unit)?
        .into_iter()
        .next()
        .with_context(|| format!("{}: no structure", input.display()))?;
    if replicate != [1, 1, 1] {
        if frame.pbc != [true; 3] {
            bail!(
                "{}: --replicate needs a structure periodic in all three directions",
                input.display()
            );
        }
        frame.structure = frame
            .structure
            .replicate(replicate)
            .with_context(|| input.display().to_string())?;
    }
    let atoms = frame.natoms();
    let pool = thread_pool(Some(threads))?;
    // One warm-up run, then the timed ones.
    let timed =
        pool.install(|| p.run_timed(&frame.structure, frame.pbc, precision, threads, repeat + 1))?;
    let timings = &timed.runs[1..];
    let peak_rss = peak_rss_bytes();
    let per_atom = |s: f64| s * 1e6 / atoms as f64;
    let total = median(timings.iter().map(|t| per_atom(t.seconds)).collect());
    let stage = |k: usize| median(timings.iter().map(|t| per_atom(t.stages[k])).collect());
    let names = ["neighbors", "descriptors", "network", "forces"];
    let report = serde_json::json!({
        "model": model.display().to_string(),
        "input": input.display().to_string(),
        "replicate": replicate,
        "atoms": atoms,
        "precision": format!("{precision:?}").to_lowercase(),
        "threads": threads,
        "repeat": repeat,
        "us_per_atom": total,
        "atom_steps_per_second": 1e6 / total,
        "stages": names.iter().enumerate().map(|(k, n)| (n.to_string(), serde_json::json!(stage(k)))).collect::<serde_json::Map<_, _>>(),
        "runs_us_per_atom": timings.iter().map(|t| per_atom(t.seconds)).collect::<Vec<_>>(),
        "workspace_bytes": timed.workspace_bytes,
        "workspace_bytes_per_atom": timed.workspace_bytes as f64 / atoms.max(1) as f64,
        "neighbor_slots": timed.neighbor_slots,
        "chunks_in_flight": timed.chunks_in_flight,
        "peak_rss_bytes": peak_rss,
        "energy_ev": timed.prediction.energy,
    });
    let mib = |b: f64| b / (1024.0 * 1024.0);
    if let Some(path) = json_file {
        write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    if output == BenchOutput::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if output == BenchOutput::Row {
        let rss = peak_rss.map_or("–".to_string(), |b| format!("{:.1}", mib(b as f64)));
        println!(
            "| {atoms} | {} | {threads} | {total:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {rss} |",
            format!("{precision:?}").to_lowercase(),
            stage(0),
            stage(1),
            stage(2),
            stage(3),
            mib(timed.workspace_bytes as f64),
        );
    } else {
        let reps = if replicate == [1, 1, 1] {
            String::new()
        } else {
            format!(" × {}×{}×{}", replicate[0], replicate[1], replicate[2])
        };
        println!(
            "{}{reps}: {atoms} atoms, {precision:?}, {threads} thread(s), median of {repeat}",
            input.display()
        );
        println!(
            "  energy+forces  {total:>10.2} µs/atom   {:>12.0} atom-steps/s",
            1e6 / total
        );
        for (k, n) in names.iter().enumerate() {
            println!("  {n:<13}  {:>10.2} µs/atom (CPU)", stage(k));
        }
        println!(
            "  workspace      {:>10.1} MiB ({:.0} B/atom; {} neighbour slots, {} chunks in flight)",
            mib(timed.workspace_bytes as f64),
            timed.workspace_bytes as f64 / atoms.max(1) as f64,
            timed.neighbor_slots,
            timed.chunks_in_flight
        );
        if let Some(rss) = peak_rss {
            println!("  peak RSS       {:>10.1} MiB", mib(rss as f64));
        }
    }
    Ok(())
}
