//! RSA keys of the mock Alipay gateway: parsing (PEM or bare base64, PKCS#1 or PKCS#8 /
//! SPKI), RSA2 signing (SHA256withRSA, PKCS#1 v1.5) and verification, all with aws-lc-rs.
//! The `rsa` crate only turns PEM and SPKI into DER; it never touches a private key.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    KeyPair as _, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use key_memo::Encoding;
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::pkcs8::DecodePublicKey;

use crate::SimulatorError;

/// A private key that signs; `Debug` never shows it.
pub struct SigningKey {
    pair: Arc<RsaKeyPair>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Parses a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM, or a bare base64
    /// body of either (Alipay's key tool hands out bare bodies).
    pub fn parse(text: &str, what: &str) -> Result<Self, SimulatorError> {
        let invalid = |reason: String| SimulatorError::InvalidKey {
            what: what.to_owned(),
            reason,
        };
        let (label, der) = decode_pem_or_base64(text).map_err(invalid)?;
        let pair = match label.as_deref() {
            Some("PRIVATE KEY") => {
                key_memo::parse(Encoding::Pkcs8, &der).map_err(|e| invalid(e.to_string()))
            }
            Some("RSA PRIVATE KEY") => {
                key_memo::parse(Encoding::Pkcs1, &der).map_err(|e| invalid(e.to_string()))
            }
            Some(other) => Err(invalid(format!("unexpected PEM label {other:?}"))),
            None => key_memo::parse(Encoding::Pkcs8, &der)
                .or_else(|_| key_memo::parse(Encoding::Pkcs1, &der))
                .map_err(|e| invalid(format!("neither PKCS#8 nor PKCS#1: {e}"))),
        }?;
        Ok(Self { pair })
    }

    /// Whether `public` is this key's public half (same modulus and exponent).
    pub fn is_pair_of(&self, public: &VerifyingKey) -> bool {
        let ours = rsa::RsaPublicKey::from_pkcs1_der(self.pair.public_key().as_ref());
        let theirs = rsa::RsaPublicKey::from_pkcs1_der(&public.pkcs1_der);
        matches!((ours, theirs), (Ok(ours), Ok(theirs)) if ours == theirs)
    }

    /// Base64 (standard, padded) RSA2 signature of `message`.
    pub fn sign_base64(&self, message: &[u8]) -> String {
        let mut signature = vec![0_u8; self.pair.public_modulus_len()];
        // PKCS#1 v1.5 is deterministic: aws-lc-rs ignores the generator (documented), so no
        // entropy leaves the determinism seam here.
        let rng = SystemRandom::new();
        match self
            .pair
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
        {
            Ok(()) => STANDARD.encode(signature),
            // Signing with a validated key and a right-sized buffer cannot fail; an empty
            // signature fails closed at every verifier.
            Err(_) => {
                tracing::error!("RSA signing failed");
                String::new()
            }
        }
    }
}

/// A public key that verifies (stored as PKCS#1 `RSAPublicKey` DER).
#[derive(Clone)]
pub struct VerifyingKey {
    pkcs1_der: Vec<u8>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({} bytes)", self.pkcs1_der.len())
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    NotBase64,
    Mismatch,
}

impl VerifyingKey {
    /// Parses an SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) PEM, or a bare base64 SPKI.
    pub fn parse(text: &str, what: &str) -> Result<Self, SimulatorError> {
        let invalid = |reason: String| SimulatorError::InvalidKey {
            what: what.to_owned(),
            reason,
        };
        let (label, der) = decode_pem_or_base64(text).map_err(invalid)?;
        let pkcs1_der = match label.as_deref() {
            Some("PUBLIC KEY") | None => return Self::from_spki_der(&der, what),
            Some("RSA PUBLIC KEY") => der,
            Some(other) => return Err(invalid(format!("unexpected PEM label {other:?}"))),
        };
        Ok(Self { pkcs1_der })
    }

    /// An RSA key from a DER SubjectPublicKeyInfo (e.g. a certificate's).
    pub fn from_spki_der(der: &[u8], what: &str) -> Result<Self, SimulatorError> {
        let invalid = |reason: String| SimulatorError::InvalidKey {
            what: what.to_owned(),
            reason,
        };
        let pkcs1_der = rsa::RsaPublicKey::from_public_key_der(der)
            .map_err(|e| invalid(format!("not an RSA SubjectPublicKeyInfo: {e}")))?
            .to_pkcs1_der()
            .map_err(|e| invalid(e.to_string()))?
            .as_bytes()
            .to_vec();
        Ok(Self { pkcs1_der })
    }

    /// Whether two keys are the same RSA public key.
    pub fn same_key(&self, other: &VerifyingKey) -> bool {
        let ours = rsa::RsaPublicKey::from_pkcs1_der(&self.pkcs1_der);
        let theirs = rsa::RsaPublicKey::from_pkcs1_der(&other.pkcs1_der);
        matches!((ours, theirs), (Ok(ours), Ok(theirs)) if ours == theirs)
    }

    /// Verifies a base64 RSA2 signature over `message`.
    pub fn verify_base64(&self, message: &[u8], signature_b64: &str) -> Result<(), VerifyError> {
        let signature = STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| VerifyError::NotBase64)?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.pkcs1_der)
            .verify(message, &signature)
            .map_err(|_| VerifyError::Mismatch)
    }
}

/// The key the `forged_notification` fault signs with: a fixed key that is not the
/// gateway's, so forgeries are reproducible. Test material only.
pub const FORGER_PRIVATE_KEY_PEM: &str = include_str!("forger_key.pem");

/// PEM → (label, DER), or bare base64 → (None, DER).
fn decode_pem_or_base64(text: &str) -> Result<(Option<String>, Vec<u8>), String> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        let (label, der) = rsa::pkcs8::der::pem::decode_vec(trimmed.as_bytes())
            .map_err(|e| format!("invalid PEM: {e}"))?;
        Ok((Some(label.to_owned()), der))
    } else {
        let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD
            .decode(compact)
            .map_err(|e| format!("neither PEM nor base64: {e}"))?;
        Ok((None, der))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/"
    );

    fn read(name: &str) -> String {
        std::fs::read_to_string(format!("{KEYS}{name}")).unwrap()
    }

    fn body_of(pem: &str) -> String {
        pem.lines()
            .filter(|line| !line.starts_with("-----"))
            .collect()
    }

    #[test]
    fn every_key_form_signs_and_verifies() {
        let public = VerifyingKey::parse(&read("alipay_public.pem"), "pub").unwrap();
        let bare_public = VerifyingKey::parse(&body_of(&read("alipay_public.pem")), "pub").unwrap();
        for name in ["alipay_private_pkcs8.pem", "alipay_private_pkcs1.pem"] {
            let pem = read(name);
            for text in [pem.clone(), body_of(&pem)] {
                let key = SigningKey::parse(&text, name).unwrap();
                let signature = key.sign_base64("a=1&b=中文".as_bytes());
                assert_eq!(signature.len(), 344);
                public
                    .verify_base64("a=1&b=中文".as_bytes(), &signature)
                    .unwrap();
                bare_public
                    .verify_base64("a=1&b=中文".as_bytes(), &signature)
                    .unwrap();
                assert_eq!(
                    public.verify_base64(b"a=2", &signature),
                    Err(VerifyError::Mismatch)
                );
            }
        }
        assert_eq!(
            public.verify_base64(b"x", "%%%"),
            Err(VerifyError::NotBase64)
        );
        assert!(format!(
            "{:?}",
            SigningKey::parse(&read("alipay_private_pkcs8.pem"), "k").unwrap()
        )
        .contains("redacted"));
    }

    #[test]
    fn rejects_garbage_and_wrong_labels() {
        assert!(SigningKey::parse("not a key", "k").is_err());
        assert!(SigningKey::parse(&read("alipay_public.pem"), "k").is_err());
        assert!(VerifyingKey::parse(&read("app_private_pkcs8.pem"), "k").is_err());
        assert!(VerifyingKey::parse("AAAA", "k").is_err());
        assert!(SigningKey::parse(FORGER_PRIVATE_KEY_PEM, "forger").is_ok());
    }
}
