//! Delivery bookkeeping shared by every mock channel's notifier: the state of one
//! notification, every attempt with its outcome, and the retry decision on the channel's
//! schedule. Channels keep what differs — building, signing and sending each copy.

use determinism::{format_rfc3339, UnixMillis};

use crate::control::AttemptView;

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
}

impl DeliveryLog {
    /// A notification whose first attempt is due at `first_attempt_ms`.
    pub(crate) fn new(first_attempt_ms: UnixMillis) -> Self {
        DeliveryLog {
            delivery: Delivery::Pending,
            next_attempt_ms: Some(first_attempt_ms),
            attempts: Vec::new(),
        }
    }

    /// Starts an attempt: false when the notification is no longer pending (nothing to send).
    pub(crate) fn begin(&mut self) -> bool {
        if self.delivery != Delivery::Pending {
            return false;
        }
        self.next_attempt_ms = None;
        true
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
