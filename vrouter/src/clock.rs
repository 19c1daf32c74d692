//! The time-stamp counter without DPDK, for code outside the data plane (the agent) that
//! compares its own reading with TSC values the forwarding lcores took with
//! `dpdk::rdtsc` (setup latency, trace step times). The counter's frequency comes from the
//! caller (the data plane's `dpdk::tsc_hz`, handed down in the settings), never from here.

/// Current value of the counter DPDK's `rte_rdtsc` reads: the TSC on x86_64, the virtual
/// counter (`cntvct_el0`) on aarch64, elsewhere the nanoseconds of a monotonic clock since
/// the first call (the caller's frequency is then 10^9).
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads the time-stamp counter; it has no operands in memory and is
        // available on every x86_64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let v: u64;
        // SAFETY: reading the virtual counter register has no side effects and touches no
        // memory; EL0 access is enabled by Linux.
        unsafe { core::arch::asm!("mrs {v}, cntvct_el0", v = out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_moves_forward() {
        let a = rdtsc();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = rdtsc();
        assert!(b > a, "{a} then {b}");
    }
}
