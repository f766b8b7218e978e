//! Crash chaos: `scalemake run` is killed with SIGKILL at random moments,
//! over and over, on a study of 120 `command` nodes plus a real pipeline
//! (corpus → tokenizer → shards → two tiny training runs that checkpoint
//! every 5 steps), then allowed to finish. After every kill the cache is
//! inspected; after every finished round the artifacts are compared with
//! an uninterrupted build of the same study.
//!
//! Figures (printed, and written as Markdown to `$SCALEMAKE_CHAOS_REPORT`):
//! kills survived, nodes interrupted mid-build, partial or corrupt objects
//! visible in the cache (goal 0), completed nodes built again (goal 0),
//! training attempts that resumed from their checkpoint vs. restarted from
//! step 0 although a checkpoint existed (goal 0), rounds whose final
//! artifacts equal the uninterrupted build's.
//!
//! Short mode (CI): `SCALEMAKE_CHAOS_KILLS` defaults to 20 kills. Long mode:
//! `SCALEMAKE_CHAOS_KILLS=120 cargo nextest run --release --workspace --test
//! chaos --no-capture` (rounds repeat, each in a fresh project, until that
//! many kills). `SCALEMAKE_CHAOS_SEED` picks the kill moments. Needs the
//! worker binary next to `scalemake` (`--workspace` builds both).

mod common;
use common::{curve, Project};

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Layers × width of the generated `command` DAG.
const LAYERS: usize = 6;
const WIDTH: usize = 20;
/// Kill moments are drawn uniformly from this window after the start (ms):
/// long enough that every run can make progress past process and libtorch
/// start-up, short enough that most runs are killed mid-build.
const KILL_WINDOW_MS: (u64, u64) = (30, 900);

/// The study: the training pipeline of `tests/train.rs` (two seeds, a
/// checkpoint every 5 of 60 steps) and a layered DAG of commands whose
/// outputs hash their inputs, so any damage would propagate to the end.
fn study() -> String {
    let mut yaml = common::NANO_STUDY
        .replace("name: study", "name: chaos")
        .replace(
            "    model: {preset: nano}\n",
            "    matrix: {seed: [0, 1]}\n    seed: ${seed}\n    model: {preset: nano}\n",
        )
        .replace("checkpoint_steps: 10", "checkpoint_steps: 5");
    for layer in 0..LAYERS {
        for i in 0..WIDTH {
            let id = format!("c{layer}_{i:02}");
            let nap = format!("0.{:02}", 2 + (layer * 7 + i * 13) % 9);
            if layer == 0 {
                yaml.push_str(&format!("  {id}: {{kind: command, cmd: 'sleep {nap}; echo {id} > $OUT/v; seq 1 {i}000 >> $OUT/v', outputs: [v]}}\n"));
            } else {
                let (x, y) = (format!("c{}_{i:02}", layer - 1), format!("c{}_{:02}", layer - 1, (i + 7) % WIDTH));
                let (vx, vy) = (x.to_uppercase(), y.to_uppercase());
                yaml.push_str(&format!("  {id}: {{kind: command, input: [{x}, {y}], cmd: 'sleep {nap}; cat $IN_{vx}/v $IN_{vy}/v | cksum > $OUT/v', outputs: [v]}}\n"));
            }
        }
    }
    yaml
}

fn project() -> Project {
    common::training_project(&study())
}

/// What survived one round, compared across rounds and with the reference.
struct Outcome {
    /// Artifact digest of every deterministic node (all but training).
    digests: BTreeMap<String, String>,
    /// Per training run: loss curves without timing columns, and the weights.
    training: BTreeMap<String, (Vec<serde_json::Value>, Vec<u8>)>,
}

fn manifests(p: &Project) -> Vec<serde_json::Value> {
    p.objects()
        .iter()
        .filter_map(|o| std::fs::read(o.join("manifest.json")).ok())
        .map(|b| serde_json::from_slice(&b).expect("manifest parses"))
        .collect()
}

fn outcome(p: &Project) -> Outcome {
    let mut digests = BTreeMap::new();
    let mut training = BTreeMap::new();
    for m in manifests(p) {
        let node = m["node"].as_str().unwrap().to_string();
        if m["kind"] == "train" {
            let out = p.path().join("cache/objects").join(m["key"].as_str().unwrap()).join("out");
            let weights = std::fs::read(out.join("model.safetensors")).unwrap();
            training.insert(
                node,
                ([curve(&out.join("metrics/steps.jsonl")), curve(&out.join("metrics/eval.jsonl"))].concat(), weights),
            );
        } else {
            digests.insert(node, m["artifact"].as_str().unwrap().to_string());
        }
    }
    Outcome { digests, training }
}

/// The log file name the cache gives a node (`Cache::node_log`).
fn log_name(node: &str) -> String {
    let safe: String =
        node.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.=,".contains(c) { c } else { '_' }).collect();
    format!("{safe}.log")
}

/// Modification time of every node log: a node attempt rewrites its log.
fn log_times(p: &Project) -> BTreeMap<String, SystemTime> {
    let dir = p.path().join("cache/logs/chaos");
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeMap::new() };
    entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), e.metadata().ok()?.modified().ok()?)))
        .collect()
}

#[derive(Default, Debug)]
struct Figures {
    rounds: usize,
    runs: usize,
    kills: usize,
    /// Staging directories found after a kill: nodes killed mid-build.
    interrupted_builds: usize,
    /// Objects without a manifest, or whose content fails `verify`.
    partial_or_corrupt: usize,
    /// Attempts at nodes whose artifact was already committed.
    recomputed: usize,
    /// Training attempts that continued from the checkpoint they found.
    resumed: usize,
    /// Training attempts that started at step 0 with a checkpoint present.
    restarted_despite_checkpoint: usize,
    /// Training attempts that started at step 0 because none existed yet.
    started_fresh: usize,
    identical_rounds: usize,
    seconds: f64,
}

impl Figures {
    fn markdown(&self, kills_asked: usize, seed: u64) -> String {
        format!(
            "| figure | value | goal |\n|---|---:|---:|\n\
             | kill target (`SCALEMAKE_CHAOS_KILLS`), seed | {kills_asked}, {seed} | |\n\
             | rounds (fresh study each, run until it finishes) | {} | |\n\
             | `scalemake run` processes started | {} | |\n\
             | SIGKILLs survived | {} | ≥ {kills_asked} |\n\
             | nodes killed mid-build (staging dirs left) | {} | |\n\
             | partial or corrupt objects visible in the cache | {} | 0 |\n\
             | completed nodes built again | {} | 0 |\n\
             | training attempts resumed from their checkpoint | {} | |\n\
             | training attempts restarted at step 0 despite a checkpoint | {} | 0 |\n\
             | training attempts started at step 0 (no checkpoint yet) | {} | |\n\
             | rounds with artifacts identical to the uninterrupted build | {} / {} | all |\n\
             | wall time | {:.0} s | |\n",
            self.rounds,
            self.runs,
            self.kills,
            self.interrupted_builds,
            self.partial_or_corrupt,
            self.recomputed,
            self.resumed,
            self.restarted_despite_checkpoint,
            self.started_fresh,
            self.identical_rounds,
            self.rounds,
            self.seconds
        )
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Counts objects that are not complete and intact.
fn damaged_objects(p: &Project) -> usize {
    let missing_manifest = p.objects().iter().filter(|o| !o.join("manifest.json").is_file()).count();
    let verify = p.sm(&["verify"]);
    let corrupt = verify.stdout.lines().filter(|l| l.starts_with("CORRUPT")).count();
    assert!(verify.code == 0 || corrupt > 0, "verify failed: {}{}", verify.stdout, verify.stderr);
    missing_manifest + corrupt
}

/// One round: kill until the kill budget is spent, then let a run finish.
fn chaos_round(rng: &mut ChaCha8Rng, kills_left: &mut usize, fig: &mut Figures) -> Project {
    let p = project();
    let nodes: BTreeSet<String> = {
        let keys = p.keys();
        assert_eq!(keys.len(), 5 + LAYERS * WIDTH);
        keys.into_iter().map(|(n, _)| n).collect()
    };
    let train_logs: BTreeMap<String, String> =
        nodes.iter().filter(|n| n.starts_with("train")).map(|n| (log_name(n), n.clone())).collect();
    loop {
        let committed: BTreeSet<String> = manifests(&p).iter().map(|m| log_name(m["node"].as_str().unwrap())).collect();
        let logs_before = log_times(&p);
        let checkpoints_before = common::checkpoint_steps(&p);
        let train_keys: BTreeMap<String, Option<String>> =
            p.keys().into_iter().filter(|(n, _)| n.starts_with("train")).map(|(n, k)| (log_name(&n), k)).collect();
        let mut child = p.spawn(&["run", "-j", "3"]);
        fig.runs += 1;
        let kills_before = fig.kills;
        let finished = if *kills_left > 0 {
            let delay = KILL_WINDOW_MS.0 + rng.next_u64() % (KILL_WINDOW_MS.1 - KILL_WINDOW_MS.0);
            std::thread::sleep(Duration::from_millis(delay));
            match child.try_wait().unwrap() {
                Some(_) => true,
                None => {
                    child.kill().unwrap(); // SIGKILL
                    fig.kills += 1;
                    *kills_left -= 1;
                    false
                }
            }
        } else {
            false
        };
        let killed = !finished && fig.kills > kills_before;
        let out = child.wait_with_output().unwrap();
        if !killed {
            assert_eq!(
                out.status.code(),
                Some(0),
                "a run that was not killed failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The children die with scalemake (PDEATHSIG); give them a moment.
        std::thread::sleep(Duration::from_millis(30));
        fig.interrupted_builds += p.staging_dirs();
        fig.partial_or_corrupt += damaged_objects(&p);
        let logs_after = log_times(&p);
        for (log, time) in &logs_after {
            if logs_before.get(log) == Some(time) {
                continue;
            }
            // This node was attempted during the run.
            if committed.contains(log) {
                fig.recomputed += 1;
                eprintln!("recomputed: {log}");
            }
            if train_logs.contains_key(log) {
                let text = p.read(&format!("cache/logs/chaos/{log}"));
                let had = train_keys.get(log).cloned().flatten().and_then(|k| checkpoints_before.get(&k).copied());
                let resumed_at = text
                    .lines()
                    .find_map(|l| l.strip_prefix("scalemake: resuming from the checkpoint after step "))
                    .and_then(|s| s.trim().parse::<u64>().ok());
                let fresh = text.contains("scalemake: no checkpoint; training from step 0");
                match (had, resumed_at, fresh) {
                    (Some(s), Some(r), _) => {
                        assert_eq!(s, r, "{log}: a checkpoint at step {s} existed but training resumed from {r}");
                        fig.resumed += 1;
                    }
                    (Some(s), None, true) => {
                        fig.restarted_despite_checkpoint += 1;
                        eprintln!("{log}: restarted at step 0 despite the checkpoint at step {s}");
                    }
                    (None, _, true) => fig.started_fresh += 1,
                    // Killed before the worker reported where it starts.
                    _ => {}
                }
            }
        }
        if !killed {
            break;
        }
    }
    fig.rounds += 1;
    let status = p.sm(&["status"]);
    assert!(status.stdout.contains(&format!("all {} node(s) fresh", nodes.len())), "{}", status.stdout);
    p
}

#[test]
fn sigkill_at_random_moments_loses_no_finished_work() {
    let kills_asked = env_number("SCALEMAKE_CHAOS_KILLS", 20) as usize;
    let seed = env_number("SCALEMAKE_CHAOS_SEED", 9);
    let started = Instant::now();
    let reference = project();
    let run = reference.sm(&["run", "-j", "3"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expected = outcome(&reference);
    assert_eq!(expected.digests.len() + expected.training.len(), 5 + LAYERS * WIDTH);

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fig = Figures::default();
    let mut kills_left = kills_asked;
    while kills_left > 0 {
        let p = chaos_round(&mut rng, &mut kills_left, &mut fig);
        let got = outcome(&p);
        assert_eq!(
            got.digests, expected.digests,
            "round {}: a deterministic artifact differs from the uninterrupted build",
            fig.rounds
        );
        for (node, (curves, weights)) in &expected.training {
            let (c, w) = &got.training[node];
            assert_eq!(c, curves, "round {}: {node}'s loss curves differ", fig.rounds);
            assert!(w == weights, "round {}: {node}'s weights differ", fig.rounds);
        }
        fig.identical_rounds += 1;
    }
    fig.seconds = started.elapsed().as_secs_f64();
    let table = fig.markdown(kills_asked, seed);
    println!("{table}");
    if let Ok(path) = std::env::var("SCALEMAKE_CHAOS_REPORT") {
        std::fs::write(&path, &table).unwrap();
    }
    assert!(fig.kills >= kills_asked);
    assert_eq!(fig.partial_or_corrupt, 0, "{table}");
    assert_eq!(fig.recomputed, 0, "{table}");
    assert_eq!(fig.restarted_despite_checkpoint, 0, "{table}");
    assert!(fig.interrupted_builds > 0, "no kill landed mid-build: {table}");
}
