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
        .filter(|l| l.contains("null") && !l.contains("\"multiplier\": null") && !l.contains("leave_largest_out"))
        .collect();
    assert!(nulls.is_empty(), "NaN or ∞ written as null: {nulls:?}");
    for group in ["baseline", "doped"] {
        let alpha =
            fit["groups"][group]["axes"]["trainable"]["power_law"]["fitted"]["alpha"]["value"].as_f64().unwrap();
        assert!(alpha > 0.0 && alpha < 1.0, "{group}: α = {alpha}");
    }
}
