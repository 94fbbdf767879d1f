//! Mock payment channel servers and their channel-generic control plane. See ../ARCHITECTURE.md.
//!
//! **Architecture invariant:** this crate re-implements each channel's protocol from the
//! channel's documentation. It never depends on `gateway-core` and shares no wire types or
//! canonicalisation code with it, so a misreading of the protocol on one side is caught by the
//! other (and by golden vectors and real SDKs) instead of cancelling out.
//!
//! Time, randomness and outbound HTTP come only from [`SimulatorParts`] (the determinism
//! seam): trades expire and notifications retry as events on the shared [`Scheduler`].

pub mod alipay;
pub mod control;
mod delivery;
pub mod faults;
mod money;
pub mod wechatpay;

use std::sync::Arc;

use determinism::{Clock, Entropy, Scheduler, Transport};

pub use control::{
    AttemptView, BuyerAction, ChannelSummary, ControlError, ExchangeView, MockChannel,
    NotificationView, RefundView, SettlementView, TradeView,
};
pub use faults::{FaultBoard, FaultKind, FaultScope, FaultSpec};

/// Everything the simulator takes from its environment.
#[derive(Clone)]
pub struct SimulatorParts {
    /// Business time: trade times, expiry, notification schedule, bill dates.
    pub clock: Arc<dyn Clock>,
    /// The run's one scheduler of due events (expiry, notification attempts).
    pub scheduler: Scheduler,
    /// Ids, tokens and buyer identities.
    pub entropy: Arc<dyn Entropy>,
    /// Outbound notifications to merchants.
    pub transport: Arc<dyn Transport>,
    /// The simulator's own base URL as buyers and merchants reach it (e.g.
    /// `http://127.0.0.1:8081`); used in QR codes and other URLs it hands out.
    pub public_base_url: String,
    /// The mock Alipay gateway, when enabled.
    pub alipay: Option<alipay::AlipayMockConfig>,
    /// The mock WeChat Pay APIv3 server (served at `/v3/…`), when enabled.
    pub wechatpay: Option<wechatpay::WechatpayMockConfig>,
}

/// Why a simulator could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// A key in the configuration cannot be used.
    #[error("invalid key ({what}): {reason}")]
    InvalidKey { what: String, reason: String },
    /// Any other invalid configuration value.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// The running mock channels. Cloning yields another handle to the same state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<SimulatorInner>,
}

struct SimulatorInner {
    alipay: Option<Arc<alipay::AlipayMock>>,
    wechatpay: Option<Arc<wechatpay::WechatpayMock>>,
    channels: Vec<Arc<dyn MockChannel>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .inner
            .channels
            .iter()
            .map(|channel| channel.name())
            .collect();
        f.debug_struct("Simulator")
            .field("channels", &names)
            .finish()
    }
}

impl Simulator {
    /// Builds the configured mock channels; keys are parsed once, here.
    pub fn new(parts: SimulatorParts) -> Result<Simulator, SimulatorError> {
        let base = parts.public_base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SimulatorError::InvalidConfig(format!(
                "public_base_url must be an absolute http(s) URL, got {:?}",
                parts.public_base_url
            )));
        }
        let mut channels: Vec<Arc<dyn MockChannel>> = Vec::new();
        let alipay = match parts.alipay.clone() {
            Some(config) => {
                let mock = alipay::AlipayMock::new(config, &parts, &base)?;
                channels.push(mock.clone());
                Some(mock)
            }
            None => None,
        };
        let wechatpay = match parts.wechatpay.clone() {
            Some(config) => {
                let mock = wechatpay::WechatpayMock::new(config, &parts, &base)?;
                channels.push(mock.clone());
                Some(mock)
            }
            None => None,
        };
        Ok(Simulator {
            inner: Arc::new(SimulatorInner {
                alipay,
                wechatpay,
                channels,
            }),
        })
    }

    /// The enabled channels, in a stable order.
    pub fn channels(&self) -> Vec<Arc<dyn MockChannel>> {
        self.inner.channels.clone()
    }

    /// The channel called `name`, if enabled.
    pub fn channel(&self, name: &str) -> Option<Arc<dyn MockChannel>> {
        self.inner
            .channels
            .iter()
            .find(|channel| channel.name() == name)
            .cloned()
    }
}

/// The simulator's HTTP surface: each enabled channel's protocol endpoints (Alipay under
/// `/alipay/…`; WeChat Pay at the root under `/v3/…`, as the real API, plus its buyer page
/// under `/wechatpay/…`) and the control plane under `/_paysim/…`.
pub fn app(sim: Simulator) -> axum::Router {
    let mut router = control::router(sim.clone());
    if let Some(alipay) = &sim.inner.alipay {
        router = router.merge(alipay::router(Arc::clone(alipay)));
    }
    if let Some(wechatpay) = &sim.inner.wechatpay {
        router = router.merge(wechatpay::router(Arc::clone(wechatpay)));
    }
    router
}
