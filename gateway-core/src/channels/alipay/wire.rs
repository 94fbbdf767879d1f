//! Alipay wire formats: `biz_content` request structs, response node structs, the top-level
//! scan that finds a response node's exact signed text, and the conversions for Beijing-time
//! timestamps and yuan amounts.

use determinism::UnixMillis;
use serde::{Deserialize, Serialize};
use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::channel::AdapterError;
use crate::money::{yuan, Currency, Money};

// ------------------------------------------------------------------ requests (biz_content)

/// `biz_content` of the trade-creating methods (precreate, page/wap/app pay, pay). Field
/// order is the serialisation order; `None` fields are left out.
#[derive(Debug, Serialize)]
pub(super) struct TradeCreate<'a> {
    pub out_trade_no: &'a str,
    pub total_amount: String,
    pub subject: &'a str,
    pub product_code: &'static str,
    /// Absolute expiry, `yyyy-MM-dd HH:mm:ss` Beijing time.
    pub time_expire: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<&'a str>,
}

/// `biz_content` of query, close and cancel.
#[derive(Debug, Serialize)]
pub(super) struct TradeRef<'a> {
    pub out_trade_no: &'a str,
}

/// `biz_content` of `alipay.trade.refund`.
#[derive(Debug, Serialize)]
pub(super) struct RefundCreate<'a> {
    pub out_trade_no: &'a str,
    pub refund_amount: String,
    pub out_request_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_reason: Option<&'a str>,
}

/// `biz_content` of `alipay.trade.fastpay.refund.query`.
#[derive(Debug, Serialize)]
pub(super) struct RefundRef<'a> {
    pub out_trade_no: &'a str,
    pub out_request_no: &'a str,
}

// ------------------------------------------------------------------ responses

/// The fields every response node carries (`code`, `msg`; `sub_code`, `sub_msg` on failure).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Status {
    pub code: String,
    #[serde(default)]
    pub msg: Option<String>,
    #[serde(default)]
    pub sub_code: Option<String>,
    #[serde(default)]
    pub sub_msg: Option<String>,
}

/// The node of precreate, pay, query, close, cancel, refund and refund query: the fields this
/// adapter reads, all optional (which are present depends on the method and the outcome).
/// Unknown fields are ignored: Alipay adds fields without notice.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Node {
    #[serde(flatten)]
    pub status: Status,
    pub out_trade_no: Option<String>,
    pub trade_no: Option<String>,
    /// precreate: the QR content.
    pub qr_code: Option<String>,
    /// query: `WAIT_BUYER_PAY`, `TRADE_CLOSED`, `TRADE_SUCCESS`, `TRADE_FINISHED`.
    pub trade_status: Option<String>,
    pub total_amount: Option<String>,
    /// pay: when the buyer paid.
    pub gmt_payment: Option<String>,
    /// query: when the buyer paid.
    pub send_pay_date: Option<String>,
    /// cancel: `Y` when the cancel must be retried.
    pub retry_flag: Option<String>,
    /// cancel: `close` (nothing was paid) or `refund` (the payment was returned).
    pub action: Option<String>,
    /// refund: `Y` when this call moved money.
    pub fund_change: Option<String>,
    /// refund query: the refund's own out_request_no.
    pub out_request_no: Option<String>,
    /// refund query: the refund's amount.
    pub refund_amount: Option<String>,
    /// refund query: `REFUND_SUCCESS`, or absent.
    pub refund_status: Option<String>,
}

/// Why a response body could not be split into top-level members: it is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NotAnObject;

/// The members of a JSON object at the top level, each value as its exact text in `text`.
///
/// Alipay signs the node's bytes exactly as sent (escapes such as `\/` included), so the
/// node must be cut out of the body, never re-serialised. This scanner walks the top level
/// only: strings are skipped with their escapes, so `{`, `}` or `"sign"` inside a value
/// cannot confuse it, and a key that only appears nested is never taken for a top-level one.
/// Values are not validated here; the node is parsed by `serde_json` after its signature.
pub(super) fn top_level_members(text: &str) -> Result<Vec<(String, &str)>, NotAnObject> {
    let bytes = text.as_bytes();
    let mut members = Vec::new();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return Err(NotAnObject);
    }
    at = skip_whitespace(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return finish(bytes, at + 1, members);
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return Err(NotAnObject);
        }
        let key_end = string_end(bytes, at)?;
        let key_text = text.get(at..key_end).ok_or(NotAnObject)?;
        let key: String = serde_json::from_str(key_text).map_err(|_| NotAnObject)?;
        at = skip_whitespace(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return Err(NotAnObject);
        }
        at = skip_whitespace(bytes, at + 1);
        let value_end = value_end(bytes, at)?;
        members.push((key, text.get(at..value_end).ok_or(NotAnObject)?));
        at = skip_whitespace(bytes, value_end);
        match bytes.get(at) {
            Some(b',') => at = skip_whitespace(bytes, at + 1),
            Some(b'}') => return finish(bytes, at + 1, members),
            _ => return Err(NotAnObject),
        }
    }
}

fn finish<'a>(
    bytes: &[u8],
    at: usize,
    members: Vec<(String, &'a str)>,
) -> Result<Vec<(String, &'a str)>, NotAnObject> {
    if skip_whitespace(bytes, at) == bytes.len() {
        Ok(members)
    } else {
        Err(NotAnObject)
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        at += 1;
    }
    at
}

/// `bytes[start]` is the opening quote; returns the index just past the closing quote.
fn string_end(bytes: &[u8], start: usize) -> Result<usize, NotAnObject> {
    let mut at = start + 1;
    loop {
        match bytes.get(at) {
            None => return Err(NotAnObject),
            Some(b'\\') => at += 2,
            Some(b'"') => return Ok(at + 1),
            Some(_) => at += 1,
        }
    }
}

/// Returns the index just past the JSON value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> Result<usize, NotAnObject> {
    match bytes.get(start) {
        None => Err(NotAnObject),
        Some(b'"') => string_end(bytes, start),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut at = start;
            loop {
                match bytes.get(at) {
                    None => return Err(NotAnObject),
                    Some(b'"') => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    Some(b'{' | b'[') => depth += 1,
                    Some(b'}' | b']') => {
                        depth = depth.checked_sub(1).ok_or(NotAnObject)?;
                        if depth == 0 {
                            return Ok(at + 1);
                        }
                    }
                    Some(_) => {}
                }
                at += 1;
            }
        }
        Some(_) => {
            // A number, `true`, `false` or `null`: up to the next delimiter.
            let mut at = start;
            while !matches!(
                bytes.get(at),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            ) {
                at += 1;
            }
            Ok(at)
        }
    }
}

// ------------------------------------------------------------------ conversions

/// Beijing time, the zone of every Alipay timestamp.
const BEIJING: UtcOffset = offset!(+8);

/// `yyyy-MM-dd HH:mm:ss` in Beijing time: the `timestamp` common parameter and `time_expire`.
pub(super) fn beijing_time(at_ms: UnixMillis) -> Result<String, AdapterError> {
    let nanos = i128::from(at_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|error| AdapterError::Invalid(format!("time {at_ms} ms: {error}")))?
        .to_offset(BEIJING)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .map_err(|error| AdapterError::Invalid(format!("time {at_ms} ms: {error}")))
}

/// Parses `yyyy-MM-dd HH:mm:ss` (optionally with a fraction, as in `gmt_refund`
/// `2015-04-28 15:45:57.320`) in Beijing time. `None` when the text does not match.
pub(super) fn parse_beijing_time(text: &str) -> Option<UnixMillis> {
    let (seconds_part, fraction) = match text.split_once('.') {
        Some((seconds_part, fraction)) => (seconds_part, Some(fraction)),
        None => (text, None),
    };
    let parsed = PrimitiveDateTime::parse(
        seconds_part,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()?;
    let whole_ms =
        i64::try_from(parsed.assume_offset(BEIJING).unix_timestamp_nanos() / 1_000_000).ok()?;
    let fraction_ms = match fraction {
        None => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let padded: String = digits.chars().chain("000".chars()).take(3).collect();
            padded.parse::<i64>().ok()?
        }
        Some(_) => return None,
    };
    whole_ms.checked_add(fraction_ms)
}

/// A yuan amount the channel sent (`"88.88"`); anything else is a protocol error.
pub(super) fn amount(field: &str, text: &str, currency: Currency) -> Result<Money, AdapterError> {
    yuan::parse(text, currency).map_err(|error| AdapterError::Protocol(format!("{field} {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<(String, String)> {
        top_level_members(text)
            .unwrap()
            .into_iter()
            .map(|(key, value)| (key, value.to_owned()))
            .collect()
    }

    #[test]
    fn scan_returns_exact_value_text() {
        let body = r#"{"a_response":{"code":"10000","url":"https:\/\/x\/y","s":"}{\"sign\":"} , "sign" : "b\/c==","n":12,"t":[1,{"x":"]"}],"z":null}"#;
        assert_eq!(
            members(body),
            vec![
                (
                    "a_response".to_owned(),
                    r#"{"code":"10000","url":"https:\/\/x\/y","s":"}{\"sign\":"}"#.to_owned()
                ),
                ("sign".to_owned(), r#""b\/c==""#.to_owned()),
                ("n".to_owned(), "12".to_owned()),
                ("t".to_owned(), r#"[1,{"x":"]"}]"#.to_owned()),
                ("z".to_owned(), "null".to_owned()),
            ]
        );
        assert_eq!(members(" {} "), vec![]);
    }

    #[test]
    fn scan_refuses_what_is_not_one_object() {
        for junk in [
            "",
            "<html>",
            "[1]",
            r#"{"a":{"b":1}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":1}{"b":2}"#,
            r#"{"a" 1}"#,
            r#"{"a":1,}"#,
            r#"{"a":1]}"#,
        ] {
            assert_eq!(top_level_members(junk), Err(NotAnObject), "{junk}");
        }
    }

    #[test]
    fn beijing_time_round_trips() {
        // 2026-11-25 09:59:37 UTC
        let at_ms = 1_795_600_777_000;
        assert_eq!(beijing_time(at_ms).unwrap(), "2026-11-25 17:59:37");
        assert_eq!(parse_beijing_time("2026-11-25 17:59:37"), Some(at_ms));
        assert_eq!(
            parse_beijing_time("2026-11-25 17:59:37.32"),
            Some(at_ms + 320)
        );
        assert_eq!(parse_beijing_time("2026-11-25T17:59:37"), None);
        assert_eq!(parse_beijing_time("2026-11-25 17:59:37."), None);
    }
}
