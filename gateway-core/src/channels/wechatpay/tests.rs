//! Tests of the WeChat Pay adapter against the committed keys (`scenarios/vectors/wechatpay/
//! keys/`), with an independent RSA implementation (the `rsa` crate) on the other side of
//! every signature and a notification encrypted by an independent AES-GCM implementation
//! (Python `cryptography`, i.e. OpenSSL) pinned below.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine as _;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::sha2::Sha256 as RsaSha256;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::Value;

use super::*;
use crate::ids::MerchantId;
use crate::model::{MethodParams, RefundKind};
use crate::money::Money;
use crate::state::{OrderState, RefundState};

macro_rules! key {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/vectors/wechatpay/keys/",
            $file
        ))
    };
}

const MERCHANT_PRIVATE: &str = key!("merchant_private_pkcs8.pem");
const MERCHANT_PUBLIC: &str = key!("merchant_public.pem");
const PLATFORM_PRIVATE: &str = key!("platform_private_pkcs8.pem");
const PLATFORM_PUBLIC: &str = key!("platform_public.pem");
const APIV3_KEY: &str = key!("apiv3_key.txt");

// The fixed identifiers of `keys/README.md`.
const MCHID: &str = "1900000001";
const MERCHANT_SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
const KEY_ID: &str = "PUB_KEY_ID_0119000000012025112500000000000001";
const APPID: &str = "wx8888888888888888";

const BASE_URL: &str = "http://127.0.0.1:8081";
const NOTIFY_URL: &str = "http://127.0.0.1:8080/notify/wechatpay";
/// 2026-11-25 17:59:37 Beijing time.
const NOW_MS: i64 = 1_795_600_777_000;
const NOW_S: i64 = NOW_MS / 1000;
const NONCE: &str = "n0n0n0n0n0n0n0n0n0n0n0n0n0n0n0n0";
const ORDER_ID: &str = "ord_vector0000000000000001";
const REFUND_ID: &str = "rfd_vector0000000000000001";

fn config() -> WechatpayConfig {
    WechatpayConfig {
        mchid: MCHID.to_owned(),
        appid: APPID.to_owned(),
        merchant_serial_no: MERCHANT_SERIAL.to_owned(),
        merchant_private_key_pem: MERCHANT_PRIVATE.to_owned(),
        apiv3_key: APIV3_KEY.to_owned(),
        platform_public_key_pem: PLATFORM_PUBLIC.to_owned(),
        platform_public_key_id: KEY_ID.to_owned(),
        base_url: format!("{BASE_URL}/"),
    }
}

/// An adapter that has seen `NOW_MS` (as it does once it built the request being answered).
fn adapter() -> WechatpayAdapter {
    let adapter = WechatpayAdapter::new(config()).unwrap();
    adapter.clock.observe(NOW_MS);
    adapter
}

fn context() -> AdapterContext {
    AdapterContext {
        now_ms: NOW_MS,
        nonce: NONCE.to_owned(),
        notify_url: NOTIFY_URL.to_owned(),
    }
}

fn order(method: PaymentMethod) -> Order {
    Order {
        id: OrderId::parse(ORDER_ID).unwrap(),
        merchant_id: MerchantId::parse("mch_sandbox").unwrap(),
        channel: Channel::Wechatpay,
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
        kind: RefundKind::Merchant,
        merchant_id: MerchantId::parse("mch_sandbox").unwrap(),
        channel: Channel::Wechatpay,
        amount: Money::from_minor(amount_minor, Currency::Cny),
        reason: Some("退货".to_owned()),
        state: RefundState::Pending,
        fee_refund_minor: 0,
        channel_refund_no: None,
        created_at_ms: NOW_MS,
        updated_at_ms: NOW_MS,
        version: 1,
    }
}

// ---------------------------------------------------------------- the other side's crypto

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn rsa_sign(private_pem: &str, message: &[u8]) -> String {
    let key = SigningKey::<RsaSha256>::new(RsaPrivateKey::from_pkcs8_pem(private_pem).unwrap());
    b64().encode(key.sign(message).to_vec())
}

fn rsa_verifies(public_pem: &str, message: &[u8], signature: &str) -> bool {
    let key =
        VerifyingKey::<RsaSha256>::new(RsaPublicKey::from_public_key_pem(public_pem).unwrap());
    let bytes = b64().decode(signature).unwrap();
    let signature = Signature::try_from(bytes.as_slice()).unwrap();
    key.verify(message, &signature).is_ok()
}

/// `k="v"` pairs of an `Authorization` header, parsed by name as WeChat Pay does.
fn authorization_pairs(header: &str) -> BTreeMap<String, String> {
    let pairs = header
        .strip_prefix("WECHATPAY2-SHA256-RSA2048 ")
        .expect("scheme");
    pairs
        .split(',')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            let value = value.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// What WeChat Pay does with a request: check the headers, rebuild the documented message
/// `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n` independently and verify it with the
/// merchant public key. Returns the body as JSON (`Null` when empty).
fn verify_like_wechatpay(request: &HttpRequest, method: &str, path_and_query: &str) -> Value {
    assert_eq!(request.method().as_str(), method);
    assert_eq!(
        request.uri().to_string(),
        format!("{BASE_URL}{path_and_query}")
    );
    let headers = request.headers();
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(headers["content-type"], "application/json");
    assert!(!headers["user-agent"].is_empty());
    assert_eq!(headers["wechatpay-serial"], KEY_ID);
    let auth = authorization_pairs(headers["authorization"].to_str().unwrap());
    assert_eq!(
        auth.keys().collect::<Vec<_>>(),
        ["mchid", "nonce_str", "serial_no", "signature", "timestamp"]
    );
    assert_eq!(auth["mchid"], MCHID);
    assert_eq!(auth["serial_no"], MERCHANT_SERIAL);
    assert_eq!(auth["nonce_str"], NONCE);
    assert_eq!(auth["timestamp"], NOW_S.to_string());
    let body = std::str::from_utf8(request.body()).unwrap();
    let message = format!("{method}\n{path_and_query}\n{NOW_S}\n{NONCE}\n{body}\n");
    assert!(
        rsa_verifies(MERCHANT_PUBLIC, message.as_bytes(), &auth["signature"]),
        "request signature does not verify over {message:?}"
    );
    if body.is_empty() {
        Value::Null
    } else {
        assert!(!body.contains(": ") && !body.contains(", "), "compact JSON");
        serde_json::from_str(body).unwrap()
    }
}

/// How a test answer is signed.
struct Signing {
    timestamp_s: i64,
    nonce: &'static str,
    serial: &'static str,
    private_pem: &'static str,
    /// Replaces the computed signature.
    signature: Option<String>,
    signature_type: Option<&'static str>,
}

impl Signing {
    fn good() -> Self {
        Signing {
            timestamp_s: NOW_S,
            nonce: "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            serial: KEY_ID,
            private_pem: PLATFORM_PRIVATE,
            signature: None,
            signature_type: Some("WECHATPAY2-SHA256-RSA2048"),
        }
    }

    fn headers(&self, body: &str) -> Vec<(&'static str, String)> {
        let message = format!("{}\n{}\n{body}\n", self.timestamp_s, self.nonce);
        let signature = self
            .signature
            .clone()
            .unwrap_or_else(|| rsa_sign(self.private_pem, message.as_bytes()));
        let mut headers = vec![
            ("Request-ID", "08F78BB5AF0610D302A0-0".to_owned()),
            ("Wechatpay-Nonce", self.nonce.to_owned()),
            ("Wechatpay-Signature", signature),
            ("Wechatpay-Timestamp", self.timestamp_s.to_string()),
            ("Wechatpay-Serial", self.serial.to_owned()),
        ];
        if let Some(signature_type) = self.signature_type {
            headers.push(("Wechatpay-Signature-Type", signature_type.to_owned()));
        }
        headers
    }

    fn answer(&self, status: u16, body: &str) -> HttpResponse {
        let mut builder = http::Response::builder().status(status);
        if !body.is_empty() {
            builder = builder.header(CONTENT_TYPE, "application/json; charset=utf-8");
        }
        for (name, value) in self.headers(body) {
            builder = builder.header(name, value);
        }
        builder.body(Bytes::from(body.to_owned())).unwrap()
    }
}

fn answer(status: u16, body: &str) -> HttpResponse {
    Signing::good().answer(status, body)
}

fn unsigned(status: u16, body: &str) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

fn error_body(code: &str) -> String {
    format!(r#"{{"code":"{code}","message":"描述"}}"#)
}

fn rejected_code(result: Result<impl std::fmt::Debug, AdapterError>) -> String {
    match result {
        Err(AdapterError::Rejected { code, .. }) => code,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

// ---------------------------------------------------------------- requests

#[test]
fn native_prepay_request_is_signed_and_shaped_like_the_docs() {
    let CreatePlan::Call(request) = adapter()
        .plan_create(&order(PaymentMethod::Qr), &context())
        .unwrap()
    else {
        panic!("native prepay is a call")
    };
    let body = verify_like_wechatpay(&request, "POST", "/v3/pay/transactions/native");
    assert_eq!(
        body,
        json!({
            "appid": APPID,
            "mchid": MCHID,
            "description": "demo 中文",
            "out_trade_no": ORDER_ID,
            "time_expire": "2026-11-25T18:14:37+08:00",
            "notify_url": NOTIFY_URL,
            "amount": {"total": 8888, "currency": "CNY"},
        })
    );
    // Raw UTF-8 in the body, signed as sent.
    assert!(std::str::from_utf8(request.body())
        .unwrap()
        .contains("demo 中文"));
}

#[test]
fn jsapi_needs_an_openid_and_sends_it_as_payer() {
    let adapter = adapter();
    let mut jsapi = order(PaymentMethod::Jsapi);
    assert!(matches!(
        adapter.plan_create(&jsapi, &context()),
        Err(AdapterError::Invalid(message)) if message.contains("openid")
    ));
    jsapi.method_params.openid = Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".to_owned());
    let CreatePlan::Call(request) = adapter.plan_create(&jsapi, &context()).unwrap() else {
        panic!("jsapi prepay is a call")
    };
    let body = verify_like_wechatpay(&request, "POST", "/v3/pay/transactions/jsapi");
    assert_eq!(
        body["payer"],
        json!({"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"})
    );
    assert!(body.get("scene_info").is_none());
}

#[test]
fn h5_needs_the_client_ip_and_app_needs_nothing_more() {
    let adapter = adapter();
    let mut wap = order(PaymentMethod::Wap);
    assert!(matches!(
        adapter.plan_create(&wap, &context()),
        Err(AdapterError::Invalid(message)) if message.contains("client_ip")
    ));
    wap.method_params.client_ip = Some("203.0.113.7".to_owned());
    let CreatePlan::Call(request) = adapter.plan_create(&wap, &context()).unwrap() else {
        panic!("h5 prepay is a call")
    };
    let body = verify_like_wechatpay(&request, "POST", "/v3/pay/transactions/h5");
    assert_eq!(
        body["scene_info"],
        json!({"payer_client_ip": "203.0.113.7", "h5_info": {"type": "Wap"}})
    );

    let CreatePlan::Call(request) = adapter
        .plan_create(&order(PaymentMethod::App), &context())
        .unwrap()
    else {
        panic!("app prepay is a call")
    };
    let body = verify_like_wechatpay(&request, "POST", "/v3/pay/transactions/app");
    assert!(body.get("payer").is_none() && body.get("scene_info").is_none());
}

#[test]
fn follow_up_requests_carry_their_ids() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);

    let request = adapter.build_query(&order, &context()).unwrap();
    let body = verify_like_wechatpay(
        &request,
        "GET",
        &format!("/v3/pay/transactions/out-trade-no/{ORDER_ID}?mchid={MCHID}"),
    );
    assert_eq!(body, Value::Null);

    let request = adapter.build_close(&order, &context()).unwrap();
    let body = verify_like_wechatpay(
        &request,
        "POST",
        &format!("/v3/pay/transactions/out-trade-no/{ORDER_ID}/close"),
    );
    assert_eq!(body, json!({"mchid": MCHID}));

    let request = adapter
        .build_refund(&order, &refund(1000), &context())
        .unwrap();
    let body = verify_like_wechatpay(&request, "POST", "/v3/refund/domestic/refunds");
    assert_eq!(
        body,
        json!({
            "out_trade_no": ORDER_ID,
            "out_refund_no": REFUND_ID,
            "reason": "退货",
            "notify_url": NOTIFY_URL,
            "amount": {"refund": 1000, "total": 8888, "currency": "CNY"},
        })
    );
    let mut no_reason = refund(1000);
    no_reason.reason = None;
    let request = adapter
        .build_refund(&order, &no_reason, &context())
        .unwrap();
    let body = verify_like_wechatpay(&request, "POST", "/v3/refund/domestic/refunds");
    assert!(body.get("reason").is_none());

    let request = adapter
        .build_refund_query(&order, &refund(1000), &context())
        .unwrap();
    let body = verify_like_wechatpay(
        &request,
        "GET",
        &format!("/v3/refund/domestic/refunds/{REFUND_ID}"),
    );
    assert_eq!(body, Value::Null);
}

#[test]
fn a_base_url_path_prefix_is_part_of_the_signed_url() {
    let mut prefixed = config();
    prefixed.base_url = "http://127.0.0.1:8081/wechatpay".to_owned();
    let adapter = WechatpayAdapter::new(prefixed).unwrap();
    let request = adapter
        .build_query(&order(PaymentMethod::Qr), &context())
        .unwrap();
    let auth = authorization_pairs(request.headers()["authorization"].to_str().unwrap());
    let url = format!("/wechatpay/v3/pay/transactions/out-trade-no/{ORDER_ID}?mchid={MCHID}");
    let message = format!("GET\n{url}\n{NOW_S}\n{NONCE}\n\n");
    assert!(rsa_verifies(
        MERCHANT_PUBLIC,
        message.as_bytes(),
        &auth["signature"]
    ));
}

#[test]
fn long_texts_are_cut_and_bad_inputs_are_invalid() {
    let adapter = adapter();
    let mut long = order(PaymentMethod::Qr);
    long.subject = "字".repeat(200);
    let CreatePlan::Call(request) = adapter.plan_create(&long, &context()).unwrap() else {
        panic!("call")
    };
    let body: Value = serde_json::from_slice(request.body()).unwrap();
    assert_eq!(body["description"].as_str().unwrap().chars().count(), 127);

    let mut usd = order(PaymentMethod::Qr);
    usd.amount = Money::from_minor(100, Currency::Usd);
    assert!(matches!(
        adapter.plan_create(&usd, &context()),
        Err(AdapterError::Invalid(_))
    ));
    // Page is not offered; barcode without its auth_code cannot be expressed.
    assert!(!adapter.supports(PaymentMethod::Page));
    for method in [PaymentMethod::Page, PaymentMethod::Barcode] {
        assert!(matches!(
            adapter.plan_create(&order(method), &context()),
            Err(AdapterError::Invalid(_))
        ));
    }
    for method in [
        PaymentMethod::Qr,
        PaymentMethod::Jsapi,
        PaymentMethod::App,
        PaymentMethod::Wap,
        PaymentMethod::Barcode,
    ] {
        assert!(adapter.supports(method));
    }
    let mut too_long = order(PaymentMethod::Qr);
    too_long.id = OrderId::parse(&format!("ord_{}", "a".repeat(40))).unwrap();
    assert!(matches!(
        adapter.build_query(&too_long, &context()),
        Err(AdapterError::Invalid(_))
    ));
    let mut bad_nonce = context();
    bad_nonce.nonce = "has\"quote".to_owned();
    assert!(matches!(
        adapter.build_query(&order(PaymentMethod::Qr), &bad_nonce),
        Err(AdapterError::Invalid(_))
    ));
}

#[test]
fn construction_validates_and_debug_redacts() {
    assert_eq!(adapter().channel(), Channel::Wechatpay);
    let printed = format!("{:?} {:?}", config(), adapter());
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
    assert!(!printed.contains("paysimTestApiV3Key"), "{printed}");
    assert!(printed.contains("<redacted>"));

    type Mutation = fn(&mut WechatpayConfig);
    let cases: [(&str, Mutation); 9] = [
        ("mchid", |c| c.mchid = String::new()),
        ("appid", |c| c.appid = "wx\"x".to_owned()),
        ("serial", |c| c.merchant_serial_no = "XYZ".to_owned()),
        ("key id", |c| {
            c.platform_public_key_id = "PUB KEY".to_owned()
        }),
        ("apiv3", |c| c.apiv3_key = "short".to_owned()),
        ("private", |c| {
            c.merchant_private_key_pem = PLATFORM_PUBLIC.to_owned()
        }),
        ("public", |c| {
            c.platform_public_key_pem = MERCHANT_PRIVATE.to_owned()
        }),
        ("base", |c| c.base_url = "127.0.0.1:8081".to_owned()),
        ("base query", |c| c.base_url = "http://h/?a=1".to_owned()),
    ];
    for (name, mutate) in cases {
        let mut config = config();
        mutate(&mut config);
        assert!(
            matches!(WechatpayAdapter::new(config), Err(AdapterError::Invalid(_))),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------- answers: signatures

fn query_body(trade_state: &str) -> String {
    json!({
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": ORDER_ID,
        "transaction_id": "4200000000202611250000000001",
        "trade_type": "NATIVE",
        "trade_state": trade_state,
        "trade_state_desc": "描述",
        "success_time": "2026-11-25T17:59:30+08:00",
        "amount": {"total": 8888, "payer_total": 8888, "currency": "CNY", "payer_currency": "CNY"},
    })
    .to_string()
}

fn paid() -> PaymentStatus {
    PaymentStatus::Paid {
        channel_trade_no: "4200000000202611250000000001".to_owned(),
        amount: Money::from_minor(8888, Currency::Cny),
        paid_at_ms: Some(NOW_MS - 7_000),
    }
}

fn query(response: HttpResponse) -> Result<PaymentStatus, AdapterError> {
    adapter().parse_query(&order(PaymentMethod::Qr), response)
}

fn is_signature<T: std::fmt::Debug>(result: Result<T, AdapterError>) -> bool {
    matches!(result, Err(AdapterError::Signature(_)))
}

#[test]
fn signed_answers_verify() {
    assert_eq!(query(answer(200, &query_body("SUCCESS"))), Ok(paid()));
    // The Signature-Type header is optional; 299 s of skew either way is tolerated.
    for signing in [
        Signing {
            signature_type: None,
            ..Signing::good()
        },
        Signing {
            timestamp_s: NOW_S - 299,
            ..Signing::good()
        },
        Signing {
            timestamp_s: NOW_S + 299,
            ..Signing::good()
        },
    ] {
        assert_eq!(
            query(signing.answer(200, &query_body("SUCCESS"))),
            Ok(paid())
        );
    }
}

#[test]
fn tampered_signtest_foreign_stale_and_unsigned_answers_fail_closed() {
    let body = query_body("SUCCESS");
    let good = Signing::good();

    // Tampered body: the amount changed after signing.
    let mut tampered = good.answer(200, &body);
    *tampered.body_mut() = Bytes::from(body.replace("8888", "1"));
    assert!(is_signature(query(tampered)));

    let signtest = Signing {
        signature: Some(format!(
            "WECHATPAY/SIGNTEST/{}",
            rsa_sign(PLATFORM_PRIVATE, b"anything")
        )),
        ..Signing::good()
    };
    let unknown_serial = Signing {
        serial: "PUB_KEY_ID_0119000000012025112500000000000002",
        ..Signing::good()
    };
    // A platform-certificate serial the adapter has not learnt: the service refreshes the
    // certificates once on `UnknownKey`, then fails closed.
    let certificate_serial = Signing {
        serial: "7132D72A03E93CDDF8C03BBD1F37EEDF204F7A12",
        ..Signing::good()
    };
    for (name, signing) in [
        ("unknown serial", unknown_serial),
        ("certificate serial", certificate_serial),
    ] {
        assert!(
            matches!(
                query(signing.answer(200, &body)),
                Err(AdapterError::UnknownKey(_))
            ),
            "{name} is an unknown key"
        );
    }
    let stale = Signing {
        timestamp_s: NOW_S - 300,
        ..Signing::good()
    };
    let future = Signing {
        timestamp_s: NOW_S + 301,
        ..Signing::good()
    };
    let foreign_key = Signing {
        private_pem: MERCHANT_PRIVATE,
        ..Signing::good()
    };
    let wrong_type = Signing {
        signature_type: Some("WECHATPAY2-SM2-WITH-SM3"),
        ..Signing::good()
    };
    let junk_signature = Signing {
        signature: Some("not base64!".to_owned()),
        ..Signing::good()
    };
    for (name, signing) in [
        ("signtest", signtest),
        ("stale", stale),
        ("future", future),
        ("foreign key", foreign_key),
        ("wrong type", wrong_type),
        ("junk", junk_signature),
    ] {
        assert!(
            is_signature(query(signing.answer(200, &body))),
            "{name} must fail closed"
        );
    }

    assert!(is_signature(query(unsigned(200, &body))));
    // Each signing header missing in turn.
    for missing in [
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "Wechatpay-Timestamp",
        "Wechatpay-Serial",
    ] {
        let mut response = answer(200, &body);
        response.headers_mut().remove(missing);
        assert!(is_signature(query(response)), "without {missing}");
    }
    // A repeated header is ambiguous.
    let mut doubled = answer(200, &body);
    doubled
        .headers_mut()
        .append("Wechatpay-Serial", HeaderValue::from_static(KEY_ID));
    assert!(is_signature(query(doubled)));
}

#[test]
fn an_adapter_without_a_reference_time_refuses_answers() {
    let fresh = WechatpayAdapter::new(config()).unwrap();
    assert!(is_signature(fresh.parse_query(
        &order(PaymentMethod::Qr),
        answer(200, &query_body("SUCCESS"))
    )));
    // Building the request it answers sets the time.
    fresh
        .build_query(&order(PaymentMethod::Qr), &context())
        .unwrap();
    assert_eq!(
        fresh.parse_query(
            &order(PaymentMethod::Qr),
            answer(200, &query_body("SUCCESS"))
        ),
        Ok(paid())
    );
}

#[test]
fn empty_204_answers_are_verified_too() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);
    assert_eq!(
        adapter.parse_close(&order, answer(204, "")),
        Ok(PaymentStatus::Closed)
    );
    // Signed over `TIMESTAMP\nNONCE\n\n`, checked independently.
    let response = answer(204, "");
    let message = format!(
        "{NOW_S}\n{}\n\n",
        response.headers()["wechatpay-nonce"].to_str().unwrap()
    );
    assert!(rsa_verifies(
        PLATFORM_PUBLIC,
        message.as_bytes(),
        response.headers()["wechatpay-signature"].to_str().unwrap()
    ));
    assert!(is_signature(adapter.parse_close(&order, unsigned(204, ""))));
    let signtest = Signing {
        signature: Some("WECHATPAY/SIGNTEST/abc".to_owned()),
        ..Signing::good()
    };
    assert!(is_signature(
        adapter.parse_close(&order, signtest.answer(204, ""))
    ));
}

#[test]
fn status_classes() {
    // 5xx and 429 are unknown, signed or not.
    for status in [500, 502, 503, 504, 429] {
        assert!(
            matches!(query(unsigned(status, "")), Err(AdapterError::Unknown(_))),
            "{status}"
        );
        assert!(matches!(
            query(answer(status, &error_body("SYSTEM_ERROR"))),
            Err(AdapterError::Unknown(_))
        ));
    }
    // Transient codes in a 4xx are unknown too.
    for code in ["SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANKERROR"] {
        assert!(matches!(
            query(answer(400, &error_body(code))),
            Err(AdapterError::Unknown(_))
        ));
    }
    // A refusal must be signed to be believed.
    assert!(is_signature(query(unsigned(
        400,
        &error_body("PARAM_ERROR")
    ))));
    assert_eq!(
        rejected_code(query(answer(400, &error_body("PARAM_ERROR")))),
        "PARAM_ERROR"
    );
    assert_eq!(
        rejected_code(query(answer(401, &error_body("SIGN_ERROR")))),
        "SIGN_ERROR"
    );
    // A signed refusal without a code is named by its status.
    assert_eq!(rejected_code(query(answer(403, "<html>"))), "HTTP_403");
    // 202: accepted, not done.
    assert!(matches!(
        query(answer(202, &error_body("USER_PAYING"))),
        Err(AdapterError::Unknown(_))
    ));
    // Redirects and JSON that is not a transaction are protocol errors.
    assert!(matches!(
        query(unsigned(302, "")),
        Err(AdapterError::Protocol(_))
    ));
    assert!(matches!(
        query(answer(200, "not json")),
        Err(AdapterError::Protocol(_))
    ));
    // Transport failures are unknown (the executor's conversion).
    let timeout: AdapterError = determinism::TransportError::Timeout {
        after_ms: 5_000,
        delivered: false,
    }
    .into();
    assert!(matches!(timeout, AdapterError::Unknown(_)));
}

// ---------------------------------------------------------------- answers: mapping

#[test]
fn prepay_answers_become_buyer_actions() {
    let adapter = adapter();

    let created = adapter
        .parse_create(
            &order(PaymentMethod::Qr),
            answer(
                200,
                r#"{"code_url":"weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}"#,
            ),
        )
        .unwrap();
    assert_eq!(
        created,
        Created {
            buyer_action: json!({"type": "qr_code", "code_url": "weixin://wxpay/bizpayurl?pr=p4lpSuKzz"}),
            status: PaymentStatus::Pending,
        }
    );

    let mut wap = order(PaymentMethod::Wap);
    wap.method_params.client_ip = Some("203.0.113.7".to_owned());
    let h5 = r#"{"h5_url":"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx1&package=2"}"#;
    let created = adapter.parse_create(&wap, answer(200, h5)).unwrap();
    assert_eq!(
        created.buyer_action,
        json!({"type": "redirect", "url": "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx1&package=2"})
    );
    wap.method_params.return_url = Some("https://shop.example/done?o=1".to_owned());
    let created = adapter.parse_create(&wap, answer(200, h5)).unwrap();
    assert_eq!(
        created.buyer_action["url"],
        "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=wx1&package=2\
         &redirect_url=https%3A%2F%2Fshop.example%2Fdone%3Fo%3D1"
    );

    // A 200 without the field is a protocol error; refusals are rejected or unknown.
    assert!(matches!(
        adapter.parse_create(&order(PaymentMethod::Qr), answer(200, "{}")),
        Err(AdapterError::Protocol(_))
    ));
    assert_eq!(
        rejected_code(adapter.parse_create(
            &order(PaymentMethod::Qr),
            answer(400, &error_body("ORDER_CLOSED"))
        )),
        "ORDER_CLOSED"
    );
    assert_eq!(
        rejected_code(adapter.parse_create(
            &order(PaymentMethod::Qr),
            answer(403, &error_body("NO_AUTH"))
        )),
        "NO_AUTH"
    );
    for code in ["ORDERPAID", "OUT_TRADE_NO_USED"] {
        assert!(matches!(
            adapter.parse_create(&order(PaymentMethod::Qr), answer(403, &error_body(code))),
            Err(AdapterError::Unknown(_))
        ));
    }
}

#[test]
fn jsapi_pay_params_verify_independently() {
    let prepay_id = "wx201410272009395522657a690389285100";
    let mut jsapi = order(PaymentMethod::Jsapi);
    jsapi.method_params.openid = Some("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".to_owned());
    let created = adapter()
        .parse_create(
            &jsapi,
            answer(200, &format!(r#"{{"prepay_id":"{prepay_id}"}}"#)),
        )
        .unwrap();
    let action = &created.buyer_action;
    assert_eq!(action["type"], "jsapi");
    assert_eq!(action["prepay_id"], prepay_id);
    let params = &action["pay_params"];
    assert_eq!(params["appId"], APPID);
    assert_eq!(params["timeStamp"], NOW_S.to_string());
    assert_eq!(params["package"], format!("prepay_id={prepay_id}"));
    assert_eq!(params["signType"], "RSA");
    let nonce = params["nonceStr"].as_str().unwrap();
    assert_eq!(nonce.len(), 32);
    assert!(nonce.bytes().all(|b| b.is_ascii_hexdigit()));
    let message = format!("{APPID}\n{NOW_S}\n{nonce}\nprepay_id={prepay_id}\n");
    assert!(rsa_verifies(
        MERCHANT_PUBLIC,
        message.as_bytes(),
        params["paySign"].as_str().unwrap()
    ));
    // The same answer gives the same parameters (pure); another prepay id another nonce.
    let again = adapter()
        .parse_create(
            &jsapi,
            answer(200, &format!(r#"{{"prepay_id":"{prepay_id}"}}"#)),
        )
        .unwrap();
    assert_eq!(again, created);
    let other = adapter()
        .parse_create(&jsapi, answer(200, r#"{"prepay_id":"wx2"}"#))
        .unwrap();
    assert_ne!(
        other.buyer_action["pay_params"]["nonceStr"],
        params["nonceStr"]
    );
}

#[test]
fn app_pay_params_verify_independently() {
    let prepay_id = "WX1217752501201407033233368018";
    let created = adapter()
        .parse_create(
            &order(PaymentMethod::App),
            answer(200, &format!(r#"{{"prepay_id":"{prepay_id}"}}"#)),
        )
        .unwrap();
    let action = &created.buyer_action;
    assert_eq!(action["type"], "app");
    assert_eq!(action["prepay_id"], prepay_id);
    let params = &action["pay_params"];
    assert_eq!(params["appid"], APPID);
    assert_eq!(params["partnerid"], MCHID);
    assert_eq!(params["prepayid"], prepay_id);
    assert_eq!(params["package"], "Sign=WXPay");
    assert_eq!(params["timestamp"], NOW_S.to_string());
    let nonce = params["noncestr"].as_str().unwrap();
    // Line 4 is the bare prepay id.
    let message = format!("{APPID}\n{NOW_S}\n{nonce}\n{prepay_id}\n");
    assert!(rsa_verifies(
        MERCHANT_PUBLIC,
        message.as_bytes(),
        params["sign"].as_str().unwrap()
    ));
}

#[test]
fn query_mapping() {
    let check = |trade_state: &str, expected: PaymentStatus| {
        assert_eq!(
            query(answer(200, &query_body(trade_state))),
            Ok(expected),
            "{trade_state}"
        );
    };
    check("SUCCESS", paid());
    check("REFUND", paid());
    check("NOTPAY", PaymentStatus::Pending);
    check("USERPAYING", PaymentStatus::Pending);
    check("CLOSED", PaymentStatus::Closed);
    check("REVOKED", PaymentStatus::Closed);
    check(
        "PAYERROR",
        PaymentStatus::Failed {
            reason: "PAYERROR: 描述".to_owned(),
        },
    );
    assert!(matches!(
        query(answer(200, &query_body("PAID_MAYBE"))),
        Err(AdapterError::Protocol(_))
    ));

    // Unpaid transactions carry no transaction_id nor success_time.
    let notpay = json!({"appid": APPID, "mchid": MCHID, "out_trade_no": ORDER_ID,
        "trade_state": "NOTPAY", "amount": {"total": 8888, "currency": "CNY"}});
    assert_eq!(
        query(answer(200, &notpay.to_string())),
        Ok(PaymentStatus::Pending)
    );
    // A payment must carry its transaction id and amount; the time is best effort.
    let mut no_id: Value = serde_json::from_str(&query_body("SUCCESS")).unwrap();
    no_id.as_object_mut().unwrap().remove("transaction_id");
    assert!(matches!(
        query(answer(200, &no_id.to_string())),
        Err(AdapterError::Protocol(_))
    ));
    let mut no_time: Value = serde_json::from_str(&query_body("SUCCESS")).unwrap();
    no_time["success_time"] = json!("yesterday");
    assert!(matches!(
        query(answer(200, &no_time.to_string())),
        Ok(PaymentStatus::Paid {
            paid_at_ms: None,
            ..
        })
    ));
    let mut float: Value = serde_json::from_str(&query_body("SUCCESS")).unwrap();
    float["amount"]["total"] = json!(88.88);
    assert!(matches!(
        query(answer(200, &float.to_string())),
        Err(AdapterError::Protocol(_))
    ));

    // Another order's or merchant's transaction is refused.
    for (field, value) in [
        ("out_trade_no", "ord_other00000000000000001"),
        ("mchid", "1900000002"),
        ("appid", "wx0000000000000000"),
    ] {
        let mut other: Value = serde_json::from_str(&query_body("SUCCESS")).unwrap();
        other[field] = json!(value);
        assert!(
            matches!(
                query(answer(200, &other.to_string())),
                Err(AdapterError::Protocol(_))
            ),
            "{field}"
        );
    }

    // Never seen by WeChat Pay.
    assert_eq!(
        query(answer(404, &error_body("ORDER_NOT_EXIST"))),
        Ok(PaymentStatus::NotFound)
    );
    assert_eq!(
        query(answer(400, &error_body("ORDERNOTEXIST"))),
        Ok(PaymentStatus::NotFound)
    );
    assert!(is_signature(query(unsigned(
        404,
        &error_body("ORDER_NOT_EXIST")
    ))));
}

#[test]
fn close_mapping() {
    let adapter = adapter();
    let close = |response| adapter.parse_close(&order(PaymentMethod::Qr), response);
    assert_eq!(close(answer(204, "")), Ok(PaymentStatus::Closed));
    assert_eq!(
        close(answer(400, &error_body("ORDER_CLOSED"))),
        Ok(PaymentStatus::Closed)
    );
    assert_eq!(
        close(answer(404, &error_body("ORDER_NOT_EXIST"))),
        Ok(PaymentStatus::NotFound)
    );
    for (status, code) in [
        (400, "ORDERPAID"),
        (400, "INVALID_REQUEST"),
        (202, "USER_PAYING"),
    ] {
        assert_eq!(
            close(answer(status, &error_body(code))),
            Ok(PaymentStatus::Pending),
            "{code}"
        );
    }
    assert_eq!(
        rejected_code(close(answer(400, &error_body("MCH_NOT_EXISTS")))),
        "MCH_NOT_EXISTS"
    );
    assert!(matches!(
        close(answer(500, &error_body("SYSTEM_ERROR"))),
        Err(AdapterError::Unknown(_))
    ));
}

// ---------------------------------------------------------------- payment code (付款码)

const AUTH_CODE: &str = "134567890123456789";

fn barcode_order() -> Order {
    let mut order = order(PaymentMethod::Barcode);
    order.method_params.auth_code = Some(AUTH_CODE.to_owned());
    order
}

fn codepay_body(trade_state: &str) -> String {
    json!({
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": ORDER_ID,
        "transaction_id": "4200000000202611250000000001",
        "trade_type": "MICROPAY",
        "trade_state": trade_state,
        "trade_state_desc": "支付成功",
        "bank_type": "CMC",
        "success_time": "2026-11-25T17:59:30+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": 8888, "payer_total": 8888, "currency": "CNY", "payer_currency": "CNY"},
    })
    .to_string()
}

#[test]
fn codepay_request_is_signed_and_carries_the_auth_code() {
    let adapter = adapter();
    assert!(adapter.supports(PaymentMethod::Barcode));
    let CreatePlan::Call(request) = adapter.plan_create(&barcode_order(), &context()).unwrap()
    else {
        panic!("codepay is a call")
    };
    let body = verify_like_wechatpay(&request, "POST", "/v3/pay/transactions/codepay");
    assert_eq!(
        body,
        json!({
            "appid": APPID,
            "mchid": MCHID,
            "description": "demo 中文",
            "out_trade_no": ORDER_ID,
            "payer": {"auth_code": AUTH_CODE},
            "amount": {"total": 8888, "currency": "CNY"},
            "scene_info": {"store_info": {"out_id": "mch_sandbox"}},
        })
    );
    // Blank or missing auth_code: nothing to charge.
    let mut blank = barcode_order();
    blank.method_params.auth_code = Some("  ".to_owned());
    for order in [order(PaymentMethod::Barcode), blank] {
        assert!(matches!(
            adapter.plan_create(&order, &context()),
            Err(AdapterError::Invalid(_))
        ));
    }
    let mut usd = barcode_order();
    usd.amount = Money::from_minor(100, Currency::Usd);
    assert!(matches!(
        adapter.plan_create(&usd, &context()),
        Err(AdapterError::Invalid(_))
    ));
}

#[test]
fn codepay_answer_mapping() {
    let adapter = adapter();
    let create = |response| adapter.parse_create(&barcode_order(), response);

    // 200 SUCCESS: paid at once.
    assert_eq!(
        create(answer(200, &codepay_body("SUCCESS"))),
        Ok(Created {
            buyer_action: json!({
                "type": "barcode",
                "transaction_id": "4200000000202611250000000001",
            }),
            status: paid(),
        })
    );
    // 202 USER_PAYING: the buyer confirms on the phone; polled, then reversed.
    for code in ["USER_PAYING", "USERPAYING"] {
        assert_eq!(
            create(answer(202, &error_body(code))),
            Ok(Created {
                buyer_action: json!({"type": "barcode", "transaction_id": null}),
                status: PaymentStatus::Pending,
            }),
            "{code}"
        );
    }
    // Definitive payment failures fail the order.
    for (status, code) in [
        (400, "AUTH_CODE_INVALID"),
        (400, "AUTH_CODE_ERROR"),
        (403, "NOT_ENOUGH"),
        (403, "NOTENOUGH"),
        (403, "PAYERROR"),
        (403, "TRADE_ERROR"),
        (403, "RULE_LIMIT"),
    ] {
        assert_eq!(
            create(answer(status, &error_body(code))),
            Ok(Created {
                buyer_action: json!({"type": "barcode", "transaction_id": null}),
                status: PaymentStatus::Failed {
                    reason: format!("{code}: 描述"),
                },
            }),
            "{code}"
        );
    }
    // 200 with PAYERROR (a transaction, not a refusal) fails too.
    assert!(matches!(
        create(answer(200, &codepay_body("PAYERROR"))),
        Ok(Created {
            status: PaymentStatus::Failed { .. },
            ..
        })
    ));
    // Request and configuration errors are refusals.
    for code in ["PARAM_ERROR", "NO_AUTH", "APPID_MCHID_NOT_MATCH"] {
        assert_eq!(rejected_code(create(answer(400, &error_body(code)))), code);
    }
    // Outcome unknown: query.
    for response in [
        answer(500, &error_body("SYSTEM_ERROR")),
        unsigned(502, ""),
        answer(429, &error_body("FREQUENCY_LIMITED")),
        answer(202, &error_body("SYSTEM_ERROR")),
        answer(403, &error_body("ORDERPAID")),
        answer(403, &error_body("OUT_TRADE_NO_USED")),
    ] {
        assert!(
            matches!(create(response), Err(AdapterError::Unknown(_))),
            "outcome unknown"
        );
    }
    // Answers that are not ours or not signed are never trusted.
    let foreign = codepay_body("SUCCESS").replace(ORDER_ID, "ord_other000000000000000001");
    assert!(matches!(
        create(answer(200, &foreign)),
        Err(AdapterError::Protocol(_))
    ));
    assert!(matches!(
        create(answer(
            200,
            &codepay_body("SUCCESS").replace(MCHID, "1900000002")
        )),
        Err(AdapterError::Protocol(_))
    ));
    assert!(is_signature(create(unsigned(
        200,
        &codepay_body("SUCCESS")
    ))));
    assert!(is_signature(create(unsigned(
        202,
        &error_body("USER_PAYING")
    ))));
    // A 200 without transaction_id cannot be booked as paid.
    let bare = json!({
        "appid": APPID, "mchid": MCHID, "out_trade_no": ORDER_ID,
        "trade_state": "SUCCESS", "amount": {"total": 8888, "currency": "CNY"},
    })
    .to_string();
    assert!(matches!(
        create(answer(200, &bare)),
        Err(AdapterError::Protocol(_))
    ));
}

#[test]
fn barcode_orders_are_reversed_not_closed() {
    let adapter = adapter();
    let request = adapter.build_close(&barcode_order(), &context()).unwrap();
    let body = verify_like_wechatpay(
        &request,
        "POST",
        &format!("/v3/pay/transactions/out-trade-no/{ORDER_ID}/reverse"),
    );
    assert_eq!(body, json!({"mchid": MCHID, "appid": APPID}));
    // Other methods still close.
    let request = adapter
        .build_close(&order(PaymentMethod::Qr), &context())
        .unwrap();
    let body = verify_like_wechatpay(
        &request,
        "POST",
        &format!("/v3/pay/transactions/out-trade-no/{ORDER_ID}/close"),
    );
    assert_eq!(body, json!({"mchid": MCHID}));
}

#[test]
fn reverse_mapping() {
    let adapter = adapter();
    let reverse = |response| adapter.parse_close(&barcode_order(), response);
    let revoked = json!({"appid": APPID, "mchid": MCHID, "out_trade_no": ORDER_ID}).to_string();
    assert_eq!(reverse(answer(200, &revoked)), Ok(PaymentStatus::Closed));
    assert_eq!(reverse(answer(204, "")), Ok(PaymentStatus::Closed));
    for code in ["ORDER_REVERSED", "ORDERREVERSED", "ORDER_CLOSED"] {
        assert_eq!(
            reverse(answer(400, &error_body(code))),
            Ok(PaymentStatus::Closed),
            "{code}"
        );
    }
    assert_eq!(
        reverse(answer(404, &error_body("ORDER_NOT_EXIST"))),
        Ok(PaymentStatus::NotFound)
    );
    // Still paying: not reversed yet; the service queries.
    for (status, code) in [(202, "USER_PAYING"), (400, "USERPAYING")] {
        assert_eq!(
            reverse(answer(status, &error_body(code))),
            Ok(PaymentStatus::Pending),
            "{code}"
        );
    }
    assert_eq!(
        rejected_code(reverse(answer(403, &error_body("NO_AUTH")))),
        "NO_AUTH"
    );
    assert!(matches!(
        reverse(answer(500, &error_body("SYSTEM_ERROR"))),
        Err(AdapterError::Unknown(_))
    ));
    assert!(is_signature(reverse(unsigned(200, &revoked))));
}

fn refund_body(status: &str, refund_fen: i64) -> String {
    json!({
        "refund_id": "50000000382019052709732678859",
        "out_refund_no": REFUND_ID,
        "transaction_id": "4200000000202611250000000001",
        "out_trade_no": ORDER_ID,
        "channel": "ORIGINAL",
        "user_received_account": "招商银行信用卡0403",
        "create_time": "2026-11-25T17:59:37+08:00",
        "status": status,
        "funds_account": "AVAILABLE",
        "amount": {"total": 8888, "refund": refund_fen, "payer_total": 8888,
                   "payer_refund": refund_fen, "currency": "CNY"},
    })
    .to_string()
}

#[test]
fn refund_and_refund_query_mapping() {
    let adapter = adapter();
    let order = order(PaymentMethod::Qr);
    let refund = refund(1000);
    let succeeded = RefundStatus::Succeeded {
        channel_refund_no: Some("50000000382019052709732678859".to_owned()),
    };
    type Parse<'a> = Box<dyn Fn(HttpResponse) -> Result<RefundStatus, AdapterError> + 'a>;
    let parsers: [(&str, Parse<'_>); 2] = [
        (
            "refund",
            Box::new(|response| adapter.parse_refund(&order, &refund, response)),
        ),
        (
            "refund query",
            Box::new(|response| adapter.parse_refund_query(&order, &refund, response)),
        ),
    ];
    for (name, parse) in parsers {
        assert_eq!(
            parse(answer(200, &refund_body("SUCCESS", 1000))),
            Ok(succeeded.clone()),
            "{name}"
        );
        assert_eq!(
            parse(answer(200, &refund_body("PROCESSING", 1000))),
            Ok(RefundStatus::Pending)
        );
        assert!(matches!(
            parse(answer(200, &refund_body("ABNORMAL", 1000))),
            Ok(RefundStatus::Abnormal { .. })
        ));
        assert!(matches!(
            parse(answer(200, &refund_body("CLOSED", 1000))),
            Ok(RefundStatus::Failed { .. })
        ));
        // Success for another amount: the money moved, but not as booked.
        assert!(matches!(
            parse(answer(200, &refund_body("SUCCESS", 999))),
            Ok(RefundStatus::Abnormal { .. })
        ));
        assert!(matches!(
            parse(answer(200, &refund_body("REFUNDED?", 1000))),
            Err(AdapterError::Protocol(_))
        ));
        for other in [
            refund_body("SUCCESS", 1000).replace(REFUND_ID, "rfd_other"),
            refund_body("SUCCESS", 1000).replace(ORDER_ID, "ord_other"),
        ] {
            assert!(matches!(
                parse(answer(200, &other)),
                Err(AdapterError::Protocol(_))
            ));
        }
        assert!(is_signature(parse(unsigned(
            200,
            &refund_body("SUCCESS", 1000)
        ))));
        for code in [
            "NOT_ENOUGH",
            "USER_ACCOUNT_ABNORMAL",
            "PARAM_ERROR",
            "INVALID_REQUEST",
        ] {
            assert_eq!(rejected_code(parse(answer(403, &error_body(code)))), code);
        }
        assert_eq!(
            rejected_code(parse(answer(404, &error_body("RESOURCE_NOT_EXISTS")))),
            "RESOURCE_NOT_EXISTS"
        );
        for response in [
            answer(500, &error_body("SYSTEM_ERROR")),
            answer(429, &error_body("FREQUENCY_LIMITED")),
            answer(403, &error_body("FREQUENCY_LIMITED")),
            unsigned(503, ""),
        ] {
            assert!(matches!(parse(response), Err(AdapterError::Unknown(_))));
        }
    }
}

// ---------------------------------------------------------------- notifications

/// Generated once with Python `cryptography` 48 (OpenSSL), independently of this crate:
/// `AESGCM(apiv3_key).encrypt(b"fW2gOq5xYbTk", plaintext, b"transaction")` for the
/// TRANSACTION.SUCCESS plaintext of `ORDER_ID` (8888 fen, success 17:59:30), the envelope
/// `json.dumps(…, ensure_ascii=False, separators=(",",":"))`, and the signature
/// SHA256withRSA with the platform key over `1795600777\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\n
/// <body>\n`.
const GOLDEN_NOTIFY_BODY: &str = r#"{"id":"EV-2026112517593700001","create_time":"2026-11-25T17:59:37+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"支付成功","resource":{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"Pwtp11acVKWsW2I9mVm1UAc7+IjRa5dShfxw2unBT2334lBhvH9aZ4icl1quTLFOLdsgHvxWLx4aH4nNoYikzZK7FbgsvGel8aFiYTJONlA373gyiGuFkN0wr6U3s7PY4ibA/0bJxe2feCDtUEx0zOfYJKyoywppbFbKjIu4dTfAtBDzzhd2ZrJTWiRwZiePG6wNfd7/pWZQsJutvaanockvCZPeCmbcSVIEPCrG6+fRSUtfGFnaNpTJyqll68TQLB3WF8/0X6HYW1L/Jd9LWmg7EmyukTAi8bSR1iFHO36sVZX2fkiGK4q7hNGwwhviPRT0jL23fQG0NpeOkhwAdBV3GYEE9wy4hmH04DXn0e1NTfzo4hi7wouxbfjOF7UjrZiMqsOba1UwE9XUuWom501tmxSFe7fQ36DLqbiLgd5uBpMA+ihgxKCkdWYJ4qO+Nb2wbr47RPN0v6jtWFm2LSo5L5onFgpamUkmW7v1wShLLrIRT3tENzvUsRTOOqSne5NXxxsLriKOTQB8iQMW1hfy94LvP6Gs15499KsrrjAAJdBw5CBH0NIy97d35nb1q+pappdEypt7sajvUm9Ujw==","associated_data":"transaction","nonce":"fW2gOq5xYbTk"}}"#;
const GOLDEN_NOTIFY_SIGNATURE: &str = "dWLhzlBzjSbRaWgKX99BxjuF1bHD6tWcjPFzON4kblEJ3MS9uUPJwLKjZFkIZzJhu1+mQMIJpuSMCGryTObK5MLYelc/YifZcIDP4Za4ieVe5WdVb8qpqr3bAMqA0rfONFL7oe5MGj38BV08ZDx61dNaaISQ1b9XZmeqBAB1WL9Oy2EKIO/513a/RXnP396Xq1IziK9CHxGcBGVgJaeqPdO0oj4dS7QIMO6Tl+sdu3+MWdHRch0RXq4mervwGnfoO4OT0LE1jJC9sa/hTAt4CR5fUSmMvfQhTEKm/q/zB/Zn30/h93tua0HwOOisgRllYNWJOrfVtIVXezpvQSxkxA==";

fn notify_request(headers: Vec<(&'static str, String)>, body: &str) -> HttpRequest {
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri("/notify/wechatpay")
        .header(CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Bytes::from(body.to_owned())).unwrap()
}

fn golden_notification() -> HttpRequest {
    let headers = Signing {
        signature: Some(GOLDEN_NOTIFY_SIGNATURE.to_owned()),
        ..Signing::good()
    }
    .headers(GOLDEN_NOTIFY_BODY);
    notify_request(headers, GOLDEN_NOTIFY_BODY)
}

/// AES-256-GCM as WeChat Pay encrypts a resource: base64(ciphertext ‖ tag).
fn seal(key: &str, nonce: &str, associated_data: &str, plaintext: &str) -> String {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.trim().as_bytes()).unwrap());
    let mut in_out = plaintext.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
        Aad::from(associated_data.as_bytes()),
        &mut in_out,
    )
    .unwrap();
    b64().encode(in_out)
}

fn envelope(event_type: &str, original_type: &str, ciphertext: &str, nonce: &str) -> String {
    json!({
        "id": "EV-1",
        "create_time": "2026-11-25T17:59:37+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "摘要",
        "resource": {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": ciphertext,
            "associated_data": original_type,
            "nonce": nonce,
        },
    })
    .to_string()
}

/// A notification encrypted with `key` and signed as `signing` says.
fn notification_with(
    signing: &Signing,
    key: &str,
    event_type: &str,
    original_type: &str,
    plaintext: &Value,
) -> HttpRequest {
    let nonce = "K6qn1z0vWgD3";
    let ciphertext = seal(key, nonce, original_type, &plaintext.to_string());
    let body = envelope(event_type, original_type, &ciphertext, nonce);
    notify_request(signing.headers(&body), &body)
}

fn notification(event_type: &str, original_type: &str, plaintext: &Value) -> HttpRequest {
    notification_with(
        &Signing::good(),
        APIV3_KEY,
        event_type,
        original_type,
        plaintext,
    )
}

fn transaction_plaintext() -> Value {
    serde_json::from_str(&query_body("SUCCESS")).unwrap()
}

fn refund_plaintext(refund_status: &str) -> Value {
    json!({
        "mchid": MCHID,
        "transaction_id": "4200000000202611250000000001",
        "out_trade_no": ORDER_ID,
        "refund_id": "50000000382019052709732678859",
        "out_refund_no": REFUND_ID,
        "refund_status": refund_status,
        "success_time": "2026-11-25T17:59:30+08:00",
        "user_received_account": "招商银行信用卡0403",
        "amount": {"total": 8888, "refund": 1000, "payer_total": 8888, "payer_refund": 1000},
    })
}

fn paid_notification() -> Notification {
    Notification::Payment {
        order_id: OrderId::parse(ORDER_ID).unwrap(),
        status: paid(),
    }
}

#[test]
fn golden_notification_decrypts_and_maps() {
    assert_eq!(
        adapter().verify_notification(&golden_notification(), NOW_MS),
        Ok(paid_notification())
    );
    // The notification's `now` alone is enough: a fresh adapter needs no prior request.
    let fresh = WechatpayAdapter::new(config()).unwrap();
    assert_eq!(
        fresh.verify_notification(&golden_notification(), NOW_MS),
        Ok(paid_notification())
    );
}

#[test]
fn payment_and_refund_notifications_map() {
    let adapter = adapter();
    assert_eq!(
        adapter.verify_notification(
            &notification(
                "TRANSACTION.SUCCESS",
                "transaction",
                &transaction_plaintext()
            ),
            NOW_MS
        ),
        Ok(paid_notification())
    );
    let refund_id = RefundId::parse(REFUND_ID).unwrap();
    let cases = [
        (
            "SUCCESS",
            RefundStatus::Succeeded {
                channel_refund_no: Some("50000000382019052709732678859".to_owned()),
            },
        ),
        (
            "ABNORMAL",
            RefundStatus::Abnormal {
                reason: String::new(),
            },
        ),
        (
            "CLOSED",
            RefundStatus::Failed {
                reason: String::new(),
            },
        ),
    ];
    for (refund_status, expected) in cases {
        let request = notification(
            &format!("REFUND.{refund_status}"),
            "refund",
            &refund_plaintext(refund_status),
        );
        let Ok(Notification::Refund {
            refund_id: got,
            status,
            ..
        }) = adapter.verify_notification(&request, NOW_MS)
        else {
            panic!("REFUND.{refund_status} did not map")
        };
        assert_eq!(got, refund_id);
        match (&status, &expected) {
            (RefundStatus::Abnormal { .. }, RefundStatus::Abnormal { .. })
            | (RefundStatus::Failed { .. }, RefundStatus::Failed { .. }) => {}
            _ => assert_eq!(status, expected),
        }
    }
}

#[test]
fn bad_notifications_are_rejected() {
    let adapter = adapter();
    let reject = |request: HttpRequest| {
        let result = adapter.verify_notification(&request, NOW_MS);
        assert!(result.is_err(), "accepted: {result:?}");
        result.unwrap_err()
    };
    let plaintext = transaction_plaintext();
    let good = Signing::good;

    // Wrong APIv3 key: the tag does not verify.
    let other_key = "0123456789abcdef0123456789abcdef";
    assert!(matches!(
        reject(notification_with(
            &good(),
            other_key,
            "TRANSACTION.SUCCESS",
            "transaction",
            &plaintext
        )),
        AdapterError::Signature(_)
    ));

    // Tampered ciphertext, re-signed so only the AEAD can notice.
    let envelope_value: Value = serde_json::from_str(GOLDEN_NOTIFY_BODY).unwrap();
    let ciphertext = envelope_value["resource"]["ciphertext"].as_str().unwrap();
    let mut bytes = b64().decode(ciphertext).unwrap();
    bytes[10] ^= 0x01;
    let tampered = GOLDEN_NOTIFY_BODY.replace(ciphertext, &b64().encode(&bytes));
    assert!(matches!(
        reject(notify_request(good().headers(&tampered), &tampered)),
        AdapterError::Signature(_)
    ));
    // Another associated_data, re-signed.
    let other_aad = GOLDEN_NOTIFY_BODY.replace(
        r#""associated_data":"transaction""#,
        r#""associated_data":"refund""#,
    );
    assert!(matches!(
        reject(notify_request(good().headers(&other_aad), &other_aad)),
        AdapterError::Signature(_)
    ));

    // Tampered body under the original signature.
    let mut altered = golden_notification();
    *altered.body_mut() = Bytes::from(GOLDEN_NOTIFY_BODY.replace("EV-2026", "EV-2027"));
    assert!(matches!(reject(altered), AdapterError::Signature(_)));

    // Signature test, unknown serial, stale, unsigned.
    let signtest = Signing {
        signature: Some(format!("WECHATPAY/SIGNTEST/{GOLDEN_NOTIFY_SIGNATURE}")),
        ..Signing::good()
    };
    let unknown_serial = Signing {
        serial: "PUB_KEY_ID_0119000000012025112500000000000002",
        ..Signing::good()
    };
    let stale = Signing {
        timestamp_s: NOW_S - 3600,
        ..Signing::good()
    };
    for signing in [signtest, stale] {
        let request = notify_request(signing.headers(GOLDEN_NOTIFY_BODY), GOLDEN_NOTIFY_BODY);
        assert!(matches!(reject(request), AdapterError::Signature(_)));
    }
    let request = notify_request(
        unknown_serial.headers(GOLDEN_NOTIFY_BODY),
        GOLDEN_NOTIFY_BODY,
    );
    assert!(matches!(reject(request), AdapterError::UnknownKey(_)));
    assert!(matches!(
        reject(notify_request(Vec::new(), GOLDEN_NOTIFY_BODY)),
        AdapterError::Signature(_)
    ));

    // Authentic, but for another merchant or app.
    for (field, value) in [("mchid", "1900000002"), ("appid", "wx0000000000000000")] {
        let mut other = plaintext.clone();
        other[field] = json!(value);
        assert!(matches!(
            reject(notification("TRANSACTION.SUCCESS", "transaction", &other)),
            AdapterError::Signature(_)
        ));
    }
    let mut other_refund = refund_plaintext("SUCCESS");
    other_refund["mchid"] = json!("1900000002");
    assert!(matches!(
        reject(notification("REFUND.SUCCESS", "refund", &other_refund)),
        AdapterError::Signature(_)
    ));

    // Inconsistent or unknown content.
    let mut not_paid = plaintext.clone();
    not_paid["trade_state"] = json!("NOTPAY");
    reject(notification(
        "TRANSACTION.SUCCESS",
        "transaction",
        &not_paid,
    ));
    reject(notification(
        "REFUND.SUCCESS",
        "refund",
        &refund_plaintext("CLOSED"),
    ));
    reject(notification(
        "REFUND.SUCCESS",
        "transaction",
        &refund_plaintext("SUCCESS"),
    ));
    reject(notification("COUPON.USE", "coupon", &plaintext));
    let mut bad_order = plaintext.clone();
    bad_order["out_trade_no"] = json!("not-an-order-id");
    reject(notification(
        "TRANSACTION.SUCCESS",
        "transaction",
        &bad_order,
    ));

    // Another algorithm, or a nonce of the wrong length.
    let other_algorithm = GOLDEN_NOTIFY_BODY.replace("AEAD_AES_256_GCM", "AEAD_SM4_GCM");
    reject(notify_request(
        good().headers(&other_algorithm),
        &other_algorithm,
    ));
    let body = GOLDEN_NOTIFY_BODY.replace("fW2gOq5xYbTk", "fW2gOq5xYbTk0123");
    assert!(matches!(
        reject(notify_request(good().headers(&body), &body)),
        AdapterError::Signature(_)
    ));
    reject(notify_request(good().headers("not json"), "not json"));
}

#[test]
fn acknowledgements_are_the_documented_dialect() {
    let adapter = adapter();
    let ok = adapter.acknowledge(true);
    assert_eq!(ok.status(), StatusCode::NO_CONTENT);
    assert!(ok.body().is_empty());
    let fail = adapter.acknowledge(false);
    assert_eq!(fail.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        serde_json::from_slice::<Value>(fail.body()).unwrap(),
        json!({"code": "FAIL", "message": "失败"})
    );
    assert!(fail.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

// ---------------------------------------------------------------- vectors

/// The golden vectors of `scenarios/vectors/wechatpay/` (RSA signatures by the openssl CLI,
/// the notification resource sealed by Python `cryptography`; see `generate.py` there).
mod vectors {
    use super::*;

    macro_rules! vector {
        ($file:literal) => {
            serde_json::from_str::<Value>(include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../scenarios/vectors/wechatpay/",
                $file
            )))
            .unwrap()
        };
    }

    fn text<'v>(vector: &'v Value, field: &str) -> &'v str {
        vector[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is not a string"))
    }

    fn context_of(vector: &Value) -> AdapterContext {
        AdapterContext {
            now_ms: text(vector, "timestamp").parse::<i64>().unwrap() * 1000,
            nonce: text(vector, "nonce").to_owned(),
            notify_url: NOTIFY_URL.to_owned(),
        }
    }

    /// The vector's message rebuilt by the adapter, and its signature reproduced byte for byte
    /// by the adapter's signer (PKCS#1 v1.5 is deterministic).
    fn check_request_signature(name: &str, vector: &Value) {
        let message = sign::request_message(
            text(vector, "method"),
            text(vector, "path"),
            text(vector, "timestamp"),
            text(vector, "nonce"),
            text(vector, "body").as_bytes(),
        );
        assert_eq!(message, text(vector, "message").as_bytes(), "{name}");
        let adapter = adapter();
        assert_eq!(
            adapter.merchant_key.sign(&message).unwrap(),
            text(vector, "signature"),
            "{name}: reproduced"
        );
        assert!(rsa_verifies(
            MERCHANT_PUBLIC,
            &message,
            text(vector, "signature")
        ));
    }

    /// The whole request the adapter builds is the vector's: URL, body and Authorization.
    fn check_request(name: &str, vector: &Value, request: &HttpRequest) {
        assert_eq!(request.method().as_str(), text(vector, "method"), "{name}");
        assert_eq!(
            request.uri().to_string(),
            format!("{BASE_URL}{}", text(vector, "path")),
            "{name}"
        );
        assert_eq!(
            std::str::from_utf8(request.body()).unwrap(),
            text(vector, "body"),
            "{name}"
        );
        assert_eq!(
            request.headers()[AUTHORIZATION],
            text(vector, "authorization"),
            "{name}"
        );
    }

    fn response_of(vector: &Value) -> HttpResponse {
        let status = u16::try_from(vector["status"].as_u64().unwrap()).unwrap();
        let mut builder = http::Response::builder().status(status);
        for (name, value) in vector["headers"].as_object().unwrap() {
            builder = builder.header(name.as_str(), value.as_str().unwrap());
        }
        builder
            .body(Bytes::from(text(vector, "body").to_owned()))
            .unwrap()
    }

    fn check_response_signature(name: &str, vector: &Value) {
        let message = sign::lines(&[
            text(vector, "timestamp").as_bytes(),
            text(vector, "nonce").as_bytes(),
            text(vector, "body").as_bytes(),
        ]);
        assert_eq!(message, text(vector, "message").as_bytes(), "{name}");
        assert_eq!(
            rsa_sign(PLATFORM_PRIVATE, &message),
            text(vector, "signature"),
            "{name}: reproduced independently"
        );
    }

    #[test]
    fn request_native_is_reproduced_byte_for_byte() {
        let vector = vector!("request_native.json");
        check_request_signature("request_native", &vector);
        let CreatePlan::Call(request) = adapter()
            .plan_create(&order(PaymentMethod::Qr), &context_of(&vector))
            .unwrap()
        else {
            panic!("native prepay is a call")
        };
        check_request("request_native", &vector, &request);
    }

    #[test]
    fn request_query_get_is_reproduced_byte_for_byte() {
        let vector = vector!("request_query_get.json");
        check_request_signature("request_query_get", &vector);
        let request = adapter()
            .build_query(&order(PaymentMethod::Qr), &context_of(&vector))
            .unwrap();
        check_request("request_query_get", &vector, &request);
    }

    #[test]
    fn response_query_verifies_and_maps() {
        let vector = vector!("response_query.json");
        check_response_signature("response_query", &vector);
        assert_eq!(query(response_of(&vector)), Ok(paid()));
        // One byte off and it is refused.
        let mut tampered = vector.clone();
        tampered["body"] = json!(text(&vector, "body").replace("8888", "8889"));
        assert!(is_signature(query(response_of(&tampered))));
    }

    #[test]
    fn response_close_204_verifies_over_an_empty_body() {
        let vector = vector!("response_close_204.json");
        assert_eq!(text(&vector, "body"), "");
        assert!(text(&vector, "message").ends_with("\n\n"));
        check_response_signature("response_close_204", &vector);
        let adapter = adapter();
        let order = order(PaymentMethod::Qr);
        assert_eq!(
            adapter.parse_close(&order, response_of(&vector)),
            Ok(PaymentStatus::Closed)
        );
        let mut tampered = vector.clone();
        tampered["body"] = json!("{}");
        assert!(is_signature(
            adapter.parse_close(&order, response_of(&tampered))
        ));
    }

    #[test]
    fn notify_transaction_success_verifies_decrypts_and_maps() {
        let vector = vector!("notify_transaction_success.json");
        check_response_signature("notify_transaction_success", &vector);
        let adapter = adapter();
        let plaintext = adapter
            .apiv3_key
            .decrypt(
                text(&vector, "resource_nonce"),
                text(&vector, "associated_data"),
                text(&vector, "ciphertext"),
            )
            .unwrap();
        assert_eq!(plaintext, text(&vector, "plaintext").as_bytes());
        // This file's independent sealing reproduces the ciphertext too (fixed nonce).
        assert_eq!(
            seal(
                APIV3_KEY,
                text(&vector, "resource_nonce"),
                text(&vector, "associated_data"),
                text(&vector, "plaintext"),
            ),
            text(&vector, "ciphertext")
        );
        let headers: Vec<(&'static str, String)> = [
            "Request-ID",
            "Wechatpay-Nonce",
            "Wechatpay-Serial",
            "Wechatpay-Signature",
            "Wechatpay-Signature-Type",
            "Wechatpay-Timestamp",
        ]
        .into_iter()
        .map(|name| (name, text(&vector["headers"], name).to_owned()))
        .collect();
        let request = notify_request(headers, text(&vector, "body"));
        assert_eq!(
            adapter.verify_notification(&request, NOW_MS),
            Ok(paid_notification())
        );
        let mut altered = request.clone();
        *altered.body_mut() = Bytes::from(text(&vector, "body").replace("EV-2026", "EV-2027"));
        assert!(is_signature(adapter.verify_notification(&altered, NOW_MS)));
    }
}

// ---------------------------------------------------------------- platform certificates

/// The serial of the test platform certificate (40 upper-case hex digits, no leading zero).
const CERT_SERIAL: &str = "7132D72A03E93CDDF8C03BBD1F37EEDF204F7A12";
const CERT_NONCE: &str = "c3rtN0nce123";

/// A self-signed certificate over `private_pem` with the serial `serial`, valid in
/// `from..until` (years), issued here with rcgen (independently of the adapter's parser).
fn certificate_pem(private_pem: &str, serial: &str, from: i32, until: i32) -> String {
    let key = rcgen::KeyPair::from_pem(private_pem).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut name = rcgen::DistinguishedName::new();
    name.push(
        rcgen::DnType::CommonName,
        "paysim test platform certificate",
    );
    params.distinguished_name = name;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(
        &hex::decode(serial).unwrap(),
    ));
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    params.self_signed(&key).unwrap().pem()
}

/// A `GET /v3/certificates` body: each `(serial_no, pem)` sealed with the APIv3 key.
fn certificates_body(entries: &[(&str, &str)]) -> String {
    let data: Vec<Value> = entries
        .iter()
        .map(|(serial, pem)| {
            serde_json::json!({
                "serial_no": serial,
                "effective_time": "2025-01-01T08:00:00+08:00",
                "expire_time": "2031-01-01T08:00:00+08:00",
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "nonce": CERT_NONCE,
                    "associated_data": "certificate",
                    "ciphertext": seal(APIV3_KEY, CERT_NONCE, "certificate", pem),
                }
            })
        })
        .collect();
    serde_json::json!({ "data": data }).to_string()
}

fn platform_certificate() -> String {
    certificate_pem(PLATFORM_PRIVATE, CERT_SERIAL, 2025, 2031)
}

fn under_certificate() -> Signing {
    Signing {
        serial: CERT_SERIAL,
        ..Signing::good()
    }
}

/// An adapter configured without a public key (platform-certificate mode), at `NOW_MS`.
fn certificate_mode_adapter() -> WechatpayAdapter {
    let adapter = WechatpayAdapter::new(WechatpayConfig {
        platform_public_key_pem: String::new(),
        platform_public_key_id: String::new(),
        ..config()
    })
    .unwrap();
    adapter.clock.observe(NOW_MS);
    adapter
}

#[test]
fn key_refresh_is_a_signed_certificates_get() {
    let request = adapter().build_key_refresh(&context()).unwrap().unwrap();
    let body = verify_like_wechatpay(&request, "GET", "/v3/certificates?algorithm_type=RSA");
    assert_eq!(body, Value::Null);
}

#[test]
fn certificates_are_opened_checked_and_learnt() {
    let adapter = certificate_mode_adapter();
    // No key at all yet: the request names none, and a certificate-signed answer is unknown.
    let request = adapter
        .build_query(&order(PaymentMethod::Qr), &context())
        .unwrap();
    assert!(request.headers().get("wechatpay-serial").is_none());
    let body = query_body("SUCCESS");
    let answer = || under_certificate().answer(200, &body);
    let parse =
        |adapter: &WechatpayAdapter| adapter.parse_query(&order(PaymentMethod::Qr), answer());
    assert!(matches!(parse(&adapter), Err(AdapterError::UnknownKey(_))));

    // The certificates answer, signed under the certificate it carries.
    let certificates = certificates_body(&[(CERT_SERIAL, &platform_certificate())]);
    adapter
        .apply_key_refresh(under_certificate().answer(200, &certificates))
        .unwrap();
    assert_eq!(parse(&adapter), Ok(paid()));
    // Serials compare case-insensitively (upper-case is the stored form).
    let lower = Signing {
        serial: "7132d72a03e93cddf8c03bbd1f37eedf204f7a12",
        ..Signing::good()
    };
    assert_eq!(
        adapter.parse_query(&order(PaymentMethod::Qr), lower.answer(200, &body)),
        Ok(paid())
    );
    // Requests now name the certificate; notifications under it verify.
    let request = adapter
        .build_query(&order(PaymentMethod::Qr), &context())
        .unwrap();
    assert_eq!(request.headers()["wechatpay-serial"], CERT_SERIAL);
    let notification = notification_with(
        &under_certificate(),
        APIV3_KEY,
        "TRANSACTION.SUCCESS",
        "transaction",
        &transaction_plaintext(),
    );
    assert!(adapter.verify_notification(&notification, NOW_MS).is_ok());
    // Another serial is still unknown.
    let other = Signing {
        serial: "7132D72A03E93CDDF8C03BBD1F37EEDF204F7A13",
        ..Signing::good()
    };
    assert!(matches!(
        adapter.parse_query(&order(PaymentMethod::Qr), other.answer(200, &body)),
        Err(AdapterError::UnknownKey(_))
    ));
}

#[test]
fn bad_certificates_answers_teach_nothing() {
    let certificate = platform_certificate();
    let good_body = certificates_body(&[(CERT_SERIAL, &certificate)]);
    let learns_nothing = |response: HttpResponse| {
        let adapter = certificate_mode_adapter();
        let result = adapter.apply_key_refresh(response);
        assert!(matches!(
            adapter.parse_query(
                &order(PaymentMethod::Qr),
                under_certificate().answer(200, &query_body("SUCCESS"))
            ),
            Err(AdapterError::UnknownKey(_))
        ));
        result
    };
    // Signed under a serial it does not carry.
    let elsewhere = Signing {
        serial: "7132D72A03E93CDDF8C03BBD1F37EEDF204F7A13",
        ..Signing::good()
    };
    assert!(matches!(
        learns_nothing(elsewhere.answer(200, &good_body)),
        Err(AdapterError::UnknownKey(_))
    ));
    // Signed by another key under the certificate's serial.
    let forged = Signing {
        private_pem: MERCHANT_PRIVATE,
        ..under_certificate()
    };
    assert!(matches!(
        learns_nothing(forged.answer(200, &good_body)),
        Err(AdapterError::Signature(_))
    ));
    // Sealed with another APIv3 key: the certificate does not open.
    let sealed_elsewhere = good_body.replace(
        &seal(APIV3_KEY, CERT_NONCE, "certificate", &certificate),
        &seal(
            "ffffffffffffffffffffffffffffffff",
            CERT_NONCE,
            "certificate",
            &certificate,
        ),
    );
    assert!(matches!(
        learns_nothing(under_certificate().answer(200, &sealed_elsewhere)),
        Err(AdapterError::Signature(_))
    ));
    // Listed under another serial than the certificate's own.
    let mislabelled =
        certificates_body(&[("7132D72A03E93CDDF8C03BBD1F37EEDF204F7A13", &certificate)]);
    assert!(matches!(
        learns_nothing(under_certificate().answer(200, &mislabelled)),
        Err(AdapterError::Protocol(_))
    ));
    // Expired: not learnt, so the answer signed under it is unknown.
    let expired = certificates_body(&[(
        CERT_SERIAL,
        &certificate_pem(PLATFORM_PRIVATE, CERT_SERIAL, 2019, 2021),
    )]);
    assert!(matches!(
        learns_nothing(under_certificate().answer(200, &expired)),
        Err(AdapterError::UnknownKey(_))
    ));
    // Unsigned, refused, failing.
    assert!(matches!(
        learns_nothing(unsigned(200, &good_body)),
        Err(AdapterError::Signature(_))
    ));
    assert!(matches!(
        learns_nothing(under_certificate().answer(400, &error_body("PARAM_ERROR"))),
        Err(AdapterError::Protocol(_))
    ));
    assert!(matches!(
        learns_nothing(unsigned(500, "")),
        Err(AdapterError::Unknown(_))
    ));
}

#[test]
fn public_key_and_certificates_together() {
    // Switching: the configured public key stays, the certificate is added.
    let adapter = adapter();
    let body = query_body("SUCCESS");
    assert!(matches!(
        adapter.parse_query(
            &order(PaymentMethod::Qr),
            under_certificate().answer(200, &body)
        ),
        Err(AdapterError::UnknownKey(_))
    ));
    let certificates = certificates_body(&[(CERT_SERIAL, &platform_certificate())]);
    adapter
        .apply_key_refresh(under_certificate().answer(200, &certificates))
        .unwrap();
    for signing in [Signing::good(), under_certificate()] {
        assert_eq!(
            adapter.parse_query(&order(PaymentMethod::Qr), signing.answer(200, &body)),
            Ok(paid())
        );
    }
    // Requests keep naming the public key.
    let request = adapter
        .build_query(&order(PaymentMethod::Qr), &context())
        .unwrap();
    assert_eq!(request.headers()["wechatpay-serial"], KEY_ID);

    // A key without its id (or the reverse) is a configuration error.
    for (pem, id) in [(PLATFORM_PUBLIC, ""), ("", KEY_ID)] {
        let config = WechatpayConfig {
            platform_public_key_pem: pem.to_owned(),
            platform_public_key_id: id.to_owned(),
            ..config()
        };
        assert!(matches!(
            WechatpayAdapter::new(config),
            Err(AdapterError::Invalid(_))
        ));
    }
}
