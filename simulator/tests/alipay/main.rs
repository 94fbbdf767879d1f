//! The mock Alipay gateway and the control plane, driven through `app(sim)` by a small
//! signing client written here from the protocol notes (independent of the simulator's own
//! canonicalisation), with the committed test keys and a virtual clock.

// Marks the helpers below as test code for clippy's allow-unwrap-in-tests, as for #[test] fns.
#![cfg(test)]

mod bill;
mod buyer;
mod cert;
mod faults;
mod vectors;

use std::sync::{Arc, Mutex};

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
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use simulator::alipay::{AlipayApp, AlipayMockConfig};
use simulator::{app, Simulator, SimulatorParts};
use tower::ServiceExt;

const KEYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/vectors/alipay/keys/"
);
const APP_PRIVATE_PKCS8: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/vectors/alipay/keys/app_private_pkcs8.pem"
));
const APP_PUBLIC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/vectors/alipay/keys/app_public.pem"
));
const ALIPAY_PRIVATE_PKCS1: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/vectors/alipay/keys/alipay_private_pkcs1.pem"
));
const ALIPAY_PUBLIC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/vectors/alipay/keys/alipay_public.pem"
));

const APP_ID: &str = "2021000000000001";
const SELLER_ID: &str = "2088000000000001";
const BASE: &str = "http://sim.local:8081";
const MERCHANT: &str = "http://merchant.local";
/// 2026-11-25T10:00:00Z = 2026-11-25 18:00:00 in Beijing.
const T0: i64 = 1_795_600_800_000;
const MINUTE: i64 = 60_000;

// ---------------------------------------------------------------- the independent client

fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// Sorted `k=v` joined by `&`, without the excluded keys and empty values.
fn canonical(pairs: &[(String, String)], excluded: &[&str]) -> String {
    let mut kept: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, v)| !v.is_empty() && !excluded.contains(&k.as_str()))
        .collect();
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn verify_alipay(message: &str, sign_b64: &str) -> bool {
    let signature = STANDARD.decode(sign_b64).unwrap();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der_of(ALIPAY_PUBLIC))
        .verify(message.as_bytes(), &signature)
        .is_ok()
}

struct Client {
    key: RsaKeyPair,
    app_id: String,
}

impl Client {
    fn new() -> Self {
        Self {
            key: RsaKeyPair::from_pkcs8(&der_of(APP_PRIVATE_PKCS8)).unwrap(),
            app_id: APP_ID.into(),
        }
    }

    fn sign(&self, content: &str) -> String {
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                content.as_bytes(),
                &mut signature,
            )
            .unwrap();
        STANDARD.encode(signature)
    }

    /// The common params plus biz_content and extras, signed (sign last).
    fn params(&self, method: &str, biz: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = vec![
            ("app_id".into(), self.app_id.clone()),
            ("method".into(), method.into()),
            ("charset".into(), "utf-8".into()),
            ("sign_type".into(), "RSA2".into()),
            ("timestamp".into(), "2026-11-25 18:00:00".into()),
            ("version".into(), "1.0".into()),
            ("biz_content".into(), biz.into()),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push(((*k).into(), (*v).into()));
        }
        let sign = self.sign(&canonical(&pairs, &["sign"]));
        pairs.push(("sign".into(), sign));
        pairs
    }

    /// Node/official-Python style: common params in the query, biz_content in a form body.
    fn post(&self, method: &str, biz: &str, extra: &[(&str, &str)]) -> Request<Body> {
        post_request(&self.params(method, biz, extra), "/alipay/gateway.do")
    }

    /// python-alipay-sdk style: everything in the query of a GET.
    fn get(&self, method: &str, biz: &str, extra: &[(&str, &str)]) -> Request<Body> {
        let query = encode(&self.params(method, biz, extra));
        Request::get(format!("/alipay/gateway.do?{query}"))
            .body(Body::empty())
            .unwrap()
    }
}

fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

fn post_request(pairs: &[(String, String)], target: &str) -> Request<Body> {
    let (body, query): (Vec<_>, Vec<_>) =
        pairs.iter().cloned().partition(|(k, _)| k == "biz_content");
    Request::post(format!("{target}?{}", encode(&query)))
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=utf-8",
        )
        .body(Body::from(encode(&body)))
        .unwrap()
}

/// Checks the response shape and signature, and returns the node.
fn verified_node(text: &str, method: &str) -> Value {
    let (node_text, sign) = split_response(text, method);
    assert!(verify_alipay(node_text, sign), "response signature: {text}");
    serde_json::from_str(node_text).unwrap()
}

fn split_response<'t>(text: &'t str, method: &str) -> (&'t str, &'t str) {
    let prefix = format!("{{\"{}_response\":", method.replace('.', "_"));
    assert!(text.starts_with(&prefix), "node first: {text}");
    let at = text.rfind(",\"sign\":\"").expect("sign after node");
    assert!(text.ends_with("\"}"), "sign last: {text}");
    (&text[prefix.len()..at], &text[at + 9..text.len() - 2])
}

// ---------------------------------------------------------------- the harness

struct Harness {
    clock: VirtualClock,
    scheduler: Scheduler,
    transport: InProcessTransport,
    sim: Simulator,
    client: Client,
}

impl Harness {
    fn new() -> Self {
        Self::with_alipay(AlipayMockConfig {
            alipay_private_key_pem: ALIPAY_PRIVATE_PKCS1.into(),
            apps: vec![AlipayApp {
                app_id: APP_ID.into(),
                app_public_key_pem: APP_PUBLIC.into(),
                app_cert_pem: None,
            }],
            seller_id: SELLER_ID.into(),
            certificates: None,
        })
    }

    fn with_alipay(config: AlipayMockConfig) -> Self {
        let clock = VirtualClock::new(T0);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let scheduler = Scheduler::new(Arc::clone(&shared));
        let transport = InProcessTransport::new();
        let sim = Simulator::new(SimulatorParts {
            clock: shared,
            scheduler: scheduler.clone(),
            entropy: Arc::new(SeededEntropy::new(7)),
            transport: Arc::new(transport.clone()),
            public_base_url: BASE.into(),
            wechatpay: None,
            alipay: Some(config),
        })
        .unwrap();
        Self {
            clock,
            scheduler,
            transport,
            sim,
            client: Client::new(),
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, String) {
        let response = app(self.sim.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// A POST-form call; returns the verified node.
    async fn call(&self, method: &str, biz: Value, extra: &[(&str, &str)]) -> Value {
        let (status, text) = self
            .send(self.client.post(method, &biz.to_string(), extra))
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        verified_node(&text, method)
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
        let (status, text) = self.send(request).await;
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn action(&self, out_trade_no: &str, action: &str) -> (StatusCode, Value) {
        self.control(
            Method::POST,
            &format!("/_paysim/alipay/trades/{out_trade_no}/actions"),
            Some(json!({ "action": action })),
        )
        .await
    }

    async fn arm(&self, spec: Value) {
        let (status, body) = self
            .control(Method::POST, "/_paysim/alipay/faults", Some(spec))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn precreate(&self, out_trade_no: &str, amount: &str, notify: bool) -> Value {
        let extra: &[(&str, &str)] = if notify {
            &[("notify_url", "http://merchant.local/notify")]
        } else {
            &[]
        };
        self.call(
            "alipay.trade.precreate",
            json!({"out_trade_no": out_trade_no, "total_amount": amount, "subject": "demo 中文"}),
            extra,
        )
        .await
    }

    async fn query(&self, out_trade_no: &str) -> Value {
        self.call(
            "alipay.trade.query",
            json!({ "out_trade_no": out_trade_no }),
            &[],
        )
        .await
    }

    async fn run_until(&self, until_ms: i64) -> usize {
        run_virtual_until(&self.scheduler, &self.clock, until_ms).await
    }
}

/// A merchant notify endpoint that answers `fail` `failures` times, then `success`, and
/// records (time, form pairs) of every POST.
type Received = Arc<Mutex<Vec<(i64, Vec<(String, String)>)>>>;

fn receiver(harness: &Harness, failures: usize) -> Received {
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&received);
    let clock = harness.clock.clone();
    let router = Router::new().route(
        "/notify",
        post(move |body: axum::body::Bytes| {
            let log = Arc::clone(&log);
            let clock = clock.clone();
            async move {
                let pairs: Vec<(String, String)> =
                    form_urlencoded::parse(&body).into_owned().collect();
                let mut log = log.lock().unwrap();
                log.push((clock.now_ms(), pairs));
                if log.len() <= failures {
                    "fail"
                } else {
                    "success"
                }
            }
        }),
    );
    harness.transport.register(MERCHANT, router);
    received
}

fn field<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn notification_verifies(pairs: &[(String, String)]) -> bool {
    let sign = field(pairs, "sign").unwrap();
    verify_alipay(&canonical(pairs, &["sign", "sign_type"]), sign)
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn precreate_scan_pay_query() {
    let h = Harness::new();
    let node = h.precreate("ORDER_1", "88.88", false).await;
    assert_eq!(node["code"], "10000");
    assert_eq!(node["out_trade_no"], "ORDER_1");
    let qr = node["qr_code"].as_str().unwrap();
    assert!(
        qr.starts_with("http://sim.local:8081/alipay/qr/bax"),
        "{qr}"
    );

    // The trade does not exist before the buyer scans.
    let node = h.query("ORDER_1").await;
    assert_eq!(node["code"], "40004");
    assert_eq!(node["sub_code"], "ACQ.TRADE_NOT_EXIST");
    let node = h
        .call(
            "alipay.trade.close",
            json!({"out_trade_no": "ORDER_1"}),
            &[],
        )
        .await;
    assert_eq!(node["sub_code"], "ACQ.TRADE_NOT_EXIST");

    let (status, view) = h.action("ORDER_1", "scan").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "WAIT_BUYER_PAY");
    let node = h.query("ORDER_1").await;
    assert_eq!(node["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(node["buyer_pay_amount"], "0.00");

    let (status, view) = h.action("ORDER_1", "pay").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["state"], "TRADE_SUCCESS");
    assert_eq!(view["amount_minor"], 8888);
    assert_eq!(view["currency"], "CNY");
    let node = h.query("ORDER_1").await;
    assert_eq!(node["code"], "10000");
    assert_eq!(node["trade_status"], "TRADE_SUCCESS");
    assert_eq!(node["total_amount"], "88.88");
    assert_eq!(node["receipt_amount"], "88.88");
    assert_eq!(node["send_pay_date"], "2026-11-25 18:00:00");
    let trade_no = node["trade_no"].as_str().unwrap();
    assert_eq!(trade_no.len(), 28);
    assert!(trade_no.starts_with("20261125"));
    assert!(node["buyer_user_id"].as_str().unwrap().starts_with("2088"));

    // trade_no wins over out_trade_no.
    let node = h
        .call(
            "alipay.trade.query",
            json!({"trade_no": trade_no, "out_trade_no": "nope"}),
            &[],
        )
        .await;
    assert_eq!(node["out_trade_no"], "ORDER_1");

    // A second pay is refused by the control plane: terminal states are monotonic.
    let (status, body) = h.action("ORDER_1", "pay").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "invalid_action");

    // The QR landing page exists and the repeat precreate is idempotent / refused when paid.
    let (status, page) = h
        .send(Request::get(&qr[BASE.len()..]).body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("TRADE_SUCCESS"));
    let node = h.precreate("ORDER_1", "88.88", false).await;
    assert_eq!(node["sub_code"], "ACQ.TRADE_HAS_SUCCESS");
}

#[tokio::test]
async fn qr_page_buttons_drive_the_buyer() {
    let h = Harness::new();
    let node = h.precreate("ORDER_QR", "1.00", false).await;
    let path = node["qr_code"].as_str().unwrap()[BASE.len()..].to_owned();
    let request = Request::post(&path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("action=pay"))
        .unwrap();
    let (status, _) = h.send(request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(h.query("ORDER_QR").await["trade_status"], "TRADE_SUCCESS");
}

#[tokio::test]
async fn bad_signature_is_answered_inside_the_node_and_signed() {
    let h = Harness::new();
    let mut pairs = h
        .client
        .params("alipay.trade.query", r#"{"out_trade_no":"X"}"#, &[]);
    // Tamper after signing.
    pairs
        .iter_mut()
        .find(|(k, _)| k == "biz_content")
        .unwrap()
        .1 = r#"{"out_trade_no":"Y"}"#.into();
    let (status, text) = h.send(post_request(&pairs, "/alipay/gateway.do")).await;
    assert_eq!(status, StatusCode::OK);
    let node = verified_node(&text, "alipay.trade.query");
    assert_eq!(node["code"], "40002");
    assert_eq!(node["msg"], "Invalid Arguments");
    assert_eq!(node["sub_code"], "isv.invalid-signature");
    assert!(node["sub_msg"].as_str().unwrap().contains("sign_type=RSA2"));

    // Missing sign; legacy RSA; bad timestamp; unknown method; missing method.
    let mut pairs = h.client.params("alipay.trade.query", "{}", &[]);
    pairs.retain(|(k, _)| k != "sign");
    let (_, text) = h.send(post_request(&pairs, "/alipay/gateway.do")).await;
    assert_eq!(
        verified_node(&text, "alipay.trade.query")["sub_code"],
        "isv.missing-signature"
    );
    let node = h
        .call("alipay.trade.query", json!({}), &[("sign_type", "RSA")])
        .await;
    assert_eq!(node["sub_code"], "isv.invalid-signature-type");
    let node = h
        .call(
            "alipay.trade.query",
            json!({}),
            &[("timestamp", "2026/11/25 18:00:00")],
        )
        .await;
    assert_eq!(node["sub_code"], "isv.invalid-timestamp");
    let node = h.call("alipay.trade.nonsense", json!({}), &[]).await;
    assert_eq!(
        (node["code"].as_str(), node["sub_code"].as_str()),
        (Some("40002"), Some("isv.invalid-method"))
    );
    let mut pairs = h.client.params("x", "{}", &[]);
    pairs.retain(|(k, _)| k != "method");
    let (_, text) = h.send(post_request(&pairs, "/alipay/gateway.do")).await;
    let node = verified_node(&text, "error");
    assert_eq!(
        (node["code"].as_str(), node["sub_code"].as_str()),
        (Some("40001"), Some("isv.missing-method"))
    );

    // The exchange log keeps the verdicts.
    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/alipay/exchanges", None)
        .await;
    let first = &exchanges["exchanges"][0];
    assert_eq!(first["signature"]["verdict"], "invalid");
    assert_eq!(first["sub_code"], "isv.invalid-signature");
    assert_eq!(exchanges["exchanges"][1]["signature"]["verdict"], "missing");
}

#[tokio::test]
async fn unknown_app_and_malformed_biz_content() {
    let h = Harness::new();
    let node = h
        .call(
            "alipay.trade.query",
            json!({"out_trade_no": "X"}),
            &[("app_id", "2021999999999999")],
        )
        .await;
    assert_eq!(node["code"], "40002");
    assert_eq!(node["sub_code"], "isv.invalid-app-id");

    let (_, text) = h
        .send(h.client.post("alipay.trade.query", "{not json", &[]))
        .await;
    let node = verified_node(&text, "alipay.trade.query");
    assert_eq!(node["code"], "40002");
    assert_eq!(node["sub_code"], "isv.invalid-parameter");
    assert!(node["sub_msg"].as_str().unwrap().contains("biz_content"));
}

#[tokio::test]
async fn get_form_post_form_and_absolute_targets_all_verify() {
    let h = Harness::new();
    let biz = r#"{"out_trade_no":"ORDER_GET","total_amount":"1.00","subject":"get"}"#;
    let (_, text) = h
        .send(h.client.get("alipay.trade.precreate", biz, &[]))
        .await;
    assert_eq!(
        verified_node(&text, "alipay.trade.precreate")["code"],
        "10000"
    );

    let biz = r#"{"out_trade_no":"ORDER_POST","total_amount":"1.00","subject":"post"}"#;
    let (_, text) = h
        .send(h.client.post("alipay.trade.precreate", biz, &[]))
        .await;
    assert_eq!(
        verified_node(&text, "alipay.trade.precreate")["code"],
        "10000"
    );

    // The official Python SDK's absolute-form request target.
    let biz = r#"{"out_trade_no":"ORDER_ABS","total_amount":"1.00","subject":"abs"}"#;
    let pairs = h
        .client
        .params("alipay.trade.precreate", biz, &[("format", "json")]);
    let request = post_request(&pairs, "http://sim.local:8081/alipay/gateway.do");
    let (_, text) = h.send(request).await;
    assert_eq!(
        verified_node(&text, "alipay.trade.precreate")["code"],
        "10000"
    );

    // Unknown extra params are signed too and must be tolerated.
    let biz = r#"{"out_trade_no":"ORDER_EXTRA","total_amount":"1.00","subject":"x"}"#;
    let request = h.client.post(
        "alipay.trade.precreate",
        biz,
        &[("alipay_sdk", "alipay-sdk-nodejs-4.0.0")],
    );
    let (_, text) = h.send(request).await;
    assert_eq!(
        verified_node(&text, "alipay.trade.precreate")["code"],
        "10000"
    );
}

#[tokio::test]
async fn biz_content_is_verified_as_received_escaped_or_sorted() {
    let h = Harness::new();
    // python-alipay-sdk: insertion order with \uXXXX escapes.
    let escaped =
        r#"{"out_trade_no":"ORDER_U","total_amount":"2.50","subject":"demo \u4e2d\u6587"}"#;
    let (_, text) = h
        .send(h.client.get("alipay.trade.precreate", escaped, &[]))
        .await;
    assert_eq!(
        verified_node(&text, "alipay.trade.precreate")["code"],
        "10000"
    );
    // Official Python: sorted keys, raw UTF-8.
    let sorted = r#"{"out_trade_no":"ORDER_S","subject":"demo 中文","total_amount":"2.50"}"#;
    let (_, text) = h
        .send(h.client.post("alipay.trade.precreate", sorted, &[]))
        .await;
    assert_eq!(
        verified_node(&text, "alipay.trade.precreate")["code"],
        "10000"
    );
    let (_, view) = h
        .control(Method::GET, "/_paysim/alipay/trades/ORDER_U", None)
        .await;
    assert_eq!(view["amount"], "2.50");
    assert_eq!(view["exists_at_channel"], false);
}

#[tokio::test]
async fn amounts_and_inconsistent_repeats() {
    let h = Harness::new();
    let node = h.precreate("ORDER_A", "1.001", false).await;
    assert_eq!(node["sub_code"], "ACQ.INVALID_PARAMETER");
    let node = h.precreate("ORDER_A", "100000000.01", false).await;
    assert_eq!(node["sub_code"], "ACQ.TOTAL_FEE_EXCEED");
    assert_eq!(
        h.precreate("ORDER_A", "100000000", false).await["code"],
        "10000"
    );
    let node = h.precreate("ORDER_A", "99.00", false).await;
    assert_eq!(node["sub_code"], "ACQ.CONTEXT_INCONSISTENT");
    let node = h
        .call(
            "alipay.trade.precreate",
            json!({"out_trade_no": "bad-no", "total_amount": "1", "subject": "s"}),
            &[],
        )
        .await;
    assert_eq!(node["sub_code"], "ACQ.INVALID_PARAMETER");
}

#[tokio::test]
async fn refunds_partial_repeated_over_and_full() {
    let h = Harness::new();
    h.precreate("ORDER_R", "10.00", false).await;
    h.action("ORDER_R", "pay").await;
    let refund = |no: &'static str, amount: &'static str| {
        let biz = json!({"out_trade_no": "ORDER_R", "refund_amount": amount, "out_request_no": no});
        h.call("alipay.trade.refund", biz, &[])
    };
    let node = refund("R1", "3.00").await;
    assert_eq!(
        (node["code"].as_str(), node["fund_change"].as_str()),
        (Some("10000"), Some("Y"))
    );
    assert_eq!(node["refund_fee"], "3.00");
    // Same out_request_no, same amount: success without moving money.
    let node = refund("R1", "3.00").await;
    assert_eq!(
        (node["code"].as_str(), node["fund_change"].as_str()),
        (Some("10000"), Some("N"))
    );
    assert_eq!(node["refund_fee"], "3.00");
    // Same number, other amount.
    assert_eq!(
        refund("R1", "4.00").await["sub_code"],
        "ACQ.DISCORDANT_REPEAT_REQUEST"
    );
    // More than what is left.
    assert_eq!(
        refund("R2", "7.01").await["sub_code"],
        "ACQ.REASON_TRADE_REFUND_FEE_ERR"
    );
    // Partial refund without out_request_no.
    let node = h
        .call(
            "alipay.trade.refund",
            json!({"out_trade_no": "ORDER_R", "refund_amount": "1.00"}),
            &[],
        )
        .await;
    assert_eq!(node["sub_code"], "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL");
    assert_eq!(h.query("ORDER_R").await["trade_status"], "TRADE_SUCCESS");
    let node = refund("R2", "7.00").await;
    assert_eq!(node["refund_fee"], "10.00");
    assert_eq!(h.query("ORDER_R").await["trade_status"], "TRADE_CLOSED");
    assert_eq!(
        refund("R3", "0.01").await["sub_code"],
        "ACQ.TRADE_HAS_CLOSE"
    );
    assert_eq!(refund("R2", "7.00").await["fund_change"], "N");

    let node = h
        .call(
            "alipay.trade.fastpay.refund.query",
            json!({"out_trade_no": "ORDER_R", "out_request_no": "R1"}),
            &[],
        )
        .await;
    assert_eq!(node["refund_status"], "REFUND_SUCCESS");
    assert_eq!(node["refund_amount"], "3.00");
    assert_eq!(node["total_amount"], "10.00");
    let node = h
        .call(
            "alipay.trade.fastpay.refund.query",
            json!({"out_trade_no": "ORDER_R", "out_request_no": "R9"}),
            &[],
        )
        .await;
    assert_eq!(node["code"], "10000");
    assert!(node.get("refund_status").is_none());

    let (_, refunds) = h
        .control(Method::GET, "/_paysim/alipay/refunds", None)
        .await;
    assert_eq!(refunds["refunds"].as_array().unwrap().len(), 2);
    let (_, view) = h
        .control(Method::GET, "/_paysim/alipay/trades/ORDER_R", None)
        .await;
    assert_eq!(view["refunded_minor"], 1000);
    let (_, day) = h
        .control(
            Method::GET,
            "/_paysim/alipay/settlements?date=2026-11-25",
            None,
        )
        .await;
    assert_eq!(
        (day["paid_minor"].as_i64(), day["refunded_minor"].as_i64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(day["net_amount"], "0.00");

    // Refund on an unpaid trade.
    h.call(
        "alipay.trade.create",
        json!({"out_trade_no": "ORDER_U", "total_amount": "1", "subject": "s"}),
        &[],
    )
    .await;
    let node = h
        .call(
            "alipay.trade.refund",
            json!({"out_trade_no": "ORDER_U", "refund_amount": "1", "out_request_no": "X"}),
            &[],
        )
        .await;
    assert_eq!(node["sub_code"], "ACQ.TRADE_STATUS_ERROR");
}

#[tokio::test]
async fn close_and_cancel() {
    let h = Harness::new();
    let node = h
        .call(
            "alipay.trade.create",
            json!({"out_trade_no": "ORDER_C", "total_amount": "5", "subject": "s"}),
            &[],
        )
        .await;
    assert_eq!(node["code"], "10000");
    assert_eq!(node["trade_no"].as_str().unwrap().len(), 28);
    assert_eq!(h.query("ORDER_C").await["trade_status"], "WAIT_BUYER_PAY");
    let node = h
        .call(
            "alipay.trade.close",
            json!({"out_trade_no": "ORDER_C"}),
            &[],
        )
        .await;
    assert_eq!(node["code"], "10000");
    assert_eq!(h.query("ORDER_C").await["trade_status"], "TRADE_CLOSED");
    let node = h
        .call(
            "alipay.trade.close",
            json!({"out_trade_no": "ORDER_C"}),
            &[],
        )
        .await;
    assert_eq!(node["sub_code"], "ACQ.TRADE_HAS_CLOSE");
    assert_eq!(h.action("ORDER_C", "pay").await.0, StatusCode::CONFLICT);

    // Cancel an unpaid barcode trade: close.
    let pay = |no: &'static str, code: &'static str| {
        let biz = json!({"out_trade_no": no, "scene": "bar_code", "auth_code": code, "total_amount": "5.00", "subject": "s"});
        h.call("alipay.trade.pay", biz, &[])
    };
    assert_eq!(pay("ORDER_W", "281234567890120003").await["code"], "10003");
    let node = h
        .call(
            "alipay.trade.cancel",
            json!({"out_trade_no": "ORDER_W"}),
            &[],
        )
        .await;
    assert_eq!(
        (node["action"].as_str(), node["retry_flag"].as_str()),
        (Some("close"), Some("N"))
    );
    assert_eq!(h.query("ORDER_W").await["trade_status"], "TRADE_CLOSED");

    // Cancel a paid trade: refund, and a repeat answers the same.
    assert_eq!(pay("ORDER_P", "281234567890121111").await["code"], "10000");
    let node = h
        .call(
            "alipay.trade.cancel",
            json!({"out_trade_no": "ORDER_P"}),
            &[],
        )
        .await;
    assert_eq!(node["action"], "refund");
    assert_eq!(node["gmt_refund_pay"], "2026-11-25 18:00:00");
    let node = h
        .call(
            "alipay.trade.cancel",
            json!({"out_trade_no": "ORDER_P"}),
            &[],
        )
        .await;
    assert_eq!(node["action"], "refund");
    assert_eq!(h.query("ORDER_P").await["trade_status"], "TRADE_CLOSED");
    let node = h
        .call("alipay.trade.cancel", json!({"out_trade_no": "NOPE"}), &[])
        .await;
    assert_eq!(node["sub_code"], "ACQ.TRADE_NOT_EXIST");
}

#[tokio::test]
async fn barcode_outcomes_follow_the_auth_code_table() {
    let h = Harness::new();
    let pay = |no: &'static str, code: &'static str| {
        let biz = json!({"out_trade_no": no, "scene": "bar_code", "auth_code": code, "total_amount": "12.34", "subject": "s"});
        h.call("alipay.trade.pay", biz, &[])
    };
    let node = pay("B_WAIT", "281234567890120003").await;
    assert_eq!(node["code"], "10003");
    assert_eq!(node["msg"], " order success pay inprocess");
    assert_eq!(h.query("B_WAIT").await["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(pay("B_WAIT", "281234567890120003").await["code"], "10003");
    let (status, _) = h.action("B_WAIT", "pay").await;
    assert_eq!(status, StatusCode::OK);
    let node = h.query("B_WAIT").await;
    assert_eq!(node["trade_status"], "TRADE_SUCCESS");
    assert_eq!(node["buyer_pay_amount"], "12.34");

    let node = pay("B_OK", "281234567890125678").await;
    assert_eq!(node["code"], "10000");
    assert_eq!(node["gmt_payment"], "2026-11-25 18:00:00");
    assert_eq!(node["fund_bill_list"][0]["amount"], "12.34");

    let node = pay("B_FAIL", "281234567890124004").await;
    assert_eq!(node["sub_code"], "ACQ.PAYMENT_FAIL");
    assert_eq!(h.query("B_FAIL").await["trade_status"], "TRADE_CLOSED");
    assert_eq!(
        pay("B_FAIL", "281234567890124004").await["sub_code"],
        "ACQ.TRADE_HAS_CLOSE"
    );

    let node = pay("B_UNKNOWN", "281234567890122000").await;
    assert_eq!(node["code"], "20000");
    assert_eq!(h.query("B_UNKNOWN").await["trade_status"], "TRADE_SUCCESS");

    assert_eq!(
        pay("B_BAD", "12345").await["sub_code"],
        "ACQ.PAYMENT_AUTH_CODE_INVALID"
    );

    // A buyer who fails the password step closes the trade.
    pay("B_DECLINE", "281234567890120003").await;
    assert_eq!(
        h.action("B_DECLINE", "fail").await.1["state"],
        "TRADE_CLOSED"
    );
}

#[tokio::test]
async fn notifications_retry_on_schedule_until_success() {
    let h = Harness::new();
    let received = receiver(&h, 3);
    h.precreate("ORDER_N", "88.88", true).await;
    h.action("ORDER_N", "pay").await;
    h.run_until(T0 + 2 * 3_600_000).await;

    let received = received.lock().unwrap().clone();
    let times: Vec<i64> = received.iter().map(|(at, _)| at - T0).collect();
    assert_eq!(times, [0, 4 * MINUTE, 14 * MINUTE, 24 * MINUTE]);
    let ids: Vec<&str> = received
        .iter()
        .map(|(_, p)| field(p, "notify_id").unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "stable notify_id: {ids:?}"
    );
    for (_, pairs) in &received {
        assert!(notification_verifies(pairs), "{pairs:?}");
        assert!(pairs.iter().all(|(_, v)| !v.is_empty()), "no empty fields");
        assert_eq!(field(pairs, "trade_status"), Some("TRADE_SUCCESS"));
        assert_eq!(field(pairs, "total_amount"), Some("88.88"));
        assert_eq!(field(pairs, "seller_id"), Some(SELLER_ID));
        assert_eq!(field(pairs, "app_id"), Some(APP_ID));
        assert_eq!(field(pairs, "sign_type"), Some("RSA2"));
        assert_eq!(field(pairs, "subject"), Some("demo 中文"));
    }
    assert_eq!(
        field(&received[1].1, "notify_time"),
        Some("2026-11-25 18:04:00")
    );

    let (_, view) = h
        .control(Method::GET, "/_paysim/alipay/trades/ORDER_N", None)
        .await;
    let notification = &view["notifications"][0];
    assert_eq!(notification["state"], "acknowledged");
    assert_eq!(notification["notify_id"], ids[0]);
    let attempts = notification["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4);
    assert_eq!(attempts[0]["body_excerpt"], "fail");
    assert_eq!(attempts[0]["accepted"], false);
    assert_eq!(attempts[3]["accepted"], true);
    assert_eq!(attempts[3]["http_status"], 200);

    // A partial refund re-notifies TRADE_SUCCESS with the refund fields (F2F triggers).
    h.call(
        "alipay.trade.refund",
        json!({"out_trade_no": "ORDER_N", "refund_amount": "8.88", "out_request_no": "RN1"}),
        &[],
    )
    .await;
    h.run_until(T0 + 3 * 3_600_000).await;
    let received = received_clone(&h, "ORDER_N").await;
    assert_eq!(received, 2);
}

async fn received_clone(h: &Harness, out_trade_no: &str) -> usize {
    let (_, view) = h
        .control(
            Method::GET,
            &format!("/_paysim/alipay/trades/{out_trade_no}"),
            None,
        )
        .await;
    view["notifications"].as_array().unwrap().len()
}

#[tokio::test]
async fn notifications_give_up_after_eight_attempts() {
    let h = Harness::new();
    let received = receiver(&h, usize::MAX);
    h.precreate("ORDER_G", "1.00", true).await;
    h.action("ORDER_G", "pay").await;
    h.run_until(T0 + 48 * 3_600_000).await;
    let times: Vec<i64> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(at, _)| (at - T0) / MINUTE)
        .collect();
    assert_eq!(times, [0, 4, 14, 24, 84, 204, 564, 1464]);
    let (_, view) = h
        .control(Method::GET, "/_paysim/alipay/trades/ORDER_G", None)
        .await;
    assert_eq!(view["notifications"][0]["state"], "given_up");
    assert_eq!(h.scheduler.next_due_ms(), None);
}

#[tokio::test]
async fn fault_bad_response_signature() {
    let h = Harness::new();
    h.arm(json!({"target": "alipay.trade.precreate", "fault": "bad_response_signature"}))
        .await;
    let biz = r#"{"out_trade_no":"ORDER_F","total_amount":"1.00","subject":"f"}"#;
    let (_, text) = h
        .send(h.client.post("alipay.trade.precreate", biz, &[]))
        .await;
    let (node_text, sign) = split_response(&text, "alipay.trade.precreate");
    assert!(
        !verify_alipay(node_text, sign),
        "the fault must break verification"
    );
    // The request was executed: a second call (fault spent) verifies and is idempotent.
    let (_, text) = h
        .send(h.client.post("alipay.trade.precreate", biz, &[]))
        .await;
    assert_eq!(
        verified_node(&text, "alipay.trade.precreate")["code"],
        "10000"
    );

    let (_, faults) = h.control(Method::GET, "/_paysim/alipay/faults", None).await;
    assert_eq!(faults["faults"][0]["fired"], 1);
    assert_eq!(faults["faults"][0]["remaining"], 0);
    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/alipay/exchanges", None)
        .await;
    assert_eq!(exchanges["exchanges"][0]["fault"], "bad_response_signature");
}

#[tokio::test]
async fn faults_error_code_system_error_and_http_500() {
    let h = Harness::new();
    h.arm(json!({"target": "*", "fault": "error_code", "params": {"sub_code": "ACQ.SELLER_BALANCE_NOT_ENOUGH", "sub_msg": "卖家余额不足"}}))
        .await;
    let node = h.query("X").await;
    assert_eq!(
        (node["code"].as_str(), node["sub_code"].as_str()),
        (Some("40004"), Some("ACQ.SELLER_BALANCE_NOT_ENOUGH"))
    );
    // The unexecuted request is still logged against the order it named.
    let (_, exchanges) = h
        .control(Method::GET, "/_paysim/alipay/exchanges", None)
        .await;
    let last = exchanges["exchanges"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["fault"].as_str(), last["out_trade_no"].as_str()),
        (Some("error_code"), Some("X"))
    );

    h.arm(json!({"target": "alipay.trade.create", "fault": "system_error", "params": {"executed": true}})).await;
    let biz = json!({"out_trade_no": "ORDER_SE", "total_amount": "1", "subject": "s"});
    let node = h.call("alipay.trade.create", biz, &[]).await;
    assert_eq!(
        (node["code"].as_str(), node["sub_code"].as_str()),
        (Some("20000"), Some("ACQ.SYSTEM_ERROR"))
    );
    assert_eq!(
        h.query("ORDER_SE").await["trade_status"],
        "WAIT_BUYER_PAY",
        "executed despite the error"
    );

    h.arm(json!({"target": "alipay.trade.query", "fault": "http_500", "times": 2}))
        .await;
    for _ in 0..2 {
        let (status, _) = h
            .send(
                h.client
                    .post("alipay.trade.query", r#"{"out_trade_no":"ORDER_SE"}"#, &[]),
            )
            .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(h.query("ORDER_SE").await["code"], "10000");

    let (status, body) = h
        .control(Method::DELETE, "/_paysim/alipay/faults", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["removed"], 3);
    let (status, body) = h
        .control(
            Method::POST,
            "/_paysim/alipay/faults",
            Some(json!({"target": "notify", "fault": "http_500"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_target");
    let (status, body) = h
        .control(
            Method::POST,
            "/_paysim/alipay/faults",
            Some(json!({"target": "*", "fault": "meteor"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_fault"))
    );
}

#[tokio::test]
async fn notification_faults_duplicate_forged_tampered_dropped() {
    let h = Harness::new();
    let received = receiver(&h, 0);
    h.arm(json!({"target": "notify", "fault": "duplicate_notification"}))
        .await;
    h.precreate("ORDER_D", "3.00", true).await;
    h.action("ORDER_D", "pay").await;
    h.run_until(T0 + MINUTE).await;
    {
        let log = received.lock().unwrap();
        assert_eq!(log.len(), 2, "two copies");
        assert_eq!(log[0].1, log[1].1);
        assert!(notification_verifies(&log[0].1));
    }

    received.lock().unwrap().clear();
    h.arm(json!({"target": "notify", "fault": "forged_notification"}))
        .await;
    h.arm(json!({"target": "notify", "fault": "tampered_notification_amount"}))
        .await;
    h.arm(json!({"target": "notify", "fault": "drop_notification"}))
        .await;
    h.precreate("ORDER_E", "3.00", true).await;
    h.action("ORDER_E", "pay").await;
    h.precreate("ORDER_T", "3.00", true).await;
    h.action("ORDER_T", "pay").await;
    h.precreate("ORDER_X", "3.00", true).await;
    h.action("ORDER_X", "pay").await;
    h.run_until(T0 + 2 * MINUTE).await;
    {
        let log = received.lock().unwrap();
        assert_eq!(log.len(), 2, "the third is dropped");
        assert!(!notification_verifies(&log[0].1), "forged");
        assert!(!notification_verifies(&log[1].1), "tampered");
        assert_eq!(field(&log[1].1, "total_amount"), Some("4.00"));
    }
    // The merchant acknowledged the forged and tampered ones (this receiver trusts blindly);
    // the dropped one is re-sent on schedule and verifies.
    h.run_until(T0 + 10 * MINUTE).await;
    {
        let log = received.lock().unwrap();
        assert_eq!(log.len(), 3);
        assert_eq!(field(&log[2].1, "out_trade_no"), Some("ORDER_X"));
        assert!(notification_verifies(&log[2].1));
    }
    let (_, view) = h
        .control(Method::GET, "/_paysim/alipay/trades/ORDER_X", None)
        .await;
    let attempts = &view["notifications"][0]["attempts"];
    assert_eq!(attempts[0]["fault"], "drop_notification");
    assert_eq!(attempts[1]["accepted"], true);
}

#[tokio::test]
async fn trades_expire_on_the_scheduler() {
    let h = Harness::new();
    h.call(
        "alipay.trade.create",
        json!({"out_trade_no": "ORDER_EXP", "total_amount": "1", "subject": "s", "timeout_express": "5m"}),
        &[],
    )
    .await;
    h.run_until(T0 + 4 * MINUTE).await;
    assert_eq!(h.query("ORDER_EXP").await["trade_status"], "WAIT_BUYER_PAY");
    h.run_until(T0 + 5 * MINUTE).await;
    assert_eq!(h.query("ORDER_EXP").await["trade_status"], "TRADE_CLOSED");

    // An unscanned QR code lapses after 2 h; the number can then be precreated again.
    h.precreate("ORDER_QX", "1.00", false).await;
    h.run_until(T0 + 5 * MINUTE + 2 * 3_600_000).await;
    let (status, body) = h.action("ORDER_QX", "scan").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_action"))
    );
    assert_eq!(
        h.precreate("ORDER_QX", "1.00", false).await["code"],
        "10000"
    );

    let node = h
        .call("alipay.trade.create", json!({"out_trade_no": "O2", "total_amount": "1", "subject": "s", "timeout_express": "1.5h"}), &[])
        .await;
    assert_eq!(node["sub_code"], "ACQ.INVALID_PARAMETER");
}

#[tokio::test]
async fn control_plane_routes_and_errors() {
    let h = Harness::new();
    let (status, body) = h.control(Method::GET, "/_paysim/channels", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["channels"][0]["name"], "alipay");
    assert_eq!(
        body["channels"][0]["endpoint"],
        "http://sim.local:8081/alipay/gateway.do"
    );
    let (_, catalogue) = h
        .control(Method::GET, "/_paysim/faults/catalogue", None)
        .await;
    let names: Vec<&str> = catalogue["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for name in [
        "bad_response_signature",
        "error_code",
        "system_error",
        "http_500",
        "duplicate_notification",
        "forged_notification",
        "tampered_notification_amount",
        "drop_notification",
    ] {
        assert!(names.contains(&name), "{name}");
    }
    let (status, body) = h
        .control(Method::GET, "/_paysim/wechatpay/trades", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_channel"))
    );
    let (status, body) = h
        .control(Method::GET, "/_paysim/alipay/trades/NOPE", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("trade_not_found"))
    );
    let (status, body) = h
        .control(
            Method::POST,
            "/_paysim/alipay/trades/NOPE/actions",
            Some(json!({"action": "dance"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    let (status, body) = h
        .control(
            Method::GET,
            "/_paysim/alipay/settlements?date=2026-13-01",
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_date"))
    );
    let (_, body) = h.control(Method::GET, "/_paysim/alipay/trades", None).await;
    assert_eq!(body["trades"].as_array().unwrap().len(), 0);
    let (status, body) = h
        .control(Method::GET, "/_paysim/nothing/here/at/all", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[test]
fn keys_are_parsed_once_and_bad_ones_rejected() {
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(T0));
    let parts = |key: &str, seller: &str| SimulatorParts {
        clock: Arc::clone(&clock),
        scheduler: Scheduler::new(Arc::clone(&clock)),
        entropy: Arc::new(SeededEntropy::new(1)),
        transport: Arc::new(InProcessTransport::new()),
        public_base_url: BASE.into(),
        wechatpay: None,
        alipay: Some(AlipayMockConfig {
            alipay_private_key_pem: key.into(),
            apps: vec![AlipayApp {
                app_id: APP_ID.into(),
                app_public_key_pem: std::fs::read_to_string(format!("{KEYS}app_public.pem"))
                    .unwrap(),
                app_cert_pem: None,
            }],
            seller_id: seller.into(),
            certificates: None,
        }),
    };
    assert!(Simulator::new(parts(ALIPAY_PRIVATE_PKCS1, SELLER_ID)).is_ok());
    assert!(Simulator::new(parts("garbage", SELLER_ID)).is_err());
    assert!(Simulator::new(parts(ALIPAY_PRIVATE_PKCS1, "1234")).is_err());
}

#[tokio::test]
async fn apps_registered_through_the_admin_api_are_served() {
    let h = Harness::new();
    let other = "2021000000000777";
    // Unknown until registered.
    let node = h
        .call(
            "alipay.trade.query",
            json!({"out_trade_no": "X"}),
            &[("app_id", other)],
        )
        .await;
    assert_eq!(node["sub_code"], "isv.invalid-app-id");

    let (status, body) = h
        .control(
            Method::POST,
            "/_paysim/alipay/apps",
            Some(json!({"app_id": other, "app_public_key_pem": APP_PUBLIC})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["mode"], "public_key");

    // Now a request signed with that key is verified and answered.
    let node = h
        .call(
            "alipay.trade.query",
            json!({"out_trade_no": "X"}),
            &[("app_id", other)],
        )
        .await;
    assert_eq!(node["sub_code"], "ACQ.TRADE_NOT_EXIST", "{node}");
    let (status, list) = h.control(Method::GET, "/_paysim/alipay/apps", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|a| a["app_id"] == other),
        "{list}"
    );

    // A key that does not parse is refused, naming the problem.
    let (status, body) = h
        .control(
            Method::POST,
            "/_paysim/alipay/apps",
            Some(json!({"app_id": "2021000000000778", "app_public_key_pem": "junk"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "invalid_app");
}
