//! Orders of the mock WeChat Pay server: the `trade_state` machine, the prepay APIs (Native,
//! JSAPI, APP, H5), query by `transaction_id` / `out_trade_no`, close, expiry at
//! `time_expire` on the scheduler, buyer actions, and the buyer page behind `h5_url`.

use std::sync::Arc;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use determinism::{job, parse_rfc3339, EntropyExt, EventId, UnixMillis};
use serde_json::{json, Map, Value};

use super::api::{Call, Reply};
use super::wire::{self, ApiError};
use super::{State, TradeKey, WechatpayMock};
use crate::control::{BuyerAction, ControlError};
use crate::money::format_yuan;

/// An API's outcome: the reply or the refusal, with the out_trade_no it concerned (for the
/// exchange log).
pub(super) type ApiResult = Result<(Reply, Option<String>), (ApiError, Option<String>)>;

/// Which prepay API created the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeType {
    Native,
    Jsapi,
    App,
    H5,
    /// `POST /v3/pay/transactions/codepay` (付款码).
    Micropay,
}

impl TradeType {
    /// `trade_type` on the wire (H5 is `MWEB`).
    pub fn wire(self) -> &'static str {
        match self {
            TradeType::Native => "NATIVE",
            TradeType::Jsapi => "JSAPI",
            TradeType::App => "APP",
            TradeType::H5 => "MWEB",
            TradeType::Micropay => "MICROPAY",
        }
    }

    /// The product name on the control plane.
    pub fn product(self) -> &'static str {
        match self {
            TradeType::Native => "native",
            TradeType::Jsapi => "jsapi",
            TradeType::App => "app",
            TradeType::H5 => "h5",
            TradeType::Micropay => "codepay",
        }
    }
}

/// `trade_state` of an order. USERPAYING and REVOKED belong to the payment-code flow
/// (codepay / reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeState {
    NotPay,
    UserPaying,
    Success,
    Refund,
    Closed,
    Revoked,
    PayError,
}

impl TradeState {
    pub fn name(self) -> &'static str {
        match self {
            TradeState::NotPay => "NOTPAY",
            TradeState::UserPaying => "USERPAYING",
            TradeState::Success => "SUCCESS",
            TradeState::Refund => "REFUND",
            TradeState::Closed => "CLOSED",
            TradeState::Revoked => "REVOKED",
            TradeState::PayError => "PAYERROR",
        }
    }

    fn desc(self) -> &'static str {
        match self {
            TradeState::NotPay => "订单未支付",
            TradeState::UserPaying => "需要用户输入支付密码",
            TradeState::Success => "支付成功",
            TradeState::Refund => "转入退款",
            TradeState::Closed => "订单已关闭",
            TradeState::Revoked => "订单已撤销",
            TradeState::PayError => "支付失败，请重新下单支付",
        }
    }
}

/// What moves an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Pay,
    PayFailed,
    Close,
    Expire,
    RefundRequested,
    /// `…/reverse` (撤销).
    Revoke,
}

/// The one transition function (notes A4, SK-state). `None`: the event does not apply.
pub fn step(state: TradeState, event: Event) -> Option<TradeState> {
    use TradeState as S;
    match (state, event) {
        (S::NotPay | S::UserPaying, Event::Pay) => Some(S::Success),
        (S::NotPay | S::UserPaying, Event::PayFailed) => Some(S::PayError),
        (S::NotPay | S::UserPaying | S::PayError, Event::Close | Event::Expire) => Some(S::Closed),
        (S::Success | S::Refund, Event::RefundRequested) => Some(S::Refund),
        // 撤销: an unpaid or failed payment closes as REVOKED; a paid one (no refund yet) is
        // returned to the buyer and also ends REVOKED (reverse API page).
        (S::NotPay | S::UserPaying | S::PayError | S::Success, Event::Revoke) => Some(S::Revoked),
        (S::NotPay | S::UserPaying, Event::RefundRequested)
        | (S::PayError, Event::Pay | Event::PayFailed | Event::RefundRequested)
        | (S::Success | S::Refund, Event::Pay | Event::PayFailed | Event::Close | Event::Expire)
        | (S::Refund, Event::Revoke)
        | (S::Closed | S::Revoked, _) => None,
    }
}

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// Orders without `time_expire` close after 7 days (SK-state).
const DEFAULT_VALIDITY_MS: i64 = 7 * DAY_MS;

/// One order.
#[derive(Debug, Clone)]
pub struct Trade {
    pub sequence: u64,
    pub mchid: String,
    pub appid: String,
    pub out_trade_no: String,
    /// Assigned up front, revealed once paid.
    pub transaction_id: String,
    pub trade_type: TradeType,
    pub description: String,
    pub attach: Option<String>,
    pub notify_url: String,
    pub total_minor: i64,
    pub payer_openid: Option<String>,
    pub state: TradeState,
    pub created_ms: UnixMillis,
    pub paid_ms: Option<UnixMillis>,
    pub closed_ms: Option<UnixMillis>,
    pub time_expire_ms: UnixMillis,
    pub expiry_event: Option<EventId>,
    /// code_url, prepay_id or h5_url: what a repeated identical prepay answers again.
    pub credential: (&'static str, String),
    /// The payment code of a codepay order.
    pub auth_code: Option<String>,
    /// Indexes into the refund list.
    pub refunds: Vec<usize>,
    /// Indexes into the notification list (payment notifications).
    pub notifications: Vec<usize>,
}

impl Trade {
    /// Refunded so far (SUCCESS refunds).
    pub fn refunded_minor(&self, state: &State) -> i64 {
        self.refund_sum(state, |status| {
            status == super::refund::RefundStatus::Success
        })
    }

    /// Refunds holding money: PROCESSING, SUCCESS and ABNORMAL (not CLOSED).
    pub fn reserved_minor(&self, state: &State) -> i64 {
        self.refund_sum(state, |status| {
            status != super::refund::RefundStatus::Closed
        })
    }

    fn refund_sum(
        &self,
        state: &State,
        counts: impl Fn(super::refund::RefundStatus) -> bool,
    ) -> i64 {
        self.refunds
            .iter()
            .filter_map(|&index| state.refunds.get(index))
            .filter(|refund| counts(refund.status))
            .fold(0_i64, |sum, refund| sum.saturating_add(refund.amount_minor))
    }

    /// The Transaction object (query answer and notification plaintext).
    pub fn transaction_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("appid".into(), json!(self.appid));
        object.insert("mchid".into(), json!(self.mchid));
        object.insert("out_trade_no".into(), json!(self.out_trade_no));
        let paid = self.paid_ms.is_some();
        if paid {
            object.insert("transaction_id".into(), json!(self.transaction_id));
            object.insert("trade_type".into(), json!(self.trade_type.wire()));
        }
        object.insert("trade_state".into(), json!(self.state.name()));
        object.insert("trade_state_desc".into(), json!(self.state.desc()));
        if paid {
            object.insert("bank_type".into(), json!("OTHERS"));
        }
        object.insert(
            "attach".into(),
            json!(self.attach.clone().unwrap_or_default()),
        );
        if let Some(paid_ms) = self.paid_ms {
            object.insert("success_time".into(), json!(wire::format_time(paid_ms)));
            if let Some(openid) = &self.payer_openid {
                object.insert("payer".into(), json!({ "openid": openid }));
            }
            object.insert(
                "amount".into(),
                json!({"total": self.total_minor, "payer_total": self.total_minor,
                       "currency": "CNY", "payer_currency": "CNY"}),
            );
        } else {
            object.insert(
                "amount".into(),
                json!({"total": self.total_minor, "currency": "CNY", "payer_currency": "CNY"}),
            );
        }
        Value::Object(object)
    }
}

/// The fields of a prepay request.
struct Order {
    appid: String,
    out_trade_no: String,
    description: String,
    notify_url: String,
    total_minor: i64,
    attach: Option<String>,
    time_expire_ms: Option<UnixMillis>,
    payer_openid: Option<String>,
}

/// `out_trade_no`: 6–32 of `[0-9A-Za-z_-|*]`.
pub(super) fn valid_out_trade_no(no: &str) -> bool {
    (6..=32).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

fn read_order(
    body: &Map<String, Value>,
    trade_type: TradeType,
    call: &Call<'_>,
) -> Result<Order, ApiError> {
    let appid = wire::required_str(body, "appid")?;
    let mchid = wire::required_str(body, "mchid")?;
    if mchid != call.merchant.mchid {
        return Err(ApiError::param("mchid 与 Authorization 中的商户号不一致"));
    }
    let description = wire::required_str(body, "description")?;
    if description.is_empty() || description.chars().count() > 127 {
        return Err(ApiError::param("description 长度应为1到127个字符"));
    }
    let out_trade_no = wire::required_str(body, "out_trade_no")?;
    if !valid_out_trade_no(out_trade_no) {
        return Err(ApiError::param(
            "out_trade_no 应为6到32位数字、大小写字母、_-|*",
        ));
    }
    let notify_url = wire::required_str(body, "notify_url")?;
    let url_ok = (notify_url.starts_with("https://") || notify_url.starts_with("http://"))
        && !notify_url.contains('?')
        && notify_url.len() <= 255;
    if !url_ok {
        return Err(ApiError::param(
            "notify_url 应为不带参数的 http(s) 地址（真实环境要求 https）",
        ));
    }
    let amount =
        wire::optional_object(body, "amount")?.ok_or_else(|| ApiError::param("缺少参数 amount"))?;
    let total_minor = wire::required_fen(amount, "/amount", "total")?;
    wire::check_currency(amount, "/amount")?;
    let attach = wire::optional_str(body, "attach")?;
    if attach.is_some_and(|a| a.chars().count() > 128) {
        return Err(ApiError::param("attach 长度不能超过128个字符"));
    }
    let time_expire_ms = match wire::optional_str(body, "time_expire")? {
        None => None,
        Some(text) => Some(parse_rfc3339(text).map_err(|_| {
            ApiError::param(format!(
                "time_expire {text:?} 格式错误，应为 yyyy-MM-DDTHH:mm:ss+TIMEZONE"
            ))
        })?),
    };
    let payer_openid = match wire::optional_object(body, "payer")? {
        Some(payer) => wire::optional_str(payer, "openid")?.map(str::to_owned),
        None => None,
    };
    match trade_type {
        TradeType::Jsapi if payer_openid.as_deref().is_none_or(str::is_empty) => {
            return Err(ApiError::param("缺少参数 /payer/openid"))
        }
        TradeType::H5 => {
            let scene = wire::optional_object(body, "scene_info")?
                .ok_or_else(|| ApiError::param("缺少参数 scene_info"))?;
            wire::required_str(scene, "payer_client_ip")?;
            let h5_info = wire::optional_object(scene, "h5_info")?
                .ok_or_else(|| ApiError::param("缺少参数 /scene_info/h5_info"))?;
            wire::required_str(h5_info, "type")?;
        }
        TradeType::Jsapi | TradeType::Native | TradeType::App | TradeType::Micropay => {}
    }
    if appid != call.merchant.appid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "APPID_MCHID_NOT_MATCH",
            "appid和mch_id不匹配",
        ));
    }
    Ok(Order {
        appid: appid.to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        description: description.to_owned(),
        notify_url: notify_url.to_owned(),
        total_minor,
        attach: attach.map(str::to_owned),
        time_expire_ms,
        payer_openid,
    })
}

pub(super) fn not_exist() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")
}

pub(super) fn order_paid() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ORDERPAID", "该订单已支付")
}

pub(super) fn order_closed() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭")
}

fn credential_reply(trade: &Trade) -> Reply {
    let (field, value) = &trade.credential;
    let mut object = Map::new();
    object.insert((*field).to_owned(), Value::String(value.clone()));
    Reply::Json(Value::Object(object).to_string())
}

/// The `mchid` query parameter of the query APIs: required and the caller's own.
fn check_query_mchid(call: &Call<'_>) -> Result<(), ApiError> {
    match wire::query_param(call.query, "mchid") {
        None => Err(ApiError::param("缺少参数 mchid")),
        Some(mchid) if mchid == call.merchant.mchid => Ok(()),
        Some(_) => Err(ApiError::param("mchid 与 Authorization 中的商户号不一致")),
    }
}

impl WechatpayMock {
    /// `POST /v3/pay/transactions/{native|jsapi|app|h5}`.
    pub(super) fn prepay(&self, trade_type: TradeType, call: &Call<'_>) -> ApiResult {
        let body = wire::json_object(call.body).map_err(|e| (e, None))?;
        let logged = wire::optional_str(&body, "out_trade_no")
            .ok()
            .flatten()
            .map(str::to_owned);
        let fail = |error: ApiError| (error, logged.clone());
        let order = read_order(&body, trade_type, call).map_err(fail)?;
        let key: TradeKey = (call.merchant.mchid.clone(), order.out_trade_no.clone());
        let mut state = self.lock();
        if let Some(trade) = state.trades.get(&key) {
            if trade.trade_type != trade_type {
                return Err(fail(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "OUT_TRADE_NO_USED",
                    "商户订单号重复",
                )));
            }
            let same = trade.appid == order.appid
                && trade.description == order.description
                && trade.total_minor == order.total_minor
                && (trade_type != TradeType::Jsapi || trade.payer_openid == order.payer_openid);
            if !same {
                return Err(fail(ApiError::invalid_request(
                    "请求重入时，参数与首次请求时不一致",
                )));
            }
            return match trade.state {
                TradeState::NotPay | TradeState::PayError | TradeState::UserPaying => {
                    Ok((credential_reply(trade), logged.clone()))
                }
                TradeState::Success | TradeState::Refund => Err(fail(order_paid())),
                TradeState::Closed | TradeState::Revoked => Err(fail(order_closed())),
            };
        }
        let now_ms = call.now_ms;
        // time_expire earlier than order time + 1 min is bumped to + 1 min (notes A4).
        let time_expire_ms = order
            .time_expire_ms
            .map_or(now_ms.saturating_add(DEFAULT_VALIDITY_MS), |at| {
                at.max(now_ms.saturating_add(MINUTE_MS))
            });
        let pay_token = self.entropy.token(16);
        let credential = match trade_type {
            TradeType::Native => (
                "code_url",
                format!("weixin://wxpay/bizpayurl?pr={}", self.entropy.token(10)),
            ),
            TradeType::Jsapi | TradeType::App => (
                "prepay_id",
                format!("wx{}{}", wire::compact_time(now_ms), self.entropy.hex(10)),
            ),
            TradeType::H5 | TradeType::Micropay => (
                "h5_url",
                format!("{}/wechatpay/pay/{pay_token}", self.base_url),
            ),
        };
        let transaction_id = self.transaction_id(now_ms);
        let sequence = state.next_sequence();
        let mut trade = Trade {
            sequence,
            mchid: call.merchant.mchid.clone(),
            appid: order.appid,
            out_trade_no: order.out_trade_no,
            transaction_id,
            trade_type,
            description: order.description,
            attach: order.attach,
            notify_url: order.notify_url,
            total_minor: order.total_minor,
            payer_openid: order.payer_openid,
            state: TradeState::NotPay,
            created_ms: now_ms,
            paid_ms: None,
            closed_ms: None,
            time_expire_ms,
            expiry_event: None,
            credential,
            auth_code: None,
            refunds: Vec::new(),
            notifications: Vec::new(),
        };
        self.schedule_expiry(&mut trade, &key);
        let reply = credential_reply(&trade);
        state.by_pay_token.insert(pay_token, key.clone());
        state.trades.insert(key, trade);
        Ok((reply, logged))
    }

    /// `GET /v3/pay/transactions/id/{transaction_id}?mchid=`.
    pub(super) fn query_by_transaction_id(&self, id: &str, call: &Call<'_>) -> ApiResult {
        check_query_mchid(call).map_err(|e| (e, None))?;
        let state = self.lock();
        let trade = state
            .by_transaction_id
            .get(id)
            .filter(|(mchid, _)| *mchid == call.merchant.mchid)
            .and_then(|key| state.trades.get(key))
            .ok_or((not_exist(), None))?;
        Ok((
            Reply::Json(trade.transaction_json().to_string()),
            Some(trade.out_trade_no.clone()),
        ))
    }

    /// `GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=`.
    pub(super) fn query_by_out_trade_no(&self, no: &str, call: &Call<'_>) -> ApiResult {
        let logged = Some(no.to_owned());
        check_query_mchid(call).map_err(|e| (e, logged.clone()))?;
        let state = self.lock();
        let trade = state
            .trades
            .get(&(call.merchant.mchid.clone(), no.to_owned()))
            .ok_or((not_exist(), logged.clone()))?;
        Ok((Reply::Json(trade.transaction_json().to_string()), logged))
    }

    /// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close` → 204. Closing a
    /// closed order answers 204 again; a paid order cannot be closed.
    pub(super) fn close(&self, no: &str, call: &Call<'_>) -> ApiResult {
        let logged = Some(no.to_owned());
        let fail = |error: ApiError| (error, logged.clone());
        let body = wire::json_object(call.body).map_err(fail)?;
        let mchid = wire::required_str(&body, "mchid").map_err(fail)?;
        if mchid != call.merchant.mchid {
            return Err(fail(ApiError::param(
                "mchid 与 Authorization 中的商户号不一致",
            )));
        }
        let mut state = self.lock();
        let trade = state
            .trades
            .get_mut(&(call.merchant.mchid.clone(), no.to_owned()))
            .ok_or_else(|| fail(not_exist()))?;
        match trade.state {
            TradeState::NotPay | TradeState::PayError | TradeState::UserPaying => {
                self.close_trade(trade, Event::Close, call.now_ms);
                Ok((Reply::NoContent, logged))
            }
            TradeState::Closed => Ok((Reply::NoContent, logged)),
            TradeState::Revoked => Err(fail(order_closed())),
            TradeState::Success | TradeState::Refund => Err(fail(order_paid())),
        }
    }

    pub(super) fn close_trade(&self, trade: &mut Trade, event: Event, now_ms: UnixMillis) {
        if let Some(next) = step(trade.state, event) {
            self.cancel_expiry(trade);
            trade.state = next;
            trade.closed_ms = Some(now_ms);
        }
    }

    /// A new `transaction_id`: `42000` + 5 digits + the Beijing date + 10 digits (28 digits).
    pub(super) fn transaction_id(&self, now_ms: UnixMillis) -> String {
        format!(
            "42000{:05}{}{:010}",
            self.entropy.uniform_below(100_000),
            wire::compact_time(now_ms).get(..8).unwrap_or("20000101"),
            self.entropy.uniform_below(10_000_000_000)
        )
    }

    /// NOTPAY / USERPAYING → SUCCESS, with its TRANSACTION.SUCCESS notification when the
    /// order named a `notify_url` (codepay orders have none: the payment-code flow has no
    /// payment notification).
    pub(super) fn mark_paid(&self, state: &mut State, key: &TradeKey, now_ms: UnixMillis) {
        let openid = self.openid();
        let Some(trade) = state.trades.get_mut(key) else {
            return;
        };
        let Some(next) = step(trade.state, Event::Pay) else {
            return;
        };
        self.cancel_expiry(trade);
        trade.state = next;
        trade.paid_ms = Some(now_ms);
        trade.payer_openid.get_or_insert(openid);
        let transaction_id = trade.transaction_id.clone();
        let notify = !trade.notify_url.is_empty();
        state.by_transaction_id.insert(transaction_id, key.clone());
        if notify {
            self.notify_payment(state, key, now_ms);
        }
    }

    /// `o` + 27 characters, the shape of an openid.
    pub(super) fn openid(&self) -> String {
        format!("o{}", self.entropy.token(27))
    }

    pub(super) fn apply_buyer_action(
        &self,
        state: &mut State,
        key: &TradeKey,
        action: BuyerAction,
        now_ms: UnixMillis,
    ) -> Result<(), ControlError> {
        let trade_state = state
            .trades
            .get(key)
            .map(|trade| trade.state)
            .ok_or_else(|| crate::control::trade_not_found(&key.1))?;
        let refuse = || {
            ControlError::conflict(
                "invalid_action",
                format!(
                    "cannot {} an order in trade_state {}",
                    action.name(),
                    trade_state.name()
                ),
            )
        };
        match (action, trade_state) {
            // Opening the payment sheet does not change trade_state (NOTPAY until paid).
            (BuyerAction::Scan | BuyerAction::Abandon, TradeState::NotPay) => {}
            // The diner walks away from a payment-code confirmation: nothing changes (the
            // merchant's polls, then its reverse, decide).
            (BuyerAction::Abandon, TradeState::UserPaying) => {}
            (BuyerAction::Pay, TradeState::NotPay | TradeState::UserPaying) => {
                self.mark_paid(state, key, now_ms);
            }
            (BuyerAction::Fail, TradeState::NotPay | TradeState::UserPaying) => {
                if let Some(trade) = state.trades.get_mut(key) {
                    if let Some(next) = step(trade.state, Event::PayFailed) {
                        trade.state = next;
                    }
                }
            }
            (BuyerAction::Scan, TradeState::UserPaying)
            | (
                BuyerAction::Scan | BuyerAction::Pay | BuyerAction::Fail | BuyerAction::Abandon,
                TradeState::Success
                | TradeState::Refund
                | TradeState::Closed
                | TradeState::Revoked
                | TradeState::PayError,
            ) => return Err(refuse()),
        }
        Ok(())
    }

    pub(super) fn schedule_expiry(&self, trade: &mut Trade, key: &TradeKey) {
        self.cancel_expiry(trade);
        let this = self.this.clone();
        let key = key.clone();
        let label = format!("wechatpay expire {}/{}", key.0, key.1);
        trade.expiry_event = Some(self.scheduler.schedule_after(
            // The channel's clock may be skewed; the run's scheduler is not.
            trade.time_expire_ms.saturating_sub(self.now_ms()),
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

    /// The expiry event: an unpaid order closes (no notification: basic payments notify
    /// only on success).
    fn expire(&self, key: &TradeKey) {
        let now_ms = self.now_ms();
        let mut state = self.lock();
        if let Some(trade) = state.trades.get_mut(key) {
            trade.expiry_event = None;
            self.close_trade(trade, Event::Expire, now_ms);
        }
    }
}

/// `GET /wechatpay/pay/{token}`: the buyer's view of an order (a stand-in for the WeChat
/// app), with buttons for the buyer actions. `h5_url` points here.
pub(super) async fn pay_page(
    AxumState(mock): AxumState<Arc<WechatpayMock>>,
    Path(token): Path<String>,
) -> Response {
    let state = mock.lock();
    let Some(trade) = state
        .by_pay_token
        .get(&token)
        .and_then(|key| state.trades.get(key))
    else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>订单不存在 / unknown order</h1>"),
        )
            .into_response();
    };
    let buttons = ["scan", "pay", "fail", "abandon"]
        .iter()
        .map(|action| format!(r#"<button name="action" value="{action}">{action}</button>"#))
        .collect::<String>();
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>paysim WeChat Pay</title>\
         <h1>paysim 微信支付 — {description}</h1><p>¥{amount} · out_trade_no {out} · {state}</p>\
         <form method=post>{buttons}</form>",
        description = escape_html(&trade.description),
        amount = format_yuan(trade.total_minor),
        out = escape_html(&trade.out_trade_no),
        state = trade.state.name(),
    );
    ([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response()
}

/// `POST /wechatpay/pay/{token}` with form `action=scan|pay|fail|abandon`.
pub(super) async fn pay_page_action(
    AxumState(mock): AxumState<Arc<WechatpayMock>>,
    Path(token): Path<String>,
    body: bytes::Bytes,
) -> Response {
    let action = match BuyerAction::from_form(&body) {
        Ok(action) => action,
        Err(error) => return error.into_response(),
    };
    let now_ms = mock.now_ms();
    let mut state = mock.lock();
    let Some(key) = state.by_pay_token.get(&token).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Html("<h1>订单不存在 / unknown order</h1>"),
        )
            .into_response();
    };
    match mock.apply_buyer_action(&mut state, &key, action, now_ms) {
        Ok(()) => Redirect::to(&format!("/wechatpay/pay/{token}")).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Text made safe for HTML element content and double-quoted attributes.
fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_only_along_the_documented_edges() {
        use TradeState as S;
        assert_eq!(step(S::NotPay, Event::Pay), Some(S::Success));
        assert_eq!(step(S::NotPay, Event::Close), Some(S::Closed));
        assert_eq!(step(S::NotPay, Event::PayFailed), Some(S::PayError));
        assert_eq!(step(S::Success, Event::RefundRequested), Some(S::Refund));
        assert_eq!(step(S::Success, Event::Close), None);
        assert_eq!(
            step(S::Closed, Event::Pay),
            None,
            "terminal states are monotonic"
        );
        assert_eq!(step(S::Refund, Event::Expire), None);
        assert_eq!(step(S::UserPaying, Event::Pay), Some(S::Success));
        assert_eq!(step(S::UserPaying, Event::PayFailed), Some(S::PayError));
        assert_eq!(step(S::UserPaying, Event::Revoke), Some(S::Revoked));
        assert_eq!(step(S::Success, Event::Revoke), Some(S::Revoked));
        assert_eq!(step(S::Refund, Event::Revoke), None);
        assert_eq!(step(S::Revoked, Event::Pay), None);
    }

    #[test]
    fn out_trade_no_rules() {
        assert!(valid_out_trade_no("A1_-|*b"));
        assert!(!valid_out_trade_no("A1234"));
        assert!(!valid_out_trade_no("A1234 5"));
        assert!(!valid_out_trade_no(&"a".repeat(33)));
    }
}
