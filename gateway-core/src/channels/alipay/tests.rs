//! Tests of the Alipay adapter against the committed keys and golden vectors
//! (`scenarios/vectors/alipay/`, signed with the openssl CLI) and an independent RSA
//! implementation (the `rsa` crate) on the other side of every signature.

use std::collections::BTreeMap;

use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};

use super::*;
use crate::ids::MerchantId;
use crate::model::MethodParams;
use crate::money::Money;
use crate::state::{OrderState, RefundState};

macro_rules! vector {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/vectors/alipay/",
            $file
        ))
    };
}

const APP_PRIVATE_PKCS8: &str = vector!("keys/app_private_pkcs8.pem");
const APP_PRIVATE_PKCS1: &str = vector!("keys/app_private_pkcs1.pem");
const APP_PUBLIC: &str = vector!("keys/app_public.pem");
const ALIPAY_PRIVATE: &str = vector!("keys/alipay_private_pkcs8.pem");
const ALIPAY_PUBLIC: &str = vector!("keys/alipay_public.pem");

const APP_ID: &str = "2021000000000001";
const GATEWAY: &str = "http://127.0.0.1:8081/alipay/gateway.do";
const NOTIFY_URL: &str = "http://127.0.0.1:8080/notify/alipay";
/// 2026-11-25 17:59:37 Beijing time.
const NOW_MS: i64 = 1_795_600_777_000;
const ORDER_ID: &str = "ord_vector0000000000000001";
const REFUND_ID: &str = "rfd_vector0000000000000001";

fn config() -> AlipayConfig {
    AlipayConfig {
        app_id: APP_ID.to_owned(),
        app_private_key_pem: APP_PRIVATE_PKCS8.to_owned(),
        alipay_public_key_pem: ALIPAY_PUBLIC.to_owned(),
        gateway_url: GATEWAY.to_owned(),
        seller_id: None,
        certificates: None,
    }
}

fn adapter() -> AlipayAdapter {
    AlipayAdapter::new(config()).unwrap()
}

fn context() -> AdapterContext {
    AdapterContext {
        now_ms: NOW_MS,
        nonce: "n".repeat(32),
        notify_url: NOTIFY_URL.to_owned(),
    }
}

fn order(method: PaymentMethod) -> Order {
    Order {
        id: OrderId::parse(ORDER_ID).unwrap(),
        merchant_id: MerchantId::parse("mch_sandbox").unwrap(),
        channel: Channel::Alipay,
        method,
        method_params: MethodParams::default(),
        amount: Money::from_minor(8888, Currency::Cny),
        subject: "demo 中文".to_owned(),
        state: OrderState::Paying,
        refunded_minor: 0,
        refund_reserved_minor: 0,
        fee_minor: 0,
        channel_trade_no: None,
        buyer_action: None,
        // 15 minutes after NOW_MS.
        expires_at_ms: NOW_MS + 900_000,
        created_at_ms: NOW_MS,
        updated_at_ms: NOW_MS,
        paid_at_ms: None,
        version: 1,
    }
}

fn refund(amount_minor: i64) -> Refund {
    Refund {
        id: RefundId::parse(REFUND_ID).unwrap(),
        order_id: OrderId::parse(ORDER_ID).unwrap(),
        merchant_id: MerchantId::parse("mch_sandbox").unwrap(),
        channel: Channel::Alipay,
        amount: Money::from_minor(amount_minor, Currency::Cny),
        reason: Some("退货".to_owned()),
        kind: crate::model::RefundKind::Merchant,
        state: RefundState::Pending,
        fee_refund_minor: 0,
        channel_refund_no: None,
        created_at_ms: NOW_MS,
        updated_at_ms: NOW_MS,
        version: 1,
    }
}

// ---------------------------------------------------------------- the other side's crypto

fn rsa_sign(private_pem: &str, message: &str) -> String {
    use base64::Engine as _;
    let key = SigningKey::<Sha256>::new(RsaPrivateKey::from_pkcs8_pem(private_pem).unwrap());
    base64::engine::general_purpose::STANDARD.encode(key.sign(message.as_bytes()).to_vec())
}

fn rsa_verifies(public_pem: &str, message: &str, signature: &str) -> bool {
    use base64::Engine as _;
    let key = VerifyingKey::<Sha256>::new(RsaPublicKey::from_public_key_pem(public_pem).unwrap());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .unwrap();
    let signature = Signature::try_from(bytes.as_slice()).unwrap();
    key.verify(message.as_bytes(), &signature).is_ok()
}

/// What the gateway would do with a request: merge query and body, rebuild the documented
/// signing string independently (sorted, without `sign` and empty values) and verify it with
/// the app public key. Returns the parameters.
fn verify_like_the_gateway(query: &str, body: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body))
    {
        assert!(
            params
                .insert(key.into_owned(), value.into_owned())
                .is_none(),
            "parameter sent twice"
        );
    }
    let content = params
        .iter()
        .filter(|(key, value)| key.as_str() != "sign" && !value.is_empty())
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    assert!(
        rsa_verifies(APP_PUBLIC, &content, &params["sign"]),
        "request signature does not verify over {content}"
    );
    params
}

fn verify_request(request: &HttpRequest) -> BTreeMap<String, String> {
    assert_eq!(request.method(), Method::POST);
    assert_eq!(
        request.headers()[CONTENT_TYPE],
        "application/x-www-form-urlencoded;charset=utf-8"
    );
    let uri = request.uri().to_string();
    let (base, query) = uri.split_once('?').unwrap();
    assert_eq!(base, GATEWAY);
    assert!(
        !query.contains("biz_content"),
        "biz_content belongs in the body"
    );
    let body = std::str::from_utf8(request.body()).unwrap();
    assert!(body.starts_with("biz_content="), "{body}");
    verify_like_the_gateway(query, request.body())
}

fn biz(params: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::from_str(&params["biz_content"]).unwrap()
}

/// `{"<node>":<node_text>,"sign":"…"}` signed by the Alipay key over the exact node text.
fn signed_response(node: &str, node_text: &str) -> HttpResponse {
    let body = format!(
        r#"{{"{node}":{node_text},"sign":"{}"}}"#,
        rsa_sign(ALIPAY_PRIVATE, node_text)
    );
    http_response(200, body)
}

fn http_response(status: u16, body: String) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/html;charset=utf-8")
        .body(Bytes::from(body))
        .unwrap()
}

fn vector_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

// ---------------------------------------------------------------- requests

#[test]
fn signing_string_of_the_documented_example() {
    // alipay.md A1.1: the official Python SDK's signing string.
    let params = [
        ("timestamp", "2026-11-25 17:59:37"),
        ("app_id", "2021000000000001"),
        ("method", "alipay.trade.precreate"),
        ("charset", "utf-8"),
        ("format", "json"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("notify_url", "http://127.0.0.1:9/notify"),
        (
            "biz_content",
            r#"{"out_trade_no":"DEMO_OFF_001","subject":"demo 中文","total_amount":"88.88"}"#,
        ),
        ("sign", "ignored"),
        ("app_auth_token", ""),
    ];
    assert_eq!(
        sign_content(params, &["sign"]),
        r#"app_id=2021000000000001&biz_content={"out_trade_no":"DEMO_OFF_001","subject":"demo 中文","total_amount":"88.88"}&charset=utf-8&format=json&method=alipay.trade.precreate&notify_url=http://127.0.0.1:9/notify&sign_type=RSA2&timestamp=2026-11-25 17:59:37&version=1.0"#
    );
}

#[test]
fn signatures_match_the_openssl_golden_vectors() {
    for file in [
        vector!("request_precreate.json"),
        vector!("request_query_escaped.json"),
    ] {
        let vector = vector_json(file);
        let params: Vec<(&str, &str)> = vector["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str().unwrap()))
            .collect();
        let content = sign_content(params, &["sign"]);
        assert_eq!(content, vector["sign_content"].as_str().unwrap());
        for pem in [APP_PRIVATE_PKCS8, APP_PRIVATE_PKCS1] {
            let signature = AppPrivateKey::parse(pem).unwrap().sign(&content).unwrap();
            assert_eq!(signature, vector["sign"].as_str().unwrap());
        }
    }
}

#[test]
fn precreate_request_is_signed_and_shaped_like_the_sdks() {
    let plan = adapter()
        .plan_create(&order(PaymentMethod::Qr), &context())
        .unwrap();
    let CreatePlan::Call(request) = plan else {
        panic!("precreate is a call")
    };
    let params = verify_request(&request);
    let expected = [
        ("app_id", APP_ID),
        ("charset", "utf-8"),
        ("format", "JSON"),
        ("method", "alipay.trade.precreate"),
        ("notify_url", NOTIFY_URL),
        ("sign_type", "RSA2"),
        ("timestamp", "2026-11-25 17:59:37"),
        ("version", "1.0"),
    ];
    for (key, value) in expected {
        assert_eq!(params[key], value, "{key}");
    }
    assert_eq!(
        params.keys().collect::<Vec<_>>(),
        [
            "app_id",
            "biz_content",
            "charset",
            "format",
            "method",
            "notify_url",
            "sign",
            "sign_type",
            "timestamp",
            "version"
        ]
    );
    assert_eq!(
        params["biz_content"],
        r#"{"out_trade_no":"ord_vector0000000000000001","total_amount":"88.88","subject":"demo 中文","product_code":"FACE_TO_FACE_PAYMENT","time_expire":"2026-11-25 18:14:37"}"#
    );
}

#[test]
fn follow_up_requests_carry_their_ids_and_no_notify_url() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);
    let refund = refund(1000);
    let cases = [
        (
            adapter.build_query(&order, &context()).unwrap(),
            "alipay.trade.query",
            serde_json::json!({ "out_trade_no": ORDER_ID }),
        ),
        (
            adapter.build_close(&order, &context()).unwrap(),
            "alipay.trade.close",
            serde_json::json!({ "out_trade_no": ORDER_ID }),
        ),
        (
            adapter
                .build_close(&self::order(PaymentMethod::Barcode), &context())
                .unwrap(),
            "alipay.trade.cancel",
            serde_json::json!({ "out_trade_no": ORDER_ID }),
        ),
        (
            adapter.build_refund(&order, &refund, &context()).unwrap(),
            "alipay.trade.refund",
            serde_json::json!({
                "out_trade_no": ORDER_ID,
                "refund_amount": "10.00",
                "out_request_no": REFUND_ID,
                "refund_reason": "退货",
            }),
        ),
        (
            adapter
                .build_refund_query(&order, &refund, &context())
                .unwrap(),
            "alipay.trade.fastpay.refund.query",
            serde_json::json!({ "out_trade_no": ORDER_ID, "out_request_no": REFUND_ID }),
        ),
    ];
    for (request, method, expected_biz) in cases {
        let params = verify_request(&request);
        assert_eq!(params["method"], method);
        assert!(!params.contains_key("notify_url"), "{method}");
        assert_eq!(biz(&params), expected_biz, "{method}");
    }
}

#[test]
fn barcode_request_needs_an_auth_code() {
    let adapter = adapter();
    let mut order = order(PaymentMethod::Barcode);
    assert!(matches!(
        adapter.plan_create(&order, &context()),
        Err(AdapterError::Invalid(_))
    ));
    order.method_params.auth_code = Some("  ".to_owned());
    assert!(matches!(
        adapter.plan_create(&order, &context()),
        Err(AdapterError::Invalid(_))
    ));
    order.method_params.auth_code = Some("289756915257123456".to_owned());
    let CreatePlan::Call(request) = adapter.plan_create(&order, &context()).unwrap() else {
        panic!("pay is a call")
    };
    let params = verify_request(&request);
    assert_eq!(params["method"], "alipay.trade.pay");
    assert_eq!(params["notify_url"], NOTIFY_URL);
    let biz = biz(&params);
    assert_eq!(biz["scene"], "bar_code");
    assert_eq!(biz["auth_code"], "289756915257123456");
    assert_eq!(biz["total_amount"], "88.88");
}

#[test]
fn page_and_wap_are_signed_gateway_urls() {
    let adapter = adapter();
    for (method, api, product_code) in [
        (
            PaymentMethod::Page,
            "alipay.trade.page.pay",
            "FAST_INSTANT_TRADE_PAY",
        ),
        (PaymentMethod::Wap, "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    ] {
        let mut order = order(method);
        order.method_params.return_url = Some("https://shop.example/return?x=1&y=2".to_owned());
        let CreatePlan::Local(created) = adapter.plan_create(&order, &context()).unwrap() else {
            panic!("{api} is built locally")
        };
        assert_eq!(created.status, PaymentStatus::Pending);
        assert_eq!(created.buyer_action["type"], "redirect");
        let url = created.buyer_action["url"].as_str().unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, GATEWAY);
        let params = verify_like_the_gateway(query, b"");
        assert_eq!(params["method"], api);
        assert_eq!(params["return_url"], "https://shop.example/return?x=1&y=2");
        assert_eq!(params["notify_url"], NOTIFY_URL);
        assert_eq!(biz(&params)["product_code"], product_code);
    }
}

#[test]
fn app_pay_is_a_signed_order_string() {
    let CreatePlan::Local(created) = adapter()
        .plan_create(&order(PaymentMethod::App), &context())
        .unwrap()
    else {
        panic!("app pay is built locally")
    };
    assert_eq!(created.buyer_action["type"], "app");
    let order_string = created.buyer_action["order_string"].as_str().unwrap();
    assert!(order_string.contains("&sign="));
    let params = verify_like_the_gateway(order_string, b"");
    assert_eq!(params["method"], "alipay.trade.app.pay");
    assert!(!params.contains_key("return_url"));
    assert_eq!(biz(&params)["product_code"], "QUICK_MSECURITY_PAY");
}

#[test]
fn unsupported_methods_and_currencies_are_invalid() {
    let adapter = adapter();
    assert!(!adapter.supports(PaymentMethod::Jsapi));
    assert!(adapter.supports(PaymentMethod::Barcode));
    assert!(matches!(
        adapter.plan_create(&order(PaymentMethod::Jsapi), &context()),
        Err(AdapterError::Invalid(_))
    ));
    let mut usd = order(PaymentMethod::Qr);
    usd.amount = Money::from_minor(100, Currency::Usd);
    assert!(matches!(
        adapter.plan_create(&usd, &context()),
        Err(AdapterError::Invalid(_))
    ));
}

#[test]
fn construction_validates_and_debug_redacts() {
    let mut bad = config();
    bad.gateway_url = "/gateway.do".to_owned();
    assert!(matches!(
        AlipayAdapter::new(bad),
        Err(AdapterError::Invalid(_))
    ));
    let mut bad = config();
    bad.app_private_key_pem = "junk".to_owned();
    assert!(matches!(
        AlipayAdapter::new(bad),
        Err(AdapterError::Invalid(_))
    ));
    let mut bad = config();
    bad.app_id = String::new();
    assert!(matches!(
        AlipayAdapter::new(bad),
        Err(AdapterError::Invalid(_))
    ));
    let secret_line = APP_PRIVATE_PKCS8.lines().nth(1).unwrap();
    assert!(!format!("{:?}", adapter()).contains(secret_line));
    assert!(!format!("{:?}", config()).contains(secret_line));
    assert_eq!(adapter().channel(), Channel::Alipay);
}

// ---------------------------------------------------------------- responses

#[test]
fn golden_precreate_response_parses() {
    let vector = vector_json(vector!("response_precreate.json"));
    let response = http_response(200, vector["body"].as_str().unwrap().to_owned());
    let created = adapter()
        .parse_create(&order(PaymentMethod::Qr), response)
        .unwrap();
    assert_eq!(created.status, PaymentStatus::Pending);
    assert_eq!(
        created.buyer_action,
        serde_json::json!({ "type": "qr_code", "qr_code": "https://qr.alipay.com/bax03431ljhokirwl38f00a7" })
    );
}

#[test]
fn golden_refund_error_is_rejected() {
    let vector = vector_json(vector!("response_refund_error.json"));
    let response = http_response(200, vector["body"].as_str().unwrap().to_owned());
    let error = adapter()
        .parse_refund(&order(PaymentMethod::Qr), &refund(1000), response)
        .unwrap_err();
    assert_eq!(
        error,
        AdapterError::Rejected {
            code: "ACQ.REASON_TRADE_REFUND_FEE_ERR".to_owned(),
            message: "退款金额无效".to_owned()
        }
    );
}

const PRECREATE: &str = "alipay_trade_precreate_response";

#[test]
fn unsigned_tampered_and_foreign_signed_responses_fail_closed() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);
    let node = r#"{"code":"10000","msg":"Success","out_trade_no":"ord_vector0000000000000001","qr_code":"https://qr.alipay.com/x"}"#;
    let unsigned = http_response(200, format!(r#"{{"{PRECREATE}":{node}}}"#));
    let tampered_node = node.replace("qr.alipay.com/x", "evil.example/x");
    let tampered = http_response(
        200,
        format!(
            r#"{{"{PRECREATE}":{tampered_node},"sign":"{}"}}"#,
            rsa_sign(ALIPAY_PRIVATE, node)
        ),
    );
    let foreign = http_response(
        200,
        format!(
            r#"{{"{PRECREATE}":{node},"sign":"{}"}}"#,
            rsa_sign(APP_PRIVATE_PKCS8, node)
        ),
    );
    let not_base64 = http_response(200, format!(r#"{{"{PRECREATE}":{node},"sign":"%%%"}}"#));
    let unsigned_error = http_response(
        200,
        r#"{"alipay_trade_query_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id"}}"#
            .to_owned(),
    );
    for response in [unsigned, tampered, foreign, not_base64] {
        assert!(matches!(
            adapter.parse_create(&order, response),
            Err(AdapterError::Signature(_))
        ));
    }
    assert!(matches!(
        adapter.parse_query(&order, unsigned_error),
        Err(AdapterError::Signature(_))
    ));
}

#[test]
fn node_extraction_respects_strings_and_escapes() {
    // `\/` escapes, braces and a fake "sign" inside string values, whitespace between members,
    // and a later member that is not the node: the signed text is exactly the node's.
    let node = r#"{"code":"10000","msg":"Su}cc{ess \"sign\":\"x\"","out_trade_no":"ord_vector0000000000000001","qr_code":"https:\/\/qr.alipay.com\/b{a}x"}"#;
    let body = format!(
        "{{ \"{PRECREATE}\" : {node} ,\n \"alipay_cert_sn\":\"abc\", \"sign\" : \"{}\" }}",
        rsa_sign(ALIPAY_PRIVATE, node)
    );
    let created = adapter()
        .parse_create(&order(PaymentMethod::Qr), http_response(200, body))
        .unwrap();
    assert_eq!(
        created.buyer_action["qr_code"],
        "https://qr.alipay.com/b{a}x"
    );
}

#[test]
fn error_response_node_is_verified_and_rejected() {
    let response = signed_response(
        "error_response",
        r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"验签出错"}"#,
    );
    assert_eq!(
        adapter().parse_query(&order(PaymentMethod::Qr), response),
        Err(AdapterError::Rejected {
            code: "isv.invalid-signature".to_owned(),
            message: "验签出错".to_owned()
        })
    );
}

#[test]
fn transport_level_trouble_is_unknown_or_protocol() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);
    let cases = [
        (http_response(502, "bad gateway".to_owned()), "unknown"),
        (
            http_response(200, "<html>busy</html>".to_owned()),
            "unknown",
        ),
        (
            http_response(200, r#"{"alipay_trade_query_resp"#.to_owned()),
            "unknown",
        ),
        (http_response(404, "{}".to_owned()), "protocol"),
        (
            http_response(200, r#"{"other_response":{},"sign":"x"}"#.to_owned()),
            "protocol",
        ),
        (
            signed_response(
                "alipay_trade_query_response",
                r#"{"code":"10000","trade_status":"TRADE_SUCCESS"}"#,
            ),
            "protocol",
        ),
        (
            signed_response(
                "alipay_trade_query_response",
                r#"{"code":"10000","trade_status":"WAIT_BUYER_PAY","out_trade_no":"ord_someoneelse"}"#,
            ),
            "protocol",
        ),
    ];
    for (response, expected) in cases {
        let result = adapter.parse_query(&order, response);
        let kind = match &result {
            Err(AdapterError::Unknown(_)) => "unknown",
            Err(AdapterError::Protocol(_)) => "protocol",
            _ => "other",
        };
        assert_eq!(kind, expected, "{result:?}");
    }
}

#[test]
fn barcode_pay_mapping() {
    let adapter = adapter();
    let order = order(PaymentMethod::Barcode);
    let node = "alipay_trade_pay_response";
    let paid = signed_response(
        node,
        r#"{"code":"10000","msg":"Success","trade_no":"2026112522001400001000000001","out_trade_no":"ord_vector0000000000000001","total_amount":"88.88","gmt_payment":"2026-11-25 17:59:47"}"#,
    );
    let created = adapter.parse_create(&order, paid).unwrap();
    assert_eq!(
        created.status,
        PaymentStatus::Paid {
            channel_trade_no: "2026112522001400001000000001".to_owned(),
            amount: Money::from_minor(8888, Currency::Cny),
            paid_at_ms: Some(NOW_MS + 10_000),
        }
    );
    assert_eq!(created.buyer_action["type"], "barcode");

    let waiting = signed_response(
        node,
        r#"{"code":"10003","msg":" order success pay inprocess","trade_no":"2026112522001400001000000001","out_trade_no":"ord_vector0000000000000001","total_amount":"88.88","receipt_amount":"0.00"}"#,
    );
    assert_eq!(
        adapter.parse_create(&order, waiting).unwrap().status,
        PaymentStatus::Pending
    );

    let failed = signed_response(
        node,
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.PAYMENT_FAIL","sub_msg":"支付失败"}"#,
    );
    assert_eq!(
        adapter.parse_create(&order, failed).unwrap().status,
        PaymentStatus::Failed {
            reason: "ACQ.PAYMENT_FAIL: 支付失败".to_owned()
        }
    );

    for unknown in [
        r#"{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error"}"#,
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR","sub_msg":"系统错误"}"#,
        r#"{"code":"40004","msg":"Business Failed","sub_code":"aop.ACQ.SYSTEM_ERROR"}"#,
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_HAS_SUCCESS"}"#,
    ] {
        assert!(
            matches!(
                adapter.parse_create(&order, signed_response(node, unknown)),
                Err(AdapterError::Unknown(_))
            ),
            "{unknown}"
        );
    }
    let refused = signed_response(
        node,
        r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"无效的AppID参数"}"#,
    );
    assert!(matches!(
        adapter.parse_create(&order, refused),
        Err(AdapterError::Rejected { .. })
    ));
}

#[test]
fn precreate_business_failures() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);
    let refused = signed_response(
        PRECREATE,
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TOTAL_FEE_EXCEED","sub_msg":"订单总金额超过限额"}"#,
    );
    assert_eq!(
        adapter.parse_create(&order, refused),
        Err(AdapterError::Rejected {
            code: "ACQ.TOTAL_FEE_EXCEED".to_owned(),
            message: "订单总金额超过限额".to_owned()
        })
    );
    let no_qr = signed_response(PRECREATE, r#"{"code":"10000","msg":"Success"}"#);
    assert!(matches!(
        adapter.parse_create(&order, no_qr),
        Err(AdapterError::Protocol(_))
    ));
}

fn check_query(node_text: &str, expected: Result<PaymentStatus, &str>) {
    let result = adapter().parse_query(
        &order(PaymentMethod::Qr),
        signed_response("alipay_trade_query_response", node_text),
    );
    match (result, expected) {
        (Ok(status), Ok(expected)) => assert_eq!(status, expected, "{node_text}"),
        (Err(error), Err(kind)) => assert!(format!("{error:?}").starts_with(kind), "{error:?}"),
        (other, expected) => panic!("{node_text}: {other:?}, expected {expected:?}"),
    }
}

#[test]
fn query_mapping() {
    let paid = PaymentStatus::Paid {
        channel_trade_no: "2026112522001400001000000001".to_owned(),
        amount: Money::from_minor(8888, Currency::Cny),
        paid_at_ms: Some(NOW_MS + 10_000),
    };
    let success = |status: &str| {
        format!(
            r#"{{"code":"10000","msg":"Success","trade_no":"2026112522001400001000000001","out_trade_no":"ord_vector0000000000000001","trade_status":"{status}","total_amount":"88.88","send_pay_date":"2026-11-25 17:59:47"}}"#
        )
    };
    check_query(&success("TRADE_SUCCESS"), Ok(paid.clone()));
    check_query(&success("TRADE_FINISHED"), Ok(paid));
    check_query(&success("WAIT_BUYER_PAY"), Ok(PaymentStatus::Pending));
    check_query(&success("TRADE_CLOSED"), Ok(PaymentStatus::Closed));
    check_query(&success("TRADE_WHATEVER"), Err("Protocol"));
    check_query(
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在"}"#,
        Ok(PaymentStatus::NotFound),
    );
    check_query(
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR"}"#,
        Err("Unknown"),
    );
    check_query(
        r#"{"code":"20000","msg":"Service Currently Unavailable"}"#,
        Err("Unknown"),
    );
    check_query(
        r#"{"code":"40004","msg":"Business Failed","sub_code":"ACQ.INVALID_PARAMETER"}"#,
        Err("Rejected"),
    );
    // A paid trade with an unreadable amount is not booked.
    check_query(
        &success("TRADE_SUCCESS").replace("88.88", "88.888"),
        Err("Protocol"),
    );
}

#[test]
fn close_and_cancel_mapping() {
    let adapter = adapter();
    let cases: [(PaymentMethod, &str, Result<PaymentStatus, &str>); 12] = [
        (
            PaymentMethod::Qr,
            r#"{"code":"10000","msg":"Success","out_trade_no":"ord_vector0000000000000001"}"#,
            Ok(PaymentStatus::Closed),
        ),
        (
            PaymentMethod::Qr,
            r#"{"code":"40004","sub_code":"ACQ.TRADE_NOT_EXIST"}"#,
            Ok(PaymentStatus::NotFound),
        ),
        (
            PaymentMethod::Qr,
            r#"{"code":"40004","sub_code":"ACQ.TRADE_HAS_SUCCESS"}"#,
            Ok(PaymentStatus::Pending),
        ),
        (
            PaymentMethod::Qr,
            r#"{"code":"40004","sub_code":"ACQ.TRADE_HAS_FINISHED"}"#,
            Ok(PaymentStatus::Pending),
        ),
        (
            PaymentMethod::Qr,
            r#"{"code":"40004","sub_code":"ACQ.TRADE_STATUS_ERROR"}"#,
            Ok(PaymentStatus::Pending),
        ),
        (
            PaymentMethod::Qr,
            r#"{"code":"40004","sub_code":"ACQ.TRADE_HAS_CLOSE"}"#,
            Ok(PaymentStatus::Closed),
        ),
        (
            PaymentMethod::Qr,
            r#"{"code":"40004","sub_code":"ACQ.SYSTEM_ERROR"}"#,
            Err("Unknown"),
        ),
        (
            PaymentMethod::Qr,
            r#"{"code":"40004","sub_code":"ACQ.INVALID_PARAMETER"}"#,
            Err("Rejected"),
        ),
        (
            PaymentMethod::Barcode,
            r#"{"code":"10000","msg":"Success","retry_flag":"N","action":"close"}"#,
            Ok(PaymentStatus::Closed),
        ),
        (
            PaymentMethod::Barcode,
            r#"{"code":"10000","msg":"Success","retry_flag":"N","action":"refund"}"#,
            Ok(PaymentStatus::Closed),
        ),
        (
            PaymentMethod::Barcode,
            r#"{"code":"10000","msg":"Success","retry_flag":"Y"}"#,
            Err("Unknown"),
        ),
        (
            PaymentMethod::Barcode,
            r#"{"code":"40004","sub_code":"ACQ.TRADE_CANCEL_TIME_OUT","retry_flag":"N"}"#,
            Ok(PaymentStatus::Pending),
        ),
    ];
    for (method, node_text, expected) in cases {
        let node = match method {
            PaymentMethod::Barcode => "alipay_trade_cancel_response",
            _ => "alipay_trade_close_response",
        };
        let result = adapter.parse_close(&order(method), signed_response(node, node_text));
        match (result, expected) {
            (Ok(status), Ok(expected)) => assert_eq!(status, expected, "{node_text}"),
            (Err(error), Err(kind)) => assert!(format!("{error:?}").starts_with(kind), "{error:?}"),
            (other, expected) => panic!("{node_text}: {other:?}, expected {expected:?}"),
        }
    }
    // The close node does not answer a cancel (barcode orders are cancelled).
    assert!(matches!(
        adapter.parse_close(
            &order(PaymentMethod::Barcode),
            signed_response("alipay_trade_close_response", r#"{"code":"10000"}"#)
        ),
        Err(AdapterError::Protocol(_))
    ));
}

#[test]
fn refund_mapping() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);
    let refund = refund(1000);
    let node = "alipay_trade_refund_response";
    let parse = |text: &str| adapter.parse_refund(&order, &refund, signed_response(node, text));
    assert_eq!(
        parse(
            r#"{"code":"10000","msg":"Success","trade_no":"2026112522001400001000000001","out_trade_no":"ord_vector0000000000000001","fund_change":"Y","refund_fee":"10.00"}"#
        ),
        Ok(RefundStatus::Succeeded {
            channel_refund_no: Some("2026112522001400001000000001".to_owned())
        })
    );
    assert_eq!(
        parse(r#"{"code":"10000","msg":"Success","fund_change":"N","refund_fee":"10.00"}"#),
        Ok(RefundStatus::Pending)
    );
    for refused in [
        "ACQ.TRADE_STATUS_ERROR",
        "ACQ.TRADE_HAS_CLOSE",
        "ACQ.SELLER_BALANCE_NOT_ENOUGH",
    ] {
        assert!(matches!(
            parse(&format!(r#"{{"code":"40004","sub_code":"{refused}"}}"#)),
            Err(AdapterError::Rejected { code, .. }) if code == refused
        ));
    }
    for unknown in [
        r#"{"code":"40004","sub_code":"ACQ.SYSTEM_ERROR"}"#,
        r#"{"code":"40004","sub_code":"ACQ.DISCORDANT_REPEAT_REQUEST"}"#,
        r#"{"code":"20000","msg":"Service Currently Unavailable"}"#,
    ] {
        assert!(
            matches!(parse(unknown), Err(AdapterError::Unknown(_))),
            "{unknown}"
        );
    }
}

#[test]
fn refund_query_mapping() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);
    let refund = refund(1000);
    let node = "alipay_trade_fastpay_refund_query_response";
    let parse =
        |text: &str| adapter.parse_refund_query(&order, &refund, signed_response(node, text));
    assert_eq!(
        parse(
            r#"{"code":"10000","msg":"Success","trade_no":"2026112522001400001000000001","out_trade_no":"ord_vector0000000000000001","out_request_no":"rfd_vector0000000000000001","refund_amount":"10.00","total_amount":"88.88","refund_status":"REFUND_SUCCESS"}"#
        ),
        Ok(RefundStatus::Succeeded {
            channel_refund_no: Some("2026112522001400001000000001".to_owned())
        })
    );
    assert_eq!(
        parse(
            r#"{"code":"10000","msg":"Success","out_trade_no":"ord_vector0000000000000001","out_request_no":"rfd_vector0000000000000001"}"#
        ),
        // No refund data: never executed at Alipay; the service sends it again.
        Err(AdapterError::Rejected {
            code: "REFUND_NOT_FOUND".to_owned(),
            message: format!(
                "alipay.trade.fastpay.refund.query knows no refund {}: it was never executed",
                refund.id
            ),
        })
    );
    assert!(matches!(
        parse(
            r#"{"code":"10000","msg":"Success","out_request_no":"rfd_vector0000000000000001","refund_amount":"20.00","refund_status":"REFUND_SUCCESS"}"#
        ),
        Ok(RefundStatus::Abnormal { .. })
    ));
    assert!(matches!(
        parse(
            r#"{"code":"10000","msg":"Success","out_request_no":"rfd_other","refund_status":"REFUND_SUCCESS"}"#
        ),
        Err(AdapterError::Protocol(_))
    ));
    assert!(matches!(
        parse(r#"{"code":"40004","sub_code":"ACQ.SYSTEM_ERROR"}"#),
        Err(AdapterError::Unknown(_))
    ));
}

// ---------------------------------------------------------------- notifications

fn notify_request(body: String) -> HttpRequest {
    http::Request::builder()
        .method(Method::POST)
        .uri("/notify/alipay")
        .header(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded;charset=utf-8",
        )
        .body(Bytes::from(body))
        .unwrap()
}

/// A notification form signed by `private_pem`, over the params without `sign` and, unless
/// `sign_type_signed`, without `sign_type`.
fn notification(params: &[(&str, &str)], private_pem: &str, sign_type_signed: bool) -> HttpRequest {
    let excluded: &[&str] = if sign_type_signed {
        &["sign"]
    } else {
        &["sign", "sign_type"]
    };
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .copied()
        .filter(|(key, value)| !excluded.contains(key) && !value.is_empty())
        .collect();
    sorted.sort_unstable();
    let content_text = sorted
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature = rsa_sign(private_pem, &content_text);
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        form.append_pair(key, value);
    }
    form.append_pair("sign", &signature);
    notify_request(form.finish())
}

fn trade_success() -> Vec<(&'static str, &'static str)> {
    vec![
        ("notify_time", "2026-11-25 17:59:48"),
        ("notify_type", "trade_status_sync"),
        ("notify_id", "2026112500222175947012345678901234"),
        ("app_id", APP_ID),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("trade_no", "2026112522001400001000000001"),
        ("out_trade_no", ORDER_ID),
        ("seller_id", "2088102119685838"),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "88.88"),
        ("subject", "demo 中文 & = +"),
        ("gmt_create", "2026-11-25 17:59:40"),
        ("gmt_payment", "2026-11-25 17:59:47"),
        (
            "fund_bill_list",
            r#"[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]"#,
        ),
    ]
}

fn paid_notification() -> Notification {
    Notification::Payment {
        order_id: OrderId::parse(ORDER_ID).unwrap(),
        status: PaymentStatus::Paid {
            channel_trade_no: "2026112522001400001000000001".to_owned(),
            amount: Money::from_minor(8888, Currency::Cny),
            paid_at_ms: Some(NOW_MS + 10_000),
        },
    }
}

#[test]
fn golden_notification_verifies_and_maps() {
    let vector = vector_json(vector!("notify_trade_success.json"));
    let request = notify_request(vector["form_body"].as_str().unwrap().to_owned());
    assert_eq!(
        adapter().verify_notification(&request, NOW_MS),
        Ok(paid_notification())
    );
}

#[test]
fn notifications_verify_without_sign_type_and_map() {
    let adapter = adapter();
    let params = trade_success();
    assert_eq!(
        adapter.verify_notification(&notification(&params, ALIPAY_PRIVATE, false), NOW_MS),
        Ok(paid_notification())
    );
    // sign_type is not signed, so leaving it out changes nothing.
    let without_sign_type: Vec<_> = params
        .iter()
        .copied()
        .filter(|(key, _)| *key != "sign_type")
        .collect();
    assert_eq!(
        adapter.verify_notification(
            &notification(&without_sign_type, ALIPAY_PRIVATE, false),
            NOW_MS
        ),
        Ok(paid_notification())
    );
    // Empty values are not signed either.
    let mut with_empty = params.clone();
    with_empty.push(("passback_params", ""));
    assert_eq!(
        adapter.verify_notification(&notification(&with_empty, ALIPAY_PRIVATE, false), NOW_MS),
        Ok(paid_notification())
    );

    let with_status = |status: &'static str| {
        let mut params = trade_success();
        for pair in params.iter_mut() {
            if pair.0 == "trade_status" {
                pair.1 = status;
            }
        }
        adapter.verify_notification(&notification(&params, ALIPAY_PRIVATE, false), NOW_MS)
    };
    let order_id = OrderId::parse(ORDER_ID).unwrap();
    assert_eq!(
        with_status("TRADE_CLOSED"),
        Ok(Notification::Payment {
            order_id: order_id.clone(),
            status: PaymentStatus::Closed
        })
    );
    assert_eq!(
        with_status("WAIT_BUYER_PAY"),
        Ok(Notification::Payment {
            order_id,
            status: PaymentStatus::Pending
        })
    );
    assert!(matches!(
        with_status("TRADE_FINISHED"),
        Ok(Notification::Payment {
            status: PaymentStatus::Paid { .. },
            ..
        })
    ));
    assert!(matches!(
        with_status("NOPE"),
        Err(AdapterError::Protocol(_))
    ));
}

#[test]
fn refund_notification_maps_to_the_refund() {
    let mut params = trade_success();
    params.extend([
        ("out_biz_no", REFUND_ID),
        ("refund_fee", "10.00"),
        ("gmt_refund", "2026-11-25 18:10:00.320"),
    ]);
    assert_eq!(
        adapter().verify_notification(&notification(&params, ALIPAY_PRIVATE, false), NOW_MS),
        Ok(Notification::Refund {
            refund_id: RefundId::parse(REFUND_ID).unwrap(),
            status: RefundStatus::Succeeded {
                channel_refund_no: Some("2026112522001400001000000001".to_owned())
            },
            reported_amount: None,
        })
    );
}

#[test]
fn bad_notifications_are_rejected() {
    let adapter = adapter();
    let reject = |request: HttpRequest| adapter.verify_notification(&request, NOW_MS);
    let signature_error = |result: Result<Notification, AdapterError>| {
        assert!(
            matches!(result, Err(AdapterError::Signature(_))),
            "{result:?}"
        )
    };
    // Forged: signed with a key that is not Alipay's.
    signature_error(reject(notification(
        &trade_success(),
        APP_PRIVATE_PKCS8,
        false,
    )));
    // Signed over sign_type too: not the documented notification rule (rsaCheckV1).
    signature_error(reject(notification(&trade_success(), ALIPAY_PRIVATE, true)));
    // Properly signed, but for another app.
    let mut other_app = trade_success();
    other_app[3] = ("app_id", "2021000000000002");
    signature_error(reject(notification(&other_app, ALIPAY_PRIVATE, false)));
    // Tampered amount after signing.
    let vector = vector_json(vector!("notify_trade_success.json"));
    let form = vector["form_body"].as_str().unwrap();
    assert!(form.contains("total_amount=88.88"));
    signature_error(reject(notify_request(
        form.replace("total_amount=88.88", "total_amount=0.01"),
    )));
    // Unsigned, RSA (SHA-1) sign_type, duplicated parameter, empty body.
    signature_error(reject(notify_request(
        form.split("&sign=").next().unwrap().to_owned(),
    )));
    signature_error(reject(notify_request(
        form.replace("sign_type=RSA2", "sign_type=RSA"),
    )));
    assert!(matches!(
        reject(notify_request(format!("{form}&trade_status=TRADE_CLOSED"))),
        Err(AdapterError::Protocol(_))
    ));
    assert!(matches!(
        reject(notify_request(String::new())),
        Err(AdapterError::Protocol(_))
    ));
}

#[test]
fn seller_id_is_checked_when_configured() {
    let mut config = config();
    config.seller_id = Some("2088102119685838".to_owned());
    let ours = AlipayAdapter::new(config.clone()).unwrap();
    let CreatePlan::Call(precreate) = ours
        .plan_create(&order(PaymentMethod::Qr), &context())
        .unwrap()
    else {
        panic!("precreate is a call")
    };
    assert_eq!(
        biz(&verify_request(&precreate))["seller_id"],
        "2088102119685838"
    );
    let request = notification(&trade_success(), ALIPAY_PRIVATE, false);
    assert_eq!(
        ours.verify_notification(&request, NOW_MS),
        Ok(paid_notification())
    );
    config.seller_id = Some("2088000000000000".to_owned());
    let theirs = AlipayAdapter::new(config).unwrap();
    assert!(matches!(
        theirs.verify_notification(&request, NOW_MS),
        Err(AdapterError::Signature(_))
    ));
}

#[test]
fn acknowledgements_are_alipay_dialect() {
    let adapter = adapter();
    let accepted = adapter.acknowledge(true);
    assert_eq!(accepted.status(), 200);
    assert_eq!(accepted.body().as_ref(), b"success");
    assert!(accepted.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let refused = adapter.acknowledge(false);
    assert_eq!(refused.status(), 200);
    assert_eq!(refused.body().as_ref(), b"failure");
}

// ---------------------------------------------------------------- certificate mode

const APP_CERT: &str = vector!("certs/app_cert_public_key_2021000000000001.crt");
const ALIPAY_CERT: &str = vector!("certs/alipay_cert_public_key_rsa2.crt");
const ROOT_BUNDLE: &str = vector!("certs/alipay_root_cert.crt");

fn cert_sns() -> serde_json::Value {
    vector_json(vector!("cert_sns.json"))
}

fn sn(key: &str) -> String {
    cert_sns()[key].as_str().unwrap().to_owned()
}

fn cert_config() -> AlipayConfig {
    AlipayConfig {
        alipay_public_key_pem: String::new(),
        certificates: Some(AlipayCertificates {
            app_cert_pem: APP_CERT.to_owned(),
            alipay_cert_pem: ALIPAY_CERT.to_owned(),
            alipay_root_cert_pem: ROOT_BUNDLE.to_owned(),
        }),
        ..config()
    }
}

fn cert_adapter() -> AlipayAdapter {
    AlipayAdapter::new(cert_config()).unwrap()
}

#[test]
fn cert_mode_sns_equal_the_openssl_vectors() {
    let adapter = cert_adapter();
    let mode = adapter.certificates.as_ref().unwrap();
    assert_eq!(mode.app_cert_sn, sn("app_cert_sn"));
    assert_eq!(mode.alipay_cert_sn, sn("alipay_cert_sn"));
    assert_eq!(mode.alipay_root_cert_sn, sn("alipay_root_cert_sn"));
    assert!(adapter_with_public_key().certificates.is_none());
}

#[test]
fn cert_mode_query_reproduces_the_openssl_vector() {
    let vector = vector_json(vector!("request_query_cert_mode.json"));
    let request = cert_adapter()
        .build_query(&order(PaymentMethod::Qr), &context())
        .unwrap();
    let params = verify_request(&request);
    let expected: BTreeMap<String, String> = vector["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_owned()))
        .filter(|(_, value)| !value.is_empty())
        .chain([(
            "sign".to_owned(),
            vector["sign"].as_str().unwrap().to_owned(),
        )])
        .collect();
    assert_eq!(params, expected);
    let content = sign_content(
        params
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
        &["sign"],
    );
    assert_eq!(content, vector["sign_content"].as_str().unwrap());
}

#[test]
fn cert_mode_sns_ride_on_every_request_shape() {
    let adapter = cert_adapter();
    let check = |params: &BTreeMap<String, String>| {
        assert_eq!(params["app_cert_sn"], sn("app_cert_sn"));
        assert_eq!(params["alipay_root_cert_sn"], sn("alipay_root_cert_sn"));
    };
    // Server-to-server calls.
    let qr = order(PaymentMethod::Qr);
    let CreatePlan::Call(request) = adapter.plan_create(&qr, &context()).unwrap() else {
        panic!("precreate is a call")
    };
    check(&verify_request(&request));
    check(&verify_request(
        &adapter
            .build_refund(&qr, &refund(1000), &context())
            .unwrap(),
    ));
    check(&verify_request(
        &adapter.build_close(&qr, &context()).unwrap(),
    ));
    // Page and wap URLs: the SNs are in the signed query string.
    for method in [PaymentMethod::Page, PaymentMethod::Wap] {
        let CreatePlan::Local(created) = adapter.plan_create(&order(method), &context()).unwrap()
        else {
            panic!("built locally")
        };
        let url = created.buyer_action["url"].as_str().unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, GATEWAY);
        check(&verify_like_the_gateway(query, b""));
    }
    // The app order string.
    let CreatePlan::Local(created) = adapter
        .plan_create(&order(PaymentMethod::App), &context())
        .unwrap()
    else {
        panic!("built locally")
    };
    check(&verify_like_the_gateway(
        created.buyer_action["order_string"].as_str().unwrap(),
        b"",
    ));
}

fn precreate_node() -> &'static str {
    r#"{"code":"10000","msg":"Success","out_trade_no":"ord_vector0000000000000001","qr_code":"https:\/\/qr.alipay.com\/x"}"#
}

fn cert_response(
    node_text: &str,
    signer: &str,
    cert_sn: Option<&str>,
    sn_first: bool,
) -> HttpResponse {
    let sign = format!(r#""sign":"{}""#, rsa_sign(signer, node_text));
    let members = match (cert_sn, sn_first) {
        (None, _) => sign,
        (Some(cert_sn), true) => format!(r#""alipay_cert_sn":"{cert_sn}",{sign}"#),
        (Some(cert_sn), false) => format!(r#"{sign},"alipay_cert_sn":"{cert_sn}""#),
    };
    http_response(200, format!(r#"{{"{PRECREATE}":{node_text},{members}}}"#))
}

#[test]
fn cert_mode_responses_verify_with_the_certificate_key_and_sn() {
    let adapter = cert_adapter();
    let order = order(PaymentMethod::Qr);
    let ours = sn("alipay_cert_sn");
    // The recommended order (after sign), the real gateway's (before sign), and none.
    for (cert_sn, sn_first) in [
        (Some(ours.as_str()), false),
        (Some(ours.as_str()), true),
        (None, false),
    ] {
        let created = adapter
            .parse_create(
                &order,
                cert_response(precreate_node(), ALIPAY_PRIVATE, cert_sn, sn_first),
            )
            .unwrap();
        assert_eq!(created.buyer_action["qr_code"], "https://qr.alipay.com/x");
    }
    // The real gateway's error shape: `error_response`, then the SN, then `sign`.
    let node = r#"{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid","sub_msg":"授权码code无效"}"#;
    let body = format!(
        r#"{{"error_response":{node},"alipay_cert_sn":"{ours}","sign":"{}"}}"#,
        rsa_sign(ALIPAY_PRIVATE, node)
    );
    assert_eq!(
        adapter.parse_query(&order, http_response(200, body)),
        Err(AdapterError::Rejected {
            code: "isv.code-invalid".to_owned(),
            message: "授权码code无效".to_owned()
        })
    );
}

#[test]
fn cert_mode_refuses_another_certificate_sn_and_foreign_signatures() {
    let adapter = cert_adapter();
    let order = order(PaymentMethod::Qr);
    let ours = sn("alipay_cert_sn");
    let rotated = "0123456789abcdef0123456789abcdef";
    for sn_first in [false, true] {
        let error = adapter
            .parse_create(
                &order,
                cert_response(precreate_node(), ALIPAY_PRIVATE, Some(rotated), sn_first),
            )
            .unwrap_err();
        assert!(
            matches!(&error, AdapterError::Signature(why) if why.contains(rotated)),
            "{error:?}"
        );
    }
    // The right SN does not make a signature by another key good.
    assert!(matches!(
        adapter.parse_create(
            &order,
            cert_response(precreate_node(), APP_PRIVATE_PKCS8, Some(&ours), false)
        ),
        Err(AdapterError::Signature(_))
    ));
    // A non-string or repeated SN is refused.
    let sign = rsa_sign(ALIPAY_PRIVATE, precreate_node());
    for members in [
        format!(r#""alipay_cert_sn":123,"sign":"{sign}""#),
        format!(r#""alipay_cert_sn":"{ours}","sign":"{sign}","alipay_cert_sn":"{rotated}""#),
    ] {
        let body = format!(r#"{{"{PRECREATE}":{},{members}}}"#, precreate_node());
        assert!(matches!(
            adapter.parse_create(&order, http_response(200, body)),
            Err(AdapterError::Signature(_))
        ));
    }
    // Public-key mode has no SN to compare and ignores the member.
    let created = adapter_with_public_key()
        .parse_create(
            &order,
            cert_response(precreate_node(), ALIPAY_PRIVATE, Some(rotated), true),
        )
        .unwrap();
    assert_eq!(created.status, PaymentStatus::Pending);
}

fn adapter_with_public_key() -> AlipayAdapter {
    adapter()
}

#[test]
fn cert_mode_notifications_verify_with_the_certificate_key() {
    let adapter = cert_adapter();
    let vector = vector_json(vector!("notify_trade_success.json"));
    let request = notify_request(vector["form_body"].as_str().unwrap().to_owned());
    assert_eq!(
        adapter.verify_notification(&request, NOW_MS),
        Ok(paid_notification())
    );
    assert!(matches!(
        adapter.verify_notification(
            &notification(&trade_success(), APP_PRIVATE_PKCS8, false),
            NOW_MS
        ),
        Err(AdapterError::Signature(_))
    ));
}

#[test]
fn cert_mode_the_certificate_wins_over_a_configured_public_key() {
    // A wrong public key next to the certificates: the Alipay certificate's key is used.
    let adapter = AlipayAdapter::new(AlipayConfig {
        alipay_public_key_pem: APP_PUBLIC.to_owned(),
        ..cert_config()
    })
    .unwrap();
    adapter
        .parse_create(
            &order(PaymentMethod::Qr),
            cert_response(precreate_node(), ALIPAY_PRIVATE, None, false),
        )
        .unwrap();
    // And junk there is not even read.
    AlipayAdapter::new(AlipayConfig {
        alipay_public_key_pem: "junk".to_owned(),
        ..cert_config()
    })
    .unwrap();
}

#[test]
fn cert_mode_construction_refuses_mismatches_and_junk() {
    let invalid = |config: AlipayConfig| match AlipayAdapter::new(config) {
        Err(AdapterError::Invalid(why)) => why,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let with = |edit: &dyn Fn(&mut AlipayCertificates)| {
        let mut config = cert_config();
        edit(config.certificates.as_mut().unwrap());
        config
    };
    // The app certificate certifies app_public.pem; the Alipay private key is another key.
    let mismatched = AlipayConfig {
        app_private_key_pem: ALIPAY_PRIVATE.to_owned(),
        ..cert_config()
    };
    let why = invalid(mismatched);
    assert!(
        why.contains("app certificate does not match the app private key"),
        "{why}"
    );
    // The Alipay certificate given as the app certificate: also another key.
    let why = invalid(with(&|c| c.app_cert_pem = ALIPAY_CERT.to_owned()));
    assert!(why.contains("does not match"), "{why}");
    // The PKCS#1 form of the right key matches.
    AlipayAdapter::new(AlipayConfig {
        app_private_key_pem: APP_PRIVATE_PKCS1.to_owned(),
        ..cert_config()
    })
    .unwrap();
    // Certificates that do not parse, or are missing.
    let why = invalid(with(&|c| c.alipay_cert_pem = ALIPAY_PUBLIC.to_owned()));
    assert!(why.starts_with("alipay certificate:"), "{why}");
    let why = invalid(with(&|c| c.app_cert_pem = String::new()));
    assert!(why.starts_with("alipay app certificate:"), "{why}");
    let broken = ROOT_BUNDLE.replacen("MII", "MIX", 1);
    let why = invalid(with(&|c| c.alipay_root_cert_pem = broken.clone()));
    assert!(why.starts_with("alipay root certificate bundle"), "{why}");
    let why = invalid(with(&|c| c.alipay_root_cert_pem = String::new()));
    assert!(why.starts_with("alipay root certificate bundle"), "{why}");
    // Debug shows that certificates are configured, not their text.
    let debug = format!("{:?}", cert_config());
    assert!(debug.contains("<certificates>"), "{debug}");
    assert!(!debug.contains("BEGIN CERTIFICATE"), "{debug}");
}
