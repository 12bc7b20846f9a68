//! Timestamps that every process on the machine reads from the same clock.

use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

/// Returns nanoseconds on `CLOCK_MONOTONIC`.
///
/// The publisher writes this value into each message, and the subscriber processes subtract it
/// from their own reading. That works because all of them run on one machine, whose processes
/// share the monotonic clock; a [`std::time::Instant`] has no value that can leave its process.
pub fn now_nanos() -> u64 {
    let now = clock_gettime(ClockId::Monotonic);
    // The monotonic clock counts from boot, so both fields are non-negative and the sum fits
    // in u64 for about 584 years of uptime.
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Returns the time from `earlier` to `later`, or zero if `later` is not after it.
pub fn since(earlier: u64, later: u64) -> Duration {
    Duration::from_nanos(later.saturating_sub(earlier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_never_goes_back() {
        let first = now_nanos();
        let second = now_nanos();
        assert!(second >= first);
    }

    #[test]
    fn since_saturates_at_zero() {
        assert_eq!(since(10, 5), Duration::ZERO);
        assert_eq!(since(5, 10), Duration::from_nanos(5));
    }
}
