//! Helpers for integration tests: a throwaway project directory with its own
//! cache, and a way to run the real `scalemake` binary in it.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Node ids reported as built (`    built X in …`).
    pub fn built(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .stderr
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("built "))
            .map(|l| l.rsplit_once(" in ").map_or(l, |(id, _)| id).to_string())
            .collect();
        v.sort();
        v
    }
}

impl Project {
    pub fn new(experiment: &str) -> Self {
        let p = Project { dir: tempfile::tempdir().expect("tempdir") };
        p.write("exp.yaml", experiment);
        p
    }

    /// A project whose `fr/` holds the small French fixture corpus.
    pub fn with_french_corpus(experiment: &str) -> Self {
        let p = Project::new(experiment);
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fr");
        for entry in std::fs::read_dir(fixtures).unwrap().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            p.write(&format!("fr/{}", entry.file_name().to_string_lossy()), &text);
        }
        p
    }

    /// The artifact directory of `node` (by its key).
    pub fn artifact(&self, node: &str) -> PathBuf {
        let key = self
            .keys()
            .into_iter()
            .find(|(n, _)| n == node)
            .and_then(|(_, k)| k)
            .unwrap_or_else(|| panic!("{node} has no key"));
        self.path().join("cache/objects").join(key).join("out")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scalemake"));
        cmd.args(args)
            .current_dir(self.path())
            .env("SCALEMAKE_FILE", "exp.yaml")
            .env_remove("SCALEMAKE_CACHE")
            .stdin(Stdio::null());
        cmd
    }

    pub fn sm(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run scalemake"))
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn scalemake")
    }

    /// Lines of `runs.log`, where test commands append their name when they run.
    pub fn runs(&self) -> Vec<String> {
        let mut v: Vec<String> = self.read("runs.log").lines().map(String::from).collect();
        v.sort();
        v
    }

    pub fn clear_runs(&self) {
        let _ = std::fs::remove_file(self.path().join("runs.log"));
    }

    /// Staging directories in the cache (nodes in flight, or left by a kill).
    pub fn staging_dirs(&self) -> usize {
        std::fs::read_dir(self.path().join("cache/tmp")).map(|d| d.count()).unwrap_or(0)
    }

    /// Object directories in the cache.
    pub fn objects(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path().join("cache/objects"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// The `fit.json` of a `fit` node, parsed.
    pub fn fit_json(&self, node: &str) -> serde_json::Value {
        let path = self.artifact(node).join("fit.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .expect("fit.json is JSON")
    }

    /// Each node's key as the engine computes it (`None` while an input is
    /// unbuilt), through the library rather than by parsing command output.
    pub fn keys(&self) -> Vec<(String, Option<String>)> {
        use scalemake::exec::{self, Freshness, Workspace};
        // Keys of compile nodes hold what the worker reports: ask the one `scalemake` runs.
        if std::env::var_os("SCALEMAKE_TORCH").is_none() {
            std::env::set_var(
                "SCALEMAKE_TORCH",
                Path::new(env!("CARGO_BIN_EXE_scalemake")).with_file_name("scalemake-torch"),
            );
        }
        let experiment = scalemake::spec::load(&self.path().join("exp.yaml"), &scalemake::nodes::Registry::builtin())
            .expect("the experiment loads");
        let plan = scalemake::graph::Plan::new(experiment).expect("acyclic");
        let cache = scalemake::cache::Cache::open(&self.path().join("cache")).expect("cache opens");
        let survey = exec::survey(&plan, &Workspace { root: self.path(), cache: &cache });
        let key = |f: &Freshness| match f {
            Freshness::Fresh { key, .. } | Freshness::Stale { key: Some(key), .. } => Some(key.hex()),
            Freshness::Stale { key: None, .. } | Freshness::Broken { .. } => None,
        };
        plan.experiment.nodes.iter().zip(&survey).map(|(n, f)| (n.id.0.clone(), key(f))).collect()
    }

    pub fn wait_for_file(&self, rel: &str, seconds: f64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
        while std::time::Instant::now() < deadline {
            if self.path().join(rel).exists() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }
}

/// The paper's figures a report of all four families has, in order (ids in
/// report.html, stems of figures/*.svg|png): Figures 1, 2, 3, 6 and 7.
pub const PAPER_FIGURES: [&str; 5] =
    ["fig1_baselines", "fig2_doped_frozen_2_3", "fig3_doped_frozen_free", "fig6_fastfood", "fig7_blockdiag"];

/// The extra panels after them (the residuals only where a law was fitted).
pub const EXTRA_FIGURES: [&str; 7] = [
    "loss_vs_tokens",
    "loss_vs_compute_trainable",
    "loss_vs_compute_frozen_2_3",
    "loss_vs_compute_frozen_full",
    "loss_vs_compute_fastfood_free",
    "variants_at_equal_n",
    "residuals_trainable",
];

/// The training pipeline on the French fixture that `tests/train.rs` and
/// `tests/chaos.rs` build on: corpus → BPE (400) → shards → a nano GPT,
/// 60 steps of 4 × 64 tokens, a checkpoint every 10 steps.
pub const NANO_STUDY: &str = "
name: study
nodes:
  corpus: {kind: corpus, paths: [fr], split: {val: 0.3, test: 0.2}}
  tokenizer: {kind: tokenizer, input: corpus, vocab_size: 400}
  shards: {kind: shards, input: [corpus, tokenizer], shard_tokens: 100000}
  train:
    kind: train
    input: shards
    model: {preset: nano}
    batch_size: 4
    micro_batch: 2
    max_tokens: 15360
    eval_points: 6
    eval_tokens: 512
    optim: {lr: 3e-3, warmup_tokens: 1024}
    device: cpu
    threads: 1
    checkpoint_steps: 10
";

/// A project with the French fixture corpus for an experiment that trains;
/// the worker binary must have been built beside `scalemake`.
pub fn training_project(experiment: &str) -> Project {
    let worker = Path::new(env!("CARGO_BIN_EXE_scalemake")).with_file_name("scalemake-torch");
    assert!(worker.exists(), "{} is missing: build the workspace (cargo nextest run --workspace)", worker.display());
    Project::with_french_corpus(experiment)
}

/// The rows of a metrics JSONL file without the timing columns (which
/// differ between otherwise identical runs).
pub fn curve(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let mut row: serde_json::Value = serde_json::from_str(l).unwrap();
            let map = row.as_object_mut().unwrap();
            map.remove("tokens_per_second");
            map.remove("mfu");
            row
        })
        .collect()
}

/// The step of each training checkpoint in the cache, by key.
pub fn checkpoint_steps(p: &Project) -> std::collections::BTreeMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(p.path().join("cache/work")) else { return Default::default() };
    entries
        .flatten()
        .filter_map(|d| {
            let text = std::fs::read_to_string(d.path().join("checkpoint.json")).ok()?;
            Some((
                d.file_name().to_string_lossy().into_owned(),
                serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()?,
            ))
        })
        .collect()
}

/// TensorBoard's own reader, on a directory of event files: `{tag: [[step, value], …]}`.
pub fn tensorboard_scalars(dir: &std::path::Path) -> serde_json::Value {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = "import json, sys\n\
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n\
acc = EventAccumulator(sys.argv[1]); acc.Reload()\n\
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()['scalars']}))";
    let out = std::process::Command::new(&python).args(["-c", script]).arg(dir).output().expect("the venv's python");
    assert!(
        out.status.success(),
        "TensorBoard's reader failed (scripts/setup.sh installs tensorboard): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Debian's Chromium, which `scripts/test.sh` installs as root (as CI runs);
/// elsewhere install it first (`CHROMIUM` overrides the path). Panics with
/// the fix when it is missing: a browser test never passes without a browser.
pub fn chromium() -> String {
    let candidates =
        [std::env::var("CHROMIUM").unwrap_or_default(), "/usr/bin/chromium".into(), "/usr/bin/chromium-browser".into()];
    candidates
        .into_iter()
        .find(|c| !c.is_empty() && Path::new(c).exists())
        .expect("Chromium not found (Debian: `apt-get install chromium`; or set CHROMIUM=/path/to/chromium)")
}

/// Flags for a headless Chromium that runs here as root and offline, and
/// reaches nothing but the page it is given.
pub const HEADLESS_CHROMIUM: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];
