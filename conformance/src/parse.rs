//! Loading a scenario file: TOML syntax (every syntax error, with recovery), then the shape of
//! each part separately (so one broken step does not hide the next), then meaning (unknown
//! channel, fault or state, impossible amount, a reference to an alias or step that does not
//! exist yet). Every problem comes back at once, each with file:line:column.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::catalogue::{self, CHANNELS};
use crate::diag::{Diagnostic, Locator};
use crate::model::{
    Answer, Buyer, Close, CreateOrder, Expect, Fault, Query, RawStep, Refund, Setup, Text,
    TransportFaultStep, WaitUntil,
};
use crate::text::{parse_amount, parse_duration};

/// Where the virtual clock starts unless `setup.start` says otherwise: 2026-01-01T00:00:00Z.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;
/// The merchant orders belong to unless a step names one.
pub const DEFAULT_MERCHANT: &str = "mch_sandbox";
/// The longest `advance = "until_idle"` runs before giving up (virtual time).
pub const IDLE_LIMIT_MS: i64 = 30 * 86_400_000;
/// The largest amount a scenario may use without declaring a refusal (10 million yuan).
const MAX_AMOUNT_MINOR: i64 = 1_000_000_000;

/// A loaded, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file as named to the loader.
    pub file: String,
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub tags: Vec<String>,
    pub setup: Setup,
    /// The channels wired (setup's, or all).
    pub channels: Vec<String>,
    pub start_ms: i64,
    pub channel_clock_skew_ms: i64,
    pub steps: Vec<Step>,
    /// The file's text, so reports can locate any span of it.
    pub source: String,
}

impl Scenario {
    /// 1-based (line, column) of a byte offset of the file.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        Locator::new(&self.file, &self.source).position(offset)
    }
}

/// One step, located.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based.
    pub number: usize,
    pub line: usize,
    pub column: usize,
    pub id: Option<String>,
    pub note: Option<String>,
    pub action: Action,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    CreateOrder(CreateOrder),
    Close(Close),
    Refund(Refund),
    Query(Query),
    Buyer(Buyer),
    Fault(Fault),
    TransportFault(TransportFaultStep),
    Advance(Advance),
    WaitUntil(WaitUntil),
    Expect(Box<Expect>),
}

impl Action {
    /// The action's key in the file.
    pub fn keyword(&self) -> &'static str {
        match self {
            Action::CreateOrder(_) => "create_order",
            Action::Close(_) => "close",
            Action::Refund(_) => "refund",
            Action::Query(_) => "query",
            Action::Buyer(_) => "buyer",
            Action::Fault(_) => "fault",
            Action::TransportFault(_) => "transport_fault",
            Action::Advance(_) => "advance",
            Action::WaitUntil(_) => "wait_until",
            Action::Expect(_) => "expect",
        }
    }

    /// Whether the step calls the gateway's API (so `expect.response` may name it).
    pub fn calls_gateway(&self) -> bool {
        matches!(
            self,
            Action::CreateOrder(_) | Action::Close(_) | Action::Refund(_) | Action::Query(_)
        )
    }
}

/// `advance = "2h"` or `advance = "until_idle"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    By(i64),
    /// Until no event is pending (every notification delivered or given up, every poll
    /// done), at most [`IDLE_LIMIT_MS`].
    UntilIdle,
}

const TOP_LEVEL_KEYS: [&str; 6] = ["name", "description", "seed", "tags", "setup", "step"];

/// Loads one scenario from its text. `file` is how diagnostics name it.
pub fn load(file: &str, text: &str) -> Result<Scenario, Vec<Diagnostic>> {
    let locator = Locator::new(file, text);
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        return Err(syntax_errors
            .iter()
            .map(|error| {
                let span = error.span().unwrap_or(0..0);
                locator.at(&span, error.message().trim_end().to_owned())
            })
            .collect());
    }
    let document_span = document.span();
    let document = document.into_inner();
    let mut checker = Checker::new(&locator);

    for (key, _) in document.iter() {
        if !TOP_LEVEL_KEYS.contains(&key.get_ref().as_ref()) {
            checker.error(
                &key.span(),
                format!(
                    "unknown key `{}`; a scenario has {}",
                    key.get_ref(),
                    TOP_LEVEL_KEYS.map(|k| format!("`{k}`")).join(", ")
                ),
            );
        }
    }
    let get = |name: &str| {
        document
            .iter()
            .find(|(key, _)| key.get_ref().as_ref() == name)
            .map(|(_, value)| value.clone())
    };
    let name: Option<Text> = checker.field(get("name"), "name", &document_span);
    let description: Option<Text> =
        checker.field(get("description"), "description", &document_span);
    let seed: Option<u64> = match get("seed") {
        Some(value) => checker.decode(value, "seed"),
        None => Some(1),
    };
    let tags: Vec<String> = match get("tags") {
        Some(value) => checker.decode(value, "tags").unwrap_or_default(),
        None => Vec::new(),
    };
    let setup: Setup = match get("setup") {
        Some(value) => checker.decode(value, "setup").unwrap_or_default(),
        None => Setup::default(),
    };
    for text in [&name, &description].into_iter().flatten() {
        if text.get_ref().trim().is_empty() {
            checker.error(&text.span(), "must not be empty");
        }
    }
    let (channels, start_ms, skew_ms) = checker.setup(&setup);

    let mut steps = Vec::new();
    match get("step") {
        None => checker.error(
            &(document_span.end..document_span.end),
            "a scenario needs at least one `[[step]]`".to_owned(),
        ),
        Some(value) => {
            let span = value.span();
            match value.into_inner() {
                DeValue::Array(items) if !items.is_empty() => {
                    for (index, item) in items.into_iter().enumerate() {
                        let item_span = item.span();
                        let raw: Option<RawStep> = checker.decode(item, "step");
                        if let Some(raw) = raw {
                            if let Some(step) =
                                checker.step(index.saturating_add(1), &item_span, raw, &channels)
                            {
                                steps.push(step);
                            }
                        }
                    }
                }
                _ => checker.error(&span, "`step` must be a list of tables: write `[[step]]`"),
            }
        }
    }
    checker.check_references(&steps);

    if !checker.diagnostics.is_empty() {
        checker.diagnostics.sort_by_key(|d| (d.line, d.column));
        return Err(checker.diagnostics);
    }
    let (Some(name), Some(description), Some(seed)) = (name, description, seed) else {
        return Err(vec![locator.at(&document_span, "incomplete scenario")]);
    };
    Ok(Scenario {
        file: file.to_owned(),
        name: name.into_inner(),
        description: description.into_inner(),
        seed,
        tags,
        setup,
        channels,
        start_ms,
        channel_clock_skew_ms: skew_ms,
        steps,
        source: text.to_owned(),
    })
}

/// What an alias stands for, as far as the file says.
#[derive(Debug, Clone)]
struct OrderAlias {
    channel: String,
    amount_minor: Option<i64>,
}

struct Checker<'a> {
    locator: &'a Locator<'a>,
    diagnostics: Vec<Diagnostic>,
    orders: BTreeMap<String, OrderAlias>,
    refunds: BTreeSet<String>,
    /// Step ids seen so far, with whether the step calls the gateway.
    step_ids: BTreeMap<String, bool>,
}

impl<'a> Checker<'a> {
    fn new(locator: &'a Locator<'a>) -> Self {
        Checker {
            locator,
            diagnostics: Vec::new(),
            orders: BTreeMap::new(),
            refunds: BTreeSet::new(),
            step_ids: BTreeMap::new(),
        }
    }

    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(self.locator.at(span, message));
    }

    fn decode<T: DeserializeOwned>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        what: &str,
    ) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(decoded) => Some(decoded),
            Err(error) => {
                let at = error.span().unwrap_or(span);
                self.error(&at, format!("{what}: {}", error.message().trim_end()));
                None
            }
        }
    }

    fn field<T: DeserializeOwned>(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
        name: &str,
        document: &Range<usize>,
    ) -> Option<T> {
        match value {
            Some(value) => self.decode(value, name),
            None => {
                self.error(
                    &(document.start..document.start),
                    format!("missing `{name}`"),
                );
                None
            }
        }
    }

    fn setup(&mut self, setup: &Setup) -> (Vec<String>, i64, i64) {
        let mut channels = Vec::new();
        for channel in &setup.channels {
            if CHANNELS.contains(&channel.get_ref().as_str()) {
                if !channels.contains(channel.get_ref()) {
                    channels.push(channel.get_ref().clone());
                }
            } else {
                self.unknown(&channel.span(), "channel", channel.get_ref(), &CHANNELS);
            }
        }
        if setup.channels.is_empty() {
            channels = CHANNELS.iter().map(|c| (*c).to_owned()).collect();
        }
        let start_ms = match &setup.start {
            Some(start) => match determinism::parse_rfc3339(start.get_ref()) {
                Ok(ms) => ms,
                Err(error) => {
                    self.error(&start.span(), format!("setup.start: {error}"));
                    DEFAULT_START_MS
                }
            },
            None => DEFAULT_START_MS,
        };
        let skew_ms = match &setup.channel_clock_skew {
            Some(skew) => match parse_duration(skew.get_ref()) {
                Ok(ms) if ms.abs() <= 86_400_000 => ms,
                Ok(_) => {
                    self.error(
                        &skew.span(),
                        "setup.channel_clock_skew: at most one day either way",
                    );
                    0
                }
                Err(error) => {
                    self.error(&skew.span(), format!("setup.channel_clock_skew: {error}"));
                    0
                }
            },
            None => 0,
        };
        for (channel, bps) in &setup.fees {
            if !CHANNELS.contains(&channel.get_ref().as_str()) {
                self.unknown(&channel.span(), "channel", channel.get_ref(), &CHANNELS);
            } else if *bps > 10_000 {
                self.error(
                    &channel.span(),
                    format!("setup.fees: {bps} basis points is more than 100%"),
                );
            }
        }
        const KEY_MODES: [&str; 2] = ["public_key", "certificates"];
        for (what, keys) in [
            ("wechatpay_keys mode", &setup.wechatpay_keys),
            ("alipay_keys mode", &setup.alipay_keys),
        ] {
            if let Some(keys) = keys {
                if !KEY_MODES.contains(&keys.get_ref().as_str()) {
                    self.unknown(&keys.span(), what, keys.get_ref(), &KEY_MODES);
                }
            }
        }
        let gateway = &setup.gateway;
        let locator = self.locator;
        let key_span = |key: &str| locator.find(key);
        if let Some(policy) = &gateway.late_payment_policy {
            if !["hold", "refund"].contains(&policy.as_str()) {
                self.error(
                    &key_span("late_payment_policy"),
                    format!("setup.gateway.late_payment_policy: `{policy}` is neither `hold` nor `refund`"),
                );
            }
        }
        if let Some(seconds) = gateway.default_expiry_seconds {
            if !(60..=1_296_000).contains(&seconds) {
                self.error(
                    &key_span("default_expiry_seconds"),
                    format!(
                        "setup.gateway.default_expiry_seconds: {seconds} is outside 60 … 1296000"
                    ),
                );
            }
        }
        for (name, schedule) in [
            ("poll_schedule_seconds", &gateway.poll_schedule_seconds),
            (
                "barcode_poll_schedule_seconds",
                &gateway.barcode_poll_schedule_seconds,
            ),
        ] {
            if let Some(schedule) = schedule {
                if schedule.is_empty()
                    || schedule.iter().any(|s| *s <= 0)
                    || schedule.windows(2).any(|w| w.first() >= w.get(1))
                {
                    self.error(
                        &key_span(name),
                        format!(
                            "setup.gateway.{name}: a non-empty list of increasing positive seconds"
                        ),
                    );
                }
            }
        }
        (channels, start_ms, skew_ms)
    }

    fn unknown(&mut self, span: &Range<usize>, what: &str, value: &str, known: &[&str]) {
        self.error(
            span,
            format!(
                "unknown {what} `{value}`; expected one of {}",
                known
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    fn step(
        &mut self,
        number: usize,
        span: &Range<usize>,
        raw: RawStep,
        channels: &[String],
    ) -> Option<Step> {
        let (line, column) = self.locator.position(span.start);
        let mut actions = Vec::new();
        let RawStep {
            id,
            note,
            create_order,
            close,
            refund,
            query,
            buyer,
            fault,
            transport_fault,
            advance,
            wait_until,
            expect,
        } = raw;
        if let Some(a) = create_order {
            actions.push(Action::CreateOrder(a));
        }
        if let Some(a) = close {
            actions.push(Action::Close(a));
        }
        if let Some(a) = refund {
            actions.push(Action::Refund(a));
        }
        if let Some(a) = query {
            actions.push(Action::Query(a));
        }
        if let Some(a) = buyer {
            actions.push(Action::Buyer(a));
        }
        if let Some(a) = fault {
            actions.push(Action::Fault(a));
        }
        if let Some(a) = transport_fault {
            actions.push(Action::TransportFault(a));
        }
        if let Some(a) = advance {
            let parsed = match a.get_ref().as_str() {
                "until_idle" => Some(Advance::UntilIdle),
                text => match parse_duration(text) {
                    Ok(ms) if ms > 0 => Some(Advance::By(ms)),
                    Ok(_) => {
                        self.error(&a.span(), "advance: time only moves forward");
                        None
                    }
                    Err(error) => {
                        self.error(&a.span(), format!("advance: {error}, or `until_idle`"));
                        None
                    }
                },
            };
            actions.push(Action::Advance(parsed.unwrap_or(Advance::By(1))));
        }
        if let Some(a) = wait_until {
            actions.push(Action::WaitUntil(a));
        }
        if let Some(a) = expect {
            actions.push(Action::Expect(Box::new(a)));
        }
        if actions.len() != 1 {
            let found: Vec<&str> = actions.iter().map(Action::keyword).collect();
            self.error(
                span,
                if found.is_empty() {
                    format!("step {number} has no action; give one of `create_order`, `close`, `refund`, `query`, `buyer`, `fault`, `transport_fault`, `advance`, `wait_until`, `expect`")
                } else {
                    format!(
                        "step {number} has {} actions ({}); split it into one step each",
                        found.len(),
                        found.join(", ")
                    )
                },
            );
            return None;
        }
        let action = actions.pop()?;
        if let Some(id) = &id {
            if self.step_ids.contains_key(id.get_ref()) {
                self.error(
                    &id.span(),
                    format!("step id `{}` is used twice", id.get_ref()),
                );
            }
        }
        self.check_action(&action, channels, span);
        if let Some(id) = &id {
            self.step_ids
                .insert(id.get_ref().clone(), action.calls_gateway());
        }
        Some(Step {
            number,
            line,
            column,
            id: id.map(Spanned::into_inner),
            note,
            action,
        })
    }

    /// The order alias, which must be defined by an earlier step.
    fn order(&mut self, alias: &Text) -> Option<OrderAlias> {
        let found = self.orders.get(alias.get_ref()).cloned();
        if found.is_none() {
            self.error(
                &alias.span(),
                format!(
                    "order `{}` is not created by an earlier `create_order` step",
                    alias.get_ref()
                ),
            );
        }
        found
    }

    fn refund_alias(&mut self, alias: &Text) {
        if !self.refunds.contains(alias.get_ref()) {
            self.error(
                &alias.span(),
                format!(
                    "refund `{}` is not requested by an earlier `refund` step",
                    alias.get_ref()
                ),
            );
        }
    }

    fn amount(&mut self, text: &Text, refusal_declared: bool) -> Option<i64> {
        match parse_amount(text.get_ref()) {
            Ok(0) if !refusal_declared => {
                self.error(
                    &text.span(),
                    "an amount of 0.00 is impossible; declare the refusal you expect with `status`",
                );
                None
            }
            Ok(minor) if minor > MAX_AMOUNT_MINOR && !refusal_declared => {
                self.error(&text.span(), format!("`{}` is beyond any channel's single-payment limit; declare the refusal you expect with `status`", text.get_ref()));
                None
            }
            Ok(minor) => Some(minor),
            Err(error) if !refusal_declared => {
                self.error(
                    &text.span(),
                    format!(
                        "{error}; declare the refusal you expect with `status` to test bad input"
                    ),
                );
                None
            }
            Err(_) => None,
        }
    }

    fn state(&mut self, text: &Text, known: &[&str], what: &str) {
        if !known.contains(&text.get_ref().as_str()) {
            self.unknown(&text.span(), what, text.get_ref(), known);
        }
    }

    /// The channel a fault or exchange check is about: explicit, or the only one wired.
    fn channel(
        &mut self,
        explicit: Option<&Text>,
        channels: &[String],
        at: &Range<usize>,
    ) -> Option<String> {
        match explicit {
            Some(channel) if channels.contains(channel.get_ref()) => {
                Some(channel.get_ref().clone())
            }
            Some(channel) => {
                let known: Vec<&str> = channels.iter().map(String::as_str).collect();
                self.unknown(&channel.span(), "channel", channel.get_ref(), &known);
                None
            }
            None if channels.len() == 1 => channels.first().cloned(),
            None => {
                self.error(at, "name the `channel`: this scenario wires more than one");
                None
            }
        }
    }

    fn check_action(&mut self, action: &Action, channels: &[String], step: &Range<usize>) {
        match action {
            Action::CreateOrder(create) => {
                let refusal = declares_refusal(create.status);
                let channel = create.channel.get_ref();
                if !channels.contains(channel) {
                    let known: Vec<&str> = channels.iter().map(String::as_str).collect();
                    if !refusal {
                        self.unknown(&create.channel.span(), "channel", channel, &known);
                    }
                } else if !catalogue::methods(channel).contains(&create.method.get_ref().as_str())
                    && !refusal
                {
                    self.unknown(
                        &create.method.span(),
                        &format!("{channel} method"),
                        create.method.get_ref(),
                        catalogue::methods(channel),
                    );
                }
                if create.method.get_ref() == "barcode" && create.auth_code.is_none() && !refusal {
                    self.error(
                        &create.method.span(),
                        "a barcode order needs the buyer's `auth_code`",
                    );
                }
                let amount_minor = self.amount(&create.amount, refusal);
                if let Some(expires) = &create.expires_in {
                    match parse_duration(expires.get_ref()) {
                        Ok(ms) if (60_000..=1_296_000_000).contains(&ms) || refusal => {}
                        Ok(_) => self.error(&expires.span(), "expires_in: between 1m and 15d"),
                        Err(error) => self.error(&expires.span(), format!("expires_in: {error}")),
                    }
                }
                if self.orders.contains_key(create.order.get_ref()) {
                    self.error(
                        &create.order.span(),
                        format!(
                            "order `{}` is created twice; give each order its own alias",
                            create.order.get_ref()
                        ),
                    );
                }
                self.orders.insert(
                    create.order.get_ref().clone(),
                    OrderAlias {
                        channel: channel.clone(),
                        amount_minor,
                    },
                );
            }
            Action::Close(close) => {
                self.order(&close.order);
            }
            Action::Refund(refund) => {
                let refusal = declares_refusal(refund.status);
                let order = self.order(&refund.order);
                let amount = self.amount(&refund.amount, refusal);
                if let (Some(order_amount), Some(amount)) =
                    (order.and_then(|o| o.amount_minor), amount)
                {
                    if amount > order_amount && !refusal {
                        self.error(&refund.amount.span(), format!(
                            "a refund of {} exceeds the order's {}: impossible; declare the refusal you expect with `status`",
                            refund.amount.get_ref(), crate::text::format_amount(order_amount)));
                    }
                }
                if let Some(alias) = &refund.refund {
                    if !self.refunds.insert(alias.get_ref().clone()) {
                        self.error(
                            &alias.span(),
                            format!(
                                "refund `{}` is requested twice; give each refund its own alias",
                                alias.get_ref()
                            ),
                        );
                    }
                }
            }
            Action::Query(query) => match (&query.order, &query.refund) {
                (Some(order), None) => {
                    self.order(order);
                }
                (None, Some(refund)) => self.refund_alias(refund),
                _ => self.error(step, "query: name exactly one of `order` or `refund`"),
            },
            Action::Buyer(buyer) => {
                self.order(&buyer.order);
                self.state(&buyer.action, &catalogue::BUYER_ACTIONS, "buyer action");
            }
            Action::Fault(fault) => {
                let channel = self.channel(fault.channel.as_ref(), channels, &fault.name.span());
                let name = fault.name.get_ref();
                let Some(scope) = catalogue::protocol_scope(name) else {
                    let known: Vec<String> = simulator::faults::FaultKind::ALL
                        .iter()
                        .map(|k| k.name().to_owned())
                        .collect();
                    let known: Vec<&str> = known.iter().map(String::as_str).collect();
                    let hint = if catalogue::transport_fault_names().contains(&name.as_str()) {
                        " (it is a transport fault: use a `transport_fault` step)"
                    } else {
                        ""
                    };
                    self.error(
                        &fault.name.span(),
                        format!(
                            "unknown fault `{name}`{hint}; the protocol faults are {}",
                            known
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    return;
                };
                if fault.times == 0 {
                    self.error(&fault.name.span(), "times: at least 1");
                }
                let target = fault.target.get_ref().as_str();
                use simulator::faults::FaultScope;
                let fits = match scope {
                    FaultScope::Notification => matches!(target, "notify" | "*"),
                    FaultScope::Refund => matches!(target, "refund" | "*"),
                    FaultScope::Request => {
                        target == "*"
                            || channel
                                .as_deref()
                                .is_none_or(|c| catalogue::apis(c).contains(&target))
                    }
                };
                if !fits {
                    let expected = match scope {
                        FaultScope::Notification => "`notify`".to_owned(),
                        FaultScope::Refund => "`refund`".to_owned(),
                        FaultScope::Request => format!(
                            "an API of {}: {}",
                            channel.as_deref().unwrap_or("the channel"),
                            channel
                                .as_deref()
                                .map(catalogue::apis)
                                .unwrap_or_default()
                                .iter()
                                .map(|a| format!("`{a}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    self.error(
                        &fault.target.span(),
                        format!(
                            "fault `{name}` cannot target `{target}`; its target is {expected}"
                        ),
                    );
                }
            }
            Action::TransportFault(fault) => {
                let channel = self.channel(fault.channel.as_ref(), channels, &fault.fault.span());
                let name = fault.fault.get_ref().as_str();
                let names = catalogue::transport_fault_names();
                if !names.contains(&name) {
                    let hint = if catalogue::protocol_scope(name).is_some() {
                        " (it is a protocol fault: use a `fault` step)"
                    } else {
                        ""
                    };
                    self.error(
                        &fault.fault.span(),
                        format!(
                            "unknown transport fault `{name}`{hint}; expected one of {}",
                            names
                                .iter()
                                .map(|k| format!("`{k}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
                if fault.times == 0 {
                    self.error(&fault.fault.span(), "times: at least 1");
                }
                let direction = fault
                    .direction
                    .as_ref()
                    .map_or("request", |d| d.get_ref().as_str());
                if let Some(d) = &fault.direction {
                    self.state(d, &["request", "notification"], "direction");
                }
                if let (Some(api), Some(channel)) = (&fault.api, &channel) {
                    if direction == "notification" {
                        self.error(&api.span(), "`api` applies to requests; a notification fault hits the channel's notifications");
                    } else if catalogue::api_matcher(channel, api.get_ref()).is_none() {
                        self.unknown(
                            &api.span(),
                            &format!("{channel} API"),
                            api.get_ref(),
                            catalogue::apis(channel),
                        );
                    }
                }
                let delay = fault
                    .delay
                    .as_ref()
                    .map(|d| (d, parse_duration(d.get_ref())));
                let max_delay = fault
                    .max_delay
                    .as_ref()
                    .map(|d| (d, parse_duration(d.get_ref())));
                for (text, parsed) in [&delay, &max_delay].into_iter().flatten() {
                    match parsed {
                        Ok(ms) if *ms > 0 => {}
                        Ok(_) => self.error(&text.span(), "a delay is positive"),
                        Err(error) => self.error(&text.span(), error.clone()),
                    }
                }
                let needs_delay = matches!(name, "delay" | "random_delay");
                if needs_delay && delay.is_none() {
                    self.error(&fault.fault.span(), format!("`{name}` needs `delay`"));
                }
                if name == "random_delay" {
                    match (&delay, &max_delay) {
                        (Some((_, Ok(low))), Some((text, Ok(high)))) if high < low => {
                            self.error(&text.span(), "max_delay is shorter than delay");
                        }
                        (_, None) => {
                            self.error(&fault.fault.span(), "`random_delay` needs `max_delay`")
                        }
                        _ => {}
                    }
                }
            }
            Action::Advance(_) => {}
            Action::WaitUntil(wait) => {
                match (&wait.order, &wait.refund) {
                    (Some(order), None) => {
                        self.order(order);
                        self.state(&wait.state, &catalogue::ORDER_STATES, "order state");
                    }
                    (None, Some(refund)) => {
                        self.refund_alias(refund);
                        self.state(&wait.state, &catalogue::REFUND_STATES, "refund state");
                    }
                    _ => self.error(
                        &wait.state.span(),
                        "wait_until: name exactly one of `order` or `refund`",
                    ),
                }
                match parse_duration(wait.within.get_ref()) {
                    Ok(ms) if ms > 0 => {}
                    Ok(_) => self.error(&wait.within.span(), "within: a positive duration"),
                    Err(error) => self.error(&wait.within.span(), format!("within: {error}")),
                }
            }
            Action::Expect(expect) => self.check_expect(expect, channels, step),
        }
    }

    fn check_expect(&mut self, expect: &Expect, channels: &[String], step: &Range<usize>) {
        let mut checks = 0;
        for (alias, check) in &expect.order {
            checks += 1;
            self.order(alias);
            if let Some(state) = &check.state {
                self.state(state, &catalogue::ORDER_STATES, "order state");
            }
            for amount in [&check.refunded, &check.fee].into_iter().flatten() {
                if let Err(error) = parse_amount(amount.get_ref()) {
                    self.error(&amount.span(), error);
                }
            }
        }
        for (alias, check) in &expect.refund {
            checks += 1;
            self.refund_alias(alias);
            if let Some(state) = &check.state {
                self.state(state, &catalogue::REFUND_STATES, "refund state");
            }
            if let Some(amount) = &check.amount {
                if let Err(error) = parse_amount(amount.get_ref()) {
                    self.error(&amount.span(), error);
                }
            }
        }
        for (alias, check) in &expect.trade {
            checks += 1;
            self.order(alias);
            if let Some(amount) = &check.refunded {
                if let Err(error) = parse_amount(amount.get_ref()) {
                    self.error(&amount.span(), error);
                }
            }
        }
        for (account, balance) in &expect.ledger {
            checks += 1;
            let parts: Vec<&str> = account.get_ref().split(':').collect();
            match parts.as_slice() {
                [kind, owner, currency] if !owner.is_empty() && currency.len() == 3 => {
                    if !catalogue::ACCOUNT_KINDS.contains(kind) {
                        self.unknown(&account.span(), "account kind", kind, &catalogue::ACCOUNT_KINDS);
                    }
                }
                _ => self.error(&account.span(), format!("`{}` is not an account code; write `<kind>:<owner>:<currency>`, e.g. `channel_clearing:alipay:CNY`", account.get_ref())),
            }
            let amount = balance
                .get_ref()
                .strip_prefix('-')
                .unwrap_or(balance.get_ref());
            if let Err(error) = parse_amount(amount) {
                self.error(&balance.span(), error);
            }
        }
        if expect.ledger_verified.is_some() {
            checks += 1;
        }
        for (alias, check) in &expect.notifications {
            checks += 1;
            self.order(alias);
            if let Some(event) = &check.event {
                self.state(event, &catalogue::NOTIFICATION_EVENTS, "notification event");
            }
            if let Some(state) = &check.state {
                self.state(state, &catalogue::NOTIFICATION_STATES, "delivery state");
            }
            for offset in check.schedule.iter().flatten() {
                if let Err(error) = parse_duration(offset.get_ref()) {
                    self.error(&offset.span(), error);
                }
            }
        }
        for check in &expect.exchanges {
            checks += 1;
            let at = check
                .api
                .as_ref()
                .map(Spanned::span)
                .or_else(|| {
                    check
                        .sequence
                        .as_ref()
                        .and_then(|s| s.first())
                        .map(Spanned::span)
                })
                .unwrap_or_else(|| step.clone());
            let channel = check
                .order
                .as_ref()
                .and_then(|alias| self.order(alias).map(|o| o.channel));
            let channel = match (&check.channel, channel) {
                (None, Some(channel)) => Some(channel),
                (explicit, _) => self.channel(explicit.as_ref(), channels, &at),
            };
            let mut apis: Vec<&Text> = check.api.iter().collect();
            apis.extend(check.sequence.iter().flatten());
            if let Some(channel) = &channel {
                for api in apis {
                    if !catalogue::apis(channel).contains(&api.get_ref().as_str()) {
                        self.unknown(
                            &api.span(),
                            &format!("{channel} API"),
                            api.get_ref(),
                            catalogue::apis(channel),
                        );
                    }
                }
            }
            let counted = check.count.is_some() || check.min.is_some() || check.max.is_some();
            match (&check.api, &check.sequence) {
                (Some(_), None) if counted => {}
                (Some(_), None) => self.error(&at, "exchanges: give `count`, `min` or `max` with `api`"),
                (None, Some(sequence)) if !sequence.is_empty() && !counted => {}
                _ => self.error(&at, "exchanges: give either `api` with `count`/`min`/`max`, or a non-empty `sequence`"),
            }
        }
        for (id, answer) in &expect.response {
            checks += 1;
            match self.step_ids.get(id.get_ref()) {
                Some(true) => {}
                Some(false) => self.error(
                    &id.span(),
                    format!(
                        "step `{}` does not call the gateway, so it has no response",
                        id.get_ref()
                    ),
                ),
                None => self.error(
                    &id.span(),
                    format!("no earlier step has id `{}`", id.get_ref()),
                ),
            }
            if answer.status.is_none() && answer.error.is_none() {
                self.error(&id.span(), "response: give `status` and/or `error`");
            }
        }
        checks += expect.alerts.len();
        if checks == 0 {
            self.error(step, "an `expect` step checks nothing");
        }
    }

    /// Cross-step checks that need the whole list (none beyond those done in order today).
    fn check_references(&mut self, _steps: &[Step]) {}
}

fn declares_refusal(status: Option<u16>) -> bool {
    status.is_some_and(|s| (400..500).contains(&s))
}

impl Answer {
    /// An answer from a step's inline `status`/`error`.
    pub fn inline(status: Option<u16>, error: Option<&String>) -> Answer {
        Answer {
            status,
            error: error.cloned(),
        }
    }
}
