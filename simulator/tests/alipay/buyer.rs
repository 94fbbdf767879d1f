//! Page and wap pay (the cashier) and app pay (the wallet), driven as a browser and an app
//! would, with every signature checked by the independent client code in `main.rs`.

use axum::body::Body;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use simulator::app;
use tower::ServiceExt;

use super::{
    canonical, encode, field, receiver, verified_node, verify_alipay, Harness, APP_ID, BASE,
    MINUTE, SELLER_ID, T0,
};

async fn send_full(h: &Harness, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = app(h.sim.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn form_post(path: &str, body: String) -> Request<Body> {
    Request::post(path)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

/// The cashier token from the page's form actions.
fn cashier_token(page: &str) -> String {
    let marker = format!("{BASE}/alipay/cashier/");
    let start = page.find(&marker).expect("a cashier form") + marker.len();
    page[start..].split('/').next().unwrap().to_owned()
}

fn page_biz(out_trade_no: &str, product_code: &str) -> String {
    json!({"out_trade_no": out_trade_no, "total_amount": "66.60", "subject": "page 中文", "product_code": product_code}).to_string()
}

async fn trade_state(h: &Harness, out_trade_no: &str) -> (StatusCode, Value) {
    h.control(
        Method::GET,
        &format!("/_paysim/alipay/trades/{out_trade_no}"),
        None,
    )
    .await
}

#[tokio::test]
async fn page_pay_get_cashier_pay_redirects_to_a_signed_return_url() {
    let h = Harness::new();
    let received = receiver(&h, 0);
    let pairs = h.client.params(
        "alipay.trade.page.pay",
        &page_biz("PAGE_1", "FAST_INSTANT_TRADE_PAY"),
        &[
            ("return_url", "http://merchant.local/return?from=alipay"),
            ("notify_url", "http://merchant.local/notify"),
        ],
    );
    let gateway_url = format!("/alipay/gateway.do?{}", encode(&pairs));
    let (status, headers, page) =
        send_full(&h, Request::get(&gateway_url).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    for button in ["Pay", "Cancel", "Fail"] {
        assert!(page.contains(&format!(">{button}</button>")), "{page}");
    }
    assert!(
        page.contains("66.60") && page.contains("page 中文"),
        "{page}"
    );
    let token = cashier_token(&page);

    // The trade exists once the cashier is shown.
    assert_eq!(h.query("PAGE_1").await["trade_status"], "WAIT_BUYER_PAY");
    let (_, view) = trade_state(&h, "PAGE_1").await;
    assert_eq!(view["product"], "page");

    let (status, headers, _) = send_full(
        &h,
        form_post(&format!("/alipay/cashier/{token}/pay"), "action=pay".into()),
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = headers[LOCATION].to_str().unwrap().to_owned();
    let query = location
        .strip_prefix("http://merchant.local/return?from=alipay&")
        .expect(&location);
    let returned: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let sign = field(&returned, "sign").unwrap();
    assert!(
        verify_alipay(&canonical(&returned, &["sign", "sign_type"]), sign),
        "return params verify without sign and sign_type: {returned:?}"
    );
    let node = h.query("PAGE_1").await;
    assert_eq!(node["trade_status"], "TRADE_SUCCESS");
    for (key, value) in [
        ("method", "alipay.trade.page.pay.return"),
        ("charset", "utf-8"),
        ("out_trade_no", "PAGE_1"),
        ("total_amount", "66.60"),
        ("trade_no", node["trade_no"].as_str().unwrap()),
        ("auth_app_id", APP_ID),
        ("app_id", APP_ID),
        ("seller_id", SELLER_ID),
        ("version", "1.0"),
        ("timestamp", "2026-11-25 18:00:00"),
        ("sign_type", "RSA2"),
    ] {
        assert_eq!(field(&returned, key), Some(value), "{key}");
    }
    assert_eq!(
        field(&returned, "trade_status"),
        None,
        "no trade_status in a return"
    );

    // Page pay notifies TRADE_SUCCESS.
    h.run_until(T0 + MINUTE).await;
    {
        let log = received.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(field(&log[0].1, "trade_status"), Some("TRADE_SUCCESS"));
        assert_eq!(field(&log[0].1, "out_trade_no"), Some("PAGE_1"));
    }

    // A second click redirects again; re-opening the paid order shows an error page.
    let (status, _, _) = send_full(
        &h,
        form_post(&format!("/alipay/cashier/{token}/pay"), String::new()),
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    let (status, _, page) =
        send_full(&h, Request::get(&gateway_url).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("ACQ.TRADE_HAS_SUCCESS"), "{page}");

    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/alipay/exchanges", None)
        .await;
    let first = &exchanges["exchanges"][0];
    assert_eq!(first["api"], "alipay.trade.page.pay");
    assert_eq!(first["signature"]["verdict"], "valid");
    assert_eq!(first["out_trade_no"], "PAGE_1");
}

#[tokio::test]
async fn wap_pay_post_form_cancel_fail_then_pay() {
    let h = Harness::new();
    let biz = json!({"out_trade_no": "WAP_1", "total_amount": "5.00", "subject": "wap",
        "product_code": "QUICK_WAP_WAY", "quit_url": "http://merchant.local/quit"})
    .to_string();
    let pairs = h.client.params("alipay.trade.wap.pay", &biz, &[]);
    // An auto-submitted form: everything in the body.
    let (status, _, page) = send_full(&h, form_post("/alipay/gateway.do", encode(&pairs))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("wap"), "{page}");
    let token = cashier_token(&page);

    let (status, headers, _) = send_full(
        &h,
        form_post(&format!("/alipay/cashier/{token}/cancel"), String::new()),
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers[LOCATION], "http://merchant.local/quit");
    assert_eq!(h.query("WAP_1").await["trade_status"], "WAIT_BUYER_PAY");

    let (status, _, page) = send_full(
        &h,
        form_post(&format!("/alipay/cashier/{token}/fail"), String::new()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("付款失败"), "{page}");
    assert_eq!(h.query("WAP_1").await["trade_status"], "WAIT_BUYER_PAY");

    // Back to the cashier, then pay: no return_url, so a "paid" page.
    let (status, _, page) = send_full(
        &h,
        Request::get(format!("/alipay/cashier/{token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(">Pay</button>"));
    let (status, _, page) = send_full(
        &h,
        form_post(&format!("/alipay/cashier/{token}/pay"), String::new()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("支付成功"), "{page}");
    assert_eq!(h.query("WAP_1").await["trade_status"], "TRADE_SUCCESS");
    let (_, view) = trade_state(&h, "WAP_1").await;
    assert_eq!(view["product"], "wap");

    // python-alipay-sdk's QUICK_WAP_PAY is accepted; a page-pay product code is not.
    let pairs = h.client.params(
        "alipay.trade.wap.pay",
        &page_biz("WAP_2", "QUICK_WAP_PAY"),
        &[],
    );
    let (_, _, page) = send_full(&h, form_post("/alipay/gateway.do", encode(&pairs))).await;
    assert!(page.contains(">Pay</button>"), "{page}");
    let pairs = h.client.params(
        "alipay.trade.wap.pay",
        &page_biz("WAP_3", "FAST_INSTANT_TRADE_PAY"),
        &[],
    );
    let (_, _, page) = send_full(&h, form_post("/alipay/gateway.do", encode(&pairs))).await;
    assert!(page.contains("ACQ.INVALID_PARAMETER"), "{page}");
    assert_eq!(trade_state(&h, "WAP_3").await.0, StatusCode::NOT_FOUND);

    // Unknown cashier tokens and actions.
    let (status, _, _) = send_full(&h, form_post("/alipay/cashier/nope/pay", String::new())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = send_full(
        &h,
        form_post(&format!("/alipay/cashier/{token}/dance"), String::new()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn page_pay_with_a_bad_signature_shows_an_html_error_page() {
    let h = Harness::new();
    let mut pairs = h.client.params(
        "alipay.trade.page.pay",
        &page_biz("PAGE_BAD", "FAST_INSTANT_TRADE_PAY"),
        &[],
    );
    pairs
        .iter_mut()
        .find(|(k, _)| k == "biz_content")
        .unwrap()
        .1 = page_biz("PAGE_BAD", "FAST_INSTANT_TRADE_PAY").replace("66.60", "0.01");
    let (status, headers, page) = send_full(
        &h,
        Request::get(format!("/alipay/gateway.do?{}", encode(&pairs)))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.starts_with("<!doctype html>"), "not JSON: {page}");
    assert!(page.contains("isv.invalid-signature"), "{page}");
    assert!(!page.contains("/alipay/cashier/"), "no cashier: {page}");
    assert_eq!(trade_state(&h, "PAGE_BAD").await.0, StatusCode::NOT_FOUND);
    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/alipay/exchanges", None)
        .await;
    assert_eq!(exchanges["exchanges"][0]["signature"]["verdict"], "invalid");
    assert_eq!(
        exchanges["exchanges"][0]["sub_code"],
        "isv.invalid-signature"
    );
}

fn app_biz(out_trade_no: &str) -> String {
    json!({"out_trade_no": out_trade_no, "total_amount": "0.01", "subject": "app", "product_code": "QUICK_MSECURITY_PAY"}).to_string()
}

async fn wallet(h: &Harness, request: Request<Body>) -> Value {
    let (status, _, text) = send_full(h, request).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn app_pay_order_string_pays_and_the_result_verifies() {
    let h = Harness::new();
    let received = receiver(&h, 0);
    let order_string = encode(&h.client.params(
        "alipay.trade.app.pay",
        &app_biz("APP_1"),
        &[("notify_url", "http://merchant.local/notify")],
    ));
    let body = encode(&[("order_string".into(), order_string)]);
    let answer = wallet(&h, form_post("/alipay/wallet/app-pay", body)).await;
    assert_eq!(answer["resultStatus"], "9000", "{answer}");
    assert_eq!(answer["memo"], "");
    let result = answer["result"].as_str().unwrap();
    let prefix = "{\"alipay_trade_app_pay_response\":";
    assert!(result.starts_with(prefix), "{result}");
    let at = result.find(",\"sign\":\"").unwrap();
    let node_text = &result[prefix.len()..at];
    let parsed: Value = serde_json::from_str(result).unwrap();
    assert!(
        verify_alipay(node_text, parsed["sign"].as_str().unwrap()),
        "the result's signature covers the node text"
    );
    assert_eq!(parsed["sign_type"], "RSA2");
    let node = &parsed["alipay_trade_app_pay_response"];
    assert_eq!(node["code"], "10000");
    assert_eq!(node["out_trade_no"], "APP_1");
    assert_eq!(node["total_amount"], "0.01");
    assert_eq!(node["seller_id"], SELLER_ID);
    assert_eq!(node["app_id"], APP_ID);
    let queried = h.query("APP_1").await;
    assert_eq!(queried["trade_status"], "TRADE_SUCCESS");
    assert_eq!(node["trade_no"], queried["trade_no"]);
    h.run_until(T0 + MINUTE).await;
    assert_eq!(received.lock().unwrap().len(), 1);

    // The raw order string as the body, and the same paid order again: refused.
    let order_string = encode(
        &h.client
            .params("alipay.trade.app.pay", &app_biz("APP_1"), &[]),
    );
    let answer = wallet(&h, form_post("/alipay/wallet/app-pay", order_string)).await;
    assert_eq!(answer["resultStatus"], "4000");
    assert!(answer["memo"]
        .as_str()
        .unwrap()
        .contains("ACQ.TRADE_HAS_SUCCESS"));
}

#[tokio::test]
async fn app_pay_cancel_fail_and_bad_signature() {
    let h = Harness::new();
    let order_string = encode(
        &h.client
            .params("alipay.trade.app.pay", &app_biz("APP_C"), &[]),
    );
    let request = Request::post("/alipay/wallet/app-pay")
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"order_string": order_string, "action": "cancel"}).to_string(),
        ))
        .unwrap();
    let answer = wallet(&h, request).await;
    assert_eq!(answer["resultStatus"], "6001");
    assert_eq!(answer["result"], "");
    assert_eq!(h.query("APP_C").await["trade_status"], "WAIT_BUYER_PAY");

    let answer = wallet(
        &h,
        form_post("/alipay/wallet/app-pay?action=fail", order_string.clone()),
    )
    .await;
    assert_eq!(answer["resultStatus"], "4000");
    assert_eq!(h.query("APP_C").await["trade_status"], "WAIT_BUYER_PAY");
    // Then the buyer pays after all.
    let answer = wallet(&h, form_post("/alipay/wallet/app-pay", order_string)).await;
    assert_eq!(answer["resultStatus"], "9000");

    let mut pairs = h
        .client
        .params("alipay.trade.app.pay", &app_biz("APP_X"), &[]);
    pairs
        .iter_mut()
        .find(|(k, _)| k == "biz_content")
        .unwrap()
        .1 = app_biz("APP_Y");
    let answer = wallet(&h, form_post("/alipay/wallet/app-pay", encode(&pairs))).await;
    assert_eq!(answer["resultStatus"], "4000");
    assert!(answer["memo"]
        .as_str()
        .unwrap()
        .contains("isv.invalid-signature"));
    assert_eq!(trade_state(&h, "APP_Y").await.0, StatusCode::NOT_FOUND);

    let (status, _, _) = send_full(
        &h,
        form_post(
            "/alipay/wallet/app-pay?action=dance",
            "order_string=x".into(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // app.pay is not a gateway call.
    let (_, text) = h
        .send(
            h.client
                .post("alipay.trade.app.pay", &app_biz("APP_G"), &[]),
        )
        .await;
    assert_eq!(
        verified_node(&text, "alipay.trade.app.pay")["sub_code"],
        "isv.invalid-method"
    );
}
