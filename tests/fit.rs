//! The `fit` node on published-style data (a CSV of runs): the law it
//! recovers, its intervals, and how it reruns when the data changes.

mod common;
use common::Project;

/// Two families on L = (1e8 / (k·C))^0.05 with C = 6·N·D: the baseline (k = 1)
/// and a variant that needs half the compute (k = 2); each run also has a
/// 10%-worse twin that the envelope must ignore.
fn csv() -> String {
    let mut out = String::from("run,group,n,tokens,loss\n");
    for (group, k) in [("baseline", 1.0), ("doped", 2.0)] {
        for n in [1e6, 4e6, 16e6, 64e6] {
            for (suffix, penalty) in [("", 1.0), ("-worse", 1.1)] {
                for i in 1..=25 {
                    let tokens = 1e6 * 1.35f64.powi(i);
                    let loss = penalty * (1e8 / (k * 6.0 * n * tokens)).powf(0.05);
                    out.push_str(&format!("{group}-{n}{suffix},{group},{n},{tokens},{loss}\n"));
                }
            }
        }
    }
    out
}

const STUDY: &str = "
nodes:
  laws:
    kind: fit
    csv: runs.csv
    bootstrap: 40
    envelope_points: 25
";

#[test]
fn fits_a_csv_of_runs_with_intervals_and_multipliers() {
    let p = Project::new(STUDY);
    p.write("runs.csv", &csv());
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fit = p.fit_json("laws");
    let alpha = &fit["groups"]["baseline"]["axes"]["trainable"]["power_law"]["fitted"]["alpha"];
    assert!((alpha["value"].as_f64().unwrap() - 0.05).abs() < 1e-3, "{alpha}");
    assert!(
        alpha["low"].as_f64().unwrap() <= alpha["value"].as_f64().unwrap()
            && alpha["value"].as_f64().unwrap() <= alpha["high"].as_f64().unwrap()
    );
    let m = fit["multipliers"]["doped"]["trainable"]["fitted"]["estimate"]["value"].as_f64().unwrap();
    assert!((m - 2.0).abs() < 0.1, "multiplier {m}");
    let show = p.sm(&["show", "laws"]).stdout;
    assert!(show.contains("baseline: 8 run(s), 4 size(s)"), "{show}");
    assert!(show.contains("doped vs baseline: effective-compute multiplier on C_trainable = 2.0"), "{show}");

    // The CSV is a declared file input: editing it reruns the fit.
    assert!(p.sm(&["run"]).stderr.contains("0 built, 1 fresh"));
    p.write("runs.csv", &csv().lines().take(60).collect::<Vec<_>>().join("\n"));
    let status = p.sm(&["status"]).stdout;
    assert!(status.contains("file `runs.csv` changed"), "{status}");
}

#[test]
fn a_csv_without_the_needed_columns_is_a_clear_failure() {
    let p = Project::new(STUDY);
    p.write("runs.csv", "run,params,loss\na,1,2\n");
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("runs.csv: no `n` column (need run, n, tokens, loss)"), "{}", run.stderr);
}

/// The evaluations of `experiments/tiny.yaml`'s eight CPU runs (width ×
/// {baseline, doped}): early-training curves that once sent a line search
/// into an endless NaN cycle. The fit must finish and give finite laws.
#[test]
fn real_early_training_curves_fit_in_seconds() {
    let p = Project::new("nodes:\n  laws: {kind: fit, csv: runs.csv, bootstrap: 200}\n");
    p.write("runs.csv", include_str!("fixtures/tiny_runs.csv"));
    let started = std::time::Instant::now();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(started.elapsed().as_secs() < 60, "took {:?}", started.elapsed());
    let fit = p.fit_json("laws");
    let text = std::fs::read_to_string(p.artifact("laws").join("fit.json")).unwrap();
    let nulls: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.contains("null")
                && !["\"multiplier\": null", "leave_largest_out", "\"parabola\": null", "\"convergence\": null"]
                    .iter()
                    .any(|optional| l.contains(optional))
        })
        .collect();
    assert!(nulls.is_empty(), "NaN or ∞ written as null: {nulls:?}");
    for group in ["baseline", "doped"] {
        let alpha =
            fit["groups"][group]["axes"]["trainable"]["power_law"]["fitted"]["alpha"]["value"].as_f64().unwrap();
        assert!(alpha > 0.0 && alpha < 1.0, "{group}: α = {alpha}");
    }
}

/// An isoFLOP grid on Hoffmann et al.'s L(N, D) (E = 1.69, A = 406.4,
/// α = 0.34, B = 410.7, β = 0.28; a = β/(α+β) = 0.452) with ±0.1%
/// deterministic wiggle: five budgets 1e17–1e19 FLOP, five sizes each
/// around the optimum, ten evaluations per run.
fn isoflop_csv() -> String {
    let mut out = String::from("run,group,n,tokens,loss\n");
    let mut k = 0u32;
    for budget in 0..5 {
        let c = 1e17 * 10f64.powf(budget as f64 / 2.0);
        let centre = (1.344 * (c / 6.0).powf(0.28 / 0.62)).log10();
        for step in -2..=2 {
            let n = 10f64.powf(centre + 0.15 * step as f64).round();
            for i in 0..10 {
                let tokens = c / (6.0 * n) * 20f64.powf(i as f64 / 9.0 - 1.0);
                k += 1;
                let wiggle = 1.0 + 0.001 * (f64::from(k) * 2.39).sin();
                let loss = (1.69 + 406.4 / n.powf(0.34) + 410.7 / tokens.powf(0.28)) * wiggle;
                out.push_str(&format!("c{budget}-n{step},baseline,{n},{tokens},{loss}\n"));
            }
        }
    }
    out
}

#[test]
fn an_isoflop_grid_gives_the_compute_optimal_allocation_three_ways() {
    let p = Project::new("nodes:\n  laws: {kind: fit, csv: runs.csv, bootstrap: 20}\n");
    p.write("runs.csv", &isoflop_csv());
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let optimal = &p.fit_json("laws")["groups"]["baseline"]["compute_optimal"];
    assert_eq!(optimal["cost_model"], "trainable");
    assert_eq!(optimal["isoflop_profiles"].as_array().unwrap().len(), 5, "{}", optimal["isoflop_profiles"]);
    for approach in ["envelope", "isoflop", "parametric"] {
        let a = optimal[approach]["fitted"]["n_opt"]["exponent"]["value"].as_f64();
        let b = optimal[approach]["fitted"]["d_opt"]["exponent"]["value"].as_f64();
        let (a, b) = (a.unwrap_or_else(|| panic!("{approach}: {}", optimal[approach])), b.unwrap());
        assert!((a - 0.4516).abs() < 0.03 && (b - 0.5484).abs() < 0.03, "{approach}: a = {a}, b = {b}");
    }
    assert_eq!(optimal["convergence"]["termination"], "Solver converged", "{}", optimal["convergence"]);
    let show = p.sm(&["show", "laws"]).stdout;
    assert!(show.contains("compute-optimal allocation, N_opt = G·C^a and D_opt = H·C^b"), "{show}");
    for row in ["1: envelope", "2: isoFLOP profiles", "3: L(N, D)"] {
        let line = show.lines().find(|l| l.trim_start().starts_with(row)).unwrap_or_else(|| panic!("{row}: {show}"));
        assert!(line.contains(" [0.") && !line.contains("not identifiable"), "{line}");
    }
    assert!(show.contains("the approaches agree on a (N_opt ∝ C^a)") || show.contains("disagree on a"), "{show}");
    assert!(show.contains("The L(N, D) fit behind approach 3 converged"), "{show}");
}

/// With a margin the fit gives each family a verdict read from its whole
/// interval; a margin that does not bracket 1 is refused.
#[test]
fn judges_each_family_against_an_equivalence_margin() {
    let study = |margin: &str| format!("{STUDY}    equivalence: {margin}\n");
    let p = Project::new(&study("[0.8, 1.25]"));
    p.write("runs.csv", &csv());
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fit = p.fit_json("laws");
    let doped = &fit["statistics"]["families"]["doped"];
    assert_eq!(doped["verdict"], "better", "{doped}");
    assert_eq!(doped["per_size"].as_array().unwrap().len(), 4, "{doped}");
    // Each run's 10%-worse twin shares its N and D: the noise floor sees them as repeats.
    assert_eq!(fit["statistics"]["noise"]["cells"], 8, "{}", fit["statistics"]);
    let show = p.sm(&["show", "laws"]).stdout;
    assert!(show.contains(": better (margin [0.8, 1.25])"), "{show}");
    assert!(show.contains("noise floor: a run's final loss varies by sd"), "{show}");
    // The runs it fitted come with it, in the form `csv:` reads back.
    let runs = std::fs::read_to_string(p.artifact("laws").join("runs.csv")).unwrap();
    assert_eq!(runs.lines().next(), Some("run,group,n,frozen,structured,fastfood,tokens,loss"));
    assert_eq!(runs.lines().count(), csv().lines().count());

    p.write("exp.yaml", &study("[1.1, 1.25]"));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("`equivalence:` is [low, high] with 0 < low < 1 < high"), "{}", run.stderr);
}
