//! The service's wall clock. It is the system's, unless `server.manual_clock` lets an admin
//! move it (`POST /v1/admin/clock`): scripted traffic in tests and demos then spans days in
//! seconds, and everything dated by kefu (turn records, feedback, hand-offs and their SLA
//! clocks, sessions, alerts) follows it. Only offered on a loopback address.

use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds added to the system clock (0 unless moved).
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since the Unix epoch by the system's clock, never moved: for what others date by
/// real time (a platform's signed timestamps).
pub fn system_now() -> i64 {
    system_ms().div_euclid(1000)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    system_ms() + OFFSET_MS.load(Ordering::Relaxed)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    now_ms().div_euclid(1000)
}

/// Moves the clock by `ms` (forward when positive); the new time in milliseconds.
pub fn advance(ms: i64) -> i64 {
    OFFSET_MS.fetch_add(ms, Ordering::Relaxed);
    now_ms()
}

/// Sets the clock to `at_ms`; it runs on from there.
pub fn set(at_ms: i64) -> i64 {
    OFFSET_MS.store(at_ms - system_ms(), Ordering::Relaxed);
    now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_and_runs_on() {
        let t = set(1_700_000_000_000);
        assert!((t - 1_700_000_000_000).abs() < 1000);
        let t2 = advance(3_600_000);
        assert!(t2 - t >= 3_600_000 && t2 - t < 3_601_000);
        assert_eq!(now(), now_ms().div_euclid(1000));
        set(system_ms());
    }
}
