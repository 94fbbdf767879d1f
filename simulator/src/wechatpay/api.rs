//! The APIv3 entry point: resolves the route, authenticates the request (Accept/User-Agent,
//! Authorization, merchant, serial, ±5 min timestamp, SHA256withRSA over the exact bytes
//! received), applies armed faults, runs the API, and signs every answer — 204s and errors
//! included — with the platform key. Every request is recorded for the control plane.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use determinism::{EntropyExt, UnixMillis};

use super::auth::{self, Authorization, AuthorizationError};
use super::trade::TradeType;
use super::wire::{self, status_of_code, ApiError};
use super::{Exchange, Merchant, SignatureMode, WechatpayMock, MAX_EXCHANGES};
use crate::alipay::VerifyError;
use crate::control::SignatureVerdict;
use crate::faults::{FaultKind, FiredFault};

/// The API names (request-fault targets and `api` in the exchange log).
pub const APIS: [&str; 14] = [
    "pay.transactions.native",
    "pay.transactions.jsapi",
    "pay.transactions.app",
    "pay.transactions.h5",
    "pay.transactions.codepay",
    "pay.transactions.reverse",
    "pay.transactions.id",
    "pay.transactions.out-trade-no",
    "pay.transactions.close",
    "refund.domestic.refunds",
    "refund.domestic.refunds.query",
    "bill.tradebill",
    "billdownload.file",
    "certificates",
];

/// Request timestamps further than this from the Clock are refused (notes A1).
const MAX_SKEW_SECONDS: i64 = 300;

/// A resolved APIv3 route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    Prepay(TradeType),
    Codepay,
    Reverse(String),
    QueryById(String),
    QueryByOutTradeNo(String),
    Close(String),
    RefundCreate,
    RefundQuery(String),
    Certificates,
    TradeBill,
    BillDownload,
}

impl Route {
    fn resolve(method: &Method, path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let post = method == Method::POST;
        let get = method == Method::GET;
        let route = match segments.as_slice() {
            ["v3", "pay", "transactions", "codepay"] if post => Route::Codepay,
            ["v3", "pay", "transactions", kind] if post => Route::Prepay(match *kind {
                "native" => TradeType::Native,
                "jsapi" => TradeType::Jsapi,
                "app" => TradeType::App,
                "h5" => TradeType::H5,
                _ => return None,
            }),
            ["v3", "pay", "transactions", "id", id] if get && !id.is_empty() => {
                Route::QueryById(wire::percent_decode(id))
            }
            ["v3", "pay", "transactions", "out-trade-no", no] if get && !no.is_empty() => {
                Route::QueryByOutTradeNo(wire::percent_decode(no))
            }
            ["v3", "pay", "transactions", "out-trade-no", no, "close"]
                if post && !no.is_empty() =>
            {
                Route::Close(wire::percent_decode(no))
            }
            ["v3", "pay", "transactions", "out-trade-no", no, "reverse"]
                if post && !no.is_empty() =>
            {
                Route::Reverse(wire::percent_decode(no))
            }
            ["v3", "refund", "domestic", "refunds"] if post => Route::RefundCreate,
            ["v3", "refund", "domestic", "refunds", no] if get && !no.is_empty() => {
                Route::RefundQuery(wire::percent_decode(no))
            }
            ["v3", "certificates"] if get => Route::Certificates,
            ["v3", "bill", "tradebill"] if get => Route::TradeBill,
            ["v3", "billdownload", "file"] if get => Route::BillDownload,
            _ => return None,
        };
        Some(route)
    }

    fn api(&self) -> &'static str {
        match self {
            Route::Prepay(TradeType::Native) => "pay.transactions.native",
            Route::Prepay(TradeType::Jsapi) => "pay.transactions.jsapi",
            Route::Prepay(TradeType::App) => "pay.transactions.app",
            Route::Prepay(TradeType::H5) => "pay.transactions.h5",
            Route::Prepay(TradeType::Micropay) | Route::Codepay => "pay.transactions.codepay",
            Route::Reverse(_) => "pay.transactions.reverse",
            Route::QueryById(_) => "pay.transactions.id",
            Route::QueryByOutTradeNo(_) => "pay.transactions.out-trade-no",
            Route::Close(_) => "pay.transactions.close",
            Route::RefundCreate => "refund.domestic.refunds",
            Route::RefundQuery(_) => "refund.domestic.refunds.query",
            Route::Certificates => "certificates",
            Route::TradeBill => "bill.tradebill",
            Route::BillDownload => "billdownload.file",
        }
    }
}

/// What an API answers before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// 200 with a JSON body.
    Json(String),
    /// 204, empty body.
    NoContent,
    /// A `{code, message}` error.
    Error(ApiError),
    /// 200 with a file (bill downloads): sent without signature headers (notes A2).
    File {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

/// What goes on the wire.
enum Answer {
    Signed {
        reply: Reply,
        mode: SignatureMode,
        /// `unknown_serial`: the `Wechatpay-Serial` to name instead of the real one.
        serial: Option<String>,
    },
    /// `http_500`: plain text, unsigned, with this status (500–599).
    Http500 { status: u16 },
    /// `malformed_body`: 200, JSON content type, the reply's text cut mid-object plus
    /// garbage, signed over those bytes (so the JSON parse, not the signature, fails).
    Malformed { reply: Option<Reply> },
}

/// `unknown_serial` defaults: ids shaped like the real ones that name no key the mock has.
const UNKNOWN_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0114999999992099123100000000009999";
const UNKNOWN_CERTIFICATE_SERIAL: &str = "5E8F3A1C9B7D2E4F6A8C0B1D3E5F7A9C2B4D6E8F";

/// One authenticated call as the APIs see it.
pub(super) struct Call<'a> {
    pub merchant: &'a Merchant,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub now_ms: UnixMillis,
}

/// `ANY /v3/{*path}`.
pub(super) async fn handle(
    AxumState(mock): AxumState<Arc<WechatpayMock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now_ms = mock.now_ms();
    let route = Route::resolve(&method, uri.path());
    let mut exchange = Exchange {
        at_ms: now_ms,
        http_method: method.as_str().to_owned(),
        api: route.as_ref().map(|route| route.api().to_owned()),
        mchid: None,
        out_trade_no: None,
        signature: SignatureVerdict {
            verdict: "not_checked".into(),
            reason: None,
        },
        http_status: 200,
        code: None,
        fault: None,
    };
    let answer = mock.answer(route, &method, &uri, &headers, &body, now_ms, &mut exchange);
    let response = match answer {
        Answer::Http500 { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            exchange.http_status = status.as_u16();
            (
                status,
                [(header::CONTENT_TYPE, "text/plain;charset=utf-8")],
                format!(
                    "{} {} (paysim fault http_500)",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("Server Error")
                ),
            )
                .into_response()
        }
        Answer::Malformed { reply } => {
            let text = match reply {
                Some(Reply::Json(text)) => text,
                Some(Reply::Error(error)) => {
                    exchange.code = Some(error.code.clone());
                    error.body()
                }
                Some(Reply::NoContent | Reply::File { .. }) => "{}".to_owned(),
                None => ApiError::system().body(),
            };
            exchange.http_status = 200;
            mock.signed_response(
                StatusCode::OK,
                Some(crate::faults::malformed(&text)),
                SignatureMode::Genuine,
                mock.answer_serial(&headers),
            )
        }
        Answer::Signed {
            reply: Reply::File {
                bytes,
                content_type,
            },
            ..
        } => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Answer::Signed {
            reply,
            mode,
            serial,
        } => {
            let (status, body) = match &reply {
                Reply::Json(text) => (StatusCode::OK, Some(text.clone())),
                Reply::NoContent | Reply::File { .. } => (StatusCode::NO_CONTENT, None),
                Reply::Error(error) => {
                    exchange.code = Some(error.code.clone());
                    (error.status, Some(error.body()))
                }
            };
            exchange.http_status = status.as_u16();
            let serial = serial.unwrap_or_else(|| mock.answer_serial(&headers));
            mock.signed_response(status, body, mode, serial)
        }
    };
    mock.record_exchange(exchange);
    response
}

impl WechatpayMock {
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one request, taken apart by the extractors"
    )]
    fn answer(
        &self,
        route: Option<Route>,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: UnixMillis,
        exchange: &mut Exchange,
    ) -> Answer {
        let genuine = |reply: Reply| Answer::Signed {
            reply,
            mode: SignatureMode::Genuine,
            serial: None,
        };
        let merchant = match self.authenticate(method, uri, headers, body, now_ms, exchange) {
            Ok(merchant) => merchant,
            Err(error) => return genuine(Reply::Error(error)),
        };
        let Some(route) = route else {
            return genuine(Reply::Error(ApiError::new(
                StatusCode::NOT_FOUND,
                "RESOURCE_NOT_EXISTS",
                format!("{method} {} 不是模拟器实现的接口", uri.path()),
            )));
        };
        let call = Call {
            merchant,
            query: uri.query(),
            body,
            now_ms,
        };
        let fault = self.faults.take_for_request(route.api());
        exchange.fault = fault.as_ref().map(|f| f.kind.name().to_owned());
        // Named from the request itself, so a faulted (unexecuted) request is still logged
        // against its order; execution completes it from what it found.
        exchange.out_trade_no = match &route {
            Route::QueryByOutTradeNo(no) | Route::Close(no) | Route::Reverse(no) => {
                Some(no.clone())
            }
            _ => serde_json::from_slice::<serde_json::Value>(call.body)
                .ok()
                .and_then(|body| body.get("out_trade_no")?.as_str().map(str::to_owned)),
        };
        let mut run = || {
            let (reply, out_trade_no) = self.execute(&route, &call);
            if out_trade_no.is_some() {
                exchange.out_trade_no = out_trade_no;
            }
            reply
        };
        let Some(fault) = fault else {
            return genuine(run());
        };
        let signed = |reply: Reply, mode: SignatureMode| Answer::Signed {
            reply,
            mode,
            serial: None,
        };
        match fault.kind {
            FaultKind::BadResponseSignature => signed(run(), SignatureMode::Corrupt),
            FaultKind::SigntestResponse => signed(run(), SignatureMode::Signtest),
            FaultKind::UnsignedResponse => signed(run(), SignatureMode::Omitted),
            FaultKind::UnknownSerial => {
                let real = self.answer_serial(headers);
                let serial = fault.param_str("serial").unwrap_or_else(|| {
                    let unknown = if real.starts_with("PUB_KEY_ID_") {
                        UNKNOWN_PUBLIC_KEY_ID
                    } else {
                        UNKNOWN_CERTIFICATE_SERIAL
                    };
                    unknown.to_owned()
                });
                Answer::Signed {
                    reply: run(),
                    mode: SignatureMode::Genuine,
                    serial: Some(serial),
                }
            }
            FaultKind::MalformedBody => Answer::Malformed {
                reply: fault.param_bool_or("executed", true).then(run),
            },
            FaultKind::ErrorCode | FaultKind::SystemError | FaultKind::Http500 => {
                if fault.param_bool("executed") {
                    run();
                }
                faulted(&fault)
            }
            // Other scopes never reach the request path (the board filters by scope), and
            // notify_before_response cannot be armed here.
            FaultKind::DuplicateNotification
            | FaultKind::ForgedNotification
            | FaultKind::TamperedNotificationAmount
            | FaultKind::DropNotification
            | FaultKind::DelayNotification
            | FaultKind::OutOfOrderNotification
            | FaultKind::ReplayNotification
            | FaultKind::ConflictingStatusNotification
            | FaultKind::NotifyBeforeResponse
            | FaultKind::RefundAbnormal
            | FaultKind::RefundClosed => genuine(run()),
        }
    }

    /// Runs one API.
    fn execute(&self, route: &Route, call: &Call<'_>) -> (Reply, Option<String>) {
        let result = match route {
            Route::Prepay(trade_type) => self.prepay(*trade_type, call),
            Route::Codepay => self.codepay(call),
            Route::Reverse(no) => self.reverse(no, call),
            Route::QueryById(id) => self.query_by_transaction_id(id, call),
            Route::QueryByOutTradeNo(no) => self.query_by_out_trade_no(no, call),
            Route::Close(no) => self.close(no, call),
            Route::RefundCreate => self.create_refund(call),
            Route::RefundQuery(no) => self.query_refund(no, call),
            Route::Certificates => self.certificates(call),
            Route::TradeBill => self.trade_bill(call),
            Route::BillDownload => self.bill_download(call),
        };
        match result {
            Ok((reply, out_trade_no)) => (reply, out_trade_no),
            Err((error, out_trade_no)) => (Reply::Error(error), out_trade_no),
        }
    }

    /// The APIv3 request checks, in order: headers, Authorization format, merchant,
    /// serial, timestamp, signature.
    fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        now_ms: UnixMillis,
        exchange: &mut Exchange,
    ) -> Result<&Merchant, ApiError> {
        if !headers.contains_key(header::ACCEPT) || !headers.contains_key(header::USER_AGENT) {
            return Err(ApiError::invalid_request("Http头缺少Accept或User-Agent"));
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            exchange.signature = verdict("missing", "no Authorization header");
            return Err(ApiError::sign("Http头缺少Authorization"));
        };
        let malformed = |detail: String| {
            ApiError::invalid_request(format!(
                "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》: {detail}"
            ))
        };
        let value = value
            .to_str()
            .map_err(|_| malformed("not visible ASCII".into()))?;
        let authorization = Authorization::parse(value).map_err(|error| match error {
            AuthorizationError::WrongScheme => {
                malformed(format!("the scheme must be {}", auth::SCHEME))
            }
            AuthorizationError::Malformed(pair) => {
                malformed(format!("{pair:?} is not key=\"value\""))
            }
            AuthorizationError::Missing(name) => malformed(format!("{name} is missing")),
        })?;
        exchange.mchid = Some(authorization.mchid.clone());
        let merchant = self.merchants.get(&authorization.mchid).ok_or_else(|| {
            exchange.signature = verdict("invalid", "unknown mchid");
            ApiError::sign(format!(
                "商户号 {} 不存在或未开通APIv3",
                authorization.mchid
            ))
        })?;
        if !authorization
            .serial_no
            .eq_ignore_ascii_case(&merchant.serial_no)
        {
            exchange.signature = verdict("invalid", "unknown serial_no");
            return Err(ApiError::sign(format!(
                "商户证书序列号 {} 有误或证书已失效",
                authorization.serial_no
            )));
        }
        let timestamp: i64 = authorization
            .timestamp
            .parse()
            .map_err(|_| malformed("timestamp must be Unix seconds".into()))?;
        let skew = wire::unix_seconds(now_ms).saturating_sub(timestamp).abs();
        if skew > MAX_SKEW_SECONDS {
            exchange.signature = verdict("invalid", &format!("timestamp off by {skew} s"));
            return Err(ApiError::sign(format!(
                "请求时间戳 {timestamp} 与服务器时间相差超过5分钟"
            )));
        }
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| uri.path(), |pq| pq.as_str());
        let message = auth::request_message(
            method.as_str(),
            path_and_query,
            &authorization.timestamp,
            &authorization.nonce_str,
            body,
        );
        match merchant
            .key
            .verify_base64(&message, &authorization.signature)
        {
            Ok(()) => {
                exchange.signature = SignatureVerdict {
                    verdict: "valid".into(),
                    reason: None,
                };
                Ok(merchant)
            }
            Err(error) => {
                let why = match error {
                    VerifyError::NotBase64 => "signature is not base64",
                    VerifyError::Mismatch => "signature does not match the merchant public key",
                };
                let signed = String::from_utf8_lossy(&message).into_owned();
                exchange.signature = verdict("invalid", &format!("{why}; message: {signed:?}"));
                Err(ApiError::sign("签名错误，请检查后再试"))
            }
        }
    }

    /// Builds the HTTP response with `Request-ID` and the five `Wechatpay-*` headers.
    fn signed_response(
        &self,
        status: StatusCode,
        body: Option<String>,
        mode: SignatureMode,
        serial: String,
    ) -> Response {
        let bytes = body.clone().unwrap_or_default();
        let (timestamp, nonce, signature) = self.sign_body(bytes.as_bytes(), mode);
        let code = if status.is_success() {
            0
        } else {
            status.as_u16()
        };
        let request_id = format!("{}-{code}", self.entropy.hex(20).to_ascii_uppercase());
        let mut response = match body {
            Some(text) => (
                status,
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                text,
            )
                .into_response(),
            None => status.into_response(),
        };
        let headers = response.headers_mut();
        let omitted = mode == SignatureMode::Omitted;
        for (name, value) in [
            ("request-id", request_id),
            ("wechatpay-nonce", nonce),
            ("wechatpay-signature", signature),
            ("wechatpay-timestamp", timestamp),
            ("wechatpay-serial", serial),
            ("wechatpay-signature-type", auth::SCHEME.to_owned()),
        ] {
            if omitted && name == "wechatpay-signature" {
                continue;
            }
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        response
    }

    /// Appends to the exchange log (bounded).
    fn record_exchange(&self, exchange: Exchange) {
        let mut state = self.lock();
        if state.exchanges.len() >= MAX_EXCHANGES {
            state.exchanges.remove(0);
        }
        state.exchanges.push(exchange);
    }
}

fn verdict(verdict: &str, reason: &str) -> SignatureVerdict {
    SignatureVerdict {
        verdict: verdict.into(),
        reason: Some(reason.into()),
    }
}

/// The answer an `error_code`, `system_error` or `http_500` fault substitutes.
fn faulted(fault: &FiredFault) -> Answer {
    let error = match fault.kind {
        FaultKind::Http500 => {
            return Answer::Http500 {
                status: fault
                    .param_u64("status")
                    .and_then(|status| u16::try_from(status).ok())
                    .filter(|status| (500..=599).contains(status))
                    .unwrap_or(500),
            }
        }
        FaultKind::ErrorCode => {
            let code = fault
                .param_str("code")
                .unwrap_or_else(|| "SYSTEM_ERROR".into());
            let status = fault
                .param_u64("status")
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or_else(|| status_of_code(&code));
            let message = fault
                .param_str("message")
                .unwrap_or_else(|| "模拟器注入的错误".into());
            ApiError::new(status, &code, message)
        }
        FaultKind::SystemError
        | FaultKind::BadResponseSignature
        | FaultKind::SigntestResponse
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
        | FaultKind::RefundAbnormal
        | FaultKind::RefundClosed => ApiError::system(),
    };
    Answer::Signed {
        reply: Reply::Error(error),
        mode: SignatureMode::Genuine,
        serial: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_resolve_exactly() {
        let post = Method::POST;
        let get = Method::GET;
        assert_eq!(
            Route::resolve(&post, "/v3/pay/transactions/native"),
            Some(Route::Prepay(TradeType::Native))
        );
        assert_eq!(Route::resolve(&get, "/v3/pay/transactions/native"), None);
        assert_eq!(
            Route::resolve(&get, "/v3/pay/transactions/out-trade-no/A%7C1"),
            Some(Route::QueryByOutTradeNo("A|1".into()))
        );
        assert_eq!(
            Route::resolve(&post, "/v3/pay/transactions/out-trade-no/A1/close"),
            Some(Route::Close("A1".into()))
        );
        assert_eq!(
            Route::resolve(&get, "/v3/refund/domestic/refunds/R1"),
            Some(Route::RefundQuery("R1".into()))
        );
        assert_eq!(Route::resolve(&get, "/v3/pay/transactions/id/"), None);
        assert_eq!(
            Route::resolve(&post, "/v3/pay/transactions/codepay"),
            Some(Route::Codepay)
        );
        assert_eq!(
            Route::resolve(&post, "/v3/pay/transactions/out-trade-no/A1/reverse"),
            Some(Route::Reverse("A1".into()))
        );
        for route in [
            Route::Prepay(TradeType::H5),
            Route::QueryById("x".into()),
            Route::RefundCreate,
            Route::Codepay,
            Route::Reverse("x".into()),
        ] {
            assert!(APIS.contains(&route.api()));
        }
    }
}
