//! Trade bills: `alipay.data.dataservice.bill.downloadurl.query` (`bill_type=trade`,
//! `bill_date` `yyyy-MM-dd` or `yyyy-MM`, T+1 only) answers a `bill_download_url` on the
//! simulator itself (`/alipay/bill/{token}`, valid 30 s on the Clock, token from Entropy).
//! The download is `<seller_id>0156_<yyyymmdd|yyyymm>.csv.zip` (deflate) holding two GBK CSVs,
//! the details (`…_业务明细.csv`) and the summary (`…_业务明细(汇总).csv`), laid out as the
//! public fixtures in notes A3.6 show. Rows are the payments and refunds settled in the period
//! (Beijing days), the same source as `/_paysim/alipay/settlements`.
//!
//! Zip entry names are GBK without the UTF-8 flag, like Alipay's. The `zip` crate only takes
//! UTF-8 names, so entries are written under ASCII placeholders of the same byte length and
//! the two name fields of each entry (local header, central directory) are then overwritten
//! with the GBK bytes; lengths, offsets and CRCs are unaffected.

use std::io::{Cursor, Write};
use std::sync::Arc;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use determinism::{EntropyExt, UnixMillis};
use time::{Date, Month};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::trade::Call;
use super::wire::{self, ApiError, Node};
use super::{AlipayMock, State};
use crate::money::format_yuan;

/// The bill API's method name.
pub const BILL_METHOD: &str = "alipay.data.dataservice.bill.downloadurl.query";

/// How long a `bill_download_url` works: 30 seconds (official response-field description).
pub const BILL_LINK_TTL_MS: i64 = 30_000;

/// How long a lapsed link is remembered (answering "expired" rather than "unknown").
const LAPSED_LINK_KEPT_MS: i64 = 24 * 3_600_000;

/// A day bill or a month bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillPeriod {
    Day(Date),
    Month(i32, Month),
}

impl BillPeriod {
    /// `yyyyMMdd` or `yyyyMM` (`bizDates` and the file names).
    fn label(self) -> String {
        match self {
            BillPeriod::Day(date) => format!(
                "{:04}{:02}{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            ),
            BillPeriod::Month(year, month) => format!("{year:04}{:02}", u8::from(month)),
        }
    }

    /// First and last (exclusive) Beijing day of the period.
    fn days(self) -> Option<(Date, Date)> {
        match self {
            BillPeriod::Day(date) => Some((date, date.next_day()?)),
            BillPeriod::Month(year, month) => {
                let first = Date::from_calendar_date(year, month, 1).ok()?;
                let next = match month {
                    Month::December => {
                        Date::from_calendar_date(year.checked_add(1)?, Month::January, 1)
                    }
                    _ => Date::from_calendar_date(year, month.next(), 1),
                }
                .ok()?;
                Some((first, next))
            }
        }
    }

    /// [start, end) in Unix milliseconds.
    fn range_ms(self) -> Option<(UnixMillis, UnixMillis)> {
        let (first, end) = self.days()?;
        Some((beijing_midnight_ms(first)?, beijing_midnight_ms(end)?))
    }
}

fn beijing_midnight_ms(date: Date) -> Option<UnixMillis> {
    let at = date.midnight().assume_offset(time::macros::offset!(+8));
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// An issued download link.
#[derive(Debug, Clone)]
pub struct BillLink {
    period: BillPeriod,
    issued_ms: UnixMillis,
    expires_ms: UnixMillis,
}

/// `yyyy-MM-dd` → a day, `yyyy-MM` → a month; None otherwise.
fn parse_bill_date(text: &str) -> Option<BillPeriod> {
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let dash = |at: usize| text.as_bytes().get(at) == Some(&b'-');
    let year = i32::try_from(digits(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(digits(5..7)?).ok()?).ok()?;
    match text.len() {
        7 if dash(4) => Some(BillPeriod::Month(year, month)),
        10 if dash(4) && dash(7) => {
            let day = u8::try_from(digits(8..10)?).ok()?;
            Date::from_calendar_date(year, month, day)
                .ok()
                .map(BillPeriod::Day)
        }
        _ => None,
    }
}

/// Invalid arguments, as the bill API answers them. The official error table names
/// `INVAILID_ARGUMENTS` (sic); the modern dotted form is used here.
fn invalid_arguments(detail: &str) -> ApiError {
    ApiError::business("isv.invalid-arguments", format!("入参不合法: {detail}"))
}

/// One line of the details file, with the values the totals need.
struct Row {
    at_ms: UnixMillis,
    sequence: u64,
    refund: bool,
    amount_minor: i64,
    cells: Vec<String>,
}

/// What the CSVs hold for one period.
struct Bill {
    period: BillPeriod,
    rows: Vec<Row>,
}

impl AlipayMock {
    /// `alipay.data.dataservice.bill.downloadurl.query`.
    pub(super) fn bill_download_url(
        &self,
        state: &mut State,
        call: &Call<'_>,
    ) -> Result<Node, ApiError> {
        let text = |key: &str| {
            call.biz
                .get(key)
                .and_then(serde_json::Value::as_str)
                .filter(|v| !v.is_empty())
        };
        let bill_type =
            text("bill_type").ok_or_else(|| invalid_arguments("bill_type is required"))?;
        if bill_type != "trade" {
            return Err(invalid_arguments(&format!(
                "bill_type {bill_type:?}: the mock serves trade bills only"
            )));
        }
        let date_text =
            text("bill_date").ok_or_else(|| invalid_arguments("bill_date is required"))?;
        let period = parse_bill_date(date_text).ok_or_else(|| {
            invalid_arguments(&format!(
                "bill_date {date_text:?} must be yyyy-MM-dd or yyyy-MM"
            ))
        })?;
        // T+1: no bill for today (or this month) or later.
        let today = wire::beijing_date(call.now_ms);
        let too_early = match period {
            BillPeriod::Day(date) => date >= today,
            BillPeriod::Month(year, month) => {
                (year, u8::from(month)) >= (today.year(), u8::from(today.month()))
            }
        };
        if too_early {
            return Err(invalid_arguments(&format!(
                "bill_date {date_text}: only bills of earlier days (T+1) or earlier months can be downloaded"
            )));
        }
        let bill = self.collect_bill(state, period);
        if bill.rows.is_empty() {
            return Err(ApiError::business("isp.bill_not_exist", "账单不存在"));
        }
        // Lapsed links answer "expired" for a day, then are forgotten (bounded memory).
        state
            .bill_links
            .retain(|_, link| link.expires_ms.saturating_add(LAPSED_LINK_KEPT_MS) > call.now_ms);
        let token = self.entropy.token(32);
        state.bill_links.insert(
            token.clone(),
            BillLink {
                period,
                issued_ms: call.now_ms,
                expires_ms: call.now_ms.saturating_add(BILL_LINK_TTL_MS),
            },
        );
        let label = period.label();
        let url = format!(
            "{base}/alipay/bill/{token}?bizType=trade&userId={pid}0156&fileType=csv.zip&bizDates={label}&downloadFileName={name}&timestamp={ts}",
            base = self.base_url,
            pid = self.seller_id,
            name = self.zip_name(period),
            ts = call.now_ms,
        );
        let mut node = Node::success();
        node.push("bill_download_url", url);
        Ok(node)
    }

    fn zip_name(&self, period: BillPeriod) -> String {
        format!("{}0156_{}.csv.zip", self.seller_id, period.label())
    }

    /// Payments (by payment time) and refunds (by refund time) within the period.
    fn collect_bill(&self, state: &State, period: BillPeriod) -> Bill {
        let Some((start, end)) = period.range_ms() else {
            return Bill {
                period,
                rows: Vec::new(),
            };
        };
        let within = |ms: UnixMillis| ms >= start && ms < end;
        let mut rows = Vec::new();
        for trade in state.trades.values() {
            let created = trade
                .gmt_create_ms
                .map(wire::format_beijing)
                .unwrap_or_default();
            let buyer = trade
                .buyer
                .as_ref()
                .map(|b| b.logon_id.clone())
                .unwrap_or_default();
            let row = |kind: &str, at_ms: UnixMillis, minor: i64, request_no: &str| {
                vec![
                    id_cell(&trade.trade_no),
                    id_cell(&trade.out_trade_no),
                    id_cell(kind),
                    csv_cell(&trade.subject),
                    created.clone(),
                    wire::format_beijing(at_ms),
                    id_cell(""),
                    id_cell(""),
                    id_cell(""),
                    id_cell(""),
                    id_cell(&buyer),
                    format_yuan(minor),
                    format_yuan(minor),
                    "0.00".to_owned(),
                    "0.00".to_owned(),
                    "0.00".to_owned(),
                    "0.00".to_owned(),
                    "0.00".to_owned(),
                    String::new(),
                    id_cell("0.00"),
                    "0.00".to_owned(),
                    id_cell(request_no),
                    "0.00".to_owned(),
                    "0.00".to_owned(),
                    csv_cell(trade.body.as_deref().unwrap_or("")),
                ]
            };
            if let Some(paid_ms) = trade.paid_ms.filter(|ms| within(*ms)) {
                rows.push(Row {
                    at_ms: paid_ms,
                    sequence: trade.sequence,
                    refund: false,
                    amount_minor: trade.total_minor,
                    cells: row("交易", paid_ms, trade.total_minor, ""),
                });
            }
            for refund in trade.refunds.iter().filter(|r| within(r.at_ms)) {
                let minor = refund.amount_minor.saturating_neg();
                rows.push(Row {
                    at_ms: refund.at_ms,
                    sequence: refund.sequence,
                    refund: true,
                    amount_minor: minor,
                    cells: row("退款", refund.at_ms, minor, &refund.out_request_no),
                });
            }
        }
        rows.sort_by_key(|row| (row.at_ms, row.sequence, row.refund));
        Bill { period, rows }
    }

    /// The two CSVs (UTF-8 text; encoded to GBK when zipped).
    fn bill_csvs(&self, bill: &Bill, exported_ms: UnixMillis) -> (String, String) {
        let account = format!("#账号：[{}0156]", self.seller_id);
        let (first, end) = bill.period.days().unwrap_or((Date::MIN, Date::MIN));
        let dates = format!(
            "#起始日期：[{}]   终止日期：[{}]",
            chinese_datetime(first, None),
            chinese_datetime(end, None)
        );
        let exported = format!(
            "#导出时间：[{}]",
            chinese_datetime(wire::beijing_date(exported_ms), Some(exported_ms))
        );
        let (mut paid_count, mut paid_minor, mut refund_count, mut refund_minor) =
            (0_u64, 0_i64, 0_u64, 0_i64);
        for row in &bill.rows {
            if row.refund {
                refund_count += 1;
                refund_minor = refund_minor.saturating_add(row.amount_minor);
            } else {
                paid_count += 1;
                paid_minor = paid_minor.saturating_add(row.amount_minor);
            }
        }
        let mut details = String::new();
        for line in [
            "#支付宝业务明细查询",
            &account,
            &dates,
            "#-----------------------------------------业务明细列表----------------------------------------",
            DETAIL_HEADER,
        ] {
            details.push_str(line);
            details.push('\n');
        }
        for row in &bill.rows {
            details.push_str(&row.cells.join(","));
            details.push('\n');
        }
        for line in [
            "#-----------------------------------------业务明细列表结束------------------------------------".to_owned(),
            format!(
                "#交易合计：{paid_count}笔，商家实收共{}元，商家优惠共0.00元",
                format_yuan(paid_minor)
            ),
            format!(
                "#退款合计：{refund_count}笔，商家实收退款共{}元，商家优惠退款共0.00元",
                format_yuan(refund_minor)
            ),
            exported.clone(),
        ] {
            details.push_str(&line);
            details.push('\n');
        }

        let net = format_yuan(paid_minor.saturating_add(refund_minor));
        let totals =
            format!("{paid_count},{refund_count},{net},{net},0.00,0.00,0.00,0.00,0.00,{net}");
        let mut summary = String::new();
        for line in [
            "#支付宝业务汇总查询".to_owned(),
            account,
            dates,
            "#-----------------------------------------业务汇总列表----------------------------------------".to_owned(),
            SUMMARY_HEADER.to_owned(),
            // One row per store; the mock has no stores, so one row with empty store cells.
            format!("\t,\t,{totals}"),
            format!("合计,,{totals}"),
            "#----------------------------------------业务汇总列表结束-------------------------------------".to_owned(),
            exported,
        ] {
            summary.push_str(&line);
            summary.push('\n');
        }
        (details, summary)
    }

    /// The ZIP served for a link.
    fn bill_zip(&self, bill: &Bill, exported_ms: UnixMillis) -> Result<Vec<u8>, String> {
        let (details, summary) = self.bill_csvs(bill, exported_ms);
        let stem = format!("{}0156_{}", self.seller_id, bill.period.label());
        let entries = [
            (format!("{stem}_业务明细.csv"), details),
            (format!("{stem}_业务明细(汇总).csv"), summary),
        ];
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = entries
            .iter()
            .map(|(name, text)| (gbk(name), gbk(text)))
            .collect();
        zip_with_raw_names(&encoded, zip_time(exported_ms))
    }
}

const DETAIL_HEADER: &str = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";

const SUMMARY_HEADER: &str = "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）";

/// An id-like cell: a trailing TAB keeps spreadsheets from reading it as a number.
fn id_cell(value: &str) -> String {
    format!("{}\t", csv_cell(value))
}

/// A CSV cell, quoted when it holds a comma, quote or line break.
fn csv_cell(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// `2019年09月16日 00:00:00` (Beijing); the time of `at_ms`, or midnight.
fn chinese_datetime(date: Date, at_ms: Option<UnixMillis>) -> String {
    let time = at_ms
        .map(wire::format_beijing)
        .and_then(|text| text.get(11..).map(str::to_owned))
        .unwrap_or_else(|| "00:00:00".to_owned());
    format!(
        "{:04}年{:02}月{:02}日 {time}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// GBK bytes; characters GBK lacks become HTML numeric references (encoding_rs behaviour).
fn gbk(text: &str) -> Vec<u8> {
    encoding_rs::GBK.encode(text).0.into_owned()
}

/// The entries' modification time: the Beijing wall-clock time of `ms`.
fn zip_time(ms: UnixMillis) -> DateTime {
    let text = wire::format_beijing(ms);
    let num = |range: std::ops::Range<usize>| -> Option<u16> { text.get(range)?.parse().ok() };
    let parts = (|| {
        Some((
            num(0..4)?,
            u8::try_from(num(5..7)?).ok()?,
            u8::try_from(num(8..10)?).ok()?,
            u8::try_from(num(11..13)?).ok()?,
            u8::try_from(num(14..16)?).ok()?,
            u8::try_from(num(17..19)?).ok()?,
        ))
    })();
    parts
        .and_then(|(y, mo, d, h, mi, s)| DateTime::from_date_and_time(y, mo, d, h, mi, s).ok())
        .unwrap_or_default()
}

/// Offset of the file name in a local file header / central directory header (APPNOTE
/// 4.3.7 and 4.3.12).
const LOCAL_NAME_AT: u64 = 30;
const CENTRAL_NAME_AT: u64 = 46;

/// A deflated ZIP whose entry names are the given raw bytes (GBK), without the UTF-8 flag.
fn zip_with_raw_names(entries: &[(Vec<u8>, Vec<u8>)], mtime: DateTime) -> Result<Vec<u8>, String> {
    let placeholders: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(index, (name, _))| {
            let mut placeholder = format!("{index}_");
            while placeholder.len() < name.len() {
                placeholder.push('x');
            }
            placeholder
        })
        .collect();
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(mtime);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for ((_, content), placeholder) in entries.iter().zip(&placeholders) {
        writer
            .start_file(placeholder.as_str(), options)
            .map_err(|e| e.to_string())?;
        writer.write_all(content).map_err(|e| e.to_string())?;
    }
    let mut bytes = writer.finish().map_err(|e| e.to_string())?.into_inner();

    let mut offsets = Vec::new();
    {
        let mut archive =
            ZipArchive::new(Cursor::new(bytes.as_slice())).map_err(|e| e.to_string())?;
        for index in 0..archive.len() {
            let file = archive.by_index_raw(index).map_err(|e| e.to_string())?;
            offsets.push((
                file.name_raw().to_vec(),
                file.header_start(),
                file.central_header_start(),
            ));
        }
    }
    for ((name, _), placeholder) in entries.iter().zip(&placeholders) {
        let (_, local, central) = offsets
            .iter()
            .find(|(raw, _, _)| raw.as_slice() == placeholder.as_bytes())
            .ok_or("placeholder entry not found")?;
        for at in [local + LOCAL_NAME_AT, central + CENTRAL_NAME_AT] {
            let start = usize::try_from(at).map_err(|e| e.to_string())?;
            let end = start.checked_add(name.len()).ok_or("offset overflow")?;
            let field = bytes.get_mut(start..end).ok_or("name field out of range")?;
            if field != placeholder.as_bytes() {
                return Err("name field does not hold the placeholder".into());
            }
            field.copy_from_slice(name);
        }
    }
    Ok(bytes)
}

/// `GET /alipay/bill/{token}`: the ZIP, while the link is valid.
pub(super) async fn download(
    AxumState(mock): AxumState<Arc<AlipayMock>>,
    Path(token): Path<String>,
) -> Response {
    let now_ms = mock.now_ms();
    let (bill, issued_ms) = {
        let state = mock.lock();
        let Some(link) = state.bill_links.get(&token).cloned() else {
            return text(StatusCode::NOT_FOUND, "账单不存在 / unknown bill link");
        };
        if now_ms >= link.expires_ms {
            // Official FAQ: a link older than 30 s answers "下载超时，请重新下载".
            return text(
                StatusCode::GONE,
                "下载超时，请重新下载 / the link expired after 30 s",
            );
        }
        (mock.collect_bill(&state, link.period), link.issued_ms)
    };
    match mock.bill_zip(&bill, issued_ms) {
        Ok(bytes) => {
            let disposition = HeaderValue::from_str(&format!(
                "attachment; filename=\"{}\"",
                mock.zip_name(bill.period)
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
            (
                StatusCode::OK,
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/zip"),
                    ),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                bytes,
            )
                .into_response()
        }
        Err(error) => {
            tracing::error!(%error, "building the Alipay bill ZIP failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the bill could not be built",
            )
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain;charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bill_dates_parse_days_and_months() {
        assert_eq!(
            parse_bill_date("2026-11-24"),
            Some(BillPeriod::Day(
                Date::from_calendar_date(2026, Month::November, 24).unwrap()
            ))
        );
        assert_eq!(
            parse_bill_date("2026-10"),
            Some(BillPeriod::Month(2026, Month::October))
        );
        for bad in [
            "2026-13",
            "2026-02-30",
            "2026/10",
            "20261124",
            "2026-1-1",
            "",
            "2026-10-1x",
        ] {
            assert_eq!(parse_bill_date(bad), None, "{bad:?}");
        }
        let december = BillPeriod::Month(2025, Month::December);
        assert_eq!(december.label(), "202512");
        let (first, end) = december.days().unwrap();
        assert_eq!(
            (first.day(), end.year(), end.month()),
            (1, 2026, Month::January)
        );
    }

    #[test]
    fn csv_cells_quote_and_tab() {
        assert_eq!(id_cell("123"), "123\t");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn zip_names_are_gbk_without_the_utf8_flag() {
        let name = gbk("x_业务明细.csv");
        let bytes =
            zip_with_raw_names(&[(name.clone(), gbk("中文"))], DateTime::default()).unwrap();
        let mut archive = ZipArchive::new(Cursor::new(bytes.as_slice())).unwrap();
        let file = archive.by_index(0).unwrap();
        assert_eq!(file.name_raw(), name.as_slice());
        // General-purpose flag bit 11 (UTF-8) is clear in the local header.
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        assert_eq!(flags & (1 << 11), 0);
    }
}
