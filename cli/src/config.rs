//! The sandbox configuration: a TOML file, then `PAYSIM__SECTION__KEY=value` environment
//! overrides, then command-line flags; parsed and validated once at start-up with messages
//! that name the offending key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use gateway_core::service::LatePaymentPolicy;
use gateway_core::state::Channel;
use gateway_core::GatewayConfig;
use serde::Deserialize;

/// The file's shape. Every key is optional; unknown keys are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub gateway: GatewaySection,
    /// Channel fee charged to the merchant, basis points per channel (`alipay = 60`).
    #[serde(default)]
    pub fees: BTreeMap<String, u32>,
    #[serde(default)]
    pub simulator: SimulatorSection,
    #[serde(default)]
    pub alipay: AlipaySection,
    #[serde(default)]
    pub wechatpay: WechatpaySection,
    #[serde(default)]
    pub clock: ClockSection,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// The URL channels use to reach the gateway (notifications). Defaults to the listen address.
    pub public_base_url: Option<String>,
    pub default_expiry_seconds: Option<i64>,
    pub channel_timeout_ms: Option<u64>,
    pub poll_schedule_seconds: Option<Vec<i64>>,
    /// What happens to a payment made after its order was closed: `hold` (default: the money
    /// stays in suspense for review, with an alert) or `refund` (the buyer is refunded
    /// automatically).
    pub late_payment_policy: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSection {
    /// Where the mock channels listen.
    pub listen: Option<String>,
    /// The URL buyers and the gateway use to reach the mock channels. Defaults to the listen address.
    pub public_base_url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlipaySection {
    /// Serve the mock Alipay gateway and configure the gateway's Alipay adapter (default true).
    pub enabled: Option<bool>,
    pub app_id: Option<String>,
    /// The mock merchant's Alipay partner id (`2088` + 12 digits).
    pub seller_id: Option<String>,
    /// `public_key` (default) or `certificate` (public-key-certificate mode: requests carry
    /// `app_cert_sn` / `alipay_root_cert_sn`, responses `alipay_cert_sn`).
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatpaySection {
    /// Serve the mock WeChat Pay APIv3 server and configure the gateway's adapter (default true).
    pub enabled: Option<bool>,
    pub mchid: Option<String>,
    pub appid: Option<String>,
    /// `public_key` (default: answers signed under the WeChat Pay public key `PUB_KEY_ID_…`),
    /// `platform_certificate` (clients download `GET /v3/certificates`) or `switching` (the
    /// request's `Wechatpay-Serial` picks the key).
    pub signing_mode: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSection {
    /// Business time runs this many times faster than the wall clock (1 = real time).
    pub scale: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter such as `info` or `gateway_core=debug,info`; `RUST_LOG` wins.
    pub filter: Option<String>,
}

/// Flags given on the command line; they win over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub simulator_listen: Option<String>,
}

/// The mock Alipay merchant the sandbox registers.
#[derive(Debug, Clone)]
pub struct AlipaySandbox {
    pub app_id: String,
    pub seller_id: String,
    pub certificate_mode: bool,
}

/// The mock WeChat Pay merchant the sandbox registers.
#[derive(Debug, Clone)]
pub struct WechatpaySandbox {
    pub mchid: String,
    pub appid: String,
    /// `public_key`, `platform_certificate` or `switching` (validated).
    pub signing_mode: String,
}

/// The validated configuration the sandbox runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub shutdown_grace_seconds: u64,
    pub clock_scale: u32,
    pub log_filter: String,
    pub gateway: GatewayConfig,
    /// Whether `gateway.public_base_url` was given; otherwise it follows the bound address.
    pub gateway_public_base_url_configured: bool,
    pub simulator_listen: String,
    pub simulator_public_base_url: Option<String>,
    /// `None` when `[alipay] enabled = false`.
    pub alipay: Option<AlipaySandbox>,
    /// `None` when `[wechatpay] enabled = false`.
    pub wechatpay: Option<WechatpaySandbox>,
    /// Where the configuration came from, for the start-up log.
    pub sources: Vec<String>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_SIMULATOR_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_DATA_DIR: &str = ".paysim";
const ENV_PREFIX: &str = "PAYSIM__";

/// Reads `path` (when given, it must exist; otherwise `<data-dir>/paysim.toml` is read if
/// present), applies environment overrides from `env`, then the flags, and validates.
pub fn load(
    path: Option<&Path>,
    env: &[(String, String)],
    flags: &Overrides,
) -> anyhow::Result<Config> {
    let mut sources = Vec::new();
    let default_dir = flags
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let (text, origin) = match path {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
            Some(path.to_path_buf()),
        ),
        None => {
            let candidate = default_dir.join("paysim.toml");
            match std::fs::read_to_string(&candidate) {
                Ok(text) => (text, Some(candidate)),
                Err(_) => (String::new(), None),
            }
        }
    };
    let mut table: toml::Table = text.parse().with_context(|| {
        format!(
            "config file {} is not valid TOML",
            origin
                .as_deref()
                .map_or("".into(), |p| p.display().to_string())
        )
    })?;
    if let Some(origin) = &origin {
        sources.push(format!("file {}", origin.display()));
    }
    for (name, value) in env {
        let Some(path) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut table, &keys, parse_env_value(value))
            .with_context(|| format!("environment variable {name}"))?;
        sources.push(format!("env {name}"));
    }
    let file: FileConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid configuration: {}", e.message()))?;
    validate(file, flags, sources)
}

fn parse_env_value(text: &str) -> toml::Value {
    // `60`, `true`, `[5, 15]` keep their TOML types; anything else is a string.
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> anyhow::Result<()> {
    match keys {
        [] => bail!("empty key"),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => bail!("{first} is not a section"),
            }
        }
    }
}

fn validate(file: FileConfig, flags: &Overrides, sources: Vec<String>) -> anyhow::Result<Config> {
    let listen = flags
        .listen
        .clone()
        .or(file.server.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let socket: std::net::SocketAddr = listen.parse().with_context(|| {
        format!("server.listen {listen:?} is not an address such as 127.0.0.1:8080")
    })?;
    let data_dir = flags
        .data_dir
        .clone()
        .or(file.server.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let database_url = flags
        .database_url
        .clone()
        .or(file.server.database_url)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("paysim.db").display()));
    if !(database_url.starts_with("sqlite://")
        || database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://"))
    {
        bail!("server.database_url {database_url:?} must start with sqlite://, postgres:// or postgresql://");
    }
    let shutdown_grace_seconds = file.server.shutdown_grace_seconds.unwrap_or(10);
    if shutdown_grace_seconds > 300 {
        bail!("server.shutdown_grace_seconds must be at most 300");
    }

    let defaults = GatewayConfig::default();
    let host = if socket.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        socket.ip().to_string()
    };
    let gateway_public_base_url_configured = file.gateway.public_base_url.is_some();
    let public_base_url = file
        .gateway
        .public_base_url
        .unwrap_or_else(|| format!("http://{host}:{}", socket.port()));
    let simulator_listen = flags
        .simulator_listen
        .clone()
        .or(file.simulator.listen)
        .unwrap_or_else(|| DEFAULT_SIMULATOR_LISTEN.to_owned());
    let _: std::net::SocketAddr = simulator_listen.parse().with_context(|| {
        format!("simulator.listen {simulator_listen:?} is not an address such as 127.0.0.1:8081")
    })?;
    if let Some(url) = &file.simulator.public_base_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("simulator.public_base_url {url:?} must be an http:// or https:// URL");
        }
    }
    let wechatpay = if file.wechatpay.enabled.unwrap_or(true) {
        let mchid = file
            .wechatpay
            .mchid
            .unwrap_or_else(|| "1900000001".to_owned());
        if !(8..=32).contains(&mchid.len()) || !mchid.bytes().all(|b| b.is_ascii_digit()) {
            bail!("wechatpay.mchid {mchid:?} must be 8 to 32 digits");
        }
        let appid = file
            .wechatpay
            .appid
            .unwrap_or_else(|| "wx8888888888888888".to_owned());
        if appid.is_empty() || appid.len() > 32 || !appid.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            bail!("wechatpay.appid {appid:?} must be 1 to 32 letters or digits");
        }
        let signing_mode = file
            .wechatpay
            .signing_mode
            .unwrap_or_else(|| "public_key".to_owned());
        if !["public_key", "platform_certificate", "switching"].contains(&signing_mode.as_str()) {
            bail!(
                "wechatpay.signing_mode {signing_mode:?} must be \"public_key\", \"platform_certificate\" or \"switching\""
            );
        }
        Some(WechatpaySandbox {
            mchid,
            appid,
            signing_mode,
        })
    } else {
        None
    };
    let alipay = if file.alipay.enabled.unwrap_or(true) {
        let app_id = file
            .alipay
            .app_id
            .unwrap_or_else(|| "2021000000000001".to_owned());
        if app_id.is_empty() || app_id.len() > 32 || !app_id.bytes().all(|b| b.is_ascii_digit()) {
            bail!("alipay.app_id {app_id:?} must be 1 to 32 digits");
        }
        let seller_id = file
            .alipay
            .seller_id
            .unwrap_or_else(|| "2088102119685838".to_owned());
        if seller_id.len() != 16
            || !seller_id.starts_with("2088")
            || !seller_id.bytes().all(|b| b.is_ascii_digit())
        {
            bail!("alipay.seller_id {seller_id:?} must be 2088 followed by 12 digits");
        }
        let certificate_mode = match file.alipay.mode.as_deref() {
            None | Some("public_key") => false,
            Some("certificate") => true,
            Some(other) => bail!("alipay.mode {other:?} must be \"public_key\" or \"certificate\""),
        };
        Some(AlipaySandbox {
            app_id,
            seller_id,
            certificate_mode,
        })
    } else {
        None
    };
    if !(public_base_url.starts_with("http://") || public_base_url.starts_with("https://")) {
        bail!("gateway.public_base_url {public_base_url:?} must be an http:// or https:// URL");
    }
    let default_expiry_seconds = file
        .gateway
        .default_expiry_seconds
        .unwrap_or(defaults.default_expiry_ms / 1000);
    if !(60..=15 * 24 * 3600).contains(&default_expiry_seconds) {
        bail!("gateway.default_expiry_seconds must be between 60 and 1296000 (15 days)");
    }
    let channel_timeout_ms = file
        .gateway
        .channel_timeout_ms
        .unwrap_or(defaults.channel_timeout_ms);
    if !(100..=120_000).contains(&channel_timeout_ms) {
        bail!("gateway.channel_timeout_ms must be between 100 and 120000");
    }
    let poll_schedule_ms = match file.gateway.poll_schedule_seconds {
        None => defaults.poll_schedule_ms,
        Some(seconds) => {
            if seconds.is_empty()
                || seconds.iter().any(|s| *s <= 0)
                || seconds.windows(2).any(|w| matches!(w, [a, b] if a >= b))
            {
                bail!("gateway.poll_schedule_seconds must be a non-empty, strictly increasing list of positive seconds");
            }
            seconds.iter().map(|s| s * 1000).collect()
        }
    };
    let late_payment_policy = match file.gateway.late_payment_policy.as_deref() {
        None => defaults.late_payment_policy,
        Some(text) => LatePaymentPolicy::parse(text).with_context(|| {
            format!("gateway.late_payment_policy {text:?} must be \"hold\" or \"refund\"")
        })?,
    };
    let mut fee_bps = BTreeMap::new();
    for (name, bps) in file.fees {
        let channel = Channel::parse(&name).with_context(|| {
            format!("fees.{name}: unknown channel; expected alipay, wechatpay or unionpay")
        })?;
        if bps > 10_000 {
            bail!("fees.{name} = {bps}: a fee is at most 10000 basis points (100%)");
        }
        fee_bps.insert(channel, bps);
    }
    let clock_scale = file.clock.scale.unwrap_or(1);
    if !(1..=100_000).contains(&clock_scale) {
        bail!("clock.scale must be between 1 and 100000");
    }
    Ok(Config {
        listen,
        data_dir,
        database_url,
        shutdown_grace_seconds,
        clock_scale,
        log_filter: file.log.filter.unwrap_or_else(|| "info".to_owned()),
        gateway: GatewayConfig {
            public_base_url,
            fee_bps,
            default_expiry_ms: default_expiry_seconds * 1000,
            channel_timeout_ms,
            poll_schedule_ms,
            barcode_poll_schedule_ms: defaults.barcode_poll_schedule_ms,
            late_payment_policy,
        },
        gateway_public_base_url_configured,
        simulator_listen,
        simulator_public_base_url: file.simulator.public_base_url,
        alipay,
        wechatpay,
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        // One directory per call: tests run in parallel and remove their directory.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "paysim-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("paysim.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let result = load(Some(&path), &env, &Overrides::default());
        std::fs::remove_dir_all(&dir).ok();
        result
    }

    #[test]
    fn defaults_are_valid() {
        let config = load_text("", &[]).unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN);
        assert_eq!(config.gateway.public_base_url, "http://127.0.0.1:8080");
        assert!(config.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn env_overrides_the_file_with_typed_values() {
        let config = load_text(
            "[fees]\nalipay = 60\n[gateway]\ndefault_expiry_seconds = 600\n",
            &[
                ("PAYSIM__FEES__ALIPAY", "80"),
                ("PAYSIM__GATEWAY__POLL_SCHEDULE_SECONDS", "[1, 2, 3]"),
                ("OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(config.gateway.fee_bps.get(&Channel::Alipay), Some(&80));
        assert_eq!(config.gateway.poll_schedule_ms, vec![1000, 2000, 3000]);
        assert_eq!(config.gateway.default_expiry_ms, 600_000);
    }

    #[test]
    fn errors_name_the_key() {
        let error = |text: &str| format!("{:#}", load_text(text, &[]).unwrap_err());
        assert!(error("[fees]\npaypal = 1\n").contains("fees.paypal"));
        assert!(error("[fees]\nalipay = 20000\n").contains("fees.alipay"));
        assert!(error("[server]\nlisten = \"nowhere\"\n").contains("server.listen"));
        assert!(error("[server]\nbogus = 1\n").contains("bogus"));
        assert!(
            error("[gateway]\npoll_schedule_seconds = [5, 3]\n").contains("poll_schedule_seconds")
        );
        assert!(error("[clock]\nscale = 0\n").contains("clock.scale"));
        assert!(error("[gateway]\nlate_payment_policy = \"later\"\n")
            .contains("gateway.late_payment_policy"));
        assert!(error("not toml =").contains("not valid TOML"));
    }

    #[test]
    fn late_payment_policy_defaults_to_hold_and_accepts_refund() {
        assert_eq!(
            load_text("", &[]).unwrap().gateway.late_payment_policy,
            LatePaymentPolicy::Hold
        );
        let config = load_text("[gateway]\nlate_payment_policy = \"refund\"\n", &[]).unwrap();
        assert_eq!(
            config.gateway.late_payment_policy,
            LatePaymentPolicy::Refund
        );
        let config = load_text("", &[("PAYSIM__GATEWAY__LATE_PAYMENT_POLICY", "hold")]).unwrap();
        assert_eq!(config.gateway.late_payment_policy, LatePaymentPolicy::Hold);
        let error = format!(
            "{:#}",
            load_text("[gateway]\nlate_payment_policy = \"later\"\n", &[]).unwrap_err()
        );
        assert!(error.contains("gateway.late_payment_policy"), "{error}");
        assert!(error.contains("\"later\""), "{error}");
    }
}
