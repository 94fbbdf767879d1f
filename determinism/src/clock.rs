//! Clocks: the only way business code learns what time it is (system, accelerated, virtual, skewed).
//!
//! Business time is milliseconds since the Unix epoch in UTC ([`UnixMillis`]); it is an
//! integer so that retry schedules, expiry and risk windows are exact and reproducible.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// A source of "now". Every component reads time through one of these, never from the OS.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time in milliseconds since the Unix epoch, UTC.
    fn now_ms(&self) -> UnixMillis;

    /// How many real (wall) milliseconds it takes for this clock to advance by `clock_ms`.
    ///
    /// A driver that sleeps on real time until the next due event uses this to turn a clock
    /// distance into a sleep. The default is one-to-one; an accelerated clock divides. A
    /// virtual clock never advances by itself, so the answer is meaningless for it and the
    /// default is kept (drivers re-check periodically anyway).
    fn wall_ms_for(&self, clock_ms: i64) -> i64 {
        clock_ms
    }
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now_ms(&self) -> UnixMillis {
        (**self).now_ms()
    }

    fn wall_ms_for(&self, clock_ms: i64) -> i64 {
        (**self).wall_ms_for(clock_ms)
    }
}

/// The operating system's wall clock (sandbox and integrator modes).
#[derive(Debug, Default, Clone)]
pub struct SystemClock;

impl SystemClock {
    /// A clock that starts at the current wall-clock time and then runs `factor` times faster
    /// than real time (a factor of 0 is treated as 1).
    pub fn accelerated(factor: u32) -> ScaledClock {
        ScaledClock::new(SystemClock.now_ms(), factor)
    }
}

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "this is the seam: the one place wall-clock time enters the program"
    )]
    fn now_ms(&self) -> UnixMillis {
        let now = OffsetDateTime::now_utc();
        nanos_to_millis(now.unix_timestamp_nanos())
    }
}

/// A wall clock that runs an integer factor faster than real time from a chosen start.
///
/// Elapsed time is measured on the monotonic clock, so adjusting the system time while the
/// sandbox runs does not make business time jump backwards. Integer arithmetic only.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    start_ms: UnixMillis,
    started: Instant,
    factor: u32,
}

impl ScaledClock {
    /// Reads `start_ms` now, then advances `factor` clock milliseconds per real millisecond
    /// (a factor of 0 is treated as 1).
    #[allow(
        clippy::disallowed_methods,
        reason = "this is the seam: the accelerated clock measures real elapsed time"
    )]
    pub fn new(start_ms: UnixMillis, factor: u32) -> Self {
        Self {
            start_ms,
            started: Instant::now(),
            factor: factor.max(1),
        }
    }

    /// The acceleration factor (at least 1).
    pub fn factor(&self) -> u32 {
        self.factor
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> UnixMillis {
        let elapsed_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.start_ms
            .saturating_add(elapsed_ms.saturating_mul(i64::from(self.factor)))
    }

    fn wall_ms_for(&self, clock_ms: i64) -> i64 {
        // Round up: waking a millisecond late is harmless, waking early costs a spin.
        let factor = i64::from(self.factor);
        clock_ms.div_euclid(factor) + i64::from(clock_ms.rem_euclid(factor) != 0)
    }
}

/// A clock that only moves when told to (simulation). Clones share the same time, so the
/// runner, the gateway and every mock channel see one timeline.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    now_ms: Arc<AtomicI64>,
}

impl VirtualClock {
    /// A virtual clock standing at `start_ms`.
    pub fn new(start_ms: UnixMillis) -> Self {
        Self {
            now_ms: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    /// Moves the clock to `ms`. Moving backwards is allowed (scenarios may script it), but
    /// the discrete-event driver never does so.
    pub fn set(&self, ms: UnixMillis) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock by `delta_ms` (saturating at the ends of the range).
    pub fn advance_ms(&self, delta_ms: i64) {
        // fetch_update never fails when the closure always returns Some.
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                Some(current.saturating_add(delta_ms))
            });
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> UnixMillis {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// One component's view of a shared clock, off by a fixed offset (clock-skew scenarios).
///
/// The scheduler must run on the shared, unskewed clock; only the component reads skewed time.
#[derive(Debug, Clone)]
pub struct SkewedClock {
    inner: Arc<dyn Clock>,
    offset_ms: i64,
}

impl SkewedClock {
    /// `inner` as seen by a component whose clock is `offset_ms` ahead (negative: behind).
    pub fn new(inner: Arc<dyn Clock>, offset_ms: i64) -> Self {
        Self { inner, offset_ms }
    }

    /// The configured skew in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> UnixMillis {
        self.inner.now_ms().saturating_add(self.offset_ms)
    }

    fn wall_ms_for(&self, clock_ms: i64) -> i64 {
        self.inner.wall_ms_for(clock_ms)
    }
}

/// Why a timestamp could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not an RFC 3339 timestamp.
    #[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
    Invalid { input: String, reason: String },
    /// A valid timestamp whose instant does not fit in [`UnixMillis`].
    #[error("timestamp {0:?} is out of range")]
    OutOfRange(String),
}

/// 0000-01-01T00:00:00.000Z: RFC 3339 has four-digit years, so formatting clamps to this.
const RFC3339_MIN_MS: UnixMillis = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z.
const RFC3339_MAX_MS: UnixMillis = 253_402_300_799_999;

/// Formats `ms` as RFC 3339 in UTC with millisecond precision, e.g. `2026-11-25T10:00:00.000Z`.
///
/// Instants outside years 0000..=9999 cannot be written in RFC 3339 and are clamped to the
/// nearest representable one, so this never fails.
pub fn format_rfc3339(ms: UnixMillis) -> String {
    let clamped = ms.clamp(RFC3339_MIN_MS, RFC3339_MAX_MS);
    let nanos = i128::from(clamped) * 1_000_000;
    match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        ),
        // Unreachable after the clamp (the time crate covers years ±9999); kept total anyway.
        Err(_) => String::from("0000-01-01T00:00:00.000Z"),
    }
}

/// Parses an RFC 3339 timestamp with any offset (`Z`, `+08:00`, …) to UTC milliseconds.
/// Sub-millisecond digits are truncated towards the past.
pub fn parse_rfc3339(s: &str) -> Result<UnixMillis, TimeError> {
    let at = OffsetDateTime::parse(s, &Rfc3339).map_err(|error| TimeError::Invalid {
        input: s.to_owned(),
        reason: error.to_string(),
    })?;
    Ok(nanos_to_millis(at.unix_timestamp_nanos()))
}

/// Whole milliseconds (floored) of a nanosecond timestamp; saturates outside the i64 range,
/// which the time crate's ±9999-year range never reaches.
fn nanos_to_millis(nanos: i128) -> UnixMillis {
    let ms = nanos.div_euclid(1_000_000);
    UnixMillis::try_from(ms).unwrap_or(if ms < 0 {
        UnixMillis::MIN
    } else {
        UnixMillis::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_is_shared_between_clones() {
        let clock = VirtualClock::new(1_000);
        let view = clock.clone();
        clock.advance_ms(500);
        assert_eq!(view.now_ms(), 1_500);
        view.set(10);
        assert_eq!(clock.now_ms(), 10);
        clock.advance_ms(i64::MAX);
        assert_eq!(clock.now_ms(), i64::MAX);
    }

    #[test]
    fn skewed_clock_follows_the_shared_clock_with_an_offset() {
        let clock = VirtualClock::new(1_000_000);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let ahead = SkewedClock::new(shared.clone(), 90_000);
        let behind = SkewedClock::new(shared, -5_000);
        assert_eq!(ahead.now_ms(), 1_090_000);
        assert_eq!(behind.now_ms(), 995_000);
        clock.advance_ms(1);
        assert_eq!(ahead.now_ms(), 1_090_001);
        assert_eq!(behind.now_ms(), 995_001);
        assert_eq!(ahead.offset_ms(), 90_000);
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now_ms() > 1_704_067_200_000);
    }

    #[test]
    fn scaled_clock_divides_wall_sleeps_rounding_up() {
        let clock = ScaledClock::new(0, 60);
        assert_eq!(clock.factor(), 60);
        assert_eq!(clock.wall_ms_for(60_000), 1_000);
        assert_eq!(clock.wall_ms_for(61), 2);
        assert_eq!(clock.wall_ms_for(0), 0);
        assert!(clock.now_ms() >= 0);
        assert_eq!(ScaledClock::new(0, 0).factor(), 1);
        assert_eq!(SystemClock.wall_ms_for(1_234), 1_234);
    }

    #[test]
    fn formats_and_parses_rfc3339() {
        let cases: &[(&str, UnixMillis)] = &[
            ("1970-01-01T00:00:00.000Z", 0),
            ("2026-11-25T10:00:00.000Z", 1_795_600_800_000),
            ("2026-11-25T10:00:00.123Z", 1_795_600_800_123),
            ("1969-12-31T23:59:59.999Z", -1),
        ];
        for (text, ms) in cases {
            assert_eq!(format_rfc3339(*ms), *text);
            assert_eq!(parse_rfc3339(text).unwrap(), *ms);
        }
    }

    #[test]
    fn parses_offsets_and_truncates_sub_millisecond_digits() {
        assert_eq!(
            parse_rfc3339("2026-11-25T18:00:00+08:00").unwrap(),
            1_795_600_800_000
        );
        assert_eq!(
            parse_rfc3339("2026-11-25T10:00:00.123999Z").unwrap(),
            1_795_600_800_123
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.9995Z").unwrap(),
            -1,
            "floors towards the past"
        );
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for text in [
            "",
            "2026-11-25",
            "2026-11-25T10:00:00",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(
                matches!(parse_rfc3339(text), Err(TimeError::Invalid { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn formatting_clamps_to_four_digit_years() {
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(i64::MIN), "0000-01-01T00:00:00.000Z");
    }
}
