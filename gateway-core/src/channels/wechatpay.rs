//! The WeChat Pay channel adapter (APIv3, direct merchant, WeChat Pay public-key mode),
//! sans-IO: builds signed request values, verifies and maps response values, verifies and
//! decrypts notifications.
//!
//! Written from WeChat Pay's documentation (see `shared/protocols/wechatpay.md` and the
//! official pages it cites), independently of the simulator's mock server (architecture
//! invariant 1).
//!
//! | gateway method | WeChat Pay API | buyer action |
//! | --- | --- | --- |
//! | qr | `POST /v3/pay/transactions/native` | `{"type":"qr_code","code_url":…}` |
//! | jsapi | `POST /v3/pay/transactions/jsapi` (`payer.openid`) | `{"type":"jsapi","prepay_id":…,"pay_params":{…,"paySign"}}` |
//! | app | `POST /v3/pay/transactions/app` | `{"type":"app","prepay_id":…,"pay_params":{…,"sign"}}` |
//! | wap | `POST /v3/pay/transactions/h5` (`scene_info.payer_client_ip`) | `{"type":"redirect","url":h5_url}` |
//! | barcode | `POST /v3/pay/transactions/codepay` (`payer.auth_code`, `scene_info.store_info.out_id`) | `{"type":"barcode","transaction_id":…}` (may settle at once) |
//!
//! Follow-ups: query `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`, close
//! `POST …/out-trade-no/{no}/close` (204; barcode orders: `POST …/out-trade-no/{no}/reverse`
//! with `{mchid, appid}`), refund `POST /v3/refund/domestic/refunds`, refund
//! query `GET /v3/refund/domestic/refunds/{out_refund_no}`. `out_trade_no` is the order id,
//! `out_refund_no` the refund id, amounts are integer fen.
//!
//! Every request carries `Authorization: WECHATPAY2-SHA256-RSA2048 …` signed with the merchant
//! key over `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n`. Every answer — 204 included — is
//! trusted only after its `Wechatpay-*` headers verify with the key its `Wechatpay-Serial`
//! names (`sign::verify_signed_headers`); 5xx and 429 are `Unknown` before that (nothing they
//! say is acted upon), anything else unsigned or badly signed is `Signature` and the order is
//! settled by a later query (architecture invariant 9).
//!
//! Verifying keys: a serial → key map. It starts with the configured WeChat Pay public key
//! (`PUB_KEY_ID_…`, public-key mode) when there is one; platform certificates are learnt from
//! the channel. An answer or notification under a serial not in the map is `UnknownKey`: the
//! service then calls `build_key_refresh` (`GET /v3/certificates?algorithm_type=RSA`, signed
//! like any request) once, hands the answer to `apply_key_refresh` — which opens each
//! `encrypt_certificate` with the APIv3 key, reads the certificate's serial and SPKI, checks
//! the answer's own signature under the certificate it names and only then adds every
//! certificate by its upper-case hex serial — and verifies the same bytes again. This covers
//! platform-certificate mode, the switch to the public key, and certificate rotation.
//!
//! Answer mapping (verified answers):
//!
//! | call | answer | result |
//! | --- | --- | --- |
//! | any | 5xx, 429, `SYSTEM_ERROR`, `FREQUENCY_LIMITED`, `RATELIMIT_EXCEEDED`, `SERVICE_UNAVAILABLE`, `BANKERROR`, transport failure | `Unknown` |
//! | any but close, codepay | 202 | `Unknown` (accepted, not done: query) |
//! | any | other 4xx `{code,message}` not listed below | `Rejected{code}` |
//! | prepay | 200 | `Created` (pending) |
//! | prepay, codepay | `ORDERPAID`, `OUT_TRADE_NO_USED` | `Unknown` (the trade may exist and be paid: query) |
//! | codepay | 200 Transaction | as query (`SUCCESS`: `Created{Paid}`) |
//! | codepay | 202 `USER_PAYING` | `Created{Pending}` (polled on the barcode schedule, then reversed) |
//! | codepay | `PAYERROR`, `AUTH_CODE_INVALID`/`_ERROR`/`_EXPIRE`, `NOT_ENOUGH`, `TRADE_ERROR`, `RULE_LIMIT`, `ACCOUNT_ERROR` … (+ v2 spellings) | `Created{Failed}` |
//! | query | `trade_state` SUCCESS / REFUND | `Paid{transaction_id, amount.total, success_time}` (REFUND: paid, then refunded) |
//! | query | NOTPAY / USERPAYING / ACCEPT | `Pending` |
//! | query | CLOSED / REVOKED | `Closed` |
//! | query | PAYERROR | `Failed` |
//! | query | 404, `ORDER_NOT_EXIST` (`ORDERNOTEXIST`) | `NotFound` |
//! | close, reverse | 2xx (204) / `ORDER_CLOSED` / `ORDER_REVERSED` | `Closed` |
//! | close, reverse | 404, `ORDER_NOT_EXIST` | `NotFound` |
//! | close, reverse | 202 `USER_PAYING`, `ORDERPAID`, `INVALID_REQUEST` | `Pending` (the service queries) |
//! | refund, refund query | `status` SUCCESS / PROCESSING / ABNORMAL / CLOSED | `Succeeded{refund_id}` / `Pending` / `Abnormal` / `Failed` |
//!
//! Notifications (`POST /notify/wechatpay`): the headers verify as above, then the `resource`
//! is opened with the APIv3 key (`AEAD_AES_256_GCM`), it must name this `mchid` (and `appid`
//! for payments), and `TRANSACTION.SUCCESS` becomes `Payment{…Paid}`,
//! `REFUND.SUCCESS/ABNORMAL/CLOSED` becomes `Refund{Succeeded/Abnormal/Failed}`. Anything
//! else is refused, and WeChat resends.
//!
//! Out of scope for now: SM2 platform certificates; chain-checking platform certificates
//! against Tenpay's CA; partner (服务商) mode.

mod sign;
mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use bytes::Bytes;
use determinism::{HttpRequest, HttpResponse, UnixMillis};
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Method, StatusCode, Uri};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::channel::{
    AdapterContext, AdapterError, ChannelAdapter, CreatePlan, Created, Notification, PaymentStatus,
    RefundStatus,
};
use crate::ids::{OrderId, RefundId};
use crate::model::{Order, Refund};
use crate::money::{fen, Currency};
use crate::state::{Channel, PaymentMethod};

use self::sign::{ApiV3Key, MerchantPrivateKey, PlatformPublicKey, SignedBy};

/// What the WeChat Pay adapter needs to know. Validated once by [`WechatpayAdapter::new`].
#[derive(Clone)]
pub struct WechatpayConfig {
    /// The merchant id (商户号), e.g. `1900000001`.
    pub mchid: String,
    /// The AppID bound to the merchant (公众号 / 小程序 / 移动应用).
    pub appid: String,
    /// Serial of the merchant API certificate (`apiclient_cert.pem`), hex: `serial_no` of
    /// every request.
    pub merchant_serial_no: String,
    /// The merchant API private key (`apiclient_key.pem`), PKCS#8 or PKCS#1 PEM.
    pub merchant_private_key_pem: String,
    /// The APIv3 key: 32 bytes, opens notification resources.
    pub apiv3_key: String,
    /// The WeChat Pay public key (SubjectPublicKeyInfo PEM) of public-key mode, which
    /// verifies answers and notifications signed under its id. Empty (with an empty id) when
    /// the merchant is in platform-certificate mode: certificates are then fetched from
    /// `GET /v3/certificates` when an answer names one.
    pub platform_public_key_pem: String,
    /// Its id (`PUB_KEY_ID_…`): sent as `Wechatpay-Serial`. Empty with an empty key.
    pub platform_public_key_id: String,
    /// Scheme, host and port (and an optional path prefix), e.g. `http://127.0.0.1:8081`;
    /// the `/v3/…` paths are appended.
    pub base_url: String,
}

impl std::fmt::Debug for WechatpayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatpayConfig")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("merchant_serial_no", &self.merchant_serial_no)
            .field("merchant_private_key_pem", &"<redacted>")
            .field("apiv3_key", &"<redacted>")
            .field("platform_public_key_pem", &"..")
            .field("platform_public_key_id", &self.platform_public_key_id)
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// The WeChat Pay [`ChannelAdapter`]. Keys are parsed once, at construction.
#[derive(Debug)]
pub struct WechatpayAdapter {
    mchid: String,
    appid: String,
    merchant_serial_no: String,
    /// Empty when no public key is configured (platform-certificate mode).
    platform_public_key_id: String,
    /// Without a trailing `/`.
    base_url: String,
    merchant_key: MerchantPrivateKey,
    /// Verifying keys by `Wechatpay-Serial`: the public key id, then learnt certificates.
    verifying_keys: RwLock<BTreeMap<String, PlatformPublicKey>>,
    apiv3_key: ApiV3Key,
    clock: ReferenceClock,
}

/// The latest `now` this adapter was handed, for the ±5 minute check of answers.
///
/// `ChannelAdapter::parse_*` receive no time, but an answer is only ever parsed right after
/// its request was built with the executor's `AdapterContext`, within the call timeout. So
/// the newest `now_ms` seen (by any build or notification) is "now" to within that timeout
/// — seconds against a 5-minute window — and it comes from the determinism seam, so a seed
/// still fixes every verdict. An adapter that has built nothing yet refuses answers (fail
/// closed). Handing `now_ms` to the parse methods (a change to `channel.rs`) would remove
/// this state.
#[derive(Debug)]
struct ReferenceClock(AtomicI64);

impl ReferenceClock {
    const UNSET: i64 = i64::MIN;

    fn new() -> Self {
        ReferenceClock(AtomicI64::new(Self::UNSET))
    }

    fn observe(&self, now_ms: UnixMillis) {
        self.0.fetch_max(now_ms, Ordering::Relaxed);
    }

    fn now_ms(&self) -> Option<UnixMillis> {
        let now_ms = self.0.load(Ordering::Relaxed);
        (now_ms != Self::UNSET).then_some(now_ms)
    }
}

/// The WeChat Pay APIs this adapter calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Native,
    Jsapi,
    App,
    H5,
    Codepay,
    Query,
    Close,
    Reverse,
    Refund,
    RefundQuery,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Native => "native prepay",
            Api::Jsapi => "jsapi prepay",
            Api::App => "app prepay",
            Api::H5 => "h5 prepay",
            Api::Codepay => "codepay",
            Api::Query => "query",
            Api::Close => "close",
            Api::Reverse => "reverse",
            Api::Refund => "refund",
            Api::RefundQuery => "refund query",
        }
    }
}

/// A verified answer, sorted by HTTP status. Answers that mean "outcome unknown" (5xx, 429,
/// the transient codes) never get here: they are [`AdapterError::Unknown`].
#[derive(Debug)]
enum Reply {
    /// 2xx except 202; the body as sent (empty for 204).
    Success { body: Bytes, signed_by: SignedBy },
    /// 202: accepted but not done (`USER_PAYING`).
    Accepted { code: String, message: String },
    /// 4xx: a refusal named by `code` (`HTTP_<status>` when the body has none).
    Business {
        status: StatusCode,
        code: String,
        message: String,
    },
}

/// Error codes that mean "try again with the same parameters": the outcome is unknown.
fn is_transient(code: &str) -> bool {
    matches!(
        code,
        "SYSTEM_ERROR"
            | "FREQUENCY_LIMITED"
            | "RATELIMIT_EXCEEDED"
            | "SERVICE_UNAVAILABLE"
            | "BANKERROR"
    )
}

const USER_AGENT_VALUE: &str = concat!(
    "paysim-gateway/",
    env!("CARGO_PKG_VERSION"),
    " (WeChat Pay APIv3)"
);

impl WechatpayAdapter {
    /// Parses the keys and checks the configuration. Errors name the offending setting.
    pub fn new(config: WechatpayConfig) -> Result<Self, AdapterError> {
        let alphanumeric = |b: u8| b.is_ascii_alphanumeric();
        check_setting("mchid", &config.mchid, alphanumeric)?;
        check_setting("appid", &config.appid, alphanumeric)?;
        check_setting("merchant_serial_no", &config.merchant_serial_no, |b| {
            b.is_ascii_hexdigit()
        })?;
        let mut verifying_keys = BTreeMap::new();
        match (
            config.platform_public_key_id.is_empty(),
            config.platform_public_key_pem.trim().is_empty(),
        ) {
            // Platform-certificate mode: every key comes from GET /v3/certificates.
            (true, true) => {}
            (false, false) => {
                check_setting(
                    "platform_public_key_id",
                    &config.platform_public_key_id,
                    |b| b.is_ascii_alphanumeric() || b == b'_',
                )?;
                verifying_keys.insert(
                    config.platform_public_key_id.clone(),
                    PlatformPublicKey::parse(&config.platform_public_key_pem)?,
                );
            }
            _ => {
                return Err(AdapterError::Invalid(
                    "wechatpay platform_public_key_pem and platform_public_key_id go together \
                     (both empty: platform-certificate mode)"
                        .into(),
                ))
            }
        }
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base_url.parse().map_err(|error| {
            AdapterError::Invalid(format!("wechatpay base_url {:?}: {error}", config.base_url))
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https"))
            || uri.authority().is_none()
            || uri.query().is_some()
        {
            return Err(AdapterError::Invalid(format!(
                "wechatpay base_url {:?} is not an absolute http(s) URL without a query",
                config.base_url
            )));
        }
        Ok(WechatpayAdapter {
            merchant_key: MerchantPrivateKey::parse(&config.merchant_private_key_pem)?,
            verifying_keys: RwLock::new(verifying_keys),
            apiv3_key: ApiV3Key::parse(&config.apiv3_key)?,
            mchid: config.mchid,
            appid: config.appid,
            merchant_serial_no: config.merchant_serial_no,
            platform_public_key_id: config.platform_public_key_id,
            base_url,
            clock: ReferenceClock::new(),
        })
    }

    // -------------------------------------------------------------- requests

    /// A signed request: the signature covers the method, the path and query exactly as sent
    /// (a path prefix of `base_url` included), the timestamp in seconds, the nonce and the
    /// exact body bytes.
    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        self.clock.observe(context.now_ms);
        let nonce = context.nonce.as_str();
        if nonce.is_empty() || nonce.len() > 32 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(AdapterError::Invalid(
                "the request nonce must be 1 to 32 letters or digits".into(),
            ));
        }
        let uri: Uri = format!("{}{path_and_query}", self.base_url)
            .parse()
            .map_err(|error| AdapterError::Invalid(format!("wechatpay request URL: {error}")))?;
        let signed_url = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |path| path.as_str().to_owned());
        let timestamp = context.now_ms.div_euclid(1000).to_string();
        let message = sign::request_message(method.as_str(), &signed_url, &timestamp, nonce, &body);
        let signature = self.merchant_key.sign(&message)?;
        let authorization = sign::authorization(
            &self.mchid,
            nonce,
            &signature,
            &timestamp,
            &self.merchant_serial_no,
        );
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONTENT_TYPE, "application/json");
        // Tells WeChat Pay which key the gateway verifies with: the public key when configured
        // (during a switch, answers are then signed with it), else a known certificate.
        if let Some(serial) = self.preferred_serial()? {
            builder = builder.header("Wechatpay-Serial", serial);
        }
        builder
            .body(Bytes::from(body))
            .map_err(|error| AdapterError::Invalid(format!("wechatpay request: {error}")))
    }

    /// A POST with a compact JSON body.
    fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        let body = serde_json::to_vec(body)
            .map_err(|error| AdapterError::Invalid(format!("wechatpay body: {error}")))?;
        self.request(Method::POST, path, body, context)
    }

    fn get(
        &self,
        path_and_query: &str,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        self.request(Method::GET, path_and_query, Vec::new(), context)
    }

    // -------------------------------------------------------------- responses

    /// Opens an answer: HTTP status, then the signature (every answer but 5xx/429), then the
    /// error body of a refusal. Fails closed at every step.
    fn read(&self, api: Api, response: HttpResponse) -> Result<Reply, AdapterError> {
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(AdapterError::Unknown(format!(
                "{} answered HTTP {status}",
                api.name()
            )));
        }
        if !status.is_success() && !status.is_client_error() {
            return Err(AdapterError::Protocol(format!(
                "{} answered HTTP {status}",
                api.name()
            )));
        }
        let now_ms = self.clock.now_ms().ok_or_else(|| {
            AdapterError::Signature("no reference time to check the answer's timestamp".into())
        })?;
        let (parts, body) = response.into_parts();
        let signed_by =
            sign::verify_signed_headers(&parts.headers, &body, now_ms, &[&*self.keys()?])?;
        if status.is_success() && status != StatusCode::ACCEPTED {
            return Ok(Reply::Success { body, signed_by });
        }
        let error: wire::ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let code = error
            .code
            .filter(|code| !code.is_empty())
            .unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
        let message = error.message.unwrap_or_default();
        if is_transient(&code) {
            return Err(AdapterError::Unknown(format!(
                "{}: {code} {message}",
                api.name()
            )));
        }
        if status == StatusCode::ACCEPTED {
            return Ok(Reply::Accepted { code, message });
        }
        Ok(Reply::Business {
            status,
            code,
            message,
        })
    }

    /// The verifying keys, read-locked.
    fn keys(
        &self,
    ) -> Result<RwLockReadGuard<'_, BTreeMap<String, PlatformPublicKey>>, AdapterError> {
        self.verifying_keys
            .read()
            .map_err(|_| AdapterError::Protocol("wechatpay key store is poisoned".into()))
    }

    /// The `Wechatpay-Serial` a request names: the public key id, else a known certificate
    /// serial, else none.
    fn preferred_serial(&self) -> Result<Option<String>, AdapterError> {
        if !self.platform_public_key_id.is_empty() {
            return Ok(Some(self.platform_public_key_id.clone()));
        }
        Ok(self.keys()?.keys().next_back().cloned())
    }

    /// Opens, checks and learns the certificates of a `GET /v3/certificates` answer (see the
    /// module documentation).
    fn learn_certificates(&self, response: HttpResponse) -> Result<(), AdapterError> {
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(AdapterError::Unknown(format!(
                "certificates answered HTTP {status}"
            )));
        }
        if status != StatusCode::OK {
            return Err(AdapterError::Protocol(format!(
                "certificates answered HTTP {status}"
            )));
        }
        let now_ms = self.clock.now_ms().ok_or_else(|| {
            AdapterError::Signature("no reference time to check the answer's timestamp".into())
        })?;
        let (parts, body) = response.into_parts();
        let answer: wire::Certificates = serde_json::from_slice(&body)
            .map_err(|error| AdapterError::Protocol(format!("certificates: {error}")))?;
        let mut learnt = BTreeMap::new();
        for entry in &answer.data {
            let sealed = &entry.encrypt_certificate;
            if sealed.algorithm != "AEAD_AES_256_GCM" {
                return Err(AdapterError::Signature(format!(
                    "certificate {} algorithm {:?} is not AEAD_AES_256_GCM",
                    entry.serial_no, sealed.algorithm
                )));
            }
            let pem = self.apiv3_key.decrypt(
                &sealed.nonce,
                sealed.associated_data.as_deref().unwrap_or_default(),
                &sealed.ciphertext,
            )?;
            let certificate = sign::parse_certificate(&pem)?;
            if !certificate
                .serial_no
                .eq_ignore_ascii_case(entry.serial_no.trim_start_matches('0'))
            {
                return Err(AdapterError::Protocol(format!(
                    "certificate listed as {:?} has serial {}",
                    entry.serial_no, certificate.serial_no
                )));
            }
            // An expired certificate verifies nothing.
            if certificate.not_after_s.saturating_mul(1000) < now_ms {
                continue;
            }
            learnt.insert(certificate.serial_no, certificate.key);
        }
        // The answer is signed under one of the certificates it carries (or, in public-key
        // mode, under a key already held).
        sign::verify_signed_headers(&parts.headers, &body, now_ms, &[&learnt, &*self.keys()?])?;
        let mut keys = self
            .verifying_keys
            .write()
            .map_err(|_| AdapterError::Protocol("wechatpay key store is poisoned".into()))?;
        keys.extend(learnt);
        Ok(())
    }

    /// The verified transaction must be this merchant's and this order's.
    fn check_transaction(
        &self,
        order: &Order,
        transaction: &wire::Transaction,
    ) -> Result<(), AdapterError> {
        if transaction.out_trade_no.as_deref() != Some(order.id.as_str()) {
            return Err(AdapterError::Protocol(format!(
                "query answered for out_trade_no {:?}, not {}",
                transaction.out_trade_no, order.id
            )));
        }
        self.check_merchant(transaction.mchid.as_deref(), transaction.appid.as_deref())
            .map_err(AdapterError::Protocol)
    }

    /// `mchid` (when sent) and `appid` (when sent) must be the configured ones.
    fn check_merchant(&self, mchid: Option<&str>, appid: Option<&str>) -> Result<(), String> {
        if let Some(mchid) = mchid {
            if mchid != self.mchid {
                return Err(format!("for mchid {mchid:?}, not this merchant"));
            }
        }
        if let Some(appid) = appid {
            if appid != self.appid {
                return Err(format!("for appid {appid:?}, not the configured one"));
            }
        }
        Ok(())
    }

    /// The jsapi client parameters (JSAPI 调起支付): SHA256withRSA with the merchant key over
    /// `appId\ntimeStamp\nnonceStr\npackage\n`, `package` = `prepay_id=…`, `signType` RSA.
    fn jsapi_action(
        &self,
        prepay_id: &str,
        signed_by: &SignedBy,
    ) -> Result<serde_json::Value, AdapterError> {
        let nonce = client_nonce(signed_by, prepay_id);
        let package = format!("prepay_id={prepay_id}");
        let pay_sign = self.merchant_key.sign(&sign::lines(&[
            self.appid.as_bytes(),
            signed_by.timestamp.as_bytes(),
            nonce.as_bytes(),
            package.as_bytes(),
        ]))?;
        Ok(json!({
            "type": "jsapi",
            "prepay_id": prepay_id,
            "pay_params": {
                "appId": self.appid,
                "timeStamp": signed_by.timestamp,
                "nonceStr": nonce,
                "package": package,
                "signType": "RSA",
                "paySign": pay_sign,
            },
        }))
    }

    /// The app client parameters (App 调起支付): SHA256withRSA over
    /// `appid\ntimestamp\nnoncestr\nprepayid\n` (the bare prepay id), `package` `Sign=WXPay`.
    fn app_action(
        &self,
        prepay_id: &str,
        signed_by: &SignedBy,
    ) -> Result<serde_json::Value, AdapterError> {
        let nonce = client_nonce(signed_by, prepay_id);
        let sign = self.merchant_key.sign(&sign::lines(&[
            self.appid.as_bytes(),
            signed_by.timestamp.as_bytes(),
            nonce.as_bytes(),
            prepay_id.as_bytes(),
        ]))?;
        Ok(json!({
            "type": "app",
            "prepay_id": prepay_id,
            "pay_params": {
                "appid": self.appid,
                "partnerid": self.mchid,
                "prepayid": prepay_id,
                "package": "Sign=WXPay",
                "noncestr": nonce,
                "timestamp": signed_by.timestamp,
                "sign": sign,
            },
        }))
    }
}

/// A configured identifier: not empty, and only the bytes `allowed` admits (they end up
/// inside quoted header values).
fn check_setting(
    name: &str,
    value: &str,
    allowed: impl Fn(u8) -> bool,
) -> Result<(), AdapterError> {
    if value.is_empty() || !value.bytes().all(allowed) {
        return Err(AdapterError::Invalid(format!(
            "wechatpay {name} {value:?} is empty or has unexpected characters"
        )));
    }
    Ok(())
}

/// The `nonceStr` of client-side pay parameters: 32 hex digits of SHA-256 over the verified
/// answer's `Wechatpay-Nonce` and the prepay id. `parse_create` gets no nonce from the seam;
/// WeChat asks only for a random string of at most 32 characters, which this is, unique per
/// prepay id, and a pure function of the answer (a seeded run reproduces it).
/// `timeStamp` is the answer's verified `Wechatpay-Timestamp` for the same reason.
fn client_nonce(signed_by: &SignedBy, prepay_id: &str) -> String {
    let digest = Sha256::digest(sign::lines(&[
        signed_by.nonce.as_bytes(),
        prepay_id.as_bytes(),
    ]));
    hex::encode_upper(digest).chars().take(32).collect()
}

/// The prepay call of a payment method, and its path.
fn prepay_api(method: PaymentMethod) -> Result<(Api, &'static str), AdapterError> {
    match method {
        PaymentMethod::Qr => Ok((Api::Native, "/v3/pay/transactions/native")),
        PaymentMethod::Jsapi => Ok((Api::Jsapi, "/v3/pay/transactions/jsapi")),
        PaymentMethod::App => Ok((Api::App, "/v3/pay/transactions/app")),
        PaymentMethod::Wap => Ok((Api::H5, "/v3/pay/transactions/h5")),
        PaymentMethod::Page | PaymentMethod::Barcode => Err(AdapterError::Invalid(format!(
            "WeChat Pay does not offer the {} method here",
            method.as_str()
        ))),
    }
}

/// Close for every method, reverse for payment-code orders.
fn close_api(order: &Order) -> Api {
    match order.method {
        PaymentMethod::Barcode => Api::Reverse,
        PaymentMethod::Qr
        | PaymentMethod::Page
        | PaymentMethod::Wap
        | PaymentMethod::App
        | PaymentMethod::Jsapi => Api::Close,
    }
}

/// Codepay refusals that are the payment's own definitive failure (the buyer's code, balance,
/// card or risk checks): nothing was paid and this order cannot be paid with that code, so
/// the order fails (`Created{Failed}`), as Alipay's barcode pay failures do. The v2 spellings
/// are accepted too. Request and configuration errors (`PARAM_ERROR`, `SIGN_ERROR`,
/// `NO_AUTH`, `APPID_MCHID_NOT_MATCH` …) stay `Rejected`.
fn is_codepay_failure(code: &str) -> bool {
    matches!(
        code,
        "PAYERROR"
            | "AUTH_CODE_INVALID"
            | "AUTH_CODE_ERROR"
            | "AUTH_CODE_EXPIRE"
            | "AUTHCODEEXPIRE"
            | "NOT_ENOUGH"
            | "NOTENOUGH"
            | "NOTSUPORTCARD"
            | "BUYER_MISMATCH"
            | "TRADE_ERROR"
            | "RULE_LIMIT"
            | "ACCOUNT_ERROR"
            | "USER_ACCOUNT_ABNORMAL"
    )
}

/// `out_trade_no`: 6 to 32 of `[0-9A-Za-z_-|*]` (generated order ids are 28).
fn out_trade_no(order: &Order) -> Result<&str, AdapterError> {
    let no = order.id.as_str();
    let valid = (6..=32).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'));
    if valid {
        Ok(no)
    } else {
        Err(AdapterError::Invalid(format!(
            "order id {} does not fit WeChat Pay's out_trade_no (6-32 characters)",
            order.id
        )))
    }
}

/// `out_refund_no`: at most 64 of `[0-9A-Za-z_-|*@]`.
fn out_refund_no(refund: &Refund) -> Result<&str, AdapterError> {
    let no = refund.id.as_str();
    let valid = (1..=64).contains(&no.len())
        && no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'));
    if valid {
        Ok(no)
    } else {
        Err(AdapterError::Invalid(format!(
            "refund id {} does not fit WeChat Pay's out_refund_no",
            refund.id
        )))
    }
}

/// At most `max_chars` characters: `description` (127) and `reason` (80) are shown to the
/// buyer; a longer gateway subject is cut rather than the order refused.
fn truncate_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

fn required<'a>(api: Api, field: &str, value: Option<&'a str>) -> Result<&'a str, AdapterError> {
    value
        .filter(|value| !value.is_empty())
        .ok_or_else(|| AdapterError::Protocol(format!("{} answer without {field}", api.name())))
}

fn json_body<T: serde::de::DeserializeOwned>(api: Api, body: &[u8]) -> Result<T, AdapterError> {
    serde_json::from_slice(body)
        .map_err(|error| AdapterError::Protocol(format!("{} answer: {error}", api.name())))
}

fn rejected(code: String, message: String) -> AdapterError {
    AdapterError::Rejected { code, message }
}

fn require_cny(order: &Order) -> Result<(), AdapterError> {
    match order.amount.currency() {
        Currency::Cny => Ok(()),
        other @ (Currency::Hkd | Currency::Usd) => Err(AdapterError::Invalid(format!(
            "WeChat Pay (domestic) settles CNY only, not {other}"
        ))),
    }
}

/// What a verified transaction reports.
fn transaction_status(transaction: &wire::Transaction) -> Result<PaymentStatus, AdapterError> {
    match transaction.trade_state.as_deref() {
        // REFUND: paid, then (partly) refunded — the payment was captured; the refunds live
        // on their own records.
        Some("SUCCESS" | "REFUND") => paid_status(transaction),
        // ACCEPT (SDK enums: received, awaiting debit) has not moved money yet.
        Some("NOTPAY" | "USERPAYING" | "ACCEPT") => Ok(PaymentStatus::Pending),
        Some("CLOSED" | "REVOKED") => Ok(PaymentStatus::Closed),
        Some("PAYERROR") => Ok(PaymentStatus::Failed {
            reason: format!(
                "PAYERROR: {}",
                transaction.trade_state_desc.as_deref().unwrap_or_default()
            ),
        }),
        other => Err(AdapterError::Protocol(format!(
            "unknown trade_state {other:?}"
        ))),
    }
}

/// `Paid` from a transaction: `transaction_id` and `amount.total` are required, the time is
/// best effort (the service falls back to its clock).
fn paid_status(transaction: &wire::Transaction) -> Result<PaymentStatus, AdapterError> {
    let channel_trade_no = transaction
        .transaction_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| AdapterError::Protocol("a payment without transaction_id".into()))?
        .to_owned();
    let amount = transaction.amount.as_ref();
    let amount = wire::amount(
        "amount.total",
        amount.and_then(|amount| amount.total),
        amount.and_then(|amount| amount.currency.as_deref()),
    )?;
    let paid_at_ms = transaction.success_time.as_deref().and_then(|text| {
        let parsed = wire::parse_rfc3339(text);
        if parsed.is_none() {
            tracing::warn!(
                text,
                "unreadable WeChat Pay success_time; using the gateway clock"
            );
        }
        parsed
    });
    Ok(PaymentStatus::Paid {
        channel_trade_no,
        amount,
        paid_at_ms,
    })
}

/// What a verified refund reports (`status` of create/query, `refund_status` of a
/// notification). A success for another amount than the refund's is `Abnormal`: the money
/// moved, but not as booked.
fn refund_status(
    refund: Option<&Refund>,
    reply: &wire::RefundReply,
    status: Option<&str>,
) -> Result<RefundStatus, AdapterError> {
    match status {
        Some("SUCCESS") => {
            if let Some(refund) = refund {
                let reported = reply.amount.as_ref();
                if let Some(refund_fen) = reported.and_then(|amount| amount.refund) {
                    let reported = wire::amount(
                        "amount.refund",
                        Some(refund_fen),
                        reported.and_then(|amount| amount.currency.as_deref()),
                    )?;
                    if reported != refund.amount {
                        return Ok(RefundStatus::Abnormal {
                            reason: format!(
                                "WeChat Pay reports {reported} refunded for a refund of {}",
                                refund.amount
                            ),
                        });
                    }
                }
            }
            Ok(RefundStatus::Succeeded {
                channel_refund_no: reply.refund_id.clone().filter(|id| !id.is_empty()),
            })
        }
        Some("PROCESSING") => Ok(RefundStatus::Pending),
        Some("ABNORMAL") => Ok(RefundStatus::Abnormal {
            reason: "WeChat Pay reports the refund ABNORMAL (the buyer's account cannot \
                     receive it; handle it in the merchant portal)"
                .into(),
        }),
        Some("CLOSED") => Ok(RefundStatus::Failed {
            reason: "WeChat Pay closed the refund".into(),
        }),
        other => Err(AdapterError::Protocol(format!(
            "unknown refund status {other:?}"
        ))),
    }
}

/// A method parameter the order must carry (jsapi `openid`, wap `client_ip`).
fn method_param<'a>(
    value: Option<&'a str>,
    name: &str,
    method: PaymentMethod,
) -> Result<&'a str, AdapterError> {
    value
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| {
            AdapterError::Invalid(format!(
                "WeChat Pay {} payments need method_params.{name}",
                method.as_str()
            ))
        })
}

impl ChannelAdapter for WechatpayAdapter {
    fn channel(&self) -> Channel {
        Channel::Wechatpay
    }

    fn supports(&self, method: PaymentMethod) -> bool {
        match method {
            PaymentMethod::Qr
            | PaymentMethod::Jsapi
            | PaymentMethod::App
            | PaymentMethod::Wap
            | PaymentMethod::Barcode => true,
            PaymentMethod::Page => false,
        }
    }

    fn plan_create(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<CreatePlan, AdapterError> {
        require_cny(order)?;
        if order.method == PaymentMethod::Barcode {
            return self.plan_codepay(order, context).map(CreatePlan::Call);
        }
        let (api, path) = prepay_api(order.method)?;
        let params = &order.method_params;
        let payer = match api {
            Api::Jsapi => Some(wire::Payer {
                openid: method_param(params.openid.as_deref(), "openid", order.method)?,
            }),
            Api::Native
            | Api::App
            | Api::H5
            | Api::Codepay
            | Api::Query
            | Api::Close
            | Api::Reverse
            | Api::Refund
            | Api::RefundQuery => None,
        };
        let scene_info = match api {
            Api::H5 => Some(wire::SceneInfo {
                payer_client_ip: method_param(
                    params.client_ip.as_deref(),
                    "client_ip",
                    order.method,
                )?,
                h5_info: wire::H5Info { kind: "Wap" },
            }),
            Api::Native
            | Api::Jsapi
            | Api::App
            | Api::Codepay
            | Api::Query
            | Api::Close
            | Api::Reverse
            | Api::Refund
            | Api::RefundQuery => None,
        };
        let body = wire::Prepay {
            appid: &self.appid,
            mchid: &self.mchid,
            description: truncate_chars(&order.subject, 127),
            out_trade_no: out_trade_no(order)?,
            time_expire: wire::beijing_rfc3339(order.expires_at_ms)?,
            notify_url: &context.notify_url,
            amount: wire::PrepayAmount {
                total: fen::to_i64(order.amount),
                currency: "CNY",
            },
            payer,
            scene_info,
        };
        self.post(path, &body, context).map(CreatePlan::Call)
    }

    fn parse_create(&self, order: &Order, response: HttpResponse) -> Result<Created, AdapterError> {
        if order.method == PaymentMethod::Barcode {
            return self.parse_codepay(order, response);
        }
        let (api, _) = prepay_api(order.method)?;
        let (body, signed_by) = match self.read(api, response)? {
            Reply::Success { body, signed_by } => (body, signed_by),
            Reply::Accepted { code, message } => {
                return Err(AdapterError::Unknown(format!(
                    "{}: 202 {code} {message}",
                    api.name()
                )))
            }
            // The out_trade_no is already taken (paid, or ordered with other parameters):
            // what that trade did is for the query to say, not a reason to fail the order.
            Reply::Business { code, message, .. }
                if matches!(code.as_str(), "ORDERPAID" | "OUT_TRADE_NO_USED") =>
            {
                return Err(AdapterError::Unknown(format!(
                    "{}: {code} {message}",
                    api.name()
                )))
            }
            Reply::Business { code, message, .. } => return Err(rejected(code, message)),
        };
        let reply: wire::PrepayReply = json_body(api, &body)?;
        let buyer_action = match api {
            Api::Native => json!({
                "type": "qr_code",
                "code_url": required(api, "code_url", reply.code_url.as_deref())?,
            }),
            Api::Jsapi => self.jsapi_action(
                required(api, "prepay_id", reply.prepay_id.as_deref())?,
                &signed_by,
            )?,
            Api::App => self.app_action(
                required(api, "prepay_id", reply.prepay_id.as_deref())?,
                &signed_by,
            )?,
            Api::H5 => {
                let h5_url = required(api, "h5_url", reply.h5_url.as_deref())?;
                // WeChat sends the buyer back to `redirect_url` (URL-encoded, appended to
                // h5_url) after the cashier.
                let url = match order
                    .method_params
                    .return_url
                    .as_deref()
                    .filter(|url| !url.is_empty())
                {
                    Some(return_url) => {
                        let separator = if h5_url.contains('?') { '&' } else { '?' };
                        let encoded: String =
                            form_urlencoded::byte_serialize(return_url.as_bytes()).collect();
                        format!("{h5_url}{separator}redirect_url={encoded}")
                    }
                    None => h5_url.to_owned(),
                };
                json!({ "type": "redirect", "url": url })
            }
            Api::Codepay
            | Api::Query
            | Api::Close
            | Api::Reverse
            | Api::Refund
            | Api::RefundQuery => {
                return Err(AdapterError::Protocol(format!(
                    "{} is not a prepay call",
                    api.name()
                )))
            }
        };
        Ok(Created {
            buyer_action,
            status: PaymentStatus::Pending,
        })
    }

    fn build_query(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        let mchid: String = form_urlencoded::byte_serialize(self.mchid.as_bytes()).collect();
        self.get(
            &format!(
                "/v3/pay/transactions/out-trade-no/{}?mchid={mchid}",
                out_trade_no(order)?
            ),
            context,
        )
    }

    fn parse_query(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<PaymentStatus, AdapterError> {
        match self.read(Api::Query, response)? {
            Reply::Success { body, .. } => {
                let transaction: wire::Transaction = json_body(Api::Query, &body)?;
                self.check_transaction(order, &transaction)?;
                transaction_status(&transaction)
            }
            Reply::Accepted { code, message } => Err(AdapterError::Unknown(format!(
                "query: 202 {code} {message}"
            ))),
            // The order never reached WeChat Pay (a prepay that was lost on the way).
            Reply::Business { status, code, .. }
                if status == StatusCode::NOT_FOUND
                    || matches!(code.as_str(), "ORDER_NOT_EXIST" | "ORDERNOTEXIST") =>
            {
                Ok(PaymentStatus::NotFound)
            }
            Reply::Business { code, message, .. } => Err(rejected(code, message)),
        }
    }

    fn build_close(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        let no = out_trade_no(order)?;
        match close_api(order) {
            // A payment-code order is reversed (撤销): it closes an unpaid trade and returns
            // the money of a paid one, which is what the official flow asks for once the
            // buyer has not confirmed in time.
            Api::Reverse => self.post(
                &format!("/v3/pay/transactions/out-trade-no/{no}/reverse"),
                &wire::Reverse {
                    mchid: &self.mchid,
                    appid: &self.appid,
                },
                context,
            ),
            _ => self.post(
                &format!("/v3/pay/transactions/out-trade-no/{no}/close"),
                &wire::Close { mchid: &self.mchid },
                context,
            ),
        }
    }

    /// Close answers 204 with an empty (signed) body. Closing a closed order answers 204
    /// again or `ORDER_CLOSED`. A paid order cannot be closed; APIv3 documents no string code
    /// for that refusal (the troubleshooting guide lists numeric codes for 订单已支付, v2 and
    /// community reports say `ORDERPAID`, some answers come as `INVALID_REQUEST`), and the
    /// payment-code flow answers 202 `USER_PAYING`: all are `Pending`, so the service queries
    /// and books whatever happened.
    ///
    /// Reverse (payment-code orders) maps the same way: a 2xx means the trade is revoked
    /// (unpaid: closed; paid: the money went back to the buyer) — closed for the merchant
    /// either way; `USER_PAYING` (正在支付中不能发起撤销) is `Pending`, and an already
    /// reversed trade (`ORDER_REVERSED`, v2 `ORDERREVERSED`) is `Closed`.
    fn parse_close(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<PaymentStatus, AdapterError> {
        match self.read(close_api(order), response)? {
            Reply::Success { .. } => Ok(PaymentStatus::Closed),
            Reply::Accepted { .. } => Ok(PaymentStatus::Pending),
            Reply::Business {
                status,
                code,
                message,
            } => match code.as_str() {
                "ORDER_CLOSED" | "ORDER_REVERSED" | "ORDERREVERSED" => Ok(PaymentStatus::Closed),
                "ORDER_NOT_EXIST" | "ORDERNOTEXIST" => Ok(PaymentStatus::NotFound),
                "ORDERPAID" | "USER_PAYING" | "USERPAYING" | "INVALID_REQUEST" => {
                    Ok(PaymentStatus::Pending)
                }
                _ if status == StatusCode::NOT_FOUND => Ok(PaymentStatus::NotFound),
                _ => Err(rejected(code, message)),
            },
        }
    }

    fn build_refund(
        &self,
        order: &Order,
        refund: &Refund,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        require_cny(order)?;
        let body = wire::RefundCreate {
            out_trade_no: out_trade_no(order)?,
            out_refund_no: out_refund_no(refund)?,
            reason: refund
                .reason
                .as_deref()
                .filter(|reason| !reason.is_empty())
                .map(|reason| truncate_chars(reason, 80)),
            notify_url: &context.notify_url,
            amount: wire::RefundCreateAmount {
                refund: fen::to_i64(refund.amount),
                total: fen::to_i64(order.amount),
                currency: "CNY",
            },
        };
        self.post("/v3/refund/domestic/refunds", &body, context)
    }

    /// 200 carries the refund (usually `PROCESSING`). A refusal (`NOT_ENOUGH`,
    /// `RESOURCE_NOT_EXISTS`, `USER_ACCOUNT_ABNORMAL`, `PARAM_ERROR`, `INVALID_REQUEST` …)
    /// moved no money: `Rejected`, and the service fails the refund. `SYSTEM_ERROR` and rate
    /// limits are `Unknown`: the official advice is to retry under the same out_refund_no.
    fn parse_refund(
        &self,
        order: &Order,
        refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError> {
        self.parse_refund_reply(Api::Refund, order, refund, response)
    }

    fn build_refund_query(
        &self,
        _order: &Order,
        refund: &Refund,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        self.get(
            &format!("/v3/refund/domestic/refunds/{}", out_refund_no(refund)?),
            context,
        )
    }

    /// The same mapping as the refund answer. `RESOURCE_NOT_EXISTS` (404: WeChat never got
    /// this out_refund_no) is `Rejected`, which leaves the refund pending: only the merchant
    /// retrying the refund can change that, never a silent release of the reservation.
    fn parse_refund_query(
        &self,
        order: &Order,
        refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError> {
        self.parse_refund_reply(Api::RefundQuery, order, refund, response)
    }

    /// A WeChat Pay notification: headers verified exactly like an answer (a known key id or
    /// certificate serial, else `UnknownKey`; ±5 minutes, no signature test, RSA over `TIMESTAMP\nNONCE\nBODY\n`), then the
    /// resource opened with the APIv3 key, then the merchant checked. Any failure refuses
    /// the notification and WeChat resends it.
    fn verify_notification(
        &self,
        request: &HttpRequest,
        now_ms: UnixMillis,
    ) -> Result<Notification, AdapterError> {
        self.clock.observe(now_ms);
        sign::verify_signed_headers(request.headers(), request.body(), now_ms, &[&*self.keys()?])?;
        let notify: wire::Notify = serde_json::from_slice(request.body())
            .map_err(|error| AdapterError::Protocol(format!("notification: {error}")))?;
        if let Some(resource_type) = notify.resource_type.as_deref() {
            if resource_type != "encrypt-resource" {
                return Err(AdapterError::Protocol(format!(
                    "notification resource_type {resource_type:?}"
                )));
            }
        }
        let resource = &notify.resource;
        if resource.algorithm != "AEAD_AES_256_GCM" {
            return Err(AdapterError::Signature(format!(
                "notification resource algorithm {:?} is not AEAD_AES_256_GCM",
                resource.algorithm
            )));
        }
        let plaintext = self.apiv3_key.decrypt(
            &resource.nonce,
            resource.associated_data.as_deref().unwrap_or_default(),
            &resource.ciphertext,
        )?;
        let original_type = resource.original_type.as_deref();
        let not_ours = |why: String| {
            AdapterError::Signature(format!(
                "notification {}: {why}",
                notify.id.as_deref().unwrap_or_default()
            ))
        };
        match notify.event_type.as_str() {
            // Basic payments notify only on success.
            "TRANSACTION.SUCCESS" => {
                if original_type.is_some_and(|kind| kind != "transaction") {
                    return Err(AdapterError::Protocol(format!(
                        "TRANSACTION.SUCCESS carries a {original_type:?} resource"
                    )));
                }
                let transaction: wire::Transaction = serde_json::from_slice(&plaintext)
                    .map_err(|error| AdapterError::Protocol(format!("transaction: {error}")))?;
                // The resource is authentic, but it must be about this merchant and app.
                if transaction.mchid.as_deref() != Some(self.mchid.as_str())
                    || transaction.appid.as_deref() != Some(self.appid.as_str())
                {
                    return Err(not_ours(format!(
                        "for mchid {:?} / appid {:?}, not this merchant",
                        transaction.mchid, transaction.appid
                    )));
                }
                if transaction.trade_state.as_deref() != Some("SUCCESS") {
                    return Err(AdapterError::Protocol(format!(
                        "TRANSACTION.SUCCESS with trade_state {:?}",
                        transaction.trade_state
                    )));
                }
                let out_trade_no = transaction
                    .out_trade_no
                    .as_deref()
                    .ok_or_else(|| AdapterError::Protocol("no out_trade_no".into()))?;
                let order_id = OrderId::parse(out_trade_no)
                    .map_err(|error| AdapterError::Protocol(format!("out_trade_no: {error}")))?;
                Ok(Notification::Payment {
                    order_id,
                    status: paid_status(&transaction)?,
                })
            }
            event @ ("REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED") => {
                if original_type.is_some_and(|kind| kind != "refund") {
                    return Err(AdapterError::Protocol(format!(
                        "{event} carries a {original_type:?} resource"
                    )));
                }
                let reply: wire::RefundReply = serde_json::from_slice(&plaintext)
                    .map_err(|error| AdapterError::Protocol(format!("refund: {error}")))?;
                if reply.mchid.as_deref() != Some(self.mchid.as_str()) {
                    return Err(not_ours(format!(
                        "for mchid {:?}, not this merchant",
                        reply.mchid
                    )));
                }
                let refund_status_text = reply.refund_status.as_deref();
                if event.strip_prefix("REFUND.") != refund_status_text {
                    return Err(AdapterError::Protocol(format!(
                        "{event} with refund_status {refund_status_text:?}"
                    )));
                }
                let out_refund_no = reply
                    .out_refund_no
                    .as_deref()
                    .ok_or_else(|| AdapterError::Protocol("no out_refund_no".into()))?;
                let refund_id = RefundId::parse(out_refund_no)
                    .map_err(|error| AdapterError::Protocol(format!("out_refund_no: {error}")))?;
                // The amount is checked against the refund by the service, which has it.
                let reported = reply.amount.as_ref();
                let reported_amount = reported
                    .and_then(|amount| amount.refund)
                    .map(|refund_fen| {
                        wire::amount(
                            "amount.refund",
                            Some(refund_fen),
                            reported.and_then(|amount| amount.currency.as_deref()),
                        )
                    })
                    .transpose()?;
                Ok(Notification::Refund {
                    refund_id,
                    status: refund_status(None, &reply, refund_status_text)?,
                    reported_amount,
                })
            }
            other => Err(AdapterError::Protocol(format!(
                "unsupported event_type {other:?}"
            ))),
        }
    }

    /// Official rule: received → HTTP 200 or 204 with no body needed (204 here); failed →
    /// 4xx/5xx with `{"code":"FAIL","message":"失败"}`, and WeChat resends on its schedule.
    fn acknowledge(&self, accepted: bool) -> HttpResponse {
        if accepted {
            let mut response = HttpResponse::new(Bytes::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            return response;
        }
        let mut response = HttpResponse::new(Bytes::from_static(
            r#"{"code":"FAIL","message":"失败"}"#.as_bytes(),
        ));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        response
    }

    /// `GET /v3/certificates?algorithm_type=RSA`, signed like every request.
    fn build_key_refresh(
        &self,
        context: &AdapterContext,
    ) -> Option<Result<HttpRequest, AdapterError>> {
        Some(self.get("/v3/certificates?algorithm_type=RSA", context))
    }

    fn apply_key_refresh(&self, response: HttpResponse) -> Result<(), AdapterError> {
        self.learn_certificates(response)
    }
}

impl WechatpayAdapter {
    /// `POST /v3/pay/transactions/codepay` with the scanned `payer.auth_code`.
    fn plan_codepay(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        let body = wire::Codepay {
            appid: &self.appid,
            mchid: &self.mchid,
            description: truncate_chars(&order.subject, 127),
            out_trade_no: out_trade_no(order)?,
            payer: wire::CodepayPayer {
                auth_code: method_param(
                    order.method_params.auth_code.as_deref(),
                    "auth_code",
                    order.method,
                )?,
            },
            amount: wire::PrepayAmount {
                total: fen::to_i64(order.amount),
                currency: "CNY",
            },
            scene_info: wire::CodepaySceneInfo {
                store_info: wire::StoreInfo {
                    out_id: truncate_chars(order.merchant_id.as_str(), 32),
                },
            },
        };
        self.post("/v3/pay/transactions/codepay", &body, context)
    }

    /// The codepay answer: 200 is the transaction (normally `SUCCESS`: paid at once), 202
    /// `USER_PAYING` means the buyer is confirming on the phone (pending: the scheduler
    /// queries, then reverses), a payment failure fails the order, `ORDERPAID` /
    /// `OUT_TRADE_NO_USED` are for the query to settle.
    fn parse_codepay(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<Created, AdapterError> {
        let api = Api::Codepay;
        let barcode = |transaction_id: Option<&str>| {
            json!({
                "type": "barcode",
                "transaction_id": transaction_id.filter(|id| !id.is_empty()),
            })
        };
        match self.read(api, response)? {
            Reply::Success { body, .. } => {
                let transaction: wire::Transaction = json_body(api, &body)?;
                self.check_transaction(order, &transaction)?;
                let status = match transaction.trade_state.as_deref() {
                    // A 200 is the payment; `trade_state` confirms it when present.
                    None => paid_status(&transaction)?,
                    Some(_) => transaction_status(&transaction)?,
                };
                Ok(Created {
                    buyer_action: barcode(transaction.transaction_id.as_deref()),
                    status,
                })
            }
            Reply::Accepted { .. } => Ok(Created {
                buyer_action: barcode(None),
                status: PaymentStatus::Pending,
            }),
            Reply::Business { code, message, .. }
                if matches!(code.as_str(), "ORDERPAID" | "OUT_TRADE_NO_USED") =>
            {
                Err(AdapterError::Unknown(format!(
                    "{}: {code} {message}",
                    api.name()
                )))
            }
            Reply::Business { code, message, .. } if is_codepay_failure(&code) => Ok(Created {
                buyer_action: barcode(None),
                status: PaymentStatus::Failed {
                    reason: format!("{code}: {message}"),
                },
            }),
            Reply::Business { code, message, .. } => Err(rejected(code, message)),
        }
    }

    /// Refund create and refund query answer the same Refund object.
    fn parse_refund_reply(
        &self,
        api: Api,
        order: &Order,
        refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError> {
        match self.read(api, response)? {
            Reply::Success { body, .. } => {
                let reply: wire::RefundReply = json_body(api, &body)?;
                if reply.out_refund_no.as_deref() != Some(refund.id.as_str()) {
                    return Err(AdapterError::Protocol(format!(
                        "{} answered for out_refund_no {:?}, not {}",
                        api.name(),
                        reply.out_refund_no,
                        refund.id
                    )));
                }
                if let Some(out_trade_no) = reply.out_trade_no.as_deref() {
                    if out_trade_no != order.id.as_str() {
                        return Err(AdapterError::Protocol(format!(
                            "{} answered for out_trade_no {out_trade_no:?}, not {}",
                            api.name(),
                            order.id
                        )));
                    }
                }
                if let Some(mchid) = reply.mchid.as_deref() {
                    if mchid != self.mchid {
                        return Err(AdapterError::Protocol(format!(
                            "{} answered for mchid {mchid:?}",
                            api.name()
                        )));
                    }
                }
                refund_status(Some(refund), &reply, reply.status.as_deref())
            }
            Reply::Accepted { code, message } => Err(AdapterError::Unknown(format!(
                "{}: 202 {code} {message}",
                api.name()
            ))),
            Reply::Business { code, message, .. } => Err(rejected(code, message)),
        }
    }
}

#[cfg(test)]
mod tests;
