//! The log's clock: wall-clock milliseconds that never go backwards, so
//! `metadata.logged_time` is monotonic even when the system clock steps
//! back (NTP corrections, a VM restored from a snapshot).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LAST: AtomicU64 = AtomicU64::new(0);

/// A test hook: `SEALOG_CLOCK_SKEW_MS` (signed) shifts the wall clock, so
/// tests can step it back without touching the machine's clock.
fn skew() -> i64 {
    static SKEW: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var("SEALOG_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// Milliseconds since the Unix epoch, never less than a value returned
/// before, nor than what `advance_to` was given.
pub fn now_ms() -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let wall = wall.saturating_add(skew()).max(0) as u64;
    let prev = LAST.fetch_max(wall, Ordering::SeqCst);
    prev.max(wall)
}

/// Never return less than `ms` from now on: at startup, the largest
/// `logged_time` the log holds, so times stay monotonic across restarts
/// even if the wall clock stepped back while the log was down.
pub fn advance_to(ms: u64) {
    LAST.fetch_max(ms, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_goes_backwards() {
        let mut last = 0;
        for _ in 0..10_000 {
            let t = super::now_ms();
            assert!(t >= last);
            last = t;
        }
        assert!(last > 1_700_000_000_000);
    }
}
