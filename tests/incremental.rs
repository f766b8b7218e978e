//! Incremental behaviour: what reruns after which edit, and why.
//! Every test command appends its node name to runs.log when it runs.

mod common;
use common::Project;

const PIPELINE: &str = "
name: inc
nodes:
  src:
    kind: command
    deps: [data/*.txt]
    cmd: echo src >> runs.log; cat data/*.txt > $OUT/all.txt
  upper:
    kind: command
    input: src
    cmd: echo upper >> runs.log; tr a-z A-Z < $IN/all.txt > $OUT/up.txt
  count:
    kind: command
    input: src
    matrix: {n: [1, 2]}
    cmd: echo count${n} >> runs.log; head -c ${n} $IN/all.txt > $OUT/c.txt
  report:
    kind: command
    input: [upper, count]
    cmd: echo report >> runs.log; cat $IN_UPPER/up.txt > $OUT/r.txt
";

fn built_project() -> Project {
    let p = Project::new(PIPELINE);
    p.write("data/a.txt", "hello\n");
    p.write("data/b.txt", "world\n");
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(p.runs(), ["count1", "count2", "report", "src", "upper"]);
    p.clear_runs();
    p
}

#[test]
fn second_run_is_a_no_op() {
    let p = built_project();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0);
    assert!(p.runs().is_empty());
    assert!(run.stderr.contains("0 built, 5 fresh"), "{}", run.stderr);
    assert!(p.sm(&["status"]).stdout.contains("all 5 node(s) fresh"));
}

#[test]
fn touching_without_changing_content_reruns_nothing() {
    let p = built_project();
    let f = std::fs::File::options().write(true).open(p.path().join("data/a.txt")).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5)).unwrap();
    assert!(p.sm(&["run"]).stderr.contains("0 built"));
    assert!(p.runs().is_empty());
}

#[test]
fn changing_a_file_reruns_its_cone_and_says_why() {
    let p = built_project();
    p.write("data/a.txt", "HELLO\n");
    let status = p.sm(&["status"]);
    assert!(status.stdout.contains("file `data/a.txt` changed"), "{}", status.stdout);
    p.sm(&["run"]);
    // count1 now reads "H" instead of "h", so report reruns too.
    assert_eq!(p.runs(), ["count1", "count2", "report", "src", "upper"]);
}

#[test]
fn a_new_file_matching_a_glob_is_an_input_change() {
    let p = built_project();
    p.write("data/c.txt", "more\n");
    assert!(p.sm(&["status"]).stdout.contains("file `data/c.txt` changed"));
    p.sm(&["run"]);
    assert!(p.runs().contains(&"src".to_string()));
}

#[test]
fn changing_one_param_reruns_exactly_the_downstream_cone() {
    let p = built_project();
    // Upper-cases only a–k: `upper`'s bytes change, so its whole cone
    // (`upper`, `report`) reruns, and nothing outside it (`src`, `count*`).
    p.write("exp.yaml", &PIPELINE.replace("tr a-z A-Z", "tr a-k A-K"));
    let status = p.sm(&["status"]);
    assert!(status.stdout.contains("param `cmd` changed"), "{}", status.stdout);
    assert!(status.stdout.contains("waits for `upper`"), "{}", status.stdout);
    assert!(status.stdout.contains("2 of 5 node(s) to build"), "{}", status.stdout);
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(p.runs(), ["report", "upper"]);
    assert_eq!(std::fs::read_to_string(p.artifact("report").join("r.txt")).unwrap(), "HEllo\nworlD\n");
}

#[test]
fn early_cutoff_keeps_dependents_when_the_artifact_is_identical() {
    let p = built_project();
    // A different command producing the very same bytes.
    p.write("exp.yaml", &PIPELINE.replace("tr a-z A-Z < $IN/all.txt", "cat $IN/all.txt | tr a-z A-Z"));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0);
    assert_eq!(p.runs(), ["upper"], "report must not rerun: {}", run.stderr);
    assert!(run.stderr.contains("1 built, 4 fresh"), "{}", run.stderr);
}

#[test]
fn reverting_an_edit_is_a_cache_hit() {
    let p = built_project();
    p.write("exp.yaml", &PIPELINE.replace("head -c ${n}", "head -c 3"));
    p.sm(&["run"]);
    p.clear_runs();
    p.write("exp.yaml", PIPELINE);
    let run = p.sm(&["run"]);
    assert!(p.runs().is_empty(), "{}", run.stderr);
}

#[test]
fn clean_forgets_a_node() {
    let p = built_project();
    assert!(p.sm(&["clean", "upper"]).stdout.contains("removed upper"));
    let status = p.sm(&["status"]).stdout;
    assert!(
        status.lines().any(|l| l.starts_with("stale") && l.contains("upper") && l.ends_with("never built")),
        "{status}"
    );
    p.sm(&["run"]);
    assert_eq!(p.runs(), ["upper"]);
}

#[test]
fn removed_artifact_is_reported_missing_and_rebuilt() {
    let p = built_project();
    let object = p.artifact("upper").parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(object).unwrap();
    let status = p.sm(&["status"]);
    assert!(
        status.stdout.contains("missing") && status.stdout.contains("artifact missing from the cache"),
        "{}",
        status.stdout
    );
    p.sm(&["run"]);
    assert_eq!(p.runs(), ["upper"]);
}

#[test]
fn dry_run_builds_nothing() {
    let p = built_project();
    p.write("data/a.txt", "changed\n");
    let run = p.sm(&["run", "--dry-run"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("will build src: file `data/a.txt` changed"), "{}", run.stdout);
    assert!(run.stdout.contains("may build upper"), "{}", run.stdout);
    assert!(p.runs().is_empty());
}
