//! What every end-to-end channel simulation shares, whichever channel it runs: one
//! [`VirtualClock`], one [`Scheduler`], seeded entropy (one stream per component), one
//! [`InProcessTransport`] on which the gateway's Router (behind a recording tap, at
//! [`GATEWAY_URL`]) and the simulator's Router are registered, and the real adapter of the
//! channel under test. [`crate::alipay_sim`] and [`crate::wechatpay_sim`] only add the channel's
//! identities, keys and configuration ([`Wiring`]) and name the channel ([`SimChannel`]).
//!
//! Tests drive the gateway only through its HTTP API ([`Sim::gateway_get`],
//! [`Sim::gateway_post`]) and the buyer only through the simulator's control plane
//! ([`Sim::control_get`], [`Sim::buyer_action`], [`Sim::arm_fault`]); time moves only when a
//! test calls [`Sim::advance_ms`] (or `run_virtual_until` itself), and the scheduler then runs
//! what falls due: notification attempts, polls, expiry and refund settlement on both sides.
//!
//! The gateway's route in the transport is a recording tap in front of `gateway_core::app`: it
//! keeps a copy of every request that reached the gateway *through the transport* (that is,
//! every notification attempt of the simulator) with the gateway's answer, so a test can read
//! what crossed the wire ([`Sim::deliveries`]) without reaching into either side.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use determinism::{
    run_virtual_until, Clock, InProcessTransport, Scheduler, SeededEntropy, UnixMillis,
    VirtualClock,
};
use gateway_core::channel::{Adapters, ChannelAdapter};
use gateway_core::store::sqlite::SqliteDatabase;
use gateway_core::store::Store;
use gateway_core::{Gateway, GatewayConfig, GatewayParts};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use simulator::alipay::AlipayMockConfig;
use simulator::wechatpay::WechatpayMockConfig;
use simulator::{Simulator, SimulatorParts};
use tower::ServiceExt;

/// 2026-01-01T00:00:00Z (08:00 in Beijing): where the virtual clock starts by default.
pub const T0: UnixMillis = crate::harness::T0;
/// The gateway's public base URL; channels notify `<this>/notify/<channel>`.
pub const GATEWAY_URL: &str = "http://gateway.test";

/// Entropy streams of the one seed: each component draws from its own, so an extra draw on
/// one side never shifts the other side's ids.
const GATEWAY_STREAM: u64 = 1;
const SIMULATOR_STREAM: u64 = 2;
/// Largest body the tap reads (the gateway's own limit is 64 KiB).
const TAP_BODY_LIMIT: usize = 1024 * 1024;

/// The channel a [`Sim`] runs: its name in the control plane's paths and in `/notify/…`.
pub trait SimChannel: Clone + Copy + std::fmt::Debug + Send + Sync + 'static {
    /// `alipay`, `wechatpay`.
    const NAME: &'static str;
}

/// How to build a simulation.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fixes every id, token, trade number and buyer of the run. Print it on failure.
    pub seed: u64,
    /// Where the virtual clock starts.
    pub start_ms: UnixMillis,
    /// The gateway's settings; `public_base_url` is overwritten with [`GATEWAY_URL`].
    pub config: GatewayConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 1,
            start_ms: T0,
            config: GatewayConfig::default(),
        }
    }
}

/// An HTTP reply read to the end.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "reply ({}) is not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request that reached the gateway through the transport (a notification attempt, or a
/// copy of one), with the gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Virtual time when it arrived.
    pub at_ms: UnixMillis,
    pub method: String,
    /// The path and query as the gateway saw it (`/notify/alipay`).
    pub path: String,
    /// The request's headers (WeChat Pay signs notifications in them).
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: StatusCode,
    pub reply: Bytes,
}

impl Delivery {
    /// The URL-decoded form fields of the body, in order (Alipay).
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect()
    }

    /// One form field, if present (Alipay).
    pub fn field(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(&self.body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The body as JSON (WeChat Pay).
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "notification body is not JSON: {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// One request header as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// The recording tap registered for the gateway in the transport.
#[derive(Clone)]
struct Tap {
    gateway_app: Router,
    clock: VirtualClock,
    log: Arc<Mutex<Vec<Delivery>>>,
}

async fn tap(State(tap): State<Tap>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, TAP_BODY_LIMIT).await {
        Ok(body) => body,
        Err(error) => return (StatusCode::PAYLOAD_TOO_LARGE, error.to_string()).into_response(),
    };
    let at_ms = tap.clock.now_ms();
    let method = parts.method.to_string();
    let path = parts.uri.to_string();
    let headers = parts.headers.clone();
    let forwarded = Request::from_parts(parts, Body::from(body.clone()));
    let response = match tap.gateway_app.oneshot(forwarded).await {
        Ok(response) => response,
        Err(infallible) => match infallible {},
    };
    let (parts, reply) = response.into_parts();
    let reply = match reply.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    };
    tap.log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Delivery {
            at_ms,
            method,
            path,
            headers,
            body,
            status: parts.status,
            reply: reply.clone(),
        });
    Response::from_parts(parts, Body::from(reply))
}

/// What a channel's builder hands [`Sim::assemble`]: where the simulator lives, the mock's
/// configuration and the adapter configured against it.
pub struct Wiring {
    /// The simulator's public base URL (its key in the transport).
    pub simulator_url: &'static str,
    pub alipay: Option<AlipayMockConfig>,
    pub wechatpay: Option<WechatpayMockConfig>,
    /// The real adapter of the channel, pointed at `simulator_url`.
    pub adapter: Arc<dyn ChannelAdapter>,
}

/// The gateway (real adapter) and the simulator (real mock) in one simulation. Cloning yields
/// another handle to the same run.
pub struct Sim<C> {
    pub seed: u64,
    /// The payment service itself, for what its HTTP API does not show (alerts).
    pub gateway: Gateway,
    /// `gateway_core::app(gateway)`: the merchant-facing API.
    pub gateway_app: Router,
    /// `simulator::app(simulator)`: the mock channel and the control plane.
    pub simulator_app: Router,
    pub clock: VirtualClock,
    pub scheduler: Scheduler,
    pub transport: InProcessTransport,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    /// The tap in front of the gateway, kept so a test can take the gateway off the transport
    /// and put it back ([`Sim::disconnect_gateway`]).
    tap_router: Router,
    channel: PhantomData<C>,
}

impl<C> Clone for Sim<C> {
    fn clone(&self) -> Self {
        Sim {
            seed: self.seed,
            gateway: self.gateway.clone(),
            gateway_app: self.gateway_app.clone(),
            simulator_app: self.simulator_app.clone(),
            clock: self.clock.clone(),
            scheduler: self.scheduler.clone(),
            transport: self.transport.clone(),
            deliveries: Arc::clone(&self.deliveries),
            tap_router: self.tap_router.clone(),
            channel: PhantomData,
        }
    }
}

impl<C: SimChannel> std::fmt::Debug for Sim<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("channel", &C::NAME)
            .field("seed", &self.seed)
            .field("now_ms", &self.clock.now_ms())
            .field("scheduler", &self.scheduler)
            .finish_non_exhaustive()
    }
}

impl<C: SimChannel> Sim<C> {
    /// Builds the run: clock, scheduler, transport, simulator, store, gateway, tap.
    pub async fn assemble(options: Options, wiring: Wiring) -> anyhow::Result<Sim<C>> {
        let clock = VirtualClock::new(options.start_ms);
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let scheduler = Scheduler::new(Arc::clone(&shared_clock));
        let transport = InProcessTransport::new();

        let simulator = Simulator::new(SimulatorParts {
            clock: Arc::clone(&shared_clock),
            scheduler: scheduler.clone(),
            entropy: Arc::new(SeededEntropy::with_stream(options.seed, SIMULATOR_STREAM)),
            transport: Arc::new(transport.clone()),
            public_base_url: wiring.simulator_url.to_owned(),
            wechatpay: wiring.wechatpay,
            alipay: wiring.alipay,
        })
        .context("simulator")?;
        let simulator_app = simulator::app(simulator);
        transport
            .try_register(wiring.simulator_url, simulator_app.clone())
            .context("registering the simulator")?;

        let store = Store::new(Arc::new(SqliteDatabase::open_in_memory()?));
        store.migrate().await?;
        let mut config = options.config;
        config.public_base_url = GATEWAY_URL.to_owned();
        let gateway = Gateway::new(GatewayParts {
            store,
            clock: shared_clock,
            entropy: Arc::new(SeededEntropy::with_stream(options.seed, GATEWAY_STREAM)),
            adapters: Adapters::new().with(wiring.adapter),
            transport: Arc::new(transport.clone()),
            scheduler: scheduler.clone(),
            config,
        })
        .await
        .context("gateway")?;
        let gateway_app = gateway_core::app(gateway.clone());

        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let tap_router = Router::new().fallback(tap).with_state(Tap {
            gateway_app: gateway_app.clone(),
            clock: clock.clone(),
            log: Arc::clone(&deliveries),
        });
        transport
            .try_register(GATEWAY_URL, tap_router.clone())
            .context("registering the gateway")?;

        Ok(Sim {
            seed: options.seed,
            gateway,
            gateway_app,
            simulator_app,
            clock,
            scheduler,
            transport,
            deliveries,
            tap_router,
            channel: PhantomData,
        })
    }

    pub fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    /// Runs every event due now (a notification the buyer's payment just queued …).
    pub async fn run_due(&self) -> usize {
        self.run_until(self.now_ms()).await
    }

    /// Moves virtual time forward by `delta_ms`, running every event that falls due on the
    /// way. Returns how many ran.
    pub async fn advance_ms(&self, delta_ms: i64) -> usize {
        self.run_until(self.now_ms().saturating_add(delta_ms)).await
    }

    /// Moves virtual time to `until_ms` (never backwards), running what falls due.
    pub async fn run_until(&self, until_ms: UnixMillis) -> usize {
        run_virtual_until(&self.scheduler, &self.clock, until_ms).await
    }

    /// Every request the gateway received through the transport so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the gateway off the transport: the channel's notifications then fail with a
    /// transport error (an unreachable merchant). Calls from the gateway still go out.
    pub fn disconnect_gateway(&self) -> bool {
        self.transport.unregister(GATEWAY_URL)
    }

    /// Puts the gateway back on the transport.
    pub fn reconnect_gateway(&self) -> anyhow::Result<()> {
        self.transport
            .try_register(GATEWAY_URL, self.tap_router.clone())
            .context("registering the gateway again")
    }

    // ------------------------------------------------------------ the gateway's API

    pub async fn gateway_get(&self, path: &str) -> anyhow::Result<Reply> {
        let request = Request::get(path).body(Body::empty())?;
        send(&self.gateway_app, request).await
    }

    /// `POST path` with a JSON body and, when given, an `Idempotency-Key`.
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

    // ------------------------------------------------------------ the control plane

    pub async fn control_get(&self, path: &str) -> anyhow::Result<Reply> {
        let request = Request::get(path).body(Body::empty())?;
        send(&self.simulator_app, request).await
    }

    pub async fn control_post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        let request = Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))?;
        send(&self.simulator_app, request).await
    }

    /// `GET /_paysim/{channel}/trades/{out_trade_no}`.
    pub async fn trade(&self, out_trade_no: &str) -> anyhow::Result<Reply> {
        self.control_get(&format!("/_paysim/{}/trades/{out_trade_no}", C::NAME))
            .await
    }

    /// A buyer's move (`scan`, `pay`, `fail`, `abandon`) on the trade of `out_trade_no`.
    /// Whatever it queues (a notification) runs only when time is driven.
    pub async fn buyer_action(&self, out_trade_no: &str, action: &str) -> anyhow::Result<Reply> {
        self.control_post(
            &format!("/_paysim/{}/trades/{out_trade_no}/actions", C::NAME),
            &json!({ "action": action }),
        )
        .await
    }

    /// Arms a protocol fault: `target` is an API of the channel, `notify`, `refund` or `*`.
    pub async fn arm_fault(
        &self,
        target: &str,
        fault: &str,
        times: u32,
        params: Value,
    ) -> anyhow::Result<Reply> {
        self.control_post(
            &format!("/_paysim/{}/faults", C::NAME),
            &json!({ "target": target, "fault": fault, "times": times, "params": params }),
        )
        .await
    }
}

async fn send(router: &Router, request: Request<Body>) -> anyhow::Result<Reply> {
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
