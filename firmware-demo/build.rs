//! Picks the board's `memory.x`, scopes the linker scripts to the binary, and writes the blob
//! to embed (`$OUT_DIR/model.mlff`): the shipped one, or with feature `corrupt-blob` a copy with
//! one byte flipped in the middle (covered by the CRC, so loading must fail with the checksum error).
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let memory = match arch.as_str() {
        "arm" => "memory/mps2-an386.x",
        "riscv32" => "memory/riscv-virt.x",
        other => panic!("firmware-demo: unsupported target arch {other}"),
    };
    fs::copy(memory, out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={memory}");
    // For the demo binary and the on-target test (tests/on_target.rs).
    for kind in ["bins", "tests"] {
        if arch == "riscv32" {
            println!("cargo:rustc-link-arg-{kind}=-Tmemory.x");
        }
        println!("cargo:rustc-link-arg-{kind}=-Tlink.x");
    }

    println!("cargo:rustc-env=FW_TARGET={}", env::var("TARGET").unwrap());

    let blob_path = "model/ethanol.mlff";
    println!("cargo:rerun-if-changed={blob_path}");
    let mut blob = fs::read(blob_path).unwrap();
    if env::var_os("CARGO_FEATURE_CORRUPT_BLOB").is_some() {
        let i = blob.len() / 2;
        blob[i] ^= 0x01;
    }
    fs::write(out.join("model.mlff"), blob).unwrap();
}
