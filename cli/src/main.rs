//! `paysim`: the thin binary. Parses flags, builds a validated configuration, starts tracing,
//! and runs the sandbox (`up`) or a one-shot command (`ledger verify`, `openapi`).

mod bench;
mod config;
mod keys;
mod sandbox;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "paysim",
    version,
    about = "A local, deterministic stand-in for Alipay, WeChat Pay and UnionPay, with a real payment core",
    long_about = "paysim runs a payment gateway (orders, refunds, double-entry ledger) beside mock payment \
channels, on one scheduler and clock. `paysim up` starts the sandbox; `paysim ledger verify` checks a store's \
ledger invariants."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sandbox: the gateway API (mock channels and dashboard join as they land).
    ///
    /// On start it writes <data-dir>/sandbox.json describing every endpoint and credential.
    /// Configuration: <data-dir>/paysim.toml (or --config), then PAYSIM__SECTION__KEY=value
    /// environment variables, then these flags.
    Up {
        /// Address to listen on.
        #[arg(long, env = "PAYSIM_LISTEN", value_name = "ADDR")]
        listen: Option<String>,
        /// Directory for the SQLite database, keys and sandbox.json [default: .paysim]
        #[arg(long, env = "PAYSIM_DATA_DIR", value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Store URL: sqlite://<path> (default: <data-dir>/paysim.db) or postgres://…
        #[arg(long, env = "PAYSIM_DATABASE_URL", value_name = "URL")]
        database_url: Option<String>,
        /// Address the mock channels listen on [default: 127.0.0.1:8081]
        #[arg(long, env = "PAYSIM_SIMULATOR_LISTEN", value_name = "ADDR")]
        simulator_listen: Option<String>,
        /// Configuration file (TOML) [default: <data-dir>/paysim.toml when present]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Print the gateway API's OpenAPI document.
    Openapi,
    /// Scenario suites: run them on virtual time, lint them, list the fault catalogue.
    ///
    /// Exit codes: 0 all passed / clean; 1 a scenario failed or a lint found a problem;
    /// 2 a file could not be loaded or the command was misused.
    Scenario {
        #[command(subcommand)]
        command: ScenarioCommand,
    },
    /// Measure performance figures on this machine (build with --release).
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Alipay: RSA2 signatures/s vs `openssl speed`, a replayed signed query against the mock
    /// gateway on loopback, and full signed round trips through the gateway's adapter.
    Alipay {
        /// Seconds each load phase runs.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent connections / tasks of the load tool.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// WeChat Pay: notification encrypt + sign per second, a replayed signed query against the
    /// mock APIv3 server on loopback, and full signed round trips through the gateway's adapter.
    Wechatpay {
        /// Seconds each load phase runs.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Concurrent connections / tasks of the load tool.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// The scenario library: wall time, scenarios per second and the virtual time covered.
    Scenarios {
        /// Scenario files or directories [default: scenarios]
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// How many times to run the library (the best round is reported).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ScenarioCommand {
    /// Run scenario files (directories are searched for *.toml) against the built-in gateway
    /// and mock channels; print a verdict per scenario and the timeline of a failing one.
    Run {
        /// Scenario files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Run with this seed instead of each file's.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write a JUnit XML report to this file.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Run every scenario twice and fail when the two timelines differ.
        #[arg(long)]
        check_determinism: bool,
    },
    /// Check scenario files without running them: every error with file:line:column, and that
    /// each scenario asserts its end state and the ledger.
    Lint {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// List the fault catalogue (protocol, transport and clock faults).
    Catalogue {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Check the ledger invariants I1–I6, I8, I9 of a store; exit 1 when one is violated.
    Verify {
        /// Store URL: sqlite://<path> or postgres://… [default: sqlite://.paysim/paysim.db]
        #[arg(long, env = "PAYSIM_DATABASE_URL", value_name = "URL")]
        database_url: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Scenario runs are discrete-event simulations on their own single-threaded runtime.
    match &cli.command {
        Command::Scenario { command } => {
            return match command {
                ScenarioCommand::Run {
                    paths,
                    seed,
                    json,
                    junit,
                    check_determinism,
                } => paysim::scenario::run(
                    paths,
                    &paysim::scenario::RunFlags {
                        seed: *seed,
                        json: *json,
                        junit: junit.clone(),
                        check_determinism: *check_determinism,
                    },
                ),
                ScenarioCommand::Lint { paths } => paysim::scenario::lint_command(paths),
                ScenarioCommand::Catalogue { json } => paysim::scenario::catalogue(*json),
            };
        }
        Command::Bench {
            target: BenchTarget::Scenarios { paths, rounds },
        } => {
            let paths = if paths.is_empty() {
                vec![PathBuf::from("scenarios")]
            } else {
                paths.clone()
            };
            return paysim::scenario::bench(&paths, *rounds);
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paysim: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up {
                listen,
                data_dir,
                database_url,
                simulator_listen,
                config,
            } => {
                let env: Vec<(String, String)> = std::env::vars().collect();
                let flags = config::Overrides {
                    listen,
                    data_dir,
                    database_url,
                    simulator_listen,
                };
                let config = config::load(config.as_deref(), &env, &flags)?;
                sandbox::init_tracing(&config.log_filter);
                sandbox::up(config).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Ledger {
                command: LedgerCommand::Verify { database_url, json },
            } => {
                let url = database_url
                    .unwrap_or_else(|| format!("sqlite://{}/paysim.db", config::DEFAULT_DATA_DIR));
                sandbox::verify(&url, json).await
            }
            Command::Bench {
                target:
                    BenchTarget::Alipay {
                        seconds,
                        concurrency,
                    },
            } => bench::alipay(seconds, concurrency)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Bench {
                target:
                    BenchTarget::Wechatpay {
                        seconds,
                        concurrency,
                    },
            } => bench::wechatpay(seconds, concurrency)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Scenario { .. }
            | Command::Bench {
                target: BenchTarget::Scenarios { .. },
            } => Ok(ExitCode::from(2)),
            Command::Openapi => {
                println!("{}", gateway_core::api::openapi().to_pretty_json()?);
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("paysim: {error:#}");
            ExitCode::from(2)
        }
    }
}
