//! The engine ↔ worker protocol of a training run.
//!
//! The `train` node writes a [`TrainJob`] as JSON and runs
//! `scalemake-torch train <job.json>`; the worker prints one [`Event`] per
//! line on stdout (its human log goes to stderr). Keeping libtorch in its
//! own process keeps the engine fast to start, isolates CUDA state and lets
//! the engine kill a run outright.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Compute, ModelShape, ParamCounts};

/// Numeric precision of the forward and backward passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in fp32 (TF32 matmuls on GPU).
    Fp32,
    /// Matmuls and attention in bf16, fp32 master weights, optimiser state,
    /// LayerNorm, softmax and loss (what `torch.autocast(bfloat16)` does).
    Bf16,
}

/// The order in which training reads its windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    /// Windows at uniformly random positions (with replacement).
    #[default]
    Random,
    /// Epochs: every non-overlapping window once, in a seeded shuffle,
    /// before any twice.
    Epochs,
}

/// Adam with the paper's schedule and clipping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimSpec {
    /// Peak learning rate.
    pub lr: f64,
    /// Adam β1.
    pub beta1: f64,
    /// Adam β2.
    pub beta2: f64,
    /// Adam ε.
    pub eps: f64,
    /// Decoupled weight decay (AdamW style; 0 in the paper).
    pub weight_decay: f64,
    /// Global gradient-norm clip (1.0 in the paper; 0 disables).
    pub clip: f64,
    /// Tokens of linear warmup.
    pub warmup_tokens: f64,
    /// Tokens at which the decay reaches its floor.
    pub decay_tokens: f64,
    /// The floor, as a fraction of `lr`.
    pub final_lr_fraction: f64,
    /// Warmup–stable–decay instead of the cosine: the rate holds at its
    /// peak until the decay starts. Absent from the records of cosine runs,
    /// which are as they were before WSD existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsd: Option<Wsd>,
}

/// The decay of a warmup–stable–decay schedule (Hu et al. 2024, MiniCPM;
/// Hägele et al. 2024): from the peak at `decay_start_tokens` to the floor
/// at [`OptimSpec::decay_tokens`], in the given shape.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Wsd {
    /// Tokens at which the stable phase ends and the decay starts.
    pub decay_start_tokens: f64,
    /// How the rate falls.
    pub shape: DecayShape,
}

/// The shape of a WSD decay, as a function of its progress p ∈ [0, 1]
/// (the rate is floor + (peak − floor) × this).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecayShape {
    /// 1 − p.
    Linear,
    /// 1 − √p (Hägele et al.'s "1-sqrt", better than linear in their runs).
    Sqrt,
    /// (1 + cos πp) / 2.
    Cosine,
}

impl DecayShape {
    /// Every shape, in the order the schema lists them.
    pub const ALL: [DecayShape; 3] = [DecayShape::Linear, DecayShape::Sqrt, DecayShape::Cosine];

    /// Its name in YAML.
    pub const fn name(self) -> &'static str {
        match self {
            DecayShape::Linear => "linear",
            DecayShape::Sqrt => "sqrt",
            DecayShape::Cosine => "cosine",
        }
    }

    /// The fraction of the way from floor to peak at progress `p` ∈ [0, 1].
    pub fn remaining(self, p: f64) -> f64 {
        match self {
            DecayShape::Linear => 1.0 - p,
            DecayShape::Sqrt => 1.0 - p.sqrt(),
            DecayShape::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
        }
    }
}

/// The names of [`DecayShape::ALL`], for the schema.
pub const DECAY_SHAPE_NAMES: &[&str] = &{
    let mut names = [""; DecayShape::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = DecayShape::ALL[i].name();
        i += 1;
    }
    names
};

impl OptimSpec {
    /// Adam at a constant `lr` (β 0.9/0.95, ε 1e-8, clip 1, no weight decay,
    /// no warmup, floor = peak): what benchmarks and reference checks step
    /// with, where the schedule is not what is measured.
    pub fn constant(lr: f64) -> Self {
        OptimSpec {
            lr,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.0,
            clip: 1.0,
            warmup_tokens: 0.0,
            decay_tokens: 1.0,
            final_lr_fraction: 1.0,
            wsd: None,
        }
    }
}

/// Everything the worker needs to train one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainJob {
    /// Model shape (vocabulary from the shards).
    pub model: ModelShape,
    /// Optimiser.
    pub optim: OptimSpec,
    /// Sequences per optimiser step.
    pub batch_size: u64,
    /// Sequences per forward/backward pass (gradients accumulate over
    /// `batch_size / micro_batch` passes).
    pub micro_batch: u64,
    /// Training budget in tokens (rounded down to whole steps).
    pub max_tokens: u64,
    /// Validation evaluations, log-spaced over the run.
    pub eval_points: u64,
    /// Validation tokens per evaluation (a fixed prefix of the val split).
    pub eval_tokens: u64,
    /// Seed of initialisation, data order and dropout.
    pub seed: u64,
    /// How training windows are drawn.
    #[serde(default)]
    pub sampling: Sampling,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Compute precision.
    pub precision: Precision,
    /// Seconds between checkpoints (0: none by time).
    pub checkpoint_seconds: f64,
    /// Steps between checkpoints (0: none by steps).
    pub checkpoint_steps: u64,
    /// CPU threads for libtorch (0: libtorch's default).
    pub threads: u64,
    /// Peak FLOP/s of the device for MFU, when the worker cannot know it.
    pub peak_flops: Option<f64>,
    /// Directory of the token shards (`train_*.bin`, `val_*.bin`).
    pub shards: PathBuf,
    /// Empty directory that becomes the artifact.
    pub out: PathBuf,
    /// Directory that survives a crash: checkpoints live here.
    pub work: PathBuf,
    /// Token counts after which the run keeps its state (weights, Adam
    /// moments, step) in its artifact, under `checkpoints/`: the points
    /// cooldown branches start from.
    #[serde(default)]
    pub keep_checkpoints: Vec<u64>,
    /// A kept checkpoint of another run to start from instead of step 0
    /// (a cooldown branch); the run's own checkpoints still come first.
    #[serde(default)]
    pub branch_from: Option<BranchFrom>,
    /// The compiled step to run, if the node asked for one (`compile:`).
    #[serde(default)]
    pub compiled: Option<CompiledUse>,
    /// Data-parallel ranks (one per GPU, or CPU processes): each takes an
    /// equal slice of every global batch, and their gradients are summed.
    #[serde(default = "one_device")]
    pub devices: u64,
    /// Seconds a rank waits for the others at a collective before the run
    /// fails (a rank that died or hangs).
    #[serde(default = "default_collective_timeout")]
    pub collective_timeout_seconds: f64,
}

fn one_device() -> u64 {
    1
}

fn default_collective_timeout() -> f64 {
    600.0
}

/// What a train node decided about the compiled step ([`super::compile`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompiledUse {
    /// The package to run; `None` runs eager.
    pub package: Option<PathBuf>,
    /// Why (for the log and the train record).
    pub reason: String,
}

/// The kept checkpoint a cooldown branch starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BranchFrom {
    /// Its file (see [`kept_checkpoint`]) in the source run's artifact.
    pub checkpoint: PathBuf,
    /// Tokens the source had trained on when it was taken.
    pub tokens: u64,
}

/// Where a run keeps the checkpoint taken after `tokens` tokens, inside
/// its artifact (and, while it trains, inside its work directory).
pub fn kept_checkpoint(tokens: u64) -> String {
    format!("checkpoints/tokens-{tokens:012}.safetensors")
}

impl TrainJob {
    /// Tokens per optimiser step (inputs only).
    pub fn tokens_per_step(&self) -> u64 {
        self.batch_size * self.model.context as u64
    }

    /// Optimiser steps in the budget.
    pub fn total_steps(&self) -> u64 {
        self.max_tokens / self.tokens_per_step().max(1)
    }

    /// The step after which a cooldown branch starts: its source's
    /// checkpoint at `at_tokens` (a whole number of steps, by [`Self::check`]).
    pub fn branch_step(&self) -> Option<u64> {
        self.branch_from.as_ref().map(|b| b.tokens / self.tokens_per_step().max(1))
    }

    /// Why the job cannot run, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        self.model.check()?;
        if self.batch_size == 0 || self.micro_batch == 0 || !self.batch_size.is_multiple_of(self.micro_batch) {
            return Err(format!(
                "batch_size {} must be a positive multiple of micro_batch {}",
                self.batch_size, self.micro_batch
            ));
        }
        if self.devices == 0 || !self.batch_size.is_multiple_of(self.devices) {
            return Err(format!(
                "batch_size {} must be a multiple of devices {}: each device takes an equal slice of every batch",
                self.batch_size, self.devices
            ));
        }
        if self.total_steps() == 0 {
            return Err(format!(
                "max_tokens {} is less than one step of {} tokens",
                self.max_tokens,
                self.tokens_per_step()
            ));
        }
        let o = &self.optim;
        if o.warmup_tokens > self.max_tokens as f64 {
            return Err(format!(
                "optim.warmup_tokens ({}) exceeds max_tokens ({}): the learning rate would never reach its peak; set optim.warmup_tokens (the default is the paper's 409.6M)",
                o.warmup_tokens, self.max_tokens
            ));
        }
        if o.decay_tokens <= o.warmup_tokens {
            return Err(format!(
                "optim.decay_tokens ({}) must come after optim.warmup_tokens ({})",
                o.decay_tokens, o.warmup_tokens
            ));
        }
        if let Some(wsd) = o.wsd {
            if wsd.decay_start_tokens < o.warmup_tokens || wsd.decay_start_tokens >= o.decay_tokens {
                return Err(format!(
                    "optim.cooldown_tokens ({}) must leave the warmup ({}) whole within max_tokens ({})",
                    o.decay_tokens - wsd.decay_start_tokens,
                    o.warmup_tokens,
                    self.max_tokens
                ));
            }
        }
        let step = self.tokens_per_step();
        if let Some(branch) = &self.branch_from {
            if branch.tokens >= self.total_steps() * step || !branch.tokens.is_multiple_of(step) {
                return Err(format!(
                    "at_tokens {} is not a whole number of steps of {step} tokens before the run's end ({} tokens)",
                    branch.tokens,
                    self.total_steps() * step
                ));
            }
        }
        for &tokens in &self.keep_checkpoints {
            if tokens == 0 || tokens >= self.total_steps() * step || !tokens.is_multiple_of(step) {
                return Err(format!(
                    "keep_checkpoints: {tokens} is not a whole number of steps of {step} tokens (batch_size × context) before the run's end ({} tokens)",
                    self.total_steps() * step
                ));
            }
        }
        Ok(())
    }
}

/// One line of the worker's stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The model is built and training is about to start (or resume).
    Start {
        /// The device in use, e.g. `cuda:0 (NVIDIA H100 80GB HBM3)` or `cpu (2 threads)`.
        device: String,
        /// Parameter counts of the built model.
        params: ParamCounts,
        /// Steps in the whole run.
        total_steps: u64,
        /// The step a checkpoint resumed from (0 for a fresh start).
        resumed_from: u64,
    },
    /// One optimiser step.
    Step(StepRow),
    /// A validation evaluation.
    Eval(EvalRow),
    /// A checkpoint was written after `step`.
    Checkpoint {
        /// Steps done when it was taken.
        step: u64,
    },
    /// Asked to stop (SIGUSR1 or SIGTERM: a Slurm time limit or
    /// preemption), the worker wrote a checkpoint after `step` and exits 0
    /// without an artifact; the next run of the node resumes there.
    Suspended {
        /// Steps done when it stopped.
        step: u64,
    },
    /// Training finished and the artifact is complete.
    Done {
        /// Final validation loss (NaN for a diverged run).
        #[serde(with = "non_finite_as_null")]
        val_loss: f64,
        /// Loss on the test split after the last step (`None` without a
        /// test split, or for a diverged run).
        #[serde(default)]
        test_loss: Option<f64>,
        /// Mean training throughput, tokens per second.
        tokens_per_second: f64,
    },
    /// Training could not go on; the worker exits non-zero after this.
    Failed {
        /// Why, for the user.
        message: String,
    },
}

/// A diverged run's losses are NaN or infinite, which JSON cannot hold: they
/// are written as `null` and read back as NaN, so divergence is a result
/// (a point on a learning-rate sweep), not a protocol error.
pub(crate) mod non_finite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            s.serialize_f64(*value)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Per-step metrics (a row of `metrics/steps.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// Optimiser steps done (1-based).
    pub step: u64,
    /// Tokens seen after this step.
    pub tokens: u64,
    /// Learning rate used.
    pub lr: f64,
    /// Mean training loss over the step's micro-batches.
    #[serde(with = "non_finite_as_null")]
    pub loss: f64,
    /// Global gradient norm before clipping.
    #[serde(with = "non_finite_as_null")]
    pub grad_norm: f64,
    /// Training compute so far under each cost model.
    pub compute: Compute,
    /// Throughput over the last logging window.
    pub tokens_per_second: f64,
    /// Model FLOPs utilisation over that window (`None` when the device's peak is unknown).
    pub mfu: Option<f64>,
}

/// A validation evaluation (a row of `metrics/eval.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Optimiser steps done.
    pub step: u64,
    /// Tokens seen.
    pub tokens: u64,
    /// Mean validation loss (nats per token).
    #[serde(with = "non_finite_as_null")]
    pub val_loss: f64,
    /// Training compute so far under each cost model.
    pub compute: Compute,
}

/// The file in a training run's work directory that lists its ranks
/// (`[{"rank": 0, "pid": …}, …]`) while a data-parallel run trains locally.
pub const RANKS_FILE: &str = "ranks.json";

/// Writes which process is which rank, as (rank, pid), into the work
/// directory `work` (atomically: a reader sees all of it or none).
pub fn write_ranks(work: &std::path::Path, ranks: &[(u64, u32)]) -> Result<(), String> {
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    let rows: Vec<serde_json::Value> =
        ranks.iter().map(|&(rank, pid)| serde_json::json!({ "rank": rank, "pid": pid })).collect();
    let path = work.join(RANKS_FILE);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&rows).map_err(|e| e.to_string())?)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The ranks a run in `work` recorded, as (rank, pid), if its rank 0 is
/// still alive: what `status` shows of a multi-rank run in progress.
fn live_ranks(work: &std::path::Path) -> Option<Vec<(u64, i32)>> {
    let text = std::fs::read_to_string(work.join(RANKS_FILE)).ok()?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).ok()?;
    let ranks: Vec<(u64, i32)> =
        rows.iter().filter_map(|r| Some((r["rank"].as_u64()?, i32::try_from(r["pid"].as_i64()?).ok()?))).collect();
    let root = ranks.iter().find(|(rank, _)| *rank == 0)?.1;
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(root, 0) } == 0).then_some(ranks)
}

/// "training on 2 ranks: 0 (pid 41), 1 (pid 42)" for a run in `work` whose
/// ranks are alive: how `status` and the dashboard show a multi-rank run.
pub fn live_ranks_note(work: &std::path::Path) -> Option<String> {
    let ranks = live_ranks(work)?;
    let list: Vec<String> = ranks.iter().map(|(rank, pid)| format!("{rank} (pid {pid})")).collect();
    Some(format!("training on {} ranks: {}", ranks.len(), list.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverged_losses_survive_the_protocol() {
        let line = serde_json::to_string(&Event::Done { val_loss: f64::NAN, test_loss: None, tokens_per_second: 10.0 })
            .unwrap();
        assert_eq!(line, r#"{"event":"done","val_loss":null,"test_loss":null,"tokens_per_second":10.0}"#);
        let Event::Done { val_loss, .. } = serde_json::from_str(&line).unwrap() else { panic!("{line}") };
        assert!(val_loss.is_nan());
    }
}
