//! The channel-generic control plane (design note §10): buyer actions, armed faults, and
//! read-only views of trades, refunds, notifications, exchanges and settlements, under
//! `/_paysim/`. Every mock channel implements [`MockChannel`]; the routes here never know
//! which channel they talk to. Documented in `simulator/CONTROL_PLANE.md`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

use crate::faults::{ArmedFault, FaultBoard, FaultKind, FaultSpec};
use crate::Simulator;

/// A buyer's move, as the control plane (or a cashier page) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuyerAction {
    /// The buyer opens the trade (scans the QR code, logs in to the cashier).
    Scan,
    /// The buyer pays (implies `scan` when the trade does not exist yet).
    Pay,
    /// The payment fails (declined, insufficient balance): the trade closes.
    Fail,
    /// The buyer walks away: nothing changes until the trade expires or is closed.
    Abandon,
}

impl BuyerAction {
    /// The action a buyer page's form posted (`action=scan|pay|fail|abandon`); a bad form is
    /// answered `400 invalid_action`.
    pub(crate) fn from_form(body: &[u8]) -> Result<BuyerAction, ControlError> {
        form_urlencoded::parse(body)
            .find(|(key, _)| key == "action")
            .and_then(|(_, value)| {
                serde_json::from_value::<BuyerAction>(serde_json::Value::String(value.into_owned()))
                    .ok()
            })
            .ok_or_else(|| {
                ControlError::bad_request(
                    "invalid_action",
                    "form field action must be scan, pay, fail or abandon",
                )
            })
    }

    /// The action's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            BuyerAction::Scan => "scan",
            BuyerAction::Pay => "pay",
            BuyerAction::Fail => "fail",
            BuyerAction::Abandon => "abandon",
        }
    }
}

/// One delivery attempt of a notification.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    /// 1-based attempt number (copies of a duplicated attempt share it).
    pub attempt: u32,
    pub at: String,
    pub at_ms: i64,
    /// The merchant's HTTP status; absent when nothing was received.
    pub http_status: Option<u16>,
    /// The start of the merchant's reply body (at most 200 characters).
    pub body_excerpt: String,
    /// Transport failure, if any.
    pub error: Option<String>,
    /// Whether the reply acknowledged the notification.
    pub accepted: bool,
    /// The fault applied to this attempt, if any.
    pub fault: Option<String>,
}

/// A notification with every delivery attempt.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationView {
    /// The simulator's id for this notification.
    pub id: String,
    /// The channel's notification identity, stable across retries.
    pub notify_id: String,
    pub url: String,
    /// What caused it: `payment`, `refund` or `close`.
    pub event: String,
    /// The channel-native status it reports.
    pub status: String,
    /// `pending`, `acknowledged` or `given_up`.
    pub state: String,
    pub next_attempt_at: Option<String>,
    pub attempts: Vec<AttemptView>,
}

/// A trade as every channel shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TradeView {
    pub channel: String,
    pub app_id: String,
    pub merchant_id: String,
    pub out_trade_no: String,
    /// The channel's id; absent until the trade exists at the channel.
    pub trade_no: Option<String>,
    /// Which product created it (`precreate`, `barcode`, `create`, …).
    pub product: String,
    pub amount: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The channel-native state.
    pub state: String,
    /// False while the channel does not know the trade yet (e.g. a QR code not scanned).
    pub exists_at_channel: bool,
    pub refunded_minor: i64,
    pub refunded_amount: String,
    pub created_at: Option<String>,
    pub paid_at: Option<String>,
    pub closed_at: Option<String>,
    pub expires_at: Option<String>,
    pub notifications: Vec<NotificationView>,
}

/// A refund as every channel shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RefundView {
    pub channel: String,
    pub out_trade_no: String,
    pub trade_no: String,
    pub out_request_no: String,
    pub amount: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The channel-native refund state.
    pub state: String,
    pub refunded_at: String,
}

/// The signature verdict on one request.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureVerdict {
    /// `valid`, `invalid`, `missing` or `not_checked`.
    pub verdict: String,
    pub reason: Option<String>,
}

/// One request the channel received and what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeView {
    pub sequence: u64,
    pub at: String,
    pub at_ms: i64,
    pub http_method: String,
    /// The API the request named, if any.
    pub api: Option<String>,
    pub app_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub signature: SignatureVerdict,
    pub http_status: u16,
    /// The answer's code and sub-code in the channel's dialect.
    pub code: Option<String>,
    pub sub_code: Option<String>,
    pub fault: Option<String>,
}

/// Settled totals of one channel for one business day.
#[derive(Debug, Clone, Serialize)]
pub struct SettlementView {
    pub channel: String,
    pub date: String,
    pub currency: String,
    pub paid_count: u64,
    pub paid_minor: i64,
    pub paid_amount: String,
    pub refund_count: u64,
    pub refunded_minor: i64,
    pub refunded_amount: String,
    pub net_minor: i64,
    pub net_amount: String,
}

impl SettlementView {
    /// A CNY day's totals: payments and refunds counted and summed, net derived.
    pub(crate) fn cny(
        channel: &str,
        date: time::Date,
        (paid_count, paid_minor): (u64, i64),
        (refund_count, refunded_minor): (u64, i64),
    ) -> Self {
        let net_minor = paid_minor.saturating_sub(refunded_minor);
        SettlementView {
            channel: channel.to_owned(),
            date: format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            ),
            currency: "CNY".into(),
            paid_count,
            paid_minor,
            paid_amount: crate::money::format_yuan(paid_minor),
            refund_count,
            refunded_minor,
            refunded_amount: crate::money::format_yuan(refunded_minor),
            net_minor,
            net_amount: crate::money::format_yuan(net_minor),
        }
    }
}

/// What `GET /_paysim/channels` says about a channel.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelSummary {
    pub name: String,
    pub protocol: String,
    /// The merchant-facing endpoint (absolute URL).
    pub endpoint: String,
    /// Valid request-fault targets (API methods).
    pub fault_targets: Vec<String>,
    /// Merchant identities served (app ids, merchant ids).
    pub merchants: Vec<String>,
}

/// A control-plane error: JSON `{code, message}` with an HTTP status.
#[derive(Debug, Clone)]
pub struct ControlError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ControlError {
    /// 400: the request is malformed.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404: nothing of that name.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409: the action does not fit the current state.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

/// What every mock channel offers the control plane.
pub trait MockChannel: Send + Sync + 'static {
    /// The channel's name in control-plane paths (`alipay`, `wechatpay`, `unionpay`).
    fn name(&self) -> &'static str;
    /// A description for `GET /_paysim/channels`.
    fn summary(&self) -> ChannelSummary;
    /// Every trade, oldest first.
    fn trades(&self) -> Vec<TradeView>;
    /// One trade by the merchant's order number.
    fn trade(&self, out_trade_no: &str) -> Option<TradeView>;
    /// Applies a buyer's action and returns the trade afterwards.
    fn buyer_action(
        &self,
        out_trade_no: &str,
        action: BuyerAction,
    ) -> Result<TradeView, ControlError>;
    /// Every refund, oldest first.
    fn refunds(&self) -> Vec<RefundView>;
    /// The channel's armed faults.
    fn faults(&self) -> &FaultBoard;
    /// The API methods a request fault may target.
    fn fault_targets(&self) -> Vec<&'static str>;
    /// Every request received, oldest first.
    fn exchanges(&self) -> Vec<ExchangeView>;
    /// Settled totals for one business day of the channel (`date` as `YYYY-MM-DD`).
    fn settlements(&self, date: time::Date) -> SettlementView;
}

/// The control-plane routes.
pub fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/_paysim/channels", get(list_channels))
        .route("/_paysim/faults/catalogue", get(fault_catalogue))
        .route("/_paysim/{channel}/trades", get(list_trades))
        .route("/_paysim/{channel}/trades/{out_trade_no}", get(get_trade))
        .route(
            "/_paysim/{channel}/trades/{out_trade_no}/actions",
            post(post_action),
        )
        .route("/_paysim/{channel}/refunds", get(list_refunds))
        .route(
            "/_paysim/{channel}/faults",
            get(list_faults).post(arm_fault).delete(clear_faults),
        )
        .route("/_paysim/{channel}/exchanges", get(list_exchanges))
        .route("/_paysim/{channel}/settlements", get(get_settlements))
        .fallback(not_found)
        .with_state(sim)
}

fn channel(sim: &Simulator, name: &str) -> Result<Arc<dyn MockChannel>, ControlError> {
    sim.channel(name).ok_or_else(|| {
        ControlError::not_found(
            "unknown_channel",
            format!("no channel {name:?} is enabled; see GET /_paysim/channels"),
        )
    })
}

async fn not_found() -> ControlError {
    ControlError::not_found("not_found", "no such route")
}

async fn list_channels(State(sim): State<Simulator>) -> Json<Value> {
    let channels: Vec<ChannelSummary> = sim.channels().iter().map(|c| c.summary()).collect();
    Json(json!({ "channels": channels }))
}

async fn fault_catalogue() -> Json<Value> {
    let faults: Vec<Value> = FaultKind::ALL
        .iter()
        .map(|kind| json!({"name": kind.name(), "scope": kind.scope(), "doc": kind.doc()}))
        .collect();
    Json(json!({ "faults": faults }))
}

async fn list_trades(
    State(sim): State<Simulator>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let trades = channel(&sim, &name)?.trades();
    Ok(Json(json!({ "trades": trades })))
}

async fn get_trade(
    State(sim): State<Simulator>,
    Path((name, out_trade_no)): Path<(String, String)>,
) -> Result<Json<TradeView>, ControlError> {
    channel(&sim, &name)?
        .trade(&out_trade_no)
        .map(Json)
        .ok_or_else(|| trade_not_found(&out_trade_no))
}

/// 404 for an unknown `out_trade_no`.
pub fn trade_not_found(out_trade_no: &str) -> ControlError {
    ControlError::not_found(
        "trade_not_found",
        format!("no trade with out_trade_no {out_trade_no:?}"),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    action: BuyerAction,
}

async fn post_action(
    State(sim): State<Simulator>,
    Path((name, out_trade_no)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<TradeView>, ControlError> {
    let channel = channel(&sim, &name)?;
    let body: ActionBody = parse_json(&body)?;
    channel.buyer_action(&out_trade_no, body.action).map(Json)
}

async fn list_refunds(
    State(sim): State<Simulator>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let refunds = channel(&sim, &name)?.refunds();
    Ok(Json(json!({ "refunds": refunds })))
}

async fn list_faults(
    State(sim): State<Simulator>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let faults: Vec<ArmedFault> = channel(&sim, &name)?.faults().list();
    Ok(Json(json!({ "faults": faults })))
}

async fn arm_fault(
    State(sim): State<Simulator>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ArmedFault>), ControlError> {
    let channel = channel(&sim, &name)?;
    let spec: FaultSpec = parse_json(&body)?;
    let targets = channel.fault_targets();
    let armed = channel.faults().arm(spec, &targets)?;
    Ok((StatusCode::CREATED, Json(armed)))
}

async fn clear_faults(
    State(sim): State<Simulator>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let removed = channel(&sim, &name)?.faults().clear();
    Ok(Json(json!({ "removed": removed })))
}

async fn list_exchanges(
    State(sim): State<Simulator>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let exchanges = channel(&sim, &name)?.exchanges();
    Ok(Json(json!({ "exchanges": exchanges })))
}

#[derive(Debug, Deserialize)]
struct SettlementQuery {
    date: Option<String>,
}

async fn get_settlements(
    State(sim): State<Simulator>,
    Path(name): Path<String>,
    Query(query): Query<SettlementQuery>,
) -> Result<Json<SettlementView>, ControlError> {
    let channel = channel(&sim, &name)?;
    let text = query.date.ok_or_else(|| {
        ControlError::bad_request(
            "missing_date",
            "query parameter date=YYYY-MM-DD is required",
        )
    })?;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(&text, format).map_err(|error| {
        ControlError::bad_request("invalid_date", format!("date {text:?}: {error}"))
    })?;
    Ok(Json(channel.settlements(date)))
}

/// Reads a JSON body; malformed JSON is answered in the control plane's own error format.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|error| {
        ControlError::bad_request("invalid_body", format!("invalid JSON body: {error}"))
    })
}
