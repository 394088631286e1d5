//! The one way to walk the log in index order: a `Follower` keeps a
//! consumer's position and tells it what to take next, with one policy
//! for every follower of the log (the lookup index, the detection runner,
//! each stream, witnessing):
//!
//! - **resume**: a follower starts at the position its consumer gives
//!   (what the index holds, the replay's start, `from` or `Last-Event-ID`,
//!   nothing witnessed yet) and moves only as the consumer says
//!   (`advance_to`), so nothing is skipped or taken twice;
//! - **bounded chunks**: it hands out at most `chunk` leaves at a time,
//!   whatever the lag, so a consumer catching up holds a bounded amount;
//! - **wait for the published size**: when it has caught up it waits for
//!   the sequencer to publish a larger signed size (`Sequencer::watch_size`,
//!   sent after each checkpoint is signed over a durable state);
//! - **lag**: `sealog_follower_lag_leaves{follower}` on `/metrics` is the
//!   published size minus the position (for streams, the slowest open one),
//!   both read when `/metrics` is: current even while a follower rests;
//! - **errors**: a transient failure (the store, the index database, a
//!   witness round) is reported with `failed`: counted in
//!   `sealog_follower_retries_total{follower}`, and the same position is
//!   handed out again after a backoff that doubles up to a bound and starts
//!   over after a step without failure. A leaf that cannot be read is not
//!   a failure of the follower: the consumer gets it like any other and
//!   decides (the index indexes it by leaf hash only, the runner skips it,
//!   a stream sends it as `unreadable`). A consumer with a client to tell
//!   may end instead of retrying (a stream ends with an `error` event and
//!   its client resumes from its last id);
//! - **stop**: `next` answers `None` once the published size is no longer
//!   sent (the sequencer stopped: shutdown) or a stop signal is set (a
//!   stream's watchdog), checked at every chunk and while waiting.
//!
//! What is followed is either every leaf (`Follows::Leaves`) or only the
//! newest checkpoint (`Follows::Checkpoints`: witnessing, which asks for a
//! cosignature of the newest head and skips the sizes in between; a newer
//! checkpoint supersedes one whose round failed, so it cuts that backoff
//! short).
//!
//! It lives here, below every layer, because its users span the layers
//! (`query` sits below `log`): it knows only sizes, not the store, and its
//! consumers read what it hands them. Its cost is per chunk (a watch
//! borrow, an atomic store of the position), never per leaf: the index
//! and the detection runner run it on the hot path of sustained appends.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

/// Who follows: each has its series on `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The lookup index (`query::index`).
    Index,
    /// The detection rules (`detect::runner`).
    Detections,
    /// A `/v1/stream` client (one follower per connection).
    Stream,
    /// Sending checkpoints to the witnesses (`witness::witnessing`).
    Witnessing,
}

impl Role {
    /// Every role, in the order of their `/metrics` series.
    pub const ALL: [Role; 4] = [
        Role::Index,
        Role::Detections,
        Role::Stream,
        Role::Witnessing,
    ];

    /// The `follower` label.
    pub fn name(self) -> &'static str {
        match self {
            Role::Index => "index",
            Role::Detections => "detections",
            Role::Stream => "stream",
            Role::Witnessing => "witnessing",
        }
    }

    fn at(self) -> usize {
        self as usize
    }
}

/// What a follower walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follows {
    /// Every leaf in index order, at most `chunk` at a time. A failure is
    /// retried for the same leaves after the whole backoff: new leaves do
    /// not make an old one readable.
    Leaves {
        /// Leaves at most handed out at once: bounds a catch-up's memory.
        chunk: u64,
    },
    /// The newest checkpoint: `next` hands out position..published in one
    /// piece (the consumer acts on the newest head). A newer checkpoint
    /// ends the backoff of one whose round failed, and starts it over.
    Checkpoints,
}

/// Waits that double from `first` to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff whose next wait is `first`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The next wait; the one after is twice as long, up to `max`.
    pub fn next_wait(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }

    /// The next wait starts from `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s: a store that fails is asked again soon,
    /// and one that keeps failing at most every 5 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// Why a follower must stop (`Follower::stop_on`); `None` while it runs.
pub type StopSignal = watch::Receiver<Option<&'static str>>;

/// A consumer's position in the log, and what it takes next.
pub struct Follower {
    role: Role,
    follows: Follows,
    next: u64,
    published: watch::Receiver<u64>,
    stop: Option<StopSignal>,
    /// What `/metrics` reads of this follower.
    shared: Arc<Shared>,
    registry: &'static Registry,
    backoff: Backoff,
    /// After a failure: when the position may be handed out again, and
    /// the published size then.
    retry: Option<(tokio::time::Instant, u64)>,
}

impl Follower {
    /// A follower for `role` of what `follows`, at position `from` (the
    /// first leaf, or the checkpoint size, the consumer has not taken),
    /// following the sizes sent on `published`.
    pub fn new(role: Role, follows: Follows, from: u64, published: watch::Receiver<u64>) -> Self {
        Self::in_registry(&FOLLOWERS, role, follows, from, published)
    }

    fn in_registry(
        registry: &'static Registry,
        role: Role,
        follows: Follows,
        from: u64,
        published: watch::Receiver<u64>,
    ) -> Self {
        if let Follows::Leaves { chunk } = follows {
            assert!(chunk > 0, "a chunk holds a leaf at least");
        }
        let shared = registry.register(role, from, published.clone());
        Follower {
            role,
            follows,
            next: from,
            published,
            stop: None,
            shared,
            registry,
            backoff: Backoff::default(),
            retry: None,
        }
    }

    /// Waits between retries per `backoff` instead of the default.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Stops also once `stop` holds a reason.
    pub fn stop_on(mut self, stop: StopSignal) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The first leaf (or checkpoint size) not taken yet.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The latest published size.
    pub fn published(&self) -> u64 {
        *self.published.borrow()
    }

    /// How far the position is behind the latest published size.
    pub fn lag(&self) -> u64 {
        self.published().saturating_sub(self.next)
    }

    /// Whether the follower must stop: the size is no longer published
    /// (the sequencer stopped) or a stop signal is set.
    pub fn stopped(&self) -> bool {
        self.published.has_changed().is_err() || self.stop_signalled()
    }

    /// Whether its stop signal is set (not whether the size is still
    /// published): a consumer that holds what it has taken checks this
    /// before handing more of it on.
    pub fn stop_signalled(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.borrow().is_some())
    }

    /// What to take next: from the position up to the published size, at
    /// most a chunk of leaves. Waits while there is nothing new, and after
    /// a failure for its backoff. `None` once the follower must stop.
    pub async fn next(&mut self) -> Option<Range<u64>> {
        if self.retry.is_none() {
            // The last step went through: the next failure waits little.
            self.backoff.reset();
        }
        loop {
            if self.stopped() {
                return None;
            }
            let published = *self.published.borrow_and_update();
            if let Some((at, seen)) = self.retry {
                if self.follows == Follows::Checkpoints && published > seen {
                    // A newer checkpoint: not a retry of the failed one.
                    self.retry = None;
                    self.backoff.reset();
                } else if tokio::time::Instant::now() < at {
                    // Woken by a new size too: a newer checkpoint ends the
                    // wait, and a sequencer that stopped ends the follower.
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        r = self.published.changed() => {
                            if r.is_err() {
                                return None;
                            }
                        }
                        _ = stopped(&mut self.stop) => {}
                    }
                    continue;
                } else {
                    self.retry = None;
                }
            }
            if self.next < published {
                let end = match self.follows {
                    Follows::Leaves { chunk } => published.min(self.next.saturating_add(chunk)),
                    Follows::Checkpoints => published,
                };
                return Some(self.next..end);
            }
            tokio::select! {
                r = self.published.changed() => {
                    if r.is_err() {
                        return None;
                    }
                }
                _ = stopped(&mut self.stop) => {}
            }
        }
    }

    /// The consumer has taken everything below `to`, which lies within
    /// the range `next` handed out (a consumer that failed part-way says
    /// where: the rest is handed out again).
    pub fn advance_to(&mut self, to: u64) {
        debug_assert!(to >= self.next, "a follower never moves back");
        self.next = self.next.max(to);
        self.shared.position.store(self.next, Relaxed);
    }

    /// Puts the position at `at`, which the consumer read back from where
    /// it stores it (say, after reopening its database).
    pub fn resume_at(&mut self, at: u64) {
        self.next = at;
        self.shared.position.store(at, Relaxed);
    }

    /// The consumer could not take what `next` handed out (or its rest,
    /// past `advance_to`), for a reason that may pass: counts it, and
    /// holds the position back for the backoff. Returns that wait, for the
    /// consumer's log line.
    pub fn failed(&mut self) -> Duration {
        self.registry.retries[self.role.at()].fetch_add(1, Relaxed);
        let wait = self.backoff.next_wait();
        self.retry = Some((tokio::time::Instant::now() + wait, self.published()));
        wait
    }
}

/// Resolves once `stop` holds a reason (never without a signal, nor once
/// its sender is gone: a stream's watchdog that ended sent its reason).
async fn stopped(stop: &mut Option<StopSignal>) {
    match stop {
        Some(s) => {
            if s.wait_for(|why| why.is_some()).await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}

/// A follower's position and the sizes it follows, for its lag.
struct Shared {
    role: Role,
    position: AtomicU64,
    published: watch::Receiver<u64>,
}

impl Shared {
    fn lag(&self) -> u64 {
        (*self.published.borrow()).saturating_sub(self.position.load(Relaxed))
    }
}

/// The followers' lags and retry counts, for `/metrics`.
#[derive(Default)]
pub struct Registry {
    followers: Mutex<Vec<Weak<Shared>>>,
    retries: [AtomicU64; 4],
}

/// Every follower of the process.
pub static FOLLOWERS: Registry = Registry {
    followers: Mutex::new(Vec::new()),
    retries: [const { AtomicU64::new(0) }; 4],
};

impl Registry {
    /// The shared state of a new follower of `role` at `position`;
    /// forgotten once the follower is dropped.
    fn register(&self, role: Role, position: u64, published: watch::Receiver<u64>) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            role,
            position: AtomicU64::new(position),
            published,
        });
        let mut all = self.followers.lock().expect("not poisoned");
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&shared));
        shared
    }

    /// The largest lag among the live followers of `role`, if any: the
    /// size published now minus each one's position.
    pub fn lag(&self, role: Role) -> Option<u64> {
        let all = self.followers.lock().expect("not poisoned");
        (all.iter())
            .filter_map(Weak::upgrade)
            .filter(|f| f.role == role)
            .map(|f| f.lag())
            .max()
    }

    /// The retries counted for `role`.
    pub fn retries(&self, role: Role) -> u64 {
        self.retries[role.at()].load(Relaxed)
    }

    /// The lag of each role that has a live follower, and every role's
    /// retries, in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP sealog_follower_lag_leaves Leaves a follower of the log has yet to take: the published size minus its position (for streams, the slowest open one).\n# TYPE sealog_follower_lag_leaves gauge");
        for role in Role::ALL {
            if let Some(lag) = self.lag(role) {
                let _ = writeln!(
                    out,
                    "sealog_follower_lag_leaves{{follower=\"{}\"}} {lag}",
                    role.name()
                );
            }
        }
        let _ = writeln!(out, "# HELP sealog_follower_retries_total Transient failures of a follower (the store, the index database, a witness round), retried after a backoff.\n# TYPE sealog_follower_retries_total counter");
        for role in Role::ALL {
            let _ = writeln!(
                out,
                "sealog_follower_retries_total{{follower=\"{}\"}} {}",
                role.name(),
                self.retries(role)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// A registry of the test's own, so that parallel tests do not share
    /// gauges.
    fn registry() -> &'static Registry {
        Box::leak(Box::default())
    }

    fn leaves(
        reg: &'static Registry,
        from: u64,
        size: u64,
        chunk: u64,
    ) -> (Follower, watch::Sender<u64>) {
        let (tx, rx) = watch::channel(size);
        let f = Follower::in_registry(reg, Role::Index, Follows::Leaves { chunk }, from, rx);
        (f, tx)
    }

    /// `f.next()`, failing the test rather than hanging it.
    async fn next(f: &mut Follower) -> Option<Range<u64>> {
        tokio::time::timeout(Duration::from_secs(10), f.next())
            .await
            .expect("next answered within 10 s")
    }

    #[tokio::test]
    async fn resumes_at_the_consumers_position_in_bounded_chunks() {
        let (mut f, _tx) = leaves(registry(), 5, 12, 3);
        let mut got = Vec::new();
        while f.position() < 12 {
            let r = next(&mut f).await.unwrap();
            assert!(r.end - r.start <= 3, "{r:?}");
            got.push(r.clone());
            f.advance_to(r.end);
        }
        assert_eq!(got, [5..8, 8..11, 11..12]);
    }

    #[tokio::test]
    async fn waits_for_a_larger_published_size_then_wakes() {
        let (mut f, tx) = leaves(registry(), 0, 4, 100);
        let r = next(&mut f).await.unwrap();
        f.advance_to(r.end);
        // Caught up: nothing until the size grows.
        assert!(f.next().now_or_never().is_none(), "waits at the size");
        tx.send_replace(4); // the same size again wakes nothing new
        assert!(f.next().now_or_never().is_none());
        let waiter = tokio::spawn(async move {
            let r = next(&mut f).await;
            (r, f)
        });
        tx.send_replace(9);
        let (r, _f) = waiter.await.unwrap();
        assert_eq!(r, Some(4..9));
    }

    #[tokio::test]
    async fn reports_its_lag_per_role_the_slowest_of_several() {
        let reg = registry();
        let (mut f, tx) = leaves(reg, 2, 10, 4);
        assert_eq!(reg.lag(Role::Index), Some(8), "from its start");
        let r = next(&mut f).await.unwrap();
        f.advance_to(r.end);
        assert_eq!(reg.lag(Role::Index), Some(4));
        tx.send_replace(20);
        let r = next(&mut f).await.unwrap();
        assert_eq!(r, 6..10);
        assert_eq!(reg.lag(Role::Index), Some(14), "as the size grew");
        // Two streams: the slowest is reported, and a closed one is
        // forgotten.
        let (srx, stx) = (tx.subscribe(), tx.subscribe());
        let slow = Follower::in_registry(reg, Role::Stream, Follows::Leaves { chunk: 1 }, 3, srx);
        let fast = Follower::in_registry(reg, Role::Stream, Follows::Leaves { chunk: 1 }, 18, stx);
        assert_eq!(reg.lag(Role::Stream), Some(17));
        drop(slow);
        assert_eq!(reg.lag(Role::Stream), Some(2));
        let mut text = String::new();
        reg.render(&mut text);
        assert!(
            text.contains("sealog_follower_lag_leaves{follower=\"index\"} 14\n"),
            "{text}"
        );
        assert!(
            text.contains("sealog_follower_lag_leaves{follower=\"stream\"} 2\n"),
            "{text}"
        );
        assert!(
            !text.contains("sealog_follower_lag_leaves{follower=\"witnessing\"}"),
            "none runs: {text}"
        );
        assert!(text.contains("sealog_follower_retries_total{follower=\"witnessing\"} 0\n"));
        drop(fast);
        assert_eq!(reg.lag(Role::Stream), None);
        // Caught up and waiting: no lag.
        f.advance_to(10);
        while f.position() < 20 {
            let r = next(&mut f).await.unwrap();
            f.advance_to(r.end);
        }
        assert!(f.next().now_or_never().is_none());
        assert_eq!(reg.lag(Role::Index), Some(0));
    }

    #[tokio::test]
    async fn a_failure_is_retried_after_a_backoff_without_skipping_or_repeating_a_leaf() {
        let reg = registry();
        let (f, tx) = leaves(reg, 0, 30, 8);
        let backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(40));
        let mut f = f.with_backoff(backoff);
        // The store fails at leaf 11, and again at once on the retry.
        let mut fails = vec![11, 11];
        let mut taken = Vec::new();
        let mut waits = Vec::new();
        while f.position() < 30 {
            let r = next(&mut f).await.unwrap();
            let failed_at = fails.first().copied().filter(|at| r.contains(at));
            let end = failed_at.unwrap_or(r.end);
            taken.extend(r.start..end);
            f.advance_to(end);
            if failed_at.is_some() {
                fails.remove(0);
                waits.push(f.failed());
                // Held back: not handed out again at once.
                assert!(f.next().now_or_never().is_none(), "backing off");
            }
        }
        assert_eq!(taken, (0..30).collect::<Vec<_>>(), "each leaf once");
        assert_eq!(reg.retries(Role::Index), 2);
        assert_eq!(
            waits,
            [Duration::from_millis(20), Duration::from_millis(40)],
            "doubles while it fails"
        );
        // A step that went through starts the backoff over.
        f.failed();
        assert_eq!(f.failed(), Duration::from_millis(40));
        tx.send_replace(40);
        assert_eq!(next(&mut f).await, Some(30..38), "after the backoff");
        f.advance_to(38);
        assert_eq!(next(&mut f).await, Some(38..40));
        assert_eq!(f.failed(), Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_newer_checkpoint_ends_the_backoff_of_a_failed_one() {
        let (tx, rx) = watch::channel(0);
        let backoff = Backoff::new(Duration::from_secs(300), Duration::from_secs(300));
        let mut f =
            Follower::in_registry(registry(), Role::Witnessing, Follows::Checkpoints, 0, rx)
                .with_backoff(backoff);
        assert!(f.next().now_or_never().is_none(), "nothing to witness");
        tx.send_replace(3);
        tx.send_replace(7);
        assert_eq!(next(&mut f).await, Some(0..7), "the newest, in one piece");
        f.failed();
        assert!(f.next().now_or_never().is_none(), "backing off for 7");
        tx.send_replace(9);
        assert_eq!(next(&mut f).await, Some(0..9), "9 is tried at once");
        f.advance_to(9);
        assert!(f.next().now_or_never().is_none());
    }

    #[tokio::test]
    async fn stops_when_the_size_is_no_longer_published_or_told_to() {
        let (mut f, tx) = leaves(registry(), 0, 5, 2);
        assert_eq!(next(&mut f).await, Some(0..2));
        let waiter = tokio::spawn(async move {
            f.advance_to(5);
            next(&mut f).await
        });
        drop(tx); // the sequencer stopped
        assert_eq!(waiter.await.unwrap(), None);

        let (stop_tx, stop_rx) = watch::channel(None);
        let (f, _tx) = leaves(registry(), 0, 5, 2);
        let mut f = f.stop_on(stop_rx);
        assert_eq!(next(&mut f).await, Some(0..2));
        f.advance_to(2);
        stop_tx.send_replace(Some("token revoked"));
        assert!(f.stopped());
        assert_eq!(next(&mut f).await, None, "even with leaves left");
        // Also while waiting, and while backing off.
        let (stop_tx, stop_rx) = watch::channel(None);
        let (f, _tx) = leaves(registry(), 5, 5, 2);
        let mut f = f.stop_on(stop_rx).with_backoff(Backoff::new(
            Duration::from_secs(300),
            Duration::from_secs(300),
        ));
        f.failed();
        let waiter = tokio::spawn(async move { next(&mut f).await });
        stop_tx.send_replace(Some("client read nothing"));
        assert_eq!(waiter.await.unwrap(), None);
        let (f, tx) = leaves(registry(), 5, 5, 2);
        let mut f = f.with_backoff(Backoff::new(
            Duration::from_secs(300),
            Duration::from_secs(300),
        ));
        f.failed();
        tx.send_replace(6);
        assert!(
            f.next().now_or_never().is_none(),
            "a new size does not end a leaf's backoff"
        );
        let waiter = tokio::spawn(async move { next(&mut f).await });
        drop(tx);
        assert_eq!(waiter.await.unwrap(), None, "the sequencer stopped");
    }
}
