//! `cargo bench -p e2e --bench proptest`: the property suite's throughput through the whole
//! stack — cases per second, operations per second and the operation mix — at CI depth (256
//! cases of up to 50 operations; `PAYSIM_PROPTEST_CASES` for another count), first on one
//! worker thread, then on `PAYSIM_PROPTEST_WORKERS` (default 2, this machine's cores).

use e2e::property::{
    cases_from_env, run_suite, seed_from_env, workers_from_env, CaseStats, RunOptions, SuiteConfig,
};

#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall-clock time"
)]
fn measure(cases: u32, seed: u64, workers: usize) -> (CaseStats, f64) {
    let started = std::time::Instant::now();
    let stats = match run_suite(&SuiteConfig {
        cases,
        max_ops: 50,
        seed,
        run: RunOptions::default(),
        regressions: None,
        max_shrink_iters: 0,
        workers,
    }) {
        Ok(stats) => stats,
        Err(failure) => {
            eprintln!("{failure}");
            std::process::exit(1);
        }
    };
    (stats, started.elapsed().as_secs_f64())
}

fn report(cases: u32, workers: usize, stats: &CaseStats, seconds: f64) {
    println!("  {workers} worker(s):");
    println!(
        "    cases           {cases} in {seconds:.2} s = {:.1} cases/s",
        f64::from(cases) / seconds
    );
    println!(
        "    operations      {} = {:.0} ops/s",
        stats.ops,
        stats.ops as f64 / seconds
    );
    println!(
        "    reach a channel {} ({:.0} %)",
        stats.channel_ops,
        100.0 * stats.channel_ops as f64 / stats.ops.max(1) as f64
    );
}

fn main() {
    let cases = cases_from_env(256);
    let seed = seed_from_env(20_260_101);
    let workers = workers_from_env(2);
    println!("property suite benchmark (seed {seed}, SQLite in memory, both channels)");
    let (single, seconds) = measure(cases, seed, 1);
    report(cases, 1, &single, seconds);
    let last = if workers > 1 {
        let (stats, seconds) = measure(cases, seed, workers);
        report(cases, workers, &stats, seconds);
        stats
    } else {
        single
    };
    println!("  mix ({} operations):", last.ops);
    for (name, count) in &last.mix {
        println!(
            "    {name:<16} {count:>6} ({:.1} %)",
            100.0 * *count as f64 / last.ops.max(1) as f64
        );
    }
}
