//! Library lints beyond loading: every scenario asserts its end state and the ledger, and
//! every fault of the catalogue is used by some scenario.

use std::collections::BTreeSet;

use crate::catalogue;
use crate::diag::Diagnostic;
use crate::parse::{Action, Scenario};

/// What a well-kept scenario must do: after its last action, an `expect` step checks an
/// order's (or refund's) state and the ledger (balances or invariants).
pub fn lint(scenario: &Scenario) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let last_action = scenario
        .steps
        .iter()
        .rposition(|step| !matches!(step.action, Action::Expect(_)));
    let tail = scenario
        .steps
        .iter()
        .skip(last_action.map_or(0, |i| i.saturating_add(1)));
    let (mut end_state, mut ledger) = (false, false);
    for step in tail {
        if let Action::Expect(expect) = &step.action {
            end_state |= expect.order.values().any(|o| o.state.is_some())
                || expect.refund.values().any(|r| r.state.is_some());
            ledger |= !expect.ledger.is_empty() || expect.ledger_verified == Some(true);
        }
    }
    let at = |message: &str| Diagnostic {
        file: scenario.file.clone(),
        line: scenario.steps.last().map_or(1, |s| s.line),
        column: 1,
        message: message.to_owned(),
    };
    if !end_state {
        problems.push(at("the scenario does not assert its end state: finish with an `expect` step checking an order's or refund's `state`"));
    }
    if !ledger {
        problems.push(at("the scenario does not assert the ledger: finish with an `expect` step checking `ledger` balances or `ledger_verified = true`"));
    }
    problems
}

/// The catalogue faults a scenario uses.
pub fn faults_used(scenario: &Scenario) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    if scenario.channel_clock_skew_ms != 0 {
        used.insert(catalogue::CLOCK_SKEW.to_owned());
    }
    for step in &scenario.steps {
        match &step.action {
            Action::Fault(fault) => {
                used.insert(fault.name.get_ref().clone());
            }
            Action::TransportFault(fault) => {
                used.insert(fault.fault.get_ref().clone());
            }
            _ => {}
        }
    }
    used
}

/// Catalogue faults no scenario uses.
pub fn unused_faults(scenarios: &[Scenario]) -> Vec<String> {
    let used: BTreeSet<String> = scenarios.iter().flat_map(faults_used).collect();
    catalogue::faults()
        .into_iter()
        .map(|entry| entry.name)
        .filter(|name| !used.contains(name))
        .collect()
}
