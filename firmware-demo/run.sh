#!/usr/bin/env bash
# Builds the firmware demo for every target, runs it under QEMU (timeout 60 s each), checks the
# corrupted-blob variant fails with the checksum error, runs the on-target test
# (tests/on_target.rs), and prints one summary line per target:
#   target=<triple> status=ok|FAIL instructions_per_eval=N flash_bytes=N ram_bytes=N stack_bytes=N energy_rel_err=X
# and checks the Cortex-M4F budgets of the firmware issue (flash ≤ 64 KiB with the model, static
# RAM + stack high water ≤ 16 KiB, ≤ 300 000 instructions per energy+forces evaluation).
# Installs what it needs idempotently: rustup targets, llvm-tools, QEMU binaries in .qemu/.
# Exits non-zero if anything fails or a budget is exceeded.
set -uo pipefail
cd "$(dirname "$0")"
TARGETS="thumbv7em-none-eabihf riscv32imac-unknown-none-elf riscv32imafc-unknown-none-elf"
export QEMU_DIR=$PWD/.qemu/usr/bin

# --- toolchain ---
installed=$(rustup target list --installed)
for t in $TARGETS; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
SIZE=$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-size
[ -x "$SIZE" ] || rustup component add llvm-tools

# --- QEMU (FIRMWARE notes: never apt-get install qemu-system-arm, it removes qemu-utils) ---
if [ ! -x "$QEMU_DIR/qemu-system-arm" ] || [ ! -x "$QEMU_DIR/qemu-system-riscv32" ] \
   || ! "$QEMU_DIR/qemu-system-arm" --version >/dev/null 2>&1 \
   || ! "$QEMU_DIR/qemu-system-riscv32" --version >/dev/null 2>&1; then
  apt-get update -qq
  deps=$(apt-cache depends qemu-system-arm qemu-system-misc | awk '/ Depends:/{print $2}' | grep -v -e '^<' -e '^qemu-' | sort -u)
  apt-get install -y -qq --no-install-recommends --no-upgrade $deps >/dev/null
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root qemu-system-arm qemu-system-misc)
  mkdir -p .qemu
  dpkg-deb --fsys-tarfile "$tmp"/qemu-system-arm_*.deb | tar -x -C .qemu ./usr/bin/qemu-system-arm
  dpkg-deb --fsys-tarfile "$tmp"/qemu-system-misc_*.deb | tar -x -C .qemu ./usr/bin/qemu-system-riscv32
  rm -rf "$tmp"
fi

fail=0
summary=()
details=()
for t in $TARGETS; do
  log=$(mktemp)
  status=ok
  if ! cargo build --release -q --target "$t"; then
    status=FAIL
  fi
  elf=target/$t/release/mlff-firmware-demo
  if [ $status = ok ]; then
    ./qemu-run.sh "$elf" >"$log" 2>&1
    rc=$?
    [ $rc -eq 0 ] && grep -qx OK "$log" || status=FAIL
    if [ $status = FAIL ]; then echo "--- $t (exit $rc) ---"; cat "$log"; fi
  fi
  field() { grep -o "$1=[^ ]*" "$log" | head -1 | cut -d= -f2; }
  ipe=$(field instructions_per_eval); stack=$(field stack_bytes); err=$(field energy_rel_err_e12)
  details+=("target=$t stack_eval_bytes=$(field stack_eval_bytes) main_frame_bytes=$(field main_frame_bytes) (stack of one evaluation without any report formatting, and of main's frame, from the stack top; stack_bytes above is the whole run's)")
  flash=n/a; ram=n/a
  if [ -f "$elf" ]; then
    # Flash: code + read-only data + vector table + initialised data; RAM: data + bss (+ uninit).
    read -r flash ram < <("$SIZE" -A "$elf" | awk '
      $1 ~ /^\.(vector_table|text|rodata|init|trap)/ {f += $2}
      $1 ~ /^\.data/ {f += $2; r += $2}
      $1 ~ /^\.(bss|sbss|sdata|uninit)/ {r += $2}
      END {print f+0, r+0}')
  fi
  [ -n "$err" ] && err=$(python3 -c "print(f'{$err*1e-12:.3g}')") || err=n/a
  summary+=("target=$t status=$status instructions_per_eval=${ipe:-n/a} flash_bytes=$flash ram_bytes=$ram stack_bytes=${stack:-n/a} energy_rel_err=$err")
  if [ "$t" = thumbv7em-none-eabihf ]; then
    # Budgets (BENCHMARKS.md, "Firmware"): a regression fails CI instead of passing unnoticed.
    m4f=(${ipe:-x} $flash $ram ${stack:-x})
  fi
  [ $status = ok ] || fail=1
  rm -f "$log"
done

# --- corrupted blob must be rejected with the checksum error ---
for t in $TARGETS; do
  out=$(cargo build --release -q --target "$t" --features corrupt-blob --target-dir target/corrupt 2>&1 \
        && ./qemu-run.sh target/corrupt/$t/release/mlff-firmware-demo 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && grep -q checksum <<<"$out"; then
    summary+=("target=$t corrupt-blob=ok (exit $rc: $(grep -o 'blob checksum[^\n]*' <<<"$out" | head -1))")
  else
    summary+=("target=$t corrupt-blob=FAIL (exit $rc)"); echo "$out"; fail=1
  fi
done

# --- on-target checks: FPU square root = libm bits, every bit flip and truncation rejected ---
for t in $TARGETS; do
  out=$(cargo test --release -q --target "$t" --test on_target 2>&1)
  rc=$?
  if [ $rc -eq 0 ] && grep -qx 'on_target: ok' <<<"$out"; then
    summary+=("target=$t on-target-test=ok ($(grep -o '^blob: [0-9]* bit flips' <<<"$out"), all truncations, sqrt sweep)")
  else
    summary+=("target=$t on-target-test=FAIL (exit $rc)"); echo "$out"; fail=1
  fi
done

# --- Cortex-M4F budgets ---
read -r ipe flash ram stack <<<"${m4f[*]:-x x x x}"
budget=$(python3 - "$ipe" "$flash" "$ram" "$stack" <<'PY'
import sys
try:
    ipe, flash, ram, stack = map(int, sys.argv[1:])
except ValueError:
    print("FAIL (figures missing)"); sys.exit()
over = [n for n, v, b in [("instructions", ipe, 300000), ("flash", flash, 65536),
                           ("RAM+stack", ram + stack, 16384)] if v > b]
print(("OVER: " + ", ".join(over) if over else "ok")
      + f" (instructions {ipe}/300000, flash {flash}/65536 B, static RAM + stack {ram + stack}/16384 B)")
PY
)
summary+=("target=thumbv7em-none-eabihf budgets=$budget")
[[ $budget == ok* ]] || fail=1

printf '%s\n' "${summary[@]}" "${details[@]}"
exit $fail
