//! The experiment files users start from: `tiny.yaml` end to end at reduced
//! size (the fixture corpus, nano widths, a few steps) through every ML node
//! kind; `paper.yaml` and `gpu-small.yaml` parsed, planned and dry-run with
//! the paper's accounting.

mod common;
use common::Project;

use std::path::Path;

fn experiment(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments").join(name)).unwrap()
}

/// The experiment file `name` with `edits` applied, every edit asserted so
/// a test breaks rather than silently running the full study when the file
/// changes.
fn reduced(name: &str, edits: &[(&str, &str)]) -> String {
    let mut text = experiment(name);
    for (from, to) in edits {
        assert!(text.contains(from), "{name} no longer has `{from}`: update this test");
        text = text.replace(from, to);
    }
    text
}

/// `tiny.yaml` with its sizes turned down.
fn reduced_tiny() -> String {
    reduced(
        "tiny.yaml",
        &[
            ("paths: [data/fr]", "paths: [fr]"),
            ("split: { val: 0.005, test: 0.005 }", "split: { val: 0.3, test: 0.2 }"),
            ("vocab_size: 8192", "vocab_size: 400"),
            ("width: [64, 128, 192, 256]", "width: [16, 32]"),
            ("context: 128", "context: 32"),
            ("batch_size: 8", "batch_size: 4"),
            ("max_tokens: 131_072", "max_tokens: 2048"),
            ("eval_tokens: 4096", "eval_tokens: 256"),
            ("warmup_tokens: 8192", "warmup_tokens: 256"),
            ("bootstrap: 1000", "bootstrap: 20"),
        ],
    )
}

#[test]
fn a_reduced_tiny_yaml_runs_corpus_to_report() {
    let p = Project::with_french_corpus(&reduced_tiny());
    let run = p.sm(&["run", "-j", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // corpus, tokenizer, shards, 2 widths × 2 variants, fit, report.
    assert_eq!(run.built().len(), 9, "{:?}", run.built());
    let fit = p.fit_json("laws");
    assert_eq!(fit["groups"]["baseline"]["runs"].as_array().unwrap().len(), 2, "{fit}");
    // Two widths identify no law: the fit says so rather than print numbers.
    assert_eq!(
        fit["groups"]["baseline"]["axes"]["trainable"]["power_law"]["not_identifiable"],
        "2 model size(s): a law needs at least 3",
        "{fit}"
    );
    assert!(
        fit["multipliers"]["doped"]["trainable"]["not_identifiable"]
            .as_str()
            .unwrap()
            .starts_with("the baseline has no law"),
        "{fit}"
    );
    let html = std::fs::read_to_string(p.artifact("report").join("report.html")).unwrap();
    assert!(html.contains("tiny: baseline vs doped") && html.matches("<figure").count() >= 6);
    // A no-op rerun, and changing one width rebuilds that width's two runs, the fit and the report only.
    assert!(p.sm(&["run"]).stderr.contains("0 built, 9 fresh"));
    p.write("exp.yaml", &reduced_tiny().replace("width: [16, 32]", "width: [16, 48]"));
    let status = p.sm(&["status"]).stdout;
    assert!(status.contains("4 of 9 node(s) to build"), "{status}");
    let rerun = p.sm(&["run", "-j", "2"]);
    assert_eq!(
        rerun.built(),
        ["laws", "report", "train[width=48,variant=baseline]", "train[width=48,variant=doped]"],
        "{}",
        rerun.stderr
    );
}

/// `cpu-study.yaml` with its sizes turned down: the fixture corpus copied by
/// the `command` node that fetches the large one, a 400-token vocabulary,
/// short contexts, and 1,024 tokens for every run.
fn reduced_cpu_study() -> String {
    let text = reduced(
        "cpu-study.yaml",
        &[
            ("deps: [scripts/fetch-corpus.sh, scripts/html2text.py, scripts/corpus.py]", "deps: ['fr/**']"),
            (
                "cmd: scripts/fetch-corpus.sh --large \"$OUT\"",
                "cmd: cp fr/* \"$OUT\"/ && echo fixture > \"$OUT\"/SOURCES.tsv",
            ),
            ("split: { val: 0.01, test: 0.01 }", "split: { val: 0.3, test: 0.2 }"),
            ("vocab_size: 2048", "vocab_size: 400"),
            ("context: 128", "context: 32"),
            ("batch_size: 32", "batch_size: 4"),
            ("eval_points: 12", "eval_points: 6"),
            ("eval_tokens: 65_536", "eval_tokens: 256"),
            ("warmup_tokens: 65_536", "warmup_tokens: 256"),
            ("bootstrap: 1000", "bootstrap: 20"),
        ],
    );
    let budgets = text.lines().filter(|l| l.trim_start().starts_with("max_tokens:")).count();
    assert_eq!(budgets, 15, "one budget per run");
    text.lines()
        .map(|l| if l.trim_start().starts_with("max_tokens:") { "    max_tokens: 1024" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_reduced_cpu_study_runs_all_four_families_to_the_report() {
    let p = common::training_project(&reduced_cpu_study());
    let run = p.sm(&["run", "-j", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // french_docs, corpus, tokenizer, shards, 15 runs, fit, report.
    assert_eq!(run.built().len(), 21, "{:?}", run.built());
    let fit = p.fit_json("laws");
    for (family, runs) in [("baseline", 6), ("doped", 3), ("fastfood", 3), ("blockdiag_hadamard", 3)] {
        assert_eq!(fit["groups"][family]["runs"].as_array().unwrap().len(), runs, "{family}");
        assert_eq!(fit["groups"][family]["sizes"], runs, "{family}: every run is its own size");
        if family != "baseline" {
            for model in ["trainable", "frozen_2_3", "frozen_full", "fastfood_free"] {
                let m = &fit["multipliers"][family][model];
                assert!(
                    m["fitted"]["estimate"]["value"].is_number() || m["not_identifiable"].is_string(),
                    "{family} on {model}: {m}"
                );
            }
        }
    }
    // Every run was evaluated on the test split at its end.
    for id in ["baseline_1x32", "doped_2x64", "fastfood_2x96", "blockdiag_2x128"] {
        let show = p.sm(&["show", id]).stdout;
        assert!(show.contains("metric  test_loss = "), "{id}: no test loss\n{show}");
    }
    let html = std::fs::read_to_string(p.artifact("report").join("report.html")).unwrap();
    for figure in common::PAPER_FIGURES {
        assert!(html.contains(&format!("<figure id=\"{figure}\"><svg")), "{figure} missing from report.html");
    }
    assert!(html.contains("<p class=\"answer\">") && html.contains("test loss"), "the answer and the test losses");
    assert!(p.sm(&["run"]).stderr.contains("0 built, 21 fresh"));
}

fn in_repo(args: &[&str]) -> common::Run {
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scalemake"))
        .args(args)
        .arg("--cache")
        .arg(cache.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SCALEMAKE_FILE")
        .output()
        .unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The GPT-2-tokenized tour loads and plans its three runs (tests/formats.rs
/// trains through a `pretrained: gpt2` tokenizer end to end).
#[test]
fn gpt2_tiny_yaml_plans_three_runs_on_a_pretrained_tokenizer() {
    let plan = in_repo(&["plan", "experiments/gpt2-tiny.yaml"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    for width in [32, 64, 96] {
        assert!(plan.stdout.contains(&format!("train[width={width}]")), "{}", plan.stdout);
    }
}

#[test]
fn paper_yaml_plans_the_papers_tables() {
    let plan = in_repo(&["plan", "experiments/paper.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    // Non-embedding trainable N (and frozen, structured) of Tables 1–3 at vocabulary 50,262.
    for (node, trainable, frozen, structured) in [
        ("baseline[size=xxsmall]", "21.27M", "0", "0"),
        ("baseline[size=xsmall]", "42.53M", "0", "0"),
        ("baseline[size=small]", "85.06M", "0", "0"),
        ("baseline_medium", "302.31M", "0", "0"),
        ("doped[size=doped_xsmall]", "21.27M", "14.17M", "0"),
        ("doped[size=doped_small]", "42.53M", "35.42M", "0"),
        ("doped_medium", "151.16M", "138.49M", "0"),
        ("fastfood", "50.79M", "0", "294.9k"),
        ("blockdiag", "75.66M", "0", "25.17M"),
    ] {
        let line = plan
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("{node} missing:\n{}", plan.stdout));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[1..5], [trainable, frozen, structured, "32.00G"], "{line}");
    }
    // The paper's C = 6·N·D beside the FLOPs that really run (head, attention, evaluations).
    let xxsmall: Vec<&str> =
        plan.stdout.lines().find(|l| l.starts_with("baseline[size=xxsmall] ")).unwrap().split_whitespace().collect();
    assert_eq!(&xxsmall[5..7], ["4.08e18", "1.24e19"], "{xxsmall:?}");
    assert!(plan.stdout.contains("C = 6·N·D is the paper's compute"), "{}", plan.stdout);
    assert!(plan.stdout.contains("total: 9 training node(s)"), "{}", plan.stdout);
    let dry = in_repo(&["run", "--dry-run", "experiments/paper.yaml"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("(23 selected)") && dry.stdout.contains("of GPU time on one H100 at 22% MFU"),
        "{}",
        dry.stdout
    );
    let h200 = in_repo(&["run", "--dry-run", "experiments/paper.yaml", "--gpu", "H200", "--mfu", "0.2"]);
    assert!(
        h200.stdout.contains("of GPU time on one H200 at 20% MFU"),
        "--dry-run takes plan's --gpu/--mfu: {}",
        h200.stdout
    );
}

#[test]
fn gpu_families_yaml_plans_four_families_that_read_no_window_twice() {
    let plan = in_repo(&["plan", "experiments/gpu-families.yaml", "--gpu", "H100"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("total: 20 training node(s)"), "{}", plan.stdout);
    for variant in ["baseline", "doped", "fastfood", "blockdiag_hadamard"] {
        assert!(plan.stdout.contains(&format!("train[width=768,variant={variant}]")), "{variant}: {}", plan.stdout);
    }
    let show = in_repo(&["show", "-f", "experiments/gpu-families.yaml", "train[width=256,variant=fastfood]"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains("sampling: epochs"), "{}", show.stdout);
}

#[test]
fn gpu_small_yaml_plans_five_widths_of_both_variants() {
    let plan = in_repo(&["plan", "experiments/gpu-small.yaml", "--mfu", "0.2"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("total: 10 training node(s)"), "{}", plan.stdout);
    for width in [256, 384, 512, 640, 768] {
        let n = |variant: &str| {
            let line = plan
                .stdout
                .lines()
                .find(|l| l.starts_with(&format!("train[width={width},variant={variant}]")))
                .unwrap();
            line.split_whitespace().nth(1).unwrap().to_string()
        };
        assert_eq!(n("baseline"), n("doped"), "equal trainable parameters at width {width}");
    }
    assert_eq!(
        in_repo(&["plan", "experiments/gpu-small.yaml", "--mfu", "1.5"]).code,
        2,
        "an MFU above 1 is a usage error"
    );
}
