//! Alipay RSA2 (SHA256withRSA, RSASSA-PKCS1-v1_5, base64) signing and verification: the
//! configured keys, parsed once, and the canonical `k=v&…` content both directions sign.
//!
//! Keys are decoded from PEM (or the bare base64 Alipay's key tool prints) with the `rsa`
//! crate's PEM decoder; every key operation runs on aws-lc-rs (constant time, and several
//! times faster than the `rsa` crate, see the design note §8).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair as _, ParsedPublicKey, RsaKeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use rsa::pkcs8::der::pem;

use std::sync::Arc;

use key_memo::Encoding;

use crate::channel::AdapterError;

pub(super) const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The merchant app's private key, which signs requests. `Debug` never shows the key.
pub(crate) struct AppPrivateKey {
    key_pair: Arc<RsaKeyPair>,
    /// PKCS#1 v1.5 signatures are deterministic; aws-lc-rs uses the generator for blinding only.
    random: SystemRandom,
}

impl std::fmt::Debug for AppPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppPrivateKey(<redacted>)")
    }
}

impl AppPrivateKey {
    /// Parses a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM, or the bare base64
    /// body of either.
    pub(crate) fn parse(text: &str) -> Result<Self, AdapterError> {
        let invalid = |why: &str| AdapterError::Invalid(format!("app private key: {why}"));
        let (label, der) = decode_pem_or_base64(text).map_err(|why| invalid(&why))?;
        let key_pair = match label.as_deref() {
            Some("PRIVATE KEY") => key_memo::parse(Encoding::Pkcs8, &der),
            Some("RSA PRIVATE KEY") => key_memo::parse(Encoding::Pkcs1, &der),
            Some(other) => return Err(invalid(&format!("unexpected PEM label {other:?}"))),
            None => key_memo::parse(Encoding::Pkcs8, &der)
                .or_else(|_| key_memo::parse(Encoding::Pkcs1, &der)),
        }
        .map_err(|rejected| invalid(&rejected.to_string()))?;
        Ok(AppPrivateKey {
            key_pair,
            random: SystemRandom::new(),
        })
    }

    /// Signs the UTF-8 bytes of `content`; the signature in standard base64 with padding.
    pub(crate) fn sign(&self, content: &str) -> Result<String, AdapterError> {
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &self.random,
                content.as_bytes(),
                &mut signature,
            )
            .map_err(|_| AdapterError::Invalid("signing with the app private key failed".into()))?;
        Ok(BASE64.encode(signature))
    }

    /// The public half as a DER `RSAPublicKey` (RFC 8017), to compare with a certificate's.
    pub(crate) fn public_key_der(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }
}

/// The Alipay public key, which verifies responses and notifications.
pub(crate) struct AlipayPublicKey(ParsedPublicKey);

impl std::fmt::Debug for AlipayPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlipayPublicKey(..)")
    }
}

impl AlipayPublicKey {
    /// Parses an X.509 SubjectPublicKeyInfo PEM (`PUBLIC KEY`), a PKCS#1 `RSA PUBLIC KEY`
    /// PEM, or the bare base64 body of either.
    pub(crate) fn parse(text: &str) -> Result<Self, AdapterError> {
        let invalid = |why: &str| AdapterError::Invalid(format!("alipay public key: {why}"));
        let (label, der) = decode_pem_or_base64(text).map_err(|why| invalid(&why))?;
        match label.as_deref() {
            None | Some("PUBLIC KEY") | Some("RSA PUBLIC KEY") => {}
            Some(other) => return Err(invalid(&format!("unexpected PEM label {other:?}"))),
        }
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map(AlipayPublicKey)
            .map_err(|rejected| invalid(&rejected.to_string()))
    }

    /// The key of an Alipay certificate: its DER SubjectPublicKeyInfo, which must be RSA.
    pub(crate) fn from_spki_der(der: &[u8]) -> Result<Self, AdapterError> {
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map(AlipayPublicKey)
            .map_err(|rejected| {
                AdapterError::Invalid(format!("alipay certificate public key: {rejected}"))
            })
    }

    /// Verifies a base64 signature over `message`. Fails closed: a signature that is not
    /// base64, has the wrong length or does not match is [`AdapterError::Signature`].
    pub(crate) fn verify(
        &self,
        message: &[u8],
        signature_base64: &str,
    ) -> Result<(), AdapterError> {
        let signature = BASE64
            .decode(signature_base64)
            .map_err(|_| AdapterError::Signature("sign is not base64".into()))?;
        self.0
            .verify_sig(message, &signature)
            .map_err(|_| AdapterError::Signature("RSA2 signature does not verify".into()))
    }
}

/// The canonical content Alipay signs: pairs sorted by key (byte order), those named in
/// `excluded` and those with an empty value dropped, joined as `k=v` with `&`, raw values.
///
/// Requests exclude `sign` only (`sign_type` is signed); notifications exclude `sign` and
/// `sign_type`.
pub(crate) fn sign_content<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    excluded: &[&str],
) -> String {
    let mut kept: Vec<(&str, &str)> = pairs
        .into_iter()
        .filter(|(key, value)| !value.is_empty() && !excluded.contains(key))
        .collect();
    kept.sort_unstable();
    let mut content = String::new();
    for (index, (key, value)) in kept.into_iter().enumerate() {
        if index > 0 {
            content.push('&');
        }
        content.push_str(key);
        content.push('=');
        content.push_str(value);
    }
    content
}

/// DER from a PEM document (with its label) or from bare base64 (label `None`).
fn decode_pem_or_base64(text: &str) -> Result<(Option<String>, Vec<u8>), String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        // RFC 7468 wants LF or CRLF line endings and no leading blanks; normalise pasted keys.
        let normalised: String = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let (label, der) =
            pem::decode_vec(normalised.as_bytes()).map_err(|error| format!("bad PEM: {error}"))?;
        return Ok((Some(label.to_owned()), der));
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("empty".to_owned());
    }
    BASE64
        .decode(compact)
        .map(|der| (None, der))
        .map_err(|_| "neither PEM nor base64".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_PKCS8: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/app_private_pkcs8.pem"
    ));
    const APP_PKCS1: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/app_private_pkcs1.pem"
    ));
    const APP_PUBLIC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/app_public.pem"
    ));
    const ALIPAY_PUBLIC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/alipay_public.pem"
    ));

    fn bare(pem_text: &str) -> String {
        pem_text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect()
    }

    #[test]
    fn every_documented_key_form_parses_and_signs_identically() {
        let forms = [
            APP_PKCS8.to_owned(),
            APP_PKCS1.to_owned(),
            bare(APP_PKCS8),
            bare(APP_PKCS1),
            APP_PKCS1.replace('\n', "\r\n"),
        ];
        let signatures: Vec<String> = forms
            .iter()
            .map(|form| AppPrivateKey::parse(form).unwrap().sign("a=1&b=2").unwrap())
            .collect();
        assert!(signatures.windows(2).all(|pair| pair[0] == pair[1]));
        let public = AlipayPublicKey::parse(APP_PUBLIC).unwrap();
        public.verify(b"a=1&b=2", &signatures[0]).unwrap();
        let bare_public = AlipayPublicKey::parse(&bare(APP_PUBLIC)).unwrap();
        bare_public.verify(b"a=1&b=2", &signatures[0]).unwrap();
        assert!(matches!(
            bare_public.verify(b"a=1&b=3", &signatures[0]),
            Err(AdapterError::Signature(_))
        ));
        assert!(matches!(
            bare_public.verify(b"a=1&b=2", "not base64!"),
            Err(AdapterError::Signature(_))
        ));
    }

    #[test]
    fn junk_keys_are_refused_and_never_printed() {
        assert!(matches!(
            AppPrivateKey::parse(""),
            Err(AdapterError::Invalid(_))
        ));
        assert!(matches!(
            AppPrivateKey::parse("abc$"),
            Err(AdapterError::Invalid(_))
        ));
        assert!(matches!(
            AppPrivateKey::parse(ALIPAY_PUBLIC),
            Err(AdapterError::Invalid(_))
        ));
        assert!(matches!(
            AlipayPublicKey::parse(APP_PKCS8),
            Err(AdapterError::Invalid(_))
        ));
        let key = AppPrivateKey::parse(APP_PKCS8).unwrap();
        assert_eq!(format!("{key:?}"), "AppPrivateKey(<redacted>)");
    }

    #[test]
    fn sign_content_sorts_and_drops_excluded_and_empty() {
        let pairs = [
            ("b", "2"),
            ("sign", "x"),
            ("a", "1"),
            ("empty", ""),
            ("sign_type", "RSA2"),
        ];
        assert_eq!(sign_content(pairs, &["sign"]), "a=1&b=2&sign_type=RSA2");
        assert_eq!(sign_content(pairs, &["sign", "sign_type"]), "a=1&b=2");
    }
}
