//! The scheduler of due events: one per run, shared by the gateway and every mock channel, so
//! that retries, notifications, polling and expiry happen in one deterministic order.
//!
//! Events run in `(due_ms, sequence)` order. In simulation [`run_virtual_until`] moves a
//! [`VirtualClock`] from event to event (discrete-event simulation); in the sandbox
//! [`drive_on_system_clock`] sleeps on real time until the next event is due.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Clock, UnixMillis, VirtualClock};

/// A boxed, sendable future (this crate avoids a dependency on the `futures` crate).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Work to do when an event falls due. It is a closure so that nothing starts before the
/// event's time: the future is only created when the event runs.
pub type Job = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Wraps an async closure as a [`Job`]: `scheduler.schedule_after(15_000, "retry", job(move || async move { … }))`.
pub fn job<F, Fut>(work: F) -> Job
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move || -> BoxFuture<'static, ()> { Box::pin(work()) })
}

/// Identifies a scheduled event; the inner number is the scheduling sequence, which breaks
/// ties between events due at the same millisecond (first scheduled runs first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(u64);

impl EventId {
    /// The scheduling sequence number.
    pub fn sequence(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "evt-{}", self.0)
    }
}

/// A scheduled event that has not run yet, for inspection (dashboards, reports, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub id: EventId,
    pub due_ms: UnixMillis,
    pub label: String,
}

struct Entry {
    label: String,
    job: Job,
}

#[derive(Default)]
struct Queue {
    /// Ordered by (due, sequence): the first entry is always the next to run.
    by_due: BTreeMap<(UnixMillis, u64), Entry>,
    /// sequence → due, so that cancel finds an entry without scanning.
    due_of: HashMap<u64, UnixMillis>,
    next_sequence: u64,
}

struct Shared {
    clock: Arc<dyn Clock>,
    queue: Mutex<Queue>,
    /// Wakes the system-clock driver when an event is scheduled, because it may be due
    /// earlier than the one the driver is sleeping towards.
    scheduled: Notify,
}

/// The run's scheduler of due events. Cloning yields another handle to the same queue.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queue = self.lock();
        f.debug_struct("Scheduler")
            .field("clock", &self.shared.clock)
            .field("pending", &queue.by_due.len())
            .field("next_due_ms", &queue.by_due.keys().next().map(|key| key.0))
            .finish()
    }
}

impl Scheduler {
    /// A scheduler whose notion of "due" is `clock`. Give it the shared, unskewed clock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: Arc::new(Shared {
                clock,
                queue: Mutex::new(Queue::default()),
                scheduled: Notify::new(),
            }),
        }
    }

    /// The clock this scheduler runs on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.shared.clock)
    }

    /// Schedules `job` to run once the clock reaches `due_ms`. A time in the past means
    /// "as soon as possible", still in (due, sequence) order.
    pub fn schedule_at(&self, due_ms: UnixMillis, label: impl Into<String>, job: Job) -> EventId {
        let label = label.into();
        let id = {
            let mut queue = self.lock();
            let sequence = queue.next_sequence;
            queue.next_sequence = sequence.saturating_add(1);
            queue.due_of.insert(sequence, due_ms);
            queue.by_due.insert(
                (due_ms, sequence),
                Entry {
                    label: label.clone(),
                    job,
                },
            );
            EventId(sequence)
        };
        tracing::trace!(event = %id, due_ms, %label, "scheduled");
        // notify_one stores a permit when the driver is not waiting yet, so a wake-up that
        // races with the driver computing its next sleep is not lost.
        self.shared.scheduled.notify_one();
        id
    }

    /// Schedules `job` `delay_ms` after the clock's current time.
    pub fn schedule_after(&self, delay_ms: i64, label: impl Into<String>, job: Job) -> EventId {
        let due_ms = self.shared.clock.now_ms().saturating_add(delay_ms);
        self.schedule_at(due_ms, label, job)
    }

    /// Removes a pending event. Returns false if it already ran, is running or was cancelled.
    pub fn cancel(&self, id: EventId) -> bool {
        let mut queue = self.lock();
        match queue.due_of.remove(&id.0) {
            Some(due_ms) => queue.by_due.remove(&(due_ms, id.0)).is_some(),
            None => false,
        }
    }

    /// When the next pending event is due, if any.
    pub fn next_due_ms(&self) -> Option<UnixMillis> {
        self.lock().by_due.keys().next().map(|key| key.0)
    }

    /// All pending events in the order they will run.
    pub fn pending(&self) -> Vec<PendingEvent> {
        self.lock()
            .by_due
            .iter()
            .map(|(&(due_ms, sequence), entry)| PendingEvent {
                id: EventId(sequence),
                due_ms,
                label: entry.label.clone(),
            })
            .collect()
    }

    /// Runs every event due at or before the clock's current time, one at a time, in
    /// (due, sequence) order, including events those jobs schedule that are themselves due
    /// already. Returns how many ran.
    ///
    /// The clock is re-read before each event, so a job that advances a virtual clock (a
    /// delay fault) makes later events due within the same call; order is still (due,
    /// sequence). A job that keeps rescheduling itself at the current time never lets this
    /// return: schedule retries at a positive delay.
    pub async fn run_due(&self) -> usize {
        let mut ran = 0;
        while let Some((id, due_ms, label, job)) = self.pop_due() {
            tracing::debug!(event = %id, due_ms, %label, "running");
            // The lock is released here: the job may schedule or cancel events.
            job().await;
            ran += 1;
        }
        ran
    }

    fn pop_due(&self) -> Option<(EventId, UnixMillis, String, Job)> {
        let now_ms = self.shared.clock.now_ms();
        let mut queue = self.lock();
        let first_entry = queue.by_due.first_entry()?;
        let (due_ms, sequence) = *first_entry.key();
        if due_ms > now_ms {
            return None;
        }
        let entry = first_entry.remove();
        queue.due_of.remove(&sequence);
        Some((EventId(sequence), due_ms, entry.label, entry.job))
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic inside the lock cannot leave the queue half-updated (each critical section
        // is a few map operations), so a poisoned lock is still consistent.
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Discrete-event driver for simulation: runs what is due, moves `clock` to the next due
/// event while that is at or before `until_ms`, and finally moves it to `until_ms`.
/// Returns how many events ran.
///
/// `scheduler` must run on `clock` (or on a clone of it). The clock never moves backwards: if
/// a job advanced it beyond `until_ms` (a long delay fault) it stays there.
pub async fn run_virtual_until(
    scheduler: &Scheduler,
    clock: &VirtualClock,
    until_ms: UnixMillis,
) -> usize {
    let mut ran = scheduler.run_due().await;
    while let Some(next_ms) = scheduler.next_due_ms() {
        if next_ms > until_ms {
            break;
        }
        if next_ms > clock.now_ms() {
            clock.set(next_ms);
        }
        let ran_now = scheduler.run_due().await;
        if ran_now == 0 {
            // The event did not become due although the clock reached it: the scheduler is
            // not on this clock. Stop rather than spin forever.
            tracing::warn!(
                next_ms,
                "run_virtual_until: scheduler does not run on the given virtual clock"
            );
            break;
        }
        ran += ran_now;
    }
    if clock.now_ms() < until_ms {
        clock.set(until_ms);
    }
    ran
}

/// Longest single real sleep of the system-clock driver. Re-checking at least this often
/// bounds the damage of a clock that moved under us (virtual clock, system time change).
const MAX_DRIVER_SLEEP_MS: i64 = 1_000;

/// Sandbox driver: runs due events on the scheduler's (system or accelerated) clock, sleeping
/// in real time until the next one and waking early when an earlier event is scheduled.
/// Returns once `shutdown` resolves; shutdown is observed between events, never in the
/// middle of one.
pub async fn drive_on_system_clock(
    scheduler: Scheduler,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let clock = scheduler.clock();
    loop {
        scheduler.run_due().await;
        // Create the wake-up future before reading the queue; together with notify_one's
        // stored permit this closes the window between reading and sleeping.
        let scheduled = scheduler.shared.scheduled.notified();
        let sleep_ms = match scheduler.next_due_ms() {
            Some(due_ms) => clock
                .wall_ms_for(due_ms.saturating_sub(clock.now_ms()))
                .clamp(0, MAX_DRIVER_SLEEP_MS),
            None => MAX_DRIVER_SLEEP_MS,
        };
        let sleep_ms = u64::try_from(sleep_ms).unwrap_or(0);
        tokio::select! {
            () = &mut shutdown => break,
            () = scheduled => {}
            () = real_sleep(sleep_ms) => {}
        }
    }
    tracing::debug!(
        pending = scheduler.next_due_ms().is_some(),
        "scheduler driver stopped"
    );
}

#[allow(
    clippy::disallowed_methods,
    reason = "this is the seam: the sandbox driver waits on real time for the next due event"
)]
async fn real_sleep(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    type Log = Arc<StdMutex<Vec<(String, UnixMillis)>>>;

    fn setup(start_ms: UnixMillis) -> (VirtualClock, Scheduler, Log) {
        let clock = VirtualClock::new(start_ms);
        let scheduler = Scheduler::new(Arc::new(clock.clone()));
        (clock, scheduler, Arc::new(StdMutex::new(Vec::new())))
    }

    fn record(log: &Log, clock: &VirtualClock, name: &str) -> Job {
        let log = Arc::clone(log);
        let clock = clock.clone();
        let name = name.to_owned();
        job(move || async move {
            log.lock().unwrap().push((name, clock.now_ms()));
        })
    }

    fn names(log: &Log) -> Vec<String> {
        log.lock()
            .unwrap()
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    }

    #[tokio::test]
    async fn runs_due_events_in_due_then_sequence_order() {
        let (clock, scheduler, log) = setup(1_000);
        scheduler.schedule_at(1_500, "c", record(&log, &clock, "c"));
        scheduler.schedule_at(1_200, "a", record(&log, &clock, "a"));
        scheduler.schedule_at(1_500, "d", record(&log, &clock, "d"));
        scheduler.schedule_at(1_200, "b", record(&log, &clock, "b"));
        scheduler.schedule_at(9_000, "later", record(&log, &clock, "later"));

        assert_eq!(scheduler.run_due().await, 0, "nothing is due yet");
        clock.set(1_500);
        assert_eq!(scheduler.run_due().await, 4);
        assert_eq!(names(&log), ["a", "b", "c", "d"]);
        assert_eq!(scheduler.next_due_ms(), Some(9_000));
        let pending = scheduler.pending();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].label, "later");
        assert_eq!(pending[0].due_ms, 9_000);
    }

    #[tokio::test]
    async fn runs_events_scheduled_by_jobs_when_they_are_due() {
        let (clock, scheduler, log) = setup(0);
        let inner_scheduler = scheduler.clone();
        let (inner_log, inner_clock) = (Arc::clone(&log), clock.clone());
        scheduler.schedule_at(
            10,
            "outer",
            job(move || async move {
                inner_log.lock().unwrap().push(("outer".into(), 10));
                // Due now: runs in the same run_due call.
                inner_scheduler.schedule_after(0, "now", record(&inner_log, &inner_clock, "now"));
                // Due in the past: also runs now.
                inner_scheduler.schedule_at(5, "past", record(&inner_log, &inner_clock, "past"));
                // Due later: waits.
                inner_scheduler.schedule_after(1, "soon", record(&inner_log, &inner_clock, "soon"));
            }),
        );
        clock.set(10);
        assert_eq!(scheduler.run_due().await, 3);
        assert_eq!(names(&log), ["outer", "past", "now"]);
        assert_eq!(scheduler.next_due_ms(), Some(11));
    }

    #[tokio::test]
    async fn cancelled_events_do_not_run() {
        let (clock, scheduler, log) = setup(0);
        let keep = scheduler.schedule_at(5, "keep", record(&log, &clock, "keep"));
        let drop = scheduler.schedule_at(3, "drop", record(&log, &clock, "drop"));
        assert!(keep < drop, "ids follow scheduling order");
        assert_eq!(scheduler.next_due_ms(), Some(3));
        assert!(scheduler.cancel(drop));
        assert!(!scheduler.cancel(drop), "second cancel finds nothing");
        assert_eq!(scheduler.next_due_ms(), Some(5));
        clock.set(5);
        assert_eq!(scheduler.run_due().await, 1);
        assert!(!scheduler.cancel(keep), "already ran");
        assert_eq!(names(&log), ["keep"]);
        assert_eq!(scheduler.next_due_ms(), None);
        assert!(format!("{scheduler:?}").contains("pending: 0"));
    }

    #[tokio::test]
    async fn simulates_a_24_hour_retry_schedule_on_the_virtual_clock() {
        // A WeChat-style notification retry schedule, in seconds after the previous attempt.
        const DELAYS_S: [i64; 15] = [
            15, 15, 30, 180, 600, 1_200, 1_800, 1_800, 1_800, 3_600, 10_800, 10_800, 10_800,
            21_600, 21_600,
        ];
        let start_ms = 1_795_600_800_000;
        let (clock, scheduler, log) = setup(start_ms);

        fn attempt(scheduler: Scheduler, clock: VirtualClock, log: Log, index: usize) -> Job {
            job(move || async move {
                log.lock()
                    .unwrap()
                    .push((format!("attempt {index}"), clock.now_ms()));
                if let Some(delay_s) = DELAYS_S.get(index) {
                    let next = attempt(scheduler.clone(), clock, log, index + 1);
                    scheduler.schedule_after(delay_s * 1_000, "notify retry", next);
                }
            })
        }
        scheduler.schedule_at(
            start_ms,
            "notify",
            attempt(scheduler.clone(), clock.clone(), Arc::clone(&log), 0),
        );

        let until_ms = start_ms + 25 * 3_600_000;
        let ran = run_virtual_until(&scheduler, &clock, until_ms).await;

        assert_eq!(ran, DELAYS_S.len() + 1);
        let mut expected = vec![start_ms];
        for delay_s in DELAYS_S {
            expected.push(expected.last().unwrap() + delay_s * 1_000);
        }
        let instants: Vec<_> = log.lock().unwrap().iter().map(|(_, at)| *at).collect();
        assert_eq!(instants, expected);
        assert_eq!(expected.last().unwrap() - start_ms, 86_640_000, "24h04m");
        assert_eq!(clock.now_ms(), until_ms);
        assert_eq!(scheduler.next_due_ms(), None);
    }

    #[tokio::test]
    async fn run_virtual_until_stops_at_the_horizon() {
        let (clock, scheduler, log) = setup(0);
        scheduler.schedule_at(100, "in", record(&log, &clock, "in"));
        scheduler.schedule_at(200, "edge", record(&log, &clock, "edge"));
        scheduler.schedule_at(201, "out", record(&log, &clock, "out"));
        assert_eq!(run_virtual_until(&scheduler, &clock, 200).await, 2);
        assert_eq!(
            *log.lock().unwrap(),
            [("in".into(), 100), ("edge".into(), 200)]
        );
        assert_eq!(clock.now_ms(), 200);
        assert_eq!(scheduler.next_due_ms(), Some(201));

        // A scheduler on another clock cannot be driven; the driver gives up instead of spinning.
        let other = Scheduler::new(Arc::new(VirtualClock::new(0)));
        other.schedule_at(50, "elsewhere", record(&log, &clock, "elsewhere"));
        assert_eq!(run_virtual_until(&other, &clock, 300).await, 0);
        assert_eq!(clock.now_ms(), 300);
    }

    #[tokio::test]
    async fn system_clock_driver_runs_a_job_when_due_and_stops_on_shutdown() {
        let scheduler = Scheduler::new(Arc::new(crate::clock::SystemClock));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<UnixMillis>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let clock = scheduler.clock();
        let scheduled_at = clock.now_ms();
        let driver = drive_on_system_clock(scheduler.clone(), async move {
            let _ = stop_rx.await;
        });
        let test = async move {
            // Scheduled after the driver started sleeping: it must be woken early.
            scheduler.schedule_after(
                50,
                "soon",
                job(move || async move {
                    let _ = done_tx.send(clock.now_ms());
                }),
            );
            let ran_at = tokio::time::timeout(Duration::from_secs(5), done_rx)
                .await
                .expect("job ran within 5 s")
                .unwrap();
            assert!(ran_at >= scheduled_at + 50);
            stop_tx.send(()).unwrap();
        };
        let (_, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(driver, test)
        })
        .await
        .expect("driver stopped on shutdown");
    }

    #[test]
    fn driver_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let scheduler = Scheduler::new(Arc::new(VirtualClock::new(0)));
        let driver = drive_on_system_clock(scheduler.clone(), std::future::pending());
        assert_send(&driver);
        let run = scheduler.run_due();
        assert_send(&run);
    }
}
