//! The inspection and maintenance commands: show, log, dag formats, verify,
//! gc, doctor.

mod common;
use common::Project;

const TWO: &str = "
name: cli
nodes:
  a: {kind: command, cmd: 'echo hello-log; echo 1 > $OUT/one', outputs: [one]}
  b: {kind: command, input: a, cmd: 'cat $IN/one > $OUT/two', outputs: [two]}
";

#[test]
fn show_prints_params_key_inputs_and_artifact() {
    let p = Project::new(TWO);
    assert_eq!(p.sm(&["run"]).code, 0);
    let show = p.sm(&["show", "b"]).stdout;
    for needle in [
        "node      b",
        "kind      command (version 1)",
        "declared  exp.yaml:5:3",
        "state     fresh",
        "a -> a [fresh]",
        "artifact  ",
        "files   1 (2 B)",
        "deps: []",
    ] {
        assert!(show.contains(needle), "missing `{needle}` in:\n{show}");
    }
}

#[test]
fn log_shows_the_latest_attempt() {
    let p = Project::new(TWO);
    assert!(p.sm(&["log", "a"]).code == 1, "no log before the first run");
    p.sm(&["run"]);
    let log = p.sm(&["log", "a"]).stdout;
    assert!(log.contains("hello-log") && log.contains("node finished"), "{log}");
}

#[test]
fn dag_formats() {
    let p = Project::new(TWO);
    let dot = p.sm(&["dag", "--format", "dot"]).stdout;
    assert!(dot.starts_with("digraph \"cli\"") && dot.contains("n0 -> n1;") && dot.contains("stale"), "{dot}");
    let mermaid = p.sm(&["dag", "--format", "mermaid"]).stdout;
    assert!(mermaid.starts_with("flowchart LR") && mermaid.contains("n0 --> n1"), "{mermaid}");
    let json: serde_json::Value = serde_json::from_str(&p.sm(&["dag", "--format", "json"]).stdout).unwrap();
    assert_eq!(json["nodes"][1]["inputs"][0], "a");
    assert_eq!(json["nodes"][0]["state"], "stale");
    p.sm(&["run"]);
    let text = p.sm(&["dag"]).stdout;
    assert_eq!(text, "[fresh  ] a (command)\n[fresh  ] b (command) <- a\n");
}

#[test]
fn verify_reports_a_flipped_byte_and_run_rebuilds_after_delete() {
    let p = Project::new(TWO);
    p.sm(&["run"]);
    assert_eq!(p.sm(&["verify"]).code, 0);
    let two = p.objects().into_iter().map(|o| o.join("out/two")).find(|f| f.exists()).unwrap();
    std::fs::write(&two, "9\n").unwrap();
    let verify = p.sm(&["verify", "--delete"]);
    assert_eq!(verify.code, 1);
    assert!(
        verify.stdout.contains("CORRUPT") && verify.stdout.contains(" b: content differs from manifest: two"),
        "{}",
        verify.stdout
    );
    let run = p.sm(&["run"]);
    assert!(run.stderr.contains("1 built, 1 fresh"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&two).unwrap(), "1\n");
}

#[test]
fn gc_lists_first_and_deletes_only_when_asked() {
    let p = Project::new(TWO);
    p.sm(&["run"]);
    p.write("exp.yaml", &TWO.replace("echo 1 >", "echo 2 >"));
    p.sm(&["run"]);
    assert_eq!(p.objects().len(), 4);
    // The state log remembers the last build of each node, so nothing old is referenced.
    let dry = p.sm(&["gc"]);
    assert!(dry.stdout.contains("would remove (pass --delete to do it): 2 artifact(s)"), "{}", dry.stdout);
    assert_eq!(p.objects().len(), 4);
    let real = p.sm(&["gc", "--delete"]);
    assert!(real.stdout.contains("removed: 2 artifact(s)"), "{}", real.stdout);
    assert_eq!(p.objects().len(), 2);
    assert!(p.sm(&["status"]).stdout.contains("all 2 node(s) fresh"));
}

#[test]
fn doctor_reports_libtorch_and_cache() {
    let p = Project::new(TWO);
    let run = p.sm(&["doctor"]);
    assert!(run.stdout.contains("libtorch       2.11.0"), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("CUDA "), "{}", run.stdout);
    assert!(run.stdout.contains("cache          "), "{}", run.stdout);
    assert_eq!(run.code, 0);
}

#[test]
fn exit_codes_tell_a_failure_from_bad_input() {
    let p = Project::new(TWO);
    let unknown = p.sm(&["run", "nosuch"]);
    assert_eq!(unknown.code, 2, "an unknown target is bad input: {}", unknown.stderr);
    // Slurm failing under a good experiment file is a failure of the run (1), not the user's input (2).
    let out = p.command(&["run", "--backend", "slurm"]).env("PATH", p.path().join("no-bin")).output().unwrap();
    let no_slurm = common::Run::from(out);
    assert_eq!(no_slurm.code, 1, "{}", no_slurm.stderr);
    assert!(no_slurm.stderr.contains("sbatch"), "{}", no_slurm.stderr);
}

#[test]
fn missing_declared_output_fails_the_node() {
    let p = Project::new("nodes:\n  a: {kind: command, cmd: 'true', outputs: [x.txt]}\n");
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("did not create declared output(s) in $OUT: x.txt"), "{}", run.stderr);
    assert!(p.objects().is_empty());
}

#[test]
fn missing_declared_input_file_fails_the_node() {
    let p = Project::new("nodes:\n  a: {kind: command, cmd: 'true', deps: [nope/*.txt]}\n");
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("`nope/*.txt` matches no file"), "{}", run.stderr);
}

#[test]
fn a_closed_output_pipe_ends_quietly_instead_of_panicking() {
    use std::os::fd::FromRawFd;
    use std::os::unix::process::ExitStatusExt;
    let p = Project::new("nodes:\n  a: {kind: commnd}\n");
    // A pipe whose reader is already gone, as after `| head` has exited.
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let writer = unsafe { std::process::Stdio::from_raw_fd(fds[1]) };
    let status = p.command(&["status"]).stderr(writer).status().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?} (101 would be a panic)");
}
