//! Trade bills: `GET /v3/bill/tradebill?bill_date=&bill_type=&tar_type=` answers
//! `{hash_type: SHA1, hash_value, download_url}` with a link on the simulator itself
//! (`/v3/billdownload/file?token=…`, an authenticated but unsigned download, valid
//! `BILL_LINK_TTL_MS` on the Clock). The file is the v2-style CSV of notes A4: a header row,
//! one backtick-prefixed row per payment (by payment day) and successful refund (by
//! `success_time` day) of that Beijing day, then the summary header and one summary row.
//! `hash_value` is the SHA1 of the uncompressed file; `tar_type=GZIP` serves it gzipped.

use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY};
use axum::http::StatusCode;
use determinism::{EntropyExt, UnixMillis};
use serde_json::json;
use time::{Date, Month};

use super::api::{Call, Reply};
use super::refund::RefundStatus;
use super::trade::ApiResult;
use super::wire::{self, ApiError};
use super::{State, WechatpayMock};
use crate::money::format_yuan;

/// How long a `download_url` works. The current official page says 5 minutes (the legacy
/// wiki page said 30 s).
pub const BILL_LINK_TTL_MS: i64 = 5 * 60_000;
/// Bills can be requested for about three months back (official page).
const BILL_WINDOW_DAYS: i64 = 92;
/// The fee rate the mock charges (shown as `0.60%`; fees rounded to the fen).
const FEE_PER_MILLE: i64 = 6;

/// `bill_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillType {
    All,
    Success,
    Refund,
}

/// An issued download link: the file is built when the link is issued, so the hash always
/// matches what is downloaded.
#[derive(Debug, Clone)]
pub struct BillLink {
    mchid: String,
    expires_ms: UnixMillis,
    gzip: bool,
    file: Vec<u8>,
}

const ALL_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUCCESS_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注";
const REFUND_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

/// `yyyy-MM-dd` → a date.
fn parse_date(text: &str) -> Option<Date> {
    let bytes = text.as_bytes();
    if text.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
    let day = u8::try_from(number(8..10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// `yyyy-MM-dd HH:mm:ss` in Beijing time.
fn bill_time(ms: UnixMillis) -> String {
    let text = wire::format_time(ms);
    text.get(..19).unwrap_or_default().replace('T', " ")
}

/// The fee on `minor` fen at 0.60%, rounded half up to the fen (negative for refunds).
fn fee_minor(minor: i64) -> i64 {
    let magnitude = minor
        .saturating_abs()
        .saturating_mul(FEE_PER_MILLE)
        .saturating_add(500)
        / 1000;
    if minor < 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// A fee in yuan with 5 decimals (`0.01000`).
fn format_fee(minor: i64) -> String {
    format!("{}000", format_yuan(minor))
}

/// Free text cannot hold the separator: commas and line breaks become spaces.
fn text_cell(value: &str) -> String {
    value.replace([',', '\n', '\r'], " ")
}

/// One bill line: every field prefixed with a backtick.
fn line(cells: &[String]) -> String {
    cells
        .iter()
        .map(|cell| format!("`{cell}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One data row with its totals.
struct Row {
    at_ms: UnixMillis,
    sequence: u64,
    cells: Vec<String>,
    paid_minor: i64,
    refund_minor: i64,
    fee_minor: i64,
}

/// The bill file (UTF-8, `\r\n`-free, no BOM) or None when the day has no matching activity.
fn build_file(state: &State, mchid: &str, date: Date, bill_type: BillType) -> Option<Vec<u8>> {
    let on_day = |ms: UnixMillis| wire::beijing_date(ms) == date;
    let mut rows = Vec::new();
    for trade in state.trades.values().filter(|t| t.mchid == mchid) {
        let openid = trade.payer_openid.clone().unwrap_or_default();
        let head = |at_ms: UnixMillis, status: &str, settle_minor: i64| {
            vec![
                bill_time(at_ms),
                trade.appid.clone(),
                trade.mchid.clone(),
                "0".to_owned(),
                String::new(),
                trade.transaction_id.clone(),
                trade.out_trade_no.clone(),
                openid.clone(),
                trade.trade_type.wire().to_owned(),
                status.to_owned(),
                "OTHERS".to_owned(),
                "CNY".to_owned(),
                format_yuan(settle_minor),
                "0.00".to_owned(),
            ]
        };
        let goods = [
            text_cell(&trade.description),
            text_cell(trade.attach.as_deref().unwrap_or_default()),
        ];
        if bill_type != BillType::Refund {
            if let Some(paid_ms) = trade.paid_ms.filter(|ms| on_day(*ms)) {
                let fee = fee_minor(trade.total_minor);
                let mut cells = head(paid_ms, "SUCCESS", trade.total_minor);
                if bill_type == BillType::All {
                    cells.extend(
                        ["0", "0", "0.00", "0.00", "", ""]
                            .iter()
                            .map(|c| (*c).to_owned()),
                    );
                }
                cells.extend(goods.iter().cloned());
                cells.push(format_fee(fee));
                cells.push("0.60%".to_owned());
                cells.push(format_yuan(trade.total_minor));
                if bill_type == BillType::All {
                    cells.push("0.00".to_owned());
                }
                cells.push(String::new());
                rows.push(Row {
                    at_ms: paid_ms,
                    sequence: trade.sequence,
                    cells,
                    paid_minor: trade.total_minor,
                    refund_minor: 0,
                    fee_minor: fee,
                });
            }
        }
        if bill_type == BillType::Success {
            continue;
        }
        for refund in trade
            .refunds
            .iter()
            .filter_map(|&index| state.refunds.get(index))
        {
            let Some(success_ms) = refund
                .success_ms
                .filter(|ms| refund.status == RefundStatus::Success && on_day(*ms))
            else {
                continue;
            };
            let fee = fee_minor(refund.amount_minor.saturating_neg());
            let mut cells = head(success_ms, "REFUND", 0);
            if bill_type == BillType::Refund {
                cells.push(bill_time(refund.created_ms));
                cells.push(bill_time(success_ms));
            }
            cells.extend([
                refund.refund_id.clone(),
                refund.out_refund_no.clone(),
                format_yuan(refund.amount_minor),
                "0.00".to_owned(),
                "ORIGINAL".to_owned(),
                "SUCCESS".to_owned(),
            ]);
            cells.extend(goods.iter().cloned());
            cells.push(format_fee(fee));
            cells.push("0.60%".to_owned());
            cells.push("0.00".to_owned());
            cells.push(format_yuan(refund.amount_minor));
            cells.push(String::new());
            rows.push(Row {
                at_ms: success_ms,
                sequence: trade.sequence,
                cells,
                paid_minor: 0,
                refund_minor: refund.amount_minor,
                fee_minor: fee,
            });
        }
    }
    if rows.is_empty() {
        return None;
    }
    rows.sort_by_key(|row| (row.at_ms, row.sequence, row.refund_minor));
    let header = match bill_type {
        BillType::All => ALL_HEADER,
        BillType::Success => SUCCESS_HEADER,
        BillType::Refund => REFUND_HEADER,
    };
    let mut text = String::new();
    text.push_str(header);
    text.push('\n');
    let (mut paid, mut refunded, mut fees) = (0_i64, 0_i64, 0_i64);
    for row in &rows {
        paid = paid.saturating_add(row.paid_minor);
        refunded = refunded.saturating_add(row.refund_minor);
        fees = fees.saturating_add(row.fee_minor);
        text.push_str(&line(&row.cells));
        text.push('\n');
    }
    text.push_str(SUMMARY_HEADER);
    text.push('\n');
    text.push_str(&line(&[
        rows.len().to_string(),
        format_yuan(paid),
        format_yuan(refunded),
        "0.00".to_owned(),
        format_fee(fees),
        format_yuan(paid),
        format_yuan(refunded),
    ]));
    text.push('\n');
    Some(text.into_bytes())
}

/// Lower-case hex SHA1.
pub fn sha1_hex(bytes: &[u8]) -> String {
    digest(&SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// CRC-32 (IEEE), for the gzip trailer.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A valid gzip member using stored (uncompressed) deflate blocks: no compression library
/// is needed and every gunzip reads it.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(usize::from(u16::MAX)).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    // ISIZE: the length modulo 2^32.
    let size = u64::try_from(data.len()).map_or(0, |len| len & 0xFFFF_FFFF);
    let size = u32::try_from(size).unwrap_or(0);
    out.extend_from_slice(&size.to_le_bytes());
    out
}

impl WechatpayMock {
    /// `GET /v3/bill/tradebill`.
    pub(super) fn trade_bill(&self, call: &Call<'_>) -> ApiResult {
        let fail = |error: ApiError| (error, None);
        let date_text = wire::query_param(call.query, "bill_date")
            .ok_or_else(|| fail(ApiError::param("缺少参数 bill_date")))?;
        let date = parse_date(&date_text).ok_or_else(|| {
            fail(ApiError::param(format!(
                "bill_date {date_text:?} 格式错误，应为 yyyy-MM-DD"
            )))
        })?;
        let bill_type = match wire::query_param(call.query, "bill_type").as_deref() {
            None | Some("ALL") => BillType::All,
            Some("SUCCESS") => BillType::Success,
            Some("REFUND") => BillType::Refund,
            Some(other) => {
                return Err(fail(ApiError::param(format!(
                    "bill_type {other:?} 无效，模拟器支持 ALL、SUCCESS、REFUND"
                ))))
            }
        };
        let gzip = match wire::query_param(call.query, "tar_type").as_deref() {
            None => false,
            Some("GZIP") => true,
            Some(other) => {
                return Err(fail(ApiError::param(format!(
                    "tar_type {other:?} 无效，只能为 GZIP"
                ))))
            }
        };
        let today = wire::beijing_date(call.now_ms);
        if date >= today {
            return Err(fail(ApiError::param(format!(
                "bill_date {date_text} 无效：只能申请今天以前的账单"
            ))));
        }
        if (today - date).whole_days() > BILL_WINDOW_DAYS {
            return Err(fail(ApiError::param(format!(
                "bill_date {date_text} 无效：仅支持三个月内的账单下载申请"
            ))));
        }
        let mut state = self.lock();
        let file = build_file(&state, &call.merchant.mchid, date, bill_type).ok_or_else(|| {
            fail(ApiError::new(
                StatusCode::BAD_REQUEST,
                "NO_STATEMENT_EXIST",
                "请求的账单文件不存在",
            ))
        })?;
        let hash = sha1_hex(&file);
        state
            .bill_links
            .retain(|_, link| link.expires_ms > call.now_ms);
        let token = self.entropy.token(32);
        state.bill_links.insert(
            token.clone(),
            BillLink {
                mchid: call.merchant.mchid.clone(),
                expires_ms: call.now_ms.saturating_add(BILL_LINK_TTL_MS),
                gzip,
                file,
            },
        );
        let url = format!("{}/v3/billdownload/file?token={token}", self.base_url);
        let body = json!({"hash_type": "SHA1", "hash_value": hash, "download_url": url});
        Ok((Reply::Json(body.to_string()), None))
    }

    /// `GET /v3/billdownload/file?token=`: the file, unsigned (errors are signed as usual).
    pub(super) fn bill_download(&self, call: &Call<'_>) -> ApiResult {
        let fail = |error: ApiError| (error, None);
        let token = wire::query_param(call.query, "token")
            .ok_or_else(|| fail(ApiError::param("缺少参数 token")))?;
        let mut state = self.lock();
        state
            .bill_links
            .retain(|_, link| link.expires_ms > call.now_ms);
        let link = state
            .bill_links
            .get(&token)
            .filter(|link| link.mchid == call.merchant.mchid)
            .ok_or_else(|| {
                fail(ApiError::invalid_request(
                    "下载链接无效或已过期，请重新申请账单",
                ))
            })?;
        let (bytes, content_type) = if link.gzip {
            (gzip_stored(&link.file), "application/x-gzip")
        } else {
            (link.file.clone(), "text/plain;charset=utf-8")
        };
        Ok((
            Reply::File {
                bytes,
                content_type,
            },
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_fees_and_digests() {
        assert!(parse_date("2026-11-24").is_some());
        assert!(parse_date("2026-02-30").is_none());
        assert!(parse_date("20261124").is_none());
        assert_eq!(fee_minor(100), 1);
        assert_eq!(fee_minor(-30), 0);
        assert_eq!(fee_minor(-100), -1);
        assert_eq!(format_fee(1), "0.01000");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let gz = gzip_stored(b"hello");
        assert_eq!(gz.len(), 10 + 5 + 5 + 8);
    }
}
