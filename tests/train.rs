//! The `train` node end to end on the small French fixture: a nano GPT
//! trained from real shards by the libtorch worker, parameter accounting in
//! `show`, no-op reruns, and exact resumption after `kill -9`.
//!
//! Needs the worker binary next to `scalemake` (`cargo nextest run
//! --workspace` builds both).

mod common;
use common::{curve, tensorboard_scalars, Project};
use scalemake::train::VARIANT_NAMES;

use std::path::PathBuf;
use std::time::{Duration, Instant};

const STUDY: &str = common::NANO_STUDY;

fn project() -> Project {
    common::training_project(STUDY)
}

fn artifact(p: &Project) -> PathBuf {
    p.artifact("train")
}

#[test]
fn trains_counts_parameters_and_reruns_as_a_noop() {
    let p = project();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.built(), ["corpus", "shards", "tokenizer", "train"]);
    let out = artifact(&p);
    for file in [
        "model.safetensors",
        "config.json",
        "metrics/steps.csv",
        "metrics/steps.jsonl",
        "metrics/eval.csv",
        "metrics/eval.jsonl",
    ] {
        assert!(out.join(file).exists(), "{file} missing from the artifact");
    }
    let steps = curve(&out.join("metrics/steps.jsonl"));
    assert_eq!(steps.len(), 60);
    let first = steps[0]["loss"].as_f64().unwrap();
    assert!((first - 400f64.ln()).abs() < 0.2, "initial loss {first} ≈ ln 400");
    let evals = curve(&out.join("metrics/eval.jsonl"));
    let eval_steps: Vec<u64> = evals.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(eval_steps, [1, 2, 5, 12, 26, 60], "log-spaced evaluations, both ends included");
    let (v0, v1) = (evals[0]["val_loss"].as_f64().unwrap(), evals[5]["val_loss"].as_f64().unwrap());
    assert!(v1 < v0 - 0.5, "validation loss falls: {v0} → {v1}");
    // C = 6·N·D with N = 2·(12·64² + 13·64) + 2·64 = 100,096 for the nano preset.
    let last = &steps[59];
    assert_eq!(last["tokens"], 15360);
    assert_eq!(last["compute"]["trainable"].as_f64().unwrap(), 6.0 * 100_096.0 * 15360.0);
    let csv = std::fs::read_to_string(out.join("metrics/steps.csv")).unwrap();
    assert!(csv.starts_with("step,tokens,lr,loss,grad_norm,compute_trainable,compute_frozen_2_3,compute_frozen_full,compute_fastfood_free,tokens_per_second,mfu\n"), "{csv}");
    assert_eq!(csv.lines().count(), 61);
    // The run's record: its settings, and the final model evaluated on the test split too.
    let record = scalemake::train::record::TrainRecord::read(&out).unwrap();
    assert_eq!((record.steps, record.tokens, record.batch_size, record.optim.warmup_tokens), (60, 15360, 4, 1024.0));
    assert_eq!(record.val_loss, evals[5]["val_loss"].as_f64().unwrap());
    let test = record.test_loss.expect("the fixture corpus has a test split");
    assert!(test.is_finite() && test < v0, "test loss {test}");

    let show = p.sm(&["show", "train"]).stdout;
    assert!(
        show.contains("parameters: N = 100,096 trainable non-embedding, 0 frozen, 0 structured, 25,600 embedding"),
        "{show}"
    );
    assert!(show.contains("metric  params_trainable = 100096"), "{show}");
    assert!(show.contains("compute: C = 6·N·D = 9.225e9 FLOP"), "{show}");
    assert!(show.contains(&format!("metric  test_loss = {test}")) && show.contains(", test loss "), "{show}");

    let again = p.sm(&["run"]);
    assert!(again.stderr.contains("0 built, 4 fresh"), "{}", again.stderr);
}

fn checkpoint_step(p: &Project) -> Option<u64> {
    common::checkpoint_steps(p).into_values().next()
}

#[test]
fn a_killed_run_resumes_with_the_same_loss_curve() {
    let whole = project();
    assert_eq!(whole.sm(&["run"]).code, 0);

    let broken = project();
    assert_eq!(broken.sm(&["run", "shards"]).code, 0);
    let mut child = broken.spawn(&["run"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint_step(&broken).is_none() {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SIGKILL: no handler runs; the worker dies with its parent (PDEATHSIG).
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = checkpoint_step(&broken).unwrap();
    assert!(killed_at < 60, "killed after the last step");
    assert!(broken.keys().iter().any(|(n, _)| n == "train"));
    assert!(!artifact(&broken).exists(), "a killed run leaves no artifact");

    let resumed = broken.sm(&["run"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(resumed.built(), ["train"]);
    let log = broken.read("cache/logs/study/train.log");
    assert!(log.contains("resuming from the checkpoint after step"), "{log}");
    for file in ["metrics/steps.jsonl", "metrics/eval.jsonl"] {
        assert_eq!(
            curve(&artifact(&whole).join(file)),
            curve(&artifact(&broken).join(file)),
            "{file} differs after resuming from step {killed_at}"
        );
    }
    let weights = |p: &Project| std::fs::read(artifact(p).join("model.safetensors")).unwrap();
    assert!(weights(&whole) == weights(&broken), "final weights are bit-identical");
}

#[test]
fn worker_failures_and_bad_budgets_are_reported_with_the_reason() {
    let p = project();
    // The worker itself refuses (a device this machine does not have): its reason reaches the user.
    p.write("exp.yaml", &STUDY.replace("device: cpu", "device: 'cuda:9'\n    resources: {gpu: 0}"));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("training failed: device cuda:9 was asked for, but libtorch sees"), "{}", run.stderr);
    // A warmup longer than the run is caught before any training.
    p.write("exp.yaml", &STUDY.replace("warmup_tokens: 1024", "warmup_tokens: 409.6e6"));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("optim.warmup_tokens (409600000) exceeds max_tokens (15360)"), "{}", run.stderr);
}

#[test]
fn a_sweep_over_variants_trains_each_with_its_accounting() {
    let matrix = format!(
        "    model: {{preset: nano}}\n    matrix: {{variant: [{}]}}\n    variant: ${{variant}}\n",
        VARIANT_NAMES.join(", ")
    );
    let sweep = STUDY.replace("    model: {preset: nano}\n", &matrix).replace("max_tokens: 15360", "max_tokens: 5120")
        + "  laws: {kind: fit, input: train, bootstrap: 10}\n  report: {kind: report, input: [train, laws]}\n";
    let p = Project::with_french_corpus(&sweep);
    let run = p.sm(&["run", "-j", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A run per variant, then corpus, tokenizer, shards, fit and report.
    assert_eq!(run.built().len(), VARIANT_NAMES.len() + 5, "{}", run.stderr);
    // The fit reads every run, grouped by variant; one size per family identifies no law.
    let fit = p.fit_json("laws");
    for variant in VARIANT_NAMES {
        assert_eq!(fit["groups"][variant]["runs"][0], format!("train[variant={variant}]"), "{fit}");
        assert_eq!(
            fit["groups"][variant]["axes"]["trainable"]["power_law"]["not_identifiable"],
            "1 model size(s): a law needs at least 3",
            "{variant}"
        );
    }
    let why = fit["multipliers"]["doped"]["trainable"]["not_identifiable"].as_str().unwrap();
    assert!(why.starts_with("the baseline has no law to compare with"), "{why}");
    // The report: one HTML file with every figure inline, and the tables.
    let report = p.artifact("report");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    // Every family's figure of the paper; no residuals, as no law was fitted.
    let figures: Vec<&str> = common::PAPER_FIGURES
        .iter()
        .chain(&common::EXTRA_FIGURES)
        .copied()
        .filter(|f| *f != "residuals_trainable")
        .collect();
    for figure in &figures {
        assert!(html.contains(&format!("<figure id=\"{figure}\"><svg")), "{figure} missing from report.html");
        assert!(report.join(format!("figures/{figure}.svg")).exists());
        let png = std::fs::read(report.join(format!("figures/{figure}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000, "{figure}.png is a real image");
    }
    assert_eq!(html.matches("<svg").count(), figures.len());
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("| train[variant=doped] | doped | 2 + 1 frozen | 64 | 2 | 100.1k | 49.6k | 0 | 5.1k |"),
        "{md}"
    );
    // nano, d = 64, 2 layers: trainable, frozen, structured (see ModelShape::param_counts).
    for (variant, trainable, frozen, structured) in [
        ("baseline", 100_096, 0, 0),
        ("doped", 100_096, 49_600, 0),
        ("fastfood", 37_632, 0, 3_072),
        ("blockdiag_hadamard", 50_944, 0, 16_384),
    ] {
        let id = format!("train[variant={variant}]");
        let show = p.sm(&["show", &id]).stdout;
        for (metric, value) in
            [("params_trainable", trainable), ("params_frozen", frozen), ("params_structured", structured)]
        {
            assert!(
                show.contains(&format!("metric  {metric} = {value}\n")),
                "{id}: {metric} should be {value}\n{show}"
            );
        }
        let evals = curve(&p.artifact(&id).join("metrics/eval.jsonl"));
        let (first, last) =
            (evals[0]["val_loss"].as_f64().unwrap(), evals.last().unwrap()["val_loss"].as_f64().unwrap());
        assert!(last < first - 0.3, "{id}: validation loss {first} → {last}");
        let c = &evals.last().unwrap()["compute"];
        let tokens = 5120.0;
        assert_eq!(c["frozen_2_3"].as_f64().unwrap(), (6.0 * trainable as f64 + 4.0 * frozen as f64) * tokens, "{id}");
        // Only FastFood's diagonals are taken as free; block-diagonal weights cost as dense ones.
        let free = if variant == "fastfood" { structured } else { 0 };
        assert_eq!(c["fastfood_free"].as_f64().unwrap(), 6.0 * (trainable - free) as f64 * tokens, "{id}");
        assert_eq!(c["frozen_full"].as_f64().unwrap(), 6.0 * (trainable + frozen) as f64 * tokens, "{id}");
        assert!(show.contains("metric  test_loss = "), "{id}: evaluated on the test split\n{show}");
    }
}

#[test]
fn tensorboard_reads_the_runs_scalars_from_the_artifact() {
    let p = project();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = artifact(&p);
    let scalars = tensorboard_scalars(&out.join("tensorboard"));
    let steps = curve(&out.join("metrics/steps.jsonl"));
    let loss = scalars["train/loss"].as_array().unwrap();
    assert_eq!(loss.len(), steps.len(), "one point per step");
    for (point, row) in loss.iter().zip(&steps) {
        assert_eq!(point[0], row["step"]);
        let (tb, ours) = (point[1].as_f64().unwrap(), row["loss"].as_f64().unwrap());
        assert!((tb - ours).abs() <= 1e-6 * ours.abs(), "loss at step {}: {tb} vs {ours}", row["step"]);
    }
    let val: Vec<u64> = scalars["val/loss"].as_array().unwrap().iter().map(|p| p[0].as_u64().unwrap()).collect();
    assert_eq!(val, [1, 2, 5, 12, 26, 60]);
    for tag in ["train/lr", "train/grad_norm", "train/tokens_per_second"] {
        assert_eq!(scalars[tag].as_array().map(Vec::len), Some(steps.len()), "{tag}");
    }
}

#[test]
fn tensorboard_sees_a_run_while_it_trains() {
    // 600 steps: long enough to be read mid-run.
    let p = common::training_project(&STUDY.replace("max_tokens: 15360", "max_tokens: 153600"));
    assert_eq!(p.sm(&["run", "shards"]).code, 0);
    let mut child = p.spawn(&["run"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let live = loop {
        let dir = std::fs::read_dir(p.path().join("cache/work"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("tensorboard"))
            .find(|d| d.is_dir());
        if let Some(dir) = dir {
            let scalars = tensorboard_scalars(&dir);
            if scalars["train/loss"].as_array().is_some_and(|points| !points.is_empty()) {
                break scalars;
            }
        }
        assert!(Instant::now() < deadline, "no live scalars appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was seen live");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let first = &live["train/loss"][0];
    assert_eq!(first[0], 1, "the first step");
    assert!((first[1].as_f64().unwrap() - 400f64.ln()).abs() < 0.2, "{first}");
}
