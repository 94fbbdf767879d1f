//! Platform-certificate and switching modes: `GET /v3/certificates` decrypted and parsed
//! independently, and the `Wechatpay-Serial` every answer and notification names.

use super::*;
use simulator::wechatpay::WechatpaySigningMode;

fn harness(mode: WechatpaySigningMode) -> Harness {
    let clock = VirtualClock::new(T0);
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let scheduler = Scheduler::new(Arc::clone(&shared));
    let transport = InProcessTransport::new();
    let mut wechatpay = config();
    wechatpay.signing_mode = mode;
    let sim = Simulator::new(SimulatorParts {
        clock: shared,
        scheduler: scheduler.clone(),
        entropy: Arc::new(SeededEntropy::new(11)),
        transport: Arc::new(transport.clone()),
        public_base_url: BASE.into(),
        alipay: None,
        wechatpay: Some(wechatpay),
    })
    .unwrap();
    Harness {
        clock,
        scheduler,
        transport,
        sim,
    }
}

/// A signed GET carrying an optional `Wechatpay-Serial` request header.
async fn get_asking(h: &Harness, target: &str, asked_serial: Option<&str>) -> Response {
    let timestamp = h.clock.now_ms() / 1000;
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let signature = sign_merchant(&format!("GET\n{target}\n{timestamp}\n{nonce}\n\n"));
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target)
        .header("accept", "*/*")
        .header("user-agent", "paysim-test/1.0")
        .header(
            "authorization",
            format!(
                "WECHATPAY2-SHA256-RSA2048 mchid=\"{MCHID}\",nonce_str=\"{nonce}\",\
                 timestamp=\"{timestamp}\",serial_no=\"{SERIAL}\",signature=\"{signature}\""
            ),
        );
    if let Some(serial) = asked_serial {
        request = request.header("wechatpay-serial", serial);
    }
    h.raw(request.body(Body::empty()).unwrap()).await
}

/// The signature check of `signature_verifies`, for any announced serial.
fn verifies_naming(headers: &HeaderMap, body: &str, serial: &str) -> bool {
    assert_eq!(header(headers, "wechatpay-serial"), serial);
    let message = format!(
        "{}\n{}\n{}\n",
        header(headers, "wechatpay-timestamp"),
        header(headers, "wechatpay-nonce"),
        body
    );
    verify_platform(message.as_bytes(), header(headers, "wechatpay-signature"))
}

/// Opens an `encrypt_certificate` with the APIv3 key, independently of the mock.
fn open_certificate(encrypted: &Value) -> String {
    assert_eq!(encrypted["algorithm"], "AEAD_AES_256_GCM");
    assert_eq!(encrypted["associated_data"], "certificate");
    let nonce = encrypted["nonce"].as_str().unwrap();
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &apiv3_key()).unwrap());
    let mut data = STANDARD
        .decode(encrypted["ciphertext"].as_str().unwrap())
        .unwrap();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce.as_bytes()).unwrap(),
            Aad::from(b"certificate"),
            &mut data,
        )
        .unwrap();
    String::from_utf8(plain.to_vec()).unwrap()
}

/// Fetches the certificate list and checks the one entry: returns its serial.
async fn fetch_certificate(h: &Harness, target: &str) -> String {
    let response = get_asking(h, target, None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    let body = response.json();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{body}");
    let entry = &data[0];
    let serial_no = entry["serial_no"].as_str().unwrap().to_owned();
    assert_eq!(serial_no.len(), 40);
    assert!(serial_no
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
    assert!(
        verifies_naming(&response.headers, &response.text, &serial_no),
        "the list is signed with the platform key and names the certificate"
    );

    let pem = open_certificate(&entry["encrypt_certificate"]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let der = der_of(&pem);
    let (_, certificate) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(
        certificate.public_key().raw,
        der_of(PLATFORM_PUBLIC).as_slice(),
        "the certificate is over platform_public.pem"
    );
    let serial_hex: String = certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(serial_hex, serial_no);
    let validity = certificate.validity();
    let now = T0 / 1000;
    assert!(validity.not_before.timestamp() <= now && now < validity.not_after.timestamp());
    assert_eq!(entry["effective_time"], "2026-11-24T18:00:00+08:00");
    assert_eq!(entry["expire_time"], "2031-11-23T18:00:00+08:00");
    serial_no
}

#[tokio::test]
async fn certificates_decrypt_to_the_platform_certificate() {
    let h = harness(WechatpaySigningMode::PlatformCertificate);
    let serial_no = fetch_certificate(&h, "/v3/certificates").await;
    for target in [
        "/v3/certificates?algorithm_type=RSA",
        "/v3/certificates?algorithm_type=ALL",
    ] {
        assert_eq!(fetch_certificate(&h, target).await, serial_no);
    }

    // No SM2 certificate: an empty list, still signed.
    let sm2 = get_asking(&h, "/v3/certificates?algorithm_type=SM2", None).await;
    assert_eq!(sm2.status, StatusCode::OK);
    assert_eq!(sm2.json(), json!({"data": []}));
    assert!(verifies_naming(&sm2.headers, &sm2.text, &serial_no));
    let bogus = get_asking(&h, "/v3/certificates?algorithm_type=DSA", None).await;
    assert_eq!(bogus.status, StatusCode::BAD_REQUEST);
    assert_eq!(bogus.json()["code"], "PARAM_ERROR");

    // Authenticated like every API.
    let unsigned = h
        .raw(
            Request::get("/v3/certificates")
                .header("accept", "application/json")
                .header("user-agent", "x")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    assert!(verifies_naming(
        &unsigned.headers,
        &unsigned.text,
        &serial_no
    ));

    // Every answer and notification names the certificate, whatever the request asks.
    let inbox = receiver(&h, 0);
    let prepay = h.native("CERT_MODE_1", 100).await;
    assert_eq!(prepay.status, StatusCode::OK);
    assert!(verifies_naming(&prepay.headers, &prepay.text, &serial_no));
    let asking_key = get_asking(
        &h,
        &format!("/v3/pay/transactions/out-trade-no/CERT_MODE_1?mchid={MCHID}"),
        Some(PUB_KEY_ID),
    )
    .await;
    assert!(verifies_naming(
        &asking_key.headers,
        &asking_key.text,
        &serial_no
    ));
    assert_eq!(h.action("CERT_MODE_1", "pay").await.0, StatusCode::OK);
    h.run_until(T0 + MINUTE).await;
    let got = received(&inbox);
    assert_eq!(got.len(), 1);
    assert!(verifies_naming(&got[0].headers, &got[0].body, &serial_no));

    // The same key gives the same certificate serial on another start.
    let again = harness(WechatpaySigningMode::PlatformCertificate);
    assert_eq!(
        fetch_certificate(&again, "/v3/certificates").await,
        serial_no
    );
}

#[tokio::test]
async fn switching_mode_answers_with_the_serial_the_request_asked_for() {
    let h = harness(WechatpaySigningMode::Switching);
    let serial_no = fetch_certificate(&h, "/v3/certificates").await;
    let inbox = receiver(&h, 0);
    h.paid_order("SWITCH_1", 100).await;
    let target = format!("/v3/pay/transactions/out-trade-no/SWITCH_1?mchid={MCHID}");
    for (asked, named) in [
        (Some(PUB_KEY_ID), PUB_KEY_ID),
        (Some(serial_no.as_str()), serial_no.as_str()),
        (None, serial_no.as_str()),
    ] {
        let response = get_asking(&h, &target, asked).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert!(
            verifies_naming(&response.headers, &response.text, named),
            "asked {asked:?}"
        );
    }
    let list = get_asking(&h, "/v3/certificates", Some(PUB_KEY_ID)).await;
    assert!(verifies_naming(&list.headers, &list.text, PUB_KEY_ID));

    h.run_until(T0 + MINUTE).await;
    let got = received(&inbox);
    assert_eq!(got.len(), 1);
    assert!(
        verifies_naming(&got[0].headers, &got[0].body, PUB_KEY_ID),
        "notifications name the public key while switching"
    );
}

#[tokio::test]
async fn public_key_mode_lists_no_certificate() {
    let h = harness(WechatpaySigningMode::PublicKey);
    let response = get_asking(&h, "/v3/certificates", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json(), json!({"data": []}));
    assert!(response.verifies());
}
