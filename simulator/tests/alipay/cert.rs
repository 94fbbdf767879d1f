//! Public-key-certificate mode: the SNs against the openssl-computed vectors, the openssl-signed
//! cert-mode request vector, the SN checks, `alipay_cert_sn` in answers, and the
//! construction-time checks.

use std::sync::Arc;

use axum::body::Body;
use determinism::{Clock, InProcessTransport, Scheduler, SeededEntropy, VirtualClock};
use http::{Request, StatusCode};
use serde_json::{json, Value};
use simulator::alipay::{
    cert_sn, root_cert_sn, AlipayApp, AlipayMockCertificates, AlipayMockConfig,
};
use simulator::{Simulator, SimulatorError, SimulatorParts};

use super::{
    encode, split_response, verified_node, verify_alipay, Client, Harness, ALIPAY_PRIVATE_PKCS1,
    APP_ID, APP_PRIVATE_PKCS8, APP_PUBLIC, BASE, SELLER_ID, T0,
};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/vectors/alipay/");
const APP_CERT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/vectors/alipay/certs/app_cert_public_key_2021000000000001.crt"
));
const ALIPAY_CERT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/vectors/alipay/certs/alipay_cert_public_key_rsa2.crt"
));
const ROOT_BUNDLE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scenarios/vectors/alipay/certs/alipay_root_cert.crt"
));
/// A second app, in public-key mode (same key pair as the first, for convenience).
const PK_APP_ID: &str = "2021000000000002";

fn vector(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{VECTORS}{name}")).unwrap()).unwrap()
}

fn sns() -> (String, String, String) {
    let sns = vector("cert_sns.json");
    let get = |key: &str| sns[key].as_str().unwrap().to_owned();
    (
        get("app_cert_sn"),
        get("alipay_cert_sn"),
        get("alipay_root_cert_sn"),
    )
}

fn certificates() -> Option<AlipayMockCertificates> {
    Some(AlipayMockCertificates {
        alipay_cert_pem: ALIPAY_CERT.into(),
        alipay_root_cert_pem: ROOT_BUNDLE.into(),
    })
}

/// APP_ID in certificate mode (no public key given), PK_APP_ID in public-key mode.
fn cert_config() -> AlipayMockConfig {
    AlipayMockConfig {
        alipay_private_key_pem: ALIPAY_PRIVATE_PKCS1.into(),
        apps: vec![
            AlipayApp {
                app_id: APP_ID.into(),
                app_public_key_pem: String::new(),
                app_cert_pem: Some(APP_CERT.into()),
            },
            AlipayApp {
                app_id: PK_APP_ID.into(),
                app_public_key_pem: APP_PUBLIC.into(),
                app_cert_pem: None,
            },
        ],
        seller_id: SELLER_ID.into(),
        certificates: certificates(),
    }
}

/// Splits a certificate-mode answer `{"<node>":…,"sign":"…","alipay_cert_sn":"…"}`: checks
/// the order, the SN and the signature over the node, and returns the node.
fn cert_mode_node(text: &str, method: &str, alipay_cert_sn: &str) -> Value {
    let suffix = format!(",\"alipay_cert_sn\":\"{alipay_cert_sn}\"}}");
    let without = text
        .strip_suffix(&suffix)
        .unwrap_or_else(|| panic!("alipay_cert_sn last, after sign: {text}"));
    let plain = format!("{without}}}");
    let (node_text, sign) = split_response(&plain, method);
    assert!(verify_alipay(node_text, sign), "response signature: {text}");
    serde_json::from_str(node_text).unwrap()
}

/// The cert-mode request vector (signed with the openssl CLI), sent as python-alipay-sdk
/// does: everything in the query of a GET.
fn vector_request() -> Request<Body> {
    let vector = vector("request_query_cert_mode.json");
    let mut pairs: Vec<(String, String)> = vector["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    pairs.push(("sign".into(), vector["sign"].as_str().unwrap().to_owned()));
    Request::get(format!("/alipay/gateway.do?{}", encode(&pairs)))
        .body(Body::empty())
        .unwrap()
}

#[test]
fn sns_equal_the_openssl_vectors() {
    let (app_sn, alipay_sn, root_sn) = sns();
    assert_eq!(cert_sn(APP_CERT).unwrap(), app_sn);
    assert_eq!(cert_sn(ALIPAY_CERT).unwrap(), alipay_sn);
    // The bundle's EC root is skipped: one SN, no `_`.
    assert_eq!(root_cert_sn(ROOT_BUNDLE).unwrap(), root_sn);
    assert!(!root_sn.contains('_'));
    // Two RSA roots join with `_`, in file order.
    let twice = format!("{ROOT_BUNDLE}\n{ALIPAY_CERT}");
    assert_eq!(
        root_cert_sn(&twice).unwrap(),
        format!("{root_sn}_{alipay_sn}")
    );
    // The EC root on its own (its issuer CN has a comma, escaped `\,` per RFC 2253); the
    // expected SN was computed with `openssl x509 -nameopt RFC2253` like the vectors.
    let at = ROOT_BUNDLE.rfind("-----BEGIN CERTIFICATE-----").unwrap();
    assert!(at > 0);
    let ec_root = &ROOT_BUNDLE[at..];
    assert_eq!(
        cert_sn(ec_root).unwrap(),
        "a78deb770138a7ee2b21b73a7e599545"
    );
    assert!(root_cert_sn(ec_root).is_err(), "no RSA-signed certificate");
    // A bare base64 body works as well as PEM.
    let bare: String = APP_CERT
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    assert_eq!(cert_sn(&bare).unwrap(), app_sn);
    assert!(cert_sn("not a certificate").is_err());
    assert!(cert_sn(APP_PUBLIC).is_err());
}

#[tokio::test]
async fn cert_mode_vector_is_accepted_and_answers_carry_alipay_cert_sn() {
    let (app_sn, alipay_sn, root_sn) = sns();
    let h = Harness::with_alipay(cert_config());
    // The openssl-signed vector passes every common check (SNs, signature): the trade just
    // does not exist yet.
    let (status, text) = h.send(vector_request()).await;
    assert_eq!(status, StatusCode::OK);
    let node = cert_mode_node(&text, "alipay.trade.query", &alipay_sn);
    assert_eq!(
        (node["code"].as_str(), node["sub_code"].as_str()),
        (Some("40004"), Some("ACQ.TRADE_NOT_EXIST")),
        "{text}"
    );
    // The independent client in certificate mode creates it …
    let sn_params = [
        ("app_cert_sn", app_sn.as_str()),
        ("alipay_root_cert_sn", root_sn.as_str()),
    ];
    let (status, text) = h
        .send(h.client.post(
            "alipay.trade.create",
            &json!({"out_trade_no": "ord_vector0000000000000001", "total_amount": "88.88", "subject": "demo 中文"}).to_string(),
            &sn_params,
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.ends_with(&format!("\",\"alipay_cert_sn\":\"{alipay_sn}\"}}"))
            && text.contains("},\"sign\":\""),
        "node, sign, then alipay_cert_sn: {text}"
    );
    let node = cert_mode_node(&text, "alipay.trade.create", &alipay_sn);
    assert_eq!(node["code"], "10000", "{text}");
    // … and the vector now finds it.
    let (_, text) = h.send(vector_request()).await;
    let node = cert_mode_node(&text, "alipay.trade.query", &alipay_sn);
    assert_eq!(
        (node["code"].as_str(), node["trade_status"].as_str()),
        (Some("10000"), Some("WAIT_BUYER_PAY")),
        "{text}"
    );
    let (_, exchanges) = h
        .control(http::Method::GET, "/_paysim/alipay/exchanges", None)
        .await;
    let verdicts: Vec<&str> = exchanges["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["signature"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["valid", "valid", "valid"], "{exchanges}");
}

#[tokio::test]
async fn missing_or_wrong_sns_are_refused_in_the_signed_node() {
    let (app_sn, alipay_sn, root_sn) = sns();
    let h = Harness::with_alipay(cert_config());
    let biz = json!({"out_trade_no": "ORDER_SN"}).to_string();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("alipay_root_cert_sn", root_sn.as_str())],
            "isv.missing-app-cert-sn",
        ),
        (
            &[
                ("app_cert_sn", "0123456789abcdef0123456789abcdef"),
                ("alipay_root_cert_sn", root_sn.as_str()),
            ],
            "isv.app-cert-not-exist",
        ),
        (
            &[("app_cert_sn", app_sn.as_str())],
            "isv.missing-alipay-root-cert-sn",
        ),
        (
            &[
                ("app_cert_sn", app_sn.as_str()),
                ("alipay_root_cert_sn", "687b59193f3f462dd5336e5abf83c5d8"),
            ],
            "isv.invalid-alipay-root-cert-sn",
        ),
        (
            // The real root SN with an extra part is not the configured bundle's SN either.
            &[
                ("app_cert_sn", app_sn.as_str()),
                ("alipay_root_cert_sn", &format!("{root_sn}_{app_sn}")),
            ],
            "isv.invalid-alipay-root-cert-sn",
        ),
    ];
    for (extra, sub_code) in cases {
        // Every request is otherwise correct and correctly signed (SN params included).
        let (status, text) = h
            .send(h.client.post("alipay.trade.query", &biz, extra))
            .await;
        assert_eq!(status, StatusCode::OK);
        let node = cert_mode_node(&text, "alipay.trade.query", &alipay_sn);
        assert_eq!(
            (node["code"].as_str(), node["sub_code"].as_str()),
            (Some("40002"), Some(sub_code)),
            "{text}"
        );
        assert_eq!(node["msg"], "Invalid Arguments");
    }
    // A public-key-mode request (no SNs at all) from the certificate-mode app.
    let (_, text) = h.send(h.client.get("alipay.trade.query", &biz, &[])).await;
    let node = cert_mode_node(&text, "alipay.trade.query", &alipay_sn);
    assert_eq!(node["sub_code"], "isv.missing-app-cert-sn", "{text}");
    // With both SNs right, a bad signature is still caught (by the certificate's key).
    let mut pairs = h.client.params(
        "alipay.trade.query",
        &biz,
        &[("app_cert_sn", &app_sn), ("alipay_root_cert_sn", &root_sn)],
    );
    for (key, value) in &mut pairs {
        if key == "biz_content" {
            *value = json!({"out_trade_no": "ORDER_SN2"}).to_string();
        }
    }
    let (_, text) = h
        .send(
            Request::get(format!("/alipay/gateway.do?{}", encode(&pairs)))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let node = cert_mode_node(&text, "alipay.trade.query", &alipay_sn);
    assert_eq!(node["sub_code"], "isv.invalid-signature", "{text}");
}

#[tokio::test]
async fn public_key_mode_apps_are_unaffected() {
    let h = Harness::with_alipay(cert_config());
    let client = Client {
        app_id: PK_APP_ID.into(),
        ..Client::new()
    };
    let (status, text) = h
        .send(
            client.post(
                "alipay.trade.precreate",
                &json!({"out_trade_no": "ORDER_PK", "total_amount": "1.00", "subject": "s"})
                    .to_string(),
                &[],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.contains("alipay_cert_sn"), "{text}");
    let node = verified_node(&text, "alipay.trade.precreate");
    assert_eq!(node["code"], "10000", "{text}");
    // SN params from a public-key app are signed like any other extra parameter, not checked.
    let (_, text) = h
        .send(client.get(
            "alipay.trade.query",
            &json!({"out_trade_no": "ORDER_PK"}).to_string(),
            &[("app_cert_sn", "whatever")],
        ))
        .await;
    assert!(!text.contains("alipay_cert_sn"), "{text}");
    assert_eq!(
        verified_node(&text, "alipay.trade.query")["sub_code"],
        "ACQ.TRADE_NOT_EXIST"
    );
    // And a mock without any certificate answers exactly as before.
    let plain = Harness::new();
    let node = plain.query("ORDER_NONE").await;
    assert_eq!(node["sub_code"], "ACQ.TRADE_NOT_EXIST");
}

#[test]
fn construction_checks_the_certificates() {
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(T0));
    let build = |config: AlipayMockConfig| {
        Simulator::new(SimulatorParts {
            clock: Arc::clone(&clock),
            scheduler: Scheduler::new(Arc::clone(&clock)),
            entropy: Arc::new(SeededEntropy::new(1)),
            transport: Arc::new(InProcessTransport::new()),
            public_base_url: BASE.into(),
            wechatpay: None,
            alipay: Some(config),
        })
    };
    assert!(build(cert_config()).is_ok());
    // The Alipay certificate must carry the gateway's own public key.
    let mut config = cert_config();
    config.certificates = Some(AlipayMockCertificates {
        alipay_cert_pem: APP_CERT.into(),
        alipay_root_cert_pem: ROOT_BUNDLE.into(),
    });
    let error = build(config).unwrap_err();
    assert!(
        matches!(&error, SimulatorError::InvalidConfig(reason) if reason.contains("alipay_private_key_pem")),
        "{error}"
    );
    // A certificate-mode app needs the certificates.
    let mut config = cert_config();
    config.certificates = None;
    assert!(matches!(
        build(config).unwrap_err(),
        SimulatorError::InvalidConfig(_)
    ));
    // …and the mock without certificate-mode apps does not.
    let mut config = cert_config();
    config.certificates = None;
    config.apps.remove(0);
    assert!(build(config).is_ok());
    // A public key given next to the app certificate must be the certificate's.
    let mut config = cert_config();
    if let Some(app) = config.apps.first_mut() {
        app.app_public_key_pem = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/vectors/alipay/keys/alipay_public.pem"
        ))
        .into();
    }
    assert!(matches!(
        build(config).unwrap_err(),
        SimulatorError::InvalidConfig(_)
    ));
    let mut config = cert_config();
    if let Some(app) = config.apps.first_mut() {
        app.app_public_key_pem = APP_PUBLIC.into();
    }
    assert!(build(config).is_ok());
    // Unparseable certificates and bundles without an RSA root are refused.
    let mut config = cert_config();
    if let Some(app) = config.apps.first_mut() {
        app.app_cert_pem = Some(APP_PRIVATE_PKCS8.into());
    }
    assert!(build(config).is_err());
    let mut config = cert_config();
    config.certificates = Some(AlipayMockCertificates {
        alipay_cert_pem: ALIPAY_CERT.into(),
        alipay_root_cert_pem: "garbage".into(),
    });
    assert!(build(config).is_err());
}

#[tokio::test]
async fn unknown_serial_names_another_certificate_on_a_correctly_signed_answer() {
    let (app_sn, alipay_sn, root_sn) = sns();
    let h = Harness::with_alipay(cert_config());
    h.arm(json!({"target": "alipay.trade.create", "fault": "unknown_serial"}))
        .await;
    let sn_params = [
        ("app_cert_sn", app_sn.as_str()),
        ("alipay_root_cert_sn", root_sn.as_str()),
    ];
    let biz = json!({"out_trade_no": "ORDER_USN", "total_amount": "1.00", "subject": "s"});
    let (status, text) = h
        .send(
            h.client
                .post("alipay.trade.create", &biz.to_string(), &sn_params),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let at = text.rfind(",\"alipay_cert_sn\":\"").expect("an SN");
    let sn = &text[at + 19..text.len() - 2];
    assert_eq!(sn.len(), 32, "shaped like an SN: {text}");
    assert_ne!(sn, alipay_sn);
    // Signed by the real key all the same.
    let node = cert_mode_node(&text, "alipay.trade.create", sn);
    assert_eq!(node["code"], "10000");
    // params.serial names it.
    h.arm(json!({"target": "*", "fault": "unknown_serial", "params": {"serial": "0123456789abcdef0123456789abcdef"}}))
        .await;
    let (_, text) = h
        .send(h.client.post(
            "alipay.trade.query",
            &json!({"out_trade_no": "ORDER_USN"}).to_string(),
            &sn_params,
        ))
        .await;
    let node = cert_mode_node(
        &text,
        "alipay.trade.query",
        "0123456789abcdef0123456789abcdef",
    );
    assert_eq!(node["trade_status"], "WAIT_BUYER_PAY");
}
