//! Asynchronous notifications (`notify_type=trade_status_sync`): a signed form POST to the
//! trade's `notify_url` through the Transport, acknowledged only by the exact body `success`,
//! otherwise re-sent after 4m, 10m, 10m, 1h, 2h, 6h, 15h (8 attempts in about 25 h, notes A4).
//! Every attempt is a job on the scheduler, never a free spawn.

use std::collections::BTreeMap;
use std::sync::Arc;

use determinism::{job, EntropyExt, EventId, UnixMillis};
use http::header::CONTENT_TYPE;

use super::trade::TradeStatus;
use super::wire;
use super::{AlipayMock, State};
use crate::control::NotificationView;
use crate::delivery::{self, DeliveryLog, Sender, SentAttempt};
use crate::faults::{FaultKind, FiredFault};
use crate::money::{format_yuan, parse_yuan};

/// Delay before attempt n+2, after attempt n+1 failed (attempt 1 is immediate).
const RETRY_DELAYS_MS: [i64; 7] = [
    4 * 60_000,
    10 * 60_000,
    10 * 60_000,
    3_600_000,
    2 * 3_600_000,
    6 * 3_600_000,
    15 * 3_600_000,
];
/// How long one attempt may take before it counts as failed. Not published by Alipay;
/// 15 s is a common merchant-side budget. In-process calls do not enforce it.
const NOTIFY_TIMEOUT_MS: u64 = 15_000;
/// Upper bound on `duplicate_notification` copies, so a typo cannot flood a merchant.
const MAX_COPIES: u64 = 10;

/// What caused a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    Payment,
    Refund {
        out_request_no: String,
        at_ms: UnixMillis,
    },
    Close,
}

impl NotifyEvent {
    fn name(&self) -> &'static str {
        match self {
            NotifyEvent::Payment => "payment",
            NotifyEvent::Refund { .. } => "refund",
            NotifyEvent::Close => "close",
        }
    }
}

/// One notification and its delivery history.
#[derive(Debug, Clone)]
pub struct Notification {
    index: usize,
    /// The app it was sent for (replay picks among the same merchant's notifications).
    merchant: String,
    /// The trade's out_trade_no.
    trade: String,
    notify_id: String,
    url: String,
    event: &'static str,
    status: &'static str,
    /// Every field except notify_time, sign_type and sign, which each attempt adds.
    params: BTreeMap<String, String>,
    log: DeliveryLog,
}

impl Notification {
    pub fn view(&self) -> NotificationView {
        NotificationView {
            id: format!("ntf_{}", self.index + 1),
            notify_id: self.notify_id.clone(),
            url: self.url.clone(),
            event: self.event.into(),
            status: self.status.into(),
            state: self.log.state_name().into(),
            next_attempt_at: self.log.next_attempt_at(),
            attempts: self.log.attempt_views(),
        }
    }
}

/// One copy to send in an attempt.
struct Outgoing {
    body: String,
}

impl AlipayMock {
    /// Queues a notification of the trade's current status if its product notifies that
    /// status and the trade has a notify_url.
    pub(super) fn notify_status(
        &self,
        state: &mut State,
        key: &str,
        event: NotifyEvent,
        now_ms: UnixMillis,
    ) {
        let index = state.notifications.len();
        let Some(trade) = state.trades.get_mut(key) else {
            return;
        };
        let Some(url) = trade.notify_url.clone() else {
            return;
        };
        if !trade.product.notifies(trade.status) {
            return;
        }
        let paid = if trade.paid_ms.is_some() {
            trade.total_minor
        } else {
            0
        };
        let mut params = BTreeMap::new();
        let mut put = |key: &str, value: String| {
            // Empty values are never sent: some SDKs sign them, others skip them (notes A4).
            if !value.is_empty() {
                params.insert(key.to_owned(), value);
            }
        };
        let notify_id = self.entropy.hex(16);
        put("notify_type", "trade_status_sync".into());
        put("notify_id", notify_id.clone());
        put("app_id", trade.app_id.clone());
        put("auth_app_id", trade.app_id.clone());
        put("charset", "utf-8".into());
        put("version", "1.0".into());
        put("trade_no", trade.trade_no.clone());
        put("out_trade_no", trade.out_trade_no.clone());
        if let Some(buyer) = &trade.buyer {
            put("buyer_id", buyer.user_id.clone());
            put("buyer_logon_id", buyer.logon_id.clone());
        }
        put("seller_id", self.seller_id.clone());
        put("trade_status", trade.status.name().into());
        put("total_amount", format_yuan(trade.total_minor));
        put("receipt_amount", format_yuan(paid));
        put("invoice_amount", format_yuan(paid));
        put("buyer_pay_amount", format_yuan(paid));
        put("point_amount", "0.00".into());
        put("subject", trade.subject.clone());
        put("body", trade.body.clone().unwrap_or_default());
        put(
            "passback_params",
            trade.passback_params.clone().unwrap_or_default(),
        );
        if let Some(created_ms) = trade.gmt_create_ms {
            put("gmt_create", wire::format_beijing(created_ms));
        }
        if let Some(paid_ms) = trade.paid_ms {
            put("gmt_payment", wire::format_beijing(paid_ms));
            put(
                "fund_bill_list",
                format!(
                    r#"[{{"amount":"{}","fundChannel":"ALIPAYACCOUNT"}}]"#,
                    format_yuan(paid)
                ),
            );
        }
        if let NotifyEvent::Refund {
            out_request_no,
            at_ms,
        } = &event
        {
            put("refund_fee", format_yuan(trade.refunded_minor));
            put("gmt_refund", wire::format_beijing_millis(*at_ms));
            put("out_biz_no", out_request_no.clone());
        }
        if trade.status == TradeStatus::TradeClosed {
            if let Some(closed_ms) = trade.closed_ms {
                put("gmt_close", wire::format_beijing(closed_ms));
            }
        }
        trade.notifications.push(index);
        let merchant = trade.app_id.clone();
        let trade_key = key.to_owned();
        state.notifications.push(Notification {
            index,
            merchant,
            trade: trade_key,
            notify_id,
            url,
            event: event.name(),
            status: trade.status.name(),
            params,
            log: DeliveryLog::new(now_ms),
        });
        let first = self.schedule_attempt(index, 1, now_ms, false);
        if let Some(notification) = state.notifications.get_mut(index) {
            notification.log.set_first_job(first);
        }
    }

    /// Schedules attempt `attempt` (`held`: the release of an attempt a fault held).
    fn schedule_attempt(
        &self,
        index: usize,
        attempt: u32,
        at_ms: UnixMillis,
        held: bool,
    ) -> EventId {
        let this = self.this.clone();
        let what = if held { "release" } else { "attempt" };
        self.scheduler.schedule_after(
            // The channel's clock may be skewed; the run's scheduler is not.
            at_ms.saturating_sub(self.now_ms()),
            format!("alipay notify ntf_{} {what} {attempt}", index + 1),
            job(move || async move {
                if let Some(mock) = this.upgrade() {
                    mock.deliver(index, attempt, held).await;
                }
            }),
        )
    }

    /// The notifications queued since the list had `from` entries for `out_trade_no`, for
    /// `notify_before_response`: their first attempt is taken off the scheduler, to be run
    /// inline by the caller.
    pub(super) fn take_queued_since(&self, from: usize, out_trade_no: Option<&str>) -> Vec<usize> {
        let mut state = self.lock();
        let mut inline = Vec::new();
        for notification in state.notifications.iter_mut().skip(from) {
            if out_trade_no.is_some_and(|no| no != notification.trade) {
                continue;
            }
            if let Some(job) = notification.log.take_first_job() {
                // Not cancelled: its job has started, so it is being sent anyway.
                if self.scheduler.cancel(job) {
                    inline.push(notification.index);
                }
            }
        }
        inline
    }

    /// How many notifications exist (the mark `take_queued_since` counts from).
    pub(super) fn notification_count(&self) -> usize {
        self.lock().notifications.len()
    }

    /// Runs one delivery attempt (possibly faulted), records it, schedules the next. `held`:
    /// the attempt was held by a fault and is now released.
    pub(super) async fn deliver(self: Arc<Self>, index: usize, attempt: u32, held: bool) {
        let now_ms = self.now_ms();
        let (url, copies, fault, replay) = {
            let mut state = self.lock();
            let paid = state
                .notifications
                .get(index)
                .and_then(|n| state.trades.get(&n.trade))
                .is_some_and(|t| {
                    matches!(
                        t.status,
                        TradeStatus::TradeSuccess | TradeStatus::TradeFinished
                    )
                });
            let Some(notification) = state.notifications.get_mut(index) else {
                return;
            };
            let fault = if held {
                match notification.log.release(attempt) {
                    Some(fault) => Some(fault),
                    None => return,
                }
            } else {
                if !notification.log.begin(attempt) {
                    return;
                }
                let fault = self.faults.take_for_notification();
                if let Some(fault) = &fault {
                    if let Some((until_ms, waiting)) = delivery::hold_of(fault, now_ms) {
                        let release = self.schedule_attempt(index, attempt, until_ms, true);
                        notification
                            .log
                            .hold(fault.clone(), until_ms, Some(release), waiting);
                        return;
                    }
                }
                fault
            };
            let outgoing = self.prepare(notification, now_ms, fault.as_ref(), paid);
            let url = notification.url.clone();
            let (merchant, trade) = (notification.merchant.clone(), notification.trade.clone());
            let replay = delivery::replay_for(
                fault.as_ref(),
                state
                    .notifications
                    .iter()
                    .map(|n| (n.merchant.as_str(), n.trade.as_str(), &n.log)),
                &merchant,
                &trade,
            );
            let copies: Vec<_> = outgoing
                .into_iter()
                .map(|copy| self.build(&url, copy))
                .collect();
            (url, copies, fault.map(|f| f.kind.name()), replay)
        };
        let SentAttempt {
            replayed,
            outcomes,
            first_copy,
        } = self
            .sender()
            .send_attempt(&url, copies, replay, attempt)
            .await;
        let mut state = self.lock();
        if let Some((replayed, replayed_attempt, outcome)) = replayed {
            if let Some(notification) = state.notifications.get_mut(replayed) {
                notification
                    .log
                    .record_replay(replayed_attempt, now_ms, outcome);
            }
        }
        let sent = first_copy.is_some();
        if let Some(mut copy) = first_copy {
            state.notify_sends = state.notify_sends.saturating_add(1);
            copy.sequence = state.notify_sends;
            if let Some(notification) = state.notifications.get_mut(index) {
                notification.log.capture(copy);
            }
        }
        let Some(notification) = state.notifications.get_mut(index) else {
            return;
        };
        let next = notification
            .log
            .record(attempt, now_ms, outcomes, fault, &RETRY_DELAYS_MS);
        let (merchant, trade) = (notification.merchant.clone(), notification.trade.clone());
        if let Some(next_ms) = next {
            self.schedule_attempt(index, attempt.saturating_add(1), next_ms, false);
        }
        if sent {
            // out_of_order_notification: earlier notifications of this trade held for this one
            // go out right after it.
            for earlier in state.notifications.iter_mut().take(index) {
                if earlier.merchant != merchant || earlier.trade != trade {
                    continue;
                }
                if let Some((held_attempt, release)) = earlier.log.wake(now_ms) {
                    if let Some(release) = release {
                        self.scheduler.cancel(release);
                    }
                    self.schedule_attempt(earlier.index, held_attempt, now_ms, true);
                }
            }
        }
    }

    /// The form bodies to send for this attempt: one normally, none when dropped, several
    /// when duplicated; signed over every field except sign and sign_type (notes A4).
    fn prepare(
        &self,
        notification: &Notification,
        now_ms: UnixMillis,
        fault: Option<&FiredFault>,
        paid: bool,
    ) -> Vec<Outgoing> {
        let mut params = notification.params.clone();
        params.insert("notify_time".into(), wire::format_beijing(now_ms));
        params.insert("sign_type".into(), "RSA2".into());
        let content = |params: &BTreeMap<String, String>| {
            wire::sign_content(
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &["sign", "sign_type"],
            )
        };
        let mut copies = 1;
        let sign = match fault.map(|f| (f.kind, f)) {
            Some((FaultKind::DropNotification, _)) => return Vec::new(),
            Some((FaultKind::DuplicateNotification, fault)) => {
                copies = fault.param_u64("copies").unwrap_or(2).clamp(1, MAX_COPIES);
                self.signing_key.sign_base64(content(&params).as_bytes())
            }
            Some((FaultKind::ForgedNotification, _)) => {
                self.forger_key.sign_base64(content(&params).as_bytes())
            }
            Some((FaultKind::TamperedNotificationAmount, fault)) => {
                let genuine = self.signing_key.sign_base64(content(&params).as_bytes());
                let original = params
                    .get("total_amount")
                    .and_then(|t| parse_yuan(t).ok())
                    .unwrap_or(0);
                let tampered = fault
                    .param_str("amount")
                    .unwrap_or_else(|| format_yuan(original.saturating_add(100)));
                params.insert("total_amount".into(), tampered);
                if fault.param_bool("resign") {
                    self.signing_key.sign_base64(content(&params).as_bytes())
                } else {
                    genuine
                }
            }
            Some((FaultKind::ConflictingStatusNotification, fault)) => {
                // Correctly signed, amounts unchanged: only the status contradicts the trade.
                let status = fault.param_str("status").unwrap_or_else(|| {
                    if paid {
                        "TRADE_CLOSED"
                    } else {
                        "TRADE_SUCCESS"
                    }
                    .into()
                });
                params.insert("trade_status".into(), status);
                self.signing_key.sign_base64(content(&params).as_bytes())
            }
            Some((
                FaultKind::BadResponseSignature
                | FaultKind::UnsignedResponse
                | FaultKind::ErrorCode
                | FaultKind::SystemError
                | FaultKind::Http500
                | FaultKind::MalformedBody
                | FaultKind::DelayNotification
                | FaultKind::OutOfOrderNotification
                | FaultKind::ReplayNotification
                | FaultKind::UnknownSerial
                | FaultKind::NotifyBeforeResponse
                | FaultKind::SigntestResponse
                | FaultKind::RefundAbnormal
                | FaultKind::RefundClosed,
                _,
            ))
            | None => self.signing_key.sign_base64(content(&params).as_bytes()),
        };
        params.insert("sign".into(), sign);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        (0..copies)
            .map(|_| Outgoing { body: body.clone() })
            .collect()
    }

    fn build(
        &self,
        url: &str,
        outgoing: Outgoing,
    ) -> Result<http::Request<bytes::Bytes>, http::Error> {
        http::Request::post(url)
            .header(
                CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(bytes::Bytes::from(outgoing.body))
    }

    /// How this channel sends a notification copy (see [`delivery::Sender`]).
    pub(super) fn sender(&self) -> Sender<'_> {
        Sender {
            transport: self.transport.as_ref(),
            timeout_ms: NOTIFY_TIMEOUT_MS,
            acknowledges,
        }
    }
}

/// Which answer acknowledges a notification.
fn acknowledges(status: http::StatusCode, body: &[u8]) -> bool {
    // Only the 7 bytes `success` acknowledge; anything else means "resend".
    status.is_success() && body == b"success"
}
