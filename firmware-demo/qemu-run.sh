#!/usr/bin/env bash
# Cargo runner: boots an ELF on the QEMU board of its target (see FIRMWARE notes in README.md).
set -u
elf=$1
dir=$(cd "$(dirname "$0")" && pwd)
QEMU_DIR=${QEMU_DIR:-$dir/.qemu/usr/bin}
case "$(file -b "$elf")" in
  *ARM*) exec timeout 60 "$QEMU_DIR/qemu-system-arm" -M mps2-an386 -nographic -monitor none -serial none \
           -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf" ;;
  *RISC-V*) exec timeout 60 "$QEMU_DIR/qemu-system-riscv32" -M virt -bios none -nographic -monitor none \
           -serial stdio -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf" </dev/null ;;
  *) echo "qemu-run.sh: unknown ELF: $elf" >&2; exit 2 ;;
esac
