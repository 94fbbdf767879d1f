//! Ledger property tests. Random sequences of business events (captures with fees, partial
//! refunds that succeed, park in suspense or fail, late payments after close) are turned into
//! store `Change`s by the same builders the store suite uses, while a small oracle keeps every
//! account's balance from the money-flow table of `ledger.rs` — not from postings. Then:
//! every entry balances (I1), balances derived from postings equal the oracle's (I2), `verify`
//! accepts every such history and flags any duplicated business key (I8), and a real store
//! (SQLite in memory) books exactly what the oracle predicts, refuses what would go negative
//! (I9) and treats re-booking any entry as a no-op.
//!
//! Each run prints `SEED=…` with a one-line repro; a failing case is also persisted by
//! proptest under `proptest-regressions/` — commit those files.

use std::collections::{BTreeMap, HashSet};

use determinism::{Clock, Entropy, OsEntropy, SeededEntropy, VirtualClock};
use gateway_core::ids::{EntryId, MerchantId};
use gateway_core::ledger::{
    self, derive_balances, Account, Invariant, JournalEntry, LedgerSnapshot, Side,
};
use gateway_core::model::{Order, Refund, Transition};
use gateway_core::money::{Currency, Money};
use gateway_core::state::{Channel, OrderState, RefundState};
use gateway_core::store::{Change, CommitOutcome, Store};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};

use crate::support::*;

/// A proptest config with a fixed, printed seed (drawn now unless `PROPTEST_RNG_SEED` is set).
fn config(cases: u32, test: &str) -> Config {
    let mut config = Config::with_cases(cases);
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(OsEntropy.next_u64());
    }
    if let RngSeed::Fixed(seed) = config.rng_seed {
        println!(
            "SEED={seed} repro: PROPTEST_RNG_SEED={seed} cargo test -p gateway-core --test suite {test}"
        );
    }
    config
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        amount_minor: i64,
        currency: usize,
        channel: usize,
        merchant: usize,
    },
    Pay {
        order: Index,
        fee_bps: i64,
    },
    Close {
        order: Index,
    },
    LatePayment {
        order: Index,
    },
    Refund {
        order: Index,
        percent: i64,
    },
    RefundSucceeds {
        refund: Index,
    },
    RefundParked {
        refund: Index,
    },
    RefundFails {
        refund: Index,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..=2_000_000_i64, 0..3_usize, 0..3_usize, 0..2_usize).prop_map(
            |(amount_minor, currency, channel, merchant)| Op::Open { amount_minor, currency, channel, merchant }
        ),
        3 => (any::<Index>(), 0..=300_i64).prop_map(|(order, fee_bps)| Op::Pay { order, fee_bps }),
        1 => any::<Index>().prop_map(|order| Op::Close { order }),
        1 => any::<Index>().prop_map(|order| Op::LatePayment { order }),
        4 => (any::<Index>(), 1..=100_i64).prop_map(|(order, percent)| Op::Refund { order, percent }),
        3 => any::<Index>().prop_map(|refund| Op::RefundSucceeds { refund }),
        1 => any::<Index>().prop_map(|refund| Op::RefundParked { refund }),
        1 => any::<Index>().prop_map(|refund| Op::RefundFails { refund }),
    ]
}

fn scenario() -> impl Strategy<Value = (u64, Vec<Op>)> {
    (any::<u64>(), prop::collection::vec(op(), 1..48))
}

fn merchants() -> [MerchantId; 2] {
    [merchant_id("alpha"), merchant_id("beta")]
}

/// One change to commit and what the oracle expects the store to answer.
#[derive(Debug)]
struct Step {
    change: Change,
    expect: CommitOutcome,
}

/// The interpreter and oracle: the world as the gateway would see it, and every account's
/// balance as the money-flow table says it must be.
struct World {
    ids: SeededEntropy,
    clock: VirtualClock,
    orders: Vec<Order>,
    refunds: Vec<Refund>,
    late_paid: HashSet<String>,
    balances: BTreeMap<String, i64>,
    steps: Vec<Step>,
}

impl World {
    fn run(seed: u64, ops: &[Op]) -> World {
        let mut world = World {
            ids: SeededEntropy::new(seed),
            clock: VirtualClock::new(T0),
            orders: Vec::new(),
            refunds: Vec::new(),
            late_paid: HashSet::new(),
            balances: BTreeMap::new(),
            steps: Vec::new(),
        };
        for op in ops {
            world.clock.advance_ms(1_000);
            world.apply(op);
        }
        world
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn entropy(&self) -> &dyn Entropy {
        &self.ids
    }

    /// Records a step; the expectation follows from the oracle's balances: the store applies
    /// the net effect per account in account-code order and refuses at the first one below
    /// zero (every account kind forbids it).
    fn step(&mut self, change: Change, deltas: &[(Account, i64)]) -> bool {
        let mut net: BTreeMap<String, i64> = BTreeMap::new();
        for (account, delta) in deltas {
            *net.entry(account.code()).or_insert(0) += delta;
        }
        for (code, delta) in &net {
            let after = self.balances.get(code).copied().unwrap_or(0) + delta;
            if after < 0 {
                let expect = CommitOutcome::NegativeBalance {
                    account: code.clone(),
                    balance_minor: after,
                };
                self.steps.push(Step { change, expect });
                return false;
            }
        }
        for (code, delta) in net {
            *self.balances.entry(code).or_insert(0) += delta;
        }
        self.steps.push(Step {
            change,
            expect: CommitOutcome::Committed,
        });
        true
    }

    fn order_index(&self, refund: &Refund) -> usize {
        self.orders
            .iter()
            .position(|o| o.id == refund.order_id)
            .unwrap()
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now();
        match op {
            Op::Open {
                amount_minor,
                currency,
                channel,
                merchant,
            } => {
                let order = new_order(
                    self.entropy(),
                    &merchants()[*merchant],
                    Channel::ALL[*channel],
                    Money::from_minor(*amount_minor, Currency::ALL[*currency]),
                    now,
                );
                self.step(create(&order), &[]);
                self.orders.push(order);
            }
            Op::Pay { order, fee_bps } => {
                let Some(i) = self.pick_order(order, |o| o.state == OrderState::Created) else {
                    return;
                };
                let order = &self.orders[i];
                let (amount, currency) = (order.amount.minor(), order.amount.currency());
                let fee = amount * fee_bps / 10_000;
                let (paid, change) = pay(self.entropy(), order, fee, now);
                let deltas = [
                    (Account::channel_clearing(order.channel, currency), amount),
                    (
                        Account::merchant_payable(&order.merchant_id, currency),
                        amount - fee,
                    ),
                    (Account::channel_fees(order.channel, currency), fee),
                ];
                if self.step(change, &deltas) {
                    self.orders[i] = paid;
                }
            }
            Op::Close { order } => {
                let Some(i) = self.pick_order(order, |o| o.state == OrderState::Created) else {
                    return;
                };
                let (closed, change) = close(&self.orders[i], now);
                self.step(change, &[]);
                self.orders[i] = closed;
            }
            Op::LatePayment { order } => {
                let Some(i) = self.pick_order(order, |o| o.state == OrderState::Closed) else {
                    return;
                };
                let order = self.orders[i].clone();
                let change = late_payment(self.entropy(), &order, now);
                if !self.late_paid.insert(order.id.to_string()) {
                    // The same late payment reported again: booked once (I8).
                    self.steps.push(Step {
                        change,
                        expect: CommitOutcome::AlreadyBooked,
                    });
                    return;
                }
                let currency = order.amount.currency();
                let deltas = [
                    (
                        Account::channel_clearing(order.channel, currency),
                        order.amount.minor(),
                    ),
                    (
                        Account::suspense(order.channel, currency),
                        order.amount.minor(),
                    ),
                ];
                self.step(change, &deltas);
            }
            Op::Refund { order, percent } => {
                let Some(i) = self.pick_order(order, |o| {
                    matches!(o.state, OrderState::Paid | OrderState::PartiallyRefunded)
                }) else {
                    return;
                };
                let order = &self.orders[i];
                let amount = (order.amount.minor() * percent / 100)
                    .max(1)
                    .min(order.refundable_minor());
                if amount == 0 {
                    return;
                }
                let (reserved, refund, change) = request_refund(self.entropy(), order, amount, now);
                self.step(change, &[]);
                self.orders[i] = reserved;
                self.refunds.push(refund);
            }
            Op::RefundSucceeds { refund } => {
                let Some(r) = self.pick_refund(refund, |r| {
                    matches!(r.state, RefundState::Pending | RefundState::Abnormal)
                }) else {
                    return;
                };
                let refund = self.refunds[r].clone();
                let i = self.order_index(&refund);
                let (order, done, change) =
                    refund_succeeded(self.entropy(), &self.orders[i], &refund, now);
                let (amount, currency) = (refund.amount.minor(), refund.amount.currency());
                let source = if refund.state == RefundState::Abnormal {
                    Account::suspense(refund.channel, currency)
                } else {
                    Account::merchant_payable(&refund.merchant_id, currency)
                };
                let deltas = [
                    (source, -amount),
                    (Account::channel_clearing(refund.channel, currency), -amount),
                ];
                if self.step(change, &deltas) {
                    self.orders[i] = order;
                    self.refunds[r] = done;
                }
            }
            Op::RefundParked { refund } => {
                let Some(r) = self.pick_refund(refund, |r| r.state == RefundState::Pending) else {
                    return;
                };
                let refund = self.refunds[r].clone();
                let (parked, change) = refund_abnormal(self.entropy(), &refund, now);
                let currency = refund.amount.currency();
                let deltas = [
                    (
                        Account::merchant_payable(&refund.merchant_id, currency),
                        -refund.amount.minor(),
                    ),
                    (
                        Account::suspense(refund.channel, currency),
                        refund.amount.minor(),
                    ),
                ];
                if self.step(change, &deltas) {
                    self.refunds[r] = parked;
                }
            }
            Op::RefundFails { refund } => {
                let Some(r) = self.pick_refund(refund, |r| {
                    matches!(r.state, RefundState::Pending | RefundState::Abnormal)
                }) else {
                    return;
                };
                let refund = self.refunds[r].clone();
                let i = self.order_index(&refund);
                let (order, failed, change) =
                    refund_failed(self.entropy(), &self.orders[i], &refund, now);
                let currency = refund.amount.currency();
                let deltas = if refund.state == RefundState::Abnormal {
                    vec![
                        (
                            Account::suspense(refund.channel, currency),
                            -refund.amount.minor(),
                        ),
                        (
                            Account::merchant_payable(&refund.merchant_id, currency),
                            refund.amount.minor(),
                        ),
                    ]
                } else {
                    vec![]
                };
                if self.step(change, &deltas) {
                    self.orders[i] = order;
                    self.refunds[r] = failed;
                }
            }
        }
    }

    fn pick_order(&self, index: &Index, fits: impl Fn(&Order) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.orders.len())
            .filter(|&i| fits(&self.orders[i]))
            .collect();
        (!candidates.is_empty()).then(|| candidates[index.index(candidates.len())])
    }

    fn pick_refund(&self, index: &Index, fits: impl Fn(&Refund) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.refunds.len())
            .filter(|&i| fits(&self.refunds[i]))
            .collect();
        (!candidates.is_empty()).then(|| candidates[index.index(candidates.len())])
    }

    fn committed(&self) -> impl Iterator<Item = &Change> {
        self.steps
            .iter()
            .filter(|s| s.expect == CommitOutcome::Committed)
            .map(|s| &s.change)
    }

    fn entries(&self) -> Vec<JournalEntry> {
        self.committed().filter_map(|c| c.entry.clone()).collect()
    }

    fn nonzero_balances(&self) -> BTreeMap<String, i64> {
        self.balances
            .iter()
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// What a correct store holds after the committed steps, with the oracle's balances as
    /// the stored ones.
    fn snapshot(&self) -> LedgerSnapshot {
        let mut snapshot = LedgerSnapshot {
            cached_balances: self.balances.clone(),
            ..LedgerSnapshot::default()
        };
        for change in self.committed() {
            snapshot.orders.extend(change.insert_order.clone());
            snapshot.refunds.extend(change.insert_refund.clone());
            if let Some(order) = &change.update_order {
                let slot = snapshot
                    .orders
                    .iter_mut()
                    .find(|o| o.id == order.id)
                    .unwrap();
                *slot = order.clone();
            }
            if let Some(refund) = &change.update_refund {
                let slot = snapshot
                    .refunds
                    .iter_mut()
                    .find(|r| r.id == refund.id)
                    .unwrap();
                *slot = refund.clone();
            }
            for row in &change.transitions {
                let seq = i64::try_from(snapshot.transitions.len()).unwrap() + 1;
                snapshot.transitions.push(Transition {
                    seq,
                    entity: row.entity,
                    entity_id: row.entity_id.clone(),
                    from_state: row.from_state.clone(),
                    to_state: row.to_state.clone(),
                    event_key: row.event_key.clone(),
                    source: row.source.clone(),
                    at_ms: row.at_ms,
                });
            }
            snapshot.entries.extend(change.entry.clone());
        }
        snapshot
    }
}

fn sorted<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut items = items.to_vec();
    items.sort_by_key(key);
    items
}

proptest! {
    #![proptest_config(config(256, "ledger_props::pure"))]

    /// I1 and I2 over the oracle: each entry's debits equal its credits per currency with
    /// positive amounts, balances derived from postings equal the money-flow table's, and
    /// `verify` accepts the whole history.
    #[test]
    fn pure_entries_balance_and_match_the_money_flow((seed, ops) in scenario()) {
        let world = World::run(seed, &ops);
        for entry in world.entries() {
            let mut net: BTreeMap<Currency, i64> = BTreeMap::new();
            for posting in &entry.postings {
                prop_assert!(posting.amount_minor > 0, "{entry:#?}");
                let signed = match posting.side {
                    Side::Debit => posting.amount_minor,
                    Side::Credit => -posting.amount_minor,
                };
                *net.entry(posting.account.currency).or_insert(0) += signed;
            }
            prop_assert!(net.values().all(|v| *v == 0), "unbalanced {entry:#?}");
        }
        let derived: BTreeMap<String, i64> = derive_balances(&world.entries())
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(a, v)| (a.code(), v))
            .collect();
        prop_assert_eq!(derived, world.nonzero_balances());
        let report = ledger::verify(&world.snapshot());
        prop_assert!(report.ok, "{:#?}", report.violations);
    }

    /// I8: booking any entry a second time (same business key, new id) is flagged.
    #[test]
    fn pure_verify_flags_any_rebooked_entry((seed, ops) in scenario(), pick in any::<Index>()) {
        let world = World::run(seed, &ops);
        let entries = world.entries();
        prop_assume!(!entries.is_empty());
        let mut snapshot = world.snapshot();
        let mut again = entries[pick.index(entries.len())].clone();
        again.id = EntryId::parse("je_again").unwrap();
        snapshot.entries.push(again);
        let report = ledger::verify(&snapshot);
        prop_assert!(
            report.violations.iter().any(|v| v.invariant == Invariant::I8 && v.subject == "je_again"),
            "{:#?}", report.violations
        );
    }
}

proptest! {
    #![proptest_config(config(32, "ledger_props::store"))]

    /// A real store (SQLite in memory) answers every step as the oracle predicts — including
    /// `NegativeBalance` refusals and `AlreadyBooked` replays — re-booking any entry afterwards
    /// is a no-op, and what it holds equals the oracle's world and verifies clean.
    #[test]
    fn store_books_what_the_oracle_predicts((seed, ops) in scenario()) {
        let world = World::run(seed, &ops);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(check_store(&world));
    }
}

async fn check_store(world: &World) {
    let store: Store = sqlite_in_memory().await.store;
    for merchant in merchants() {
        ensure_merchant(&store, &merchant).await;
    }
    for (n, step) in world.steps.iter().enumerate() {
        let outcome = store.commit(&step.change).await.unwrap();
        assert_eq!(outcome, step.expect, "step {n}: {:#?}", step.change);
    }
    let balances_before = store.account_balances().await.unwrap();
    for (n, entry) in world.entries().into_iter().enumerate() {
        let mut again = entry.clone();
        again.id = EntryId::generate(&SeededEntropy::new(n as u64));
        let change = Change {
            entry: Some(again),
            ..Change::default()
        };
        assert_eq!(
            store.commit(&change).await.unwrap(),
            CommitOutcome::AlreadyBooked,
            "re-booking {}",
            entry.business_key
        );
    }
    let balances = store.account_balances().await.unwrap();
    assert_eq!(balances, balances_before, "re-booking changed balances");
    for balance in &balances {
        assert_eq!(
            balance.balance_minor, balance.cached_balance_minor,
            "{balance:?}"
        );
    }
    let held: BTreeMap<String, i64> = balances
        .iter()
        .filter(|b| b.balance_minor != 0)
        .map(|b| (b.account.code(), b.balance_minor))
        .collect();
    assert_eq!(held, world.nonzero_balances());

    let stored = store.ledger_snapshot().await.unwrap();
    let expected = world.snapshot();
    assert_eq!(
        sorted(&stored.orders, |o| o.id.clone()),
        sorted(&expected.orders, |o| o.id.clone())
    );
    assert_eq!(
        sorted(&stored.refunds, |r| r.id.clone()),
        sorted(&expected.refunds, |r| r.id.clone())
    );
    assert_eq!(
        sorted(&stored.entries, |e| e.business_key.clone()),
        sorted(&expected.entries, |e| e.business_key.clone())
    );
    let rows = |snapshot: &LedgerSnapshot| {
        snapshot
            .transitions
            .iter()
            .map(|t| {
                (
                    t.entity,
                    t.entity_id.clone(),
                    t.from_state.clone(),
                    t.to_state.clone(),
                    t.event_key.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rows(&stored),
        rows(&expected),
        "history rows, in commit order"
    );
    let report = ledger::verify(&stored);
    assert!(report.ok, "{:#?}", report.violations);
}
