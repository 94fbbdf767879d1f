//! Scheduled follow-ups (补单), run on the run's one `determinism::Scheduler`: every open order
//! is queried at its channel on the poll schedule and closed when it expires; every pending
//! refund is queried until it settles. Nothing is fired with a free `tokio::spawn`, so in
//! simulation a seed fixes the whole history (design note §9).
//!
//! Follow-ups live in the scheduler's memory; [`recover`] re-creates them from the store on
//! start, so a restart loses none.

use determinism::{job, UnixMillis};

use crate::model::{Order, Refund};
use crate::service::{Gateway, ServiceError};
use crate::state::PaymentMethod;

/// Queries of a pending refund, after its creation.
const REFUND_POLL_MS: [i64; 6] = [10_000, 30_000, 60_000, 300_000, 1_800_000, 3_600_000];
/// How many open orders / pending refunds one recovery pass re-schedules.
const RECOVERY_BATCH: i64 = 100_000;

/// Schedules the expiry of an order and its first poll.
pub fn schedule_order_followups(gateway: &Gateway, order: &Order) {
    let first_poll = next_poll_due(gateway, order, order.created_at_ms);
    schedule_order_followups_from(gateway, order, first_poll);
}

fn schedule_order_followups_from(gateway: &Gateway, order: &Order, first_poll_ms: UnixMillis) {
    schedule_expiry(gateway, order.id.clone(), order.expires_at_ms, "expiry", 0);
    schedule_poll(gateway, order, first_poll_ms);
}

/// Failed closes of one order after which an operator is alerted (`close_failing`, once).
const CLOSE_FAILURES_BEFORE_ALERT: u32 = 12;
/// The longest wait between two attempts to close an order the channel keeps refusing.
const MAX_CLOSE_RETRY_MS: i64 = 3_600_000;

/// Closes the order at `at_ms` (at the channel first); when the channel cannot confirm, tries
/// again — a poll interval later, doubling up to an hour — and alerts an operator once after
/// [`CLOSE_FAILURES_BEFORE_ALERT`] failures (the order stays open and polled meanwhile: the
/// buyer may still have paid). `source` names why (`expiry`, `barcode_timeout`).
fn schedule_expiry(
    gateway: &Gateway,
    id: crate::ids::OrderId,
    at_ms: UnixMillis,
    source: &'static str,
    failures: u32,
) {
    let again = gateway.clone();
    gateway.scheduler().schedule_at(
        at_ms,
        format!("order.{source} {id}"),
        job(move || async move {
            match again.close_order(&id, source).await {
                Ok(_) | Err(ServiceError::NotClosable(_) | ServiceError::NeedsReview(_)) => {}
                Err(error) => {
                    let failures = failures.saturating_add(1);
                    tracing::warn!(order = %id, %error, source, failures, "closing the order failed; retrying");
                    if failures == CLOSE_FAILURES_BEFORE_ALERT {
                        let message = format!(
                            "closing the order at its channel failed {failures} times ({source}); last error: {error}"
                        );
                        alert(&again, "close_failing", &id, message).await;
                    }
                    let retry_at = again.now_ms().saturating_add(close_retry_delay(&again, failures));
                    schedule_expiry(&again, id, retry_at, source, failures);
                }
            }
        }),
    );
}

/// Raises an operator alert about a follow-up that keeps failing; a failure to store it is
/// logged (the follow-up itself goes on).
async fn alert(gateway: &Gateway, kind: &str, id: &crate::ids::OrderId, message: String) {
    if let Err(alert_error) = gateway.raise_alert(kind, id.as_str(), message).await {
        tracing::warn!(order = %id, %alert_error, kind, "raising the alert failed");
    }
}

/// The wait before the next close attempt after `failures` failed ones: the poll schedule's
/// last interval, doubled per failure beyond the alert threshold's half, at most an hour.
fn close_retry_delay(gateway: &Gateway, failures: u32) -> i64 {
    let base = last_interval(gateway);
    let doublings = failures
        .saturating_sub(CLOSE_FAILURES_BEFORE_ALERT / 2)
        .min(16);
    base.saturating_mul(1_i64 << doublings)
        .min(MAX_CLOSE_RETRY_MS.max(base))
}

fn last_interval(gateway: &Gateway) -> i64 {
    let schedule = &gateway.config().poll_schedule_ms;
    match schedule.as_slice() {
        [.., before, last] => (last - before).max(1_000),
        [only] => (*only).max(1_000),
        [] => 60_000,
    }
}

/// The first poll point strictly after `after_ms`: creation + schedule[n]; past the schedule's
/// end the last interval repeats.
fn next_poll_due(gateway: &Gateway, order: &Order, after_ms: UnixMillis) -> UnixMillis {
    if order.method == PaymentMethod::Barcode {
        // Past the barcode schedule there is no next poll: the order is cancelled instead.
        return gateway
            .config()
            .barcode_poll_schedule_ms
            .iter()
            .map(|offset| order.created_at_ms.saturating_add(*offset))
            .find(|due| *due > after_ms)
            .unwrap_or(UnixMillis::MAX);
    }
    let schedule = &gateway.config().poll_schedule_ms;
    for offset in schedule {
        let due = order.created_at_ms.saturating_add(*offset);
        if due > after_ms {
            return due;
        }
    }
    let last = order
        .created_at_ms
        .saturating_add(schedule.last().copied().unwrap_or(0));
    let interval = last_interval(gateway);
    let periods = (after_ms.saturating_sub(last)) / interval + 1;
    last.saturating_add(periods.saturating_mul(interval))
}

/// Schedules a query of an open order at `due_ms` (polls stop once the order is no longer
/// open; none is scheduled at or past its expiry, which closes it instead).
fn schedule_poll(gateway: &Gateway, order: &Order, due_ms: UnixMillis) {
    if gateway.adapters().get(order.channel).is_none() || due_ms >= order.expires_at_ms {
        return;
    }
    let poller = gateway.clone();
    let id = order.id.clone();
    gateway.scheduler().schedule_at(
        due_ms,
        format!("order.poll {id}"),
        job(move || async move {
            let order = match poller.get_order(&id).await {
                Ok(order) if order.state.is_open() => order,
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(order = %id, %error, "poll skipped");
                    return;
                }
            };
            let order = match poller.query_order(&id, "query").await {
                Ok(order) => order,
                Err(error) => {
                    tracing::info!(order = %id, %error, "poll query failed; the next poll retries");
                    order
                }
            };
            if order.state.is_open() {
                let next = next_poll_due(&poller, &order, poller.now_ms());
                if next == UnixMillis::MAX {
                    // A barcode payment the buyer never confirmed: cancel it now rather than
                    // leave the buyer's money in doubt until the order expires.
                    schedule_expiry(&poller, id, poller.now_ms(), "barcode_timeout", 0);
                } else {
                    schedule_poll(&poller, &order, next);
                }
            }
        }),
    );
}

/// How long after an order's original expiry a closed-but-never-seen order is queried once more.
const LATE_CHECK_DELAY_MS: i64 = 60_000;
/// Failed late checks of one order after which an operator is alerted (`late_check_failing`,
/// once).
const LATE_CHECK_FAILURES_BEFORE_ALERT: u32 = 12;

/// A query of a closed order just after its original expiry (see `Gateway::close_order`): a
/// payment the channel took after the close is then booked to suspense even if every
/// notification was lost. A query without a verified answer (a timeout, a 5xx, an answer
/// whose signature does not verify) proves nothing, so the check is tried again — a minute
/// later, doubling up to an hour — and an operator is alerted once after
/// [`LATE_CHECK_FAILURES_BEFORE_ALERT`] failures.
pub fn schedule_late_check(gateway: &Gateway, order: &Order) {
    let at_ms = order.expires_at_ms.saturating_add(LATE_CHECK_DELAY_MS);
    schedule_late_check_at(gateway, order.id.clone(), at_ms, 0);
}

fn schedule_late_check_at(
    gateway: &Gateway,
    id: crate::ids::OrderId,
    at_ms: UnixMillis,
    failures: u32,
) {
    let checker = gateway.clone();
    gateway.scheduler().schedule_at(
        at_ms,
        format!("order.late_check {id}"),
        job(move || async move {
            match checker.query_order(&id, "late_check").await {
                Ok(_) | Err(ServiceError::NeedsReview(_) | ServiceError::OrderNotFound(_)) => {}
                Err(error) => {
                    let failures = failures.saturating_add(1);
                    tracing::info!(order = %id, %error, failures, "late check query failed; retrying");
                    if failures == LATE_CHECK_FAILURES_BEFORE_ALERT {
                        let message = format!(
                            "querying the closed order at its channel for a late payment failed {failures} times; last error: {error}"
                        );
                        alert(&checker, "late_check_failing", &id, message).await;
                    }
                    let doublings = failures.saturating_sub(1).min(6);
                    let wait = (LATE_CHECK_DELAY_MS << doublings).min(MAX_CLOSE_RETRY_MS);
                    let retry_at = checker.now_ms().saturating_add(wait);
                    schedule_late_check_at(&checker, id, retry_at, failures);
                }
            }
        }),
    );
}

/// Schedules the queries of a pending refund.
pub fn schedule_refund_followups(gateway: &Gateway, refund: &Refund) {
    schedule_refund_poll(gateway, refund, 0);
}

fn schedule_refund_poll(gateway: &Gateway, refund: &Refund, n: usize) {
    if gateway.adapters().get(refund.channel).is_none() {
        return;
    }
    let Some(offset) = REFUND_POLL_MS.get(n.min(REFUND_POLL_MS.len() - 1)) else {
        return;
    };
    let extra = i64::try_from(n.saturating_sub(REFUND_POLL_MS.len() - 1)).unwrap_or(0);
    let due = refund.created_at_ms + offset + extra * 3_600_000;
    let poller = gateway.clone();
    let id = refund.id.clone();
    gateway.scheduler().schedule_at(
        due,
        format!("refund.poll {id} #{n}"),
        job(move || async move {
            let refund = match poller.get_refund(&id).await {
                Ok(refund) if refund.state == crate::state::RefundState::Pending => refund,
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(refund = %id, %error, "refund poll skipped");
                    return;
                }
            };
            match poller.query_refund(&id, "query").await {
                Ok(after) if after.state != crate::state::RefundState::Pending => {}
                Ok(_) | Err(_) => schedule_refund_poll(&poller, &refund, n + 1),
            }
        }),
    );
}

/// Re-creates the follow-ups of every open order and pending refund (on start).
pub async fn recover(gateway: &Gateway) -> Result<(usize, usize), ServiceError> {
    let orders = gateway.store().open_orders(RECOVERY_BATCH).await?;
    let now = gateway.now_ms();
    for order in &orders {
        // The expiry as scheduled at creation; the polls missed while stopped are folded into
        // one query now rather than a burst.
        schedule_order_followups_from(gateway, order, now);
    }
    let refunds = gateway.store().pending_refunds(RECOVERY_BATCH).await?;
    for refund in &refunds {
        schedule_refund_followups(gateway, refund);
    }
    Ok((orders.len(), refunds.len()))
}
