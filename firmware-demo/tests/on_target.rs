//! On-target checks, run under QEMU like the demo (`cargo test --release --target <triple>
//! --test on_target`; the runner is `qemu-run.sh`, `harness = false`, exit 0 = pass):
//!
//! 1. the core's square root (the FPU instruction on the M4F and RV32IMAFC, see `arch` in
//!    core/src/math.rs) gives the bits of `libm::sqrtf` over a sweep of all f32 bit patterns
//!    (every 4099th, plus signed zeros, infinities, subnormals and the largest finite value);
//! 2. the embedded blob loads, and every one-bit flip (bit `i mod 8` of byte `i`, for every
//!    byte) and every truncation is rejected with an error (no panic, no hang).
#![no_std]
#![no_main]

use mlff_core::{BlobError, Model, Real};
use semihosting::{println, process::exit};

#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);
static BLOB: &Aligned<[u8]> = &Aligned(*include_bytes!("../model/ethanol.mlff"));
const LEN: usize = include_bytes!("../model/ethanol.mlff").len();
/// A RAM copy to damage, aligned as the zero-copy loader needs.
static mut COPY: Aligned<[u8; LEN]> = Aligned([0; LEN]);

fn sqrt_sweep() -> u32 {
    let specials = [
        0u32,
        0x8000_0000,
        0x7f80_0000,
        0xff80_0000,
        1,
        0x007f_ffff,
        0x7f7f_ffff,
    ];
    let mut bad = 0;
    for bits in (0..=u32::MAX).step_by(4099).chain(specials) {
        let x = f32::from_bits(bits);
        let (got, want) = (Real::sqrt(x), libm::sqrtf(x));
        if got.to_bits() != want.to_bits() && !(got.is_nan() && want.is_nan()) {
            if bad < 5 {
                println!(
                    "sqrt mismatch: x=0x{:08x} got=0x{:08x} libm=0x{:08x}",
                    bits,
                    got.to_bits(),
                    want.to_bits()
                );
            }
            bad += 1;
        }
    }
    bad
}

fn damaged_blobs() -> u32 {
    let mut bad = 0;
    // SAFETY: single-threaded test, the only reference ever taken to COPY.
    #[allow(unsafe_code)]
    let copy = unsafe { &mut (*core::ptr::addr_of_mut!(COPY)).0 };
    copy.copy_from_slice(&BLOB.0);
    if let Err(e) = Model::<f32>::from_blob(&copy[..]) {
        println!("intact blob rejected: {}", e);
        return 1;
    }
    let mut checksum = 0u32;
    for i in 0..LEN {
        let mask = 1u8 << (i % 8);
        if let Some(b) = copy.get_mut(i) {
            *b ^= mask;
        }
        match Model::<f32>::from_blob(&copy[..]) {
            Ok(_) => {
                println!("byte {} bit {} flipped: accepted", i, i % 8);
                bad += 1;
            }
            Err(BlobError::ChecksumMismatch { .. }) => checksum += 1,
            Err(_) => {}
        }
        if let Some(b) = copy.get_mut(i) {
            *b ^= mask;
        }
    }
    for len in 0..LEN {
        if Model::<f32>::from_blob(copy.get(..len).unwrap_or(&[])).is_ok() {
            println!("truncated to {} bytes: accepted", len);
            bad += 1;
        }
    }
    println!(
        "blob: {} bit flips rejected ({} by the checksum), {} truncations rejected",
        LEN, checksum, LEN
    );
    bad
}

#[cfg_attr(target_arch = "arm", cortex_m_rt::entry)]
#[cfg_attr(target_arch = "riscv32", riscv_rt::entry)]
fn main() -> ! {
    let sqrt_bad = sqrt_sweep();
    println!("sqrt: {} mismatches against libm::sqrtf", sqrt_bad);
    let blob_bad = damaged_blobs();
    if sqrt_bad + blob_bad == 0 {
        println!("on_target: ok");
        exit(0);
    }
    println!("on_target: FAIL");
    exit(1);
}
