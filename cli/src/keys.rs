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

    #[test]
    fn issues_certificates_over_the_key_pairs() {
        let dir = std::env::temp_dir().join(format!("paysim-certs-{}", std::process::id()));
        let app = ensure_rsa_key_pair(&dir, "app").unwrap();
        let platform = ensure_rsa_key_pair(&dir, "alipay").unwrap();
        let certs = ensure_alipay_certificates(&dir, "2021000000000001", &app, &platform).unwrap();
        assert!(certs.root_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        // Issued once: a second call reads the same files.
        let again = ensure_alipay_certificates(&dir, "2021000000000001", &app, &platform).unwrap();
        assert_eq!(certs.app_pem, again.app_pem);
        // The openssl CLI agrees on the issuer and the subject key.
        let out = std::process::Command::new("openssl")
            .args([
                "x509", "-noout", "-issuer", "-serial", "-nameopt", "RFC2253", "-in",
            ])
            .arg(&certs.app)
            .output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("issuer=CN=paysim Alipay Test Root CA,OU=Alipay Test,O=paysim,C=CN"),
                "{text}"
            );
            assert!(text.contains("serial=0BBB"), "{text}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// The certificate files of Alipay's public-key-certificate mode.
#[derive(Debug, Clone)]
pub struct AlipayCertFiles {
    /// The root bundle merchants download (`alipayRootCert.crt`).
    pub root: PathBuf,
    /// The Alipay certificate (`alipayCertPublicKey_RSA2.crt`), for the mock's key.
    pub alipay: PathBuf,
    /// The app certificate (`appCertPublicKey_<app_id>.crt`), for the app key.
    pub app: PathBuf,
    pub root_pem: String,
    pub alipay_pem: String,
    pub app_pem: String,
}

/// Issues, once, a test root CA and the Alipay and app certificates over the existing key
/// pairs, with issuer names of exactly C, O, OU and CN so every SDK computes the same SNs.
pub fn ensure_alipay_certificates(
    dir: &Path,
    app_id: &str,
    app: &KeyFiles,
    platform: &KeyFiles,
) -> anyhow::Result<AlipayCertFiles> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair as CertKey,
        SerialNumber,
    };

    let root = dir.join("alipay_root_cert.crt");
    let alipay = dir.join("alipay_cert_public_key_rsa2.crt");
    let app_cert = dir.join(format!("app_cert_public_key_{app_id}.crt"));
    if !(root.exists() && alipay.exists() && app_cert.exists()) {
        let ca = ensure_rsa_key_pair(dir, "root_ca")?;
        let ca_key = CertKey::from_pem(&ca.private_pkcs8_pem).context("root CA key")?;
        let name = |common_name: &str| {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CountryName, "CN");
            dn.push(DnType::OrganizationName, "paysim");
            dn.push(DnType::OrganizationalUnitName, "Alipay Test");
            dn.push(DnType::CommonName, common_name);
            dn
        };
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = name("paysim Alipay Test Root CA");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.serial_number = Some(SerialNumber::from(1001u64));
        let root_cert = root_params
            .self_signed(&ca_key)
            .context("cannot issue the root certificate")?;

        let issue = |subject: &str, serial: u64, key_pem: &str| -> anyhow::Result<String> {
            let key = CertKey::from_pem(key_pem).context("certificate key")?;
            let mut params = CertificateParams::default();
            params.distinguished_name = name(subject);
            params.serial_number = Some(SerialNumber::from(serial));
            Ok(params
                .signed_by(&key, &root_cert, &ca_key)
                .context("cannot issue a certificate")?
                .pem())
        };
        std::fs::write(
            &alipay,
            issue("paysim Alipay RSA2", 2002, &platform.private_pkcs8_pem)?,
        )
        .with_context(|| format!("cannot write {}", alipay.display()))?;
        std::fs::write(&app_cert, issue(app_id, 3003, &app.private_pkcs8_pem)?)
            .with_context(|| format!("cannot write {}", app_cert.display()))?;
        std::fs::write(&root, root_cert.pem())
            .with_context(|| format!("cannot write {}", root.display()))?;
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(AlipayCertFiles {
        root_pem: read(&root)?,
        alipay_pem: read(&alipay)?,
        app_pem: read(&app_cert)?,
        root,
        alipay,
        app: app_cert,
    })
}

/// The sandbox's WeChat Pay merchant credentials.
#[derive(Debug, Clone)]
pub struct WechatpayCredentials {
    /// The merchant API key pair (`apiclient_key.pem`): signs requests.
    pub merchant: KeyFiles,
    /// The mock platform's key pair: signs answers and notifications.
    pub platform: KeyFiles,
    /// Serial of the merchant's API certificate: upper-case hex of the first 20 bytes of the
    /// SHA-256 of its public key, stable across restarts.
    pub merchant_serial_no: String,
    pub apiv3_key_file: PathBuf,
    pub apiv3_key: String,
}

/// Loads the WeChat Pay credentials under `dir`, creating them on first start; the APIv3 key
/// is 32 characters drawn from `entropy`.
pub fn ensure_wechatpay_credentials(
    dir: &Path,
    entropy: &dyn determinism::Entropy,
) -> anyhow::Result<WechatpayCredentials> {
    use determinism::EntropyExt;
    use sha2::{Digest, Sha256};

    let merchant = ensure_rsa_key_pair(dir, "merchant")?;
    let platform = ensure_rsa_key_pair(dir, "platform")?;
    let apiv3_key_file = dir.join("apiv3_key.txt");
    if !apiv3_key_file.exists() {
        write_private(&apiv3_key_file, entropy.token(32).as_bytes())?;
    }
    let apiv3_key = std::fs::read_to_string(&apiv3_key_file)
        .with_context(|| format!("cannot read {}", apiv3_key_file.display()))?
        .trim()
        .to_owned();
    if apiv3_key.len() != 32 {
        anyhow::bail!("{} must hold a 32-byte APIv3 key", apiv3_key_file.display());
    }
    let digest = Sha256::digest(merchant.public_pem.as_bytes());
    let merchant_serial_no = hex::encode_upper(digest.get(..20).unwrap_or_default());
    Ok(WechatpayCredentials {
        merchant,
        platform,
        merchant_serial_no,
        apiv3_key_file,
        apiv3_key,
    })
}
