//! APIv3 signatures and encryption, written from the protocol notes (A1, A2, A5): parsing the
//! `WECHATPAY2-SHA256-RSA2048` Authorization header by name, the request and response
//! signing messages, and AEAD_AES_256_GCM with the merchant's APIv3 key.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The only signature scheme APIv3 defines.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// The five fields of an Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

/// Why an Authorization header is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationError {
    /// Not `WECHATPAY2-SHA256-RSA2048 k="v",…`.
    WrongScheme,
    /// A pair is not `key="value"`.
    Malformed(String),
    /// A required field is absent or empty.
    Missing(&'static str),
}

impl Authorization {
    /// Parses the header value; the pairs may come in any order and with spaces around the
    /// commas (SDKs differ, notes B4). Unknown keys are ignored.
    pub fn parse(value: &str) -> Result<Self, AuthorizationError> {
        let rest = value
            .trim()
            .strip_prefix(SCHEME)
            .filter(|rest| rest.starts_with(' '))
            .ok_or(AuthorizationError::WrongScheme)?;
        let mut fields: [Option<String>; 5] = Default::default();
        const NAMES: [&str; 5] = ["mchid", "nonce_str", "signature", "timestamp", "serial_no"];
        for pair in rest.split(',') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (key, quoted) = pair
                .split_once('=')
                .ok_or_else(|| AuthorizationError::Malformed(pair.to_owned()))?;
            let value = quoted
                .trim()
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| AuthorizationError::Malformed(pair.to_owned()))?;
            if let Some(slot) = NAMES
                .iter()
                .position(|name| *name == key.trim())
                .and_then(|index| fields.get_mut(index))
            {
                *slot = Some(value.to_owned());
            }
        }
        let [mchid, nonce_str, signature, timestamp, serial_no] = fields;
        let take = |field: Option<String>, name: &'static str| {
            field
                .filter(|value| !value.is_empty())
                .ok_or(AuthorizationError::Missing(name))
        };
        Ok(Self {
            mchid: take(mchid, "mchid")?,
            nonce_str: take(nonce_str, "nonce_str")?,
            signature: take(signature, "signature")?,
            timestamp: take(timestamp, "timestamp")?,
            serial_no: take(serial_no, "serial_no")?,
        })
    }
}

/// `METHOD\nPATH_WITH_QUERY\nTIMESTAMP\nNONCE\nBODY\n` over the exact bytes received.
pub fn request_message(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// `TIMESTAMP\nNONCE\nBODY\n`: responses and notifications (an empty body gives
/// `TIMESTAMP\nNONCE\n\n`).
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The fields of an `encrypt-resource` / `encrypt_certificate` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Base64 of ciphertext ‖ 16-byte tag.
    pub ciphertext: String,
    pub nonce: String,
    pub associated_data: String,
}

/// Why AEAD failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AeadError {
    #[error("the APIv3 key must be 32 bytes, got {0}")]
    KeyLength(usize),
    #[error("the nonce must be {NONCE_LEN} bytes, got {0}")]
    NonceLength(usize),
    #[error("AES-256-GCM refused the input")]
    Crypto,
}

/// AEAD_AES_256_GCM with the APIv3 key's ASCII bytes, the nonce string's bytes as IV and
/// `associated_data` as AAD (notes A5).
pub fn seal(
    apiv3_key: &[u8],
    nonce: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<Sealed, AeadError> {
    let unbound = UnboundKey::new(&AES_256_GCM, apiv3_key)
        .map_err(|_| AeadError::KeyLength(apiv3_key.len()))?;
    let key = LessSafeKey::new(unbound);
    let iv: [u8; NONCE_LEN] = nonce
        .as_bytes()
        .try_into()
        .map_err(|_| AeadError::NonceLength(nonce.len()))?;
    let mut in_out = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(iv),
        Aad::from(associated_data.as_bytes()),
        &mut in_out,
    )
    .map_err(|_| AeadError::Crypto)?;
    Ok(Sealed {
        ciphertext: STANDARD.encode(in_out),
        nonce: nonce.to_owned(),
        associated_data: associated_data.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_in_any_order_and_spacing() {
        for header in [
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",signature="s+/=",timestamp="9",serial_no="AB""#,
            r#"WECHATPAY2-SHA256-RSA2048 serial_no="AB", timestamp="9", nonce_str="n", signature="s+/=", mchid="1""#,
        ] {
            let auth = Authorization::parse(header).unwrap();
            assert_eq!(auth.mchid, "1");
            assert_eq!(auth.signature, "s+/=");
            assert_eq!(auth.serial_no, "AB");
        }
        assert_eq!(
            Authorization::parse(r#"Bearer mchid="1""#),
            Err(AuthorizationError::WrongScheme)
        );
        assert_eq!(
            Authorization::parse(r#"WECHATPAY2-SHA256-RSA2048 mchid=1"#),
            Err(AuthorizationError::Malformed("mchid=1".into()))
        );
        assert_eq!(
            Authorization::parse(r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n""#),
            Err(AuthorizationError::Missing("signature"))
        );
    }

    #[test]
    fn messages_end_every_line_with_newline() {
        assert_eq!(
            request_message("GET", "/v3/x?a=1", "1", "N", b""),
            b"GET\n/v3/x?a=1\n1\nN\n\n"
        );
        assert_eq!(response_message("1", "N", b"{}"), b"1\nN\n{}\n");
    }

    #[test]
    fn sealing_checks_key_and_nonce_lengths() {
        let key = [7_u8; 32];
        let sealed = seal(&key, "abcdefghijkl", "transaction", b"{}").unwrap();
        assert_eq!(STANDARD.decode(&sealed.ciphertext).unwrap().len(), 2 + 16);
        assert_eq!(
            seal(&key[..31], "abcdefghijkl", "", b""),
            Err(AeadError::KeyLength(31))
        );
        assert_eq!(seal(&key, "short", "", b""), Err(AeadError::NonceLength(5)));
    }
}
