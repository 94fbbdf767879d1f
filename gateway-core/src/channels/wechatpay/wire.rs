//! WeChat Pay APIv3 wire formats: request bodies, response and notification structs, and the
//! conversions for RFC 3339 Beijing times and integer fen amounts.
//!
//! Response structs read only what the adapter uses; every field is optional and unknown
//! fields are ignored (WeChat adds fields without notice). What is required is decided by the
//! mapping in `wechatpay.rs`, which names the missing field.

use determinism::UnixMillis;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::{format_description, offset};
use time::{OffsetDateTime, UtcOffset};

use crate::channel::AdapterError;
use crate::money::{fen, Currency, Money};

// ------------------------------------------------------------------ requests

/// `POST /v3/pay/transactions/{native,jsapi,app,h5}`. Field order is the serialisation order;
/// `None` fields are left out.
#[derive(Debug, Serialize)]
pub(super) struct Prepay<'a> {
    pub appid: &'a str,
    pub mchid: &'a str,
    pub description: &'a str,
    pub out_trade_no: &'a str,
    /// RFC 3339 with `+08:00`.
    pub time_expire: String,
    pub notify_url: &'a str,
    pub amount: PrepayAmount,
    /// jsapi only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer<'a>>,
    /// h5 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scene_info: Option<SceneInfo<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct PrepayAmount {
    /// Fen.
    pub total: i64,
    pub currency: &'static str,
}

#[derive(Debug, Serialize)]
pub(super) struct Payer<'a> {
    pub openid: &'a str,
}

#[derive(Debug, Serialize)]
pub(super) struct SceneInfo<'a> {
    pub payer_client_ip: &'a str,
    pub h5_info: H5Info,
}

#[derive(Debug, Serialize)]
pub(super) struct H5Info {
    /// `Wap` (a mobile web site), `iOS` or `Android`; the gateway's wap method is a web site.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `POST /v3/pay/transactions/out-trade-no/{no}/close`.
#[derive(Debug, Serialize)]
pub(super) struct Close<'a> {
    pub mchid: &'a str,
}

/// `POST /v3/pay/transactions/codepay` (付款码支付): no `notify_url` and no `time_expire` —
/// the answer is the outcome (or 202 `USER_PAYING`, then queries and a reverse).
#[derive(Debug, Serialize)]
pub(super) struct Codepay<'a> {
    pub appid: &'a str,
    pub mchid: &'a str,
    pub description: &'a str,
    pub out_trade_no: &'a str,
    pub payer: CodepayPayer<'a>,
    pub amount: PrepayAmount,
    pub scene_info: CodepaySceneInfo<'a>,
}

#[derive(Debug, Serialize)]
pub(super) struct CodepayPayer<'a> {
    /// The buyer's payment code as scanned (18 digits starting 10–15).
    pub auth_code: &'a str,
}

/// `scene_info.store_info` is required by codepay; `out_id` is the merchant's own store code
/// (`id` would be a WeChat-assigned store number, which the gateway does not have).
#[derive(Debug, Serialize)]
pub(super) struct CodepaySceneInfo<'a> {
    pub store_info: StoreInfo<'a>,
}

#[derive(Debug, Serialize)]
pub(super) struct StoreInfo<'a> {
    pub out_id: &'a str,
}

/// `POST /v3/pay/transactions/out-trade-no/{no}/reverse` (撤销, payment-code orders).
#[derive(Debug, Serialize)]
pub(super) struct Reverse<'a> {
    pub mchid: &'a str,
    pub appid: &'a str,
}

/// `POST /v3/refund/domestic/refunds`.
#[derive(Debug, Serialize)]
pub(super) struct RefundCreate<'a> {
    pub out_trade_no: &'a str,
    pub out_refund_no: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub notify_url: &'a str,
    pub amount: RefundCreateAmount,
}

#[derive(Debug, Serialize)]
pub(super) struct RefundCreateAmount {
    /// Fen.
    pub refund: i64,
    /// The order's total, fen.
    pub total: i64,
    pub currency: &'static str,
}

// ------------------------------------------------------------------ responses

/// The error body of every non-2xx answer: `{"code":"…","message":"…"}` (older answers add a
/// `detail` object, ignored).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
}

/// The 200 answer of the prepay calls: native `code_url`, jsapi/app `prepay_id`, h5 `h5_url`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PrepayReply {
    pub code_url: Option<String>,
    pub prepay_id: Option<String>,
    pub h5_url: Option<String>,
}

/// A transaction: the query answer and the `TRANSACTION.SUCCESS` plaintext.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Transaction {
    pub appid: Option<String>,
    pub mchid: Option<String>,
    pub out_trade_no: Option<String>,
    pub transaction_id: Option<String>,
    /// `SUCCESS, REFUND, NOTPAY, CLOSED, REVOKED, USERPAYING, PAYERROR` (+ `ACCEPT`).
    pub trade_state: Option<String>,
    pub trade_state_desc: Option<String>,
    pub success_time: Option<String>,
    pub amount: Option<TransactionAmount>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TransactionAmount {
    /// The order total, fen (what the merchant is credited; `payer_total` is net of coupons).
    pub total: Option<i64>,
    pub currency: Option<String>,
}

/// A refund: the answer of refund create and refund query, and the `REFUND.*` plaintext (which
/// names the status `refund_status` instead of `status`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RefundReply {
    pub mchid: Option<String>,
    pub out_trade_no: Option<String>,
    pub refund_id: Option<String>,
    pub out_refund_no: Option<String>,
    /// Create / query: `SUCCESS, CLOSED, PROCESSING, ABNORMAL`.
    pub status: Option<String>,
    /// Notification: `SUCCESS, CLOSED, ABNORMAL`.
    pub refund_status: Option<String>,
    pub amount: Option<RefundAmount>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RefundAmount {
    /// The refund, fen.
    pub refund: Option<i64>,
    pub currency: Option<String>,
}

/// A notification's envelope: the signed JSON around the encrypted resource.
#[derive(Debug, Deserialize)]
pub(super) struct Notify {
    pub id: Option<String>,
    pub event_type: String,
    pub resource_type: Option<String>,
    pub resource: Resource,
}

#[derive(Debug, Deserialize)]
pub(super) struct Resource {
    pub algorithm: String,
    pub ciphertext: String,
    #[serde(default)]
    pub associated_data: Option<String>,
    pub nonce: String,
    pub original_type: Option<String>,
}

/// `GET /v3/certificates`: the platform certificates, each encrypted with the APIv3 key
/// (`associated_data` `certificate`).
#[derive(Debug, Deserialize)]
pub(super) struct Certificates {
    pub data: Vec<CertificateEntry>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CertificateEntry {
    pub serial_no: String,
    pub encrypt_certificate: Resource,
}

// ------------------------------------------------------------------ conversions

/// Beijing time, the zone WeChat writes every time in.
const BEIJING: UtcOffset = offset!(+8);

/// RFC 3339 in Beijing time, whole seconds: `2026-11-25T17:59:37+08:00` (`time_expire`). A
/// fraction of a second is dropped, moving the expiry earlier, never later.
pub(super) fn beijing_rfc3339(at_ms: UnixMillis) -> Result<String, AdapterError> {
    let nanos = i128::from(at_ms.div_euclid(1000)) * 1_000_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|error| AdapterError::Invalid(format!("time {at_ms} ms: {error}")))?
        .to_offset(BEIJING)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
        ))
        .map_err(|error| AdapterError::Invalid(format!("time {at_ms} ms: {error}")))
}

/// Parses an RFC 3339 time (`success_time`). `None` when it does not parse.
pub(super) fn parse_rfc3339(text: &str) -> Option<UnixMillis> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// An integer fen amount the channel sent, in `currency` (`"CNY"` when the field is absent);
/// anything else is a protocol error.
pub(super) fn amount(
    field: &str,
    value: Option<i64>,
    currency: Option<&str>,
) -> Result<Money, AdapterError> {
    let value =
        value.ok_or_else(|| AdapterError::Protocol(format!("{field}: the amount is missing")))?;
    let currency = match currency {
        None | Some("") => Currency::Cny,
        Some(code) => code
            .parse()
            .map_err(|error| AdapterError::Protocol(format!("{field}: {error}")))?,
    };
    fen::from_i64(value, currency)
        .map_err(|error| AdapterError::Protocol(format!("{field} {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_expire_is_rfc3339_beijing_whole_seconds() {
        // 2026-11-25 09:59:37 UTC
        let at_ms = 1_795_600_777_000;
        assert_eq!(beijing_rfc3339(at_ms).unwrap(), "2026-11-25T17:59:37+08:00");
        assert_eq!(
            beijing_rfc3339(at_ms + 999).unwrap(),
            "2026-11-25T17:59:37+08:00"
        );
        assert_eq!(parse_rfc3339("2026-11-25T17:59:37+08:00"), Some(at_ms));
        assert_eq!(parse_rfc3339("2026-11-25T09:59:37Z"), Some(at_ms));
        assert_eq!(
            parse_rfc3339("2026-11-25T17:59:37.5+08:00"),
            Some(at_ms + 500)
        );
        assert_eq!(parse_rfc3339("2026-11-25 17:59:37"), None);
    }

    #[test]
    fn amounts_are_integer_fen() {
        assert_eq!(
            amount("amount.total", Some(8888), Some("CNY")).unwrap(),
            Money::from_minor(8888, Currency::Cny)
        );
        assert_eq!(
            amount("amount.total", Some(1), None).unwrap(),
            Money::from_minor(1, Currency::Cny)
        );
        for (value, currency) in [
            (None, Some("CNY")),
            (Some(-1), None),
            (Some(1), Some("XYZ")),
        ] {
            assert!(matches!(
                amount("amount.total", value, currency),
                Err(AdapterError::Protocol(_))
            ));
        }
    }
}
