//! The mock WeChat Pay APIv3 server (`/v3/…` at the root of the simulator, so SDKs only swap
//! the host): request authentication, signed responses, orders and refunds in memory,
//! expiry, refund settlement and encrypted notifications on the shared scheduler, a buyer
//! page, and the control-plane views of all of it. Protocol source:
//! `shared/protocols/wechatpay.md`, official docs first. Documented in `simulator/WECHATPAY.md`.

mod api;
mod auth;
mod bill;
mod certificates;
mod codepay;
mod notify;
mod refund;
mod trade;
mod wallet;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use axum::routing::{any, get};
use axum::Router;
use determinism::{format_rfc3339, Clock, Entropy, EntropyExt, Scheduler, Transport, UnixMillis};

use crate::alipay::{SigningKey, VerifyingKey};
use crate::control::{
    trade_not_found, BuyerAction, ChannelSummary, ControlError, ExchangeView, MockChannel,
    RefundView, SettlementView, SignatureVerdict, TradeView,
};
use crate::faults::{FaultBoard, FaultKind};
use crate::money::format_yuan;
use crate::{SimulatorError, SimulatorParts};

/// The simulator's own APIv3 primitives, public so golden vectors and tests can pin them.
pub use api::APIS;
pub use auth::{request_message, response_message, seal, Authorization, Sealed, SCHEME};
/// Which key answers and notifications name (public key, platform certificate, switching).
pub use certificates::WechatpaySigningMode;
/// The RFC 3339 Beijing-time format of every WeChat Pay time field.
pub use wire::format_time;

/// Configuration of the mock WeChat Pay server. Responses and notifications are always
/// signed with the platform key; `signing_mode` decides whether they name `public_key_id` or
/// the platform certificate the mock issues over that key.
#[derive(Clone)]
pub struct WechatpayMockConfig {
    /// The merchants it serves.
    pub merchants: Vec<WechatpayMerchant>,
    /// The WeChat Pay platform private key (PKCS#8 or PKCS#1 PEM): signs every answer and
    /// notification.
    pub platform_private_key_pem: String,
    /// The WeChat Pay public key id (`PUB_KEY_ID_` + digits), sent as `Wechatpay-Serial`.
    pub public_key_id: String,
    /// Public key (default), platform certificate, or the switch between them.
    pub signing_mode: WechatpaySigningMode,
}

impl std::fmt::Debug for WechatpayMockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatpayMockConfig")
            .field("merchants", &self.merchants)
            .field("platform_private_key_pem", &"<redacted>")
            .field("public_key_id", &self.public_key_id)
            .field("signing_mode", &self.signing_mode)
            .finish()
    }
}

/// One merchant registered with the mock.
#[derive(Clone)]
pub struct WechatpayMerchant {
    /// 商户号.
    pub mchid: String,
    /// The one appid bound to the merchant (APPID_MCHID_NOT_MATCH otherwise).
    pub appid: String,
    /// The merchant API certificate serial (hex; compared case-insensitively).
    pub serial_no: String,
    /// The merchant API public key (SPKI or PKCS#1 PEM): verifies requests.
    pub public_key_pem: String,
    /// The 32-byte APIv3 key: encrypts notification resources and certificates.
    pub apiv3_key: String,
}

impl std::fmt::Debug for WechatpayMerchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatpayMerchant")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("serial_no", &self.serial_no)
            .field("apiv3_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A registered merchant as the server uses it.
struct Merchant {
    mchid: String,
    appid: String,
    serial_no: String,
    key: VerifyingKey,
    apiv3_key: Vec<u8>,
}

impl std::fmt::Debug for Merchant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Merchant")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

/// The faults this channel can commit: the whole catalogue but `notify_before_response`
/// (WeChat Pay queues no notification while answering a request: payment-code payments have
/// none, refunds settle after the answer).
const SUPPORTED_FAULTS: [FaultKind; 18] = [
    FaultKind::BadResponseSignature,
    FaultKind::UnsignedResponse,
    FaultKind::ErrorCode,
    FaultKind::SystemError,
    FaultKind::Http500,
    FaultKind::MalformedBody,
    FaultKind::DuplicateNotification,
    FaultKind::ForgedNotification,
    FaultKind::TamperedNotificationAmount,
    FaultKind::DropNotification,
    FaultKind::DelayNotification,
    FaultKind::OutOfOrderNotification,
    FaultKind::ReplayNotification,
    FaultKind::ConflictingStatusNotification,
    FaultKind::UnknownSerial,
    FaultKind::SigntestResponse,
    FaultKind::RefundAbnormal,
    FaultKind::RefundClosed,
];

/// One request as recorded for `GET /_paysim/wechatpay/exchanges`.
#[derive(Debug, Clone)]
struct Exchange {
    at_ms: UnixMillis,
    http_method: String,
    api: Option<String>,
    mchid: Option<String>,
    out_trade_no: Option<String>,
    signature: SignatureVerdict,
    http_status: u16,
    code: Option<String>,
    fault: Option<String>,
}

/// (mchid, out_trade_no): out_trade_no is unique per merchant.
type TradeKey = (String, String);

/// Everything mutable, behind one lock (never held across an await).
#[derive(Debug, Default)]
struct State {
    trades: BTreeMap<TradeKey, trade::Trade>,
    by_transaction_id: HashMap<String, TradeKey>,
    /// Buyer-page token → trade.
    by_pay_token: HashMap<String, TradeKey>,
    refunds: Vec<refund::Refund>,
    /// (mchid, out_refund_no) → index into `refunds`.
    by_out_refund_no: HashMap<(String, String), usize>,
    notifications: Vec<notify::Notification>,
    /// Bill download token → link.
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

/// The key the `forged_notification` fault signs with (the same fixed test key as Alipay's).
const FORGER_PRIVATE_KEY_PEM: &str = include_str!("../alipay/forger_key.pem");

/// The mock WeChat Pay server.
pub struct WechatpayMock {
    merchants: BTreeMap<String, Merchant>,
    platform_key: SigningKey,
    forger_key: SigningKey,
    public_key_id: String,
    signing_mode: WechatpaySigningMode,
    /// Issued at construction unless the mode is `PublicKey`.
    platform_certificate: Option<certificates::PlatformCertificate>,
    clock: Arc<dyn Clock>,
    scheduler: Scheduler,
    entropy: Arc<dyn Entropy>,
    transport: Arc<dyn Transport>,
    base_url: String,
    faults: FaultBoard,
    state: Mutex<State>,
    /// Scheduled jobs hold this instead of an `Arc`, so the scheduler does not keep the mock
    /// alive (and a dropped simulator's pending events become no-ops).
    this: Weak<WechatpayMock>,
}

impl std::fmt::Debug for WechatpayMock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatpayMock")
            .field("merchants", &self.merchants.keys().collect::<Vec<_>>())
            .field("public_key_id", &self.public_key_id)
            .field("signing_mode", &self.signing_mode)
            .finish_non_exhaustive()
    }
}

impl WechatpayMock {
    /// Parses every key once and builds the mock.
    pub(crate) fn new(
        config: WechatpayMockConfig,
        parts: &SimulatorParts,
        base_url: &str,
    ) -> Result<Arc<Self>, SimulatorError> {
        let id_digits = config.public_key_id.strip_prefix("PUB_KEY_ID_");
        if !id_digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
            return Err(SimulatorError::InvalidConfig(format!(
                "wechatpay public_key_id must be PUB_KEY_ID_ followed by digits, got {:?}",
                config.public_key_id
            )));
        }
        if config.merchants.is_empty() {
            return Err(SimulatorError::InvalidConfig(
                "wechatpay needs at least one merchant".into(),
            ));
        }
        let platform_key = SigningKey::parse(
            &config.platform_private_key_pem,
            "wechatpay platform private key",
        )?;
        let forger_key = SigningKey::parse(FORGER_PRIVATE_KEY_PEM, "built-in forger key")?;
        let platform_certificate = match config.signing_mode {
            WechatpaySigningMode::PublicKey => None,
            WechatpaySigningMode::PlatformCertificate | WechatpaySigningMode::Switching => Some(
                certificates::issue(&config.platform_private_key_pem, parts.clock.now_ms())?,
            ),
        };
        let mut merchants = BTreeMap::new();
        for merchant in &config.merchants {
            let registered = register_merchant(merchant)?;
            if merchants
                .insert(merchant.mchid.clone(), registered)
                .is_some()
            {
                return Err(SimulatorError::InvalidConfig(format!(
                    "wechatpay mchid {} is configured twice",
                    merchant.mchid
                )));
            }
        }
        Ok(Arc::new_cyclic(|this| Self {
            merchants,
            platform_key,
            forger_key,
            public_key_id: config.public_key_id,
            signing_mode: config.signing_mode,
            platform_certificate,
            clock: Arc::clone(&parts.clock),
            scheduler: parts.scheduler.clone(),
            entropy: Arc::clone(&parts.entropy),
            transport: Arc::clone(&parts.transport),
            base_url: base_url.to_owned(),
            faults: FaultBoard::supporting(&SUPPORTED_FAULTS),
            state: Mutex::new(State::default()),
            this: this.clone(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_ms(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    /// 32 upper-case hex characters (response and notification nonces, like real ones).
    fn nonce(&self) -> String {
        self.entropy.hex(16).to_ascii_uppercase()
    }

    /// The signature headers' values over `body`: (timestamp, nonce, signature).
    fn sign_body(&self, body: &[u8], mode: SignatureMode) -> (String, String, String) {
        let timestamp = wire::unix_seconds(self.now_ms()).to_string();
        let nonce = self.nonce();
        let signature = match mode {
            SignatureMode::Genuine => self
                .platform_key
                .sign_base64(&auth::response_message(&timestamp, &nonce, body)),
            // A well-formed signature over other bytes: it parses, but never verifies.
            SignatureMode::Corrupt => {
                let mut other = auth::response_message(&timestamp, &nonce, body);
                other.extend_from_slice(b"#tampered");
                self.platform_key.sign_base64(&other)
            }
            SignatureMode::Signtest => format!(
                "WECHATPAY/SIGNTEST/{}",
                self.platform_key
                    .sign_base64(format!("signtest {}", self.entropy.hex(16)).as_bytes())
            ),
            SignatureMode::Forged => self
                .forger_key
                .sign_base64(&auth::response_message(&timestamp, &nonce, body)),
            SignatureMode::Omitted => String::new(),
        };
        (timestamp, nonce, signature)
    }

    fn trade_view(&self, state: &State, trade: &trade::Trade) -> TradeView {
        TradeView {
            channel: "wechatpay".into(),
            app_id: trade.appid.clone(),
            merchant_id: trade.mchid.clone(),
            out_trade_no: trade.out_trade_no.clone(),
            trade_no: trade.paid_ms.map(|_| trade.transaction_id.clone()),
            product: trade.trade_type.product().into(),
            amount: format_yuan(trade.total_minor),
            amount_minor: trade.total_minor,
            currency: "CNY".into(),
            state: trade.state.name().into(),
            exists_at_channel: true,
            refunded_minor: trade.refunded_minor(state),
            refunded_amount: format_yuan(trade.refunded_minor(state)),
            created_at: Some(format_rfc3339(trade.created_ms)),
            paid_at: trade.paid_ms.map(format_rfc3339),
            closed_at: trade.closed_ms.map(format_rfc3339),
            expires_at: trade
                .expiry_event
                .is_some()
                .then(|| format_rfc3339(trade.time_expire_ms)),
            notifications: trade
                .notifications
                .iter()
                .chain(
                    trade
                        .refunds
                        .iter()
                        .filter_map(|&index| state.refunds.get(index))
                        .flat_map(|refund| refund.notifications.iter()),
                )
                .filter_map(|&index| state.notifications.get(index))
                .map(notify::Notification::view)
                .collect(),
        }
    }

    /// The trade with this out_trade_no, whichever merchant owns it (control plane).
    fn find_trade_key(state: &State, out_trade_no: &str) -> Option<TradeKey> {
        state
            .trades
            .keys()
            .find(|(_, no)| no == out_trade_no)
            .cloned()
    }
}

/// How a signed answer's `Wechatpay-Signature` is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignatureMode {
    /// With the platform key over the exact message.
    Genuine,
    /// `bad_response_signature`: over other bytes.
    Corrupt,
    /// `signtest_response`: a `WECHATPAY/SIGNTEST/…` value.
    Signtest,
    /// `forged_notification`: with a key that is not the platform's.
    Forged,
    /// `unsigned_response`: no `Wechatpay-Signature` header at all.
    Omitted,
}

fn register_merchant(merchant: &WechatpayMerchant) -> Result<Merchant, SimulatorError> {
    let mchid_ok = (8..=32).contains(&merchant.mchid.len())
        && merchant.mchid.bytes().all(|b| b.is_ascii_digit());
    if !mchid_ok {
        return Err(SimulatorError::InvalidConfig(format!(
            "wechatpay mchid must be 8 to 32 digits, got {:?}",
            merchant.mchid
        )));
    }
    if merchant.appid.is_empty() || merchant.appid.len() > 32 {
        return Err(SimulatorError::InvalidConfig(format!(
            "wechatpay appid of merchant {} must have 1 to 32 characters",
            merchant.mchid
        )));
    }
    if merchant.serial_no.is_empty() || !merchant.serial_no.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SimulatorError::InvalidConfig(format!(
            "wechatpay serial_no of merchant {} must be hex, got {:?}",
            merchant.mchid, merchant.serial_no
        )));
    }
    if merchant.apiv3_key.len() != 32 {
        return Err(SimulatorError::InvalidConfig(format!(
            "wechatpay apiv3_key of merchant {} must be 32 bytes, got {}",
            merchant.mchid,
            merchant.apiv3_key.len()
        )));
    }
    let key = VerifyingKey::parse(
        &merchant.public_key_pem,
        &format!("public key of merchant {}", merchant.mchid),
    )?;
    Ok(Merchant {
        mchid: merchant.mchid.clone(),
        appid: merchant.appid.clone(),
        serial_no: merchant.serial_no.to_ascii_uppercase(),
        key,
        apiv3_key: merchant.apiv3_key.as_bytes().to_vec(),
    })
}

/// The WeChat Pay routes: the APIv3 surface at the root and the buyer page.
pub(crate) fn router(mock: Arc<WechatpayMock>) -> Router {
    Router::new()
        .route("/v3/{*path}", any(api::handle))
        .route(
            "/wechatpay/pay/{token}",
            get(trade::pay_page).post(trade::pay_page_action),
        )
        .route("/wechatpay/wallet/pay", axum::routing::post(wallet::pay))
        .with_state(mock)
}

impl MockChannel for WechatpayMock {
    fn name(&self) -> &'static str {
        "wechatpay"
    }

    fn summary(&self) -> ChannelSummary {
        ChannelSummary {
            name: "wechatpay".into(),
            protocol: format!(
                "WeChat Pay APIv3 (WECHATPAY2-SHA256-RSA2048, {})",
                match self.signing_mode {
                    WechatpaySigningMode::PublicKey => "public-key mode",
                    WechatpaySigningMode::PlatformCertificate => "platform-certificate mode",
                    WechatpaySigningMode::Switching => "switching to the public key",
                }
            ),
            endpoint: format!("{}/v3/", self.base_url),
            fault_targets: api::APIS.iter().map(|api| (*api).to_owned()).collect(),
            merchants: self.merchants.keys().cloned().collect(),
        }
    }

    fn trades(&self) -> Vec<TradeView> {
        let state = self.lock();
        let mut trades: Vec<&trade::Trade> = state.trades.values().collect();
        trades.sort_by_key(|trade| trade.sequence);
        trades
            .into_iter()
            .map(|trade| self.trade_view(&state, trade))
            .collect()
    }

    fn trade(&self, out_trade_no: &str) -> Option<TradeView> {
        let state = self.lock();
        let key = Self::find_trade_key(&state, out_trade_no)?;
        state
            .trades
            .get(&key)
            .map(|trade| self.trade_view(&state, trade))
    }

    fn buyer_action(
        &self,
        out_trade_no: &str,
        action: BuyerAction,
    ) -> Result<TradeView, ControlError> {
        let now_ms = self.now_ms();
        let mut state = self.lock();
        let key = Self::find_trade_key(&state, out_trade_no)
            .ok_or_else(|| trade_not_found(out_trade_no))?;
        self.apply_buyer_action(&mut state, &key, action, now_ms)?;
        state
            .trades
            .get(&key)
            .map(|trade| self.trade_view(&state, trade))
            .ok_or_else(|| trade_not_found(out_trade_no))
    }

    fn refunds(&self) -> Vec<RefundView> {
        let state = self.lock();
        state
            .refunds
            .iter()
            .map(|refund| RefundView {
                channel: "wechatpay".into(),
                out_trade_no: refund.out_trade_no.clone(),
                trade_no: refund.transaction_id.clone(),
                out_request_no: refund.out_refund_no.clone(),
                amount: format_yuan(refund.amount_minor),
                amount_minor: refund.amount_minor,
                currency: "CNY".into(),
                state: refund.status.name().into(),
                refunded_at: format_rfc3339(refund.success_ms.unwrap_or(refund.created_ms)),
            })
            .collect()
    }

    fn faults(&self) -> &FaultBoard {
        &self.faults
    }

    fn fault_targets(&self) -> Vec<&'static str> {
        api::APIS.to_vec()
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
                app_id: exchange.mchid.clone(),
                out_trade_no: exchange.out_trade_no.clone(),
                signature: exchange.signature.clone(),
                http_status: exchange.http_status,
                code: exchange.code.clone(),
                sub_code: None,
                fault: exchange.fault.clone(),
            })
            .collect()
    }

    fn settlements(&self, date: time::Date) -> SettlementView {
        let state = self.lock();
        let (mut paid_count, mut paid_minor, mut refund_count, mut refunded_minor) =
            (0_u64, 0_i64, 0_u64, 0_i64);
        for trade in state.trades.values() {
            if trade
                .paid_ms
                .is_some_and(|paid_ms| wire::beijing_date(paid_ms) == date)
            {
                paid_count += 1;
                paid_minor = paid_minor.saturating_add(trade.total_minor);
            }
        }
        for refund in &state.refunds {
            if refund
                .success_ms
                .is_some_and(|at_ms| wire::beijing_date(at_ms) == date)
            {
                refund_count += 1;
                refunded_minor = refunded_minor.saturating_add(refund.amount_minor);
            }
        }
        // A payment reversed after it went through (payment code, `reverse` on SUCCESS): the
        // money goes back to the buyer on the day of the reversal, like a full refund.
        for trade in state.trades.values() {
            let reversed_paid =
                trade.state == trade::TradeState::Revoked && trade.paid_ms.is_some();
            if reversed_paid
                && trade
                    .closed_ms
                    .is_some_and(|at_ms| wire::beijing_date(at_ms) == date)
            {
                refund_count += 1;
                refunded_minor = refunded_minor.saturating_add(trade.total_minor);
            }
        }
        SettlementView::cny(
            "wechatpay",
            date,
            (paid_count, paid_minor),
            (refund_count, refunded_minor),
        )
    }
}
