//! mlff firmware demo: validates the embedded f32 ethanol blob, computes energy and forces of
//! the 9-atom starting structure, compares them with host golden values, runs velocity-Verlet
//! NVE and reports over semihosting. Exit code 0 on success; 2 blob error, 3 capacity/compute
//! error, 4 golden mismatch, 5 NVE drift too large; panics exit non-zero (semihosting handler).
//!
//! No float formatting (it would cost ~16 KiB of .text): reals are printed as bit patterns or
//! scaled integers. Flash is the tight budget on the M4F, so the report also avoids 64-bit
//! integer formatting (u64 division), f64 division and `Debug` derives (~3 KiB together).
#![no_std]
#![no_main]

mod arch;
mod golden;

use golden::{ENERGY_BITS, FORCE_BITS, MASS, N, POS_BITS, Z};
use mlff_core::model::ModelDims;
use mlff_core::{Model, Outputs, Real, System, Workspace, WorkspaceSize};
use semihosting::{println, process::exit};

/// The blob, aligned for in-place f32 reads (docs/blob-format.md).
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);
static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.mlff")));

/// Capacities, fixed at compile time for this model (checked against the blob at boot).
const DIMS: ModelDims = ModelDims {
    n_species: 3,
    max_features: 24,
    max_width: 24,
    max_network: 11,
    max_channels: 1,
};
/// Neighbour slots per atom: every other atom of the molecule (no more can ever be within
/// the cutoff, whatever the dynamics do). The pair cache is sized from it, quadratically.
const MAX_NEIGHBORS: usize = N - 1;
const WS: WorkspaceSize = WorkspaceSize::new(&DIMS, N, MAX_NEIGHBORS);

static mut WS_REALS: [f32; WS.reals] = [0.0; WS.reals];
static mut WS_INDICES: [u32; WS.indices] = [0; WS.indices];

/// Velocity-Verlet steps and time step (fs).
const STEPS: usize = 100;
const DT: f32 = 0.5;
/// eV/Å/amu → Å/fs² (1 amu·Å²/fs² = 103.6427 eV).
const ACC: f32 = 9.648533e-3;
/// Pass limits: relative energy error, force error relative to the force RMS, NVE drift (eV).
const ENERGY_TOL: f64 = 1e-5;
const FORCE_TOL: f64 = 1e-4;
const DRIFT_TOL: f64 = 5e-3;
/// Pass limit on the largest excursion of the total energy during the run (eV).
const DEV_TOL: f64 = 2e-2;

fn f64_abs(x: f64) -> f64 {
    if x < 0.0 {
        -x
    } else {
        x
    }
}

/// `x` scaled by `scale` and truncated to an integer, for printing without float formatting;
/// saturates at ±2^31 (±2147 eV in µeV, ample for this molecule).
fn fixed(x: f64, scale: f64) -> i32 {
    (x * scale) as i32
}

fn kinetic(v: &[[f32; 3]; N]) -> f64 {
    let mut k = 0.0f64;
    for (vi, m) in v.iter().zip(MASS.iter()) {
        let v2 = vi[0] * vi[0] + vi[1] * vi[1] + vi[2] * vi[2];
        k += f64::from(0.5 * m * v2 / ACC);
    }
    k
}

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    arch::paint_stack();
    arch::counter_start();
    println!(
        "mlff firmware demo: target={} blob={} bytes",
        arch::TARGET,
        BLOB.0.len()
    );

    let model = match Model::<f32>::from_blob(&BLOB.0) {
        Ok(m) => m,
        Err(e) => {
            println!("FAIL: blob rejected: {}", e);
            exit(2);
        }
    };
    let d = model.dims();
    if d.n_species > DIMS.n_species
        || d.max_features > DIMS.max_features
        || d.max_width > DIMS.max_width
        || d.max_network > DIMS.max_network
        || d.max_channels > DIMS.max_channels
    {
        println!(
            "FAIL: model dims (species, features, width, network, channels) = ({}, {}, {}, {}, {}) \
             exceed the compiled capacities ({}, {}, {}, {}, {}): update DIMS in src/main.rs",
            d.n_species,
            d.max_features,
            d.max_width,
            d.max_network,
            d.max_channels,
            DIMS.n_species,
            DIMS.max_features,
            DIMS.max_width,
            DIMS.max_network,
            DIMS.max_channels
        );
        exit(3);
    }

    let mut species = [0u8; N];
    for (s, &z) in species.iter_mut().zip(Z.iter()) {
        match model.species_index(z) {
            Some(i) => *s = i,
            None => {
                println!("FAIL: element Z={} not in model", z);
                exit(3);
            }
        }
    }
    let mut pos = [[0.0f32; 3]; N];
    for (p, b) in pos.iter_mut().zip(POS_BITS.iter()) {
        *p = [
            f32::from_bits(b[0]),
            f32::from_bits(b[1]),
            f32::from_bits(b[2]),
        ];
    }

    // SAFETY: main runs once, single-threaded, without interrupts touching these statics; these
    // are the only references ever taken to them.
    #[allow(unsafe_code)]
    let (reals, indices) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(WS_REALS),
            &mut *core::ptr::addr_of_mut!(WS_INDICES),
        )
    };
    let mut ws = match Workspace::new(&model, N, MAX_NEIGHBORS, reals, indices) {
        Ok(w) => w,
        Err(e) => {
            println!("FAIL: workspace: {}", e);
            exit(3);
        }
    };

    let mut forces = [[0.0f32; 3]; N];
    let mut eval = |pos: &[[f32; 3]; N], forces: &mut [[f32; 3]; N]| -> f64 {
        let sys = System {
            positions: &pos[..],
            species: &species[..],
            cell: None,
        };
        let mut out = Outputs {
            forces: Some(&mut forces[..]),
            energies: None,
        };
        match model.compute(&sys, &mut ws, &mut out) {
            Ok(r) => r.energy,
            Err(e) => {
                println!("FAIL: compute: {}", e);
                exit(3);
            }
        }
    };

    // One measured evaluation, compared with the host. The stack is painted again just before
    // it, so that its high-water mark is read before any report formatting (semihosting
    // `println!` needs more stack than the evaluation on some targets).
    let main_frame = arch::stack_top() - arch::sp();
    let stack_boot = arch::stack_used();
    arch::paint_stack();
    let t0 = arch::counter();
    let e0 = eval(&pos, &mut forces);
    let t1 = arch::counter();
    let stack_eval = arch::stack_used();
    let instructions = arch::instructions_between(t0, t1);

    let e_gold = f64::from_bits(ENERGY_BITS);
    // Ratios in f32 (hardware division on the M4F; they are only compared and printed).
    let e_rel = f64::from(f64_abs(e0 - e_gold) as f32 / f64_abs(e_gold) as f32);
    let mut sq = 0.0f64;
    let mut max_df = 0.0f64;
    for (f, g) in forces.iter().zip(FORCE_BITS.iter()) {
        for (fk, gk) in f.iter().zip(g.iter()) {
            let gv = f64::from(f32::from_bits(*gk));
            sq += gv * gv;
            let df = f64_abs(f64::from(*fk) - gv);
            if df > max_df {
                max_df = df;
            }
        }
    }
    let f_rms = f64::from(Real::sqrt((sq * (1.0 / (3 * N) as f64)) as f32));
    let f_rel = f64::from(max_df as f32 / f_rms as f32);
    println!(
        "energy_bits=0x{:016x} golden_bits=0x{:016x}",
        e0.to_bits(),
        ENERGY_BITS
    );
    println!(
        "energy_ueV={} energy_rel_err_e12={}",
        fixed(e0, 1e6),
        fixed(e_rel, 1e12)
    );
    println!(
        "force_max_err_over_rms_e12={} force_rms_ueV_per_A={}",
        fixed(f_rel, 1e12),
        fixed(f_rms, 1e6)
    );
    println!(
        "instructions_per_eval={} counter={}",
        u32::try_from(instructions).unwrap_or(u32::MAX),
        arch::COUNTER
    );
    let golden_ok = e_rel <= ENERGY_TOL && f_rel <= FORCE_TOL;
    if !golden_ok {
        println!("FAIL: golden mismatch (energy tol 1e-5 rel, force tol 1e-4 of RMS)");
    }

    // Velocity-Verlet NVE from rest.
    let mut v = [[0.0f32; 3]; N];
    let mut epot = e0;
    let etot0 = epot + kinetic(&v);
    let mut max_dev = 0.0f64;
    for _ in 0..STEPS {
        for ((x, vi), (f, m)) in pos
            .iter_mut()
            .zip(v.iter_mut())
            .zip(forces.iter().zip(MASS.iter()))
        {
            for k in 0..3 {
                vi[k] += 0.5 * DT * f[k] / m * ACC;
                x[k] += DT * vi[k];
            }
        }
        epot = eval(&pos, &mut forces);
        for (vi, (f, m)) in v.iter_mut().zip(forces.iter().zip(MASS.iter())) {
            for k in 0..3 {
                vi[k] += 0.5 * DT * f[k] / m * ACC;
            }
        }
        let dev = f64_abs(epot + kinetic(&v) - etot0);
        if dev > max_dev {
            max_dev = dev;
        }
    }
    let ekin = kinetic(&v);
    let drift = epot + ekin - etot0;
    println!(
        "nve steps={} dt_fs_e3={} etot0_ueV={} drift_ueV={} max_dev_ueV={} ekin_end_ueV={}",
        STEPS,
        fixed(f64::from(DT), 1e3),
        fixed(etot0, 1e6),
        fixed(drift, 1e6),
        fixed(max_dev, 1e6),
        fixed(ekin, 1e6)
    );
    let drift_ok = f64_abs(drift) <= DRIFT_TOL && max_dev <= DEV_TOL;
    if !drift_ok {
        println!("FAIL: NVE drift above 5 meV or excursion above 20 meV");
    }

    // The whole run's high-water mark (boot and blob validation before the repaint, every
    // evaluation and the report's formatting after it), and the one evaluation's alone; both
    // from the stack top, so they include the runtime's and `main`'s frames (`main_frame_bytes`).
    let stack = arch::stack_used().max(stack_boot);
    println!(
        "stack_bytes={} stack_eval_bytes={} main_frame_bytes={} workspace_bytes={} (reals={} indices={})",
        stack,
        stack_eval,
        main_frame,
        WS.bytes(4),
        WS.reals,
        WS.indices
    );
    if !golden_ok {
        exit(4);
    }
    if !drift_ok {
        exit(5);
    }
    println!("OK");
    exit(0);
}
