//! The log's clock: wall-clock milliseconds that never go backwards, so
//! `metadata.logged_time` is monotonic even when the system clock steps
//! back (NTP corrections, a VM restored from a snapshot).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LAST: AtomicU64 = AtomicU64::new(0);

/// The clock skew, ms: a test hook (`SEALOG_CLOCK_SKEW_MS`, signed) that
/// lets tests step the clock back without touching the machine's. It
/// exists only with the `test-hooks` feature, and even then only after
/// `enable_skew_hook` (which only the `sealog-test` binary calls): a
/// release build has no code that moves `logged_time` or cosignature times.
#[cfg(feature = "test-hooks")]
static SKEW: AtomicI64 = AtomicI64::new(0);

#[cfg(feature = "test-hooks")]
use std::sync::atomic::AtomicI64;

/// The environment variable of the clock-skew test hook.
pub const SKEW_ENV: &str = "SEALOG_CLOCK_SKEW_MS";

/// Turns the clock-skew hook on from `SEALOG_CLOCK_SKEW_MS`; returns the
/// skew (0 when unset). Test builds only.
#[cfg(feature = "test-hooks")]
pub fn enable_skew_hook() -> Result<i64, String> {
    let skew = match std::env::var(SKEW_ENV) {
        Err(_) => 0,
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{SKEW_ENV}={v:?} is not a signed integer"))?,
    };
    SKEW.store(skew, Ordering::SeqCst);
    Ok(skew)
}

fn skew() -> i64 {
    #[cfg(feature = "test-hooks")]
    return SKEW.load(Ordering::Relaxed);
    #[cfg(not(feature = "test-hooks"))]
    0
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
