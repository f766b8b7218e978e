//! Warmup–stable–decay runs and cooldown branches (`from:`, `at_tokens:`)
//! on the French fixture: a branch from a kept checkpoint ends with the
//! same weights, bit for bit on the CPU, as the uninterrupted schedule it
//! shortcuts; adding a branch rebuilds only it and what reads it; branches
//! that could not continue their source are refused when the file loads.
//!
//! Needs the worker binary next to `scalemake` (`cargo nextest run
//! --workspace` builds both).

mod common;
use common::{curve, Project};

/// Corpus → BPE (400) → shards, then training nodes of the nano preset at
/// 4 × 64 = 256 tokens per step. `stable` is a WSD run of 80 steps that
/// keeps its state after 32 and 48 steps; `whole` is the 60-step WSD run
/// whose decay starts at step 48 (12 steps of cooldown), trained straight
/// through; `cool48` is the same 60-step schedule started from `stable`'s
/// checkpoint at step 48.
const STUDY: &str = "
name: wsd
nodes:
  corpus: {kind: corpus, paths: [fr], split: {val: 0.3, test: 0.2}}
  tokenizer: {kind: tokenizer, input: corpus, vocab_size: 400}
  shards: {kind: shards, input: [corpus, tokenizer], shard_tokens: 100000}
  stable:
    kind: train
    input: shards
    model: {preset: nano}
    batch_size: 4
    micro_batch: 2
    max_tokens: 20480
    keep_checkpoints: [8192, 12288]
    eval_points: 4
    eval_tokens: 512
    optim: {lr: 3e-3, warmup_tokens: 1024, schedule: wsd, cooldown_tokens: 4096, final_lr_fraction: 0.0}
    device: cpu
    threads: 1
  whole:
    kind: train
    input: shards
    model: {preset: nano}
    batch_size: 4
    micro_batch: 2
    max_tokens: 15360
    eval_points: 4
    eval_tokens: 512
    optim: {lr: 3e-3, warmup_tokens: 1024, schedule: wsd, cooldown_tokens: 3072, final_lr_fraction: 0.0}
    device: cpu
    threads: 1
  cool48:
    kind: train
    from: stable
    at_tokens: 12288
    max_tokens: 15360
    optim: {cooldown_tokens: 3072}
";

/// A fit and a report over the stable run and its branches.
const FIT_AND_REPORT: &str = "
  laws: {kind: fit, input: [stable, 'cool*'], bootstrap: 20}
  report: {kind: report, input: [laws, stable, 'cool*']}
";

/// A second branch, from the other kept checkpoint.
const COOL32: &str = "
  cool32:
    kind: train
    from: stable
    at_tokens: 8192
    max_tokens: 10240
    optim: {cooldown_tokens: 2048}
";

#[test]
fn a_cooldown_branch_ends_with_the_weights_of_the_uninterrupted_schedule() {
    let p = common::training_project(STUDY);
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.built(), ["cool48", "corpus", "shards", "stable", "tokenizer", "whole"]);

    let (whole, branch, stable) = (p.artifact("whole"), p.artifact("cool48"), p.artifact("stable"));
    for tokens in [8192, 12288] {
        let kept = stable.join(format!("checkpoints/tokens-{tokens:012}.safetensors"));
        assert!(kept.exists(), "{} missing", kept.display());
    }
    assert!(!whole.join("checkpoints").exists(), "a run keeps no checkpoints unless asked");
    let weights = |dir: &std::path::Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(weights(&whole) == weights(&branch), "the branch's final weights are the uninterrupted run's, bit for bit");
    assert!(weights(&whole) != weights(&stable), "and differ from the stable run's (a different schedule)");

    // The branch's own steps are the uninterrupted run's last 12, counted from 0.
    let whole_steps = curve(&whole.join("metrics/steps.jsonl"));
    let branch_steps = curve(&branch.join("metrics/steps.jsonl"));
    assert_eq!(branch_steps.len(), 12);
    assert_eq!(branch_steps[0]["step"], 49);
    assert_eq!(branch_steps[..], whole_steps[48..]);
    assert!(branch_steps[11]["lr"].as_f64().unwrap() < 3e-3 / 10.0, "the decay reached its floor");
    // Its evaluations are its own, from the branch point to its end.
    let evals = curve(&branch.join("metrics/eval.jsonl"));
    let eval_steps: Vec<u64> = evals.iter().map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(eval_steps.first(), Some(&49));
    assert_eq!(eval_steps.last(), Some(&60));
    let record = scalemake::train::record::TrainRecord::read(&branch).unwrap();
    assert_eq!((record.tokens, record.branched_at), (15360, Some(12288)), "its (N, D) point is a 15,360-token run");
    let whole_record = scalemake::train::record::TrainRecord::read(&whole).unwrap();
    assert_eq!(record.val_loss, whole_record.val_loss);
    assert_eq!(whole_record.branched_at, None);
}

#[test]
fn adding_a_cooldown_rebuilds_only_it_the_fit_and_the_report() {
    let p = common::training_project(&format!("{STUDY}{FIT_AND_REPORT}"));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let before = p.keys();

    p.write("exp.yaml", &format!("{STUDY}{COOL32}{FIT_AND_REPORT}"));
    let status = p.sm(&["status"]);
    assert!(status.stdout.contains("cool32") && status.stdout.contains("never built"), "{}", status.stdout);
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.built(), ["cool32", "laws", "report"]);
    // The stable run and the first branch kept their keys: nothing of theirs reran.
    let after = p.keys();
    for (node, key) in before.iter().filter(|(n, _)| !["laws", "report"].contains(&n.as_str())) {
        assert_eq!(after.iter().find(|(n, _)| n == node).map(|(_, k)| k), Some(key), "{node}");
    }
    let record = scalemake::train::record::TrainRecord::read(&p.artifact("cool32")).unwrap();
    assert_eq!((record.tokens, record.branched_at), (10240, Some(8192)));
}

/// The first error of loading `nodes` after the data nodes (status exits 2).
fn load_error(extra: &str) -> String {
    let p = Project::new(&format!("{STUDY}{extra}"));
    let status = p.sm(&["status"]);
    assert_eq!(status.code, 2, "{}", status.stderr);
    status.stderr
}

#[test]
fn branches_that_cannot_continue_their_source_are_refused_with_the_place_and_a_fix() {
    let not_kept = load_error("  cool40:\n    kind: train\n    from: stable\n    at_tokens: 10240\n    max_tokens: 12288\n    optim: {cooldown_tokens: 2048}\n");
    assert!(not_kept.contains("the source keeps no checkpoint at 10240 tokens (it keeps [8192, 12288])"), "{not_kept}");
    assert!(not_kept.contains("exp.yaml:41:16"), "points at at_tokens: {not_kept}");
    assert!(not_kept.contains("add this one to the source's `keep_checkpoints`"), "{not_kept}");

    let nothing_kept =
        load_error("  cool_w:\n    kind: train\n    from: whole\n    at_tokens: 8192\n    max_tokens: 10240\n");
    assert!(nothing_kept.contains("keeps no checkpoint at 8192 tokens (it keeps none)"), "{nothing_kept}");

    let other_model = load_error(
        "  wide:\n    kind: train\n    from: stable\n    at_tokens: 8192\n    max_tokens: 10240\n    model: {d_model: 96}\n    optim: {cooldown_tokens: 2048}\n",
    );
    assert!(other_model.contains("`model` must stay"), "{other_model}");

    let no_source =
        load_error("  lost:\n    kind: train\n    from: stabel\n    at_tokens: 8192\n    max_tokens: 10240\n");
    assert!(
        no_source.contains("no node named `stabel` above this branch") && no_source.contains("did you mean `stable`?"),
        "{no_source}"
    );

    let no_point = load_error("  where:\n    kind: train\n    from: stable\n    max_tokens: 10240\n");
    assert!(no_point.contains("say which with `at_tokens:`"), "{no_point}");
}
