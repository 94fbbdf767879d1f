//! `paysim bench alipay`: the channel's performance figures, measured on this machine in one run.
//!
//! 1. RSA-2048 signatures per second on one core through the gateway adapter's signing path
//!    (aws-lc-rs), next to `openssl speed rsa2048` run in the same process tree.
//! 2. A load tool replaying one valid signed `alipay.trade.query` against the mock Alipay
//!    gateway on loopback (the load tool shares this machine's cores with the server).
//! 3. Full round trips from a Rust client that signs each request and verifies each response
//!    (the gateway's own Alipay adapter).
//!
//! Benchmarks measure wall time, so this file reads the real clock; nothing here is business
//! logic. Run it in release mode: `cargo run --release -p paysim -- bench alipay`.

#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time and runs its server and load tasks with tokio::spawn"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use determinism::{HttpResponse, OsEntropy, Scheduler, SystemClock, Transport};
use gateway_core::channel::{AdapterContext, ChannelAdapter, CreatePlan, PaymentStatus};
use gateway_core::channels::alipay::{AlipayAdapter, AlipayConfig};
use gateway_core::ids::{sandbox_merchant, OrderId};
use gateway_core::model::{MethodParams, Order};
use gateway_core::money::{Currency, Money};
use gateway_core::state::{Channel, OrderState, PaymentMethod};
use simulator::alipay::{AlipayApp, AlipayMockConfig};
use simulator::{Simulator, SimulatorParts};

const APP_ID: &str = "2021000000000001";
const SELLER_ID: &str = "2088102119685838";

pub async fn alipay(seconds: u64, concurrency: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("paysim-bench-{}", std::process::id()));
    let app = crate::keys::ensure_rsa_key_pair(&dir, "app")?;
    let platform = crate::keys::ensure_rsa_key_pair(&dir, "alipay")?;
    let duration = Duration::from_secs(seconds.max(1));

    // The mock gateway on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let clock = Arc::new(SystemClock);
    let transport: Arc<dyn Transport> = Arc::new(determinism::ReqwestTransport::new()?);
    let simulator = Simulator::new(SimulatorParts {
        clock: clock.clone(),
        scheduler: Scheduler::new(clock.clone()),
        entropy: Arc::new(OsEntropy),
        transport: Arc::clone(&transport),
        public_base_url: base.clone(),
        wechatpay: None,
        alipay: Some(AlipayMockConfig {
            alipay_private_key_pem: platform.private_pkcs8_pem.clone(),
            apps: vec![AlipayApp {
                app_id: APP_ID.to_owned(),
                app_public_key_pem: app.public_pem.clone(),
                app_cert_pem: None,
            }],
            seller_id: SELLER_ID.to_owned(),
            certificates: None,
        }),
    })?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, simulator::app(simulator)).await {
            eprintln!("bench server stopped: {error}");
        }
    });

    let adapter = Arc::new(
        AlipayAdapter::new(AlipayConfig {
            app_id: APP_ID.to_owned(),
            app_private_key_pem: app.private_pkcs8_pem.clone(),
            alipay_public_key_pem: platform.public_pem.clone(),
            gateway_url: format!("{base}/alipay/gateway.do"),
            seller_id: Some(SELLER_ID.to_owned()),
            certificates: None,
        })
        .map_err(|e| anyhow::anyhow!("adapter: {e}"))?,
    );
    let now = determinism::Clock::now_ms(&SystemClock);
    let order = bench_order(now)?;
    let context = || AdapterContext {
        now_ms: now,
        nonce: "bench".to_owned(),
        notify_url: format!("{base}/nowhere"),
    };

    // 1. Signatures per second on one core.
    let signatures = 2_000u32;
    let started = Instant::now();
    for _ in 0..signatures {
        adapter
            .build_query(&order, &context())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let ours = f64::from(signatures) / started.elapsed().as_secs_f64();
    let openssl = openssl_sign_rate().unwrap_or(0.0);
    println!("RSA-2048 sign, one core: paysim (aws-lc-rs, adapter path incl. request assembly) {ours:.0}/s");
    if openssl > 0.0 {
        println!(
            "RSA-2048 sign, one core: openssl speed rsa2048 {openssl:.0}/s  → ratio {:.2}",
            ours / openssl
        );
    } else {
        println!("RSA-2048 sign, one core: openssl speed unavailable (openssl CLI not found)");
    }

    // A paid trade to query: precreate, then the buyer pays through the control plane.
    let CreatePlan::Call(request) = adapter
        .plan_create(&order, &context())
        .map_err(|e| anyhow::anyhow!("{e}"))?
    else {
        bail!("precreate should be a call");
    };
    let response = transport
        .send(request, 5_000)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    adapter
        .parse_create(&order, response)
        .map_err(|e| anyhow::anyhow!("precreate: {e}"))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let paid = client
        .post(format!("{base}/_paysim/alipay/trades/{}/actions", order.id))
        .json(&serde_json::json!({ "action": "pay" }))
        .send()
        .await?;
    if !paid.status().is_success() {
        bail!("control plane pay failed: {}", paid.text().await?);
    }

    // 2. Replaying one valid signed query.
    let query = adapter
        .build_query(&order, &context())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (parts, body) = query.into_parts();
    let url = parts.uri.to_string();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded;charset=utf-8")
        .to_owned();
    let replay = run_load(concurrency, duration, {
        let client = client.clone();
        move || {
            let (client, url, content_type, body) = (
                client.clone(),
                url.clone(),
                content_type.clone(),
                body.clone(),
            );
            async move {
                let response = client
                    .post(&url)
                    .header("content-type", &content_type)
                    .body(body)
                    .send()
                    .await?;
                let ok = response.status().is_success();
                let text = response.bytes().await?;
                anyhow::ensure!(
                    ok && text.windows(5).any(|w| w == b"10000"),
                    "unexpected answer"
                );
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "replayed signed alipay.trade.query, {concurrency} connections, {seconds}s: {:.0} req/s ({} requests, {} errors)",
        replay.rate, replay.ok, replay.errors
    );

    // 3. Full round trips: sign, send, verify, parse.
    let round = run_load(concurrency, duration, {
        let (adapter, transport, order, base) = (
            adapter.clone(),
            transport.clone(),
            order.clone(),
            base.clone(),
        );
        move || {
            let (adapter, transport, order, base) = (
                adapter.clone(),
                transport.clone(),
                order.clone(),
                base.clone(),
            );
            async move {
                let context = AdapterContext {
                    now_ms: order.created_at_ms,
                    nonce: "bench".to_owned(),
                    notify_url: format!("{base}/nowhere"),
                };
                let request = adapter
                    .build_query(&order, &context)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let response: HttpResponse = transport
                    .send(request, 5_000)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                match adapter
                    .parse_query(&order, response)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                {
                    PaymentStatus::Paid { .. } => Ok(()),
                    other => bail!("unexpected status {other:?}"),
                }
            }
        }
    })
    .await?;
    println!(
        "full round trips (client signs + verifies, server verifies + signs), {concurrency} tasks, {seconds}s: {:.0}/s ({} ok, {} errors)",
        round.rate, round.ok, round.errors
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

fn bench_order(now: i64) -> anyhow::Result<Order> {
    Ok(Order {
        id: OrderId::parse("ord_bench000000000000000001")?,
        merchant_id: sandbox_merchant(),
        channel: Channel::Alipay,
        method: PaymentMethod::Qr,
        method_params: MethodParams::default(),
        amount: Money::from_minor(8888, Currency::Cny),
        subject: "bench".to_owned(),
        state: OrderState::Paying,
        refunded_minor: 0,
        refund_reserved_minor: 0,
        fee_minor: 0,
        channel_trade_no: None,
        buyer_action: None,
        expires_at_ms: now + 3_600_000,
        created_at_ms: now,
        updated_at_ms: now,
        paid_at_ms: None,
        version: 1,
    })
}

struct LoadResult {
    rate: f64,
    ok: u64,
    errors: u64,
}

async fn run_load<F, Fut>(
    concurrency: usize,
    duration: Duration,
    work: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let work = Arc::new(work);
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (work, ok, errors) = (work.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match work().await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for task in tasks {
        task.await.context("load task panicked")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    Ok(LoadResult {
        rate: ok as f64 / elapsed,
        ok,
        errors: errors.load(Ordering::Relaxed),
    })
}

/// `openssl speed -seconds 3 rsa2048`, single process: the sign/s column.
fn openssl_sign_rate() -> Option<f64> {
    let output = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa2048"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa 2048 bits"))?;
    // "rsa 2048 bits 0.000264s 0.000018s   3791.3  57072.4"
    line.split_whitespace().nth(5)?.parse().ok()
}
