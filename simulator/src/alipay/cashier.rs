//! The buyer's cashier for `alipay.trade.page.pay` and `alipay.trade.wap.pay`: the browser
//! opens `gateway.do` (GET with everything in the query, or an auto-submitted POST form), the
//! request is verified like any other, and the answer is HTML — an error page when it does not
//! verify (the real cashier shows one, never JSON), otherwise a server-rendered cashier with
//! **Pay**, **Cancel** and **Fail** buttons posting to `/alipay/cashier/{token}/{action}`.
//!
//! The trade comes into existence when the cashier is shown (the buyer "logs in", notes
//! A3.1). Pay settles it (TRADE_SUCCESS, notification per the product's triggers) and sends
//! the browser back to `return_url` with the signed synchronous-return parameters (notes A5),
//! signed like a notification: over every parameter except `sign` and `sign_type`.

use std::sync::Arc;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use determinism::{EntropyExt, UnixMillis};

use super::trade::{escape_html, Call, Product, Trade, TradeStatus};
use super::wire::{self, ApiError, Params};
use super::{AlipayMock, Exchange, State, BROWSER_METHODS};
use crate::money::format_yuan;

/// One opened cashier: which trade, and where the browser goes afterwards.
#[derive(Debug, Clone)]
pub struct CashierSession {
    pub out_trade_no: String,
    /// `alipay.trade.page.pay` or `alipay.trade.wap.pay`.
    pub method: String,
    pub app_id: String,
    /// The request's `charset`, echoed in the return parameters.
    pub charset: String,
    pub return_url: Option<String>,
    /// Wap pay's `quit_url`: where Cancel sends the buyer.
    pub quit_url: Option<String>,
}

impl AlipayMock {
    /// `gateway.do` with a browser method: verify, open the trade, show the cashier.
    pub(super) fn open_cashier(
        &self,
        params: &Params,
        now_ms: UnixMillis,
        mut exchange: Exchange,
    ) -> Response {
        let checked = match self.check_request(params, &mut exchange, &BROWSER_METHODS) {
            Ok(checked) => checked,
            Err(error) => {
                exchange.answered(error.code, Some(&error.sub_code));
                self.record_exchange(exchange);
                return error_page(&error);
            }
        };
        let product = if checked.method == "alipay.trade.wap.pay" {
            Product::WapPay
        } else {
            Product::PagePay
        };
        let call = Call {
            method: checked.method,
            app_id: checked.app_id,
            notify_url: params.non_empty("notify_url"),
            biz: &checked.biz,
            now_ms,
        };
        exchange.out_trade_no = checked
            .biz
            .get("out_trade_no")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let quit_url = checked
            .biz
            .get("quit_url")
            .and_then(serde_json::Value::as_str)
            .filter(|url| !url.is_empty())
            .map(str::to_owned);
        let response = {
            let mut state = self.lock();
            match self.open_buyer_trade(&mut state, &call, product) {
                Ok(key) => {
                    let token = self.entropy.token(24);
                    state.cashiers.insert(
                        token.clone(),
                        CashierSession {
                            out_trade_no: key,
                            method: checked.method.to_owned(),
                            app_id: checked.app_id.to_owned(),
                            charset: params.non_empty("charset").unwrap_or("utf-8").to_owned(),
                            return_url: params.non_empty("return_url").map(str::to_owned),
                            quit_url,
                        },
                    );
                    exchange.answered("10000", None);
                    self.cashier_page(&state, &token)
                }
                Err(error) => {
                    exchange.answered(error.code, Some(&error.sub_code));
                    error_page(&error)
                }
            }
        };
        self.record_exchange(exchange);
        response
    }

    /// The cashier for `token`: the order and the three buttons.
    fn cashier_page(&self, state: &State, token: &str) -> Response {
        let Some((session, trade)) = session_and_trade(state, token) else {
            return unknown_cashier();
        };
        let kind = if session.method == "alipay.trade.wap.pay" {
            "手机网站支付 / wap"
        } else {
            "电脑网站支付 / page"
        };
        let buttons: String = [
            ("pay", "Pay", "确认付款"),
            ("cancel", "Cancel", "返回商家"),
            ("fail", "Fail", "付款失败"),
        ]
        .iter()
        .map(|(action, label, hint)| {
            format!(
                r#"<form method="post" action="{base}/alipay/cashier/{token}/{action}"><button type="submit" name="action" value="{action}">{label}</button> {hint}</form>"#,
                base = escape_html(&self.base_url),
            )
        })
        .collect();
        page(
            StatusCode::OK,
            "支付宝 - 收银台 (paysim)",
            &format!(
                "<h1>paysim 支付宝收银台 — {kind}</h1>{order}{buttons}",
                order = order_list(trade),
            ),
        )
    }

    /// The sync-return parameters (notes A5), signed over everything but sign and sign_type.
    fn return_params(
        &self,
        session: &CashierSession,
        trade: &Trade,
        now_ms: UnixMillis,
    ) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = [
            ("method", format!("{}.return", session.method)),
            ("charset", session.charset.clone()),
            ("out_trade_no", trade.out_trade_no.clone()),
            ("total_amount", format_yuan(trade.total_minor)),
            ("trade_no", trade.trade_no.clone()),
            ("auth_app_id", session.app_id.clone()),
            ("app_id", session.app_id.clone()),
            ("seller_id", self.seller_id.clone()),
            ("version", "1.0".to_owned()),
            ("timestamp", wire::format_beijing(now_ms)),
            ("sign_type", "RSA2".to_owned()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let content = wire::sign_content(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &["sign", "sign_type"],
        );
        let sign = self.signing_key.sign_base64(content.as_bytes());
        pairs.push(("sign".to_owned(), sign));
        pairs
    }

    /// After a successful payment: 302 to return_url with the signed return parameters, or a
    /// plain "paid" page when the merchant gave no return_url.
    fn paid_answer(&self, state: &State, token: &str, now_ms: UnixMillis) -> Response {
        let Some((session, trade)) = session_and_trade(state, token) else {
            return unknown_cashier();
        };
        let paid_page = |extra: &str| {
            page(
                StatusCode::OK,
                "支付宝 - 支付成功 (paysim)",
                &format!("<h1>支付成功 / paid</h1>{}{extra}", order_list(trade)),
            )
        };
        let Some(return_url) = &session.return_url else {
            return paid_page("");
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.return_params(session, trade, now_ms))
            .finish();
        let separator = if return_url.contains('?') { '&' } else { '?' };
        let location = format!("{return_url}{separator}{query}");
        match HeaderValue::from_str(&location) {
            Ok(value) => (
                StatusCode::FOUND,
                [
                    (header::LOCATION, value),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
            )
                .into_response(),
            // A return_url that cannot be a header (raw non-ASCII): let the buyer click.
            Err(_) => paid_page(&format!(
                r#"<p><a id="return" href="{}">返回商家 / back to the merchant</a></p>"#,
                escape_html(&location)
            )),
        }
    }
}

/// `GET /alipay/cashier/{token}`: the cashier again (e.g. after a failed attempt).
pub(super) async fn show(
    AxumState(mock): AxumState<Arc<AlipayMock>>,
    Path(token): Path<String>,
) -> Response {
    let state = mock.lock();
    mock.cashier_page(&state, &token)
}

/// `POST /alipay/cashier/{token}/{pay|cancel|fail}`: the buyer's button.
pub(super) async fn act(
    AxumState(mock): AxumState<Arc<AlipayMock>>,
    Path((token, action)): Path<(String, String)>,
) -> Response {
    let now_ms = mock.now_ms();
    let mut state = mock.lock();
    let Some((session, trade)) = session_and_trade(&state, &token) else {
        return unknown_cashier();
    };
    let key = session.out_trade_no.clone();
    let quit_url = session.quit_url.clone();
    let status = trade.status;
    let again = format!(
        r#"<p><a id="cashier" href="{}/alipay/cashier/{token}">回到收银台 / back to the cashier</a></p>"#,
        escape_html(&mock.base_url)
    );
    match (action.as_str(), status) {
        ("pay", TradeStatus::WaitBuyerPay) => {
            mock.mark_paid(&mut state, &key, now_ms);
            mock.paid_answer(&state, &token, now_ms)
        }
        // A second click (or a reload) after paying goes back to the merchant again.
        ("pay", TradeStatus::TradeSuccess | TradeStatus::TradeFinished) => {
            mock.paid_answer(&state, &token, now_ms)
        }
        ("pay" | "cancel" | "fail", _) if status != TradeStatus::WaitBuyerPay => page(
            StatusCode::OK,
            "支付宝 - 交易状态 (paysim)",
            &format!(
                "<h1>交易已结束 / the trade is {}</h1>{}",
                status.name(),
                order_list(trade)
            ),
        ),
        ("cancel", _) => {
            // The buyer went back: the trade stays WAIT_BUYER_PAY until it expires or is
            // closed. Wap pay's quit_url takes the buyer back to the merchant.
            if let Some(value) = quit_url.and_then(|url| HeaderValue::from_str(&url).ok()) {
                return (StatusCode::FOUND, [(header::LOCATION, value)]).into_response();
            }
            page(
                StatusCode::OK,
                "支付宝 - 已取消 (paysim)",
                &format!(
                    "<h1>您已离开收银台 / you left the cashier</h1><p>The trade still awaits payment.</p>{}{again}",
                    order_list(trade)
                ),
            )
        }
        ("fail", _) => page(
            StatusCode::OK,
            "支付宝 - 付款失败 (paysim)",
            &format!(
                "<h1>付款失败 / payment failed</h1><p>The trade stays unpaid; the buyer may try again.</p>{}{again}",
                order_list(trade)
            ),
        ),
        _ => page(
            StatusCode::NOT_FOUND,
            "支付宝 - 错误 (paysim)",
            "<h1>无效的操作 / unknown action</h1><p>Use pay, cancel or fail.</p>",
        ),
    }
}

fn session_and_trade<'s>(state: &'s State, token: &str) -> Option<(&'s CashierSession, &'s Trade)> {
    let session = state.cashiers.get(token)?;
    let trade = state.trades.get(&session.out_trade_no)?;
    Some((session, trade))
}

fn order_list(trade: &Trade) -> String {
    format!(
        "<dl><dt>商品 / subject</dt><dd id=\"subject\">{subject}</dd>\
         <dt>金额 / amount</dt><dd id=\"amount\">¥{amount}</dd>\
         <dt>商户订单号 / out_trade_no</dt><dd id=\"out_trade_no\">{out}</dd>\
         <dt>支付宝交易号 / trade_no</dt><dd id=\"trade_no\">{trade_no}</dd>\
         <dt>状态 / status</dt><dd id=\"status\">{status}</dd></dl>",
        subject = escape_html(&trade.subject),
        amount = format_yuan(trade.total_minor),
        out = escape_html(&trade.out_trade_no),
        trade_no = escape_html(&trade.trade_no),
        status = trade.status.name(),
    )
}

/// The error page the cashier shows for a request it refuses (bad signature, unknown app,
/// invalid order …): HTML with the code and sub_code, never JSON.
fn error_page(error: &ApiError) -> Response {
    page(
        StatusCode::OK,
        "支付宝 - 错误 (paysim)",
        &format!(
            "<h1>抱歉，出错了 / the payment request was refused</h1>\
             <dl><dt>错误代码 / error code</dt><dd id=\"sub_code\">{sub_code}</dd>\
             <dt>code</dt><dd id=\"code\">{code}</dd>\
             <dt>错误原因 / reason</dt><dd id=\"sub_msg\">{sub_msg}</dd></dl>",
            sub_code = escape_html(&error.sub_code),
            code = error.code,
            sub_msg = escape_html(&error.sub_msg),
        ),
    )
}

fn unknown_cashier() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "支付宝 - 错误 (paysim)",
        "<h1>收银台不存在 / unknown cashier</h1>",
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Html(format!(
            "<!doctype html><html lang=\"zh-CN\"><meta charset=\"utf-8\"><title>{title}</title><body>{body}</body></html>"
        )),
    )
        .into_response()
}
