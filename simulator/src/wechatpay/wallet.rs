//! A simulated WeChat wallet for JSAPI and APP orders: `POST /wechatpay/wallet/pay` takes the
//! client-side parameters a merchant's page (`WeixinJSBridge getBrandWCPayRequest` /
//! `wx.requestPayment`) or app (`PayReq`) hands to WeChat, verifies the merchant's RSA
//! signature over the documented message (SK-sign) with the merchant's public key, and pays
//! the order (NOTPAY → SUCCESS, with its notification).
//!
//! * JSAPI: `appId, timeStamp, nonceStr, package=prepay_id=…, signType=RSA, paySign` over
//!   `appId\ntimeStamp\nnonceStr\npackage\n` → `{"err_msg":"get_brand_wcpay_request:ok"}`.
//! * APP: `appid, partnerid, prepayid, package=Sign=WXPay, noncestr, timestamp, sign` over
//!   `appid\ntimestamp\nnoncestr\nprepayid\n` → `{"errCode":0}`.
//!
//! Refusals answer 200 with `get_brand_wcpay_request:fail` + `reason` / `errCode: -1` +
//! `errStr` (what the client callback sees); a body that is not a JSON object is a 400.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::trade::TradeType;
use super::{TradeKey, WechatpayMock};
use crate::alipay::VerifyError;
use crate::control::BuyerAction;

/// Which client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Jsapi,
    App,
}

impl Client {
    fn ok(self) -> Value {
        match self {
            Client::Jsapi => json!({"err_msg": "get_brand_wcpay_request:ok"}),
            Client::App => json!({"errCode": 0}),
        }
    }

    fn fail(self, reason: &str) -> Value {
        match self {
            Client::Jsapi => {
                json!({"err_msg": "get_brand_wcpay_request:fail", "reason": reason})
            }
            Client::App => json!({"errCode": -1, "errStr": reason}),
        }
    }
}

/// The fields the signature covers, after parsing.
struct Request {
    client: Client,
    appid: String,
    timestamp: String,
    nonce: String,
    prepay_id: String,
    /// Line 4 of the message: `package` (JSAPI) or the bare prepay id (APP).
    line4: String,
    signature: String,
    partnerid: Option<String>,
}

/// A string field; timestamps may come as numbers (they are signed as written).
fn field(body: &Map<String, Value>, key: &str) -> Result<String, String> {
    match body.get(key) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        _ => Err(format!("missing parameter {key}")),
    }
}

fn parse(body: &Map<String, Value>) -> Result<Request, (Client, String)> {
    if body.contains_key("appId") || body.contains_key("paySign") {
        let fail = |reason: String| (Client::Jsapi, reason);
        let package = field(body, "package").map_err(fail)?;
        let sign_type = field(body, "signType").map_err(fail)?;
        if sign_type != "RSA" {
            return Err(fail(format!("signType must be RSA, got {sign_type:?}")));
        }
        let prepay_id = package
            .strip_prefix("prepay_id=")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| fail(format!("package must be prepay_id=…, got {package:?}")))?
            .to_owned();
        Ok(Request {
            client: Client::Jsapi,
            appid: field(body, "appId").map_err(fail)?,
            timestamp: field(body, "timeStamp").map_err(fail)?,
            nonce: field(body, "nonceStr").map_err(fail)?,
            prepay_id,
            line4: package,
            signature: field(body, "paySign").map_err(fail)?,
            partnerid: None,
        })
    } else {
        let fail = |reason: String| (Client::App, reason);
        let package = field(body, "package").map_err(fail)?;
        if package != "Sign=WXPay" {
            return Err(fail(format!("package must be Sign=WXPay, got {package:?}")));
        }
        let prepay_id = field(body, "prepayid").map_err(fail)?;
        Ok(Request {
            client: Client::App,
            appid: field(body, "appid").map_err(fail)?,
            timestamp: field(body, "timestamp").map_err(fail)?,
            nonce: field(body, "noncestr").map_err(fail)?,
            line4: prepay_id.clone(),
            prepay_id,
            signature: field(body, "sign").map_err(fail)?,
            partnerid: Some(field(body, "partnerid").map_err(fail)?),
        })
    }
}

/// `POST /wechatpay/wallet/pay`.
pub(super) async fn pay(AxumState(mock): AxumState<Arc<WechatpayMock>>, body: Bytes) -> Response {
    let object = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(object)) => object,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(Client::Jsapi.fail("the body must be a JSON object")),
            )
                .into_response()
        }
    };
    let answer = match parse(&object) {
        Ok(request) => match mock.wallet_pay(&request) {
            Ok(()) => request.client.ok(),
            Err(reason) => request.client.fail(&reason),
        },
        Err((client, reason)) => client.fail(&reason),
    };
    Json(answer).into_response()
}

impl WechatpayMock {
    fn wallet_pay(&self, request: &Request) -> Result<(), String> {
        let expected = match request.client {
            Client::Jsapi => TradeType::Jsapi,
            Client::App => TradeType::App,
        };
        let (key, appid): (TradeKey, String) = {
            let state = self.lock();
            state
                .trades
                .iter()
                .find(|(_, trade)| {
                    trade.trade_type == expected
                        && trade.credential.0 == "prepay_id"
                        && trade.credential.1 == request.prepay_id
                })
                .map(|(key, trade)| (key.clone(), trade.appid.clone()))
                .ok_or_else(|| format!("unknown prepay_id {:?}", request.prepay_id))?
        };
        if request.appid != appid {
            return Err(format!(
                "appid {:?} is not the order's {appid:?}",
                request.appid
            ));
        }
        if let Some(partnerid) = &request.partnerid {
            if *partnerid != key.0 {
                return Err(format!("partnerid {partnerid:?} is not the order's mchid"));
            }
        }
        let merchant = self
            .merchants
            .get(&key.0)
            .ok_or_else(|| format!("merchant {} is not configured", key.0))?;
        let message = format!(
            "{}\n{}\n{}\n{}\n",
            request.appid, request.timestamp, request.nonce, request.line4
        );
        merchant
            .key
            .verify_base64(message.as_bytes(), &request.signature)
            .map_err(|error| match error {
                VerifyError::NotBase64 => "signature is not base64".to_owned(),
                VerifyError::Mismatch => format!(
                    "signature does not verify with the merchant public key over {message:?}"
                ),
            })?;
        let now_ms = self.now_ms();
        let mut state = self.lock();
        self.apply_buyer_action(&mut state, &key, BuyerAction::Pay, now_ms)
            .map_err(|_| "the order cannot be paid (not NOTPAY)".to_owned())
    }
}
