//! `isoflop:` sweeps: every instance spends its budget (6·N·D within ±1%,
//! N counted from its shape as the fit counts it), `plan` prints the grid,
//! a new budget adds nodes without touching the others' keys, and budgets
//! that cannot be spent are refused where they are written.

mod common;
use common::Project;
use scalemake::nodes::Registry;
use scalemake::spec::Value;
use scalemake::train::{ModelShape, Variant};

fn study(budgets: &str) -> String {
    format!(
        "
name: iso
nodes:
  shards: {{kind: command, cmd: 'echo {{}} > $OUT/meta.json'}}
  train:
    kind: train
    input: shards
    matrix: {{variant: [baseline, doped]}}
    variant: ${{variant}}
    isoflop: {{budgets: [{budgets}], sizes: 4, n_layer: 2, head_dim: 8, spread: 8}}
    model: {{preset: nano}}
    context: 128
    batch_size: 32
    optim: {{lr: 5e-3, warmup_tokens: 32768}}
"
    )
}

#[test]
fn every_instance_spends_its_budget_within_one_percent_and_plan_prints_the_grid() {
    let p = Project::new(&study("1e11, 3e11, 1e12"));
    let experiment = scalemake::spec::load(&p.path().join("exp.yaml"), &Registry::builtin()).expect("loads");
    let trains: Vec<_> = experiment.nodes.iter().filter(|n| n.decl == "train").collect();
    assert_eq!(trains.len(), 2 * 3 * 4, "2 variants × 3 budgets × 4 sizes");
    for node in &trains {
        let get = |path: &str| node.params.get_path(path).and_then(Value::as_i64).unwrap();
        let variant = node.params.get_path("variant").and_then(Value::as_str).unwrap();
        // N from the instance's own params, by the formula the fit's records carry.
        let shape = ModelShape {
            n_layer: get("model.n_layer"),
            n_head: get("model.n_head"),
            d_model: get("model.d_model"),
            context: 128,
            variant: Variant::from_name(variant).unwrap(),
            ..ModelShape::preset("nano", 2048).unwrap()
        };
        let n = shape.param_counts().trainable as f64;
        let d = get("max_tokens") as f64;
        let budget = node.matrix.iter().find(|(k, _)| k == "budget").and_then(|(_, v)| v.as_f64()).unwrap();
        let ratio = 6.0 * n * d / budget;
        assert!((ratio - 1.0).abs() <= 0.01, "{}: 6·N·D = {ratio:.4} × the budget", node.id);
        assert_eq!(get("max_tokens") % (32 * 128), 0, "{}: whole steps", node.id);
        assert_eq!(shape.n_layer, 2);
        assert_eq!(shape.d_model, 8 * shape.n_head);
        assert_eq!(node.isoflop.as_ref().map(|i| i.budget), Some(budget));
        assert!(node.params.get_path("isoflop").is_none(), "the sweep is not a param: it is in no key");
    }
    assert!(experiment.nodes.iter().any(|n| n.id.0 == "train[variant=doped,budget=1e11,size=3]"));

    let plan = p.sm(&["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let grid: Vec<&str> = plan.stdout.lines().skip_while(|l| !l.starts_with("isoFLOP grid")).collect();
    assert!(grid.len() > 2 && grid[1].contains("6ND/C"), "{}", plan.stdout);
    for node in &trains {
        let line = grid.iter().find(|l| l.contains(&format!(" {} ", node.id))).unwrap_or_else(|| panic!("{}", node.id));
        let ratio: f64 = line.split_whitespace().nth(6).unwrap().parse().unwrap();
        assert!((ratio - 1.0).abs() <= 0.01, "{line}");
    }
}

#[test]
fn a_new_budget_adds_instances_and_leaves_the_others_keys_alone() {
    let p = Project::new(&study("1e11, 3e11"));
    assert_eq!(p.sm(&["run", "shards"]).code, 0, "the input is built, so the training nodes have keys");
    let before = p.keys();
    assert!(before.iter().all(|(_, key)| key.is_some()), "{before:?}");
    p.write("exp.yaml", &study("1e11, 3e11, 1e12"));
    let after = p.keys();
    assert_eq!(after.len(), before.len() + 8);
    for (node, key) in &before {
        assert_eq!(after.iter().find(|(n, _)| n == node).map(|(_, k)| k), Some(key), "{node}");
    }
}

#[test]
fn budgets_that_cannot_be_spent_are_refused_where_they_are_written() {
    let p = Project::new(&study("1e11, 1e7"));
    let status = p.sm(&["status"]);
    assert_eq!(status.code, 2, "{}", status.stderr);
    assert!(status.stderr.contains("budget 1e7 is too small for 4 sizes"), "{}", status.stderr);
    assert!(status.stderr.contains("exp.yaml:10:31"), "points at the budget: {}", status.stderr);

    let p = Project::new(&study("1e11").replace("context: 128", "context: 128\n    max_tokens: 1000"));
    let status = p.sm(&["status"]);
    assert_eq!(status.code, 2);
    assert!(status.stderr.contains("`max_tokens` is set by `isoflop:`"), "{}", status.stderr);

    let p = Project::new(&study("1e11").replace("batch_size: 32", "batch_size: 2048"));
    let status = p.sm(&["status"]);
    assert_eq!(status.code, 2);
    assert!(
        status.stderr.contains("outside ±1%") && status.stderr.contains("make a step smaller"),
        "{}",
        status.stderr
    );
}
