//! Cache integrity, full disks, containment and concurrent processes: the
//! cache never serves a damaged artifact, never shows a partial one, and
//! nothing an experiment declares writes outside its node's `$OUT`.
//! (Crashes at random moments: `tests/chaos.rs`; bad experiment files:
//! `tests/bad_input.rs`.)

mod common;
use common::Project;

use std::time::{Duration, Instant};

/// Three nodes in a chain; each logs its runs to `runs.log`.
const CHAIN: &str = "
nodes:
  a: {kind: command, cmd: 'echo a >> runs.log; seq 1 1000 > $OUT/a.txt', outputs: [a.txt]}
  b: {kind: command, input: a, cmd: 'echo b >> runs.log; wc -l < $IN/a.txt > $OUT/b.txt', outputs: [b.txt]}
  c: {kind: command, input: b, cmd: 'echo c >> runs.log; cat $IN/b.txt > $OUT/c.txt', outputs: [c.txt]}
";

fn built_chain() -> Project {
    let p = Project::new(CHAIN);
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    p.clear_runs();
    p
}

/// Overwrites one byte of `file` in place (same size).
fn flip_byte(file: &std::path::Path, at: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(b"X").unwrap();
}

#[test]
fn a_flipped_byte_is_reported_and_the_node_rebuilt_instead_of_used() {
    let p = built_chain();
    let a = p.artifact("a").join("a.txt");
    let original = std::fs::read(&a).unwrap();
    flip_byte(&a, 5);
    let verify = p.sm(&["verify"]);
    assert_eq!(verify.code, 1, "{}", verify.stdout);
    assert!(
        verify.stdout.contains("CORRUPT") && verify.stdout.contains(" a: content differs from manifest: a.txt"),
        "{}",
        verify.stdout
    );
    let status = p.sm(&["status"]);
    assert!(
        status.stdout.contains("artifact corrupt in the cache (content differs from manifest: a.txt)"),
        "{}",
        status.stdout
    );
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("a: artifact corrupt in the cache"), "{}", run.stderr);
    assert_eq!(p.runs(), ["a"], "only the damaged node reruns; its identical artifact keeps b and c fresh");
    assert_eq!(std::fs::read(&a).unwrap(), original);
    assert!(p.sm(&["verify"]).stdout.contains("3 ok, 0 corrupt"));
}

#[test]
fn an_edit_with_its_mtime_set_back_is_still_seen() {
    let p = built_chain();
    let b = p.artifact("b").join("b.txt");
    let mtime = std::fs::metadata(&b).unwrap().modified().unwrap();
    flip_byte(&b, 0);
    std::fs::File::options().write(true).open(&b).unwrap().set_modified(mtime).unwrap();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(p.runs(), ["b"], "{}", run.stderr);
}

#[test]
fn a_damaged_input_is_rebuilt_before_a_dependent_reads_it() {
    let p = built_chain();
    flip_byte(&p.artifact("a").join("a.txt"), 0);
    // A new dependent of `a`: it must see the rebuilt, not the damaged, file.
    p.write("exp.yaml", &format!("{CHAIN}  d: {{kind: command, input: a, cmd: 'head -c 1 $IN/a.txt > $OUT/d.txt'}}\n"));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(p.runs(), ["a"]);
    assert_eq!(std::fs::read_to_string(p.artifact("d").join("d.txt")).unwrap(), "1");
}

#[test]
fn a_missing_artifact_directory_is_rebuilt() {
    let p = built_chain();
    let out = p.artifact("b");
    std::fs::remove_dir_all(&out).unwrap();
    let status = p.sm(&["status"]);
    assert!(status.stdout.contains("artifact directory `out/` is missing"), "{}", status.stdout);
    assert_eq!(p.sm(&["run"]).code, 0);
    assert_eq!(p.runs(), ["b"]);
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(p.runs(), ["b", "b"]);
    assert!(p.sm(&["verify"]).stdout.contains("3 ok, 0 corrupt"));
}

#[test]
fn a_corrupt_manifest_is_rebuilt_not_fatal() {
    let p = built_chain();
    let manifest = p.artifact("c").parent().unwrap().join("manifest.json");
    std::fs::write(&manifest, "{ not json").unwrap();
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("c: artifact corrupt in the cache (cache: corrupt manifest"), "{}", run.stderr);
    assert_eq!(p.runs(), ["c"]);
}

#[test]
fn a_full_disk_during_commit_leaves_no_partial_artifact() {
    for point in ["manifest", "rename"] {
        let p = Project::new(CHAIN);
        let run = p.command(&["run"]).env("SCALEMAKE_INJECT_FAULT", point).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{point}: {stderr}");
        assert!(stderr.contains("No space left on device"), "{point}: {stderr}");
        assert!(stderr.contains("node failed") || stderr.contains("failed"), "{point}: {stderr}");
        assert!(p.objects().is_empty(), "{point}: an object was published: {:?}", p.objects());
        assert_eq!(p.staging_dirs(), 0, "{point}: staging left behind");
        // With space again, everything builds and verifies.
        let run = p.sm(&["run"]);
        assert_eq!(run.code, 0, "{point}: {}", run.stderr);
        assert!(p.sm(&["verify"]).stdout.contains("3 ok, 0 corrupt"));
    }
}

#[test]
fn outputs_and_names_cannot_leave_the_cache() {
    for (yaml, location, message) in [
        (
            "nodes:\n  a:\n    kind: command\n    cmd: touch x\n    outputs: [../x]\n",
            "exp.yaml:5:15",
            "`../x` must be a relative path inside the node's output directory",
        ),
        (
            "nodes:\n  a:\n    kind: command\n    cmd: touch x\n    outputs: [/etc/x]\n",
            "exp.yaml:5:15",
            "`/etc/x` must be a relative path",
        ),
        (
            "nodes:\n  a:\n    kind: command\n    cmd: touch x\n    outputs: [sub/../../x]\n",
            "exp.yaml:5:15",
            "must be a relative path",
        ),
        (
            "name: ../../evil\nnodes:\n  a: {kind: command, cmd: 'true'}\n",
            "exp.yaml:1:7",
            "experiment name `../../evil` may only use",
        ),
    ] {
        let p = Project::new(yaml);
        let run = p.sm(&["run"]);
        assert_eq!(run.code, 2, "{yaml}\n{}", run.stderr);
        assert!(run.stderr.contains(location) && run.stderr.contains(message), "{yaml}\n{}", run.stderr);
        assert!(!p.path().join("x").exists() && !p.path().join("cache/objects").exists());
    }
}

#[test]
fn a_symlink_out_of_the_artifact_is_refused() {
    let p = Project::new(
        "nodes:
  outside: {kind: command, cmd: 'ln -s /etc/hostname $OUT/h'}
  climbs: {kind: command, cmd: 'mkdir $OUT/d; ln -s ../../x $OUT/d/l'}
  inside: {kind: command, cmd: 'mkdir $OUT/d; echo 1 > $OUT/f; ln -s ../f $OUT/d/l'}
",
    );
    let run = p.sm(&["run", "-k"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("artifact file `h` is a symlink to `/etc/hostname`, outside the artifact"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("artifact file `d/l` is a symlink to `../../x`"), "{}", run.stderr);
    assert!(run.stderr.contains("1 built, 0 fresh, 2 failed"), "{}", run.stderr);
    assert_eq!(p.objects().len(), 1, "only `inside` is committed");
}

#[test]
fn a_second_process_says_who_builds_the_node_and_waits() {
    let p = Project::new(
        "nodes:\n  slow: {kind: command, cmd: 'echo slow >> runs.log; touch started; sleep 1.5; touch $OUT/x'}\n",
    );
    let first = p.spawn(&["run"]);
    assert!(p.wait_for_file("started", 20.0));
    let t = Instant::now();
    let second = p.sm(&["run"]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(t.elapsed() < Duration::from_secs(20), "no deadlock");
    let pid = first.id();
    assert!(
        second.stderr.contains(&format!("slow is being built by another process (pid {pid}); waiting for it")),
        "{}",
        second.stderr
    );
    assert!(second.stderr.contains("reused slow (built by another process)"), "{}", second.stderr);
    assert_eq!(first.wait_with_output().unwrap().status.code(), Some(0));
    assert_eq!(p.runs(), ["slow"]);
}

/// A wider DAG than `tests/executor.rs`'s: 4 layers of 8 nodes, each
/// reading two nodes of the layer above.
fn layered_dag() -> String {
    let mut yaml = String::from("nodes:\n");
    for layer in 0..4 {
        for i in 0..8 {
            let id = format!("n{layer}_{i}");
            if layer == 0 {
                yaml.push_str(&format!(
                    "  {id}: {{kind: command, cmd: 'echo {id} >> runs.log; sleep 0.05; echo {i} > $OUT/v'}}\n"
                ));
            } else {
                let (x, y) = (format!("n{}_{i}", layer - 1), format!("n{}_{}", layer - 1, (i + 1) % 8));
                yaml.push_str(&format!(
                    "  {id}: {{kind: command, input: [{x}, {y}], cmd: 'echo {id} >> runs.log; sleep 0.05; cat $IN_{}/v $IN_{}/v | md5sum > $OUT/v'}}\n",
                    x.to_uppercase(),
                    y.to_uppercase()
                ));
            }
        }
    }
    yaml
}

#[test]
fn two_and_four_processes_build_each_node_once() {
    for processes in [2, 4] {
        let p = Project::new(&layered_dag());
        let t = Instant::now();
        let children: Vec<_> = (0..processes).map(|_| p.spawn(&["run", "-j", "2"])).collect();
        let mut waited = 0;
        for c in children {
            let out = c.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{stderr}");
            waited += stderr.matches("is being built by another process").count();
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{processes} processes took {:?}", t.elapsed());
        let runs = p.runs();
        let mut unique = runs.clone();
        unique.dedup();
        assert_eq!(runs.len(), 32, "{processes} processes: each of the 32 nodes once, got {runs:?}");
        assert_eq!(unique.len(), 32);
        assert!(waited > 0, "{processes} processes never met on a node");
        assert!(p.sm(&["verify"]).stdout.contains("32 ok, 0 corrupt"));
        assert!(p.sm(&["status"]).stdout.contains("all 32 node(s) fresh"));
    }
}
