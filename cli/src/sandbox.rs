//! `paysim up`: wires the store, clock, entropy, scheduler and transport into the gateway and
//! the mock channels, serves both, drives the scheduler on the system clock, writes `sandbox.json`, and shuts down
//! gracefully on Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use determinism::{Clock, Entropy, OsEntropy, ReqwestTransport, Scheduler, SystemClock, Transport};
use gateway_core::channel::Adapters;
use gateway_core::channels::alipay::{AlipayAdapter, AlipayCertificates, AlipayConfig};
use gateway_core::channels::wechatpay::{WechatpayAdapter, WechatpayConfig};
use gateway_core::store::Store;
use gateway_core::{Gateway, GatewayParts};
use serde_json::json;
use simulator::alipay::{AlipayApp, AlipayMockCertificates, AlipayMockConfig};
use simulator::wechatpay::{WechatpayMerchant, WechatpayMockConfig, WechatpaySigningMode};
use simulator::{Simulator, SimulatorParts};
use tokio::sync::watch;

use crate::config::Config;

pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Logs go to stderr so stdout carries only machine-readable output (sandbox.json).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(true)
        .init();
}

/// Hides a password in a database URL before it is printed.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The WeChat Pay merchant the sandbox registers.
struct WechatpaySetup {
    mchid: String,
    appid: String,
    signing_mode: String,
    credentials: crate::keys::WechatpayCredentials,
    public_key_id: String,
}

/// The Alipay merchant the sandbox registers: ids and key files.
struct AlipaySetup {
    app_id: String,
    seller_id: String,
    app: crate::keys::KeyFiles,
    platform: crate::keys::KeyFiles,
    /// Always issued, so a client can switch modes; used when `certificate_mode`.
    certs: crate::keys::AlipayCertFiles,
    certificate_mode: bool,
}

async fn bind(address: &str, what: &str) -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} ({what})"))?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    Ok((listener, format!("http://{local}")))
}

pub async fn up(mut config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    for source in &config.sources {
        tracing::info!(%source, "configuration source");
    }
    let alipay = match &config.alipay {
        Some(alipay) => {
            let dir = config.data_dir.join("keys").join("alipay");
            let app = crate::keys::ensure_rsa_key_pair(&dir, "app")?;
            let platform = crate::keys::ensure_rsa_key_pair(&dir, "alipay")?;
            let certs =
                crate::keys::ensure_alipay_certificates(&dir, &alipay.app_id, &app, &platform)?;
            Some(AlipaySetup {
                app_id: alipay.app_id.clone(),
                seller_id: alipay.seller_id.clone(),
                app,
                platform,
                certs,
                certificate_mode: alipay.certificate_mode,
            })
        }
        None => None,
    };

    let os_entropy = OsEntropy;
    let wechatpay = match &config.wechatpay {
        Some(w) => {
            let dir = config.data_dir.join("keys").join("wechatpay");
            Some(WechatpaySetup {
                mchid: w.mchid.clone(),
                appid: w.appid.clone(),
                signing_mode: w.signing_mode.clone(),
                credentials: crate::keys::ensure_wechatpay_credentials(&dir, &os_entropy)?,
                // `PUB_KEY_ID_` + digits, as WeChat Pay names its public keys.
                public_key_id: format!("PUB_KEY_ID_01{}000000000000000001", w.mchid),
            })
        }
        None => None,
    };

    // Bind first: with port 0 the real addresses are known only now, and they go into the
    // URLs the gateway and the mock channels hand out.
    let (gateway_listener, gateway_base) = bind(&config.listen, "gateway").await?;
    let (simulator_listener, simulator_base) =
        bind(&config.simulator_listen, "mock channels").await?;
    if !config.gateway_public_base_url_configured {
        config.gateway.public_base_url = gateway_base.clone();
    }
    let simulator_public = config
        .simulator_public_base_url
        .clone()
        .unwrap_or_else(|| simulator_base.clone());

    let store = Store::open(&config.database_url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact(&config.database_url)))?;
    let clock: Arc<dyn Clock> = if config.clock_scale > 1 {
        Arc::new(SystemClock::accelerated(config.clock_scale))
    } else {
        Arc::new(SystemClock)
    };
    let scheduler = Scheduler::new(Arc::clone(&clock));
    let entropy: Arc<dyn Entropy> = Arc::new(OsEntropy);
    let transport: Arc<dyn Transport> =
        Arc::new(ReqwestTransport::new().context("cannot build the HTTP client")?);

    let simulator = Simulator::new(SimulatorParts {
        clock: Arc::clone(&clock),
        scheduler: scheduler.clone(),
        entropy: Arc::clone(&entropy),
        transport: Arc::clone(&transport),
        public_base_url: simulator_public.clone(),
        wechatpay: wechatpay.as_ref().map(|w| WechatpayMockConfig {
            merchants: vec![WechatpayMerchant {
                mchid: w.mchid.clone(),
                appid: w.appid.clone(),
                serial_no: w.credentials.merchant_serial_no.clone(),
                public_key_pem: w.credentials.merchant.public_pem.clone(),
                apiv3_key: w.credentials.apiv3_key.clone(),
            }],
            platform_private_key_pem: w.credentials.platform.private_pkcs8_pem.clone(),
            public_key_id: w.public_key_id.clone(),
            signing_mode: match w.signing_mode.as_str() {
                "platform_certificate" => WechatpaySigningMode::PlatformCertificate,
                "switching" => WechatpaySigningMode::Switching,
                _ => WechatpaySigningMode::PublicKey,
            },
        }),
        alipay: alipay.as_ref().map(|a| AlipayMockConfig {
            alipay_private_key_pem: a.platform.private_pkcs8_pem.clone(),
            apps: vec![AlipayApp {
                app_id: a.app_id.clone(),
                app_public_key_pem: a.app.public_pem.clone(),
                app_cert_pem: a.certificate_mode.then(|| a.certs.app_pem.clone()),
            }],
            seller_id: a.seller_id.clone(),
            certificates: a.certificate_mode.then(|| AlipayMockCertificates {
                alipay_cert_pem: a.certs.alipay_pem.clone(),
                alipay_root_cert_pem: a.certs.root_pem.clone(),
            }),
        }),
    })
    .context("cannot start the mock channels")?;

    let mut adapters = Adapters::new();
    if let Some(a) = &alipay {
        let adapter = AlipayAdapter::new(AlipayConfig {
            app_id: a.app_id.clone(),
            app_private_key_pem: a.app.private_pkcs8_pem.clone(),
            alipay_public_key_pem: a.platform.public_pem.clone(),
            gateway_url: format!("{simulator_public}/alipay/gateway.do"),
            seller_id: Some(a.seller_id.clone()),
            certificates: a.certificate_mode.then(|| AlipayCertificates {
                app_cert_pem: a.certs.app_pem.clone(),
                alipay_cert_pem: a.certs.alipay_pem.clone(),
                alipay_root_cert_pem: a.certs.root_pem.clone(),
            }),
        })
        .map_err(|e| anyhow::anyhow!("cannot configure the Alipay adapter: {e}"))?;
        adapters = adapters.with(Arc::new(adapter));
    }
    if let Some(w) = &wechatpay {
        let adapter = WechatpayAdapter::new(WechatpayConfig {
            mchid: w.mchid.clone(),
            appid: w.appid.clone(),
            merchant_serial_no: w.credentials.merchant_serial_no.clone(),
            merchant_private_key_pem: w.credentials.merchant.private_pkcs8_pem.clone(),
            apiv3_key: w.credentials.apiv3_key.clone(),
            // In platform-certificate mode the adapter learns the certificates from the channel
            // (GET /v3/certificates), as a merchant without the public key would.
            platform_public_key_pem: if w.signing_mode == "platform_certificate" {
                String::new()
            } else {
                w.credentials.platform.public_pem.clone()
            },
            platform_public_key_id: if w.signing_mode == "platform_certificate" {
                String::new()
            } else {
                w.public_key_id.clone()
            },
            base_url: simulator_public.clone(),
        })
        .map_err(|e| anyhow::anyhow!("cannot configure the WeChat Pay adapter: {e}"))?;
        adapters = adapters.with(Arc::new(adapter));
    }
    let gateway = Gateway::new(GatewayParts {
        store,
        clock,
        entropy,
        adapters,
        transport,
        scheduler: scheduler.clone(),
        config: config.gateway.clone(),
    })
    .await
    .context("cannot start the gateway")?;
    let (orders, refunds) = gateway_core::jobs::recover(&gateway)
        .await
        .context("cannot recover scheduled follow-ups")?;
    tracing::info!(orders, refunds, "follow-ups recovered");

    let description = sandbox_description(
        &config,
        &gateway_base,
        &simulator_public,
        alipay.as_ref(),
        wechatpay.as_ref(),
        &gateway,
    );
    let path = config.data_dir.join("sandbox.json");
    let text = serde_json::to_string_pretty(&description)?;
    std::fs::write(&path, format!("{text}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("{text}");
    tracing::info!(gateway = %gateway_base, simulator = %simulator_base, sandbox = %path.display(), "paysim sandbox is up");

    let (stop_tx, stop_rx) = watch::channel(false);
    #[allow(
        clippy::disallowed_methods,
        reason = "the sandbox's scheduler driver is the one long-lived task that runs scheduled business work"
    )]
    let driver = tokio::spawn(determinism::drive_on_system_clock(
        scheduler,
        wait_for(stop_rx.clone()),
    ));

    let gateway_server = axum::serve(gateway_listener, gateway_core::app(gateway))
        .with_graceful_shutdown(wait_for(stop_rx.clone()));
    let simulator_server = axum::serve(simulator_listener, simulator::app(simulator))
        .with_graceful_shutdown(wait_for(stop_rx.clone()));
    let servers = async move {
        let (gateway, simulator) = tokio::join!(gateway_server, simulator_server);
        gateway.context("gateway server error")?;
        simulator.context("mock channel server error")?;
        anyhow::Ok(())
    };
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let mut server_stop = stop_rx.clone();
    let signal = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
        std::future::pending::<()>().await;
    };
    tokio::select! {
        result = servers => result?,
        () = signal => {},
        () = async move {
            let _ = server_stop.wait_for(|stopped| *stopped).await;
            // After the signal, in-flight requests get `grace` to finish.
            #[allow(clippy::disallowed_methods, reason = "a wall-clock grace period on shutdown, not business time")]
            tokio::time::sleep(grace).await;
        } => tracing::warn!("grace period over; stopping with requests in flight"),
    }
    let _ = driver.await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// The machine-readable description of the sandbox (documented in the README): every endpoint
/// it serves and every credential a client needs.
fn sandbox_description(
    config: &Config,
    base: &str,
    simulator: &str,
    alipay: Option<&AlipaySetup>,
    wechatpay: Option<&WechatpaySetup>,
    gateway: &Gateway,
) -> serde_json::Value {
    let mut channels = serde_json::Map::new();
    if let Some(w) = wechatpay {
        channels.insert(
            "wechatpay".to_owned(),
            json!({
                "configured": true,
                "base_url": simulator,
                "mchid": w.mchid,
                "appid": w.appid,
                "merchant_serial_no": w.credentials.merchant_serial_no,
                "merchant_private_key_file": w.credentials.merchant.private_pkcs8.display().to_string(),
                "merchant_public_key_file": w.credentials.merchant.public.display().to_string(),
                "platform_public_key_file": w.credentials.platform.public.display().to_string(),
                "platform_public_key_id": w.public_key_id,
                "signing_mode": w.signing_mode,
                "certificates_url": format!("{simulator}/v3/certificates"),
                "apiv3_key_file": w.credentials.apiv3_key_file.display().to_string(),
                "notify_url": format!("{}/notify/wechatpay", config.gateway.public_base_url),
                "control_url": format!("{simulator}/_paysim/wechatpay"),
            }),
        );
    }
    if let Some(a) = alipay {
        channels.insert(
            "alipay".to_owned(),
            json!({
                "configured": true,
                "gateway_url": format!("{simulator}/alipay/gateway.do"),
                "app_id": a.app_id,
                "seller_id": a.seller_id,
                "sign_type": "RSA2",
                "app_private_key_pkcs8_file": a.app.private_pkcs8.display().to_string(),
                "app_private_key_pkcs1_file": a.app.private_pkcs1.display().to_string(),
                "app_public_key_file": a.app.public.display().to_string(),
                "alipay_public_key_file": a.platform.public.display().to_string(),
                "mode": if a.certificate_mode { "certificate" } else { "public_key" },
                "app_cert_file": a.certs.app.display().to_string(),
                "alipay_cert_file": a.certs.alipay.display().to_string(),
                "alipay_root_cert_file": a.certs.root.display().to_string(),
                "notify_url": format!("{}/notify/alipay", config.gateway.public_base_url),
                "control_url": format!("{simulator}/_paysim/alipay"),
            }),
        );
    }
    json!({
        "paysim_version": env!("CARGO_PKG_VERSION"),
        "format": 1,
        "gateway": {
            "base_url": base,
            "public_base_url": config.gateway.public_base_url,
            "health_url": format!("{base}/healthz"),
            "openapi_url": format!("{base}/openapi.json"),
            "endpoints": {
                "create_order": format!("POST {base}/v1/orders"),
                "get_order": format!("GET {base}/v1/orders/{{id}}"),
                "close_order": format!("POST {base}/v1/orders/{{id}}/close"),
                "create_refund": format!("POST {base}/v1/orders/{{id}}/refunds"),
                "get_refund": format!("GET {base}/v1/refunds/{{id}}"),
                "ledger_accounts": format!("GET {base}/v1/ledger/accounts"),
                "ledger_verify": format!("GET {base}/v1/ledger/verify"),
                "notify": format!("POST {base}/notify/{{channel}}"),
            },
            "authentication": "none yet: requests name their merchant with merchant_id",
        },
        "simulator": {
            "base_url": simulator,
            "control_url": format!("{simulator}/_paysim"),
            "fault_catalogue_url": format!("{simulator}/_paysim/faults/catalogue"),
        },
        "merchants": [{ "id": gateway_core::ids::sandbox_merchant().to_string(), "name": "Sandbox merchant" }],
        "channels": channels,
        "store": { "backend": gateway.store().backend().to_string(), "url": redact(&config.database_url) },
        "data_dir": config.data_dir.display().to_string(),
        "clock": { "scale": config.clock_scale },
    })
}

/// `paysim ledger verify`.
pub async fn verify(url: &str, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if !std::path::Path::new(path).exists() {
            anyhow::bail!("no store at {path}: start the sandbox first or pass --database-url");
        }
    }
    let store = Store::open(url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact(url)))?;
    let snapshot = store
        .ledger_snapshot()
        .await
        .context("cannot read the ledger")?;
    let report = gateway_core::ledger::verify(&snapshot);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "checked {} over {} entries, {} orders, {} refunds",
            report
                .checked
                .iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(" "),
            report.entries,
            report.orders,
            report.refunds
        );
        match &report.first_violation {
            None => println!("ok: every invariant holds"),
            Some(first) => {
                println!("VIOLATED: {first}");
                for other in report.violations.iter().skip(1) {
                    println!("  also: {other}");
                }
            }
        }
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("sqlite://.paysim/paysim.db"),
            "sqlite://.paysim/paysim.db"
        );
    }
}
