//! WeChat Pay APIv3 wire conventions, written from the protocol notes (not shared with the
//! gateway): the `{code, message}` error dialect with its HTTP statuses, RFC 3339 times in
//! Beijing time (`+08:00`), and the field readers the request bodies need.

use axum::http::StatusCode;
use determinism::UnixMillis;
use serde_json::{Map, Value};
use time::macros::offset;
use time::OffsetDateTime;

/// A refusal in WeChat Pay's dialect: an HTTP status and `{"code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// 400 PARAM_ERROR: a missing or malformed field.
    pub fn param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "PARAM_ERROR", message)
    }

    /// 400 INVALID_REQUEST: breaks an APIv3 or business rule.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// 401 SIGN_ERROR: the request cannot be authenticated.
    pub fn sign(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "SIGN_ERROR", message)
    }

    /// 500 SYSTEM_ERROR: outcome unknown, retry with the same parameters.
    pub fn system() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SYSTEM_ERROR",
            "系统错误",
        )
    }

    /// The JSON body (`{"code":"…","message":"…"}`, compact).
    pub fn body(&self) -> String {
        serde_json::json!({"code": self.code, "message": self.message}).to_string()
    }
}

/// The HTTP status WeChat Pay answers a public error code with (protocol notes A3); unknown
/// codes are business refusals (403).
pub fn status_of_code(code: &str) -> StatusCode {
    match code {
        "PARAM_ERROR"
        | "INVALID_REQUEST"
        | "APPID_MCHID_NOT_MATCH"
        | "MCH_NOT_EXISTS"
        | "ORDER_CLOSED"
        | "ORDERPAID"
        | "NO_STATEMENT_EXIST"
        | "STATEMENT_CREATING" => StatusCode::BAD_REQUEST,
        "SIGN_ERROR" => StatusCode::UNAUTHORIZED,
        "ORDER_NOT_EXIST" | "ORDERNOTEXIST" | "RESOURCE_NOT_EXISTS" => StatusCode::NOT_FOUND,
        "FREQUENCY_LIMITED" | "RATELIMIT_EXCEEDED" => StatusCode::TOO_MANY_REQUESTS,
        "SYSTEM_ERROR" | "BANKERROR" => StatusCode::INTERNAL_SERVER_ERROR,
        "SERVICE_UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        "USER_PAYING" | "USERPAYING" => StatusCode::ACCEPTED,
        _ => StatusCode::FORBIDDEN,
    }
}

fn beijing(ms: UnixMillis) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .to_offset(offset!(+8))
}

/// `yyyy-MM-DDTHH:mm:ss+08:00`: every time field on the WeChat Pay wire.
pub fn format_time(ms: UnixMillis) -> String {
    let at = beijing(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+08:00",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// `yyyyMMddHHmmss` in Beijing time (inside generated ids).
pub fn compact_time(ms: UnixMillis) -> String {
    let at = beijing(ms);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The Beijing business day of `ms`.
pub fn beijing_date(ms: UnixMillis) -> time::Date {
    beijing(ms).date()
}

/// Unix seconds of `ms` (the `timestamp` of signatures).
pub fn unix_seconds(ms: UnixMillis) -> i64 {
    ms.div_euclid(1_000)
}

/// A required string field (`/path` names it in the message).
pub fn required_str<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    optional_str(body, key)?.ok_or_else(|| ApiError::param(format!("缺少参数 {key}")))
}

/// An optional string field: None when absent or null; an error when not a string.
pub fn optional_str<'a>(
    body: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::param(format!("{key} 字段类型错误，应为字符串"))),
    }
}

/// An optional object field.
pub fn optional_object<'a>(
    body: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(_) => Err(ApiError::param(format!("{key} 字段类型错误，应为对象"))),
    }
}

/// A required integer amount in fen (≥ 1).
pub fn required_fen(body: &Map<String, Value>, path: &str, key: &str) -> Result<i64, ApiError> {
    let value = body
        .get(key)
        .ok_or_else(|| ApiError::param(format!("缺少参数 {path}/{key}")))?;
    let fen = value
        .as_i64()
        .ok_or_else(|| ApiError::param(format!("{path}/{key} 应为整数（单位：分）")))?;
    if fen < 1 {
        return Err(ApiError::param(format!("{path}/{key} 金额不能小于1分")));
    }
    Ok(fen)
}

/// The `currency` of an amount object: absent or `CNY`.
pub fn check_currency(amount: &Map<String, Value>, path: &str) -> Result<(), ApiError> {
    match optional_str(amount, "currency")? {
        None | Some("CNY") => Ok(()),
        Some(other) => Err(ApiError::param(format!(
            "{path}/currency {other:?} 无效，境内商户仅支持 CNY"
        ))),
    }
}

/// The body as a JSON object (an empty body is an empty object).
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::param("请求体应为 JSON 对象")),
        Err(error) => Err(ApiError::param(format!("请求体不是有效的 JSON: {error}"))),
    }
}

/// Decodes `%XX` escapes in a path segment (invalid escapes are kept literally).
pub fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                index += 3;
            }
            None => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of `key` in a query string.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_beijing_rfc3339() {
        // 2026-11-25T10:00:00Z
        assert_eq!(format_time(1_795_600_800_000), "2026-11-25T18:00:00+08:00");
        assert_eq!(compact_time(1_795_600_800_000), "20261125180000");
        assert_eq!(unix_seconds(1_795_600_800_999), 1_795_600_800);
    }

    #[test]
    fn path_segments_decode() {
        assert_eq!(percent_decode("A%7C1%2A"), "A|1*");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn codes_map_to_documented_statuses() {
        assert_eq!(status_of_code("SIGN_ERROR"), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of_code("ORDER_NOT_EXIST"), StatusCode::NOT_FOUND);
        assert_eq!(status_of_code("NOT_ENOUGH"), StatusCode::FORBIDDEN);
        assert_eq!(
            status_of_code("SYSTEM_ERROR"),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
