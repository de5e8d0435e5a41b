//! See Cargo.toml: linking this binary succeeds only if no panic path of `mlff-core` survives.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use mlff_core::{Cell, ChunkForces, ChunkOutputs, Model, Outputs, Results, System, Workspace};

extern "C" {
    /// Deliberately undefined: a reachable panic makes the link fail naming this symbol.
    fn mlff_core_may_panic() -> !;
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    // SAFETY: never executes — the symbol does not exist, so a binary that reaches here
    // cannot be linked at all.
    #[cfg(not(feature = "find"))]
    unsafe { mlff_core_may_panic() }
    #[cfg(feature = "find")]
    loop {}
}

/// Inputs the optimiser cannot see through.
fn opaque<T>(x: T) -> T {
    core::hint::black_box(x)
}

fn run<T: mlff_core::Real>(blob: &[u8], storage: &mut [T], reals: &mut [T], idx: &mut [u32]) -> f64 {
    let mut out = 0.0;
    let loaded = match Model::<T>::from_blob(blob) {
        Ok(m) => Some(m),
        Err(_) => Model::<T>::from_blob_in(blob, storage).ok(),
    };
    let Some(model) = loaded else { return -1.0 };
    let n: usize = opaque(8);
    let nb: usize = opaque(64);
    let pos_store = [[T::ZERO; 3]; 8];
    let species_store = [0u8; 8];
    let positions: &[[T; 3]] = opaque(&pos_store[..]);
    let species: &[u8] = opaque(&species_store[..]);
    let mut forces = [[T::ZERO; 3]; 8];
    let mut energies = [0.0f64; 8];
    let cell = if opaque(true) { Some(Cell::orthorhombic(T::ONE, T::ONE, T::ONE)) } else { None };
    if let Ok(mut ws) = Workspace::new(&model, n, nb, reals, idx) {
        let sys = System { positions, species, cell };
        let mut o = Outputs { forces: Some(&mut forces), energies: Some(&mut energies) };
        if let Ok(r) = model.compute(&sys, &mut ws, &mut o) {
            out += r.energy;
        }
        let _ = model.for_each_atom(&sys, &mut ws, |a| -> Result<(), mlff_core::ComputeError> {
            let mut jac = [T::ZERO; 64];
            let _ = a.descriptors()?;
            let _ = a.energy(true)?;
            a.jacobian(&mut jac)
        });
        if let Ok(mut a) = model.atom(opaque(1), &mut ws) {
            if let Ok(e) = a.energy(true) {
                out += e;
            }
        }
        let set = ws.neighbors_mut();
        set.clear();
        let _ = set.push(opaque(0), opaque(3), [T::ONE; 3]);
        set.finish();
    }
    out + chunked(&model, positions, species, cell, reals, idx)
}

/// The shared cell list and one chunk with a force record (the threaded entry points).
fn chunked<T: mlff_core::Real>(
    model: &Model<'_, T>,
    positions: &[[T; 3]],
    species: &[u8],
    cell: Option<Cell<T>>,
    reals: &mut [T],
    idx: &mut [u32],
) -> f64 {
    let sys = System { positions, species, cell };
    let Some((cr, reals)) = reals.split_at_mut_checked(opaque(64)) else { return -1.0 };
    let Some((ci, idx)) = idx.split_at_mut_checked(opaque(256)) else { return -1.0 };
    let Some((wr, rr)) = reals.split_at_mut_checked(opaque(1024)) else { return -1.0 };
    let Some((wi, ri)) = idx.split_at_mut_checked(opaque(256)) else { return -1.0 };
    let nb: usize = opaque(4);
    let Ok(cells) = model.cell_list(&sys, cr, ci) else { return -2.0 };
    let Ok(mut ws) = Workspace::new(model, 0, nb, wr, wi) else { return -3.0 };
    let Ok(mut rec) = ChunkForces::new(nb, rr, ri) else { return -4.0 };
    let mut energies = [0.0f64; 8];
    let mut out = ChunkOutputs { energies: Some(&mut energies), forces: Some(&mut rec) };
    let r = model.compute_chunk(&sys, &cells, &mut ws, opaque(0), &mut out, &mut ());
    let mut forces = [[T::ZERO; 3]; 8];
    let _ = rec.apply(&mut forces);
    let mut total = Results::default();
    if let Ok(r) = r {
        total.accumulate(&r);
    }
    total.energy
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    static BLOB: [u8; 64] = [0; 64];
    let blob: &[u8] = opaque(&BLOB[..]);
    let mut s64 = [0.0f64; 256];
    let mut r64 = [0.0f64; 4096];
    let mut s32 = [0.0f32; 256];
    let mut r32 = [0.0f32; 4096];
    let mut idx = [0u32; 1024];
    let a = run::<f64>(blob, &mut s64, &mut r64, &mut idx);
    let b = run::<f32>(blob, &mut s32, &mut r32, &mut idx);
    opaque(a + b);
    loop {}
}
