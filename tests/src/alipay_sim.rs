//! One whole simulation around the **real** Alipay adapter and the **real** mock Alipay gateway,
//! for end-to-end tests: the shared run of [`crate::sim`] (one virtual clock, one scheduler,
//! seeded entropy, one in-process transport carrying gateway → channel calls and channel →
//! gateway notifications) with the simulator at [`ALIPAY_URL`] and the Alipay adapter
//! configured against it. This module adds only Alipay's identities and keys.

use std::sync::Arc;

use anyhow::Context as _;
use gateway_core::channels::alipay::{AlipayAdapter, AlipayConfig};
use simulator::alipay::{AlipayApp, AlipayMockConfig};

pub use crate::sim::{Delivery, Options, Reply, GATEWAY_URL, T0};
use crate::sim::{Sim, SimChannel, Wiring};

/// The simulator's public base URL; the adapter calls `<this>/alipay/gateway.do`.
pub const ALIPAY_URL: &str = "http://alipay.test";
/// The merchant app registered with the mock gateway.
pub const APP_ID: &str = "2021000000000001";
/// The merchant's Alipay user id, reported as `seller_id` and required by the adapter.
pub const SELLER_ID: &str = "2088000000000001";

/// The fixed test keys of `scenarios/vectors/alipay/keys/` (never used anywhere real).
pub mod keys {
    /// The merchant app's private key (the adapter signs requests with it).
    pub const APP_PRIVATE_PKCS8: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/app_private_pkcs8.pem"
    ));
    /// The app public key registered with the mock gateway.
    pub const APP_PUBLIC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/app_public.pem"
    ));
    /// The mock gateway's private key (signs responses and notifications).
    pub const ALIPAY_PRIVATE_PKCS1: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/alipay_private_pkcs1.pem"
    ));
    /// The Alipay public key the adapter verifies with.
    pub const ALIPAY_PUBLIC: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/vectors/alipay/keys/alipay_public.pem"
    ));
}

/// The Alipay channel of a [`Sim`].
#[derive(Debug, Clone, Copy)]
pub struct Alipay;

impl SimChannel for Alipay {
    const NAME: &'static str = "alipay";
}

/// The gateway (real Alipay adapter) and the simulator (real mock Alipay gateway) in one
/// simulation. Cloning yields another handle to the same run.
pub type AlipaySim = Sim<Alipay>;

impl Sim<Alipay> {
    /// The default simulation (seed 1, clock at [`T0`], default gateway settings).
    pub async fn new() -> anyhow::Result<AlipaySim> {
        AlipaySim::build(Options::default()).await
    }

    /// The default simulation with another seed.
    pub async fn with_seed(seed: u64) -> anyhow::Result<AlipaySim> {
        AlipaySim::build(Options {
            seed,
            ..Options::default()
        })
        .await
    }

    pub async fn build(options: Options) -> anyhow::Result<AlipaySim> {
        let adapter = AlipayAdapter::new(AlipayConfig {
            app_id: APP_ID.to_owned(),
            app_private_key_pem: keys::APP_PRIVATE_PKCS8.to_owned(),
            alipay_public_key_pem: keys::ALIPAY_PUBLIC.to_owned(),
            gateway_url: format!("{ALIPAY_URL}/alipay/gateway.do"),
            seller_id: Some(SELLER_ID.to_owned()),
            certificates: None,
        })
        .context("alipay adapter")?;
        Sim::assemble(
            options,
            Wiring {
                simulator_url: ALIPAY_URL,
                alipay: Some(AlipayMockConfig {
                    alipay_private_key_pem: keys::ALIPAY_PRIVATE_PKCS1.to_owned(),
                    apps: vec![AlipayApp {
                        app_id: APP_ID.to_owned(),
                        app_public_key_pem: keys::APP_PUBLIC.to_owned(),
                        app_cert_pem: None,
                    }],
                    seller_id: SELLER_ID.to_owned(),
                    certificates: None,
                }),
                wechatpay: None,
                adapter: Arc::new(adapter),
            },
        )
        .await
    }
}
