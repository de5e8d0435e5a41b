//! Sets `cfg(mlff_riscv_f)` on RISC-V targets with the F extension, for the FPU square root in
//! `src/math.rs`. Stable rustc does not expose `target_feature = "f"` to `cfg` (the feature is
//! unstable), so it is also read from the ISA letters of the target name: `riscv32imafc` has F,
//! `riscv64gc` too (G = IMAFD), `riscv32imac` not. A target this misses just keeps libm's
//! software square root, which gives the same bits.
use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mlff_riscv_f)");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if !arch.starts_with("riscv") {
        return;
    }
    let target = env::var("TARGET").unwrap_or_default();
    let isa = target
        .split('-')
        .next()
        .unwrap_or("")
        .trim_start_matches("riscv32")
        .trim_start_matches("riscv64");
    // Single-letter extensions only (a multi-letter one like zfinx has no F registers).
    let letters = isa.split('_').next().unwrap_or("");
    let features = env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if letters.contains(['f', 'g']) || features.split(',').any(|f| f == "f") {
        println!("cargo::rustc-cfg=mlff_riscv_f");
    }
}
