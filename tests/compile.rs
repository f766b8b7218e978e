//! The compiled training step through the engine (CPU, `compile: on`): a
//! sweep compiles once for its one shape, every run trains through the
//! package, the package is outside the train keys (turning compilation off
//! retrains nothing), and a corrupted package is rebuilt, not crashed on.

mod common;
use common::Project;
use scalemake::train::compile::{CompileOutcome, CompileRecord, PACKAGE_FILE};
use scalemake::train::record::TrainRecord;

fn study(lrs: &str, compile: &str) -> String {
    common::NANO_STUDY
        .replace("  train:\n", &format!("  train:\n    matrix: {{lr: [{lrs}]}}\n    compile: {compile}\n"))
        .replace("optim: {lr: 3e-3, warmup_tokens: 1024}", "optim: {lr: \"${lr}\", warmup_tokens: 1024}")
}

fn compile_node(p: &Project) -> String {
    let ids: Vec<String> = p.keys().into_iter().map(|(id, _)| id).filter(|id| id.starts_with("compile[")).collect();
    assert_eq!(ids.len(), 1, "one compile node for one shape: {ids:?}");
    ids[0].clone()
}

fn step_of(p: &Project, node: &str) -> String {
    TrainRecord::read(&p.artifact(node)).unwrap().step.unwrap_or_default()
}

#[test]
fn a_sweep_compiles_once_and_the_package_stays_outside_the_train_keys() {
    let p = common::training_project(&study("3e-3, 1e-3", "on"));
    let dag = p.sm(&["dag"]);
    assert!(dag.stdout.contains("train[lr=0.003] (train) <- shards | compile["), "{}", dag.stdout);
    let compile = compile_node(&p);

    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.built(), [compile.as_str(), "corpus", "shards", "tokenizer", "train[lr=0.001]", "train[lr=0.003]"]);
    let record = CompileRecord::read(&p.artifact(&compile)).unwrap();
    assert_eq!(record.outcome, CompileOutcome::Compiled, "{record:?}");
    for node in ["train[lr=0.001]", "train[lr=0.003]"] {
        let step = step_of(&p, node);
        assert!(step.starts_with("compiled (compile: on"), "{node}: {step}");
    }
    assert!(p.sm(&["run"]).built().is_empty(), "a second run builds nothing");
    let package = p.artifact(&compile).join(PACKAGE_FILE);

    // `compile: off` is metadata: the same keys, nothing retrains, no compile node.
    let keys = |p: &Project| -> Vec<(String, Option<String>)> {
        p.keys().into_iter().filter(|(id, _)| id.starts_with("train")).collect()
    };
    let compiled_keys = keys(&p);
    p.write("exp.yaml", &study("3e-3, 1e-3", "off"));
    assert_eq!(keys(&p), compiled_keys);
    assert!(!p.sm(&["dag"]).stdout.contains("compile["));
    assert!(p.sm(&["run"]).built().is_empty());

    // A damaged package is found when a new run needs it, and rebuilt first.
    let mut bytes = std::fs::read(&package).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&package, bytes).unwrap();
    p.write("exp.yaml", &study("3e-3, 1e-3, 3e-4", "on"));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("artifact corrupt"), "{}", run.stderr);
    assert_eq!(run.built(), [compile.as_str(), "train[lr=3e-4]"]);
    assert!(step_of(&p, "train[lr=3e-4]").starts_with("compiled"));
}

#[test]
fn auto_keeps_cpu_training_eager_and_says_so() {
    let p = common::training_project(&study("3e-3", "auto"));
    assert!(!p.sm(&["dag"]).stdout.contains("compile["), "no compile node for a CPU run under auto");
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let step = step_of(&p, "train[lr=0.003]");
    assert!(step.contains("eager") && step.contains("compile: auto keeps CPU training eager"), "{step}");
}
