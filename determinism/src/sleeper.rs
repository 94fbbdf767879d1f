//! Sleepers: how an in-flight exchange waits (a delay or timeout fault) on real or virtual time.

use std::fmt;
use std::time::Duration;

use crate::clock::VirtualClock;
use crate::scheduler::BoxFuture;

/// Waits for a number of clock milliseconds.
pub trait Sleeper: Send + Sync + fmt::Debug {
    /// A future that completes after `ms` milliseconds of this sleeper's time.
    fn sleep_ms(&self, ms: u64) -> BoxFuture<'static, ()>;
}

/// Sleeps in real time (sandbox).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemSleeper;

impl Sleeper for SystemSleeper {
    #[allow(
        clippy::disallowed_methods,
        reason = "this is the seam: a delay fault in the sandbox really waits"
    )]
    fn sleep_ms(&self, ms: u64) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }
}

/// "Sleeps" by advancing a virtual clock and returning at once (simulation).
///
/// A discrete-event run is single-threaded: while this exchange is in flight nothing else
/// can happen, so waiting is the same as moving the clock forward. Events that fall due in
/// the skipped interval run right after the current one, still in (due, sequence) order.
#[derive(Debug, Clone)]
pub struct VirtualSleeper(pub VirtualClock);

impl Sleeper for VirtualSleeper {
    fn sleep_ms(&self, ms: u64) -> BoxFuture<'static, ()> {
        let clock = self.0.clone();
        // Advance when awaited, not when created, like a real sleep.
        Box::pin(async move { clock.advance_ms(i64::try_from(ms).unwrap_or(i64::MAX)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    #[tokio::test]
    async fn virtual_sleeper_advances_the_clock_immediately() {
        let clock = VirtualClock::new(100);
        let sleeper = VirtualSleeper(clock.clone());
        sleeper.sleep_ms(2_500).await;
        assert_eq!(clock.now_ms(), 2_600);
    }

    #[tokio::test]
    async fn system_sleeper_sleeps_on_tokio_time() {
        // Bounded: the real wait is a millisecond.
        tokio::time::timeout(Duration::from_secs(5), SystemSleeper.sleep_ms(1))
            .await
            .unwrap();
    }
}
