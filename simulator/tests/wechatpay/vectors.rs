//! Golden vectors (`scenarios/vectors/wechatpay/*.json`, signed by the openssl CLI, the
//! notification resource sealed by Python `cryptography`) verified and reproduced with the
//! simulator's own public primitives: `request_message`, `response_message`, `seal`,
//! `Authorization::parse` and its RSA signer and verifier. The request vectors are also sent
//! to the mock server as they are, which must accept them.

use std::path::PathBuf;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::Value;
use simulator::alipay::{SigningKey, VerifyingKey};
use simulator::wechatpay::{request_message, response_message, seal, Authorization};

use super::{
    Harness, APIV3_KEY, MCHID, MERCHANT_PRIVATE, MERCHANT_PUBLIC, PLATFORM_PRIVATE,
    PLATFORM_PUBLIC, PUB_KEY_ID, SERIAL,
};

fn vector(name: &str) -> Value {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/wechatpay"
    ))
    .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn text<'v>(vector: &'v Value, field: &str) -> &'v str {
    vector[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string"))
}

const REQUESTS: [&str; 2] = ["request_native.json", "request_query_get.json"];
const RESPONSES: [&str; 2] = ["response_query.json", "response_close_204.json"];
const NOTIFY: &str = "notify_transaction_success.json";

#[test]
fn every_vector_file_is_covered() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/wechatpay"
    ));
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    found.sort();
    let mut covered: Vec<String> = REQUESTS
        .iter()
        .chain(RESPONSES.iter())
        .chain([NOTIFY].iter())
        .map(|name| (*name).to_owned())
        .collect();
    covered.sort();
    assert_eq!(found, covered);
}

#[test]
fn request_vectors_verify_and_are_reproduced_byte_for_byte() {
    let signer = SigningKey::parse(MERCHANT_PRIVATE, "merchant_private_pkcs8.pem").unwrap();
    let verifier = VerifyingKey::parse(MERCHANT_PUBLIC, "merchant_public.pem").unwrap();
    for name in REQUESTS {
        let v = vector(name);
        let message = request_message(
            text(&v, "method"),
            text(&v, "path"),
            text(&v, "timestamp"),
            text(&v, "nonce"),
            text(&v, "body").as_bytes(),
        );
        assert_eq!(message, text(&v, "message").as_bytes(), "{name}: message");
        let signature = text(&v, "signature");
        assert!(
            verifier.verify_base64(&message, signature).is_ok(),
            "{name}: verifies"
        );
        let mut other = message.clone();
        other.push(b'x');
        assert!(verifier.verify_base64(&other, signature).is_err(), "{name}");
        assert_eq!(
            signer.sign_base64(&message),
            signature,
            "{name}: reproduced"
        );

        let auth = Authorization::parse(text(&v, "authorization")).unwrap();
        assert_eq!(
            auth,
            Authorization {
                mchid: MCHID.to_owned(),
                nonce_str: text(&v, "nonce").to_owned(),
                signature: signature.to_owned(),
                timestamp: text(&v, "timestamp").to_owned(),
                serial_no: SERIAL.to_owned(),
            },
            "{name}: Authorization"
        );
    }
}

#[test]
fn response_vectors_verify_and_are_reproduced_byte_for_byte() {
    let signer = SigningKey::parse(PLATFORM_PRIVATE, "platform_private_pkcs8.pem").unwrap();
    let verifier = VerifyingKey::parse(PLATFORM_PUBLIC, "platform_public.pem").unwrap();
    for name in RESPONSES.into_iter().chain([NOTIFY]) {
        let v = vector(name);
        let headers = &v["headers"];
        assert_eq!(headers["Wechatpay-Serial"], PUB_KEY_ID, "{name}");
        assert_eq!(
            headers["Wechatpay-Signature-Type"], "WECHATPAY2-SHA256-RSA2048",
            "{name}"
        );
        assert_eq!(headers["Wechatpay-Timestamp"], v["timestamp"], "{name}");
        assert_eq!(headers["Wechatpay-Nonce"], v["nonce"], "{name}");
        assert_eq!(headers["Wechatpay-Signature"], v["signature"], "{name}");
        let body = text(&v, "body");
        let message = response_message(text(&v, "timestamp"), text(&v, "nonce"), body.as_bytes());
        assert_eq!(message, text(&v, "message").as_bytes(), "{name}: message");
        if body.is_empty() {
            assert!(message.ends_with(b"\n\n"), "{name}: empty body line");
        }
        let signature = text(&v, "signature");
        assert!(
            verifier.verify_base64(&message, signature).is_ok(),
            "{name}: verifies"
        );
        assert!(
            verifier.verify_base64(&message[1..], signature).is_err(),
            "{name}"
        );
        assert_eq!(
            signer.sign_base64(&message),
            signature,
            "{name}: reproduced"
        );
    }
}

#[test]
fn notification_resource_is_sealed_byte_for_byte() {
    let v = vector(NOTIFY);
    let sealed = seal(
        APIV3_KEY.trim().as_bytes(),
        text(&v, "resource_nonce"),
        text(&v, "associated_data"),
        text(&v, "plaintext").as_bytes(),
    )
    .unwrap();
    assert_eq!(sealed.ciphertext, text(&v, "ciphertext"));
    assert_eq!(sealed.nonce, text(&v, "resource_nonce"));
    assert_eq!(sealed.associated_data, "transaction");

    // The envelope carries exactly that resource, and decrypts (independently) to the
    // plaintext.
    let envelope: Value = serde_json::from_str(text(&v, "body")).unwrap();
    assert_eq!(envelope["event_type"], "TRANSACTION.SUCCESS");
    assert_eq!(envelope["resource_type"], "encrypt-resource");
    let resource = &envelope["resource"];
    assert_eq!(resource["algorithm"], "AEAD_AES_256_GCM");
    assert_eq!(resource["original_type"], "transaction");
    assert_eq!(resource["ciphertext"], v["ciphertext"]);
    assert_eq!(resource["nonce"], v["resource_nonce"]);
    assert_eq!(resource["associated_data"], v["associated_data"]);
    let plaintext: Value = serde_json::from_str(text(&v, "plaintext")).unwrap();
    assert_eq!(super::decrypt(resource), plaintext);
    assert_eq!(plaintext["mchid"], MCHID);
    assert_eq!(plaintext["trade_state"], "SUCCESS");
}

/// The mock server (clock at 18:00:00, the vectors signed 23 s earlier) accepts the request
/// vectors as sent: the prepay creates the order, the query finds it.
#[tokio::test]
async fn the_mock_server_accepts_the_request_vectors() {
    let harness = Harness::new();
    for (name, expected) in [
        ("request_native.json", "code_url"),
        ("request_query_get.json", "trade_state"),
    ] {
        let v = vector(name);
        let body = text(&v, "body").to_owned();
        let request = Request::builder()
            .method(text(&v, "method"))
            .uri(text(&v, "path"))
            .header("accept", "application/json")
            .header("user-agent", "paysim-vectors/1.0")
            .header("content-type", "application/json")
            .header("authorization", text(&v, "authorization"))
            .body(Body::from(body))
            .unwrap();
        let response = harness.raw(request).await;
        assert_eq!(response.status, StatusCode::OK, "{name}: {}", response.text);
        assert!(response.verifies(), "{name}: signed answer");
        assert!(
            response.json().get(expected).is_some(),
            "{name}: {}",
            response.text
        );
    }
}
