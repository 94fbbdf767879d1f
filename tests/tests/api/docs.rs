//! What the gateway says about itself: `/healthz`, `/openapi.json`, and the README's error
//! table, which must list every code the API can return.

use std::path::Path;

use e2e::harness::TestGateway;
use gateway_core::api::error::ErrorCode;
use http::StatusCode;
use serde_json::json;

use crate::support::get;

#[tokio::test]
async fn healthz_reports_ok_backend_channels_and_time() {
    let t = TestGateway::new().await.unwrap();
    let health = get(&t.app, "/healthz").await.expect(StatusCode::OK);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["channels"], json!(["alipay"]));
    assert_eq!(
        health["now"], "2026-01-01T00:00:00.000Z",
        "the gateway reads the virtual clock"
    );
    assert!(
        health["backend"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("sqlite"),
        "{health}"
    );
}

#[tokio::test]
async fn openapi_document_is_json_and_names_every_route() {
    let t = TestGateway::new().await.unwrap();
    let reply = get(&t.app, "/openapi.json").await;
    let doc = reply.expect(StatusCode::OK);
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/json"
    );
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    // Every route of `gateway_core::app` but the document itself.
    let expected = [
        ("/healthz", "get"),
        ("/v1/orders", "post"),
        ("/v1/orders/{id}", "get"),
        ("/v1/orders/{id}/close", "post"),
        ("/v1/orders/{id}/refunds", "post"),
        ("/v1/refunds/{id}", "get"),
        ("/v1/ledger/accounts", "get"),
        ("/v1/ledger/verify", "get"),
        ("/v1/alerts", "get"),
        ("/notify/{channel}", "post"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented; documented paths: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(
        paths.len(),
        expected.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    // Every documented route answers (not the 404 fallback).
    for (path, method) in expected {
        if method == "get" {
            let uri = path.replace("{id}", "ord_doc");
            let reply = get(&t.app, &uri).await;
            assert_ne!(reply.json()["code"], "not_found", "{path} is routed");
        }
    }
    // The error codes the schema lists are exactly ErrorCode::ALL.
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, all);
}

#[test]
fn every_error_code_is_in_the_readme_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; the repository README must document the API's error codes",
            path.display()
        )
    });
    // Each code has a row of the table, `| `code` | status | … |`, with the status it is sent with.
    let rows: Vec<String> = ErrorCode::ALL
        .iter()
        .filter(|code| {
            let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
            !readme
                .lines()
                .any(|line| line.trim_start().starts_with(&row))
        })
        .map(|code| format!("| `{}` | {} |", code.as_str(), code.status().as_u16()))
        .collect();
    assert!(
        rows.is_empty(),
        "README.md's error table lacks these rows (code and HTTP status): {rows:#?}"
    );
}
