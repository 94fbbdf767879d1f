//! Delivery bookkeeping shared by every mock channel's notifier: the state of one
//! notification, every attempt with its outcome, and the retry decision on the channel's
//! schedule, and the sending of an attempt's copies ([`Sender`]). Channels keep what differs —
//! building and signing each copy, and their acknowledgement rule.
//!
//! It also keeps what the notification faults need across attempts: an attempt held by
//! `delay_notification` / `out_of_order_notification` (with the fault that held it), and the
//! bytes of the first copy ever sent, which `replay_notification` re-sends verbatim.

use bytes::Bytes;
use determinism::{format_rfc3339, EventId, UnixMillis};
use http::HeaderMap;

use crate::control::AttemptView;
use crate::faults::{FaultKind, FiredFault};

/// A copy of a notification exactly as it went on the wire.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    /// Send order across the channel (older sends have smaller numbers).
    pub(crate) sequence: u64,
    /// The attempt it belonged to.
    pub(crate) attempt: u32,
    pub(crate) url: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Captured {
    /// Captures `request` (before it is handed to the Transport).
    pub(crate) fn of(request: &http::Request<Bytes>, sequence: u64, attempt: u32) -> Self {
        Captured {
            sequence,
            attempt,
            url: request.uri().to_string(),
            headers: request.headers().clone(),
            body: request.body().clone(),
        }
    }

    /// The same request again, byte for byte.
    pub(crate) fn request(&self) -> Result<http::Request<Bytes>, http::Error> {
        let mut request = http::Request::post(&self.url).body(self.body.clone())?;
        *request.headers_mut() = self.headers.clone();
        Ok(request)
    }
}

/// Where an attempt is in its life.
#[derive(Debug, Clone)]
enum Phase {
    /// Waiting for its scheduled job.
    Idle,
    /// Being prepared or sent.
    InFlight,
    /// Held by a fault until a scheduled release (or, `waiting`, the trade's next
    /// notification being sent).
    Held {
        fault: FiredFault,
        release: Option<EventId>,
        waiting: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Pending,
    Acknowledged,
    GivenUp,
}

#[derive(Debug, Clone)]
struct Attempt {
    attempt: u32,
    at_ms: UnixMillis,
    http_status: Option<u16>,
    body_excerpt: String,
    error: Option<String>,
    accepted: bool,
    fault: Option<&'static str>,
}

/// What came back for one copy of a notification.
pub(crate) struct Outcome {
    pub(crate) http_status: Option<u16>,
    pub(crate) body_excerpt: String,
    pub(crate) error: Option<String>,
    pub(crate) accepted: bool,
}

/// One notification's delivery history.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryLog {
    delivery: Delivery,
    next_attempt_ms: Option<UnixMillis>,
    attempts: Vec<Attempt>,
    /// The number of the attempt to send next (jobs for any other number are stale).
    next_attempt: u32,
    phase: Phase,
    /// The job scheduled for the first attempt (cancelled when it is sent inline instead).
    first_job: Option<EventId>,
    /// The first copy ever sent.
    first_sent: Option<Captured>,
}

impl DeliveryLog {
    /// A notification whose first attempt is due at `first_attempt_ms`.
    pub(crate) fn new(first_attempt_ms: UnixMillis) -> Self {
        DeliveryLog {
            delivery: Delivery::Pending,
            next_attempt_ms: Some(first_attempt_ms),
            attempts: Vec::new(),
            next_attempt: 1,
            phase: Phase::Idle,
            first_job: None,
            first_sent: None,
        }
    }

    /// Starts attempt number `attempt`: false when the notification is no longer pending, the
    /// attempt is not the one due, or another job is already sending or holding it.
    pub(crate) fn begin(&mut self, attempt: u32) -> bool {
        if self.delivery != Delivery::Pending
            || attempt != self.next_attempt
            || !matches!(self.phase, Phase::Idle)
        {
            return false;
        }
        self.phase = Phase::InFlight;
        self.next_attempt_ms = None;
        true
    }

    /// Holds the attempt in flight until `until_ms` (when the `release` job is due); a
    /// `waiting` hold is released earlier by [`DeliveryLog::wake`].
    pub(crate) fn hold(
        &mut self,
        fault: FiredFault,
        until_ms: UnixMillis,
        release: Option<EventId>,
        waiting: bool,
    ) {
        self.phase = Phase::Held {
            fault,
            release,
            waiting,
        };
        self.next_attempt_ms = Some(until_ms);
    }

    /// Resumes held attempt number `attempt`: the fault that held it, or None when it is not
    /// held any more (released by another job).
    pub(crate) fn release(&mut self, attempt: u32) -> Option<FiredFault> {
        if self.delivery != Delivery::Pending || attempt != self.next_attempt {
            return None;
        }
        match std::mem::replace(&mut self.phase, Phase::InFlight) {
            Phase::Held { fault, .. } => {
                self.next_attempt_ms = None;
                Some(fault)
            }
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// A `waiting` hold whose awaited notification has been sent: it is now due at `now_ms`.
    /// Returns the attempt to release and the release job to cancel, or None when the
    /// notification is not waiting.
    pub(crate) fn wake(&mut self, now_ms: UnixMillis) -> Option<(u32, Option<EventId>)> {
        match &mut self.phase {
            Phase::Held {
                release, waiting, ..
            } if *waiting => {
                *waiting = false;
                self.next_attempt_ms = Some(now_ms);
                Some((self.next_attempt, release.take()))
            }
            _ => None,
        }
    }

    /// Notes the job scheduled for the first attempt.
    pub(crate) fn set_first_job(&mut self, job: EventId) {
        self.first_job = Some(job);
    }

    /// Takes the job scheduled for the first attempt, if it has not run.
    pub(crate) fn take_first_job(&mut self) -> Option<EventId> {
        if self.next_attempt == 1 && matches!(self.phase, Phase::Idle) {
            self.first_job.take()
        } else {
            None
        }
    }

    /// Keeps `copy` if it is the first copy ever sent.
    pub(crate) fn capture(&mut self, copy: Captured) {
        if self.first_sent.is_none() {
            self.first_sent = Some(copy);
        }
    }

    /// The first copy ever sent, if any.
    pub(crate) fn first_sent(&self) -> Option<&Captured> {
        self.first_sent.as_ref()
    }

    /// Records a `replay_notification` re-send of the captured copy: shown among the attempts
    /// (under the captured copy's number), without changing the delivery state.
    pub(crate) fn record_replay(&mut self, attempt: u32, now_ms: UnixMillis, outcome: Outcome) {
        self.attempts.push(Attempt {
            attempt,
            at_ms: now_ms,
            http_status: outcome.http_status,
            body_excerpt: outcome.body_excerpt,
            error: outcome.error,
            accepted: outcome.accepted,
            fault: Some(FaultKind::ReplayNotification.name()),
        });
    }

    /// Records the outcomes of attempt number `attempt` (none: the fault dropped every copy)
    /// and decides what follows: acknowledged by any copy, re-sent after
    /// `retry_delays_ms[attempt - 1]`, or given up past the schedule's end. Returns when the
    /// next attempt is due, for the caller to schedule.
    pub(crate) fn record(
        &mut self,
        attempt: u32,
        now_ms: UnixMillis,
        mut outcomes: Vec<Outcome>,
        fault: Option<&'static str>,
        retry_delays_ms: &[i64],
    ) -> Option<UnixMillis> {
        if outcomes.is_empty() {
            outcomes.push(Outcome {
                http_status: None,
                body_excerpt: String::new(),
                error: Some("not sent: dropped by fault".into()),
                accepted: false,
            });
        }
        let accepted = outcomes.iter().any(|outcome| outcome.accepted);
        self.phase = Phase::Idle;
        self.next_attempt = attempt.saturating_add(1);
        for outcome in outcomes {
            self.attempts.push(Attempt {
                attempt,
                at_ms: now_ms,
                http_status: outcome.http_status,
                body_excerpt: outcome.body_excerpt,
                error: outcome.error,
                accepted: outcome.accepted,
                fault,
            });
        }
        if accepted {
            self.delivery = Delivery::Acknowledged;
            return None;
        }
        let next_ms = usize::try_from(attempt)
            .ok()
            .and_then(|n| retry_delays_ms.get(n.saturating_sub(1)))
            .map(|delay| now_ms.saturating_add(*delay));
        match next_ms {
            Some(next_ms) => self.next_attempt_ms = Some(next_ms),
            None => self.delivery = Delivery::GivenUp,
        }
        next_ms
    }

    pub(crate) fn state_name(&self) -> &'static str {
        match self.delivery {
            Delivery::Pending => "pending",
            Delivery::Acknowledged => "acknowledged",
            Delivery::GivenUp => "given_up",
        }
    }

    pub(crate) fn next_attempt_at(&self) -> Option<String> {
        self.next_attempt_ms.map(format_rfc3339)
    }

    pub(crate) fn attempt_views(&self) -> Vec<AttemptView> {
        self.attempts
            .iter()
            .map(|attempt| AttemptView {
                attempt: attempt.attempt,
                at: format_rfc3339(attempt.at_ms),
                at_ms: attempt.at_ms,
                http_status: attempt.http_status,
                body_excerpt: attempt.body_excerpt.clone(),
                error: attempt.error.clone(),
                accepted: attempt.accepted,
                fault: attempt.fault.map(str::to_owned),
            })
            .collect()
    }
}

/// One notification as the replay choice sees it: (merchant, trade, log).
pub(crate) type ReplaySource<'a> = (&'a str, &'a str, &'a DeliveryLog);

/// `replay_notification`'s choice: the index and copy of the oldest notification ever sent to
/// `merchant` for `trade`, else for any of the merchant's trades.
pub(crate) fn oldest_sent<'a>(
    notifications: impl Iterator<Item = ReplaySource<'a>> + Clone,
    merchant: &str,
    trade: &str,
) -> Option<(usize, Captured)> {
    let oldest = |same_trade: bool| {
        notifications
            .clone()
            .enumerate()
            .filter(|(_, (m, t, _))| *m == merchant && (!same_trade || *t == trade))
            .filter_map(|(index, (_, _, log))| log.first_sent().map(|copy| (index, copy)))
            .min_by_key(|(_, copy)| copy.sequence)
            .map(|(index, copy)| (index, copy.clone()))
    };
    oldest(true).or_else(|| oldest(false))
}

/// When an attempt held by `fault` is released: (due time, whether the trade's next
/// notification releases it earlier). None for faults that do not hold attempts.
pub(crate) fn hold_of(fault: &FiredFault, now_ms: UnixMillis) -> Option<(UnixMillis, bool)> {
    let (hold_ms, waiting) = match fault.kind {
        FaultKind::DelayNotification => (fault.param_u64("delay_ms").unwrap_or(0), false),
        FaultKind::OutOfOrderNotification => (
            fault
                .param_u64("max_hold_ms")
                .unwrap_or(crate::faults::DEFAULT_MAX_HOLD_MS),
            true,
        ),
        _ => return None,
    };
    let hold_ms = i64::try_from(hold_ms.min(crate::faults::MAX_HOLD_MS)).unwrap_or(0);
    Some((now_ms.saturating_add(hold_ms), waiting))
}

/// What a request failing before it reached the Transport is recorded as.
pub(crate) fn unsendable(url: &str, error: &http::Error) -> Outcome {
    Outcome {
        http_status: None,
        body_excerpt: String::new(),
        error: Some(format!("invalid notify_url {url:?}: {error}")),
        accepted: false,
    }
}

/// `replay_notification`'s copy to re-send before this attempt, when that is the fault that
/// fired (see [`oldest_sent`]).
pub(crate) fn replay_for<'a>(
    fault: Option<&FiredFault>,
    notifications: impl Iterator<Item = ReplaySource<'a>> + Clone,
    merchant: &str,
    trade: &str,
) -> Option<(usize, Captured)> {
    match fault {
        Some(fault) if fault.kind == FaultKind::ReplayNotification => {
            oldest_sent(notifications, merchant, trade)
        }
        _ => None,
    }
}

/// A channel's rule for which answer acknowledges a notification.
pub(crate) type Acknowledges = fn(http::StatusCode, &[u8]) -> bool;

/// How a channel sends a notification copy: its transport, its patience and its
/// acknowledgement rule.
#[derive(Clone, Copy)]
pub(crate) struct Sender<'a> {
    pub(crate) transport: &'a dyn determinism::Transport,
    pub(crate) timeout_ms: u64,
    pub(crate) acknowledges: Acknowledges,
}

/// Longest answer excerpt kept per attempt.
const EXCERPT_CHARS: usize = 200;

impl Sender<'_> {
    /// Sends one copy and reads what came back.
    pub(crate) async fn transmit(&self, request: http::Request<Bytes>) -> Outcome {
        match self.transport.send(request, self.timeout_ms).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body();
                Outcome {
                    http_status: Some(status.as_u16()),
                    body_excerpt: String::from_utf8_lossy(&body)
                        .chars()
                        .take(EXCERPT_CHARS)
                        .collect(),
                    error: None,
                    accepted: (self.acknowledges)(status, &body),
                }
            }
            Err(error) => Outcome {
                http_status: None,
                body_excerpt: String::new(),
                error: Some(error.to_string()),
                accepted: false,
            },
        }
    }

    /// Sends one attempt: first the replayed copy `replay` names (`replay_notification`), then
    /// every copy of the attempt (none when dropped, several when duplicated).
    pub(crate) async fn send_attempt(
        &self,
        url: &str,
        copies: Vec<Result<http::Request<Bytes>, http::Error>>,
        replay: Option<(usize, Captured)>,
        attempt: u32,
    ) -> SentAttempt {
        let replayed = match replay {
            Some((replayed, copy)) => {
                let outcome = match copy.request() {
                    Ok(request) => self.transmit(request).await,
                    Err(error) => unsendable(&copy.url, &error),
                };
                Some((replayed, copy.attempt, outcome))
            }
            None => None,
        };
        let mut outcomes = Vec::new();
        let mut first_copy = None;
        for copy in copies {
            match copy {
                Ok(request) => {
                    if first_copy.is_none() {
                        first_copy = Some(Captured::of(&request, 0, attempt));
                    }
                    outcomes.push(self.transmit(request).await);
                }
                Err(error) => outcomes.push(unsendable(url, &error)),
            }
        }
        SentAttempt {
            replayed,
            outcomes,
            first_copy,
        }
    }
}

/// What one attempt sent: the replayed copy's (notification index, attempt, outcome), the
/// outcome of each copy, and the first copy's bytes for a later replay.
pub(crate) struct SentAttempt {
    pub(crate) replayed: Option<(usize, u32, Outcome)>,
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) first_copy: Option<Captured>,
}
