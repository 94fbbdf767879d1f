//! The whole stack with **both** channels in one simulation, for the property suite: one
//! [`VirtualClock`], one [`Scheduler`], seeded entropy, one [`InProcessTransport`]; one
//! simulator serving the mock Alipay gateway and the mock WeChat Pay server at
//! [`SIMULATOR_URL`] (its clock optionally skewed by a fixed offset); one gateway with the real
//! Alipay and WeChat Pay adapters, whose outgoing calls pass through a
//! [`FaultyTransport`] (transport faults: timeouts, resets, delays … on the virtual clock);
//! and a store that is SQLite in memory or a fresh schema on PostgreSQL.
//!
//! Like [`crate::sim`], the gateway is driven only through its HTTP API and the simulator only
//! through its control plane.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use determinism::{
    run_virtual_until, Clock, FaultyTransport, HttpRequest, HttpResponse, InProcessTransport,
    Scheduler, SeededEntropy, SkewedClock, Transport, TransportError, UnixMillis, VirtualClock,
    VirtualSleeper,
};
use gateway_core::channel::Adapters;
use gateway_core::channels::alipay::{AlipayAdapter, AlipayConfig};
use gateway_core::channels::wechatpay::{WechatpayAdapter, WechatpayConfig};
use gateway_core::store::postgres::PostgresDatabase;
use gateway_core::store::sqlite::SqliteDatabase;
use gateway_core::store::Store;
use gateway_core::{Gateway, GatewayConfig, GatewayParts, PlantedBugs};
use serde_json::{json, Value};
use simulator::alipay::{AlipayApp, AlipayMockConfig};
use simulator::wechatpay::{WechatpayMerchant, WechatpayMockConfig, WechatpaySigningMode};
use simulator::{Simulator, SimulatorParts};
use tower::ServiceExt;

use crate::alipay_sim::{self, APP_ID, SELLER_ID};
pub use crate::sim::{Reply, GATEWAY_URL, T0};
use crate::wechatpay_sim::{self, APPID, MCHID, MERCHANT_SERIAL_NO, PUBLIC_KEY_ID};

/// The simulator's base URL for both channels: Alipay at `/alipay/gateway.do`, WeChat Pay at
/// `/v3/…`.
pub const SIMULATOR_URL: &str = "http://channels.test";
/// What the gateway's requests to each channel start with (transport-fault matchers).
pub const ALIPAY_PREFIX: &str = "http://channels.test/alipay/";
pub const WECHATPAY_PREFIX: &str = "http://channels.test/v3/";

const GATEWAY_STREAM: u64 = 1;
const SIMULATOR_STREAM: u64 = 2;

/// Counts the HTTP exchanges that cross between the gateway and the simulator, in either
/// direction (calls that a transport fault stops before delivery are not counted).
#[derive(Debug, Clone)]
struct Counting {
    inner: InProcessTransport,
    sent: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl Transport for Counting {
    async fn send(
        &self,
        request: HttpRequest,
        timeout_ms: u64,
    ) -> Result<HttpResponse, TransportError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.send(request, timeout_ms).await
    }
}

/// Where the gateway keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    SqliteMemory,
    /// A fresh schema on this server, dropped by [`MultiSim::cleanup`].
    Postgres {
        url: String,
    },
}

#[derive(Debug, Clone)]
pub struct MultiOptions {
    pub seed: u64,
    pub start_ms: UnixMillis,
    /// The simulator's clock offset from the shared clock (fixed for the run).
    pub skew_ms: i64,
    pub config: GatewayConfig,
    pub store: StoreKind,
    pub planted: PlantedBugs,
}

impl Default for MultiOptions {
    fn default() -> Self {
        MultiOptions {
            seed: 1,
            start_ms: T0,
            skew_ms: 0,
            config: GatewayConfig::default(),
            store: StoreKind::SqliteMemory,
            planted: PlantedBugs::NONE,
        }
    }
}

/// The gateway with both real adapters and the simulator with both real mocks.
#[derive(Clone)]
pub struct MultiSim {
    pub seed: u64,
    pub gateway: Gateway,
    pub gateway_app: Router,
    pub simulator_app: Router,
    pub clock: VirtualClock,
    pub scheduler: Scheduler,
    pub transport: InProcessTransport,
    /// The gateway's outgoing transport: arm transport faults here.
    pub faulty: FaultyTransport,
    /// The PostgreSQL schema to drop, if any.
    schema: Option<(Store, String)>,
    /// HTTP exchanges between the gateway and the simulator so far.
    exchanges: Arc<AtomicU64>,
}

impl std::fmt::Debug for MultiSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiSim")
            .field("seed", &self.seed)
            .field("now_ms", &self.clock.now_ms())
            .finish_non_exhaustive()
    }
}

fn schema_name(seed: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "pp_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        seed % 1_000_000_007
    )
}

impl MultiSim {
    pub async fn build(options: MultiOptions) -> anyhow::Result<MultiSim> {
        let clock = VirtualClock::new(options.start_ms);
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let simulator_clock: Arc<dyn Clock> = if options.skew_ms == 0 {
            Arc::clone(&shared_clock)
        } else {
            Arc::new(SkewedClock::new(Arc::clone(&shared_clock), options.skew_ms))
        };
        let scheduler = Scheduler::new(Arc::clone(&shared_clock));
        let transport = InProcessTransport::new();
        let exchanges = Arc::new(AtomicU64::new(0));
        let counting = Counting {
            inner: transport.clone(),
            sent: Arc::clone(&exchanges),
        };

        let simulator = Simulator::new(SimulatorParts {
            clock: simulator_clock,
            scheduler: scheduler.clone(),
            entropy: Arc::new(SeededEntropy::with_stream(options.seed, SIMULATOR_STREAM)),
            transport: Arc::new(counting.clone()),
            public_base_url: SIMULATOR_URL.to_owned(),
            alipay: Some(AlipayMockConfig {
                alipay_private_key_pem: alipay_sim::keys::ALIPAY_PRIVATE_PKCS1.to_owned(),
                apps: vec![AlipayApp {
                    app_id: APP_ID.to_owned(),
                    app_public_key_pem: alipay_sim::keys::APP_PUBLIC.to_owned(),
                    app_cert_pem: None,
                }],
                seller_id: SELLER_ID.to_owned(),
                certificates: None,
            }),
            wechatpay: Some(WechatpayMockConfig {
                merchants: vec![WechatpayMerchant {
                    mchid: MCHID.to_owned(),
                    appid: APPID.to_owned(),
                    serial_no: MERCHANT_SERIAL_NO.to_owned(),
                    public_key_pem: wechatpay_sim::keys::MERCHANT_PUBLIC.to_owned(),
                    apiv3_key: wechatpay_sim::keys::APIV3_KEY.trim().to_owned(),
                }],
                platform_private_key_pem: wechatpay_sim::keys::PLATFORM_PRIVATE_PKCS8.to_owned(),
                public_key_id: PUBLIC_KEY_ID.to_owned(),
                signing_mode: WechatpaySigningMode::PublicKey,
            }),
        })
        .context("simulator")?;
        let simulator_app = simulator::app(simulator);
        transport
            .try_register(SIMULATOR_URL, simulator_app.clone())
            .context("registering the simulator")?;

        let alipay = AlipayAdapter::new(AlipayConfig {
            app_id: APP_ID.to_owned(),
            app_private_key_pem: alipay_sim::keys::APP_PRIVATE_PKCS8.to_owned(),
            alipay_public_key_pem: alipay_sim::keys::ALIPAY_PUBLIC.to_owned(),
            gateway_url: format!("{SIMULATOR_URL}/alipay/gateway.do"),
            seller_id: Some(SELLER_ID.to_owned()),
            certificates: None,
        })
        .context("alipay adapter")?;
        let wechatpay = WechatpayAdapter::new(WechatpayConfig {
            mchid: MCHID.to_owned(),
            appid: APPID.to_owned(),
            merchant_serial_no: MERCHANT_SERIAL_NO.to_owned(),
            merchant_private_key_pem: wechatpay_sim::keys::MERCHANT_PRIVATE_PKCS8.to_owned(),
            apiv3_key: wechatpay_sim::keys::APIV3_KEY.trim().to_owned(),
            platform_public_key_pem: wechatpay_sim::keys::PLATFORM_PUBLIC.to_owned(),
            platform_public_key_id: PUBLIC_KEY_ID.to_owned(),
            base_url: SIMULATOR_URL.to_owned(),
        })
        .map_err(|error| anyhow!("wechatpay adapter: {error}"))?;

        let (store, schema) = match &options.store {
            StoreKind::SqliteMemory => (
                Store::new(Arc::new(SqliteDatabase::open_in_memory()?)),
                None,
            ),
            StoreKind::Postgres { url } => {
                let schema = schema_name(options.seed);
                let database = PostgresDatabase::connect(url, Some(&schema), 4)
                    .await
                    .map_err(|error| {
                        anyhow!("PostgreSQL at {url} is named but cannot be used: {error}")
                    })?;
                let store = Store::new(Arc::new(database));
                (store.clone(), Some((store, schema)))
            }
        };
        store.migrate().await.context("migrating the store")?;

        let faulty =
            FaultyTransport::new(Arc::new(counting), Arc::new(VirtualSleeper(clock.clone())));
        let mut config = options.config;
        config.public_base_url = GATEWAY_URL.to_owned();
        let gateway = Gateway::new(GatewayParts {
            store,
            clock: shared_clock,
            entropy: Arc::new(SeededEntropy::with_stream(options.seed, GATEWAY_STREAM)),
            adapters: Adapters::new()
                .with(Arc::new(alipay))
                .with(Arc::new(wechatpay)),
            transport: Arc::new(faulty.clone()),
            scheduler: scheduler.clone(),
            config,
        })
        .await
        .context("gateway")?;
        gateway.plant_bugs(options.planted);
        let gateway_app = gateway_core::app(gateway.clone());
        transport
            .try_register(GATEWAY_URL, gateway_app.clone())
            .context("registering the gateway")?;

        Ok(MultiSim {
            seed: options.seed,
            gateway,
            gateway_app,
            simulator_app,
            clock,
            scheduler,
            transport,
            faulty,
            schema,
            exchanges,
        })
    }

    /// HTTP exchanges between the gateway and the simulator so far, in either direction.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    /// Ends the run: drops every pending event and unregisters both servers, which breaks the
    /// reference cycles (scheduled jobs and the transport's routes hold the gateway, which
    /// holds the scheduler and the transport) so the stack — its store and, on PostgreSQL, its
    /// pooled connections — is freed once the last handle goes; then drops the PostgreSQL
    /// schema of the run (nothing on SQLite).
    pub async fn cleanup(&self) -> anyhow::Result<()> {
        for event in self.scheduler.pending() {
            self.scheduler.cancel(event.id);
        }
        self.transport.unregister(GATEWAY_URL);
        self.transport.unregister(SIMULATOR_URL);
        if let Some((store, schema)) = &self.schema {
            store
                .database()
                .batch(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .map_err(|error| anyhow!("dropping schema {schema}: {error}"))?;
        }
        Ok(())
    }

    pub fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    /// Runs every event due now.
    pub async fn run_due(&self) -> usize {
        self.run_until(self.now_ms()).await
    }

    /// Moves virtual time forward by `delta_ms`, running what falls due.
    pub async fn advance_ms(&self, delta_ms: i64) -> usize {
        self.run_until(self.now_ms().saturating_add(delta_ms)).await
    }

    pub async fn run_until(&self, until_ms: UnixMillis) -> usize {
        run_virtual_until(&self.scheduler, &self.clock, until_ms).await
    }

    pub async fn gateway_get(&self, path: &str) -> anyhow::Result<Reply> {
        send(&self.gateway_app, Request::get(path).body(Body::empty())?).await
    }

    pub async fn gateway_post(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Reply> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        send(
            &self.gateway_app,
            request.body(Body::from(body.to_string()))?,
        )
        .await
    }

    pub async fn control_get(&self, path: &str) -> anyhow::Result<Reply> {
        send(&self.simulator_app, Request::get(path).body(Body::empty())?).await
    }

    pub async fn control_post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        let request = Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))?;
        send(&self.simulator_app, request).await
    }

    /// A buyer's move on the trade of `out_trade_no` at `channel`.
    pub async fn buyer_action(
        &self,
        channel: &str,
        out_trade_no: &str,
        action: &str,
    ) -> anyhow::Result<Reply> {
        self.control_post(
            &format!("/_paysim/{channel}/trades/{out_trade_no}/actions"),
            &json!({ "action": action }),
        )
        .await
    }
}

async fn send(router: &Router, request: Request<Body>) -> anyhow::Result<Reply> {
    use http_body_util::BodyExt as _;
    let response = match router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    };
    let (parts, body) = response.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await?.to_bytes(),
    })
}
