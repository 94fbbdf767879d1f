//! Trade bills (`/v3/bill/tradebill` + `/v3/billdownload/file`) and the simulated wallet
//! (`/wechatpay/wallet/pay`) for JSAPI and APP orders.

use super::*;

use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};

const DAY: i64 = 24 * 60 * MINUTE;

fn sha1_hex(bytes: &[u8]) -> String {
    digest(&SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const ALL_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

/// Every cell of a data line starts with a backtick; the values without it.
fn cells(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|cell| {
            assert!(cell.starts_with('`'), "{cell:?} in {line:?}");
            &cell[1..]
        })
        .collect()
}

impl Harness {
    async fn bill(&self, query: &str) -> Response {
        self.get(&format!("/v3/bill/tradebill?{query}")).await
    }
}

#[tokio::test]
async fn trade_bill_lists_the_days_payments_and_refunds_with_a_matching_sha1() {
    let h = Harness::new();
    let _inbox = receiver(&h, 0);
    h.paid_order("ORDER_R1", 100).await;
    let transaction_id = h.query("ORDER_R1").await["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(h.refund("R1", 30, 100).await.status, StatusCode::OK);
    h.run_until(T0 + 10 * SECOND).await;

    // The same Beijing day is not billable yet (T+1).
    let today = h.bill("bill_date=2026-11-25").await;
    assert_eq!(today.status, StatusCode::BAD_REQUEST, "{}", today.text);
    assert_eq!(today.json()["code"], "PARAM_ERROR");
    assert!(today.verifies());
    let future = h.bill("bill_date=2026-12-01").await;
    assert_eq!(future.json()["code"], "PARAM_ERROR");

    h.clock.advance_ms(DAY);
    let quiet = h.bill("bill_date=2026-11-24").await;
    assert_eq!(quiet.status, StatusCode::BAD_REQUEST);
    assert_eq!(quiet.json()["code"], "NO_STATEMENT_EXIST");
    assert_eq!(
        h.bill("bill_date=2026/11/25").await.json()["code"],
        "PARAM_ERROR"
    );

    let answer = h.bill("bill_date=2026-11-25&bill_type=ALL").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.verifies());
    let json = answer.json();
    assert_eq!(json["hash_type"], "SHA1");
    let url = json["download_url"].as_str().unwrap();
    let prefix = format!("{BASE}/v3/billdownload/file?token=");
    assert!(url.starts_with(&prefix), "{url}");

    let file = h.get(url.trim_start_matches(BASE)).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.text);
    assert!(
        file.headers.get("wechatpay-signature").is_none(),
        "bill downloads are unsigned"
    );
    assert_eq!(json["hash_value"], sha1_hex(file.text.as_bytes()));

    let lines: Vec<&str> = file.text.lines().collect();
    assert_eq!(lines.len(), 5, "{}", file.text);
    assert_eq!(lines[0], ALL_HEADER);
    let payment = cells(lines[1]);
    assert_eq!(payment.len(), 27);
    assert_eq!(payment[0], "2026-11-25 18:00:00");
    assert_eq!(payment[1], APPID);
    assert_eq!(payment[2], MCHID);
    assert_eq!(payment[5], transaction_id);
    assert_eq!(payment[6], "ORDER_R1");
    assert_eq!(payment[8], "NATIVE");
    assert_eq!(payment[9], "SUCCESS");
    assert_eq!(payment[12], "1.00");
    assert_eq!((payment[14], payment[16]), ("0", "0.00"));
    assert_eq!(payment[22], "0.01000");
    assert_eq!(payment[23], "0.60%");
    assert_eq!(payment[24], "1.00");
    let refund = cells(lines[2]);
    assert_eq!(refund.len(), 27);
    assert_eq!(refund[0], "2026-11-25 18:00:05");
    assert_eq!(refund[9], "REFUND");
    assert_eq!(refund[12], "0.00");
    assert_eq!(refund[15], "R1");
    assert!(!refund[14].is_empty());
    assert_eq!(refund[16], "0.30");
    assert_eq!((refund[18], refund[19]), ("ORIGINAL", "SUCCESS"));
    assert_eq!(refund[25], "0.30");
    assert_eq!(lines[3], SUMMARY_HEADER);
    assert_eq!(lines[4], "`2,`1.00,`0.30,`0.00,`0.01000,`1.00,`0.30");

    // SUCCESS: payments only, 20 columns.
    let success = h.bill("bill_date=2026-11-25&bill_type=SUCCESS").await;
    let url = success.json()["download_url"].as_str().unwrap().to_owned();
    let file = h.get(url.trim_start_matches(BASE)).await;
    assert_eq!(success.json()["hash_value"], sha1_hex(file.text.as_bytes()));
    let lines: Vec<&str> = file.text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0].split(',').count(), 20);
    assert_eq!(cells(lines[1]).len(), 20);
    assert_eq!(lines[3], "`1,`1.00,`0.00,`0.00,`0.01000,`1.00,`0.00");

    // GZIP: the hash is over the uncompressed file; the body is a gzip stream.
    let gz = h.bill("bill_date=2026-11-25&tar_type=GZIP").await;
    assert_eq!(gz.status, StatusCode::OK);
    let url = gz.json()["download_url"].as_str().unwrap().to_owned();
    let gz_file = h.get(url.trim_start_matches(BASE)).await;
    assert_eq!(gz_file.status, StatusCode::OK);
    assert_eq!(&gz_file.bytes[..3], &[0x1f, 0x8b, 8]);
    assert_eq!(
        header(&gz_file.headers, "content-type"),
        "application/x-gzip"
    );
    // Stored deflate blocks: the plain file is inside, byte for byte.
    let plain = &gz_file.bytes[15..gz_file.bytes.len() - 8];
    assert_eq!(gz.json()["hash_value"], sha1_hex(plain));

    // Links lapse after 5 minutes on the Clock.
    h.clock.advance_ms(5 * MINUTE + SECOND);
    let lapsed = h.get(url.trim_start_matches(BASE)).await;
    assert_eq!(lapsed.status, StatusCode::BAD_REQUEST);
    assert_eq!(lapsed.json()["code"], "INVALID_REQUEST");
    assert!(lapsed.verifies());
}

// ---------------------------------------------------------------- the wallet

impl Harness {
    async fn prepay_id(&self, kind: &str, out_trade_no: &str) -> String {
        let mut body = json!({"appid": APPID, "mchid": MCHID, "description": "wallet",
                              "out_trade_no": out_trade_no, "notify_url": NOTIFY_URL,
                              "amount": {"total": 88}});
        if kind == "jsapi" {
            body["payer"] = json!({"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"});
        }
        let response = self
            .post(&format!("/v3/pay/transactions/{kind}"), &body)
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        response.json()["prepay_id"].as_str().unwrap().to_owned()
    }

    async fn wallet(&self, body: &Value) -> (StatusCode, Value) {
        let request = Request::post("/wechatpay/wallet/pay")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = self.raw(request).await;
        (response.status, response.json())
    }
}

/// What a merchant page hands to `WeixinJSBridge.invoke('getBrandWCPayRequest', …)`.
fn jsapi_params(prepay_id: &str, signed_message: Option<&str>) -> Value {
    let timestamp = (T0 / 1000).to_string();
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let package = format!("prepay_id={prepay_id}");
    let message = format!("{APPID}\n{timestamp}\n{nonce}\n{package}\n");
    json!({"appId": APPID, "timeStamp": timestamp, "nonceStr": nonce, "package": package,
           "signType": "RSA",
           "paySign": sign_merchant(signed_message.unwrap_or(&message))})
}

/// What a merchant app puts into the SDK's `PayReq`.
fn app_params(prepay_id: &str, signed_message: Option<&str>) -> Value {
    let timestamp = (T0 / 1000).to_string();
    let nonce = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS";
    let message = format!("{APPID}\n{timestamp}\n{nonce}\n{prepay_id}\n");
    json!({"appid": APPID, "partnerid": MCHID, "prepayid": prepay_id, "package": "Sign=WXPay",
           "noncestr": nonce, "timestamp": timestamp,
           "sign": sign_merchant(signed_message.unwrap_or(&message))})
}

#[tokio::test]
async fn wallet_pays_jsapi_orders_with_a_valid_pay_sign() {
    let h = Harness::new();
    let inbox = receiver(&h, 0);
    let prepay_id = h.prepay_id("jsapi", "JSAPI_W01").await;

    // A paySign over another message (APP's line 4) is refused; the order stays NOTPAY.
    let wrong = format!(
        "{APPID}\n{}\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\n{prepay_id}\n",
        T0 / 1000
    );
    let (status, refused) = h.wallet(&jsapi_params(&prepay_id, Some(&wrong))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refused["err_msg"], "get_brand_wcpay_request:fail");
    assert!(refused["reason"].as_str().unwrap().contains("signature"));
    assert_eq!(h.query("JSAPI_W01").await["trade_state"], "NOTPAY");

    let (_, unknown) = h.wallet(&jsapi_params("wx_nope", None)).await;
    assert_eq!(unknown["err_msg"], "get_brand_wcpay_request:fail");
    assert!(unknown["reason"].as_str().unwrap().contains("prepay_id"));
    let mut rsa_only = jsapi_params(&prepay_id, None);
    rsa_only["signType"] = json!("MD5");
    assert_eq!(
        h.wallet(&rsa_only).await.1["err_msg"],
        "get_brand_wcpay_request:fail"
    );

    let (status, ok) = h.wallet(&jsapi_params(&prepay_id, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ok, json!({"err_msg": "get_brand_wcpay_request:ok"}));
    let paid = h.query("JSAPI_W01").await;
    assert_eq!(paid["trade_state"], "SUCCESS");
    assert_eq!(paid["trade_type"], "JSAPI");
    assert_eq!(paid["payer"]["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");

    h.run_until(T0 + SECOND).await;
    let got = received(&inbox);
    assert_eq!(got.len(), 1, "TRANSACTION.SUCCESS as usual");
    let envelope: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(envelope["event_type"], "TRANSACTION.SUCCESS");
    assert_eq!(decrypt(&envelope["resource"])["out_trade_no"], "JSAPI_W01");

    // Paying twice fails.
    let (_, again) = h.wallet(&jsapi_params(&prepay_id, None)).await;
    assert_eq!(again["err_msg"], "get_brand_wcpay_request:fail");
}

#[tokio::test]
async fn wallet_pays_app_orders_with_a_valid_sign() {
    let h = Harness::new();
    let _inbox = receiver(&h, 0);
    let prepay_id = h.prepay_id("app", "APP_W0001").await;
    let jsapi_id = h.prepay_id("jsapi", "JSAPI_W02").await;

    // JSAPI's message (package line) does not verify for APP.
    let wrong = format!(
        "{APPID}\n{}\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id={prepay_id}\n",
        T0 / 1000
    );
    let (status, refused) = h.wallet(&app_params(&prepay_id, Some(&wrong))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refused["errCode"], -1);
    assert!(refused["errStr"].as_str().unwrap().contains("signature"));
    assert_eq!(h.query("APP_W0001").await["trade_state"], "NOTPAY");

    let mut bad_sign = app_params(&prepay_id, None);
    bad_sign["sign"] = json!("not base64!");
    assert_eq!(h.wallet(&bad_sign).await.1["errCode"], -1);
    let mut other_partner = app_params(&prepay_id, None);
    other_partner["partnerid"] = json!("1900000002");
    assert_eq!(h.wallet(&other_partner).await.1["errCode"], -1);
    // An APP wallet cannot pay a JSAPI order.
    assert_eq!(
        h.wallet(&app_params(&jsapi_id, None)).await.1["errCode"],
        -1
    );

    let (status, ok) = h.wallet(&app_params(&prepay_id, None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ok, json!({"errCode": 0}));
    let paid = h.query("APP_W0001").await;
    assert_eq!(paid["trade_state"], "SUCCESS");
    assert_eq!(paid["trade_type"], "APP");

    let garbage = h
        .raw(
            Request::post("/wechatpay/wallet/pay")
                .body(Body::from("nope"))
                .unwrap(),
        )
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
}
