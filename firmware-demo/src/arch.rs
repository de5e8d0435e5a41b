//! Per-ISA pieces: instruction counter, stack painting and high-water mark.
#![allow(unsafe_code)]

/// Word painted over the free stack at boot.
const PAINT: u32 = 0xC0FF_EE11;
/// Bytes below the current stack pointer left unpainted (the painting code's own frame).
const MARGIN: usize = 256;

extern "C" {
    /// Top of the stack (the stack grows down from here); both runtimes define it.
    static _stack_start: u32;
}

#[cfg(target_arch = "arm")]
extern "C" {
    /// End of static data: cortex-m-rt's heap start, the stack's lowest possible address.
    static __sheap: u32;
}
#[cfg(target_arch = "riscv32")]
extern "C" {
    /// riscv-rt's heap start (heap size 0), the stack's lowest possible address.
    static _sheap: u32;
}

fn stack_bottom() -> usize {
    // Only the address of the linker symbol is taken, it is never read.
    #[cfg(target_arch = "arm")]
    let p = core::ptr::addr_of!(__sheap);
    #[cfg(target_arch = "riscv32")]
    let p = core::ptr::addr_of!(_sheap);
    (p as usize + 3) & !3
}

/// Top of the stack (its first used word is just below).
pub fn stack_top() -> usize {
    // Only the address of the linker symbol is taken.
    core::ptr::addr_of!(_stack_start) as usize
}

/// The current stack pointer.
#[inline(always)]
pub fn sp() -> usize {
    let sp: usize;
    // SAFETY: reads the stack pointer register, no memory access.
    #[cfg(target_arch = "arm")]
    unsafe {
        core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack))
    };
    // SAFETY: as above.
    #[cfg(target_arch = "riscv32")]
    unsafe {
        core::arch::asm!("mv {}, sp", out(reg) sp, options(nomem, nostack))
    };
    sp
}

/// Paints the unused stack (from the end of static data to `MARGIN` below the current stack
/// pointer) with `PAINT`.
#[inline(always)]
pub fn paint_stack() {
    let end = (sp() - MARGIN) & !3;
    let mut p = stack_bottom();
    while p < end {
        // SAFETY: [stack_bottom, sp - MARGIN) is RAM owned by the stack and not in use: nothing
        // lives below the current frame, and no interrupts are enabled.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack ever used: from the top down to the lowest word no longer painted.
pub fn stack_used() -> usize {
    let mut p = stack_bottom();
    let top = stack_top();
    // SAFETY: reads RAM words between the end of static data and the stack top.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

#[cfg(target_arch = "arm")]
mod counter {
    use cortex_m::peripheral::{syst::SystClkSource, SYST};
    /// What the counter counts.
    pub const COUNTER: &str = "systick*40 (mps2 -icount shift=0)";
    /// Starts SysTick free-running from its 24-bit maximum.
    pub fn counter_start() {
        // SAFETY: single-threaded boot code; SysTick is used by nothing else.
        let mut p = unsafe { cortex_m::Peripherals::steal() };
        p.SYST.set_clock_source(SystClkSource::Core);
        p.SYST.set_reload(0x00FF_FFFF);
        p.SYST.clear_current();
        p.SYST.enable_counter();
    }
    pub fn counter() -> u64 {
        u64::from(SYST::get_current())
    }
    /// SysTick counts down, wraps at 24 bits, and ticks once per 40 instructions on mps2 under
    /// `-icount shift=0` (FIRMWARE.md).
    pub fn instructions_between(t0: u64, t1: u64) -> u64 {
        (t0.wrapping_sub(t1) & 0x00FF_FFFF) * 40
    }
}

#[cfg(target_arch = "riscv32")]
mod counter {
    /// What the counter counts.
    pub const COUNTER: &str = "minstret";
    pub fn counter_start() {}
    /// 64-bit `minstret` (exact instruction count under `-icount shift=0`).
    pub fn counter() -> u64 {
        loop {
            let (hi, lo, hi2): (u32, u32, u32);
            // SAFETY: reads machine counters in M-mode; no memory access. Not marked `nomem`,
            // so that the compiler keeps the measured code's memory accesses on their side.
            unsafe {
                core::arch::asm!(
                    "csrr {0}, minstreth", "csrr {1}, minstret", "csrr {2}, minstreth",
                    out(reg) hi, out(reg) lo, out(reg) hi2, options(nostack)
                )
            };
            if hi == hi2 {
                return (u64::from(hi) << 32) | u64::from(lo);
            }
        }
    }
    pub fn instructions_between(t0: u64, t1: u64) -> u64 {
        t1.wrapping_sub(t0)
    }
}

pub use counter::*;

/// The target triple this image was built for.
pub const TARGET: &str = env!("FW_TARGET");
