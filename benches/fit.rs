//! Fit benchmark: one `fit_study` over a study the size of a large sweep —
//! 100 runs × 200 evaluations, 1,000 bootstrap replicates (the defaults of
//! the `fit` node), on every core.
//!
//! The runs are synthetic (so the time does not depend on a training run):
//! 10 sizes N = 1e6·2^k (k = 0..9) × 10 seeds, each evaluated at 200
//! log-spaced token counts from 1e7 to 1e10, with loss following
//! L(N, D) = 1.69 + 406.4/N^0.34 + 410.7/D^0.28 times 0.3% noise. That
//! exercises every law: the envelope power law and E + A·C^−α on four cost
//! axes, L(N), and the Chinchilla L(N, D) on 18,000 evaluations.
//!
//! Run: `cargo bench --bench fit`. Knobs: `BENCH_RUNS` (100), `BENCH_POINTS`
//! (200), `BENCH_BOOTSTRAP` (1000), `BENCH_REPS` (3). Prints the median,
//! min and max wall time of `fit_study` and the fitted exponents, so a
//! fast but wrong fit shows.

use std::time::Instant;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scalemake::fit::study::fit_study;
use scalemake::fit::{Frontier, Run, RunPoint, Settings};
use scalemake::train::{Compute, CostModel, ParamCounts};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn study(runs: usize, points: usize) -> Vec<Run> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut noise = || 1.0 + 0.003 * ((rng.next_u64() as f64 / u64::MAX as f64) * 2.0 - 1.0) * 3f64.sqrt();
    (0..runs)
        .map(|i| {
            let n = 1e6 * 2f64.powi((i % 10) as i32);
            let params = ParamCounts { trainable: n as i64, ..ParamCounts::default() };
            let points = (0..points)
                .map(|j| {
                    let tokens = 1e7 * 1000f64.powf(j as f64 / (points - 1) as f64);
                    let loss = (1.69 + 406.4 / n.powf(0.34) + 410.7 / tokens.powf(0.28)) * noise();
                    RunPoint { tokens, compute: Compute::at(&params, tokens), loss }
                })
                .collect();
            Run { id: format!("run{i}"), group: "baseline".into(), params, points, warmup_tokens: 0.0 }
        })
        .collect()
}

fn main() {
    let (runs, points, bootstrap, reps) =
        (knob("BENCH_RUNS", 100), knob("BENCH_POINTS", 200), knob("BENCH_BOOTSTRAP", 1000), knob("BENCH_REPS", 3));
    let runs = study(runs, points);
    let settings = Settings {
        skip_fraction: 0.1,
        envelope_points: 40,
        bootstrap,
        seed: 0,
        baseline: "baseline".into(),
        frontier: Frontier::Curves,
        equivalence: None,
        label: None,
    };
    println!(
        "fit_study: {} runs × {points} points, {bootstrap} bootstrap replicates, {} threads",
        runs.len(),
        rayon::current_num_threads()
    );
    let mut times = Vec::new();
    for rep in 0..reps {
        let start = Instant::now();
        let fit = match fit_study(&runs, &settings) {
            Ok(fit) => fit,
            Err(e) => {
                eprintln!("fit failed: {e}");
                std::process::exit(1);
            }
        };
        times.push(start.elapsed().as_secs_f64());
        if rep == 0 {
            let g = &fit.groups[&scalemake::fit::Family::BASELINE];
            let power = g.axes[&CostModel::Trainable].power_law.fitted().map(|l| l.alpha);
            let chin = g.chinchilla.fitted().map(|l| (l.alpha, l.beta, l.e));
            println!("  α_C (envelope power law) = {power:?}");
            println!("  Chinchilla (α, β, E) = {chin:?}  (truth 0.34, 0.28, 1.69)");
        }
        println!("  rep {}: {:.2} s", rep + 1, times[rep]);
    }
    times.sort_by(f64::total_cmp);
    println!("median {:.2} s (min {:.2}, max {:.2})", times[times.len() / 2], times[0], times[times.len() - 1]);
}
