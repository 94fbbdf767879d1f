//! `paysim scenario run | lint | catalogue` and `paysim bench scenarios`: the scenario engine
//! (`conformance`) over the built-in system under test ([`crate::builtin::Builtin`]).
//!
//! Exit codes: 0 every scenario passed (or every file is clean); 1 a scenario failed (or a
//! lint found a problem); 2 a file could not be loaded, or the command was misused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use conformance::report::{self, SuiteReport};
use conformance::{lint, load_files, ScenarioReport, Verdict};

use crate::builtin::Builtin;

/// How `paysim scenario run` reports.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    pub seed: Option<u64>,
    pub json: bool,
    pub junit: Option<PathBuf>,
    /// Run every scenario twice and fail when the two timelines differ.
    pub check_determinism: bool,
}

/// A single-threaded runtime: a run is a discrete-event simulation (design note §9).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Loads the scenarios under `paths`, printing every diagnostic; `None` when any file is broken.
fn load(paths: &[PathBuf]) -> Option<Vec<conformance::Scenario>> {
    let files = match conformance::discover(paths) {
        Ok(files) => files,
        Err(error) => {
            eprintln!("paysim: {error}");
            return None;
        }
    };
    if files.is_empty() {
        eprintln!("paysim: no scenario files (*.toml) under the given paths");
        return None;
    }
    let (scenarios, diagnostics) = load_files(&files);
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    if diagnostics.is_empty() {
        Some(scenarios)
    } else {
        eprintln!(
            "paysim: {} error(s) in {} file(s); nothing was run",
            diagnostics.len(),
            files.len() - scenarios.len()
        );
        None
    }
}

/// Runs every scenario (twice when checking determinism); returns the reports and the
/// scenarios whose two timelines differed.
pub fn run_all(
    scenarios: &[conformance::Scenario],
    seed: Option<u64>,
    check_determinism: bool,
) -> std::io::Result<(Vec<ScenarioReport>, Vec<String>)> {
    let runtime = runtime()?;
    let mut reports = Vec::with_capacity(scenarios.len());
    let mut diverged = Vec::new();
    for scenario in scenarios {
        let first = runtime.block_on(conformance::run(scenario, &Builtin, seed));
        if check_determinism {
            let second = runtime.block_on(conformance::run(scenario, &Builtin, seed));
            if first.timeline_text() != second.timeline_text() {
                diverged.push(first.file.clone());
            }
        }
        reports.push(first);
    }
    Ok((reports, diverged))
}

#[allow(
    clippy::disallowed_methods,
    reason = "the wall time of a run is reported to the user; it never enters a timeline"
)]
fn wall_clock() -> Instant {
    Instant::now()
}

/// `paysim scenario run`.
pub fn run(paths: &[PathBuf], flags: &RunFlags) -> ExitCode {
    let Some(scenarios) = load(paths) else {
        return ExitCode::from(2);
    };
    let started = wall_clock();
    let (reports, diverged) = match run_all(&scenarios, flags.seed, flags.check_determinism) {
        Ok(result) => result,
        Err(error) => {
            eprintln!("paysim: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let suite = SuiteReport::new(reports, started.elapsed().as_millis());
    if flags.json {
        println!("{}", report::json(&suite));
    } else {
        print!("{}", report::text(&suite));
    }
    if let Some(path) = &flags.junit {
        if let Err(error) = std::fs::write(path, report::junit(&suite)) {
            eprintln!("paysim: writing {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    for file in &diverged {
        eprintln!("paysim: {file}: two runs with the same seed produced different timelines");
    }
    if suite.ok() && diverged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `paysim scenario lint`: loads every file (all diagnostics at once) and checks that each
/// scenario asserts its end state and the ledger; notes catalogue faults nothing uses.
pub fn lint_command(paths: &[PathBuf]) -> ExitCode {
    let Some(scenarios) = load(paths) else {
        return ExitCode::from(2);
    };
    let mut problems = 0;
    for scenario in &scenarios {
        for diagnostic in lint::lint(scenario) {
            eprintln!("{diagnostic}");
            problems += 1;
        }
    }
    let unused = lint::unused_faults(&scenarios);
    if !unused.is_empty() {
        eprintln!(
            "note: catalogue faults no scenario here uses: {}",
            unused.join(", ")
        );
    }
    println!(
        "{} scenario(s) checked, {problems} problem(s)",
        scenarios.len()
    );
    if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `paysim scenario catalogue`: the fault catalogue.
pub fn catalogue(json: bool) -> ExitCode {
    let entries = conformance::catalogue::faults();
    if json {
        match serde_json::to_string_pretty(&entries) {
            Ok(text) => println!("{text}"),
            Err(error) => {
                eprintln!("paysim: {error}");
                return ExitCode::from(2);
            }
        }
    } else {
        for entry in entries {
            let layer = match entry.layer {
                conformance::catalogue::Layer::Protocol => "protocol ",
                conformance::catalogue::Layer::Transport => "transport",
                conformance::catalogue::Layer::Clock => "clock    ",
            };
            println!("{layer}  {:<34} {}", entry.name, entry.doc);
        }
    }
    ExitCode::SUCCESS
}

/// `paysim bench scenarios`: runs the library `rounds` times and prints wall time, scenarios
/// per second and the virtual time covered.
pub fn bench(paths: &[PathBuf], rounds: u32) -> ExitCode {
    let Some(scenarios) = load(paths) else {
        return ExitCode::from(2);
    };
    let mut best_ms = u128::MAX;
    let mut simulated_ms = 0;
    let mut failed = 0;
    for round in 1..=rounds.max(1) {
        let started = wall_clock();
        let reports = match run_all(&scenarios, None, false) {
            Ok((reports, _)) => reports,
            Err(error) => {
                eprintln!("paysim: {error}");
                return ExitCode::from(2);
            }
        };
        let elapsed = started.elapsed().as_millis();
        simulated_ms = reports.iter().map(|r| r.simulated_ms).sum::<i64>();
        failed = reports
            .iter()
            .filter(|r| r.verdict != Verdict::Pass)
            .count();
        println!(
            "round {round}: {} scenarios in {elapsed} ms wall ({failed} not passing)",
            reports.len()
        );
        best_ms = best_ms.min(elapsed);
    }
    let per_second = if best_ms == 0 {
        f64::INFINITY
    } else {
        scenarios.len() as f64 * 1_000.0 / best_ms as f64
    };
    println!(
        "scenarios: {}  best wall time: {best_ms} ms  ({per_second:.1} scenarios/s)",
        scenarios.len()
    );
    println!(
        "virtual time covered: {} ({:.0}× faster than real time)",
        conformance::text::format_duration(simulated_ms),
        simulated_ms as f64 / best_ms.max(1) as f64
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
