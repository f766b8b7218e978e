//! Data-parallel training (`devices: N`) on the CPU with real processes:
//! the worker the engine starts is rank 0, it starts the other ranks, and
//! they exchange gradients through libtorch's c10d (gloo). Two ranks train
//! the loss curve of one; a rank killed with SIGKILL fails the node with a
//! message naming it, and the rerun resumes, on one device, to the same
//! final loss.
//!
//! Needs the worker binary next to `scalemake` (`cargo nextest run
//! --workspace` builds both) and built with gloo (`scripts/setup.sh`).

mod common;
use common::{curve, Project};

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The nano study without dropout: ranks draw their own dropout masks for
/// their own rows, so only a run without dropout can equal one device's.
fn study(devices: u64, micro_batch: u64) -> String {
    common::NANO_STUDY
        .replace("micro_batch: 2", &format!("micro_batch: {micro_batch}\n    dropout: 0.0\n    devices: {devices}"))
}

fn project(devices: u64, micro_batch: u64) -> Project {
    common::training_project(&study(devices, micro_batch))
}

/// The largest relative difference between two runs' losses and gradient
/// norms, step by step (the curves must have the same steps and tokens).
fn largest_difference(a: &[serde_json::Value], b: &[serde_json::Value]) -> f64 {
    assert_eq!(a.len(), b.len(), "as many rows");
    let mut worst = 0f64;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["step"], y["step"]);
        assert_eq!(x["tokens"], y["tokens"]);
        for column in ["loss", "grad_norm"] {
            let (p, q) = (x[column].as_f64().unwrap(), y[column].as_f64().unwrap());
            worst = worst.max((p - q).abs() / q.abs().max(1e-12));
        }
    }
    worst
}

/// What the README and benches/RESULTS.md state: fp32 sums in another order.
const TOLERANCE: f64 = 1e-4;

#[test]
fn two_ranks_train_the_loss_curve_of_one_device() {
    let one = project(1, 2);
    assert_eq!(one.sm(&["run"]).code, 0);
    let reference = curve(&one.artifact("train").join("metrics/steps.jsonl"));
    assert_eq!(reference.len(), 60);
    // Whole micro-batches per rank (2 of 2 × 2 rows), then rows of one
    // micro-batch split between the ranks (1 of 4 rows).
    for micro_batch in [2, 4] {
        let two = project(2, micro_batch);
        let run = two.sm(&["run"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let log = two.read("cache/logs/study/train.log");
        assert!(log.contains(", 2 ranks:"), "log:\n{log}\nstderr:\n{}", run.stderr);
        assert!(log.contains("rank 1 of 2 on cpu"), "{log}");
        let curve = curve(&two.artifact("train").join("metrics/steps.jsonl"));
        let worst = largest_difference(&curve, &reference);
        eprintln!("micro_batch {micro_batch}: the largest relative difference in loss or gradient norm is {worst:e}");
        assert!(worst < TOLERANCE, "micro_batch {micro_batch}: losses differ by {worst:e} (relative)");
        let evals = |p: &Project| common::curve(&p.artifact("train").join("metrics/eval.jsonl"));
        for (a, b) in evals(&two).iter().zip(&evals(&one)) {
            let (p, q) = (a["val_loss"].as_f64().unwrap(), b["val_loss"].as_f64().unwrap());
            assert!((p - q).abs() / q < TOLERANCE, "val loss {p} against {q}");
        }
    }
}

/// The work directory of the (one) train node, once it lists its ranks.
fn ranks_file(p: &Project) -> Option<PathBuf> {
    std::fs::read_dir(p.path().join("cache/work"))
        .ok()?
        .flatten()
        .map(|d| d.path().join("ranks.json"))
        .find(|f| f.exists())
}

fn checkpointed(p: &Project) -> bool {
    !common::checkpoint_steps(p).is_empty()
}

/// 300 steps: long enough to look at and kill a rank after the first checkpoint.
fn long_project() -> Project {
    common::training_project(&study(2, 2).replace("max_tokens: 15360", "max_tokens: 76800"))
}

#[test]
fn a_killed_rank_fails_the_node_and_the_rerun_resumes_to_the_same_loss() {
    let whole = long_project();
    assert_eq!(whole.sm(&["run"]).code, 0);

    let broken = long_project();
    assert_eq!(broken.sm(&["run", "shards"]).code, 0);
    let child = broken.spawn(&["run"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !checkpointed(&broken) {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    let ranks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ranks_file(&broken).unwrap()).unwrap()).unwrap();
    let pid = ranks.as_array().unwrap().iter().find(|r| r["rank"] == 1).unwrap()["pid"].as_i64().unwrap();
    // `status` shows the run in progress as one node with its ranks.
    let status = broken.sm(&["status"]);
    assert!(status.stdout.contains(&format!("training on 2 ranks: 0 (pid ")), "{}", status.stdout);
    assert!(status.stdout.contains(&format!("1 (pid {pid})")), "{}", status.stdout);
    // SAFETY: kill(2) on a pid the run just recorded as its rank 1.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0, "rank 1 (pid {pid}) is running");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the node fails: {stderr}");
    assert!(stderr.contains(&format!("rank 1 (pid {pid}) was killed by signal 9 (SIGKILL)")), "{stderr}");
    assert!(!broken.artifact("train").exists(), "a failed run leaves no artifact");

    // The rerun resumes on one device: a checkpoint holds no rank state,
    // and `devices` is not part of the key (the same work directory).
    broken.write("exp.yaml", &broken.read("exp.yaml").replace("devices: 2", "devices: 1"));
    let resumed = broken.sm(&["run"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(resumed.built(), ["train"]);
    let log = broken.read("cache/logs/study/train.log");
    assert!(log.contains("resuming from the checkpoint after step"), "{log}");
    let last = |p: &Project| curve(&p.artifact("train").join("metrics/steps.jsonl")).last().cloned().unwrap();
    assert_eq!(last(&broken), last(&whole), "resumed on 1 device, the run ends where the 2-rank one does");
}

#[test]
fn a_batch_that_does_not_divide_by_the_devices_is_refused() {
    let p = common::training_project(&study(3, 2));
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("batch_size 4 must be a multiple of devices 3"), "{}", run.stderr);
}
