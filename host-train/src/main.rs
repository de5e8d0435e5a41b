//! The `mlff` command.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mlff_core::Model;
use mlff_train::io::{write_atomic, AlignedBlob};
use mlff_train::n2p2::{self, BOHR};
use mlff_train::predict::Predictor;
use mlff_train::random::{fit_scaling, generated_set, random_model};
use mlff_train::spec::ActivationSpec;
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

#[derive(Subcommand)]
enum Command {
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
    /// Energy, forces and stress of structures (n2p2 input.data) with a blob.
    ///
    /// Example: mlff energy -m model.mlff -i examples/water64.data --precision f32
    Energy {
        /// The blob.
        #[arg(short, long)]
        model: PathBuf,
        /// Structures (n2p2 input.data).
        #[arg(short, long)]
        input: PathBuf,
        /// Length unit of the structures.
        #[arg(long, value_enum, default_value = "angstrom")]
        length_unit: LengthUnit,
        /// Compute precision.
        #[arg(long, value_enum, default_value = "f64")]
        precision: Precision,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
            let blob = write_blob(&spec, precision)?;
            write_atomic(&output, &blob)?;
            println!(
                "wrote {} ({} bytes, {} species, features {:?})",
                output.display(),
                blob.len(),
                spec.species.len(),
                spec.species
                    .iter()
                    .map(|s| s.descriptors.len())
                    .collect::<Vec<_>>()
            );
            Ok(())
        }
        Command::Energy {
            model,
            input,
            length_unit,
            precision,
            json,
        } => {
            let bytes = std::fs::read(&model)
                .with_context(|| format!("cannot read {}", model.display()))?;
            let p = Predictor::new(&bytes).with_context(|| format!("{}", model.display()))?;
            let mut structures = read_input_data(&input)?;
            let mut rows = Vec::new();
            for (k, s) in structures.iter_mut().enumerate() {
                s.convert_units(length_unit.angstrom(), 1.0);
                let r = p
                    .predict(s, precision)
                    .with_context(|| format!("{}: structure {}", input.display(), k + 1))?;
                let fmax = r
                    .forces
                    .iter()
                    .map(|f| (f[0] * f[0] + f[1] * f[1] + f[2] * f[2]).sqrt())
                    .fold(0.0, f64::max);
                if !json {
                    println!(
                        "structure {:>4}: atoms {:>6}  energy {:>18.8} eV  max|F| {:>10.6} eV/Å{}",
                        k + 1,
                        s.positions.len(),
                        r.energy,
                        fmax,
                        r.stress
                            .map(|st| format!(
                                "  stress(xx,yy,zz) {:.3e} {:.3e} {:.3e} eV/Å³",
                                st[0], st[1], st[2]
                            ))
                            .unwrap_or_default()
                    );
                }
                rows.push(serde_json::json!({
                    "structure": k + 1, "atoms": s.positions.len(), "energy": r.energy,
                    "max_force": fmax, "stress": r.stress,
                }));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
            Ok(())
        }
    }
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
