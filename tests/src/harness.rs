//! A gateway wired for simulation, for tests: in-memory SQLite, a [`VirtualClock`], seeded
//! entropy, the in-process transport with the test-only [`FakeChannel`] registered at
//! [`FAKE_CHANNEL_URL`], and the run's one [`Scheduler`]. Time only moves when a test calls
//! [`TestGateway::advance_ms`] (or `run_virtual_until` itself).

use std::sync::Arc;

use axum::Router;
use determinism::{
    run_virtual_until, InProcessTransport, Scheduler, SeededEntropy, UnixMillis, VirtualClock,
};
use gateway_core::channel::Adapters;
use gateway_core::store::sqlite::SqliteDatabase;
use gateway_core::store::Store;
use gateway_core::{Gateway, GatewayConfig, GatewayParts};

use crate::fake_channel::{FakeAdapter, FakeChannel, DEFAULT_SECRET};

/// 2026-01-01T00:00:00Z: where every test gateway's virtual clock starts.
pub const T0: UnixMillis = 1_767_225_600_000;
/// Where the fake channel answers inside the in-process transport.
pub const FAKE_CHANNEL_URL: &str = "http://fake-channel.test";
/// The gateway's public base URL; notifications go to `<this>/notify/alipay`.
pub const GATEWAY_URL: &str = "http://gateway.test";

/// How to build a [`TestGateway`].
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// `public_base_url` is overwritten with [`GATEWAY_URL`].
    pub config: GatewayConfig,
    /// Whether the gateway has the fake channel's adapter (as `alipay`). Without it every
    /// channel is unconfigured.
    pub with_fake_adapter: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            config: GatewayConfig::default(),
            with_fake_adapter: true,
        }
    }
}

/// A gateway, its Router and the handles a test drives it with.
#[derive(Debug, Clone)]
pub struct TestGateway {
    pub gateway: Gateway,
    /// `gateway_core::app(gateway)`; also registered at [`GATEWAY_URL`] in the transport.
    pub app: Router,
    pub fake: FakeChannel,
    pub clock: VirtualClock,
    pub scheduler: Scheduler,
    pub transport: InProcessTransport,
}

impl TestGateway {
    pub async fn new() -> anyhow::Result<TestGateway> {
        TestGateway::build(Options::default()).await
    }

    pub async fn build(options: Options) -> anyhow::Result<TestGateway> {
        let store = Store::new(Arc::new(SqliteDatabase::open_in_memory()?));
        store.migrate().await?;
        let clock = VirtualClock::new(T0);
        let scheduler = Scheduler::new(Arc::new(clock.clone()));
        let transport = InProcessTransport::new();
        let fake = FakeChannel::new(DEFAULT_SECRET);
        transport.try_register(FAKE_CHANNEL_URL, fake.router())?;
        let mut adapters = Adapters::new();
        if options.with_fake_adapter {
            adapters = adapters.with(Arc::new(FakeAdapter::new(FAKE_CHANNEL_URL, DEFAULT_SECRET)));
        }
        let mut config = options.config;
        config.public_base_url = GATEWAY_URL.to_owned();
        let gateway = Gateway::new(GatewayParts {
            store,
            clock: Arc::new(clock.clone()),
            entropy: Arc::new(SeededEntropy::new(options.seed)),
            adapters,
            transport: Arc::new(transport.clone()),
            scheduler: scheduler.clone(),
            config,
        })
        .await?;
        let app = gateway_core::app(gateway.clone());
        transport.try_register(GATEWAY_URL, app.clone())?;
        Ok(TestGateway {
            gateway,
            app,
            fake,
            clock,
            scheduler,
            transport,
        })
    }

    pub fn now_ms(&self) -> UnixMillis {
        determinism::Clock::now_ms(&self.clock)
    }

    /// Moves virtual time forward by `delta_ms`, running every scheduled job that falls due
    /// on the way (polls, expiry, refund queries). Returns how many ran.
    pub async fn advance_ms(&self, delta_ms: i64) -> usize {
        let until = self.now_ms().saturating_add(delta_ms);
        run_virtual_until(&self.scheduler, &self.clock, until).await
    }
}
