//! The built-in system under test of `paysim scenario run`: the real gateway (in-memory
//! SQLite, the real Alipay and WeChat Pay adapters) and the real mock channels, built on the
//! runner's world — one virtual clock, one scheduler, one transport — with the fixed test
//! credentials of `scenarios/vectors/` (never used anywhere real).

use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use conformance::{Routers, Scenario, SystemUnderTest, WorldParts};
use determinism::SeededEntropy;
use gateway_core::channel::Adapters;
use gateway_core::channels::alipay::{AlipayAdapter, AlipayCertificates, AlipayConfig};
use gateway_core::channels::wechatpay::{WechatpayAdapter, WechatpayConfig};
use gateway_core::state::Channel;
use gateway_core::store::sqlite::SqliteDatabase;
use gateway_core::store::Store;
use gateway_core::{Gateway, GatewayConfig, GatewayParts, LatePaymentPolicy};
use simulator::alipay::{AlipayApp, AlipayMockCertificates, AlipayMockConfig};
use simulator::wechatpay::{WechatpayMerchant, WechatpayMockConfig, WechatpaySigningMode};
use simulator::{Simulator, SimulatorParts};

/// Entropy streams of the one seed: each side draws from its own.
const GATEWAY_STREAM: u64 = 1;
const SIMULATOR_STREAM: u64 = 2;

/// The Alipay app registered with the mock.
pub const ALIPAY_APP_ID: &str = "2021000000000001";
/// The merchant's Alipay user id (`seller_id`).
pub const ALIPAY_SELLER_ID: &str = "2088000000000001";
/// The WeChat Pay merchant (商户号), its AppID and API certificate serial.
pub const WECHATPAY_MCHID: &str = "1900000001";
pub const WECHATPAY_APPID: &str = "wx8888888888888888";
pub const WECHATPAY_MERCHANT_SERIAL_NO: &str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1";
/// The WeChat Pay public key id.
pub const WECHATPAY_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_0119000000012025112500000000000001";

macro_rules! vector_key {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/vectors/",
            $path
        ))
    };
}

const ALIPAY_APP_PRIVATE: &str = vector_key!("alipay/keys/app_private_pkcs8.pem");
const ALIPAY_APP_PUBLIC: &str = vector_key!("alipay/keys/app_public.pem");
const ALIPAY_PRIVATE: &str = vector_key!("alipay/keys/alipay_private_pkcs1.pem");
const ALIPAY_PUBLIC: &str = vector_key!("alipay/keys/alipay_public.pem");
const ALIPAY_APP_CERT: &str = vector_key!("alipay/certs/app_cert_public_key_2021000000000001.crt");
const ALIPAY_CERT: &str = vector_key!("alipay/certs/alipay_cert_public_key_rsa2.crt");
const ALIPAY_ROOT_CERT: &str = vector_key!("alipay/certs/alipay_root_cert.crt");
const WECHATPAY_MERCHANT_PRIVATE: &str = vector_key!("wechatpay/keys/merchant_private_pkcs8.pem");
const WECHATPAY_MERCHANT_PUBLIC: &str = vector_key!("wechatpay/keys/merchant_public.pem");
const WECHATPAY_PLATFORM_PRIVATE: &str = vector_key!("wechatpay/keys/platform_private_pkcs8.pem");
const WECHATPAY_PLATFORM_PUBLIC: &str = vector_key!("wechatpay/keys/platform_public.pem");
const WECHATPAY_APIV3_KEY: &str = vector_key!("wechatpay/keys/apiv3_key.txt");

/// The real gateway and the real mock channels.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

#[async_trait::async_trait]
impl SystemUnderTest for Builtin {
    async fn build(&self, parts: WorldParts, scenario: &Scenario) -> anyhow::Result<Routers> {
        let wired = |name: &str| scenario.channels.iter().any(|c| c == name);
        let certificates = scenario
            .setup
            .wechatpay_keys
            .as_ref()
            .is_some_and(|mode| mode.get_ref() == "certificates");

        let alipay_certificates = scenario
            .setup
            .alipay_keys
            .as_ref()
            .is_some_and(|mode| mode.get_ref() == "certificates");
        let alipay = wired("alipay").then(|| AlipayMockConfig {
            alipay_private_key_pem: ALIPAY_PRIVATE.to_owned(),
            apps: vec![AlipayApp {
                app_id: ALIPAY_APP_ID.to_owned(),
                app_public_key_pem: ALIPAY_APP_PUBLIC.to_owned(),
                app_cert_pem: alipay_certificates.then(|| ALIPAY_APP_CERT.to_owned()),
            }],
            seller_id: ALIPAY_SELLER_ID.to_owned(),
            certificates: alipay_certificates.then(|| AlipayMockCertificates {
                alipay_cert_pem: ALIPAY_CERT.to_owned(),
                alipay_root_cert_pem: ALIPAY_ROOT_CERT.to_owned(),
            }),
        });
        let apiv3_key = WECHATPAY_APIV3_KEY.trim().to_owned();
        let wechatpay = wired("wechatpay").then(|| WechatpayMockConfig {
            merchants: vec![WechatpayMerchant {
                mchid: WECHATPAY_MCHID.to_owned(),
                appid: WECHATPAY_APPID.to_owned(),
                serial_no: WECHATPAY_MERCHANT_SERIAL_NO.to_owned(),
                public_key_pem: WECHATPAY_MERCHANT_PUBLIC.to_owned(),
                apiv3_key: apiv3_key.clone(),
            }],
            platform_private_key_pem: WECHATPAY_PLATFORM_PRIVATE.to_owned(),
            public_key_id: WECHATPAY_PUBLIC_KEY_ID.to_owned(),
            signing_mode: if certificates {
                WechatpaySigningMode::PlatformCertificate
            } else {
                WechatpaySigningMode::PublicKey
            },
        });
        let simulator = Simulator::new(SimulatorParts {
            clock: Arc::clone(&parts.channel_clock),
            scheduler: parts.scheduler.clone(),
            entropy: Arc::new(SeededEntropy::with_stream(parts.seed, SIMULATOR_STREAM)),
            transport: Arc::clone(&parts.transport),
            public_base_url: parts.simulator_url.to_owned(),
            alipay,
            wechatpay,
        })
        .context("simulator")?;

        let mut adapters = Adapters::new();
        if wired("alipay") {
            adapters = adapters.with(Arc::new(
                AlipayAdapter::new(AlipayConfig {
                    app_id: ALIPAY_APP_ID.to_owned(),
                    app_private_key_pem: ALIPAY_APP_PRIVATE.to_owned(),
                    alipay_public_key_pem: ALIPAY_PUBLIC.to_owned(),
                    gateway_url: format!("{}/alipay/gateway.do", parts.simulator_url),
                    seller_id: Some(ALIPAY_SELLER_ID.to_owned()),
                    certificates: alipay_certificates.then(|| AlipayCertificates {
                        app_cert_pem: ALIPAY_APP_CERT.to_owned(),
                        alipay_cert_pem: ALIPAY_CERT.to_owned(),
                        alipay_root_cert_pem: ALIPAY_ROOT_CERT.to_owned(),
                    }),
                })
                .context("alipay adapter")?,
            ));
        }
        if wired("wechatpay") {
            let (public_key, public_key_id) = if certificates {
                (String::new(), String::new())
            } else {
                (
                    WECHATPAY_PLATFORM_PUBLIC.to_owned(),
                    WECHATPAY_PUBLIC_KEY_ID.to_owned(),
                )
            };
            adapters = adapters.with(Arc::new(
                WechatpayAdapter::new(WechatpayConfig {
                    mchid: WECHATPAY_MCHID.to_owned(),
                    appid: WECHATPAY_APPID.to_owned(),
                    merchant_serial_no: WECHATPAY_MERCHANT_SERIAL_NO.to_owned(),
                    merchant_private_key_pem: WECHATPAY_MERCHANT_PRIVATE.to_owned(),
                    apiv3_key,
                    platform_public_key_pem: public_key,
                    platform_public_key_id: public_key_id,
                    base_url: parts.simulator_url.to_owned(),
                })
                .map_err(|error| anyhow!("wechatpay adapter: {error}"))?,
            ));
        }

        let store = Store::new(Arc::new(SqliteDatabase::open_in_memory()?));
        store.migrate().await?;
        let gateway = Gateway::new(GatewayParts {
            store,
            clock: parts.clock,
            entropy: Arc::new(SeededEntropy::with_stream(parts.seed, GATEWAY_STREAM)),
            adapters,
            transport: parts.transport,
            scheduler: parts.scheduler,
            config: gateway_config(scenario, parts.gateway_url)?,
        })
        .await
        .context("gateway")?;
        Ok(Routers {
            gateway: gateway_core::app(gateway),
            simulator: simulator::app(simulator),
        })
    }
}

/// The gateway's configuration: defaults, then the scenario's `[setup.gateway]` and `[setup.fees]`.
fn gateway_config(scenario: &Scenario, gateway_url: &str) -> anyhow::Result<GatewayConfig> {
    let mut config = GatewayConfig {
        public_base_url: gateway_url.to_owned(),
        ..GatewayConfig::default()
    };
    let overrides = &scenario.setup.gateway;
    if let Some(seconds) = overrides.default_expiry_seconds {
        config.default_expiry_ms = seconds.saturating_mul(1_000);
    }
    if let Some(ms) = overrides.channel_timeout_ms {
        config.channel_timeout_ms = ms;
    }
    if let Some(schedule) = &overrides.poll_schedule_seconds {
        config.poll_schedule_ms = schedule.iter().map(|s| s.saturating_mul(1_000)).collect();
    }
    if let Some(schedule) = &overrides.barcode_poll_schedule_seconds {
        config.barcode_poll_schedule_ms =
            schedule.iter().map(|s| s.saturating_mul(1_000)).collect();
    }
    if let Some(policy) = &overrides.late_payment_policy {
        config.late_payment_policy = LatePaymentPolicy::parse(policy)
            .ok_or_else(|| anyhow!("setup.gateway.late_payment_policy: unknown `{policy}`"))?;
    }
    for (channel, bps) in &scenario.setup.fees {
        let channel = Channel::parse(channel.get_ref())
            .ok_or_else(|| anyhow!("setup.fees: unknown channel `{}`", channel.get_ref()))?;
        config.fee_bps.insert(channel, *bps);
    }
    Ok(config)
}
