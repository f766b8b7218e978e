//! The `select` node on a real learning-rate sweep of nano GPTs: per group
//! the rate with the lowest mean final loss over seeds wins and its seeds
//! travel on to the report; a winner at the edge of its grid is a warning;
//! a grid point added later trains that point alone.
//!
//! Needs the worker binary next to `scalemake` (`cargo nextest run
//! --workspace` builds both).

mod common;

fn study(rates: &str) -> String {
    format!(
        "
name: study
nodes:
  corpus: {{kind: corpus, paths: [fr], split: {{val: 0.3, test: 0.2}}}}
  tokenizer: {{kind: tokenizer, input: corpus, vocab_size: 400}}
  shards: {{kind: shards, input: [corpus, tokenizer], shard_tokens: 100000}}
  runs:
    kind: train
    input: shards
    matrix: {{ width: [32], lr: [{rates}], seed: [0, 1] }}
    model: {{preset: nano, d_model: \"${{width}}\"}}
    seed: \"${{seed}}\"
    batch_size: 4
    max_tokens: 6144
    eval_points: 2
    eval_tokens: 512
    optim: {{lr: \"${{lr}}\", warmup_tokens: 512}}
    device: cpu
    threads: 1
  best:
    kind: select
    input: runs
    over: lr
    replicates: [seed]
  report:
    kind: report
    input: [best]
"
    )
}

#[test]
fn keeps_each_groups_best_rate_with_its_seeds_warns_at_the_edge_and_trains_only_an_added_point() {
    let p = common::training_project(&study("1e-4, 3e-3"));
    let run = p.sm(&["run", "-j", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let selection: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.artifact("best").join("selection.json")).unwrap()).unwrap();
    let group = &selection["groups"][0];
    assert_eq!(group["label"], "width=32");
    let candidates = group["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2);
    // The winner is the rate whose two seeds' mean is lowest.
    let means: Vec<f64> = candidates
        .iter()
        .map(|c| {
            let runs = c["runs"].as_array().unwrap();
            assert_eq!(runs.len(), 2, "both seeds of {c}");
            runs.iter().map(|r| r["metric"].as_f64().unwrap()).sum::<f64>() / 2.0
        })
        .collect();
    let best = if means[0] <= means[1] { 0 } else { 1 };
    assert_eq!(group["chosen"].as_u64(), Some(best as u64));
    assert!((candidates[best]["metric"].as_f64().unwrap() - means[best]).abs() < 1e-12);
    assert_eq!(selection["kept"].as_array().unwrap().len(), 2, "the winner's two seeds");
    // Two values: the winner is at an edge, and `run` says which.
    let (end, rate) = if best == 0 { ("smallest", "0.0001") } else { ("largest", "0.003") };
    let warning = format!("warning: best: width=32: lr {rate} is the {end} tried: extend the grid");
    assert!(run.stderr.contains(&warning) || run.stdout.contains(&warning), "no `{warning}` in:\n{}", run.stderr);
    let explain = p.sm(&["explain", "best"]).stdout;
    assert!(explain.contains(&format!("width=32: lr {rate} wins")), "{explain}");
    assert!(explain.contains("better than lr"), "{explain}");
    let report = std::fs::read_to_string(p.artifact("report").join("report.md")).unwrap();
    assert!(report.contains("## Learning rates"), "{report}");
    assert!(report.contains(&format!("| width=32 | {rate} |")), "{report}");

    // One more rate: its two runs train, nothing else does.
    p.write("exp.yaml", &study("1e-4, 3e-3, 1e-2"));
    let run = p.sm(&["run", "-j", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let trained: Vec<String> = run.built().into_iter().filter(|n| n.starts_with("runs[")).collect();
    assert_eq!(trained, ["runs[width=32,lr=0.01,seed=0]", "runs[width=32,lr=0.01,seed=1]"]);
    assert!(run.built().contains(&"best".to_string()));
}
