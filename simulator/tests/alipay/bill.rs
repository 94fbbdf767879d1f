//! Trade bills: T+1 rules, the signed download URL, and the ZIP of two GBK CSVs.

use std::io::{Cursor, Read};

use axum::body::Body;
use http::header::CONTENT_TYPE;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use simulator::app;
use tower::ServiceExt;
use zip::ZipArchive;

use super::{Harness, BASE, SELLER_ID, T0};

const DAY: i64 = 24 * 3_600_000;
const BILL: &str = "alipay.data.dataservice.bill.downloadurl.query";

async fn bill(h: &Harness, date: &str) -> Value {
    h.call(BILL, json!({"bill_type": "trade", "bill_date": date}), &[])
        .await
}

async fn download(h: &Harness, url: &str) -> (StatusCode, Option<String>, Vec<u8>) {
    let path = url.strip_prefix(BASE).expect(url);
    let response = app(h.sim.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body.to_vec())
}

fn gbk_decode(bytes: &[u8]) -> String {
    let (text, _, had_errors) = encoding_rs::GBK.decode(bytes);
    assert!(!had_errors);
    text.into_owned()
}

#[tokio::test]
async fn bill_of_a_day_with_a_payment_and_a_partial_refund() {
    let h = Harness::new();
    h.precreate("BILL_1", "10.00", false).await;
    h.action("BILL_1", "pay").await;
    let node = h
        .call(
            "alipay.trade.refund",
            json!({"out_trade_no": "BILL_1", "refund_amount": "3.00", "out_request_no": "RQ_1"}),
            &[],
        )
        .await;
    assert_eq!(node["fund_change"], "Y");
    let trade_no = h.query("BILL_1").await["trade_no"]
        .as_str()
        .unwrap()
        .to_owned();

    // Today: not yet (T+1).
    let node = bill(&h, "2026-11-25").await;
    assert_eq!(
        (node["code"].as_str(), node["sub_code"].as_str()),
        (Some("40004"), Some("isv.invalid-arguments"))
    );

    h.run_until(T0 + DAY).await;
    assert_eq!(
        bill(&h, "2026-11-26").await["sub_code"],
        "isv.invalid-arguments"
    );
    assert_eq!(
        bill(&h, "2026-11").await["sub_code"],
        "isv.invalid-arguments"
    );
    assert_eq!(
        bill(&h, "2026-11-24").await["sub_code"],
        "isp.bill_not_exist"
    );
    assert_eq!(bill(&h, "2026-10").await["sub_code"], "isp.bill_not_exist");
    assert_eq!(
        bill(&h, "25/11/2026").await["sub_code"],
        "isv.invalid-arguments"
    );
    let node = h
        .call(
            BILL,
            json!({"bill_type": "signcustomer", "bill_date": "2026-11-25"}),
            &[],
        )
        .await;
    assert_eq!(node["sub_code"], "isv.invalid-arguments");

    let node = bill(&h, "2026-11-25").await;
    assert_eq!(node["code"], "10000", "{node}");
    let url = node["bill_download_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{BASE}/alipay/bill/")), "{url}");
    assert!(url.contains("bizDates=20261125"), "{url}");

    let (status, content_type, bytes) = download(&h, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/zip"));
    let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
    assert_eq!(archive.len(), 2);
    let stem = format!("{SELLER_ID}0156_20261125");
    let mut files = Vec::new();
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).unwrap();
        assert_eq!(file.compression(), zip::CompressionMethod::Deflated);
        let name = gbk_decode(file.name_raw());
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        files.push((name, gbk_decode(&content)));
    }
    assert_eq!(files[0].0, format!("{stem}_业务明细.csv"));
    assert_eq!(files[1].0, format!("{stem}_业务明细(汇总).csv"));

    let details: Vec<&str> = files[0].1.lines().collect();
    assert_eq!(details[0], "#支付宝业务明细查询");
    assert_eq!(details[1], format!("#账号：[{SELLER_ID}0156]"));
    assert_eq!(
        details[2],
        "#起始日期：[2026年11月25日 00:00:00]   终止日期：[2026年11月26日 00:00:00]"
    );
    assert!(details[3].starts_with("#----") && details[3].contains("业务明细列表"));
    let header: Vec<&str> = details[4].split(',').collect();
    assert_eq!(header.len(), 25);
    assert_eq!(header[0], "支付宝交易号");
    assert_eq!(header[21], "退款批次号/请求号");
    let payment: Vec<&str> = details[5].split(',').collect();
    let refund: Vec<&str> = details[6].split(',').collect();
    assert_eq!(payment.len(), 25);
    assert_eq!(payment[0], format!("{trade_no}\t"));
    assert_eq!(payment[1], "BILL_1\t");
    assert_eq!(payment[2], "交易\t");
    assert_eq!(payment[3], "demo 中文");
    assert_eq!(payment[5], "2026-11-25 18:00:00");
    assert_eq!((payment[11], payment[12]), ("10.00", "10.00"));
    assert_eq!(payment[21], "\t");
    assert_eq!(refund[2], "退款\t");
    assert_eq!((refund[11], refund[12]), ("-3.00", "-3.00"));
    assert_eq!(refund[21], "RQ_1\t");
    assert!(details[7].contains("业务明细列表结束"));
    assert_eq!(
        details[8],
        "#交易合计：1笔，商家实收共10.00元，商家优惠共0.00元"
    );
    assert_eq!(
        details[9],
        "#退款合计：1笔，商家实收退款共-3.00元，商家优惠退款共0.00元"
    );
    assert_eq!(details[10], "#导出时间：[2026年11月26日 18:00:00]");
    assert_eq!(details.len(), 11);

    let summary: Vec<&str> = files[1].1.lines().collect();
    assert_eq!(summary[0], "#支付宝业务汇总查询");
    assert!(summary[4].starts_with("门店编号,门店名称,交易订单总笔数,退款订单总笔数"));
    assert_eq!(
        summary[6],
        "合计,,1,1,7.00,7.00,0.00,0.00,0.00,0.00,0.00,7.00"
    );
    assert!(summary[7].contains("业务汇总列表结束"));

    // The same totals as the control plane's settlements.
    let (_, day) = h
        .control(
            Method::GET,
            "/_paysim/alipay/settlements?date=2026-11-25",
            None,
        )
        .await;
    assert_eq!(
        (day["paid_minor"].as_i64(), day["refunded_minor"].as_i64()),
        (Some(1000), Some(300))
    );

    // The link lapses 30 s after it was issued.
    h.run_until(T0 + DAY + 29_999).await;
    assert_eq!(download(&h, &url).await.0, StatusCode::OK);
    h.run_until(T0 + DAY + 30_000).await;
    let (status, _, body) = download(&h, &url).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(String::from_utf8(body).unwrap().contains("下载超时"));

    // Month bills exist for earlier months once the month is over.
    h.run_until(T0 + 10 * DAY).await;
    let node = bill(&h, "2026-11").await;
    let month_url = node["bill_download_url"].as_str().unwrap().to_owned();
    assert!(month_url.contains("bizDates=202611"), "{month_url}");
    let (status, _, bytes) = download(&h, &month_url).await;
    assert_eq!(status, StatusCode::OK);
    let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
    let name = gbk_decode(archive.by_index(0).unwrap().name_raw());
    assert_eq!(name, format!("{SELLER_ID}0156_202611_业务明细.csv"));
    let (status, _, _) = download(&h, &format!("{BASE}/alipay/bill/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
