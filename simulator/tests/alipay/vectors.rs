//! Golden vectors (`scenarios/vectors/alipay/*.json`, produced by the openssl CLI) reproduced
//! with the simulator's own canonicalisation, verifier and signer.

use std::path::PathBuf;

use serde_json::Value;
use simulator::alipay::{node_name, response_body, sign_content, Params, SigningKey, VerifyingKey};

use super::{encode, APP_PUBLIC};

fn vectors(prefix: &str) -> Vec<(String, Value)> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay"
    ));
    let mut found: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.starts_with(prefix) && name.ends_with(".json")
        })
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (
                path.file_name().unwrap().to_str().unwrap().to_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn string_pairs(params: &Value) -> Vec<(String, String)> {
    params
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn alipay_private_pkcs8() -> SigningKey {
    let pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/alipay_private_pkcs8.pem"
    ))
    .unwrap();
    SigningKey::parse(&pem, "alipay_private_pkcs8.pem").unwrap()
}

#[test]
fn request_vectors_verify_and_their_sign_content_is_reproduced() {
    let key = VerifyingKey::parse(APP_PUBLIC, "app_public.pem").unwrap();
    let found = vectors("request_");
    assert!(found.len() >= 2, "{found:?}");
    for (name, vector) in found {
        let pairs = string_pairs(&vector["params"]);
        // As received on the wire: percent-encoded, then decoded by the gateway.
        let params = Params::from_parts(Some(&encode(&pairs)), None);
        let content = params.request_sign_content();
        assert_eq!(content, vector["sign_content"].as_str().unwrap(), "{name}");
        let sign = vector["sign"].as_str().unwrap();
        assert!(
            key.verify_base64(content.as_bytes(), sign).is_ok(),
            "{name}: the vector's sign verifies"
        );
        assert!(
            key.verify_base64(format!("{content}x").as_bytes(), sign)
                .is_err(),
            "{name}: and nothing else"
        );
    }
}

#[test]
fn response_vectors_are_reproduced_byte_for_byte() {
    let key = alipay_private_pkcs8();
    let found = vectors("response_");
    assert!(found.len() >= 2, "{found:?}");
    for (name, vector) in found {
        let node = vector["node"].as_str().unwrap();
        let sign = key.sign_base64(node.as_bytes());
        assert_eq!(sign, vector["sign"].as_str().unwrap(), "{name}");
        let method = vector["method"].as_str().unwrap();
        assert_eq!(
            response_body(&node_name(Some(method)), node, &sign),
            vector["body"].as_str().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn notify_vector_is_reproduced() {
    let key = alipay_private_pkcs8();
    let found = vectors("notify_");
    assert!(!found.is_empty());
    for (name, vector) in found {
        let pairs = string_pairs(&vector["params"]);
        let content = sign_content(
            pairs
                .iter()
                .filter(|(k, _)| k != "sign")
                .map(|(k, v)| (k.as_str(), v.as_str())),
            &["sign", "sign_type"],
        );
        assert_eq!(content, vector["sign_content"].as_str().unwrap(), "{name}");
        let sign = key.sign_base64(content.as_bytes());
        assert_eq!(sign, vector["sign"].as_str().unwrap(), "{name}");
        assert_eq!(
            pairs
                .iter()
                .find(|(k, _)| k == "sign")
                .map(|(_, v)| v.as_str()),
            Some(sign.as_str()),
            "{name}"
        );
    }
}
