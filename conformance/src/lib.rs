//! The scenario engine: the scenario file format ([`model`], loaded and checked by
//! [`parse`]), the fault catalogue ([`catalogue`]), the virtual-time runner ([`runner`]) over
//! a world the system under test is built into ([`world`]), reporters ([`report`]) and the
//! library's lints ([`lint`]).
//!
//! The runner drives the gateway only through its HTTP API and the mock channels only through
//! their control plane; the `paysim` binary supplies both Routers ([`SystemUnderTest`]).

pub mod catalogue;
pub mod diag;
pub mod lint;
pub mod model;
pub mod parse;
pub mod report;
pub mod runner;
pub mod text;
pub mod world;

use std::path::{Path, PathBuf};

pub use diag::Diagnostic;
pub use parse::{load, Scenario};
pub use report::SuiteReport;
pub use runner::{run, ScenarioReport, Verdict};
pub use world::{Routers, SystemUnderTest, WorldParts};

/// Every `*.toml` scenario under `paths` (files as given, directories searched recursively),
/// sorted, without duplicates. Files under a directory named `invalid` are skipped unless
/// named directly (they are the broken examples of the diagnostics tests); so are files under
/// `failing` (scenarios that fail on purpose) and `vectors`.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files).map_err(|error| format!("{}: {error}", path.display()))?;
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{}: no such file or directory", path.display()));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|name| name == "invalid" || name == "failing" || name == "vectors")
            {
                continue;
            }
            walk(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    Ok(())
}

/// Loads every file, returning the scenarios and every diagnostic of every broken file.
pub fn load_files(files: &[PathBuf]) -> (Vec<Scenario>, Vec<Diagnostic>) {
    let mut scenarios = Vec::new();
    let mut diagnostics = Vec::new();
    for file in files {
        let name = file.display().to_string();
        match std::fs::read_to_string(file) {
            Ok(text) => match load(&name, &text) {
                Ok(scenario) => scenarios.push(scenario),
                Err(found) => diagnostics.extend(found),
            },
            Err(error) => diagnostics.push(Diagnostic {
                file: name,
                line: 1,
                column: 1,
                message: format!("cannot read: {error}"),
            }),
        }
    }
    (scenarios, diagnostics)
}
