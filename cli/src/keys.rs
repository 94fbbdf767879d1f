//! Sandbox credentials: RSA key pairs generated on first start under `<data-dir>/keys/` and
//! reused afterwards, so a client configured once keeps working across restarts.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

/// One RSA key pair on disk, in the encodings SDKs ask for.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): Java, Node (`keyType: 'PKCS8'`), python-alipay-sdk.
    pub private_pkcs8: PathBuf,
    /// PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`): Node's default, the official Python SDK.
    pub private_pkcs1: PathBuf,
    /// SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public: PathBuf,
    pub private_pkcs8_pem: String,
    pub public_pem: String,
}

/// Loads the key pair `<dir>/<name>_*.pem`, generating it (RSA-2048, aws-lc-rs) when absent.
pub fn ensure_rsa_key_pair(dir: &Path, name: &str) -> anyhow::Result<KeyFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let private_pkcs8 = dir.join(format!("{name}_private_pkcs8.pem"));
    let private_pkcs1 = dir.join(format!("{name}_private_pkcs1.pem"));
    let public = dir.join(format!("{name}_public.pem"));
    if !private_pkcs8.exists() {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
        let der: Pkcs8V1Der<'static> = pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("cannot encode the key as PKCS#8"))?;
        let key = rsa::RsaPrivateKey::from_pkcs8_der(der.as_ref())
            .context("cannot read back the generated key")?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .context("cannot encode PKCS#8 PEM")?;
        write_private(&private_pkcs8, pem.as_bytes())?;
    }
    let private_pkcs8_pem = std::fs::read_to_string(&private_pkcs8)
        .with_context(|| format!("cannot read {}", private_pkcs8.display()))?;
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&private_pkcs8_pem).with_context(|| {
        format!(
            "{} is not a PKCS#8 RSA private key",
            private_pkcs8.display()
        )
    })?;
    if !private_pkcs1.exists() {
        let pem = key
            .to_pkcs1_pem(LineEnding::LF)
            .context("cannot encode PKCS#1 PEM")?;
        write_private(&private_pkcs1, pem.as_bytes())?;
    }
    let public_pem = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .context("cannot encode the public key")?;
    if !public.exists() {
        std::fs::write(&public, &public_pem)
            .with_context(|| format!("cannot write {}", public.display()))?;
    }
    // A damaged or foreign key file fails here, at start-up, not at the first signature.
    KeyPair::from_pkcs8(
        key.to_pkcs8_der()
            .context("cannot re-encode the key")?
            .as_bytes(),
    )
    .map_err(|_| anyhow::anyhow!("{} is not usable for signing", private_pkcs8.display()))?;
    Ok(KeyFiles {
        private_pkcs8,
        private_pkcs1,
        public,
        private_pkcs8_pem,
        public_pem,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = std::env::temp_dir().join(format!("paysim-keys-{}", std::process::id()));
        let first = ensure_rsa_key_pair(&dir, "app").unwrap();
        let second = ensure_rsa_key_pair(&dir, "app").unwrap();
        assert_eq!(first.private_pkcs8_pem, second.private_pkcs8_pem);
        assert!(std::fs::read_to_string(&first.private_pkcs1)
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(first.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
