//! The gateway's merchant-facing HTTP API (axum): orders, refunds, the ledger's read-only
//! views, channel notification routes and the OpenAPI document generated from this code.
//!
//! Bodies are read strictly (`fields.rs`): every refusal names its field in the one error
//! format of `error.rs`, malformed JSON included.

pub mod error;
mod fields;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use determinism::{format_rfc3339, parse_rfc3339, UnixMillis};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::{OpenApi, ToSchema};

use crate::channel::{AdapterError, Notification};
use crate::ids::{sandbox_merchant, MerchantId, OrderId, RefundId};
use crate::ledger::{self, AccountBalance};
use crate::model::{Alert, EntityKind, MethodParams, Order, Refund, RefundKind, Transition};
use crate::money::{yuan, Currency, Money, MoneyError};
use crate::service::{
    CreatedOrder, CreatedRefund, Gateway, IdempotencyInput, Idempotent, NewOrder, PlantedBug,
    ServiceError,
};
use crate::state::{Channel, OrderState, PaymentMethod, RefundState};
use error::{ApiError, ErrorBody, ErrorCode};
use fields::Fields;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Bounds of an order's time to expiry.
pub const MIN_EXPIRY_SECONDS: i64 = 60;
pub const MAX_EXPIRY_SECONDS: i64 = 15 * 24 * 3600;

/// The gateway's Router.
pub fn app(gateway: Gateway) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/orders", post(create_order))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/close", post(close_order))
        .route("/v1/orders/{id}/refunds", post(create_refund))
        .route("/v1/refunds/{id}", get(get_refund))
        .route("/v1/ledger/accounts", get(ledger_accounts))
        .route("/v1/ledger/verify", get(ledger_verify))
        .route("/v1/alerts", get(alerts))
        .route("/notify/{channel}", post(notify))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(gateway)
}

/// The OpenAPI document, generated from the handlers and types below.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "paysim gateway API",
        description = "Orders, refunds and the ledger of the paysim payment core. Errors are `{code, message}` with the stable codes of `ErrorCode`."
    ),
    paths(
        healthz,
        create_order,
        get_order,
        close_order,
        create_refund,
        get_refund,
        ledger_accounts,
        ledger_verify,
        alerts,
        notify
    ),
    components(schemas(ErrorBody, ErrorCode))
)]
struct ApiDoc;

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept this HTTP method",
    )
}

// ---------------------------------------------------------------------- views

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    pub merchant_id: String,
    pub channel: String,
    pub method: PaymentMethod,
    pub method_params: MethodParams,
    /// Decimal major units, e.g. `"88.88"`.
    pub amount: String,
    pub amount_minor: i64,
    pub currency: String,
    pub subject: String,
    pub state: OrderState,
    pub refunded_amount: String,
    pub refund_reserved_amount: String,
    pub fee_amount: String,
    pub channel_trade_no: Option<String>,
    /// What the buyer needs to pay (QR content, cashier URL, order string, prepay id …).
    #[schema(value_type = Option<Object>)]
    pub buyer_action: Option<Value>,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub paid_at: Option<String>,
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> Self {
        let currency = order.amount.currency();
        let amount = |minor| yuan::format(Money::from_minor(minor, currency));
        OrderView {
            id: order.id.to_string(),
            merchant_id: order.merchant_id.to_string(),
            channel: order.channel.as_str().to_owned(),
            method: order.method,
            method_params: order.method_params.clone(),
            amount: yuan::format(order.amount),
            amount_minor: order.amount.minor(),
            currency: currency.to_string(),
            subject: order.subject.clone(),
            state: order.state,
            refunded_amount: amount(order.refunded_minor),
            refund_reserved_amount: amount(order.refund_reserved_minor),
            fee_amount: amount(order.fee_minor),
            channel_trade_no: order.channel_trade_no.clone(),
            buyer_action: order.buyer_action.clone(),
            expires_at: format_rfc3339(order.expires_at_ms),
            created_at: format_rfc3339(order.created_at_ms),
            updated_at: format_rfc3339(order.updated_at_ms),
            paid_at: order.paid_at_ms.map(format_rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    pub id: String,
    pub order_id: String,
    /// `merchant` (requested through this API) or `late_payment` (the gateway's automatic
    /// refund of a payment made after the order was closed; the order stays closed).
    pub kind: RefundKind,
    pub amount: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub state: RefundState,
    pub channel_refund_no: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Refund> for RefundView {
    fn from(refund: &Refund) -> Self {
        RefundView {
            id: refund.id.to_string(),
            order_id: refund.order_id.to_string(),
            kind: refund.kind,
            amount: yuan::format(refund.amount),
            amount_minor: refund.amount.minor(),
            currency: refund.amount.currency().to_string(),
            reason: refund.reason.clone(),
            state: refund.state,
            channel_refund_no: refund.channel_refund_no.clone(),
            created_at: format_rfc3339(refund.created_at_ms),
            updated_at: format_rfc3339(refund.updated_at_ms),
        }
    }
}

/// One row of an order's or refund's transition history.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransitionView {
    pub seq: i64,
    pub from_state: Option<String>,
    pub to_state: String,
    /// The business event that caused the move (`created`, `accepted`, `payment`, `closed`, `refund:rfd_…`).
    pub event: String,
    /// Where the news came from (`api`, `create`, `notification`, `query`, `expiry`, …).
    pub source: String,
    pub at: String,
}

impl From<&Transition> for TransitionView {
    fn from(t: &Transition) -> Self {
        TransitionView {
            seq: t.seq,
            from_state: t.from_state.clone(),
            to_state: t.to_state.clone(),
            event: t.event_key.clone(),
            source: t.source.clone(),
            at: format_rfc3339(t.at_ms),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: OrderView,
    pub refunds: Vec<RefundView>,
    pub history: Vec<TransitionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RefundDetail {
    #[serde(flatten)]
    pub refund: RefundView,
    pub history: Vec<TransitionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// `kind:owner:CURRENCY`
    pub account: String,
    pub kind: String,
    pub owner: String,
    pub currency: String,
    /// Balance on the account's normal side, derived from postings.
    pub balance: String,
    pub balance_minor: i64,
}

impl From<&AccountBalance> for AccountView {
    fn from(b: &AccountBalance) -> Self {
        AccountView {
            account: b.account.code(),
            kind: b.account.kind.as_str().to_owned(),
            owner: b.account.owner.clone(),
            currency: b.account.currency.to_string(),
            balance: yuan::format(Money::from_minor(b.balance_minor, b.account.currency)),
            balance_minor: b.balance_minor,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ViolationView {
    /// `I1` … `I9`
    pub invariant: String,
    pub description: String,
    pub subject: String,
    pub detail: String,
}

/// The ledger invariant report.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    pub ok: bool,
    /// The invariants checked, e.g. `["I1", "I2", …]`.
    pub checked: Vec<String>,
    pub entries: usize,
    pub orders: usize,
    pub refunds: usize,
    pub first_violation: Option<ViolationView>,
    pub violations: Vec<ViolationView>,
}

impl From<&ledger::VerifyReport> for VerifyView {
    fn from(report: &ledger::VerifyReport) -> Self {
        let view = |v: &ledger::Violation| ViolationView {
            invariant: format!("{:?}", v.invariant),
            description: v.invariant.describe().to_owned(),
            subject: v.subject.clone(),
            detail: v.detail.clone(),
        };
        VerifyView {
            ok: report.ok,
            checked: report.checked.iter().map(|i| format!("{i:?}")).collect(),
            entries: report.entries,
            orders: report.orders,
            refunds: report.refunds,
            first_violation: report.first_violation.as_ref().map(view),
            violations: report.violations.iter().map(view).collect(),
        }
    }
}

/// An alert raised for an operator (late payment, amount mismatch, abnormal refund …).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    /// `late_payment`, `amount_mismatch`, `refund_abnormal`, `late_payment_refund_failed`,
    /// `late_payment_refund_abnormal`.
    pub kind: String,
    /// The order or refund it is about.
    pub subject: String,
    pub message: String,
    pub created_at: String,
    pub created_at_ms: i64,
}

impl From<&Alert> for AlertView {
    fn from(alert: &Alert) -> Self {
        AlertView {
            id: alert.id.to_string(),
            kind: alert.kind.clone(),
            subject: alert.subject_id.clone(),
            message: alert.message.clone(),
            created_at: format_rfc3339(alert.at_ms),
            created_at_ms: alert.at_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub backend: String,
    pub channels: Vec<String>,
    pub now: String,
}

/// The body of `POST /v1/orders` (documentation of what `parse_new_order` reads).
#[derive(Debug, Serialize, ToSchema)]
#[allow(
    dead_code,
    reason = "documents the request shape for the OpenAPI document; the handler reads the body field by field"
)]
pub struct CreateOrderRequest {
    /// Defaults to the sandbox merchant `mch_sandbox`.
    merchant_id: Option<String>,
    /// `alipay`, `wechatpay` or `unionpay`.
    channel: String,
    method: PaymentMethod,
    method_params: Option<MethodParams>,
    /// Decimal major units with at most two decimals, e.g. `"88.88"`.
    amount: String,
    /// `CNY` (default), `HKD` or `USD`.
    currency: Option<String>,
    subject: String,
    /// Seconds until the order expires (60 … 1296000); default 1800. Or give `expires_at`.
    expires_in_seconds: Option<i64>,
    /// RFC 3339 expiry instant.
    expires_at: Option<String>,
}

/// The body of `POST /v1/orders/{id}/refunds`.
#[derive(Debug, Serialize, ToSchema)]
#[allow(
    dead_code,
    reason = "documents the request shape for the OpenAPI document; the handler reads the body field by field"
)]
pub struct CreateRefundRequest {
    /// Decimal major units, at most what remains refundable.
    amount: String,
    /// Defaults to the order's currency.
    currency: Option<String>,
    reason: Option<String>,
}

/// The fields `POST /v1/orders` accepts, in the order of `CreateOrderRequest`.
pub const CREATE_ORDER_FIELDS: [&str; 9] = [
    "merchant_id",
    "channel",
    "method",
    "method_params",
    "amount",
    "currency",
    "subject",
    "expires_in_seconds",
    "expires_at",
];
/// The fields `POST /v1/orders/{id}/refunds` accepts.
pub const CREATE_REFUND_FIELDS: [&str; 3] = ["amount", "currency", "reason"];

// ---------------------------------------------------------------------- request reading

fn body_bytes(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    if let Some(content_type) = headers.get(http::header::CONTENT_TYPE) {
        let json = content_type
            .to_str()
            .map(|ct| {
                ct.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            })
            .unwrap_or(false);
        if !json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON: send Content-Type: application/json",
            ));
        }
    }
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body exceeds {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::new(
                ErrorCode::MalformedJson,
                format!("cannot read the body: {rejection}"),
            )
        }
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers.get("idempotency-key").ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingIdempotencyKey,
            "the Idempotency-Key header is required",
        )
    })?;
    let key = value.to_str().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must be printable ASCII",
        )
    })?;
    if key.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must not be empty",
        ));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            format!(
                "Idempotency-Key is {} characters; at most {MAX_IDEMPOTENCY_KEY_LEN} are allowed",
                key.len()
            ),
        ));
    }
    if !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must be printable ASCII without spaces",
        ));
    }
    Ok(key.to_owned())
}

/// SHA-256 over the body's canonical JSON (keys sorted at every level): the same request with
/// other whitespace or key order is the same request.
fn request_hash(body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<Value>(body)
        .map(|v| canonical_json(&v))
        .unwrap_or_default();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        map.get(k).map(canonical_json).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

fn money_field(field: &str, text: &str, currency: Currency) -> Result<Money, ApiError> {
    yuan::parse_positive(text, currency).map_err(|e| match e {
        MoneyError::NotPositive => ApiError::field(field, "must be greater than zero"),
        other => ApiError::field(field, other.to_string()),
    })
}

fn currency_field(fields: &mut Fields, default: Currency) -> Result<Currency, ApiError> {
    match fields.opt_str("currency", 8)? {
        None => Ok(default),
        Some(code) => code
            .parse()
            .map_err(|e: MoneyError| ApiError::field("currency", e.to_string())),
    }
}

fn parse_new_order(
    body: &[u8],
    now_ms: UnixMillis,
    default_expiry_ms: i64,
) -> Result<NewOrder, ApiError> {
    let mut fields = Fields::parse(body)?;
    let merchant_id = match fields.opt_str("merchant_id", 64)? {
        None => sandbox_merchant(),
        Some(id) => {
            MerchantId::parse(&id).map_err(|e| ApiError::field("merchant_id", e.to_string()))?
        }
    };
    let channel_text = fields.req_str("channel", 32)?;
    let channel = Channel::parse(&channel_text).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownChannel,
            format!(
                "channel: unknown channel {channel_text:?}; expected alipay, wechatpay or unionpay"
            ),
        )
        .with_field("channel")
    })?;
    let method_text = fields.req_str("method", 32)?;
    let method = PaymentMethod::parse(&method_text).ok_or_else(|| {
        ApiError::field("method", format!("unknown payment method {method_text:?}; expected qr, page, wap, app, barcode or jsapi"))
    })?;
    let method_params: MethodParams = match fields.opt_object("method_params")? {
        None => MethodParams::default(),
        Some(value) => serde_json::from_value(value)
            .map_err(|e| ApiError::field("method_params", e.to_string()))?,
    };
    let amount_text = fields.req_amount_text("amount")?;
    let currency = currency_field(&mut fields, Currency::Cny)?;
    let amount = money_field("amount", &amount_text, currency)?;
    let subject = fields.req_str("subject", 256)?;
    let expires_in = fields.opt_i64("expires_in_seconds")?;
    let expires_at = fields.opt_str("expires_at", 64)?;
    fields.finish()?;
    let expires_at_ms = match (expires_in, expires_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "expires_at",
                "give expires_in_seconds or expires_at, not both",
            ))
        }
        (Some(seconds), None) => {
            if !(MIN_EXPIRY_SECONDS..=MAX_EXPIRY_SECONDS).contains(&seconds) {
                return Err(ApiError::field(
                    "expires_in_seconds",
                    format!("must be between {MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS}"),
                ));
            }
            now_ms + seconds * 1000
        }
        (None, Some(text)) => {
            let at =
                parse_rfc3339(&text).map_err(|e| ApiError::field("expires_at", e.to_string()))?;
            let seconds = (at - now_ms) / 1000;
            if !(MIN_EXPIRY_SECONDS..=MAX_EXPIRY_SECONDS).contains(&seconds) {
                return Err(ApiError::field(
                    "expires_at",
                    format!("must be between {MIN_EXPIRY_SECONDS} seconds and 15 days from now"),
                ));
            }
            at
        }
        (None, None) => now_ms + default_expiry_ms,
    };
    Ok(NewOrder {
        merchant_id,
        channel,
        method,
        method_params,
        amount,
        subject,
        expires_at_ms,
    })
}

fn path_order_id(id: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(id).map_err(|_| {
        ApiError::new(
            ErrorCode::OrderNotFound,
            format!("order {id} does not exist"),
        )
    })
}

// ---------------------------------------------------------------------- handlers

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz(State(gateway): State<Gateway>) -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        backend: gateway.store().backend().to_string(),
        channels: gateway
            .adapters()
            .configured()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        now: format_rfc3339(gateway.now_ms()),
    })
}

async fn openapi_json() -> Response {
    match openapi().to_json() {
        Ok(text) => ([(http::header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render the OpenAPI document");
            ApiError::new(
                ErrorCode::InternalError,
                "cannot render the OpenAPI document",
            )
            .into_response()
        }
    }
}

/// Replies with a stored idempotent response, or serialises and stores a fresh one.
async fn finish(
    gateway: &Gateway,
    merchant: &MerchantId,
    scope: &str,
    key: &str,
    status: StatusCode,
    body: Value,
) -> Response {
    let text = body.to_string();
    if let Err(error) = gateway
        .store()
        .finish_idempotency(merchant, scope, key, status.as_u16(), &text)
        .await
    {
        tracing::error!(%error, "cannot store the idempotent response");
    }
    raw_json(status, text)
}

fn raw_json(status: StatusCode, text: String) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Create an order.
///
/// Requires `Idempotency-Key`: the same key with the same body replays the first response; with
/// a different body it is refused with `idempotency_key_reused`.
#[utoipa::path(
    post, path = "/v1/orders", request_body = CreateOrderRequest,
    params(("Idempotency-Key" = String, Header, description = "1–255 printable ASCII characters")),
    responses(
        (status = 201, body = OrderView, description = "created; `buyer_action` says what the buyer needs"),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody, description = "channel unreachable; the order exists (`order_id`) and will be queried"),
    )
)]
async fn create_order(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(&headers, body)?;
    let key = idempotency_key(&headers)?;
    let mut request = parse_new_order(&body, gateway.now_ms(), gateway.config().default_expiry_ms)?;
    if gateway.planted(PlantedBug::YuanFenSlip) {
        // Planted bug `YuanFenSlip`: the yuan amount taken for fen, 100× off.
        let slipped = request
            .amount
            .minor()
            .checked_mul(100)
            .ok_or_else(|| ApiError::field("amount", "too large"))?;
        request.amount = Money::from_minor(slipped, request.amount.currency());
    }
    let merchant = request.merchant_id.clone();
    let input = IdempotencyInput {
        key: key.clone(),
        request_hash: request_hash(&body),
    };
    match gateway.create_order(request, input).await? {
        Idempotent::Replay { status, body } => Ok(raw_json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            body,
        )),
        Idempotent::Fresh(CreatedOrder {
            order,
            channel_error,
        }) => {
            let (status, body) = match channel_error {
                None => (StatusCode::CREATED, to_value(&OrderView::from(&order))),
                Some(error) => {
                    let error = ApiError::from(error).with_order(order.id.as_str());
                    (error.status(), to_value(&error.body))
                }
            };
            Ok(finish(&gateway, &merchant, "create_order", &key, status, body).await)
        }
    }
}

/// An order with its refunds (merchant refunds and the automatic refund of a late payment)
/// and transition history.
#[utoipa::path(get, path = "/v1/orders/{id}", params(("id" = String, Path)),
    responses((status = 200, body = OrderDetail), (status = 404, body = ErrorBody)))]
async fn get_order(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<OrderDetail>, ApiError> {
    let id = path_order_id(&id)?;
    let order = gateway.get_order(&id).await?;
    let refunds = gateway
        .store()
        .refunds_for_order(&id)
        .await
        .map_err(ServiceError::from)?;
    let history = gateway
        .store()
        .history(EntityKind::Order, id.as_str())
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(OrderDetail {
        order: OrderView::from(&order),
        refunds: refunds.iter().map(RefundView::from).collect(),
        history: history.iter().map(TransitionView::from).collect(),
    }))
}

/// Close an unpaid order (at the channel first). Closing a closed order returns it unchanged.
#[utoipa::path(post, path = "/v1/orders/{id}/close", params(("id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn close_order(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let id = path_order_id(&id)?;
    let order = gateway.close_order(&id, "api").await?;
    Ok(Json(OrderView::from(&order)))
}

/// Refund part or all of a paid order. Requires `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/orders/{id}/refunds", request_body = CreateRefundRequest,
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "1–255 printable ASCII characters")),
    responses((status = 201, body = RefundView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 502, body = ErrorBody))
)]
async fn create_refund(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_bytes(&headers, body)?;
    let key = idempotency_key(&headers)?;
    let order_id = path_order_id(&id)?;
    let order = gateway.get_order(&order_id).await?;
    let mut fields = Fields::parse(&body)?;
    let amount_text = fields.req_amount_text("amount")?;
    let currency = currency_field(&mut fields, order.amount.currency())?;
    let amount = money_field("amount", &amount_text, currency)?;
    let reason = fields.opt_str("reason", 256)?;
    fields.finish()?;
    let input = IdempotencyInput {
        key: key.clone(),
        request_hash: request_hash(&body),
    };
    let scope = format!("create_refund:{order_id}");
    match gateway
        .create_refund(&order_id, amount, reason, input.clone())
        .await
    {
        Ok(Idempotent::Replay { status, body }) => Ok(raw_json(
            StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            body,
        )),
        Ok(Idempotent::Fresh(CreatedRefund {
            refund,
            channel_error,
        })) => {
            let (status, body) = match channel_error {
                None => (StatusCode::CREATED, to_value(&RefundView::from(&refund))),
                Some(error) => {
                    let error = ApiError::from(error).with_order(order_id.as_str());
                    (error.status(), to_value(&error.body))
                }
            };
            Ok(finish(&gateway, &order.merchant_id, &scope, &key, status, body).await)
        }
        Err(error @ ServiceError::RefundRefused(_)) => {
            // A refusal is an answer too: the same key replays it.
            let error = ApiError::from(error);
            let claim = crate::store::IdempotencyClaim {
                merchant_id: order.merchant_id.clone(),
                scope,
                key,
                request_hash: input.request_hash.clone(),
                resource_id: None,
            };
            let text = to_value(&error.body).to_string();
            let record = gateway
                .store()
                .record_idempotent_response(
                    &claim,
                    error.status().as_u16(),
                    &text,
                    gateway.now_ms(),
                )
                .await
                .map_err(ServiceError::from)?;
            if record.request_hash != input.request_hash {
                return Err(ServiceError::IdempotencyKeyReused.into());
            }
            match record.response {
                Some((status, body)) => Ok(raw_json(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    body,
                )),
                None => Err(ServiceError::IdempotencyInProgress.into()),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// A refund with its transition history.
#[utoipa::path(get, path = "/v1/refunds/{id}", params(("id" = String, Path)),
    responses((status = 200, body = RefundDetail), (status = 404, body = ErrorBody)))]
async fn get_refund(
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<RefundDetail>, ApiError> {
    let id = RefundId::parse(&id).map_err(|_| {
        ApiError::new(
            ErrorCode::RefundNotFound,
            format!("refund {id} does not exist"),
        )
    })?;
    let refund = gateway.get_refund(&id).await?;
    let history = gateway
        .store()
        .history(EntityKind::Refund, id.as_str())
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(RefundDetail {
        refund: RefundView::from(&refund),
        history: history.iter().map(TransitionView::from).collect(),
    }))
}

/// Every ledger account with its balance derived from postings.
#[utoipa::path(get, path = "/v1/ledger/accounts", responses((status = 200, body = Vec<AccountView>)))]
async fn ledger_accounts(
    State(gateway): State<Gateway>,
) -> Result<Json<Vec<AccountView>>, ApiError> {
    let balances = gateway
        .store()
        .account_balances()
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(balances.iter().map(AccountView::from).collect()))
}

/// The ledger invariant report (I1–I6, I8, I9); read-only.
#[utoipa::path(get, path = "/v1/ledger/verify", responses((status = 200, body = VerifyView)))]
async fn ledger_verify(State(gateway): State<Gateway>) -> Result<Json<VerifyView>, ApiError> {
    let snapshot = gateway
        .store()
        .ledger_snapshot()
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(VerifyView::from(&ledger::verify(&snapshot))))
}

/// Every alert raised so far, newest last; read-only.
#[utoipa::path(get, path = "/v1/alerts", responses((status = 200, body = Vec<AlertView>)))]
async fn alerts(State(gateway): State<Gateway>) -> Result<Json<Vec<AlertView>>, ApiError> {
    let alerts = gateway.store().alerts().await.map_err(ServiceError::from)?;
    Ok(Json(alerts.iter().map(AlertView::from).collect()))
}

/// Asynchronous notifications from a channel, answered in the channel's own dialect.
#[utoipa::path(post, path = "/notify/{channel}", params(("channel" = String, Path)),
    responses((status = 200, description = "acknowledged in the channel's dialect"), (status = 404, body = ErrorBody)))]
async fn notify(
    State(gateway): State<Gateway>,
    Path(channel): Path<String>,
    request: Request<axum::body::Body>,
) -> Response {
    let Some(channel) = Channel::parse(&channel) else {
        return ApiError::new(ErrorCode::NotFound, format!("unknown channel {channel:?}"))
            .into_response();
    };
    let Some(adapter) = gateway.adapters().get(channel).cloned() else {
        return ApiError::new(
            ErrorCode::ChannelNotConfigured,
            format!("channel {} is not configured", channel.as_str()),
        )
        .into_response();
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, channel = channel.as_str(), "unreadable notification");
            return into_axum(adapter.acknowledge(false));
        }
    };
    let request = Request::from_parts(parts, bytes);
    let verified = match adapter.verify_notification(&request, gateway.now_ms()) {
        // Signed under a key this gateway does not hold yet: refresh the channel's keys once
        // and verify the same bytes again.
        Err(AdapterError::UnknownKey(message)) => {
            match gateway.refresh_channel_keys(channel).await {
                Ok(()) => adapter.verify_notification(&request, gateway.now_ms()),
                Err(error) => {
                    tracing::warn!(%error, channel = channel.as_str(), "key refresh failed");
                    Err(AdapterError::UnknownKey(message))
                }
            }
        }
        other => other,
    };
    // Planted bug `AckBeforeCommit`: the acknowledgement is decided once the notification
    // verifies, before (and whatever the outcome of) applying it.
    let acknowledged_early = verified.is_ok() && gateway.planted(PlantedBug::AckBeforeCommit);
    let outcome = match verified {
        Err(error) => {
            // Fail closed: the payload is not trusted. The scheduler's query settles the order.
            tracing::warn!(%error, channel = channel.as_str(), "notification rejected");
            Err(())
        }
        Ok(Notification::Payment { order_id, status }) => gateway
            .apply_payment_report(&order_id, status)
            .await
            .map(|_| ())
            .map_err(|error| {
                tracing::warn!(%error, order = %order_id, "notification not applied");
            }),
        Ok(Notification::Refund {
            refund_id,
            status,
            reported_amount,
        }) => gateway
            .apply_refund_report(&refund_id, status, reported_amount, "notification")
            .await
            .map(|_| ())
            .map_err(|error| {
                tracing::warn!(%error, refund = %refund_id, "refund notification not applied");
            }),
    };
    into_axum(adapter.acknowledge(acknowledged_early || outcome.is_ok()))
}

fn into_axum(response: determinism::HttpResponse) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_hash_ignores_key_order_and_whitespace() {
        assert_eq!(
            request_hash(br#"{"a":1,"b":{"y":2,"x":"s"}}"#),
            request_hash(b"{ \"b\": {\"x\":\"s\",\"y\":2}, \"a\": 1 }")
        );
        assert_ne!(request_hash(br#"{"a":1}"#), request_hash(br#"{"a":2}"#));
    }

    #[test]
    fn documented_request_fields_match_the_parser() {
        let doc = serde_json::to_value(openapi()).unwrap();
        for (schema, fields) in [
            ("CreateOrderRequest", &CREATE_ORDER_FIELDS[..]),
            ("CreateRefundRequest", &CREATE_REFUND_FIELDS[..]),
        ] {
            let props = doc["components"]["schemas"][schema]["properties"]
                .as_object()
                .unwrap();
            let mut documented: Vec<&str> = props.keys().map(String::as_str).collect();
            documented.sort_unstable();
            let mut parsed: Vec<&str> = fields.to_vec();
            parsed.sort_unstable();
            assert_eq!(documented, parsed, "{schema}");
        }
    }
}
