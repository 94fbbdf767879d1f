//! The payment-code flow (付款码): `POST /v3/pay/transactions/codepay`, whose outcome the
//! `auth_code` scripts (table in `simulator/WECHATPAY.md`), and
//! `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/reverse` (撤销). These are the only
//! ways into the USERPAYING and REVOKED states.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::api::{Call, Reply};
use super::trade::{
    not_exist, order_closed, step, valid_out_trade_no, ApiResult, Event, Trade, TradeState,
    TradeType,
};
use super::wire::{self, ApiError};
use super::{TradeKey, WechatpayMock};

/// A paid order can be reversed (its money returned) only within 7 days of the order.
const REVERSE_WINDOW_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What an `auth_code` scripts (its last four digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 200, SUCCESS at once.
    Paid,
    /// 202 `USER_PAYING`: USERPAYING until a buyer action or a reverse.
    UserPaying,
    /// 403 `TRADE_ERROR`: PAYERROR.
    Failed,
    /// 403 `NOT_ENOUGH`: PAYERROR.
    NotEnough,
}

fn outcome_of(auth_code: &str) -> Outcome {
    if auth_code.ends_with("0003") {
        Outcome::UserPaying
    } else if auth_code.ends_with("4004") {
        Outcome::Failed
    } else if auth_code.ends_with("4001") {
        Outcome::NotEnough
    } else {
        Outcome::Paid
    }
}

/// WeChat payment codes are 18 digits starting 10–15 (v2 micropay `AUTH_CODE_INVALID` text).
fn valid_auth_code(code: &str) -> bool {
    code.len() == 18
        && code.bytes().all(|b| b.is_ascii_digit())
        && matches!(code.get(..2), Some("10" | "11" | "12" | "13" | "14" | "15"))
}

fn user_paying() -> ApiError {
    ApiError::new(StatusCode::ACCEPTED, "USER_PAYING", "需要用户输入支付密码")
}

fn trade_error() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "TRADE_ERROR",
        "支付失败，请重新下单支付",
    )
}

fn not_enough() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "NOT_ENOUGH", "用户账户余额不足")
}

/// The fields of a codepay request.
struct CodepayOrder {
    appid: String,
    out_trade_no: String,
    description: String,
    total_minor: i64,
    attach: Option<String>,
    auth_code: String,
}

fn read_codepay(body: &Map<String, Value>, call: &Call<'_>) -> Result<CodepayOrder, ApiError> {
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
    let attach = wire::optional_str(body, "attach")?;
    if attach.is_some_and(|a| a.chars().count() > 128) {
        return Err(ApiError::param("attach 长度不能超过128个字符"));
    }
    let payer =
        wire::optional_object(body, "payer")?.ok_or_else(|| ApiError::param("缺少参数 payer"))?;
    let auth_code = wire::required_str(payer, "auth_code")?;
    if !valid_auth_code(auth_code) {
        return Err(ApiError::param(
            "/payer/auth_code 应为以10、11、12、13、14、15开头的18位数字",
        ));
    }
    let amount =
        wire::optional_object(body, "amount")?.ok_or_else(|| ApiError::param("缺少参数 amount"))?;
    let total_minor = wire::required_fen(amount, "/amount", "total")?;
    wire::check_currency(amount, "/amount")?;
    if wire::optional_object(body, "scene_info")?.is_none() {
        return Err(ApiError::param("缺少参数 scene_info"));
    }
    if appid != call.merchant.appid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "APPID_MCHID_NOT_MATCH",
            "appid和mch_id不匹配",
        ));
    }
    Ok(CodepayOrder {
        appid: appid.to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        description: description.to_owned(),
        total_minor,
        attach: attach.map(str::to_owned),
        auth_code: auth_code.to_owned(),
    })
}

/// What a codepay order answers in its current state (first call and idempotent repeats).
fn codepay_reply(trade: &Trade) -> Result<Reply, ApiError> {
    match trade.state {
        TradeState::Success | TradeState::Refund => {
            Ok(Reply::Json(trade.transaction_json().to_string()))
        }
        TradeState::UserPaying | TradeState::NotPay => Err(user_paying()),
        TradeState::PayError => Err(
            if trade.auth_code.as_deref().map(outcome_of) == Some(Outcome::NotEnough) {
                not_enough()
            } else {
                trade_error()
            },
        ),
        TradeState::Closed | TradeState::Revoked => Err(order_closed()),
    }
}

impl WechatpayMock {
    /// `POST /v3/pay/transactions/codepay`.
    pub(super) fn codepay(&self, call: &Call<'_>) -> ApiResult {
        let body = wire::json_object(call.body).map_err(|e| (e, None))?;
        let logged = wire::optional_str(&body, "out_trade_no")
            .ok()
            .flatten()
            .map(str::to_owned);
        let fail = |error: ApiError| (error, logged.clone());
        let order = read_codepay(&body, call).map_err(fail)?;
        let key: TradeKey = (call.merchant.mchid.clone(), order.out_trade_no.clone());
        let now_ms = call.now_ms;
        let mut state = self.lock();
        if let Some(trade) = state.trades.get(&key) {
            if trade.trade_type != TradeType::Micropay {
                return Err(fail(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "OUT_TRADE_NO_USED",
                    "商户订单号重复",
                )));
            }
            let same = trade.appid == order.appid
                && trade.description == order.description
                && trade.total_minor == order.total_minor
                && trade.auth_code.as_deref() == Some(order.auth_code.as_str());
            if !same {
                // 更换授权码必须要换新的商户订单号.
                return Err(fail(ApiError::invalid_request(
                    "请求重入时，参数与首次请求时不一致",
                )));
            }
            return codepay_reply(trade)
                .map(|reply| (reply, logged.clone()))
                .map_err(fail);
        }
        let outcome = outcome_of(&order.auth_code);
        let sequence = state.next_sequence();
        let transaction_id = self.transaction_id(now_ms);
        let trade = Trade {
            sequence,
            mchid: call.merchant.mchid.clone(),
            appid: order.appid,
            out_trade_no: order.out_trade_no,
            transaction_id,
            trade_type: TradeType::Micropay,
            description: order.description,
            attach: order.attach,
            // The payment-code flow has no payment notification.
            notify_url: String::new(),
            total_minor: order.total_minor,
            payer_openid: None,
            state: match outcome {
                Outcome::Paid | Outcome::UserPaying => TradeState::UserPaying,
                Outcome::Failed | Outcome::NotEnough => TradeState::PayError,
            },
            created_ms: now_ms,
            paid_ms: None,
            closed_ms: None,
            time_expire_ms: now_ms.saturating_add(REVERSE_WINDOW_MS),
            expiry_event: None,
            credential: ("auth_code", order.auth_code.clone()),
            auth_code: Some(order.auth_code),
            refunds: Vec::new(),
            notifications: Vec::new(),
        };
        state.trades.insert(key.clone(), trade);
        if outcome == Outcome::Paid {
            self.mark_paid(&mut state, &key, now_ms);
        }
        let trade = state
            .trades
            .get(&key)
            .ok_or_else(|| fail(ApiError::system()))?;
        codepay_reply(trade)
            .map(|reply| (reply, logged.clone()))
            .map_err(fail)
    }

    /// `POST /v3/pay/transactions/out-trade-no/{out_trade_no}/reverse` (撤销) → 200
    /// `{appid, mchid, out_trade_no}`. Unpaid or failed orders close as REVOKED; a paid order
    /// (no refund requested, within 7 days) has its money returned and is REVOKED too;
    /// reversing a REVOKED order answers 200 again.
    pub(super) fn reverse(&self, no: &str, call: &Call<'_>) -> ApiResult {
        let logged = Some(no.to_owned());
        let fail = |error: ApiError| (error, logged.clone());
        let body = wire::json_object(call.body).map_err(fail)?;
        let appid = wire::required_str(&body, "appid").map_err(fail)?;
        let mchid = wire::required_str(&body, "mchid").map_err(fail)?;
        if mchid != call.merchant.mchid {
            return Err(fail(ApiError::param(
                "mchid 与 Authorization 中的商户号不一致",
            )));
        }
        if appid != call.merchant.appid {
            return Err(fail(ApiError::new(
                StatusCode::BAD_REQUEST,
                "APPID_MCHID_NOT_MATCH",
                "appid和mch_id不匹配",
            )));
        }
        let mut state = self.lock();
        let trade = state
            .trades
            .get_mut(&(call.merchant.mchid.clone(), no.to_owned()))
            .ok_or_else(|| fail(not_exist()))?;
        match trade.state {
            TradeState::Revoked => {}
            TradeState::Closed => return Err(fail(order_closed())),
            TradeState::Refund => {
                return Err(fail(ApiError::invalid_request(
                    "订单已发生退款，不能撤销，请查询退款结果",
                )))
            }
            TradeState::Success
                if call.now_ms.saturating_sub(trade.created_ms) > REVERSE_WINDOW_MS =>
            {
                return Err(fail(ApiError::invalid_request(
                    "订单已超过7天，不能撤销，请调用申请退款API",
                )))
            }
            TradeState::NotPay
            | TradeState::UserPaying
            | TradeState::PayError
            | TradeState::Success => {
                if let Some(next) = step(trade.state, Event::Revoke) {
                    if let Some(event) = trade.expiry_event.take() {
                        self.scheduler.cancel(event);
                    }
                    trade.state = next;
                    trade.closed_ms = Some(call.now_ms);
                }
            }
        }
        let answer = json!({
            "appid": trade.appid,
            "mchid": trade.mchid,
            "out_trade_no": trade.out_trade_no,
        });
        Ok((Reply::Json(answer.to_string()), logged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_codes_script_the_outcome() {
        assert!(valid_auth_code("134567890123450000"));
        assert!(!valid_auth_code("284567890123450000"));
        assert!(!valid_auth_code("13456789012345000"));
        assert_eq!(outcome_of("134567890123450000"), Outcome::Paid);
        assert_eq!(outcome_of("134567890123450003"), Outcome::UserPaying);
        assert_eq!(outcome_of("134567890123454004"), Outcome::Failed);
        assert_eq!(outcome_of("134567890123454001"), Outcome::NotEnough);
    }
}
