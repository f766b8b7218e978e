//! Sweep expansion and key stability: layout, comments, key order and number
//! spelling never change a key; a changed param always does.

mod common;
use common::Project;

const BASE: &str = "
name: h
nodes:
  gen:
    kind: command
    cmd: echo hi > $OUT/a
    outputs: [a]
    env: {LR: '5e-4', SEED: '1'}
";

fn key_of(p: &Project, id: &str) -> String {
    p.keys().into_iter().find(|(n, _)| n == id).and_then(|(_, k)| k).expect("node has a key")
}

#[test]
fn reordered_keys_and_comments_keep_the_key() {
    let a = Project::new(BASE);
    let b = Project::new(
        "# a comment\nname: h\nnodes:\n  gen:   # the generator\n    env: {SEED: '1', LR: '5e-4'}\n    outputs:\n      - a\n    cmd: \"echo hi > $OUT/a\"\n    kind: command\n",
    );
    assert_eq!(key_of(&a, "gen"), key_of(&b, "gen"));
}

#[test]
fn changed_param_changes_the_key() {
    let a = Project::new(BASE);
    let b = Project::new(&BASE.replace("SEED: '1'", "SEED: '2'"));
    assert_ne!(key_of(&a, "gen"), key_of(&b, "gen"));
}

#[test]
fn number_spelling_does_not_matter() {
    let yaml = |n: &str| {
        format!("nodes:\n  s:\n    kind: command\n    matrix: {{n: [{n}]}}\n    cmd: 'echo ${{n}} > $OUT/x'\n")
    };
    // Ids and commands differ in spelling only when the values differ.
    let a = Project::new(&yaml("1000"));
    let b = Project::new(&yaml("1_000"));
    assert_eq!(a.keys(), b.keys());
}

#[test]
fn matrix_expands_in_declaration_order_with_filters() {
    let p = Project::new(
        "nodes:
  train:
    kind: command
    matrix: {model: [small, big], variant: [baseline, doped]}
    cmd: echo ${model}-${variant} > $OUT/x
  fit:
    kind: command
    input: 'train[variant=doped]'
    cmd: cat $IN_TRAIN_VARIANT_DOPED_ > /dev/null
",
    );
    let ids: Vec<String> = p.keys().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        [
            "train[model=small,variant=baseline]",
            "train[model=small,variant=doped]",
            "train[model=big,variant=baseline]",
            "train[model=big,variant=doped]",
            "fit"
        ]
    );
    let dag = p.sm(&["dag"]);
    assert!(
        dag.stdout.contains("fit (command) <- train[model=small,variant=doped], train[model=big,variant=doped]"),
        "{}",
        dag.stdout
    );
    // Typed substitution: `${model}` inside a string is replaced.
    let show = p.sm(&["show", "train[model=big,variant=doped]"]);
    assert!(show.stdout.contains("cmd: echo big-doped > $OUT/x"), "{}", show.stdout);
    // Targets: by filter and by glob, each with its upstream.
    let status = p.sm(&["status", "fit"]);
    assert!(status.stdout.contains("3 of 3 node(s) to build"), "{}", status.stdout);
    let status = p.sm(&["status", "train[*baseline*]"]);
    assert!(status.stdout.contains("2 of 2 node(s) to build"), "{}", status.stdout);
}

#[test]
fn inputs_may_be_globs_over_ids() {
    let p = Project::new(
        "nodes:
  baseline_small: {kind: command, cmd: 'echo 1 > $OUT/x'}
  baseline_big: {kind: command, cmd: 'echo 2 > $OUT/x'}
  doped_small: {kind: command, cmd: 'echo 3 > $OUT/x'}
  fit:
    kind: command
    input: ['baseline_*', 'doped_s?all']
    cmd: 'true'
",
    );
    let dag = p.sm(&["dag"]);
    assert!(dag.stdout.contains("fit (command) <- baseline_small, baseline_big, doped_small"), "{}", dag.stdout);
    p.write(
        "exp.yaml",
        "nodes:\n  a: {kind: command, cmd: 'true'}\n  fit: {kind: command, input: 'b_*', cmd: 'true'}\n",
    );
    let run = p.sm(&["status"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`b_*` matches no node"), "{}", run.stderr);
}

#[test]
fn defaults_apply_where_the_kind_has_the_key() {
    let p =
        Project::new("defaults: {env: {SEED: '7'}}\nnodes:\n  a: {kind: command, cmd: 'echo $SEED > $OUT/s', outputs: [s]}\n  b: {kind: command, cmd: 'true', env: {SEED: '9'}}\n");
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let show = p.sm(&["show", "a"]);
    assert!(show.stdout.contains("SEED: '7'"), "{}", show.stdout);
    let show = p.sm(&["show", "b"]);
    assert!(show.stdout.contains("SEED: '9'"), "{}", show.stdout);
}
