//! One whole simulation around the **real** WeChat Pay APIv3 adapter and the **real** mock
//! WeChat Pay server, for end-to-end tests: the shared run of [`crate::sim`] (one virtual
//! clock, one scheduler, seeded entropy, one in-process transport carrying gateway → channel
//! calls and channel → gateway notifications) with the simulator at [`WECHATPAY_URL`] — the
//! mock serves `/v3/…` at its root, so that is the adapter's `base_url` — and the adapter
//! configured with the fixed test merchant of `scenarios/vectors/wechatpay/keys/`.
//!
//! Beyond the wiring this module only opens notification resources ([`open_notification`]):
//! an independent AES-256-GCM decryption with the APIv3 key, so a test can read what the mock
//! told the gateway without trusting either side's code.

use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use base64::Engine as _;
use gateway_core::channels::wechatpay::{WechatpayAdapter, WechatpayConfig};
use serde_json::Value;
pub use simulator::wechatpay::WechatpaySigningMode;
use simulator::wechatpay::{WechatpayMerchant, WechatpayMockConfig};

pub use crate::sim::{Delivery, Options, Reply, GATEWAY_URL, T0};
use crate::sim::{Sim, SimChannel, Wiring};

/// The simulator's public base URL: the adapter's `base_url` (the `/v3/…` paths are appended).
pub const WECHATPAY_URL: &str = "http://wechatpay.test";
/// The merchant id (商户号) registered with the mock.
pub const MCHID: &str = "1900000001";
/// The AppID bound to the merchant.
pub const APPID: &str = "wx8888888888888888";
/// The merchant API certificate serial: `serial_no` of every request.
pub const MERCHANT_SERIAL_NO: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
/// The WeChat Pay public key id: `Wechatpay-Serial` of every answer and notification.
pub const PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000000012025112500000000000001";

/// The fixed test keys of `scenarios/vectors/wechatpay/keys/` (never used anywhere real).
pub mod keys {
    /// The merchant API private key (`apiclient_key.pem`): the adapter signs requests.
    pub const MERCHANT_PRIVATE_PKCS8: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/wechatpay/keys/merchant_private_pkcs8.pem"
    ));
    /// Its public key, registered with the mock under [`super::MERCHANT_SERIAL_NO`].
    pub const MERCHANT_PUBLIC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/wechatpay/keys/merchant_public.pem"
    ));
    /// The mock platform's private key: signs answers and notifications.
    pub const PLATFORM_PRIVATE_PKCS8: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/wechatpay/keys/platform_private_pkcs8.pem"
    ));
    /// The WeChat Pay public key the adapter verifies with (id [`super::PUBLIC_KEY_ID`]).
    pub const PLATFORM_PUBLIC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/wechatpay/keys/platform_public.pem"
    ));
    /// The 32-byte APIv3 key (no trailing newline in the file).
    pub const APIV3_KEY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/wechatpay/keys/apiv3_key.txt"
    ));
}

/// How the mock signs and what the adapter is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// The mock's signer mode (`Wechatpay-Serial` of answers and notifications).
    pub signing_mode: WechatpaySigningMode,
    /// Whether the adapter is configured with the WeChat Pay public key and its id; without,
    /// it learns platform certificates from `GET /v3/certificates`.
    pub adapter_public_key: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            signing_mode: WechatpaySigningMode::PublicKey,
            adapter_public_key: true,
        }
    }
}

/// The WeChat Pay channel of a [`Sim`].
#[derive(Debug, Clone, Copy)]
pub struct Wechatpay;

impl SimChannel for Wechatpay {
    const NAME: &'static str = "wechatpay";
}

/// The gateway (real WeChat Pay adapter) and the simulator (real mock WeChat Pay server) in
/// one simulation. Cloning yields another handle to the same run.
pub type WechatpaySim = Sim<Wechatpay>;

impl Sim<Wechatpay> {
    /// The default simulation (seed 1, clock at [`T0`], default gateway settings).
    pub async fn new() -> anyhow::Result<WechatpaySim> {
        WechatpaySim::build(Options::default()).await
    }

    /// The default simulation with another seed.
    pub async fn with_seed(seed: u64) -> anyhow::Result<WechatpaySim> {
        WechatpaySim::build(Options {
            seed,
            ..Options::default()
        })
        .await
    }

    pub async fn build(options: Options) -> anyhow::Result<WechatpaySim> {
        WechatpaySim::build_with(options, Setup::default()).await
    }

    /// A simulation with the mock in another signer mode and/or the adapter without the
    /// public key.
    pub async fn build_with(options: Options, setup: Setup) -> anyhow::Result<WechatpaySim> {
        let (platform_public_key_pem, platform_public_key_id) = if setup.adapter_public_key {
            (keys::PLATFORM_PUBLIC.to_owned(), PUBLIC_KEY_ID.to_owned())
        } else {
            (String::new(), String::new())
        };
        let adapter = WechatpayAdapter::new(WechatpayConfig {
            mchid: MCHID.to_owned(),
            appid: APPID.to_owned(),
            merchant_serial_no: MERCHANT_SERIAL_NO.to_owned(),
            merchant_private_key_pem: keys::MERCHANT_PRIVATE_PKCS8.to_owned(),
            apiv3_key: keys::APIV3_KEY.trim().to_owned(),
            platform_public_key_pem,
            platform_public_key_id,
            base_url: WECHATPAY_URL.to_owned(),
        })
        .map_err(|error| anyhow!("wechatpay adapter: {error}"))?;
        Sim::assemble(
            options,
            Wiring {
                simulator_url: WECHATPAY_URL,
                alipay: None,
                wechatpay: Some(WechatpayMockConfig {
                    merchants: vec![WechatpayMerchant {
                        mchid: MCHID.to_owned(),
                        appid: APPID.to_owned(),
                        serial_no: MERCHANT_SERIAL_NO.to_owned(),
                        public_key_pem: keys::MERCHANT_PUBLIC.to_owned(),
                        apiv3_key: keys::APIV3_KEY.trim().to_owned(),
                    }],
                    platform_private_key_pem: keys::PLATFORM_PRIVATE_PKCS8.to_owned(),
                    public_key_id: PUBLIC_KEY_ID.to_owned(),
                    signing_mode: setup.signing_mode,
                }),
                adapter: Arc::new(adapter),
            },
        )
        .await
    }
}

/// A WeChat Pay notification as it crossed the wire, its resource opened.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedNotification {
    /// The JSON envelope (`id`, `event_type`, `resource` …) as sent.
    pub envelope: Value,
    /// The decrypted `resource`: a Transaction or a refund.
    pub resource: Value,
}

/// Opens the `resource` of a notification body with the test APIv3 key: AES-256-GCM, IV = the
/// nonce's bytes, AAD = `associated_data`, `ciphertext` = base64(ct ‖ tag).
pub fn open_notification(body: &[u8]) -> anyhow::Result<OpenedNotification> {
    let envelope: Value = serde_json::from_slice(body).context("notification envelope")?;
    let text = |field: &str| {
        envelope
            .pointer(&format!("/resource/{field}"))
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("notification without resource.{field}: {envelope}"))
    };
    let mut sealed = base64::engine::general_purpose::STANDARD
        .decode(text("ciphertext")?)
        .context("resource.ciphertext is not base64")?;
    let key = UnboundKey::new(&AES_256_GCM, keys::APIV3_KEY.trim().as_bytes())
        .map_err(|_| anyhow!("the APIv3 key is not 32 bytes"))?;
    let nonce = Nonce::try_assume_unique_for_key(text("nonce")?.as_bytes())
        .map_err(|_| anyhow!("resource.nonce is not 12 bytes"))?;
    let plaintext = LessSafeKey::new(key)
        .open_in_place(
            nonce,
            Aad::from(text("associated_data")?.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| anyhow!("the resource does not open with the APIv3 key"))?;
    let resource = serde_json::from_slice(plaintext).context("resource plaintext")?;
    Ok(OpenedNotification { envelope, resource })
}
