//! WeChat Pay APIv3 cryptography: the merchant key that signs requests and client-side pay
//! parameters (SHA256withRSA, PKCS#1 v1.5, base64), the WeChat Pay public key and platform
//! certificates that verify responses and notifications, the APIv3 key that opens `AEAD_AES_256_GCM` resources, and
//! the canonical messages both directions sign.
//!
//! Keys are decoded from PEM with the `rsa` crate's PEM decoder; every key operation runs on
//! aws-lc-rs (constant time, see the design note §8). Verification is a chain of small pure
//! steps that fail closed (architecture invariant 9): read the headers, check the key id, the
//! clock window and the signature-test marker, build the message, verify.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ParsedPublicKey, RsaKeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use determinism::UnixMillis;
use http::HeaderMap;
use key_memo::Encoding;
use rsa::pkcs8::der::pem;

use crate::channel::AdapterError;

pub(super) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The only signature scheme of APIv3 RSA merchants (`Authorization` and
/// `Wechatpay-Signature-Type`).
pub(super) const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// WeChat Pay now and then puts a deliberately wrong signature with this prefix in
/// `Wechatpay-Signature` of responses and notifications, to check that merchants verify.
/// The answer it expects is a failed verification (design: `protocols/wechatpay.md` A2).
pub(super) const SIGNATURE_TEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// Responses and notifications older or newer than this are refused (replay protection). The
/// official SDKs (Go, Java) reject `|now − timestamp| ≥ 5 min`; so does this adapter.
pub(super) const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

pub(super) const HEADER_SERIAL: &str = "wechatpay-serial";
pub(super) const HEADER_SIGNATURE: &str = "wechatpay-signature";
pub(super) const HEADER_TIMESTAMP: &str = "wechatpay-timestamp";
pub(super) const HEADER_NONCE: &str = "wechatpay-nonce";
pub(super) const HEADER_SIGNATURE_TYPE: &str = "wechatpay-signature-type";

/// The merchant API private key (`apiclient_key.pem`). `Debug` never shows the key.
pub(super) struct MerchantPrivateKey {
    key_pair: Arc<RsaKeyPair>,
    /// PKCS#1 v1.5 signatures are deterministic; aws-lc-rs uses the generator for blinding only.
    random: SystemRandom,
}

impl std::fmt::Debug for MerchantPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MerchantPrivateKey(<redacted>)")
    }
}

impl MerchantPrivateKey {
    /// Parses a PKCS#8 (`PRIVATE KEY`, what the merchant portal issues) or PKCS#1
    /// (`RSA PRIVATE KEY`) PEM.
    pub(super) fn parse(text: &str) -> Result<Self, AdapterError> {
        let invalid =
            |why: &str| AdapterError::Invalid(format!("wechatpay merchant private key: {why}"));
        let (label, der) = decode_pem(text).map_err(|why| invalid(&why))?;
        let key_pair = match label.as_str() {
            "PRIVATE KEY" => key_memo::parse(Encoding::Pkcs8, &der),
            "RSA PRIVATE KEY" => key_memo::parse(Encoding::Pkcs1, &der),
            other => return Err(invalid(&format!("unexpected PEM label {other:?}"))),
        }
        .map_err(|rejected| invalid(&rejected.to_string()))?;
        Ok(MerchantPrivateKey {
            key_pair,
            random: SystemRandom::new(),
        })
    }

    /// SHA256withRSA over `message`; standard base64 with padding.
    pub(super) fn sign(&self, message: &[u8]) -> Result<String, AdapterError> {
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(&RSA_PKCS1_SHA256, &self.random, message, &mut signature)
            .map_err(|_| {
                AdapterError::Invalid("signing with the wechatpay merchant key failed".into())
            })?;
        Ok(BASE64.encode(signature))
    }
}

/// A verifying key: the WeChat Pay public key (public-key mode, `PUB_KEY_ID_…`) or a platform
/// certificate's key.
pub(super) struct PlatformPublicKey(ParsedPublicKey);

impl std::fmt::Debug for PlatformPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlatformPublicKey(..)")
    }
}

impl PlatformPublicKey {
    /// Parses the SubjectPublicKeyInfo PEM (`PUBLIC KEY`) the merchant portal hands out, or a
    /// PKCS#1 `RSA PUBLIC KEY` PEM.
    pub(super) fn parse(text: &str) -> Result<Self, AdapterError> {
        let invalid =
            |why: &str| AdapterError::Invalid(format!("wechatpay platform public key: {why}"));
        let (label, der) = decode_pem(text).map_err(|why| invalid(&why))?;
        match label.as_str() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
            other => return Err(invalid(&format!("unexpected PEM label {other:?}"))),
        }
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map(PlatformPublicKey)
            .map_err(|rejected| invalid(&rejected.to_string()))
    }

    /// The key of a platform certificate: its SubjectPublicKeyInfo DER.
    pub(super) fn from_spki_der(der: &[u8]) -> Result<Self, AdapterError> {
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map(PlatformPublicKey)
            .map_err(|rejected| {
                AdapterError::Protocol(format!("platform certificate key: {rejected}"))
            })
    }

    /// Verifies a base64 SHA256withRSA signature over `message`.
    fn verify(&self, message: &[u8], signature_base64: &str) -> Result<(), AdapterError> {
        let signature = BASE64
            .decode(signature_base64)
            .map_err(|_| AdapterError::Signature("Wechatpay-Signature is not base64".into()))?;
        self.0.verify_sig(message, &signature).map_err(|_| {
            AdapterError::Signature(
                "Wechatpay-Signature does not verify with the platform key".into(),
            )
        })
    }
}

/// The APIv3 key: 32 ASCII bytes, used as the AES-256-GCM key of notification resources.
pub(super) struct ApiV3Key(LessSafeKey);

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key(<redacted>)")
    }
}

impl ApiV3Key {
    /// The key as configured; surrounding whitespace (a trailing newline from a key file) is
    /// dropped, what remains must be exactly 32 bytes (the merchant portal's rule).
    pub(super) fn parse(text: &str) -> Result<Self, AdapterError> {
        let key = text.trim();
        if key.len() != 32 {
            return Err(AdapterError::Invalid(format!(
                "wechatpay apiv3_key must be 32 bytes, not {}",
                key.len()
            )));
        }
        UnboundKey::new(&AES_256_GCM, key.as_bytes())
            .map(|key| ApiV3Key(LessSafeKey::new(key)))
            .map_err(|_| AdapterError::Invalid("wechatpay apiv3_key is unusable".into()))
    }

    /// Opens an `AEAD_AES_256_GCM` resource: IV = the `nonce` string's bytes (WeChat sends
    /// 12 characters; aws-lc-rs, like the official scheme, takes a 96-bit IV only), AAD =
    /// `associated_data`, `ciphertext` = base64(ciphertext ‖ 16-byte tag). Any failure is a
    /// [`AdapterError::Signature`]: an unauthenticated resource is not trusted.
    pub(super) fn decrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext_base64: &str,
    ) -> Result<Vec<u8>, AdapterError> {
        if nonce.len() != NONCE_LEN {
            return Err(AdapterError::Signature(format!(
                "resource nonce must be {NONCE_LEN} bytes, not {}",
                nonce.len()
            )));
        }
        let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes())
            .map_err(|_| AdapterError::Signature("resource nonce is unusable".into()))?;
        let mut in_out = BASE64
            .decode(ciphertext_base64)
            .map_err(|_| AdapterError::Signature("resource ciphertext is not base64".into()))?;
        let plaintext_len = self
            .0
            .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut in_out)
            .map_err(|_| {
                AdapterError::Signature(
                    "resource does not decrypt with the APIv3 key (wrong key or tampered)".into(),
                )
            })?
            .len();
        in_out.truncate(plaintext_len);
        Ok(in_out)
    }
}

/// Lines each terminated by `\n`, the last included: the shape of every APIv3 signing string.
pub(super) fn lines(parts: &[&[u8]]) -> Vec<u8> {
    let mut message = Vec::with_capacity(parts.iter().map(|part| part.len() + 1).sum());
    for part in parts {
        message.extend_from_slice(part);
        message.push(b'\n');
    }
    message
}

/// The request signing string: `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n` (BODY empty for
/// a GET, so the message then ends `NONCE\n\n`).
pub(super) fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    lines(&[
        method.as_bytes(),
        path_and_query.as_bytes(),
        timestamp.as_bytes(),
        nonce.as_bytes(),
        body,
    ])
}

/// The `Authorization` header value. WeChat parses the pairs by name; this order is the
/// official documentation's.
pub(super) fn authorization(
    mchid: &str,
    nonce: &str,
    signature: &str,
    timestamp: &str,
    serial_no: &str,
) -> String {
    format!(
        r#"{SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",timestamp="{timestamp}",serial_no="{serial_no}""#
    )
}

/// What a verified response or notification was signed with; the jsapi/app client
/// parameters reuse them (see `WechatpayAdapter::client_nonce`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SignedBy {
    /// `Wechatpay-Timestamp`, Unix seconds as sent.
    pub timestamp: String,
    /// `Wechatpay-Nonce`.
    pub nonce: String,
}

/// Verifies the `Wechatpay-*` headers over `TIMESTAMP\nNONCE\nBODY\n` (the raw body; empty for
/// a 204). Fails closed at each step:
///
/// 1. every header present exactly once (a repeated header would make "what was signed"
///    ambiguous); `Wechatpay-Signature-Type`, when sent, names the RSA scheme;
/// 2. `Wechatpay-Serial` names a key held in one of `keys` (the configured public key id or
///    a platform-certificate serial; certificate serials are compared upper-case). Another
///    serial is [`AdapterError::UnknownKey`]: the service refreshes the certificates once
///    and retries, then fails closed;
/// 3. `Wechatpay-Timestamp` within ±5 minutes of `now_ms`;
/// 4. a `WECHATPAY/SIGNTEST/` signature is refused outright (it is meant to fail);
/// 5. the RSA signature verifies with that key.
pub(super) fn verify_signed_headers(
    headers: &HeaderMap,
    body: &[u8],
    now_ms: UnixMillis,
    keys: &[&BTreeMap<String, PlatformPublicKey>],
) -> Result<SignedBy, AdapterError> {
    if let Some(signature_type) = optional_header(headers, HEADER_SIGNATURE_TYPE)? {
        if signature_type != SCHEME {
            return Err(AdapterError::Signature(format!(
                "Wechatpay-Signature-Type {signature_type:?} is not {SCHEME}"
            )));
        }
    }
    let serial = required_header(headers, HEADER_SERIAL)?;
    let upper = serial.to_ascii_uppercase();
    let key = keys
        .iter()
        .find_map(|keys| keys.get(serial).or_else(|| keys.get(&upper)))
        .ok_or_else(|| {
            AdapterError::UnknownKey(format!(
                "signed with key {serial:?}, which is neither the configured WeChat Pay public \
                 key nor a known platform certificate"
            ))
        })?;
    let timestamp = required_header(headers, HEADER_TIMESTAMP)?;
    check_freshness(timestamp, now_ms)?;
    let nonce = required_header(headers, HEADER_NONCE)?;
    let signature = required_header(headers, HEADER_SIGNATURE)?;
    if signature.starts_with(SIGNATURE_TEST_PREFIX) {
        return Err(AdapterError::Signature(
            "WECHATPAY/SIGNTEST/ signature test: refused as WeChat Pay expects".into(),
        ));
    }
    let message = lines(&[timestamp.as_bytes(), nonce.as_bytes(), body]);
    key.verify(&message, signature)?;
    Ok(SignedBy {
        timestamp: timestamp.to_owned(),
        nonce: nonce.to_owned(),
    })
}

/// A platform certificate opened from `GET /v3/certificates`.
pub(super) struct PlatformCertificate {
    /// Upper-case hex of the certificate's serial number, without leading zero bytes.
    pub serial_no: String,
    pub key: PlatformPublicKey,
    /// `notAfter`, Unix seconds.
    pub not_after_s: i64,
}

/// Parses a PEM certificate: its serial, its SubjectPublicKeyInfo as a verifying key and its
/// expiry. The chain to Tenpay's CA is not checked: the certificate arrived encrypted under
/// the APIv3 key (only WeChat Pay and the merchant hold it), and the answer carrying it must
/// verify under it.
pub(super) fn parse_certificate(pem_bytes: &[u8]) -> Result<PlatformCertificate, AdapterError> {
    let bad = |why: String| AdapterError::Protocol(format!("platform certificate: {why}"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_bytes).map_err(|e| bad(e.to_string()))?;
    let certificate = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    let raw_serial = certificate.raw_serial();
    let significant = raw_serial
        .iter()
        .position(|byte| *byte != 0)
        .and_then(|start| raw_serial.get(start..))
        .unwrap_or_default();
    if significant.is_empty() {
        return Err(bad("no serial number".into()));
    }
    Ok(PlatformCertificate {
        serial_no: hex::encode_upper(significant),
        key: PlatformPublicKey::from_spki_der(certificate.public_key().raw)?,
        not_after_s: certificate.validity().not_after.timestamp(),
    })
}

/// `timestamp` is Unix seconds (digits only) within [`MAX_CLOCK_SKEW_MS`] of `now_ms`.
fn check_freshness(timestamp: &str, now_ms: UnixMillis) -> Result<(), AdapterError> {
    let seconds: i64 = if !timestamp.is_empty()
        && timestamp.len() <= 12
        && timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        timestamp.parse().map_err(|_| bad_timestamp(timestamp))?
    } else {
        return Err(bad_timestamp(timestamp));
    };
    let signed_at_ms = seconds
        .checked_mul(1000)
        .ok_or_else(|| bad_timestamp(timestamp))?;
    let skew_ms = now_ms.saturating_sub(signed_at_ms).saturating_abs();
    if skew_ms >= MAX_CLOCK_SKEW_MS {
        return Err(AdapterError::Signature(format!(
            "Wechatpay-Timestamp {timestamp} is {} s away from now (limit 300 s)",
            skew_ms / 1000
        )));
    }
    Ok(())
}

fn bad_timestamp(timestamp: &str) -> AdapterError {
    AdapterError::Signature(format!(
        "Wechatpay-Timestamp {timestamp:?} is not Unix seconds"
    ))
}

fn required_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, AdapterError> {
    optional_header(headers, name)?
        .filter(|value| !value.is_empty())
        .ok_or_else(|| AdapterError::Signature(format!("unsigned: no {name} header")))
}

fn optional_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, AdapterError> {
    let mut values = headers.get_all(name).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(None),
        (Some(value), None) => value,
        (Some(_), Some(_)) => {
            return Err(AdapterError::Signature(format!(
                "the {name} header is repeated"
            )))
        }
    };
    value
        .to_str()
        .map(|value| Some(value.trim()))
        .map_err(|_| AdapterError::Signature(format!("the {name} header is not ASCII")))
}

/// DER and label from a PEM document. Pasted keys are normalised first: RFC 7468 wants LF or
/// CRLF line endings and no leading blanks.
fn decode_pem(text: &str) -> Result<(String, Vec<u8>), String> {
    let normalised: String = text
        .trim()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if !normalised.starts_with("-----BEGIN") {
        return Err("not a PEM document".to_owned());
    }
    let (label, der) =
        pem::decode_vec(normalised.as_bytes()).map_err(|error| format!("bad PEM: {error}"))?;
    Ok((label.to_owned(), der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_every_line_with_a_newline() {
        assert_eq!(
            request_message("GET", "/v3/x?mchid=1", "1", "n", b""),
            b"GET\n/v3/x?mchid=1\n1\nn\n\n"
        );
        assert_eq!(lines(&[b"1", b"n", b"{}"]), b"1\nn\n{}\n");
    }

    #[test]
    fn freshness_window_is_strictly_under_five_minutes() {
        let now_ms = 1_795_600_777_000;
        assert!(check_freshness("1795600777", now_ms).is_ok());
        assert!(check_freshness("1795600478", now_ms).is_ok()); // 299 s old
        assert!(check_freshness("1795601076", now_ms).is_ok()); // 299 s ahead
        assert!(check_freshness("1795600477", now_ms).is_err()); // 300 s old
        assert!(check_freshness("1795601077", now_ms).is_err()); // 300 s ahead
        for junk in [
            "",
            "-1",
            "+1795600777",
            "1795600777000000",
            "17956007a7",
            " 1",
        ] {
            assert!(
                matches!(
                    check_freshness(junk, now_ms),
                    Err(AdapterError::Signature(_))
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn apiv3_key_must_be_32_bytes() {
        assert!(ApiV3Key::parse("0123456789abcdef0123456789abcdef\n").is_ok());
        assert!(matches!(
            ApiV3Key::parse("0123456789abcdef"),
            Err(AdapterError::Invalid(_))
        ));
        let key = ApiV3Key::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format!("{key:?}"), "ApiV3Key(<redacted>)");
    }
}
