//! ReqwestTransport against a real axum server on a loopback socket: status, headers and
//! body pass through, redirects are not followed, and errors map to TransportError.

// Marks the helpers below as test code for clippy's allow-unwrap-in-tests, as for #[test] fns.
#![cfg(test)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use determinism::{ReqwestTransport, Transport, TransportError};

#[allow(
    clippy::disallowed_methods,
    reason = "a test server on a real socket; the slow handler must really wait"
)]
async fn serve() -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let router = Router::new()
        .route(
            "/echo",
            post(|body: Bytes| async move {
                (
                    StatusCode::CREATED,
                    [(CONTENT_TYPE, "application/json")],
                    body,
                )
            }),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [(LOCATION, "/echo")]).into_response() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
    });
    (address, stop_tx)
}

#[tokio::test]
async fn exchanges_over_a_real_socket() {
    let (address, _stop) = serve().await;
    let transport = ReqwestTransport::new().unwrap();

    let request = http::Request::post(format!("http://{address}/echo"))
        .header(CONTENT_TYPE, "application/json")
        .body(Bytes::from_static(br#"{"amount":100}"#))
        .unwrap();
    let response = transport.send(request, 5_000).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(response.body().as_ref(), br#"{"amount":100}"#);

    let request = http::Request::get(format!("http://{address}/moved"))
        .body(Bytes::new())
        .unwrap();
    let response = transport.send(request, 5_000).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "redirects are not followed"
    );
    assert_eq!(response.headers()[LOCATION], "/echo");
}

#[tokio::test]
async fn a_slow_server_is_a_timeout() {
    let (address, _stop) = serve().await;
    let transport = ReqwestTransport::new().unwrap();
    let request = http::Request::get(format!("http://{address}/slow"))
        .body(Bytes::new())
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), transport.send(request, 200))
        .await
        .expect("the transport's own timeout fires first");
    assert_eq!(
        outcome.unwrap_err(),
        TransportError::Timeout {
            after_ms: 200,
            delivered: false
        }
    );
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error_and_a_relative_uri_is_invalid() {
    // Bind and drop to find a port nobody listens on.
    let address = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let transport = ReqwestTransport::new().unwrap();
    let request = http::Request::get(format!("http://{address}/"))
        .body(Bytes::new())
        .unwrap();
    let error = transport.send(request, 2_000).await.unwrap_err();
    assert!(matches!(error, TransportError::Connect(_)), "{error:?}");

    let request = http::Request::get("/relative").body(Bytes::new()).unwrap();
    let error = transport.send(request, 2_000).await.unwrap_err();
    assert!(
        matches!(error, TransportError::InvalidRequest(_)),
        "{error:?}"
    );
}
