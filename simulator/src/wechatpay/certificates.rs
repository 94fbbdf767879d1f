//! Platform-certificate mode (notes A2): the signer modes, the platform certificate the mock
//! issues over its platform key at construction, which `Wechatpay-Serial` an answer or a
//! notification names, and `GET /v3/certificates`.
//!
//! The platform key signs in every mode (the certificate is over that same key), so modes only
//! change the serial a verifier is told to use.

use aws_lc_rs::digest::{digest, SHA256};
use axum::http::HeaderMap;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};
use serde_json::json;

use super::api::{Call, Reply};
use super::auth;
use super::trade::ApiResult;
use super::wire::{self, ApiError};
use super::WechatpayMock;
use crate::SimulatorError;
use determinism::{EntropyExt, UnixMillis};

/// Which key a merchant is told to verify with (`WechatpayMockConfig::signing_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WechatpaySigningMode {
    /// WeChat Pay public key (微信支付公钥): `Wechatpay-Serial` = `public_key_id` everywhere;
    /// `GET /v3/certificates` answers an empty list.
    #[default]
    PublicKey,
    /// Platform certificate (平台证书): `Wechatpay-Serial` = the certificate serial everywhere;
    /// clients download it from `GET /v3/certificates`.
    PlatformCertificate,
    /// The switch from certificate to public key: an answer names the serial the request's
    /// `Wechatpay-Serial` header asked for (`PUB_KEY_ID_…` → the public key id; the
    /// certificate serial, another value or none → the certificate); notifications name
    /// the public key id.
    Switching,
}

/// The platform certificate, issued once over the platform key.
#[derive(Clone)]
pub(super) struct PlatformCertificate {
    /// 40 upper-case hex digits.
    pub serial_no: String,
    pub pem: String,
    pub effective_ms: UnixMillis,
    pub expire_ms: UnixMillis,
}

impl std::fmt::Debug for PlatformCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformCertificate")
            .field("serial_no", &self.serial_no)
            .finish_non_exhaustive()
    }
}

const DAY_MS: i64 = 86_400_000;
/// Real platform certificates are valid for five years.
const VALIDITY_DAYS: i64 = 5 * 365;

/// Issues a self-signed certificate over the platform key (PKCS#8 or PKCS#1 PEM), valid from
/// a day before `now_ms` for five years. The serial is derived from the public key, so it is
/// stable across restarts with the same key.
pub(super) fn issue(
    platform_private_key_pem: &str,
    now_ms: UnixMillis,
) -> Result<PlatformCertificate, SimulatorError> {
    let invalid = |reason: String| SimulatorError::InvalidKey {
        what: "wechatpay platform private key (certificate)".into(),
        reason,
    };
    let key = KeyPair::from_pem(platform_private_key_pem).map_err(|e| invalid(e.to_string()))?;
    let hash = digest(&SHA256, &key.public_key_der());
    let mut serial = hash.as_ref().get(..20).unwrap_or_default().to_vec();
    if let Some(first) = serial.first_mut() {
        // Positive, and no leading zero: always 40 hex digits.
        *first = (*first & 0x7F) | 0x10;
    }
    let serial_no: String = serial.iter().map(|b| format!("{b:02X}")).collect();
    let effective_ms = now_ms.saturating_sub(DAY_MS);
    let expire_ms = effective_ms.saturating_add(VALIDITY_DAYS.saturating_mul(DAY_MS));
    let at = |ms: UnixMillis| {
        time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .map_err(|e| invalid(format!("certificate validity: {e}")))
    };
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "CN");
    name.push(DnType::OrganizationName, "Tenpay.com");
    name.push(DnType::OrganizationalUnitName, "paysim WeChat Pay mock");
    name.push(DnType::CommonName, "paysim WeChat Pay platform certificate");
    params.distinguished_name = name;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = at(effective_ms)?;
    params.not_after = at(expire_ms)?;
    let certificate = params
        .self_signed(&key)
        .map_err(|e| invalid(format!("cannot issue the platform certificate: {e}")))?;
    Ok(PlatformCertificate {
        serial_no,
        pem: certificate.pem(),
        effective_ms,
        expire_ms,
    })
}

impl WechatpayMock {
    /// The `Wechatpay-Serial` of an answer to a request with these headers.
    pub(super) fn answer_serial(&self, request_headers: &HeaderMap) -> String {
        let Some(certificate) = &self.platform_certificate else {
            return self.public_key_id.clone();
        };
        match self.signing_mode {
            WechatpaySigningMode::PublicKey => self.public_key_id.clone(),
            WechatpaySigningMode::PlatformCertificate => certificate.serial_no.clone(),
            WechatpaySigningMode::Switching => {
                let asked = request_headers
                    .get("wechatpay-serial")
                    .and_then(|value| value.to_str().ok())
                    .map(str::trim);
                match asked {
                    Some(id) if id.starts_with("PUB_KEY_ID_") => self.public_key_id.clone(),
                    _ => certificate.serial_no.clone(),
                }
            }
        }
    }

    /// The `Wechatpay-Serial` of notifications.
    pub(super) fn notification_serial(&self) -> &str {
        match (&self.platform_certificate, self.signing_mode) {
            (Some(certificate), WechatpaySigningMode::PlatformCertificate) => {
                &certificate.serial_no
            }
            _ => &self.public_key_id,
        }
    }

    /// `GET /v3/certificates[?algorithm_type=RSA|ALL|SM2]`: the platform certificate PEM
    /// sealed with the caller's APIv3 key (AAD `certificate`).
    pub(super) fn certificates(&self, call: &Call<'_>) -> ApiResult {
        let algorithm_type = call
            .query
            .into_iter()
            .flat_map(|query| form_urlencoded::parse(query.as_bytes()))
            .find(|(name, _)| name == "algorithm_type")
            .map(|(_, value)| value.into_owned());
        let rsa = match algorithm_type.as_deref() {
            None | Some("RSA") | Some("ALL") => true,
            // The mock has no SM2 (国密) certificate.
            Some("SM2") => false,
            Some(other) => {
                return Err((
                    ApiError::param(format!("algorithm_type {other:?} 不是 RSA、SM2 或 ALL")),
                    None,
                ))
            }
        };
        let mut data = Vec::new();
        if let (true, Some(certificate)) = (rsa, &self.platform_certificate) {
            let sealed = auth::seal(
                &call.merchant.apiv3_key,
                &self.entropy.token(12),
                "certificate",
                certificate.pem.as_bytes(),
            )
            .map_err(|error| {
                tracing::error!(%error, "cannot encrypt the platform certificate");
                (ApiError::system(), None)
            })?;
            data.push(json!({
                "serial_no": certificate.serial_no,
                "effective_time": wire::format_time(certificate.effective_ms),
                "expire_time": wire::format_time(certificate.expire_ms),
                "encrypt_certificate": {
                    "algorithm": "AEAD_AES_256_GCM",
                    "nonce": sealed.nonce,
                    "associated_data": sealed.associated_data,
                    "ciphertext": sealed.ciphertext,
                },
            }));
        }
        Ok((Reply::Json(json!({ "data": data }).to_string()), None))
    }
}
