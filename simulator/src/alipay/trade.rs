//! Trades of the mock Alipay gateway: the state machine, the trade APIs (precreate, create,
//! barcode pay, query, close, cancel, refund, refund query), the trades the buyer opens in a
//! cashier or wallet (page, wap and app pay), expiry on the scheduler, buyer actions, and the
//! QR-code landing page a buyer "scans".

use std::sync::Arc;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use determinism::{job, EntropyExt, EventId, UnixMillis};
use serde_json::{json, Map, Value};

use super::notify::NotifyEvent;
use super::wire::{self, ApiError, Node};
use super::{AlipayMock, State};
use crate::control::{BuyerAction, ControlError};
use crate::money::{format_yuan, parse_yuan, YuanError};

/// Which product created a trade; it decides the notification triggers (protocol notes A3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// `alipay.trade.precreate` (F2F QR code): exists only once scanned.
    Precreate,
    /// `alipay.trade.create`: exists at once.
    Create,
    /// `alipay.trade.pay` (F2F barcode): exists at once.
    Barcode,
    /// `alipay.trade.page.pay` (PC cashier): exists once the cashier is shown.
    PagePay,
    /// `alipay.trade.wap.pay` (mobile H5 cashier): exists once the cashier is shown.
    WapPay,
    /// `alipay.trade.app.pay` (wallet app): exists once the wallet opens the order string.
    AppPay,
}

impl Product {
    pub fn name(self) -> &'static str {
        match self {
            Product::Precreate => "precreate",
            Product::Create => "create",
            Product::Barcode => "barcode",
            Product::PagePay => "page",
            Product::WapPay => "wap",
            Product::AppPay => "app",
        }
    }

    /// The `product_code` values the product accepts (absent is accepted too). Wap takes
    /// the documented `QUICK_WAP_WAY` and python-alipay-sdk's `QUICK_WAP_PAY` (notes A3.2).
    pub fn product_codes(self) -> &'static [&'static str] {
        match self {
            Product::Precreate | Product::Create | Product::Barcode => {
                &["FACE_TO_FACE_PAYMENT", "OFFLINE_PAYMENT"]
            }
            Product::PagePay => &["FAST_INSTANT_TRADE_PAY"],
            Product::WapPay => &["QUICK_WAP_WAY", "QUICK_WAP_PAY"],
            Product::AppPay => &["QUICK_MSECURITY_PAY"],
        }
    }

    /// Whether a notification reports `status` by default. F2F products (precreate, pay),
    /// create and page pay notify TRADE_SUCCESS only; wap and app pay also TRADE_CLOSED and
    /// TRADE_FINISHED [D4]; WAIT_BUYER_PAY never notifies.
    pub fn notifies(self, status: TradeStatus) -> bool {
        match self {
            Product::Precreate | Product::Create | Product::Barcode | Product::PagePay => {
                status == TradeStatus::TradeSuccess
            }
            Product::WapPay | Product::AppPay => matches!(
                status,
                TradeStatus::TradeSuccess | TradeStatus::TradeClosed | TradeStatus::TradeFinished
            ),
        }
    }
}

/// The trade's state: Alipay's four statuses plus two simulator-only states for a QR code
/// nobody has scanned yet (the trade does not exist at Alipay then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStatus {
    AwaitingScan,
    QrExpired,
    WaitBuyerPay,
    TradeSuccess,
    TradeFinished,
    TradeClosed,
}

impl TradeStatus {
    pub fn name(self) -> &'static str {
        match self {
            TradeStatus::AwaitingScan => "AWAITING_SCAN",
            TradeStatus::QrExpired => "QR_EXPIRED",
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::TradeSuccess => "TRADE_SUCCESS",
            TradeStatus::TradeFinished => "TRADE_FINISHED",
            TradeStatus::TradeClosed => "TRADE_CLOSED",
        }
    }

    /// Whether Alipay knows the trade in this state.
    pub fn exists(self) -> bool {
        match self {
            TradeStatus::AwaitingScan | TradeStatus::QrExpired => false,
            TradeStatus::WaitBuyerPay
            | TradeStatus::TradeSuccess
            | TradeStatus::TradeFinished
            | TradeStatus::TradeClosed => true,
        }
    }
}

/// What moves a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Scan,
    QrTimeout,
    Pay,
    Close,
    FullRefund,
    RefundWindowEnd,
}

/// The one transition function. `None`: the event does not apply in that state.
fn step(status: TradeStatus, event: Event) -> Option<TradeStatus> {
    use TradeStatus as S;
    match (status, event) {
        (S::AwaitingScan, Event::Scan) => Some(S::WaitBuyerPay),
        (S::AwaitingScan, Event::QrTimeout) => Some(S::QrExpired),
        (S::WaitBuyerPay, Event::Pay) => Some(S::TradeSuccess),
        (S::WaitBuyerPay, Event::Close) => Some(S::TradeClosed),
        (S::TradeSuccess, Event::FullRefund) => Some(S::TradeClosed),
        (S::TradeSuccess, Event::RefundWindowEnd) => Some(S::TradeFinished),
        (
            S::AwaitingScan,
            Event::Pay | Event::Close | Event::FullRefund | Event::RefundWindowEnd,
        )
        | (S::QrExpired, _)
        | (
            S::WaitBuyerPay,
            Event::Scan | Event::QrTimeout | Event::FullRefund | Event::RefundWindowEnd,
        )
        | (S::TradeSuccess, Event::Scan | Event::QrTimeout | Event::Pay | Event::Close)
        | (S::TradeFinished, _)
        | (S::TradeClosed, _) => None,
    }
}

/// Why a trade closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Timeout,
    Merchant,
    CancelClose,
    CancelRefund,
    BuyerFailed,
    PaymentFailed,
    FullyRefunded,
}

/// A relative timeout as Alipay writes it (`90m`, `2h`, `15d`, `1c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    Relative(i64),
    /// `1c`: closes at the next Beijing midnight.
    EndOfDay,
}

impl Timeout {
    fn deadline(self, from_ms: UnixMillis) -> UnixMillis {
        match self {
            Timeout::Relative(ms) => from_ms.saturating_add(ms),
            Timeout::EndOfDay => wire::next_beijing_midnight(from_ms),
        }
    }
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Default life of a server-created trade (precreate after scan, create, barcode pay) when
/// the merchant sends no timeout: 15 days, the top of the documented `timeout_express`
/// range, which the merged precreate documentation gives as the default (notes A3.2).
const DEFAULT_TRADE_TIMEOUT_MS: i64 = 15 * DAY_MS;
/// How long an unscanned precreate QR code stays valid by default: 2 hours, as an Alipay
/// engineer stated for precreate (cloud.tencent.com/developer/article/1096089).
const DEFAULT_QR_TIMEOUT_MS: i64 = 2 * HOUR_MS;
/// How long after payment `alipay.trade.cancel` may still refund. Alipay documents the
/// error (ACQ.TRADE_CANCEL_TIME_OUT) but not the window; the mock uses one day.
const CANCEL_WINDOW_MS: i64 = DAY_MS;
/// How long a paid trade stays refundable before it becomes TRADE_FINISHED. Contract-
/// specific at Alipay (sources cite 3 months, 6 months, 365 days); the mock uses 90 days.
/// Applied lazily whenever trades are read, so no far-future event sits on the scheduler.
pub const REFUND_WINDOW_MS: i64 = 90 * DAY_MS;

/// The buyer, once known.
#[derive(Debug, Clone)]
pub struct Buyer {
    pub user_id: String,
    pub logon_id: String,
}

/// One successful refund.
#[derive(Debug, Clone)]
pub struct Refund {
    pub sequence: u64,
    pub out_request_no: String,
    pub amount_minor: i64,
    pub at_ms: UnixMillis,
    pub reason: Option<String>,
}

/// A trade (or a precreated QR code not scanned yet).
#[derive(Debug, Clone)]
pub struct Trade {
    pub sequence: u64,
    pub app_id: String,
    pub out_trade_no: String,
    /// Assigned up front, revealed once the trade exists.
    pub trade_no: String,
    pub product: Product,
    pub subject: String,
    pub body: Option<String>,
    pub total_minor: i64,
    pub status: TradeStatus,
    pub notify_url: Option<String>,
    pub passback_params: Option<String>,
    pub qr_token: Option<String>,
    pub gmt_create_ms: Option<UnixMillis>,
    pub paid_ms: Option<UnixMillis>,
    pub closed_ms: Option<UnixMillis>,
    pub close_reason: Option<CloseReason>,
    pub time_expire_ms: Option<UnixMillis>,
    pub timeout: Option<Timeout>,
    pub expires_at_ms: Option<UnixMillis>,
    pub expiry_event: Option<EventId>,
    pub buyer: Option<Buyer>,
    pub refunds: Vec<Refund>,
    pub refunded_minor: i64,
    /// Indexes into the notification list.
    pub notifications: Vec<usize>,
}

impl Trade {
    pub fn exists(&self) -> bool {
        self.status.exists()
    }

    fn same_order(&self, order: &Order, product: Product) -> bool {
        self.product == product
            && self.total_minor == order.total_minor
            && self.subject == order.subject
    }

    fn paid_minor(&self) -> i64 {
        if self.paid_ms.is_some() {
            self.total_minor
        } else {
            0
        }
    }
}

/// The order fields shared by the trade-creating APIs.
struct Order {
    out_trade_no: String,
    total_minor: i64,
    subject: String,
    body: Option<String>,
    passback_params: Option<String>,
    time_expire_ms: Option<UnixMillis>,
    timeout: Option<Timeout>,
}

/// A string field of `biz_content`: None when absent, null or empty; an error when not a
/// string (amounts may also be JSON numbers, see [`amount_field`]).
fn text_field<'a>(biz: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ApiError> {
    match biz.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::invalid_parameter(format!(
            "{key} must be a string"
        ))),
    }
}

fn required_field<'a>(biz: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    text_field(biz, key)?.ok_or_else(|| ApiError::invalid_parameter(format!("{key} is required")))
}

/// A `Price` field in yuan: at most two decimals, within [0.01, 100000000]. Malformed or
/// non-positive → ACQ.INVALID_PARAMETER; above the limit → ACQ.TOTAL_FEE_EXCEED.
fn amount_field(biz: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    let text = match biz.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.is_empty() => return Ok(None),
        Some(Value::String(text)) => text.clone(),
        // JSON numbers are written back in serde_json's shortest form ("88.88").
        Some(Value::Number(number)) => number.to_string(),
        Some(_) => {
            return Err(ApiError::invalid_parameter(format!(
                "{key} must be an amount string"
            )))
        }
    };
    let minor = match parse_yuan(&text) {
        Ok(minor) => minor,
        Err(YuanError::Malformed) => {
            return Err(ApiError::invalid_parameter(format!(
                "{key} {text:?} is not an amount in yuan with at most two decimals"
            )))
        }
        Err(YuanError::Overflow) => return Err(total_fee_exceed(key)),
    };
    if minor < 1 {
        return Err(ApiError::invalid_parameter(format!(
            "{key} must be at least 0.01"
        )));
    }
    if minor > 10_000_000_000 {
        return Err(total_fee_exceed(key));
    }
    Ok(Some(minor))
}

fn total_fee_exceed(key: &str) -> ApiError {
    ApiError::business(
        "ACQ.TOTAL_FEE_EXCEED",
        format!("订单总金额超过限额: {key} must be within [0.01, 100000000]"),
    )
}

fn required_amount(biz: &Map<String, Value>, key: &str) -> Result<i64, ApiError> {
    amount_field(biz, key)?.ok_or_else(|| ApiError::invalid_parameter(format!("{key} is required")))
}

/// `out_trade_no` / `out_request_no`: ≤ 64 letters, digits and underscores (official field
/// description: 仅支持字母、数字、下划线).
fn merchant_no(biz: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match text_field(biz, key)? {
        None => Ok(None),
        Some(text)
            if text.len() <= 64 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Ok(Some(text.to_owned()))
        }
        Some(text) => Err(ApiError::invalid_parameter(format!(
            "{key} {text:?} must be at most 64 letters, digits or underscores"
        ))),
    }
}

/// `90m`, `2h`, `15d` within 1m–15d, or `1c`; no decimals.
fn parse_timeout(key: &str, text: &str) -> Result<Timeout, ApiError> {
    if text == "1c" {
        return Ok(Timeout::EndOfDay);
    }
    let invalid = || {
        ApiError::invalid_parameter(format!(
            "{key} {text:?} must be 1m to 15d written as <integer>m|h|d, or 1c"
        ))
    };
    let split = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (digits, unit) = (
        text.get(..split).ok_or_else(invalid)?,
        text.get(split..).ok_or_else(invalid)?,
    );
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let value: i64 = digits.parse().map_err(|_| invalid())?;
    let unit_ms = match unit {
        "m" => MINUTE_MS,
        "h" => HOUR_MS,
        "d" => DAY_MS,
        _ => return Err(invalid()),
    };
    let ms = value.checked_mul(unit_ms).ok_or_else(invalid)?;
    if !(MINUTE_MS..=15 * DAY_MS).contains(&ms) {
        return Err(invalid());
    }
    Ok(Timeout::Relative(ms))
}

fn read_order(biz: &Map<String, Value>, now_ms: UnixMillis) -> Result<Order, ApiError> {
    let out_trade_no = merchant_no(biz, "out_trade_no")?
        .ok_or_else(|| ApiError::invalid_parameter("out_trade_no is required"))?;
    let total_minor = required_amount(biz, "total_amount")?;
    let subject = required_field(biz, "subject")?;
    // Official field description: at most 256 characters, no special characters like / = &.
    if subject.chars().count() > 256 || subject.contains(['/', '=', '&']) {
        return Err(ApiError::invalid_parameter(
            "subject must be at most 256 characters without / = &",
        ));
    }
    if let (Some(discountable), Some(undiscountable)) = (
        amount_field(biz, "discountable_amount")?,
        amount_field(biz, "undiscountable_amount")?,
    ) {
        if discountable.checked_add(undiscountable) != Some(total_minor) {
            return Err(ApiError::invalid_parameter(
                "discountable_amount + undiscountable_amount must equal total_amount",
            ));
        }
    }
    let time_expire_ms = match text_field(biz, "time_expire")? {
        None => None,
        Some(text) => {
            // Older wap-pay docs gave minute precision (yyyy-MM-dd HH:mm); accept both.
            let at = wire::parse_beijing(text)
                .or_else(|| wire::parse_beijing(&format!("{text}:00")))
                .ok_or_else(|| {
                    ApiError::invalid_parameter(format!(
                        "time_expire {text:?} must be yyyy-MM-dd HH:mm:ss"
                    ))
                })?;
            if at <= now_ms {
                return Err(ApiError::invalid_parameter("time_expire is in the past"));
            }
            Some(at)
        }
    };
    let timeout = text_field(biz, "timeout_express")?
        .map(|text| parse_timeout("timeout_express", text))
        .transpose()?;
    Ok(Order {
        out_trade_no,
        total_minor,
        subject: subject.to_owned(),
        body: text_field(biz, "body")?.map(str::to_owned),
        passback_params: text_field(biz, "passback_params")?.map(str::to_owned),
        time_expire_ms,
        timeout,
    })
}

fn inconsistent() -> ApiError {
    ApiError::business(
        "ACQ.CONTEXT_INCONSISTENT",
        "订单信息不一致: out_trade_no was used with different content",
    )
}

fn not_exist() -> ApiError {
    ApiError::business("ACQ.TRADE_NOT_EXIST", "交易不存在")
}

fn has_success() -> ApiError {
    ApiError::business("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
}

fn has_close() -> ApiError {
    ApiError::business("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
}

fn has_finished() -> ApiError {
    ApiError::business("ACQ.TRADE_HAS_FINISHED", "交易已经完结")
}

fn status_error(detail: &str) -> ApiError {
    ApiError::business(
        "ACQ.TRADE_STATUS_ERROR",
        format!("交易状态不合法: {detail}"),
    )
}

/// What a request asks the trade APIs to do, after the gateway checked the common params.
pub struct Call<'a> {
    pub method: &'a str,
    pub app_id: &'a str,
    pub notify_url: Option<&'a str>,
    pub biz: &'a Map<String, Value>,
    pub now_ms: UnixMillis,
}

/// The outcome of a trade API: its node, and the out_trade_no it concerned (for the log).
pub struct Executed {
    pub node: Node,
    pub out_trade_no: Option<String>,
}

impl AlipayMock {
    /// Runs one trade API. Business refusals are values (`Err(ApiError)` becomes a signed
    /// 40004 node), never panics.
    pub(super) fn execute(&self, call: &Call<'_>) -> Result<Executed, (ApiError, Option<String>)> {
        let mut state = self.lock();
        close_refund_windows(&mut state, call.now_ms);
        let out_trade_no = text_field(call.biz, "out_trade_no")
            .ok()
            .flatten()
            .map(str::to_owned);
        let result = match call.method {
            "alipay.trade.precreate" => self.precreate(&mut state, call),
            "alipay.trade.create" => self.create(&mut state, call),
            "alipay.trade.pay" => self.pay(&mut state, call),
            "alipay.trade.query" => self.query(&mut state, call),
            "alipay.trade.close" => self.close(&mut state, call),
            "alipay.trade.cancel" => self.cancel(&mut state, call),
            "alipay.trade.refund" => self.refund(&mut state, call),
            "alipay.trade.fastpay.refund.query" => self.refund_query(&mut state, call),
            super::bill::BILL_METHOD => self.bill_download_url(&mut state, call),
            other => Err(ApiError::invalid(
                "isv.invalid-method",
                format!("不存在的方法名: {other}"),
            )),
        };
        match result {
            Ok(node) => Ok(Executed { node, out_trade_no }),
            Err(error) => Err((error, out_trade_no)),
        }
    }

    /// Registers a new trade (replacing an expired, never-scanned QR code of the same number).
    fn insert_trade(
        &self,
        state: &mut State,
        call: &Call<'_>,
        order: Order,
        product: Product,
        status: TradeStatus,
    ) -> String {
        let sequence = state.next_sequence();
        let trade_no = self.new_trade_no(call.now_ms);
        if let Some(old) = state.trades.get(&order.out_trade_no) {
            if let Some(token) = &old.qr_token {
                state.by_qr_token.remove(token);
            }
            state.by_trade_no.remove(&old.trade_no);
        }
        let exists = status.exists();
        let trade = Trade {
            sequence,
            app_id: call.app_id.to_owned(),
            out_trade_no: order.out_trade_no.clone(),
            trade_no: trade_no.clone(),
            product,
            subject: order.subject,
            body: order.body,
            total_minor: order.total_minor,
            status,
            notify_url: call.notify_url.map(str::to_owned),
            passback_params: order.passback_params,
            qr_token: None,
            gmt_create_ms: exists.then_some(call.now_ms),
            paid_ms: None,
            closed_ms: None,
            close_reason: None,
            time_expire_ms: order.time_expire_ms,
            timeout: order.timeout,
            expires_at_ms: None,
            expiry_event: None,
            buyer: None,
            refunds: Vec::new(),
            refunded_minor: 0,
            notifications: Vec::new(),
        };
        state
            .by_trade_no
            .insert(trade_no, order.out_trade_no.clone());
        state.trades.insert(order.out_trade_no.clone(), trade);
        order.out_trade_no
    }

    fn precreate(&self, state: &mut State, call: &Call<'_>) -> Result<Node, ApiError> {
        let order = read_order(call.biz, call.now_ms)?;
        let qr_timeout = text_field(call.biz, "qr_code_timeout_express")?
            .map(|text| parse_timeout("qr_code_timeout_express", text))
            .transpose()?;
        if let Some(trade) = state.trades.get(&order.out_trade_no) {
            if trade.status != TradeStatus::QrExpired {
                if !trade.same_order(&order, Product::Precreate) || trade.app_id != call.app_id {
                    return Err(inconsistent());
                }
                return match trade.status {
                    TradeStatus::AwaitingScan
                    | TradeStatus::WaitBuyerPay
                    | TradeStatus::QrExpired => Ok(self.precreate_node(trade)),
                    TradeStatus::TradeSuccess | TradeStatus::TradeFinished => Err(has_success()),
                    TradeStatus::TradeClosed => Err(has_close()),
                };
            }
        }
        // The QR code is valid for qr_code_timeout_express (else timeout_express, else 2 h)
        // from now, and never past time_expire.
        let qr_deadline = qr_timeout
            .or(order.timeout)
            .map_or(call.now_ms.saturating_add(DEFAULT_QR_TIMEOUT_MS), |t| {
                t.deadline(call.now_ms)
            });
        let qr_deadline = order
            .time_expire_ms
            .map_or(qr_deadline, |at| at.min(qr_deadline));
        let key = self.insert_trade(
            state,
            call,
            order,
            Product::Precreate,
            TradeStatus::AwaitingScan,
        );
        let token = format!("bax{}", self.entropy.token(24));
        state.by_qr_token.insert(token.clone(), key.clone());
        let trade = state.trades.get_mut(&key).ok_or_else(not_exist)?;
        trade.qr_token = Some(token);
        self.schedule_expiry(trade, qr_deadline);
        Ok(self.precreate_node(trade))
    }

    fn precreate_node(&self, trade: &Trade) -> Node {
        let mut node = Node::success();
        node.push("out_trade_no", trade.out_trade_no.as_str());
        if let Some(token) = &trade.qr_token {
            node.push("qr_code", format!("{}/alipay/qr/{token}", self.base_url));
        }
        node
    }

    fn create(&self, state: &mut State, call: &Call<'_>) -> Result<Node, ApiError> {
        let order = read_order(call.biz, call.now_ms)?;
        if let Some(trade) = state.trades.get(&order.out_trade_no) {
            if !trade.same_order(&order, Product::Create) || trade.app_id != call.app_id {
                return Err(inconsistent());
            }
            return match trade.status {
                TradeStatus::WaitBuyerPay => Ok(trade_ids_node(trade)),
                TradeStatus::TradeSuccess | TradeStatus::TradeFinished => Err(has_success()),
                TradeStatus::TradeClosed => Err(has_close()),
                TradeStatus::AwaitingScan | TradeStatus::QrExpired => Err(inconsistent()),
            };
        }
        let key = self.insert_trade(
            state,
            call,
            order,
            Product::Create,
            TradeStatus::WaitBuyerPay,
        );
        let trade = state.trades.get_mut(&key).ok_or_else(not_exist)?;
        if let Some(buyer_id) = text_field(call.biz, "buyer_id")? {
            trade.buyer = Some(Buyer {
                user_id: buyer_id.to_owned(),
                logon_id: self.masked_logon_id(),
            });
        }
        self.schedule_trade_expiry(trade, call.now_ms);
        Ok(trade_ids_node(trade))
    }

    /// Barcode payment. The `auth_code` (25–30 prefix, 16–24 digits) scripts the outcome by
    /// its last four digits: `0003` waits for the buyer's password (10003, then a buyer
    /// action), `4004` fails (ACQ.PAYMENT_FAIL), `4001` fails (ACQ.BUYER_BALANCE_NOT_ENOUGH),
    /// `2000` pays but answers 20000 (outcome unknown); anything else pays at once.
    fn pay(&self, state: &mut State, call: &Call<'_>) -> Result<Node, ApiError> {
        let order = read_order(call.biz, call.now_ms)?;
        let scene = required_field(call.biz, "scene")?;
        if !matches!(scene, "bar_code" | "wave_code" | "security_code") {
            return Err(ApiError::invalid_parameter(format!(
                "scene {scene:?} must be bar_code or wave_code"
            )));
        }
        let auth_code = required_field(call.biz, "auth_code")?;
        let valid_code = (16..=24).contains(&auth_code.len())
            && auth_code.bytes().all(|b| b.is_ascii_digit())
            && matches!(
                auth_code.get(..2),
                Some("25" | "26" | "27" | "28" | "29" | "30")
            );
        if !valid_code {
            return Err(ApiError::business(
                "ACQ.PAYMENT_AUTH_CODE_INVALID",
                "付款码无效",
            ));
        }
        if let Some(trade) = state.trades.get(&order.out_trade_no) {
            if !trade.same_order(&order, Product::Barcode) || trade.app_id != call.app_id {
                return Err(inconsistent());
            }
            return match trade.status {
                TradeStatus::WaitBuyerPay => {
                    Ok(pay_node(trade, "10003", " order success pay inprocess"))
                }
                TradeStatus::TradeSuccess | TradeStatus::TradeFinished => Err(has_success()),
                TradeStatus::TradeClosed => Err(has_close()),
                TradeStatus::AwaitingScan | TradeStatus::QrExpired => Err(inconsistent()),
            };
        }
        let key = self.insert_trade(
            state,
            call,
            order,
            Product::Barcode,
            TradeStatus::WaitBuyerPay,
        );
        let buyer = Buyer {
            user_id: self.user_id(),
            logon_id: self.masked_logon_id(),
        };
        let suffix = auth_code
            .get(auth_code.len().saturating_sub(4)..)
            .unwrap_or("");
        {
            let trade = state.trades.get_mut(&key).ok_or_else(not_exist)?;
            trade.buyer = Some(buyer);
            match suffix {
                "0003" => {
                    self.schedule_trade_expiry(trade, call.now_ms);
                    return Ok(pay_node(trade, "10003", " order success pay inprocess"));
                }
                "4004" | "4001" => {
                    close_trade(trade, CloseReason::PaymentFailed, call.now_ms);
                    let mut error = if suffix == "4004" {
                        ApiError::business("ACQ.PAYMENT_FAIL", "支付失败")
                    } else {
                        ApiError::business("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足")
                    };
                    error.sub_msg.push_str(" (scripted by auth_code)");
                    return Err(error);
                }
                _ => {}
            }
        }
        self.mark_paid(state, &key, call.now_ms);
        if suffix == "2000" {
            return Err(ApiError::system_error());
        }
        let trade = state.trades.get(&key).ok_or_else(not_exist)?;
        Ok(pay_node(trade, "10000", "Success"))
    }

    /// The trade a query-like call names: `trade_no` wins over `out_trade_no` (notes A3.2);
    /// a trade of another app, or one not created yet, does not exist.
    fn lookup(&self, state: &State, call: &Call<'_>) -> Result<String, ApiError> {
        let key = match (
            text_field(call.biz, "trade_no")?,
            merchant_no(call.biz, "out_trade_no")?,
        ) {
            (Some(trade_no), _) => state.by_trade_no.get(trade_no).cloned(),
            (None, Some(out_trade_no)) => Some(out_trade_no),
            (None, None) => {
                return Err(ApiError::invalid_parameter(
                    "out_trade_no or trade_no is required",
                ))
            }
        };
        match key.and_then(|key| state.trades.get(&key)) {
            Some(trade) if trade.exists() && trade.app_id == call.app_id => {
                Ok(trade.out_trade_no.clone())
            }
            _ => Err(not_exist()),
        }
    }

    fn query(&self, state: &mut State, call: &Call<'_>) -> Result<Node, ApiError> {
        let key = self.lookup(state, call)?;
        let trade = state.trades.get(&key).ok_or_else(not_exist)?;
        let paid = trade.paid_minor();
        let mut node = Node::success();
        node.push("trade_no", trade.trade_no.as_str())
            .push("out_trade_no", trade.out_trade_no.as_str());
        if let Some(buyer) = &trade.buyer {
            node.push("buyer_logon_id", buyer.logon_id.as_str());
        }
        node.push("trade_status", trade.status.name())
            .push("total_amount", format_yuan(trade.total_minor))
            .push("buyer_pay_amount", format_yuan(paid))
            .push("point_amount", "0.00")
            .push("invoice_amount", format_yuan(paid))
            .push("receipt_amount", format_yuan(paid));
        if let Some(paid_ms) = trade.paid_ms {
            node.push("send_pay_date", wire::format_beijing(paid_ms))
                .push(
                    "fund_bill_list",
                    json!([{"fund_channel": "ALIPAYACCOUNT", "amount": format_yuan(paid)}]),
                );
        }
        if let Some(buyer) = &trade.buyer {
            node.push("buyer_user_id", buyer.user_id.as_str());
        }
        Ok(node)
    }

    fn close(&self, state: &mut State, call: &Call<'_>) -> Result<Node, ApiError> {
        let key = self.lookup(state, call)?;
        let trade = state.trades.get_mut(&key).ok_or_else(not_exist)?;
        match trade.status {
            TradeStatus::WaitBuyerPay => {}
            TradeStatus::TradeSuccess => {
                return Err(status_error("the trade is paid; refund it instead"))
            }
            TradeStatus::TradeFinished => return Err(has_finished()),
            TradeStatus::TradeClosed => return Err(has_close()),
            TradeStatus::AwaitingScan | TradeStatus::QrExpired => return Err(not_exist()),
        }
        self.cancel_expiry(trade);
        close_trade(trade, CloseReason::Merchant, call.now_ms);
        let node = trade_ids_node(trade);
        self.notify_status(state, &key, NotifyEvent::Close, call.now_ms);
        Ok(node)
    }

    fn cancel(&self, state: &mut State, call: &Call<'_>) -> Result<Node, ApiError> {
        let key = self.lookup(state, call)?;
        let trade = state.trades.get(&key).ok_or_else(not_exist)?;
        // (action reported, notification to send when this call changed the trade)
        let (action, event) = match trade.status {
            TradeStatus::WaitBuyerPay => {
                let trade = state.trades.get_mut(&key).ok_or_else(not_exist)?;
                self.cancel_expiry(trade);
                close_trade(trade, CloseReason::CancelClose, call.now_ms);
                ("close", Some(NotifyEvent::Close))
            }
            TradeStatus::TradeSuccess => {
                if !trade.refunds.is_empty() {
                    return Err(ApiError::business(
                        "ACQ.CANCEL_NOT_ALLOWED",
                        "交易不允许撤销: the trade has refunds; use alipay.trade.refund",
                    ));
                }
                let paid_ms = trade.paid_ms.unwrap_or(call.now_ms);
                if call.now_ms.saturating_sub(paid_ms) > CANCEL_WINDOW_MS {
                    return Err(ApiError::business(
                        "ACQ.TRADE_CANCEL_TIME_OUT",
                        "超过撤销时间范围",
                    ));
                }
                let sequence = state.next_sequence();
                let trade = state.trades.get_mut(&key).ok_or_else(not_exist)?;
                let out_request_no = trade.out_trade_no.clone();
                trade.refunds.push(Refund {
                    sequence,
                    out_request_no: out_request_no.clone(),
                    amount_minor: trade.total_minor,
                    at_ms: call.now_ms,
                    reason: Some("cancel".into()),
                });
                trade.refunded_minor = trade.total_minor;
                refund_in_full(trade, CloseReason::CancelRefund, call.now_ms);
                let event = NotifyEvent::Refund {
                    out_request_no,
                    at_ms: call.now_ms,
                };
                ("refund", Some(event))
            }
            // A repeated cancel answers what the first one did (retry_flag=N: nothing to retry).
            TradeStatus::TradeClosed => match trade.close_reason {
                Some(CloseReason::CancelRefund) => ("refund", None),
                _ => ("close", None),
            },
            TradeStatus::TradeFinished => return Err(has_finished()),
            TradeStatus::AwaitingScan | TradeStatus::QrExpired => return Err(not_exist()),
        };
        let trade = state.trades.get(&key).ok_or_else(not_exist)?;
        let mut node = trade_ids_node(trade);
        node.push("retry_flag", "N").push("action", action);
        if action == "refund" {
            if let Some(closed_ms) = trade.closed_ms {
                node.push("gmt_refund_pay", wire::format_beijing(closed_ms));
            }
        }
        if let Some(event) = event {
            self.notify_status(state, &key, event, call.now_ms);
        }
        Ok(node)
    }

    fn refund(&self, state: &mut State, call: &Call<'_>) -> Result<Node, ApiError> {
        let key = self.lookup(state, call)?;
        let refund_minor = required_amount(call.biz, "refund_amount")?;
        let given_request_no = merchant_no(call.biz, "out_request_no")?;
        let reason = text_field(call.biz, "refund_reason")?.map(str::to_owned);
        let trade = state.trades.get(&key).ok_or_else(not_exist)?;
        // Without out_request_no the refund is identified by out_trade_no and must be full.
        let out_request_no = given_request_no
            .clone()
            .unwrap_or_else(|| trade.out_trade_no.clone());
        if let Some(previous) = trade
            .refunds
            .iter()
            .find(|r| r.out_request_no == out_request_no)
        {
            if previous.amount_minor != refund_minor {
                return Err(ApiError::business(
                    "ACQ.DISCORDANT_REPEAT_REQUEST",
                    "不一致的请求: out_request_no was used with a different refund_amount",
                ));
            }
            return Ok(refund_node(trade, "N", refund_minor, previous.at_ms));
        }
        match trade.status {
            TradeStatus::TradeSuccess => {}
            TradeStatus::WaitBuyerPay => return Err(status_error("the trade is not paid")),
            TradeStatus::TradeFinished => return Err(has_finished()),
            TradeStatus::TradeClosed => return Err(has_close()),
            TradeStatus::AwaitingScan | TradeStatus::QrExpired => return Err(not_exist()),
        }
        if given_request_no.is_none() && refund_minor != trade.total_minor {
            return Err(ApiError::business(
                "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                "退款金额超限: a partial refund needs out_request_no",
            ));
        }
        let remaining = trade.total_minor.saturating_sub(trade.refunded_minor);
        if refund_minor > remaining {
            return Err(ApiError::business(
                "ACQ.REASON_TRADE_REFUND_FEE_ERR",
                format!(
                    "退款金额无效: at most {} can still be refunded",
                    format_yuan(remaining)
                ),
            ));
        }
        let sequence = state.next_sequence();
        let trade = state.trades.get_mut(&key).ok_or_else(not_exist)?;
        trade.refunds.push(Refund {
            sequence,
            out_request_no: out_request_no.clone(),
            amount_minor: refund_minor,
            at_ms: call.now_ms,
            reason,
        });
        trade.refunded_minor = trade.refunded_minor.saturating_add(refund_minor);
        if trade.refunded_minor >= trade.total_minor {
            refund_in_full(trade, CloseReason::FullyRefunded, call.now_ms);
        }
        let node = refund_node(trade, "Y", refund_minor, call.now_ms);
        self.notify_status(
            state,
            &key,
            NotifyEvent::Refund {
                out_request_no,
                at_ms: call.now_ms,
            },
            call.now_ms,
        );
        Ok(node)
    }

    fn refund_query(&self, state: &mut State, call: &Call<'_>) -> Result<Node, ApiError> {
        let out_request_no = merchant_no(call.biz, "out_request_no")?
            .ok_or_else(|| ApiError::invalid_parameter("out_request_no is required"))?;
        let key = self.lookup(state, call)?;
        let trade = state.trades.get(&key).ok_or_else(not_exist)?;
        let mut node = trade_ids_node(trade);
        node.push("out_request_no", out_request_no.as_str());
        // An unknown refund is still 10000, just without refund_status (official FAQ: only
        // refund_status=REFUND_SUCCESS means refunded).
        if let Some(refund) = trade
            .refunds
            .iter()
            .find(|r| r.out_request_no == out_request_no)
        {
            node.push("total_amount", format_yuan(trade.total_minor))
                .push("refund_amount", format_yuan(refund.amount_minor))
                .push("refund_status", "REFUND_SUCCESS")
                .push("gmt_refund_pay", wire::format_beijing(refund.at_ms));
            if let Some(reason) = &refund.reason {
                node.push("refund_reason", reason.as_str());
            }
        }
        Ok(node)
    }

    /// A masked buyer logon id in the phone-number style Alipay shows (`138****1234`).
    fn masked_logon_id(&self) -> String {
        format!(
            "1{:02}****{:04}",
            30 + self.entropy.uniform_below(60),
            self.entropy.uniform_below(10_000)
        )
    }

    /// A trade the buyer opens in a cashier (page, wap) or the wallet (app): it comes into
    /// existence now, as WAIT_BUYER_PAY with a logged-in buyer, and expires like any trade.
    /// Re-opening the same order answers the existing trade while it is unpaid; a paid,
    /// closed or different order under the same out_trade_no is refused. Returns the key.
    pub(super) fn open_buyer_trade(
        &self,
        state: &mut State,
        call: &Call<'_>,
        product: Product,
    ) -> Result<String, ApiError> {
        close_refund_windows(state, call.now_ms);
        let order = read_order(call.biz, call.now_ms)?;
        if let Some(code) = text_field(call.biz, "product_code")? {
            if !product.product_codes().contains(&code) {
                return Err(ApiError::invalid_parameter(format!(
                    "product_code {code:?} must be {} for {}",
                    product.product_codes().join(" or "),
                    call.method
                )));
            }
        }
        if let Some(trade) = state.trades.get(&order.out_trade_no) {
            if !trade.same_order(&order, product) || trade.app_id != call.app_id {
                return Err(inconsistent());
            }
            return match trade.status {
                TradeStatus::WaitBuyerPay => Ok(trade.out_trade_no.clone()),
                TradeStatus::TradeSuccess | TradeStatus::TradeFinished => Err(has_success()),
                TradeStatus::TradeClosed => Err(has_close()),
                TradeStatus::AwaitingScan | TradeStatus::QrExpired => Err(inconsistent()),
            };
        }
        let buyer = Buyer {
            user_id: self.user_id(),
            logon_id: self.masked_logon_id(),
        };
        let key = self.insert_trade(state, call, order, product, TradeStatus::WaitBuyerPay);
        let trade = state.trades.get_mut(&key).ok_or_else(not_exist)?;
        trade.buyer = Some(buyer);
        self.schedule_trade_expiry(trade, call.now_ms);
        Ok(key)
    }

    /// WAIT_BUYER_PAY → TRADE_SUCCESS, with its notification.
    pub(super) fn mark_paid(&self, state: &mut State, key: &str, now_ms: UnixMillis) {
        let Some(trade) = state.trades.get_mut(key) else {
            return;
        };
        let Some(next) = step(trade.status, Event::Pay) else {
            return;
        };
        self.cancel_expiry(trade);
        trade.status = next;
        trade.paid_ms = Some(now_ms);
        trade.expires_at_ms = None;
        self.notify_status(state, key, NotifyEvent::Payment, now_ms);
    }

    /// AWAITING_SCAN → WAIT_BUYER_PAY: the trade comes into existence with a buyer.
    fn mark_scanned(&self, state: &mut State, key: &str, now_ms: UnixMillis) {
        let user_id = self.user_id();
        let logon_id = self.masked_logon_id();
        let Some(trade) = state.trades.get_mut(key) else {
            return;
        };
        let Some(next) = step(trade.status, Event::Scan) else {
            return;
        };
        trade.status = next;
        trade.gmt_create_ms = Some(now_ms);
        trade.buyer = Some(Buyer { user_id, logon_id });
        self.schedule_trade_expiry(trade, now_ms);
    }

    pub(super) fn apply_buyer_action(
        &self,
        state: &mut State,
        key: &str,
        action: BuyerAction,
        now_ms: UnixMillis,
    ) -> Result<(), ControlError> {
        let status = state
            .trades
            .get(key)
            .map(|trade| trade.status)
            .ok_or_else(|| crate::control::trade_not_found(key))?;
        let refuse = || {
            ControlError::conflict(
                "invalid_action",
                format!(
                    "cannot {} a trade in state {}",
                    action.name(),
                    status.name()
                ),
            )
        };
        match (action, status) {
            (BuyerAction::Scan, TradeStatus::AwaitingScan) => self.mark_scanned(state, key, now_ms),
            (BuyerAction::Scan, TradeStatus::WaitBuyerPay) => {}
            (BuyerAction::Pay, TradeStatus::AwaitingScan) => {
                self.mark_scanned(state, key, now_ms);
                self.mark_paid(state, key, now_ms);
            }
            (BuyerAction::Pay, TradeStatus::WaitBuyerPay) => self.mark_paid(state, key, now_ms),
            (BuyerAction::Fail, TradeStatus::AwaitingScan | TradeStatus::WaitBuyerPay) => {
                if status == TradeStatus::AwaitingScan {
                    self.mark_scanned(state, key, now_ms);
                }
                if let Some(trade) = state.trades.get_mut(key) {
                    self.cancel_expiry(trade);
                    close_trade(trade, CloseReason::BuyerFailed, now_ms);
                }
                self.notify_status(state, key, NotifyEvent::Close, now_ms);
            }
            (BuyerAction::Abandon, TradeStatus::AwaitingScan | TradeStatus::WaitBuyerPay) => {}
            (
                BuyerAction::Scan | BuyerAction::Pay | BuyerAction::Fail | BuyerAction::Abandon,
                TradeStatus::QrExpired
                | TradeStatus::TradeSuccess
                | TradeStatus::TradeFinished
                | TradeStatus::TradeClosed,
            ) => return Err(refuse()),
        }
        Ok(())
    }

    /// Schedules the close of an existing trade: time_expire, else timeout_express from
    /// `from_ms`, else the 15-day default.
    fn schedule_trade_expiry(&self, trade: &mut Trade, from_ms: UnixMillis) {
        let deadline = match (trade.time_expire_ms, trade.timeout) {
            (Some(at), _) => at,
            (None, Some(timeout)) => timeout.deadline(from_ms),
            (None, None) => from_ms.saturating_add(DEFAULT_TRADE_TIMEOUT_MS),
        };
        self.schedule_expiry(trade, deadline);
    }

    fn schedule_expiry(&self, trade: &mut Trade, at_ms: UnixMillis) {
        self.cancel_expiry(trade);
        let this = self.this.clone();
        let key = trade.out_trade_no.clone();
        let label = format!("alipay expire {key}");
        trade.expires_at_ms = Some(at_ms);
        trade.expiry_event = Some(self.scheduler.schedule_after(
            // The channel's clock may be skewed; the run's scheduler is not.
            at_ms.saturating_sub(self.now_ms()),
            label,
            job(move || async move {
                if let Some(mock) = this.upgrade() {
                    mock.expire(&key);
                }
            }),
        ));
    }

    fn cancel_expiry(&self, trade: &mut Trade) {
        if let Some(event) = trade.expiry_event.take() {
            self.scheduler.cancel(event);
        }
    }

    /// The expiry event: an unscanned QR code lapses; an unpaid trade closes.
    fn expire(&self, key: &str) {
        let now_ms = self.now_ms();
        let mut state = self.lock();
        let Some(trade) = state.trades.get_mut(key) else {
            return;
        };
        trade.expiry_event = None;
        match trade.status {
            TradeStatus::AwaitingScan => {
                if let Some(next) = step(trade.status, Event::QrTimeout) {
                    trade.status = next;
                }
            }
            TradeStatus::WaitBuyerPay => {
                close_trade(trade, CloseReason::Timeout, now_ms);
                self.notify_status(&mut state, key, NotifyEvent::Close, now_ms);
            }
            TradeStatus::QrExpired
            | TradeStatus::TradeSuccess
            | TradeStatus::TradeFinished
            | TradeStatus::TradeClosed => {}
        }
    }
}

/// WAIT_BUYER_PAY → TRADE_CLOSED.
fn close_trade(trade: &mut Trade, reason: CloseReason, now_ms: UnixMillis) {
    if let Some(next) = step(trade.status, Event::Close) {
        trade.status = next;
        trade.closed_ms = Some(now_ms);
        trade.close_reason = Some(reason);
        trade.expires_at_ms = None;
    }
}

/// TRADE_SUCCESS → TRADE_FINISHED for every trade paid more than the refund window ago.
pub(super) fn close_refund_windows(state: &mut State, now_ms: UnixMillis) {
    for trade in state.trades.values_mut() {
        let window_over = trade
            .paid_ms
            .is_some_and(|paid_ms| now_ms.saturating_sub(paid_ms) >= REFUND_WINDOW_MS);
        if window_over {
            if let Some(next) = step(trade.status, Event::RefundWindowEnd) {
                trade.status = next;
            }
        }
    }
}

/// TRADE_SUCCESS → TRADE_CLOSED once everything paid has been refunded.
fn refund_in_full(trade: &mut Trade, reason: CloseReason, now_ms: UnixMillis) {
    if let Some(next) = step(trade.status, Event::FullRefund) {
        trade.status = next;
        trade.closed_ms = Some(now_ms);
        trade.close_reason = Some(reason);
    }
}

fn trade_ids_node(trade: &Trade) -> Node {
    let mut node = Node::success();
    node.push("trade_no", trade.trade_no.as_str())
        .push("out_trade_no", trade.out_trade_no.as_str());
    node
}

fn pay_node(trade: &Trade, code: &str, msg: &str) -> Node {
    let paid = trade.paid_minor();
    let mut node = Node::with_code(code, msg);
    node.push("trade_no", trade.trade_no.as_str())
        .push("out_trade_no", trade.out_trade_no.as_str());
    if let Some(buyer) = &trade.buyer {
        node.push("buyer_logon_id", buyer.logon_id.as_str());
    }
    node.push("total_amount", format_yuan(trade.total_minor))
        .push("receipt_amount", format_yuan(paid))
        .push("buyer_pay_amount", format_yuan(paid))
        .push("point_amount", "0.00")
        .push("invoice_amount", format_yuan(paid));
    if let Some(paid_ms) = trade.paid_ms {
        node.push("gmt_payment", wire::format_beijing(paid_ms))
            .push(
                "fund_bill_list",
                json!([{"fund_channel": "ALIPAYACCOUNT", "amount": format_yuan(paid)}]),
            );
    }
    if let Some(buyer) = &trade.buyer {
        node.push("buyer_user_id", buyer.user_id.as_str());
    }
    node
}

fn refund_node(trade: &Trade, fund_change: &str, refund_minor: i64, at_ms: UnixMillis) -> Node {
    let mut node = trade_ids_node(trade);
    if let Some(buyer) = &trade.buyer {
        node.push("buyer_logon_id", buyer.logon_id.as_str());
    }
    node.push("fund_change", fund_change)
        .push("refund_fee", format_yuan(trade.refunded_minor))
        .push("gmt_refund_pay", wire::format_beijing(at_ms));
    if let Some(buyer) = &trade.buyer {
        node.push("buyer_user_id", buyer.user_id.as_str());
    }
    node.push(
        "send_back_fee",
        format_yuan(if fund_change == "Y" { refund_minor } else { 0 }),
    );
    node
}

/// `GET /alipay/qr/{token}`: what the buyer's phone shows after scanning, with buttons for
/// the buyer actions (a stand-in for the Alipay app).
pub(super) async fn qr_page(
    AxumState(mock): AxumState<Arc<AlipayMock>>,
    Path(token): Path<String>,
) -> Response {
    let state = mock.lock();
    let Some(trade) = state
        .by_qr_token
        .get(&token)
        .and_then(|key| state.trades.get(key))
    else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>二维码无效 / unknown QR code</h1>"),
        )
            .into_response();
    };
    let buttons = ["scan", "pay", "fail", "abandon"]
        .iter()
        .map(|action| format!(r#"<button name="action" value="{action}">{action}</button>"#))
        .collect::<String>();
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>paysim Alipay</title>\
         <h1>paysim Alipay — {subject}</h1><p>¥{amount} · out_trade_no {out} · {status}</p>\
         <form method=post>{buttons}</form>",
        subject = escape_html(&trade.subject),
        amount = format_yuan(trade.total_minor),
        out = escape_html(&trade.out_trade_no),
        status = trade.status.name(),
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response()
}

/// `POST /alipay/qr/{token}` with form `action=scan|pay|fail|abandon`.
pub(super) async fn qr_action(
    AxumState(mock): AxumState<Arc<AlipayMock>>,
    Path(token): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let action = match BuyerAction::from_form(&body) {
        Ok(action) => action,
        Err(error) => return error.into_response(),
    };
    let now_ms = mock.now_ms();
    let mut state = mock.lock();
    let Some(key) = state.by_qr_token.get(&token).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>二维码无效 / unknown QR code</h1>"),
        )
            .into_response();
    };
    match mock.apply_buyer_action(&mut state, &key, action, now_ms) {
        Ok(()) => Redirect::to(&format!("/alipay/qr/{token}")).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Text made safe for HTML element content and double-quoted attributes.
pub(super) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_within_the_documented_range() {
        assert_eq!(
            parse_timeout("t", "90m"),
            Ok(Timeout::Relative(90 * MINUTE_MS))
        );
        assert_eq!(parse_timeout("t", "2h"), Ok(Timeout::Relative(2 * HOUR_MS)));
        assert_eq!(
            parse_timeout("t", "15d"),
            Ok(Timeout::Relative(15 * DAY_MS))
        );
        assert_eq!(parse_timeout("t", "1c"), Ok(Timeout::EndOfDay));
        for bad in [
            "0m",
            "16d",
            "1.5h",
            "h",
            "",
            "5s",
            "-1m",
            "99999999999999999999d",
        ] {
            assert!(parse_timeout("t", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transitions_only_along_the_documented_edges() {
        use TradeStatus as S;
        assert_eq!(step(S::AwaitingScan, Event::Scan), Some(S::WaitBuyerPay));
        assert_eq!(step(S::WaitBuyerPay, Event::Pay), Some(S::TradeSuccess));
        assert_eq!(
            step(S::TradeSuccess, Event::FullRefund),
            Some(S::TradeClosed)
        );
        assert_eq!(step(S::TradeSuccess, Event::Close), None);
        assert_eq!(
            step(S::TradeClosed, Event::Pay),
            None,
            "terminal states are monotonic"
        );
        assert_eq!(step(S::TradeFinished, Event::FullRefund), None);
        assert_eq!(
            step(S::TradeSuccess, Event::RefundWindowEnd),
            Some(S::TradeFinished)
        );
    }

    #[test]
    fn amounts_follow_the_price_rules() {
        let biz = |value: Value| {
            let mut map = Map::new();
            map.insert("a".into(), value);
            map
        };
        assert_eq!(amount_field(&biz(json!("88.88")), "a"), Ok(Some(8_888)));
        assert_eq!(amount_field(&biz(json!(88.8)), "a"), Ok(Some(8_880)));
        assert_eq!(amount_field(&biz(json!(1)), "a"), Ok(Some(100)));
        let sub = |value: Value| amount_field(&biz(value), "a").unwrap_err().sub_code;
        assert_eq!(sub(json!("1.001")), "ACQ.INVALID_PARAMETER");
        assert_eq!(sub(json!("0.00")), "ACQ.INVALID_PARAMETER");
        assert_eq!(sub(json!(true)), "ACQ.INVALID_PARAMETER");
        assert_eq!(sub(json!("100000000.01")), "ACQ.TOTAL_FEE_EXCEED");
        assert_eq!(
            amount_field(&biz(json!("100000000")), "a"),
            Ok(Some(10_000_000_000))
        );
    }
}
