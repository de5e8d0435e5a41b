#!/usr/bin/env python3
"""Instruction profile of the one measured energy+forces evaluation of the firmware demo.

Runs the ELF under QEMU with one instruction per translation block (`-singlestep`) and
`-d exec,nochain`, so every executed instruction logs its PC. Counting starts at the first
instruction of the evaluation closure in `main` (`eval` in src/main.rs) and stops when control
is back in its caller; QEMU is then stopped. The PCs are attributed:

- by ELF function (self counts, after LTO inlining), with the callers of each out-of-line
  function (a shadow stack from function entries and returns);
- by the innermost source function of llvm-symbolizer's inlining chain (self counts), and
  inclusively by every function of that chain;
- inclusively by every source function on the call stack (inlined frames of the shadow stack's
  call sites too), which gives the stages: neighbours, features, network, backprop, scatter;
- by source line (innermost frame), hottest first;
- out-of-line helpers (compiler-builtins soft float, `__aeabi_*`, libm, memcpy/memset) charged
  to the source line of the user code that called them.

Usage: profile.py <elf> [--top N] [--qemu-dir DIR]
The total matches the firmware's own `instructions_per_eval` up to the few instructions of the
call and the counter reads.
"""
import argparse
import bisect
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile

# Out-of-line helpers whose cost is charged to the calling source line.
HELPER = re.compile(r"^(compiler_builtins::|__aeabi_|__[a-z]+[sdt]f[0-9]|libm::|fmin|fmax|memcpy|memset)")
HERE = os.path.dirname(os.path.abspath(__file__))


def tool(name):
    sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    path = os.path.join(sysroot, "lib/rustlib/x86_64-unknown-linux-gnu/bin", name)
    return path if os.path.exists(path) else name


def short(name):
    """Drops the Rust hash suffix and generic noise from a demangled name."""
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    name = name.replace("$LT$", "<").replace("$GT$", ">").replace("$u20$", " ")
    name = name.replace("_$u7b$$u7b$closure$u7d$$u7d$", "{{closure}}").replace("$u7b$", "{")
    name = name.replace("$u7d$", "}").replace("..", "::")
    return name


def functions(elf):
    """Sorted (start, end, name) of the text symbols with a size."""
    out = subprocess.check_output([tool("llvm-nm"), "-S", "-C", "--defined-only", elf], text=True)
    syms = {}
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2] in "tTwW":
            start, size = int(parts[0], 16) & ~1, int(parts[1], 16)
            if size:
                syms[start] = (start, start + size, short(parts[3]))
    return sorted(syms.values())


class Symtab:
    def __init__(self, elf):
        self.funcs = functions(elf)
        self.starts = [f[0] for f in self.funcs]

    def lookup(self, pc):
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0 and pc < self.funcs[i][1]:
            return self.funcs[i]
        return (pc, pc + 1, f"?{pc:#x}")


def trace(elf, qemu_dir):
    """Yields the PC of every executed instruction (QEMU keeps running until closed)."""
    arm = b"ARM" in subprocess.check_output(["file", "-b", elf])
    common = ["-nographic", "-monitor", "none", "-semihosting-config", "enable=on,target=native",
              "-icount", "shift=0", "-singlestep", "-d", "exec,nochain"]
    if arm:
        cmd = [os.path.join(qemu_dir, "qemu-system-arm"), "-M", "mps2-an386", "-serial", "none"]
    else:
        cmd = [os.path.join(qemu_dir, "qemu-system-riscv32"), "-M", "virt", "-bios", "none",
               "-serial", "stdio"]
    tmp = tempfile.mkdtemp()
    fifo = os.path.join(tmp, "trace")
    os.mkfifo(fifo)
    proc = subprocess.Popen(cmd + common + ["-D", fifo, "-kernel", elf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pat = re.compile(rb"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
    try:
        with open(fifo, "rb") as f:
            for line in f:
                m = pat.match(line)
                if m:
                    yield int(m.group(1), 16)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        os.unlink(fifo)
        os.rmdir(tmp)


def symbolize(elf, pcs):
    """pc -> list of (function, file:line) frames, innermost first."""
    inp = "".join(f"{pc:#x}\n" for pc in pcs)
    out = subprocess.run(["llvm-symbolizer", f"--obj={elf}", "--inlining", "--demangle",
                          "--relative-address"], input=inp, capture_output=True, text=True).stdout
    result = {}
    for pc, block in zip(pcs, out.split("\n\n")):
        lines = block.strip().splitlines()
        frames = []
        for fn, loc in zip(lines[0::2], lines[1::2]):
            loc = re.sub(r"^.*?/(core|src|firmware-demo|library)/", r"\1/", loc)
            loc = re.sub(r":\d+$", "", loc)  # drop the column
            frames.append((short(fn), loc))
        result[pc] = frames or [("?", "?")]
    return result


def annotate(elf, counts, path):
    """Disassembly (llvm-objdump, source lines interleaved) of every function that ran, each
    instruction prefixed by its execution count."""
    objdump = tool("llvm-objdump")
    out = subprocess.run([objdump, "-d", "-l", "--no-show-raw-insn", elf],
                         capture_output=True, text=True, check=True).stdout
    keep, lines = False, []
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
        if m:
            keep, block = False, [line]
            continue
        m = re.match(r"^\s*([0-9a-f]+):", line)
        if m:
            n = counts.get(int(m.group(1), 16), 0)
            if n and not keep:
                keep = True
                lines.extend(block)
            if keep:
                lines.append(f"{n:>8} {line}")
        elif keep:
            lines.append(f"         {line}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("elf")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--annotate", metavar="FILE",
                    help="also write the disassembly of the executed code with per-instruction counts")
    ap.add_argument("--qemu-dir", default=os.environ.get("QEMU_DIR", os.path.join(HERE, ".qemu/usr/bin")))
    args = ap.parse_args()
    st = Symtab(args.elf)
    closure = re.compile(r"main::\{\{closure\}\}$")

    counts = collections.Counter()
    edges = collections.Counter()  # (caller, callee) -> instructions spent in callee
    helper_sites = collections.Counter()  # call-site pc in user code -> instructions in helpers
    stacked = collections.Counter()  # (call-site pcs, pc) -> count, for inclusive totals
    stack = []  # shadow stack of out-of-line functions
    sites = []  # call-site pc of each stack entry
    caller = None
    prev = None
    started = False
    last = None
    for pc in trace(args.elf, args.qemu_dir):
        fn = st.lookup(pc)
        if not started:
            if closure.search(fn[2]):
                started = True
                caller = prev
                stack, sites = [fn], [None]
            else:
                prev = fn
                continue
        if fn == caller:
            break
        if fn != stack[-1]:
            if fn in stack and pc != fn[0]:
                i = stack.index(fn) + 1  # returned into fn
                del stack[i:], sites[i:]
            else:
                stack.append(fn)  # a call (or tail call) into fn
                sites.append(last)
        counts[pc] += 1
        stacked[(tuple(sites[1:]), pc)] += 1
        if len(stack) > 1:
            edges[(stack[-2][2], fn[2])] += 1
        if HELPER.search(fn[2]):
            i = len(stack) - 1
            while i > 0 and HELPER.search(stack[i - 1][2]):
                i -= 1
            if sites[i] is not None:
                helper_sites[sites[i]] += 1
        last = pc
    total = sum(counts.values())
    if not started:
        sys.exit("profile.py: the evaluation closure was never entered")

    if args.annotate:
        annotate(args.elf, counts, args.annotate)
    all_sites = {x for key in stacked for x in key[0]}
    frames = symbolize(args.elf, sorted(set(counts) | set(helper_sites) | all_sites))
    by_elf = collections.Counter()
    by_inner = collections.Counter()
    by_incl = collections.Counter()
    by_line = collections.Counter()
    by_own = collections.Counter()  # innermost frame outside the Rust library
    for pc, n in counts.items():
        by_elf[st.lookup(pc)[2]] += n
        chain = frames[pc]
        by_inner[chain[0][0]] += n
        by_line[f"{chain[0][1]}  ({chain[0][0].split('::')[-1]})"] += n
        own = next((f for f in chain if not f[1].startswith(("library/", "/rustc/", "?"))), chain[0])
        by_own[f"{own[1]}  ({own[0].split('::')[-1]})"] += n
        for name in {f[0] for f in chain}:
            by_incl[name] += n

    by_tree = collections.Counter()
    for (path, pc), n in stacked.items():
        names = {f[0] for site in path for f in frames[site]} | {f[0] for f in frames[pc]}
        for name in names:
            by_tree[name] += n

    def table(title, counter, top):
        print(f"\n{title}")
        for name, n in counter.most_common(top):
            print(f"{n:>10} {100.0 * n / total:5.1f}%  {name}")

    print(f"instructions in the evaluation: {total}")
    calls = {f[2]: counts.get(f[0], 0) for f in st.funcs}
    print("\nby ELF function (self, after inlining; calls = executions of its first instruction)")
    for name, n in by_elf.most_common(args.top):
        c = calls.get(name, 0)
        per = f"{n / c:8.1f}/call" if c else " " * 13
        print(f"{n:>10} {100.0 * n / total:5.1f}% {c:>7} calls {per}  {name}")
    table("out-of-line calls: caller -> callee (instructions in callee)", collections.Counter(
        {f"{a}  ->  {b}": n for (a, b), n in edges.items()}), args.top)
    table("by source function (innermost inlined frame, self)", by_inner, args.top)
    table("by source function, inclusive of inlined callees", by_incl, args.top)
    table("by source function, inclusive of all callees (inlined or called)", by_tree, args.top)
    table("by source line (innermost frame)", by_line, args.top)
    table("by source line (innermost frame outside the Rust library)", by_own, args.top)
    by_site = collections.Counter()
    for pc, n in helper_sites.items():
        chain = frames[pc]
        by_site[f"{chain[0][1]}  ({chain[0][0].split('::')[-1]})  <- " +
                " <- ".join(f[0].split("::")[-1] for f in chain[1:4])] += n
    print(f"\nhelpers (soft float, libm, mem*) total: {sum(helper_sites.values())}")
    table("helpers charged to the calling source line", by_site, args.top)


if __name__ == "__main__":
    main()
