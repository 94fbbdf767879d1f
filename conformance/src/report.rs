//! Reporters: the human verdict list (with the timeline and a diff for a failing scenario),
//! JSON for machines and JUnit XML for CI dashboards.

use std::fmt::Write as _;

use serde::Serialize;

use crate::runner::{ScenarioReport, Verdict};
use crate::text::format_duration;

/// Every scenario of one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    pub scenarios: Vec<ScenarioReport>,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    /// Virtual time covered by all scenarios together.
    pub simulated_ms: i64,
    /// Wall-clock time of the whole run (not part of any timeline).
    pub wall_ms: u128,
}

impl SuiteReport {
    pub fn new(scenarios: Vec<ScenarioReport>, wall_ms: u128) -> Self {
        let count = |verdict| scenarios.iter().filter(|s| s.verdict == verdict).count();
        SuiteReport {
            passed: count(Verdict::Pass),
            failed: count(Verdict::Fail),
            errors: count(Verdict::Error),
            simulated_ms: scenarios.iter().map(|s| s.simulated_ms).sum(),
            wall_ms,
            scenarios,
        }
    }

    /// Whether every scenario passed.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.errors == 0
    }
}

/// The human report: a verdict line per scenario; for each failing one its failures (expected
/// vs actual, with the step's location), the one-line repro and its timeline.
pub fn text(suite: &SuiteReport) -> String {
    let mut out = String::new();
    for scenario in &suite.scenarios {
        let mark = match scenario.verdict {
            Verdict::Pass => "PASS ",
            Verdict::Fail => "FAIL ",
            Verdict::Error => "ERROR",
        };
        let _ = writeln!(
            out,
            "{mark} {} ({} checks, {} simulated) {}",
            scenario.name,
            scenario.checks,
            format_duration(scenario.simulated_ms),
            scenario.file
        );
    }
    for scenario in suite
        .scenarios
        .iter()
        .filter(|s| s.verdict != Verdict::Pass)
    {
        out.push('\n');
        out.push_str(&failure_details(scenario));
    }
    let _ = writeln!(
        out,
        "\n{} passed, {} failed, {} errors; {} of virtual time in {} ms",
        suite.passed,
        suite.failed,
        suite.errors,
        format_duration(suite.simulated_ms),
        suite.wall_ms
    );
    out
}

/// Why one scenario did not pass: each failure as expected vs actual, the repro, the timeline.
pub fn failure_details(scenario: &ScenarioReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "── {} ({}, seed {}) ──",
        scenario.name, scenario.file, scenario.seed
    );
    if let Some(error) = &scenario.error {
        let _ = writeln!(out, "error: {error}");
    }
    for failure in &scenario.failures {
        if failure.step == 0 {
            let _ = writeln!(out, "{}: at the end of the run", scenario.file);
        } else {
            let _ = writeln!(
                out,
                "{}:{}:{}: step {}",
                scenario.file, failure.line, failure.column, failure.step
            );
        }
        let _ = writeln!(out, "  {}", failure.check);
        let _ = writeln!(out, "    - expected: {}", failure.expected);
        let _ = writeln!(out, "    + actual:   {}", failure.actual);
    }
    let _ = writeln!(out, "repro: {}", scenario.repro());
    if !scenario.timeline.is_empty() {
        let _ = writeln!(out, "timeline:");
        for line in scenario.timeline_text().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// The JSON report.
pub fn json(suite: &SuiteReport) -> String {
    serde_json::to_string_pretty(suite).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
}

/// JUnit XML: one test suite, one test case per scenario.
pub fn junit(suite: &SuiteReport) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("paysim scenarios");
    let mut test_suite = TestSuite::new("scenarios");
    for scenario in &suite.scenarios {
        let status = match scenario.verdict {
            Verdict::Pass => TestCaseStatus::success(),
            Verdict::Fail | Verdict::Error => {
                let kind = if scenario.verdict == Verdict::Fail {
                    NonSuccessKind::Failure
                } else {
                    NonSuccessKind::Error
                };
                let mut status = TestCaseStatus::non_success(kind);
                let message = scenario
                    .failures
                    .first()
                    .map(|f| format!("{}: expected {}, actual {}", f.check, f.expected, f.actual))
                    .or_else(|| scenario.error.clone())
                    .unwrap_or_default();
                status.set_message(message);
                status.set_description(failure_details(scenario));
                status
            }
        };
        let mut case = TestCase::new(scenario.name.clone(), status);
        case.set_classname(scenario.file.clone());
        test_suite.add_test_case(case);
    }
    report.add_test_suite(test_suite);
    report
        .to_string()
        .unwrap_or_else(|error| format!("<!-- junit serialization failed: {error} -->"))
}
