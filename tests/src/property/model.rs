//! The reference model: what each operation should do, written from the documented behaviour
//! of the gateway's API and the channels, independently of `gateway-core` (it reads nothing but
//! JSON answers). Per order it keeps the channel's possible trade states and the gateway states
//! it allows now: one state where the schedule determines it, a small set while a fault (or
//! news still in flight) leaves it open.

use std::collections::BTreeSet;

use super::ops::{Ch, Method};

/// The gateway's order states, as its API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Gw {
    Created,
    Paying,
    Paid,
    PartiallyRefunded,
    Refunded,
    Closed,
    Failed,
}

impl Gw {
    pub const ALL: [Gw; 7] = [
        Gw::Created,
        Gw::Paying,
        Gw::Paid,
        Gw::PartiallyRefunded,
        Gw::Refunded,
        Gw::Closed,
        Gw::Failed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Gw::Created => "created",
            Gw::Paying => "paying",
            Gw::Paid => "paid",
            Gw::PartiallyRefunded => "partially_refunded",
            Gw::Refunded => "refunded",
            Gw::Closed => "closed",
            Gw::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Gw> {
        Gw::ALL.into_iter().find(|s| s.name() == text)
    }

    pub fn terminal(self) -> bool {
        matches!(self, Gw::Refunded | Gw::Closed | Gw::Failed)
    }

    pub fn captured(self) -> bool {
        matches!(self, Gw::Paid | Gw::PartiallyRefunded | Gw::Refunded)
    }

    /// The states an order can reach from `self` (itself included), per the documented
    /// lifecycle: created → paying → paid → partially_refunded → refunded; open orders close
    /// or fail; terminal states never move.
    pub fn reachable(self) -> BTreeSet<Gw> {
        use Gw::*;
        let list: &[Gw] = match self {
            Created => &[
                Created,
                Paying,
                Paid,
                PartiallyRefunded,
                Refunded,
                Closed,
                Failed,
            ],
            Paying => &[Paying, Paid, PartiallyRefunded, Refunded, Closed, Failed],
            Paid => &[Paid, PartiallyRefunded, Refunded],
            PartiallyRefunded => &[PartiallyRefunded, Refunded],
            Refunded => &[Refunded],
            Closed => &[Closed],
            Failed => &[Failed],
        };
        list.iter().copied().collect()
    }
}

/// What the channel holds for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chan {
    /// No trade (the create never reached the channel, or was refused).
    None,
    /// Alipay: a QR code issued that nobody scanned (payable until it expires).
    Qr,
    /// Waiting for the buyer.
    Open,
    /// The buyer paid.
    Paid,
    /// Closed unpaid (merchant close, expiry, Alipay buyer failure).
    Closed,
    /// The payment failed (WeChat Pay PAYERROR, a declined payment code).
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rs {
    Pending,
    Succeeded,
    Failed,
    Abnormal,
}

impl Rs {
    pub const ALL: [Rs; 4] = [Rs::Pending, Rs::Succeeded, Rs::Failed, Rs::Abnormal];

    pub fn name(self) -> &'static str {
        match self {
            Rs::Pending => "pending",
            Rs::Succeeded => "succeeded",
            Rs::Failed => "failed",
            Rs::Abnormal => "abnormal",
        }
    }

    pub fn parse(text: &str) -> Option<Rs> {
        Rs::ALL.into_iter().find(|s| s.name() == text)
    }

    pub fn holds(self) -> bool {
        !matches!(self, Rs::Failed)
    }

    pub fn reachable(self) -> BTreeSet<Rs> {
        let list: &[Rs] = match self {
            Rs::Pending => &Rs::ALL,
            Rs::Abnormal => &[Rs::Abnormal, Rs::Succeeded, Rs::Failed],
            Rs::Succeeded => &[Rs::Succeeded],
            Rs::Failed => &[Rs::Failed],
        };
        list.iter().copied().collect()
    }
}

#[derive(Debug, Clone)]
pub struct MRefund {
    pub id: String,
    pub amount: i64,
    /// Where the refund ends up (one state when determined).
    pub outcome: BTreeSet<Rs>,
    /// Until this virtual time the refund may still be on its way to `outcome`.
    pub settle_at: i64,
    pub last_seen: Option<Rs>,
    pub disturbed: bool,
}

impl MRefund {
    pub fn allowed(&self, now: i64) -> BTreeSet<Rs> {
        let from = self.last_seen.unwrap_or(Rs::Pending);
        let reach = from.reachable();
        if self.disturbed {
            return reach;
        }
        let mut allowed = self.outcome.clone();
        if now < self.settle_at {
            allowed.insert(from);
        }
        allowed.intersection(&reach).copied().collect()
    }
}

#[derive(Debug, Clone)]
pub struct MOrder {
    pub id: String,
    pub ch: Ch,
    pub method: Method,
    pub amount: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// The channel's possible trade states.
    pub chan: BTreeSet<Chan>,
    /// When the buyer's last move happened (news of it may still be travelling).
    pub news_at: Option<i64>,
    /// The next gateway poll or expiry that settles what the channel did without telling.
    pub settle_at: i64,
    pub last_seen: Option<Gw>,
    /// A fault may have touched this order since the last quiescence.
    pub disturbed: bool,
    /// The gateway may have closed the order before the buyer paid (a late payment).
    pub close_attempted: bool,
    pub refunds: Vec<MRefund>,
}

/// The gateway's poll offsets after creation (its documented default schedule); past the
/// last one, its last interval repeats.
const POLLS_MS: [i64; 5] = [5_000, 30_000, 120_000, 600_000, 1_200_000];
const POLL_REPEAT_MS: i64 = POLLS_MS[4] - POLLS_MS[3];
/// The gateway's refund queries after a refund is created.
pub const REFUND_POLLS_MS: [i64; 6] = [10_000, 30_000, 60_000, 300_000, 1_800_000, 3_600_000];

impl MOrder {
    /// The first poll strictly after `after`.
    pub fn next_poll(&self, after: i64) -> i64 {
        for offset in POLLS_MS {
            if self.created_at + offset > after {
                return self.created_at + offset;
            }
        }
        let last = self.created_at + POLLS_MS[POLLS_MS.len() - 1];
        last + ((after - last) / POLL_REPEAT_MS + 1) * POLL_REPEAT_MS
    }

    /// Possible sums of succeeded refunds.
    pub fn refunded_sums(&self, now: i64) -> BTreeSet<i64> {
        let mut sums = BTreeSet::from([0i64]);
        for refund in self.refunds.iter().take(10) {
            let allowed = refund.allowed(now);
            let mut next = BTreeSet::new();
            for sum in &sums {
                if allowed.contains(&Rs::Succeeded) {
                    next.insert(sum + refund.amount);
                }
                if allowed.iter().any(|s| *s != Rs::Succeeded) {
                    next.insert(*sum);
                }
            }
            sums = next;
        }
        sums
    }

    /// Amounts that may hold against the ceiling: (certainly, possibly).
    pub fn held(&self, now: i64) -> (i64, i64) {
        let mut certain = 0;
        let mut possible = 0;
        for refund in &self.refunds {
            let allowed = refund.allowed(now);
            let eventually = if refund.disturbed {
                allowed.clone()
            } else {
                refund.outcome.clone()
            };
            if allowed.iter().all(|s| s.holds()) && eventually.iter().all(|s| s.holds()) {
                certain += refund.amount;
            }
            if allowed.iter().any(|s| s.holds()) || eventually.iter().any(|s| s.holds()) {
                possible += refund.amount;
            }
        }
        (certain, possible)
    }

    fn captured_states(&self, now: i64) -> BTreeSet<Gw> {
        self.refunded_sums(now)
            .into_iter()
            .map(|sum| {
                if sum == 0 {
                    Gw::Paid
                } else if sum >= self.amount {
                    Gw::Refunded
                } else {
                    Gw::PartiallyRefunded
                }
            })
            .collect()
    }

    /// The gateway states the model allows for this order at `now`, with `skew_ms` the
    /// simulator's clock offset.
    pub fn allowed(&self, now: i64, skew_ms: i64) -> BTreeSet<Gw> {
        let from = self.last_seen.unwrap_or(Gw::Created);
        if from.terminal() {
            return BTreeSet::from([from]);
        }
        let reach = from.reachable();
        let mut allowed = BTreeSet::new();
        if self.disturbed || self.chan.len() != 1 {
            for chan in &self.chan {
                match chan {
                    Chan::Paid => allowed.extend(Gw::ALL),
                    Chan::None | Chan::Qr | Chan::Open | Chan::Closed | Chan::Failed => {
                        allowed.extend([Gw::Created, Gw::Paying, Gw::Closed, Gw::Failed]);
                    }
                }
            }
            return allowed.intersection(&reach).copied().collect();
        }
        let chan = self.chan.iter().next().copied().unwrap_or(Chan::None);
        let lag = now < self.settle_at || self.news_at.is_some_and(|t| now <= t + skew_ms.max(0));
        let near_expiry = now >= self.expires_at - skew_ms.abs() - 1;
        match chan {
            Chan::Paid => {
                allowed.extend(self.captured_states(now));
                if self.close_attempted {
                    // Paid after the gateway closed it: booked to suspense, the order stays closed.
                    allowed.insert(Gw::Closed);
                }
                if lag {
                    allowed.insert(from);
                }
            }
            Chan::Qr | Chan::Open => {
                if now >= self.expires_at {
                    allowed.insert(Gw::Closed);
                } else {
                    allowed.insert(Gw::Paying);
                    if near_expiry {
                        allowed.insert(Gw::Closed);
                    }
                }
            }
            Chan::Closed => {
                allowed.insert(Gw::Closed);
                if now < self.settle_at {
                    allowed.insert(from);
                }
            }
            Chan::Failed => {
                if now < self.settle_at {
                    allowed.insert(from);
                }
                if self.settle_at >= self.expires_at {
                    allowed.insert(Gw::Closed);
                } else {
                    allowed.insert(Gw::Failed);
                }
                if near_expiry || now >= self.expires_at {
                    allowed.insert(Gw::Closed);
                }
            }
            Chan::None => {
                allowed.extend([Gw::Closed, Gw::Failed]);
                if now < self.expires_at {
                    allowed.insert(from);
                }
            }
        }
        allowed.intersection(&reach).copied().collect()
    }
}

/// Everything the model knows.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub orders: Vec<MOrder>,
    pub skew_ms: i64,
}

impl Model {
    pub fn orders_on(&mut self, ch: Ch) -> impl Iterator<Item = &mut MOrder> {
        self.orders.iter_mut().filter(move |o| o.ch == ch)
    }
}
