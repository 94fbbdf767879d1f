//! `paysim bench alipay` / `paysim bench wechatpay`: each channel's performance figures, measured
//! on this machine in one run. (WeChat Pay: notification encrypt + sign per second on one core,
//! a replayed signed query, full round trips — the same shape as Alipay below.)
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
    let (order, _) = paid_order(adapter.as_ref(), &transport, &base, Channel::Alipay).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;

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
    let round = round_trips(adapter, transport, order, context(), concurrency, duration).await?;
    println!(
        "full round trips (client signs + verifies, server verifies + signs), {concurrency} tasks, {seconds}s: {:.0}/s ({} ok, {} errors)",
        round.rate, round.ok, round.errors
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// `paysim bench wechatpay`.
pub async fn wechatpay(seconds: u64, concurrency: usize) -> anyhow::Result<()> {
    use gateway_core::channels::wechatpay::{WechatpayAdapter, WechatpayConfig};
    use simulator::wechatpay::{response_message, seal, WechatpayMerchant, WechatpayMockConfig};

    let dir = std::env::temp_dir().join(format!("paysim-bench-wx-{}", std::process::id()));
    let credentials = crate::keys::ensure_wechatpay_credentials(&dir, &OsEntropy)?;
    let public_key_id = "PUB_KEY_ID_011900000001000000000000000001".to_owned();
    let (mchid, appid) = ("1900000001".to_owned(), "wx8888888888888888".to_owned());
    let duration = Duration::from_secs(seconds.max(1));

    // 1. Notification encrypt (AES-256-GCM) + sign (RSA-2048) per second on one core.
    let signer = simulator::alipay::SigningKey::parse(
        &credentials.platform.private_pkcs8_pem,
        "platform key",
    )?;
    let plaintext = serde_json::json!({
        "mchid": mchid, "appid": appid, "out_trade_no": "ord_bench000000000000000001",
        "transaction_id": "4200000000202611250000000001", "trade_type": "NATIVE", "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功", "bank_type": "OTHERS", "success_time": "2026-11-25T18:00:00+08:00",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, "amount": {"total": 8888, "payer_total": 8888, "currency": "CNY", "payer_currency": "CNY"}
    })
    .to_string();
    let rounds = 2_000u32;
    let started = Instant::now();
    for i in 0..rounds {
        let nonce = format!("{i:012}");
        let sealed = seal(
            credentials.apiv3_key.as_bytes(),
            &nonce,
            "transaction",
            plaintext.as_bytes(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let body = serde_json::json!({
            "id": format!("evt_{i}"), "create_time": "2026-11-25T18:00:01+08:00", "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                          "ciphertext": sealed.ciphertext, "associated_data": "transaction", "nonce": nonce}
        })
        .to_string();
        let _signature =
            signer.sign_base64(&response_message("1795600000", &nonce, body.as_bytes()));
    }
    let rate = f64::from(rounds) / started.elapsed().as_secs_f64();
    println!("notification encrypt (AES-256-GCM) + sign (RSA-2048), one core: {rate:.0}/s");

    // The mock on loopback and the gateway's adapter.
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
        alipay: None,
        wechatpay: Some(WechatpayMockConfig {
            merchants: vec![WechatpayMerchant {
                mchid: mchid.clone(),
                appid: appid.clone(),
                serial_no: credentials.merchant_serial_no.clone(),
                public_key_pem: credentials.merchant.public_pem.clone(),
                apiv3_key: credentials.apiv3_key.clone(),
            }],
            platform_private_key_pem: credentials.platform.private_pkcs8_pem.clone(),
            public_key_id: public_key_id.clone(),
            signing_mode: simulator::wechatpay::WechatpaySigningMode::PublicKey,
        }),
    })?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, simulator::app(simulator)).await {
            eprintln!("bench server stopped: {error}");
        }
    });
    let adapter = Arc::new(
        WechatpayAdapter::new(WechatpayConfig {
            mchid,
            appid,
            merchant_serial_no: credentials.merchant_serial_no.clone(),
            merchant_private_key_pem: credentials.merchant.private_pkcs8_pem.clone(),
            apiv3_key: credentials.apiv3_key.clone(),
            platform_public_key_pem: credentials.platform.public_pem.clone(),
            platform_public_key_id: public_key_id,
            base_url: base.clone(),
        })
        .map_err(|e| anyhow::anyhow!("adapter: {e}"))?,
    );
    let (order, context) =
        paid_order(adapter.as_ref(), &transport, &base, Channel::Wechatpay).await?;

    // 2. Replaying one valid signed query.
    let query = adapter
        .build_query(&order, &context)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (parts, _) = query.into_parts();
    let url = parts.uri.to_string();
    let headers = parts.headers;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let replay = run_load(concurrency, duration, {
        move || {
            let (client, url, headers) = (client.clone(), url.clone(), headers.clone());
            async move {
                let mut request = client.get(&url);
                for (name, value) in &headers {
                    request = request.header(name.as_str(), value.as_bytes());
                }
                let response = request.send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                let text = response.bytes().await?;
                anyhow::ensure!(
                    text.windows(7).any(|w| w == b"SUCCESS"),
                    "unexpected answer"
                );
                Ok(())
            }
        }
    })
    .await?;
    println!(
        "replayed signed WeChat Pay query, {concurrency} connections, {seconds}s: {:.0} req/s ({} requests, {} errors)",
        replay.rate, replay.ok, replay.errors
    );

    // 3. Full round trips through the adapter.
    let round = round_trips(adapter, transport, order, context, concurrency, duration).await?;
    println!(
        "full round trips (client signs + verifies, server verifies + signs), {concurrency} tasks, {seconds}s: {:.0}/s ({} ok, {} errors)",
        round.rate, round.ok, round.errors
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Creates a QR order at the mock through `adapter` and has the buyer pay it.
async fn paid_order(
    adapter: &dyn ChannelAdapter,
    transport: &Arc<dyn Transport>,
    base: &str,
    channel: Channel,
) -> anyhow::Result<(Order, AdapterContext)> {
    let now = determinism::Clock::now_ms(&SystemClock);
    let mut order = bench_order(now)?;
    order.channel = channel;
    let context = AdapterContext {
        now_ms: now,
        nonce: "benchnonce0000000000000000000000".to_owned(),
        notify_url: format!("{base}/nowhere"),
    };
    let CreatePlan::Call(request) = adapter
        .plan_create(&order, &context)
        .map_err(|e| anyhow::anyhow!("{e}"))?
    else {
        bail!("a QR order should be created by a call");
    };
    let response = transport
        .send(request, 5_000)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    adapter
        .parse_create(&order, response)
        .map_err(|e| anyhow::anyhow!("create: {e}"))?;
    let paid = reqwest::Client::new()
        .post(format!(
            "{base}/_paysim/{}/trades/{}/actions",
            channel.as_str(),
            order.id
        ))
        .json(&serde_json::json!({ "action": "pay" }))
        .send()
        .await?;
    if !paid.status().is_success() {
        bail!("control plane pay failed: {}", paid.text().await?);
    }
    Ok((order, context))
}

/// Full round trips: the adapter signs a query, the mock verifies and signs its answer, the
/// adapter verifies and parses it.
async fn round_trips(
    adapter: Arc<dyn ChannelAdapter>,
    transport: Arc<dyn Transport>,
    order: Order,
    context: AdapterContext,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    run_load(concurrency, duration, move || {
        let (adapter, transport, order, context) = (
            adapter.clone(),
            transport.clone(),
            order.clone(),
            context.clone(),
        );
        async move {
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
    })
    .await
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
