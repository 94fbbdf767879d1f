//! The suite can fail: with each known bug planted in the gateway (a run-time switch,
//! `Gateway::plant_bugs`), the suite finds it and shrinks it to a short script. The last three
//! (reopening after close, the yuan/fen slip, the wrong state mapping) leave the ledger
//! consistent and must be caught by the reference model.

use e2e::property::{run_suite, FailureKind, RunOptions, SuiteConfig};
use gateway_core::{PlantedBug, PlantedBugs};

fn find(bug: PlantedBug, expected: &[FailureKind]) {
    let seed = 7_000 + bug as u64;
    let failure = run_suite(&SuiteConfig {
        cases: 512,
        max_ops: 50,
        seed,
        run: RunOptions {
            planted: PlantedBugs::only(bug),
            ..RunOptions::default()
        },
        regressions: None,
        max_shrink_iters: 1_000,
        workers: 1,
    })
    .expect_err(&format!(
        "the suite did not find planted bug {} (seed {seed})",
        bug.as_str()
    ));
    println!("planted bug {} found:\n{failure}", bug.as_str());
    let kind = failure.kind();
    assert!(
        kind.is_some_and(|k| expected.contains(&k)),
        "{} was found by {kind:?}, expected one of {expected:?}: {failure}",
        bug.as_str()
    );
    assert!(
        failure.minimal.ops.len() <= 8,
        "shrunk to a short script: {failure}"
    );
}

#[test]
fn finds_notification_dedup_off() {
    find(
        PlantedBug::NotificationDedupOff,
        &[FailureKind::Invariant, FailureKind::Model],
    );
}

#[test]
fn finds_refund_ceiling_off() {
    find(
        PlantedBug::RefundCeilingOff,
        &[FailureKind::Model, FailureKind::Invariant],
    );
}

#[test]
fn finds_ack_before_commit() {
    find(
        PlantedBug::AckBeforeCommit,
        &[
            FailureKind::Model,
            FailureKind::Invariant,
            FailureKind::Agreement,
        ],
    );
}

#[test]
fn finds_reopen_on_late_success_by_the_model() {
    find(PlantedBug::ReopenOnLateSuccess, &[FailureKind::Model]);
}

#[test]
fn finds_yuan_fen_slip_by_the_model() {
    find(PlantedBug::YuanFenSlip, &[FailureKind::Model]);
}

#[test]
fn finds_wrong_state_mapping_by_the_model() {
    find(PlantedBug::WrongStateMapping, &[FailureKind::Model]);
}
