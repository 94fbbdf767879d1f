//! Refunds (`/v3/refund/domestic/refunds`): idempotent by `out_refund_no`, partial and
//! repeated up to the amount paid, answered `PROCESSING` and settled a few seconds later by
//! a scheduled event — `SUCCESS`, or `ABNORMAL` / `CLOSED` when a refund fault is armed —
//! with a `REFUND.*` notification when the request named a `notify_url`.

use axum::http::StatusCode;
use determinism::{job, EntropyExt, EventId, UnixMillis};
use serde_json::{json, Map, Value};

use super::api::{Call, Reply};
use super::trade::{step, ApiResult, Event, Trade, TradeState};
use super::wire::{self, ApiError};
use super::{TradeKey, WechatpayMock};
use crate::faults::FaultKind;

/// How long a refund stays PROCESSING before it settles ("a few seconds" in practice).
pub const REFUND_SETTLE_MS: i64 = 5_000;
/// Refunds are accepted within 365 days of payment (D-refund).
const REFUND_WINDOW_MS: i64 = 365 * 24 * 3_600_000;
/// At most 50 refunds per order (D-refund).
const MAX_REFUNDS_PER_ORDER: usize = 50;

/// A refund's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    Processing,
    Success,
    Closed,
    Abnormal,
}

impl RefundStatus {
    pub fn name(self) -> &'static str {
        match self {
            RefundStatus::Processing => "PROCESSING",
            RefundStatus::Success => "SUCCESS",
            RefundStatus::Closed => "CLOSED",
            RefundStatus::Abnormal => "ABNORMAL",
        }
    }
}

/// One refund.
#[derive(Debug, Clone)]
pub struct Refund {
    pub trade_key: TradeKey,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub refund_id: String,
    pub out_refund_no: String,
    pub notify_url: Option<String>,
    pub amount_minor: i64,
    pub total_minor: i64,
    pub status: RefundStatus,
    /// What PROCESSING turns into when the settle event runs.
    pub outcome: RefundStatus,
    pub created_ms: UnixMillis,
    pub success_ms: Option<UnixMillis>,
    pub settle_event: Option<EventId>,
    /// Indexes into the notification list.
    pub notifications: Vec<usize>,
}

impl Refund {
    /// The Refund object (create and query answers).
    pub fn json(&self) -> Value {
        let mut object = Map::new();
        object.insert("refund_id".into(), json!(self.refund_id));
        object.insert("out_refund_no".into(), json!(self.out_refund_no));
        object.insert("transaction_id".into(), json!(self.transaction_id));
        object.insert("out_trade_no".into(), json!(self.out_trade_no));
        object.insert("channel".into(), json!("ORIGINAL"));
        object.insert("user_received_account".into(), json!("支付用户零钱"));
        if let Some(success_ms) = self.success_ms {
            object.insert("success_time".into(), json!(wire::format_time(success_ms)));
        }
        object.insert(
            "create_time".into(),
            json!(wire::format_time(self.created_ms)),
        );
        object.insert("status".into(), json!(self.status.name()));
        object.insert("funds_account".into(), json!("AVAILABLE"));
        object.insert(
            "amount".into(),
            json!({
                "total": self.total_minor,
                "refund": self.amount_minor,
                "from": [],
                "payer_total": self.total_minor,
                "payer_refund": self.amount_minor,
                "settlement_refund": self.amount_minor,
                "settlement_total": self.total_minor,
                "discount_refund": 0,
                "currency": "CNY",
                "refund_fee": 0
            }),
        );
        object.insert("promotion_detail".into(), json!([]));
        Value::Object(object)
    }

    /// The plaintext of a `REFUND.*` notification (SK-refundnotify).
    pub fn notify_json(&self, mchid: &str) -> Value {
        let mut object = Map::new();
        object.insert("mchid".into(), json!(mchid));
        object.insert("transaction_id".into(), json!(self.transaction_id));
        object.insert("out_trade_no".into(), json!(self.out_trade_no));
        object.insert("refund_id".into(), json!(self.refund_id));
        object.insert("out_refund_no".into(), json!(self.out_refund_no));
        object.insert("refund_status".into(), json!(self.status.name()));
        if let Some(success_ms) = self.success_ms {
            object.insert("success_time".into(), json!(wire::format_time(success_ms)));
        }
        object.insert("user_received_account".into(), json!("支付用户零钱"));
        object.insert(
            "amount".into(),
            json!({"total": self.total_minor, "refund": self.amount_minor,
                   "payer_total": self.total_minor, "payer_refund": self.amount_minor}),
        );
        Value::Object(object)
    }
}

fn resource_not_exists(message: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", message)
}

/// `out_refund_no`: 1–64 of `[0-9A-Za-z_-|*@]`.
fn valid_out_refund_no(no: &str) -> bool {
    (1..=64).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
}

impl WechatpayMock {
    /// `POST /v3/refund/domestic/refunds`.
    pub(super) fn create_refund(&self, call: &Call<'_>) -> ApiResult {
        let body = wire::json_object(call.body).map_err(|e| (e, None))?;
        let logged = wire::optional_str(&body, "out_trade_no")
            .ok()
            .flatten()
            .map(str::to_owned);
        let fail = |error: ApiError| (error, logged.clone());
        let out_refund_no = wire::required_str(&body, "out_refund_no").map_err(fail)?;
        if !valid_out_refund_no(out_refund_no) {
            return Err(fail(ApiError::param(
                "out_refund_no 应为1到64位数字、大小写字母、_-|*@",
            )));
        }
        let transaction_id = wire::optional_str(&body, "transaction_id").map_err(fail)?;
        let out_trade_no = wire::optional_str(&body, "out_trade_no").map_err(fail)?;
        if transaction_id.is_none() && out_trade_no.is_none() {
            return Err(fail(ApiError::param(
                "transaction_id 和 out_trade_no 必须二选一",
            )));
        }
        let reason = wire::optional_str(&body, "reason").map_err(fail)?;
        if reason.is_some_and(|r| r.chars().count() > 80) {
            return Err(fail(ApiError::param("reason 长度不能超过80个字符")));
        }
        let notify_url = wire::optional_str(&body, "notify_url").map_err(fail)?;
        if notify_url.is_some_and(|url| {
            !(url.starts_with("https://") || url.starts_with("http://")) || url.contains('?')
        }) {
            return Err(fail(ApiError::param(
                "notify_url 应为不带参数的 http(s) 地址",
            )));
        }
        let amount = wire::optional_object(&body, "amount")
            .map_err(fail)?
            .ok_or_else(|| fail(ApiError::param("缺少参数 amount")))?;
        let refund_minor = wire::required_fen(amount, "/amount", "refund").map_err(fail)?;
        let total_minor = wire::required_fen(amount, "/amount", "total").map_err(fail)?;
        wire::check_currency(amount, "/amount").map_err(fail)?;

        let mchid = call.merchant.mchid.clone();
        let mut state = self.lock();
        let refund_key = (mchid.clone(), out_refund_no.to_owned());
        let key = match (transaction_id, out_trade_no) {
            (Some(id), _) => state
                .by_transaction_id
                .get(id)
                .filter(|(owner, _)| *owner == mchid)
                .cloned(),
            (None, Some(no)) => Some((mchid.clone(), no.to_owned())),
            (None, None) => None,
        };
        if let Some(&index) = state.by_out_refund_no.get(&refund_key) {
            // One out_refund_no refunds at most once: a repeat answers the same refund.
            let refund = state
                .refunds
                .get(index)
                .ok_or_else(|| fail(ApiError::system()))?;
            if key.as_ref() != Some(&refund.trade_key) || refund.amount_minor != refund_minor {
                return Err(fail(ApiError::invalid_request(
                    "out_refund_no 已用于另一笔退款，请求参数与首次请求时不一致",
                )));
            }
            return Ok((
                Reply::Json(refund.json().to_string()),
                Some(refund.out_trade_no.clone()),
            ));
        }
        let trade: &Trade = key
            .as_ref()
            .and_then(|key| state.trades.get(key))
            .filter(|trade| trade.paid_ms.is_some() && trade.state != TradeState::Revoked)
            .ok_or_else(|| fail(resource_not_exists("订单不存在或未支付")))?;
        let Some(key) = key.clone() else {
            return Err(fail(resource_not_exists("订单不存在或未支付")));
        };
        let logged = Some(trade.out_trade_no.clone());
        let fail = |error: ApiError| (error, logged.clone());
        if total_minor != trade.total_minor {
            return Err(fail(ApiError::param("/amount/total 与原订单金额不一致")));
        }
        if trade
            .paid_ms
            .is_some_and(|paid_ms| call.now_ms.saturating_sub(paid_ms) > REFUND_WINDOW_MS)
        {
            return Err(fail(ApiError::invalid_request(
                "订单已超过退款期限（支付后365天）",
            )));
        }
        if trade.refunds.len() >= MAX_REFUNDS_PER_ORDER {
            return Err(fail(ApiError::invalid_request(
                "该订单部分退款次数已达上限（50次）",
            )));
        }
        let reserved = trade.reserved_minor(&state);
        if reserved.saturating_add(refund_minor) > trade.total_minor {
            return Err(fail(ApiError::invalid_request(format!(
                "申请退款金额超过订单可退金额（可退 {} 分）",
                trade.total_minor.saturating_sub(reserved)
            ))));
        }
        let outcome = match self.faults.take_for_refund().map(|fault| fault.kind) {
            Some(FaultKind::RefundAbnormal) => RefundStatus::Abnormal,
            Some(FaultKind::RefundClosed) => RefundStatus::Closed,
            Some(
                FaultKind::BadResponseSignature
                | FaultKind::ErrorCode
                | FaultKind::SystemError
                | FaultKind::Http500
                | FaultKind::DuplicateNotification
                | FaultKind::ForgedNotification
                | FaultKind::TamperedNotificationAmount
                | FaultKind::DropNotification
                | FaultKind::UnsignedResponse
                | FaultKind::MalformedBody
                | FaultKind::DelayNotification
                | FaultKind::OutOfOrderNotification
                | FaultKind::ReplayNotification
                | FaultKind::ConflictingStatusNotification
                | FaultKind::UnknownSerial
                | FaultKind::NotifyBeforeResponse
                | FaultKind::SigntestResponse,
            )
            | None => RefundStatus::Success,
        };
        let refund_id = format!(
            "50{:05}{}{:014}",
            self.entropy.uniform_below(100_000),
            wire::compact_time(call.now_ms)
                .get(..8)
                .unwrap_or("20000101"),
            self.entropy.uniform_below(100_000_000_000_000)
        );
        let index = state.refunds.len();
        let mut refund = Refund {
            trade_key: key.clone(),
            out_trade_no: trade.out_trade_no.clone(),
            transaction_id: trade.transaction_id.clone(),
            refund_id,
            out_refund_no: out_refund_no.to_owned(),
            notify_url: notify_url.map(str::to_owned),
            amount_minor: refund_minor,
            total_minor: trade.total_minor,
            status: RefundStatus::Processing,
            outcome,
            created_ms: call.now_ms,
            success_ms: None,
            settle_event: None,
            notifications: Vec::new(),
        };
        let this = self.this.clone();
        refund.settle_event = Some(
            self.scheduler.schedule_after(
                // The channel's clock may be skewed; the run's scheduler is not.
                call.now_ms
                    .saturating_add(REFUND_SETTLE_MS)
                    .saturating_sub(self.now_ms()),
                format!("wechatpay refund {mchid}/{out_refund_no} settles"),
                job(move || async move {
                    if let Some(mock) = this.upgrade() {
                        mock.settle_refund(index);
                    }
                }),
            ),
        );
        let reply = Reply::Json(refund.json().to_string());
        state.refunds.push(refund);
        state.by_out_refund_no.insert(refund_key, index);
        if let Some(trade) = state.trades.get_mut(&key) {
            trade.refunds.push(index);
            if let Some(next) = step(trade.state, Event::RefundRequested) {
                trade.state = next;
            }
        }
        Ok((reply, logged))
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    pub(super) fn query_refund(&self, no: &str, call: &Call<'_>) -> ApiResult {
        let state = self.lock();
        let refund = state
            .by_out_refund_no
            .get(&(call.merchant.mchid.clone(), no.to_owned()))
            .and_then(|&index| state.refunds.get(index))
            .ok_or((resource_not_exists("退款单不存在"), None))?;
        Ok((
            Reply::Json(refund.json().to_string()),
            Some(refund.out_trade_no.clone()),
        ))
    }

    /// The settle event: PROCESSING → the armed outcome, with its notification.
    fn settle_refund(&self, index: usize) {
        let now_ms = self.now_ms();
        let mut state = self.lock();
        let Some(refund) = state.refunds.get_mut(index) else {
            return;
        };
        if refund.status != RefundStatus::Processing {
            return;
        }
        refund.settle_event = None;
        refund.status = refund.outcome;
        if refund.status == RefundStatus::Success {
            refund.success_ms = Some(now_ms);
        }
        self.notify_refund(&mut state, index, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_refund_no_rules() {
        assert!(valid_out_refund_no("R1@x|*_-"));
        assert!(!valid_out_refund_no(""));
        assert!(!valid_out_refund_no("R 1"));
        assert!(!valid_out_refund_no(&"r".repeat(65)));
    }
}
