//! The scenario library and the engine's honesty checks: every scenario in `scenarios/` passes,
//! twice, with byte-identical timelines; every fault of the catalogue is used; every scenario
//! asserts its end state and the ledger; broken files get every diagnostic with its location;
//! a false expectation fails with a readable diff. Snapshots are reviewed, never blindly
//! accepted.

// A test binary at the crate root is not `cfg(test)` code to clippy, so clippy.toml's
// allow-*-in-tests does not reach it; failing loudly is what a test is for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation panics with its message"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use conformance::{lint, report, Scenario, Verdict};
use paysim::scenario::run_all;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Loads files under `scenarios/<dir>`, named relative to the workspace root.
fn load_dir(dir: &str) -> (Vec<Scenario>, Vec<conformance::Diagnostic>) {
    let root = root();
    let files = conformance::discover(&[root.join("scenarios").join(dir)]).unwrap();
    let mut scenarios = Vec::new();
    let mut diagnostics = Vec::new();
    for file in files {
        let name = file.strip_prefix(&root).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        match conformance::load(&name, &text) {
            Ok(scenario) => scenarios.push(scenario),
            Err(found) => diagnostics.extend(found),
        }
    }
    (scenarios, diagnostics)
}

fn library() -> Vec<Scenario> {
    let (scenarios, diagnostics) = load_dir("");
    let rendered: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        rendered.is_empty(),
        "broken library files:\n{}",
        rendered.join("\n")
    );
    scenarios
}

fn load_file(relative: &str) -> Result<Scenario, Vec<conformance::Diagnostic>> {
    let text = std::fs::read_to_string(root().join(relative)).unwrap();
    conformance::load(relative, &text)
}

#[test]
fn the_whole_library_passes_twice_with_identical_timelines() {
    let scenarios = library();
    assert!(
        scenarios.len() >= 60,
        "the library has {} scenarios; the issue asks for at least 60",
        scenarios.len()
    );
    let (reports, diverged) = run_all(&scenarios, None, true).unwrap();
    let failing: Vec<String> = reports
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .map(report::failure_details)
        .collect();
    assert!(
        failing.is_empty(),
        "{} scenario(s) did not pass:\n{}",
        failing.len(),
        failing.join("\n")
    );
    assert!(
        diverged.is_empty(),
        "timelines differ between two runs of: {diverged:?}"
    );
}

#[test]
fn every_fault_of_the_catalogue_is_used_by_some_scenario() {
    let unused = lint::unused_faults(&library());
    assert!(
        unused.is_empty(),
        "catalogue faults no scenario uses: {unused:?}"
    );
}

#[test]
fn every_scenario_asserts_its_end_state_and_the_ledger() {
    let problems: Vec<String> = library()
        .iter()
        .flat_map(lint::lint)
        .map(|d| d.to_string())
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn names_are_unique_and_match_the_files() {
    let scenarios = library();
    let mut names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    for scenario in &scenarios {
        let stem = scenario
            .file
            .trim_start_matches("scenarios/")
            .trim_end_matches(".toml");
        assert_eq!(
            scenario.name, stem,
            "{}: name should be the path under scenarios/",
            scenario.file
        );
    }
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate scenario names");
}

#[test]
fn a_broken_file_gets_every_error_with_its_location() {
    let syntax = load_file("scenarios/invalid/syntax-errors.toml").unwrap_err();
    let semantic = load_file("scenarios/invalid/semantic-errors.toml").unwrap_err();
    let render = |d: &[conformance::Diagnostic]| {
        d.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    insta::assert_snapshot!("syntax_errors", render(&syntax));
    insta::assert_snapshot!("semantic_errors", render(&semantic));
}

#[test]
fn a_false_expectation_fails_with_expected_versus_actual() {
    let scenario = load_file("scenarios/failing/false-expectation.toml").unwrap();
    let (reports, _) = run_all(std::slice::from_ref(&scenario), None, false).unwrap();
    let report = reports.first().unwrap();
    assert_eq!(report.verdict, Verdict::Fail);
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    insta::assert_snapshot!("false_expectation", report::failure_details(report));
}

#[test]
fn timelines_are_pinned_for_a_few_scenarios() {
    for (snapshot, file) in [
        (
            "timeline_alipay_duplicate_notification",
            "scenarios/alipay/qr-paid-duplicate-notification.toml",
        ),
        (
            "timeline_alipay_transport_notification_faults",
            "scenarios/alipay/transport-notification-faults.toml",
        ),
        (
            "timeline_wechatpay_refund_notification_before_payment",
            "scenarios/wechatpay/refund-notification-before-payment.toml",
        ),
        (
            "timeline_wechatpay_codepay_userpaying_reversed",
            "scenarios/wechatpay/codepay-userpaying-reversed.toml",
        ),
    ] {
        let scenario = load_file(file).unwrap();
        let (reports, _) = run_all(std::slice::from_ref(&scenario), None, false).unwrap();
        let report = reports.first().unwrap();
        assert_eq!(
            report.verdict,
            Verdict::Pass,
            "{}",
            report::failure_details(report)
        );
        insta::assert_snapshot!(snapshot, report.timeline_text());
    }
}

#[test]
fn another_seed_changes_ids_but_not_the_verdict() {
    let scenario = load_file("scenarios/alipay/qr-paid-duplicate-notification.toml").unwrap();
    let (first, _) = run_all(std::slice::from_ref(&scenario), Some(1), false).unwrap();
    let (second, _) = run_all(std::slice::from_ref(&scenario), Some(2), false).unwrap();
    let (first, second) = (first.first().unwrap(), second.first().unwrap());
    assert_eq!(
        (first.verdict, second.verdict),
        (Verdict::Pass, Verdict::Pass)
    );
    assert_eq!((first.seed, second.seed), (1, 2));
    assert_ne!(first.timeline_text(), second.timeline_text());
}

#[test]
fn the_states_the_runner_knows_are_the_gateway_api_states() {
    let orders: Vec<&str> = gateway_core::state::OrderState::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(orders, conformance::catalogue::ORDER_STATES);
    let refunds: Vec<&str> = gateway_core::state::RefundState::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(refunds, conformance::catalogue::REFUND_STATES);
}

fn paysim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paysim"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[test]
fn the_command_exits_0_on_pass_1_on_failure_2_on_broken_files() {
    let pass = paysim(&[
        "scenario",
        "run",
        "scenarios/alipay/qr-paid-duplicate-notification.toml",
    ]);
    assert_eq!(
        pass.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&pass.stdout)
    );
    let fail = paysim(&[
        "scenario",
        "run",
        "scenarios/failing/false-expectation.toml",
    ]);
    assert_eq!(fail.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&fail.stdout);
    assert!(
        stdout.contains(
            "repro: paysim scenario run scenarios/failing/false-expectation.toml --seed 3"
        ),
        "{stdout}"
    );
    let broken = paysim(&["scenario", "run", "scenarios/invalid/semantic-errors.toml"]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&broken.stderr)
        .contains("semantic-errors.toml:6:23: error: unknown channel `paypal`"));
    let lint = paysim(&["scenario", "lint", "scenarios/invalid/syntax-errors.toml"]);
    assert_eq!(lint.status.code(), Some(2));
}

#[test]
fn json_and_junit_reports_are_well_formed() {
    let dir = std::env::temp_dir().join(format!("paysim-junit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junit = dir.join("report.xml");
    let out = paysim(&[
        "scenario",
        "run",
        "--json",
        "--junit",
        junit.to_str().unwrap(),
        "scenarios/alipay/qr-paid-duplicate-notification.toml",
        "scenarios/failing/false-expectation.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["passed"], 1);
    assert_eq!(json["failed"], 1);
    assert_eq!(
        json["scenarios"][1]["failures"][0]["check"],
        "order o1 state"
    );
    assert_eq!(
        json["scenarios"][1]["failures"][0]["expected"],
        "\"closed\""
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(
            r#"<testsuite name="scenarios" tests="2" disabled="0" errors="0" failures="1""#
        ),
        "{xml}"
    );
    assert!(xml.contains("<failure message=\"order o1 state: expected &quot;closed&quot;, actual &quot;paid&quot;\""), "{xml}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Follows `$ref` to its definition.
fn resolve<'a>(
    schema: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> &'a serde_json::Value {
    match node.get("$ref").and_then(|r| r.as_str()) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(
                schema,
                schema
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {reference}")),
            )
        }
        None => node,
    }
}

/// Every key of `value` is allowed by `node` of the schema (objects and arrays, recursively).
fn conforms(
    schema: &serde_json::Value,
    node: &serde_json::Value,
    value: &toml::Value,
    path: &str,
    problems: &mut Vec<String>,
) {
    let node = resolve(schema, node);
    match value {
        toml::Value::Table(table) => {
            for (key, child) in table {
                let here = format!("{path}.{key}");
                let child_node = node
                    .get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()));
                match child_node {
                    Some(child_node) => conforms(schema, child_node, child, &here, problems),
                    None if node.get("additionalProperties")
                        == Some(&serde_json::Value::Bool(false)) =>
                    {
                        problems.push(format!("{here}: not in the schema"));
                    }
                    None => {}
                }
            }
        }
        toml::Value::Array(items) => {
            if let Some(item_node) = node.get("items") {
                for (index, item) in items.iter().enumerate() {
                    conforms(
                        schema,
                        item_node,
                        item,
                        &format!("{path}[{index}]"),
                        problems,
                    );
                }
            }
        }
        _ => {}
    }
}

#[test]
fn the_json_schema_knows_every_key_the_library_uses() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("scenarios/scenario.schema.json")).unwrap(),
    )
    .unwrap();
    let mut problems = Vec::new();
    for scenario in library() {
        let value: toml::Value = toml::from_str(&scenario.source).unwrap();
        conforms(&schema, &schema, &value, &scenario.file, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The schema's fault names are the catalogue's.
    let mut in_schema: Vec<String> = [
        "/$defs/step/properties/fault/properties/name/enum",
        "/$defs/step/properties/transport_fault/properties/fault/enum",
    ]
    .iter()
    .flat_map(|pointer| schema.pointer(pointer).unwrap().as_array().unwrap().clone())
    .map(|v| v.as_str().unwrap().to_owned())
    .collect();
    in_schema.push(conformance::catalogue::CLOCK_SKEW.to_owned());
    in_schema.sort();
    let mut catalogue: Vec<String> = conformance::catalogue::faults()
        .into_iter()
        .map(|e| e.name)
        .collect();
    catalogue.sort();
    assert_eq!(in_schema, catalogue);
}
