//! Notifications (`TRANSACTION.SUCCESS`, `REFUND.SUCCESS|ABNORMAL|CLOSED`): a JSON envelope
//! whose `resource` is AEAD_AES_256_GCM-encrypted with the merchant's APIv3 key, POSTed to
//! the `notify_url` through the Transport with headers signed like responses; acknowledged
//! by HTTP 200 or 204, otherwise re-sent after 15s, 15s, 30s, 3m, 10m, 20m, 30m, 30m, 30m,
//! 60m, 3h, 3h, 3h, 6h, 6h (16 attempts over 24h04m, notes A5). Every attempt is a job on
//! the scheduler, never a free spawn.

use std::sync::Arc;

use determinism::{job, EntropyExt, EventId, UnixMillis};
use http::header::{CONTENT_TYPE, USER_AGENT};
use serde_json::{json, Value};

use super::auth::{self, Sealed};
use super::refund::RefundStatus;
use super::trade::TradeState;
use super::{SignatureMode, State, TradeKey, WechatpayMock};
use crate::control::NotificationView;
use crate::delivery::{self, DeliveryLog, Sender, SentAttempt};
use crate::faults::{FaultKind, FiredFault};

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
/// Delay before attempt n+2, after attempt n+1 failed (attempt 1 is immediate).
pub const RETRY_DELAYS_MS: [i64; 15] = [
    15 * SECOND_MS,
    15 * SECOND_MS,
    30 * SECOND_MS,
    3 * MINUTE_MS,
    10 * MINUTE_MS,
    20 * MINUTE_MS,
    30 * MINUTE_MS,
    30 * MINUTE_MS,
    30 * MINUTE_MS,
    60 * MINUTE_MS,
    3 * HOUR_MS,
    3 * HOUR_MS,
    3 * HOUR_MS,
    6 * HOUR_MS,
    6 * HOUR_MS,
];
/// The merchant must answer within 5 s (SK-notify). In-process calls do not enforce it.
const NOTIFY_TIMEOUT_MS: u64 = 5_000;
/// Upper bound on `duplicate_notification` copies, so a typo cannot flood a merchant.
const MAX_COPIES: u64 = 10;

/// One notification and its delivery history.
#[derive(Debug, Clone)]
pub struct Notification {
    index: usize,
    /// The merchant's mchid (replay picks among the same merchant's notifications).
    merchant: String,
    /// The order's out_trade_no (refund notifications: the refunded order's).
    trade: String,
    /// The envelope `id`, stable across retries.
    id: String,
    url: String,
    apiv3_key: Vec<u8>,
    /// `payment` or `refund`.
    event: &'static str,
    event_type: &'static str,
    summary: &'static str,
    original_type: &'static str,
    create_ms: UnixMillis,
    plaintext: Value,
    /// The envelope as first built (retries resend the same bytes, freshly signed).
    body: String,
    log: DeliveryLog,
}

impl Notification {
    fn kind(&self) -> Kind {
        Kind {
            event_type: self.event_type,
            summary: self.summary,
            original_type: self.original_type,
        }
    }

    pub fn view(&self) -> NotificationView {
        NotificationView {
            id: format!("ntf_{}", self.index + 1),
            notify_id: self.id.clone(),
            url: self.url.clone(),
            event: self.event.into(),
            status: self.event_type.into(),
            state: self.log.state_name().into(),
            next_attempt_at: self.log.next_attempt_at(),
            attempts: self.log.attempt_views(),
        }
    }
}

/// One copy to send in an attempt.
struct Outgoing {
    body: String,
    timestamp: String,
    nonce: String,
    signature: String,
}

/// The envelope's descriptive fields.
#[derive(Debug, Clone, Copy)]
struct Kind {
    event_type: &'static str,
    summary: &'static str,
    original_type: &'static str,
}

/// What a new notification reports.
struct Event {
    mchid: String,
    url: String,
    event: &'static str,
    event_type: &'static str,
    summary: &'static str,
    original_type: &'static str,
    plaintext: Value,
}

impl WechatpayMock {
    /// Queues TRANSACTION.SUCCESS for a paid order.
    pub(super) fn notify_payment(&self, state: &mut State, key: &TradeKey, now_ms: UnixMillis) {
        let Some(trade) = state.trades.get(key) else {
            return;
        };
        let event = Event {
            mchid: trade.mchid.clone(),
            url: trade.notify_url.clone(),
            event: "payment",
            event_type: "TRANSACTION.SUCCESS",
            summary: "支付成功",
            original_type: "transaction",
            plaintext: trade.transaction_json(),
        };
        if let Some(index) = self.queue(state, event, now_ms) {
            if let Some(trade) = state.trades.get_mut(key) {
                trade.notifications.push(index);
            }
        }
    }

    /// Queues REFUND.{SUCCESS|ABNORMAL|CLOSED} for a settled refund that named a notify_url.
    pub(super) fn notify_refund(&self, state: &mut State, index: usize, now_ms: UnixMillis) {
        let Some(refund) = state.refunds.get(index) else {
            return;
        };
        let Some(url) = refund.notify_url.clone() else {
            return;
        };
        let (event_type, summary) = match refund.status {
            super::refund::RefundStatus::Success => ("REFUND.SUCCESS", "退款成功"),
            super::refund::RefundStatus::Abnormal => ("REFUND.ABNORMAL", "退款异常"),
            super::refund::RefundStatus::Closed => ("REFUND.CLOSED", "退款关闭"),
            super::refund::RefundStatus::Processing => return,
        };
        let event = Event {
            mchid: refund.trade_key.0.clone(),
            url,
            event: "refund",
            event_type,
            summary,
            original_type: "refund",
            plaintext: refund.notify_json(&refund.trade_key.0),
        };
        if let Some(notification) = self.queue(state, event, now_ms) {
            if let Some(refund) = state.refunds.get_mut(index) {
                refund.notifications.push(notification);
            }
        }
    }

    /// Encrypts the resource, records the notification and schedules attempt 1 now.
    fn queue(&self, state: &mut State, event: Event, now_ms: UnixMillis) -> Option<usize> {
        let apiv3_key = self.merchants.get(&event.mchid)?.apiv3_key.clone();
        let id = self.entropy.uuid_v4_string();
        let kind = Kind {
            event_type: event.event_type,
            summary: event.summary,
            original_type: event.original_type,
        };
        let body = match self.envelope(&id, &event.plaintext, kind, now_ms, &apiv3_key) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "cannot encrypt a wechatpay notification");
                return None;
            }
        };
        let index = state.notifications.len();
        let trade = event
            .plaintext
            .get("out_trade_no")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        state.notifications.push(Notification {
            index,
            merchant: event.mchid,
            trade,
            id,
            url: event.url,
            apiv3_key,
            event: event.event,
            event_type: event.event_type,
            summary: event.summary,
            original_type: event.original_type,
            create_ms: now_ms,
            plaintext: event.plaintext,
            body,
            log: DeliveryLog::new(now_ms),
        });
        let first = self.schedule_attempt(index, 1, now_ms, false);
        if let Some(notification) = state.notifications.get_mut(index) {
            notification.log.set_first_job(first);
        }
        Some(index)
    }

    /// The JSON envelope with `plaintext` sealed under a fresh 12-character nonce.
    fn envelope(
        &self,
        id: &str,
        plaintext: &Value,
        kind: Kind,
        create_ms: UnixMillis,
        apiv3_key: &[u8],
    ) -> Result<String, auth::AeadError> {
        let sealed = auth::seal(
            apiv3_key,
            &self.entropy.token(12),
            kind.original_type,
            plaintext.to_string().as_bytes(),
        )?;
        Ok(envelope_json(id, create_ms, kind, &sealed))
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
            format!("wechatpay notify ntf_{} {what} {attempt}", index + 1),
            job(move || async move {
                if let Some(mock) = this.upgrade() {
                    mock.deliver(index, attempt, held).await;
                }
            }),
        )
    }

    /// What `conflicting_status_notification` reports by default: the status field of the
    /// resource and a value contradicting the order's (or refund's) real state.
    fn conflicting_default(
        &self,
        state: &State,
        notification: &Notification,
    ) -> (&'static str, &'static str) {
        if notification.original_type == "refund" {
            let settled = notification
                .plaintext
                .get("out_refund_no")
                .and_then(Value::as_str)
                .and_then(|no| {
                    state
                        .by_out_refund_no
                        .get(&(notification.merchant.clone(), no.to_owned()))
                })
                .and_then(|&index| state.refunds.get(index))
                .is_some_and(|refund| refund.status == RefundStatus::Success);
            ("refund_status", if settled { "CLOSED" } else { "SUCCESS" })
        } else {
            let key = (notification.merchant.clone(), notification.trade.clone());
            let paid = state.trades.get(&key).is_some_and(|trade| {
                matches!(trade.state, TradeState::Success | TradeState::Refund)
            });
            ("trade_state", if paid { "CLOSED" } else { "SUCCESS" })
        }
    }

    /// Runs one delivery attempt (possibly faulted), records it, schedules the next. `held`:
    /// the attempt was held by a fault and is now released.
    async fn deliver(self: Arc<Self>, index: usize, attempt: u32, held: bool) {
        let now_ms = self.now_ms();
        let (url, copies, fault, replay) = {
            let mut state = self.lock();
            let conflicting = match state.notifications.get(index) {
                Some(notification) => self.conflicting_default(&state, notification),
                None => return,
            };
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
            let outgoing = self.prepare(notification, fault.as_ref(), conflicting);
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
            // out_of_order_notification: earlier notifications of this order held for this one
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

    /// The copies to send for this attempt: one normally, none when dropped, several when
    /// duplicated; each signed over `TIMESTAMP\nNONCE\nBODY\n` at sending time.
    fn prepare(
        &self,
        notification: &Notification,
        fault: Option<&FiredFault>,
        conflicting: (&'static str, &'static str),
    ) -> Vec<Outgoing> {
        let signed = |body: String, mode: SignatureMode| {
            let (timestamp, nonce, signature) = self.sign_body(body.as_bytes(), mode);
            Outgoing {
                body,
                timestamp,
                nonce,
                signature,
            }
        };
        let genuine = || signed(notification.body.clone(), SignatureMode::Genuine);
        match fault.map(|f| (f.kind, f)) {
            Some((FaultKind::DropNotification, _)) => Vec::new(),
            Some((FaultKind::DuplicateNotification, fault)) => {
                let copies = fault.param_u64("copies").unwrap_or(2).clamp(1, MAX_COPIES);
                let copy = genuine();
                (0..copies)
                    .map(|_| Outgoing {
                        body: copy.body.clone(),
                        timestamp: copy.timestamp.clone(),
                        nonce: copy.nonce.clone(),
                        signature: copy.signature.clone(),
                    })
                    .collect()
            }
            Some((FaultKind::ForgedNotification, _)) => {
                vec![signed(notification.body.clone(), SignatureMode::Forged)]
            }
            Some((FaultKind::TamperedNotificationAmount, fault)) => {
                vec![self.tampered(notification, fault)]
            }
            Some((FaultKind::ConflictingStatusNotification, fault)) => {
                let (field, default) = conflicting;
                let status = fault
                    .param_str("status")
                    .unwrap_or_else(|| default.to_owned());
                let mut plaintext = notification.plaintext.clone();
                if let Some(object) = plaintext.as_object_mut() {
                    object.insert(field.to_owned(), json!(status));
                }
                let body = self
                    .envelope(
                        &notification.id,
                        &plaintext,
                        notification.kind(),
                        notification.create_ms,
                        &notification.apiv3_key,
                    )
                    .unwrap_or_else(|_| notification.body.clone());
                vec![signed(body, SignatureMode::Genuine)]
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
            | None => vec![genuine()],
        }
    }

    /// `tampered_notification_amount`: the resource is re-encrypted (so it still decrypts)
    /// with `amount.total` (transactions) or `amount.refund` (refunds) changed; the signature
    /// covers the genuine body unless `resign` is set.
    fn tampered(&self, notification: &Notification, fault: &FiredFault) -> Outgoing {
        let field = if notification.original_type == "refund" {
            "refund"
        } else {
            "total"
        };
        let mut plaintext = notification.plaintext.clone();
        let original = plaintext
            .pointer(&format!("/amount/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let amount = fault
            .param_u64("amount")
            .and_then(|a| i64::try_from(a).ok())
            .unwrap_or_else(|| original.saturating_add(100));
        if let Some(slot) = plaintext.pointer_mut(&format!("/amount/{field}")) {
            *slot = json!(amount);
        }
        if let Some(slot) = plaintext.pointer_mut("/amount/payer_total") {
            if field == "total" {
                *slot = json!(amount);
            }
        }
        let kind = Kind {
            event_type: notification.event_type,
            summary: notification.summary,
            original_type: notification.original_type,
        };
        let body = self
            .envelope(
                &notification.id,
                &plaintext,
                kind,
                notification.create_ms,
                &notification.apiv3_key,
            )
            .unwrap_or_else(|_| notification.body.clone());
        let (timestamp, nonce, signature) = if fault.param_bool("resign") {
            self.sign_body(body.as_bytes(), SignatureMode::Genuine)
        } else {
            self.sign_body(notification.body.as_bytes(), SignatureMode::Genuine)
        };
        Outgoing {
            body,
            timestamp,
            nonce,
            signature,
        }
    }

    fn build(
        &self,
        url: &str,
        outgoing: Outgoing,
    ) -> Result<http::Request<bytes::Bytes>, http::Error> {
        http::Request::post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "Mozilla/4.0 (paysim wechatpay notify)")
            .header(
                "request-id",
                format!("{}-0", self.entropy.hex(20).to_ascii_uppercase()),
            )
            .header("wechatpay-nonce", outgoing.nonce)
            .header("wechatpay-serial", self.notification_serial())
            .header("wechatpay-signature", outgoing.signature)
            .header("wechatpay-signature-type", auth::SCHEME)
            .header("wechatpay-timestamp", outgoing.timestamp)
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

/// The notification envelope (SK-paynotify field order).
fn envelope_json(id: &str, create_ms: UnixMillis, kind: Kind, sealed: &Sealed) -> String {
    json!({
        "id": id,
        "create_time": super::wire::format_time(create_ms),
        "resource_type": "encrypt-resource",
        "event_type": kind.event_type,
        "summary": kind.summary,
        "resource": {
            "original_type": kind.original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": sealed.ciphertext,
            "associated_data": sealed.associated_data,
            "nonce": sealed.nonce,
        }
    })
    .to_string()
}

/// Which answer acknowledges a notification.
fn acknowledges(status: http::StatusCode, _body: &[u8]) -> bool {
    // 200 or 204 acknowledge; the body does not matter (SK-notify).
    matches!(status.as_u16(), 200 | 204)
}
