//! **Test-only** fake payment channel: a tiny JSON protocol, an axum Router that plays the
//! channel, and [`FakeAdapter`], a `ChannelAdapter` that speaks it. It lets the end-to-end
//! suites drive the whole gateway (create → pay → notify → refund → expire) without a real
//! channel protocol. Real channels (Alipay, WeChat Pay, UnionPay) come with their own adapters
//! and their own simulator; nothing here is shared with them.
//!
//! The protocol: `POST` JSON to `/create`, `/query`, `/close`, `/refund`, `/refund_query`;
//! every reply carries `code` (`OK` or a business error code) and `message`. Notifications
//! are JSON `POST`s signed with `x-fake-signature: hex(sha256(secret || body))`.
//!
//! The test controls (`pay`, `fail`, `fail_next_calls`, `make_next_refund_abnormal`, …) change
//! the channel's state directly: they stand for what a buyer or the channel's back office
//! does.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use determinism::{HttpRequest, HttpResponse, UnixMillis};
use gateway_core::channel::{
    AdapterContext, AdapterError, ChannelAdapter, CreatePlan, Created, Notification, PaymentStatus,
    RefundStatus,
};
use gateway_core::ids::{OrderId, RefundId};
use gateway_core::model::{Order, Refund};
use gateway_core::money::{yuan, Money};
use gateway_core::state::{Channel, PaymentMethod};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The header carrying a notification's tag.
pub const SIGNATURE_HEADER: &str = "x-fake-signature";
/// The secret shared by the fake channel and [`FakeAdapter`] unless a test picks another.
pub const DEFAULT_SECRET: &str = "fake-channel-test-secret";

/// `hex(sha256(secret || body))`: the fake protocol's notification tag.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(secret.as_bytes());
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// A trade's state at the fake channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStatus {
    WaitBuyerPay,
    Success,
    Closed,
    Failed,
}

impl TradeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::Success => "TRADE_SUCCESS",
            TradeStatus::Closed => "TRADE_CLOSED",
            TradeStatus::Failed => "TRADE_FAILED",
        }
    }
}

/// A refund's state at the fake channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeRefundStatus {
    Success,
    Abnormal,
    Failed,
}

impl FakeRefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FakeRefundStatus::Success => "REFUND_SUCCESS",
            FakeRefundStatus::Abnormal => "REFUND_ABNORMAL",
            FakeRefundStatus::Failed => "REFUND_FAILED",
        }
    }
}

/// A trade the fake channel knows, keyed by the gateway's order id (`out_trade_no`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub out_trade_no: String,
    /// The order amount the gateway asked for (decimal yuan).
    pub amount: String,
    /// What the channel says was paid; normally `amount`, see [`FakeChannel::pay_with_amount`].
    pub paid_amount: String,
    pub method: String,
    pub status: TradeStatus,
    pub trade_no: Option<String>,
    /// Where the gateway wants notifications (from the create request).
    pub notify_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRefund {
    pub out_request_no: String,
    pub out_trade_no: String,
    pub amount: String,
    pub status: FakeRefundStatus,
    pub refund_no: String,
}

#[derive(Debug, Default)]
struct FakeState {
    trades: BTreeMap<String, Trade>,
    refunds: BTreeMap<String, FakeRefund>,
    /// How many of the next calls answer `500` without doing anything.
    failing_calls: u32,
    /// The next `/create` is refused with this business error.
    reject_next_create: Option<(String, String)>,
    next_refund_abnormal: bool,
    /// Every call received, as `"<endpoint> <out_trade_no or out_request_no>"`.
    calls: Vec<String>,
    sequence: u64,
}

impl FakeState {
    fn next_no(&mut self, prefix: &str) -> String {
        self.sequence += 1;
        format!("{prefix}{:08}", self.sequence)
    }
}

/// The fake channel: its Router and its test controls. Cloning shares the state.
#[derive(Debug, Clone)]
pub struct FakeChannel {
    state: Arc<Mutex<FakeState>>,
    secret: String,
}

impl Default for FakeChannel {
    fn default() -> Self {
        FakeChannel::new(DEFAULT_SECRET)
    }
}

impl FakeChannel {
    pub fn new(secret: &str) -> Self {
        FakeChannel {
            state: Arc::new(Mutex::new(FakeState::default())),
            secret: secret.to_owned(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // Every critical section leaves the maps consistent; a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel's HTTP endpoints.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/create", post(create))
            .route("/query", post(query))
            .route("/close", post(close))
            .route("/refund", post(refund))
            .route("/refund_query", post(refund_query))
            .with_state(self.clone())
    }

    // ------------------------------------------------------------------ inspection

    pub fn trade(&self, order_id: &str) -> Option<Trade> {
        self.lock().trades.get(order_id).cloned()
    }

    pub fn refund(&self, refund_id: &str) -> Option<FakeRefund> {
        self.lock().refunds.get(refund_id).cloned()
    }

    /// Every call received so far, e.g. `"create ord_…"`, `"query ord_…"`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    // ------------------------------------------------------------------ controls

    /// The buyer pays a trade that waits for payment. False when there is no such trade or
    /// it is not waiting.
    pub fn pay(&self, order_id: &str) -> bool {
        let mut state = self.lock();
        let trade_no = state.next_no("fake_trade_");
        match state.trades.get_mut(order_id) {
            Some(trade) if trade.status == TradeStatus::WaitBuyerPay => {
                trade.status = TradeStatus::Success;
                trade.trade_no = Some(trade_no);
                true
            }
            _ => false,
        }
    }

    /// The buyer pays, but the channel reports `amount` as paid (a tampered or buggy report).
    pub fn pay_with_amount(&self, order_id: &str, amount: &str) -> bool {
        let paid = self.pay(order_id);
        if paid {
            if let Some(trade) = self.lock().trades.get_mut(order_id) {
                trade.paid_amount = amount.to_owned();
            }
        }
        paid
    }

    /// The channel settles a payment although the trade was closed (money that arrives after
    /// the close). False when there is no such trade.
    pub fn pay_after_close(&self, order_id: &str) -> bool {
        let mut state = self.lock();
        let trade_no = state.next_no("fake_trade_");
        match state.trades.get_mut(order_id) {
            Some(trade) => {
                trade.status = TradeStatus::Success;
                trade.trade_no = Some(trade_no);
                true
            }
            None => false,
        }
    }

    /// The payment fails at the channel.
    pub fn fail(&self, order_id: &str) -> bool {
        match self.lock().trades.get_mut(order_id) {
            Some(trade) if trade.status == TradeStatus::WaitBuyerPay => {
                trade.status = TradeStatus::Failed;
                true
            }
            _ => false,
        }
    }

    /// The next `n` calls answer HTTP 500 and change nothing.
    pub fn fail_next_calls(&self, n: u32) {
        self.lock().failing_calls = n;
    }

    /// The next `/create` is refused with a business error.
    pub fn reject_next_create(&self, code: &str, message: &str) {
        self.lock().reject_next_create = Some((code.to_owned(), message.to_owned()));
    }

    /// The next refund ends `REFUND_ABNORMAL` (the channel could not pay the buyer back).
    pub fn make_next_refund_abnormal(&self) {
        self.lock().next_refund_abnormal = true;
    }

    /// Settles a refund at the channel (e.g. an abnormal one, after the back office acted).
    pub fn settle_refund(&self, refund_id: &str, status: FakeRefundStatus) -> bool {
        match self.lock().refunds.get_mut(refund_id) {
            Some(refund) => {
                refund.status = status;
                true
            }
            None => false,
        }
    }

    // ------------------------------------------------------------------ notifications

    /// A correctly signed payment notification for the trade as the channel sees it, addressed
    /// to the gateway's `notify_url`.
    pub fn payment_notification(&self, order_id: &str) -> Option<HttpRequest> {
        let body = self.payment_notification_body(order_id)?;
        let tag = sign(&self.secret, &body);
        self.notification_request(order_id, body, &tag)
    }

    /// The same notification with a tag made with the wrong secret (a forgery).
    pub fn forged_payment_notification(&self, order_id: &str) -> Option<HttpRequest> {
        let body = self.payment_notification_body(order_id)?;
        let tag = sign("not-the-shared-secret", &body);
        self.notification_request(order_id, body, &tag)
    }

    /// A correctly signed notification of a refund's current state.
    pub fn refund_notification(&self, refund_id: &str) -> Option<HttpRequest> {
        let (body, order_id) = {
            let state = self.lock();
            let refund = state.refunds.get(refund_id)?;
            let body = json!({
                "kind": "refund",
                "out_trade_no": refund.out_trade_no,
                "out_request_no": refund.out_request_no,
                "refund_no": refund.refund_no,
                "amount": refund.amount,
                "status": refund.status.as_str(),
            });
            (body.to_string().into_bytes(), refund.out_trade_no.clone())
        };
        let tag = sign(&self.secret, &body);
        self.notification_request(&order_id, body, &tag)
    }

    fn payment_notification_body(&self, order_id: &str) -> Option<Vec<u8>> {
        let state = self.lock();
        let trade = state.trades.get(order_id)?;
        let body = json!({
            "kind": "payment",
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.trade_no,
            "amount": trade.paid_amount,
            "status": trade.status.as_str(),
        });
        Some(body.to_string().into_bytes())
    }

    fn notification_request(
        &self,
        order_id: &str,
        body: Vec<u8>,
        tag: &str,
    ) -> Option<HttpRequest> {
        let notify_url = self.lock().trades.get(order_id)?.notify_url.clone();
        http::Request::post(notify_url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, tag)
            .body(Bytes::from(body))
            .ok()
    }

    /// Counts a call; true when it must fail with a 500.
    fn begin_call(&self, endpoint: &str, subject: &str) -> bool {
        let mut state = self.lock();
        state.calls.push(format!("{endpoint} {subject}"));
        if state.failing_calls > 0 {
            state.failing_calls -= 1;
            true
        } else {
            false
        }
    }
}

// ---------------------------------------------------------------------- the channel's side

fn reply(value: Value) -> Response {
    (StatusCode::OK, Json(value)).into_response()
}

fn business_error(code: &str, message: &str) -> Response {
    reply(json!({ "code": code, "message": message }))
}

fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "code": "SYSTEM_ERROR", "message": "injected failure" })),
    )
        .into_response()
}

fn bad_request(error: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "code": "INVALID_REQUEST", "message": error.to_string() })),
    )
        .into_response()
}

fn trade_reply(trade: &Trade) -> Response {
    reply(json!({
        "code": "OK",
        "message": "",
        "out_trade_no": trade.out_trade_no,
        "trade_no": trade.trade_no,
        "status": trade.status.as_str(),
        "amount": trade.paid_amount,
    }))
}

fn refund_reply(refund: &FakeRefund) -> Response {
    reply(json!({
        "code": "OK",
        "message": "",
        "out_request_no": refund.out_request_no,
        "refund_no": refund.refund_no,
        "status": refund.status.as_str(),
        "amount": refund.amount,
    }))
}

#[derive(Debug, Deserialize)]
struct CreateRequest {
    out_trade_no: String,
    amount: String,
    method: String,
    notify_url: String,
    auth_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TradeRequest {
    out_trade_no: String,
}

#[derive(Debug, Deserialize)]
struct RefundRequest {
    out_trade_no: String,
    out_request_no: String,
    amount: String,
}

#[derive(Debug, Deserialize)]
struct RefundQueryRequest {
    out_request_no: String,
}

async fn create(State(fake): State<FakeChannel>, body: Bytes) -> Response {
    let request: CreateRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(error),
    };
    if fake.begin_call("create", &request.out_trade_no) {
        return server_error();
    }
    let mut state = fake.lock();
    if let Some((code, message)) = state.reject_next_create.take() {
        return business_error(&code, &message);
    }
    if let Some(existing) = state.trades.get(&request.out_trade_no) {
        if existing.amount != request.amount {
            return business_error(
                "TRADE_DATA_MISMATCH",
                "out_trade_no reused with another amount",
            );
        }
        return trade_reply(existing);
    }
    // The merchant scanned the buyer's code: a barcode payment settles at once.
    let (status, trade_no) = match (request.method.as_str(), &request.auth_code) {
        ("barcode", Some(_)) => (TradeStatus::Success, Some(state.next_no("fake_trade_"))),
        _ => (TradeStatus::WaitBuyerPay, None),
    };
    let trade = Trade {
        out_trade_no: request.out_trade_no.clone(),
        amount: request.amount.clone(),
        paid_amount: request.amount,
        method: request.method,
        status,
        trade_no,
        notify_url: request.notify_url,
    };
    let response = trade_reply(&trade);
    state.trades.insert(request.out_trade_no, trade);
    response
}

async fn query(State(fake): State<FakeChannel>, body: Bytes) -> Response {
    let request: TradeRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(error),
    };
    if fake.begin_call("query", &request.out_trade_no) {
        return server_error();
    }
    match fake.lock().trades.get(&request.out_trade_no) {
        Some(trade) => trade_reply(trade),
        None => business_error("TRADE_NOT_EXIST", "no such trade"),
    }
}

async fn close(State(fake): State<FakeChannel>, body: Bytes) -> Response {
    let request: TradeRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(error),
    };
    if fake.begin_call("close", &request.out_trade_no) {
        return server_error();
    }
    let mut state = fake.lock();
    match state.trades.get_mut(&request.out_trade_no) {
        Some(trade) => {
            if trade.status == TradeStatus::WaitBuyerPay {
                trade.status = TradeStatus::Closed;
            }
            // A paid trade is reported as paid: the close lost the race.
            trade_reply(trade)
        }
        None => business_error("TRADE_NOT_EXIST", "no such trade"),
    }
}

async fn refund(State(fake): State<FakeChannel>, body: Bytes) -> Response {
    let request: RefundRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(error),
    };
    if fake.begin_call("refund", &request.out_request_no) {
        return server_error();
    }
    let mut state = fake.lock();
    if let Some(existing) = state.refunds.get(&request.out_request_no) {
        return refund_reply(existing);
    }
    let Some(trade) = state.trades.get(&request.out_trade_no) else {
        return business_error("TRADE_NOT_EXIST", "no such trade");
    };
    if trade.status != TradeStatus::Success {
        return business_error("TRADE_STATUS_ERROR", "the trade is not paid");
    }
    let minor = |text: &str| {
        yuan::parse(text, gateway_core::money::Currency::Cny)
            .map(Money::minor)
            .unwrap_or(i64::MAX)
    };
    let paid = minor(&trade.paid_amount);
    let refunded: i64 = state
        .refunds
        .values()
        .filter(|r| r.out_trade_no == request.out_trade_no && r.status != FakeRefundStatus::Failed)
        .map(|r| minor(&r.amount))
        .sum();
    if refunded.saturating_add(minor(&request.amount)) > paid {
        return business_error(
            "REFUND_AMOUNT_EXCEED",
            "refunds would exceed the paid amount",
        );
    }
    let status = if std::mem::take(&mut state.next_refund_abnormal) {
        FakeRefundStatus::Abnormal
    } else {
        FakeRefundStatus::Success
    };
    let refund = FakeRefund {
        out_request_no: request.out_request_no.clone(),
        out_trade_no: request.out_trade_no,
        amount: request.amount,
        status,
        refund_no: state.next_no("fake_refund_"),
    };
    let response = refund_reply(&refund);
    state.refunds.insert(request.out_request_no, refund);
    response
}

async fn refund_query(State(fake): State<FakeChannel>, body: Bytes) -> Response {
    let request: RefundQueryRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(error),
    };
    if fake.begin_call("refund_query", &request.out_request_no) {
        return server_error();
    }
    match fake.lock().refunds.get(&request.out_request_no) {
        Some(refund) => refund_reply(refund),
        None => business_error("REFUND_NOT_EXIST", "no such refund"),
    }
}

// ---------------------------------------------------------------------- the gateway's side

/// The gateway's adapter for the fake channel, registered as [`Channel::Alipay`] (the gateway
/// knows only real channel names). Offers `qr` and `barcode`. Test-only.
#[derive(Debug, Clone)]
pub struct FakeAdapter {
    base_url: String,
    secret: String,
}

impl FakeAdapter {
    pub fn new(base_url: &str, secret: &str) -> Self {
        FakeAdapter {
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
        }
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<HttpRequest, AdapterError> {
        http::Request::post(format!("{}/{endpoint}", self.base_url))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body.to_string()))
            .map_err(|error| AdapterError::Invalid(error.to_string()))
    }
}

/// A reply of the fake protocol: `code` and the whole object.
struct Reply {
    code: String,
    message: String,
    value: Value,
}

impl Reply {
    fn read(response: HttpResponse) -> Result<Reply, AdapterError> {
        let status = response.status();
        if status.is_server_error() {
            return Err(AdapterError::Unknown(format!(
                "fake channel answered HTTP {status}"
            )));
        }
        if !status.is_success() {
            return Err(AdapterError::Protocol(format!(
                "fake channel answered HTTP {status}"
            )));
        }
        let value: Value = serde_json::from_slice(response.body())
            .map_err(|error| AdapterError::Protocol(format!("reply is not JSON: {error}")))?;
        let code = text(&value, "code")?;
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Reply {
            code,
            message,
            value,
        })
    }

    fn ok(self) -> Result<Value, AdapterError> {
        if self.code == "OK" {
            Ok(self.value)
        } else {
            Err(AdapterError::Rejected {
                code: self.code,
                message: self.message,
            })
        }
    }
}

fn text(value: &Value, field: &str) -> Result<String, AdapterError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| AdapterError::Protocol(format!("`{field}` missing or not a string")))
}

fn payment_status(value: &Value, order: Option<&Order>) -> Result<PaymentStatus, AdapterError> {
    let status = text(value, "status")?;
    Ok(match status.as_str() {
        "WAIT_BUYER_PAY" => PaymentStatus::Pending,
        "TRADE_CLOSED" => PaymentStatus::Closed,
        "TRADE_FAILED" => PaymentStatus::Failed {
            reason: "the fake channel failed the payment".to_owned(),
        },
        "TRADE_SUCCESS" => {
            let currency =
                order.map_or(gateway_core::money::Currency::Cny, |o| o.amount.currency());
            let amount = yuan::parse(&text(value, "amount")?, currency)
                .map_err(|error| AdapterError::Protocol(error.to_string()))?;
            PaymentStatus::Paid {
                channel_trade_no: text(value, "trade_no")?,
                amount,
                paid_at_ms: None,
            }
        }
        other => {
            return Err(AdapterError::Protocol(format!(
                "unknown trade status {other:?}"
            )))
        }
    })
}

fn refund_status(value: &Value) -> Result<RefundStatus, AdapterError> {
    let status = text(value, "status")?;
    Ok(match status.as_str() {
        "REFUND_SUCCESS" => RefundStatus::Succeeded {
            channel_refund_no: value
                .get("refund_no")
                .and_then(Value::as_str)
                .map(str::to_owned),
        },
        "REFUND_ABNORMAL" => RefundStatus::Abnormal {
            reason: "the fake channel could not pay the buyer back".to_owned(),
        },
        "REFUND_FAILED" => RefundStatus::Failed {
            reason: "the fake channel failed the refund".to_owned(),
        },
        other => {
            return Err(AdapterError::Protocol(format!(
                "unknown refund status {other:?}"
            )))
        }
    })
}

impl ChannelAdapter for FakeAdapter {
    fn channel(&self) -> Channel {
        Channel::Alipay
    }

    fn supports(&self, method: PaymentMethod) -> bool {
        matches!(method, PaymentMethod::Qr | PaymentMethod::Barcode)
    }

    fn plan_create(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<CreatePlan, AdapterError> {
        let auth_code = order.method_params.auth_code.clone();
        if order.method == PaymentMethod::Barcode && auth_code.is_none() {
            return Err(AdapterError::Invalid(
                "barcode payments need method_params.auth_code".to_owned(),
            ));
        }
        let body = json!({
            "out_trade_no": order.id.as_str(),
            "amount": yuan::format(order.amount),
            "subject": order.subject,
            "method": order.method.as_str(),
            "auth_code": auth_code,
            "notify_url": context.notify_url,
            "nonce": context.nonce,
        });
        self.post("create", &body).map(CreatePlan::Call)
    }

    fn parse_create(&self, order: &Order, response: HttpResponse) -> Result<Created, AdapterError> {
        let value = Reply::read(response)?.ok()?;
        let status = payment_status(&value, Some(order))?;
        let buyer_action = match order.method {
            PaymentMethod::Barcode => json!({ "type": "barcode", "submitted": true }),
            _ => json!({ "type": "qr", "qr_code": format!("fake://pay/{}", order.id) }),
        };
        Ok(Created {
            buyer_action,
            status,
        })
    }

    fn build_query(
        &self,
        order: &Order,
        _context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        self.post("query", &json!({ "out_trade_no": order.id.as_str() }))
    }

    fn parse_query(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<PaymentStatus, AdapterError> {
        let reply = Reply::read(response)?;
        if reply.code == "TRADE_NOT_EXIST" {
            return Ok(PaymentStatus::NotFound);
        }
        payment_status(&reply.ok()?, Some(order))
    }

    fn build_close(
        &self,
        order: &Order,
        _context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        self.post("close", &json!({ "out_trade_no": order.id.as_str() }))
    }

    fn parse_close(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<PaymentStatus, AdapterError> {
        self.parse_query(order, response)
    }

    fn build_refund(
        &self,
        order: &Order,
        refund: &Refund,
        _context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        self.post(
            "refund",
            &json!({
                "out_trade_no": order.id.as_str(),
                "out_request_no": refund.id.as_str(),
                "amount": yuan::format(refund.amount),
            }),
        )
    }

    fn parse_refund(
        &self,
        _order: &Order,
        _refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError> {
        refund_status(&Reply::read(response)?.ok()?)
    }

    fn build_refund_query(
        &self,
        _order: &Order,
        refund: &Refund,
        _context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        self.post(
            "refund_query",
            &json!({ "out_request_no": refund.id.as_str() }),
        )
    }

    fn parse_refund_query(
        &self,
        _order: &Order,
        _refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError> {
        refund_status(&Reply::read(response)?.ok()?)
    }

    fn verify_notification(
        &self,
        request: &HttpRequest,
        _now_ms: UnixMillis,
    ) -> Result<Notification, AdapterError> {
        let tag = request
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| AdapterError::Signature(format!("no {SIGNATURE_HEADER} header")))?;
        if tag != sign(&self.secret, request.body()) {
            return Err(AdapterError::Signature(
                "tag does not match the body".to_owned(),
            ));
        }
        let value: Value = serde_json::from_slice(request.body()).map_err(|error| {
            AdapterError::Protocol(format!("notification is not JSON: {error}"))
        })?;
        match text(&value, "kind")?.as_str() {
            "payment" => {
                let order_id = OrderId::parse(&text(&value, "out_trade_no")?)
                    .map_err(|error| AdapterError::Protocol(error.to_string()))?;
                Ok(Notification::Payment {
                    order_id,
                    status: payment_status(&value, None)?,
                })
            }
            "refund" => {
                let refund_id = RefundId::parse(&text(&value, "out_request_no")?)
                    .map_err(|error| AdapterError::Protocol(error.to_string()))?;
                Ok(Notification::Refund {
                    refund_id,
                    status: refund_status(&value)?,
                    reported_amount: None,
                })
            }
            other => Err(AdapterError::Protocol(format!(
                "unknown notification kind {other:?}"
            ))),
        }
    }

    fn acknowledge(&self, accepted: bool) -> HttpResponse {
        let body = if accepted { "success" } else { "failure" };
        let mut response = http::Response::new(Bytes::from_static(body.as_bytes()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        response
    }
}
