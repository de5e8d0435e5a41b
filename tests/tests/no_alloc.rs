//! The core allocates nothing: a counting global allocator sees zero allocations during blob
//! load, workspace set-up and compute (the buffers are made before counting starts).

use std::alloc::{GlobalAlloc, Layout, System as Sys};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use mlff_core::{Model, Outputs, System, Workspace, WorkspaceSize};
use mlff_tests::*;
use mlff_train::writer::Precision;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on the test's own thread while it counts: the harness's other threads (its
    /// "running for over 60 seconds" notices under load, for one) allocate too, and once made
    /// this test fail with 4 allocations that were not the core's.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards to the system allocator unchanged, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { Sys.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { Sys.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        count();
        unsafe { Sys.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn load_and_compute_allocate_nothing() {
    let b = blob(&default_model(), Precision::F64);
    let s = triclinic(7, 4.3, 5);
    let size = {
        let m = Model::<f64>::from_blob(b.bytes()).unwrap();
        WorkspaceSize::new(&m.dims(), s.pos.len(), 512)
    };
    let (mut r, mut i) = (vec![0.0; size.reals], vec![0u32; size.indices]);
    let mut forces = vec![[0.0; 3]; s.pos.len()];
    let mut energies = vec![0.0; s.pos.len()];
    let mut storage = vec![0.0f32; 100_000];
    COUNTING.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    let model = Model::<f64>::from_blob(b.bytes()).unwrap();
    let mut ws = Workspace::new(&model, s.pos.len(), 512, &mut r, &mut i).unwrap();
    let sys = System {
        positions: &s.pos,
        species: &s.species,
        cell: s.cell,
    };
    let res = model
        .compute(
            &sys,
            &mut ws,
            &mut Outputs {
                forces: Some(&mut forces),
                energies: Some(&mut energies),
            },
        )
        .unwrap();
    let m32 = Model::<f32>::from_blob_in(b.bytes(), &mut storage).unwrap();
    let after = ALLOCS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(false));
    assert_eq!(after - before, 0, "the core allocated");
    assert!(res.energy.is_finite() && m32.n_species() == 2);
}
