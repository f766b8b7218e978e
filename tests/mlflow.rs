//! Tracking `train` nodes in MLflow, against a real `mlflow server` (SQLite
//! backend, artifacts through its proxy) that each test starts on
//! 127.0.0.1 and reads back through the REST API: what TensorBoard shows
//! is what MLflow holds, Ctrl-C ends a run KILLED, a run killed and resumed
//! continues its MLflow run (one run per key, each step once), a server
//! that is down costs the run nothing, and a bad URL is a spec error.
//!
//! Needs `mlflow` (scripts/test.sh installs it into its own venv and sets
//! `SCALEMAKE_MLFLOW`) and the worker binary beside `scalemake`.

mod common;
use common::{curve, tensorboard_scalars, Project};

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The `mlflow` program: `$SCALEMAKE_MLFLOW`, else where scripts/test.sh installs it.
fn mlflow_program() -> PathBuf {
    let path = std::env::var_os("SCALEMAKE_MLFLOW").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(&std::env::var_os("HOME").expect("HOME is set"))
            .join(".cache/scalemake/venv-mlflow-3.17.2/bin/mlflow")
    });
    assert!(
        path.is_file(),
        "mlflow is missing at {}: run scripts/test.sh (it installs mlflow into its own venv) or set SCALEMAKE_MLFLOW",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A real MLflow tracking server on 127.0.0.1, killed (its whole process
/// group: uvicorn runs as a child) when dropped.
struct Server {
    dir: tempfile::TempDir,
    url: String,
    process: Child,
    http: ureq::Agent,
}

impl Server {
    /// Starts the server and waits until `/health` answers.
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let process = Command::new(mlflow_program())
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.path().join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            // Background jobs (prompt optimisation, trace roll-ups) are not used: fewer processes to start.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut server = Server { dir, url: format!("http://127.0.0.1:{port}"), process, http };
        let started = Instant::now();
        loop {
            let health = server.http.get(format!("{}/health", server.url)).call();
            if health.is_ok_and(|r| r.status() == 200) {
                break;
            }
            let log = || std::fs::read_to_string(server.dir.path().join("server.log")).unwrap_or_default();
            assert!(server.process.try_wait().unwrap().is_none(), "mlflow server exited:\n{}", log());
            assert!(started.elapsed() < Duration::from_secs(120), "mlflow server did not answer:\n{}", log());
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("mlflow server answered after {:.1}s", started.elapsed().as_secs_f64());
        server
    }

    fn api(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.url)
    }

    /// The answer's status and JSON body.
    fn get_status(&self, endpoint: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let mut r = self.http.get(self.api(endpoint)).query_pairs(query.iter().copied()).call().expect("GET");
        let body = r.body_mut().read_to_string().unwrap();
        (r.status().as_u16(), serde_json::from_str(&body).unwrap_or_else(|_| panic!("{endpoint}: {body}")))
    }

    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Value {
        let (status, body) = self.get_status(endpoint, query);
        assert_eq!(status, 200, "{endpoint}: {body}");
        body
    }

    fn post(&self, endpoint: &str, body: Value) -> Value {
        let mut r = self.http.post(self.api(endpoint)).send_json(&body).expect("POST");
        let body = r.body_mut().read_to_string().unwrap();
        assert_eq!(r.status(), 200, "{endpoint}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Every active run of `experiment` (none while it does not exist).
    fn runs(&self, experiment: &str) -> Vec<Value> {
        let (status, found) = self.get_status("experiments/get-by-name", &[("experiment_name", experiment)]);
        if status == 404 {
            return Vec::new();
        }
        let id = found["experiment"]["experiment_id"].as_str().unwrap_or_else(|| panic!("{found}")).to_string();
        let found = self.post("runs/search", json!({ "experiment_ids": [id], "max_results": 100 }));
        found["runs"].as_array().cloned().unwrap_or_default()
    }

    /// `[[step, value], …]` of a run's metric, in step order.
    fn history(&self, run_id: &str, key: &str) -> Vec<(u64, f64)> {
        let h = self.get("metrics/get-history", &[("run_id", run_id), ("metric_key", key)]);
        let mut points: Vec<(u64, f64)> = h["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["step"].as_u64().unwrap(), m["value"].as_f64().unwrap()))
            .collect();
        points.sort_by_key(|p| p.0);
        points
    }

    /// Where the server stored a run's artifact files.
    fn artifact_dir(&self, run: &Value) -> PathBuf {
        let info = &run["info"];
        self.dir
            .path()
            .join("artifacts")
            .join(info["experiment_id"].as_str().unwrap())
            .join(info["run_id"].as_str().unwrap())
            .join("artifacts")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group the server leads (made by `process_group(0)`).
        unsafe { libc::kill(-(self.process.id() as i32), libc::SIGKILL) };
        let _ = self.process.wait();
    }
}

/// A run's tags or params as a map.
fn pairs(run: &Value, field: &str) -> BTreeMap<String, String> {
    run["data"][field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["key"].as_str().unwrap().to_string(), p["value"].as_str().unwrap().to_string()))
        .collect()
}

fn train_key(p: &Project) -> String {
    p.keys().into_iter().find(|(n, _)| n == "train").and_then(|(_, k)| k).expect("train has a key")
}

/// MLflow holds, step by step, the scalars TensorBoard reads from the
/// artifact's event file. After a resumption, the throughput of a step
/// trained twice is the one measured first in MLflow (the attempt that sent
/// it) and the last in the artifact, so it is compared only when `resumed` is false.
fn assert_same_as_tensorboard(server: &Server, run_id: &str, artifact: &Path, resumed: bool) {
    let scalars = tensorboard_scalars(&artifact.join("tensorboard"));
    let tags = scalars.as_object().unwrap();
    assert_eq!(tags.len(), 5, "{:?}", tags.keys());
    for (tag, points) in tags {
        let tensorboard: Vec<(u64, f64)> =
            points.as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap())).collect();
        let mlflow = server.history(run_id, tag);
        let steps = |points: &[(u64, f64)]| points.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(steps(&mlflow), steps(&tensorboard), "{tag}: the same steps, each once");
        if resumed && tag == "train/tokens_per_second" {
            continue;
        }
        for ((step, ours), (_, tb)) in mlflow.iter().zip(&tensorboard) {
            // TensorBoard stores f32, MLflow f64.
            assert!((ours - tb).abs() <= 1e-6 * tb.abs().max(1e-3), "{tag} at step {step}: {ours} vs {tb}");
        }
    }
}

#[test]
fn a_run_is_tracked_in_mlflow_as_tensorboard_shows_it() {
    let server = Server::start();
    // Experiment-wide, through `defaults:`.
    let study = common::NANO_STUDY
        .replace("nodes:\n", &format!("defaults:\n  tracking: {{mlflow: '{}'}}\nnodes:\n", server.url));
    let p = common::training_project(&study);
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let log = p.read("cache/logs/study/train.log");
    assert!(log.contains("scalemake: mlflow: new run "), "{log}");

    let runs = server.runs("study");
    assert_eq!(runs.len(), 1, "{runs:#?}");
    let tracked = &runs[0];
    let run_id = tracked["info"]["run_id"].as_str().unwrap();
    assert_eq!(tracked["info"]["status"], "FINISHED");
    assert_eq!(tracked["info"]["run_name"], "train");
    let tags = pairs(tracked, "tags");
    assert_eq!(tags["scalemake.key"], train_key(&p));
    assert_eq!((tags["scalemake.node"].as_str(), tags["scalemake.experiment"].as_str()), ("train", "study"));
    assert_eq!(tags["scalemake.device"], "cpu", "metadata is a tag");
    let params = pairs(tracked, "params");
    for (key, value) in [
        ("model.preset", "nano"),
        ("model.n_layer", "2"),
        ("model.vocab_size", "400"),
        ("variant", "baseline"),
        ("max_tokens", "15360"),
        ("optim.lr", "0.003"),
        ("batch_size", "4"),
        ("params_trainable", "100096"),
        ("params_embedding", "25600"),
    ] {
        assert_eq!(params.get(key).map(String::as_str), Some(value), "param {key} in {params:?}");
    }
    assert!(!params.contains_key("device") && !params.contains_key("tracking"), "not in the key: {params:?}");

    let artifact = p.artifact("train");
    assert_same_as_tensorboard(&server, run_id, &artifact, false);
    let loss = server.history(run_id, "train/loss");
    let steps = curve(&artifact.join("metrics/steps.jsonl"));
    assert_eq!(loss.len(), steps.len());
    assert_eq!(loss.last().unwrap().1, steps.last().unwrap()["loss"].as_f64().unwrap(), "f64 values, exactly");

    // The artifact's files, byte for byte, in the server's artifact store.
    let stored = server.artifact_dir(tracked);
    for file in ["config.json", "metrics/steps.csv", "metrics/eval.jsonl", "model.safetensors"] {
        let (ours, theirs) = (std::fs::read(artifact.join(file)).unwrap(), std::fs::read(stored.join(file)));
        assert!(theirs.is_ok_and(|t| t == ours), "{file} uploaded");
    }
    assert!(std::fs::read_dir(stored.join("tensorboard")).unwrap().count() == 1, "the event file");

    // Where to log is not what is computed: without tracking, the node is fresh.
    p.write("exp.yaml", common::NANO_STUDY);
    let again = p.sm(&["run"]);
    assert!(again.stderr.contains("0 built, 4 fresh"), "{}", again.stderr);

    // Ctrl-C while a longer run (another key, so another MLflow run) trains: it ends KILLED.
    p.write("exp.yaml", &study.replace("max_tokens: 15360", "max_tokens: 153600"));
    let mut child = p.spawn(&["run"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !server.runs("study").iter().any(|r| r["info"]["run_id"] != run_id && held_through(r).is_some()) {
        assert!(Instant::now() < deadline, "the second run was not tracked");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) with the pid of our own child, not yet waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "scalemake did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
    let runs = server.runs("study");
    let interrupted = runs.iter().find(|r| r["info"]["run_id"] != run_id).expect("the second run");
    assert_eq!(runs.len(), 2);
    assert_eq!(interrupted["info"]["status"], "KILLED");
    assert_ne!(pairs(interrupted, "tags")["scalemake.key"], pairs(tracked, "tags")["scalemake.key"]);
}

/// Runs `scalemake run` in `p` and kills it (SIGKILL) once `ready` holds for
/// the step of the checkpoint it has left; returns that step.
///
/// `ready` is asked while the training worker is stopped (SIGSTOP), and a
/// worker it approves is killed without running again: otherwise the next
/// checkpoint could land between the question and the kill, and the test
/// would kill a state other than the one it approved.
fn run_and_kill(p: &Project, mut ready: impl FnMut(u64) -> bool) -> u64 {
    let mut child = p.spawn(&["run"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(worker) = worker_of(child.id()) {
            signal(worker, libc::SIGSTOP);
            while !stopped(worker) {
                assert!(Instant::now() < deadline, "the worker did not stop on SIGSTOP");
                std::thread::yield_now();
            }
            let checkpoint = common::checkpoint_steps(p).into_values().next();
            if let Some(step) = checkpoint.filter(|&step| ready(step)) {
                signal(worker, libc::SIGKILL);
                child.kill().unwrap();
                child.wait().unwrap();
                assert!(step < 600, "killed after the last step");
                return step;
            }
            signal(worker, libc::SIGCONT);
        }
        assert!(Instant::now() < deadline, "the moment to kill it did not come");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of the `scalemake-torch` worker that `parent` started, if one runs.
fn worker_of(parent: u32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        let (head, rest) = stat.rsplit_once(')')?;
        let (pid, comm) = head.split_once(" (")?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && comm == "scalemake-torch").then(|| pid.parse().ok()).flatten()
    })
}

/// Whether every thread of `pid` is stopped (or the process is gone).
fn stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(String::from))
            })
            .is_none_or(|state| state == "T" || state == "t" || state == "Z" || state == "X")
    })
}

fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory preconditions; a pid that is gone gives ESRCH, which is fine here.
    unsafe { libc::kill(pid, signal) };
}

/// The highest step of `train/loss` a run holds.
fn held_through(run: &Value) -> Option<u64> {
    run["data"]["metrics"].as_array()?.iter().find(|m| m["key"] == "train/loss")?["step"].as_u64()
}

#[test]
fn a_killed_run_resumes_into_the_same_mlflow_run_with_each_step_once() {
    let server = Server::start();
    // 600 steps, checkpointed every 100, so that it can be killed mid-way.
    let untracked = common::NANO_STUDY
        .replace("max_tokens: 15360", "max_tokens: 153600")
        .replace("checkpoint_steps: 10", "checkpoint_steps: 100");
    // Per node, with an experiment name; not in the key, so attempts of either file resume each other.
    let tracked = untracked.replace(
        "    checkpoint_steps: 100\n",
        &format!("    checkpoint_steps: 100\n    tracking: {{mlflow: '{}', experiment: resumed}}\n", server.url),
    );
    let p = common::training_project(&untracked);
    assert_eq!(p.sm(&["run", "shards"]).code, 0);

    // 1. Untracked, killed after its first checkpoint: MLflow never sees steps 1..=first.
    let first = run_and_kill(&p, |_| true);
    // 2. Tracked: a new MLflow run from step first+1 on, killed once MLflow holds steps past
    //    the latest checkpoint (so the next attempt trains steps MLflow already has).
    p.write("exp.yaml", &tracked);
    let mut held_at_kill = 0;
    let second = run_and_kill(&p, |checkpoint| {
        let held = server.runs("resumed").first().and_then(held_through);
        held_at_kill = held.unwrap_or(0);
        checkpoint > first && held.is_some_and(|h| h > checkpoint)
    });
    let runs = server.runs("resumed");
    assert_eq!(runs.len(), 1);
    let run_id = runs[0]["info"]["run_id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["info"]["status"], "RUNNING", "a SIGKILLed run cannot say it ended");
    // 3. Tracked again, to the end.
    let resumed = p.sm(&["run"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let log = p.read("cache/logs/study/train.log");
    eprintln!("killed after checkpoints at steps {first} and {second}; the last attempt's log says:");
    log.lines().filter(|l| l.contains("mlflow") || l.contains("resuming")).for_each(|l| eprintln!("  {l}"));
    assert!(log.contains(&format!("resuming from the checkpoint after step {second}")), "{log}");
    let continuing = format!("scalemake: mlflow: continuing run {run_id} of experiment `resumed`");
    assert!(log.contains(&continuing), "{log}");
    let held = log.split("it holds steps up to ").nth(1).and_then(|r| r.split(')').next()?.parse::<u64>().ok());
    assert!(held.is_some_and(|h| h >= held_at_kill && h > second), "steps {second}+1..={held:?} were trained twice");
    // Steps 1..=first, trained before tracking was on, are sent from the artifact's metrics.
    let artifact = p.artifact("train");
    let early_evals =
        curve(&artifact.join("metrics/eval.jsonl")).iter().filter(|r| r["step"].as_u64() <= Some(first)).count();
    let sent = 4 * first as usize + early_evals;
    assert!(
        log.contains(&format!("scalemake: mlflow: sent {sent} metric points an earlier attempt had not sent")),
        "{log}"
    );

    let runs = server.runs("resumed");
    assert_eq!(runs.len(), 1, "one MLflow run for the key: {runs:#?}");
    assert_eq!(runs[0]["info"]["run_id"], run_id.as_str());
    assert_eq!(runs[0]["info"]["status"], "FINISHED");
    assert_eq!(pairs(&runs[0], "tags")["scalemake.key"], train_key(&p));
    // Every step once, as TensorBoard has them.
    assert_eq!(server.history(&run_id, "train/loss").len(), 600);
    assert_same_as_tensorboard(&server, &run_id, &artifact, true);
}

#[test]
fn a_tracking_server_that_is_down_costs_the_run_nothing_but_a_warning() {
    let port = free_port(); // bound, then released: nothing listens there
    let study = common::NANO_STUDY.replace(
        "    checkpoint_steps: 10\n",
        &format!("    checkpoint_steps: 10\n    tracking: {{mlflow: 'http://127.0.0.1:{port}'}}\n"),
    );
    let p = common::training_project(&study);
    let run = p.sm(&["run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(p.artifact("train").join("model.safetensors").exists());
    let log = p.read("cache/logs/study/train.log");
    assert!(
        log.contains("scalemake: mlflow: warning: finding the experiment failed (tried 3 times): ")
            && log.contains("tracking stops for this run, training goes on"),
        "{log}"
    );
    assert_eq!(log.matches("scalemake: mlflow:").count(), 1, "one warning, then silence: {log}");
}

#[test]
fn a_tracking_url_without_scheme_or_host_is_a_spec_error() {
    let study = common::NANO_STUDY
        .replace("    checkpoint_steps: 10\n", "    checkpoint_steps: 10\n    tracking: {mlflow: 'localhost:5000'}\n");
    let p = Project::new(&study);
    let run = p.sm(&["status"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for needle in [
        "exp.yaml:20:24",
        "`nodes.train.tracking.mlflow`",
        "`localhost:5000` is not an http:// or https:// URL with a host",
        "for example http://127.0.0.1:5000",
    ] {
        assert!(run.stderr.contains(needle), "missing `{needle}` in:\n{}", run.stderr);
    }
}
