#!/usr/bin/env bash
# Inference cost against system size, with n2p2's own water model (H2O_RPBE-D3, imported), and
# the Cu2S model on its triclinic cell: `mlff bench` per size, f64 and f32, 1 and 2 threads.
# One process per measurement, so that its peak RSS belongs to that size alone.
#
# Water boxes (all periodic, n2p2 input.data in Bohr):
#      192  n2p2-train/H2O_RPBE-D3/input.data, first structure (a DFT training box)
#     1080  n2p2/H2O_RPBE-D3/input.data
#     8640  n2p2/H2O_RPBE-D3_8640/input.data
#    69120  the 8640 box replicated 2×2×2   (mlff bench --replicate 2,2,2)
#   103680  the 8640 box replicated 3×2×2   (mlff bench --replicate 3,2,2)
# Cu2S: n2p2/Cu2S_PBE/input.data (144 atoms, triclinic, Å/eV).
#
# Usage: benches/scaling.sh [output-dir]        (default: target/scaling)
# Environment: MLFF_REFDATA (default ../shared/data), REPEAT (timed runs per measurement,
# default 3 up to 8640 atoms and 1 above), SIZES (e.g. "192 1080" to run a subset),
# THREADS (default "1 2"), PRECISIONS (default "f64 f32").
# Prints one Markdown table row per measurement (µs per atom: total wall time, then the CPU time
# of each stage summed over threads) and keeps the JSON of each run in the output directory.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${MLFF_REFDATA:-$PWD/../shared/data}"
out="${1:-target/scaling}"
mkdir -p "$out"
cargo build --release -q -p mlff-train
mlff=target/release/mlff

for p in f64 f32; do
    "$mlff" import-n2p2 "$data/n2p2/H2O_RPBE-D3" --length-unit bohr --energy-unit hartree \
        --precision "$p" -o "$out/water_$p.mlff" >/dev/null
    "$mlff" import-n2p2 "$data/n2p2/Cu2S_PBE" --length-unit angstrom --energy-unit ev \
        --precision "$p" -o "$out/cu2s_$p.mlff" >/dev/null
done

# size -> input file and replication
input_of() {
    case "$1" in
        192) echo "$data/n2p2-train/H2O_RPBE-D3/input.data 1,1,1" ;;
        1080) echo "$data/n2p2/H2O_RPBE-D3/input.data 1,1,1" ;;
        8640) echo "$data/n2p2/H2O_RPBE-D3_8640/input.data 1,1,1" ;;
        69120) echo "$data/n2p2/H2O_RPBE-D3_8640/input.data 2,2,2" ;;
        103680) echo "$data/n2p2/H2O_RPBE-D3_8640/input.data 3,2,2" ;;
        *) echo "unknown size $1" >&2; exit 2 ;;
    esac
}

header() {
    echo
    echo "$1"
    echo
    echo "| atoms | precision | threads | total µs/atom | neighbours | descriptors | network | forces | workspace MiB | peak RSS MiB |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
}

header "Water (n2p2 H2O_RPBE-D3 model), energy + forces"
for size in ${SIZES:-192 1080 8640 69120 103680}; do
    read -r file reps < <(input_of "$size")
    repeat="${REPEAT:-$([ "$size" -le 8640 ] && echo 3 || echo 1)}"
    for p in ${PRECISIONS:-f64 f32}; do
        for t in ${THREADS:-1 2}; do
            args=(-m "$out/water_$p.mlff" -i "$file" --length-unit bohr --precision "$p"
                --threads "$t" --repeat "$repeat" --replicate "$reps")
            "$mlff" bench "${args[@]}" --row --json-file "$out/water_${size}_${p}_${t}.json"
        done
    done
done

header "Cu2S (n2p2 Cu2S_PBE model, 144 atoms, triclinic), energy + forces"
for p in ${PRECISIONS:-f64 f32}; do
    for t in ${THREADS:-1 2}; do
        args=(-m "$out/cu2s_$p.mlff" -i "$data/n2p2/Cu2S_PBE/input.data" --precision "$p"
            --threads "$t" --repeat "${REPEAT:-5}")
        "$mlff" bench "${args[@]}" --row --json-file "$out/cu2s_${p}_${t}.json"
    done
done
