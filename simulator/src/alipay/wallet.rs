//! The simulated Alipay wallet for `alipay.trade.app.pay`: `POST /alipay/wallet/app-pay`
//! takes the order string the merchant's server signed for its app (form field
//! `order_string`, a JSON body `{"order_string": …}`, or the raw order string as the body),
//! verifies it like a gateway request (over every parameter except `sign`, `sign_type`
//! included), opens the trade and plays the buyer's choice (`action`: `pay` by default,
//! `cancel`, `fail`). It answers what the app SDK hands the app (notes A5):
//! `{"resultStatus":"9000","memo":"","result":"<signed alipay_trade_app_pay_response>"}`,
//! 6001 when the buyer cancels, 4000 when the payment fails or the order string is refused.

use std::sync::Arc;

use axum::extract::{Query, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::trade::{Call, Product, TradeStatus};
use super::wire::{self, ApiError, Node, Params};
use super::{AlipayMock, Exchange, APP_PAY_METHOD};
use crate::control::ControlError;
use crate::money::format_yuan;

/// What the buyer does in the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WalletAction {
    Pay,
    Cancel,
    Fail,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct WalletQuery {
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JsonBody {
    order_string: String,
    action: Option<String>,
}

/// The order string and the requested action, from whichever body shape was sent.
fn read_body(headers: &HeaderMap, body: &[u8]) -> Result<(String, Option<String>), ControlError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
        || body.trim_ascii_start().starts_with(b"{");
    if is_json {
        let parsed: JsonBody = serde_json::from_slice(body).map_err(|error| {
            ControlError::bad_request(
                "invalid_body",
                format!("expected {{\"order_string\": \"…\", \"action\"?: \"pay|cancel|fail\"}}: {error}"),
            )
        })?;
        return Ok((parsed.order_string, parsed.action));
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    if let Some((_, order_string)) = form.iter().find(|(k, _)| k == "order_string") {
        let action = form
            .iter()
            .find(|(k, _)| k == "action")
            .map(|(_, v)| v.clone());
        return Ok((order_string.clone(), action));
    }
    let raw = std::str::from_utf8(body)
        .map_err(|_| ControlError::bad_request("invalid_body", "the order string is not UTF-8"))?;
    Ok((raw.trim().to_owned(), None))
}

fn result_json(status: &str, memo: &str, result: &str) -> Response {
    (
        StatusCode::OK,
        Json(json!({"resultStatus": status, "memo": memo, "result": result})),
    )
        .into_response()
}

/// `POST /alipay/wallet/app-pay`.
pub(super) async fn app_pay(
    AxumState(mock): AxumState<Arc<AlipayMock>>,
    Query(query): Query<WalletQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (order_string, body_action) = match read_body(&headers, &body) {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    let action_name = body_action
        .or(query.action)
        .unwrap_or_else(|| "pay".to_owned());
    let Ok(action) = serde_json::from_value::<WalletAction>(Value::String(action_name.clone()))
    else {
        return ControlError::bad_request(
            "invalid_action",
            format!("action {action_name:?} must be pay, cancel or fail"),
        )
        .into_response();
    };
    if order_string.is_empty() {
        return ControlError::bad_request(
            "invalid_body",
            "send the order string as form field order_string, JSON {\"order_string\": …}, or the raw body",
        )
        .into_response();
    }
    let params = Params::from_parts(Some(&order_string), None);
    let now_ms = mock.now_ms();
    let mut exchange = Exchange::new(now_ms, "POST", &params);
    let response = mock.wallet(&params, action, now_ms, &mut exchange);
    mock.record_exchange(exchange);
    response
}

impl AlipayMock {
    fn wallet(
        &self,
        params: &Params,
        action: WalletAction,
        now_ms: i64,
        exchange: &mut Exchange,
    ) -> Response {
        let refused = |exchange: &mut Exchange, error: ApiError| {
            exchange.answered(error.code, Some(&error.sub_code));
            result_json(
                "4000",
                &format!("{} {}: {}", error.code, error.sub_code, error.sub_msg),
                "",
            )
        };
        let checked = match self.check_request(params, exchange, &[APP_PAY_METHOD]) {
            Ok(checked) => checked,
            Err(error) => return refused(exchange, error),
        };
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
        let mut state = self.lock();
        let key = match self.open_buyer_trade(&mut state, &call, Product::AppPay) {
            Ok(key) => key,
            Err(error) => return refused(exchange, error),
        };
        match action {
            // The buyer closed the payment sheet: the trade stays WAIT_BUYER_PAY.
            WalletAction::Cancel => {
                exchange.answered("6001", None);
                return result_json("6001", "用户中途取消", "");
            }
            // The payment did not go through; the trade stays unpaid (the buyer may retry).
            WalletAction::Fail => {
                exchange.answered("4000", Some("ACQ.PAYMENT_FAIL"));
                return result_json("4000", "支付失败 (paysim action fail)", "");
            }
            WalletAction::Pay => {}
        }
        if state.trades.get(&key).map(|t| t.status) == Some(TradeStatus::WaitBuyerPay) {
            self.mark_paid(&mut state, &key, now_ms);
        }
        let Some(trade) = state.trades.get(&key) else {
            return refused(
                exchange,
                ApiError::business("ACQ.TRADE_NOT_EXIST", "交易不存在"),
            );
        };
        let mut node = Node::success();
        node.push("app_id", checked.app_id)
            .push("auth_app_id", checked.app_id)
            .push("charset", params.non_empty("charset").unwrap_or("utf-8"))
            .push("timestamp", wire::format_beijing(now_ms))
            .push("out_trade_no", trade.out_trade_no.as_str())
            .push("total_amount", format_yuan(trade.total_minor))
            .push("trade_no", trade.trade_no.as_str())
            .push("seller_id", self.seller_id.as_str());
        let node_json = node.to_json();
        let sign = self.signing_key.sign_base64(node_json.as_bytes());
        let result = format!(
            "{{\"alipay_trade_app_pay_response\":{node_json},\"sign\":{},\"sign_type\":\"RSA2\"}}",
            Value::String(sign)
        );
        exchange.answered("9000", None);
        result_json("9000", "", &result)
    }
}
