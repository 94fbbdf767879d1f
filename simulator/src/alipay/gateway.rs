//! `/alipay/gateway.do`: reads the request in every shape real SDKs send (GET with all
//! params in the query; POST with common params in the query and `biz_content` in a form
//! body; absolute-form targets), checks the common parameters and the RSA2 signature, applies
//! armed faults, runs the API and answers a signed node — errors included, never a 500
//! unless a fault asks for one. Page and wap pay requests (a buyer's browser) are handed to
//! the cashier, which answers HTML.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::keys::VerifyError;
use super::trade::Call;
use super::wire::{self, ApiError, Node, Params};
use super::{AlipayMock, Exchange, APP_PAY_METHOD, BROWSER_METHODS, MAX_EXCHANGES, METHODS};
use crate::control::SignatureVerdict;
use crate::faults::{FaultKind, FiredFault};

/// What the gateway sends back.
enum Reply {
    /// A node, signed (or not) as `wire` says.
    Node { node: Node, wire: Wire },
    /// The http_500 fault, with its status (500–599).
    Http500 { status: u16 },
}

/// How a node goes on the wire (request faults that keep the node).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wire {
    /// Signed over the node bytes.
    Genuine,
    /// `bad_response_signature`: a well-formed signature over other bytes.
    Corrupt,
    /// `unsigned_response`: no `sign` field.
    Unsigned,
    /// `unknown_serial`: signed, but `alipay_cert_sn` names this unknown certificate.
    UnknownSn(String),
    /// `malformed_body`: the signed text cut mid-object, plus garbage.
    Malformed,
}

impl Reply {
    fn genuine(node: Node) -> Self {
        Reply::Node {
            node,
            wire: Wire::Genuine,
        }
    }
}

/// What `unknown_serial` names by default: an SN shaped like a real one (32 hex digits) that
/// no Alipay certificate has.
fn unknown_cert_sn() -> String {
    use md5::Digest as _;
    md5::Md5::digest(b"paysim: an alipay certificate the merchant never downloaded")
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub(super) async fn handle(
    State(mock): State<Arc<AlipayMock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::GET && method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST")],
            "gateway.do accepts GET and POST",
        )
            .into_response();
    }
    let now_ms = mock.now_ms();
    let params = Params::from_parts(uri.query(), form_body(&headers, &body));
    let api = params.non_empty("method").map(str::to_owned);
    let mut exchange = Exchange::new(now_ms, method.as_str(), &params);
    if api
        .as_deref()
        .is_some_and(|api| BROWSER_METHODS.contains(&api))
    {
        return mock.open_cashier(&params, now_ms, exchange);
    }
    let (reply, inline) = mock.answer(&params, now_ms, &mut exchange);
    // notify_before_response: the notifications this request queued go out first.
    for index in inline {
        Arc::clone(&mock).deliver(index, 1, false).await;
    }
    let response = match reply {
        Reply::Node { node, wire } => {
            exchange.code = node.get("code").and_then(Value::as_str).map(str::to_owned);
            exchange.sub_code = node
                .get("sub_code")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let node_json = node.to_json();
            let sign = if wire == Wire::Corrupt {
                // A well-formed signature over other bytes: it parses, but never verifies.
                mock.signing_key
                    .sign_base64(format!("{node_json}#tampered").as_bytes())
            } else {
                mock.signing_key.sign_base64(node_json.as_bytes())
            };
            let cert_sn = mock.response_cert_sn(params.non_empty("app_id"));
            let name = wire::node_name(api.as_deref());
            let text = match &wire {
                Wire::Unsigned => {
                    let mut text = format!("{{{}:{node_json}", Value::String(name));
                    if let Some(sn) = cert_sn {
                        text.push_str(",\"alipay_cert_sn\":");
                        text.push_str(&Value::String(sn.to_owned()).to_string());
                    }
                    text.push('}');
                    text
                }
                // Only a certificate-mode app's answer names a certificate at all.
                Wire::UnknownSn(unknown) => wire::response_body_with_cert_sn(
                    &name,
                    &node_json,
                    &sign,
                    cert_sn.map(|_| unknown.as_str()),
                ),
                Wire::Malformed => crate::faults::malformed(&wire::response_body_with_cert_sn(
                    &name, &node_json, &sign, cert_sn,
                )),
                Wire::Genuine | Wire::Corrupt => {
                    wire::response_body_with_cert_sn(&name, &node_json, &sign, cert_sn)
                }
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
                text,
            )
                .into_response()
        }
        Reply::Http500 { status } => {
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
    };
    mock.record_exchange(exchange);
    response
}

impl Exchange {
    /// A log entry for a request carrying `params`, before any check.
    pub(super) fn new(at_ms: i64, http_method: &str, params: &Params) -> Self {
        Exchange {
            at_ms,
            http_method: http_method.to_owned(),
            api: params.non_empty("method").map(str::to_owned),
            app_id: params.non_empty("app_id").map(str::to_owned),
            out_trade_no: None,
            signature: SignatureVerdict {
                verdict: "not_checked".into(),
                reason: None,
            },
            http_status: 200,
            code: None,
            sub_code: None,
            fault: None,
        }
    }

    /// Notes the answer's code and sub_code.
    pub(super) fn answered(&mut self, code: &str, sub_code: Option<&str>) {
        self.code = Some(code.to_owned());
        self.sub_code = sub_code.map(str::to_owned);
    }
}

/// The body's parameters: form-encoded bodies (and, leniently, bodies without a content
/// type); anything else (multipart uploads, JSON) is not read.
pub(super) fn form_body<'b>(headers: &HeaderMap, body: &'b Bytes) -> Option<&'b [u8]> {
    if body.is_empty() {
        return None;
    }
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Some(body),
        Some(content_type)
            if content_type
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded") =>
        {
            Some(body)
        }
        Some(_) => None,
    }
}

impl AlipayMock {
    /// Appends to the exchange log (bounded).
    pub(super) fn record_exchange(&self, exchange: Exchange) {
        let mut state = self.lock();
        if state.exchanges.len() >= MAX_EXCHANGES {
            state.exchanges.remove(0);
        }
        state.exchanges.push(exchange);
    }

    /// The reply, and the notifications (`notify_before_response`) to deliver before it.
    fn answer(&self, params: &Params, now_ms: i64, exchange: &mut Exchange) -> (Reply, Vec<usize>) {
        if params.non_empty("method") == Some(APP_PAY_METHOD) {
            let node = ApiError::invalid(
                "isv.invalid-method",
                "不存在的方法名: alipay.trade.app.pay is not a gateway call; the merchant \
                 signs an order string for the app, which hands it to the wallet \
                 (simulated at POST /alipay/wallet/app-pay)",
            )
            .into_node();
            return (Reply::genuine(node), Vec::new());
        }
        let checked = match self.check_request(params, exchange, &METHODS) {
            Ok(checked) => checked,
            Err(error) => return (Reply::genuine(error.into_node()), Vec::new()),
        };
        let fault = self.faults.take_for_request(checked.method);
        exchange.fault = fault.as_ref().map(|f| f.kind.name().to_owned());
        // Named from the request itself, so a faulted (unexecuted) request is still logged
        // against its order; execution completes it from what it found.
        exchange.out_trade_no = checked
            .biz
            .get("out_trade_no")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let call = Call {
            method: checked.method,
            app_id: checked.app_id,
            notify_url: params.non_empty("notify_url"),
            biz: &checked.biz,
            now_ms,
        };
        let mut run = || {
            let (node, out_trade_no) = match self.execute(&call) {
                Ok(executed) => (executed.node, executed.out_trade_no),
                Err((error, out_trade_no)) => (error.into_node(), out_trade_no),
            };
            if out_trade_no.is_some() {
                exchange.out_trade_no = out_trade_no;
            }
            node
        };
        let Some(fault) = fault else {
            return (Reply::genuine(run()), Vec::new());
        };
        let wire = match fault.kind {
            FaultKind::BadResponseSignature => Some(Wire::Corrupt),
            FaultKind::UnsignedResponse => Some(Wire::Unsigned),
            FaultKind::UnknownSerial => Some(Wire::UnknownSn(
                fault.param_str("serial").unwrap_or_else(unknown_cert_sn),
            )),
            FaultKind::MalformedBody if fault.param_bool_or("executed", true) => {
                Some(Wire::Malformed)
            }
            FaultKind::MalformedBody => {
                // Not executed: the cut text is that of an "outcome unknown" answer.
                let node = ApiError::system_error().into_node();
                return (
                    Reply::Node {
                        node,
                        wire: Wire::Malformed,
                    },
                    Vec::new(),
                );
            }
            FaultKind::NotifyBeforeResponse => {
                let from = self.notification_count();
                let node = run();
                let inline = self.take_queued_since(from, exchange.out_trade_no.as_deref());
                return (Reply::genuine(node), inline);
            }
            _ => None,
        };
        if let Some(wire) = wire {
            return (Reply::Node { node: run(), wire }, Vec::new());
        }
        if fault.param_bool("executed") {
            run();
        }
        (faulted_reply(&fault), Vec::new())
    }

    /// The common-parameter checks, in a fixed order, ending with the signature; `accepted`
    /// lists the methods this entry point serves.
    pub(super) fn check_request<'p>(
        &self,
        params: &'p Params,
        exchange: &mut Exchange,
        accepted: &[&str],
    ) -> Result<Checked<'p>, ApiError> {
        let method = params
            .non_empty("method")
            .ok_or_else(|| ApiError::missing("isv.missing-method", "缺少方法名参数"))?;
        let app_id = params
            .non_empty("app_id")
            .ok_or_else(|| ApiError::missing("isv.missing-app-id", "缺少AppID参数"))?;
        let app = self
            .app(app_id)
            .ok_or_else(|| ApiError::invalid("isv.invalid-app-id", "无效的AppID参数"))?;
        if !accepted.contains(&method) {
            return Err(ApiError::invalid(
                "isv.invalid-method",
                format!("不存在的方法名: {method} is not implemented by the mock"),
            ));
        }
        let Some(sign) = params.non_empty("sign") else {
            exchange.signature = SignatureVerdict {
                verdict: "missing".into(),
                reason: Some("no sign parameter".into()),
            };
            return Err(ApiError::missing("isv.missing-signature", "缺少签名参数"));
        };
        let sign_type = params
            .non_empty("sign_type")
            .ok_or_else(|| ApiError::missing("isv.missing-signature-type", "缺少签名类型参数"))?;
        if sign_type != "RSA2" {
            // Legacy RSA (SHA1withRSA) is refused rather than accepted unverified.
            return Err(ApiError::invalid(
                "isv.invalid-signature-type",
                format!("无效的签名类型参数: {sign_type} (the mock supports RSA2 only)"),
            ));
        }
        let timestamp = params
            .non_empty("timestamp")
            .ok_or_else(|| ApiError::missing("isv.missing-timestamp", "缺少时间戳参数"))?;
        // Format only: Alipay publishes no clock-skew limit (notes A1).
        if wire::parse_beijing(timestamp).is_none() {
            return Err(ApiError::invalid(
                "isv.invalid-timestamp",
                "非法的时间戳参数: 时间参数格式yyyy-MM-dd HH:mm:ss",
            ));
        }
        let version = params
            .non_empty("version")
            .ok_or_else(|| ApiError::missing("isv.missing-version", "缺少版本参数"))?;
        if version != "1.0" {
            return Err(ApiError::invalid(
                "isv.invalid-parameter",
                "参数无效: version must be 1.0",
            ));
        }
        if let Some(charset) = params.non_empty("charset") {
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(ApiError::invalid(
                    "isv.invalid-charset",
                    format!("字符集错误: {charset} (the mock supports utf-8 only)"),
                ));
            }
        }
        if let Some(format) = params.non_empty("format") {
            if !format.eq_ignore_ascii_case("json") {
                return Err(ApiError::invalid(
                    "isv.invalid-format",
                    "无效的数据格式: format must be JSON",
                ));
            }
        }
        if params.non_empty("encrypt_type").is_some() {
            return Err(ApiError::invalid(
                "isv.invalid-encrypt-type",
                "无效的加密类型参数: content encryption is not supported by the mock",
            ));
        }
        if let Some(app_cert_sn) = &app.cert_sn {
            self.check_cert_sns(params, app_cert_sn)?;
        }
        let content = params.request_sign_content();
        match app.key.verify_base64(content.as_bytes(), sign) {
            Ok(()) => {
                exchange.signature = SignatureVerdict {
                    verdict: "valid".into(),
                    reason: None,
                };
            }
            Err(error) => {
                let reason = match error {
                    VerifyError::NotBase64 => "sign is not base64",
                    VerifyError::Mismatch => "signature does not match the app public key",
                };
                exchange.signature = SignatureVerdict {
                    verdict: "invalid".into(),
                    reason: Some(format!("{reason}; signed string: {content}")),
                };
                return Err(ApiError::invalid(
                    "isv.invalid-signature",
                    format!(
                        "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{content}"
                    ),
                ));
            }
        }
        let biz = match params.get("biz_content") {
            None | Some("") => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(ApiError::invalid(
                        "isv.invalid-parameter",
                        "参数无效: biz_content must be a JSON object",
                    ))
                }
                Err(error) => {
                    return Err(ApiError::invalid(
                        "isv.invalid-parameter",
                        format!("参数无效: biz_content is not valid JSON ({error})"),
                    ))
                }
            },
        };
        Ok(Checked {
            method,
            app_id,
            biz,
        })
    }
}

impl AlipayMock {
    /// Certificate mode: the request names the app certificate and the root bundle the
    /// gateway knows (checked before the signature, which the app certificate's key
    /// verifies). Sub-codes and messages as real Alipay answers them (ALIPAY.md).
    fn check_cert_sns(&self, params: &Params, app_cert_sn: &str) -> Result<(), ApiError> {
        let sent = params.non_empty("app_cert_sn").ok_or_else(|| {
            ApiError::invalid("isv.missing-app-cert-sn", "缺少应用公钥证书序列号")
        })?;
        if sent != app_cert_sn {
            return Err(ApiError::invalid(
                "isv.app-cert-not-exist",
                format!("应用公钥证书不存在: app_cert_sn {sent} is not the SN of this app's certificate"),
            ));
        }
        let root_cert_sn = self
            .cert_mode
            .as_ref()
            .map(|mode| mode.root_cert_sn.as_str())
            .unwrap_or_default();
        let sent = params.non_empty("alipay_root_cert_sn").ok_or_else(|| {
            ApiError::invalid("isv.missing-alipay-root-cert-sn", "缺少支付宝根证书序列号")
        })?;
        if sent != root_cert_sn {
            return Err(ApiError::invalid(
                "isv.invalid-alipay-root-cert-sn",
                "无效支付宝根证书序列号",
            ));
        }
        Ok(())
    }
}

/// A request that passed the common checks.
pub(super) struct Checked<'p> {
    pub method: &'p str,
    pub app_id: &'p str,
    pub biz: Map<String, Value>,
}

/// The answer an `error_code`, `system_error` or `http_500` fault substitutes.
fn faulted_reply(fault: &FiredFault) -> Reply {
    match fault.kind {
        FaultKind::Http500 => Reply::Http500 {
            status: fault
                .param_u64("status")
                .and_then(|status| u16::try_from(status).ok())
                .filter(|status| (500..=599).contains(status))
                .unwrap_or(500),
        },
        FaultKind::SystemError => Reply::genuine(ApiError::system_error().into_node()),
        FaultKind::ErrorCode => {
            let code = fault.param_str("code").unwrap_or_else(|| "40004".into());
            let msg = fault
                .param_str("msg")
                .unwrap_or_else(|| default_msg(&code).into());
            let sub_code = fault
                .param_str("sub_code")
                .unwrap_or_else(|| "ACQ.SYSTEM_ERROR".into());
            let sub_msg = fault
                .param_str("sub_msg")
                .unwrap_or_else(|| "系统错误".into());
            Reply::genuine(ApiError::custom(&code, &msg, &sub_code, &sub_msg))
        }
        // Notification faults never reach the request path (the board filters by scope), and
        // the others are answered before this; answering normally would hide a mistake, so
        // this is a system error too.
        FaultKind::BadResponseSignature
        | FaultKind::UnsignedResponse
        | FaultKind::MalformedBody
        | FaultKind::UnknownSerial
        | FaultKind::NotifyBeforeResponse
        | FaultKind::DuplicateNotification
        | FaultKind::ForgedNotification
        | FaultKind::TamperedNotificationAmount
        | FaultKind::DropNotification
        | FaultKind::DelayNotification
        | FaultKind::OutOfOrderNotification
        | FaultKind::ReplayNotification
        | FaultKind::ConflictingStatusNotification
        | FaultKind::SigntestResponse
        | FaultKind::RefundAbnormal
        | FaultKind::RefundClosed => Reply::genuine(ApiError::system_error().into_node()),
    }
}

/// The public `msg` of each top-level code (notes A2.4).
fn default_msg(code: &str) -> &'static str {
    match code {
        "10000" => "Success",
        "20000" => "Service Currently Unavailable",
        "20001" => "Insufficient Token Permissions",
        "40001" => "Missing Required Arguments",
        "40002" => "Invalid Arguments",
        "40003" => "Insufficient Conditions",
        "40006" => "Insufficient Permissions",
        _ => "Business Failed",
    }
}
