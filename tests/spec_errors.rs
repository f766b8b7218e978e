//! One test per class of experiment-file error: each must exit 2 and name
//! file:line:column, the offending key and, where one exists, a hint.

mod common;
use common::Project;

/// Runs `status` on `yaml` and returns stderr, asserting exit code 2.
fn error_of(yaml: &str) -> String {
    let p = Project::new(yaml);
    let run = p.sm(&["status"]);
    assert_eq!(run.code, 2, "expected exit 2, got {}:\n{}{}", run.code, run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run.stderr
}

fn assert_has(haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(haystack.contains(n), "missing `{n}` in:\n{haystack}");
    }
}

#[test]
fn unknown_param_key_with_did_you_mean() {
    let e = error_of("nodes:\n  a:\n    kind: command\n    cmd: echo\n    output: [x]\n");
    assert_has(&e, &["exp.yaml:5:5", "`nodes.a.output`", "unknown key `output`", "did you mean `outputs`?"]);
}

#[test]
fn wrong_type() {
    let e = error_of("nodes:\n  a:\n    kind: command\n    cmd: echo\n    deps: {x: 1}\n");
    assert_has(&e, &["exp.yaml:5:11", "`nodes.a.deps`", "expected a list of strings, found a mapping"]);
}

#[test]
fn missing_required_param() {
    let e = error_of("nodes:\n  a:\n    kind: command\n");
    assert_has(&e, &["exp.yaml:2:3", "missing required key `cmd`"]);
}

#[test]
fn unknown_kind() {
    let e = error_of("nodes:\n  a:\n    kind: comand\n    cmd: echo\n");
    assert_has(&e, &["exp.yaml:3:11", "unknown node kind `comand`", "did you mean `command`?"]);
}

#[test]
fn missing_input_node() {
    let e = error_of(
        "nodes:\n  corpus: {kind: command, cmd: echo}\n  b:\n    kind: command\n    input: corpsu\n    cmd: echo\n",
    );
    assert_has(&e, &["exp.yaml:5:12", "`nodes.b.input`", "no node named `corpsu`", "did you mean `corpus`?"]);
}

#[test]
fn duplicate_node_names() {
    let e = error_of("nodes:\n  a: {kind: command, cmd: echo}\n  a: {kind: command, cmd: echo}\n");
    assert_has(&e, &["exp.yaml:3:3", "duplicate key `a` (first defined at line 2)"]);
}

#[test]
fn bad_reference_filter() {
    let e = error_of("nodes:\n  v: {kind: command, cmd: echo, matrix: {size: [1, 2]}}\n  f: {kind: command, cmd: echo, input: 'v[sise=1]'}\n");
    assert_has(&e, &["exp.yaml:3:40", "`v` has no sweep variable `sise`", "did you mean `size`?"]);
}

#[test]
fn cycle() {
    let e = error_of("nodes:\n  a: {kind: command, cmd: echo, input: c}\n  b: {kind: command, cmd: echo, input: a}\n  c: {kind: command, cmd: echo, input: b}\n");
    assert_has(&e, &["exp.yaml:2:40", "dependency cycle: a → b → c → a"]);
}

#[test]
fn self_reference() {
    let e = error_of("nodes:\n  a: {kind: command, cmd: echo, input: a}\n");
    assert_has(&e, &["exp.yaml:2:40", "cannot take itself as input"]);
}

#[test]
fn unknown_sweep_variable_in_a_string() {
    let e = error_of("nodes:\n  a: {kind: command, cmd: 'echo ${sise}', matrix: {size: [1]}}\n");
    assert_has(&e, &["exp.yaml:2:27", "`${sise}` is not a sweep variable", "did you mean `size`?"]);
}

#[test]
fn yaml_syntax_error() {
    let e = error_of("nodes:\n  a: {kind: command, cmd: [echo\n");
    assert_has(&e, &["exp.yaml:", "invalid YAML"]);
}

#[test]
fn unknown_top_level_key() {
    let e = error_of("name: x\nnode:\n  a: {kind: command, cmd: echo}\n");
    assert_has(&e, &["exp.yaml:2:1", "unknown top-level key `node`", "did you mean `nodes`?"]);
}

#[test]
fn unused_default() {
    let e = error_of("defaults: {sed: 1}\nnodes:\n  a: {kind: command, cmd: echo}\n");
    assert_has(&e, &["exp.yaml:1:12", "default `sed` is not a parameter"]);
}

#[test]
fn not_utf8() {
    let p = Project::new("");
    std::fs::write(p.path().join("exp.yaml"), b"nodes:\n  a: {kind: command, cmd: \xff}\n").unwrap();
    let run = p.sm(&["status"]);
    assert_eq!(run.code, 2);
    assert_has(&run.stderr, &["exp.yaml:2:27", "not valid UTF-8"]);
}

#[test]
fn several_errors_are_all_reported() {
    let e = error_of("nodes:\n  a: {kind: command, cmd: echo, outputz: []}\n  b: {kind: command}\n");
    assert_has(&e, &["unknown key `outputz`", "missing required key `cmd`", "2 error(s)"]);
}

#[test]
fn unknown_target_is_a_usage_error() {
    let p = Project::new("nodes:\n  alpha: {kind: command, cmd: echo}\n");
    let run = p.sm(&["run", "alpah"]);
    assert_eq!(run.code, 2);
    assert_has(&run.stderr, &["no node named `alpah`", "did you mean `alpha`?"]);
}

#[test]
fn a_bad_key_in_a_sweep_is_reported_once_and_not_echoed_downstream() {
    let e = error_of("nodes:\n  a:\n    kind: command\n    matrix: {n: [1, 2, 3, 4]}\n    cmd: echo ${n}\n    output: [x]\n  b: {kind: command, input: a, cmd: echo}\n");
    assert_has(&e, &["exp.yaml:6:5", "unknown key `output`", "1 error(s)"]);
    assert_eq!(e.matches("unknown key `output`").count(), 1, "{e}");
    assert!(!e.contains("no node named `a`"), "{e}");
}

/// A `select` names sweep axes: one its inputs lack is located and corrected.
#[test]
fn select_axis_the_sweep_lacks_with_did_you_mean() {
    let sweep =
        "nodes:\n  runs:\n    kind: command\n    matrix: {width: [1, 2], lr: [1, 2]}\n    cmd: echo ${width} ${lr}\n";
    let e =
        error_of(&format!("{sweep}  best:\n    kind: select\n    input: runs\n    over: lr\n    group_by: [widht]\n"));
    assert_has(
        &e,
        &[
            "exp.yaml:10:16",
            "`nodes.best.group_by.0`",
            "axis `widht` is not a sweep axis of `runs`",
            "did you mean `width`?",
        ],
    );
    let e = error_of(&format!("{sweep}  best:\n    kind: select\n    input: runs\n    over: rate\n"));
    assert_has(&e, &["exp.yaml:9:11", "`over:` `rate` is not a sweep axis of `runs`", "`runs` sweeps width, lr"]);
    let e = error_of(&format!("{sweep}  best:\n    kind: select\n    input: runs\n    over: lr\n    group_by: []\n"));
    assert_has(
        &e,
        &["`nodes.best.group_by`", "axis `width` of `runs` is neither grouped", "add `width` to `group_by:`"],
    );
}
