//! The mock Alipay OpenAPI gateway (`/alipay/gateway.do`): request verification, trades in
//! memory, expiry and signed notifications on the shared scheduler, the buyer's cashier
//! (page/wap pay) and wallet (app pay), trade bills, and the control-plane views of all of it.
//! Protocol source: `shared/protocols/alipay.md`, official docs first. Endpoints are
//! documented in `simulator/ALIPAY.md`.

mod bill;
mod cashier;
mod cert;
mod gateway;
mod keys;
mod notify;
mod trade;
mod wallet;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use axum::routing::{any, get, post};
use axum::Router;
use determinism::{format_rfc3339, Clock, Entropy, EntropyExt, Scheduler, Transport, UnixMillis};

use crate::control::{
    trade_not_found, BuyerAction, ChannelSummary, ControlError, ExchangeView, MockChannel,
    RefundView, SettlementView, SignatureVerdict, TradeView,
};
use crate::faults::{FaultBoard, FaultKind};
use crate::money::format_yuan;
use crate::{SimulatorError, SimulatorParts};

pub use cert::{cert_sn, root_cert_sn};
pub use keys::{SigningKey, VerifyError, VerifyingKey};
use trade::Trade;
/// The simulator's own canonicalisation, public so golden vectors can pin it.
pub use wire::{node_name, response_body, response_body_with_cert_sn, sign_content, Params};

/// Configuration of the mock Alipay gateway.
#[derive(Clone)]
pub struct AlipayMockConfig {
    /// The gateway's private key (signs responses and notifications): PKCS#1 or PKCS#8 PEM.
    pub alipay_private_key_pem: String,
    /// The merchant apps it serves.
    pub apps: Vec<AlipayApp>,
    /// The merchant's Alipay user id (`2088` + 12 digits), reported as `seller_id`.
    pub seller_id: String,
    /// The gateway's certificates, for apps in public-key-certificate mode (required when
    /// any app has an `app_cert_pem`).
    pub certificates: Option<AlipayMockCertificates>,
}

/// The Alipay side of public-key-certificate mode: what a merchant downloads as
/// `alipayCertPublicKey_RSA2.crt` and `alipayRootCert.crt`.
#[derive(Debug, Clone)]
pub struct AlipayMockCertificates {
    /// The Alipay certificate (PEM): its public key must be that of `alipay_private_key_pem`;
    /// its SN is the `alipay_cert_sn` of every response to a certificate-mode app.
    pub alipay_cert_pem: String,
    /// The root bundle (PEM, one or more certificates): requests from certificate-mode apps
    /// must carry its SN as `alipay_root_cert_sn`.
    pub alipay_root_cert_pem: String,
}

impl std::fmt::Debug for AlipayMockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayMockConfig")
            .field("alipay_private_key_pem", &"<redacted>")
            .field("apps", &self.apps)
            .field("seller_id", &self.seller_id)
            .field("certificates", &self.certificates)
            .finish()
    }
}

/// One merchant app registered with the mock gateway.
#[derive(Debug, Clone)]
pub struct AlipayApp {
    pub app_id: String,
    /// The app's public key: SPKI PEM or bare base64 SPKI. In certificate mode the key comes
    /// from `app_cert_pem`; this may then be empty, and must otherwise be the same key.
    pub app_public_key_pem: String,
    /// The app's public-key certificate (`appCertPublicKey_<app_id>.crt`, PEM). When set, the
    /// app is in public-key-certificate mode: requests must carry `app_cert_sn` (this
    /// certificate's SN) and `alipay_root_cert_sn`, and responses carry `alipay_cert_sn`.
    pub app_cert_pem: Option<String>,
}

/// A registered app as the gateway uses it.
#[derive(Debug, Clone)]
struct RegisteredApp {
    key: VerifyingKey,
    /// The SN of the app certificate; Some for certificate-mode apps.
    cert_sn: Option<String>,
}

/// The gateway's side of certificate mode, parsed once.
#[derive(Debug, Clone)]
struct CertMode {
    alipay_cert_sn: String,
    root_cert_sn: String,
}

/// The server-to-server API methods the mock implements on `gateway.do` (also the valid
/// request-fault targets).
pub const METHODS: [&str; 9] = [
    "alipay.trade.precreate",
    "alipay.trade.create",
    "alipay.trade.pay",
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.cancel",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
    bill::BILL_METHOD,
];

/// The methods a buyer's browser opens on `gateway.do` (answered with HTML, no faults).
pub const BROWSER_METHODS: [&str; 2] = ["alipay.trade.page.pay", "alipay.trade.wap.pay"];

/// The method of an app-pay order string (handed to the simulated wallet, never to
/// `gateway.do`).
pub const APP_PAY_METHOD: &str = "alipay.trade.app.pay";

/// One request as recorded for `GET /_paysim/alipay/exchanges`.
#[derive(Debug, Clone)]
struct Exchange {
    at_ms: UnixMillis,
    http_method: String,
    api: Option<String>,
    app_id: Option<String>,
    out_trade_no: Option<String>,
    signature: SignatureVerdict,
    http_status: u16,
    code: Option<String>,
    sub_code: Option<String>,
    fault: Option<String>,
}

/// Everything mutable, behind one lock (never held across an await).
#[derive(Debug, Default)]
struct State {
    /// Keyed by out_trade_no: unique per merchant (seller), and every app here is one seller's.
    trades: BTreeMap<String, Trade>,
    /// trade_no → out_trade_no.
    by_trade_no: HashMap<String, String>,
    /// QR token → out_trade_no.
    by_qr_token: HashMap<String, String>,
    notifications: Vec<notify::Notification>,
    /// Cashier token → the cashier session it opens (page/wap pay).
    cashiers: HashMap<String, cashier::CashierSession>,
    /// Bill download token → the bill it serves until it expires.
    bill_links: HashMap<String, bill::BillLink>,
    exchanges: Vec<Exchange>,
    next_sequence: u64,
    /// Notification copies sent so far (orders the captured copies replay picks from).
    notify_sends: u64,
}

impl State {
    fn next_sequence(&mut self) -> u64 {
        self.next_sequence = self.next_sequence.saturating_add(1);
        self.next_sequence
    }
}

/// Caps the exchange log so a long sandbox session cannot grow without bound.
const MAX_EXCHANGES: usize = 10_000;

/// The mock Alipay gateway.
pub struct AlipayMock {
    seller_id: String,
    /// Registered from the configuration, and at run time through `POST /_paysim/alipay/apps`.
    apps: std::sync::RwLock<BTreeMap<String, RegisteredApp>>,
    cert_mode: Option<CertMode>,
    signing_key: SigningKey,
    forger_key: SigningKey,
    clock: Arc<dyn Clock>,
    scheduler: Scheduler,
    entropy: Arc<dyn Entropy>,
    transport: Arc<dyn Transport>,
    base_url: String,
    faults: FaultBoard,
    state: Mutex<State>,
    /// Scheduled jobs hold this instead of an `Arc`, so the scheduler does not keep the mock
    /// alive (and a dropped simulator's pending events become no-ops).
    this: Weak<AlipayMock>,
}

impl std::fmt::Debug for AlipayMock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayMock")
            .field("seller_id", &self.seller_id)
            .field("apps", &self.app_ids())
            .finish_non_exhaustive()
    }
}

impl AlipayMock {
    /// Parses every key once and builds the mock.
    pub(crate) fn new(
        config: AlipayMockConfig,
        parts: &SimulatorParts,
        base_url: &str,
    ) -> Result<Arc<Self>, SimulatorError> {
        let seller_ok = config.seller_id.len() == 16
            && config.seller_id.starts_with("2088")
            && config.seller_id.bytes().all(|b| b.is_ascii_digit());
        if !seller_ok {
            return Err(SimulatorError::InvalidConfig(format!(
                "alipay seller_id must be 2088 followed by 12 digits, got {:?}",
                config.seller_id
            )));
        }
        if config.apps.is_empty() {
            return Err(SimulatorError::InvalidConfig(
                "alipay needs at least one app".into(),
            ));
        }
        let signing_key = SigningKey::parse(&config.alipay_private_key_pem, "alipay private key")?;
        let forger_key = SigningKey::parse(keys::FORGER_PRIVATE_KEY_PEM, "built-in forger key")?;
        let cert_mode = match &config.certificates {
            None => None,
            Some(certificates) => Some(cert_mode(certificates, &signing_key)?),
        };
        let mut apps = BTreeMap::new();
        for app in &config.apps {
            if app.app_id.is_empty() || app.app_id.len() > 32 {
                return Err(SimulatorError::InvalidConfig(format!(
                    "alipay app_id must have 1 to 32 characters, got {:?}",
                    app.app_id
                )));
            }
            let registered = register_app(app, cert_mode.is_some())?;
            apps.insert(app.app_id.clone(), registered);
        }
        let faults = alipay_faults(cert_mode.is_some());
        Ok(Arc::new_cyclic(|this| Self {
            seller_id: config.seller_id,
            apps: std::sync::RwLock::new(apps),
            cert_mode,
            signing_key,
            forger_key,
            clock: Arc::clone(&parts.clock),
            scheduler: parts.scheduler.clone(),
            entropy: Arc::clone(&parts.entropy),
            transport: Arc::clone(&parts.transport),
            base_url: base_url.to_owned(),
            faults,
            state: Mutex::new(State::default()),
            this: this.clone(),
        }))
    }

    /// A registered app (a copy: registration may replace it meanwhile).
    fn app(&self, app_id: &str) -> Option<RegisteredApp> {
        self.apps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(app_id)
            .cloned()
    }

    fn app_ids(&self) -> Vec<String> {
        self.apps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Registers (or replaces) an app at run time: the admin API behind
    /// `POST /_paysim/alipay/apps`.
    pub fn register(&self, app: &AlipayApp) -> Result<(), SimulatorError> {
        if app.app_id.is_empty() || app.app_id.len() > 32 {
            return Err(SimulatorError::InvalidConfig(format!(
                "alipay app_id must have 1 to 32 characters, got {:?}",
                app.app_id
            )));
        }
        let registered = register_app(app, self.cert_mode.is_some())?;
        self.apps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(app.app_id.clone(), registered);
        Ok(())
    }

    /// The `alipay_cert_sn` a response to `app_id` carries: Some for certificate-mode apps.
    fn response_cert_sn(&self, app_id: Option<&str>) -> Option<&str> {
        let app = self.app(app_id?)?;
        app.cert_sn.as_ref()?;
        self.cert_mode
            .as_ref()
            .map(|mode| mode.alipay_cert_sn.as_str())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    /// `2088` + 12 digits from the entropy.
    fn user_id(&self) -> String {
        format!("2088{:012}", self.entropy.uniform_below(1_000_000_000_000))
    }

    /// A 28-digit trade number: Beijing date, `22001`, 15 digits from the entropy.
    fn new_trade_no(&self, now_ms: UnixMillis) -> String {
        format!(
            "{}22001{:015}",
            wire::beijing_compact_date(now_ms),
            self.entropy.uniform_below(1_000_000_000_000_000)
        )
    }

    fn trade_view(&self, state: &State, trade: &Trade) -> TradeView {
        TradeView {
            channel: "alipay".into(),
            app_id: trade.app_id.clone(),
            merchant_id: self.seller_id.clone(),
            out_trade_no: trade.out_trade_no.clone(),
            trade_no: trade.exists().then(|| trade.trade_no.clone()),
            product: trade.product.name().into(),
            amount: format_yuan(trade.total_minor),
            amount_minor: trade.total_minor,
            currency: "CNY".into(),
            state: trade.status.name().into(),
            exists_at_channel: trade.exists(),
            refunded_minor: trade.refunded_minor,
            refunded_amount: format_yuan(trade.refunded_minor),
            created_at: trade.gmt_create_ms.map(format_rfc3339),
            paid_at: trade.paid_ms.map(format_rfc3339),
            closed_at: trade.closed_ms.map(format_rfc3339),
            expires_at: trade.expires_at_ms.map(format_rfc3339),
            notifications: trade
                .notifications
                .iter()
                .filter_map(|&index| state.notifications.get(index))
                .map(notify::Notification::view)
                .collect(),
        }
    }
}

/// The methods whose execution can queue a notification (`notify_before_response` targets):
/// barcode pay, refunds, and closes/cancels of products that notify TRADE_CLOSED.
pub const NOTIFYING_METHODS: [&str; 4] = [
    "alipay.trade.pay",
    "alipay.trade.refund",
    "alipay.trade.close",
    "alipay.trade.cancel",
];

/// The common faults, `notify_before_response`, and `unknown_serial` when the mock has
/// certificates (only certificate-mode answers name a certificate).
fn alipay_faults(have_certificates: bool) -> FaultBoard {
    let mut kinds = FaultKind::COMMON.to_vec();
    if have_certificates {
        kinds.push(FaultKind::UnknownSerial);
    }
    kinds.push(FaultKind::NotifyBeforeResponse);
    FaultBoard::supporting(&kinds)
        .restrict_targets(FaultKind::NotifyBeforeResponse, &NOTIFYING_METHODS)
}

/// Parses the gateway's certificates: the Alipay certificate must carry the public half of the
/// gateway's signing key, and the root bundle must have at least one RSA-signed certificate.
fn cert_mode(
    certificates: &AlipayMockCertificates,
    signing_key: &SigningKey,
) -> Result<CertMode, SimulatorError> {
    let alipay_cert = cert::parse_cert(&certificates.alipay_cert_pem, "alipay certificate")?;
    if !signing_key.is_pair_of(&alipay_cert.public_key) {
        return Err(SimulatorError::InvalidConfig(
            "the alipay certificate's public key does not match alipay_private_key_pem".into(),
        ));
    }
    Ok(CertMode {
        alipay_cert_sn: alipay_cert.sn,
        root_cert_sn: cert::root_cert_sn(&certificates.alipay_root_cert_pem)?,
    })
}

/// An app's verifying key (from its certificate in certificate mode) and certificate SN.
fn register_app(app: &AlipayApp, have_certificates: bool) -> Result<RegisteredApp, SimulatorError> {
    let Some(cert_pem) = &app.app_cert_pem else {
        let key = VerifyingKey::parse(
            &app.app_public_key_pem,
            &format!("public key of app {}", app.app_id),
        )?;
        return Ok(RegisteredApp { key, cert_sn: None });
    };
    if !have_certificates {
        return Err(SimulatorError::InvalidConfig(format!(
            "alipay app {} is in certificate mode (app_cert_pem) but the mock has no \
             certificates (alipay certificate and root bundle)",
            app.app_id
        )));
    }
    let app_cert = cert::parse_cert(cert_pem, &format!("certificate of app {}", app.app_id))?;
    if !app.app_public_key_pem.trim().is_empty() {
        let key = VerifyingKey::parse(
            &app.app_public_key_pem,
            &format!("public key of app {}", app.app_id),
        )?;
        if !key.same_key(&app_cert.public_key) {
            return Err(SimulatorError::InvalidConfig(format!(
                "alipay app {}: app_public_key_pem is not the key of app_cert_pem",
                app.app_id
            )));
        }
    }
    Ok(RegisteredApp {
        key: app_cert.public_key,
        cert_sn: Some(app_cert.sn),
    })
}

/// The Alipay routes: the gateway, the QR-code landing page, the cashier, the wallet and
/// bill downloads.
/// One app as `GET /_paysim/alipay/apps` shows it.
#[derive(Debug, serde::Serialize)]
struct AppView {
    app_id: String,
    mode: &'static str,
    app_cert_sn: Option<String>,
}

async fn list_apps(
    axum::extract::State(mock): axum::extract::State<Arc<AlipayMock>>,
) -> axum::Json<Vec<AppView>> {
    let apps = mock
        .apps
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    axum::Json(
        apps.iter()
            .map(|(app_id, app)| AppView {
                app_id: app_id.clone(),
                mode: if app.cert_sn.is_some() {
                    "certificate"
                } else {
                    "public_key"
                },
                app_cert_sn: app.cert_sn.clone(),
            })
            .collect(),
    )
}

/// The body of `POST /_paysim/alipay/apps`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterApp {
    app_id: String,
    #[serde(default)]
    app_public_key_pem: String,
    #[serde(default)]
    app_cert_pem: Option<String>,
}

async fn register_app_route(
    axum::extract::State(mock): axum::extract::State<Arc<AlipayMock>>,
    body: Result<axum::Json<RegisterApp>, axum::extract::rejection::JsonRejection>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let error = |status: http::StatusCode, code: &str, message: String| {
        (
            status,
            axum::Json(serde_json::json!({ "code": code, "message": message })),
        )
            .into_response()
    };
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(rejection) => {
            return error(
                http::StatusCode::BAD_REQUEST,
                "invalid_body",
                rejection.body_text(),
            )
        }
    };
    let app = AlipayApp {
        app_id: body.app_id,
        app_public_key_pem: body.app_public_key_pem,
        app_cert_pem: body.app_cert_pem,
    };
    match mock.register(&app) {
        Ok(()) => {
            let registered = mock.app(&app.app_id);
            let view = AppView {
                app_id: app.app_id.clone(),
                mode: if app.app_cert_pem.is_some() {
                    "certificate"
                } else {
                    "public_key"
                },
                app_cert_sn: registered.and_then(|r| r.cert_sn),
            };
            (http::StatusCode::CREATED, axum::Json(view)).into_response()
        }
        Err(e) => error(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_app",
            e.to_string(),
        ),
    }
}

pub(crate) fn router(mock: Arc<AlipayMock>) -> Router {
    Router::new()
        .route("/alipay/gateway.do", any(gateway::handle))
        .route(
            "/alipay/qr/{token}",
            get(trade::qr_page).post(trade::qr_action),
        )
        .route("/alipay/cashier/{token}", get(cashier::show))
        .route("/alipay/cashier/{token}/{action}", post(cashier::act))
        .route("/alipay/wallet/app-pay", post(wallet::app_pay))
        .route("/alipay/bill/{token}", get(bill::download))
        .route(
            "/_paysim/alipay/apps",
            get(list_apps).post(register_app_route),
        )
        .with_state(mock)
}

impl MockChannel for AlipayMock {
    fn name(&self) -> &'static str {
        "alipay"
    }

    fn summary(&self) -> ChannelSummary {
        ChannelSummary {
            name: "alipay".into(),
            protocol: "Alipay OpenAPI (gateway.do, RSA2)".into(),
            endpoint: format!("{}/alipay/gateway.do", self.base_url),
            fault_targets: METHODS.iter().map(|m| (*m).to_owned()).collect(),
            merchants: self.app_ids(),
        }
    }

    fn trades(&self) -> Vec<TradeView> {
        let mut state = self.lock();
        trade::close_refund_windows(&mut state, self.now_ms());
        let mut trades: Vec<&Trade> = state.trades.values().collect();
        trades.sort_by_key(|trade| trade.sequence);
        trades
            .into_iter()
            .map(|trade| self.trade_view(&state, trade))
            .collect()
    }

    fn trade(&self, out_trade_no: &str) -> Option<TradeView> {
        let mut state = self.lock();
        trade::close_refund_windows(&mut state, self.now_ms());
        state
            .trades
            .get(out_trade_no)
            .map(|trade| self.trade_view(&state, trade))
    }

    fn buyer_action(
        &self,
        out_trade_no: &str,
        action: BuyerAction,
    ) -> Result<TradeView, ControlError> {
        let now_ms = self.now_ms();
        let mut state = self.lock();
        if !state.trades.contains_key(out_trade_no) {
            return Err(trade_not_found(out_trade_no));
        }
        self.apply_buyer_action(&mut state, out_trade_no, action, now_ms)?;
        state
            .trades
            .get(out_trade_no)
            .map(|trade| self.trade_view(&state, trade))
            .ok_or_else(|| trade_not_found(out_trade_no))
    }

    fn refunds(&self) -> Vec<RefundView> {
        let state = self.lock();
        let mut refunds: Vec<(u64, RefundView)> = Vec::new();
        for trade in state.trades.values() {
            for refund in &trade.refunds {
                refunds.push((
                    refund.sequence,
                    RefundView {
                        channel: "alipay".into(),
                        out_trade_no: trade.out_trade_no.clone(),
                        trade_no: trade.trade_no.clone(),
                        out_request_no: refund.out_request_no.clone(),
                        amount: format_yuan(refund.amount_minor),
                        amount_minor: refund.amount_minor,
                        currency: "CNY".into(),
                        state: "REFUND_SUCCESS".into(),
                        refunded_at: format_rfc3339(refund.at_ms),
                    },
                ));
            }
        }
        refunds.sort_by_key(|(sequence, _)| *sequence);
        refunds.into_iter().map(|(_, view)| view).collect()
    }

    fn faults(&self) -> &FaultBoard {
        &self.faults
    }

    fn fault_targets(&self) -> Vec<&'static str> {
        METHODS.to_vec()
    }

    fn exchanges(&self) -> Vec<ExchangeView> {
        let state = self.lock();
        state
            .exchanges
            .iter()
            .enumerate()
            .map(|(index, exchange)| ExchangeView {
                sequence: u64::try_from(index).unwrap_or(u64::MAX).saturating_add(1),
                at: format_rfc3339(exchange.at_ms),
                at_ms: exchange.at_ms,
                http_method: exchange.http_method.clone(),
                api: exchange.api.clone(),
                app_id: exchange.app_id.clone(),
                out_trade_no: exchange.out_trade_no.clone(),
                signature: exchange.signature.clone(),
                http_status: exchange.http_status,
                code: exchange.code.clone(),
                sub_code: exchange.sub_code.clone(),
                fault: exchange.fault.clone(),
            })
            .collect()
    }

    fn settlements(&self, date: time::Date) -> SettlementView {
        let state = self.lock();
        let (mut paid_count, mut paid_minor, mut refund_count, mut refunded_minor) =
            (0_u64, 0_i64, 0_u64, 0_i64);
        for trade in state.trades.values() {
            if let Some(paid_ms) = trade.paid_ms {
                if wire::beijing_date(paid_ms) == date {
                    paid_count += 1;
                    paid_minor = paid_minor.saturating_add(trade.total_minor);
                }
            }
            for refund in &trade.refunds {
                if wire::beijing_date(refund.at_ms) == date {
                    refund_count += 1;
                    refunded_minor = refunded_minor.saturating_add(refund.amount_minor);
                }
            }
        }
        SettlementView::cny(
            "alipay",
            date,
            (paid_count, paid_minor),
            (refund_count, refunded_minor),
        )
    }
}
