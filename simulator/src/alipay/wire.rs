//! Alipay wire conventions, written from the protocol notes (not shared with the gateway):
//! received parameters and their signing string, Beijing-time formats, response nodes and
//! the public error codes.

use std::collections::BTreeMap;

use determinism::UnixMillis;
use serde_json::Value;
use time::macros::{format_description, offset};
use time::{OffsetDateTime, PrimitiveDateTime};

/// The parameters of one request, as received: query pairs first, then form-body pairs,
/// values percent-decoded and never re-serialised (signatures cover these exact strings).
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Merges the query string and an `application/x-www-form-urlencoded` body.
    pub fn from_parts(query: Option<&str>, form_body: Option<&[u8]>) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(query) = query {
            pairs.extend(
                form_urlencoded::parse(query.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        if let Some(body) = form_body {
            pairs.extend(
                form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        Self { pairs }
    }

    /// The first value received for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value for `key`, or None when absent or empty (Alipay treats both alike).
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|value| !value.is_empty())
    }

    /// The request signing string: every received parameter except `sign` and the empty
    /// ones, `sign_type` included, sorted by key (byte order = ASCII), `k=v` joined by `&`.
    /// A key received twice counts once, with its first value.
    pub fn request_sign_content(&self) -> String {
        sign_content(
            self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &["sign"],
        )
    }
}

/// Sorted `k=v&…` over `pairs` without the `excluded` keys and empty values; the first value
/// of a repeated key wins.
pub fn sign_content<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    excluded: &[&str],
) -> String {
    let mut sorted: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in pairs {
        if value.is_empty() || excluded.contains(&key) {
            continue;
        }
        sorted.entry(key).or_insert(value);
    }
    let mut content = String::new();
    for (key, value) in sorted {
        if !content.is_empty() {
            content.push('&');
        }
        content.push_str(key);
        content.push('=');
        content.push_str(value);
    }
    content
}

/// Beijing time (UTC+8) of `ms`.
fn beijing(ms: UnixMillis) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset!(+8))
}

/// `yyyy-MM-dd HH:mm:ss` in Beijing time: every time field on the Alipay wire.
pub fn format_beijing(ms: UnixMillis) -> String {
    let at = beijing(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// `yyyy-MM-dd HH:mm:ss.SSS` in Beijing time (`gmt_refund` in notifications).
pub fn format_beijing_millis(ms: UnixMillis) -> String {
    format!("{}.{:03}", format_beijing(ms), beijing(ms).millisecond())
}

/// `yyyyMMdd` of the Beijing day of `ms` (trade numbers).
pub fn beijing_compact_date(ms: UnixMillis) -> String {
    let at = beijing(ms);
    format!("{:04}{:02}{:02}", at.year(), u8::from(at.month()), at.day())
}

/// The Beijing calendar day of `ms` (settlement and bill days).
pub fn beijing_date(ms: UnixMillis) -> time::Date {
    beijing(ms).date()
}

/// Parses `yyyy-MM-dd HH:mm:ss` as Beijing time; None when the format is wrong.
pub fn parse_beijing(text: &str) -> Option<UnixMillis> {
    if text.len() != 19 {
        return None;
    }
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let local = PrimitiveDateTime::parse(text, format).ok()?;
    let utc = local.assume_offset(offset!(+8));
    i64::try_from(utc.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Milliseconds of the next Beijing midnight after `ms` (`timeout_express=1c`).
pub fn next_beijing_midnight(ms: UnixMillis) -> UnixMillis {
    let at = beijing(ms);
    let next_day = at.date().next_day().unwrap_or(at.date());
    let midnight = next_day.midnight().assume_offset(offset!(+8));
    i64::try_from(midnight.unix_timestamp_nanos() / 1_000_000).unwrap_or(ms)
}

/// An error answer in Alipay's code / msg / sub_code / sub_msg dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: &'static str,
    pub msg: &'static str,
    pub sub_code: String,
    pub sub_msg: String,
}

impl ApiError {
    /// 40001: a required common parameter is missing.
    pub fn missing(sub_code: &str, sub_msg: impl Into<String>) -> Self {
        Self::new("40001", "Missing Required Arguments", sub_code, sub_msg)
    }

    /// 40002: a common parameter (or `biz_content` itself) is invalid.
    pub fn invalid(sub_code: &str, sub_msg: impl Into<String>) -> Self {
        Self::new("40002", "Invalid Arguments", sub_code, sub_msg)
    }

    /// 40004: a business rule refused the request.
    pub fn business(sub_code: &str, sub_msg: impl Into<String>) -> Self {
        Self::new("40004", "Business Failed", sub_code, sub_msg)
    }

    /// 40004 `ACQ.INVALID_PARAMETER` naming the problem.
    pub fn invalid_parameter(detail: impl Into<String>) -> Self {
        Self::business(
            "ACQ.INVALID_PARAMETER",
            format!("参数无效: {}", detail.into()),
        )
    }

    /// 20000: the outcome is unknown (system busy).
    pub fn system_error() -> Self {
        Self::new(
            "20000",
            "Service Currently Unavailable",
            "ACQ.SYSTEM_ERROR",
            "系统异常",
        )
    }

    /// Any code, for the `error_code` fault.
    pub fn custom(code: &str, msg: &str, sub_code: &str, sub_msg: &str) -> Node {
        let mut node = Node::with_code(code, msg);
        if !sub_code.is_empty() {
            node.push("sub_code", sub_code);
        }
        if !sub_msg.is_empty() {
            node.push("sub_msg", sub_msg);
        }
        node
    }

    fn new(
        code: &'static str,
        msg: &'static str,
        sub_code: &str,
        sub_msg: impl Into<String>,
    ) -> Self {
        Self {
            code,
            msg,
            sub_code: sub_code.to_owned(),
            sub_msg: sub_msg.into(),
        }
    }

    /// The error as a response node (further fields may be appended).
    pub fn into_node(self) -> Node {
        let mut node = Node::with_code(self.code, self.msg);
        node.push("sub_code", self.sub_code);
        node.push("sub_msg", self.sub_msg);
        node
    }
}

/// A response node: an ordered list of fields, serialised compactly in that order so the
/// signed bytes are exactly the emitted bytes.
#[derive(Debug, Clone, Default)]
pub struct Node {
    fields: Vec<(String, Value)>,
}

impl Node {
    /// `{"code":"10000","msg":"Success"}`.
    pub fn success() -> Self {
        Self::with_code("10000", "Success")
    }

    /// A node starting with `code` and `msg`.
    pub fn with_code(code: &str, msg: &str) -> Self {
        let mut node = Self::default();
        node.push("code", code);
        node.push("msg", msg);
        node
    }

    /// Appends (or replaces) a field.
    pub fn push(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(field) => field.1 = value,
            None => self.fields.push((key.to_owned(), value)),
        }
        self
    }

    /// A field's value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Compact JSON text of the node.
    pub fn to_json(&self) -> String {
        let mut text = String::from("{");
        for (index, (key, value)) in self.fields.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            text.push_str(&Value::String(key.clone()).to_string());
            text.push(':');
            text.push_str(&value.to_string());
        }
        text.push('}');
        text
    }
}

/// The response node name for `method`: dots become underscores, plus `_response`. A
/// missing or implausible method name (anything but lowercase letters, digits and dots) gets
/// the legacy `error_response`, since no SDK can be waiting for a node named after it.
pub fn node_name(method: Option<&str>) -> String {
    match method {
        Some(method)
            if !method.is_empty()
                && method.len() <= 128
                && method
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.') =>
        {
            format!("{}_response", method.replace('.', "_"))
        }
        _ => String::from("error_response"),
    }
}

/// The whole response body: `{"<node_name>":<node>,"sign":"<sign>"}`, node first.
pub fn response_body(node_name: &str, node_json: &str, sign: &str) -> String {
    response_body_with_cert_sn(node_name, node_json, sign, None)
}

/// The response body, in certificate mode with `"alipay_cert_sn":"<sn>"` after `sign`
/// (`{"<node_name>":<node>,"sign":"…","alipay_cert_sn":"…"}`): real Alipay puts it before
/// `sign`, which breaks the official Python SDK's extraction; after `sign` every SDK parser
/// in notes A2.2 finds the node and its signature.
pub fn response_body_with_cert_sn(
    node_name: &str,
    node_json: &str,
    sign: &str,
    alipay_cert_sn: Option<&str>,
) -> String {
    let mut body = format!(
        "{{{}:{node_json},\"sign\":{}",
        Value::String(node_name.to_owned()),
        Value::String(sign.to_owned())
    );
    if let Some(sn) = alipay_cert_sn {
        body.push_str(",\"alipay_cert_sn\":");
        body.push_str(&Value::String(sn.to_owned()).to_string());
    }
    body.push('}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_string_sorts_skips_sign_and_empty_and_keeps_raw_values() {
        let params = Params::from_parts(
            Some("sign_type=RSA2&method=alipay.trade.query&sign=abc%2B&app_id=1&empty=&timestamp=2026-11-25+17%3A58%3A54"),
            Some(b"biz_content=%7B%22a%22%3A%22%E4%B8%AD+%26%22%7D&app_id=2"),
        );
        assert_eq!(
            params.request_sign_content(),
            "app_id=1&biz_content={\"a\":\"中 &\"}&method=alipay.trade.query&sign_type=RSA2&timestamp=2026-11-25 17:58:54"
        );
        assert_eq!(params.get("sign"), Some("abc+"));
        assert_eq!(params.non_empty("empty"), None);
        assert_eq!(params.get("empty"), Some(""));
    }

    #[test]
    fn beijing_time_round_trips() {
        // 2026-11-25T10:00:00Z is 18:00 in Beijing.
        let ms = 1_795_600_800_123;
        assert_eq!(format_beijing(ms), "2026-11-25 18:00:00");
        assert_eq!(format_beijing_millis(ms), "2026-11-25 18:00:00.123");
        assert_eq!(beijing_compact_date(ms), "20261125");
        assert_eq!(
            parse_beijing("2026-11-25 18:00:00"),
            Some(1_795_600_800_000)
        );
        assert_eq!(parse_beijing("2026-11-25T18:00:00"), None);
        assert_eq!(parse_beijing("2026-11-25 18:00"), None);
        assert_eq!(parse_beijing("2026-02-30 18:00:00"), None);
        // Next Beijing midnight after 18:00 on the 25th is 16:00Z on the 25th.
        assert_eq!(next_beijing_midnight(ms), 1_795_622_400_000);
    }

    #[test]
    fn nodes_serialise_compactly_in_order() {
        let mut node = Node::success();
        node.push("out_trade_no", "A1")
            .push("qr_code", "http://x/y");
        node.push("msg", "Success");
        assert_eq!(
            node.to_json(),
            r#"{"code":"10000","msg":"Success","out_trade_no":"A1","qr_code":"http://x/y"}"#
        );
        assert_eq!(
            node_name(Some("alipay.trade.query")),
            "alipay_trade_query_response"
        );
        assert_eq!(node_name(None), "error_response");
        assert_eq!(node_name(Some("x\"y")), "error_response");
        assert_eq!(
            response_body("a_response", "{}", "s+/="),
            r#"{"a_response":{},"sign":"s+/="}"#
        );
        assert_eq!(
            response_body_with_cert_sn("a_response", "{}", "s+/=", Some("ab_cd")),
            r#"{"a_response":{},"sign":"s+/=","alipay_cert_sn":"ab_cd"}"#
        );
    }
}
