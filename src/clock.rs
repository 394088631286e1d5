//! The log's clock: wall-clock milliseconds that never go backwards, so
//! `metadata.logged_time` is monotonic even when the system clock steps
//! back (NTP corrections, a VM restored from a snapshot).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LAST: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since the Unix epoch, never less than a value returned
/// before in this process.
pub fn now_ms() -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let prev = LAST.fetch_max(wall, Ordering::SeqCst);
    prev.max(wall)
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
