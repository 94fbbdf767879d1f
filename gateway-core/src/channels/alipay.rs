//! The Alipay channel adapter (OpenAPI classic gateway `gateway.do`, RSA2), sans-IO: builds
//! signed request values, verifies and maps response values, verifies notifications.
//!
//! Written from Alipay's documentation (see `shared/protocols/alipay.md` and the official
//! pages it cites), independently of the simulator's mock gateway (architecture invariant 1).
//!
//! | gateway method | Alipay API | how |
//! | --- | --- | --- |
//! | qr | `alipay.trade.precreate` | call; the QR content comes back |
//! | page / wap | `alipay.trade.page.pay` / `alipay.trade.wap.pay` | local: a signed GET URL of the gateway |
//! | app | `alipay.trade.app.pay` | local: a signed order string for the app SDK |
//! | barcode | `alipay.trade.pay` (`scene=bar_code`) | call; may settle at once |
//!
//! Every response is trusted only after its node's exact bytes verify with the Alipay public
//! key; anything unsigned, badly signed or malformed fails closed and the order is settled by a
//! later query instead (architecture invariant 9).
//!
//! Both of Alipay's key modes are supported: *public-key mode* (the Alipay public key is
//! configured as is) and *public-key-certificate mode* ([`AlipayCertificates`]): every request
//! then also carries the signed common parameters `app_cert_sn` and `alipay_root_cert_sn`,
//! responses must name the configured Alipay certificate in `alipay_cert_sn` when they carry
//! it, and the Alipay public key is the Alipay certificate's.

mod cert;
mod sign;
mod wire;

use bytes::Bytes;
use determinism::{HttpRequest, HttpResponse, UnixMillis};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Uri};
use serde::Serialize;
use serde_json::json;

use crate::channel::{
    AdapterContext, AdapterError, ChannelAdapter, CreatePlan, Created, Notification, PaymentStatus,
    RefundStatus,
};
use crate::ids::{OrderId, RefundId};
use crate::model::{Order, Refund};
use crate::money::{yuan, Currency};
use crate::state::{Channel, PaymentMethod};

use self::cert::CertificateMode;
use self::sign::{sign_content, AlipayPublicKey, AppPrivateKey};
use self::wire::Node;

/// What the Alipay adapter needs to know. Validated once by [`AlipayAdapter::new`].
#[derive(Clone)]
pub struct AlipayConfig {
    pub app_id: String,
    /// The app private key: PKCS#1 or PKCS#8 PEM, or the bare base64 Alipay's key tool prints.
    pub app_private_key_pem: String,
    /// The Alipay public key: SubjectPublicKeyInfo PEM or bare base64. Public-key mode only:
    /// ignored (and may be empty) when `certificates` is set, whose Alipay certificate then
    /// supplies the key.
    pub alipay_public_key_pem: String,
    /// Full URL of `gateway.do`, e.g. `http://127.0.0.1:8081/alipay/gateway.do`.
    pub gateway_url: String,
    /// When set, notifications must name this seller (`seller_id`), and trades are created for
    /// it.
    pub seller_id: Option<String>,
    /// Public-key-certificate mode when set; public-key mode when `None`.
    pub certificates: Option<AlipayCertificates>,
}

/// The three files of Alipay's public-key-certificate mode, as PEM text. Read once by
/// [`AlipayAdapter::new`], which refuses certificates that do not parse and an app
/// certificate that does not certify the app private key's public key.
#[derive(Debug, Clone)]
pub struct AlipayCertificates {
    /// `appCertPublicKey_<app_id>.crt`: the app certificate (its SN is sent as `app_cert_sn`).
    pub app_cert_pem: String,
    /// `alipayCertPublicKey_RSA2.crt`: the Alipay certificate, whose key verifies responses
    /// and notifications (the first certificate when the file holds a chain).
    pub alipay_cert_pem: String,
    /// `alipayRootCert.crt`: the root bundle (a PEM bundle; its RSA-family certificates make
    /// `alipay_root_cert_sn`, the others — the SM2 root — are skipped).
    pub alipay_root_cert_pem: String,
}

impl std::fmt::Debug for AlipayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayConfig")
            .field("app_id", &self.app_id)
            .field("app_private_key_pem", &"<redacted>")
            .field("alipay_public_key_pem", &"..")
            .field("gateway_url", &self.gateway_url)
            .field("seller_id", &self.seller_id)
            .field(
                "certificates",
                &self.certificates.as_ref().map(|_| "<certificates>"),
            )
            .finish()
    }
}

/// The Alipay [`ChannelAdapter`]. Keys are parsed once, at construction.
#[derive(Debug)]
pub struct AlipayAdapter {
    app_id: String,
    gateway_url: String,
    seller_id: Option<String>,
    private_key: AppPrivateKey,
    /// In certificate mode, the Alipay certificate's key.
    alipay_public_key: AlipayPublicKey,
    /// Certificate mode: the SNs computed at construction.
    certificates: Option<CertificateMode>,
}

/// The Alipay APIs this adapter calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Precreate,
    PagePay,
    WapPay,
    AppPay,
    Pay,
    Query,
    Close,
    Cancel,
    Refund,
    RefundQuery,
}

impl Api {
    fn method(self) -> &'static str {
        match self {
            Api::Precreate => "alipay.trade.precreate",
            Api::PagePay => "alipay.trade.page.pay",
            Api::WapPay => "alipay.trade.wap.pay",
            Api::AppPay => "alipay.trade.app.pay",
            Api::Pay => "alipay.trade.pay",
            Api::Query => "alipay.trade.query",
            Api::Close => "alipay.trade.close",
            Api::Cancel => "alipay.trade.cancel",
            Api::Refund => "alipay.trade.refund",
            Api::RefundQuery => "alipay.trade.fastpay.refund.query",
        }
    }

    /// The response node: the method with `.` → `_`, plus `_response`.
    fn node(self) -> &'static str {
        match self {
            Api::Precreate => "alipay_trade_precreate_response",
            Api::PagePay => "alipay_trade_page_pay_response",
            Api::WapPay => "alipay_trade_wap_pay_response",
            Api::AppPay => "alipay_trade_app_pay_response",
            Api::Pay => "alipay_trade_pay_response",
            Api::Query => "alipay_trade_query_response",
            Api::Close => "alipay_trade_close_response",
            Api::Cancel => "alipay_trade_cancel_response",
            Api::Refund => "alipay_trade_refund_response",
            Api::RefundQuery => "alipay_trade_fastpay_refund_query_response",
        }
    }

    /// Only the APIs that produce a trade take `notify_url`.
    fn creates_trade(self) -> bool {
        match self {
            Api::Precreate | Api::PagePay | Api::WapPay | Api::AppPay | Api::Pay => true,
            Api::Query | Api::Close | Api::Cancel | Api::Refund | Api::RefundQuery => false,
        }
    }
}

/// The old failure node some gateway errors still use instead of the method node.
const ERROR_NODE: &str = "error_response";

/// A verified response node, classified by its `code`. Codes that mean "unknown outcome"
/// (20000, 40005, `ACQ.SYSTEM_ERROR`) and definitive refusals of the request itself (40001,
/// 40002, 40003, 40006, 20001 …) never get here: they are `AdapterError::Unknown` and
/// `AdapterError::Rejected`.
#[derive(Debug)]
enum Reply {
    /// `10000`: the call succeeded; the business fields say what happened.
    Success(Node),
    /// `10003` (pay only): the trade exists, the buyer has still to confirm.
    InProcess(Node),
    /// `40004`: a business failure named by `sub_code`.
    Business {
        sub_code: String,
        message: String,
        node: Node,
    },
}

impl AlipayAdapter {
    /// Parses the keys (and, in certificate mode, the certificates, computing their SNs) and
    /// checks the configuration. Errors name the offending setting.
    pub fn new(config: AlipayConfig) -> Result<Self, AdapterError> {
        if config.app_id.trim().is_empty() {
            return Err(AdapterError::Invalid("alipay app_id is empty".into()));
        }
        let uri: Uri = config.gateway_url.parse().map_err(|error| {
            AdapterError::Invalid(format!(
                "alipay gateway_url {:?}: {error}",
                config.gateway_url
            ))
        })?;
        if uri.scheme().is_none() || uri.authority().is_none() {
            return Err(AdapterError::Invalid(format!(
                "alipay gateway_url {:?} is not an absolute http(s) URL",
                config.gateway_url
            )));
        }
        let private_key = AppPrivateKey::parse(&config.app_private_key_pem)?;
        // With certificates the key comes from the Alipay certificate; a configured public
        // key is then ignored, not compared (the certificate is what Alipay rotates).
        let (alipay_public_key, certificates) = match &config.certificates {
            Some(files) => {
                let (mode, key) = CertificateMode::load(files, &private_key)?;
                (key, Some(mode))
            }
            None => (AlipayPublicKey::parse(&config.alipay_public_key_pem)?, None),
        };
        Ok(AlipayAdapter {
            private_key,
            alipay_public_key,
            certificates,
            app_id: config.app_id,
            gateway_url: config.gateway_url,
            seller_id: config.seller_id.filter(|seller| !seller.is_empty()),
        })
    }

    // -------------------------------------------------------------- requests

    /// Common parameters plus `biz_content`, sorted by key, with `sign` appended last. The
    /// signature covers every parameter except `sign` (so `sign_type` is signed), empty
    /// values left out (none are sent). In certificate mode the common parameters include
    /// `app_cert_sn` and `alipay_root_cert_sn`, signed like the others; page/wap URLs and app
    /// order strings are built from these parameters too.
    fn signed_params(
        &self,
        api: Api,
        biz_content: &impl Serialize,
        context: &AdapterContext,
        return_url: Option<&str>,
    ) -> Result<Vec<(&'static str, String)>, AdapterError> {
        let biz_content = serde_json::to_string(biz_content)
            .map_err(|error| AdapterError::Invalid(format!("biz_content: {error}")))?;
        let mut params: Vec<(&'static str, String)> = vec![
            ("app_id", self.app_id.clone()),
            ("biz_content", biz_content),
            ("charset", "utf-8".to_owned()),
            ("format", "JSON".to_owned()),
            ("method", api.method().to_owned()),
            ("sign_type", "RSA2".to_owned()),
            ("timestamp", wire::beijing_time(context.now_ms)?),
            ("version", "1.0".to_owned()),
        ];
        if api.creates_trade() {
            params.push(("notify_url", context.notify_url.clone()));
        }
        if let Some(return_url) = return_url {
            params.push(("return_url", return_url.to_owned()));
        }
        if let Some(certificates) = &self.certificates {
            params.push(("app_cert_sn", certificates.app_cert_sn.clone()));
            params.push((
                "alipay_root_cert_sn",
                certificates.alipay_root_cert_sn.clone(),
            ));
        }
        params.retain(|(_, value)| !value.is_empty());
        params.sort_unstable();
        let content = sign_content(
            params.iter().map(|(key, value)| (*key, value.as_str())),
            &["sign"],
        );
        let signature = self.private_key.sign(&content)?;
        params.push(("sign", signature));
        Ok(params)
    }

    /// The server-to-server shape: common parameters and `sign` in the query string,
    /// `biz_content` in an `application/x-www-form-urlencoded` body.
    fn post(&self, params: &[(&'static str, String)]) -> Result<HttpRequest, AdapterError> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (key, value) in params {
            if *key == "biz_content" {
                body.append_pair(key, value);
            } else {
                query.append_pair(key, value);
            }
        }
        http::Request::builder()
            .method(Method::POST)
            .uri(self.gateway_with(&query.finish()))
            .header(
                CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(Bytes::from(body.finish()))
            .map_err(|error| AdapterError::Invalid(format!("alipay request: {error}")))
    }

    fn gateway_with(&self, query: &str) -> String {
        let separator = if self.gateway_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{separator}{query}", self.gateway_url)
    }

    fn encode(params: &[(&'static str, String)]) -> String {
        let mut encoded = form_urlencoded::Serializer::new(String::new());
        for (key, value) in params {
            encoded.append_pair(key, value);
        }
        encoded.finish()
    }

    // -------------------------------------------------------------- responses

    /// Opens a response: HTTP status, the node's exact text, its signature, then the node's
    /// fields and `code`. Fails closed at every step.
    fn read(&self, api: Api, order: &Order, response: HttpResponse) -> Result<Reply, AdapterError> {
        let status = response.status();
        if status.is_server_error() {
            return Err(AdapterError::Unknown(format!(
                "{} answered HTTP {status}",
                api.method()
            )));
        }
        if !status.is_success() {
            return Err(AdapterError::Protocol(format!(
                "{} answered HTTP {status}",
                api.method()
            )));
        }
        let not_json = || AdapterError::Unknown(format!("{} answer is not JSON", api.method()));
        let text = std::str::from_utf8(response.body()).map_err(|_| not_json())?;
        let members = wire::top_level_members(text).map_err(|_| not_json())?;

        let mut nodes = members
            .iter()
            .filter(|(key, _)| key == api.node() || key == ERROR_NODE);
        let node_text = match (nodes.next(), nodes.next()) {
            (Some((_, text)), None) => *text,
            (None, _) => {
                return Err(AdapterError::Protocol(format!(
                    "no {} in the answer",
                    api.node()
                )))
            }
            (Some(_), Some(_)) => {
                return Err(AdapterError::Protocol(format!(
                    "several response nodes in the {} answer",
                    api.method()
                )))
            }
        };
        let mut signs = members.iter().filter(|(key, _)| key == "sign");
        let sign_text = match (signs.next(), signs.next()) {
            (Some((_, text)), None) => *text,
            (None, _) => {
                return Err(AdapterError::Signature(format!(
                    "the {} answer is unsigned",
                    api.method()
                )))
            }
            (Some(_), Some(_)) => {
                return Err(AdapterError::Signature(format!(
                    "the {} answer has several signs",
                    api.method()
                )))
            }
        };
        let sign: String = serde_json::from_str(sign_text)
            .map_err(|_| AdapterError::Signature("sign is not a JSON string".into()))?;
        if let Some(certificates) = &self.certificates {
            check_alipay_cert_sn(api, &members, &certificates.alipay_cert_sn)?;
        }
        self.alipay_public_key.verify(node_text.as_bytes(), &sign)?;

        let node: Node = serde_json::from_str(node_text)
            .map_err(|error| AdapterError::Protocol(format!("{} node: {error}", api.node())))?;
        if let Some(out_trade_no) = node.out_trade_no.as_deref() {
            if !out_trade_no.is_empty() && out_trade_no != order.id.as_str() {
                return Err(AdapterError::Protocol(format!(
                    "{} answer is about out_trade_no {out_trade_no:?}, not {}",
                    api.method(),
                    order.id
                )));
            }
        }
        classify(api, node)
    }

    /// `Paid` from a node that reports a payment; `paid_at` is the field with the payment
    /// time (`gmt_payment`, `send_pay_date`).
    fn paid(
        order: &Order,
        node: &Node,
        paid_at: Option<&str>,
    ) -> Result<PaymentStatus, AdapterError> {
        paid_status(
            node.trade_no.as_deref(),
            node.total_amount.as_deref(),
            paid_at,
            order.amount.currency(),
        )
    }
}

/// Certificate mode: a response names the Alipay certificate that signed it in a top-level
/// `alipay_cert_sn` (before or after `sign`; it is not covered by the signature). When present
/// and not empty it must be the configured certificate's SN. A different SN means Alipay
/// rotated its certificate: the new one would have to be fetched with
/// `alipay.open.app.alipaycert.download` and checked against the root, which this adapter
/// does not do (out of scope) — the answer is refused as unverifiable and the operator
/// installs the new certificate. Absent (or empty, as the Java SDK reads it), the configured
/// certificate's key decides alone.
fn check_alipay_cert_sn(
    api: Api,
    members: &[(String, &str)],
    expected: &str,
) -> Result<(), AdapterError> {
    let mut sns = members.iter().filter(|(key, _)| key == "alipay_cert_sn");
    let sn_text = match (sns.next(), sns.next()) {
        (None, _) => return Ok(()),
        (Some((_, text)), None) => *text,
        (Some(_), Some(_)) => {
            return Err(AdapterError::Signature(format!(
                "the {} answer has several alipay_cert_sn",
                api.method()
            )))
        }
    };
    let sn: String = serde_json::from_str(sn_text)
        .map_err(|_| AdapterError::Signature("alipay_cert_sn is not a JSON string".into()))?;
    if sn.is_empty() || sn == expected {
        return Ok(());
    }
    Err(AdapterError::Signature(format!(
        "the {} answer is signed by Alipay certificate {sn:?}, not the configured {expected:?} \
         (install Alipay's current certificate)",
        api.method()
    )))
}

/// Sorts a verified node by its `code`.
fn classify(api: Api, node: Node) -> Result<Reply, AdapterError> {
    let code = node.status.code.clone();
    let sub_code = node.status.sub_code.clone().unwrap_or_default();
    // Some gateways prefix business codes with `aop.` (`aop.ACQ.SYSTEM_ERROR`).
    let sub_code = sub_code
        .strip_prefix("aop.")
        .unwrap_or(&sub_code)
        .to_owned();
    let message = node
        .status
        .sub_msg
        .clone()
        .or_else(|| node.status.msg.clone())
        .unwrap_or_default();
    match code.as_str() {
        "10000" => Ok(Reply::Success(node)),
        "10003" => Ok(Reply::InProcess(node)),
        "40004" if sub_code == "ACQ.SYSTEM_ERROR" => Err(AdapterError::Unknown(format!(
            "{}: ACQ.SYSTEM_ERROR {message}",
            api.method()
        ))),
        "40004" => Ok(Reply::Business {
            sub_code,
            message,
            node,
        }),
        // 20000: service unavailable, result unknown. 40005: rate limited, not executed;
        // either way a query (or a retry under the same ids) decides.
        "20000" | "40005" => Err(AdapterError::Unknown(format!(
            "{}: {code} {sub_code} {message}",
            api.method()
        ))),
        // 20001, 40001, 40002, 40003, 40006 and anything undocumented: the request itself was
        // refused and did nothing.
        _ => Err(AdapterError::Rejected {
            code: if sub_code.is_empty() { code } else { sub_code },
            message,
        }),
    }
}

fn rejected(sub_code: String, message: String) -> AdapterError {
    AdapterError::Rejected {
        code: sub_code,
        message,
    }
}

/// `Paid` from the fields Alipay reports a payment with; the trade number and the amount are
/// required, the time is best effort (the service falls back to its clock).
fn paid_status(
    trade_no: Option<&str>,
    total_amount: Option<&str>,
    paid_at: Option<&str>,
    currency: Currency,
) -> Result<PaymentStatus, AdapterError> {
    let channel_trade_no = trade_no
        .filter(|trade_no| !trade_no.is_empty())
        .ok_or_else(|| AdapterError::Protocol("a payment without trade_no".into()))?
        .to_owned();
    let total_amount = total_amount
        .ok_or_else(|| AdapterError::Protocol("a payment without total_amount".into()))?;
    let amount = wire::amount("total_amount", total_amount, currency)?;
    let paid_at_ms = paid_at.and_then(|text| {
        let parsed = wire::parse_beijing_time(text);
        if parsed.is_none() {
            tracing::warn!(
                text,
                "unreadable Alipay payment time; using the gateway clock"
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

fn require_cny(order: &Order) -> Result<(), AdapterError> {
    match order.amount.currency() {
        Currency::Cny => Ok(()),
        other @ (Currency::Hkd | Currency::Usd) => Err(AdapterError::Invalid(format!(
            "Alipay settles CNY only, not {other}"
        ))),
    }
}

impl ChannelAdapter for AlipayAdapter {
    fn channel(&self) -> Channel {
        Channel::Alipay
    }

    fn supports(&self, method: PaymentMethod) -> bool {
        match method {
            PaymentMethod::Qr
            | PaymentMethod::Page
            | PaymentMethod::Wap
            | PaymentMethod::App
            | PaymentMethod::Barcode => true,
            PaymentMethod::Jsapi => false,
        }
    }

    fn plan_create(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<CreatePlan, AdapterError> {
        require_cny(order)?;
        let (api, product_code) = match order.method {
            PaymentMethod::Qr => (Api::Precreate, "FACE_TO_FACE_PAYMENT"),
            PaymentMethod::Page => (Api::PagePay, "FAST_INSTANT_TRADE_PAY"),
            PaymentMethod::Wap => (Api::WapPay, "QUICK_WAP_WAY"),
            PaymentMethod::App => (Api::AppPay, "QUICK_MSECURITY_PAY"),
            PaymentMethod::Barcode => (Api::Pay, "FACE_TO_FACE_PAYMENT"),
            PaymentMethod::Jsapi => {
                return Err(AdapterError::Invalid(
                    "Alipay does not offer the jsapi method here".into(),
                ))
            }
        };
        let auth_code = match order.method {
            PaymentMethod::Barcode => Some(
                order
                    .method_params
                    .auth_code
                    .as_deref()
                    .filter(|code| !code.trim().is_empty())
                    .ok_or_else(|| {
                        AdapterError::Invalid("barcode payments need auth_code".into())
                    })?,
            ),
            PaymentMethod::Qr
            | PaymentMethod::Page
            | PaymentMethod::Wap
            | PaymentMethod::App
            | PaymentMethod::Jsapi => None,
        };
        let biz_content = wire::TradeCreate {
            out_trade_no: order.id.as_str(),
            total_amount: yuan::format(order.amount),
            subject: &order.subject,
            product_code,
            time_expire: wire::beijing_time(order.expires_at_ms)?,
            scene: auth_code.map(|_| "bar_code"),
            auth_code,
            // Documented as a biz field of the face-to-face APIs only.
            seller_id: match api {
                Api::Precreate | Api::Pay => self.seller_id.as_deref(),
                Api::PagePay
                | Api::WapPay
                | Api::AppPay
                | Api::Query
                | Api::Close
                | Api::Cancel
                | Api::Refund
                | Api::RefundQuery => None,
            },
        };
        let return_url = match api {
            Api::PagePay | Api::WapPay => order
                .method_params
                .return_url
                .as_deref()
                .filter(|url| !url.is_empty()),
            Api::Precreate
            | Api::AppPay
            | Api::Pay
            | Api::Query
            | Api::Close
            | Api::Cancel
            | Api::Refund
            | Api::RefundQuery => None,
        };
        let params = self.signed_params(api, &biz_content, context, return_url)?;
        let pending = |buyer_action| {
            CreatePlan::Local(Created {
                buyer_action,
                status: PaymentStatus::Pending,
            })
        };
        match api {
            Api::PagePay | Api::WapPay => Ok(pending(json!({
                "type": "redirect",
                "url": self.gateway_with(&Self::encode(&params)),
            }))),
            Api::AppPay => Ok(pending(json!({
                "type": "app",
                "order_string": Self::encode(&params),
            }))),
            Api::Precreate
            | Api::Pay
            | Api::Query
            | Api::Close
            | Api::Cancel
            | Api::Refund
            | Api::RefundQuery => self.post(&params).map(CreatePlan::Call),
        }
    }

    fn parse_create(&self, order: &Order, response: HttpResponse) -> Result<Created, AdapterError> {
        match order.method {
            PaymentMethod::Qr => match self.read(Api::Precreate, order, response)? {
                Reply::Success(node) => {
                    let qr_code = node
                        .qr_code
                        .filter(|qr_code| !qr_code.is_empty())
                        .ok_or_else(|| {
                            AdapterError::Protocol("precreate without qr_code".into())
                        })?;
                    Ok(Created {
                        buyer_action: json!({ "type": "qr_code", "qr_code": qr_code }),
                        status: PaymentStatus::Pending,
                    })
                }
                Reply::InProcess(_) => Err(AdapterError::Protocol(
                    "precreate answered 10003, which only pay uses".into(),
                )),
                // Already paid under this out_trade_no: the query books it.
                Reply::Business {
                    sub_code, message, ..
                } if sub_code == "ACQ.TRADE_HAS_SUCCESS" => Err(AdapterError::Unknown(format!(
                    "precreate: {sub_code} {message}"
                ))),
                Reply::Business {
                    sub_code, message, ..
                } => Err(rejected(sub_code, message)),
            },
            PaymentMethod::Barcode => {
                let barcode =
                    |trade_no: Option<&str>| json!({ "type": "barcode", "trade_no": trade_no });
                match self.read(Api::Pay, order, response)? {
                    Reply::Success(node) => Ok(Created {
                        buyer_action: barcode(node.trade_no.as_deref()),
                        status: Self::paid(order, &node, node.gmt_payment.as_deref())?,
                    }),
                    // The buyer confirms on the phone; the scheduler queries, then cancels.
                    Reply::InProcess(node) => Ok(Created {
                        buyer_action: barcode(node.trade_no.as_deref()),
                        status: PaymentStatus::Pending,
                    }),
                    Reply::Business {
                        sub_code, message, ..
                    } if sub_code == "ACQ.TRADE_HAS_SUCCESS" => {
                        Err(AdapterError::Unknown(format!("pay: {sub_code} {message}")))
                    }
                    // Every other business failure of pay is definitive (official F2F demo):
                    // bad or expired code, balance, risk, limits.
                    Reply::Business {
                        sub_code,
                        message,
                        node,
                    } => Ok(Created {
                        buyer_action: barcode(node.trade_no.as_deref()),
                        status: PaymentStatus::Failed {
                            reason: format!("{sub_code}: {message}"),
                        },
                    }),
                }
            }
            PaymentMethod::Page
            | PaymentMethod::Wap
            | PaymentMethod::App
            | PaymentMethod::Jsapi => Err(AdapterError::Protocol(format!(
                "{} orders are created locally; there is no answer to parse",
                order.method.as_str()
            ))),
        }
    }

    fn build_query(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        let biz_content = wire::TradeRef {
            out_trade_no: order.id.as_str(),
        };
        self.post(&self.signed_params(Api::Query, &biz_content, context, None)?)
    }

    fn parse_query(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<PaymentStatus, AdapterError> {
        match self.read(Api::Query, order, response)? {
            Reply::Success(node) => match node.trade_status.as_deref() {
                Some("TRADE_SUCCESS" | "TRADE_FINISHED") => {
                    Self::paid(order, &node, node.send_pay_date.as_deref())
                }
                Some("WAIT_BUYER_PAY") => Ok(PaymentStatus::Pending),
                // Unpaid and closed (timeout, close, cancel). A paid trade that was fully
                // refunded also reads TRADE_CLOSED; the service never reopens a paid order.
                Some("TRADE_CLOSED") => Ok(PaymentStatus::Closed),
                other => Err(AdapterError::Protocol(format!(
                    "query: unknown trade_status {other:?}"
                ))),
            },
            Reply::InProcess(_) => Err(AdapterError::Protocol(
                "query answered 10003, which only pay uses".into(),
            )),
            // precreate/page/wap/app trades exist only once the buyer scanned or logged in.
            Reply::Business { sub_code, .. } if sub_code == "ACQ.TRADE_NOT_EXIST" => {
                Ok(PaymentStatus::NotFound)
            }
            Reply::Business {
                sub_code, message, ..
            } => Err(rejected(sub_code, message)),
        }
    }

    /// `alipay.trade.close`, or `alipay.trade.cancel` for barcode orders: cancel is what the
    /// official face-to-face flow uses for a payment whose outcome is unknown (it closes an
    /// unpaid trade and returns the money of a paid one).
    fn build_close(
        &self,
        order: &Order,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        let biz_content = wire::TradeRef {
            out_trade_no: order.id.as_str(),
        };
        self.post(&self.signed_params(close_api(order), &biz_content, context, None)?)
    }

    fn parse_close(
        &self,
        order: &Order,
        response: HttpResponse,
    ) -> Result<PaymentStatus, AdapterError> {
        let api = close_api(order);
        let retry = |node: &Node| node.retry_flag.as_deref() == Some("Y");
        match self.read(api, order, response)? {
            // cancel: `retry_flag=Y` means the cancel did not take effect yet.
            Reply::Success(node) if api == Api::Cancel && retry(&node) => {
                Err(AdapterError::Unknown("cancel answered retry_flag=Y".into()))
            }
            // close: closed. cancel: `action=close` (nothing was paid) or `action=refund`
            // (the payment was returned to the buyer): closed for the merchant either way.
            Reply::Success(node) => {
                if node.action.as_deref() == Some("refund") {
                    tracing::info!(order = %order.id, "Alipay cancel returned a payment to the buyer");
                }
                Ok(PaymentStatus::Closed)
            }
            Reply::InProcess(_) => Err(AdapterError::Protocol(format!(
                "{} answered 10003, which only pay uses",
                api.method()
            ))),
            Reply::Business {
                node,
                sub_code,
                message,
            } if api == Api::Cancel && retry(&node) => Err(AdapterError::Unknown(format!(
                "cancel: {sub_code} {message} with retry_flag=Y"
            ))),
            Reply::Business {
                sub_code,
                message,
                node: _,
            } => match sub_code.as_str() {
                "ACQ.TRADE_NOT_EXIST" => Ok(PaymentStatus::NotFound),
                "ACQ.TRADE_HAS_CLOSE" => Ok(PaymentStatus::Closed),
                // The trade moved on (paid, finished) or cannot be cancelled any more: the
                // service queries for the truth.
                "ACQ.TRADE_HAS_SUCCESS"
                | "ACQ.TRADE_HAS_FINISHED"
                | "ACQ.TRADE_STATUS_ERROR"
                | "ACQ.TRADE_CANCEL_TIME_OUT"
                | "ACQ.CANCEL_NOT_ALLOWED" => Ok(PaymentStatus::Pending),
                _ => Err(rejected(sub_code, message)),
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
        let biz_content = wire::RefundCreate {
            out_trade_no: order.id.as_str(),
            refund_amount: yuan::format(refund.amount),
            out_request_no: refund.id.as_str(),
            refund_reason: refund.reason.as_deref().filter(|reason| !reason.is_empty()),
        };
        self.post(&self.signed_params(Api::Refund, &biz_content, context, None)?)
    }

    fn parse_refund(
        &self,
        order: &Order,
        _refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError> {
        match self.read(Api::Refund, order, response)? {
            // 10000 only means "accepted"; `fund_change=Y` means this call moved the money.
            // `N` (a repeat of an earlier out_request_no, or still processing) is confirmed
            // by the refund query.
            Reply::Success(node) => match node.fund_change.as_deref() {
                Some("Y") => Ok(RefundStatus::Succeeded {
                    channel_refund_no: node.trade_no.filter(|trade_no| !trade_no.is_empty()),
                }),
                _ => Ok(RefundStatus::Pending),
            },
            Reply::InProcess(_) => Err(AdapterError::Protocol(
                "refund answered 10003, which only pay uses".into(),
            )),
            // The same out_request_no already exists with other parameters: what it did is
            // for the refund query to say, not a reason to release the reservation.
            Reply::Business {
                sub_code, message, ..
            } if sub_code == "ACQ.DISCORDANT_REPEAT_REQUEST" => Err(AdapterError::Unknown(
                format!("refund: {sub_code} {message}"),
            )),
            // ACQ.REASON_TRADE_REFUND_FEE_ERR, ACQ.TRADE_STATUS_ERROR, ACQ.TRADE_HAS_CLOSE,
            // ACQ.TRADE_NOT_EXIST, ACQ.SELLER_BALANCE_NOT_ENOUGH …: refused, nothing moved.
            Reply::Business {
                sub_code, message, ..
            } => Err(rejected(sub_code, message)),
        }
    }

    fn build_refund_query(
        &self,
        order: &Order,
        refund: &Refund,
        context: &AdapterContext,
    ) -> Result<HttpRequest, AdapterError> {
        let biz_content = wire::RefundRef {
            out_trade_no: order.id.as_str(),
            out_request_no: refund.id.as_str(),
        };
        self.post(&self.signed_params(Api::RefundQuery, &biz_content, context, None)?)
    }

    /// `refund_status=REFUND_SUCCESS` → succeeded. An absent `refund_status` is `Pending`:
    /// Alipay documents that 10000 only means the query ran, and that a refund it cannot
    /// report as successful was either not received or not (yet) executed — the two are
    /// indistinguishable here, and the official advice is to retry the refund under the same
    /// out_request_no. Failing it on this answer would release money that may still move.
    fn parse_refund_query(
        &self,
        order: &Order,
        refund: &Refund,
        response: HttpResponse,
    ) -> Result<RefundStatus, AdapterError> {
        match self.read(Api::RefundQuery, order, response)? {
            Reply::Success(node) => {
                if let Some(out_request_no) = node.out_request_no.as_deref() {
                    if !out_request_no.is_empty() && out_request_no != refund.id.as_str() {
                        return Err(AdapterError::Protocol(format!(
                            "refund query answered for out_request_no {out_request_no:?}, not {}",
                            refund.id
                        )));
                    }
                }
                match node.refund_status.as_deref() {
                    Some("REFUND_SUCCESS") => {
                        if let Some(text) = node.refund_amount.as_deref() {
                            let reported =
                                wire::amount("refund_amount", text, refund.amount.currency())?;
                            if reported != refund.amount {
                                return Ok(RefundStatus::Abnormal {
                                    reason: format!(
                                        "Alipay reports {reported} refunded for a refund of {}",
                                        refund.amount
                                    ),
                                });
                            }
                        }
                        Ok(RefundStatus::Succeeded {
                            channel_refund_no: node
                                .trade_no
                                .filter(|trade_no| !trade_no.is_empty()),
                        })
                    }
                    // No refund data: Alipay never received the refund (the request was lost,
                    // or refused before executing). Its documentation: a query that finds no
                    // refund means the refund did not succeed, and the merchant may send it
                    // again under the same out_request_no (which Alipay treats as the same
                    // refund, so a refund that did execute is answered, not repeated). Said as
                    // the channel not knowing the refund, like WeChat Pay's RESOURCE_NOT_EXISTS:
                    // the service then sends it again.
                    None | Some("") => Err(AdapterError::Rejected {
                        code: "REFUND_NOT_FOUND".to_owned(),
                        message: format!(
                            "alipay.trade.fastpay.refund.query knows no refund {}: it was never executed",
                            refund.id
                        ),
                    }),
                    Some(other) => Err(AdapterError::Protocol(format!(
                        "refund query: unknown refund_status {other:?}"
                    ))),
                }
            }
            Reply::InProcess(_) => Err(AdapterError::Protocol(
                "refund query answered 10003, which only pay uses".into(),
            )),
            Reply::Business {
                sub_code, message, ..
            } => Err(rejected(sub_code, message)),
        }
    }

    /// A `trade_status_sync` form POST. Verified before anything is read: RSA2 over the
    /// sorted, URL-decoded parameters without `sign`, `sign_type` and empty values (the
    /// official rule for payment notifications, `rsaCheckV1`); then `app_id` (and `seller_id`
    /// when configured) must be ours. In certificate mode notifications carry no certificate
    /// SN; the Alipay certificate's key verifies them.
    fn verify_notification(
        &self,
        request: &HttpRequest,
        _now_ms: UnixMillis,
    ) -> Result<Notification, AdapterError> {
        let params = notify_params(request.body())?;
        let get = |key: &str| {
            params
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.as_str())
                .filter(|value| !value.is_empty())
        };
        let sign =
            get("sign").ok_or_else(|| AdapterError::Signature("unsigned notification".into()))?;
        if let Some(sign_type) = get("sign_type") {
            if sign_type != "RSA2" {
                return Err(AdapterError::Signature(format!(
                    "sign_type {sign_type:?} is not accepted (RSA2 only)"
                )));
            }
        }
        let content = sign_content(
            params
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
            &["sign", "sign_type"],
        );
        self.alipay_public_key.verify(content.as_bytes(), sign)?;

        if get("app_id") != Some(self.app_id.as_str()) {
            return Err(AdapterError::Signature(format!(
                "notification for app_id {:?}, not this gateway's",
                get("app_id")
            )));
        }
        if let Some(seller_id) = self.seller_id.as_deref() {
            if get("seller_id") != Some(seller_id) {
                return Err(AdapterError::Signature(format!(
                    "notification for seller_id {:?}, not the configured seller",
                    get("seller_id")
                )));
            }
        }

        // A refund re-emits the trade's status with the refund's out_request_no (`out_biz_no`)
        // and the trade's refunded total (`refund_fee`); it reports that refund's success.
        if let (Some(out_biz_no), Some(_)) = (get("out_biz_no"), get("refund_fee")) {
            let refund_id = RefundId::parse(out_biz_no)
                .map_err(|error| AdapterError::Protocol(format!("out_biz_no: {error}")))?;
            // `refund_fee` is the trade's cumulative refunded total, not this refund's amount.
            return Ok(Notification::Refund {
                refund_id,
                status: RefundStatus::Succeeded {
                    channel_refund_no: get("trade_no").map(str::to_owned),
                },
                reported_amount: None,
            });
        }
        let out_trade_no =
            get("out_trade_no").ok_or_else(|| AdapterError::Protocol("no out_trade_no".into()))?;
        let order_id = OrderId::parse(out_trade_no)
            .map_err(|error| AdapterError::Protocol(format!("out_trade_no: {error}")))?;
        let status = match get("trade_status") {
            Some("TRADE_SUCCESS" | "TRADE_FINISHED") => paid_status(
                get("trade_no"),
                get("total_amount"),
                get("gmt_payment"),
                Currency::Cny,
            )?,
            Some("TRADE_CLOSED") => PaymentStatus::Closed,
            Some("WAIT_BUYER_PAY") => PaymentStatus::Pending,
            other => {
                return Err(AdapterError::Protocol(format!(
                    "unknown trade_status {other:?}"
                )))
            }
        };
        Ok(Notification::Payment { order_id, status })
    }

    /// Alipay resends until the answer is exactly the 7 bytes `success`.
    fn acknowledge(&self, accepted: bool) -> HttpResponse {
        let body: &'static [u8] = if accepted { b"success" } else { b"failure" };
        let mut response = HttpResponse::new(Bytes::from_static(body));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain;charset=utf-8"),
        );
        response
    }
}

fn close_api(order: &Order) -> Api {
    match order.method {
        PaymentMethod::Barcode => Api::Cancel,
        PaymentMethod::Qr
        | PaymentMethod::Page
        | PaymentMethod::Wap
        | PaymentMethod::App
        | PaymentMethod::Jsapi => Api::Close,
    }
}

/// The URL-decoded pairs of a form body. A key sent twice is refused: which value was signed
/// would be ambiguous.
fn notify_params(body: &[u8]) -> Result<Vec<(String, String)>, AdapterError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(body) {
        if params.iter().any(|(seen, _)| *seen == key) {
            return Err(AdapterError::Protocol(format!(
                "notification repeats parameter {key:?}"
            )));
        }
        params.push((key.into_owned(), value.into_owned()));
    }
    if params.is_empty() {
        return Err(AdapterError::Protocol("empty notification".into()));
    }
    Ok(params)
}

#[cfg(test)]
mod tests;
