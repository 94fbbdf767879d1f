//! Double-entry ledger: the chart of accounts, journal entries built for each business event,
//! and `verify`, which checks the ledger invariants of the design note (I1–I6, I8, I9) over a
//! snapshot of the store and names the first violation it finds.
//!
//! Money flow (the merchant bears the channel fee):
//! ```text
//! capture        Dr channel_clearing  amount   Cr merchant_payable  amount
//!   fee leg      Dr merchant_payable  fee      Cr channel_fees      fee
//! refund         Dr merchant_payable  amount   Cr channel_clearing  amount
//!   fee back     Dr channel_fees      share    Cr merchant_payable  share
//! refund parked  Dr merchant_payable  amount   Cr suspense          amount   (abnormal)
//!   fee back     Dr channel_fees      share    Cr merchant_payable  share
//!   resolved ok  Dr suspense          amount   Cr channel_clearing  amount
//!   resolved no  Dr suspense          amount   Cr merchant_payable  amount
//!   fee again    Dr merchant_payable  share    Cr channel_fees      share
//! late payment   Dr channel_clearing  amount   Cr suspense          amount   (paid after close)
//!   refunded     Dr suspense          amount   Cr channel_clearing  amount   (policy `refund`)
//! ```
//!
//! A refund returns the fee in proportion (`share`, see [`fee_share`]), as the channels do, so
//! a fully refunded order leaves the merchant's payable and the channel fees at zero.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use determinism::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::ids::{EntryId, MerchantId, OrderId, RefundId};
use crate::model::{EntityKind, Order, Refund, RefundKind, Transition};
use crate::money::{Currency, Money};
use crate::state::{Channel, OrderState, RefundState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// Asset: money the channel holds for us (captured, not yet refunded or settled).
    ChannelClearing,
    /// Liability: fees owed to the channel, withheld at settlement.
    ChannelFees,
    /// Liability: what we owe the merchant.
    MerchantPayable,
    /// Liability: money we cannot attribute yet (late payments, abnormal refunds).
    Suspense,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::ChannelClearing => "channel_clearing",
            AccountKind::ChannelFees => "channel_fees",
            AccountKind::MerchantPayable => "merchant_payable",
            AccountKind::Suspense => "suspense",
        }
    }

    pub fn parse(text: &str) -> Option<AccountKind> {
        [
            AccountKind::ChannelClearing,
            AccountKind::ChannelFees,
            AccountKind::MerchantPayable,
            AccountKind::Suspense,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }

    /// Debit-normal accounts grow with debits; the others with credits.
    pub fn debit_normal(self) -> bool {
        match self {
            AccountKind::ChannelClearing => true,
            AccountKind::ChannelFees | AccountKind::MerchantPayable | AccountKind::Suspense => {
                false
            }
        }
    }

    /// I9: none of these accounts may ever show a negative balance on its normal side. A
    /// negative clearing balance would mean more refunded than captured; a negative payable,
    /// paying the merchant out of nothing.
    pub fn forbids_negative(self) -> bool {
        match self {
            AccountKind::ChannelClearing
            | AccountKind::ChannelFees
            | AccountKind::MerchantPayable
            | AccountKind::Suspense => true,
        }
    }
}

/// An account of the chart: kind, owner (a channel or a merchant) and currency, written
/// `kind:owner:CUR`, e.g. `merchant_payable:mch_sandbox:CNY`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Account {
    pub kind: AccountKind,
    pub owner: String,
    pub currency: Currency,
}

impl Account {
    pub fn channel_clearing(channel: Channel, currency: Currency) -> Account {
        Account {
            kind: AccountKind::ChannelClearing,
            owner: channel.as_str().to_owned(),
            currency,
        }
    }
    pub fn channel_fees(channel: Channel, currency: Currency) -> Account {
        Account {
            kind: AccountKind::ChannelFees,
            owner: channel.as_str().to_owned(),
            currency,
        }
    }
    pub fn merchant_payable(merchant: &MerchantId, currency: Currency) -> Account {
        Account {
            kind: AccountKind::MerchantPayable,
            owner: merchant.to_string(),
            currency,
        }
    }
    pub fn suspense(channel: Channel, currency: Currency) -> Account {
        Account {
            kind: AccountKind::Suspense,
            owner: channel.as_str().to_owned(),
            currency,
        }
    }

    pub fn code(&self) -> String {
        format!("{}:{}:{}", self.kind.as_str(), self.owner, self.currency)
    }

    pub fn parse(code: &str) -> Option<Account> {
        let mut parts = code.split(':');
        let kind = AccountKind::parse(parts.next()?)?;
        let owner = parts.next()?.to_owned();
        let currency = parts.next()?.parse().ok()?;
        if parts.next().is_some() || owner.is_empty() {
            return None;
        }
        Some(Account {
            kind,
            owner,
            currency,
        })
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Debit,
    Credit,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Debit => "debit",
            Side::Credit => "credit",
        }
    }
    pub fn parse(text: &str) -> Option<Side> {
        match text {
            "debit" => Some(Side::Debit),
            "credit" => Some(Side::Credit),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    pub side: Side,
    /// Always positive.
    pub amount_minor: i64,
}

impl Posting {
    /// The posting's effect on its account's normal-side balance.
    pub fn signed_effect(&self) -> i64 {
        let grows = matches!(
            (self.side, self.account.kind.debit_normal()),
            (Side::Debit, true) | (Side::Credit, false)
        );
        if grows {
            self.amount_minor
        } else {
            -self.amount_minor
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Capture,
    Refund,
    RefundParked,
    RefundReversal,
    LatePayment,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Capture => "capture",
            EntryKind::Refund => "refund",
            EntryKind::RefundParked => "refund_parked",
            EntryKind::RefundReversal => "refund_reversal",
            EntryKind::LatePayment => "late_payment",
        }
    }
    pub fn parse(text: &str) -> Option<EntryKind> {
        [
            EntryKind::Capture,
            EntryKind::Refund,
            EntryKind::RefundParked,
            EntryKind::RefundReversal,
            EntryKind::LatePayment,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A balanced set of postings for one business event. `business_key` is unique in the store:
/// booking the same event twice is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: EntryId,
    pub business_key: String,
    pub kind: EntryKind,
    pub order_id: OrderId,
    pub refund_id: Option<RefundId>,
    pub at_ms: UnixMillis,
    pub postings: Vec<Posting>,
}

fn leg(debit: Account, credit: Account, amount_minor: i64) -> [Posting; 2] {
    [
        Posting {
            account: debit,
            side: Side::Debit,
            amount_minor,
        },
        Posting {
            account: credit,
            side: Side::Credit,
            amount_minor,
        },
    ]
}

/// Builders for the entries of each business event, so every caller books the same shape.
pub mod entries {
    use super::*;

    pub fn capture(id: EntryId, order: &Order, fee: Money, at_ms: UnixMillis) -> JournalEntry {
        let currency = order.amount.currency();
        let mut postings = leg(
            Account::channel_clearing(order.channel, currency),
            Account::merchant_payable(&order.merchant_id, currency),
            order.amount.minor(),
        )
        .to_vec();
        if fee.minor() > 0 {
            postings.extend(leg(
                Account::merchant_payable(&order.merchant_id, currency),
                Account::channel_fees(order.channel, currency),
                fee.minor(),
            ));
        }
        JournalEntry {
            id,
            business_key: format!("capture:{}", order.id),
            kind: EntryKind::Capture,
            order_id: order.id.clone(),
            refund_id: None,
            at_ms,
            postings,
        }
    }

    /// Money that arrived for an order already closed or failed: held in suspense.
    pub fn late_payment(id: EntryId, order: &Order, at_ms: UnixMillis) -> JournalEntry {
        let currency = order.amount.currency();
        JournalEntry {
            id,
            business_key: format!("late_payment:{}", order.id),
            kind: EntryKind::LatePayment,
            order_id: order.id.clone(),
            refund_id: None,
            at_ms,
            postings: leg(
                Account::channel_clearing(order.channel, currency),
                Account::suspense(order.channel, currency),
                order.amount.minor(),
            )
            .to_vec(),
        }
    }

    /// The fee leg returning `refund.fee_refund_minor` to the merchant (`back`) or charging it
    /// again (`!back`, when a parked refund finally fails).
    fn fee_back(refund: &Refund, back: bool) -> Vec<Posting> {
        let currency = refund.amount.currency();
        let fees = Account::channel_fees(refund.channel, currency);
        let payable = Account::merchant_payable(&refund.merchant_id, currency);
        match (refund.fee_refund_minor > 0, back) {
            (false, _) => Vec::new(),
            (true, true) => leg(fees, payable, refund.fee_refund_minor).to_vec(),
            (true, false) => leg(payable, fees, refund.fee_refund_minor).to_vec(),
        }
    }

    /// A refund the channel completed. `from_suspense` when it had been parked as abnormal
    /// (its fee share went back when it was parked), and for the automatic refund of a late
    /// payment (the money never reached the merchant; no fee share).
    pub fn refund(
        id: EntryId,
        refund: &Refund,
        from_suspense: bool,
        at_ms: UnixMillis,
    ) -> JournalEntry {
        let currency = refund.amount.currency();
        let debit = if from_suspense {
            Account::suspense(refund.channel, currency)
        } else {
            Account::merchant_payable(&refund.merchant_id, currency)
        };
        JournalEntry {
            id,
            business_key: format!("refund:{}", refund.id),
            kind: EntryKind::Refund,
            order_id: refund.order_id.clone(),
            refund_id: Some(refund.id.clone()),
            at_ms,
            postings: [
                leg(
                    debit,
                    Account::channel_clearing(refund.channel, currency),
                    refund.amount.minor(),
                )
                .to_vec(),
                if from_suspense {
                    Vec::new()
                } else {
                    fee_back(refund, true)
                },
            ]
            .concat(),
        }
    }

    /// An abnormal refund: the merchant's money is parked in suspense.
    pub fn refund_parked(id: EntryId, refund: &Refund, at_ms: UnixMillis) -> JournalEntry {
        let currency = refund.amount.currency();
        JournalEntry {
            id,
            business_key: format!("refund_parked:{}", refund.id),
            kind: EntryKind::RefundParked,
            order_id: refund.order_id.clone(),
            refund_id: Some(refund.id.clone()),
            at_ms,
            postings: [
                leg(
                    Account::merchant_payable(&refund.merchant_id, currency),
                    Account::suspense(refund.channel, currency),
                    refund.amount.minor(),
                )
                .to_vec(),
                fee_back(refund, true),
            ]
            .concat(),
        }
    }

    /// An abnormal refund that finally failed: the parked money goes back to the merchant.
    pub fn refund_reversal(id: EntryId, refund: &Refund, at_ms: UnixMillis) -> JournalEntry {
        let currency = refund.amount.currency();
        JournalEntry {
            id,
            business_key: format!("refund_reversal:{}", refund.id),
            kind: EntryKind::RefundReversal,
            order_id: refund.order_id.clone(),
            refund_id: Some(refund.id.clone()),
            at_ms,
            postings: [
                leg(
                    Account::suspense(refund.channel, currency),
                    Account::merchant_payable(&refund.merchant_id, currency),
                    refund.amount.minor(),
                )
                .to_vec(),
                fee_back(refund, false),
            ]
            .concat(),
        }
    }
}

/// An account with its balance on the normal side, derived from postings, and the balance the
/// store keeps alongside for the no-negative check under concurrency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    pub account: Account,
    pub balance_minor: i64,
    pub cached_balance_minor: i64,
}

/// Everything `verify` reads, loaded from the store in one consistent read.
#[derive(Debug, Clone, Default)]
pub struct LedgerSnapshot {
    pub entries: Vec<JournalEntry>,
    /// Cached balances as stored, by account code.
    pub cached_balances: BTreeMap<String, i64>,
    pub orders: Vec<Order>,
    pub refunds: Vec<Refund>,
    pub transitions: Vec<Transition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Invariant {
    I1,
    I2,
    I3,
    I4,
    I5,
    I6,
    I8,
    I9,
}

impl Invariant {
    pub const CHECKED: [Invariant; 8] = [
        Invariant::I1,
        Invariant::I2,
        Invariant::I3,
        Invariant::I4,
        Invariant::I5,
        Invariant::I6,
        Invariant::I8,
        Invariant::I9,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Invariant::I1 => "every journal entry balances per currency",
            Invariant::I2 => "account balances equal the sum of their postings",
            Invariant::I3 => "one capture entry per channel payment, one per channel refund",
            Invariant::I4 => "cumulative refunds never exceed the amount paid",
            Invariant::I5 => "terminal states are never left",
            Invariant::I6 => "merchant payable = paid − refunded − fees kept",
            Invariant::I8 => "idempotent replays change nothing",
            Invariant::I9 => "no negative balance on accounts that forbid it",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    /// The entry, account, order or refund at fault.
    pub subject: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} violated by {}: {}",
            self.invariant, self.subject, self.detail
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub checked: Vec<Invariant>,
    pub entries: usize,
    pub orders: usize,
    pub refunds: usize,
    /// The first violation found, in the order of `checked`.
    pub first_violation: Option<Violation>,
    pub violations: Vec<Violation>,
}

/// The fee share returned with a refund that takes the order's refunded total (succeeded and
/// parked refunds) from `before_minor` to `before_minor + refund_minor`, when those earlier
/// refunds already took back `returned_minor`: the cumulative share
/// `round_half_up(fee × refunded / amount)` less what was returned, never below zero nor above
/// what is left. Shares of partial refunds therefore add up to the whole fee exactly when the
/// whole amount is refunded, and never to more.
pub fn fee_share(
    fee_minor: i64,
    amount_minor: i64,
    before_minor: i64,
    returned_minor: i64,
    refund_minor: i64,
) -> i64 {
    if amount_minor <= 0 || fee_minor <= 0 {
        return 0;
    }
    let refunded = i128::from(before_minor.saturating_add(refund_minor));
    let amount = i128::from(amount_minor);
    let cumulative = (2 * i128::from(fee_minor) * refunded + amount) / (2 * amount);
    let cumulative = i64::try_from(cumulative).unwrap_or(fee_minor);
    (cumulative - returned_minor).clamp(0, (fee_minor - returned_minor).max(0))
}

/// Derives every account's balance from postings.
pub fn derive_balances(entries: &[JournalEntry]) -> BTreeMap<Account, i64> {
    let mut balances: BTreeMap<Account, i64> = BTreeMap::new();
    for posting in entries.iter().flat_map(|e| &e.postings) {
        let slot = balances.entry(posting.account.clone()).or_insert(0);
        *slot = slot.saturating_add(posting.signed_effect());
    }
    balances
}

/// Checks I1, I2, I3, I4, I5, I6, I8 and I9 over a snapshot.
pub fn verify(snapshot: &LedgerSnapshot) -> VerifyReport {
    let mut violations = Vec::new();
    let mut flag = |invariant, subject: &dyn fmt::Display, detail: String| {
        violations.push(Violation {
            invariant,
            subject: subject.to_string(),
            detail,
        });
    };

    // I1: each entry balances per currency, and every posting is positive.
    for entry in &snapshot.entries {
        let mut net: BTreeMap<Currency, i128> = BTreeMap::new();
        for posting in &entry.postings {
            if posting.amount_minor <= 0 {
                flag(
                    Invariant::I1,
                    &entry.id,
                    format!(
                        "posting to {} has non-positive amount {}",
                        posting.account, posting.amount_minor
                    ),
                );
            }
            let signed = match posting.side {
                Side::Debit => i128::from(posting.amount_minor),
                Side::Credit => -i128::from(posting.amount_minor),
            };
            *net.entry(posting.account.currency).or_insert(0) += signed;
        }
        for (currency, diff) in net {
            if diff != 0 {
                flag(
                    Invariant::I1,
                    &entry.id,
                    format!(
                        "{} debits exceed credits by {diff} minor units ({})",
                        currency, entry.business_key
                    ),
                );
            }
        }
        if entry.postings.is_empty() {
            flag(Invariant::I1, &entry.id, "entry has no postings".to_owned());
        }
    }

    // I2: stored balances equal the sum of postings.
    let derived = derive_balances(&snapshot.entries);
    let mut seen = HashSet::new();
    for (account, balance) in &derived {
        let code = account.code();
        let cached = snapshot.cached_balances.get(&code).copied().unwrap_or(0);
        seen.insert(code.clone());
        if cached != *balance {
            flag(
                Invariant::I2,
                &code,
                format!("stored balance {cached} but postings sum to {balance}"),
            );
        }
    }
    for (code, cached) in &snapshot.cached_balances {
        if !seen.contains(code) && *cached != 0 {
            flag(
                Invariant::I2,
                code,
                format!("stored balance {cached} but the account has no postings"),
            );
        }
    }

    // I3: one capture per captured order, none for the others; one refund entry per succeeded
    // refund, none for the others.
    let mut captures: HashMap<&OrderId, usize> = HashMap::new();
    let mut refund_entries: HashMap<&RefundId, usize> = HashMap::new();
    for entry in &snapshot.entries {
        match entry.kind {
            EntryKind::Capture => *captures.entry(&entry.order_id).or_insert(0) += 1,
            EntryKind::Refund => {
                if let Some(refund_id) = &entry.refund_id {
                    *refund_entries.entry(refund_id).or_insert(0) += 1;
                }
            }
            EntryKind::RefundParked | EntryKind::RefundReversal | EntryKind::LatePayment => {}
        }
    }
    for order in &snapshot.orders {
        let count = captures.get(&order.id).copied().unwrap_or(0);
        let expected = usize::from(order.state.is_captured());
        if count != expected {
            flag(
                Invariant::I3,
                &order.id,
                format!(
                    "order is {} with {count} capture entries (expected {expected})",
                    order.state.as_str()
                ),
            );
        }
    }
    for refund in &snapshot.refunds {
        let count = refund_entries.get(&refund.id).copied().unwrap_or(0);
        let expected = usize::from(refund.state == RefundState::Succeeded);
        if count != expected {
            flag(
                Invariant::I3,
                &refund.id,
                format!(
                    "refund is {} with {count} refund entries (expected {expected})",
                    refund.state.as_str()
                ),
            );
        }
    }

    // I4: per order, succeeded ≤ pending + succeeded ≤ paid; the order's counters agree with
    // its (merchant) refunds. The automatic refunds of a late payment return what the late
    // payment put in suspense: together (failed ones aside) at most that entry's amount, and
    // only on an order that has one.
    let mut by_order: HashMap<&OrderId, (i64, i64)> = HashMap::new();
    let mut late_paid: HashMap<&OrderId, i64> = HashMap::new();
    for entry in snapshot
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::LatePayment)
    {
        let amount: i64 = entry
            .postings
            .iter()
            .filter(|p| p.side == Side::Debit)
            .map(|p| p.amount_minor)
            .sum();
        *late_paid.entry(&entry.order_id).or_insert(0) += amount;
    }
    let mut late_refunded: BTreeMap<&OrderId, i64> = BTreeMap::new();
    for refund in &snapshot.refunds {
        if refund.kind == RefundKind::LatePayment {
            match late_paid.get(&refund.order_id) {
                None => flag(
                    Invariant::I4,
                    &refund.id,
                    format!(
                        "late-payment refund of {} on order {}, which has no late payment",
                        refund.amount.minor(),
                        refund.order_id
                    ),
                ),
                Some(paid) if refund.amount.minor() > *paid => flag(
                    Invariant::I4,
                    &refund.id,
                    format!(
                        "late-payment refund of {} exceeds the {paid} paid late on order {}",
                        refund.amount.minor(),
                        refund.order_id
                    ),
                ),
                Some(_) => {}
            }
            if refund.state.holds_money() {
                *late_refunded.entry(&refund.order_id).or_insert(0) += refund.amount.minor();
            }
            continue;
        }
        let slot = by_order.entry(&refund.order_id).or_insert((0, 0));
        match refund.state {
            RefundState::Succeeded => slot.0 += refund.amount.minor(),
            RefundState::Pending | RefundState::Abnormal => slot.1 += refund.amount.minor(),
            RefundState::Failed => {}
        }
    }
    for order in &snapshot.orders {
        let (succeeded, reserved) = by_order.get(&order.id).copied().unwrap_or((0, 0));
        if succeeded + reserved > order.amount.minor() {
            flag(
                Invariant::I4,
                &order.id,
                format!(
                    "refunds {succeeded} succeeded + {reserved} pending exceed the {} paid",
                    order.amount.minor()
                ),
            );
        }
        if succeeded > 0 && !order.state.is_captured() {
            flag(
                Invariant::I4,
                &order.id,
                format!(
                    "{succeeded} refunded on an order that is {}",
                    order.state.as_str()
                ),
            );
        }
        if order.refunded_minor != succeeded || order.refund_reserved_minor != reserved {
            flag(Invariant::I4, &order.id, format!(
                "order records {} refunded and {} reserved, its refunds say {succeeded} and {reserved}",
                order.refunded_minor, order.refund_reserved_minor
            ));
        }
    }
    for (order_id, refunded) in &late_refunded {
        let paid = late_paid.get(order_id).copied().unwrap_or(0);
        if paid > 0 && *refunded > paid {
            flag(
                Invariant::I4,
                order_id,
                format!("late-payment refunds of {refunded} together exceed the {paid} paid late"),
            );
        }
    }

    // I5: every history row is a legal edge, rows chain, and the current state is the last row.
    check_history(snapshot, &mut flag);

    // I6: conservation per merchant payable account.
    let mut expected_payable: BTreeMap<Account, i64> = BTreeMap::new();
    for order in snapshot.orders.iter().filter(|o| o.state.is_captured()) {
        let account = Account::merchant_payable(&order.merchant_id, order.amount.currency());
        *expected_payable.entry(account).or_insert(0) += order.amount.minor() - order.fee_minor;
    }
    for refund in snapshot.refunds.iter().filter(|r| {
        r.kind == RefundKind::Merchant
            && matches!(r.state, RefundState::Succeeded | RefundState::Abnormal)
    }) {
        let account = Account::merchant_payable(&refund.merchant_id, refund.amount.currency());
        *expected_payable.entry(account).or_insert(0) -=
            refund.amount.minor() - refund.fee_refund_minor;
    }
    let mut payable_accounts: HashSet<&Account> = expected_payable.keys().collect();
    payable_accounts.extend(
        derived
            .keys()
            .filter(|a| a.kind == AccountKind::MerchantPayable),
    );
    let mut payable_accounts: Vec<&Account> = payable_accounts.into_iter().collect();
    payable_accounts.sort();
    for account in payable_accounts {
        let expected = expected_payable.get(account).copied().unwrap_or(0);
        let actual = derived.get(account).copied().unwrap_or(0);
        if expected != actual {
            flag(
                Invariant::I6,
                account,
                format!("payable is {actual} but paid − refunded − fees is {expected}"),
            );
        }
    }

    // I8: a business key books once; an entity records each event once.
    let mut keys = HashSet::new();
    for entry in &snapshot.entries {
        if !keys.insert(entry.business_key.as_str()) {
            flag(
                Invariant::I8,
                &entry.id,
                format!("business key {} booked twice", entry.business_key),
            );
        }
    }
    let mut events = HashSet::new();
    for row in &snapshot.transitions {
        if !events.insert((row.entity, row.entity_id.as_str(), row.event_key.as_str())) {
            flag(
                Invariant::I8,
                &row.entity_id,
                format!(
                    "event {} recorded twice (history row {})",
                    row.event_key, row.seq
                ),
            );
        }
    }

    // I9: no negative balance where forbidden.
    for (account, balance) in &derived {
        if account.kind.forbids_negative() && *balance < 0 {
            flag(Invariant::I9, account, format!("balance is {balance}"));
        }
    }

    violations.sort_by_key(|v| v.invariant);
    VerifyReport {
        ok: violations.is_empty(),
        checked: Invariant::CHECKED.to_vec(),
        entries: snapshot.entries.len(),
        orders: snapshot.orders.len(),
        refunds: snapshot.refunds.len(),
        first_violation: violations.first().cloned(),
        violations,
    }
}

fn check_history(
    snapshot: &LedgerSnapshot,
    flag: &mut impl FnMut(Invariant, &dyn fmt::Display, String),
) {
    let mut rows: BTreeMap<(EntityKind, &str), Vec<&Transition>> = BTreeMap::new();
    for row in &snapshot.transitions {
        rows.entry((row.entity, row.entity_id.as_str()))
            .or_default()
            .push(row);
    }
    for list in rows.values_mut() {
        list.sort_by_key(|r| r.seq);
    }
    let empty = Vec::new();
    for order in &snapshot.orders {
        let history = rows
            .get(&(EntityKind::Order, order.id.as_str()))
            .unwrap_or(&empty);
        let edge = |from: &str, to: &str| match (OrderState::parse(from), OrderState::parse(to)) {
            (Some(f), Some(t)) => OrderState::edge_allowed(f, t),
            _ => false,
        };
        let terminal = |s: &str| OrderState::parse(s).is_some_and(OrderState::is_terminal);
        check_chain(
            &order.id,
            history,
            order.state.as_str(),
            OrderState::Created.as_str(),
            edge,
            terminal,
            flag,
        );
    }
    for refund in &snapshot.refunds {
        let history = rows
            .get(&(EntityKind::Refund, refund.id.as_str()))
            .unwrap_or(&empty);
        let edge = |from: &str, to: &str| match (RefundState::parse(from), RefundState::parse(to)) {
            (Some(f), Some(t)) => RefundState::edge_allowed(f, t),
            _ => false,
        };
        let terminal = |s: &str| RefundState::parse(s).is_some_and(RefundState::is_terminal);
        check_chain(
            &refund.id,
            history,
            refund.state.as_str(),
            RefundState::Pending.as_str(),
            edge,
            terminal,
            flag,
        );
    }
}

fn check_chain(
    subject: &dyn fmt::Display,
    history: &[&Transition],
    current: &str,
    initial: &str,
    edge: impl Fn(&str, &str) -> bool,
    terminal: impl Fn(&str) -> bool,
    flag: &mut impl FnMut(Invariant, &dyn fmt::Display, String),
) {
    let Some((first, rest)) = history.split_first() else {
        flag(Invariant::I5, subject, "no transition history".to_owned());
        return;
    };
    if first.from_state.is_some() || first.to_state != initial {
        flag(
            Invariant::I5,
            subject,
            format!(
                "history starts with {:?} → {}, not the creation row",
                first.from_state, first.to_state
            ),
        );
    }
    let mut state = first.to_state.as_str();
    for row in rest {
        let from = row.from_state.as_deref().unwrap_or("");
        if from != state {
            flag(
                Invariant::I5,
                subject,
                format!(
                    "history row {} moves from {from} but the state was {state}",
                    row.seq
                ),
            );
        }
        if terminal(from) {
            flag(
                Invariant::I5,
                subject,
                format!(
                    "terminal state {from} left for {} (history row {})",
                    row.to_state, row.seq
                ),
            );
        } else if !edge(from, &row.to_state) {
            flag(
                Invariant::I5,
                subject,
                format!(
                    "illegal move {from} → {} (history row {})",
                    row.to_state, row.seq
                ),
            );
        }
        state = row.to_state.as_str();
    }
    if state != current {
        flag(
            Invariant::I5,
            subject,
            format!("current state {current} differs from the last recorded state {state}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::fee_share;

    #[test]
    fn fee_shares_add_up_to_the_fee_on_a_full_refund() {
        // 60 fee on 100.00, refunded in three parts.
        let a = fee_share(60, 10_000, 0, 0, 3_333);
        let b = fee_share(60, 10_000, 3_333, a, 3_333);
        let c = fee_share(60, 10_000, 6_666, a + b, 3_334);
        assert_eq!((a, b, c), (20, 20, 20));
        assert_eq!(fee_share(1, 3, 0, 0, 3), 1);
        assert_eq!(fee_share(0, 3, 0, 0, 3), 0);
    }

    #[test]
    fn fee_shares_never_exceed_the_fee_after_a_parked_refund_failed() {
        // fee 1 on 3: A (1) parked takes 0, B (1) takes 1, A fails, C (1) takes 0.
        let a = fee_share(1, 3, 0, 0, 1);
        let b = fee_share(1, 3, 1, a, 1);
        let c = fee_share(1, 3, 1, b, 1);
        assert_eq!((a, b, c), (0, 1, 0));
    }
}
