//! `cargo bench -p e2e --bench proptest`: the property suite's throughput through the whole
//! stack — cases per second, operations per second and the operation mix — at CI depth (256
//! cases of up to 50 operations; `PAYSIM_PROPTEST_CASES` for another count), first on one
//! worker thread, then on `PAYSIM_PROPTEST_WORKERS` (default 2, this machine's cores); each
//! the median of `PAYSIM_BENCH_ROUNDS` runs (default 3).

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

fn report(cases: u32, workers: usize, stats: &CaseStats, seconds: &[f64]) {
    let mut sorted = seconds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |index: usize| sorted.get(index).copied().unwrap_or(f64::NAN);
    let median = at(sorted.len() / 2);
    let (fastest, slowest) = (at(0), at(sorted.len().saturating_sub(1)));
    let ops = stats.ops as f64;
    println!("  {workers} worker(s), median of {} rounds:", sorted.len());
    println!(
        "    cases           {cases} in {median:.2} s = {:.1} cases/s",
        f64::from(cases) / median
    );
    println!(
        "    operations      {} = {:.0} ops/s (rounds: {:.0}–{:.0})",
        stats.ops,
        ops / median,
        ops / slowest,
        ops / fastest
    );
    println!(
        "    reach a channel {} ({:.0} %)",
        stats.channel_ops,
        100.0 * stats.channel_ops as f64 / stats.ops.max(1) as f64
    );
}

/// Runs the suite `rounds` times on `workers`: the stats (the same every round: the cases
/// depend on the seed and count only) and each round's seconds.
fn rounds(cases: u32, seed: u64, workers: usize, rounds: usize) -> (CaseStats, Vec<f64>) {
    let mut seconds = Vec::new();
    let mut stats = CaseStats::default();
    for _ in 0..rounds.max(1) {
        let (round, elapsed) = measure(cases, seed, workers);
        stats = round;
        seconds.push(elapsed);
    }
    (stats, seconds)
}

fn main() {
    let cases = cases_from_env(256);
    let seed = seed_from_env(20_260_101);
    let workers = workers_from_env(2);
    let count = std::env::var("PAYSIM_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(3);
    println!("property suite benchmark (seed {seed}, SQLite in memory, both channels)");
    let (single, seconds) = rounds(cases, seed, 1, count);
    report(cases, 1, &single, &seconds);
    let last = if workers > 1 {
        let (stats, seconds) = rounds(cases, seed, workers, count);
        report(cases, workers, &stats, &seconds);
        stats
    } else {
        single
    };
    println!("  mix ({} operations):", last.ops);
    for (name, count) in &last.mix {
        let reached = last.reached_mix.get(name).copied().unwrap_or(0);
        println!(
            "    {name:<16} {count:>6} ({:>4.1} %), {reached:>5} reached a channel",
            100.0 * *count as f64 / last.ops.max(1) as f64
        );
    }
}
