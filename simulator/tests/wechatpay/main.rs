//! The mock WeChat Pay APIv3 server driven through `app(sim)` by a tiny signing client written
//! here from the protocol notes (independent of the simulator's own message building and
//! AEAD), with the committed test keys and a virtual clock.

// Marks the helpers below as test code for clippy's allow-unwrap-in-tests, as for #[test] fns.
#![cfg(test)]

mod certificates;
mod codepay;
mod faults;
mod vectors;

use std::sync::{Arc, Mutex};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use axum::body::Body;
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use determinism::{
    run_virtual_until, Clock, InProcessTransport, Scheduler, SeededEntropy, VirtualClock,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use simulator::wechatpay::{WechatpayMerchant, WechatpayMockConfig};
use simulator::{app, Simulator, SimulatorParts};
use tower::ServiceExt;

macro_rules! key_file {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/vectors/wechatpay/keys/",
            $name
        ))
    };
}

const MERCHANT_PRIVATE: &str = key_file!("merchant_private_pkcs8.pem");
const MERCHANT_PUBLIC: &str = key_file!("merchant_public.pem");
const PLATFORM_PRIVATE: &str = key_file!("platform_private_pkcs8.pem");
const PLATFORM_PUBLIC: &str = key_file!("platform_public.pem");
const APIV3_KEY: &str = key_file!("apiv3_key.txt");

const MCHID: &str = "1900000001";
const SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
const PUB_KEY_ID: &str = "PUB_KEY_ID_0119000000012025112500000000000001";
const APPID: &str = "wx8888888888888888";
const BASE: &str = "http://sim.local:8082";
const MERCHANT: &str = "http://merchant.local";
const NOTIFY_URL: &str = "http://merchant.local/notify";
/// 2026-11-25T10:00:00Z = 2026-11-25T18:00:00+08:00.
const T0: i64 = 1_795_600_800_000;
const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;

// ---------------------------------------------------------------- the independent client

fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn apiv3_key() -> Vec<u8> {
    APIV3_KEY.trim().as_bytes().to_vec()
}

fn sign_merchant(message: &str) -> String {
    let key = RsaKeyPair::from_pkcs8(&der_of(MERCHANT_PRIVATE)).unwrap();
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .unwrap();
    STANDARD.encode(signature)
}

fn verify_platform(message: &[u8], signature_b64: &str) -> bool {
    let Ok(signature) = STANDARD.decode(signature_b64) else {
        return false;
    };
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der_of(PLATFORM_PUBLIC))
        .verify(message, &signature)
        .is_ok()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

/// Checks `Wechatpay-*` headers over `body` as an SDK would: `TIMESTAMP\nNONCE\nBODY\n`.
fn signature_verifies(headers: &HeaderMap, body: &str) -> bool {
    assert_eq!(header(headers, "wechatpay-serial"), PUB_KEY_ID);
    assert_eq!(
        header(headers, "wechatpay-signature-type"),
        "WECHATPAY2-SHA256-RSA2048"
    );
    let message = format!(
        "{}\n{}\n{}\n",
        header(headers, "wechatpay-timestamp"),
        header(headers, "wechatpay-nonce"),
        body
    );
    verify_platform(message.as_bytes(), header(headers, "wechatpay-signature"))
}

fn decrypt(resource: &Value) -> Value {
    assert_eq!(resource["algorithm"], "AEAD_AES_256_GCM");
    let nonce = resource["nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), 12);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &apiv3_key()).unwrap());
    let mut data = STANDARD
        .decode(resource["ciphertext"].as_str().unwrap())
        .unwrap();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
            Aad::from(resource["associated_data"].as_str().unwrap().as_bytes()),
            &mut data,
        )
        .unwrap();
    serde_json::from_slice(plain).unwrap()
}

/// How a request is signed.
#[derive(Clone)]
struct Signing {
    mchid: &'static str,
    serial: String,
    timestamp: i64,
    nonce: &'static str,
    /// Overrides the signature.
    signature: Option<&'static str>,
    /// Sends the fields in this order (all SDKs differ).
    reversed: bool,
}

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    /// The raw body (bill downloads may be gzip).
    bytes: Vec<u8>,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    fn verifies(&self) -> bool {
        signature_verifies(&self.headers, &self.text)
    }
}

// ---------------------------------------------------------------- the harness

struct Harness {
    clock: VirtualClock,
    scheduler: Scheduler,
    transport: InProcessTransport,
    sim: Simulator,
}

impl Harness {
    fn new() -> Self {
        let clock = VirtualClock::new(T0);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let scheduler = Scheduler::new(Arc::clone(&shared));
        let transport = InProcessTransport::new();
        let sim = Simulator::new(SimulatorParts {
            clock: shared,
            scheduler: scheduler.clone(),
            entropy: Arc::new(SeededEntropy::new(11)),
            transport: Arc::new(transport.clone()),
            public_base_url: BASE.into(),
            alipay: None,
            wechatpay: Some(config()),
        })
        .unwrap();
        Self {
            clock,
            scheduler,
            transport,
            sim,
        }
    }

    fn signing(&self) -> Signing {
        Signing {
            mchid: MCHID,
            serial: SERIAL.into(),
            timestamp: self.clock.now_ms() / 1000,
            nonce: "QgnI4nK22BkTQqik0WKAdegswqSUwToC",
            signature: None,
            reversed: false,
        }
    }

    async fn raw(&self, request: Request<Body>) -> Response {
        let response = app(self.sim.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Response {
            status,
            headers,
            text: String::from_utf8_lossy(&body).into_owned(),
            bytes: body.to_vec(),
        }
    }

    /// A signed APIv3 request; `body` is sent (and signed) byte for byte.
    async fn signed(&self, method: Method, target: &str, body: &str, signing: Signing) -> Response {
        let message = format!(
            "{}\n{target}\n{}\n{}\n{body}\n",
            method.as_str(),
            signing.timestamp,
            signing.nonce
        );
        let signature = signing
            .signature
            .map_or_else(|| sign_merchant(&message), str::to_owned);
        let fields = [
            format!("mchid=\"{}\"", signing.mchid),
            format!("nonce_str=\"{}\"", signing.nonce),
            format!("signature=\"{signature}\""),
            format!("timestamp=\"{}\"", signing.timestamp),
            format!("serial_no=\"{}\"", signing.serial),
        ];
        let fields: Vec<String> = if signing.reversed {
            fields.into_iter().rev().collect()
        } else {
            fields.into()
        };
        let request = Request::builder()
            .method(method)
            .uri(target)
            .header("accept", "application/json")
            .header("user-agent", "paysim-test/1.0")
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "authorization",
                format!("WECHATPAY2-SHA256-RSA2048 {}", fields.join(",")),
            )
            .body(Body::from(body.to_owned()))
            .unwrap();
        self.raw(request).await
    }

    async fn post(&self, target: &str, body: &Value) -> Response {
        self.signed(Method::POST, target, &body.to_string(), self.signing())
            .await
    }

    async fn get(&self, target: &str) -> Response {
        self.signed(Method::GET, target, "", self.signing()).await
    }

    async fn native(&self, out_trade_no: &str, total: i64) -> Response {
        self.post(
            "/v3/pay/transactions/native",
            &json!({"appid": APPID, "mchid": MCHID, "description": "Image形象店-深圳腾大-QQ公仔",
                    "out_trade_no": out_trade_no, "notify_url": NOTIFY_URL,
                    "amount": {"total": total, "currency": "CNY"}}),
        )
        .await
    }

    async fn query(&self, out_trade_no: &str) -> Value {
        let response = self
            .get(&format!(
                "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={MCHID}"
            ))
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert!(response.verifies());
        response.json()
    }

    async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.raw(request).await;
        (response.status, response.json())
    }

    async fn action(&self, out_trade_no: &str, action: &str) -> (StatusCode, Value) {
        self.control(
            Method::POST,
            &format!("/_paysim/wechatpay/trades/{out_trade_no}/actions"),
            Some(json!({ "action": action })),
        )
        .await
    }

    async fn arm(&self, spec: Value) {
        let (status, body) = self
            .control(Method::POST, "/_paysim/wechatpay/faults", Some(spec))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn refund(&self, out_refund_no: &str, refund: i64, total: i64) -> Response {
        self.post(
            "/v3/refund/domestic/refunds",
            &json!({"out_trade_no": "ORDER_R1", "out_refund_no": out_refund_no,
                    "notify_url": "http://merchant.local/refund-notify",
                    "amount": {"refund": refund, "total": total, "currency": "CNY"}}),
        )
        .await
    }

    async fn run_until(&self, until_ms: i64) -> usize {
        run_virtual_until(&self.scheduler, &self.clock, until_ms).await
    }

    async fn paid_order(&self, out_trade_no: &str, total: i64) {
        assert_eq!(
            self.native(out_trade_no, total).await.status,
            StatusCode::OK
        );
        assert_eq!(self.action(out_trade_no, "pay").await.0, StatusCode::OK);
    }
}

fn config() -> WechatpayMockConfig {
    WechatpayMockConfig {
        merchants: vec![WechatpayMerchant {
            mchid: MCHID.into(),
            appid: APPID.into(),
            serial_no: SERIAL.into(),
            public_key_pem: MERCHANT_PUBLIC.into(),
            apiv3_key: APIV3_KEY.trim().into(),
        }],
        platform_private_key_pem: PLATFORM_PRIVATE.into(),
        public_key_id: PUB_KEY_ID.into(),
        signing_mode: simulator::wechatpay::WechatpaySigningMode::PublicKey,
    }
}

/// One notification as the merchant received it.
#[derive(Debug, Clone)]
struct Received {
    at_ms: i64,
    path: String,
    headers: HeaderMap,
    body: String,
}

type Inbox = Arc<Mutex<Vec<Received>>>;

/// A merchant endpoint that answers 500 `{"code":"FAIL"}` `failures` times, then 200
/// `{"code":"SUCCESS"}` (or always fails when `failures` is `usize::MAX`).
fn receiver(harness: &Harness, failures: usize) -> Inbox {
    let inbox: Inbox = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&inbox);
    let clock = harness.clock.clone();
    let handler = move |uri: http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
        let log = Arc::clone(&log);
        let clock = clock.clone();
        async move {
            let mut log = log.lock().unwrap();
            log.push(Received {
                at_ms: clock.now_ms(),
                path: uri.path().to_owned(),
                headers,
                body: String::from_utf8(body.to_vec()).unwrap(),
            });
            if log.len() <= failures {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"code":"FAIL","message":"失败"}"#,
                )
            } else {
                (StatusCode::OK, r#"{"code":"SUCCESS","message":"成功"}"#)
            }
        }
    };
    let router = Router::new()
        .route("/notify", post(handler.clone()))
        .route("/refund-notify", post(handler));
    harness.transport.register(MERCHANT, router);
    inbox
}

fn received(inbox: &Inbox) -> Vec<Received> {
    inbox.lock().unwrap().clone()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn native_prepay_pay_query_success_with_signed_answers() {
    let h = Harness::new();
    let response = h.native("ORDER_0001", 100).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert!(
        response.verifies(),
        "prepay answer signed with the platform key"
    );
    assert!(header(&response.headers, "request-id").ends_with("-0"));
    assert!(header(&response.headers, "content-type").starts_with("application/json"));
    let code_url = response.json()["code_url"].as_str().unwrap().to_owned();
    assert!(
        code_url.starts_with("weixin://wxpay/bizpayurl?pr="),
        "{code_url}"
    );
    assert_eq!(
        header(&response.headers, "wechatpay-timestamp"),
        (T0 / 1000).to_string()
    );

    let unpaid = h.query("ORDER_0001").await;
    assert_eq!(unpaid["trade_state"], "NOTPAY");
    assert_eq!(unpaid["amount"]["total"], 100);
    assert!(unpaid.get("transaction_id").is_none());

    // Repeating the identical prepay answers the same code_url.
    let again = h.native("ORDER_0001", 100).await;
    assert_eq!(again.json()["code_url"], code_url.as_str());
    let different = h.native("ORDER_0001", 101).await;
    assert_eq!(different.status, StatusCode::BAD_REQUEST);
    assert_eq!(different.json()["code"], "INVALID_REQUEST");

    h.clock.advance_ms(30 * SECOND);
    let (status, view) = h.action("ORDER_0001", "pay").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "SUCCESS");
    assert_eq!(view["channel"], "wechatpay");

    let paid = h.query("ORDER_0001").await;
    assert_eq!(paid["trade_state"], "SUCCESS");
    assert_eq!(paid["trade_type"], "NATIVE");
    assert_eq!(paid["success_time"], "2026-11-25T18:00:30+08:00");
    assert_eq!(paid["appid"], APPID);
    assert_eq!(paid["mchid"], MCHID);
    assert_eq!(paid["amount"]["payer_total"], 100);
    let transaction_id = paid["transaction_id"].as_str().unwrap();
    assert_eq!(transaction_id.len(), 28);
    assert!(paid["payer"]["openid"].as_str().unwrap().starts_with('o'));

    let by_id = h
        .get(&format!(
            "/v3/pay/transactions/id/{transaction_id}?mchid={MCHID}"
        ))
        .await;
    assert_eq!(by_id.status, StatusCode::OK);
    assert!(by_id.verifies());
    assert_eq!(by_id.json()["out_trade_no"], "ORDER_0001");

    let paid_again = h.native("ORDER_0001", 100).await;
    assert_eq!(paid_again.json()["code"], "ORDERPAID");

    let missing = h
        .get(&format!(
            "/v3/pay/transactions/out-trade-no/NOPE_0001?mchid={MCHID}"
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["code"], "ORDER_NOT_EXIST");
    assert!(missing.verifies(), "errors are signed too");
    assert!(!header(&missing.headers, "request-id").ends_with("-0"));
}

#[tokio::test]
async fn other_prepay_products_and_validation() {
    let h = Harness::new();
    let base = json!({"appid": APPID, "mchid": MCHID, "description": "d",
                      "out_trade_no": "JSAPI_0001", "notify_url": NOTIFY_URL,
                      "amount": {"total": 1}});
    let missing_openid = h.post("/v3/pay/transactions/jsapi", &base).await;
    assert_eq!(missing_openid.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing_openid.json()["code"], "PARAM_ERROR");

    let mut jsapi = base.clone();
    jsapi["payer"] = json!({"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"});
    let response = h.post("/v3/pay/transactions/jsapi", &jsapi).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert!(response.json()["prepay_id"]
        .as_str()
        .unwrap()
        .starts_with("wx"));

    let mut app_order = base.clone();
    app_order["out_trade_no"] = json!("APP_00001");
    let response = h.post("/v3/pay/transactions/app", &app_order).await;
    assert!(response.json()["prepay_id"].is_string());

    let mut h5 = base.clone();
    h5["out_trade_no"] = json!("H5_000001");
    h5["scene_info"] = json!({"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}});
    let response = h.post("/v3/pay/transactions/h5", &h5).await;
    let h5_url = response.json()["h5_url"].as_str().unwrap().to_owned();
    assert!(
        h5_url.starts_with(&format!("{BASE}/wechatpay/pay/")),
        "{h5_url}"
    );
    let page = h
        .raw(
            Request::get(h5_url.trim_start_matches(BASE))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("H5_000001"));

    // A different trade type under the same out_trade_no.
    let reused = h.post("/v3/pay/transactions/app", &jsapi).await;
    assert_eq!(reused.status, StatusCode::FORBIDDEN);
    assert_eq!(reused.json()["code"], "OUT_TRADE_NO_USED");

    for (patch, code) in [
        (json!({"amount": {"total": 0}}), "PARAM_ERROR"),
        (
            json!({"amount": {"total": 1, "currency": "USD"}}),
            "PARAM_ERROR",
        ),
        (json!({"out_trade_no": "short"}), "PARAM_ERROR"),
        (
            json!({"appid": "wx0000000000000000"}),
            "APPID_MCHID_NOT_MATCH",
        ),
        (json!({"time_expire": "tomorrow"}), "PARAM_ERROR"),
        (
            json!({"notify_url": "http://merchant.local/notify?x=1"}),
            "PARAM_ERROR",
        ),
    ] {
        let mut body = base.clone();
        body["out_trade_no"] = json!("NATIVE_0002");
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = h.post("/v3/pay/transactions/native", &body).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{patch}");
        assert_eq!(response.json()["code"], code, "{patch}: {}", response.text);
    }
}

#[tokio::test]
async fn raw_bytes_any_field_order_and_lower_case_serial_verify() {
    let h = Harness::new();
    // wechatpayv3 style: ", " separators and \u escapes; signed over exactly these bytes.
    let body = r#"{"notify_url": "http://merchant.local/notify", "description": "Image\u5f62\u8c61\u5e97", "out_trade_no": "DEMO_0001", "amount": {"total": 100, "currency": "CNY"}, "time_expire": "2026-11-25T20:00:00+08:00", "appid": "wx8888888888888888", "mchid": "1900000001"}"#;
    let signing = Signing {
        serial: SERIAL.to_ascii_lowercase(),
        reversed: true,
        nonce: "rf7p10zum4r",
        ..h.signing()
    };
    let response = h
        .signed(Method::POST, "/v3/pay/transactions/native", body, signing)
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let view = h
        .control(Method::GET, "/_paysim/wechatpay/trades/DEMO_0001", None)
        .await
        .1;
    assert_eq!(view["expires_at"], "2026-11-25T12:00:00.000Z");
    // The query string is part of the signed URL, exactly as sent.
    let query = h
        .get(&format!(
            "/v3/pay/transactions/out-trade-no/DEMO_0001?mchid={MCHID}"
        ))
        .await;
    assert_eq!(query.json()["trade_state"], "NOTPAY");
}

#[tokio::test]
async fn bad_signature_and_identity_errors_are_refused() {
    let h = Harness::new();
    let target = format!("/v3/pay/transactions/out-trade-no/ORDER_0001?mchid={MCHID}");
    let forged = Signing {
        signature: Some("c2lnbmF0dXJl"),
        ..h.signing()
    };
    let response = h.signed(Method::GET, &target, "", forged).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.json()["code"], "SIGN_ERROR");
    assert!(response.verifies(), "the refusal itself is signed");

    // Signed for another URL: the query is covered.
    let response = h
        .signed(
            Method::GET,
            &target,
            "",
            Signing {
                signature: Some(Box::leak(
                    sign_merchant(&format!(
                        "GET\n/v3/pay/transactions/out-trade-no/ORDER_0001\n{}\nN\n\n",
                        T0 / 1000
                    ))
                    .into_boxed_str(),
                )),
                nonce: "N",
                ..h.signing()
            },
        )
        .await;
    assert_eq!(response.json()["code"], "SIGN_ERROR");

    for signing in [
        Signing {
            mchid: "1900009999",
            ..h.signing()
        },
        Signing {
            serial: "0000000000000000000000000000000000000000".into(),
            ..h.signing()
        },
    ] {
        let response = h.signed(Method::GET, &target, "", signing).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        assert_eq!(response.json()["code"], "SIGN_ERROR");
    }

    let no_user_agent = Request::get(&target)
        .header("accept", "*/*")
        .body(Body::empty())
        .unwrap();
    let response = h.raw(no_user_agent).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["code"], "INVALID_REQUEST");
    assert_eq!(response.json()["message"], "Http头缺少Accept或User-Agent");

    let malformed = Request::get(&target)
        .header("accept", "*/*")
        .header("user-agent", "127.0.0.1")
        .header(
            "authorization",
            "WECHATPAY2-SHA256-RSA2048 mchid=1900000001",
        )
        .body(Body::empty())
        .unwrap();
    let response = h.raw(malformed).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["code"], "INVALID_REQUEST");

    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/wechatpay/exchanges", None)
        .await;
    let verdicts: Vec<&str> = exchanges["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["signature"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        [
            "invalid",
            "invalid",
            "invalid",
            "invalid",
            "not_checked",
            "not_checked"
        ]
    );
    assert_eq!(
        exchanges["exchanges"][0]["api"],
        "pay.transactions.out-trade-no"
    );
}

#[tokio::test]
async fn stale_timestamps_are_refused_beyond_five_minutes() {
    let h = Harness::new();
    let target = format!("/v3/pay/transactions/out-trade-no/ORDER_0001?mchid={MCHID}");
    for (offset_seconds, expected) in [
        (-301, StatusCode::UNAUTHORIZED),
        (301, StatusCode::UNAUTHORIZED),
        (-299, StatusCode::NOT_FOUND),
        (299, StatusCode::NOT_FOUND),
    ] {
        let signing = Signing {
            timestamp: T0 / 1000 + offset_seconds,
            ..h.signing()
        };
        let response = h.signed(Method::GET, &target, "", signing).await;
        assert_eq!(
            response.status, expected,
            "{offset_seconds}: {}",
            response.text
        );
        if expected == StatusCode::UNAUTHORIZED {
            assert_eq!(response.json()["code"], "SIGN_ERROR");
        }
    }
}

#[tokio::test]
async fn close_answers_signed_204_over_an_empty_body() {
    let h = Harness::new();
    h.native("CLOSE_0001", 100).await;
    let close = json!({ "mchid": MCHID });
    let response = h
        .post("/v3/pay/transactions/out-trade-no/CLOSE_0001/close", &close)
        .await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(response.text, "");
    assert!(response.verifies(), "signed over TIMESTAMP\\nNONCE\\n\\n");
    assert!(response.headers.get("request-id").is_some());
    assert_eq!(h.query("CLOSE_0001").await["trade_state"], "CLOSED");

    let again = h
        .post("/v3/pay/transactions/out-trade-no/CLOSE_0001/close", &close)
        .await;
    assert_eq!(
        again.status,
        StatusCode::NO_CONTENT,
        "closing twice is fine"
    );
    let (status, body) = h.action("CLOSE_0001", "pay").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        h.native("CLOSE_0001", 100).await.json()["code"],
        "ORDER_CLOSED"
    );

    h.paid_order("CLOSE_0002", 100).await;
    let paid = h
        .post("/v3/pay/transactions/out-trade-no/CLOSE_0002/close", &close)
        .await;
    assert_eq!(paid.status, StatusCode::BAD_REQUEST);
    assert_eq!(paid.json()["code"], "ORDERPAID");

    let unknown = h
        .post("/v3/pay/transactions/out-trade-no/NOPE_0001/close", &close)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn orders_expire_at_time_expire_on_the_clock() {
    let h = Harness::new();
    let mut body = json!({"appid": APPID, "mchid": MCHID, "description": "d",
                          "out_trade_no": "EXPIRE_01", "notify_url": NOTIFY_URL,
                          "amount": {"total": 1}, "time_expire": "2026-11-25T18:30:00+08:00"});
    assert_eq!(
        h.post("/v3/pay/transactions/native", &body).await.status,
        StatusCode::OK
    );
    // Earlier than now + 1 min: bumped to + 1 min.
    body["out_trade_no"] = json!("EXPIRE_02");
    body["time_expire"] = json!("2026-11-25T17:00:00+08:00");
    h.post("/v3/pay/transactions/native", &body).await;
    h.run_until(T0 + MINUTE).await;
    assert_eq!(h.query("EXPIRE_02").await["trade_state"], "CLOSED");
    assert_eq!(h.query("EXPIRE_01").await["trade_state"], "NOTPAY");
    h.run_until(T0 + 30 * MINUTE).await;
    assert_eq!(h.query("EXPIRE_01").await["trade_state"], "CLOSED");
}

#[tokio::test]
async fn refunds_partial_repeated_and_over_the_limit() {
    let h = Harness::new();
    let unpaid = h.native("ORDER_R1", 100).await;
    assert_eq!(unpaid.status, StatusCode::OK);
    let not_paid = h.refund("R1", 30, 100).await;
    assert_eq!(not_paid.status, StatusCode::NOT_FOUND);
    assert_eq!(not_paid.json()["code"], "RESOURCE_NOT_EXISTS");
    h.action("ORDER_R1", "pay").await;

    let first = h.refund("R1", 30, 100).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert!(first.verifies());
    let refund = first.json();
    assert_eq!(refund["status"], "PROCESSING");
    assert_eq!(refund["amount"]["refund"], 30);
    assert_eq!(refund["out_trade_no"], "ORDER_R1");
    assert!(refund.get("success_time").is_none());
    assert_eq!(h.query("ORDER_R1").await["trade_state"], "REFUND");

    // The same out_refund_no answers the same refund; a changed amount is refused.
    let repeat = h.refund("R1", 30, 100).await;
    assert_eq!(repeat.json()["refund_id"], refund["refund_id"]);
    assert_eq!(
        h.refund("R1", 31, 100).await.json()["code"],
        "INVALID_REQUEST"
    );
    assert_eq!(h.refund("R2", 10, 99).await.json()["code"], "PARAM_ERROR");

    let over = h.refund("R2", 71, 100).await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert_eq!(over.json()["code"], "INVALID_REQUEST");

    h.run_until(T0 + 5 * SECOND).await;
    let queried = h.get("/v3/refund/domestic/refunds/R1").await;
    assert!(queried.verifies());
    assert_eq!(queried.json()["status"], "SUCCESS");
    assert_eq!(queried.json()["success_time"], "2026-11-25T18:00:05+08:00");

    let second = h.refund("R2", 70, 100).await;
    assert_eq!(second.json()["status"], "PROCESSING");
    assert_eq!(
        h.refund("R3", 1, 100).await.json()["code"],
        "INVALID_REQUEST"
    );
    let unknown = h.get("/v3/refund/domestic/refunds/NOPE").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["code"], "RESOURCE_NOT_EXISTS");

    h.run_until(T0 + 10 * SECOND).await;
    let (_, refunds) = h
        .control(Method::GET, "/_paysim/wechatpay/refunds", None)
        .await;
    let states: Vec<(&str, &str)> = refunds["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["out_request_no"].as_str().unwrap(),
                r["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(states, [("R1", "SUCCESS"), ("R2", "SUCCESS")]);
    let (_, trade) = h
        .control(Method::GET, "/_paysim/wechatpay/trades/ORDER_R1", None)
        .await;
    assert_eq!(trade["refunded_minor"], 100);
    let (_, day) = h
        .control(
            Method::GET,
            "/_paysim/wechatpay/settlements?date=2026-11-25",
            None,
        )
        .await;
    assert_eq!(day["paid_minor"], 100);
    assert_eq!(day["refunded_minor"], 100);
    assert_eq!(day["net_minor"], 0);
}

#[tokio::test]
async fn payment_notification_retries_15s_15s_30s_then_is_acknowledged() {
    let h = Harness::new();
    let inbox = receiver(&h, 3);
    h.paid_order("NOTIFY_01", 888).await;
    h.run_until(T0 + 10 * MINUTE).await;

    let got = received(&inbox);
    let offsets: Vec<i64> = got.iter().map(|r| r.at_ms - T0).collect();
    assert_eq!(offsets, [0, 15 * SECOND, 30 * SECOND, 60 * SECOND]);
    let mut ids = Vec::new();
    for notification in &got {
        assert_eq!(notification.path, "/notify");
        assert!(
            signature_verifies(&notification.headers, &notification.body),
            "notification signature"
        );
        assert!(notification.headers.get("request-id").is_some());
        let envelope: Value = serde_json::from_str(&notification.body).unwrap();
        assert_eq!(envelope["event_type"], "TRANSACTION.SUCCESS");
        assert_eq!(envelope["resource_type"], "encrypt-resource");
        assert_eq!(envelope["resource"]["original_type"], "transaction");
        assert_eq!(envelope["resource"]["associated_data"], "transaction");
        assert_eq!(envelope["create_time"], "2026-11-25T18:00:00+08:00");
        ids.push(envelope["id"].as_str().unwrap().to_owned());
        let transaction = decrypt(&envelope["resource"]);
        assert_eq!(transaction["out_trade_no"], "NOTIFY_01");
        assert_eq!(transaction["trade_state"], "SUCCESS");
        assert_eq!(transaction["amount"]["total"], 888);
        assert_eq!(transaction["mchid"], MCHID);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "the envelope id is stable across retries");

    let (_, trade) = h
        .control(Method::GET, "/_paysim/wechatpay/trades/NOTIFY_01", None)
        .await;
    let notification = &trade["notifications"][0];
    assert_eq!(notification["state"], "acknowledged");
    assert_eq!(notification["status"], "TRANSACTION.SUCCESS");
    assert_eq!(notification["notify_id"], ids[0].as_str());
    let attempts = notification["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4);
    assert_eq!(attempts[0]["http_status"], 500);
    assert_eq!(attempts[3]["accepted"], true);
    assert!(h
        .scheduler
        .pending()
        .iter()
        .all(|e| !e.label.contains("notify")));
}

#[tokio::test]
async fn notifications_follow_the_full_schedule_then_stop() {
    let h = Harness::new();
    let inbox = receiver(&h, usize::MAX);
    h.paid_order("NOTIFY_02", 100).await;
    h.run_until(T0 + 48 * 60 * MINUTE).await;

    let offsets: Vec<i64> = received(&inbox).iter().map(|r| r.at_ms - T0).collect();
    let gaps = [
        15 * SECOND,
        15 * SECOND,
        30 * SECOND,
        3 * MINUTE,
        10 * MINUTE,
        20 * MINUTE,
        30 * MINUTE,
        30 * MINUTE,
        30 * MINUTE,
        60 * MINUTE,
        180 * MINUTE,
        180 * MINUTE,
        180 * MINUTE,
        360 * MINUTE,
        360 * MINUTE,
    ];
    let expected: Vec<i64> = std::iter::once(0)
        .chain(gaps.iter().scan(0, |at, gap| {
            *at += gap;
            Some(*at)
        }))
        .collect();
    assert_eq!(offsets, expected);
    assert_eq!(*offsets.last().unwrap(), (24 * 60 + 4) * MINUTE, "24h04m");

    let (_, trade) = h
        .control(Method::GET, "/_paysim/wechatpay/trades/NOTIFY_02", None)
        .await;
    assert_eq!(trade["notifications"][0]["state"], "given_up");
    assert_eq!(
        trade["notifications"][0]["attempts"]
            .as_array()
            .unwrap()
            .len(),
        16
    );
    assert!(h
        .scheduler
        .pending()
        .iter()
        .all(|e| !e.label.contains("notify")));
}

#[tokio::test]
async fn refund_outcomes_notify_and_can_be_armed_abnormal_or_closed() {
    let h = Harness::new();
    let inbox = receiver(&h, 0);
    h.paid_order("ORDER_R1", 100).await;
    h.arm(json!({"target": "refund", "fault": "refund_abnormal"}))
        .await;
    h.arm(json!({"target": "refund", "fault": "refund_closed"}))
        .await;
    assert_eq!(h.refund("RA", 10, 100).await.json()["status"], "PROCESSING");
    assert_eq!(h.refund("RC", 10, 100).await.json()["status"], "PROCESSING");
    assert_eq!(h.refund("RS", 10, 100).await.json()["status"], "PROCESSING");
    h.run_until(T0 + MINUTE).await;

    let refund_events: Vec<(String, Value)> = received(&inbox)
        .iter()
        .filter(|r| r.path == "/refund-notify")
        .map(|r| {
            assert!(signature_verifies(&r.headers, &r.body));
            let envelope: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(envelope["resource"]["associated_data"], "refund");
            (
                envelope["event_type"].as_str().unwrap().to_owned(),
                decrypt(&envelope["resource"]),
            )
        })
        .collect();
    let summary: Vec<(&str, &str, &str)> = refund_events
        .iter()
        .map(|(event, plain)| {
            (
                event.as_str(),
                plain["out_refund_no"].as_str().unwrap(),
                plain["refund_status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("REFUND.ABNORMAL", "RA", "ABNORMAL"),
            ("REFUND.CLOSED", "RC", "CLOSED"),
            ("REFUND.SUCCESS", "RS", "SUCCESS"),
        ]
    );
    assert_eq!(refund_events[2].1["amount"]["refund"], 10);
    // A closed refund frees its amount; an abnormal one keeps it reserved.
    assert_eq!(h.refund("RX", 80, 100).await.json()["status"], "PROCESSING");
    assert_eq!(
        h.refund("RY", 1, 100).await.json()["code"],
        "INVALID_REQUEST"
    );
}

#[tokio::test]
async fn request_faults_are_signed_or_broken_as_armed() {
    let h = Harness::new();
    h.arm(json!({"target": "pay.transactions.native", "fault": "signtest_response"}))
        .await;
    let response = h.native("FAULT_001", 1).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(header(&response.headers, "wechatpay-signature").starts_with("WECHATPAY/SIGNTEST/"));
    assert!(!response.verifies());

    h.arm(json!({"target": "*", "fault": "bad_response_signature"}))
        .await;
    let response = h.native("FAULT_002", 1).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response.json()["code_url"].is_string(), "executed");
    assert!(!response.verifies());

    h.arm(
        json!({"target": "pay.transactions.out-trade-no", "fault": "error_code",
                 "params": {"code": "FREQUENCY_LIMITED", "message": "频率超限"}}),
    )
    .await;
    let limited = h
        .get(&format!(
            "/v3/pay/transactions/out-trade-no/FAULT_002?mchid={MCHID}"
        ))
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.json()["code"], "FREQUENCY_LIMITED");
    assert!(limited.verifies());

    h.arm(
        json!({"target": "pay.transactions.native", "fault": "system_error",
                 "params": {"executed": true}}),
    )
    .await;
    let unknown = h.native("FAULT_003", 1).await;
    assert_eq!(unknown.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(unknown.json()["code"], "SYSTEM_ERROR");
    assert_eq!(
        h.query("FAULT_003").await["trade_state"],
        "NOTPAY",
        "executed first"
    );

    h.arm(json!({"target": "pay.transactions.native", "fault": "http_500"}))
        .await;
    let broken = h.native("FAULT_004", 1).await;
    assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(broken.headers.get("wechatpay-signature").is_none());
    let missing = h
        .get(&format!(
            "/v3/pay/transactions/out-trade-no/FAULT_004?mchid={MCHID}"
        ))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "not executed");

    let (status, body) = h
        .control(
            Method::POST,
            "/_paysim/wechatpay/faults",
            Some(json!({"target": "alipay.trade.query", "fault": "http_500"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/wechatpay/exchanges", None)
        .await;
    let faults: Vec<Value> = exchanges["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["fault"].clone())
        .collect();
    assert_eq!(faults[0], "signtest_response");
    assert_eq!(faults[1], "bad_response_signature");
}

#[tokio::test]
async fn notification_faults_forged_tampered_duplicated_dropped() {
    let h = Harness::new();
    let inbox = receiver(&h, 0);
    h.arm(json!({"target": "notify", "fault": "drop_notification"}))
        .await;
    h.arm(json!({"target": "notify", "fault": "forged_notification"}))
        .await;
    h.arm(json!({"target": "notify", "fault": "tampered_notification_amount"}))
        .await;
    h.arm(
        json!({"target": "notify", "fault": "duplicate_notification",
                 "params": {"copies": 3}}),
    )
    .await;
    h.paid_order("NOTIFY_03", 100).await;
    h.run_until(T0 + 2 * MINUTE).await;
    // Attempt 1 dropped; 2 forged (the receiver still says 200 here, so it ends there).
    let got = received(&inbox);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].at_ms, T0 + 15 * SECOND);
    assert!(!signature_verifies(&got[0].headers, &got[0].body), "forged");

    h.paid_order("NOTIFY_04", 100).await;
    h.run_until(T0 + 3 * MINUTE).await;
    let got = received(&inbox);
    let tampered = got.last().unwrap();
    assert!(!signature_verifies(&tampered.headers, &tampered.body));
    let envelope: Value = serde_json::from_str(&tampered.body).unwrap();
    assert_eq!(decrypt(&envelope["resource"])["amount"]["total"], 200);

    h.paid_order("NOTIFY_05", 100).await;
    h.run_until(T0 + 4 * MINUTE).await;
    let copies: Vec<Received> = received(&inbox).into_iter().skip(2).collect();
    assert_eq!(copies.len(), 3);
    assert!(copies
        .iter()
        .all(|c| signature_verifies(&c.headers, &c.body)));
    let (_, trade) = h
        .control(Method::GET, "/_paysim/wechatpay/trades/NOTIFY_03", None)
        .await;
    let attempts = trade["notifications"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["fault"], "drop_notification");
    assert_eq!(attempts[1]["fault"], "forged_notification");
}

#[tokio::test]
async fn control_plane_lists_the_channel_and_its_buyer_actions() {
    let h = Harness::new();
    let (_, channels) = h.control(Method::GET, "/_paysim/channels", None).await;
    let channel = &channels["channels"][0];
    assert_eq!(channel["name"], "wechatpay");
    assert_eq!(channel["endpoint"], format!("{BASE}/v3/"));
    assert_eq!(channel["merchants"], json!([MCHID]));
    assert!(channel["fault_targets"]
        .as_array()
        .unwrap()
        .contains(&json!("refund.domestic.refunds")));

    h.native("BUYER_001", 1).await;
    assert_eq!(h.action("BUYER_001", "scan").await.1["state"], "NOTPAY");
    assert_eq!(h.action("BUYER_001", "abandon").await.1["state"], "NOTPAY");
    assert_eq!(h.action("BUYER_001", "fail").await.1["state"], "PAYERROR");
    assert_eq!(h.query("BUYER_001").await["trade_state"], "PAYERROR");
    assert_eq!(h.action("BUYER_001", "pay").await.0, StatusCode::CONFLICT);
    assert_eq!(h.action("NOPE", "pay").await.0, StatusCode::NOT_FOUND);
    let (_, trades) = h
        .control(Method::GET, "/_paysim/wechatpay/trades", None)
        .await;
    assert_eq!(trades["trades"][0]["product"], "native");
    assert_eq!(trades["trades"][0]["trade_no"], Value::Null);
}

#[test]
fn bad_configuration_is_rejected_at_start_up() {
    let parts = |config: WechatpayMockConfig| {
        let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(T0));
        SimulatorParts {
            scheduler: Scheduler::new(Arc::clone(&clock)),
            clock,
            entropy: Arc::new(SeededEntropy::new(1)),
            transport: Arc::new(InProcessTransport::new()),
            public_base_url: BASE.into(),
            alipay: None,
            wechatpay: Some(config),
        }
    };
    assert!(Simulator::new(parts(config())).is_ok());
    let mut short_key = config();
    short_key.merchants[0].apiv3_key = "short".into();
    let mut bad_id = config();
    bad_id.public_key_id = "0119000000012025".into();
    let mut bad_pem = config();
    bad_pem.merchants[0].public_key_pem = "nope".into();
    let mut no_merchants = config();
    no_merchants.merchants.clear();
    for config in [short_key, bad_id, bad_pem, no_merchants] {
        assert!(Simulator::new(parts(config)).is_err());
    }
    assert!(!format!("{:?}", config()).contains(APIV3_KEY.trim()));
}

mod bill_wallet;
